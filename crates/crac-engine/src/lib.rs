//! crac's checkpoint/restore engine.
//!
//! * [`native`]: the in-process dump (`checkpoint`) used by the `crac` API crate.
//! * [`startup`]: facts recorded when the program started (inherited fds).
#![deny(unsafe_code)]

pub mod native;
pub mod startup;
