//! `SO_PEERCRED`: who is at the other end of a Unix stream socket (the
//! control channel checks it on both ends).
//!
//! Kept out of rustix on purpose: its `UCred` holds the PID as a non-zero
//! `Pid`, but the kernel reports 0 for a peer outside the caller's PID
//! namespace, which a hostile peer can arrange. Here it stays a number.
//!
//! # Safety
//! The wrapper passes only pointers to a local `struct ucred`-sized buffer
//! and its length.
#![allow(unsafe_code)]

use crate::raw::{check, syscall6, Errno};

/// `getsockopt` on x86-64.
const GETSOCKOPT: usize = 55;
const SOL_SOCKET: usize = 1;
const SO_PEERCRED: usize = 17;
/// Size of `struct ucred` (pid, uid, gid).
const UCRED_LEN: u32 = 12;

/// The credentials the kernel recorded for a socket's peer: for a
/// connected socket the peer's at `connect`, for an accepted one the
/// caller's at `connect`, and for the caller of `connect` the server's at
/// `listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Its process (thread group) ID in the caller's PID namespace; 0 when
    /// it has none there.
    pub pid: u32,
    /// Its effective uid.
    pub uid: u32,
    /// Its effective gid.
    pub gid: u32,
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
pub fn peer_cred(fd: i32) -> Result<PeerCred, Errno> {
    let mut cred = [0u32; 3];
    let mut len = UCRED_LEN;
    // SAFETY: the kernel writes at most `len` (12) bytes, one `struct
    // ucred`, into `cred` (12 bytes) and the length it wrote into `len`.
    check(unsafe {
        syscall6(
            GETSOCKOPT,
            fd as usize,
            SOL_SOCKET,
            SO_PEERCRED,
            cred.as_mut_ptr() as usize,
            &raw mut len as usize,
            0,
        )
    })?;
    if len != UCRED_LEN {
        return Err(Errno::EINVAL);
    }
    let [pid, uid, gid] = cred;
    Ok(PeerCred { pid, uid, gid })
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_socketpair_peer_is_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_cred(a.as_raw_fd()).unwrap();
        assert_eq!(cred.pid, std::process::id());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let ids = |key: &str| -> u32 {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        assert_eq!((cred.uid, cred.gid), (ids("Uid:"), ids("Gid:")));
    }

    #[test]
    fn not_a_socket() {
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(peer_cred(f.as_raw_fd()), Err(Errno(88)), "ENOTSOCK");
    }
}
