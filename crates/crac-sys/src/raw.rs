//! The `syscall` instruction and the numbers crac needs (x86-64).
//!
//! # Safety
//! A system call can do anything to the process: every caller of the
//! `syscallN` functions must make sure the arguments are valid for that call
//! (pointers point to memory of the right size and lifetime, fds are owned).
#![allow(unsafe_code)]

use core::arch::asm;

/// A raw errno value from a failed system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// No such file or directory.
    pub const ENOENT: Errno = Errno(2);
    /// Interrupted system call.
    pub const EINTR: Errno = Errno(4);
    /// Try again.
    pub const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Device or resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// File exists.
    pub const EEXIST: Errno = Errno(17);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such process.
    pub const ESRCH: Errno = Errno(3);
    /// Timed out.
    pub const ETIMEDOUT: Errno = Errno(110);

    /// The conventional name (`"EEXIST"`), or `None` for rare values.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            9 => "EBADF",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            24 => "EMFILE",
            28 => "ENOSPC",
            32 => "EPIPE",
            38 => "ENOSYS",
            74 => "EBADMSG",
            98 => "EADDRINUSE",
            99 => "EADDRNOTAVAIL",
            105 => "ENOBUFS",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            _ => return None,
        })
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} (errno {})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Errno {}

#[cfg(feature = "std")]
impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

/// Turns a raw return value into `Ok(value)` or `Err(errno)`.
#[inline(always)]
pub fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// System call numbers used by crac.
#[allow(missing_docs)]
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const FSTAT: usize = 5;
    pub const LSEEK: usize = 8;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const BRK: usize = 12;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const PREAD64: usize = 17;
    pub const PWRITE64: usize = 18;
    pub const READV: usize = 19;
    pub const WRITEV: usize = 20;
    pub const MREMAP: usize = 25;
    pub const MADVISE: usize = 28;
    pub const DUP2: usize = 33;
    pub const GETPID: usize = 39;
    pub const EXIT: usize = 60;
    pub const KILL: usize = 62;
    pub const UNAME: usize = 63;
    pub const FSYNC: usize = 74;
    pub const CHDIR: usize = 80;
    pub const UMASK: usize = 95;
    pub const GETRLIMIT: usize = 97;
    pub const SIGALTSTACK: usize = 131;
    pub const PERSONALITY: usize = 135;
    pub const PRCTL: usize = 157;
    pub const ARCH_PRCTL: usize = 158;
    pub const SETRLIMIT: usize = 160;
    pub const GETTID: usize = 186;
    pub const FUTEX: usize = 202;
    pub const SCHED_SETAFFINITY: usize = 203;
    pub const SCHED_GETAFFINITY: usize = 204;
    pub const SET_TID_ADDRESS: usize = 218;
    pub const TIMER_CREATE: usize = 222;
    pub const TIMER_SETTIME: usize = 223;
    pub const TIMER_GETTIME: usize = 224;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const TGKILL: usize = 234;
    pub const WAITID: usize = 247;
    pub const OPENAT: usize = 257;
    pub const SET_ROBUST_LIST: usize = 273;
    pub const GET_ROBUST_LIST: usize = 274;
    pub const PREADV: usize = 295;
    pub const PWRITEV: usize = 296;
    pub const RT_TGSIGQUEUEINFO: usize = 297;
    pub const PRLIMIT64: usize = 302;
    pub const EXECVEAT: usize = 322;
    pub const MEMFD_CREATE: usize = 319;
    pub const RSEQ: usize = 334;
    pub const CLONE3: usize = 435;
    pub const CLOSE_RANGE: usize = 436;
}

/// Issues system call `n` with six arguments.
///
/// # Safety
/// The arguments must be valid for system call `n` (see the module docs).
#[inline(always)]
pub unsafe fn syscall6(
    n: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY: the `syscall` instruction itself only clobbers rax, rcx and r11,
    // which are declared; what the call does is the caller's contract.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Issues system call `n` with up to six arguments (missing ones are zero).
///
/// # Safety
/// As [`syscall6`].
#[inline(always)]
pub unsafe fn syscall(n: usize, args: &[usize]) -> isize {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a(0), a(1), a(2), a(3), a(4), a(5)) }
}

// ---------------------------------------------------------------------------
// Restore side: starting the restorer and waiting for the restored process.

/// `CLOSE_RANGE_CLOEXEC`: mark the range close-on-exec instead of closing it.
pub const CLOSE_RANGE_CLOEXEC: usize = 1 << 2;
/// `AT_EMPTY_PATH`.
pub const AT_EMPTY_PATH: usize = 0x1000;
/// `F_DUPFD_CLOEXEC`.
pub const F_DUPFD_CLOEXEC: usize = 1030;
/// `SIGCHLD`.
pub const SIGCHLD: i32 = 17;
/// `CLONE_VFORK`.
pub const CLONE_VFORK: u64 = 0x4000;
/// Syscall numbers used by the restore side only.
#[allow(missing_docs)]
pub mod nr_restore {
    pub const FCNTL: usize = 72;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const SETSID: usize = 112;
}

/// Most `(source, target)` pairs an [`ExecChild`] installs.
pub const EXEC_CHILD_FDS: usize = 64;

/// What the child of [`spawn_exec_with_pid`] does before it executes the
/// program: install `fds` as `(source, target)` pairs (targets 3 or above,
/// each once; sources anything, even another pair's target), mark every
/// other fd from `close_from` up close-on-exec, then
/// `execveat(exec_fd, "", argv, envp, AT_EMPTY_PATH)`.
///
/// If a step fails the child writes `fail_record` to `fail_fd`, with the
/// errno (`i32` LE) patched in at `fail_errno_at` and the step number
/// (`u64` LE: 1 dup, 2 dup2, 3 close_range, 4 execveat, 5 setsid) at `fail_step_at`,
/// then exits with status 127.
#[derive(Debug, Clone, Copy)]
pub struct ExecChild<'a> {
    /// `(source, target)` fds; at most [`EXEC_CHILD_FDS`].
    pub fds: &'a [(i32, i32)],
    /// First fd that does not survive the exec, targets apart.
    pub close_from: u32,
    /// The program to execute (any fd, typically a memfd).
    pub exec_fd: i32,
    /// Arguments; at most 7.
    pub argv: &'a [&'a core::ffi::CStr],
    /// Environment; at most 7.
    pub envp: &'a [&'a core::ffi::CStr],
    /// Where a failure is reported (a source fd number).
    pub fail_fd: i32,
    /// The record written on failure (at most 512 bytes).
    pub fail_record: &'a [u8],
    /// Offset of the errno in `fail_record`.
    pub fail_errno_at: usize,
    /// Offset of the step number in `fail_record`.
    pub fail_step_at: usize,
    /// Call `setsid()` first (step 5 if it fails).
    pub new_session: bool,
}

#[repr(C)]
struct ChildPlan {
    fds: [(i32, i32); EXEC_CHILD_FDS],
    nfds: usize,
    close_from: u32,
    exec_fd: i32,
    argv: [*const u8; 8],
    envp: [*const u8; 8],
    fail_fd: i32,
    fail_len: usize,
    fail_errno_at: usize,
    fail_step_at: usize,
    new_session: bool,
    fail_record: [u8; 512],
}

extern "C" fn exec_child(arg: u64) -> ! {
    // SAFETY: `arg` points to the ChildPlan in the parent's stack frame; the
    // parent is suspended until this child executes or exits (CLONE_VFORK)
    // and reads nothing of the plan afterwards.
    let plan = unsafe { &mut *(arg as *mut ChildPlan) };
    let fail = |plan: &mut ChildPlan, step: u64, e: isize| -> ! {
        let errno = (-e) as i32;
        let (ea, sa, len) = (plan.fail_errno_at, plan.fail_step_at, plan.fail_len);
        if ea + 4 <= len {
            plan.fail_record[ea..ea + 4].copy_from_slice(&errno.to_le_bytes());
        }
        if sa + 8 <= len {
            plan.fail_record[sa..sa + 8].copy_from_slice(&step.to_le_bytes());
        }
        let rec = plan.fail_record.as_ptr() as usize;
        // SAFETY: the kernel reads `len` bytes of the plan's record.
        unsafe { syscall6(nr::WRITE, plan.fail_fd as usize, rec, len, 0, 0, 0) };
        loop {
            // SAFETY: ends the process.
            unsafe { syscall6(nr::EXIT_GROUP, 127, 0, 0, 0, 0, 0) };
        }
    };
    if plan.new_session {
        // SAFETY: no memory is passed.
        let r = unsafe { syscall6(nr_restore::SETSID, 0, 0, 0, 0, 0, 0) };
        if r < 0 {
            fail(plan, 5, r);
        }
    }
    // Every source is first copied above every target and `close_from`, so
    // that installing one target never replaces a source still needed.
    let mut above = plan.close_from as usize;
    for &(_, target) in &plan.fds[..plan.nfds] {
        above = above.max(target as usize + 1);
    }
    // A failure after the targets are installed must not be written to
    // whatever now holds `fail_fd`'s number: report on a copy.
    // SAFETY: fcntl on an fd number; no memory is passed.
    let r = unsafe {
        syscall6(
            nr_restore::FCNTL,
            plan.fail_fd as usize,
            F_DUPFD_CLOEXEC,
            above,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        fail(plan, 1, r);
    }
    plan.fail_fd = r as i32;
    let mut tmp = [0i32; EXEC_CHILD_FDS];
    #[allow(clippy::needless_range_loop)]
    for i in 0..plan.nfds {
        // SAFETY: fcntl on an fd number; no memory is passed.
        let r = unsafe {
            syscall6(
                nr_restore::FCNTL,
                plan.fds[i].0 as usize,
                F_DUPFD_CLOEXEC,
                above,
                0,
                0,
                0,
            )
        };
        if r < 0 {
            fail(plan, 1, r);
        }
        tmp[i] = r as i32;
    }
    // SAFETY: as above.
    let exe = unsafe {
        syscall6(
            nr_restore::FCNTL,
            plan.exec_fd as usize,
            F_DUPFD_CLOEXEC,
            above,
            0,
            0,
            0,
        )
    };
    if exe < 0 {
        fail(plan, 1, exe);
    }
    // Before the targets are installed: dup2 clears close-on-exec on its
    // target, so targets from `close_from` up survive too.
    // SAFETY: no memory is passed.
    let r = unsafe {
        syscall6(
            nr::CLOSE_RANGE,
            plan.close_from as usize,
            u32::MAX as usize,
            CLOSE_RANGE_CLOEXEC,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        fail(plan, 3, r);
    }
    #[allow(clippy::needless_range_loop)]
    for i in 0..plan.nfds {
        // SAFETY: dup2 on fd numbers; no memory is passed.
        let r = unsafe {
            syscall6(
                nr::DUP2,
                tmp[i] as usize,
                plan.fds[i].1 as usize,
                0,
                0,
                0,
                0,
            )
        };
        if r < 0 {
            fail(plan, 2, r);
        }
    }
    // SAFETY: argv/envp are NULL-terminated arrays of NUL-terminated strings
    // that live in this (copied) frame; execveat only returns on failure.
    let r = unsafe {
        syscall6(
            nr::EXECVEAT,
            exe as usize,
            c"".as_ptr() as usize,
            plan.argv.as_ptr() as usize,
            plan.envp.as_ptr() as usize,
            AT_EMPTY_PATH,
            0,
        )
    };
    fail(plan, 4, r)
}

/// Creates a child process (a fork: `clone3` without `CLONE_VM`, exit
/// signal `SIGCHLD`) with PID `pid` (`set_tid`; 0 for any) that installs fds
/// and executes a program as [`ExecChild`] describes. Between `clone3` and
/// the exec the child only makes raw system calls on memory it copied, so
/// the caller may be multi-threaded. All signals are blocked in the child
/// (and during the call in the caller). Returns the child's PID.
pub fn spawn_exec_with_pid(pid: i32, c: &ExecChild<'_>) -> Result<i32, Errno> {
    if c.fds.len() > EXEC_CHILD_FDS
        || c.argv.len() > 7
        || c.envp.len() > 7
        || c.fail_record.len() > 512
    {
        return Err(Errno::EINVAL);
    }
    let mut plan = ChildPlan {
        fds: [(0, 0); EXEC_CHILD_FDS],
        nfds: c.fds.len(),
        close_from: c.close_from,
        exec_fd: c.exec_fd,
        argv: [core::ptr::null(); 8],
        envp: [core::ptr::null(); 8],
        fail_fd: c.fail_fd,
        fail_len: c.fail_record.len(),
        fail_errno_at: c.fail_errno_at,
        fail_step_at: c.fail_step_at,
        new_session: c.new_session,
        fail_record: [0; 512],
    };
    plan.fds[..c.fds.len()].copy_from_slice(c.fds);
    for (i, a) in c.argv.iter().enumerate() {
        plan.argv[i] = a.as_ptr().cast();
    }
    for (i, e) in c.envp.iter().enumerate() {
        plan.envp[i] = e.as_ptr().cast();
    }
    plan.fail_record[..c.fail_record.len()].copy_from_slice(c.fail_record);
    let set_tid = [pid];
    let args = crate::clone::CloneArgs {
        // CLONE_VM | CLONE_VFORK: like vfork(2), no page-table copy; this
        // thread waits until the child executed (or exited).
        flags: crate::clone::CLONE_VM | CLONE_VFORK,
        exit_signal: SIGCHLD as u64,
        set_tid: if pid != 0 { set_tid.as_ptr() as u64 } else { 0 },
        set_tid_size: u64::from(pid != 0),
        ..Default::default()
    };
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: `all` and `old` are live u64 sigsets of size 8.
    unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            2,
            &all as *const u64 as usize,
            &mut old as *mut u64 as usize,
            8,
            0,
            0,
        );
    }
    // SAFETY: no CLONE_VM and no stack: the child runs `exec_child` on its
    // own copy of this stack, where `plan` (and what it points to) lives.
    let r = unsafe {
        crate::clone::clone3_thread(&args, exec_child, &mut plan as *mut ChildPlan as u64)
    };
    // SAFETY: as above, restores the caller's mask.
    unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            2,
            &old as *const u64 as usize,
            0,
            8,
            0,
            0,
        );
    }
    check(r).map(|p| p as i32)
}

/// `rt_sigtimedwait(set, info, NULL)`: waits for one of the (blocked)
/// signals in `set`; returns `(signal, si_code, si_pid)`.
pub fn sigwaitinfo(set: u64) -> Result<(i32, i32, i32), Errno> {
    let mut info = [0u8; 128];
    // SAFETY: `set` is a live sigset of size 8; the kernel writes at most 128
    // bytes of siginfo into `info`.
    let r = unsafe {
        syscall6(
            nr_restore::RT_SIGTIMEDWAIT,
            &set as *const u64 as usize,
            info.as_mut_ptr() as usize,
            0,
            8,
            0,
            0,
        )
    };
    let sig = check(r)? as i32;
    let code = i32::from_le_bytes([info[8], info[9], info[10], info[11]]);
    let pid = i32::from_le_bytes([info[16], info[17], info[18], info[19]]);
    Ok((sig, code, pid))
}

/// `rt_sigprocmask(how, set, &old)`: returns the previous mask.
pub fn sigmask(how: i32, set: u64) -> Result<u64, Errno> {
    let mut old = 0u64;
    // SAFETY: `set` and `old` are live u64 sigsets of size 8.
    check(unsafe {
        syscall6(
            nr::RT_SIGPROCMASK,
            how as usize,
            &set as *const u64 as usize,
            &mut old as *mut u64 as usize,
            8,
            0,
            0,
        )
    })?;
    Ok(old)
}

// ---------------------------------------------------------------------------
// userfaultfd (the restorer fills anonymous memory with `UFFDIO_COPY`).

/// `userfaultfd(2)` and its ioctls (`linux/userfaultfd.h`, x86-64).
pub mod uffd {
    use super::{check, syscall6, Errno};

    /// `userfaultfd` system call number.
    pub const NR_USERFAULTFD: usize = 323;
    /// `ioctl` system call number.
    pub const NR_IOCTL: usize = 16;
    /// `UFFD_API`.
    pub const API: u64 = 0xAA;
    /// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
    pub const UFFDIO_API: usize = 0xC018_AA3F;
    /// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
    pub const UFFDIO_REGISTER: usize = 0xC020_AA00;
    /// `_IOR(0xAA, 0x01, struct uffdio_range)`.
    pub const UFFDIO_UNREGISTER: usize = 0x8010_AA01;
    /// `_IOWR(0xAA, 0x03, struct uffdio_copy)`.
    pub const UFFDIO_COPY: usize = 0xC028_AA03;
    /// `UFFDIO_REGISTER_MODE_MISSING`.
    pub const REGISTER_MODE_MISSING: u64 = 1;
    /// `O_CLOEXEC`, `O_NONBLOCK` for the `userfaultfd` flags.
    pub const O_CLOEXEC: usize = 0o2_000_000;
    /// `O_NONBLOCK`.
    pub const O_NONBLOCK: usize = 0o4000;
    /// `UFFD_USER_MODE_ONLY`: faults from kernel mode fail instead of
    /// waiting (and unprivileged callers may open one).
    pub const USER_MODE_ONLY: usize = 1;

    /// `struct uffdio_api`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct UffdioApi {
        /// `UFFD_API` in, the same out.
        pub api: u64,
        /// Requested features in, supported features out.
        pub features: u64,
        /// Supported ioctls out.
        pub ioctls: u64,
    }

    /// `struct uffdio_register`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct UffdioRegister {
        /// Range start.
        pub start: u64,
        /// Range length.
        pub len: u64,
        /// `UFFDIO_REGISTER_MODE_*`.
        pub mode: u64,
        /// Ioctls usable on the range (out).
        pub ioctls: u64,
    }

    /// `struct uffdio_copy`.
    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct UffdioCopy {
        /// Destination (registered range).
        pub dst: u64,
        /// Source (any readable memory).
        pub src: u64,
        /// Bytes to copy.
        pub len: u64,
        /// `UFFDIO_COPY_MODE_*`.
        pub mode: u64,
        /// Bytes copied, or a negative errno (out).
        pub copy: i64,
    }

    /// `userfaultfd(flags)`: a new userfaultfd.
    pub fn open(flags: usize) -> Result<i32, Errno> {
        // SAFETY: no pointers involved.
        check(unsafe { syscall6(NR_USERFAULTFD, flags, 0, 0, 0, 0, 0) }).map(|f| f as i32)
    }

    /// `UFFD_FEATURE_EVENT_FORK`: a fork hands the handler a userfaultfd
    /// for the child.
    pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
    /// `UFFD_FEATURE_EVENT_REMAP`: `mremap` of a registered range is reported.
    pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
    /// `UFFD_FEATURE_EVENT_REMOVE`: `MADV_DONTNEED`/`MADV_REMOVE`/`MADV_FREE`
    /// of a registered range is reported.
    pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
    /// `UFFD_FEATURE_EVENT_UNMAP`: `munmap` of a registered range is reported.
    pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;
    /// `UFFD_FEATURE_THREAD_ID`: page faults carry the faulting thread's TID.
    pub const FEATURE_THREAD_ID: u64 = 1 << 8;

    /// What a lazy restore needs: every change of the address space that
    /// affects pending pages is reported, and faults carry the thread.
    pub const LAZY_FEATURES: u64 = FEATURE_EVENT_FORK
        | FEATURE_EVENT_REMAP
        | FEATURE_EVENT_REMOVE
        | FEATURE_EVENT_UNMAP
        | FEATURE_THREAD_ID;

    /// `ioctl(fd, UFFDIO_API)` with no extra features.
    pub fn api(fd: i32) -> Result<UffdioApi, Errno> {
        api_with(fd, 0)
    }

    /// `ioctl(fd, UFFDIO_API)` asking for `features` (fails with `EINVAL`
    /// if the kernel lacks one, `EPERM` if the caller may not have one).
    pub fn api_with(fd: i32, features: u64) -> Result<UffdioApi, Errno> {
        let mut a = UffdioApi {
            api: API,
            features,
            ..Default::default()
        };
        // SAFETY: `a` is a live `struct uffdio_api` the kernel reads and writes.
        check(unsafe {
            syscall6(
                NR_IOCTL,
                fd as usize,
                UFFDIO_API,
                &mut a as *mut UffdioApi as usize,
                0,
                0,
                0,
            )
        })?;
        Ok(a)
    }

    /// `ioctl(fd, UFFDIO_REGISTER)` of `[start, start + len)` for missing
    /// pages.
    ///
    /// # Safety
    /// Until the range is unregistered, any access to a missing page in it
    /// waits for someone to resolve it through `fd`.
    pub unsafe fn register(fd: i32, start: u64, len: u64) -> Result<(), Errno> {
        let mut r = UffdioRegister {
            start,
            len,
            mode: REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: `r` is a live `struct uffdio_register`; the effect on the
        // range is the caller's contract.
        check(unsafe {
            syscall6(
                NR_IOCTL,
                fd as usize,
                UFFDIO_REGISTER,
                &mut r as *mut UffdioRegister as usize,
                0,
                0,
                0,
            )
        })
        .map(drop)
    }

    /// `ioctl(fd, UFFDIO_UNREGISTER)` of `[start, start + len)`.
    pub fn unregister(fd: i32, start: u64, len: u64) -> Result<(), Errno> {
        let r = [start, len];
        // SAFETY: `r` is a live `struct uffdio_range` the kernel only reads.
        check(unsafe {
            syscall6(
                NR_IOCTL,
                fd as usize,
                UFFDIO_UNREGISTER,
                r.as_ptr() as usize,
                0,
                0,
                0,
            )
        })
        .map(drop)
    }

    /// `ioctl(fd, UFFDIO_COPY)`: fills the missing pages of
    /// `[dst, dst + len)` with a copy of `[src, src + len)`. Returns the
    /// bytes copied, which may be fewer than `len` only on error: then
    /// `Err((errno, copied))`.
    ///
    /// # Safety
    /// `[dst, dst + len)` must be registered with `fd` and not referenced;
    /// `[src, src + len)` must be readable.
    pub unsafe fn copy(fd: i32, dst: u64, src: u64, len: u64) -> Result<u64, (Errno, u64)> {
        let mut c = UffdioCopy {
            dst,
            src,
            len,
            mode: 0,
            copy: 0,
        };
        // SAFETY: `c` is a live `struct uffdio_copy`; the ranges are the
        // caller's contract.
        let r = unsafe {
            syscall6(
                NR_IOCTL,
                fd as usize,
                UFFDIO_COPY,
                &mut c as *mut UffdioCopy as usize,
                0,
                0,
                0,
            )
        };
        let done = if c.copy > 0 { c.copy as u64 } else { 0 };
        match check(r) {
            Ok(_) => Ok(done),
            Err(e) => Err((e, done)),
        }
    }
}

/// Sends `bytes` on the connected socket `sock` with one file descriptor
/// (`SCM_RIGHTS`) attached: `sendmsg(sock, {bytes, [fd]}, 0)`.
pub fn send_with_fd(sock: i32, bytes: &[u8], fd: i32) -> Result<usize, Errno> {
    const SOL_SOCKET: i32 = 1;
    const SCM_RIGHTS: i32 = 1;
    const NR_SENDMSG: usize = 46;
    /// `struct cmsghdr` followed by one `int`, padded to `CMSG_SPACE(4)`.
    #[repr(C)]
    struct Cmsg {
        len: usize,
        level: i32,
        kind: i32,
        fd: i32,
        _pad: i32,
    }
    /// `struct msghdr`.
    #[repr(C)]
    struct MsgHdr {
        name: usize,
        namelen: u32,
        iov: *const [usize; 2],
        iovlen: usize,
        control: *const Cmsg,
        controllen: usize,
        flags: i32,
    }
    let cmsg = Cmsg {
        len: 16 + 4, // CMSG_LEN(sizeof(int))
        level: SOL_SOCKET,
        kind: SCM_RIGHTS,
        fd,
        _pad: 0,
    };
    let iov = [bytes.as_ptr() as usize, bytes.len()];
    let msg = MsgHdr {
        name: 0,
        namelen: 0,
        iov: &iov,
        iovlen: 1,
        control: &cmsg,
        controllen: core::mem::size_of::<Cmsg>(),
        flags: 0,
    };
    // SAFETY: `msg`, `iov`, `cmsg` and `bytes` are live for the call and the
    // kernel only reads them; sending an fd has no memory effects.
    check(unsafe {
        syscall6(
            NR_SENDMSG,
            sock as usize,
            &msg as *const MsgHdr as usize,
            0,
            0,
            0,
            0,
        )
    })
}
