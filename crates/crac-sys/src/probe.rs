//! Probes of kernel features, for `crac check`.
//!
//! Each probe makes one harmless system call and reports whether the kernel
//! (and the caller's privileges) allow it; none changes the caller's state.
//!
//! # Safety
//! Each wrapper passes only pointers derived from Rust references of the
//! right size, or none, so the kernel reads or writes only memory the
//! wrapper borrows.
#![allow(unsafe_code)]

use crate::raw::{check, nr, syscall6, Errno};

/// `PR_SET_MM` (prctl option).
pub const PR_SET_MM: usize = 35;
/// `PR_SET_MM_MAP_SIZE` (`PR_SET_MM` sub-option).
pub const PR_SET_MM_MAP_SIZE: usize = 15;
const O_CLOEXEC: usize = 0o2000000;

/// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size)`: the size of
/// `struct prctl_mm_map` this kernel expects. Fails with `EINVAL` on a
/// kernel built without `CONFIG_CHECKPOINT_RESTORE`, where the restorer
/// cannot set the memory layout fields (`PR_SET_MM_MAP`).
///
/// # References
/// * <https://man7.org/linux/man-pages/man2/PR_SET_MM.2const.html>
#[must_use = "the probe's result is its whole point"]
pub fn prctl_mm_map_size() -> Result<u32, Errno> {
    let mut size: u32 = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one `unsigned int` to the address in
    // the third argument, which is `size`, a live u32; the other arguments
    // are unused by this sub-option and passed as 0.
    let r = unsafe {
        syscall6(
            nr::PRCTL,
            PR_SET_MM,
            PR_SET_MM_MAP_SIZE,
            core::ptr::addr_of_mut!(size) as usize,
            0,
            0,
            0,
        )
    };
    check(r)?;
    Ok(size)
}

/// `userfaultfd(O_CLOEXEC)` (faults from kernel mode too) with the
/// fork, remap, remove and unmap events and thread ids, closed again at
/// once: whether a restore by this process can be lazy.
///
/// # References
/// * <https://man7.org/linux/man-pages/man2/userfaultfd.2.html>
/// * <https://man7.org/linux/man-pages/man2/ioctl_userfaultfd.2.html>
#[must_use = "the probe's result is its whole point"]
pub fn userfaultfd() -> Result<(), Errno> {
    use crate::raw::uffd;
    let fd = uffd::open(O_CLOEXEC)?;
    // Exactly what a lazy restore asks for.
    let api = uffd::api_with(fd, uffd::LAZY_FEATURES);
    // The descriptor was created just above and is owned by nothing else.
    let _ = crate::sys::close(fd);
    api.map(drop)
}
