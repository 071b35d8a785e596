//! Temporary directories a dump leaves behind when it is killed.
//!
//! A dump writes `PARENT/.NAME.tmp-RANDOM` and, where the old image cannot
//! be swapped out in one rename, moves it to `PARENT/.NAME.old-RANDOM`
//! (see [`crate::dir`]). The random part (16 hex digits from `getrandom`)
//! means another user cannot create the name first and block the dump.
//! While a dump runs it holds an exclusive `flock` on its temporary
//! directory, so a directory of that pattern whose lock is free belongs to
//! a dump that ended without cleaning up: the next checkpoint to the same
//! image removes it whatever the dead process's PID was, and `crac inspect`
//! reports it.
//!
//! Only directories that are clearly ours are removed: the name pattern,
//! owned by the caller's effective uid, not a symlink, holding nothing but
//! `meta.crac` and `pages.crac`. Everything is done relative to descriptors
//! opened with `O_NOFOLLOW`, and the lock is held while removing.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};

use crate::{META_FILE, PAGES_FILE};

/// The kinds of temporary names a dump uses.
pub(crate) const KINDS: [&str; 2] = ["tmp", "old"];
/// Hex digits in the random part of a temporary name.
const RANDOM_DIGITS: usize = 16;

/// `.NAME.KIND-RANDOM` for the image directory name `name`.
pub(crate) fn temp_name(name: &OsStr, kind: &str) -> io::Result<OsString> {
    let mut bytes = [0u8; RANDOM_DIGITS / 2];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut n = OsString::from(".");
    n.push(name);
    n.push(".");
    n.push(kind);
    n.push("-");
    for b in bytes {
        n.push(format!("{b:02x}"));
    }
    Ok(n)
}

/// If `entry` is a temporary name of a dump (of the image `name`, or of
/// any image when `name` is `None`), the image name it belongs to.
fn image_of<'a>(entry: &'a [u8], name: Option<&OsStr>) -> Option<&'a [u8]> {
    let rest = entry.strip_prefix(b".")?;
    for kind in KINDS {
        let mut tail = Vec::with_capacity(kind.len() + 2);
        tail.push(b'.');
        tail.extend_from_slice(kind.as_bytes());
        tail.push(b'-');
        let Some(dash) = rest.windows(tail.len()).rposition(|w| w == tail) else {
            continue;
        };
        let (image, suffix) = (&rest[..dash], &rest[dash + tail.len()..]);
        // RANDOM, or the PID older builds used.
        let ours = !image.is_empty()
            && !suffix.is_empty()
            && suffix.len() <= RANDOM_DIGITS
            && suffix.iter().all(u8::is_ascii_hexdigit);
        if ours && name.is_none_or(|n| n.as_bytes() == image) {
            return Some(image);
        }
    }
    None
}

/// What a leftover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverState {
    /// A dump is writing it right now (its lock is held).
    InUse,
    /// A dump ended without removing it; ours to remove.
    Stale,
    /// Stale, but owned by another user or holding other files: left alone.
    Foreign,
}

/// A temporary directory of a dump found next to an image.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// Its path.
    pub path: PathBuf,
    /// Its owner.
    pub uid: u32,
    /// Bytes in its files.
    pub bytes: u64,
    /// Whether it is in use, removable or left alone.
    pub state: LeftoverState,
}

/// Looks at one candidate; returns it with its descriptor when it is a
/// directory (the descriptor holds the lock if the state is `Stale`).
fn examine(parent: &OwnedFd, dir: &Path, entry: &OsStr) -> Option<(Leftover, OwnedFd)> {
    let fd = rustix::fs::openat(
        parent,
        entry,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    let mut left = Leftover {
        path: dir.join(entry),
        uid: st.st_uid,
        bytes: 0,
        state: LeftoverState::Stale,
    };
    if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
        left.state = LeftoverState::InUse;
        return Some((left, fd));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        left.state = LeftoverState::Foreign;
    }
    let Ok(list) = rustix::fs::Dir::read_from(&fd) else {
        left.state = LeftoverState::Foreign;
        return Some((left, fd));
    };
    for e in list {
        let Ok(e) = e else {
            left.state = LeftoverState::Foreign;
            break;
        };
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        if n != META_FILE.as_bytes() && n != PAGES_FILE.as_bytes() {
            left.state = LeftoverState::Foreign;
            continue;
        }
        if let Ok(s) = rustix::fs::statat(&fd, n, AtFlags::SYMLINK_NOFOLLOW) {
            left.bytes += s.st_size as u64;
            if s.st_uid != st.st_uid || s.st_mode & 0o170000 != 0o100000 {
                left.state = LeftoverState::Foreign;
            }
        }
    }
    Some((left, fd))
}

/// The dump leftovers in `dir` (of the image `name`, or of any image).
/// With `remove`, the stale ones that are ours are removed, and the list
/// holds what is left.
fn scan(dir: &Path, name: Option<&OsStr>, remove: bool) -> io::Result<Vec<Leftover>> {
    let parent: OwnedFd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut found = Vec::new();
    for e in rustix::fs::Dir::read_from(&parent)? {
        let e = e?;
        let entry = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
        if image_of(entry.as_bytes(), name).is_none() {
            continue;
        }
        let Some((left, fd)) = examine(&parent, dir, &entry) else {
            continue;
        };
        if remove && left.state == LeftoverState::Stale && remove_one(&parent, &entry, &fd) {
            continue;
        }
        found.push(left);
    }
    Ok(found)
}

/// Removes a stale leftover whose lock `fd` holds; whether it is gone.
fn remove_one(parent: &OwnedFd, entry: &OsStr, fd: &OwnedFd) -> bool {
    for f in [META_FILE, PAGES_FILE] {
        match rustix::fs::unlinkat(fd.as_fd(), f, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(_) => return false,
        }
    }
    rustix::fs::unlinkat(parent, entry, AtFlags::REMOVEDIR).is_ok()
}

/// The directory holding the image `final_dir` and the image's name.
fn split(final_dir: &Path) -> Option<(&Path, &OsStr)> {
    let name = final_dir.file_name()?;
    let parent = match final_dir.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some((parent, name))
}

/// Removes what killed dumps of the image `final_dir` left next to it and
/// returns the leftovers that remain (in use, or not ours to remove).
pub fn clean_leftovers(final_dir: &Path) -> io::Result<Vec<Leftover>> {
    match split(final_dir) {
        Some((parent, name)) => scan(parent, Some(name), true),
        None => Ok(Vec::new()),
    }
}

/// The leftovers of dumps next to the image `dir`, or, when `dir` is not
/// an image (no `meta.crac`), inside `dir` for any image. Nothing is
/// changed.
pub fn find_leftovers(dir: &Path) -> io::Result<Vec<Leftover>> {
    if dir.join(META_FILE).exists() {
        match split(dir) {
            Some((parent, name)) => scan(parent, Some(name), false),
            None => Ok(Vec::new()),
        }
    } else {
        scan(dir, None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_random_and_recognised() {
        let a = temp_name(OsStr::new("img"), "tmp").unwrap();
        let b = temp_name(OsStr::new("img"), "tmp").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            image_of(a.as_bytes(), Some(OsStr::new("img"))),
            Some(&b"img"[..])
        );
        assert_eq!(image_of(a.as_bytes(), Some(OsStr::new("im"))), None);
        assert_eq!(image_of(b".img.old-1234", None), Some(&b"img"[..]));
        assert_eq!(image_of(b".a.b.tmp-0f", None), Some(&b"a.b"[..]));
        for bad in [
            &b"img.tmp-12"[..],
            b".img.tmp-",
            b".img.tmp-zz",
            b"..tmp-12",
            b".img.tmpx-1",
        ] {
            assert_eq!(
                image_of(bad, None),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
