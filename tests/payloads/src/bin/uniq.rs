//! Uniqueness after restore: four threads each draw a number from
//! `crac::rand::rng()` before the checkpoint; after each restore each thread
//! first draws from `rand::rng()` (the raw thread generator, whose state the
//! image holds, so every restore gives the same number: proof that the
//! image carries the state) and then from `crac::rand::rng()` (reseeded, so
//! every restore differs). Prints `before T N`, `after T raw=N crac=N`,
//! `generation G` and "UNIQ OK" (or "FAILED: ..." and exits 1).

use std::sync::{Arc, Barrier, Condvar, Mutex};

use crac::rand::RngExt;
use payload::{checkpoint, fail};

const THREADS: usize = 4;

fn main() {
    crac::init();
    let drawn = Arc::new(Barrier::new(THREADS + 1));
    // Set to true once the process was restored.
    let restored = Arc::new((Mutex::new(false), Condvar::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let drawn = Arc::clone(&drawn);
            let restored = Arc::clone(&restored);
            std::thread::spawn(move || {
                let before: u64 = crac::rand::rng().random();
                println!("before {t} {before}");
                drawn.wait();
                let (lock, cv) = &*restored;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = cv.wait(go).unwrap();
                }
                drop(go);
                let raw: u64 = rand::rng().random();
                let fresh: u64 = crac::rand::rng().random();
                println!("after {t} raw={raw} crac={fresh}");
            })
        })
        .collect();
    drawn.wait();
    if crac::restore_generation() != 0 {
        fail("generation before any restore is not 0");
    }
    checkpoint();
    println!("generation {}", crac::restore_generation());
    let (lock, cv) = &*restored;
    *lock.lock().unwrap() = true;
    cv.notify_all();
    for t in threads {
        if t.join().is_err() {
            fail("a thread panicked");
        }
    }
    println!("UNIQ OK");
}
