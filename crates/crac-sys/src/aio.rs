//! Vectored writes in flight (Linux native AIO): the dump writes page data
//! with O_DIRECT a few MiB per request, several requests at once, and hashes
//! it while the device works, instead of after each write.
//!
//! `io_setup` maps a ring into the process (`/[aio]`), so a context must
//! not exist while the dump reads the process's memory map; it is made for
//! the page writes and destroyed after them. Contexts are not inherited
//! across `fork`.
//!
//! # Safety
//! A submitted write reads the memory its ranges name until [`Aio::wait`]
//! returns: the caller keeps that memory mapped and unchanged until then
//! (dropping the context waits too, in the kernel's `io_destroy`, which
//! takes tens of milliseconds: an RCU grace period).
//!
//! # References
//! * <https://man7.org/linux/man-pages/man2/io_setup.2.html>
//! * <https://man7.org/linux/man-pages/man2/io_submit.2.html>
//! * <https://man7.org/linux/man-pages/man2/io_getevents.2.html>
#![allow(unsafe_code)]

use crate::raw::{check, syscall6, Errno};
use crate::sys::IoVec;

const NR_IO_SETUP: usize = 206;
const NR_IO_DESTROY: usize = 207;
const NR_IO_GETEVENTS: usize = 208;
const NR_IO_SUBMIT: usize = 209;
/// `IOCB_CMD_PWRITEV`.
const CMD_PWRITEV: u16 = 8;

/// `struct iocb` (x86-64, little-endian).
#[repr(C)]
#[derive(Debug, Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

const _: () = assert!(core::mem::size_of::<Iocb>() == 64);

/// `struct io_event`.
#[repr(C)]
#[derive(Debug, Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

/// An AIO context for up to `depth` requests at a time.
#[derive(Debug)]
pub struct Aio {
    ctx: u64,
    depth: u32,
    /// Requests submitted and not waited for.
    in_flight: u32,
}

impl Aio {
    /// A new context (`io_setup`) for `depth` requests in flight.
    pub fn new(depth: u32) -> Result<Aio, Errno> {
        let mut ctx = 0u64;
        // SAFETY: the kernel writes the context id into `ctx`, which lives
        // across the call.
        let r = unsafe {
            syscall6(
                NR_IO_SETUP,
                depth as usize,
                &mut ctx as *mut u64 as usize,
                0,
                0,
                0,
                0,
            )
        };
        check(r)?;
        Ok(Aio {
            ctx,
            depth,
            in_flight: 0,
        })
    }

    /// Requests submitted and not waited for.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Starts writing the ranges of `iov` one after the other to `fd` from
    /// file offset `off` (at most 1024 ranges; the kernel copies the list);
    /// [`Aio::wait`] gives `tag` back with the result. Fails (nothing
    /// started) when `depth` requests are in flight or the kernel refuses.
    ///
    /// # Safety
    /// The memory the ranges name must stay mapped and unchanged until
    /// [`Aio::wait`] returned this request or the context is dropped.
    pub unsafe fn submit_pwritev(
        &mut self,
        fd: i32,
        iov: &[IoVec],
        off: u64,
        tag: u64,
    ) -> Result<(), Errno> {
        if self.in_flight >= self.depth || iov.len() > 1024 {
            return Err(Errno::EINVAL);
        }
        let cb = Iocb {
            data: tag,
            opcode: CMD_PWRITEV,
            fildes: fd as u32,
            buf: iov.as_ptr() as u64,
            nbytes: iov.len() as u64,
            offset: off as i64,
            ..Iocb::default()
        };
        let list = [&cb as *const Iocb];
        // SAFETY: `cb` and `iov` are valid for the call (the kernel copies
        // both while submitting); the memory they name is the caller's
        // promise (see above).
        let r = unsafe {
            syscall6(
                NR_IO_SUBMIT,
                self.ctx as usize,
                1,
                list.as_ptr() as usize,
                0,
                0,
                0,
            )
        };
        match check(r)? {
            1 => {
                self.in_flight += 1;
                Ok(())
            }
            _ => Err(Errno::EAGAIN),
        }
    }

    /// Waits for one request in flight to end: its tag and the bytes it
    /// wrote, or its error.
    pub fn wait(&mut self) -> Result<(u64, Result<u64, Errno>), Errno> {
        if self.in_flight == 0 {
            return Err(Errno::EINVAL);
        }
        let mut ev = IoEvent::default();
        loop {
            // SAFETY: room for one event, written by the kernel; no timeout.
            let r = unsafe {
                syscall6(
                    NR_IO_GETEVENTS,
                    self.ctx as usize,
                    1,
                    1,
                    &mut ev as *mut IoEvent as usize,
                    0,
                    0,
                )
            };
            match check(r) {
                Ok(1) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        self.in_flight -= 1;
        if ev.res < 0 {
            return Ok((ev.data, Err(Errno((-ev.res) as i32))));
        }
        Ok((ev.data, Ok(ev.res as u64)))
    }
}

impl Drop for Aio {
    fn drop(&mut self) {
        // SAFETY: our context; the kernel waits for a request in flight and
        // unmaps the ring.
        let _ = unsafe { syscall6(NR_IO_DESTROY, self.ctx as usize, 0, 0, 0, 0, 0) };
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_vectored_write_lands_in_order() {
        let mut f = tempfile_in_tmp();
        let a = vec![1u8; 8192];
        let b = vec![2u8; 4096];
        let iov = [
            IoVec {
                base: a.as_ptr() as u64,
                len: a.len() as u64,
            },
            IoVec {
                base: b.as_ptr() as u64,
                len: b.len() as u64,
            },
        ];
        let mut aio = Aio::new(2).unwrap();
        // SAFETY: `a` and `b` live, unchanged, until the waits below.
        unsafe { aio.submit_pwritev(f.as_raw_fd(), &iov[..1], 4096, 7) }.unwrap();
        // SAFETY: as above.
        unsafe { aio.submit_pwritev(f.as_raw_fd(), &iov[1..], 12288, 8) }.unwrap();
        assert_eq!(aio.in_flight(), 2);
        let mut tags = [aio.wait().unwrap(), aio.wait().unwrap()];
        tags.sort_by_key(|t| t.0);
        assert_eq!(tags, [(7, Ok(8192)), (8, Ok(4096))]);
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 4096 + 12288);
        assert!(got[..4096].iter().all(|&x| x == 0));
        assert!(got[4096..12288].iter().all(|&x| x == 1));
        assert!(got[12288..].iter().all(|&x| x == 2));
        assert_eq!(aio.wait(), Err(Errno::EINVAL), "nothing in flight");
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("crac-aio-test-{}", std::process::id()));
        let f = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }
}
