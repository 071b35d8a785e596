//! Side-by-side measurements of the native engine, in one run:
//!
//! ```text
//! cargo build --release --workspace && target/release/crac-bench
//! ```
//!
//! For images of 16 MiB and 1 GiB (override with `CRAC_BENCH_SIZES=16,1024`)
//! it reports dump time and throughput, image size against RSS, and medians
//! of 10 restores, alternating lazy (the default) and `--eager`:
//!
//! * `lazy ms`: from the start of `crac restore` to the first line the
//!   restored program prints; `in-crac`: from the start of the restore
//!   inside `crac` to the restorer resuming the process;
//! * `lazy all ms`: to the moment the program has read every byte of its
//!   data (so all of it was loaded);
//! * `eager ms`: to the first line with `crac restore --eager` (everything
//!   loaded before the resume), and the page data rate that makes;
//!   `eager all ms`: to the moment the program has read all its data.
//!
//! Then cold start against restore for a program that warms up for 3 s.
//! Timings vary on this VM: compare only numbers from the same run.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().join(name);
    assert!(
        p.exists(),
        "{} is missing: cargo build --release --workspace",
        p.display()
    );
    p
}

fn field(text: &str, key: &str) -> u128 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {key:?} in output:\n{text}"))
}

fn wait_gone(pid: u32) {
    while Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

struct Dump {
    image: PathBuf,
    pid: u32,
    ready_to_exit_ms: f64,
    rss: u64,
    image_bytes: u64,
    cold_ms: f64,
}

fn dump(dir: &Path, mib: usize, warmup_ms: u64) -> Dump {
    let image = dir.join(format!("img-{mib}-{warmup_ms}"));
    let _ = std::fs::remove_dir_all(&image);
    let start = now_ns();
    let child = Command::new(sibling("memhog"))
        .args([mib.to_string(), warmup_ms.to_string()])
        .env("CRAC_CHECKPOINT_TO", &image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let end = now_ns();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "memhog failed:\n{text}");
    let ready = field(&text, "ready ");
    let ckpt = field(&text, "checkpoint ");
    let rss = rss_of(&text);
    let image_bytes = ["meta.crac", "pages.crac"]
        .iter()
        .map(|f| std::fs::metadata(image.join(f)).unwrap().len())
        .sum();
    wait_gone(pid);
    Dump {
        image,
        pid,
        ready_to_exit_ms: (end - ckpt) as f64 / 1e6,
        rss,
        image_bytes,
        cold_ms: (ready - start) as f64 / 1e6,
    }
}

fn rss_of(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.split("rss_kib ")
                .nth(1)
                .map(|v| v.trim().parse::<u64>().unwrap() * 1024)
        })
        .unwrap_or(0)
}

/// One restore's timings (ms).
struct Times {
    /// `crac restore` start → the restored program's first line.
    first_line: f64,
    /// Restore start inside `crac` → the restorer resumed the process.
    in_crac: f64,
    /// `crac restore` start → the program has read all its data.
    all_read: f64,
}

/// Restores once (`--eager` if `eager`).
fn restore_once(d: &Dump, eager: bool) -> Times {
    let start = now_ns();
    let mut cmd = Command::new(sibling("crac"));
    cmd.arg("restore");
    if eager {
        cmd.arg("--eager");
    }
    let out = cmd.arg(&d.image).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("data ok: true"),
        "restore failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_gone(d.pid);
    Times {
        first_line: (field(&text, "restored ") - start) as f64 / 1e6,
        in_crac: field(&text, "resume_span ") as f64 / 1e6,
        all_read: (field(&text, "checked ") - start) as f64 / 1e6,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = std::env::var("CRAC_BENCH_SIZES")
        .unwrap_or_else(|_| "16,1024".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let dir = tempfile_dir();
    println!(
        "{:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>8} {:>8} {:>11} {:>9} {:>10} {:>12}",
        "size",
        "rss",
        "image",
        "img/rss",
        "dump ms",
        "dump GB/s",
        "lazy ms",
        "in-crac",
        "lazy all ms",
        "eager ms",
        "eager GB/s",
        "eager all ms",
    );
    for &mib in &sizes {
        let d = dump(&dir, mib, 0);
        let mut lazy = Vec::new();
        let mut eager = Vec::new();
        for _ in 0..10 {
            lazy.push(restore_once(&d, false));
            eager.push(restore_once(&d, true));
        }
        let _ = std::fs::remove_dir_all(&d.image);
        let gb = d.image_bytes as f64 / 1e9;
        let eager_ms = median(eager.iter().map(|t| t.first_line).collect());
        println!(
            "{:>6}MiB {:>6}M {:>6}M {:>7.3} {:>8.1} {:>9.2} {:>8.2} {:>8.2} {:>11.2} {:>9.2} {:>10.2} {:>12.2}",
            mib,
            d.rss >> 20,
            d.image_bytes >> 20,
            d.image_bytes as f64 / d.rss.max(1) as f64,
            d.ready_to_exit_ms,
            gb / (d.ready_to_exit_ms / 1e3),
            median(lazy.iter().map(|t| t.first_line).collect()),
            median(lazy.iter().map(|t| t.in_crac).collect()),
            median(lazy.iter().map(|t| t.all_read).collect()),
            eager_ms,
            gb / (eager_ms / 1e3),
            median(eager.iter().map(|t| t.all_read).collect()),
        );
    }
    // Cold start vs restore of a program that warms up for 3 s.
    let d = dump(&dir, 64, 3000);
    let m = median(
        (0..10)
            .map(|_| restore_once(&d, false).first_line)
            .collect(),
    );
    // Clean up before printing: a closed stdout must not leave images behind.
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "cold start to ready: {:.0} ms; restore to running: {:.1} ms (median of 10); {:.0}x faster",
        d.cold_ms,
        m,
        d.cold_ms / m
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("crac-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
