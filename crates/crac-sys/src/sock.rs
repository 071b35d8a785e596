//! Socket system calls for carried sockets: creating, binding and querying
//! sockets, peeking at queued data without consuming it, and refilling
//! queues at restore.
//!
//! Raw-integer API like [`crate::sys`]: addresses are `sockaddr` bytes, the
//! wrappers never allocate and are async-signal-safe (the dump calls them
//! while other threads are stopped).
//!
//! # Safety
//! Each wrapper passes only pointers derived from Rust references of the
//! right size, so the kernel reads or writes only memory the wrapper borrows.
#![allow(unsafe_code)]

use crate::raw::{check, syscall6, Errno};

const SOCKET: usize = 41;
const CONNECT: usize = 42;
const SENDTO: usize = 44;
const RECVMSG: usize = 47;
const SHUTDOWN: usize = 48;
const BIND: usize = 49;
const LISTEN: usize = 50;
const GETSOCKNAME: usize = 51;
const GETPEERNAME: usize = 52;
const SOCKETPAIR: usize = 53;
const SETSOCKOPT: usize = 54;
const GETSOCKOPT: usize = 55;
const NEWFSTATAT: usize = 262;

/// `AF_UNIX`.
pub const AF_UNIX: i32 = 1;
/// `AF_INET`.
pub const AF_INET: i32 = 2;
/// `AF_INET6`.
pub const AF_INET6: i32 = 10;
/// `AF_NETLINK`.
pub const AF_NETLINK: i32 = 16;
/// `SOCK_STREAM`.
pub const SOCK_STREAM: i32 = 1;
/// `SOCK_DGRAM`.
pub const SOCK_DGRAM: i32 = 2;
/// `SOCK_RAW`.
pub const SOCK_RAW: i32 = 3;
/// `SOCK_SEQPACKET`.
pub const SOCK_SEQPACKET: i32 = 5;
/// `SOCK_CLOEXEC` (or-ed into a socket type).
pub const SOCK_CLOEXEC: i32 = 0o2000000;
/// `SOL_SOCKET`.
pub const SOL_SOCKET: i32 = 1;
/// `IPPROTO_IPV6` (the option level).
pub const IPPROTO_IPV6: i32 = 41;
/// `SO_REUSEADDR`.
pub const SO_REUSEADDR: i32 = 2;
/// `SO_TYPE`.
pub const SO_TYPE: i32 = 3;
/// `SO_SNDBUF`.
pub const SO_SNDBUF: i32 = 7;
/// `SO_RCVBUF`.
pub const SO_RCVBUF: i32 = 8;
/// `SO_REUSEPORT`.
pub const SO_REUSEPORT: i32 = 15;
/// `SO_ACCEPTCONN`.
pub const SO_ACCEPTCONN: i32 = 30;
/// `SO_PEEK_OFF`.
pub const SO_PEEK_OFF: i32 = 42;
/// `SO_PROTOCOL`.
pub const SO_PROTOCOL: i32 = 38;
/// `SO_DOMAIN`.
pub const SO_DOMAIN: i32 = 39;
/// `IPV6_V6ONLY`.
pub const IPV6_V6ONLY: i32 = 26;
/// `MSG_PEEK`.
pub const MSG_PEEK: i32 = 2;
/// `MSG_TRUNC` (in a received message's flags: it was longer than the buffer).
pub const MSG_TRUNC: i32 = 0x20;
/// `MSG_DONTWAIT`.
pub const MSG_DONTWAIT: i32 = 0x40;
/// `MSG_CTRUNC` (in a received message's flags: control data, e.g. passed
/// descriptors, did not fit).
pub const MSG_CTRUNC: i32 = 8;
/// `MSG_NOSIGNAL`.
pub const MSG_NOSIGNAL: i32 = 0x4000;
/// `SHUT_RD`.
pub const SHUT_RD: i32 = 0;
/// `SHUT_WR`.
pub const SHUT_WR: i32 = 1;
/// `SHUT_RDWR`.
pub const SHUT_RDWR: i32 = 2;
/// `S_IFMT`.
pub const S_IFMT: u32 = 0o170000;
/// `S_IFSOCK`.
pub const S_IFSOCK: u32 = 0o140000;

#[repr(C)]
struct IoVec {
    base: *mut u8,
    len: usize,
}

#[repr(C)]
struct MsgHdr {
    name: *mut u8,
    namelen: u32,
    iov: *mut IoVec,
    iovlen: usize,
    control: *mut u8,
    controllen: usize,
    flags: i32,
}

/// `socket(domain, ty, protocol)`.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<i32, Errno> {
    // SAFETY: integers only.
    let r = unsafe {
        syscall6(
            SOCKET,
            domain as usize,
            ty as usize,
            protocol as usize,
            0,
            0,
            0,
        )
    };
    check(r).map(|fd| fd as i32)
}

/// `socketpair(domain, ty, 0)`.
pub fn socketpair(domain: i32, ty: i32) -> Result<(i32, i32), Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two ints into `fds`.
    let r = unsafe {
        syscall6(
            SOCKETPAIR,
            domain as usize,
            ty as usize,
            0,
            fds.as_mut_ptr() as usize,
            0,
            0,
        )
    };
    check(r).map(|_| (fds[0], fds[1]))
}

/// `bind` or `connect` (`nr`) of `fd` to `addr`.
fn addr_call(nr: usize, fd: i32, addr: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `addr.len()` bytes from `addr`.
    let r = unsafe { syscall6(nr, fd as usize, addr.as_ptr() as usize, addr.len(), 0, 0, 0) };
    check(r).map(drop)
}

/// `bind(fd, addr)`; `addr` holds a `sockaddr` of its exact length.
pub fn bind(fd: i32, addr: &[u8]) -> Result<(), Errno> {
    addr_call(BIND, fd, addr)
}

/// `connect(fd, addr)`; `addr` holds a `sockaddr` of its exact length.
pub fn connect(fd: i32, addr: &[u8]) -> Result<(), Errno> {
    addr_call(CONNECT, fd, addr)
}

/// `listen(fd, backlog)`.
pub fn listen(fd: i32, backlog: i32) -> Result<(), Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall6(LISTEN, fd as usize, backlog as usize, 0, 0, 0, 0) }).map(drop)
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: i32, how: i32) -> Result<(), Errno> {
    // SAFETY: integers only.
    check(unsafe { syscall6(SHUTDOWN, fd as usize, how as usize, 0, 0, 0, 0) }).map(drop)
}

fn name_call(nr: usize, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut len = buf.len() as u32;
    // SAFETY: the kernel writes at most `len` (= `buf.len()`) bytes into
    // `buf` and the full length into `len`.
    let r = unsafe {
        syscall6(
            nr,
            fd as usize,
            buf.as_mut_ptr() as usize,
            &raw mut len as usize,
            0,
            0,
            0,
        )
    };
    check(r)?;
    Ok((len as usize).min(buf.len()))
}

/// `getsockname(fd)` into `buf`: the address length (truncated to `buf`).
pub fn getsockname(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    name_call(GETSOCKNAME, fd, buf)
}

/// `getpeername(fd)` into `buf`: the address length (truncated to `buf`).
pub fn getpeername(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    name_call(GETPEERNAME, fd, buf)
}

/// `getsockopt(fd, level, opt)` for an int option.
pub fn getsockopt_int(fd: i32, level: i32, opt: i32) -> Result<i32, Errno> {
    let mut v: i32 = 0;
    let mut len: u32 = 4;
    // SAFETY: the kernel writes at most 4 bytes into `v` and the length
    // into `len`.
    let r = unsafe {
        syscall6(
            GETSOCKOPT,
            fd as usize,
            level as usize,
            opt as usize,
            &raw mut v as usize,
            &raw mut len as usize,
            0,
        )
    };
    check(r).map(|_| v)
}

/// `setsockopt(fd, level, opt, &v)` for an int option.
pub fn setsockopt_int(fd: i32, level: i32, opt: i32, v: i32) -> Result<(), Errno> {
    // SAFETY: the kernel reads 4 bytes from `v`.
    let r = unsafe {
        syscall6(
            SETSOCKOPT,
            fd as usize,
            level as usize,
            opt as usize,
            &raw const v as usize,
            4,
            0,
        )
    };
    check(r).map(drop)
}

/// `recvmsg(fd)` into `buf` without room for control data: (bytes, the
/// message's flags). With `MSG_PEEK` the data stays queued; passed
/// descriptors then show as `MSG_CTRUNC` and are not installed.
pub fn recv_flags(fd: i32, buf: &mut [u8], flags: i32) -> Result<(usize, i32), Errno> {
    let mut iov = IoVec {
        base: buf.as_mut_ptr(),
        len: buf.len(),
    };
    let mut msg = MsgHdr {
        name: core::ptr::null_mut(),
        namelen: 0,
        iov: &raw mut iov,
        iovlen: 1,
        control: core::ptr::null_mut(),
        controllen: 0,
        flags: 0,
    };
    // SAFETY: `msg` points at one iovec covering `buf`; no name or control
    // buffer; the kernel writes into `buf` (at most its length) and
    // `msg.flags`.
    let r = unsafe {
        syscall6(
            RECVMSG,
            fd as usize,
            &raw mut msg as usize,
            flags as usize,
            0,
            0,
            0,
        )
    };
    check(r).map(|n| (n, msg.flags))
}

/// `send(fd, buf, flags)` (no address): bytes sent.
pub fn send(fd: i32, buf: &[u8], flags: i32) -> Result<usize, Errno> {
    sendto(fd, buf, flags, None)
}

/// `sendto(fd, buf, flags, addr)`: bytes sent.
pub fn send_to(fd: i32, buf: &[u8], flags: i32, addr: &[u8]) -> Result<usize, Errno> {
    sendto(fd, buf, flags, Some(addr))
}

/// `sendto`, with a NULL address when there is none (a non-NULL one of
/// length 0 would be refused by UDP).
fn sendto(fd: i32, buf: &[u8], flags: i32, addr: Option<&[u8]>) -> Result<usize, Errno> {
    let (addr, addr_len) = addr.map_or((0, 0), |a| (a.as_ptr() as usize, a.len()));
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf` and,
    // given an address, `addr_len` bytes from it.
    check(unsafe {
        syscall6(
            SENDTO,
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            flags as usize,
            addr,
            addr_len,
        )
    })
}

/// `lstat(path)`'s `st_mode` (the link itself, not its target); `path`
/// must end with a NUL byte.
pub fn lstat_mode(path: &[u8]) -> Result<u32, Errno> {
    if path.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // x86-64 `struct stat` is 144 bytes; st_mode is the u32 at offset 24.
    let mut st = [0u64; 18];
    // SAFETY: `path` is NUL-terminated; the kernel writes one `struct stat`
    // (144 bytes) into `st`.
    let r = unsafe {
        syscall6(
            NEWFSTATAT,
            -100isize as usize,
            path.as_ptr() as usize,
            st.as_mut_ptr() as usize,
            0x100, // AT_SYMLINK_NOFOLLOW
            0,
            0,
        )
    };
    check(r)?;
    Ok(st[3] as u32)
}
