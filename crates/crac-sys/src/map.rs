//! A read-only view of a whole file, mapped instead of read.
//!
//! The restore preflight checksums page files of up to gigabytes; mapping
//! them avoids copying every byte out of the page cache first.
//!
//! # Safety
//! The view is a private read-only mapping; Rust only ever sees it as `&[u8]`
//! while the [`FileView`] lives. A file truncated by another process while it
//! is mapped makes reads of the vanished part fault (SIGBUS): callers check
//! the length first and use the view briefly.
#![allow(unsafe_code)]

use crate::raw::{check, nr, syscall6, Errno};

/// A read-only, private mapping of the first `len` bytes of a file.
#[derive(Debug)]
pub struct FileView {
    addr: usize,
    len: usize,
}

impl FileView {
    /// Maps `len` bytes of `fd` from offset 0 (`len` > 0).
    pub fn map(fd: i32, len: usize) -> Result<FileView, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        const PROT_READ: usize = 1;
        const MAP_PRIVATE: usize = 2;
        // SAFETY: a fresh mapping chosen by the kernel (addr 0) touches no
        // existing memory; the fd is only read.
        let r = unsafe { syscall6(nr::MMAP, 0, len, PROT_READ, MAP_PRIVATE, fd as usize, 0) };
        let addr = check(r)?;
        // Sequential reads: let the kernel read ahead generously.
        // SAFETY: advice on the mapping just created; no memory effects.
        unsafe {
            syscall6(
                nr::MADVISE,
                addr,
                len,
                2, /* MADV_SEQUENTIAL */
                0,
                0,
                0,
            )
        };
        Ok(FileView { addr, len })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `addr..addr+len` is a live read-only mapping owned by `self`
        // for the lifetime of the borrow (see the module's note on truncation).
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for FileView {
    fn drop(&mut self) {
        // SAFETY: the mapping belongs to `self` and no borrow of it outlives
        // `self` (bytes() borrows self).
        unsafe { syscall6(nr::MUNMAP, self.addr, self.len, 0, 0, 0, 0) };
    }
}

/// The page frame number of the kernel's shared zero page: a fresh private
/// anonymous page that was only read maps it. (A page of the allocator may
/// have been written before, so it cannot serve as the probe.) Needs the
/// PFNs in `/proc/self/pagemap` (CAP_SYS_ADMIN); `Ok(0)` without them.
pub fn zero_page_pfn() -> Result<u64, Errno> {
    const PROT_READ: usize = 1;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    // SAFETY: a fresh mapping chosen by the kernel (addr 0) touches no
    // existing memory.
    let r = unsafe {
        syscall6(
            nr::MMAP,
            0,
            4096,
            PROT_READ,
            MAP_PRIVATE_ANONYMOUS,
            usize::MAX,
            0,
        )
    };
    let addr = check(r)?;
    // SAFETY: `addr` is the readable page just mapped; a read faults in
    // the zero page.
    let _ = unsafe { core::ptr::read_volatile(addr as *const u8) };
    let entry = crate::sys::open(b"/proc/self/pagemap\0", 0o2000000, 0).and_then(|fd| {
        let mut e = [0u8; 8];
        let r = crate::sys::pread(fd, &mut e, (addr / 4096 * 8) as u64);
        let _ = crate::sys::close(fd);
        r.map(|_| u64::from_le_bytes(e))
    });
    // SAFETY: the page belongs to this function and no reference to it
    // remains.
    unsafe { syscall6(nr::MUNMAP, addr, 4096, 0, 0, 0, 0) };
    let e = entry?;
    Ok(if e >> 63 == 1 { e & ((1 << 55) - 1) } else { 0 })
}
