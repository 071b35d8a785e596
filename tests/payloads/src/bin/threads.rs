//! The multi-threaded payload: at least 8 threads in different states
//! (spinning with live AVX registers, blocked on a condvar, sleeping, blocked
//! reading a pipe fed by another thread, blocked in poll(2) on another, a
//! pool of workers) and N MiB of random data (`threads [MIB]`, default
//! 256). After restore it checks the
//! memory checksum, the registers, the thread set and TIDs, and keeps
//! working for a few seconds. Prints "THREADS OK" and exits 0 on success.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use payload::fail;

static STOP_SPIN: AtomicU64 = AtomicU64::new(0);
static SPINS: AtomicU64 = AtomicU64::new(0);

fn pattern(i: usize) -> [u64; 8] {
    let mut p = [0u64; 8];
    for (j, v) in p.iter_mut().enumerate() {
        *v = 0x0123_4567_89ab_cdef_u64.rotate_left((i * 8 + j) as u32) ^ (i as u64 * 0x1111);
    }
    p
}

/// Spins with 32 ZMM registers (or 16 YMM without AVX-512) holding known
/// values until told to stop, then stores them; returns whether they held.
fn spin_with_vector_registers() -> bool {
    let pats: Vec<[u64; 8]> = (0..32).map(pattern).collect();
    let mut out = vec![[0u64; 8]; 32];
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above); the function reads
        // 32*64 bytes from `pats` and writes as many to `out`.
        unsafe { spin512(pats.as_ptr().cast(), out.as_mut_ptr().cast()) };
        pats == out
    } else {
        // SAFETY: x86-64 hosts of this project have AVX2 (checked at restore);
        // reads/writes 16*32 bytes.
        unsafe { spin256(pats.as_ptr().cast(), out.as_mut_ptr().cast()) };
        (0..16).all(|i| pats[i][..4] == out[i][..4])
    }
}

macro_rules! regs512 {
    ($m:literal) => {
        concat!(
            $m, " zmm0, [{p} + 0*64]\n", $m, " zmm1, [{p} + 1*64]\n", $m, " zmm2, [{p} + 2*64]\n",
            $m, " zmm3, [{p} + 3*64]\n", $m, " zmm4, [{p} + 4*64]\n", $m, " zmm5, [{p} + 5*64]\n",
            $m, " zmm6, [{p} + 6*64]\n", $m, " zmm7, [{p} + 7*64]\n", $m, " zmm8, [{p} + 8*64]\n",
            $m, " zmm9, [{p} + 9*64]\n", $m, " zmm10, [{p} + 10*64]\n", $m, " zmm11, [{p} + 11*64]\n",
            $m, " zmm12, [{p} + 12*64]\n", $m, " zmm13, [{p} + 13*64]\n", $m, " zmm14, [{p} + 14*64]\n",
            $m, " zmm15, [{p} + 15*64]\n", $m, " zmm16, [{p} + 16*64]\n", $m, " zmm17, [{p} + 17*64]\n",
            $m, " zmm18, [{p} + 18*64]\n", $m, " zmm19, [{p} + 19*64]\n", $m, " zmm20, [{p} + 20*64]\n",
            $m, " zmm21, [{p} + 21*64]\n", $m, " zmm22, [{p} + 22*64]\n", $m, " zmm23, [{p} + 23*64]\n",
            $m, " zmm24, [{p} + 24*64]\n", $m, " zmm25, [{p} + 25*64]\n", $m, " zmm26, [{p} + 26*64]\n",
            $m, " zmm27, [{p} + 27*64]\n", $m, " zmm28, [{p} + 28*64]\n", $m, " zmm29, [{p} + 29*64]\n",
            $m, " zmm30, [{p} + 30*64]\n", $m, " zmm31, [{p} + 31*64]\n",
        )
    };
}

#[target_feature(enable = "avx512f")]
unsafe fn spin512(src: *const u8, dst: *mut u8) {
    // SAFETY: loads 32 registers from `src`, spins until STOP_SPIN is set,
    // counting in SPINS, then stores the registers to `dst` (both 2 KiB).
    unsafe {
        std::arch::asm!(
            regs512!("vmovdqu64"),
            "2:",
            "lock inc qword ptr [{n}]",
            "cmp qword ptr [{f}], 0",
            "je 2b",
            "mov {p}, {d}",
            // store: operands reversed
            "vmovdqu64 [{p} + 0*64], zmm0", "vmovdqu64 [{p} + 1*64], zmm1", "vmovdqu64 [{p} + 2*64], zmm2",
            "vmovdqu64 [{p} + 3*64], zmm3", "vmovdqu64 [{p} + 4*64], zmm4", "vmovdqu64 [{p} + 5*64], zmm5",
            "vmovdqu64 [{p} + 6*64], zmm6", "vmovdqu64 [{p} + 7*64], zmm7", "vmovdqu64 [{p} + 8*64], zmm8",
            "vmovdqu64 [{p} + 9*64], zmm9", "vmovdqu64 [{p} + 10*64], zmm10", "vmovdqu64 [{p} + 11*64], zmm11",
            "vmovdqu64 [{p} + 12*64], zmm12", "vmovdqu64 [{p} + 13*64], zmm13", "vmovdqu64 [{p} + 14*64], zmm14",
            "vmovdqu64 [{p} + 15*64], zmm15", "vmovdqu64 [{p} + 16*64], zmm16", "vmovdqu64 [{p} + 17*64], zmm17",
            "vmovdqu64 [{p} + 18*64], zmm18", "vmovdqu64 [{p} + 19*64], zmm19", "vmovdqu64 [{p} + 20*64], zmm20",
            "vmovdqu64 [{p} + 21*64], zmm21", "vmovdqu64 [{p} + 22*64], zmm22", "vmovdqu64 [{p} + 23*64], zmm23",
            "vmovdqu64 [{p} + 24*64], zmm24", "vmovdqu64 [{p} + 25*64], zmm25", "vmovdqu64 [{p} + 26*64], zmm26",
            "vmovdqu64 [{p} + 27*64], zmm27", "vmovdqu64 [{p} + 28*64], zmm28", "vmovdqu64 [{p} + 29*64], zmm29",
            "vmovdqu64 [{p} + 30*64], zmm30", "vmovdqu64 [{p} + 31*64], zmm31",
            p = inout(reg) src => _,
            d = in(reg) dst,
            n = in(reg) SPINS.as_ptr(),
            f = in(reg) STOP_SPIN.as_ptr(),
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
            out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _,
            out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
            out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _, out("zmm29") _,
            out("zmm30") _, out("zmm31") _,
        );
    }
}

#[target_feature(enable = "avx2")]
unsafe fn spin256(src: *const u8, dst: *mut u8) {
    // SAFETY: as spin512, with 16 YMM registers at a 64-byte stride.
    unsafe {
        std::arch::asm!(
            "vmovdqu ymm0, [{p} + 0*64]", "vmovdqu ymm1, [{p} + 1*64]", "vmovdqu ymm2, [{p} + 2*64]",
            "vmovdqu ymm3, [{p} + 3*64]", "vmovdqu ymm4, [{p} + 4*64]", "vmovdqu ymm5, [{p} + 5*64]",
            "vmovdqu ymm6, [{p} + 6*64]", "vmovdqu ymm7, [{p} + 7*64]", "vmovdqu ymm8, [{p} + 8*64]",
            "vmovdqu ymm9, [{p} + 9*64]", "vmovdqu ymm10, [{p} + 10*64]", "vmovdqu ymm11, [{p} + 11*64]",
            "vmovdqu ymm12, [{p} + 12*64]", "vmovdqu ymm13, [{p} + 13*64]", "vmovdqu ymm14, [{p} + 14*64]",
            "vmovdqu ymm15, [{p} + 15*64]",
            "2:",
            "lock inc qword ptr [{n}]",
            "cmp qword ptr [{f}], 0",
            "je 2b",
            "mov {p}, {d}",
            "vmovdqu [{p} + 0*64], ymm0", "vmovdqu [{p} + 1*64], ymm1", "vmovdqu [{p} + 2*64], ymm2",
            "vmovdqu [{p} + 3*64], ymm3", "vmovdqu [{p} + 4*64], ymm4", "vmovdqu [{p} + 5*64], ymm5",
            "vmovdqu [{p} + 6*64], ymm6", "vmovdqu [{p} + 7*64], ymm7", "vmovdqu [{p} + 8*64], ymm8",
            "vmovdqu [{p} + 9*64], ymm9", "vmovdqu [{p} + 10*64], ymm10", "vmovdqu [{p} + 11*64], ymm11",
            "vmovdqu [{p} + 12*64], ymm12", "vmovdqu [{p} + 13*64], ymm13", "vmovdqu [{p} + 14*64], ymm14",
            "vmovdqu [{p} + 15*64], ymm15",
            p = inout(reg) src => _,
            d = in(reg) dst,
            n = in(reg) SPINS.as_ptr(),
            f = in(reg) STOP_SPIN.as_ptr(),
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
            out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
        );
    }
}

fn random_data(mib: usize) -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..mib * 131072)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn checksum(d: &[u64]) -> u64 {
    d.iter().fold(0xcbf2_9ce4_8422_2325, |h, v| {
        (h ^ v).wrapping_mul(0x100_0000_01b3)
    })
}

fn tids() -> Vec<u32> {
    let mut t: Vec<u32> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    t.sort_unstable();
    t
}

fn main() {
    crac::init();
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(256, |a| a.parse().expect("MiB"));
    let data = random_data(mib);
    let sum = checksum(&data);

    let spinner = std::thread::Builder::new()
        .name("avx-spin".into())
        .spawn(spin_with_vector_registers)
        .unwrap();

    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let g = gate.clone();
    let waiter = std::thread::Builder::new()
        .name("condvar".into())
        .spawn(move || {
            let (m, c) = &*g;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
        })
        .unwrap();

    let naps = Arc::new(AtomicU64::new(0));
    let n = naps.clone();
    let _sleeper = std::thread::Builder::new()
        .name("sleeper".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            n.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();

    let (mut rx, mut tx) = std::io::pipe().unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let g2 = got.clone();
    let _reader = std::thread::Builder::new()
        .name("pipe-read".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                match rx.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        g2.fetch_add(k as u64, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => fail(&format!("pipe read: {e}")),
                }
            }
        })
        .unwrap();
    // A thread blocked in poll(2), which a signal ends with EINTR (it is
    // not restarted): across the checkpoint it must see EINTR or data.
    let (prx, mut ptx) = std::io::pipe().unwrap();
    let polled = Arc::new(AtomicU64::new(0));
    let p2 = polled.clone();
    let _poller = std::thread::Builder::new()
        .name("poller".into())
        .spawn(move || {
            let mut prx = prx;
            let mut buf = [0u8; 64];
            loop {
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&prx),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one live pollfd for the duration of the call.
                if unsafe { libc::poll(&mut pfd, 1, -1) } < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    fail(&format!("poll: {e}"));
                }
                match prx.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        p2.fetch_add(k as u64, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => fail(&format!("read after poll: {e}")),
                }
            }
        })
        .unwrap();
    let _writer = std::thread::Builder::new()
        .name("pipe-write".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            tx.write_all(b"ping").unwrap();
            ptx.write_all(b"pong").unwrap();
        })
        .unwrap();

    let (job_tx, job_rx) = mpsc::channel::<u64>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let done = Arc::new(AtomicU64::new(0));
    for i in 0..3 {
        let (r, d) = (job_rx.clone(), done.clone());
        std::thread::Builder::new()
            .name(format!("pool-{i}"))
            .spawn(move || loop {
                let job = r.lock().unwrap().recv();
                match job {
                    Ok(v) => {
                        std::hint::black_box(checksum(&random_data(1)) ^ v);
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => break,
                }
            })
            .unwrap();
    }
    for v in 0..6 {
        job_tx.send(v).unwrap();
    }

    while SPINS.load(Ordering::SeqCst) == 0 || got.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = tids();
    println!(
        "pre-checkpoint PID: {} threads: {}",
        std::process::id(),
        before.len()
    );
    if let Err(e) = crac::checkpoint_restore() {
        fail(&format!("checkpoint: {e}"));
    }
    println!("post-restore PID: {}", std::process::id());
    if checksum(&data) != sum {
        fail("memory checksum differs");
    }
    let after = tids();
    if after != before {
        fail(&format!("threads differ: {before:?} vs {after:?}"));
    }
    let (naps0, got0, spins0, polled0) = (
        naps.load(Ordering::SeqCst),
        got.load(Ordering::SeqCst),
        SPINS.load(Ordering::SeqCst),
        polled.load(Ordering::SeqCst),
    );
    for v in 0..30 {
        job_tx.send(v).unwrap();
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    {
        let (m, c) = &*gate;
        *m.lock().unwrap() = true;
        c.notify_all();
    }
    waiter.join().unwrap();
    STOP_SPIN.store(1, Ordering::SeqCst);
    if !spinner.join().unwrap() {
        fail("vector registers changed across the checkpoint");
    }
    if naps.load(Ordering::SeqCst) <= naps0 + 10 {
        fail("the sleeping thread stopped");
    }
    if got.load(Ordering::SeqCst) <= got0 + 40 {
        fail("the pipe reader stopped");
    }
    if polled.load(Ordering::SeqCst) <= polled0 + 40 {
        fail("the polling thread stopped");
    }
    if SPINS.load(Ordering::SeqCst) <= spins0 {
        fail("the spinning thread stopped");
    }
    if done.load(Ordering::SeqCst) < 36 {
        fail("the pool stopped");
    }
    println!("THREADS OK");
}
