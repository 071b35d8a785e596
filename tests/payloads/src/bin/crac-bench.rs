//! Side-by-side measurements of the native engine (and CRIU, when `CRIU`
//! names a CRIU binary), in one run:
//!
//! ```text
//! cargo build --release --workspace && target/release/crac-bench
//! ```
//!
//! Sections (`CRAC_BENCH_SECTIONS`, comma-separated; default all):
//!
//! * `restore`: per size (`CRAC_BENCH_SIZES`, MiB, default `16,256,1024`),
//!   medians of `CRAC_BENCH_RUNS` (default 5) restores of one image of the
//!   `benchload` payload: crac lazy (default) and `--eager` until `crac
//!   restore` reports "restored process", `--detach` and `criu restore -d`
//!   until the command exits; `data`: until the restored program has checked
//!   all its memory after a SIGUSR1 sent at once (the fair comparison across
//!   modes). A restore counts only if the program finds its data intact.
//!   Floors, for scale: spawning `/bin/true` and `crac --version` and
//!   waiting for them; `copy`: reading the image's page file (cached) into
//!   new memory on two threads, what any eager restore must do at least.
//! * `live`: the longest gap in the payload's 1 ms loop during `crac
//!   checkpoint PID --leave-running` / `criu dump --leave-running`, and the
//!   command's time; `idle`: the same window without a dump; `crac stop`:
//!   how long crac says the threads were stopped (from the stop until the
//!   copy-on-write copy was made), which the gap shows plus whatever else
//!   kept the loop from running (`idle`).
//! * `dump`: dump throughput of a `CRAC_BENCH_DUMP_MIB` (default: the
//!   largest size) image against `dd oflag=direct conv=fsync` to the same
//!   directory; crac's dump includes its fsyncs, CRIU's does not (`+sync`).
//! * `scale`: dump and restore time against the number of one-page mappings
//!   (`CRAC_BENCH_MAPS`, default `100,1000,10000,50000`) and of threads
//!   (`CRAC_BENCH_THREADS`, default `1,64,512`) with a `CRAC_BENCH_SCALE_MIB`
//!   (default 4) heap, medians of `CRAC_BENCH_SCALE_RUNS` (default 3)
//!   dump+restore cycles; `/unit`: the cost of one more mapping or thread
//!   between a row and the one before it.
//! * `inproc`: the in-process `memhog` payload (it checkpoints itself):
//!   `resumed`: from the spawn of `crac restore` to the restored program's
//!   first line, in three parts: `to crac` (exec, loading, argument
//!   parsing, until the restore starts inside `crac`), `in-crac` (until the
//!   restorer resumed the process), `to line` (until the program's first
//!   line); then cold start against restore for a program that warms up
//!   for 3 s.
//!
//! The image directory is `CRAC_BENCH_DIR` (default the temp dir); it is
//! removed at the end. Timings vary on this VM: compare only numbers from
//! the same run.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use payload::now_ns;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
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

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{key}: bad number {s:?}"))
        })
        .collect()
}

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}: bad number {v:?}"))
    })
}

struct Cfg {
    dir: PathBuf,
    sizes: Vec<usize>,
    runs: usize,
    criu: Option<PathBuf>,
    crac: PathBuf,
    payload: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Crac,
    Criu,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Lazy,
    Eager,
    Detach,
    Criu,
}

/// A payload process this bench started (and must reap).
struct Running {
    pid: u32,
    child: Child,
    status: PathBuf,
}

/// Starts `benchload` in its own session with stdio on /dev/null (so CRIU
/// needs no `--shell-job`) and waits for its "ready" line.
fn start(cfg: &Cfg, e: Engine, img: &Path, mib: usize, maps: usize, threads: usize) -> Running {
    let status = cfg.dir.join(format!("status-{}", now_ns()));
    let mut cmd = Command::new(&cfg.payload);
    cmd.arg(mib.to_string())
        .arg(&status)
        .arg(maps.to_string())
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("CRAC_CHECKPOINT_TO");
    if e == Engine::Crac {
        cmd.env("CRAC_CHECKPOINT_TO", img);
    }
    let setsid = || {
        // SAFETY: changes only the child's session.
        unsafe { libc::setsid() };
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec and only calls setsid,
    // which is async-signal-safe and allocates nothing.
    unsafe { std::os::unix::process::CommandExt::pre_exec(&mut cmd, setsid) };
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    STARTED.lock().unwrap().push(pid);
    let line = wait_file(&status, Duration::from_secs(600));
    assert_eq!(line.trim(), format!("ready {pid}"), "payload did not start");
    Running { pid, child, status }
}

/// Every payload PID started (restores reuse them): what a failed run ends.
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Waits for `path` to exist and returns its text.
fn wait_file(path: &Path, limit: Duration) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(t.elapsed() < limit, "no {} after {limit:?}", path.display());
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Sends `sig` and returns the payload's answer in `STATUS.suffix`.
fn ask(pid: u32, status: &Path, suffix: &str, sig: i32) -> String {
    let f = PathBuf::from(format!("{}.{suffix}", status.display()));
    let _ = std::fs::remove_file(&f);
    // SAFETY: a signal to a process this bench started or restored.
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill {pid}: {}", std::io::Error::last_os_error());
    wait_file(&f, Duration::from_secs(120))
}

/// Asks the payload to check all its memory; returns when it finished
/// (unix ns), panicking if the data is not intact.
fn verify(pid: u32, status: &Path) -> u128 {
    let text = ask(pid, status, "verify", libc::SIGUSR1);
    assert!(text.starts_with("ok\n"), "process {pid}: data BAD: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix("done ").and_then(|v| v.parse().ok()))
        .expect("done line")
}

fn gap_us(pid: u32, status: &Path) -> f64 {
    let text = ask(pid, status, "gap", libc::SIGUSR2);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn kill(pid: u32, payload: &Path) {
    // Only our payload: guards against a reused PID.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if exe.as_deref() == Some(payload) {
        // SAFETY: SIGKILL to our own payload process.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// Reaps `pid`, a child of ours (the bench is a subreaper, so restored
/// processes whose restorer left become ours).
fn reap(pid: u32) {
    let mut st = 0;
    // SAFETY: waits for one of our children; `st` is a valid int.
    let r = unsafe { libc::waitpid(pid as i32, &mut st, 0) };
    if r < 0 {
        while Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Where commands write their output: a restored process may inherit the
/// restore command's stdout and stderr, so no pipe would ever close.
static LOG_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn run_ok(cmd: &mut Command, what: &str) -> Duration {
    let log = LOG_DIR.get().unwrap().join("cmd.log");
    let f = std::fs::File::create(&log).unwrap();
    let t = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    let d = t.elapsed();
    assert!(
        status.success(),
        "{what} failed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    d
}

fn criu_log(img: &Path, what: &str) -> PathBuf {
    img.with_extension(format!("{what}.log"))
}

/// Checkpoints `p` into `img` (leaving it running if `live`); returns the
/// command's time. Without `live` the process is gone afterwards.
fn dump(cfg: &Cfg, e: Engine, p: &mut Running, img: &Path, live: bool) -> Duration {
    let d = match e {
        Engine::Crac => {
            let mut c = Command::new(&cfg.crac);
            c.arg("checkpoint").arg(p.pid.to_string());
            if live {
                c.arg("--leave-running");
            }
            run_ok(&mut c, "crac checkpoint")
        }
        Engine::Criu => {
            let _ = std::fs::remove_dir_all(img);
            std::fs::create_dir_all(img).unwrap();
            let mut c = Command::new(cfg.criu.as_ref().unwrap());
            c.args(["dump", "-t", &p.pid.to_string(), "-D"])
                .arg(img)
                .arg("-o")
                .arg(criu_log(img, "dump"));
            if live {
                c.arg("--leave-running");
            }
            run_ok(&mut c, "criu dump")
        }
    };
    if !live {
        let _ = p.child.wait();
    }
    d
}

/// Reads every file of the image once, so every restore reads it from the
/// page cache (crac writes its page file with O_DIRECT).
fn warm(img: &Path) {
    for f in std::fs::read_dir(img).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            let mut buf = vec![0u8; 1 << 20];
            let mut file = std::fs::File::open(path).unwrap();
            while file.read(&mut buf).unwrap() > 0 {}
        }
    }
}

fn image_bytes(img: &Path) -> u64 {
    std::fs::read_dir(img)
        .unwrap()
        .filter_map(|f| f.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

struct Restored {
    /// Command start → process resumed (attached crac: its "restored
    /// process" line; --detach, CRIU -d: the command exited).
    resumed: f64,
    /// Command start → the program has checked all its memory.
    data: f64,
}

/// Restores `img` once in `mode`, checks the program's data, ends it.
fn restore(cfg: &Cfg, mode: Mode, img: &Path, pid: u32, status: &Path) -> Restored {
    let t0 = now_ns();
    let t = Instant::now();
    let mut attached = None;
    match mode {
        Mode::Criu => {
            let mut c = Command::new(cfg.criu.as_ref().unwrap());
            c.args(["restore", "-d", "-D"])
                .arg(img)
                .arg("-o")
                .arg(criu_log(img, "restore"));
            run_ok(&mut c, "criu restore");
        }
        Mode::Detach => {
            run_ok(
                Command::new(&cfg.crac)
                    .args(["restore", "--detach"])
                    .arg(img),
                "crac restore --detach",
            );
        }
        Mode::Lazy | Mode::Eager => {
            let mut c = Command::new(&cfg.crac);
            c.arg("restore");
            if mode == Mode::Eager {
                c.arg("--eager");
            }
            let mut child = c
                .arg(img)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut err = BufReader::new(child.stderr.take().unwrap());
            let mut seen = String::new();
            loop {
                let mut line = String::new();
                if err.read_line(&mut line).unwrap() == 0 {
                    panic!("crac restore failed: {seen}");
                }
                seen.push_str(&line);
                if line.contains("restored process") {
                    break;
                }
            }
            attached = Some((child, err));
        }
    }
    let resumed = ms(t.elapsed());
    let done = verify(pid, status);
    kill(pid, &cfg.payload);
    match attached {
        Some((mut child, mut err)) => {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            let _ = child.wait();
            // crac restore reaped it; a zombie of PID 1 would be gone too.
            reap(pid);
        }
        None => reap(pid),
    }
    Restored {
        resumed,
        data: (done.saturating_sub(t0)) as f64 / 1e6,
    }
}

fn engines(cfg: &Cfg) -> Vec<Engine> {
    if cfg.criu.is_some() {
        vec![Engine::Crac, Engine::Criu]
    } else {
        vec![Engine::Crac]
    }
}

fn fmt(v: f64, w: usize, prec: usize) -> String {
    if v.is_nan() {
        format!("{:>w$}", "-")
    } else {
        format!("{v:>w$.prec$}")
    }
}

/// Median time to spawn `program` with `args` and wait for its exit: what
/// starting any command costs here.
fn spawn_floor(program: &Path, args: &[&str]) -> f64 {
    median(
        (0..21)
            .map(|_| {
                let t = Instant::now();
                let st = Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success(), "{}", program.display());
                ms(t.elapsed())
            })
            .collect(),
    )
}

/// Median time to read `pages.crac` of `img` (in the page cache) into new
/// anonymous memory on two threads, 1 MiB per read: the copy any eager
/// restore makes, with nothing else (no mappings, no checks).
fn copy_floor(img: &Path) -> f64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(img.join("pages.crac")).unwrap();
    let len = usize::try_from(f.metadata().unwrap().len()).unwrap();
    median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let half = len / 2 / 4096 * 4096;
                std::thread::scope(|s| {
                    for (from, to) in [(0, half), (half, len)] {
                        let f = &f;
                        s.spawn(move || {
                            // Fresh zero pages, faulted in by the reads.
                            let mut buf = vec![0u8; to - from];
                            for (i, chunk) in buf.chunks_mut(1 << 20).enumerate() {
                                f.read_exact_at(chunk, (from + (i << 20)) as u64).unwrap();
                            }
                            std::hint::black_box(&buf);
                        });
                    }
                });
                ms(t.elapsed())
            })
            .collect(),
    )
}

fn section_restore(cfg: &Cfg) {
    println!(
        "\n== restore: medians of {} restores, ms (ratios crac/CRIU) ==",
        cfg.runs
    );
    println!(
        "floors: spawn and exit of /bin/true {:.2} ms, of `crac --version` {:.2} ms",
        spawn_floor(Path::new("/bin/true"), &[]),
        spawn_floor(&cfg.crac, &["--version"]),
    );
    println!(
        "{:>8} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}",
        "size",
        "crac dump",
        "criu dump",
        "lazy",
        "lazy data",
        "eager",
        "copy",
        "detach",
        "det data",
        "criu -d",
        "criu data",
        "lazy/c",
        "eagr/c",
        "det/c",
        "data l/c"
    );
    for &mib in &cfg.sizes {
        let mut row: Vec<(Mode, Vec<Restored>)> = Vec::new();
        let mut dumps = [f64::NAN; 2];
        let mut copy = f64::NAN;
        for e in engines(cfg) {
            let img = cfg.dir.join(format!("img-{mib}"));
            let _ = std::fs::remove_dir_all(&img);
            let mut p = start(cfg, e, &img, mib, 0, 1);
            dumps[e as usize] = ms(dump(cfg, e, &mut p, &img, false));
            warm(&img);
            if e == Engine::Crac {
                copy = copy_floor(&img);
            }
            let modes: &[Mode] = match e {
                Engine::Crac => &[Mode::Lazy, Mode::Eager, Mode::Detach],
                Engine::Criu => &[Mode::Criu],
            };
            for &m in modes {
                row.push((m, Vec::new()));
            }
            for _ in 0..cfg.runs {
                for &m in modes {
                    let r = restore(cfg, m, &img, p.pid, &p.status);
                    row.iter_mut().find(|(x, _)| *x == m).unwrap().1.push(r);
                }
            }
            let _ = std::fs::remove_dir_all(&img);
            for f in ["dump", "restore"] {
                let _ = std::fs::remove_file(criu_log(&img, f));
            }
        }
        let med = |m: Mode, data: bool| {
            row.iter()
                .find(|(x, _)| *x == m)
                .map_or(f64::NAN, |(_, v)| {
                    median(
                        v.iter()
                            .map(|r| if data { r.data } else { r.resumed })
                            .collect(),
                    )
                })
        };
        let criu = med(Mode::Criu, false);
        let criu_data = med(Mode::Criu, true);
        println!(
            "{:>5}MiB {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
            mib,
            fmt(dumps[0], 9, 1),
            fmt(dumps[1], 9, 1),
            fmt(med(Mode::Lazy, false), 8, 2),
            fmt(med(Mode::Lazy, true), 9, 2),
            fmt(med(Mode::Eager, false), 8, 2),
            fmt(copy, 8, 2),
            fmt(med(Mode::Detach, false), 8, 2),
            fmt(med(Mode::Detach, true), 8, 2),
            fmt(criu, 9, 2),
            fmt(criu_data, 9, 2),
            fmt(med(Mode::Lazy, false) / criu, 7, 2),
            fmt(med(Mode::Eager, false) / criu, 7, 2),
            fmt(med(Mode::Detach, false) / criu, 7, 2),
            fmt(med(Mode::Lazy, true) / criu_data, 8, 2),
        );
    }
}

fn section_live(cfg: &Cfg) {
    println!(
        "\n== live checkpoint (--leave-running): medians of {}, ms; gap = longest stop of a 1 ms loop ==",
        cfg.runs
    );
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "size", "crac stop", "crac gap", "crac cmd", "criu gap", "criu cmd", "gap c/c", "idle gap"
    );
    for &mib in &cfg.sizes {
        let mut gaps = [f64::NAN; 2];
        let mut cmds = [f64::NAN; 2];
        let mut idle = Vec::new();
        let mut stops = Vec::new();
        for e in engines(cfg) {
            let img = cfg.dir.join(format!("live-{mib}"));
            let _ = std::fs::remove_dir_all(&img);
            let mut p = start(cfg, e, &img, mib, 0, 1);
            let (mut g, mut c) = (Vec::new(), Vec::new());
            for _ in 0..cfg.runs {
                gap_us(p.pid, &p.status);
                std::thread::sleep(Duration::from_millis(100));
                let t = Instant::now();
                let d = dump(cfg, e, &mut p, &img, true);
                let window = t.elapsed();
                if e == Engine::Crac {
                    stops.push(reported_stop());
                }
                std::thread::sleep(Duration::from_millis(100));
                g.push(gap_us(p.pid, &p.status) / 1e3);
                c.push(ms(d));
                // The same window without a dump: what the machine alone does.
                std::thread::sleep(window + Duration::from_millis(200));
                idle.push(gap_us(p.pid, &p.status) / 1e3);
            }
            verify(p.pid, &p.status);
            kill(p.pid, &cfg.payload);
            let _ = p.child.wait();
            let _ = std::fs::remove_dir_all(&img);
            for f in ["dump", "restore"] {
                let _ = std::fs::remove_file(criu_log(&img, f));
            }
            gaps[e as usize] = median(g);
            cmds[e as usize] = median(c);
        }
        println!(
            "{:>5}MiB {} {} {} {} {} {} {}",
            mib,
            fmt(median(stops), 9, 2),
            fmt(gaps[0], 9, 2),
            fmt(cmds[0], 9, 1),
            fmt(gaps[1], 9, 2),
            fmt(cmds[1], 9, 1),
            fmt(gaps[0] / gaps[1], 8, 2),
            fmt(median(idle), 8, 2),
        );
    }
}

/// How long `crac checkpoint --leave-running` said the threads were stopped
/// (its output is in the command log), in ms.
fn reported_stop() -> f64 {
    let log = std::fs::read_to_string(LOG_DIR.get().unwrap().join("cmd.log")).unwrap();
    let at = log
        .find("stopped for ")
        .unwrap_or_else(|| panic!("no pause reported: {log}"));
    let mut words = log[at + "stopped for ".len()..].split([' ', ')']);
    let v: f64 = words.next().unwrap().parse().unwrap();
    match words.next() {
        Some("µs") => v / 1e3,
        Some("ms") => v,
        Some("s") => v * 1e3,
        unit => panic!("unit {unit:?} in {log}"),
    }
}

fn section_dump(cfg: &Cfg) {
    let mib = env_num(
        "CRAC_BENCH_DUMP_MIB",
        cfg.sizes.iter().copied().max().unwrap_or(1024),
    );
    let n = cfg.runs.clamp(1, 3);
    println!("\n== dump throughput, {mib} MiB payload, medians of {n}, MB/s ==");
    // O_DIRECT sequential write of the same amount to the same directory.
    let f = cfg.dir.join("dd.out");
    let dd: Vec<f64> = (0..n)
        .map(|_| {
            let d = run_ok(
                Command::new("dd").args([
                    "if=/dev/zero".to_string(),
                    format!("of={}", f.display()),
                    "bs=4M".into(),
                    format!("count={}", mib.div_ceil(4)),
                    "oflag=direct".into(),
                    "conv=fsync".into(),
                    "status=none".into(),
                ]),
                "dd",
            );
            let _ = std::fs::remove_file(&f);
            (mib.div_ceil(4) * 4 * (1 << 20)) as f64 / d.as_secs_f64() / 1e6
        })
        .collect();
    let dd = median(dd);
    println!(
        "{:>8} {:>9} {:>11} {:>9} {:>9} {:>11} {:>9}",
        "engine", "dump ms", "image MiB", "MB/s", "of dd", "+sync ms", "MB/s"
    );
    println!(
        "{:>8} {:>9} {:>11} {} {:>9}",
        "dd",
        "",
        "",
        fmt(dd, 9, 0),
        "1.00"
    );
    for e in engines(cfg) {
        let (mut t, mut ts, mut bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..n {
            let img = cfg.dir.join(format!("tp-{mib}"));
            let _ = std::fs::remove_dir_all(&img);
            let mut p = start(cfg, e, &img, mib, 0, 1);
            let d = dump(cfg, e, &mut p, &img, false);
            // CRIU does not sync its images; crac's dump includes fsync.
            let s = run_ok(&mut Command::new("sync"), "sync");
            bytes = image_bytes(&img);
            t.push(ms(d));
            ts.push(ms(d + s));
            let _ = std::fs::remove_dir_all(&img);
            let _ = std::fs::remove_file(criu_log(&img, "dump"));
        }
        let (t, ts) = (median(t), median(ts));
        let rate = bytes as f64 / (t / 1e3) / 1e6;
        println!(
            "{:>8} {} {:>11} {} {} {} {}",
            if e == Engine::Crac { "crac" } else { "criu" },
            fmt(t, 9, 1),
            bytes >> 20,
            fmt(rate, 9, 0),
            fmt(rate / dd, 9, 2),
            fmt(ts, 11, 1),
            fmt(bytes as f64 / (ts / 1e3) / 1e6, 9, 0),
        );
    }
}

fn section_scale(cfg: &Cfg) {
    let runs = env_num("CRAC_BENCH_SCALE_RUNS", 3);
    let mib = env_num("CRAC_BENCH_SCALE_MIB", 4);
    for (what, list) in [
        (
            "mappings",
            env_list("CRAC_BENCH_MAPS", "100,1000,10000,50000"),
        ),
        ("threads", env_list("CRAC_BENCH_THREADS", "1,64,512")),
    ] {
        if list.is_empty() {
            continue;
        }
        println!(
            "\n== scaling with {what} ({mib} MiB heap): medians of {runs}, ms; /unit: µs per extra {what} since the row before ==",
        );
        println!(
            "{:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
            "n",
            "crac dump",
            "lazy",
            "detach",
            "criu dump",
            "criu -d",
            "dump/u",
            "det/u",
            "cdump/u",
            "c-d/u",
            "dump c/c",
            "det c/c"
        );
        let mut prev: Option<(usize, [f64; 5])> = None;
        for &n in &list {
            let (maps, threads) = if what == "mappings" { (n, 1) } else { (0, n) };
            let mut v: [Vec<f64>; 5] = Default::default();
            for _ in 0..runs {
                for e in engines(cfg) {
                    let img = cfg.dir.join(format!("scale-{n}"));
                    let _ = std::fs::remove_dir_all(&img);
                    let mut p = start(cfg, e, &img, mib, maps, threads);
                    let d = ms(dump(cfg, e, &mut p, &img, false));
                    warm(&img);
                    match e {
                        Engine::Crac => {
                            v[0].push(d);
                            v[1].push(restore(cfg, Mode::Lazy, &img, p.pid, &p.status).resumed);
                            v[2].push(restore(cfg, Mode::Detach, &img, p.pid, &p.status).resumed);
                        }
                        Engine::Criu => {
                            v[3].push(d);
                            v[4].push(restore(cfg, Mode::Criu, &img, p.pid, &p.status).resumed);
                        }
                    }
                    let _ = std::fs::remove_dir_all(&img);
                    for f in ["dump", "restore"] {
                        let _ = std::fs::remove_file(criu_log(&img, f));
                    }
                }
            }
            let m = v.map(median);
            let per =
                |i: usize| prev.map_or(f64::NAN, |(pn, pm)| (m[i] - pm[i]) * 1e3 / (n - pn) as f64);
            println!(
                "{:>7} {} {} {} {} {} {} {} {} {} {} {}",
                n,
                fmt(m[0], 9, 1),
                fmt(m[1], 8, 1),
                fmt(m[2], 8, 1),
                fmt(m[3], 9, 1),
                fmt(m[4], 8, 1),
                fmt(per(0), 8, 2),
                fmt(per(2), 8, 2),
                fmt(per(3), 8, 2),
                fmt(per(4), 8, 2),
                fmt(m[0] / m[3], 8, 2),
                fmt(m[2] / m[4], 7, 2),
            );
            prev = Some((n, m));
        }
    }
}

fn main() {
    let sections = std::env::var("CRAC_BENCH_SECTIONS")
        .unwrap_or_else(|_| "restore,live,dump,scale,inproc".into());
    let on = |s: &str| sections.split(',').any(|x| x.trim() == s);
    let base = std::env::var_os("CRAC_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("crac-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let criu = std::env::var_os("CRIU").map(PathBuf::from);
    if let Some(c) = &criu {
        assert!(c.exists(), "CRIU={} does not exist", c.display());
    }
    LOG_DIR.set(dir.canonicalize().unwrap()).unwrap();
    let cfg = Cfg {
        dir: dir.canonicalize().unwrap(),
        sizes: env_list("CRAC_BENCH_SIZES", "16,256,1024"),
        runs: env_num("CRAC_BENCH_RUNS", 5).max(1),
        criu,
        crac: sibling("crac"),
        payload: sibling("benchload").canonicalize().unwrap(),
    };
    // Restored processes whose restorer exits (--detach, criu -d) become
    // ours, so they are reaped at once rather than by a slow PID 1.
    // SAFETY: changes only this process's subreaper flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    println!(
        "crac-bench: sizes {:?} MiB, {} runs, CRIU {}",
        cfg.sizes,
        cfg.runs,
        cfg.criu
            .as_ref()
            .map_or("not set".into(), |c| c.display().to_string())
    );
    let result = std::panic::catch_unwind(|| {
        if on("restore") {
            section_restore(&cfg);
        }
        if on("live") {
            section_live(&cfg);
        }
        if on("dump") {
            section_dump(&cfg);
        }
        if on("scale") {
            section_scale(&cfg);
        }
        if on("inproc") {
            inproc::section(&cfg.dir, &cfg.sizes, cfg.runs);
        }
    });
    if result.is_err() {
        // A failed run may leave a payload running: end ours only.
        let pids = STARTED.lock().map(|v| v.clone()).unwrap_or_default();
        for pid in pids {
            kill(pid, &cfg.payload);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if result.is_err() {
        std::process::exit(1);
    }
}

/// The in-process payload (`memhog` checkpoints itself).
mod inproc {
    use super::{median, now_ns, sibling};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

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
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    struct Dump {
        image: PathBuf,
        pid: u32,
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
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "memhog failed:\n{text}");
        let ready = field(&text, "ready ");
        wait_gone(pid);
        Dump {
            image,
            pid,
            cold_ms: (ready - start) as f64 / 1e6,
        }
    }

    /// One lazy restore's spans (ms): `crac restore` spawned → the restore
    /// starts inside it (exec, loading, argument parsing); → the restorer
    /// resumed the process (`in-crac`); → the program's first line; and
    /// the whole span.
    fn restore_once(d: &Dump) -> [f64; 4] {
        let start = now_ns();
        let out = Command::new(sibling("crac"))
            .arg("restore")
            .arg(&d.image)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("data ok: true"),
            "restore failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_gone(d.pid);
        let started = field(&text, "restore_started ");
        let span = field(&text, "resume_span ");
        let line = field(&text, "restored ");
        let ms = |ns: u128| ns as f64 / 1e6;
        [
            ms(started.saturating_sub(start)),
            ms(span),
            ms(line.saturating_sub(started + span)),
            ms(line - start),
        ]
    }

    pub fn section(dir: &Path, sizes: &[usize], runs: usize) {
        println!("\n== in-process payload (memhog), lazy restore: medians of {runs}, ms ==");
        println!(
            "{:>8} {:>8} {:>8} {:>8} {:>8}",
            "size", "to crac", "in-crac", "to line", "resumed"
        );
        for &mib in sizes {
            let d = dump(dir, mib, 0);
            let v: Vec<[f64; 4]> = (0..runs).map(|_| restore_once(&d)).collect();
            let _ = std::fs::remove_dir_all(&d.image);
            let m = |i: usize| median(v.iter().map(|t| t[i]).collect());
            println!(
                "{:>5}MiB {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                mib,
                m(0),
                m(1),
                m(2),
                m(3)
            );
        }
        let d = dump(dir, 64, 3000);
        let m = median((0..runs).map(|_| restore_once(&d)[3]).collect());
        let _ = std::fs::remove_dir_all(&d.image);
        println!(
            "cold start to ready: {:.0} ms; restore to running: {:.1} ms; {:.0}x faster",
            d.cold_ms,
            m,
            d.cold_ms / m
        );
    }
}
