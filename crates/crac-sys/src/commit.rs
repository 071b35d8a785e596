//! What the dump's commit needs beyond [`crate::sys`]: creating the
//! directory the previous image is moved into when it cannot be swapped
//! (overlayfs without `redirect_dir` refuses to rename a lower directory).
//! Allocation-free, like the rest of the dump path. And the brief retry of
//! a PID or TID that is still taken by a process being reaped (restore).
#![allow(unsafe_code)]

use crate::raw::{check, syscall6, Errno};

/// `mkdirat(AT_FDCWD, path, mode)`; `path` must end with a NUL byte.
pub fn mkdir(path: &[u8], mode: u32) -> Result<(), Errno> {
    if path.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `path` is NUL-terminated and borrowed for the call; the
    // kernel only reads it.
    check(unsafe {
        syscall6(
            258, // mkdirat
            -100isize as usize,
            path.as_ptr() as usize,
            mode as usize,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// How many more times a PID or TID that the restore preflight saw free is
/// asked for when the kernel says it is taken (`EEXIST`): a process that
/// just died keeps its ids until it is reaped, and its threads' until they
/// have exited. 50 tries [`ID_RETRY_PAUSE_NS`] apart: about 100 ms.
pub const ID_RETRIES: u32 = 50;
/// The pause between two tries (2 ms).
pub const ID_RETRY_PAUSE_NS: u64 = 2_000_000;

/// Sleeps `ns` nanoseconds (`clock_nanosleep(CLOCK_MONOTONIC)`; an
/// interruption cuts it short).
pub fn sleep_ns(ns: u64) {
    let ts = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    // SAFETY: `ts` is a valid `struct timespec` the kernel only reads; no
    // remainder is asked for.
    let _ = unsafe {
        syscall6(
            230, // clock_nanosleep
            1,   // CLOCK_MONOTONIC
            0,
            ts.as_ptr() as usize,
            0,
            0,
            0,
        )
    };
}

/// Calls `create` until it succeeds or fails with something other than
/// `EEXIST`, at most [`ID_RETRIES`] more times, [`ID_RETRY_PAUSE_NS`]
/// apart; the last result is returned.
pub fn retry_taken<T>(mut create: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut tries = 0;
    loop {
        match create() {
            Err(Errno::EEXIST) if tries < ID_RETRIES => {
                tries += 1;
                sleep_ns(ID_RETRY_PAUSE_NS);
            }
            r => return r,
        }
    }
}
