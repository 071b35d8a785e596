//! The image's threads: every thread but the main one created with its TID
//! on a stack slot of the zone ([`create_threads`]), where it restores its
//! own kernel state and credentials before it counts itself ready; the main
//! thread's state ([`main_thread_state`]); and the jump into the program
//! ([`jump`]).

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use crac_image::{CredsRecord, Tag, ThreadRecord};

use crate::creds;
use crate::image::{meta_err, sections, Image};
use crate::sys::*;
use crate::{die, err, B, R, STACKS_AREA, ZONE_END};

const THREAD_STACK: u64 = 0x8000;
const MAX_THREADS: u64 = (ZONE_END - STACKS_AREA) / THREAD_STACK;

/// Threads other than the main one that restored their state.
static THREADS_READY: AtomicU32 = AtomicU32::new(0);

/// What a thread needs to restore its kernel state, kept at the bottom of
/// its stack slot (or on the main stack for the main thread).
#[repr(C)]
pub(crate) struct ThreadArgs {
    tid: i32,
    rseq_len: u32,
    rseq_sig: u32,
    name: [u8; 16],
    pub(crate) ctx_addr: u64,
    fs_base: u64,
    gs_base: u64,
    clear_tid: u64,
    robust_head: u64,
    robust_len: u64,
    rseq_addr: u64,
    affinity: &'static [u8],
    pub(crate) resume_entry: u64,
    creds: CredsRecord<'static>,
}

impl ThreadArgs {
    fn new(t: &ThreadRecord<'static>, resume_entry: u64) -> ThreadArgs {
        let mut name = [0u8; 16];
        let n = t.name.len().min(15);
        name[..n].copy_from_slice(&t.name[..n]);
        ThreadArgs {
            tid: t.tid as i32,
            rseq_len: t.rseq_len,
            rseq_sig: t.rseq_sig,
            name,
            ctx_addr: t.ctx_addr,
            fs_base: t.fs_base,
            gs_base: t.gs_base,
            clear_tid: t.clear_tid,
            robust_head: t.robust_head,
            robust_len: t.robust_len,
            rseq_addr: t.rseq_addr,
            affinity: t.affinity,
            resume_entry,
            creds: CredsRecord::default(),
        }
    }
}

/// Restores the calling thread's robust list, rseq, GS base, affinity and
/// name (TLS and clear_child_tid come from `clone3`, or are set by the
/// caller for the main thread).
fn thread_state(a: &ThreadArgs) -> R<()> {
    let tid = a.tid as u64;
    if gettid() != a.tid as u32 {
        return Err(fail!(
            0,
            tid,
            "thread {} came up as TID {}",
            a.tid,
            gettid()
        ));
    }
    if a.robust_head != 0 {
        // SAFETY: the list lives in restored image memory.
        unsafe { set_robust_list(a.robust_head, a.robust_len) }.map_err(|e| {
            fail!(
                e,
                tid,
                "set_robust_list({:#x}, {}) failed for TID {}",
                a.robust_head,
                a.robust_len,
                a.tid
            )
        })?;
    }
    if a.rseq_addr != 0 {
        // SAFETY: the rseq area lives in restored image memory.
        let mut r = unsafe { rseq(a.rseq_addr, a.rseq_len, 0, a.rseq_sig) };
        if r == Err(22) && a.rseq_len < 32 {
            // Feature-size lengths (glibc >= 2.40) on kernels wanting 32.
            // SAFETY: as above.
            r = unsafe { rseq(a.rseq_addr, 32, 0, a.rseq_sig) };
        }
        r.map_err(|e| {
            fail!(
                e,
                tid,
                "registering rseq at {:#x} (len {}) failed for TID {}",
                a.rseq_addr,
                a.rseq_len,
                a.tid
            )
        })?;
    }
    if a.gs_base != 0 {
        // SAFETY: the restorer does not use GS.
        unsafe { arch_prctl(ARCH_SET_GS, a.gs_base) }.map_err(|e| {
            fail!(
                e,
                tid,
                "setting GS base {:#x} failed for TID {}",
                a.gs_base,
                a.tid
            )
        })?;
    }
    if !a.affinity.is_empty() {
        // CPUs of the dumping machine may be missing here: keep the inherited
        // affinity then.
        let _ = sched_setaffinity(a.affinity);
    }
    // SAFETY: `name` is NUL-terminated and 16 bytes long.
    let _ = unsafe { prctl(PR_SET_NAME, a.name.as_ptr() as u64, 0, 0) };
    Ok(())
}

/// Enters the program: `resume_entry(ctx)` (never returns).
pub(crate) unsafe fn jump(entry: u64, ctx: u64) -> ! {
    // SAFETY: the caller restored the thread's state; the resume routine
    // switches to the thread's own stack and never returns here.
    unsafe { core::arch::asm!("jmp {e}", e = in(reg) entry, in("rdi") ctx, options(noreturn)) }
}

extern "C" fn thread_entry(arg: u64) -> ! {
    // SAFETY: `arg` points to the ThreadArgs the main thread wrote at the
    // bottom of this thread's stack slot; it stays valid until the jump.
    let a = unsafe { &*(arg as *const ThreadArgs) };
    if let Err(s) = thread_state(a).and_then(|()| creds::apply(&a.creds, a.tid as u32)) {
        die(&s);
    }
    THREADS_READY.fetch_add(1, Ordering::Release);
    futex_wake(&THREADS_READY);
    // SAFETY: the thread's state is restored.
    unsafe { jump(a.resume_entry, a.ctx_addr) }
}

/// Creates every thread but the main one; returns the main thread's record.
pub(crate) fn create_threads(img: &Image) -> R<ThreadRecord<'static>> {
    let pid = img.process.pid;
    let others = img.threads.saturating_sub(1);
    if others > MAX_THREADS {
        return Err(fail!(
            0,
            others,
            "the image has {} threads, more than the restorer's {MAX_THREADS}",
            img.threads
        ));
    }
    if others > 0 {
        // SAFETY: the stack area of the zone is reserved for these stacks.
        unsafe {
            mmap(
                STACKS_AREA,
                others * THREAD_STACK,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                -1,
                0,
            )
        }
        .map_err(|e| fail!(e, STACKS_AREA, "mapping {others} thread stacks failed"))?;
    }
    let mut main = None;
    let mut created = 0u64;
    for s in sections(img.body) {
        let (tag, mut p) = s?;
        if tag != Tag::Thread {
            continue;
        }
        let t = ThreadRecord::decode(&mut p).map_err(meta_err)?;
        if t.tid == pid {
            main = Some(t);
            continue;
        }
        if created == others {
            return Err(fail!(
                0,
                t.tid as u64,
                "the image describes no main thread (TID {pid})"
            ));
        }
        let slot = STACKS_AREA + created * THREAD_STACK;
        let args = slot as *mut ThreadArgs;
        // SAFETY: the slot is mapped and unused; the thread reads the args
        // from there.
        unsafe {
            args.write(ThreadArgs {
                creds: img.creds,
                ..ThreadArgs::new(&t, img.process.resume_entry)
            })
        };
        let tid = t.tid as i32;
        let ca = crac_sys::clone::CloneArgs {
            flags: crac_sys::clone::THREAD_FLAGS
                | crac_sys::clone::CLONE_SETTLS
                | crac_sys::clone::CLONE_CHILD_CLEARTID,
            child_tid: t.clear_tid,
            stack: slot,
            stack_size: THREAD_STACK,
            tls: t.fs_base,
            set_tid: &tid as *const i32 as u64,
            set_tid_size: 1,
            ..Default::default()
        };
        let create = || {
            // A failed clone3 started nothing: trying again is as safe as
            // the first try.
            // SAFETY: the thread runs on its own slot of the zone and only
            // reads its args and the (immutable) zone until it jumps in.
            let r = unsafe { crac_sys::clone::clone3_thread(&ca, thread_entry, args as u64) };
            if r < 0 {
                Err(crac_sys::Errno((-r) as i32))
            } else {
                Ok(r)
            }
        };
        // Preflight saw the TID free; the threads of a process that just
        // died may hold theirs a little longer.
        let r = match crac_sys::commit::retry_taken(create) {
            Ok(r) => r,
            Err(e) => -(e.0 as isize),
        };
        if r < 0 {
            let e = (-r) as i32;
            let why = if e == 17 { ": the TID is taken" } else { "" };
            return Err(fail!(
                e,
                t.tid as u64,
                "creating thread {} ({}) failed{why}",
                t.tid,
                B(t.name)
            ));
        }
        created += 1;
    }
    let Some(main) = main else {
        return Err(fail!(
            0,
            pid as u64,
            "the image describes no main thread (TID {pid})"
        ));
    };
    // Wait until every thread restored its state: an error must be reported
    // before success is.
    loop {
        let n = THREADS_READY.load(Ordering::Acquire);
        if n as u64 >= created {
            break;
        }
        futex_wait(&THREADS_READY, n);
    }
    Ok(main)
}

/// Restores the calling (main) thread's state: what [`thread_state`] does
/// for every thread, and its clear_child_tid address and TLS, which
/// `clone3` sets for the others. Returns its arguments for the [`jump`].
pub(crate) fn main_thread_state(img: &Image, main: &ThreadRecord<'static>) -> R<ThreadArgs> {
    let pid = img.process.pid;
    let a = ThreadArgs::new(main, img.process.resume_entry);
    thread_state(&a)?;
    // SAFETY: the kernel writes 0 there when the thread exits (image memory).
    unsafe { set_tid_address(a.clear_tid) };
    // SAFETY: the restorer uses no thread-local storage.
    unsafe { arch_prctl(ARCH_SET_FS, a.fs_base) }.map_err(|e| {
        fail!(
            e,
            pid as u64,
            "setting FS base {:#x} failed for TID {pid}",
            a.fs_base
        )
    })?;
    Ok(a)
}
