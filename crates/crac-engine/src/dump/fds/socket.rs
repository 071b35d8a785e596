//! Sockets: which kind a socket descriptor is carried as, the kernel's
//! socket diagnostics (`NETLINK_SOCK_DIAG`) that tell a Unix socket's peer
//! and a listener's backlog, addresses as text, and sockets a resource
//! policy closes.
//!
//! * a Unix socket whose peer is also in the process: [`super::socketpair`];
//! * a listening TCP or Unix stream socket, a bound, unconnected UDP or Unix
//!   datagram socket: [`super::listen`];
//! * any socket with [`FdPolicy::Close`]: [`Closed`], it comes back as a
//!   closed connection.

use std::net::{Ipv4Addr, Ipv6Addr};

use crac_image::{FdRecord, FD_CLOSED};
use crac_sys::sock::{self as s, AF_INET, AF_INET6, AF_UNIX};
use crac_sys::{sys, Errno};

use super::{listen, socketpair, FdFailure, FdPolicy, State};

/// Room for any `sockaddr` (`sockaddr_storage`).
pub const ADDR_MAX: usize = 128;

/// The kind `fd` is carried as, if it is a socket the engine can carry
/// under `policies`; `None` for other descriptors.
pub fn plan(fd: i32, link: &str, policies: &[(i32, FdPolicy)]) -> Option<State> {
    let inode: u64 = link
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let policy = policies.iter().rev().find(|p| p.0 == fd).map(|p| p.1);
    let family = s::getsockopt_int(fd, s::SOL_SOCKET, s::SO_DOMAIN).ok()?;
    let ty = s::getsockopt_int(fd, s::SOL_SOCKET, s::SO_TYPE).ok()?;
    match policy {
        Some(FdPolicy::Close) => {
            return Some(State::SocketClosed(Closed {
                ty,
                name: describe(fd, family, ty).into_bytes().into_boxed_slice(),
            }))
        }
        Some(FdPolicy::Ignore) => return None,
        Some(FdPolicy::Reopen) | None => {}
    }
    let listening = s::getsockopt_int(fd, s::SOL_SOCKET, s::SO_ACCEPTCONN).ok()? != 0;
    if family == AF_UNIX && !listening {
        let d = unix_diag(inode as u32).ok()?;
        if d.peer != 0 {
            return socketpair::plan(fd, inode, u64::from(d.peer), ty).map(State::SocketPair);
        }
    }
    listen::plan(fd, inode, family, ty, listening).map(State::Listen)
}

/// What a socket is, in words: `tcp 127.0.0.1:5000 -> 127.0.0.1:41234`.
fn describe(fd: i32, family: i32, ty: i32) -> String {
    let proto = match (family, ty) {
        (AF_INET | AF_INET6, s::SOCK_STREAM) => "tcp",
        (AF_INET | AF_INET6, s::SOCK_DGRAM) => "udp",
        (AF_INET | AF_INET6, _) => "ip",
        (AF_UNIX, s::SOCK_STREAM) => "unix stream",
        (AF_UNIX, s::SOCK_DGRAM) => "unix datagram",
        (AF_UNIX, s::SOCK_SEQPACKET) => "unix seqpacket",
        _ => "socket",
    };
    let mut buf = [0u8; ADDR_MAX];
    let local = s::getsockname(fd, &mut buf)
        .map(|n| addr_text(&buf[..n]))
        .unwrap_or_default();
    let peer = s::getpeername(fd, &mut buf)
        .map(|n| addr_text(&buf[..n]))
        .unwrap_or_default();
    let mut out = format!("{proto} socket");
    if !local.is_empty() {
        out.push(' ');
        out.push_str(&local);
    }
    if !peer.is_empty() {
        out.push_str(" -> ");
        out.push_str(&peer);
    }
    out
}

/// A `sockaddr` as text: `127.0.0.1:8080`, `[::1]:80`, a path, `@name` for
/// an abstract Unix address, empty for an unnamed one.
pub fn addr_text(a: &[u8]) -> String {
    if a.len() < 2 {
        return String::new();
    }
    match i32::from(u16::from_ne_bytes([a[0], a[1]])) {
        AF_INET if a.len() >= 8 => {
            let port = u16::from_be_bytes([a[2], a[3]]);
            format!("{}:{port}", Ipv4Addr::new(a[4], a[5], a[6], a[7]))
        }
        AF_INET6 if a.len() >= 28 => {
            let port = u16::from_be_bytes([a[2], a[3]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[8..24]);
            let scope = u32::from_ne_bytes([a[24], a[25], a[26], a[27]]);
            let ip = Ipv6Addr::from(ip);
            if scope != 0 {
                format!("[{ip}%{scope}]:{port}")
            } else {
                format!("[{ip}]:{port}")
            }
        }
        AF_UNIX => {
            let path = &a[2..];
            match path.first() {
                None => String::new(),
                Some(0) => format!("@{}", String::from_utf8_lossy(&path[1..])),
                Some(_) => {
                    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                    String::from_utf8_lossy(&path[..end]).into_owned()
                }
            }
        }
        f => format!("(address family {f})"),
    }
}

/// The `sockaddr` bytes of address text as [`addr_text`] writes it, for
/// `family`; `None` if the text is not such an address.
pub fn addr_from_text(family: i32, text: &[u8]) -> Option<([u8; ADDR_MAX], usize)> {
    let mut a = [0u8; ADDR_MAX];
    a[..2].copy_from_slice(&(family as u16).to_ne_bytes());
    match family {
        AF_INET | AF_INET6 => {
            let sa: std::net::SocketAddr = std::str::from_utf8(text).ok()?.parse().ok()?;
            a[2..4].copy_from_slice(&sa.port().to_be_bytes());
            match (family, sa) {
                (AF_INET, std::net::SocketAddr::V4(v4)) => {
                    a[4..8].copy_from_slice(&v4.ip().octets());
                    Some((a, 16))
                }
                (AF_INET6, std::net::SocketAddr::V6(v6)) => {
                    a[8..24].copy_from_slice(&v6.ip().octets());
                    a[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
                    Some((a, 28))
                }
                _ => None,
            }
        }
        AF_UNIX => {
            // An abstract name may hold any bytes; a path must fit with its NUL.
            let (bytes, abstract_) = match text.strip_prefix(b"@") {
                Some(n) => (n, true),
                None => (text, false),
            };
            let room = 108 - usize::from(!abstract_);
            if bytes.is_empty() || bytes.len() > room || (!abstract_ && bytes.contains(&0)) {
                return None;
            }
            let start = 2 + usize::from(abstract_);
            a[start..start + bytes.len()].copy_from_slice(bytes);
            let len = start + bytes.len() + usize::from(!abstract_);
            Some((a, len))
        }
        _ => None,
    }
}

/// What `NETLINK_SOCK_DIAG` tells about a Unix socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnixDiag {
    /// Peer inode (0 if none).
    pub peer: u32,
    /// Listening: connections waiting; else bytes queued.
    pub rqueue: u32,
    /// Listening: the backlog; else bytes queued for sending.
    pub wqueue: u32,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2) bits.
    pub shutdown: u8,
}

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_ne_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A netlink socket that has sent `req` (a whole message); the caller reads
/// the answer and closes it.
fn diag_socket(req: &[u8]) -> Result<i32, FdFailure> {
    let nl = s::socket(
        s::AF_NETLINK,
        s::SOCK_RAW | s::SOCK_CLOEXEC,
        NETLINK_SOCK_DIAG,
    )
    .map_err(|e| ("open a socket diagnostics socket", e))?;
    // No address: a netlink socket sends to the kernel by default.
    if let Err(e) = s::send(nl, req, 0) {
        let _ = sys::close(nl);
        return Err(("ask for socket diagnostics", e));
    }
    Ok(nl)
}

/// Calls `each` with the payload (after the netlink header) of every answer
/// message to `req` until the kernel is done. Allocation-free.
fn diag_answers(req: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), FdFailure> {
    let nl = diag_socket(req)?;
    let mut buf = [0u8; 16384];
    let r = 'outer: loop {
        let n = match s::recv_flags(nl, &mut buf, 0) {
            Ok((n, _)) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => break Err(("read socket diagnostics", e)),
        };
        let mut off = 0;
        while off + 16 <= n {
            let len = u32_at(&buf, off) as usize;
            let ty = u16_at(&buf, off + 4);
            if len < 16 || off + len > n {
                break 'outer Err(("understand socket diagnostics", Errno::EINVAL));
            }
            match ty {
                NLMSG_DONE => break 'outer Ok(()),
                NLMSG_ERROR => {
                    let code = if len >= 20 {
                        u32_at(&buf, off + 16) as i32
                    } else {
                        0
                    };
                    if code == 0 {
                        break 'outer Ok(());
                    }
                    break 'outer Err(("get socket diagnostics", Errno(-code)));
                }
                _ => each(&buf[off + 16..off + len]),
            }
            off += (len + 3) & !3;
        }
        if req_is_exact(req) {
            break Ok(());
        }
    };
    let _ = sys::close(nl);
    r
}

/// Whether `req` asks for one socket (one answer, no `NLMSG_DONE`).
fn req_is_exact(req: &[u8]) -> bool {
    u16_at(req, 6) & NLM_F_DUMP == 0
}

/// The diagnostics of the Unix socket with inode `ino` (peer, queue
/// lengths, shutdown state). Allocation-free.
pub fn unix_diag(ino: u32) -> Result<UnixDiag, FdFailure> {
    const UDIAG_SHOW_PEER: u32 = 4;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // unix_diag_req: family, protocol, pad, states, ino, show, cookie.
    req[16] = AF_UNIX as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    req[24..28].copy_from_slice(&ino.to_ne_bytes());
    req[28..32].copy_from_slice(&(UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req[32..40].fill(0xff);
    let mut out = None;
    diag_answers(&req, |m| {
        // unix_diag_msg: family, type, state, pad, ino, cookie[2]; then attributes.
        if m.len() < 16 || u32_at(m, 4) != ino {
            return;
        }
        let mut d = UnixDiag::default();
        let mut off = 16;
        while off + 4 <= m.len() {
            let len = usize::from(u16_at(m, off));
            let kind = u16_at(m, off + 2);
            if len < 4 || off + len > m.len() {
                break;
            }
            let v = &m[off + 4..off + len];
            match kind {
                2 if v.len() >= 4 => d.peer = u32_at(v, 0),
                4 if v.len() >= 8 => {
                    d.rqueue = u32_at(v, 0);
                    d.wqueue = u32_at(v, 4);
                }
                6 if !v.is_empty() => d.shutdown = v[0],
                _ => {}
            }
            off += (len + 3) & !3;
        }
        out = Some(d);
    })?;
    out.ok_or((
        "find a Unix socket in the socket diagnostics",
        Errno::ENOENT,
    ))
}

/// The listen backlog of the TCP socket with inode `ino` of `family`, from
/// the kernel's list of listening sockets.
pub fn tcp_backlog(family: i32, ino: u64) -> Option<u32> {
    const TCP_LISTEN: u32 = 10;
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, id (48 bytes).
    req[16] = family as u8;
    req[17] = 6; // IPPROTO_TCP
    req[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    let mut out = None;
    // inet_diag_msg: 4 bytes, id (48), expires, rqueue, wqueue (= the
    // backlog for a listener), uid, inode.
    diag_answers(&req, |m| {
        if m.len() >= 72 && u64::from(u32_at(m, 68)) == ino {
            out = Some(u32_at(m, 60));
        }
    })
    .ok()?;
    out
}

/// A socket a resource policy closes: it comes back as one end of a Unix
/// socket pair of the same type, shut down both ways, whose other end is
/// closed (reads give EOF, writes `EPIPE`, epoll reports HUP).
#[derive(Debug)]
pub struct Closed {
    ty: i32,
    /// What it was, for the record.
    name: Box<[u8]>,
}

impl Closed {
    /// Fills the record.
    pub fn record<'a>(&'a self, r: &mut FdRecord<'a>) {
        r.kind = FD_CLOSED;
        r.values = [self.ty as u64, 0, 0, 0];
        r.name = &self.name;
    }

    /// A new closed connection (the caller places it). Allocation-free.
    pub fn recreate(&self) -> Result<i32, FdFailure> {
        let ty = match self.ty {
            s::SOCK_DGRAM | s::SOCK_SEQPACKET => self.ty,
            _ => s::SOCK_STREAM,
        };
        let (a, b) = s::socketpair(AF_UNIX, ty | s::SOCK_CLOEXEC)
            .map_err(|e| ("create a closed connection", e))?;
        let r = s::shutdown(a, s::SHUT_RDWR);
        let _ = sys::close(b);
        match r {
            Ok(()) => Ok(a),
            Err(e) => {
                let _ = sys::close(a);
                Err(("shut a closed connection down", e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_text() {
        for (family, text) in [
            (AF_INET, &b"127.0.0.1:8080"[..]),
            (AF_INET6, b"[::1]:80"),
            (AF_INET6, b"[fe80::1%2]:443"),
            (AF_UNIX, b"/run/app.sock"),
            (AF_UNIX, b"@crac/test"),
        ] {
            let (a, len) = addr_from_text(family, text).unwrap();
            assert_eq!(addr_text(&a[..len]).as_bytes(), text);
        }
        assert!(addr_from_text(AF_INET, b"[::1]:80").is_none());
        assert!(addr_from_text(AF_UNIX, b"").is_none());
        assert!(addr_from_text(AF_UNIX, &[b'x'; 108]).is_none());
    }

    #[test]
    fn unix_diag_finds_the_peer_of_a_socket_pair() {
        let (a, b) = s::socketpair(AF_UNIX, s::SOCK_STREAM | s::SOCK_CLOEXEC).unwrap();
        let ino = |fd: i32| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .to_str()
                .unwrap()
                .trim_start_matches("socket:[")
                .trim_end_matches(']')
                .parse::<u32>()
                .unwrap()
        };
        s::send(a, b"hello", 0).unwrap();
        s::shutdown(b, s::SHUT_WR).unwrap();
        let d = unix_diag(ino(a)).unwrap();
        assert_eq!(d.peer, ino(b));
        assert_eq!(d.shutdown, 1, "a cannot receive any more");
        let d = unix_diag(ino(b)).unwrap();
        assert_eq!((d.peer, d.rqueue, d.shutdown), (ino(a), 5, 2));
        let _ = sys::close(a);
        let _ = sys::close(b);
    }
}
