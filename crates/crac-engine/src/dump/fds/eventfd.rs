//! eventfd: the counter and `EFD_SEMAPHORE`, read from fdinfo (reading the
//! descriptor would consume the counter).

use crac_image::{FdRecord, FD_EVENTFD};
use crac_sys::{sys, Errno};

use super::{fdinfo_field, parse_num, read_fdinfo, FdFailure};

const EFD_SEMAPHORE: i32 = 1;
const EFD_CLOEXEC: i32 = 0o2000000;

/// An eventfd's state.
#[derive(Debug, Default)]
pub struct EventFd {
    count: u64,
    semaphore: bool,
}

/// Plans an eventfd (its fdinfo must show the fields this build reads).
pub fn plan(fd: i32) -> Option<EventFd> {
    let mut buf = [0u8; 1024];
    let mut e = EventFd::default();
    e.capture(fd, &mut buf).ok()?;
    Some(e)
}

impl EventFd {
    /// Reads the counter and mode. Allocation-free.
    pub fn capture(&mut self, fd: i32, buf: &mut [u8]) -> Result<(), FdFailure> {
        let text = read_fdinfo(fd, buf)?;
        let bad = ("understand an eventfd's fdinfo", Errno::EINVAL);
        self.count = fdinfo_field(text, b"eventfd-count:")
            .and_then(|v| parse_num(v, 16))
            .ok_or(bad)?;
        // Older kernels do not show the mode; they have no semaphores then.
        self.semaphore = fdinfo_field(text, b"eventfd-semaphore:") == Some(b"1");
        Ok(())
    }

    /// Fills the record.
    pub fn record(&self, r: &mut FdRecord<'_>) {
        r.kind = FD_EVENTFD;
        r.values = [self.count, u64::from(self.semaphore), 0, 0];
    }

    /// A new eventfd with this state (the caller places it).
    pub fn recreate(&self) -> Result<i32, FdFailure> {
        let flags = EFD_CLOEXEC | if self.semaphore { EFD_SEMAPHORE } else { 0 };
        let fd = sys::eventfd2(0, flags).map_err(|e| ("create an eventfd", e))?;
        if self.count != 0 {
            // A write adds to the counter; the descriptor is new and blocking,
            // and a counter below u64::MAX never blocks a write.
            if let Err(e) = sys::write_all(fd, &self.count.to_ne_bytes()) {
                let _ = sys::close(fd);
                return Err(("set an eventfd's counter", e));
            }
        }
        Ok(fd)
    }
}
