//! Loading the page data into the mapped areas: one share of the page runs
//! per loading thread ([`load_share`]), read with `pread` or filled through
//! the userfaultfd ([`load_pages`]), every piece of the page file checked
//! against the piece table before its bytes are used ([`check_pieces`]),
//! and the bytes loaded counted for progress records ([`count_loaded`]).

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU64, Ordering};

use crac_sys::raw::{uffd, Errno};

use crac_image::status::{Status, BYTE_PROGRESS_STEP};
use crac_image::{piece_hash, piece_range, pieces_of, PIECE_LEN, STORED_LZ4, STORED_RAW};

use crate::areas::{walk_areas, Area};
use crate::image::Image;
use crate::sys::*;
use crate::userfault::{copy_pages, LAZY_FD, UFFD_FD, VIEW};
use crate::{err, report, META_MAX, PAGES_FD, R};

/// Page runs at least this long are populated with `MADV_POPULATE_WRITE`
/// before they are read (one call instead of a fault per page).
const POPULATE_MIN: u64 = 64 * 1024;
/// Page runs are populated and read in pieces of this size, so the copy
/// finds the freshly zeroed pages still in the cache.
const LOAD_CHUNK: u64 = 1 << 20;

/// Total bytes of page data when byte progress is reported, else 0.
pub(crate) static PROGRESS_TOTAL: AtomicU64 = AtomicU64::new(0);
/// Bytes of page data loaded so far (both loading threads add to it).
static LOADED: AtomicU64 = AtomicU64::new(0);

/// Counts `n` more loaded bytes; reports a byte progress record whenever the
/// count passes a multiple of [`BYTE_PROGRESS_STEP`] (from whichever thread
/// passes it: each record is one atomic pipe write).
pub(crate) fn count_loaded(n: u64) {
    let total = PROGRESS_TOTAL.load(Ordering::Relaxed);
    if total == 0 {
        return;
    }
    let before = LOADED.fetch_add(n, Ordering::Relaxed);
    let after = before + n;
    if before / BYTE_PROGRESS_STEP != after / BYTE_PROGRESS_STEP && after < total {
        report(&Status::bytes(after, total));
    }
}

/// Loads the bytes `[lo, hi)` of the image's loaded page data, counted in
/// the order the page runs come in.
pub(crate) fn load_share(img: &Image, slot: usize, lo: u64, hi: u64) -> R<()> {
    let mut pos = 0u64;
    let lazy = LAZY_FD.load(Ordering::Relaxed) >= 0;
    let copying = UFFD_FD.load(Ordering::Relaxed) >= 0;
    // Small pieces read with plain `pread` that follow each other in
    // memory and in the page file are read together (areas being loaded
    // are all mapped writable): with many small areas, one read per area is
    // most of the work. Larger pieces go alone, populated first as before.
    let mut pending: Option<(u64, u64, u64, Area)> = None;
    walk_areas(
        img,
        false,
        |_, _| Ok(()),
        |area, a, l, o| {
            if lazy && area.lazy {
                // Loaded by `crac restore` through the userfaultfd.
                return Ok(());
            }
            let (s, e) = (pos.max(lo), (pos + l).min(hi));
            let d = s.wrapping_sub(pos);
            pos += l;
            if s >= e {
                return Ok(());
            }
            let (a, l, o) = (a + d, e - s, o + d);
            if copying && area.copy {
                return load_pages(img, slot, a, l, o, area);
            }
            let small = l < POPULATE_MIN;
            if let Some((pa, pl, po, parea)) = pending.take() {
                if small && pa + pl == a && po + pl == o {
                    pending = Some((pa, pl + l, po, parea));
                    return Ok(());
                }
                load_pages(img, slot, pa, pl, po, &parea)?;
            }
            if !small {
                return load_pages(img, slot, a, l, o, area);
            }
            // Not populated, like each small piece on its own: populating
            // many small areas costs more than faulting their pages.
            pending = Some((
                a,
                l,
                o,
                Area {
                    anon: false,
                    ..*area
                },
            ));
            Ok(())
        },
    )?;
    match pending {
        Some((a, l, o, area)) => load_pages(img, slot, a, l, o, &area),
        None => Ok(()),
    }
}

/// Loads `[addr, addr + len)` from the page file at `off`, in pieces of
/// [`LOAD_CHUNK`]. Every piece of the page file a chunk takes bytes from is
/// checked against the piece table first ([`check_pieces`]). In an area
/// registered with the userfaultfd each chunk is filled with `UFFDIO_COPY`
/// from the page file view; otherwise (or after any userfaultfd error, for
/// the rest of the range) each chunk of an anonymous area is populated
/// first (one call instead of a fault per page) and read while the zeroed
/// lines are still in the cache.
fn load_pages(img: &Image, slot: usize, addr: u64, len: u64, off: u64, area: &Area) -> R<()> {
    if img.stored.is_some() {
        return load_stored(img, slot, addr, len, off, area);
    }
    let fd = UFFD_FD.load(Ordering::Relaxed);
    let view = VIEW.load(Ordering::Relaxed);
    let mut copying = area.copy && fd >= 0 && view != 0;
    let end = addr + len;
    let (mut a, mut left, mut o) = (addr, len, off);
    while left > 0 {
        let chunk = left.min(LOAD_CHUNK);
        let piece_end = a + chunk;
        check_pieces(img, slot, a, o, chunk)?;
        if copying {
            let (done, ok) = copy_pages(fd, a, view + o, chunk);
            a += done;
            o += done;
            left -= done;
            if !ok {
                copying = false;
                // A missing page of a registered range would wait for a
                // handler forever: the read path needs the range plain.
                uffd::unregister(fd, a, end - a).map_err(|Errno(e)| {
                    fail!(
                        e,
                        a,
                        "unregistering {a:#x}-{end:#x} from the userfaultfd failed"
                    )
                })?;
            }
        }
        if a < piece_end && area.anon && piece_end - a >= POPULATE_MIN {
            // Failure (old kernel) only costs speed: the read faults instead.
            let _ = madvise(a, piece_end - a, MADV_POPULATE_WRITE);
        }
        while a < piece_end {
            let want = piece_end - a;
            // SAFETY: `[a, a + want)` lies in an area mapped writable
            // before and not registered with the userfaultfd; no Rust
            // reference points into image memory.
            match unsafe { pread_raw(PAGES_FD, a, want, o) } {
                Ok(0) => return Err(fail!(0, a, "the page file ends before offset {o:#x}")),
                Ok(n) => {
                    a += n as u64;
                    o += n as u64;
                    left -= n as u64;
                }
                Err(4) => {}
                Err(e) => {
                    return Err(fail!(
                        e,
                        a,
                        "reading {want:#x} bytes of pages at offset {o:#x} failed"
                    ))
                }
            }
        }
        count_loaded(chunk);
    }
    Ok(())
}

// Checking the pieces of the page data.

/// Most pieces an image can have: a piece table fills the metadata at most.
const MAX_PIECES: usize = (META_MAX / 8) as usize;
/// One bit per piece: checked already (by either loading thread).
static CHECKED: [AtomicU64; MAX_PIECES / 64] = [const { AtomicU64::new(0) }; MAX_PIECES / 64];

/// A piece's bytes, read for its check (or decompressed into it): one
/// buffer per loading thread.
#[repr(C, align(4096))]
struct Scratch([u8; PIECE_LEN as usize]);
static mut SCRATCH: [Scratch; 2] = [
    Scratch([0; PIECE_LEN as usize]),
    Scratch([0; PIECE_LEN as usize]),
];
/// A compressed piece's stored bytes as read: one buffer per loading thread.
static mut INPUT: [Scratch; 2] = [
    Scratch([0; PIECE_LEN as usize]),
    Scratch([0; PIECE_LEN as usize]),
];
/// Which piece each [`SCRATCH`] slot holds decompressed and checked
/// (`u64::MAX`: none), so a piece several page runs share is decompressed
/// once while they follow each other.
static HELD: [AtomicU64; 2] = [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)];
/// [`SCRATCH`] slots: the main thread's and the helper's.
pub(crate) const MAIN_SLOT: usize = 0;
pub(crate) const HELPER_SLOT: usize = 1;

/// Checks every piece of the page file that holds a byte of
/// `[off, off + len)` (to be loaded at `addr`) against the piece table,
/// each piece once: read with `pread` into the thread's scratch buffer
/// (`slot`), hashed whole. A mismatch fails the restore before the program
/// runs.
fn check_pieces(img: &Image, slot: usize, addr: u64, off: u64, len: u64) -> R<()> {
    let Some(table) = img.pieces else {
        return Ok(());
    };
    for index in pieces_of(off, len) {
        let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
        let checked = CHECKED.get(word);
        if checked.is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0) {
            continue;
        }
        let Some((start, end)) = piece_range(index, img.pages_len) else {
            return Err(fail!(
                0,
                off,
                "the page file has no piece {index} (offset {off:#x})"
            ));
        };
        // SAFETY: each loading thread uses only its own slot, and no other
        // reference to the slot lives past this function.
        let buf = unsafe { &mut (*core::ptr::addr_of_mut!(SCRATCH))[slot].0 };
        let want = (end - start) as usize;
        let got = pread_full(PAGES_FD, &mut buf[..want], start).map_err(|e| {
            fail!(
                e,
                start,
                "reading piece {index} of the page file at {start:#x} failed"
            )
        })?;
        let computed = piece_hash(&buf[..got]);
        let stored = table.get(index).unwrap_or(0);
        if computed != stored {
            return Err(fail!(
                0,
                start,
                "page file piece {index} (file bytes {start:#x}-{end:#x}) is damaged: hash {computed:#x}, \
                 expected {stored:#x}; not loaded into {addr:#x}-{:#x}",
                addr + len
            )
            .with_aux(end));
        }
        if let Some(w) = checked {
            w.fetch_or(bit, Ordering::Relaxed);
        }
    }
    Ok(())
}

// Loading a compressed image: each piece decompressed and checked first.

/// Loads `[addr, addr + len)` from the logical page file at `off` in an
/// LZ4-compressed image: every piece of the page file holding a byte of it
/// is read from where the stored-pieces table puts it, decompressed into
/// the thread's scratch buffer ([`unpack_piece`]) and checked against the
/// piece table; only then are its bytes copied into place, with
/// `UFFDIO_COPY` in an area registered with the userfaultfd (falling back
/// to a plain copy after any userfaultfd error), else with a plain copy.
fn load_stored(img: &Image, slot: usize, addr: u64, len: u64, off: u64, area: &Area) -> R<()> {
    let fd = UFFD_FD.load(Ordering::Relaxed);
    let mut copying = area.copy && fd >= 0;
    let end = addr + len;
    let (mut a, mut o) = (addr, off);
    while a < end {
        let Some(index) = o
            .checked_sub(crac_image::PAGES_HEADER_LEN)
            .map(|d| d / PIECE_LEN)
        else {
            return Err(fail!(
                0,
                o,
                "a page run starts in the page file header ({o:#x})"
            ));
        };
        let start = crac_image::PAGES_HEADER_LEN + index * PIECE_LEN;
        let got = unpack_piece(img, slot, index, addr, len)?;
        let inner = o - start;
        if inner >= got {
            return Err(fail!(0, o, "the page file ends before offset {o:#x}"));
        }
        let n = (got - inner).min(end - a);
        // SAFETY: reading the thread's own slot, filled just above.
        let src = unsafe { (*core::ptr::addr_of!(SCRATCH))[slot].0.as_ptr() } as u64 + inner;
        let mut done = 0;
        if copying {
            let (d, ok) = copy_pages(fd, a, src, n);
            done = d;
            if !ok {
                copying = false;
                let at = a + d;
                uffd::unregister(fd, at, end - at).map_err(|Errno(e)| {
                    fail!(
                        e,
                        at,
                        "unregistering {at:#x}-{end:#x} from the userfaultfd failed"
                    )
                })?;
            }
        }
        if done < n && area.uffd {
            // No Rust reference points into image memory; the source is the
            // thread's own scratch buffer, outside every image area.
            // SAFETY: `[a + done, a + n)` is private anonymous memory mapped
            // writable and not registered with the userfaultfd: no fault.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (src + done) as *const u8,
                    (a + done) as *mut u8,
                    (n - done) as usize,
                )
            };
            done = n;
        }
        // Other areas through the kernel: a file-backed page past its
        // file's end fails with EFAULT, as the read path's `pread` does,
        // instead of killing the restorer with SIGBUS.
        while done < n {
            // No Rust reference points into image memory; the source is the
            // thread's own scratch buffer, outside every image area.
            // SAFETY: `[a + done, a + n)` lies in an area mapped writable
            // and not registered with the userfaultfd (any more).
            match unsafe { copy_in(a + done, src + done, n - done) } {
                Ok(0) => {
                    return Err(fail!(
                        0,
                        a + done,
                        "copying pages to {:#x} stopped",
                        a + done
                    ))
                }
                Ok(k) => done += k as u64,
                Err(4) => {}
                Err(e) => {
                    return Err(fail!(
                        e,
                        a + done,
                        "copying {:#x} bytes of pages to {:#x} failed",
                        n - done,
                        a + done
                    ))
                }
            }
        }
        a += n;
        o += n;
        count_loaded(n);
    }
    Ok(())
}

/// Makes piece `index` of a compressed image (its bytes going to
/// `[addr, addr + len)`, for messages) the content of the thread's scratch
/// buffer: its stored bytes read into the thread's input buffer, an LZ4
/// piece decompressed (to exactly its logical length, never past the
/// buffer), and the result checked against the piece table before anything
/// uses it. Returns its logical length.
fn unpack_piece(img: &Image, slot: usize, index: u64, addr: u64, len: u64) -> R<u64> {
    let (Some(stored), Some(table)) = (img.stored, img.pieces) else {
        return Err(fail!(0, index, "the image has no stored-pieces table"));
    };
    let Some((start, end)) = piece_range(index, img.pages_len) else {
        return Err(fail!(0, index, "the page file has no piece {index}"));
    };
    let want = end - start;
    if HELD[slot].load(Ordering::Relaxed) == index {
        return Ok(want);
    }
    HELD[slot].store(u64::MAX, Ordering::Relaxed);
    let Some(p) = stored.get(index) else {
        return Err(fail!(0, index, "the page file has no piece {index}"));
    };
    // Checked when the image was loaded; checked again, as the buffers
    // hold at most one piece.
    let n = p.len as usize;
    if n == 0 || n as u64 > PIECE_LEN || want > PIECE_LEN {
        return Err(fail!(
            0,
            index,
            "stored piece {index} has a stored length of {n} bytes"
        ));
    }
    let (from, to) = (p.offset, p.offset + p.len as u64);
    let damaged = |what: &str| {
        fail!(
            0,
            index,
            "stored piece {index} (stored {} at file bytes {from:#x}-{to:#x}) {what}; not loaded into {addr:#x}-{:#x}",
            crac_image::method_name(p.method),
            addr + len
        )
        .with_aux(end)
    };
    // SAFETY: each loading thread uses only its own slots, and no other
    // reference to them lives past this function.
    let (input, out) = unsafe {
        (
            &mut (*core::ptr::addr_of_mut!(INPUT))[slot].0,
            &mut (*core::ptr::addr_of_mut!(SCRATCH))[slot].0,
        )
    };
    let raw = p.method == STORED_RAW;
    // A raw piece goes straight into the scratch buffer.
    let dst: &mut [u8] = if raw { &mut out[..n] } else { &mut input[..n] };
    let got = pread_full(PAGES_FD, dst, from).map_err(|e| {
        fail!(
            e,
            index,
            "reading stored piece {index} of the page file at {from:#x} failed"
        )
    })?;
    if got < n {
        return Err(damaged("is cut short"));
    }
    let want = want as usize;
    if raw {
        if n != want {
            return Err(damaged("is not stored whole"));
        }
    } else if p.method == STORED_LZ4 {
        match lz4_flex::block::decompress_into(&input[..n], &mut out[..want]) {
            Ok(k) if k == want => {}
            _ => return Err(damaged("does not decompress to its bytes")),
        }
    } else {
        return Err(damaged("has a storage method the restorer cannot read"));
    }
    let computed = piece_hash(&out[..want]);
    let expected = table.get(index).unwrap_or(0);
    if computed != expected {
        return Err(damaged("hashes wrong decompressed"));
    }
    HELD[slot].store(index, Ordering::Relaxed);
    Ok(want as u64)
}
