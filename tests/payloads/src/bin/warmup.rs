//! The README's demo: a service that warms up, then serves; checkpoint it
//! from another shell with `crac checkpoint PID` and restore it warm.
//!
//! `warmup [--mib N] [--open FILE] [--requests N]`
//!
//! * builds a cache of about N MiB (default 256) by hashing, which takes a
//!   few seconds in a release build, and prints `warm after X ms`;
//! * then answers one request a second from the cache, printing
//!   `request K: ...`; with `--requests N` it exits after N of them;
//! * registers a resource: `before_checkpoint` prints `checkpointing after K
//!   requests`, `after_restore` prints `restored in X ms` (from the start of
//!   `crac restore` to the process running again) and the value of
//!   `CRAC_DEMO_GREETING` if `crac restore --env` set it, or `kept running
//!   after the checkpoint` in a process that was not restored;
//! * `--open FILE` keeps FILE open and deletes it (a file still at its path
//!   would be carried), so a checkpoint fails naming it and the service
//!   goes on.
//!
//! It must be started with checkpoints configured, e.g.
//! `crac run --checkpoint-to /tmp/warm -- warmup`.
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crac::{BoxError, Context, Resource};
use payload::slow_hash;

/// The service's resource: reports the checkpoint and the restore.
struct Service {
    requests: Arc<AtomicU64>,
    warmup_ms: u128,
    /// Restores counted before the checkpoint.
    restores: AtomicU64,
}

impl Resource for Service {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        self.restores.store(
            u64::from(crac::restore_info().restore_count),
            Ordering::SeqCst,
        );
        println!(
            "checkpointing after {} requests",
            self.requests.load(Ordering::SeqCst)
        );
        Ok(())
    }

    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        let info = crac::restore_info();
        if u64::from(info.restore_count) == self.restores.load(Ordering::SeqCst) {
            println!("kept running after the checkpoint");
            return Ok(());
        }
        if let (Some(started), Some(resumed)) = (info.restore_started, info.restore_time) {
            let took = resumed.duration_since(started).unwrap_or_default();
            println!(
                "restored in {:.1} ms (warm-up took {} ms)",
                took.as_secs_f64() * 1000.0,
                self.warmup_ms
            );
        }
        if let Ok(greeting) = std::env::var("CRAC_DEMO_GREETING") {
            println!("greeting: {greeting}");
        }
        Ok(())
    }
}

fn main() {
    crac::init();
    let mut mib: u64 = 256;
    let mut open = None;
    let mut max_requests = u64::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("option needs a value");
        match arg.as_str() {
            "--mib" => mib = value().parse().expect("--mib takes a number"),
            "--open" => open = Some(value()),
            "--requests" => max_requests = value().parse().expect("--requests takes a number"),
            other => panic!("usage: warmup [--mib N] [--open FILE] [--requests N] (got {other:?})"),
        }
    }
    let _kept_open = open.map(|path| {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .expect("open the --open file");
        std::fs::remove_file(&path).expect("delete the --open file");
        f
    });

    println!("PID {}", std::process::id());
    let start = Instant::now();
    // A HashMap<u64, u64> takes about 24 bytes per entry at this size.
    let entries = mib * (1 << 20) / 24;
    let mut cache: HashMap<u64, u64> = HashMap::with_capacity(entries as usize);
    for k in 0..entries {
        cache.insert(k, slow_hash(k));
    }
    let warmup_ms = start.elapsed().as_millis();
    println!("warm after {warmup_ms} ms ({entries} entries, about {mib} MiB)");

    let requests = Arc::new(AtomicU64::new(0));
    let service = Arc::new(Service {
        requests: Arc::clone(&requests),
        warmup_ms,
        restores: AtomicU64::new(0),
    });
    crac::global_context().register(service.clone());
    println!("serving");
    let mut k = 0x9e37_79b9_u64;
    while requests.load(Ordering::SeqCst) < max_requests {
        k = slow_hash(k) % entries.max(1);
        let t = Instant::now();
        let answer = cache.get(&k).copied().unwrap_or(0);
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        println!(
            "request {n}: f({k}) = {answer:#018x} in {} µs",
            t.elapsed().as_micros()
        );
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(service);
}
