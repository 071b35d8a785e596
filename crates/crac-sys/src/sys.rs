//! Safe wrappers over the raw system calls the in-process dump needs.
//!
//! They take slices and plain values, never allocate, and are
//! async-signal-safe: the dump calls them while other threads are stopped
//! (possibly holding the allocator's locks) and from a signal handler.
//!
//! # Safety
//! Each wrapper passes only pointers derived from Rust references of the
//! right size, so the kernel reads or writes only memory the wrapper borrows.
#![allow(unsafe_code)]

use crate::raw::{check, nr, syscall6, Errno};

/// `a` as a syscall argument.
#[inline(always)]
fn p<T>(a: *const T) -> usize {
    a as usize
}

/// `a`, an out-parameter, as a syscall argument.
#[inline(always)]
fn pm<T>(a: *mut T) -> usize {
    a as usize
}

/// `openat(AT_FDCWD, path, flags, mode)`; `path` must end with a NUL byte.
pub fn open(path: &[u8], flags: i32, mode: u32) -> Result<i32, Errno> {
    if path.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `path` is a NUL-terminated byte string borrowed for the call.
    let r = unsafe {
        syscall6(
            nr::OPENAT,
            -100isize as usize,
            p(path.as_ptr()),
            flags as usize,
            mode as usize,
            0,
            0,
        )
    };
    check(r).map(|fd| fd as i32)
}

/// `close(fd)`.
pub fn close(fd: i32) -> Result<(), Errno> {
    // SAFETY: closing a number has no memory effects; the caller owns `fd`.
    check(unsafe { syscall6(nr::CLOSE, fd as usize, 0, 0, 0, 0, 0) }).map(drop)
}

/// `read(fd, buf)`.
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    check(unsafe {
        syscall6(
            nr::READ,
            fd as usize,
            p(buf.as_mut_ptr()),
            buf.len(),
            0,
            0,
            0,
        )
    })
}

/// `pread64(fd, buf, off)`.
pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    check(unsafe {
        syscall6(
            nr::PREAD64,
            fd as usize,
            p(buf.as_mut_ptr()),
            buf.len(),
            off as usize,
            0,
            0,
        )
    })
}

/// `write(fd, buf)`.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    check(unsafe { syscall6(nr::WRITE, fd as usize, p(buf.as_ptr()), buf.len(), 0, 0, 0) })
}

/// Writes all of `buf`, retrying short writes and `EINTR`.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno(28)),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `len` bytes starting at address `addr` of this process to `fd`.
///
/// The kernel copies from the address itself and fails with `EFAULT` if the
/// range is not readable, so no Rust reference to that memory is formed.
pub fn write_from_addr(fd: i32, addr: u64, len: u64) -> Result<(), Errno> {
    let (mut a, mut left) = (addr, len);
    while left > 0 {
        let chunk = left.min(1 << 30);
        // SAFETY: the kernel only reads `chunk` bytes at `a`, validating the
        // range itself; we never dereference it in Rust.
        let r = unsafe { syscall6(nr::WRITE, fd as usize, a as usize, chunk as usize, 0, 0, 0) };
        match check(r) {
            Ok(0) => return Err(Errno(28)),
            Ok(n) => {
                a += n as u64;
                left -= n as u64;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fsync(fd)`.
pub fn fsync(fd: i32) -> Result<(), Errno> {
    // SAFETY: no memory is passed.
    check(unsafe { syscall6(nr::FSYNC, fd as usize, 0, 0, 0, 0, 0) }).map(drop)
}

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`; paths NUL-terminated.
pub fn rename(from: &[u8], to: &[u8], flags: u32) -> Result<(), Errno> {
    if from.last() != Some(&0) || to.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: both paths are NUL-terminated byte strings borrowed for the call.
    let r = unsafe {
        syscall6(
            316,
            -100isize as usize,
            p(from.as_ptr()),
            -100isize as usize,
            p(to.as_ptr()),
            flags as usize,
            0,
        )
    };
    check(r).map(drop)
}

/// `unlinkat(AT_FDCWD, path, flags)`; path NUL-terminated.
pub fn unlink(path: &[u8], flags: u32) -> Result<(), Errno> {
    if path.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `path` is NUL-terminated and borrowed for the call.
    check(unsafe {
        syscall6(
            263,
            -100isize as usize,
            p(path.as_ptr()),
            flags as usize,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// `getdents64(fd, buf)`.
pub fn getdents64(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    check(unsafe { syscall6(217, fd as usize, p(buf.as_mut_ptr()), buf.len(), 0, 0, 0) })
}

/// `getpid()`.
pub fn getpid() -> u32 {
    // SAFETY: no arguments.
    unsafe { syscall6(nr::GETPID, 0, 0, 0, 0, 0, 0) as u32 }
}

/// `gettid()`.
pub fn gettid() -> u32 {
    // SAFETY: no arguments.
    unsafe { syscall6(nr::GETTID, 0, 0, 0, 0, 0, 0) as u32 }
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: u32, tid: u32, sig: i32) -> Result<(), Errno> {
    // SAFETY: no memory is passed.
    check(unsafe {
        syscall6(
            nr::TGKILL,
            tgid as usize,
            tid as usize,
            sig as usize,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: no memory is passed.
    check(unsafe { syscall6(nr::KILL, pid as isize as usize, sig as usize, 0, 0, 0, 0) }).map(drop)
}

/// `exit_group(code)`.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: ends the process; nothing is passed by reference.
    unsafe {
        syscall6(nr::EXIT_GROUP, code as usize, 0, 0, 0, 0, 0);
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// `futex(word, FUTEX_WAIT_PRIVATE, expected, timeout)`. Returns on wake,
/// value mismatch, signal or timeout (`Err(ETIMEDOUT)`).
pub fn futex_wait(
    word: &core::sync::atomic::AtomicU32,
    expected: u32,
    timeout_ns: Option<u64>,
) -> Result<(), Errno> {
    let ts = timeout_ns.map(|ns| [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64]);
    let tsp = ts.as_ref().map_or(0, |t| p(t.as_ptr()));
    // SAFETY: `word` is a live atomic; `ts`, if any, outlives the call.
    let r = unsafe {
        syscall6(
            nr::FUTEX,
            p(word.as_ptr()),
            128,
            expected as usize,
            tsp,
            0,
            0,
        )
    };
    check(r).map(drop)
}

/// `futex(word, FUTEX_WAKE_PRIVATE, n)`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) {
    // SAFETY: `word` is a live atomic; waking has no other memory effects.
    unsafe {
        syscall6(nr::FUTEX, p(word.as_ptr()), 129, n as usize, 0, 0, 0);
    }
}

/// `arch_prctl(ARCH_GET_FS)` and `arch_prctl(ARCH_GET_GS)`.
pub fn fs_gs_base() -> (u64, u64) {
    let (mut fs, mut gs) = (0u64, 0u64);
    // SAFETY: ARCH_GET_FS writes one u64 into `fs`.
    unsafe { syscall6(nr::ARCH_PRCTL, 0x1003, pm(&mut fs), 0, 0, 0, 0) };
    // SAFETY: ARCH_GET_GS writes one u64 into `gs`.
    unsafe { syscall6(nr::ARCH_PRCTL, 0x1004, pm(&mut gs), 0, 0, 0, 0) };
    (fs, gs)
}

/// `prctl(PR_GET_TID_ADDRESS)`: this thread's clear_child_tid pointer.
pub fn tid_address() -> u64 {
    let mut a = 0u64;
    // SAFETY: the kernel writes one pointer-sized value into `a`.
    unsafe {
        syscall6(nr::PRCTL, 40, pm(&mut a), 0, 0, 0, 0);
    }
    a
}

/// `get_robust_list(0)`: this thread's robust futex list head and length.
pub fn robust_list() -> (u64, u64) {
    let (mut head, mut len) = (0u64, 0u64);
    // SAFETY: the kernel writes one pointer and one size_t.
    unsafe {
        syscall6(nr::GET_ROBUST_LIST, 0, pm(&mut head), pm(&mut len), 0, 0, 0);
    }
    (head, len)
}

/// `set_robust_list(head, len)`.
pub fn set_robust_list(head: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: the kernel only records the pointer; it reads the list at exit.
    check(unsafe { syscall6(nr::SET_ROBUST_LIST, head as usize, len as usize, 0, 0, 0, 0) })
        .map(drop)
}

/// `prctl(PR_GET_NAME)`: this thread's name, NUL-padded.
pub fn thread_name() -> [u8; 16] {
    let mut n = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes.
    unsafe {
        syscall6(nr::PRCTL, 16, p(n.as_mut_ptr()), 0, 0, 0, 0);
    }
    n
}

/// `sched_getaffinity(0)` into `buf`; returns the mask length in bytes.
pub fn affinity(buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes.
    check(unsafe {
        syscall6(
            nr::SCHED_GETAFFINITY,
            0,
            buf.len(),
            p(buf.as_mut_ptr()),
            0,
            0,
            0,
        )
    })
}

/// The kernel's `struct sigaction` on x86-64.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelSigaction {
    /// Handler address, or 0 (SIG_DFL) / 1 (SIG_IGN).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Blocked signals while the handler runs.
    pub mask: u64,
}

/// `SA_SIGINFO`.
pub const SA_SIGINFO: u64 = 4;
/// `SA_ONSTACK`.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// `SA_RESTART`.
pub const SA_RESTART: u64 = 0x1000_0000;
/// `SA_RESTORER`.
pub const SA_RESTORER: u64 = 0x0400_0000;

/// `rt_sigaction(sig, new, old)`.
///
/// # Safety
/// A new handler address must be a function that is sound to run as a
/// signal handler for `sig` (async-signal-safe, right signature).
pub unsafe fn sigaction(
    sig: i32,
    new: Option<&KernelSigaction>,
    old: Option<&mut KernelSigaction>,
) -> Result<(), Errno> {
    let np = new.map_or(0, |n| p(n));
    let op = old.map_or(0, |o| p(o));
    // SAFETY: both pointers, if set, point to live KernelSigaction values of the
    // size passed (sigsetsize 8).
    check(unsafe { syscall6(nr::RT_SIGACTION, sig as usize, np, op, 8, 0, 0) }).map(drop)
}

/// `rt_sigprocmask(how, new, old)` with 64-bit masks. `how`: 0 block,
/// 1 unblock, 2 set.
pub fn sigprocmask(how: i32, new: Option<u64>) -> Result<u64, Errno> {
    let mut old = 0u64;
    let n = new.unwrap_or(0);
    let np = if new.is_some() { p(&n) } else { 0 };
    // SAFETY: `n` and `old` are live u64 values of sigsetsize 8.
    check(unsafe { syscall6(nr::RT_SIGPROCMASK, how as usize, np, pm(&mut old), 8, 0, 0) })?;
    Ok(old)
}

/// `sigaltstack` as (base, size, flags).
pub fn sigaltstack(new: Option<(u64, u64, u32)>) -> Result<(u64, u64, u32), Errno> {
    #[repr(C)]
    #[derive(Default)]
    struct StackT {
        sp: u64,
        flags: i32,
        _pad: i32,
        size: u64,
    }
    let n = new.map(|(sp, size, flags)| StackT {
        sp,
        flags: flags as i32,
        _pad: 0,
        size,
    });
    let mut old = StackT::default();
    let np = n.as_ref().map_or(0, |s| p(s));
    // SAFETY: both pointers refer to live stack_t-shaped values.
    check(unsafe { syscall6(nr::SIGALTSTACK, np, pm(&mut old), 0, 0, 0, 0) })?;
    Ok((old.sp, old.size, old.flags as u32))
}

/// `personality(0xffffffff)`: the current persona, unchanged.
pub fn personality() -> u32 {
    // SAFETY: querying has no memory effects.
    unsafe { syscall6(nr::PERSONALITY, 0xffff_ffff, 0, 0, 0, 0, 0) as u32 }
}

/// `prlimit64(0, resource, new, old)`: (soft, hard).
pub fn prlimit(resource: u32, new: Option<(u64, u64)>) -> Result<(u64, u64), Errno> {
    let n = new.map(|(a, b)| [a, b]);
    let mut old = [0u64; 2];
    let np = n.as_ref().map_or(0, |v| p(v.as_ptr()));
    // SAFETY: struct rlimit64 is two u64; both buffers are live.
    check(unsafe {
        syscall6(
            nr::PRLIMIT64,
            0,
            resource as usize,
            np,
            p(old.as_mut_ptr()),
            0,
            0,
        )
    })?;
    Ok((old[0], old[1]))
}

/// `umask(mask)`: sets and returns the previous mask.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: no memory is passed.
    unsafe { syscall6(nr::UMASK, mask as usize, 0, 0, 0, 0, 0) as u32 }
}

/// `chdir(path)`; path NUL-terminated.
pub fn chdir(path: &[u8]) -> Result<(), Errno> {
    if path.last() != Some(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: `path` is NUL-terminated and borrowed for the call.
    check(unsafe { syscall6(nr::CHDIR, p(path.as_ptr()), 0, 0, 0, 0, 0) }).map(drop)
}

/// `getitimer(which)` as (interval ns, value ns).
pub fn getitimer(which: i32) -> Result<(u64, u64), Errno> {
    let mut v = [0i64; 4];
    // SAFETY: struct itimerval is four longs.
    check(unsafe { syscall6(36, which as usize, p(v.as_mut_ptr()), 0, 0, 0, 0) })?;
    let ns = |s: i64, us: i64| (s as u64) * 1_000_000_000 + (us as u64) * 1000;
    Ok((ns(v[0], v[1]), ns(v[2], v[3])))
}

/// `setitimer(which, interval ns, value ns)`.
pub fn setitimer(which: i32, interval_ns: u64, value_ns: u64) -> Result<(), Errno> {
    let tv = |ns: u64| {
        [
            (ns / 1_000_000_000) as i64,
            ((ns % 1_000_000_000) / 1000) as i64,
        ]
    };
    let (i, v) = (tv(interval_ns), tv(value_ns));
    let it = [i[0], i[1], v[0], v[1]];
    // SAFETY: struct itimerval is four longs; old value not requested.
    check(unsafe { syscall6(38, which as usize, p(it.as_ptr()), 0, 0, 0, 0) }).map(drop)
}

/// `clock_gettime(clock)` in nanoseconds.
pub fn clock_ns(clock: i32) -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: struct timespec is two longs.
    unsafe {
        syscall6(
            nr::CLOCK_GETTIME,
            clock as usize,
            p(ts.as_mut_ptr()),
            0,
            0,
            0,
            0,
        );
    }
    (ts[0] as u64) * 1_000_000_000 + ts[1] as u64
}

/// `munmap(addr, len)`.
///
/// Unmapping is memory-unsafe in general, so this takes raw numbers and is
/// `unsafe`.
///
/// # Safety
/// Nothing may use `[addr, addr + len)` afterwards.
pub unsafe fn munmap(addr: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: the caller guarantees the range is no longer used.
    check(unsafe { syscall6(nr::MUNMAP, addr as usize, len as usize, 0, 0, 0, 0) }).map(drop)
}

/// `XGETBV(0)`: the xsave features the OS enabled (XCR0).
pub fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ecx=0 is available whenever CPUID.1:ECX.OSXSAVE is
    // set, which we check first; it only writes eax and edx.
    unsafe {
        if core::arch::x86_64::__cpuid(1).ecx & (1 << 27) == 0 {
            return 0;
        }
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Reads the disposition of `sig` (no change).
pub fn query_sigaction(sig: i32, out: &mut KernelSigaction) -> Result<(), Errno> {
    // SAFETY: querying installs nothing; `out` is a live KernelSigaction.
    unsafe { sigaction(sig, None, Some(out)) }
}

/// The current program break (`brk(0)`).
pub fn current_brk() -> u64 {
    // SAFETY: brk(0) never moves the break; it only reports it.
    unsafe { syscall6(nr::BRK, 0, 0, 0, 0, 0, 0) as u64 }
}

/// `dup3(old, new, flags)`.
pub fn dup3(old: i32, new: i32, flags: i32) -> Result<(), Errno> {
    // SAFETY: descriptor numbers only; the caller owns `new`'s slot.
    check(unsafe { syscall6(292, old as usize, new as usize, flags as usize, 0, 0, 0) }).map(drop)
}

/// `fcntl(fd, cmd, arg)` for integer commands.
pub fn fcntl(fd: i32, cmd: i32, arg: usize) -> Result<usize, Errno> {
    // SAFETY: integer-argument commands only (F_GETFL, F_SETFL, F_DUPFD_CLOEXEC,
    // F_GETPIPE_SZ, F_SETPIPE_SZ): no memory is passed.
    check(unsafe { syscall6(72, fd as usize, cmd as usize, arg, 0, 0, 0) })
}

/// `ioctl(fd, FIONREAD)`: bytes ready to read.
pub fn fionread(fd: i32) -> Result<usize, Errno> {
    let mut n: i32 = 0;
    // SAFETY: FIONREAD writes one int.
    check(unsafe { syscall6(16, fd as usize, 0x541B, pm(&mut n), 0, 0, 0) })?;
    Ok(n as usize)
}

/// `pipe2(flags)`: (read end, write end).
pub fn pipe2(flags: i32) -> Result<(i32, i32), Errno> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two ints.
    check(unsafe { syscall6(293, p(fds.as_mut_ptr()), flags as usize, 0, 0, 0, 0) })?;
    Ok((fds[0], fds[1]))
}

/// Ends the process by signal `sig`, as a process killed by it would end:
/// its default action is restored, it is unblocked and sent to the process.
/// Falls back to `exit_group(128 + sig)` for signals whose default action
/// does not terminate.
pub fn die_of_signal(sig: i32) -> ! {
    let dfl = KernelSigaction::default();
    // SAFETY: installing SIG_DFL (handler 0) runs no code of ours.
    let _ = unsafe { sigaction(sig, Some(&dfl), None) };
    if (1..=64).contains(&sig) {
        let _ = sigprocmask(1, Some(1u64 << (sig - 1)));
    }
    let _ = kill(getpid() as i32, sig);
    exit_group(128 + sig)
}

/// One piece of memory for [`pwritev_from_addrs`]: `struct iovec`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoVec {
    /// Address in this process.
    pub base: u64,
    /// Bytes.
    pub len: u64,
}

/// Writes the memory ranges `iov` one after the other to `fd` from file
/// offset `off` (`pwritev`), retrying short writes and `EINTR`; `iov` is
/// consumed as it goes (on return its entries are the unwritten rest). At
/// most 1024 entries (`IOV_MAX`).
///
/// The kernel reads the memory itself and fails with `EFAULT` if a range is
/// not readable; no Rust reference to it is formed.
pub fn pwritev_from_addrs(fd: i32, mut iov: &mut [IoVec], mut off: u64) -> Result<(), Errno> {
    const IOV_MAX: usize = 1024;
    if iov.len() > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    loop {
        while let Some(first) = iov.first() {
            if first.len > 0 {
                break;
            }
            iov = &mut iov[1..];
        }
        if iov.is_empty() {
            return Ok(());
        }
        // SAFETY: `iov` is `len` valid `struct iovec`s (repr(C), two u64s on
        // x86-64) that the kernel only reads; the memory they name is only
        // read too, and validated by the kernel.
        let r = unsafe {
            syscall6(
                nr::PWRITEV,
                fd as usize,
                iov.as_ptr() as usize,
                iov.len(),
                off as usize,
                (off >> 32 >> 32) as usize,
                0,
            )
        };
        let mut n = match check(r) {
            Ok(0) => return Err(Errno(28)),
            Ok(n) => n as u64,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        off += n;
        for v in iov.iter_mut() {
            let k = n.min(v.len);
            v.base += k;
            v.len -= k;
            n -= k;
            if n == 0 {
                break;
            }
        }
    }
}

/// Writes `len` bytes of this process's memory at `addr` to `fd` at file
/// offset `off` (`pwrite64`), retrying short writes and `EINTR`.
///
/// The kernel reads the memory itself and fails with `EFAULT` if the range
/// is not readable; no Rust reference to it is formed.
pub fn pwrite_from_addr(fd: i32, addr: u64, len: u64, off: u64) -> Result<(), Errno> {
    let mut done = 0u64;
    while done < len {
        let chunk = (len - done).min(1 << 30);
        // SAFETY: the kernel only reads `chunk` bytes at `addr + done`,
        // validating the range itself.
        let r = unsafe {
            syscall6(
                nr::PWRITE64,
                fd as usize,
                (addr + done) as usize,
                chunk as usize,
                (off + done) as usize,
                0,
                0,
            )
        };
        match check(r) {
            Ok(0) => return Err(Errno(28)),
            Ok(n) => done += n as u64,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `timer_gettime(id)` as (interval ns, remaining ns).
pub fn timer_gettime(id: i32) -> Result<(u64, u64), Errno> {
    let mut v = [0i64; 4];
    // SAFETY: struct itimerspec is four longs.
    check(unsafe {
        syscall6(
            nr::TIMER_GETTIME,
            id as usize,
            pm(v.as_mut_ptr()),
            0,
            0,
            0,
            0,
        )
    })?;
    let ns = |s: i64, n: i64| (s as u64) * 1_000_000_000 + n as u64;
    Ok((ns(v[0], v[1]), ns(v[2], v[3])))
}

/// How a POSIX timer notifies (`struct sigevent`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SigEvent {
    /// `sigev_value`.
    pub sigval: u64,
    /// `sigev_signo`.
    pub signo: i32,
    /// `sigev_notify` (`SIGEV_SIGNAL` 0, `SIGEV_NONE` 1, `SIGEV_THREAD_ID` 4).
    pub notify: i32,
    /// Target thread for `SIGEV_THREAD_ID`.
    pub tid: i32,
}

/// Re-creates POSIX timer `id` (`timer_create` with the id requested
/// through `PR_TIMER_CREATE_RESTORE_IDS`, Linux 6.15+), then arms it.
pub fn timer_recreate(
    id: i32,
    clock: i32,
    sev: SigEvent,
    interval_ns: u64,
    value_ns: u64,
) -> Result<(), Errno> {
    // struct sigevent: sigval 8, signo 4, notify 4, union (tid first) to 64.
    let mut ev = [0u8; 64];
    ev[0..8].copy_from_slice(&sev.sigval.to_le_bytes());
    ev[8..12].copy_from_slice(&sev.signo.to_le_bytes());
    ev[12..16].copy_from_slice(&sev.notify.to_le_bytes());
    ev[16..20].copy_from_slice(&sev.tid.to_le_bytes());
    let mut got: i32 = id;
    // SAFETY: prctl with integer arguments only.
    check(unsafe { syscall6(nr::PRCTL, 77, 1, 0, 0, 0, 0) })?;
    // SAFETY: `ev` is a 64-byte struct sigevent; `got` is the in/out timer id.
    let r = check(unsafe {
        syscall6(
            nr::TIMER_CREATE,
            clock as usize,
            p(ev.as_ptr()),
            pm(&mut got),
            0,
            0,
            0,
        )
    });
    // SAFETY: prctl with integer arguments only.
    unsafe { syscall6(nr::PRCTL, 77, 0, 0, 0, 0, 0) };
    r?;
    if got != id {
        return Err(Errno::EEXIST);
    }
    let ts = |ns: u64| [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    let (i, v) = (ts(interval_ns), ts(value_ns));
    let spec = [i[0], i[1], v[0], v[1]];
    // SAFETY: struct itimerspec is four longs; no old value requested.
    check(unsafe { syscall6(nr::TIMER_SETTIME, id as usize, 0, p(spec.as_ptr()), 0, 0, 0) })
        .map(drop)
}

/// `eventfd2(initval, flags)`: a new eventfd. The counter is a `u64` but
/// the call takes an `unsigned int`; larger counters are written after.
pub fn eventfd2(initval: u32, flags: i32) -> Result<i32, Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(290, initval as usize, flags as usize, 0, 0, 0, 0) })
        .map(|fd| fd as i32)
}

/// `madvise(addr, len, MADV_COLLAPSE)`: backs the range with transparent
/// huge pages where the kernel can. The contents stay as they are, so this
/// is safe for any range; an unmapped one fails with `ENOMEM`.
pub fn collapse_huge(addr: u64, len: u64) -> Result<(), Errno> {
    const MADV_COLLAPSE: usize = 25;
    // SAFETY: MADV_COLLAPSE changes how memory is backed, never what it
    // holds; no memory is passed to the kernel for it to write.
    check(unsafe {
        syscall6(
            nr::MADVISE,
            addr as usize,
            len as usize,
            MADV_COLLAPSE,
            0,
            0,
            0,
        )
    })
    .map(drop)
}
