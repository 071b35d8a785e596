//! The preflight checks of carried regular files: each must still be at its
//! path, a regular file, and unchanged (same device, inode, size and mtime),
//! unless it was opened with `O_APPEND` (a log may grow) or a resource
//! policy asked to reopen it; those need only exist. The path is opened with
//! `O_PATH`: no permission check, no side effect and no wait, even where a
//! FIFO or a device took its place.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crac_image::{FdRecord, Reader, Tag, FD_FILE, FILE_REOPEN};

use super::preflight::{Problem, ProblemKind};

const O_APPEND: u32 = 0o2000;
const O_PATH: i32 = 0o10000000;

/// The problems with the regular files the image's descriptors refer to,
/// found in the metadata `body` (damage is reported by the caller).
pub(super) fn check(body: &[u8]) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut r = Reader::new(body);
    while let Ok(Some((tag, mut s))) = r.next_section() {
        if Tag::from_u32(tag) != Some(Tag::Fd) {
            continue;
        }
        match FdRecord::decode(&mut s) {
            Ok(f) if f.kind == FD_FILE => check_one(&f, &mut out),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

fn problem(out: &mut Vec<Problem>, message: String) {
    out.push(Problem {
        kind: ProblemKind::File,
        message,
    });
}

fn open_path(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(O_PATH)
        .open(path)
}

fn check_one(f: &FdRecord<'_>, out: &mut Vec<Problem>) {
    let fd = f.fd;
    if f.name.is_empty() || f.name.contains(&0) || f.name[0] != b'/' {
        problem(
            out,
            format!("file descriptor {fd} of the image has an unusable path"),
        );
        return;
    }
    let path = Path::new(OsStr::from_bytes(f.name));
    let md = match open_path(path).and_then(|file| file.metadata()) {
        Ok(m) => m,
        Err(e) => {
            problem(
                out,
                format!(
                    "{} (open as file descriptor {fd}) cannot be found: {e}",
                    path.display()
                ),
            );
            return;
        }
    };
    if !md.is_file() {
        problem(
            out,
            format!(
                "{} (open as file descriptor {fd}) is no longer a regular file",
                path.display()
            ),
        );
        return;
    }
    if f.flags & O_APPEND != 0 || f.file_options() & FILE_REOPEN != 0 {
        return;
    }
    let [_, size, mtime_ns, ino] = f.values;
    let mut diffs = Vec::new();
    if md.dev() != f.id {
        diffs.push(format!("device {:#x} → {:#x}", f.id, md.dev()));
    }
    if md.ino() != ino {
        diffs.push(format!("inode {ino} → {}", md.ino()));
    }
    if md.size() != size {
        diffs.push(format!("size {size} → {}", md.size()));
    }
    let here_ns = (md.mtime() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(md.mtime_nsec() as u64);
    if here_ns != mtime_ns {
        diffs.push(format!(
            "mtime {} → {}",
            ns_text(mtime_ns),
            ns_text(here_ns)
        ));
    }
    if !diffs.is_empty() {
        problem(
            out,
            format!(
                "{} (open as file descriptor {fd}) changed since the checkpoint: {}",
                path.display(),
                diffs.join(", ")
            ),
        );
    }
}

fn ns_text(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crac_image::{Writer, FD_PIPE};
    use std::fs;

    /// The problems `check` finds in a body of the given records.
    fn problems(records: &[FdRecord<'_>]) -> Vec<String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut w = Writer::new(&mut buf);
        for r in records {
            r.encode(&mut w);
        }
        let body = w.finish().unwrap().to_vec();
        check(&body).into_iter().map(|p| p.message).collect()
    }

    fn file_record<'a>(path: &'a [u8], fd: u32, flags: u32, opts: &'a [u8; 8]) -> FdRecord<'a> {
        let md = fs::metadata(Path::new(OsStr::from_bytes(path))).unwrap();
        FdRecord {
            fd,
            kind: FD_FILE,
            flags,
            id: md.dev(),
            values: [
                7,
                md.size(),
                md.mtime() as u64 * 1_000_000_000 + md.mtime_nsec() as u64,
                md.ino(),
            ],
            name: path,
            extra: opts,
            ..FdRecord::default()
        }
    }

    #[test]
    fn changed_files_are_named_unless_appended_or_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        for n in ["same", "grown", "log", "reopen"] {
            fs::write(p(n), b"contents").unwrap();
        }
        let names: Vec<Vec<u8>> = ["same", "grown", "log", "reopen"]
            .iter()
            .map(|n| p(n).as_os_str().as_bytes().to_vec())
            .collect();
        let none = 0u64.to_le_bytes();
        let reopen = FILE_REOPEN.to_le_bytes();
        let recs = [
            file_record(&names[0], 10, 0, &none),
            file_record(&names[1], 11, 2, &none),
            file_record(&names[2], 12, 1 | O_APPEND, &none),
            file_record(&names[3], 13, 0, &reopen),
            FdRecord {
                fd: 14,
                kind: FD_PIPE,
                ..FdRecord::default()
            },
        ];
        assert_eq!(problems(&recs), Vec::<String>::new());
        for n in ["grown", "log", "reopen"] {
            fs::write(p(n), b"longer contents").unwrap();
        }
        let got = problems(&recs);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "{} (open as file descriptor 11) changed since the checkpoint: size 8 → 15",
                p("grown").display()
            )),
            "{got:?}"
        );
        // Gone, or a FIFO in its place (checked without blocking).
        fs::remove_file(p("same")).unwrap();
        fs::remove_file(p("reopen")).unwrap();
        assert!(std::process::Command::new("mkfifo")
            .arg(p("reopen"))
            .status()
            .unwrap()
            .success());
        let got = problems(&recs);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "{} (open as file descriptor 10) cannot be found: ",
                p("same").display()
            )),
            "{got:?}"
        );
        assert_eq!(
            got[2],
            format!(
                "{} (open as file descriptor 13) is no longer a regular file",
                p("reopen").display()
            )
        );
        let bad = FdRecord {
            fd: 20,
            kind: FD_FILE,
            name: b"relative",
            ..FdRecord::default()
        };
        assert_eq!(
            problems(&[bad]),
            ["file descriptor 20 of the image has an unusable path"]
        );
    }
}
