//! Regular files opened by path. The path, the offset and the file's
//! identity (device, inode, size, mtime) travel; the restored process opens
//! the path again with the recorded flags and seeks to the offset.
//!
//! `crac restore` refuses the image before anything runs when the file
//! changed (`restore/preflight_files.rs`), except for a file opened with
//! `O_APPEND` (a log may grow) and one a resource policy asked to reopen:
//! those are opened again whatever they hold, a log at its end, a reopened
//! file at the same offset clamped to its new size. The restored process
//! checks again that it opened the file the preflight saw.
//!
//! Not carried (the open-descriptor check refuses them): deleted files,
//! files whose path now names another file, files under /proc and /sys
//! (their identity does not survive the process), and stdio.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crac_image::{FdRecord, FD_FILE, FILE_REOPEN};
use crac_sys::file::{fstat, lseek, SEEK_CUR, SEEK_END, SEEK_SET};
use crac_sys::{sys, Errno};

use super::{FdFailure, O_ACCMODE, O_CLOEXEC, O_NONBLOCK};

const O_NOCTTY: u32 = 0o400;
const O_APPEND: u32 = 0o2000;
const O_DSYNC: u32 = 0o10000;
const O_DIRECT: u32 = 0o40000;
const O_LARGEFILE: u32 = 0o100000;
const O_NOATIME: u32 = 0o1000000;
const O_SYNC: u32 = 0o4000000;
const O_PATH: u32 = 0o10000000;

/// The open flags that a new open of the path takes over (the kernel already
/// dropped the creation flags O_CREAT, O_EXCL, O_TRUNC).
const KEPT_FLAGS: u32 =
    O_ACCMODE | O_APPEND | O_DSYNC | O_DIRECT | O_LARGEFILE | O_NOATIME | O_SYNC | O_PATH;

/// ESTALE: the path names another file than the one checked.
const ESTALE: Errno = Errno(116);

/// A regular file's path and state.
#[derive(Debug)]
pub struct FileFd {
    /// The path with a NUL byte at the end (built while allocating is fine).
    path: Box<[u8]>,
    /// Open flags (from fdinfo).
    flags: u32,
    /// Opened again whatever changed (resource policy `Reopen`).
    reopen: bool,
    /// The record's option bits ([`FILE_REOPEN`]), little-endian.
    options: [u8; 8],
    offset: u64,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: u64,
}

/// Plans a regular file: `link` is its `/proc/self/fd` target. `None` if it
/// is not a regular file that its path still names (deleted, replaced,
/// renamed away), or lies under /proc or /sys.
pub fn plan(fd: i32, link: &str, reopen: bool) -> Option<FileFd> {
    if fd <= 2 || !link.starts_with('/') || link.starts_with("/proc/") || link.starts_with("/sys/")
    {
        return None;
    }
    let flags = super::fd_flags(fd)?;
    let st = fstat(fd).ok()?;
    if !st.is_regular() || st.nlink == 0 {
        return None;
    }
    // The path must lead to this very file now, or the restore would open
    // another one.
    let here = fs::metadata(link).ok()?;
    if here.dev() != st.dev || here.ino() != st.ino {
        return None;
    }
    let mut path = Vec::with_capacity(link.len() + 1);
    path.extend_from_slice(link.as_bytes());
    path.push(0);
    let mut f = FileFd {
        path: path.into_boxed_slice(),
        flags,
        reopen,
        options: if reopen { FILE_REOPEN } else { 0 }.to_le_bytes(),
        offset: 0,
        dev: 0,
        ino: 0,
        size: 0,
        mtime_ns: 0,
    };
    f.capture(fd).ok()?;
    Some(f)
}

impl FileFd {
    /// Reads the offset and the identity. Allocation-free; changes nothing.
    pub fn capture(&mut self, fd: i32) -> Result<(), FdFailure> {
        let st = fstat(fd).map_err(|e| ("stat an open file", e))?;
        self.offset = if self.flags & O_PATH != 0 {
            0
        } else {
            lseek(fd, 0, SEEK_CUR).map_err(|e| ("read an open file's offset", e))?
        };
        (self.dev, self.ino, self.size) = (st.dev, st.ino, st.size);
        self.mtime_ns = st.mtime_ns;
        Ok(())
    }

    /// Fills the record.
    pub fn record<'a>(&'a self, r: &mut FdRecord<'a>) {
        r.kind = FD_FILE;
        r.id = self.dev;
        r.values = [self.offset, self.size, self.mtime_ns, self.ino];
        r.name = &self.path[..self.path.len() - 1];
        r.extra = &self.options;
    }

    /// Whether the file is opened again whatever changed.
    fn any_content(&self) -> bool {
        self.reopen || self.flags & O_APPEND != 0
    }

    /// Opens the path again with the recorded flags, checks it is the file
    /// `crac restore` checked, and seeks (the caller places it).
    /// Allocation-free.
    pub fn recreate(&self) -> Result<i32, FdFailure> {
        // Non-blocking while opening: if a FIFO took the path, the open must
        // not hang the restored process; the caller sets the recorded mode.
        let open_flags = (self.flags & KEPT_FLAGS) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
        let fd = sys::open(&self.path, open_flags as i32, 0)
            .map_err(|e| ("open a carried file by its path", e))?;
        let r = self.seek_checked(fd);
        if r.is_err() {
            let _ = sys::close(fd);
        }
        r.map(|()| fd)
    }

    fn seek_checked(&self, fd: i32) -> Result<(), FdFailure> {
        let st = fstat(fd).map_err(|e| ("stat a reopened file", e))?;
        if !st.is_regular() {
            return Err((
                "reopen a carried file: its path names no regular file",
                ESTALE,
            ));
        }
        if !self.any_content() && (st.dev, st.ino) != (self.dev, self.ino) {
            return Err(("reopen a carried file: its path names another file", ESTALE));
        }
        if self.flags & O_PATH != 0 {
            return Ok(());
        }
        let to = if self.flags & O_APPEND != 0 {
            lseek(fd, 0, SEEK_END)
        } else {
            let offset = if self.reopen {
                self.offset.min(st.size)
            } else {
                self.offset
            };
            lseek(fd, offset as i64, SEEK_SET)
        };
        to.map(drop)
            .map_err(|e| ("seek a reopened file to its offset", e))
    }
}
