//! The memory stage: every area of the image mapped ([`map_area`]), its
//! pages loaded ([`crate::load`], on two threads for large images:
//! [`crate::helper`]; through the userfaultfd where it pays:
//! [`crate::userfault`]; or left to `crac restore` in a lazy restore), and
//! its advice and protection given back ([`advise`]).

use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use crac_sys::raw::uffd;

use crac_image::status::{Stage, Status, BYTE_PROGRESS_MIN};
use crac_image::{
    VmaRecord, NO_FILE, PAGE_SIZE, RESTORE_INFO_LEN, VMA_ADVICE, VMA_DONTFORK, VMA_GROWSDOWN,
    VMA_SHARED, VMA_WIPEONFORK,
};

use crate::areas::{walk_areas, Area};
use crate::files::FileCache;
use crate::helper::{join_helper, start_helper, HelperJob, SPLIT_MIN};
use crate::image::Image;
use crate::load::{load_share, MAIN_SLOT, PROGRESS_TOTAL};
use crate::sys::*;
use crate::userfault::{
    hand_over_lazy, lazy_setup, uffd_setup, uffd_unmap_view, LAZY_REQUESTED, UFFD_FD, UFFD_MIN,
};
use crate::{err, quiet, report, B, R};

/// Maps every area of the image and loads its pages (on two threads for
/// large images), then gives the areas their protection. Returns whether the
/// restore-info block lies in writable memory and whether private anonymous
/// memory is left to `crac restore` to load lazily.
pub(crate) fn map_memory(img: &Image) -> R<(bool, bool)> {
    let (total, lazy_bytes) = map_areas(img)?;

    quiet(Stage::LoadPages);
    let lazy = load_areas(img, total, lazy_bytes)?;

    quiet(Stage::Protect);
    let info_ok = protect_areas(img)?;
    Ok((info_ok, lazy))
}

/// Maps every area of the image (writable while its pages are loaded).
/// Returns the bytes of page data to load and how many of them a lazy
/// restore leaves to `crac restore` (those of private anonymous areas but
/// the small ones it loads first).
fn map_areas(img: &Image) -> R<(u64, u64)> {
    let mut files = FileCache::new();
    let mut total = 0u64;
    let mut lazy_bytes = 0u64;
    let mapped = walk_areas(
        img,
        true,
        |v, area| map_area(img, v, area, &mut files),
        |area, _, l, _| {
            total += l;
            if area.lazy {
                lazy_bytes += l;
            }
            Ok(())
        },
    );
    files.close();
    mapped?;
    Ok((total, lazy_bytes))
}

/// Loads the page data of the mapped areas (on two threads for large
/// images), reporting the bytes loaded; in a lazy restore, where the kernel
/// can, the private anonymous areas are left to `crac restore`, which gets
/// their userfaultfd. Returns whether they were.
fn load_areas(img: &Image, mut total: u64, lazy_bytes: u64) -> R<bool> {
    let lazy = LAZY_REQUESTED.load(Ordering::Relaxed) != 0 && lazy_bytes > 0 && lazy_setup(img)?;
    if lazy {
        total -= lazy_bytes;
    }
    if total >= BYTE_PROGRESS_MIN {
        PROGRESS_TOTAL.store(total, Ordering::Relaxed);
        report(&Status::bytes(0, total));
    }
    if !lazy && total >= UFFD_MIN {
        uffd_setup(img)?;
    }
    let mut main_hi = total;
    let mut helper = None;
    let job;
    if total >= SPLIT_MIN {
        let mid = total / 2 / PAGE_SIZE * PAGE_SIZE;
        job = HelperJob {
            img,
            lo: mid,
            hi: total,
        };
        helper = start_helper(&job);
        if helper.is_some() {
            main_hi = mid;
        }
    }
    let mine = load_share(img, MAIN_SLOT, 0, main_hi);
    if let Some(tid) = helper {
        // Even when this thread failed: the helper uses this frame.
        join_helper(tid)?;
    }
    mine?;
    uffd_unmap_view();
    if total >= BYTE_PROGRESS_MIN {
        report(&Status::bytes(total, total));
    }
    if lazy {
        hand_over_lazy(lazy_bytes)?;
    }
    Ok(lazy)
}

/// Gives every area back its advice and its own protection (taking the
/// areas filled with `UFFDIO_COPY` off the userfaultfd, which it closes).
/// Returns whether the restore-info block lies in writable memory.
fn protect_areas(img: &Image) -> R<bool> {
    let info = img.process.restore_info_addr;
    let mut info_ok = false;
    let fd = UFFD_FD.load(Ordering::Relaxed);
    let protected = walk_areas(
        img,
        false,
        |v, area| {
            if fd >= 0 && area.copy {
                // Plain anonymous memory again (closing the fd below would
                // do the same for anything left registered).
                let _ = uffd::unregister(fd, v.start, v.len());
            }
            advise(v)?;
            if area.map_prot != area.prot {
                // SAFETY: the area is ours; it gets the protection it had.
                unsafe { mprotect(v.start, v.len(), area.prot) }.map_err(|e| {
                    fail!(e, v.start, "protecting {:#x}-{:#x} failed", v.start, v.end)
                })?;
            }
            if area.prot & PROT_WRITE != 0 && info >= v.start && info + RESTORE_INFO_LEN <= v.end {
                info_ok = true;
            }
            Ok(())
        },
        |_, _, _, _| Ok(()),
    );
    if fd >= 0 {
        UFFD_FD.store(-1, Ordering::Relaxed);
        let _ = close(fd);
    }
    protected?;
    Ok(info_ok)
}

/// Maps one area of the image (writable while its pages are loaded).
fn map_area(img: &Image, v: &VmaRecord<'static>, area: &Area, files: &mut FileCache) -> R<()> {
    let shared = v.flags & VMA_SHARED != 0;
    let mut flags = MAP_FIXED | if shared { MAP_SHARED } else { MAP_PRIVATE };
    if v.flags & VMA_GROWSDOWN != 0 {
        flags |= MAP_GROWSDOWN;
    }
    let len = v.len();
    if area.anon {
        // SAFETY: outside the zone; nothing refers to image memory yet.
        unsafe { mmap(v.start, len, area.map_prot, flags | MAP_ANONYMOUS, -1, 0) }
            .map_err(|e| fail!(e, v.start, "mapping {:#x}-{:#x} failed", v.start, v.end))?;
        return Ok(());
    }
    if v.file == NO_FILE {
        return Err(fail!(
            0,
            v.start,
            "the file area at {:#x} names no file",
            v.start
        ));
    }
    let rw = shared && area.prot & PROT_WRITE != 0;
    let (fd, path) = files.get(img, v.file, rw)?;
    // SAFETY: outside the zone; nothing refers to image memory yet.
    unsafe { mmap(v.start, len, area.map_prot, flags, fd, v.pgoff) }.map_err(|e| {
        fail!(
            e,
            v.start,
            "mapping {} at {:#x}-{:#x} failed",
            B(path),
            v.start,
            v.end
        )
    })?;
    Ok(())
}

/// Gives an area back the `madvise` advice it had, once its pages are in
/// (so huge-page and read-ahead hints do not shape the loading). What
/// changes a fork's outcome must take; hints (huge pages, KSM, read-ahead,
/// core dumps) are given where the kernel takes them.
fn advise(v: &VmaRecord<'static>) -> R<()> {
    for (bit, name, advice) in VMA_ADVICE {
        if v.flags & bit == 0 {
            continue;
        }
        let r = madvise(v.start, v.len(), advice as u64);
        if let Err(e) = r {
            if bit & (VMA_DONTFORK | VMA_WIPEONFORK) != 0 {
                return Err(fail!(
                    e,
                    v.start,
                    "giving {:#x}-{:#x} its advice {name} failed",
                    v.start,
                    v.end
                ));
            }
        }
    }
    Ok(())
}
