//! The handler side of a userfaultfd that belongs to another process.
//!
//! A lazily restored process has its private anonymous memory registered
//! with a userfaultfd; the restorer passes that fd to `crac restore`, which
//! serves page faults and fills the rest in the background (crac-engine's
//! `restore::pager`). [`Handler`] wraps such an fd: its operations write into
//! the *other* process's memory and read only buffers of ours, so they are
//! safe for the caller — which is why constructing one is `unsafe`: the fd
//! must not be registered on the caller's own address space.
//!
//! # Safety
//! Every ioctl here gets a live, correctly sized argument struct; sources are
//! borrowed slices that outlive the call.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::raw::uffd::NR_IOCTL;
use crate::raw::{check, nr, syscall6, Errno};

/// `_IOWR(0xAA, 0x04, struct uffdio_zeropage)`.
const UFFDIO_ZEROPAGE: usize = 0xC020_AA04;
/// `_IOR(0xAA, 0x02, struct uffdio_range)`.
const UFFDIO_WAKE: usize = 0x8010_AA02;
/// `sizeof(struct uffd_msg)`.
const MSG_LEN: usize = 32;

const EVENT_PAGEFAULT: u8 = 0x12;
const EVENT_FORK: u8 = 0x13;
const EVENT_REMAP: u8 = 0x14;
const EVENT_REMOVE: u8 = 0x15;
const EVENT_UNMAP: u8 = 0x16;

/// A userfaultfd of another process (or of a child it forked).
#[derive(Debug)]
pub struct Handler {
    fd: OwnedFd,
}

/// One message read from a [`Handler`].
#[derive(Debug)]
pub enum Msg {
    /// A thread waits for the page at `addr` (`write`: it was a write).
    PageFault {
        /// The faulting address (not page-aligned).
        addr: u64,
        /// Whether the access was a write.
        write: bool,
        /// The faulting thread's TID (0 without `UFFD_FEATURE_THREAD_ID`).
        tid: u32,
    },
    /// The process forked: the child's memory is served through `child`.
    Fork {
        /// The child's userfaultfd.
        child: Handler,
    },
    /// `[from, from + len)` moved to `[to, to + len)` (`mremap`).
    Remap {
        /// Old start.
        from: u64,
        /// New start.
        to: u64,
        /// Length moved.
        len: u64,
    },
    /// `[start, end)` was discarded (`MADV_DONTNEED` and the like): it reads
    /// as zeros from now on.
    Remove {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// `[start, end)` was unmapped.
    Unmap {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// An event this handler does not know.
    Other(u8),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

impl Handler {
    /// Wraps `fd`, a userfaultfd opened with `O_NONBLOCK`.
    ///
    /// # Safety
    /// `fd` must be a userfaultfd created by another process (no range of
    /// the caller's own address space may be registered with it), or one the
    /// kernel handed over for such a process's child.
    pub unsafe fn from_foreign(fd: OwnedFd) -> Handler {
        Handler { fd }
    }

    /// Reads every message waiting now (none: an empty vector).
    pub fn read(&self, out: &mut Vec<Msg>) -> Result<(), Errno> {
        let mut buf = [0u8; MSG_LEN * 16];
        loop {
            // SAFETY: `buf` is writable for its length.
            let r = unsafe {
                syscall6(
                    nr::READ,
                    self.fd.as_raw_fd() as usize,
                    buf.as_mut_ptr() as usize,
                    buf.len(),
                    0,
                    0,
                    0,
                )
            };
            let n = match check(r) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            };
            for m in buf[..n].chunks_exact(MSG_LEN) {
                out.push(match m[0] {
                    EVENT_PAGEFAULT => Msg::PageFault {
                        addr: u64_at(m, 16),
                        write: u64_at(m, 8) & 1 != 0,
                        tid: u32_at(m, 24),
                    },
                    EVENT_FORK => {
                        // SAFETY: the kernel installed this fd in our table
                        // for us while delivering the message; nothing else
                        // owns it.
                        let fd = unsafe { OwnedFd::from_raw_fd(u32_at(m, 8) as i32) };
                        Msg::Fork {
                            child: Handler { fd },
                        }
                    }
                    EVENT_REMAP => Msg::Remap {
                        from: u64_at(m, 8),
                        to: u64_at(m, 16),
                        len: u64_at(m, 24),
                    },
                    EVENT_REMOVE => Msg::Remove {
                        start: u64_at(m, 8),
                        end: u64_at(m, 16),
                    },
                    EVENT_UNMAP => Msg::Unmap {
                        start: u64_at(m, 8),
                        end: u64_at(m, 16),
                    },
                    e => Msg::Other(e),
                });
            }
            if n < buf.len() {
                return Ok(());
            }
        }
    }

    /// `UFFDIO_COPY`: fills the missing pages at `dst` with `src` (whole
    /// pages) and wakes threads waiting there. `Err((errno, bytes done))`
    /// on failure (`EEXIST`: a page there is present, `EAGAIN`: the address
    /// space is changing and events wait to be read, `ESRCH`: the process is
    /// gone, `ENOENT`: no registered area there).
    pub fn copy(&self, dst: u64, src: &[u8]) -> Result<u64, (Errno, u64)> {
        // SAFETY: the destination lies in another process (the
        // constructor's contract), so nothing of ours refers to it; the
        // source is a borrowed slice, readable for the whole call.
        unsafe {
            crate::raw::uffd::copy(
                self.fd.as_raw_fd(),
                dst,
                src.as_ptr() as u64,
                src.len() as u64,
            )
        }
    }

    /// `UFFDIO_ZEROPAGE`: maps zeros at the missing pages of
    /// `[dst, dst + len)` and wakes threads waiting there.
    pub fn zeropage(&self, dst: u64, len: u64) -> Result<u64, (Errno, u64)> {
        let mut z = [dst, len, 0, 0];
        // SAFETY: `z` is a live `struct uffdio_zeropage` (range, mode,
        // result); the range is in another process.
        let r = unsafe {
            syscall6(
                NR_IOCTL,
                self.fd.as_raw_fd() as usize,
                UFFDIO_ZEROPAGE,
                z.as_mut_ptr() as usize,
                0,
                0,
                0,
            )
        };
        let done = (z[3] as i64).max(0) as u64;
        check(r).map(|_| done).map_err(|e| (e, done))
    }

    /// `UFFDIO_WAKE`: wakes threads waiting in `[start, start + len)`.
    pub fn wake(&self, start: u64, len: u64) -> Result<(), Errno> {
        let r = [start, len];
        // SAFETY: `r` is a live `struct uffdio_range` the kernel only reads.
        check(unsafe {
            syscall6(
                NR_IOCTL,
                self.fd.as_raw_fd() as usize,
                UFFDIO_WAKE,
                r.as_ptr() as usize,
                0,
                0,
                0,
            )
        })
        .map(drop)
    }
}

impl AsFd for Handler {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
