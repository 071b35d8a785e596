//! `crac restore --env-file FILE`: environment values from a file, so a
//! secret never appears in `/proc/PID/cmdline` of `crac restore` (which
//! every user can read, unlike the file).
//!
//! `crac restore` may run as root, so the file is opened like any input it
//! does not trust: `O_NOFOLLOW | O_NONBLOCK` (a symlink is refused, a FIFO
//! never blocks), then checked on the descriptor: a regular file, at most
//! [`MAX_LEN`] bytes, owned by the caller or root and writable by no one
//! else. Lines are `KEY=VALUE` (the value is taken as is, to the end of the
//! line); empty lines and lines starting with `#` are skipped. Errors name
//! the line, never its value.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Largest environment file read.
pub const MAX_LEN: u64 = 1 << 20;

/// Why an environment file was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// Opening or reading failed (a symlink gives ELOOP).
    #[error("cannot read environment file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("environment file {} is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Larger than [`MAX_LEN`].
    #[error("environment file {} is {len} bytes, more than the {MAX_LEN} allowed", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// Another user could have written it.
    #[error(
        "environment file {} is owned by uid {uid} with mode {mode:o}: it must belong to you \
         or root and be writable by no one else",
        path.display()
    )]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not `KEY=VALUE`.
    #[error("environment file {} line {line}: expected KEY=VALUE with a non-empty KEY", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
    },
}

/// Reads `KEY=VALUE` pairs from `path`; see the module documentation.
pub fn read(path: &Path) -> Result<Vec<(OsString, OsString)>, EnvFileError> {
    let io = |source: std::io::Error| EnvFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io(e.into()))?;
    if st.st_mode & 0o170000 != 0o100000 {
        return Err(EnvFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let me = rustix::process::getuid().as_raw();
    if (st.st_uid != me && st.st_uid != 0) || st.st_mode & 0o022 != 0 {
        return Err(EnvFileError::Unsafe {
            path: path.to_path_buf(),
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
        });
    }
    if st.st_size as u64 > MAX_LEN {
        return Err(EnvFileError::TooLarge {
            path: path.to_path_buf(),
            len: st.st_size as u64,
        });
    }
    let mut text = Vec::new();
    // Bounded even if the file grows after the fstat.
    std::fs::File::from(fd)
        .take(MAX_LEN + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_LEN {
        return Err(EnvFileError::TooLarge {
            path: path.to_path_buf(),
            len: text.len() as u64,
        });
    }
    parse(&text).map_err(|line| EnvFileError::BadLine {
        path: path.to_path_buf(),
        line,
    })
}

/// The pairs of an environment file's text, or the number of the first
/// bad line.
fn parse(text: &[u8]) -> Result<Vec<(OsString, OsString)>, usize> {
    let mut pairs = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
            continue;
        }
        let eq = line.iter().position(|&b| b == b'=').ok_or(i + 1)?;
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        if key.is_empty() || key.contains(&0) || value.contains(&0) {
            return Err(i + 1);
        }
        pairs.push((
            OsString::from_vec(key.to_vec()),
            OsString::from_vec(value.to_vec()),
        ));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let p = parse(b"# comment\nA=b=c\r\n\nEMPTY=\n  \n").unwrap();
        assert_eq!(
            p,
            vec![
                ("A".into(), "b=c".into()),
                ("EMPTY".into(), OsString::new())
            ]
        );
        assert_eq!(parse(b"A=1\nnovalue\n"), Err(2));
        assert_eq!(parse(b"=x"), Err(1));
        assert_eq!(parse(b"A=\0"), Err(1));
    }
}
