//! System calls for descriptors inherited at start: what a descriptor
//! refers to, read where nothing may allocate (a restored process takes
//! over its inherited descriptors before its threads run).
//!
//! # Safety
//! The wrapper passes only a pointer to a local buffer of the kernel's
//! `struct stat` size.
#![allow(unsafe_code)]

use crate::raw::{check, nr, syscall6, Errno};

/// Size of the x86-64 `struct stat`.
const STAT_LEN: usize = 144;

/// Device and inode of what `fd` refers to (`fstat`).
pub fn identity(fd: i32) -> Result<(u64, u64), Errno> {
    let mut st = [0u64; STAT_LEN / 8];
    // SAFETY: the kernel writes one `struct stat` (144 bytes) into `st`.
    check(unsafe { syscall6(nr::FSTAT, fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0) })?;
    // st_dev at offset 0, st_ino at offset 8.
    Ok((st[0], st[1]))
}
