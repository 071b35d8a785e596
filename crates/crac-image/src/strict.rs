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

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use crate::model::{Image, ImageReadError, MAX_META_LEN};
use crate::{Header, HEADER_LEN, META_FILE, PAGES_FILE, PAGES_HEADER_LEN, PAGES_MAGIC, PAGE_SIZE};

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

    /// The directory's descriptor (for checks of its owner and mode).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
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
        let (header, meta) = read_meta(mf, mlen, &meta_path)?;
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
        check_pages_file(&pages, plen, &dir.join(PAGES_FILE), &header)?;
        Ok(VerifiedImage {
            image,
            meta,
            pages,
            dir: d,
        })
    }
}

/// Reads and checks `meta.crac` from `f` (a regular file of `len` bytes,
/// opened by the strict reader): header and body, at most
/// [`MAX_META_LEN`] bytes whatever the file claims. Returns the header and
/// the bytes read (header and body).
pub(crate) fn read_meta(
    mut f: fs::File,
    len: u64,
    path: &Path,
) -> Result<(Header, Vec<u8>), ImageReadError> {
    let io_err = |step: &'static str| {
        let path = path.to_path_buf();
        move |source| ImageReadError::Io { step, path, source }
    };
    if len > MAX_META_LEN {
        return Err(ImageReadError::FileTooLarge {
            path: path.to_path_buf(),
            len,
            limit: MAX_META_LEN,
        });
    }
    let mut meta = Vec::with_capacity(HEADER_LEN);
    (&mut f)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut meta)
        .map_err(io_err("read"))?;
    let header = Header::decode(&meta).map_err(|source| ImageReadError::Header {
        path: path.to_path_buf(),
        source,
    })?;
    let limit = MAX_META_LEN - HEADER_LEN as u64;
    if header.body_len > limit {
        return Err(ImageReadError::TooLarge {
            path: path.to_path_buf(),
            body_len: header.body_len,
            limit,
        });
    }
    // Read one byte more than announced to tell trailing data; the bound
    // above caps the allocation whatever the file's size.
    f.take(header.body_len + 1)
        .read_to_end(&mut meta)
        .map_err(io_err("read"))?;
    let found = (meta.len() - HEADER_LEN) as u64;
    if found < header.body_len {
        return Err(ImageReadError::Truncated {
            path: path.to_path_buf(),
            found,
            expected: header.body_len,
        });
    }
    if found > header.body_len {
        return Err(ImageReadError::TrailingData {
            path: path.to_path_buf(),
            expected: header.body_len,
        });
    }
    let computed = crc32fast::hash(&meta[HEADER_LEN..]);
    if computed != header.body_crc {
        return Err(ImageReadError::BodyChecksum {
            path: path.to_path_buf(),
            stored: header.body_crc,
            computed,
        });
    }
    Ok((header, meta))
}

/// Checks the header page and length (`found`) of `pages.crac`, open as
/// `f` (by the strict reader), against the metadata header.
pub(crate) fn check_pages_file(
    f: &fs::File,
    found: u64,
    path: &Path,
    header: &Header,
) -> Result<(), ImageReadError> {
    use std::os::unix::fs::FileExt;
    let bad = |what| ImageReadError::PagesHeader {
        path: path.to_path_buf(),
        what,
    };
    if found != header.pages_len {
        return Err(ImageReadError::PagesLength {
            path: path.to_path_buf(),
            expected: header.pages_len,
            found,
        });
    }
    let mut page = vec![0u8; PAGES_HEADER_LEN as usize];
    if found < PAGES_HEADER_LEN {
        return Err(bad("the file is shorter than its 4096-byte header page"));
    }
    f.read_exact_at(&mut page, 0)
        .map_err(|source| ImageReadError::Io {
            step: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if page[0..8] != PAGES_MAGIC {
        return Err(bad("it does not start with the page file magic"));
    }
    let version = (
        u16::from_le_bytes([page[8], page[9]]),
        u16::from_le_bytes([page[10], page[11]]),
    );
    if version != (header.major, header.minor) {
        return Err(bad("its format version differs from meta.crac's"));
    }
    if page[12..16].iter().chain(&page[24..]).any(|&b| b != 0) {
        return Err(bad("its reserved bytes are not zero"));
    }
    let count = crate::decode_pages_header(&page).unwrap_or(u64::MAX);
    let data_len = header.pages_len.saturating_sub(PAGES_HEADER_LEN);
    if count.checked_mul(PAGE_SIZE) != Some(data_len) {
        return Err(bad("its page count does not match the file length"));
    }
    Ok(())
}
