//! Page data compression side by side (`CRAC_ENGINE_OPTIONS=compress=...`),
//! in one run:
//!
//! ```text
//! cargo build --release --workspace && target/release/crac-bench-compress
//! ```
//!
//! For each size (`CRAC_BENCH_SIZES`, MiB, default `256,1024`) and each of
//! `none`, `lz4`, `zstd`: the `compressible` payload (half text lines, a
//! quarter zeroed-then-partly-filled pages, a quarter random bytes)
//! checkpoints itself; `dump` is from its `checkpoint` line until it exited
//! (the image is durable then), `MB/s` the page data over that time,
//! `ratio` the bytes of `pages.crac` over the uncompressed page data. Then
//! medians of `CRAC_BENCH_RUNS` (default 3) restores, lazy (default) and
//! `--eager`: `resume` from the spawn of `crac restore` until the program's
//! first line after the restore, `all` until it has read all its memory
//! (in a lazy restore: everything loaded). A restore counts only if the
//! program finds its data intact.
//!
//! The image directory is `CRAC_BENCH_DIR` (default the temp dir); it is
//! removed at the end. Timings vary on a shared machine: compare only
//! numbers of the same run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use payload::now_ns;

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().join(name)
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Checkpoints `compressible MIB` into `image`; returns the dump time.
fn dump(image: &Path, mib: u64, method: &str) -> Duration {
    let _ = std::fs::remove_dir_all(image);
    let mut child = Command::new(sibling("compressible"))
        .arg(mib.to_string())
        .env("CRAC_CHECKPOINT_TO", image)
        .env("CRAC_ENGINE_OPTIONS", format!("compress={method}"))
        .env_remove("CRAC_ENGINE")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut at = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(ns) = line.strip_prefix("checkpoint ") {
            at = ns.trim().parse::<u128>().ok();
        }
    }
    let status = child.wait().unwrap();
    let end = now_ns();
    assert!(
        status.success(),
        "checkpoint of {mib} MiB ({method}) failed"
    );
    Duration::from_nanos((end - at.expect("checkpoint line")) as u64)
}

/// One restore of `image`; returns (resume, all read).
fn restore(image: &Path, eager: bool) -> (Duration, Duration) {
    let t = Instant::now();
    let mut cmd = Command::new(sibling("crac"));
    cmd.arg("restore").arg(image);
    if eager {
        cmd.arg("--eager");
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let (mut resumed, mut checked, mut ok) = (None, None, false);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("restored ") {
            resumed = Some(t.elapsed());
        } else if line.starts_with("checked ") {
            checked = Some(t.elapsed());
        } else if line == "data ok: true" {
            ok = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success() && ok,
        "restore of {} failed",
        image.display()
    );
    (resumed.unwrap(), checked.unwrap())
}

fn data_bytes(image: &Path) -> (u64, u64) {
    let img = crac_image::Image::read(image).unwrap();
    let data = img.logical_pages_len() - crac_image::PAGES_HEADER_LEN;
    (data, img.header.pages_len)
}

fn main() {
    let dir = std::env::var_os("CRAC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("crac-bench-compress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runs = env_list("CRAC_BENCH_RUNS", "3")
        .first()
        .copied()
        .unwrap_or(3) as usize;
    println!(
        "{:>6} {:>6} {:>9} {:>8} {:>7} {:>11} {:>11} {:>11} {:>11}",
        "MiB",
        "method",
        "dump ms",
        "MB/s",
        "ratio",
        "lazy resume",
        "lazy all",
        "eager res.",
        "eager all"
    );
    for mib in env_list("CRAC_BENCH_SIZES", "256,1024") {
        for method in ["none", "lz4", "zstd"] {
            let image = dir.join(format!("{mib}-{method}"));
            let d = dump(&image, mib, method);
            let (data, file) = data_bytes(&image);
            let mut lazy = (Vec::new(), Vec::new());
            let mut eager = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (r, a) = restore(&image, false);
                lazy.0.push(r);
                lazy.1.push(a);
                let (r, a) = restore(&image, true);
                eager.0.push(r);
                eager.1.push(a);
            }
            println!(
                "{:>6} {:>6} {:>9.0} {:>8.0} {:>7.3} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
                mib,
                method,
                ms(d),
                data as f64 / 1e6 / d.as_secs_f64(),
                file as f64 / data.max(1) as f64,
                ms(median(lazy.0)),
                ms(median(lazy.1)),
                ms(median(eager.0)),
                ms(median(eager.1)),
            );
            let _ = std::fs::remove_dir_all(&image);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
