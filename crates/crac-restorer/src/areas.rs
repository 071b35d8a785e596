//! The image's memory areas in order, each with the parts of the page runs
//! that fall in it ([`walk_areas`]): every pass over the memory (mapping,
//! registering with a userfaultfd, loading, protecting) walks the same
//! areas with the same pieces.

use core::fmt::Write as _;

use crac_image::status::Stage;
use crac_image::{
    PageRun, Reader, Tag, VmaRecord, PAGE_RUN_LEN, VMA_DELETED, VMA_FILE, VMA_SHARED, VMA_VDSO,
    VMA_VSYSCALL,
};

use crate::image::{meta_err, sections, Image};
use crate::sys::*;
use crate::{err, quiet, R, ZONE, ZONE_END};

/// Only areas at least this large are filled with `UFFDIO_COPY`: for a
/// small one, registering, copying and unregistering cost more than the
/// zeroing they save, and its pages can be read together with those of
/// its neighbours.
const COPY_AREA_MIN: u64 = 64 * 1024;

/// How the restorer treats one memory area of the image.
#[derive(Clone, Copy)]
pub(crate) struct Area {
    /// Anonymous memory (populated before it is read).
    pub(crate) anon: bool,
    /// Private anonymous memory (not a deleted file's) with pages: filled
    /// with `UFFDIO_COPY` when the userfaultfd is set up.
    pub(crate) uffd: bool,
    /// `uffd` and large enough to be filled with `UFFDIO_COPY` when
    /// everything is loaded before the resume.
    pub(crate) copy: bool,
    /// `uffd` and left to `crac restore` in a lazy restore (not a small
    /// area within the budget, see [`crac_image::eager_small_area`]).
    pub(crate) lazy: bool,
    /// The area's own protection.
    pub(crate) prot: u64,
    /// The protection it is mapped with while its pages are loaded
    /// (writable if it has any).
    pub(crate) map_prot: u64,
}

/// Walks the image's memory areas in order with their page runs: calls
/// `on_area` for every area the restorer maps (not the kernel's vDSO block)
/// and then `on_piece(addr, len, offset)` for each part of a page run in it
/// that is loaded. Fails on areas overlapping the zone and on page runs
/// outside every area, so every walk sees the same, valid layout. Only the
/// first walk (`stages`) sets the stage errors are reported in: the others
/// may run on two threads.
pub(crate) fn walk_areas(
    img: &Image,
    stages: bool,
    mut on_area: impl FnMut(&VmaRecord<'static>, &Area) -> R<()>,
    mut on_piece: impl FnMut(&Area, u64, u64, u64) -> R<()>,
) -> R<()> {
    let mut runs = Runs {
        r: img.runs.clone(),
        cur: None,
    };
    let mut small = 0u64;
    for s in sections(img.body) {
        let (tag, mut p) = s?;
        if tag != Tag::Vma {
            continue;
        }
        if stages {
            quiet(Stage::MapMemory);
        }
        let v = VmaRecord::decode(&mut p).map_err(meta_err)?;
        if v.flags & (VMA_VDSO | VMA_VSYSCALL) != 0 {
            // The kernel's own block; stored pages there (if any) are dropped.
            runs.take_below(v.start, v.end, |_, _, _| Ok(()))?;
            continue;
        }
        if v.start < ZONE_END && ZONE < v.end {
            return Err(fail!(
                0,
                v.start,
                "the area {:#x}-{:#x} overlaps the restorer zone",
                v.start,
                v.end
            ));
        }
        let file_backed = v.flags & VMA_FILE != 0 && v.flags & VMA_DELETED == 0;
        let shared = v.flags & VMA_SHARED != 0;
        // Pages of shared file mappings live in the file itself.
        let load = !(file_backed && shared) && matches!(runs.peek()?, Some((a, _, _)) if a < v.end);
        let prot = (v.prot & 7) as u64;
        let uffd = v.flags & VMA_FILE == 0 && !shared && load;
        let area = Area {
            anon: !file_backed,
            uffd,
            copy: uffd && v.len() >= COPY_AREA_MIN,
            lazy: uffd && !crac_image::eager_small_area(v.len(), &mut small),
            prot,
            map_prot: if load { prot | PROT_WRITE } else { prot },
        };
        on_area(&v, &area)?;
        if stages {
            quiet(Stage::LoadPages);
        }
        runs.take_below(v.start, v.end, |a, l, o| {
            if load {
                on_piece(&area, a, l, o)
            } else {
                Ok(())
            }
        })?;
    }
    if stages {
        quiet(Stage::LoadPages);
    }
    if let Some((a, _, _)) = runs.peek()? {
        return Err(fail!(
            0,
            a,
            "the page run at {a:#x} lies outside every memory area"
        ));
    }
    Ok(())
}

/// The remaining part of the current page run.
struct Runs {
    r: Reader<'static>,
    cur: Option<(u64, u64, u64)>,
}

impl Runs {
    fn peek(&mut self) -> R<Option<(u64, u64, u64)>> {
        if self.cur.is_none() && self.r.remaining() >= PAGE_RUN_LEN {
            let run = PageRun::decode(&mut self.r).map_err(meta_err)?;
            let end = run
                .addr
                .checked_add(run.len())
                .ok_or_else(|| fail!(0, run.addr, "a page run wraps around"))?;
            self.cur = Some((run.addr, end, run.offset));
        }
        Ok(self.cur)
    }

    /// Consumes the run pieces below `end`, calling `f(addr, len, offset)`.
    fn take_below(
        &mut self,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, u64, u64) -> R<()>,
    ) -> R<()> {
        while let Some((a, e, off)) = self.peek()? {
            if a >= end {
                break;
            }
            if a < start {
                return Err(fail!(
                    0,
                    a,
                    "the page run at {a:#x} lies outside every memory area"
                ));
            }
            let piece_end = e.min(end);
            f(a, piece_end - a, off)?;
            self.cur = if piece_end == e {
                None
            } else {
                Some((piece_end, e, off + (piece_end - a)))
            };
        }
        Ok(())
    }
}
