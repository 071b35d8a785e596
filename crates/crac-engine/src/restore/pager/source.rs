//! Where the pager's bytes come from: the pieces of the page file, each
//! read (decompressed) and checked in a buffer of the pager's own.

use std::cell::{Cell, Ref, RefCell};
use std::path::PathBuf;
use std::sync::Arc;

/// The page data as the pager copies it in: the pieces that hold a copy's
/// bytes are read from `pages.crac` (and decompressed, for a compressed
/// image) into a buffer of the pager's own, each checked against the
/// image's piece table, and the copy goes into the process from that
/// buffer. What the process gets is what was checked, whatever happens to
/// the file meanwhile: a file changed or cut short is a mismatch (the
/// process is killed), never a fault here.
pub(super) struct Source {
    pub image: Arc<crac_image::VerifiedImage>,
    /// Checked page data of the pieces `loaded` holds, from the first one's
    /// file offset on.
    buf: RefCell<Vec<u8>>,
    /// The pieces in `buf` (`first..end`), if any.
    loaded: Cell<Option<(u64, u64)>>,
    /// For a compressed image: its decoder's state.
    dec: Option<RefCell<crac_image::Decompressor>>,
}

/// Why a copy's bytes cannot be had.
pub(super) enum Unusable {
    /// A piece does not match its hash.
    Damaged(Damage),
    /// The page file holds no such bytes (an image without a piece table).
    Missing,
}

/// A piece whose hash does not match.
pub(super) struct Damage {
    pub index: u64,
    pub start: u64,
    pub end: u64,
    pub stored: u64,
    pub computed: u64,
}

impl Source {
    pub(super) fn new(image: Arc<crac_image::VerifiedImage>) -> Source {
        let dec = image
            .image
            .stored
            .is_some()
            .then(|| RefCell::new(crac_image::Decompressor::new()));
        Source {
            image,
            buf: RefCell::new(Vec::new()),
            loaded: Cell::new(None),
            dec,
        }
    }

    pub(super) fn path(&self) -> PathBuf {
        self.image.dir.path().join(crac_image::PAGES_FILE)
    }

    /// The checked bytes `[off, off + len)` of the (uncompressed) page file.
    /// Images without a piece table (format 1.1) were checked whole by the
    /// preflight; their bytes are read as they are.
    pub(super) fn bytes(&self, off: u64, len: u64) -> Result<Ref<'_, [u8]>, Unusable> {
        let pages_len = self.image.image.logical_pages_len();
        // The preflight checked every run against the page file; a range
        // outside it is refused here too, not sliced.
        let end = off
            .checked_add(len)
            .filter(|&e| off >= crac_image::PAGES_HEADER_LEN && e <= pages_len);
        let Some(end) = end else {
            return Err(Unusable::Missing);
        };
        let Some(table) = &self.image.image.pieces else {
            self.loaded.set(None);
            let mut buf = self.buf.borrow_mut();
            buf.resize(len as usize, 0);
            if crac_image::model::read_full(&self.image.pages, &mut buf, off).unwrap_or(0)
                < buf.len()
            {
                return Err(Unusable::Missing);
            }
            drop(buf);
            return Ok(Ref::map(self.buf.borrow(), |b| &b[..]));
        };
        let want = crac_image::pieces_of(off, len);
        let have = match self.loaded.get() {
            Some((first, last)) if first <= want.start && want.end <= last => (first, last),
            _ => {
                self.loaded.set(None);
                self.load(table, want.start, want.end, pages_len)
                    .map_err(Unusable::Damaged)?;
                self.loaded.set(Some((want.start, want.end)));
                (want.start, want.end)
            }
        };
        let base = crac_image::PAGES_HEADER_LEN + have.0 * crac_image::PIECE_LEN;
        let (from, to) = ((off - base) as usize, (end - base) as usize);
        Ok(Ref::map(self.buf.borrow(), |b| &b[from..to]))
    }

    /// Reads pieces `first..last` into the buffer, checking each.
    fn load(&self, table: &[u64], first: u64, last: u64, pages_len: u64) -> Result<(), Damage> {
        let mut buf = self.buf.borrow_mut();
        buf.resize(((last - first) * crac_image::PIECE_LEN) as usize, 0);
        let base = crac_image::PAGES_HEADER_LEN + first * crac_image::PIECE_LEN;
        for index in first..last {
            let stored = table.get(index as usize).copied().unwrap_or(0);
            // Past the table (the preflight's checks rule that out): never
            // load what no hash covers.
            let Some((start, end)) = crac_image::piece_range(index, pages_len)
                .filter(|_| (index as usize) < table.len())
            else {
                return Err(Damage {
                    index,
                    start: base,
                    end: base,
                    stored,
                    computed: 0,
                });
            };
            let out = &mut buf[(start - base) as usize..(end - base) as usize];
            let damage = |computed| Damage {
                index,
                start,
                end,
                stored,
                computed,
            };
            if let Some(dec) = &self.dec {
                let img = &self.image;
                if let Err(e) = img.image.load_piece(
                    &img.pages,
                    &self.path(),
                    index,
                    &mut dec.borrow_mut(),
                    out,
                ) {
                    tracing::error!("{e}");
                    return Err(damage(0));
                }
                continue;
            }
            // A piece cut short hashes what it has: a mismatch.
            let got = crac_image::model::read_full(&self.image.pages, out, start).unwrap_or(0);
            let computed = crac_image::piece_hash(&out[..got]);
            if got < out.len() || computed != stored {
                return Err(damage(computed));
            }
        }
        Ok(())
    }
}

/// The end of the piece that holds page file offset `off`: copies follow
/// pieces, so each piece is read and checked once as memory loads in order.
pub(super) fn piece_end(off: u64) -> u64 {
    let data = off.saturating_sub(crac_image::PAGES_HEADER_LEN);
    crac_image::PAGES_HEADER_LEN + (data / crac_image::PIECE_LEN + 1) * crac_image::PIECE_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::testimg;

    /// The pager copies from the buffer it checked: a page file changed
    /// after the check does not reach the process, and a fresh read of it
    /// is a damaged piece.
    #[test]
    fn copies_come_from_what_was_checked() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let (pid, tid) = testimg::free_ids();
        let tweaks = testimg::Tweaks {
            big_pages: 40,
            ..Default::default()
        };
        testimg::write(d.path(), pid, tid, &tweaks);
        let image = Arc::new(crac_image::Image::read_verified(d.path()).unwrap());
        let (off, len) = (crac_image::PAGES_HEADER_LEN + 0x1000, 0x3000);
        let src = Source::new(image.clone());
        let checked = src.bytes(off, len).ok().unwrap().to_vec();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(d.path().join(crac_image::PAGES_FILE))
            .unwrap();
        let changed: Vec<u8> = checked.iter().map(|b| !b).collect();
        file.write_all_at(&changed, off).unwrap();
        assert_eq!(&*src.bytes(off, len).ok().unwrap(), &checked[..]);
        assert!(matches!(
            Source::new(image.clone()).bytes(off, len),
            Err(Unusable::Damaged(Damage { index: 0, .. }))
        ));
        // Past the page data: nothing to copy.
        let pages_len = image.image.logical_pages_len();
        assert!(matches!(
            Source::new(image).bytes(pages_len - 0x1000, 0x2000),
            Err(Unusable::Missing)
        ));
    }
}
