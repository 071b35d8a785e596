//! Stopping the other threads at a safepoint, and letting them go again.
//!
//! The dumping thread sends [`STOP_SIGNAL`] to every other thread. The
//! handler records the thread's kernel state into a pre-allocated slot, saves
//! its callee-saved registers with [`checkpoint_call`] and waits on a futex.
//! The kernel has already stored the thread's full interrupted state (all
//! registers, FPU/AVX) in the signal frame on the thread's own stack, which is
//! plain memory in the image; after restore the handler returns and
//! `rt_sigreturn` brings all of it back, restarting or failing with `EINTR`
//! an interrupted system call exactly as after any signal.
//!
//! # Safety
//! The handler runs asynchronously: it only touches atomics, its own slot
//! (claimed with an atomic counter) and raw system calls.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crac_sys::ctx::{checkpoint_call, ResumeContext, RESUMED};
use crac_sys::sys;

/// The signal that stops threads for the dump: `SIGRTMAX - 2`. glibc keeps
/// 32–34 for itself; applications rarely use the top of the range.
pub const STOP_SIGNAL: i32 = 62;

/// Per-thread record filled by the thread itself.
#[repr(C)]
#[derive(Debug)]
pub struct ThreadSlot {
    /// Saved callee-saved state (its address goes into the image).
    pub ctx: ResumeContext,
    /// Thread id.
    pub tid: u32,
    /// Non-zero once the slot is filled.
    pub filled: u32,
    /// FS and GS base.
    pub fs_gs: (u64, u64),
    /// clear_child_tid pointer.
    pub clear_tid: u64,
    /// Robust list head and length.
    pub robust: (u64, u64),
    /// Blocked mask before the signal (from the signal frame).
    pub sigmask: u64,
    /// Alternate signal stack.
    pub altstack: (u64, u64, u32),
    /// Affinity mask bytes and their length.
    pub affinity: [u8; 128],
    /// Length of the affinity mask.
    pub affinity_len: u32,
    /// Thread name, NUL-padded.
    pub name: [u8; 16],
    /// Signals pending for this thread alone (`SigPnd`), re-sent after restore.
    pub pending: u64,
    /// Signals pending for the whole process (`ShdPnd`) as this thread saw them.
    pub shared_pending: u64,
}

impl Default for ThreadSlot {
    fn default() -> Self {
        ThreadSlot {
            ctx: ResumeContext::default(),
            tid: 0,
            filled: 0,
            fs_gs: (0, 0),
            clear_tid: 0,
            robust: (0, 0),
            sigmask: 0,
            altstack: (0, 0, 0),
            affinity: [0; 128],
            affinity_len: 0,
            name: [0; 16],
            pending: 0,
            shared_pending: 0,
        }
    }
}

impl ThreadSlot {
    /// Records the calling thread's kernel state.
    pub fn record_current(&mut self, sigmask: u64) {
        self.tid = sys::gettid();
        self.fs_gs = sys::fs_gs_base();
        self.clear_tid = sys::tid_address();
        self.robust = sys::robust_list();
        self.sigmask = sigmask;
        self.altstack = sys::sigaltstack(None).unwrap_or((0, 0, 2));
        self.affinity_len = sys::affinity(&mut self.affinity).unwrap_or(0) as u32;
        self.name = sys::thread_name();
        (self.pending, self.shared_pending) = pending_signals();
        self.filled = 1;
    }
}

/// This thread's and the process's pending signals, from
/// `/proc/thread-self/status`. Allocation-free and async-signal-safe.
fn pending_signals() -> (u64, u64) {
    let mut buf = [0u8; 4096];
    let Ok(fd) = sys::open(b"/proc/thread-self/status\0", 0o2000000, 0) else {
        return (0, 0);
    };
    let mut len = 0;
    while len < buf.len() {
        match sys::read(fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let _ = sys::close(fd);
    let field = |key: &[u8]| -> u64 {
        let text = &buf[..len];
        let Some(at) = text.windows(key.len()).position(|w| w == key) else {
            return 0;
        };
        let mut v = 0u64;
        for &c in text[at + key.len()..]
            .iter()
            .skip_while(|c| c.is_ascii_whitespace())
        {
            let Some(d) = (c as char).to_digit(16) else {
                break;
            };
            v = (v << 4) | u64::from(d);
        }
        v
    };
    (field(b"SigPnd:"), field(b"ShdPnd:"))
}

/// Shared state of one stop round. Lives in a static so the handler finds it
/// and so its address is the same in a restored process.
#[derive(Debug)]
pub struct StopState {
    /// Pre-allocated slots.
    slots: AtomicPtr<ThreadSlot>,
    /// Number of slots.
    cap: AtomicU32,
    /// Next free slot.
    next: AtomicU32,
    /// Threads that reached the wait.
    pub stopped: AtomicU32,
    /// Bumped to let stopped threads go.
    pub release: AtomicU32,
    /// Threads that came back in a restored process.
    pub resumed: AtomicU32,
    /// Non-zero while a round is active (stray signals are ignored).
    active: AtomicU32,
}

/// The one stop state of the process.
pub static STATE: StopState = StopState {
    slots: AtomicPtr::new(std::ptr::null_mut()),
    cap: AtomicU32::new(0),
    next: AtomicU32::new(0),
    stopped: AtomicU32::new(0),
    release: AtomicU32::new(0),
    resumed: AtomicU32::new(0),
    active: AtomicU32::new(0),
};

extern "C" fn wait_for_release(arg: *mut u8) -> u64 {
    let gen = arg as usize as u32;
    STATE.stopped.fetch_add(1, Ordering::SeqCst);
    sys::futex_wake(&STATE.stopped, i32::MAX as u32);
    while STATE.release.load(Ordering::SeqCst) == gen {
        let _ = sys::futex_wait(&STATE.release, gen, None);
    }
    0
}

extern "C" fn on_stop_signal(_sig: i32, _info: *mut u8, uctx: *mut u8) {
    if STATE.active.load(Ordering::SeqCst) == 0 {
        return;
    }
    let gen = STATE.release.load(Ordering::SeqCst);
    let idx = STATE.next.fetch_add(1, Ordering::SeqCst);
    let cap = STATE.cap.load(Ordering::SeqCst);
    let slots = STATE.slots.load(Ordering::SeqCst);
    if idx >= cap || slots.is_null() {
        // No room: count the thread as stopped so the dump notices the
        // overflow (next > cap) and gives up, then wait like the others.
        wait_for_release(gen as usize as *mut u8);
        return;
    }
    // SAFETY: the kernel's ucontext keeps uc_sigmask at offset 296 (x86-64
    // uapi: flags 8, link 8, stack 24, mcontext 256); `uctx` is the frame the
    // kernel passed to this SA_SIGINFO handler.
    let sigmask = unsafe { std::ptr::read_unaligned(uctx.wrapping_add(296).cast::<u64>()) };
    // SAFETY: `idx < cap` and the slot array holds `cap` slots that stay
    // allocated until the round ends; index `idx` was claimed by this thread
    // alone through the atomic counter.
    let slot = unsafe { &mut *slots.wrapping_add(idx as usize) };
    slot.record_current(sigmask);
    // SAFETY: the context lives in the slot, which stays at this address in
    // the image; `wait_for_release` never returns RESUMED.
    let r = unsafe { checkpoint_call(&mut slot.ctx, wait_for_release, gen as usize as *mut u8) };
    if r == RESUMED {
        STATE.resumed.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&STATE.resumed, i32::MAX as u32);
        while STATE.release.load(Ordering::SeqCst) == gen {
            let _ = sys::futex_wait(&STATE.release, gen, None);
        }
    }
}

/// Signals blocked while the stop handler runs: all of them.
const ALL_SIGNALS: u64 = !0;

/// Installs the stop handler; returns the previous disposition.
pub fn install_handler() -> Result<sys::KernelSigaction, crac_sys::Errno> {
    let mut old = sys::KernelSigaction::default();
    // SAFETY: querying only.
    unsafe { sys::sigaction(STOP_SIGNAL, None, Some(&mut old))? };
    // glibc's restorer (sa_restorer) is needed for the return path: reuse the
    // one glibc installed for any handler, else install via libc.
    let restorer = restorer_address();
    let new = sys::KernelSigaction {
        handler: on_stop_signal as *const () as usize as u64,
        flags: sys::SA_SIGINFO | sys::SA_RESTART | sys::SA_RESTORER,
        restorer,
        mask: ALL_SIGNALS,
    };
    // SAFETY: `on_stop_signal` has the SA_SIGINFO signature and is
    // async-signal-safe (see the module docs).
    unsafe { sys::sigaction(STOP_SIGNAL, Some(&new), None)? };
    Ok(old)
}

/// Puts back a disposition saved by [`install_handler`].
pub fn restore_handler(old: &sys::KernelSigaction) {
    // SAFETY: `old` is a disposition the kernel gave us for this signal.
    let _ = unsafe { sys::sigaction(STOP_SIGNAL, Some(old), None) };
}

/// The address of glibc's `__restore_rt` (the `sa_restorer` for
/// `rt_sigreturn`), learned by letting glibc install a handler once.
fn restorer_address() -> u64 {
    extern "C" {
        fn sigaction(sig: i32, act: *const u8, old: *mut u8) -> i32;
    }
    extern "C" fn nop(_: i32) {}
    // glibc's struct sigaction: handler 8, mask 128, flags 4 (+4), restorer 8.
    let mut act = [0u8; 152];
    act[0..8].copy_from_slice(&(nop as *const () as usize as u64).to_le_bytes());
    let mut probe = sys::KernelSigaction::default();
    let mut old = sys::KernelSigaction::default();
    // Let glibc install a no-op handler (it fills in sa_restorer), read it
    // back, and put the previous disposition back.
    let _ = sys::query_sigaction(STOP_SIGNAL, &mut old);
    // SAFETY: glibc's sigaction with a struct of its own size installing
    // a handler that does nothing; the previous disposition is put back below.
    unsafe { sigaction(STOP_SIGNAL, act.as_ptr(), std::ptr::null_mut()) };
    let _ = sys::query_sigaction(STOP_SIGNAL, &mut probe);
    // SAFETY: `old` is the disposition the kernel reported a moment ago.
    let _ = unsafe { sys::sigaction(STOP_SIGNAL, Some(&old), None) };
    probe.restorer
}

/// Why stopping the threads failed.
#[derive(Debug)]
pub enum StopFailure {
    /// A thread did not reach the handler in time.
    Timeout { tid: u32 },
    /// More threads than slots.
    TooManyThreads,
    /// Listing threads or signalling failed.
    Sys(&'static str, crac_sys::Errno),
}

/// One stop round over a pre-allocated slot array.
#[derive(Debug)]
pub struct Round {
    slots: Box<[ThreadSlot]>,
    signalled: Vec<u32>,
    dents: Vec<u8>,
    gen: u32,
    old_action: sys::KernelSigaction,
}

impl Round {
    /// Prepares a round for up to `cap` other threads (allocates now, so the
    /// stop itself never does).
    pub fn new(cap: usize) -> Result<Round, crac_sys::Errno> {
        let slots: Box<[ThreadSlot]> = (0..cap).map(|_| ThreadSlot::default()).collect();
        let old_action = install_handler()?;
        Ok(Round {
            slots,
            signalled: Vec::with_capacity(cap),
            dents: vec![0u8; 64 * 1024],
            gen: 0,
            old_action,
        })
    }

    /// Stops every thread of the process except the caller. Allocation-free.
    pub fn stop_all(&mut self) -> Result<(), StopFailure> {
        let me = sys::gettid();
        let pid = sys::getpid();
        STATE.stopped.store(0, Ordering::SeqCst);
        STATE.resumed.store(0, Ordering::SeqCst);
        STATE.next.store(0, Ordering::SeqCst);
        STATE.cap.store(self.slots.len() as u32, Ordering::SeqCst);
        STATE.slots.store(self.slots.as_mut_ptr(), Ordering::SeqCst);
        self.gen = STATE.release.load(Ordering::SeqCst);
        STATE.active.store(1, Ordering::SeqCst);
        loop {
            let mut new = 0;
            let fd = sys::open(b"/proc/self/task\0", 0o200000 /* O_DIRECTORY */, 0)
                .map_err(|e| StopFailure::Sys("open /proc/self/task", e))?;
            loop {
                let n = match sys::getdents64(fd, &mut self.dents) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = sys::close(fd);
                        return Err(StopFailure::Sys("list /proc/self/task", e));
                    }
                };
                let mut off = 0;
                while off < n {
                    let reclen =
                        u16::from_le_bytes([self.dents[off + 16], self.dents[off + 17]]) as usize;
                    let name = &self.dents[off + 19..off + reclen];
                    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                    off += reclen;
                    let Some(tid) = parse_u32(name) else { continue };
                    if tid == me || self.signalled.contains(&tid) {
                        continue;
                    }
                    if self.signalled.len() == self.signalled.capacity() {
                        let _ = sys::close(fd);
                        return Err(StopFailure::TooManyThreads);
                    }
                    match sys::tgkill(pid, tid, STOP_SIGNAL) {
                        Ok(()) => {
                            self.signalled.push(tid);
                            new += 1;
                        }
                        Err(e) if e.0 == 3 => {} // ESRCH: it exited meanwhile
                        Err(e) => {
                            let _ = sys::close(fd);
                            return Err(StopFailure::Sys("signal a thread", e));
                        }
                    }
                }
            }
            let _ = sys::close(fd);
            // Wait for everyone signalled so far.
            let want = self.signalled.len() as u32;
            let deadline = sys::clock_ns(1) + 5_000_000_000;
            loop {
                let now_stopped = STATE.stopped.load(Ordering::SeqCst);
                if now_stopped >= want {
                    break;
                }
                let now = sys::clock_ns(1);
                if now >= deadline {
                    let tid = self.first_missing();
                    return Err(StopFailure::Timeout { tid });
                }
                let _ = sys::futex_wait(
                    &STATE.stopped,
                    now_stopped,
                    Some((deadline - now).min(50_000_000)),
                );
            }
            if STATE.next.load(Ordering::SeqCst) > self.slots.len() as u32 {
                return Err(StopFailure::TooManyThreads);
            }
            if new == 0 {
                return Ok(());
            }
        }
    }

    fn first_missing(&self) -> u32 {
        let n = (STATE.next.load(Ordering::SeqCst) as usize).min(self.slots.len());
        self.signalled
            .iter()
            .copied()
            .find(|t| !self.slots[..n].iter().any(|s| s.tid == *t && s.filled != 0))
            .unwrap_or(0)
    }

    /// The slots of the stopped threads.
    pub fn stopped_slots(&self) -> &[ThreadSlot] {
        let n = (STATE.next.load(Ordering::SeqCst) as usize).min(self.slots.len());
        &self.slots[..n]
    }

    /// Lets every stopped thread continue (original process, or a restored
    /// one once its state is back).
    pub fn release(&mut self) {
        STATE.active.store(0, Ordering::SeqCst);
        STATE
            .release
            .store(self.gen.wrapping_add(1), Ordering::SeqCst);
        sys::futex_wake(&STATE.release, i32::MAX as u32);
    }

    /// In a restored process: waits until every other thread came back.
    pub fn wait_resumed(&self) {
        let want = self.stopped_slots().len() as u32;
        loop {
            let n = STATE.resumed.load(Ordering::SeqCst);
            if n >= want {
                return;
            }
            let _ = sys::futex_wait(&STATE.resumed, n, Some(100_000_000));
        }
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        restore_handler(&self.old_action);
    }
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
    }
    Some(v)
}

extern "C" fn trampoline<F: FnMut() -> u64>(arg: *mut u8) -> u64 {
    // SAFETY: `arg` is the `&mut F` passed by `call_saving_context` below,
    // alive and exclusively borrowed for the duration of the call.
    let f = unsafe { &mut *arg.cast::<F>() };
    f()
}

/// Saves the caller's resume context into `ctx`, then runs `f`. Returns
/// `Ok(f's result)` in the original process, or `Err(Resumed)` when this is
/// a restored process that was resumed at this point.
pub fn call_saving_context<F: FnMut() -> u64>(
    ctx: &mut ResumeContext,
    f: &mut F,
) -> Result<u64, Resumed> {
    let arg = (f as *mut F).cast::<u8>();
    // SAFETY: `ctx` is exclusively borrowed and lives in the dump job on the
    // caller's stack frame, whose address is the same in the image; `f` never
    // returns RESUMED (it returns 0 or an error code).
    let r = unsafe { checkpoint_call(ctx, trampoline::<F>, arg) };
    if r == RESUMED {
        Err(Resumed)
    } else {
        Ok(r)
    }
}

/// Marker: the process was restored.
#[derive(Debug, Clone, Copy)]
pub struct Resumed;

/// The block the restorer fills (see `crac_image::RestoreInfo`). Aligned to
/// 64 bytes so its 64 bytes never straddle a page, and so never two mappings
/// (the restorer checks that one writable mapping holds it).
#[repr(align(64))]
#[derive(Debug)]
pub struct RestoreInfoBlock(pub [std::sync::atomic::AtomicU64; 8]);

/// Where the restorer writes the restore facts.
pub static RESTORE_INFO: RestoreInfoBlock =
    RestoreInfoBlock([const { std::sync::atomic::AtomicU64::new(0) }; 8]);

extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// The calling thread's rseq registration as glibc made it:
/// (area address, registered length, signature), or zeros if none.
pub fn rseq_area(fs_base: u64) -> (u64, u32, u32) {
    // SAFETY: glibc (2.35+) exports these two read-only variables, set once
    // at start-up before any thread exists.
    let (off, size) = unsafe { (__rseq_offset, __rseq_size) };
    if size == 0 || fs_base == 0 {
        return (0, 0, 0);
    }
    // glibc registers at least the original 32-byte struct rseq.
    let len = size.max(32);
    (fs_base.wrapping_add_signed(off as i64), len, 0x5305_3053)
}

/// Copies `dst.len()` bytes of this process's memory at `addr` into `dst`.
///
/// # Panics
/// Never; the caller guarantees readability (see safety below).
pub fn copy_from_memory(addr: u64, dst: &mut [u8]) {
    // The source may overlap `dst` (the buffer is memory being dumped too),
    // hence `copy` (memmove) rather than `copy_nonoverlapping`.
    // SAFETY: callers pass readable ranges (per /proc/self/maps) while every
    // other thread is stopped, so nothing unmaps the source during the copy.
    unsafe { std::ptr::copy(addr as *const u8, dst.as_mut_ptr(), dst.len()) }
}

/// In a restored process: takes the environment block the restorer left in
/// its zone, then unmaps the zone so nothing of the restorer remains.
pub fn take_env_and_unmap_zone(info: &crac_image::RestoreInfo) -> Vec<u8> {
    let mut env = vec![0u8; info.env_len as usize];
    if info.env_len > 0 {
        copy_from_memory(info.env_addr, &mut env);
    }
    if info.zone_len > 0 {
        // SAFETY: the zone holds only the restorer's code, stacks and inputs;
        // every thread has left it (each reported back through STATE.resumed
        // from library code) and the env block was copied above.
        let _ = unsafe { sys::munmap(info.zone_start, info.zone_len) };
    }
    env
}

/// Returns free heap memory to the kernel (glibc `malloc_trim(0)`).
pub fn malloc_trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim takes the allocator's locks itself and is
    // safe to call from any thread at any time outside signal handlers.
    unsafe {
        malloc_trim(0);
    }
}

/// Puts back a disposition recorded at dump time.
pub fn set_sigaction(sig: i32, act: &sys::KernelSigaction) {
    // SAFETY: `act` is exactly what the kernel reported for `sig` in this same
    // address space at dump time, so the handler and restorer addresses are
    // valid again now that memory is restored.
    let _ = unsafe { sys::sigaction(sig, Some(act), None) };
}

/// Lets `f` read `len` bytes of this process's memory at `addr`.
pub fn read_memory(addr: u64, len: u64, f: impl FnOnce(&[u8])) {
    // Callers exclude what the dumping thread itself modifies (its stack, the
    // bounce buffer, rseq areas), so the bytes stay still while read.
    // SAFETY: readable page runs (per /proc/self/maps), other threads stopped;
    // the slice is only read for the duration of this call.
    let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    f(bytes);
}
