//! signalfd: the set of signals it reads (fdinfo `sigmask:`). Pending
//! signals belong to the process and its threads, which the dump carries
//! on its own.

use crac_image::{FdRecord, FD_SIGNALFD};
use crac_sys::{fdobj, Errno};

use super::{fdinfo_field, parse_num, read_fdinfo, FdFailure};

const SFD_CLOEXEC: i32 = 0o2000000;

/// A signalfd's state.
#[derive(Debug, Default)]
pub struct SignalFd {
    /// Bit `n - 1` for signal `n`.
    mask: u64,
}

/// Plans a signalfd (its fdinfo must show the mask).
pub fn plan(fd: i32) -> Option<SignalFd> {
    let mut buf = [0u8; 1024];
    let mut s = SignalFd::default();
    s.capture(fd, &mut buf).ok()?;
    Some(s)
}

impl SignalFd {
    /// Reads the mask (a later `signalfd(fd, ...)` may change it).
    /// Allocation-free.
    pub fn capture(&mut self, fd: i32, buf: &mut [u8]) -> Result<(), FdFailure> {
        let text = read_fdinfo(fd, buf)?;
        self.mask = fdinfo_field(text, b"sigmask:")
            .and_then(|v| parse_num(v, 16))
            .ok_or(("understand a signalfd's fdinfo", Errno::EINVAL))?;
        Ok(())
    }

    /// Fills the record.
    pub fn record(&self, r: &mut FdRecord<'_>) {
        r.kind = FD_SIGNALFD;
        r.values = [self.mask, 0, 0, 0];
    }

    /// A new signalfd with this mask (the caller places it).
    pub fn recreate(&self) -> Result<i32, FdFailure> {
        fdobj::signalfd(self.mask, SFD_CLOEXEC).map_err(|e| ("create a signalfd", e))
    }
}
