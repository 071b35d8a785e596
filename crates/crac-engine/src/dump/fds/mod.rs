//! File descriptors the native engine carries across a checkpoint.
//!
//! Three steps, matching the dump's phases:
//!
//! 1. [`FdSet::plan`] (threads still running; may allocate): walks
//!    `/proc/self/fd`, decides for every descriptor whether and how it is
//!    carried, reads what cannot change under a stopped process (paths,
//!    addresses, options) and sizes every buffer the next steps need.
//! 2. [`FdSet::capture`] (every other thread stopped; allocation-free): reads
//!    what may change at any time (counters, timers, buffered bytes, offsets,
//!    interest lists) into those buffers, leaving the original process as it
//!    was.
//! 3. [`FdSet::recreate`] (in the restored process, before its threads run;
//!    allocation-free): the state is part of the process's memory, so the
//!    restored process finds it where the dump left it and rebuilds every
//!    descriptor at its original number with its flags. Descriptors that
//!    others refer to (epoll targets) come first.
//!
//! One file per kind holds its three steps. [`FdSet::encode`] writes one
//! [`crac_image::FdRecord`] per descriptor for tools and for the checks
//! `crac restore` makes before anything runs.

mod dup;
mod epoll;
mod eventfd;
mod file;
pub(crate) mod inherited;
pub(crate) mod listen;
mod memfd;
mod pipe;
mod policy;
mod signalfd;
pub(crate) mod socket;
mod socketpair;
mod timerfd;

use std::fs;

use crac_image::{FdRecord, Writer};
use crac_sys::{sys, Errno};

/// What a step of a descriptor's journey failed at: a static description and
/// the errno (plain data: the steps run where nothing may allocate).
pub type FdFailure = (&'static str, Errno);

/// The errno of an [`FdFailure`] that means the descriptor changed since
/// the plan beyond its buffers: the dump tries again with buffers sized
/// anew.
pub const CHANGED: Errno = Errno(0);

const O_ACCMODE: u32 = 3;
const O_NONBLOCK: u32 = 0o4000;
const O_CLOEXEC: u32 = 0o2000000;
const F_GETFL: i32 = 3;
const F_SETFL: i32 = 4;
const F_DUPFD_CLOEXEC: i32 = 1030;

/// What a resource policy asks for one descriptor, overriding the engine's
/// default (carry it if it can, else refuse the checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdPolicy {
    /// Comes back closed: a socket as a closed connection (reads give EOF,
    /// writes EPIPE, epoll reports HUP), anything else as a pipe end whose
    /// other end is closed.
    Close,
    /// Comes back as /dev/null with the same access mode.
    Ignore,
    /// Opened again at restore (a file by its path at the same offset even
    /// if it changed, a listening socket at its address).
    Reopen,
}

/// One carried descriptor.
#[derive(Debug)]
pub struct Carried {
    /// Descriptor number.
    pub fd: i32,
    /// Flags from /proc/self/fdinfo (access mode, O_NONBLOCK, O_CLOEXEC).
    pub flags: u32,
    /// Kind and state.
    pub state: State,
}

/// A carried descriptor's kind and the state needed to rebuild it.
#[derive(Debug)]
pub enum State {
    /// One end of a pipe with both ends in the process; the bytes travel in
    /// the [`pipe::PipeState`] of `FdSet::pipes` with the same inode.
    Pipe {
        /// Pipe inode.
        inode: u64,
    },
    /// An eventfd.
    EventFd(eventfd::EventFd),
    /// A regular file opened by path.
    File(file::FileFd),
    /// Any descriptor a resource policy said to ignore (/dev/null).
    Ignored(policy::Stand),
    /// A non-socket descriptor a resource policy said to close.
    Closed(policy::Stand),
    /// Inherited at start: passed through by `crac restore`, not carried.
    Inherited(inherited::Inherited),
    /// A timerfd.
    TimerFd(timerfd::TimerFd),
    /// A signalfd.
    SignalFd(signalfd::SignalFd),
    /// An epoll.
    Epoll(epoll::Epoll),
    /// A memfd.
    MemFd(memfd::MemFd),
    /// Shares its open file description with lower descriptor `of`.
    Dup {
        /// The descriptor it duplicates.
        of: i32,
        /// `of`'s rank.
        rank: u32,
    },
    /// One end of a Unix socket pair with both ends in the process.
    SocketPair(socketpair::End),
    /// A listening or bound socket, recreated at its address.
    Listen(listen::Listener),
    /// A socket a resource policy closes.
    SocketClosed(socket::Closed),
}

impl State {
    /// When this one is rebuilt: after every descriptor of a lower rank
    /// (epoll refers to its targets by number, an epoll may watch another).
    fn rank(&self) -> u32 {
        match self {
            State::Epoll(e) => 1 + e.depth,
            State::Dup { rank, .. } => *rank,
            _ => 0,
        }
    }
}

/// Every descriptor the dump carries, with buffers for their state.
#[derive(Debug, Default)]
pub struct FdSet {
    /// One entry per carried descriptor, in descriptor order.
    pub fds: Vec<Carried>,
    /// One entry per carried pipe.
    pub pipes: Vec<pipe::PipeState>,
    /// Scratch for `/proc/self/fdinfo` text while threads are stopped.
    info: Box<[u8]>,
    /// Epolls (not inherited) left out: a target is not carried or the
    /// interest list could not be read consistently. The open-fd check let
    /// them pass, so their targets changed since (an async runtime
    /// registering a connection it just accepted, or closing one while the
    /// list was read): the dump must not go on without them.
    pub left_out: Vec<i32>,
}

impl FdSet {
    /// Plans the carrying of every descriptor the engine knows how to
    /// carry, with `policies` overriding the default for some numbers.
    /// Descriptors it cannot carry are left out (the library's open-fd
    /// check refuses them before the engine runs).
    pub fn plan(policies: &[(i32, FdPolicy)]) -> FdSet {
        let mut fds = Vec::new();
        let mut epolls = Vec::new();
        for fd in all_fds() {
            let (Some(link), Some(flags)) = (fd_link(fd), fd_flags(fd)) else {
                continue;
            };
            if link == "anon_inode:[eventpoll]" {
                epolls.push(fd);
            }
            let policy = policies.iter().rev().find(|p| p.0 == fd).map(|p| p.1);
            let by_policy = policy.and_then(|p| policy::plan(fd, &link, p));
            // Inherited wins over carrying by kind (not over a policy).
            let state = by_policy
                .or_else(|| inherited::plan(fd, policies).map(State::Inherited))
                .or_else(|| socket::plan(fd, &link, policies))
                .or_else(|| classify(fd, &link));
            if let Some(state) = state {
                fds.push(Carried { fd, flags, state });
            }
        }
        pipe::keep_complete(&mut fds);
        socketpair::keep_complete(&mut fds);
        listen::mark_duplicates(&mut fds);
        memfd::link_shared(&mut fds);
        dup::link(&mut fds);
        // Last: drops epolls whose targets were dropped.
        epoll::keep_complete(&mut fds);
        let inherited = crate::startup::initial_fds();
        let left_out = epolls
            .into_iter()
            .filter(|fd| !inherited.contains(fd) && !fds.iter().any(|c| c.fd == *fd))
            .collect();
        dup::set_ranks(&mut fds);
        let pipes = pipe::plan(&fds);
        FdSet {
            fds,
            pipes,
            info: vec![0u8; 64 * 1024].into_boxed_slice(),
            left_out,
        }
    }

    /// While threads are stopped: reads the changing state of every carried
    /// descriptor. Allocation-free; the original process sees no difference.
    pub fn capture(&mut self) -> Result<(), FdFailure> {
        pipe::capture(&mut self.pipes)?;
        for c in &mut self.fds {
            match &mut c.state {
                State::Pipe { .. }
                | State::Epoll(_)
                | State::Dup { .. }
                | State::Inherited(_)
                | State::Ignored(_)
                | State::Closed(_) => {}
                State::EventFd(e) => e.capture(c.fd, &mut self.info)?,
                State::File(f) => f.capture(c.fd)?,
                State::TimerFd(t) => t.capture(c.fd, &mut self.info)?,
                State::SignalFd(s) => s.capture(c.fd, &mut self.info)?,
                State::MemFd(m) => m.capture(c.fd)?,
                State::SocketPair(e) => e.capture(c.fd)?,
                State::Listen(_) | State::SocketClosed(_) => {}
            }
        }
        epoll::capture_all(&mut self.fds)?;
        Ok(())
    }

    /// Writes one record per carried descriptor. Allocation-free.
    pub fn encode(&self, w: &mut Writer<'_>) {
        for c in &self.fds {
            let mut r = FdRecord {
                fd: c.fd as u32,
                flags: c.flags,
                ..FdRecord::default()
            };
            // A duplicate has its original's record, with its own number.
            let src = match c.state {
                State::Dup { of, .. } => self.fds.iter().find(|o| o.fd == of).unwrap_or(c),
                _ => c,
            };
            match &src.state {
                State::Dup { .. } => {}
                State::Pipe { inode } => pipe::record(*inode, &self.pipes, &mut r),
                State::EventFd(e) => e.record(&mut r),
                State::File(f) => f.record(&mut r),
                State::Ignored(s) => s.record(false, &mut r),
                State::Closed(s) => s.record(true, &mut r),
                State::Inherited(i) => i.record(&mut r),
                State::TimerFd(t) => t.record(&mut r),
                State::SignalFd(s) => s.record(&mut r),
                State::Epoll(e) => e.record(&mut r),
                State::MemFd(m) => {
                    m.record(&mut r);
                    r.name = m.name();
                }
                State::SocketPair(e) => socketpair::record(e, &self.fds, &mut r),
                State::Listen(l) => l.record(&mut r),
                State::SocketClosed(x) => x.record(&mut r),
            }
            r.encode(w);
        }
    }

    /// In the restored process, before its threads run: rebuilds every
    /// carried descriptor at its number. Allocation-free. Goes on after a
    /// failure (the program is better off with the other descriptors) and
    /// returns the first one.
    pub fn recreate(&self) -> Result<(), FdFailure> {
        let above = self.fds.iter().map(|c| c.fd).max().unwrap_or(2) + 1;
        let mut first: Result<(), FdFailure> = Ok(());
        let mut note = |r: Result<(), FdFailure>| {
            if first.is_ok() {
                first = r;
            }
        };
        // First: the numbers `crac restore` handed them over at must be
        // free again before anything else is rebuilt.
        note(inherited::recreate(&self.fds));
        note(pipe::recreate(&self.fds, &self.pipes, above));
        note(socketpair::recreate(&self.fds, above));
        let last = self.fds.iter().map(|c| c.state.rank()).max().unwrap_or(0);
        for rank in 0..=last {
            for c in self.fds.iter().filter(|c| c.state.rank() == rank) {
                let r = match &c.state {
                    State::Pipe { .. } | State::Inherited(_) | State::SocketPair(_) => Ok(()),
                    State::EventFd(e) => e.recreate().and_then(|fd| place(fd, c, above)),
                    State::File(f) => f.recreate().and_then(|fd| place(fd, c, above)),
                    State::Ignored(_) => {
                        policy::recreate_ignored(c.flags).and_then(|fd| place(fd, c, above))
                    }
                    State::Closed(_) => {
                        policy::recreate_closed(c.flags).and_then(|fd| place(fd, c, above))
                    }
                    State::TimerFd(t) => t.recreate().and_then(|fd| place(fd, c, above)),
                    State::SignalFd(s) => s.recreate().and_then(|fd| place(fd, c, above)),
                    State::Epoll(e) => e.recreate(c, above),
                    State::MemFd(m) => m.recreate(c).and_then(|fd| place(fd, c, above)),
                    State::Dup { of, .. } => dup::recreate(*of).and_then(|fd| place(fd, c, above)),
                    State::Listen(l) => l.recreate().and_then(|fd| place(fd, c, above)),
                    State::SocketClosed(x) => x.recreate().and_then(|fd| place(fd, c, above)),
                };
                note(r);
            }
        }
        first
    }
}

/// The descriptors the dump carries by default, sorted.
pub fn carried(policies: &[(i32, FdPolicy)]) -> Vec<i32> {
    FdSet::plan(policies).fds.iter().map(|c| c.fd).collect()
}

/// The kind of `fd` if the engine can carry it, with its fixed facts.
fn classify(fd: i32, link: &str) -> Option<State> {
    if let Some(inode) = link
        .strip_prefix("pipe:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
    {
        return Some(State::Pipe { inode });
    }
    match link {
        "anon_inode:[eventfd]" => eventfd::plan(fd).map(State::EventFd),
        "anon_inode:[timerfd]" => timerfd::plan(fd).map(State::TimerFd),
        "anon_inode:[signalfd]" => signalfd::plan(fd).map(State::SignalFd),
        "anon_inode:[eventpoll]" => epoll::plan(fd).map(State::Epoll),
        _ if link.starts_with("/memfd:") => memfd::plan(fd, link).map(State::MemFd),
        _ if link.starts_with('/') => file::plan(fd, link, false).map(State::File),
        _ => None,
    }
}

/// Moves the new descriptor `new` to `c.fd` with `c`'s flags (close-on-exec,
/// non-blocking) and closes `new`. `new` is first moved to `above` or higher
/// so that it never lands on a number another carried descriptor still
/// needs.
fn place(new: i32, c: &Carried, above: i32) -> Result<(), FdFailure> {
    let moved = if new >= above {
        new
    } else {
        let m = sys::fcntl(new, F_DUPFD_CLOEXEC, above as usize)
            .map_err(|e| ("move a recreated descriptor", e))? as i32;
        let _ = sys::close(new);
        m
    };
    let r = dup_to(moved, c.fd, c.flags);
    let _ = sys::close(moved);
    r
}

/// `dup3(src, fd)` with close-on-exec and non-blocking as in `flags`.
fn dup_to(src: i32, fd: i32, flags: u32) -> Result<(), FdFailure> {
    let cloexec = if flags & O_CLOEXEC != 0 {
        O_CLOEXEC as i32
    } else {
        0
    };
    sys::dup3(src, fd, cloexec).map_err(|e| ("place a recreated descriptor", e))?;
    // O_NONBLOCK lives in the open file description, shared with `src`; the
    // other status flags (O_APPEND, O_DIRECT, O_NOATIME) were set at open.
    if let Ok(cur) = sys::fcntl(fd, F_GETFL, 0) {
        let want = (cur as u32 & !O_NONBLOCK) | (flags & O_NONBLOCK);
        if want != cur as u32 {
            let _ = sys::fcntl(fd, F_SETFL, want as usize);
        }
    }
    Ok(())
}

/// Writes `prefix`, the number `fd` and a NUL into `out` (at least
/// `prefix.len() + 12` bytes), allocation-free; returns the length with the
/// NUL.
fn proc_path(prefix: &[u8], fd: i32, out: &mut [u8]) -> usize {
    out[..prefix.len()].copy_from_slice(prefix);
    let mut n = prefix.len();
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = fd.unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        out[n] = digits[d];
        n += 1;
    }
    out[n] = 0;
    n + 1
}

/// `/proc/self/fdinfo/FD` of `fd` into `buf`, allocation-free: the text
/// (truncated to `buf`).
fn read_fdinfo(fd: i32, buf: &mut [u8]) -> Result<&[u8], FdFailure> {
    let mut path = [0u8; 40];
    let n = proc_path(b"/proc/self/fdinfo/", fd, &mut path);
    let f = sys::open(&path[..n], O_CLOEXEC as i32, 0)
        .map_err(|e| ("open a descriptor's fdinfo", e))?;
    let mut len = 0;
    let r = loop {
        if len == buf.len() {
            break Ok(());
        }
        match sys::read(f, &mut buf[len..]) {
            Ok(0) => break Ok(()),
            Ok(k) => len += k,
            Err(Errno::EINTR) => {}
            Err(e) => break Err(("read a descriptor's fdinfo", e)),
        }
    };
    let _ = sys::close(f);
    r.map(|()| &buf[..len])
}

/// The value after `key` (e.g. `b"eventfd-count:"`) on its line of an
/// fdinfo text, trimmed.
fn fdinfo_field<'t>(text: &'t [u8], key: &[u8]) -> Option<&'t [u8]> {
    text.split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(key))
        .map(trim)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// A number in `radix` (no sign, no prefix).
fn parse_num(s: &[u8], radix: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = (c as char).to_digit(radix)?;
        v = v.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(v)
}

fn fd_link(fd: i32) -> Option<String> {
    fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()?
        .into_os_string()
        .into_string()
        .ok()
}

fn fd_flags(fd: i32) -> Option<u32> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let line = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

fn all_fds() -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields() {
        let t = b"pos:\t0\nflags:\t02004002\nmnt_id:\t15\neventfd-count:                3\n";
        assert_eq!(fdinfo_field(t, b"flags:"), Some(&b"02004002"[..]));
        assert_eq!(
            fdinfo_field(t, b"eventfd-count:").and_then(|v| parse_num(v, 16)),
            Some(3)
        );
        assert_eq!(fdinfo_field(t, b"nope:"), None);
        assert_eq!(parse_num(b"", 10), None);
        assert_eq!(parse_num(b"1x", 10), None);
    }
}
