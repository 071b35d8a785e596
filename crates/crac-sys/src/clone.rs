//! `clone3` for threads that start on their own stack.
//!
//! # Safety
//! The child shares the address space and starts executing `entry` on the
//! given stack; it must never return (the trampoline traps if it does).
#![allow(unsafe_code)]

/// `struct clone_args` of `clone3(2)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneArgs {
    /// `CLONE_*` flags.
    pub flags: u64,
    /// `CLONE_PIDFD` target.
    pub pidfd: u64,
    /// `CLONE_CHILD_SETTID`/`CLONE_CHILD_CLEARTID` address.
    pub child_tid: u64,
    /// `CLONE_PARENT_SETTID` address.
    pub parent_tid: u64,
    /// Signal sent to the parent when the child exits.
    pub exit_signal: u64,
    /// Lowest address of the child's stack.
    pub stack: u64,
    /// Size of the child's stack.
    pub stack_size: u64,
    /// TLS (FS base) for `CLONE_SETTLS`.
    pub tls: u64,
    /// Address of an array of PIDs, one per PID namespace level.
    pub set_tid: u64,
    /// Number of entries in `set_tid`.
    pub set_tid_size: u64,
    /// Cgroup fd for `CLONE_INTO_CGROUP`.
    pub cgroup: u64,
}

/// `CLONE_VM`.
pub const CLONE_VM: u64 = 0x100;
/// `CLONE_FS`.
pub const CLONE_FS: u64 = 0x200;
/// `CLONE_FILES`.
pub const CLONE_FILES: u64 = 0x400;
/// `CLONE_SIGHAND`.
pub const CLONE_SIGHAND: u64 = 0x800;
/// `CLONE_THREAD`.
pub const CLONE_THREAD: u64 = 0x10000;
/// `CLONE_SYSVSEM`.
pub const CLONE_SYSVSEM: u64 = 0x40000;
/// `CLONE_SETTLS`.
pub const CLONE_SETTLS: u64 = 0x80000;
/// A thread of the caller's process: shares memory, fs info, fd table,
/// signal handlers and SysV semaphore undo state (what `pthread_create`
/// asks for, without TLS or TID words).
pub const THREAD_FLAGS: u64 =
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
/// `CLONE_CHILD_CLEARTID`.
pub const CLONE_CHILD_CLEARTID: u64 = 0x200000;

core::arch::global_asm!(
    ".pushsection .text.crac_sys_clone,\"ax\",@progbits",
    ".globl crac_sys_clone3_thread",
    ".type crac_sys_clone3_thread,@function",
    "crac_sys_clone3_thread:",
    // rdi = args, rsi = size, rdx = entry, rcx = arg. r8/r9 survive into the child.
    "    mov r8, rdx",
    "    mov r9, rcx",
    "    mov eax, 435",
    "    syscall",
    "    test rax, rax",
    "    jnz 2f",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    mov rdi, r9",
    "    call r8",
    "    ud2",
    "2:  ret",
    ".size crac_sys_clone3_thread, .-crac_sys_clone3_thread",
    ".popsection",
);

extern "C" {
    fn crac_sys_clone3_thread(
        args: *const CloneArgs,
        size: usize,
        entry: extern "C" fn(u64) -> !,
        arg: u64,
    ) -> isize;
}

/// Creates a thread (or process) with `clone3` that runs `entry(arg)` on the
/// stack given in `args`. Returns the raw result in the parent (child id or
/// `-errno`).
///
/// # Safety
/// `args` must describe a valid stack that nothing else uses; with `CLONE_VM`
/// everything `entry` touches must stay valid while the child runs.
pub unsafe fn clone3_thread(args: &CloneArgs, entry: extern "C" fn(u64) -> !, arg: u64) -> isize {
    // SAFETY: the trampoline passes `args` to clone3 and, in the child only,
    // calls `entry` on the new stack; the caller guarantees the stack.
    unsafe { crac_sys_clone3_thread(args, core::mem::size_of::<CloneArgs>(), entry, arg) }
}
