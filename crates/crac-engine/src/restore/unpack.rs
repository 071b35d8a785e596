//! Compressed images (format 1.4) for the restorer.
//!
//! An LZ4 image ([`restorer_reads`]) goes to the restorer as it is:
//! `pages.crac` and the whole metadata, stored-pieces table included. The
//! restorer reads each piece's stored bytes, decodes the LZ4 block into its
//! 64 KiB scratch buffer, checks the piece's hash and only then copies the
//! bytes into place; when it fails on a piece, [`recheck`] checks that piece
//! here for the message every other reader gives.
//!
//! For Zstandard the restorer reads page data uncompressed. `crac restore`
//! decompresses the pieces the restorer loads (every piece in an eager
//! restore; in a lazy one those it loads itself, outside the areas the pager
//! serves) into a memfd laid out like an uncompressed page file, and hands
//! the restorer that memfd and the metadata without the stored-pieces table
//! (so it reads as uncompressed). The restorer checks each piece's hash as
//! usual.
//!
//! The lazy pager needs none of this: it decompresses and checks each piece
//! it serves itself, whatever the compression (see `pager`).
//!
//! Decompressing Zstandard in `crac restore` keeps the `no_std` restorer
//! free of an allocator-hungry decoder; the cost is a copy through the
//! memfd and, while the restore runs, memory for the decompressed pieces.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crac_image::{Header, Image, Tag, VerifiedImage, VerifyError, HEADER_LEN, PAGES_HEADER_LEN};

use super::memfd::memfd;
use super::RestoreError;

/// The uncompressed view for the restorer.
pub(super) struct Unpacked {
    /// Header page and uncompressed page data (pieces not loaded are holes).
    pub pages: File,
    /// The metadata as it would be without compression.
    pub meta: Vec<u8>,
}

/// Makes the uncompressed view of a compressed image for the restorer,
/// with every piece (`all`) or only those holding pages outside `lazy`
/// (page file ranges `(address, length, offset)` the pager serves).
pub(super) fn unpack(
    v: &VerifiedImage,
    dir: &Path,
    all: bool,
    lazy: &[(u64, u64, u64)],
) -> Result<Unpacked, RestoreError> {
    let img = &v.image;
    let setup = |source| RestoreError::Setup {
        what: "uncompressed page data memfd",
        source,
    };
    let logical = img.logical_pages_len();
    let pages = memfd(c"crac-pages", false).map_err(setup)?;
    pages.set_len(logical).map_err(setup)?;
    let head =
        crac_image::encode_pages_header((logical - PAGES_HEADER_LEN) / crac_image::PAGE_SIZE);
    pages.write_all_at(&head, 0).map_err(setup)?;
    let count = img.pieces.as_ref().map_or(0, Vec::len) as u64;
    let needed = if all {
        vec![true; count as usize]
    } else {
        restorer_pieces(img, lazy, count)
    };
    let path = dir.join(crac_image::PAGES_FILE);
    let wanted: Vec<u64> = (0..count).filter(|&i| needed[i as usize]).collect();
    // Two threads (decompression is most of an eager restore of a
    // compressed image); each takes every other batch of pieces.
    const BATCH: usize = 64;
    let work = |part: usize, parts: usize| -> Result<(), RestoreError> {
        let mut dec = crac_image::Decompressor::new();
        let mut buf = vec![0u8; crac_image::PIECE_LEN as usize];
        for batch in wanted.chunks(BATCH).skip(part).step_by(parts) {
            for &index in batch {
                let n = img.load_piece(&v.pages, &path, index, &mut dec, &mut buf)?;
                let start = PAGES_HEADER_LEN + index * crac_image::PIECE_LEN;
                pages.write_all_at(&buf[..n], start).map_err(setup)?;
            }
        }
        Ok(())
    };
    if wanted.len() > BATCH {
        std::thread::scope(|s| {
            let other = s.spawn(|| work(1, 2));
            let mine = work(0, 2);
            let theirs = other.join().unwrap_or_else(|_| {
                Err(setup(std::io::Error::other(
                    "the decompression thread panicked",
                )))
            });
            mine.and(theirs)
        })?;
    } else {
        work(0, 1)?;
    }
    Ok(Unpacked {
        pages,
        meta: uncompressed_meta(&v.meta, logical).map_err(setup)?,
    })
}

/// Which pieces hold a stored page outside the lazily served ranges.
fn restorer_pieces(img: &Image, lazy: &[(u64, u64, u64)], count: u64) -> Vec<bool> {
    let mut lazy: Vec<(u64, u64)> = lazy.iter().map(|&(_, len, off)| (off, off + len)).collect();
    lazy.sort_unstable();
    let mut needed = vec![false; count as usize];
    let page = crac_image::PAGE_SIZE;
    for r in &img.runs {
        for k in 0..r.pages {
            let off = r.offset + k * page;
            let i = lazy.partition_point(|&(_, e)| e <= off);
            if lazy.get(i).is_some_and(|&(s, _)| s <= off) {
                continue;
            }
            let index = (off - PAGES_HEADER_LEN) / crac_image::PIECE_LEN;
            if let Some(n) = needed.get_mut(index as usize) {
                *n = true;
            }
        }
    }
    needed
}

/// Whether the restorer reads the compressed image itself in an eager
/// restore: LZ4 (its block decoder needs neither std nor an allocator).
pub(super) fn restorer_reads(img: &Image) -> bool {
    img.stored
        .as_ref()
        .is_some_and(|st| st.compression == crac_image::STORED_LZ4)
}

/// The error for a restorer failure (`detail`, `object`) that names a
/// damaged stored piece (`stored piece N ...`, `object` = N): the piece
/// checked again here, for the message the image's own checks give (the
/// page file's path, file bytes, memory). `None` if the failure is another
/// or the piece checks out now.
pub(super) fn recheck(
    v: &VerifiedImage,
    dir: &Path,
    detail: &[u8],
    index: u64,
) -> Option<RestoreError> {
    if !detail.starts_with(b"stored piece ") {
        return None;
    }
    let count = v.image.pieces.as_ref().map_or(0, Vec::len) as u64;
    if index >= count {
        return None;
    }
    let path = dir.join(crac_image::PAGES_FILE);
    let mut dec = crac_image::Decompressor::new();
    let mut buf = vec![0u8; crac_image::PIECE_LEN as usize];
    v.image
        .load_piece(&v.pages, &path, index, &mut dec, &mut buf)
        .err()
        .map(RestoreError::Pages)
}

/// `meta` (header and body as checked) without the stored-pieces section,
/// its header recording the uncompressed page file length.
fn uncompressed_meta(meta: &[u8], logical: u64) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::other("the checked metadata does not parse");
    let mut h = Header::decode(meta.get(..HEADER_LEN).ok_or_else(bad)?).map_err(|_| bad())?;
    let body = &meta[HEADER_LEN..];
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0usize;
    while at < body.len() {
        let word = |o: usize| -> Option<u32> {
            Some(u32::from_le_bytes(body.get(o..o + 4)?.try_into().ok()?))
        };
        let (tag, len) = (word(at).ok_or_else(bad)?, word(at + 4).ok_or_else(bad)?);
        let end = (at + 8 + len as usize).next_multiple_of(8).min(body.len());
        if tag != Tag::Stored as u32 {
            out.extend_from_slice(&body[at..end]);
        }
        at = end;
    }
    h.body_len = out.len() as u64;
    h.body_crc = crc32fast::hash(&out);
    h.pages_len = logical;
    let mut m = h.encode().to_vec();
    m.extend_from_slice(&out);
    Ok(m)
}

impl From<VerifyError> for RestoreError {
    fn from(source: VerifyError) -> RestoreError {
        RestoreError::Pages(source)
    }
}
