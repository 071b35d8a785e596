//! What the dump's commit needs beyond [`crate::sys`]: creating the
//! directory the previous image is moved into when it cannot be swapped
//! (overlayfs without `redirect_dir` refuses to rename a lower directory).
//! Allocation-free, like the rest of the dump path.
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
