//! The resource policies that work for any kind of descriptor: `Ignore`
//! (it comes back as /dev/null with the same access mode and flags) and
//! `Close` for everything but sockets (it comes back as a pipe end of the
//! same direction whose other end is closed: reads give EOF, writes EPIPE).
//! `Reopen` of a regular file is [`super::file`]'s; `Close` and `Reopen` of
//! sockets are the socket kinds'.

use crac_image::{FdRecord, FD_CLOSED, FD_IGNORED};
use crac_sys::sys;

use super::{file, FdFailure, FdPolicy, State, O_ACCMODE, O_CLOEXEC};

const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;
const O_NOCTTY: u32 = 0o400;
const O_APPEND: u32 = 0o2000;

/// A descriptor that a policy replaces: what it was, for the record.
#[derive(Debug)]
pub struct Stand {
    /// Its `/proc/self/fd` link target.
    was: Box<[u8]>,
}

/// The state a policy gives `fd` (`link` = its `/proc/self/fd` target), or
/// `None` where the policy does not apply here (the default handling then
/// decides).
pub fn plan(fd: i32, link: &str, policy: FdPolicy) -> Option<State> {
    // stdio is crac restore's own, never the image's.
    if fd <= 2 {
        return None;
    }
    let stand = || Stand {
        was: link.as_bytes().into(),
    };
    match policy {
        FdPolicy::Ignore => Some(State::Ignored(stand())),
        FdPolicy::Close if link.starts_with("socket:") => None,
        FdPolicy::Close => Some(State::Closed(stand())),
        FdPolicy::Reopen => file::plan(fd, link, true).map(State::File),
    }
}

impl Stand {
    /// Fills the record of an ignored (`closed` false) or closed descriptor.
    pub fn record<'a>(&'a self, closed: bool, r: &mut FdRecord<'a>) {
        r.kind = if closed { FD_CLOSED } else { FD_IGNORED };
        r.name = &self.was;
    }
}

/// /dev/null opened with the access mode and `O_APPEND` of `flags` (the
/// caller places it). Allocation-free.
pub fn recreate_ignored(flags: u32) -> Result<i32, FdFailure> {
    let mode = match flags & O_ACCMODE {
        3 => O_RDWR,
        m => m,
    };
    let f = mode | (flags & O_APPEND) | O_NOCTTY | O_CLOEXEC;
    sys::open(b"/dev/null\0", f as i32, 0)
        .map_err(|e| ("open /dev/null for an ignored descriptor", e))
}

/// A pipe end of the direction of `flags` whose other end is closed (the
/// caller places it). A read-write descriptor gets the read end: reads give
/// EOF, writes fail. Allocation-free.
pub fn recreate_closed(flags: u32) -> Result<i32, FdFailure> {
    let (r, w) =
        sys::pipe2(O_CLOEXEC as i32).map_err(|e| ("create a pipe for a closed descriptor", e))?;
    let (keep, drop) = if flags & O_ACCMODE == O_WRONLY {
        (w, r)
    } else {
        (r, w)
    };
    let _ = sys::close(drop);
    Ok(keep)
}
