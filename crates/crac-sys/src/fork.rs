//! A copy-on-write copy of the calling process, for the live dump.
//!
//! The live dump stops every thread, forks, releases the threads at once and
//! writes the image from the child, whose memory is the process as it was at
//! the fork. The child is created with `clone3` directly (no `fork()`: glibc
//! runs `atfork` handlers that take the allocator's locks, which a stopped
//! thread may hold), with exit signal 0 (the program's own `SIGCHLD`
//! handling and `waitpid(-1)` never see it) and a pidfd to wait for it by.
//!
//! # Safety
//! The child continues on its own copy of the caller's stack, like after
//! `fork()`; only the calling thread exists in it, so it must make raw
//! system calls only (no allocation, no locks) and end with `exit_group`.
#![allow(unsafe_code)]

use crate::clone::CloneArgs;
use crate::raw::{check, nr, syscall6, Errno};

/// `CLONE_PIDFD`.
const CLONE_PIDFD: u64 = 0x1000;

/// Which side of [`fork_cow`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// In the copy.
    Child,
    /// In the original: the copy's PID and a pidfd for it (the caller owns
    /// and closes it).
    Parent {
        /// The copy's PID.
        pid: i32,
        /// A pidfd of the copy.
        pidfd: i32,
    },
}

/// `CLONE_NEWNS`: a new mount namespace.
pub const CLONE_NEWNS: u64 = 0x0002_0000;
/// `CLONE_NEWPID`: a new PID namespace (the child is its PID 1).
pub const CLONE_NEWPID: u64 = 0x2000_0000;

/// Creates a copy-on-write copy of the calling process (see the module
/// docs) that returns [`Fork::Child`] while the caller gets
/// [`Fork::Parent`].
pub fn fork_cow() -> Result<Fork, Errno> {
    fork_with(CLONE_PIDFD, 0)
}

/// Forks with the namespace `flags` given (`CLONE_NEWPID`, `CLONE_NEWNS`)
/// and `SIGCHLD` as the exit signal, for a child that goes on as ordinary
/// code: call it only while the process has one thread. The parent's
/// `pidfd` is -1.
pub fn fork_into_namespaces(flags: u64) -> Result<Fork, Errno> {
    const SIGCHLD: u64 = 17;
    fork_with(flags & (CLONE_NEWNS | CLONE_NEWPID), SIGCHLD)
}

fn fork_with(flags: u64, exit_signal: u64) -> Result<Fork, Errno> {
    let mut pidfd: i32 = -1;
    let args = CloneArgs {
        flags,
        pidfd: if flags & CLONE_PIDFD != 0 {
            &mut pidfd as *mut i32 as u64
        } else {
            0
        },
        exit_signal,
        ..Default::default()
    };
    // SAFETY: without CLONE_VM and without a stack the child runs on a copy
    // of this address space and stack, as after fork(); `args` and `pidfd`
    // are live for the call.
    let r = unsafe {
        syscall6(
            nr::CLONE3,
            &args as *const CloneArgs as usize,
            core::mem::size_of::<CloneArgs>(),
            0,
            0,
            0,
            0,
        )
    };
    match check(r)? {
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent {
            pid: pid as i32,
            pidfd,
        }),
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit_group(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Waits until the child behind `pidfd` ends and reaps it
/// (`waitid(P_PIDFD, pidfd, WEXITED | __WALL)`, retried on `EINTR`).
pub fn wait_pidfd(pidfd: i32) -> Result<Exit, Errno> {
    const P_PIDFD: usize = 3;
    const WEXITED: usize = 4;
    const WALL: usize = 0x4000_0000;
    const CLD_EXITED: i32 = 1;
    loop {
        // siginfo_t: si_signo, si_errno, si_code, pad, si_pid, si_uid,
        // si_status at byte 24.
        let mut info = [0i32; 32];
        // SAFETY: `info` is 128 writable bytes, the size of siginfo_t; the
        // rusage pointer is NULL.
        let r = unsafe {
            syscall6(
                nr::WAITID,
                P_PIDFD,
                pidfd as usize,
                info.as_mut_ptr() as usize,
                WEXITED | WALL,
                0,
                0,
            )
        };
        match check(r) {
            Ok(_) if info[2] == CLD_EXITED => return Ok(Exit::Code(info[6])),
            Ok(_) => return Ok(Exit::Signal(info[6])),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `unshare(CLONE_NEWTIME)`: children created from now on live in a new
/// time namespace, whose offsets may be written to
/// `/proc/self/timens_offsets` until the first of them starts. The caller
/// itself stays in its time namespace.
pub fn unshare_time_namespace() -> Result<(), Errno> {
    const CLONE_NEWTIME: usize = 0x80;
    // SAFETY: CLONE_NEWTIME changes only which time namespace later
    // children join; no memory or descriptor table is touched.
    check(unsafe { syscall6(nr::UNSHARE, CLONE_NEWTIME, 0, 0, 0, 0, 0) }).map(drop)
}

/// `unshare(CLONE_NEWUSER)`: the caller moves into a new user namespace,
/// where it has every capability, until its uid and gid maps are written
/// (`/proc/self/uid_map`, `gid_map`). The kernel refuses it (`EINVAL`) in
/// a process with more than one thread.
pub fn unshare_user_namespace() -> Result<(), Errno> {
    const CLONE_NEWUSER: usize = 0x1000_0000;
    // SAFETY: CLONE_NEWUSER changes only the caller's credentials'
    // namespace; no memory or descriptor table is touched.
    check(unsafe { syscall6(nr::UNSHARE, CLONE_NEWUSER, 0, 0, 0, 0, 0) }).map(drop)
}

/// One page of memory shared between a process and the copies it forks
/// afterwards (`MAP_SHARED | MAP_ANONYMOUS`): how a child reports back to
/// its parent without a pipe's framing. Unmapped on drop.
#[derive(Debug)]
pub struct SharedPage {
    addr: u64,
}

impl SharedPage {
    /// Size of the page.
    pub const LEN: usize = 4096;

    /// Maps a fresh zeroed page.
    pub fn new() -> Result<SharedPage, Errno> {
        const PROT_RW: usize = 3;
        const MAP_SHARED_ANONYMOUS: usize = 0x21;
        // SAFETY: a fresh mapping chosen by the kernel (addr 0) touches no
        // existing memory.
        let r = unsafe {
            syscall6(
                nr::MMAP,
                0,
                Self::LEN,
                PROT_RW,
                MAP_SHARED_ANONYMOUS,
                usize::MAX,
                0,
            )
        };
        check(r).map(|addr| SharedPage { addr: addr as u64 })
    }

    /// Address of the page (page-aligned, [`Self::LEN`] bytes, readable and
    /// writable while `self` lives).
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `new` and is only reached through
        // `self`, which is going away.
        unsafe { syscall6(nr::MUNMAP, self.addr as usize, Self::LEN, 0, 0, 0, 0) };
    }
}
