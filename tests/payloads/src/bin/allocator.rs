//! Allocator state must survive: threads allocate and free small and
//! mmap-sized blocks before the checkpoint and go on after restore, checking
//! every block's contents before freeing it.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn check(buf: &[u8], seed: u64) -> bool {
    let mut x = seed | 1;
    buf.iter().all(|&b| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b == x as u8
    })
}

fn worker(id: u64, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>, bad: Arc<AtomicU64>) {
    let mut live: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut n = id * 1_000_003;
    while !stop.load(Ordering::Relaxed) {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = match n % 100 {
            0..=79 => (n >> 20) as usize % 512 + 1,
            80..=97 => (n >> 20) as usize % 65536 + 512,
            _ => (n >> 20) as usize % (4 << 20) + (256 << 10), // mmap-sized
        };
        let mut v = vec![0u8; size];
        fill(&mut v, n);
        live.push((v, n));
        if live.len() > 64 || n.is_multiple_of(3) {
            let i = (n as usize >> 8) % live.len();
            let (v, seed) = live.swap_remove(i);
            if !check(&v, seed) {
                bad.fetch_add(1, Ordering::Relaxed);
            }
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
    for (v, seed) in live {
        if !check(&v, seed) {
            bad.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    crac::init();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (s, o, b) = (stop.clone(), ops.clone(), bad.clone());
            std::thread::spawn(move || worker(i + 1, s, o, b))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "pre-checkpoint PID: {} ops: {}",
        std::process::id(),
        ops.load(Ordering::Relaxed)
    );
    let r = crac::checkpoint_restore();
    println!("post-restore PID: {} result: {r:?}", std::process::id());
    let before = ops.load(Ordering::Relaxed);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let after = ops.load(Ordering::Relaxed);
    let bad = bad.load(Ordering::Relaxed);
    println!(
        "ops after restore: {} corrupt blocks: {bad}",
        after - before
    );
    if r.is_err() || bad != 0 || after == before {
        std::process::exit(1);
    }
    println!("ALLOCATOR OK");
}
