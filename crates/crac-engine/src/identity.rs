//! What identifies a file an image maps: its content, not its inode.
//!
//! An ELF file is the same if its size and GNU build-id are; any other file
//! if its size and BLAKE3 hash (recorded at checkpoint) are. So a
//! byte-identical copy put in place by a redeploy, a container layer or
//! another host restores, while a real change is refused naming what
//! differs. A file whose device, inode, size and mtime are all unchanged is
//! taken as the same without reading it (the common case stays fast).
//! Images without a build-id or hash for a file (older ones) fall back to
//! device, inode and mtime.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use crac_image::FileRecord;

const O_NONBLOCK: i32 = 0o4000;
const O_NOFOLLOW: i32 = 0o400000;

/// How a file on this machine compares with the image's record of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileMatch {
    /// Same device, inode, size and mtime.
    Same,
    /// Another inode (or mtime, or device) with the same content: restores.
    /// The differences, for `inspect`.
    SameContent {
        /// `inode 12 → 34`, `mtime … → …`.
        moved: Vec<String>,
    },
    /// Missing, not a regular file, or other content: the sentence says
    /// which (without the path).
    Differs(String),
}

/// Opens `path` for reading the way a hostile path must be: the last
/// component not a symlink, never blocking on a FIFO; only a regular file.
fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK | O_NOFOLLOW)
        .open(path)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok((f, md))
}

fn hash_file(f: &File) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update_reader(f)?;
    Ok(*h.finalize().as_bytes())
}

type Key = (u64, u64, u64, i64, i64);

/// Hashes of files already hashed by this process, by device, inode, size
/// and mtime: a service checkpointed every minute reads each mapped data
/// file once.
static HASHES: Mutex<Option<HashMap<Key, [u8; 32]>>> = Mutex::new(None);

fn key(md: &Metadata) -> Key {
    (md.dev(), md.ino(), md.size(), md.mtime(), md.mtime_nsec())
}

/// The BLAKE3 hash of the file at `path` for the image (see the module
/// docs), or empty if it cannot be read.
pub(crate) fn content_hash(path: &Path) -> Vec<u8> {
    let Ok((f, md)) = open_regular(path) else {
        return Vec::new();
    };
    let k = key(&md);
    if let Some(h) = HASHES
        .lock()
        .ok()
        .and_then(|m| m.as_ref()?.get(&k).copied())
    {
        return h.to_vec();
    }
    let Ok(h) = hash_file(&f) else {
        return Vec::new();
    };
    if let Ok(mut m) = HASHES.lock() {
        m.get_or_insert_with(HashMap::new).insert(k, h);
    }
    h.to_vec()
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "none".into();
    }
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Compares the file the image recorded with what is at its path now.
pub fn mapped_file(rec: &FileRecord<'_>) -> FileMatch {
    let path = Path::new(std::ffi::OsStr::from_bytes(rec.path));
    let (f, md) = match open_regular(path) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::Other => {
            return FileMatch::Differs("is not a regular file".into())
        }
        Err(e) => return FileMatch::Differs(format!("cannot be opened: {e}")),
    };
    let mut moved = Vec::new();
    if md.dev() != rec.dev {
        moved.push(format!("device {:#x} → {:#x}", rec.dev, md.dev()));
    }
    if md.ino() != rec.ino {
        moved.push(format!("inode {} → {}", rec.ino, md.ino()));
    }
    if md.mtime() != rec.mtime_sec || md.mtime_nsec() as u32 != rec.mtime_nsec {
        moved.push(format!(
            "mtime {}.{:09} → {}.{:09}",
            rec.mtime_sec,
            rec.mtime_nsec,
            md.mtime(),
            md.mtime_nsec()
        ));
    }
    if md.size() != rec.size {
        let mut d = vec![format!("size {} → {}", rec.size, md.size())];
        d.extend(moved);
        return FileMatch::Differs(format!("changed since the checkpoint: {}", d.join(", ")));
    }
    if moved.is_empty() {
        return FileMatch::Same;
    }
    let differs = |what: String| {
        let mut d = vec![what];
        d.extend(moved.iter().cloned());
        FileMatch::Differs(format!("changed since the checkpoint: {}", d.join(", ")))
    };
    if !rec.build_id.is_empty() {
        let here = crate::elf::build_id_of(&f).unwrap_or_default();
        return if here == rec.build_id {
            FileMatch::SameContent { moved }
        } else {
            differs(format!("build-id {} → {}", hex(rec.build_id), hex(&here)))
        };
    }
    if !rec.content_hash.is_empty() {
        return match hash_file(&f) {
            Ok(here) if here[..] == *rec.content_hash => FileMatch::SameContent { moved },
            Ok(here) => differs(format!(
                "content (BLAKE3) {} → {}",
                hex(rec.content_hash),
                hex(&here)
            )),
            Err(e) => FileMatch::Differs(format!("cannot be read: {e}")),
        };
    }
    // Neither build-id nor hash recorded: only the inode can vouch.
    FileMatch::Differs(format!(
        "changed since the checkpoint: {}",
        moved.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn record<'a>(path: &'a [u8], md: &Metadata, hash: &'a [u8]) -> FileRecord<'a> {
        FileRecord {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_sec: md.mtime(),
            mtime_nsec: md.mtime_nsec() as u32,
            mode: md.mode(),
            path,
            content_hash: hash,
            ..FileRecord::default()
        }
    }

    #[test]
    fn data_files_are_identified_by_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data");
        fs::write(&p, b"the same bytes").unwrap();
        let md = fs::metadata(&p).unwrap();
        let hash = content_hash(&p);
        assert_eq!(hash.len(), 32);
        let name = p.as_os_str().as_bytes().to_vec();
        let with = record(&name, &md, &hash);
        let without = record(&name, &md, &[]);
        assert_eq!(mapped_file(&with), FileMatch::Same);

        // An identical copy at a new inode.
        let tmp = dir.path().join("tmp");
        fs::write(&tmp, b"the same bytes").unwrap();
        fs::rename(&tmp, &p).unwrap();
        match mapped_file(&with) {
            FileMatch::SameContent { moved } => {
                assert!(moved.iter().any(|m| m.starts_with("inode ")), "{moved:?}")
            }
            other => panic!("{other:?}"),
        }
        // Without a recorded hash only the inode could vouch.
        assert!(matches!(mapped_file(&without), FileMatch::Differs(d) if d.contains("inode ")));

        // Same size, other bytes.
        fs::write(&tmp, b"other  bytes!!").unwrap();
        fs::rename(&tmp, &p).unwrap();
        match mapped_file(&with) {
            FileMatch::Differs(d) => assert!(
                d.starts_with("changed since the checkpoint: content (BLAKE3) "),
                "{d}"
            ),
            other => panic!("{other:?}"),
        }
        // A symlink in its place is not followed.
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&tmp, &p).unwrap();
        assert!(
            matches!(mapped_file(&with), FileMatch::Differs(d) if d.starts_with("cannot be opened"))
        );
    }
}
