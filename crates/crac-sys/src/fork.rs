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

/// Creates a copy-on-write copy of the calling process (see the module
/// docs) that returns [`Fork::Child`] while the caller gets
/// [`Fork::Parent`].
pub fn fork_cow() -> Result<Fork, Errno> {
    let mut pidfd: i32 = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD,
        pidfd: &mut pidfd as *mut i32 as u64,
        exit_signal: 0,
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
