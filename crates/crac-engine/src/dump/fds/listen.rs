//! Listening TCP and Unix stream sockets, bound UDP and Unix datagram
//! sockets: recreated at restore with the same address, options and
//! backlog. Connections waiting in the accept queue and datagrams queued at
//! the checkpoint are lost (their peers see a reset or nothing).
//!
//! A Unix socket file left at the path by the checkpointed process (a
//! socket nobody listens on: connecting is refused) is removed before the
//! bind; anything else at the path fails the recreation. `crac restore`
//! checks the same before it starts the process (`restore::preflight_sock`).

use crac_image::{FdRecord, FD_LISTEN, SOCKOPT_REUSEADDR, SOCKOPT_REUSEPORT, SOCKOPT_V6ONLY};
use crac_sys::sock::{self as s, AF_INET, AF_INET6, AF_UNIX};
use crac_sys::{sys, Errno};

use super::socket::{addr_text, tcp_backlog, unix_diag, ADDR_MAX};
use super::FdFailure;

/// `SOMAXCONN`, the backlog when the kernel does not tell.
const SOMAXCONN: i32 = 4096;
const F_DUPFD_CLOEXEC: i32 = 1030;
const ECONNREFUSED: Errno = Errno(111);
const EADDRINUSE: Errno = Errno(98);

/// A listening or bound socket's fixed facts.
#[derive(Debug)]
pub struct Listener {
    inode: u64,
    family: i32,
    ty: i32,
    protocol: i32,
    /// `sockaddr` to bind (a relative Unix path made absolute).
    addr: [u8; ADDR_MAX],
    addr_len: usize,
    /// The address as text, for the record.
    name: Box<[u8]>,
    /// Listen backlog; `None` for a datagram socket.
    backlog: Option<i32>,
    /// `SOCKOPT_*` bits.
    options: u64,
    /// An earlier descriptor of the same socket: this one is its duplicate.
    dup_of: Option<i32>,
}

/// Plans a listening stream socket or a bound, unconnected datagram
/// socket; `None` for any other socket.
pub fn plan(fd: i32, inode: u64, family: i32, ty: i32, listening: bool) -> Option<Listener> {
    if !matches!(family, AF_INET | AF_INET6 | AF_UNIX) {
        return None;
    }
    let datagram = ty == s::SOCK_DGRAM && !listening;
    if !(listening && ty == s::SOCK_STREAM || datagram) {
        return None;
    }
    let mut addr = [0u8; ADDR_MAX];
    let addr_len = s::getsockname(fd, &mut addr).ok()?;
    if datagram && (!bound(&addr[..addr_len]) || s::getpeername(fd, &mut [0u8; ADDR_MAX]).is_ok()) {
        return None;
    }
    // The record names the absolute path too: `crac restore` checks it
    // from another working directory.
    let addr_len = absolute(&mut addr, addr_len);
    let name = addr_text(&addr[..addr_len]).into_bytes().into_boxed_slice();
    let opt = |level, opt| s::getsockopt_int(fd, level, opt).is_ok_and(|v| v != 0);
    let mut options = 0;
    if opt(s::SOL_SOCKET, s::SO_REUSEADDR) {
        options |= SOCKOPT_REUSEADDR;
    }
    if opt(s::SOL_SOCKET, s::SO_REUSEPORT) {
        options |= SOCKOPT_REUSEPORT;
    }
    if family == AF_INET6 && opt(s::IPPROTO_IPV6, s::IPV6_V6ONLY) {
        options |= SOCKOPT_V6ONLY;
    }
    let backlog = listening.then(|| {
        let b = match family {
            AF_UNIX => unix_diag(inode as u32).ok().map(|d| d.wqueue),
            _ => tcp_backlog(family, inode),
        };
        b.map_or(SOMAXCONN, |b| b.min(i32::MAX as u32) as i32)
    });
    Some(Listener {
        inode,
        family,
        ty,
        protocol: s::getsockopt_int(fd, s::SOL_SOCKET, s::SO_PROTOCOL).unwrap_or(0),
        addr,
        addr_len,
        name,
        backlog,
        options,
        dup_of: None,
    })
}

/// Whether a datagram socket's address is bound (a port, a Unix name).
fn bound(a: &[u8]) -> bool {
    match a.len() {
        0..=2 => false,
        _ if i32::from(u16::from_ne_bytes([a[0], a[1]])) == AF_UNIX => true,
        _ => u16::from_be_bytes([a[2], a[3]]) != 0,
    }
}

/// Makes a relative Unix path absolute (the restored process gets its
/// working directory back only after its descriptors) if it fits; returns
/// the new length.
fn absolute(addr: &mut [u8; ADDR_MAX], len: usize) -> usize {
    let is_unix = i32::from(u16::from_ne_bytes([addr[0], addr[1]])) == AF_UNIX;
    if !is_unix || len <= 2 || addr[2] == 0 || addr[2] == b'/' {
        return len;
    }
    let end = addr[2..len]
        .iter()
        .position(|&b| b == 0)
        .map_or(len, |i| i + 2);
    let Ok(cwd) = std::env::current_dir() else {
        return len;
    };
    let mut full = cwd.into_os_string().into_encoded_bytes();
    full.push(b'/');
    full.extend_from_slice(&addr[2..end]);
    if full.len() + 1 > 108 {
        return len;
    }
    addr[2..2 + full.len()].copy_from_slice(&full);
    addr[2 + full.len()] = 0;
    3 + full.len()
}

/// Marks later descriptors of a listening socket already planned at a lower
/// number as duplicates (one socket, one bind).
pub fn mark_duplicates(fds: &mut [super::Carried]) {
    for i in 0..fds.len() {
        let super::State::Listen(l) = &fds[i].state else {
            continue;
        };
        let inode = l.inode;
        let first = fds[..i]
            .iter()
            .find(|c| matches!(&c.state, super::State::Listen(x) if x.inode == inode))
            .map(|c| c.fd);
        if let super::State::Listen(l) = &mut fds[i].state {
            l.dup_of = first;
        }
    }
}

/// What is at a Unix socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing.
    Free,
    /// A socket file nobody listens on (connecting is refused).
    Stale,
    /// A socket someone listens on.
    Live,
    /// Something that is not a socket.
    NotSocket,
}

/// The NUL-terminated path of a Unix `sockaddr` (`None` if abstract or
/// unnamed).
fn path_of(addr: &[u8], out: &mut [u8; 110]) -> Option<usize> {
    let p = addr.get(2..)?;
    if p.first().is_none_or(|&b| b == 0) {
        return None;
    }
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len()).min(108);
    out[..end].copy_from_slice(&p[..end]);
    out[end] = 0;
    Some(end + 1)
}

/// What is at the path of the Unix socket address `addr` (of socket type
/// `ty`); `Free` for abstract addresses. Allocation-free.
pub fn unix_path_state(addr: &[u8], ty: i32) -> Result<PathState, Errno> {
    let mut path = [0u8; 110];
    let Some(n) = path_of(addr, &mut path) else {
        return Ok(PathState::Free);
    };
    match s::lstat_mode(&path[..n]) {
        Err(Errno::ENOENT) => return Ok(PathState::Free),
        Err(e) => return Err(e),
        Ok(m) if m & s::S_IFMT != s::S_IFSOCK => return Ok(PathState::NotSocket),
        Ok(_) => {}
    }
    let probe = s::socket(AF_UNIX, ty | s::SOCK_CLOEXEC, 0)?;
    let r = s::connect(probe, addr);
    let _ = sys::close(probe);
    match r {
        Ok(()) => Ok(PathState::Live),
        Err(ECONNREFUSED) => Ok(PathState::Stale),
        // A datagram socket at the path whose owner's queue is full is alive.
        Err(Errno::EAGAIN) => Ok(PathState::Live),
        Err(e) => Err(e),
    }
}

/// A socket of `family`, `ty` and `protocol` with the option bits of
/// `options`, bound to `addr` (not yet listening). Allocation-free; used by
/// the restore and by `crac restore`'s check that the address is free.
pub fn bind_new(
    family: i32,
    ty: i32,
    protocol: i32,
    options: u64,
    addr: &[u8],
) -> Result<i32, FdFailure> {
    let fd = s::socket(family, ty | s::SOCK_CLOEXEC, protocol)
        .map_err(|e| ("create a listening socket", e))?;
    let r = (|| -> Result<(), FdFailure> {
        let set = |level, opt| {
            s::setsockopt_int(fd, level, opt, 1).map_err(|e| ("set a socket option", e))
        };
        if options & SOCKOPT_REUSEADDR != 0 {
            set(s::SOL_SOCKET, s::SO_REUSEADDR)?;
        }
        if options & SOCKOPT_REUSEPORT != 0 {
            set(s::SOL_SOCKET, s::SO_REUSEPORT)?;
        }
        if family == AF_INET6 {
            let v6only = i32::from(options & SOCKOPT_V6ONLY != 0);
            s::setsockopt_int(fd, s::IPPROTO_IPV6, s::IPV6_V6ONLY, v6only)
                .map_err(|e| ("set a socket option", e))?;
        }
        s::bind(fd, addr).map_err(|e| ("bind a socket to its address", e))
    })();
    match r {
        Ok(()) => Ok(fd),
        Err(e) => {
            let _ = sys::close(fd);
            Err(e)
        }
    }
}

impl Listener {
    /// Fills the record.
    pub fn record<'a>(&'a self, r: &mut FdRecord<'a>) {
        r.kind = FD_LISTEN;
        r.id = self.inode;
        r.values = [
            self.family as u64,
            self.ty as u64,
            self.backlog.unwrap_or(0) as u64,
            self.options,
        ];
        r.name = &self.name;
    }

    /// A new socket bound at the address and listening (the caller places
    /// it). Allocation-free.
    pub fn recreate(&self) -> Result<i32, FdFailure> {
        if let Some(first) = self.dup_of {
            return sys::fcntl(first, F_DUPFD_CLOEXEC, 0)
                .map(|fd| fd as i32)
                .map_err(|e| ("duplicate a listening socket", e));
        }
        let addr = &self.addr[..self.addr_len];
        if self.family == AF_UNIX {
            match unix_path_state(addr, self.ty) {
                Ok(PathState::Free) => {}
                Ok(PathState::Stale) => {
                    let mut path = [0u8; 110];
                    if let Some(n) = path_of(addr, &mut path) {
                        sys::unlink(&path[..n], 0)
                            .map_err(|e| ("remove a stale Unix socket file", e))?;
                    }
                }
                Ok(PathState::Live) => return Err(("bind a Unix socket path", EADDRINUSE)),
                Ok(PathState::NotSocket) => return Err(("bind a Unix socket path", Errno::EEXIST)),
                Err(e) => return Err(("look at a Unix socket path", e)),
            }
        }
        let fd = bind_new(self.family, self.ty, self.protocol, self.options, addr)?;
        if let Some(backlog) = self.backlog {
            if let Err(e) = s::listen(fd, backlog) {
                let _ = sys::close(fd);
                return Err(("listen on a socket", e));
            }
        }
        Ok(fd)
    }
}
