//! Dumps itself with the native engine directly (no API layer) and reports.
use std::time::Instant;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: engine_smoke DIR [keep]");
    let keep = std::env::args().nth(2).is_some();
    let data: Vec<u64> = (0..(1u64 << 20))
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    let sum: u64 = data.iter().fold(0, |a, b| a.wrapping_add(*b));
    static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::thread::spawn(|| loop {
        std::thread::sleep(std::time::Duration::from_millis(10));
        TICKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    println!("pre-checkpoint PID: {}", std::process::id());
    let start = Instant::now();
    let r = crac_engine::native::checkpoint(&crac_engine::native::DumpOptions {
        dir: dir.into(),
        leave_running: keep,
        ..Default::default()
    });
    println!("outcome: {r:?} after {:?}", start.elapsed());
    let sum2: u64 = data.iter().fold(0, |a, b| a.wrapping_add(*b));
    println!(
        "post-restore PID: {} checksum ok: {}",
        std::process::id(),
        sum == sum2
    );
    let t0 = TICKS.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t1 = TICKS.load(std::sync::atomic::Ordering::SeqCst);
    println!("ticks advanced: {}", t1 - t0);
    drop(t);
}
