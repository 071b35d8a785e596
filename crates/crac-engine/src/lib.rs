//! crac's checkpoint/restore engine.
//!
//! * [`native`]: the in-process dump (`checkpoint`) used by the `crac` API crate.
//! * [`pause`]: the pause engine (block until woken by `crac restore`).
//! * [`restore`]: restoring a native image (preflight, restorer, waiting).
//! * [`startup`]: facts recorded when the program started (inherited fds).
#![deny(unsafe_code)]

mod dump;
mod elf;
pub mod native;
pub mod pause;
pub mod restore;
pub mod startup;
