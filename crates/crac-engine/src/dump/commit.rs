//! The temporary image directory and its commit.
//!
//! Created (random name, modes, lock, clean-up of killed dumps' leftovers,
//! refusal to replace a non-image directory) by crac-image's
//! [`crac_image::prepare_temp_dir`]; committed here without allocating,
//! because the other threads may still be stopped. The commit follows
//! docs/image-format.md ("Writing"): swap with `RENAME_EXCHANGE`; where the
//! file system cannot (`EINVAL`; `EXDEV` from overlayfs, whose lower
//! directories cannot be renamed), move the old image aside to a name of
//! its own, rename the new one in, remove the old one.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crac_sys::{commit as csys, sys, Errno};

const AT_REMOVEDIR: u32 = 0x200;
const RENAME_EXCHANGE: u32 = 2;
const EXDEV: Errno = Errno(18);
const ENOSYS: Errno = Errno(38);

/// Where a debug build kills itself to test recovery (`CRAC_FAULT`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The image is complete at the temporary name, not committed.
    BeforeCommit,
    /// The new image is in place; the old one still has the temporary name.
    AfterSwap,
}

fn fault_from_env() -> Fault {
    if !cfg!(debug_assertions) {
        return Fault::None;
    }
    match std::env::var("CRAC_FAULT").as_deref() {
        Ok("kill-before-commit") => Fault::BeforeCommit,
        Ok("kill-after-swap") => Fault::AfterSwap,
        _ => Fault::None,
    }
}

/// NUL-terminated paths, computed before the threads stop.
struct Paths {
    tmp: Vec<u8>,
    tmp_meta: Vec<u8>,
    tmp_pages: Vec<u8>,
    fin: Vec<u8>,
    fin_meta: Vec<u8>,
    fin_pages: Vec<u8>,
    aside: Vec<u8>,
    aside_meta: Vec<u8>,
    aside_pages: Vec<u8>,
}

fn cpath(p: &Path) -> Vec<u8> {
    let mut v = p.as_os_str().as_bytes().to_vec();
    v.push(0);
    v
}

/// Paths of `dir` and of its two files.
fn triple(dir: &Path) -> [Vec<u8>; 3] {
    [
        cpath(dir),
        cpath(&dir.join(crac_image::META_FILE)),
        cpath(&dir.join(crac_image::PAGES_FILE)),
    ]
}

/// The temporary image directory being written by the dump.
pub(super) struct TempDir {
    /// Owns (and locks) the temporary directory and its two files until
    /// committed.
    inner: Option<crac_image::TempImageDir>,
    /// The temporary directory and its parent, for fsync.
    fds: Option<[OwnedFd; 2]>,
    pub(super) meta_fd: i32,
    pub(super) pages_fd: i32,
    paths: Paths,
    fault: Fault,
}

impl TempDir {
    pub(super) fn create(final_dir: &Path) -> std::io::Result<TempDir> {
        let final_dir = std::path::absolute(final_dir)?;
        let inner = crac_image::prepare_temp_dir(&final_dir)?;
        let tmp = inner.path().to_path_buf();
        let parent = final_dir.parent().unwrap_or(Path::new("/"));
        let (meta_fd, pages_fd) = (inner.meta_fd().as_raw_fd(), inner.pages_fd().as_raw_fd());
        // Page data bypasses the page cache where the file system allows:
        // copying gigabytes into fresh page-cache pages is the slowest part of
        // a dump, and the writes are page-aligned anyway.
        const O_DIRECT: usize = 0o40000;
        if let Ok(fl) = sys::fcntl(pages_fd, 3 /* F_GETFL */, 0) {
            let _ = sys::fcntl(pages_fd, 4 /* F_SETFL */, fl | O_DIRECT);
        }
        let dir = inner.dir_fd().try_clone_to_owned()?;
        let parent_fd = OwnedFd::from(std::fs::File::open(parent)?);
        let [tmp, tmp_meta, tmp_pages] = triple(&tmp);
        let [fin, fin_meta, fin_pages] = triple(&final_dir);
        let [aside, aside_meta, aside_pages] = triple(inner.aside_path());
        Ok(TempDir {
            paths: Paths {
                tmp,
                tmp_meta,
                tmp_pages,
                fin,
                fin_meta,
                fin_pages,
                aside,
                aside_meta,
                aside_pages,
            },
            inner: Some(inner),
            meta_fd,
            pages_fd,
            fds: Some([dir, parent_fd]),
            fault: fault_from_env(),
        })
    }

    fn fault_at(&self, at: Fault) {
        if self.fault == at {
            let _ = sys::kill(sys::getpid() as i32, 9);
        }
    }

    /// Syncs and renames into place. Allocation-free (threads may be stopped).
    pub(super) fn commit(&mut self) -> Result<(), (&'static str, Errno)> {
        let [dir, parent] = self.fds.as_ref().ok_or(("sync the image", Errno(9)))?;
        sys::fsync(self.pages_fd).map_err(|e| ("sync the page file", e))?;
        sys::fsync(self.meta_fd).map_err(|e| ("sync the metadata file", e))?;
        sys::fsync(dir.as_raw_fd()).map_err(|e| ("sync the image directory", e))?;
        self.fault_at(Fault::BeforeCommit);
        let p = &self.paths;
        match sys::rename(&p.tmp, &p.fin, RENAME_EXCHANGE) {
            Ok(()) => {
                self.fault_at(Fault::AfterSwap);
                // The old image now sits at the temporary name: remove it.
                remove_image(&p.tmp, &p.tmp_meta, &p.tmp_pages);
            }
            Err(Errno::ENOENT) => {
                sys::rename(&p.tmp, &p.fin, 0).map_err(|e| ("rename the image into place", e))?
            }
            Err(Errno::EINVAL | EXDEV | ENOSYS) => self.commit_aside()?,
            Err(e) => return Err(("rename the image into place", e)),
        }
        sys::fsync(parent.as_raw_fd()).map_err(|e| ("sync the parent directory", e))?;
        // Nothing is left at the temporary name, so the clean-up on drop
        // finds nothing to remove.
        Ok(())
    }

    /// The commit where the old image cannot be swapped out: it is moved
    /// to the aside name (the directory, or its files where the directory
    /// cannot be renamed), the new one is renamed in, the old one removed.
    /// A crash in between leaves the old image at the aside name, which
    /// the next dump removes.
    fn commit_aside(&self) -> Result<(), (&'static str, Errno)> {
        let p = &self.paths;
        let moved_dir = match sys::rename(&p.fin, &p.aside, 0) {
            Ok(()) => true,
            Err(Errno::ENOENT) => {
                return sys::rename(&p.tmp, &p.fin, 0)
                    .map_err(|e| ("rename the image into place", e))
            }
            Err(EXDEV) => {
                csys::mkdir(&p.aside, 0o700)
                    .map_err(|e| ("create a directory for the previous image", e))?;
                // meta.crac first: from then on the target holds no image
                // rather than half of the old one.
                for (from, to) in [(&p.fin_meta, &p.aside_meta), (&p.fin_pages, &p.aside_pages)] {
                    match sys::rename(from, to, 0) {
                        Ok(()) | Err(Errno::ENOENT) => {}
                        Err(e) => {
                            self.undo_aside(false);
                            return Err(("move the previous image aside", e));
                        }
                    }
                }
                false
            }
            Err(e) => return Err(("move the previous image aside", e)),
        };
        if let Err(e) = sys::rename(&p.tmp, &p.fin, 0) {
            self.undo_aside(moved_dir);
            return Err(("rename the image into place", e));
        }
        remove_image(&p.aside, &p.aside_meta, &p.aside_pages);
        Ok(())
    }

    /// Puts the previous image back after a failed [`Self::commit_aside`].
    fn undo_aside(&self, moved_dir: bool) {
        let p = &self.paths;
        if moved_dir {
            let _ = sys::rename(&p.aside, &p.fin, 0);
            return;
        }
        let _ = sys::rename(&p.aside_meta, &p.fin_meta, 0);
        let _ = sys::rename(&p.aside_pages, &p.fin_pages, 0);
        let _ = sys::unlink(&p.aside, AT_REMOVEDIR);
    }

    /// In a restored process: the descriptors are not open here and the
    /// temporary directory is long gone; leak them instead of closing
    /// whatever now has those numbers.
    pub(super) fn forget(&mut self) {
        std::mem::forget(self.fds.take());
        std::mem::forget(self.inner.take());
    }
}

/// Removes an old image directory holding `meta.crac` and `pages.crac`.
fn remove_image(dir: &[u8], meta: &[u8], pages: &[u8]) {
    let _ = sys::unlink(meta, 0);
    let _ = sys::unlink(pages, 0);
    let _ = sys::unlink(dir, AT_REMOVEDIR);
}
