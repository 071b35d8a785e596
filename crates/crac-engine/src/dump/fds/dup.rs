//! Descriptors that share one open file description (`dup`, `F_DUPFD`, a
//! descriptor received twice): rebuilt as duplicates of the lowest one, so
//! that they share it again (one eventfd counter, one timer, one interest
//! list) instead of becoming independent copies. `kcmp(KCMP_FILE)` tells
//! them apart.
//!
//! For kinds whose state lives entirely in the description (eventfd,
//! timerfd, signalfd, epoll, a regular file's offset). Pipes share by inode
//! already; memfds link their descriptors themselves (a second open of one
//! memfd keeps its own offset).

use crac_sys::{fdobj, sys};

use super::{Carried, FdFailure, State, F_DUPFD_CLOEXEC};

/// Whether `s` is a kind whose duplicates this module links.
fn linked(s: &State) -> bool {
    matches!(
        s,
        State::EventFd(_)
            | State::TimerFd(_)
            | State::SignalFd(_)
            | State::Epoll(_)
            | State::File(_)
    )
}

fn same_kind(a: &State, b: &State) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Turns every descriptor that shares its description with a lower one
/// into a [`State::Dup`] of it. A descriptor whose sharing cannot be told
/// (no `kcmp`) is dropped: the open-fd check then refuses it.
pub fn link(fds: &mut Vec<Carried>) {
    let mut unknown = Vec::new();
    for i in 0..fds.len() {
        let (before, rest) = fds.split_at_mut(i);
        let c = &mut rest[0];
        if !linked(&c.state) {
            continue;
        }
        for o in before.iter() {
            if !linked(&o.state) || !same_kind(&o.state, &c.state) {
                continue;
            }
            match fdobj::same_file(o.fd, c.fd) {
                Ok(true) => {
                    c.state = State::Dup { of: o.fd, rank: 0 };
                    break;
                }
                Ok(false) => {}
                Err(_) => {
                    unknown.push(c.fd);
                    break;
                }
            }
        }
    }
    fds.retain(|c| !unknown.contains(&c.fd));
}

/// Gives every duplicate its original's rank (after epoll depths are
/// known), so it is rebuilt in the same pass, after its original.
pub fn set_ranks(fds: &mut [Carried]) {
    for i in 0..fds.len() {
        let State::Dup { of, .. } = fds[i].state else {
            continue;
        };
        let r = fds
            .iter()
            .find(|o| o.fd == of)
            .map_or(0, |o| o.state.rank());
        if let State::Dup { rank, .. } = &mut fds[i].state {
            *rank = r;
        }
    }
}

/// A new descriptor sharing `of`'s description (`of` is in place).
pub fn recreate(of: i32) -> Result<i32, FdFailure> {
    sys::fcntl(of, F_DUPFD_CLOEXEC, 0)
        .map(|fd| fd as i32)
        .map_err(|e| ("duplicate a descriptor", e))
}
