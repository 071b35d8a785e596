//! The one home of crac's raw system calls and assembly.
//!
//! * [`raw`]: `syscall` instructions and the syscall numbers crac uses.
//! * [`ctx`]: the resume context, the routine that saves it around a call
//!   and the routine that resumes it (used by the dump and by the restorer).
//! * [`clone`]: `clone3` for threads that start on a fresh stack.
//! * [`fdobj`]: timerfd, signalfd, epoll, memfd and `kcmp` for carried
//!   descriptors.
//! * [`handler`]: the handler side of another process's userfaultfd (lazy
//!   restore).
//! * [`fork`]: a copy-on-write copy of the process for the live dump.
//! * [`file`]: offsets and identities of open regular files (carried
//!   descriptors).
//! * [`probe`]: harmless probes of kernel features (`crac check`).
//! * [`inherit`]: what an inherited descriptor refers to.
//! * [`commit`]: `mkdirat` for the dump's commit fallback; the retry of a
//!   PID or TID still held by a dying process.
//! * [`peercred`]: `SO_PEERCRED`, who is at the other end of a Unix socket.
//! * [`sock`]: sockets for carried socket descriptors.
//! * [`creds`]: the calling thread's ids, groups and capabilities.
//!
//! The core is `no_std` so the restorer can use it; everything here is a thin,
//! documented wrapper and every `unsafe` block names its invariants.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

pub mod clone;
pub mod commit;
pub mod creds;
pub mod ctx;
pub mod fdobj;
pub mod file;
pub mod fork;
#[cfg(feature = "std")]
pub mod handler;
pub mod inherit;
pub mod map;
pub mod peercred;
pub mod probe;
pub mod raw;
pub mod sock;
pub mod sys;

pub use raw::Errno;
