//! Benchmark payload: `memhog MIB [WARMUP_MS [MAPS]]` fills MIB of memory
//! with random data, optionally "warms up" (computes) for WARMUP_MS, makes
//! MAPS one-page mappings (alternating protections, so none merge; each
//! written and checked after restore), prints
//! `ready <unix ns>`, checkpoints (CRAC_CHECKPOINT_TO), and after restore
//! prints `restored <unix ns>` as its first act, checks the data (then
//! prints `checked <unix ns>`) and exits.
use std::time::{Duration, Instant, UNIX_EPOCH};

use payload::now_ns;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

fn main() {
    crac::init();
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(16, |a| a.parse().expect("MIB"));
    let warmup_ms: u64 = args.next().map_or(0, |a| a.parse().expect("WARMUP_MS"));
    let maps: usize = args.next().map_or(0, |a| a.parse().expect("MAPS"));
    let pages = payload::many_mappings(maps);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u64> = (0..mib * 131072)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    let sum = data.iter().fold(0u64, |a, b| a.wrapping_add(*b));
    // Stand-in for a slow start: a CPU-bound warm-up of fixed length.
    let t = Instant::now();
    let mut acc = 0u64;
    while t.elapsed() < Duration::from_millis(warmup_ms) {
        for i in 0..100_000u64 {
            acc = acc.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
    }
    std::hint::black_box(acc);
    println!("ready {} rss_kib {}", now_ns(), rss_kib());
    println!("checkpoint {}", now_ns());
    let r = crac::checkpoint_restore();
    println!("restored {}", now_ns());
    if let Err(e) = r {
        println!("error: {e}");
        std::process::exit(1);
    }
    // From the start of the restore (after `crac restore` parsed its
    // arguments) to the moment the restorer resumed this process.
    let info = crac::restore_info();
    if let (Some(started), Some(resumed)) = (info.restore_started, info.restore_time) {
        let ns = resumed
            .duration_since(started)
            .unwrap_or_default()
            .as_nanos();
        println!("resume_span {ns}");
        let at = started.duration_since(UNIX_EPOCH).unwrap_or_default();
        println!("restore_started {}", at.as_nanos());
    }
    let ok = data.iter().fold(0u64, |a, b| a.wrapping_add(*b)) == sum
        && pages.iter().enumerate().all(|(i, p)| p.get() == i as u64);
    // Every page read: in a lazy restore, all of it has been loaded.
    println!("checked {}", now_ns());
    println!("data ok: {ok}");
    std::process::exit(if ok { 0 } else { 1 });
}
