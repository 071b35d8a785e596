//! A thread random number generator that differs in every restored copy
//! (feature `rand`).
//!
//! Every restore of an image starts from the same memory, so a generator's
//! state is the same in all of them: [`rand::rng()`](::rand::rng) would
//! give the same numbers in each restored copy. [`rng`] returns the same
//! thread-local generator, reseeded from the operating system on its first
//! use on each thread after every restore.
//!
//! ```
//! use crac::rand::RngExt;
//!
//! let token: u128 = crac::rand::rng().random();
//! # let _ = token;
//! ```
//!
//! Everything else of the `rand` crate is re-exported here (traits,
//! distributions, `rngs`), so `crac::rand::RngExt` and friends match the
//! generator's version. Code that calls `rand::rng()` itself, or keeps a
//! `ThreadRng` across a checkpoint, gets no reseeding: see
//! `docs/uniqueness.md`.

use std::cell::Cell;

pub use ::rand::*;

thread_local! {
    /// The restore generation this thread's generator was last seeded in.
    static SEEDED_IN: Cell<u64> = const { Cell::new(0) };
}

/// The thread's random number generator ([`rand::rng()`](::rand::rng)),
/// reseeded from the operating system first if the process was restored
/// since this thread last called `rng`.
///
/// # Panics
///
/// If the operating system's random source fails while reseeding, as
/// [`rand::rng()`](::rand::rng) does when seeding fails.
pub fn rng() -> rngs::ThreadRng {
    let mut rng = ::rand::rng();
    let generation = crate::restore_generation();
    if SEEDED_IN.get() != generation {
        if let Err(e) = rng.reseed() {
            panic!("cannot reseed the thread random number generator after a restore: {e}");
        }
        SEEDED_IN.set(generation);
    }
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_reseeds_each_thread_once() {
        // The generation moves only through a restore; stand in for one by
        // marking this thread as seeded in an older generation.
        let _ = rng();
        let seeded = SEEDED_IN.get();
        assert_eq!(seeded, crate::restore_generation());
        SEEDED_IN.set(seeded.wrapping_sub(1));
        let _ = rng();
        assert_eq!(SEEDED_IN.get(), crate::restore_generation());
    }
}
