//! The page-loading helper thread: for large images it loads the second
//! half of the page data while the main thread loads the first, on a stack
//! in the bss and with a TID the kernel picks, and is gone from the thread
//! group before any image thread is created.

use core::sync::atomic::{AtomicU32, Ordering};

use crac_image::status::Status;

use crate::image::Image;
use crate::load::{load_share, HELPER_SLOT};
use crate::sys::*;
use crate::R;

/// Images with at least this many bytes of page data are loaded by two
/// threads.
pub(crate) const SPLIT_MIN: u64 = 8 << 20;
const HELPER_STACK: usize = 64 * 1024;

#[repr(C, align(64))]
struct HelperStack([u8; HELPER_STACK]);
static mut CRAC_HELPER_STACK: HelperStack = HelperStack([0; HELPER_STACK]);
/// The helper's `clear_child_tid` word: nonzero while it runs; the kernel
/// clears it and wakes waiters when the helper is done with the memory.
static HELPER_RUNNING: AtomicU32 = AtomicU32::new(0);
/// Set by the helper when [`HELPER_ERROR`] holds its error.
static HELPER_FAILED: AtomicU32 = AtomicU32::new(0);
static mut HELPER_ERROR: core::mem::MaybeUninit<Status> = core::mem::MaybeUninit::uninit();

/// The helper's work: a share of the page data.
pub(crate) struct HelperJob {
    pub(crate) img: *const Image,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

extern "C" fn helper_entry(arg: u64) -> ! {
    // SAFETY: `arg` points to the HelperJob (and through it the Image) on
    // the main thread's stack, which waits for this thread to end before it
    // leaves the frame they live in.
    let job = unsafe { &*(arg as *const HelperJob) };
    // SAFETY: as above.
    let img = unsafe { &*job.img };
    if let Err(s) = load_share(img, HELPER_SLOT, job.lo, job.hi) {
        // SAFETY: only this thread writes the slot, once; the main thread
        // reads it after this thread ended (HELPER_FAILED, then the
        // clear_child_tid futex, order the accesses).
        unsafe { core::ptr::addr_of_mut!(HELPER_ERROR).write(core::mem::MaybeUninit::new(s)) };
        HELPER_FAILED.store(1, Ordering::Release);
    }
    exit_thread()
}

/// Starts the helper on `job`; returns its TID, or `None` if no thread could
/// be created (the caller then loads everything itself). The kernel picks
/// the TID: even if it is one an image thread needs, the helper is gone
/// (see [`join_helper`]) before any image thread is created. (Picking TIDs
/// next to the image's own would take ones that the images of processes
/// started alongside it need.)
pub(crate) fn start_helper(job: &HelperJob) -> Option<i32> {
    HELPER_RUNNING.store(1, Ordering::Relaxed);
    let stack = core::ptr::addr_of_mut!(CRAC_HELPER_STACK) as u64;
    let ca = crac_sys::clone::CloneArgs {
        flags: crac_sys::clone::THREAD_FLAGS | crac_sys::clone::CLONE_CHILD_CLEARTID,
        child_tid: HELPER_RUNNING.as_ptr() as u64,
        stack,
        stack_size: HELPER_STACK as u64,
        ..Default::default()
    };
    // SAFETY: the helper runs on its own stack in the zone's bss and only
    // reads the zone and the job, and writes the areas of its share, which
    // the main thread does not touch until it ended.
    let r = unsafe {
        crac_sys::clone::clone3_thread(&ca, helper_entry, job as *const HelperJob as u64)
    };
    if r > 0 {
        return Some(r as i32);
    }
    HELPER_RUNNING.store(0, Ordering::Relaxed);
    None
}

/// Waits until the helper has ended and is gone from the thread group.
pub(crate) fn join_helper(tid: i32) -> R<()> {
    loop {
        let v = HELPER_RUNNING.load(Ordering::Acquire);
        if v == 0 {
            break;
        }
        futex_wait_shared(&HELPER_RUNNING, v);
    }
    // The kernel clears the word before the thread has left the group; a
    // restored program must not see it.
    let pid = getpid() as i32;
    while tgkill(pid, tid, 0).is_ok() {
        sched_yield();
    }
    if HELPER_FAILED.load(Ordering::Acquire) != 0 {
        // SAFETY: the helper wrote the slot before it set the flag, and has
        // ended.
        return Err(unsafe { core::ptr::addr_of!(HELPER_ERROR).read().assume_init() });
    }
    Ok(())
}
