//! Saving a thread's callee-saved state around a call, and resuming it.
//!
//! The dump runs inside the process. Each thread calls [`checkpoint_call`]
//! (the dumping thread directly, the others from the stop signal's handler):
//! it stores the registers the System V ABI asks a callee to preserve, the
//! stack pointer and the return address into a [`ResumeContext`], then calls a
//! function. In the original process that function's result is returned. In a
//! restored process the restorer jumps to [`resume_entry`] with the context's
//! address, which makes the same `checkpoint_call` return [`RESUMED`] on the
//! same stack: to the Rust caller it is one ordinary call that returned once.
//! Caller-saved registers need no saving because the call clobbers them
//! anyway; a thread stopped in a signal handler gets its full interrupted
//! state (all registers, FPU/AVX) back from the kernel's signal frame, which
//! lives on its stack in the image.
//!
//! # Safety
//! `resume_entry` replaces the stack pointer: it must only be entered with a
//! context saved by `checkpoint_call` whose stack frames are still intact.
#![allow(unsafe_code)]

/// Value [`checkpoint_call`] returns in a restored process.
pub const RESUMED: u64 = u64::MAX;

/// Callee-saved state of one thread. Layout is fixed (offsets used by the
/// assembly below): rbx 0, rbp 8, r12 16, r13 24, r14 32, r15 40, rsp 48,
/// rip 56, mxcsr 64, x87 control word 68.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeContext {
    /// rbx, rbp, r12, r13, r14, r15.
    pub gprs: [u64; 6],
    /// Stack pointer after the return.
    pub rsp: u64,
    /// Return address.
    pub rip: u64,
    /// SSE control/status.
    pub mxcsr: u32,
    /// x87 control word.
    pub fcw: u16,
    /// Padding.
    pub _pad: [u16; 5],
}

const _: () = assert!(core::mem::size_of::<ResumeContext>() == 128);

core::arch::global_asm!(
    ".pushsection .text.crac_sys_ctx,\"ax\",@progbits",
    ".globl crac_sys_checkpoint_call",
    ".type crac_sys_checkpoint_call,@function",
    "crac_sys_checkpoint_call:",
    "    mov [rdi], rbx",
    "    mov [rdi+8], rbp",
    "    mov [rdi+16], r12",
    "    mov [rdi+24], r13",
    "    mov [rdi+32], r14",
    "    mov [rdi+40], r15",
    "    lea rax, [rsp+8]",
    "    mov [rdi+48], rax",
    "    mov rax, [rsp]",
    "    mov [rdi+56], rax",
    "    stmxcsr [rdi+64]",
    "    fnstcw [rdi+68]",
    // rsp is 8 mod 16 here; realign for the call.
    "    sub rsp, 8",
    "    mov rdi, rdx",
    "    call rsi",
    "    add rsp, 8",
    "    ret",
    ".size crac_sys_checkpoint_call, .-crac_sys_checkpoint_call",
    ".globl crac_sys_resume",
    ".type crac_sys_resume,@function",
    "crac_sys_resume:",
    "    ldmxcsr [rdi+64]",
    "    fldcw [rdi+68]",
    "    mov rbx, [rdi]",
    "    mov rbp, [rdi+8]",
    "    mov r12, [rdi+16]",
    "    mov r13, [rdi+24]",
    "    mov r14, [rdi+32]",
    "    mov r15, [rdi+40]",
    "    mov rsp, [rdi+48]",
    "    mov rax, -1",
    "    jmp qword ptr [rdi+56]",
    ".size crac_sys_resume, .-crac_sys_resume",
    ".popsection",
);

extern "C" {
    fn crac_sys_checkpoint_call(
        ctx: *mut ResumeContext,
        f: extern "C" fn(*mut u8) -> u64,
        arg: *mut u8,
    ) -> u64;
    fn crac_sys_resume(ctx: *const ResumeContext) -> !;
}

/// Saves the caller's callee-saved state into `ctx`, then returns `f(arg)`;
/// or, in a restored process entered through [`resume_entry`] with `ctx`,
/// returns [`RESUMED`].
///
/// # Safety
/// `ctx` must be valid for writes and stay at the same address for as long as
/// the image may be restored; `f` must not return [`RESUMED`]; `arg` is passed
/// through to `f` unchanged.
pub unsafe fn checkpoint_call(
    ctx: *mut ResumeContext,
    f: extern "C" fn(*mut u8) -> u64,
    arg: *mut u8,
) -> u64 {
    // SAFETY: the assembly writes 72 bytes to `ctx` (valid per the contract),
    // keeps the stack aligned and returns `f`'s result like a normal call.
    unsafe { crac_sys_checkpoint_call(ctx, f, arg) }
}

/// Address of the resume routine, recorded in the image. The restorer jumps
/// there with `rdi` = a context address.
pub fn resume_entry() -> u64 {
    crac_sys_resume as *const () as u64
}
