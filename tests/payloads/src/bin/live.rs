//! Live-checkpoint payload: `live MIB` keeps rewriting MIB of memory while
//! it is checkpointed from outside (`crac checkpoint PID --leave-running`),
//! so an image that is not one instant of its memory shows.
//!
//! Every 4 KiB page of the buffer holds one generation number in all its
//! words. The main loop sweeps the pages in order, writing generation
//! `gen + 1` into page `cursor` and advancing the cursor; at the end of a
//! sweep `gen` goes up. So at any instant pages `[0, cursor)` hold `gen + 1`
//! and the others `gen`: `check` verifies exactly that, and the sum of a
//! fixed random block next to it. A snapshot taken while the program writes
//! would show pages past the cursor already at `gen + 1`.
//!
//! With `dontfork` as second argument, 1 MiB of the fixed data is
//! `MADV_DONTFORK`. Prints `ready PID`, then on SIGUSR1 (checked between pages) `ok GEN
//! CURSOR SWEEPS PID MONOTONIC_NS` or `BAD ...`; after a restore `restored` first (a crac
//! resource). SIGTERM ends it.
use std::sync::atomic::{AtomicBool, Ordering};

const PAGE_WORDS: usize = 512;

static CHECK: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    CHECK.store(true, Ordering::SeqCst);
}

struct Announce;

impl crac::Resource for Announce {
    fn before_checkpoint(&self, _: &crac::Context) -> Result<(), crac::BoxError> {
        Ok(())
    }
    fn after_restore(&self, _: &crac::Context) -> Result<(), crac::BoxError> {
        println!("restored");
        Ok(())
    }
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a live timespec the call fills.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

struct State {
    pages: Vec<u64>,
    fixed: Vec<u64>,
    fixed_sum: u64,
    gen: u64,
    cursor: usize,
    sweeps: u64,
}

impl State {
    fn check(&self) -> Result<(), String> {
        let n = self.pages.len() / PAGE_WORDS;
        for p in 0..n {
            let want = if p < self.cursor {
                self.gen + 1
            } else {
                self.gen
            };
            let page = &self.pages[p * PAGE_WORDS..(p + 1) * PAGE_WORDS];
            if let Some(w) = page.iter().position(|&v| v != want) {
                return Err(format!(
                    "page {p} word {w} holds {} but the cursor {} and generation {} say {want}",
                    page[w], self.cursor, self.gen
                ));
            }
        }
        let sum = self.fixed.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        if sum != self.fixed_sum {
            return Err(format!(
                "fixed data sum {sum:#x}, want {:#x}",
                self.fixed_sum
            ));
        }
        Ok(())
    }
}

fn main() {
    crac::init();
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(64, |a| a.parse().expect("MIB"));
    // `live MIB dontfork`: part of the fixed data is MADV_DONTFORK, which
    // a fork would not copy (the live dump must then dump in place).
    let dontfork = std::env::args().nth(2).as_deref() == Some("dontfork");
    crac::global_context().register(std::sync::Arc::new(Announce));
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    let words = mib << 17;
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let fixed: Vec<u64> = (0..words / 2)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect();
    let mut s = State {
        pages: vec![0; words / 2 / PAGE_WORDS * PAGE_WORDS],
        fixed_sum: fixed.iter().fold(0u64, |a, b| a.wrapping_add(*b)),
        fixed,
        gen: 0,
        cursor: 0,
        sweeps: 0,
    };
    if dontfork {
        let start = (s.fixed.as_ptr() as usize).next_multiple_of(4096);
        // SAFETY: a page-aligned range inside `fixed`'s allocation;
        // MADV_DONTFORK changes only what a fork copies.
        let r = unsafe { libc::madvise(start as *mut libc::c_void, 1 << 20, libc::MADV_DONTFORK) };
        assert_eq!(r, 0, "madvise(MADV_DONTFORK)");
    }
    let n = s.pages.len() / PAGE_WORDS;
    println!("ready {}", std::process::id());
    loop {
        let p = s.cursor;
        s.pages[p * PAGE_WORDS..(p + 1) * PAGE_WORDS].fill(s.gen + 1);
        s.cursor += 1;
        if s.cursor == n {
            s.cursor = 0;
            s.gen += 1;
            s.sweeps += 1;
        }
        if CHECK.swap(false, Ordering::SeqCst) {
            match s.check() {
                Ok(()) => println!(
                    "ok {} {} {} {} {}",
                    s.gen,
                    s.cursor,
                    s.sweeps,
                    std::process::id(),
                    monotonic_ns()
                ),
                Err(e) => println!("BAD {e}"),
            }
        }
    }
}
