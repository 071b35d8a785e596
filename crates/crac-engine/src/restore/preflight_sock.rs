//! Preflight checks for carried listening sockets: every address the
//! restored process will bind must be free here, so that an address in use
//! stops the restore before the process exists.
//!
//! Read-only apart from a test bind (with the socket's options) that is
//! closed at once. A Unix socket path is never bound: a socket file nobody
//! listens on is stale (the restored process removes it), a socket someone
//! listens on or any other file is a problem.

use crac_image::{FdRecord, FD_LISTEN};
use crac_sys::sock::{AF_INET, AF_INET6, AF_UNIX};
use crac_sys::{sys, Errno};

use super::preflight::{Problem, ProblemKind};
use crate::dump::fds::listen::{bind_new, unix_path_state, PathState};
use crate::dump::fds::socket::addr_from_text;

const EADDRINUSE: Errno = Errno(98);

/// The problems the listening sockets of `fds` would meet here.
pub(super) fn check(fds: &[FdRecord<'_>]) -> Vec<Problem> {
    let mut out = Vec::new();
    for r in fds.iter().filter(|r| r.kind == FD_LISTEN) {
        if let Some(message) = check_listener(r) {
            out.push(Problem {
                kind: ProblemKind::Address,
                message,
            });
        }
    }
    out
}

fn what(family: i32, ty: i32) -> &'static str {
    match (family, ty) {
        (AF_INET | AF_INET6, 1) => "listening TCP socket",
        (AF_INET | AF_INET6, _) => "UDP socket",
        (_, 1) => "listening Unix socket",
        _ => "Unix datagram socket",
    }
}

/// Why the listener of record `r` cannot be recreated here, if it cannot.
fn check_listener(r: &FdRecord<'_>) -> Option<String> {
    let family = i32::try_from(r.values[0]).unwrap_or(-1);
    let ty = i32::try_from(r.values[1]).unwrap_or(-1);
    let name = String::from_utf8_lossy(r.name);
    let fd = r.fd;
    let Some((addr, len)) = addr_from_text(family, r.name) else {
        return Some(format!(
            "descriptor {fd} is a socket at {name:?} (family {family}), which this engine cannot recreate"
        ));
    };
    if !matches!(ty, 1 | 2) {
        return Some(format!(
            "descriptor {fd} is a socket of type {ty} at {name}, which this engine cannot recreate"
        ));
    }
    let kind = what(family, ty);
    let addr = &addr[..len];
    if family == AF_UNIX && !name.starts_with('@') {
        return match unix_path_state(addr, ty) {
            Ok(PathState::Free | PathState::Stale) => None,
            Ok(PathState::Live) => Some(format!(
                "the address {name} of descriptor {fd} ({kind}) is in use: another socket listens there"
            )),
            Ok(PathState::NotSocket) => Some(format!(
                "the address {name} of descriptor {fd} ({kind}) is taken by a file that is not a socket"
            )),
            Err(e) => Some(format!(
                "the address {name} of descriptor {fd} ({kind}) cannot be looked at: {e}"
            )),
        };
    }
    match bind_new(family, ty, 0, r.values[3], addr) {
        Ok(s) => {
            let _ = sys::close(s);
            None
        }
        Err((_, EADDRINUSE)) => Some(format!(
            "the address {name} of descriptor {fd} ({kind}) is in use"
        )),
        Err((step, e)) => Some(format!(
            "the address {name} of descriptor {fd} ({kind}) cannot be bound here: {step} failed with {e}"
        )),
    }
}
