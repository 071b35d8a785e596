//! The userfaultfd, used two ways. Eager: the private anonymous areas of
//! large images are registered and filled with `UFFDIO_COPY` from a
//! read-only view of the page file ([`uffd_setup`], [`copy_pages`],
//! [`uffd_unmap_view`]). Lazy: their stored pages are left to `crac
//! restore`, which gets the userfaultfd they are registered with
//! ([`lazy_setup`], [`hand_over_lazy`]).

use core::fmt::Write as _;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crac_sys::raw::{uffd, Errno};

use crac_image::status::{Stage, Status, StatusKind};

use crate::areas::walk_areas;
use crate::image::Image;
use crate::sys::*;
use crate::{err, page_up, PAGES_FD, R, STATUS_FD};

/// Images with at least this many bytes of page data fill their private
/// anonymous areas with `UFFDIO_COPY` (no zeroing, no fault per page).
pub(crate) const UFFD_MIN: u64 = 1 << 20;

// Filling anonymous memory through a userfaultfd.

/// The userfaultfd the private anonymous areas are registered with while
/// their pages load, or -1.
pub(crate) static UFFD_FD: AtomicI32 = AtomicI32::new(-1);
/// Where the page file is mapped (read-only) while pages load, or 0.
pub(crate) static VIEW: AtomicU64 = AtomicU64::new(0);
static VIEW_LEN: AtomicU64 = AtomicU64::new(0);

/// Fills `[dst, dst + len)` (registered) with a copy of `[src, src + len)`
/// of the page file view; returns the bytes filled and whether all were.
pub(crate) fn copy_pages(fd: i32, dst: u64, src: u64, len: u64) -> (u64, bool) {
    // Failure only costs speed: the copy faults the view in instead.
    let _ = madvise(src, len, MADV_POPULATE_READ);
    let mut done = 0;
    let mut stalls = 0;
    while done < len {
        // SAFETY: the destination lies in an area registered with `fd`
        // that nothing refers to; the source lies in the page file view,
        // mapped readable until both loading threads are done.
        match unsafe { uffd::copy(fd, dst + done, src + done, len - done) } {
            Ok(0) => return (done, false),
            Ok(n) => done += n,
            Err((e, n)) => {
                done += n;
                // EAGAIN: the address space changed under the copy; retry.
                if e == Errno::EAGAIN && (n > 0 || stalls < 8) {
                    stalls += 1;
                    continue;
                }
                return (done, false);
            }
        }
    }
    (done, true)
}

/// Maps the page file and registers every area to be filled with
/// `UFFDIO_COPY` with a new userfaultfd. Anything that fails leaves the
/// read path in place (for everything, or for areas not registered).
pub(crate) fn uffd_setup(img: &Image) -> R<()> {
    let Ok(size) = file_size(PAGES_FD) else {
        return Ok(());
    };
    let len = page_up(size);
    // A compressed image is copied from the scratch buffers, never from a
    // view of the page file (whose offsets are not the pieces').
    let view = if img.stored.is_some() {
        0
    } else {
        // SAFETY: a fresh read-only mapping where the kernel finds room;
        // every image area is mapped already, so it cannot take an image
        // address.
        let Ok(view) = (unsafe { mmap(0, len, PROT_READ, MAP_PRIVATE, PAGES_FD, 0) }) else {
            return Ok(());
        };
        view
    };
    let unmap = |view: u64| {
        if view != 0 {
            // SAFETY: the view is ours and unused.
            let _ = unsafe { munmap(view, len) };
        }
    };
    // User mode only where the kernel has it (5.11): a kernel access to a
    // missing page fails instead of waiting for a handler.
    let flags = uffd::O_CLOEXEC | uffd::O_NONBLOCK;
    let fd = uffd::open(flags | uffd::USER_MODE_ONLY).or_else(|_| uffd::open(flags));
    let Ok(fd) = fd else {
        unmap(view);
        return Ok(());
    };
    if uffd::api(fd).is_err() {
        let _ = close(fd);
        unmap(view);
        return Ok(());
    }
    walk_areas(
        img,
        false,
        |v, area| {
            if area.copy {
                // SAFETY: nothing touches the area before its pages are
                // copied in (or it is unregistered for the read path).
                let _ = unsafe { uffd::register(fd, v.start, v.len()) };
            }
            Ok(())
        },
        |_, _, _, _| Ok(()),
    )?;
    VIEW.store(view, Ordering::Relaxed);
    VIEW_LEN.store(len, Ordering::Relaxed);
    UFFD_FD.store(fd, Ordering::Relaxed);
    Ok(())
}

// Lazy loading: `crac restore` serves the private anonymous areas.

/// Set from the restore arguments: load private anonymous memory lazily.
pub(crate) static LAZY_REQUESTED: AtomicU32 = AtomicU32::new(0);
/// The userfaultfd of the lazily loaded areas until it is handed over, or -1.
pub(crate) static LAZY_FD: AtomicI32 = AtomicI32::new(-1);

/// Registers every private anonymous area with pages left to `crac
/// restore` (all but the small ones loaded first, see
/// [`crac_image::eager_small_area`]) with a new userfaultfd that reports forks, remaps, removals and unmaps (so the
/// handler never fills memory the program discarded or moved). Returns
/// `false`, with nothing registered, where the kernel cannot do that (the
/// restore then loads everything itself).
pub(crate) fn lazy_setup(img: &Image) -> R<bool> {
    // Faults from kernel mode (a read() into a missing page) must wait for
    // the handler too, so no UFFD_USER_MODE_ONLY here.
    let Ok(fd) = uffd::open(uffd::O_CLOEXEC | uffd::O_NONBLOCK) else {
        return Ok(false);
    };
    if uffd::api_with(fd, uffd::LAZY_FEATURES).is_err() {
        let _ = close(fd);
        return Ok(false);
    }
    let mut ok = true;
    walk_areas(
        img,
        false,
        |v, area| {
            if area.lazy && ok {
                // SAFETY: nothing touches the area before the handler has
                // the fd (see hand_over_lazy); the restorer only loads
                // areas that are not registered.
                ok = unsafe { uffd::register(fd, v.start, v.len()) }.is_ok();
            }
            Ok(())
        },
        |_, _, _, _| Ok(()),
    )?;
    if !ok {
        // Closing unregisters whatever was registered.
        let _ = close(fd);
        return Ok(false);
    }
    LAZY_FD.store(fd, Ordering::Relaxed);
    Ok(true)
}

/// Hands the userfaultfd to `crac restore` (the handler) and closes ours,
/// so the restored process holds no trace of it.
pub(crate) fn hand_over_lazy(bytes: u64) -> R<()> {
    let fd = LAZY_FD.swap(-1, Ordering::Relaxed);
    let mut rec = Status::new(StatusKind::Lazy, Stage::LoadPages);
    rec.object = bytes;
    let sent = crac_sys::raw::send_with_fd(STATUS_FD, &rec.encode(), fd);
    let _ = close(fd);
    sent.map_err(|Errno(e)| fail!(e, 0, "handing the userfaultfd to crac restore failed"))?;
    Ok(())
}

/// Unmaps the page file view (the loading threads are done with it).
pub(crate) fn uffd_unmap_view() {
    let view = VIEW.swap(0, Ordering::Relaxed);
    if view != 0 {
        // SAFETY: only the loading threads used the view, and both are done.
        let _ = unsafe { munmap(view, VIEW_LEN.load(Ordering::Relaxed)) };
    }
}
