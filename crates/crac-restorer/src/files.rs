//! Files the image names, opened by path (with the image's fs ids, taken
//! before the memory stage): the executable and the files of mapped areas,
//! the last of which stays open for the next area of the same file.

use core::fmt::Write as _;

use crac_image::{FileRecord, Tag, NO_FILE};

use crate::image::{meta_err, sections, Image};
use crate::sys::*;
use crate::{err, B, R};

/// A NUL-terminated copy of `p` in `buf`.
fn cpath<'b>(p: &[u8], buf: &'b mut [u8; 4096]) -> R<&'b [u8]> {
    if p.len() >= buf.len() || p.contains(&0) {
        return Err(fail!(
            36,
            0,
            "the path {} is too long or contains NUL",
            B(p)
        ));
    }
    buf[..p.len()].copy_from_slice(p);
    buf[p.len()] = 0;
    Ok(&buf[..=p.len()])
}

pub(crate) fn open_path(p: &[u8], flags: u64, what: &str) -> R<i32> {
    let mut buf = [0u8; 4096];
    let c = cpath(p, &mut buf)?;
    // O_NONBLOCK: a FIFO put in a file's place after preflight never
    // blocks the restore (mapping it then fails).
    open(c, flags | O_CLOEXEC | O_NONBLOCK)
        .map_err(|e| fail!(e, 0, "opening {what} {} failed", B(p)))
}

/// The last opened mapped file, reused by consecutive areas of one file.
pub(crate) struct FileCache {
    id: u32,
    rw: bool,
    fd: i32,
}

impl FileCache {
    /// A cache with no file open.
    pub(crate) fn new() -> FileCache {
        FileCache {
            id: NO_FILE,
            rw: false,
            fd: -1,
        }
    }

    pub(crate) fn get(&mut self, img: &Image, id: u32, rw: bool) -> R<(i32, &'static [u8])> {
        let rec = find_file(img, id)?;
        if self.fd >= 0 && self.id == id && self.rw == rw {
            return Ok((self.fd, rec.path));
        }
        self.close();
        let fd = open_path(
            rec.path,
            if rw { O_RDWR } else { O_RDONLY },
            "the mapped file",
        )?;
        *self = FileCache { id, rw, fd };
        Ok((fd, rec.path))
    }

    pub(crate) fn close(&mut self) {
        if self.fd >= 0 {
            let _ = close(self.fd);
            self.fd = -1;
        }
    }
}

fn find_file(img: &Image, id: u32) -> R<FileRecord<'static>> {
    for s in sections(img.body) {
        let (tag, mut p) = s?;
        if tag == Tag::File {
            let f = FileRecord::decode(&mut p).map_err(meta_err)?;
            if f.id == id {
                return Ok(f);
            }
        }
    }
    Err(fail!(
        0,
        id as u64,
        "the metadata names file {id}, which it does not describe"
    ))
}
