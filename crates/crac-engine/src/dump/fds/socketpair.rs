//! Unix socket pairs with both ends in the process (a self-pipe made with
//! `socketpair`, tokio's signal pipe, a connection to the process's own Unix
//! listener): stream, datagram and seqpacket, with the data queued in each
//! direction and the shutdown state.
//!
//! While threads are stopped, each end's receive queue is read without
//! being consumed (`SO_PEEK_OFF` and `MSG_PEEK`, as CRIU does), one message
//! at a time for datagram and seqpacket sockets. The restored process gets
//! a new pair of the same type; each queued message is sent again from the
//! other end, so message boundaries stay. Descriptors in flight
//! (`SCM_RIGHTS`) refuse the checkpoint; empty (zero-byte) messages are not
//! carried, the others around them are.

use crac_image::{FdRecord, FD_SOCKETPAIR};
use crac_sys::sock::{self as s, AF_UNIX};
use crac_sys::{sys, Errno};

use super::socket::unix_diag;
use super::{dup_to, Carried, FdFailure, State, F_DUPFD_CLOEXEC};

const ENOBUFS: Errno = Errno(105);
const EBADMSG: Errno = Errno(74);

/// One end of a pair.
#[derive(Debug)]
pub struct End {
    inode: u64,
    peer: u64,
    ty: i32,
    sndbuf: i32,
    /// The first descriptor of this socket holds its queue; others are
    /// duplicates.
    primary: bool,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2) bits at the dump.
    shutdown: u8,
    /// Bytes queued for this end to read (`len` of them valid).
    data: Box<[u8]>,
    len: usize,
    /// Message lengths, datagram and seqpacket sockets (`count` valid).
    msgs: Box<[u32]>,
    count: usize,
}

/// Plans one end whose peer inode is `peer` (buffers come later, in
/// [`keep_complete`], once the peer is known to be in the process).
pub fn plan(fd: i32, inode: u64, peer: u64, ty: i32) -> Option<End> {
    if !matches!(ty, s::SOCK_STREAM | s::SOCK_DGRAM | s::SOCK_SEQPACKET) {
        return None;
    }
    Some(End {
        inode,
        peer,
        ty,
        sndbuf: s::getsockopt_int(fd, s::SOL_SOCKET, s::SO_SNDBUF).ok()?,
        primary: false,
        shutdown: 0,
        data: Box::default(),
        len: 0,
        msgs: Box::default(),
        count: 0,
    })
}

fn end_of(c: &Carried) -> Option<&End> {
    match &c.state {
        State::SocketPair(e) => Some(e),
        _ => None,
    }
}

/// Drops socket ends whose peer is not in the process (their traffic
/// comes from or goes to the outside), then sizes the buffers of the first
/// descriptor of each socket: its queue holds at most what its peer may
/// have in flight, bounded by the peer's send buffer.
pub fn keep_complete(fds: &mut Vec<Carried>) {
    let ends: Vec<(u64, u64, i32)> = fds
        .iter()
        .filter_map(|c| end_of(c).map(|e| (e.inode, e.peer, e.sndbuf)))
        .collect();
    fds.retain(|c| {
        end_of(c).is_none_or(|e| ends.iter().any(|&(i, p, _)| i == e.peer && p == e.inode))
    });
    let mut seen: Vec<u64> = Vec::new();
    for c in fds.iter_mut() {
        let State::SocketPair(e) = &mut c.state else {
            continue;
        };
        if seen.contains(&e.inode) {
            continue;
        }
        seen.push(e.inode);
        let peer_sndbuf = ends
            .iter()
            .find(|x| x.0 == e.peer)
            .map_or(0, |x| x.2.max(0) as usize);
        // A sender may go over its buffer by one message of up to the
        // buffer's size.
        let size = 2 * peer_sndbuf + 4096;
        e.primary = true;
        e.data = vec![0u8; size].into_boxed_slice();
        if e.ty != s::SOCK_STREAM {
            // Every queued message costs its sender well over 256 bytes.
            e.msgs = vec![0u32; size / 256 + 16].into_boxed_slice();
        }
    }
}

impl End {
    /// While threads are stopped: copies this end's receive queue and
    /// shutdown state, leaving both as they were. Allocation-free.
    pub fn capture(&mut self, fd: i32) -> Result<(), FdFailure> {
        if !self.primary {
            return Ok(());
        }
        self.shutdown = unix_diag(self.inode as u32)?.shutdown;
        let old = s::getsockopt_int(fd, s::SOL_SOCKET, s::SO_PEEK_OFF)
            .map_err(|e| ("read a socket's peek offset", e))?;
        s::setsockopt_int(fd, s::SOL_SOCKET, s::SO_PEEK_OFF, 0)
            .map_err(|e| ("set a socket's peek offset", e))?;
        let r = self.peek_all(fd);
        let back = s::setsockopt_int(fd, s::SOL_SOCKET, s::SO_PEEK_OFF, old)
            .map_err(|e| ("put a socket's peek offset back", e));
        r.and(back)
    }

    fn peek_all(&mut self, fd: i32) -> Result<(), FdFailure> {
        self.len = 0;
        self.count = 0;
        let stream = self.ty == s::SOCK_STREAM;
        // Nothing more can come after a zero-byte read of a stream (its peer
        // shut down) or of a seqpacket socket shut down for receiving. Else
        // zero bytes are an empty message at the head; peeking at it marks it
        // so that the next peek passes it (the peek offset passes empty
        // messages anywhere else too: they are not carried).
        let eof_possible = stream || (self.ty == s::SOCK_SEQPACKET && self.shutdown & 1 != 0);
        let mut empty_in_a_row = 0;
        loop {
            if self.len == self.data.len() || (!stream && self.count == self.msgs.len()) {
                return Err(("carry a socket pair: more is queued than planned", ENOBUFS));
            }
            let buf = &mut self.data[self.len..];
            let (n, flags) = match s::recv_flags(fd, buf, s::MSG_PEEK | s::MSG_DONTWAIT) {
                Ok(x) => x,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(("read a socket pair's queue", e)),
            };
            if flags & s::MSG_CTRUNC != 0 {
                return Err((
                    "carry a socket pair: descriptors are in flight (SCM_RIGHTS)",
                    EBADMSG,
                ));
            }
            if flags & s::MSG_TRUNC != 0 {
                return Err(("carry a socket pair: a message is too large", ENOBUFS));
            }
            if n == 0 {
                empty_in_a_row += 1;
                if eof_possible || empty_in_a_row > 1 {
                    return Ok(());
                }
                continue;
            }
            empty_in_a_row = 0;
            if !stream {
                self.msgs[self.count] = n as u32;
                self.count += 1;
            }
            self.len += n;
        }
    }
}

/// Fills the record of a socket pair end (the queue is the first
/// descriptor's of that socket).
pub fn record(e: &End, fds: &[Carried], r: &mut FdRecord<'_>) {
    r.kind = FD_SOCKETPAIR;
    r.id = e.inode;
    r.values = [e.peer, e.ty as u64, 0, 0];
    r.buffered = primary(fds, e.inode).map_or(0, |p| p.len as u64);
}

fn primary(fds: &[Carried], inode: u64) -> Option<&End> {
    fds.iter()
        .filter_map(end_of)
        .find(|e| e.inode == inode && e.primary)
}

/// Sends `to`'s queue from `from` (message by message for datagram and
/// seqpacket sockets) without blocking.
fn refill(from: i32, to: &End) -> Result<(), FdFailure> {
    let flags = s::MSG_DONTWAIT | s::MSG_NOSIGNAL;
    let err = |e| ("refill a socket pair", e);
    if to.ty == s::SOCK_STREAM {
        let mut off = 0;
        while off < to.len {
            match s::send(from, &to.data[off..to.len], flags) {
                Ok(n) => off += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err(e)),
            }
        }
        return Ok(());
    }
    let mut off = 0;
    for &n in &to.msgs[..to.count] {
        let m = &to.data[off..off + n as usize];
        loop {
            match s::send(from, m, flags) {
                Ok(_) => break,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err(e)),
            }
        }
        off += n as usize;
    }
    Ok(())
}

/// One new pair for the ends `a` and `b`, both moved to `above` or higher,
/// with their queues and shutdown state.
fn new_pair(a: &End, b: &End, above: i32) -> Result<(i32, i32), FdFailure> {
    let (x, y) =
        s::socketpair(AF_UNIX, a.ty | s::SOCK_CLOEXEC).map_err(|e| ("create a socket pair", e))?;
    let mv = |fd: i32| {
        let r = sys::fcntl(fd, F_DUPFD_CLOEXEC, above as usize);
        let _ = sys::close(fd);
        r.map(|n| n as i32)
            .map_err(|e| ("move a socket pair end", e))
    };
    let (x, y) = match (mv(x), mv(y)) {
        (Ok(x), Ok(y)) => (x, y),
        (Ok(fd), Err(e)) | (Err(e), Ok(fd)) => {
            let _ = sys::close(fd);
            return Err(e);
        }
        (Err(e), Err(_)) => return Err(e),
    };
    let r = (|| -> Result<(), FdFailure> {
        // Room for what the original senders had queued.
        for (fd, end) in [(x, a), (y, b)] {
            if end.sndbuf > 0 {
                let _ = s::setsockopt_int(fd, s::SOL_SOCKET, s::SO_SNDBUF, end.sndbuf / 2);
            }
        }
        refill(y, a)?;
        refill(x, b)?;
        // Shutting one end down for sending shuts the other for receiving:
        // each end's bits are enough.
        for (fd, end) in [(x, a), (y, b)] {
            if end.shutdown & 1 != 0 {
                s::shutdown(fd, s::SHUT_RD).map_err(|e| ("shut a socket pair end down", e))?;
            }
            if end.shutdown & 2 != 0 {
                s::shutdown(fd, s::SHUT_WR).map_err(|e| ("shut a socket pair end down", e))?;
            }
        }
        Ok(())
    })();
    match r {
        Ok(()) => Ok((x, y)),
        Err(e) => {
            let _ = sys::close(x);
            let _ = sys::close(y);
            Err(e)
        }
    }
}

/// In the restored process: recreates every carried pair at its original
/// descriptor numbers with flags, queues and shutdown state.
/// Allocation-free; goes on after a failure and returns the first.
pub fn recreate(fds: &[Carried], above: i32) -> Result<(), FdFailure> {
    let mut first = Ok(());
    for a in fds.iter().filter_map(end_of) {
        if !a.primary || a.inode > a.peer {
            continue;
        }
        let Some(b) = primary(fds, a.peer) else {
            continue;
        };
        let r = new_pair(a, b, above).and_then(|(x, y)| {
            let mut r = Ok(());
            for c in fds {
                let src = match end_of(c) {
                    Some(e) if e.inode == a.inode => x,
                    Some(e) if e.inode == b.inode => y,
                    _ => continue,
                };
                r = r.and(dup_to(src, c.fd, c.flags));
            }
            let _ = sys::close(x);
            let _ = sys::close(y);
            r
        });
        if first.is_ok() {
            first = r;
        }
    }
    first
}
