//! Writing an image directory atomically.
//!
//! The dump writes into a temporary directory next to the target and
//! renames it into place only once everything is on disk:
//!
//! 1. [`prepare_temp_dir`] creates `<parent>/.<name>.tmp-<random>` (mode 0700)
//!    holding `meta.crac` and `pages.crac`, opened `O_WRONLY | O_CREAT |
//!    O_EXCL` with mode 0600. The dump writes them through the descriptors
//!    with raw syscalls (no allocation while threads are stopped).
//! 2. [`TempImageDir::commit`] fsyncs both files and the temporary directory,
//!    renames it to the target and fsyncs the parent directory.
//!
//! If the target exists, it must be a directory that is empty or holds a
//! `meta.crac` (an older image); anything else is refused, so a mistyped
//! path never deletes a user's directory. The new image is swapped in with
//! `renameat2(RENAME_EXCHANGE)`, so the target always exists and readers
//! see either the old or the new image, never a mix; the old one, now under
//! the temporary name, is then removed. On a file system without
//! `RENAME_EXCHANGE` (`EINVAL`), or where the old directory cannot be
//! renamed (`EXDEV`: a lower directory of overlayfs), the old image is first
//! renamed to `<parent>/.<name>.old-<random>` (or, for `EXDEV`, its files
//! are moved into a new directory of that name) and removed after the new
//! one is renamed in; the target is then briefly absent (or empty), and a
//! crash there leaves the old image under the `.old-<random>` name, which
//! the next dump removes (see [`crate::leftover`]).
//!
//! A [`TempImageDir`] dropped without a successful commit removes the
//! temporary directory.
//!
//! Errors are [`io::Error`]s whose payload is an [`ImageDirError`] naming
//! the step and path (`err.get_ref()` and `downcast_ref` reach it); the
//! kind is the underlying system error's.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::{header_for, Image, SanityError};
use crate::{encode_pages_header, META_FILE, PAGES_FILE, PAGE_SIZE};

/// What went wrong while preparing or committing an image directory.
#[derive(Debug, thiserror::Error)]
pub enum ImageDirError {
    /// A file system operation failed.
    #[error("cannot {step} {}", path.display())]
    Io {
        /// What was being done ("create temporary image directory", ...).
        step: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The target exists and is not an image directory.
    #[error(
        "refusing to replace {}: it is not a directory that is empty or holds a {META_FILE}",
        path.display()
    )]
    NotAnImage {
        /// The target.
        path: PathBuf,
    },
    /// The target path has no last component (`/`, `..`).
    #[error("image path {} does not name a directory entry", path.display())]
    BadPath {
        /// The target.
        path: PathBuf,
    },
}

impl From<ImageDirError> for io::Error {
    fn from(e: ImageDirError) -> io::Error {
        let kind = match &e {
            ImageDirError::Io { source, .. } => source.kind(),
            ImageDirError::NotAnImage { .. } => io::ErrorKind::AlreadyExists,
            ImageDirError::BadPath { .. } => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

fn step_err(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.to_path_buf();
    move |source| ImageDirError::Io { step, path, source }.into()
}

/// A temporary image directory being written; see the module documentation.
#[derive(Debug)]
pub struct TempImageDir {
    path: PathBuf,
    final_path: PathBuf,
    /// Where the previous image goes when it cannot be swapped out.
    aside_path: PathBuf,
    /// The temporary directory, locked (`flock`) while the dump runs so
    /// that no other dump takes it for a leftover.
    dir: File,
    meta: Option<File>,
    pages: Option<File>,
    committed: bool,
}

/// `<parent>/.<name>.<kind>-<random>` for `final_dir`.
fn sibling(final_dir: &Path, kind: &str) -> io::Result<PathBuf> {
    let Some(name) = final_dir.file_name() else {
        return Err(ImageDirError::BadPath {
            path: final_dir.to_path_buf(),
        }
        .into());
    };
    Ok(final_dir.with_file_name(crate::leftover::temp_name(name, kind)?))
}

/// The directory holding `p`, `.` for a bare name.
fn parent_of(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Refuses a target that exists and is not an (empty or image) directory.
fn check_replaceable(final_dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(final_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(step_err("inspect", final_dir)(e)),
        Ok(m) if !m.is_dir() => Err(ImageDirError::NotAnImage {
            path: final_dir.to_path_buf(),
        }
        .into()),
        Ok(_) => {
            if final_dir.join(META_FILE).is_file() {
                return Ok(());
            }
            let mut entries = fs::read_dir(final_dir).map_err(step_err("list", final_dir))?;
            if entries.next().is_some() {
                return Err(ImageDirError::NotAnImage {
                    path: final_dir.to_path_buf(),
                }
                .into());
            }
            Ok(())
        }
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(step_err("sync directory", dir))
}

/// Creates the temporary directory for an image that will live at
/// `final_dir`, with `meta.crac` and `pages.crac` open for writing.
///
/// Fails early if `final_dir` exists and could not be replaced by
/// [`TempImageDir::commit`]. Temporary directories that killed dumps of the
/// same image left behind are removed first ([`crate::clean_leftovers`]).
/// The name has a random part and is created with `mkdir` (which fails if
/// it exists), so another user cannot take it first.
pub fn prepare_temp_dir(final_dir: &Path) -> io::Result<TempImageDir> {
    check_replaceable(final_dir)?;
    // Best effort: what cannot be removed is reported by `crac inspect`.
    let _ = crate::leftover::clean_leftovers(final_dir);
    let mut last = None;
    for _ in 0..16 {
        let path = sibling(final_dir, "tmp")?;
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = Some(step_err("create temporary image directory", &path)(e));
                continue;
            }
            Err(e) => return Err(step_err("create temporary image directory", &path)(e)),
        }
        let dir = File::from(
            rustix::fs::open(
                &path,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| step_err("open temporary image directory", &path)(e.into()))?,
        );
        // Another dump's clean-up holds the lock only while it removes a
        // leftover: if it took this directory before we locked it, the
        // directory is gone (no links) and we start again.
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| step_err("lock temporary image directory", &path)(e.into()))?;
        let st = rustix::fs::fstat(&dir)
            .map_err(|e| step_err("inspect temporary image directory", &path)(e.into()))?;
        if st.st_nlink == 0 {
            continue;
        }
        // From here on, Drop cleans up.
        let mut t = TempImageDir {
            aside_path: sibling(final_dir, "old")?,
            path,
            final_path: final_dir.to_path_buf(),
            dir,
            meta: None,
            pages: None,
            committed: false,
        };
        t.meta = Some(create_file(&t.path.join(META_FILE))?);
        t.pages = Some(create_file(&t.path.join(PAGES_FILE))?);
        return Ok(t);
    }
    Err(last.unwrap_or_else(|| {
        step_err("create temporary image directory", final_dir)(io::ErrorKind::AlreadyExists.into())
    }))
}

fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(step_err("create", path))
}

impl TempImageDir {
    /// The temporary directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The directory the image will have after [`TempImageDir::commit`].
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }
    /// Where [`TempImageDir::commit`] moves the previous image when it
    /// cannot swap it out.
    pub fn aside_path(&self) -> &Path {
        &self.aside_path
    }
    /// The temporary directory (locked while this value lives).
    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
    /// `meta.crac`, open for writing.
    pub fn meta_file(&self) -> &File {
        self.meta
            .as_ref()
            .unwrap_or_else(|| unreachable!("set by prepare_temp_dir"))
    }
    /// `pages.crac`, open for writing.
    pub fn pages_file(&self) -> &File {
        self.pages
            .as_ref()
            .unwrap_or_else(|| unreachable!("set by prepare_temp_dir"))
    }
    /// Descriptor of `meta.crac`, for raw writes.
    pub fn meta_fd(&self) -> BorrowedFd<'_> {
        self.meta_file().as_fd()
    }
    /// Descriptor of `pages.crac`, for raw writes.
    pub fn pages_fd(&self) -> BorrowedFd<'_> {
        self.pages_file().as_fd()
    }

    /// Makes the image durable and moves it to its final path (see the
    /// module documentation for the replace semantics).
    pub fn commit(mut self) -> io::Result<()> {
        for (name, f) in [
            (META_FILE, self.meta.take()),
            (PAGES_FILE, self.pages.take()),
        ] {
            if let Some(f) = f {
                f.sync_all()
                    .map_err(step_err("sync", &self.path.join(name)))?;
            }
        }
        fsync_dir(&self.path)?;
        let parent = parent_of(&self.final_path).to_path_buf();
        check_replaceable(&self.final_path)?;
        let swapped = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.path,
            rustix::fs::CWD,
            &self.final_path,
            rustix::fs::RenameFlags::EXCHANGE,
        );
        match swapped {
            Ok(()) => {
                // The previous image now has the temporary name.
                self.committed = true;
                fsync_dir(&parent)?;
                fs::remove_dir_all(&self.path)
                    .map_err(step_err("remove the previous image", &self.path))?;
                Ok(())
            }
            Err(rustix::io::Errno::NOENT) => {
                fs::rename(&self.path, &self.final_path)
                    .map_err(step_err("rename the new image to", &self.final_path))?;
                self.committed = true;
                fsync_dir(&parent)
            }
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::XDEV) => {
                self.commit_by_renaming_aside(&parent)
            }
            Err(e) => Err(step_err("swap the new image with", &self.final_path)(
                e.into(),
            )),
        }
    }

    /// [`TempImageDir::commit`] where `RENAME_EXCHANGE` is not supported.
    fn commit_by_renaming_aside(&mut self, parent: &Path) -> io::Result<()> {
        let old = match fs::symlink_metadata(&self.final_path) {
            Ok(_) => {
                let old = self.aside_path.clone();
                match fs::rename(&self.final_path, &old) {
                    Ok(()) => {}
                    // overlayfs cannot rename a lower directory at all:
                    // move its files out, then replace the empty directory.
                    Err(e) if e.raw_os_error() == Some(18) => {
                        DirBuilder::new()
                            .mode(0o700)
                            .create(&old)
                            .map_err(step_err("create", &old))?;
                        for f in [META_FILE, PAGES_FILE] {
                            match fs::rename(self.final_path.join(f), old.join(f)) {
                                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                                    return Err(step_err("move aside", &self.final_path.join(f))(e))
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(e) => {
                        return Err(step_err("move the previous image aside", &self.final_path)(
                            e,
                        ))
                    }
                }
                Some(old)
            }
            Err(_) => None,
        };
        if let Err(e) = fs::rename(&self.path, &self.final_path) {
            if let Some(old) = &old {
                // Put the previous image back; the temporary one is removed
                // by Drop.
                if fs::rename(old, &self.final_path).is_err() {
                    for f in [META_FILE, PAGES_FILE] {
                        let _ = fs::rename(old.join(f), self.final_path.join(f));
                    }
                    let _ = fs::remove_dir(old);
                }
            }
            return Err(step_err("rename the new image to", &self.final_path)(e));
        }
        self.committed = true;
        fsync_dir(parent)?;
        if let Some(old) = old {
            fs::remove_dir_all(&old).map_err(step_err("remove the previous image", &old))?;
        }
        Ok(())
    }
}

impl Drop for TempImageDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Why [`Image::write`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageWriteError {
    /// The records contradict each other or the page data.
    #[error("the image to write is inconsistent")]
    Inconsistent(#[source] SanityError),
    /// The page data is not a whole number of pages.
    #[error("page data of {len} bytes is not a multiple of the {PAGE_SIZE}-byte page size")]
    PartialPage {
        /// Length given.
        len: usize,
    },
    /// Creating, writing or committing the directory failed.
    #[error("cannot write image {}", dir.display())]
    Io {
        /// The target directory.
        dir: PathBuf,
        /// The failure, with its step.
        #[source]
        source: io::Error,
    },
}

impl Image {
    /// Writes the image to `dir` atomically, with `page_data` (the bytes
    /// after the header page of `pages.crac`, which [`Image::runs`] index).
    ///
    /// For tools and tests: the dump itself writes through
    /// [`prepare_temp_dir`] without allocating. The header is computed
    /// afresh with this build's version, and so is the piece table;
    /// [`Image::header`] and [`Image::pieces`] are ignored, as are
    /// [`Image::unknown_sections`].
    pub fn write(&self, dir: &Path, page_data: &[u8]) -> Result<(), ImageWriteError> {
        if !(page_data.len() as u64).is_multiple_of(PAGE_SIZE) {
            return Err(ImageWriteError::PartialPage {
                len: page_data.len(),
            });
        }
        let mut check = self.clone();
        check.set_pieces(page_data);
        let body = check.encode_body();
        let header = header_for(&body, page_data);
        check.header = header;
        check
            .sanity_check()
            .map_err(ImageWriteError::Inconsistent)?;
        let io = |source| ImageWriteError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let t = prepare_temp_dir(dir).map_err(io)?;
        let meta_path = t.path().join(META_FILE);
        let pages_path = t.path().join(PAGES_FILE);
        let mut meta = t.meta_file();
        meta.write_all(&header.encode())
            .and_then(|()| meta.write_all(&body))
            .map_err(step_err("write", &meta_path))
            .map_err(io)?;
        let mut pages = t.pages_file();
        pages
            .write_all(&encode_pages_header(page_data.len() as u64 / PAGE_SIZE))
            .and_then(|()| pages.write_all(page_data))
            .map_err(step_err("write", &pages_path))
            .map_err(io)?;
        t.commit().map_err(io)
    }
}
