//! Benchmark payload checkpointed from outside, by `crac checkpoint PID`
//! (with `CRAC_CHECKPOINT_TO`) or by CRIU, the same program for both:
//!
//! ```text
//! benchload MIB STATUS_FILE [MAPS [THREADS]]
//! ```
//!
//! It fills MIB MiB of heap with xorshift64 data, makes MAPS one-page
//! mappings (alternating protections, so none merge; each holds its index)
//! and THREADS - 1 more threads parked forever, writes "ready PID\n" to
//! STATUS_FILE and loops: sleep 1 ms, then handle requests (the protocol of
//! the shared CRIU bench's payload.c):
//!
//! * SIGUSR1: check the heap data and every mapping against the values taken
//!   at start; write "ok\ndone UNIX_NS\n" or "BAD\ndone UNIX_NS\n" to
//!   STATUS_FILE.verify.
//! * SIGUSR2: write "gap MAX_US ITERATIONS\n" to STATUS_FILE.gap: the longest
//!   time between two iterations of the loop since the last SIGUSR2 (what a
//!   live checkpoint pause looks like from inside), then start over.
//!
//! Files are written under a temporary name and renamed; none stays open
//! between requests (a checkpoint may come at any time).
#![allow(unsafe_code)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static VERIFY: AtomicBool = AtomicBool::new(false);
static GAP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    VERIFY.store(true, Ordering::SeqCst);
}

extern "C" fn on_usr2(_: libc::c_int) {
    GAP.store(true, Ordering::SeqCst);
}

fn handle(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    let r = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
    assert_eq!(r, 0, "sigaction: {}", std::io::Error::last_os_error());
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Writes `text` to `path` atomically (temporary name, then rename).
fn write_file(path: &str, text: &str) {
    let tmp = format!("{path}.tmp.{}", std::process::id());
    let r = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn checksum(p: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &w) in p.iter().enumerate() {
        h ^= w.wrapping_add(i as u64);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn main() {
    crac::init();
    let args: Vec<String> = std::env::args().collect();
    if !(3..=5).contains(&args.len()) {
        eprintln!("usage: {} MIB STATUS_FILE [MAPS [THREADS]]", args[0]);
        std::process::exit(2);
    }
    let mib: usize = args[1].parse().expect("MIB");
    let status = args[2].clone();
    let maps: usize = args.get(3).map_or(0, |a| a.parse().expect("MAPS"));
    let threads: usize = args.get(4).map_or(1, |a| a.parse().expect("THREADS"));
    let verify_path = format!("{status}.verify");
    let gap_path = format!("{status}.gap");

    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let buf: Vec<u64> = (0..mib * 131072)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    let want = checksum(std::hint::black_box(&buf));
    let pages = payload::many_mappings(maps);
    for _ in 1..threads {
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(|| loop {
                std::thread::park();
            })
            .expect("spawn a thread");
    }
    handle(libc::SIGUSR1, on_usr1);
    handle(libc::SIGUSR2, on_usr2);
    write_file(&status, &format!("ready {}\n", std::process::id()));

    let mut last = Instant::now();
    let mut max_gap = Duration::ZERO;
    let mut iterations = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(1));
        let now = Instant::now();
        max_gap = max_gap.max(now - last);
        last = now;
        iterations += 1;
        let mut worked = false;
        if VERIFY.swap(false, Ordering::SeqCst) {
            let ok = checksum(std::hint::black_box(&buf)) == want
                && pages.iter().enumerate().all(|(i, p)| p.get() == i as u64);
            let verdict = if ok { "ok" } else { "BAD" };
            write_file(&verify_path, &format!("{verdict}\ndone {}\n", unix_ns()));
            worked = true;
        }
        if GAP.swap(false, Ordering::SeqCst) {
            let line = format!("gap {} {iterations}\n", max_gap.as_micros());
            write_file(&gap_path, &line);
            max_gap = Duration::ZERO;
            iterations = 0;
            worked = true;
        }
        // The payload's own work is not a pause.
        if worked {
            last = Instant::now();
        }
    }
}
