//! Regular-file calls the carried-descriptor code needs: the offset and the
//! identity of an open file. Allocation-free and async-signal-safe like
//! [`crate::sys`]: the dump calls them while other threads are stopped, the
//! restored process before its threads run.
//!
//! # Safety
//! Each wrapper passes only pointers derived from Rust references of the
//! right size, so the kernel reads or writes only memory the wrapper borrows.
#![allow(unsafe_code)]

use crate::raw::{check, nr, syscall6, Errno};

/// `lseek` whence: from the start.
pub const SEEK_SET: i32 = 0;
/// `lseek` whence: from the current offset.
pub const SEEK_CUR: i32 = 1;
/// `lseek` whence: from the end.
pub const SEEK_END: i32 = 2;

/// `S_IFMT` of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// `st_mode` type of a regular file.
pub const S_IFREG: u32 = 0o100000;

/// What `fstat` tells about a file (the fields crac compares).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// Device (`st_dev`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Number of hard links (0 once deleted).
    pub nlink: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, ns since the epoch.
    pub mtime_ns: u64,
}

impl Stat {
    /// Whether it is a regular file.
    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
}

/// `lseek(fd, offset, whence)`: the resulting offset. `lseek(fd, 0,
/// SEEK_CUR)` reads the offset without changing anything.
pub fn lseek(fd: i32, offset: i64, whence: i32) -> Result<u64, Errno> {
    // SAFETY: integer arguments only; no memory is passed.
    check(unsafe {
        syscall6(
            nr::LSEEK,
            fd as usize,
            offset as usize,
            whence as usize,
            0,
            0,
            0,
        )
    })
    .map(|o| o as u64)
}

/// `fstat(fd)`.
pub fn fstat(fd: i32) -> Result<Stat, Errno> {
    // x86-64 `struct stat`: 144 bytes, 18 longs.
    let mut st = [0u64; 18];
    // SAFETY: the kernel writes one 144-byte struct stat into `st`.
    check(unsafe { syscall6(nr::FSTAT, fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0) })?;
    Ok(Stat {
        dev: st[0],
        ino: st[1],
        nlink: st[2],
        mode: st[3] as u32,
        size: st[6],
        mtime_ns: st[11].wrapping_mul(1_000_000_000).wrapping_add(st[12]),
    })
}
