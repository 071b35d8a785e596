//! Sockets across a checkpoint: `fds_sock MODE [DIR]` sets sockets up,
//! checkpoints itself and checks them after restore, then prints
//! "MODE OK" (or "FAILED: ..." and exits 1).
//!
//! * `pairs`: stream, datagram and seqpacket socket pairs with data queued
//!   both ways. First a dump that leaves the process running (the queues
//!   must be untouched: "PAIRS LEFT OK"), then the real checkpoint.
//! * `listeners DIR`: TCP and UDP v4/v6, Unix stream (path, abstract) and
//!   datagram sockets; after restore each one takes a new connection or
//!   datagram at its old address.
//! * `tcp-port`: one TCP listener (prints "port: N") that accepts after
//!   restore.
//! * `scm`: a descriptor in flight on a socket pair refuses the checkpoint
//!   and the queue stays as it was ("SCM REFUSED").
//! * `unix-path DIR`: one Unix listener at DIR/s.sock that accepts after
//!   restore.
//! * `close`: an established TCP connection (both ends in the process) with
//!   the `Close` policy comes back closed; the listener is carried.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crac_engine::native::{checkpoint as engine_checkpoint, DumpOptions, DumpOutcome, FdPolicy};
use payload::{check, checkpoint, checkpoint_with_policies, errno, fail, move_to};

/// (O_NONBLOCK set, close-on-exec set).
fn flags(fd: RawFd) -> (bool, bool) {
    let (fl, cloexec) = payload::flags(fd);
    (fl & libc::O_NONBLOCK != 0, cloexec)
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this program owns.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
}

fn sockopt(fd: RawFd, level: i32, opt: i32) -> i32 {
    let mut v: i32 = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: getsockopt writes at most 4 bytes into `v`.
    let r = unsafe { libc::getsockopt(fd, level, opt, (&raw mut v).cast(), &raw mut len) };
    check(
        r == 0,
        &format!("getsockopt {opt} on {fd}: errno {}", errno()),
    );
    v
}

fn setopt(fd: RawFd, level: i32, opt: i32, v: i32) {
    // SAFETY: setsockopt reads 4 bytes from `v`.
    let r = unsafe { libc::setsockopt(fd, level, opt, (&raw const v).cast(), 4) };
    check(r == 0, &format!("setsockopt {opt} on {fd}"));
}

fn link(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `recv(fd, MSG_DONTWAIT)` into a 128 KiB buffer: the bytes or the errno.
fn recv(fd: RawFd) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; 128 << 10];
    // SAFETY: recv writes at most buf.len() bytes into buf.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn send(fd: RawFd, data: &[u8]) -> Result<usize, i32> {
    // SAFETY: send reads data.len() bytes from data.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

fn pair(ty: i32) -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two ints.
    check(
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
            == 0,
        "socketpair",
    );
    (fds[0], fds[1])
}

/// Waits up to 5 s for `fd` to be readable.
fn wait_readable(fd: RawFd, what: &str) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd.
    let n = unsafe { libc::poll(&raw mut p, 1, 5000) };
    check(n == 1, &format!("{what}: nothing arrived within 5 s"));
}

fn stream_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

const DGRAMS: [usize; 5] = [1, 100, 3000, 60_000, 7];

fn dgram(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// Stream pair 40/41 (+ 46, a duplicate of 40), datagram 42/43, seqpacket
/// 44/45 (45 shut down for writing), with data queued both ways.
fn pairs_setup() {
    let (a, b) = pair(libc::SOCK_STREAM);
    let (a, b) = (move_to(a, 40, true), move_to(b, 41, false));
    set_nonblock(a);
    check(
        send(a, &stream_bytes()) == Ok(100_000),
        "stream send 40 -> 41",
    );
    check(send(b, b"pong") == Ok(4), "stream send 41 -> 40");
    // SAFETY: dup onto a reserved number.
    check(unsafe { libc::dup2(a, 46) } == 46, "dup2");

    let (c, d) = pair(libc::SOCK_DGRAM);
    let (c, d) = (move_to(c, 42, true), move_to(d, 43, true));
    // An empty datagram first: it is not carried, the others are.
    check(send(c, b"") == Ok(0), "empty dgram send 42 -> 43");
    for (i, len) in DGRAMS.into_iter().enumerate() {
        check(send(c, &dgram(i, len)) == Ok(len), "dgram send 42 -> 43");
    }
    for m in [&b"x"[..], b"yz"] {
        check(send(d, m) == Ok(m.len()), "dgram send 43 -> 42");
    }

    let (e, f) = pair(libc::SOCK_SEQPACKET);
    let (e, f) = (move_to(e, 44, true), move_to(f, 45, true));
    for m in [&b"first"[..], b"second message"] {
        check(send(e, m) == Ok(m.len()), "seqpacket send 44 -> 45");
    }
    check(send(f, b"back") == Ok(4), "seqpacket send 45 -> 44");
    // SAFETY: shutdown on a descriptor owned here.
    check(unsafe { libc::shutdown(f, libc::SHUT_WR) } == 0, "shutdown");
}

fn pairs_check(restored: bool) {
    check(flags(40) == (true, true), "flags of 40");
    check(flags(41) == (false, false), "flags of 41");
    check(flags(46) == (true, false), "flags of 46");
    check(
        link(40) == link(46) && link(40) != link(41),
        "46 is 40's socket",
    );
    for (fd, ty) in [
        (40, libc::SOCK_STREAM),
        (42, libc::SOCK_DGRAM),
        (44, libc::SOCK_SEQPACKET),
    ] {
        check(
            sockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE) == ty,
            "socket type",
        );
    }
    // Stream: the bytes, in order, then nothing; both ways; still connected.
    let mut got = Vec::new();
    while let Ok(b) = recv(41) {
        if b.is_empty() {
            break;
        }
        got.extend_from_slice(&b);
    }
    check(
        got == stream_bytes(),
        &format!("stream 40 -> 41: {} bytes", got.len()),
    );
    check(recv(40) == Ok(b"pong".to_vec()), "stream 41 -> 40");
    check(recv(40) == Err(libc::EAGAIN), "stream 40 empty");
    check(send(41, b"again") == Ok(5), "stream send after");
    check(recv(46) == Ok(b"again".to_vec()), "stream still connected");
    // Datagrams: each message whole and in order (the empty one that came
    // first only in the process that kept running).
    if !restored {
        check(recv(43) == Ok(Vec::new()), "the empty datagram stays");
    }
    for (i, len) in DGRAMS.into_iter().enumerate() {
        check(
            recv(43) == Ok(dgram(i, len)),
            &format!("datagram {i} 42 -> 43"),
        );
    }
    check(recv(43) == Err(libc::EAGAIN), "datagrams 43 empty");
    check(recv(42) == Ok(b"x".to_vec()), "datagram x");
    check(recv(42) == Ok(b"yz".to_vec()), "datagram yz");
    check(recv(42) == Err(libc::EAGAIN), "datagrams 42 empty");
    // Seqpacket: messages, then the shutdown.
    check(recv(45) == Ok(b"first".to_vec()), "seqpacket first");
    check(
        recv(45) == Ok(b"second message".to_vec()),
        "seqpacket second",
    );
    check(recv(45) == Err(libc::EAGAIN), "seqpacket 45 empty");
    check(recv(44) == Ok(b"back".to_vec()), "seqpacket back");
    check(recv(44) == Ok(Vec::new()), "seqpacket 44 at EOF");
    check(
        send(45, b"no") == Err(libc::EPIPE),
        "45 shut down for writing",
    );
}

fn pairs() {
    let image = std::env::var("CRAC_CHECKPOINT_TO").unwrap_or_else(|_| fail("no image dir"));
    pairs_setup();
    match engine_checkpoint(&DumpOptions {
        dir: format!("{image}-left").into(),
        leave_running: true,
        ..Default::default()
    }) {
        Ok(DumpOutcome::LeftRunning { .. }) => {}
        other => fail(&format!("dump leaving the process running: {other:?}")),
    }
    pairs_check(false);
    println!("PAIRS LEFT OK");
    for fd in 40..=46 {
        // SAFETY: closing descriptors set up above.
        unsafe { libc::close(fd) };
    }
    pairs_setup();
    checkpoint();
    pairs_check(true);
    println!("PAIRS OK");
}

/// The local address of socket `fd` as text (`127.0.0.1:80`, `[::1]:80`, a
/// path, `@name`).
fn local(fd: RawFd) -> String {
    let domain = sockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN);
    if domain == libc::AF_UNIX {
        // SAFETY: borrowed for getsockname only; ManuallyDrop never closes it.
        let s = ManuallyDrop::new(unsafe { UnixDatagram::from_raw_fd(fd) });
        let a = s
            .local_addr()
            .unwrap_or_else(|e| fail(&format!("getsockname {fd}: {e}")));
        if let Some(p) = a.as_pathname() {
            return p.display().to_string();
        }
        let name = a.as_abstract_name().unwrap_or_default();
        return format!("@{}", String::from_utf8_lossy(name));
    }
    // SAFETY: as above.
    let s = ManuallyDrop::new(unsafe { UdpSocket::from_raw_fd(fd) });
    s.local_addr()
        .unwrap_or_else(|e| fail(&format!("getsockname {fd}: {e}")))
        .to_string()
}

fn accept(fd: RawFd, what: &str) {
    wait_readable(fd, what);
    // SAFETY: accept4 without an address buffer.
    let c = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    check(
        c >= 0,
        &format!("{what}: accept failed with errno {}", errno()),
    );
    check(
        send(c, b"hi") == Ok(2),
        &format!("{what}: write to the accepted connection"),
    );
    // SAFETY: closing the accepted connection.
    unsafe { libc::close(c) };
}

/// A TCP v6 listener on `[::1]` with `IPV6_V6ONLY`, without `SO_REUSEADDR`,
/// backlog 7.
fn tcp6_v6only() -> RawFd {
    // SAFETY: plain socket calls on a new socket.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(fd >= 0, "socket");
    setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1);
    // SAFETY: a zeroed sockaddr_in6 is valid.
    let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    a.sin6_family = libc::AF_INET6 as u16;
    a.sin6_addr.s6_addr[15] = 1;
    // SAFETY: bind reads one sockaddr_in6.
    let r = unsafe { libc::bind(fd, (&raw const a).cast(), std::mem::size_of_val(&a) as u32) };
    check(
        r == 0,
        &format!("bind [::1]:0: errno {} (is IPv6 loopback up?)", errno()),
    );
    // SAFETY: listen on the new socket.
    check(unsafe { libc::listen(fd, 7) } == 0, "listen");
    fd
}

/// Listening and bound sockets at 50..=57 (57 bound at a relative path); after restore each one has its
/// address, flags and options and takes a new connection or datagram.
fn listeners(dir: &Path) {
    let t4 = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
    t4.set_nonblocking(true).unwrap();
    move_to(t4.into_raw_fd(), 50, true);
    move_to(tcp6_v6only(), 51, false);
    let u4 = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
    move_to(u4.into_raw_fd(), 52, true);
    let u6 = UdpSocket::bind("[::1]:0").unwrap_or_else(|e| fail(&e.to_string()));
    move_to(u6.into_raw_fd(), 53, true);
    let path = dir.join("listen.sock");
    let l = UnixListener::bind(&path).unwrap_or_else(|e| fail(&e.to_string()));
    move_to(l.into_raw_fd(), 54, true);
    let name = format!("crac-test-{}", std::process::id());
    let abs = UnixSocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = UnixListener::bind_addr(&abs).unwrap_or_else(|e| fail(&e.to_string()));
    move_to(l.into_raw_fd(), 55, true);
    let dpath = dir.join("dgram.sock");
    let d = UnixDatagram::bind(&dpath).unwrap_or_else(|e| fail(&e.to_string()));
    move_to(d.into_raw_fd(), 56, true);
    // A relative path, from the working directory `dir`.
    std::env::set_current_dir(dir).unwrap_or_else(|e| fail(&e.to_string()));
    let l = UnixListener::bind("rel.sock").unwrap_or_else(|e| fail(&e.to_string()));
    move_to(l.into_raw_fd(), 57, true);
    let before: Vec<String> = (50..=56).map(local).collect();
    println!("addresses: {}", before.join(" "));
    let v6only_53 = sockopt(53, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY);

    checkpoint();

    let after: Vec<String> = (50..=56).map(local).collect();
    check(
        after == before,
        &format!("addresses after restore: {after:?}"),
    );
    check(flags(50) == (true, true), "flags of 50");
    check(flags(51) == (false, false), "flags of 51");
    check(
        sockopt(50, libc::SOL_SOCKET, libc::SO_REUSEADDR) == 1,
        "SO_REUSEADDR of 50",
    );
    check(
        sockopt(51, libc::SOL_SOCKET, libc::SO_REUSEADDR) == 0,
        "SO_REUSEADDR of 51",
    );
    check(
        sockopt(51, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == 1,
        "IPV6_V6ONLY of 51",
    );
    check(
        sockopt(53, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == v6only_53,
        "IPV6_V6ONLY of 53",
    );
    for fd in [50, 51, 54, 55] {
        check(
            sockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == 1,
            &format!("{fd} listens"),
        );
    }

    for (fd, addr) in [(50, &before[0]), (51, &before[1])] {
        let a: SocketAddr = addr.parse().unwrap();
        let mut c = TcpStream::connect(a).unwrap_or_else(|e| fail(&format!("connect {a}: {e}")));
        accept(fd, &format!("TCP listener {a}"));
        let mut hi = [0u8; 2];
        c.read_exact(&mut hi)
            .unwrap_or_else(|e| fail(&format!("read from {a}: {e}")));
    }
    for (fd, addr) in [(52, &before[2]), (53, &before[3])] {
        let a: SocketAddr = addr.parse().unwrap();
        let from = if a.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let s = UdpSocket::bind(from).unwrap();
        s.send_to(b"ping", a)
            .unwrap_or_else(|e| fail(&format!("send to {a}: {e}")));
        wait_readable(fd, &format!("UDP socket {a}"));
        check(
            recv(fd) == Ok(b"ping".to_vec()),
            &format!("datagram at {a}"),
        );
    }
    let mut c = UnixStream::connect(&path)
        .unwrap_or_else(|e| fail(&format!("connect {}: {e}", path.display())));
    accept(54, "Unix path listener");
    let mut hi = [0u8; 2];
    c.read_exact(&mut hi).unwrap();
    let mut c =
        UnixStream::connect_addr(&abs).unwrap_or_else(|e| fail(&format!("connect @{name}: {e}")));
    accept(55, "Unix abstract listener");
    c.read_exact(&mut hi).unwrap();
    let s = UnixDatagram::unbound().unwrap();
    s.send_to(b"ping", &dpath)
        .unwrap_or_else(|e| fail(&format!("send to {}: {e}", dpath.display())));
    wait_readable(56, "Unix datagram socket");
    check(
        recv(56) == Ok(b"ping".to_vec()),
        "datagram at the Unix path",
    );
    // Rebound at the absolute path; the working directory is back.
    check(
        local(57) == dir.join("rel.sock").display().to_string(),
        &format!("address of 57: {}", local(57)),
    );
    check(
        std::env::current_dir().ok().as_deref() == Some(dir),
        "working directory",
    );
    let mut c =
        UnixStream::connect("rel.sock").unwrap_or_else(|e| fail(&format!("connect rel.sock: {e}")));
    accept(57, "Unix relative path listener");
    c.read_exact(&mut hi).unwrap();
    println!("LISTENERS OK");
}

/// One TCP listener at 50; prints its port; accepts after restore.
fn tcp_port() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
    let a = l.local_addr().unwrap();
    println!("port: {}", a.port());
    move_to(l.into_raw_fd(), 50, true);
    checkpoint();
    let _c = TcpStream::connect(a).unwrap_or_else(|e| fail(&format!("connect {a}: {e}")));
    accept(50, "TCP listener");
    println!("TCP-PORT OK");
}

/// One Unix stream listener at 50, bound at `dir`/s.sock; accepts after
/// restore.
fn unix_path(dir: &Path) {
    let path = dir.join("s.sock");
    let l = UnixListener::bind(&path).unwrap_or_else(|e| fail(&e.to_string()));
    move_to(l.into_raw_fd(), 50, true);
    checkpoint();
    let _c = UnixStream::connect(&path)
        .unwrap_or_else(|e| fail(&format!("connect {}: {e}", path.display())));
    accept(50, "Unix path listener");
    println!("UNIX-PATH OK");
}

/// An established connection, client at 60 (non-blocking) and server end
/// at 61, both with the `Close` policy; the listener at 62 is carried.
fn close() {
    let image = std::env::var("CRAC_CHECKPOINT_TO").unwrap_or_else(|_| fail("no image dir"));
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&e.to_string()));
    let a = l.local_addr().unwrap();
    let c = TcpStream::connect(a).unwrap();
    let (s, _) = l.accept().unwrap();
    c.set_nonblocking(true).unwrap();
    (&s).write_all(b"lost").unwrap();
    let c = move_to(c.into_raw_fd(), 60, true);
    let s = move_to(s.into_raw_fd(), 61, false);
    let l = move_to(l.into_raw_fd(), 62, true);
    checkpoint_with_policies(
        image.into(),
        vec![(c, FdPolicy::Close), (s, FdPolicy::Close)],
    );
    check(flags(c) == (true, true), "flags of 60");
    check(flags(s) == (false, false), "flags of 61");
    check(
        sockopt(c, libc::SOL_SOCKET, libc::SO_TYPE) == libc::SOCK_STREAM,
        "type of 60",
    );
    for fd in [c, s] {
        check(recv(fd) == Ok(Vec::new()), &format!("{fd} reads EOF"));
        check(
            send(fd, b"x") == Err(libc::EPIPE),
            &format!("{fd} writes EPIPE"),
        );
    }
    // SAFETY: a new epoll instance watching `c`.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32,
        u64: 60,
    };
    // SAFETY: epoll_ctl reads one event.
    check(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &raw mut ev) } == 0,
        "epoll_ctl",
    );
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: epoll_wait writes at most 4 events.
    let n = unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 4, 1000) };
    let want = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;
    let got = out[0].events;
    check(
        n == 1 && got & want == want,
        &format!("epoll reports {got:#x}, not HUP"),
    );
    let _c2 = TcpStream::connect(a).unwrap_or_else(|e| fail(&format!("connect {a}: {e}")));
    accept(l, "carried listener");
    println!("CLOSE OK");
}

/// One control message carrying one descriptor (`struct cmsghdr` + int).
#[repr(C, align(8))]
#[derive(Default)]
struct FdCmsg {
    len: usize,
    level: i32,
    ty: i32,
    fd: i32,
    pad: i32,
}

/// Sends "x" with descriptor 0 attached from `fd`.
fn send_with_fd(fd: RawFd) {
    let mut data = *b"x";
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut c = FdCmsg {
        len: 20, // CMSG_LEN(4)
        level: libc::SOL_SOCKET,
        ty: libc::SCM_RIGHTS,
        fd: 0,
        pad: 0,
    };
    // SAFETY: a zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&raw mut c).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>();
    // SAFETY: sendmsg reads the message set up above.
    check(
        unsafe { libc::sendmsg(fd, &raw const msg, 0) } == 1,
        "sendmsg",
    );
}

/// A descriptor in flight on a socket pair: the checkpoint is refused and
/// the message is still queued with its descriptor.
fn scm() {
    let (a, b) = pair(libc::SOCK_STREAM);
    let (a, b) = (move_to(a, 40, true), move_to(b, 41, true));
    send_with_fd(a);
    match crac::checkpoint_restore() {
        Ok(()) => fail("the checkpoint was not refused"),
        Err(e) => println!("refused: {}", format!("{e:#}").replace('\n', " / ")),
    }
    let mut data = [0u8; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 4,
    };
    let mut c = [FdCmsg::default(), FdCmsg::default()];
    // SAFETY: a zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = c.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&c);
    // SAFETY: recvmsg writes into the buffers set up above.
    let n = unsafe { libc::recvmsg(b, &raw mut msg, libc::MSG_DONTWAIT) };
    check(n == 1 && data[0] == b'x', "the message is still queued");
    check(
        msg.msg_controllen >= 20 && c[0].ty == libc::SCM_RIGHTS && c[0].fd >= 0,
        "the descriptor is still attached",
    );
    // SAFETY: closing the descriptor just received.
    unsafe { libc::close(c[0].fd) };
    println!("SCM REFUSED");
}

fn main() {
    crac::init();
    let mode = std::env::args().nth(1);
    let dir = std::env::args().nth(2).map(PathBuf::from);
    match mode.as_deref() {
        Some("pairs") => pairs(),
        Some("listeners") => listeners(&dir.unwrap_or_else(|| fail("no DIR"))),
        Some("tcp-port") => tcp_port(),
        Some("unix-path") => unix_path(&dir.unwrap_or_else(|| fail("no DIR"))),
        Some("close") => close(),
        Some("scm") => scm(),
        other => fail(&format!("unknown mode {other:?}")),
    }
}
