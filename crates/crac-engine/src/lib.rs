//! crac's checkpoint/restore engine.
//!
//! * [`native`]: the in-process dump (`checkpoint`) used by the `crac` API crate.
//! * [`pause`]: the pause engine (block until woken by `crac restore`).
//! * [`restore`]: restoring a native image (preflight, restorer, waiting).
//! * [`startup`]: facts recorded when the program started (inherited fds).
//! * [`elf`]: build-ids, and how a program is linked (for `crac run`).
//! * [`inject`]: preloading libcrac into a program that does not link crac.
#![deny(unsafe_code)]

pub mod creds;
mod dump;
pub mod elf;
pub mod identity;
pub mod inject;
pub mod native;
pub mod pause;
pub mod restore;
pub mod startup;

/// Ends the calling process by signal `sig`, the way a restore wrapper
/// re-raises the fatal signal of the process it waited for.
pub fn die_of_signal(sig: i32) -> ! {
    crac_sys::sys::die_of_signal(sig)
}
