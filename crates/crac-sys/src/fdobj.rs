//! Kernel objects behind descriptors the dump carries: timerfd, signalfd,
//! epoll and memfd, plus the descriptor comparisons (`kcmp`) and file facts
//! (`fstat`, `lseek`, `ftruncate`) they need.
//!
//! Raw-int API like [`crate::sys`]: plain numbers in and out, no
//! allocation, async-signal-safe.
#![allow(unsafe_code)]

use crate::raw::{check, syscall6, Errno};

const NR_LSEEK: usize = 8;
const NR_FSTAT: usize = 5;
const NR_IOCTL: usize = 16;
const NR_PWRITE64: usize = 18;
const NR_FCNTL: usize = 72;
const NR_FTRUNCATE: usize = 77;
const NR_EPOLL_CTL: usize = 233;
const NR_TIMERFD_CREATE: usize = 283;
const NR_TIMERFD_SETTIME: usize = 286;
const NR_TIMERFD_GETTIME: usize = 287;
const NR_SIGNALFD4: usize = 289;
const NR_EPOLL_CREATE1: usize = 291;
const NR_KCMP: usize = 312;
const NR_MEMFD_CREATE: usize = 319;

/// `TFD_IOC_SET_TICKS` (`_IOW('T', 0, u64)`; needs `CONFIG_CHECKPOINT_RESTORE`).
const TFD_IOC_SET_TICKS: usize = 0x4008_5400;
const F_ADD_SEALS: usize = 1033;
const F_GET_SEALS: usize = 1034;
const KCMP_FILE: usize = 0;
const KCMP_EPOLL_TFD: usize = 7;

/// A timerfd's setting: (interval ns, value ns); value 0 = disarmed.
fn itimerspec(interval_ns: u64, value_ns: u64) -> [i64; 4] {
    let ts = |ns: u64| [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    let (i, v) = (ts(interval_ns), ts(value_ns));
    [i[0], i[1], v[0], v[1]]
}

/// `timerfd_create(clock, flags)`.
pub fn timerfd_create(clock: i32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe {
        syscall6(
            NR_TIMERFD_CREATE,
            clock as usize,
            flags as usize,
            0,
            0,
            0,
            0,
        )
    })
    .map(|fd| fd as i32)
}

/// `timerfd_settime(fd, flags, {interval, value})`; the old setting is not
/// asked for.
pub fn timerfd_settime(fd: i32, flags: i32, interval_ns: u64, value_ns: u64) -> Result<(), Errno> {
    let spec = itimerspec(interval_ns, value_ns);
    // SAFETY: `spec` is a struct itimerspec (four longs) borrowed for the call.
    check(unsafe {
        syscall6(
            NR_TIMERFD_SETTIME,
            fd as usize,
            flags as usize,
            spec.as_ptr() as usize,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// `timerfd_gettime(fd)` as (interval ns, ns to the next expiry; 0 =
/// disarmed or expired).
pub fn timerfd_gettime(fd: i32) -> Result<(u64, u64), Errno> {
    let mut v = [0i64; 4];
    // SAFETY: the kernel writes one struct itimerspec (four longs) into `v`.
    check(unsafe {
        syscall6(
            NR_TIMERFD_GETTIME,
            fd as usize,
            v.as_mut_ptr() as usize,
            0,
            0,
            0,
            0,
        )
    })?;
    let ns = |s: i64, n: i64| (s as u64) * 1_000_000_000 + n as u64;
    Ok((ns(v[0], v[1]), ns(v[2], v[3])))
}

/// `ioctl(fd, TFD_IOC_SET_TICKS, &ticks)`: the expirations a timerfd has
/// not delivered yet (`ticks` must not be 0).
pub fn timerfd_set_ticks(fd: i32, ticks: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads one u64 from `ticks`, borrowed for the call.
    check(unsafe {
        syscall6(
            NR_IOCTL,
            fd as usize,
            TFD_IOC_SET_TICKS,
            &ticks as *const u64 as usize,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// `signalfd4(-1, &mask, 8, flags)`: a new signalfd for the signals in
/// `mask` (bit `n - 1` for signal `n`).
pub fn signalfd(mask: u64, flags: i32) -> Result<i32, Errno> {
    // SAFETY: the kernel reads the 8-byte mask, borrowed for the call.
    check(unsafe {
        syscall6(
            NR_SIGNALFD4,
            -1isize as usize,
            &mask as *const u64 as usize,
            8,
            flags as usize,
            0,
            0,
        )
    })
    .map(|fd| fd as i32)
}

/// `epoll_create1(flags)`.
pub fn epoll_create1(flags: i32) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_EPOLL_CREATE1, flags as usize, 0, 0, 0, 0, 0) }).map(|fd| fd as i32)
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`.
pub fn epoll_add(epfd: i32, fd: i32, events: u32, data: u64) -> Result<(), Errno> {
    // struct epoll_event is packed on x86-64: u32 events, u64 data.
    let mut ev = [0u8; 12];
    ev[..4].copy_from_slice(&events.to_ne_bytes());
    ev[4..].copy_from_slice(&data.to_ne_bytes());
    // SAFETY: the kernel reads one 12-byte struct epoll_event from `ev`.
    check(unsafe {
        syscall6(
            NR_EPOLL_CTL,
            epfd as usize,
            1,
            fd as usize,
            ev.as_ptr() as usize,
            0,
            0,
        )
    })
    .map(drop)
}

/// `memfd_create(name, flags)`; `name` must end with a NUL byte.
pub fn memfd_create(name: &[u8], flags: u32) -> Result<i32, Errno> {
    if name.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `name` is a NUL-terminated string borrowed for the call.
    check(unsafe {
        syscall6(
            NR_MEMFD_CREATE,
            name.as_ptr() as usize,
            flags as usize,
            0,
            0,
            0,
            0,
        )
    })
    .map(|fd| fd as i32)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: i32, len: u64) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_FTRUNCATE, fd as usize, len as usize, 0, 0, 0, 0) }).map(drop)
}

/// `lseek(fd, off, whence)`: the new offset.
pub fn lseek(fd: i32, off: i64, whence: i32) -> Result<u64, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe {
        syscall6(
            NR_LSEEK,
            fd as usize,
            off as usize,
            whence as usize,
            0,
            0,
            0,
        )
    })
    .map(|o| o as u64)
}

/// `pwrite64(fd, buf, off)`: bytes written.
pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    check(unsafe {
        syscall6(
            NR_PWRITE64,
            fd as usize,
            buf.as_ptr() as usize,
            buf.len(),
            off as usize,
            0,
            0,
        )
    })
}

/// `fcntl(fd, F_GET_SEALS)`.
pub fn get_seals(fd: i32) -> Result<u32, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_FCNTL, fd as usize, F_GET_SEALS, 0, 0, 0, 0) }).map(|s| s as u32)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: i32, seals: u32) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_FCNTL, fd as usize, F_ADD_SEALS, seals as usize, 0, 0, 0) })
        .map(drop)
}

/// What `fstat` tells the carried-fd code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mode`.
    pub mode: u32,
    /// `st_size`.
    pub size: u64,
    /// `st_blksize`.
    pub blksize: u64,
}

/// `fstat(fd)`.
pub fn fstat(fd: i32) -> Result<Stat, Errno> {
    // struct stat on x86-64 is 144 bytes: dev 0, ino 8, nlink 16, mode 24,
    // uid 28, gid 32, rdev 40, size 48, blksize 56.
    let mut st = [0u64; 18];
    // SAFETY: the kernel writes one 144-byte struct stat into `st`.
    check(unsafe { syscall6(NR_FSTAT, fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0) })?;
    Ok(Stat {
        dev: st[0],
        ino: st[1],
        mode: st[3] as u32,
        size: st[6],
        blksize: st[7],
    })
}

/// `kcmp(self, self, KCMP_FILE, a, b) == 0`: whether descriptors `a` and
/// `b` of this process share one open file description.
pub fn same_file(a: i32, b: i32) -> Result<bool, Errno> {
    let pid = crate::sys::getpid() as usize;
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_KCMP, pid, pid, KCMP_FILE, a as usize, b as usize, 0) })
        .map(|r| r == 0)
}

/// `kcmp(KCMP_EPOLL_TFD)`: whether descriptor `fd` is the file of the
/// `toff`-th entry for descriptor number `tfd` in epoll `epfd`'s interest
/// list (all in this process).
pub fn epoll_target_is(fd: i32, epfd: i32, tfd: i32, toff: u32) -> Result<bool, Errno> {
    let pid = crate::sys::getpid() as usize;
    let slot = [epfd as u32, tfd as u32, toff];
    // SAFETY: the kernel reads one struct kcmp_epoll_slot (three u32) from
    // `slot`, borrowed for the call.
    check(unsafe {
        syscall6(
            NR_KCMP,
            pid,
            pid,
            KCMP_EPOLL_TFD,
            fd as usize,
            slot.as_ptr() as usize,
            0,
        )
    })
    .map(|r| r == 0)
}
