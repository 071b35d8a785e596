//! The one strict, bounded reader for image directories.
//!
//! `crac restore` runs as root and an image is written by whoever made it,
//! so every image file is opened as hostile: relative to one descriptor of
//! the image directory, `O_NOFOLLOW | O_NONBLOCK` (a symbolic link is
//! refused, a FIFO never blocks), then `fstat` must show a regular file
//! before a byte is read, and sizes are capped before reading
//! ([`crate::MAX_META_LEN`]). [`Image::read_verified`] checks everything
//! `inspect` checks (header, body checksum, every record, the page-file
//! header page, [`Image::sanity_check`]) and hands back the bytes it checked
//! and the page file's descriptor, so a restore uses them instead of opening
//! the paths again.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use crate::model::{Image, ImageReadError};
use crate::{Header, HEADER_LEN, META_FILE, PAGES_FILE};

/// What a file that is not a regular file is, for messages.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    }
}

/// An image directory opened once; its files are opened relative to it.
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl ImageDir {
    /// Opens `path` as a directory (`O_DIRECTORY`, so a FIFO or device never
    /// blocks or is read).
    pub fn open(path: &Path) -> Result<ImageDir, ImageReadError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| ImageReadError::Io {
            step: "open",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Ok(ImageDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` in the directory read-only without following a symbolic
    /// link or blocking, and checks that it is a regular file; returns it
    /// with its length.
    pub fn open_file(&self, name: &str) -> Result<(File, u64), ImageReadError> {
        let path = self.path.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| {
            // A link (ELOOP) or a socket (ENXIO) cannot be opened: name
            // what it is (lstat reads nothing and never blocks).
            let t = rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode));
            match t {
                Ok(t) if t != FileType::RegularFile => ImageReadError::NotRegular {
                    path: path.clone(),
                    what: type_name(t),
                },
                _ => ImageReadError::Io {
                    step: "open",
                    path: path.clone(),
                    source: e.into(),
                },
            }
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| ImageReadError::Io {
            step: "stat",
            path: path.clone(),
            source: e.into(),
        })?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            return Err(ImageReadError::NotRegular {
                path,
                what: type_name(t),
            });
        }
        Ok((File::from(fd), st.st_size as u64))
    }
}

/// An image checked by [`Image::read_verified`], with the bytes and the
/// descriptor that were checked.
#[derive(Debug)]
pub struct VerifiedImage {
    /// The decoded, sanity-checked image.
    pub image: Image,
    /// `meta.crac` as read and checked: header and body.
    pub meta: Vec<u8>,
    /// `pages.crac`, opened once; its length and header page were checked
    /// (its page data checksum is not).
    pub pages: File,
    /// The directory.
    pub dir: ImageDir,
}

impl VerifiedImage {
    /// The header of `meta.crac`.
    pub fn header(&self) -> Header {
        self.image.header
    }
    /// The metadata body (after the header).
    pub fn body(&self) -> &[u8] {
        &self.meta[HEADER_LEN..]
    }
}

impl Image {
    /// Reads and validates the image in `dir` with the strict reader (see
    /// the module documentation) and returns it with the bytes and page
    /// file descriptor that were checked.
    pub fn read_verified(dir: &Path) -> Result<VerifiedImage, ImageReadError> {
        let d = ImageDir::open(dir)?;
        let meta_path = dir.join(META_FILE);
        let (mf, mlen) = d.open_file(META_FILE)?;
        let (header, meta) = crate::model::read_meta(mf, mlen, &meta_path)?;
        let image = Image::decode_body(header, &meta[HEADER_LEN..]).map_err(|source| {
            ImageReadError::Body {
                path: meta_path.clone(),
                source,
            }
        })?;
        image
            .sanity_check()
            .map_err(|source| ImageReadError::Sanity {
                path: meta_path,
                source,
            })?;
        let (pages, plen) = d.open_file(PAGES_FILE)?;
        crate::model::check_pages_file(&pages, plen, &dir.join(PAGES_FILE), &header)?;
        Ok(VerifiedImage {
            image,
            meta,
            pages,
            dir: d,
        })
    }
}
