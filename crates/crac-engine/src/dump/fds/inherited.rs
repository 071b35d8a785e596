//! Descriptors inherited at start (`7>file` in the shell that started the
//! program) are not carried: like stdio, the restored process gets the
//! descriptors of the same numbers that `crac restore` itself inherited.
//!
//! `crac restore` cannot put them at their numbers itself (the restorer
//! needs 3 to 6 for its inputs), so it hands them over out of the way: the
//! inherited descriptor of rank `i` (in increasing number order) arrives at
//! [`handoff_base`] + `i`. Here, in the restored process, each is moved to
//! its number with its recorded flags and the handed-over number closed.

use crac_image::{FdRecord, FD_INHERITED};
use crac_sys::sys;

use super::{Carried, FdFailure, FdPolicy, State, O_CLOEXEC, O_NONBLOCK};

const F_GETFL: i32 = 3;
const F_SETFL: i32 = 4;

/// The restorer's input descriptors are 3 to 6: hand-over numbers start
/// above them.
const RESTORER_INPUTS_END: u32 = 7;

/// An inherited descriptor: the inode it referred to (for tools).
#[derive(Debug)]
pub struct Inherited {
    inode: u64,
}

/// `fd` as an inherited descriptor if it was open at start (not stdio, which
/// the restoring side always provides), still refers to what it referred
/// to then, and no policy says otherwise.
pub fn plan(fd: i32, policies: &[(i32, FdPolicy)]) -> Option<Inherited> {
    if fd <= 2 || policies.iter().any(|&(f, _)| f == fd) || !crate::startup::still_inherited(fd) {
        return None;
    }
    let inode = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0);
    Some(Inherited { inode })
}

impl Inherited {
    /// Fills the record.
    pub fn record(&self, r: &mut FdRecord<'_>) {
        r.kind = FD_INHERITED;
        r.id = self.inode;
    }
}

/// The first number at which `crac restore` hands the inherited
/// descriptors over, given the largest inherited number: above it and above
/// the restorer's inputs. Both sides compute it from the same records.
pub fn handoff_base(largest: u32) -> u32 {
    largest.saturating_add(1).max(RESTORER_INPUTS_END)
}

/// In the restored process, before anything else is rebuilt: moves each
/// handed-over descriptor to its number with its flags. Allocation-free.
/// Goes on after a failure and returns the first.
pub fn recreate(fds: &[Carried]) -> Result<(), FdFailure> {
    let inherited = || {
        fds.iter()
            .filter(|c| matches!(c.state, State::Inherited(_)))
    };
    let Some(largest) = inherited().map(|c| c.fd as u32).max() else {
        return Ok(());
    };
    let base = handoff_base(largest) as usize;
    let mut first = Ok(());
    for c in inherited() {
        let rank = inherited().filter(|o| o.fd < c.fd).count();
        let at = (base + rank) as i32;
        let r = take_over(at, c);
        let _ = sys::close(at);
        if r.is_ok() {
            // Inherited by this incarnation: passes the next checkpoint.
            crate::startup::refresh(c.fd);
        }
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// `dup3(at, c.fd)` with `c`'s close-on-exec and non-blocking flags. Unlike
/// a carried descriptor's, the open file description is shared with `crac
/// restore`'s caller: only O_NONBLOCK is changed (as the program had it),
/// never O_APPEND or the other status flags.
fn take_over(at: i32, c: &Carried) -> Result<(), FdFailure> {
    let what = "take over an inherited descriptor from crac restore";
    let cloexec = (c.flags & O_CLOEXEC) as i32;
    sys::dup3(at, c.fd, cloexec).map_err(|e| (what, e))?;
    let now = sys::fcntl(c.fd, F_GETFL, 0).map_err(|e| (what, e))? as u32;
    if now & O_NONBLOCK != c.flags & O_NONBLOCK {
        let set = (now & !O_NONBLOCK) | (c.flags & O_NONBLOCK);
        sys::fcntl(c.fd, F_SETFL, set as usize).map_err(|e| (what, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::handoff_base;

    #[test]
    fn handoff_is_above_the_restorer_inputs_and_every_inherited_number() {
        assert_eq!(handoff_base(3), 7);
        assert_eq!(handoff_base(6), 7);
        assert_eq!(handoff_base(7), 8);
        assert_eq!(handoff_base(100), 101);
    }
}
