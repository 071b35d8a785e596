//! The pause engine: "checkpoint" by blocking the process until it is woken.
//!
//! No image of memory is written. The paused process stays alive and a second
//! process (normally `crac restore DIR`) wakes it, handing over environment
//! entries the way a real restore would. This mirrors CRaC's `simengine` with
//! `pause=true`.
//!
//! # Protocol
//!
//! [`pause`] creates the image directory (mode 0700; its parent must exist),
//! binds a Unix stream socket at `DIR/pause.sock`, then writes its pid in
//! decimal to `DIR/pid`, so a `pid` file means the socket already listens.
//! It then blocks in `accept`.
//!
//! [`wake`] reads `DIR/pid`, connects to `DIR/pause.sock` and sends one
//! message (integers little-endian):
//!
//! ```text
//! magic            8 bytes  b"CRACWAKE"
//! version          u32      1
//! started_unix_ns  u64      wall-clock time when the waker started
//! count            u32      number of environment entries
//! count times:
//!   len            u32      length of the entry
//!   entry          len bytes KEY=VALUE (raw bytes, no NUL, KEY non-empty
//!                           and without '=')
//! ```
//!
//! The paused side answers with the two bytes `OK` and returns
//! [`RestoreFacts`]; a malformed message is answered with `NO` and the
//! process keeps waiting. The socket file is removed once the process is
//! woken; `DIR/pid` stays as a record.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::native::RestoreFacts;

/// Name of the socket file inside the image directory.
pub const SOCKET_FILE: &str = "pause.sock";
/// Name of the pid file inside the image directory.
pub const PID_FILE: &str = "pid";

const MAGIC: &[u8; 8] = b"CRACWAKE";
const VERSION: u32 = 1;
/// Upper bound on entries and on the size of one entry, so a hostile or
/// confused waker cannot make the paused process allocate without limit.
const MAX_ENTRIES: u32 = 65_536;
const MAX_ENTRY_LEN: u32 = 1 << 20;
/// How long either side waits for the other in the middle of a message.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why pausing or waking failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PauseError {
    /// The image directory could not be created or made private.
    #[error("cannot create image directory {}", path.display())]
    CreateDir {
        /// The image directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The wake socket could not be bound.
    #[error("cannot listen on {}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The pid file could not be written.
    #[error("cannot write {}", path.display())]
    WritePid {
        /// The pid file path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Waiting for a waker failed.
    #[error("cannot accept a connection on {}", path.display())]
    Accept {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The directory holds no paused process (no socket).
    #[error("{} is not a pause image (no {SOCKET_FILE})", path.display())]
    NotPaused {
        /// The image directory.
        path: PathBuf,
    },
    /// The pid file could not be read.
    #[error("cannot read {}", path.display())]
    ReadPid {
        /// The pid file path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The pid file does not hold a pid.
    #[error("{} does not hold a process id: {content:?}", path.display())]
    InvalidPid {
        /// The pid file path.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// An environment entry cannot be sent.
    #[error("invalid environment entry {key:?}: {reason}")]
    InvalidEnv {
        /// The entry's key.
        key: OsString,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting to the paused process failed (it may have died).
    #[error("cannot connect to the paused process at {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Sending the wake message or reading the answer failed.
    #[error("cannot talk to the paused process at {}", path.display())]
    Transfer {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The paused process did not accept the wake message.
    #[error("the paused process at {} rejected the wake message", path.display())]
    Rejected {
        /// The socket path.
        path: PathBuf,
    },
}

/// Returns whether `dir` holds a paused process's wake socket.
///
/// The socket stays behind if the paused process died; [`wake`] then fails
/// with [`PauseError::Connect`].
pub fn is_pause_image(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(SOCKET_FILE)).is_ok_and(|m| m.file_type().is_socket())
}

/// Blocks the calling thread until [`wake`] is called for `dir`.
///
/// Returns the facts the waker handed over: its start time, the time this
/// process resumed and the environment entries to apply.
pub fn pause(dir: &Path) -> Result<RestoreFacts, PauseError> {
    let create_dir = |source| PauseError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(create_dir)?;
        }
        Err(e) => return Err(create_dir(e)),
    }

    let socket_path = dir.join(SOCKET_FILE);
    // A socket left by an earlier pause in the same directory.
    if is_pause_image(dir) {
        let _ = fs::remove_file(&socket_path);
    }
    let listener = UnixListener::bind(&socket_path).map_err(|source| PauseError::Bind {
        path: socket_path.clone(),
        source,
    })?;
    let _socket_guard = RemoveOnDrop(&socket_path);

    let pid_path = dir.join(PID_FILE);
    write_pid(dir, &pid_path).map_err(|source| PauseError::WritePid {
        path: pid_path,
        source,
    })?;
    tracing::debug!(dir = %dir.display(), "paused, waiting for a waker");

    loop {
        let (mut stream, _) = listener.accept().map_err(|source| PauseError::Accept {
            path: socket_path.clone(),
            source,
        })?;
        match receive(&mut stream) {
            Ok((started, env)) => {
                let _ = stream.write_all(b"OK");
                let resumed = unix_ns_now();
                return Ok(RestoreFacts {
                    restore_started_unix_ns: if started == 0 { resumed } else { started },
                    resumed_unix_ns: resumed,
                    env,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed wake message");
                let _ = stream.write_all(b"NO");
            }
        }
    }
}

/// Wakes the process paused in `dir`, handing it `env`.
///
/// Returns the pid of the woken process once it acknowledged the message.
pub fn wake(dir: &Path, env: &[(OsString, OsString)]) -> Result<u32, PauseError> {
    for (key, value) in env {
        check_env(key, value).map_err(|reason| PauseError::InvalidEnv {
            key: key.clone(),
            reason,
        })?;
    }
    if env.len() > MAX_ENTRIES as usize {
        return Err(PauseError::InvalidEnv {
            key: env[0].0.clone(),
            reason: "too many entries",
        });
    }
    if !is_pause_image(dir) {
        return Err(PauseError::NotPaused {
            path: dir.to_owned(),
        });
    }
    let pid = read_pid(dir)?;
    let socket_path = dir.join(SOCKET_FILE);
    let mut stream = UnixStream::connect(&socket_path).map_err(|source| PauseError::Connect {
        path: socket_path.clone(),
        source,
    })?;
    let message = encode(unix_ns_now(), env);
    let mut answer = [0u8; 2];
    let transfer = |source| PauseError::Transfer {
        path: socket_path.clone(),
        source,
    };
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(transfer)?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(transfer)?;
    stream.write_all(&message).map_err(transfer)?;
    stream.read_exact(&mut answer).map_err(transfer)?;
    if &answer != b"OK" {
        return Err(PauseError::Rejected { path: socket_path });
    }
    Ok(pid)
}

fn read_pid(dir: &Path) -> Result<u32, PauseError> {
    let path = dir.join(PID_FILE);
    let content = fs::read_to_string(&path).map_err(|source| PauseError::ReadPid {
        path: path.clone(),
        source,
    })?;
    content
        .trim()
        .parse()
        .map_err(|_| PauseError::InvalidPid { path, content })
}

/// Writes the pid file atomically (temporary file, then rename).
fn write_pid(dir: &Path, pid_path: &Path) -> io::Result<()> {
    let tmp = dir.join(format!(".{PID_FILE}.tmp"));
    fs::write(&tmp, format!("{}\n", std::process::id()))?;
    fs::rename(&tmp, pid_path)
}

fn check_env(key: &OsStr, value: &OsStr) -> Result<(), &'static str> {
    let (key, value) = (key.as_bytes(), value.as_bytes());
    if key.is_empty() {
        Err("the key is empty")
    } else if key.contains(&b'=') {
        Err("the key contains '='")
    } else if key.contains(&0) || value.contains(&0) {
        Err("it contains a NUL byte")
    } else if key.len() + value.len() + 1 > MAX_ENTRY_LEN as usize {
        Err("it is too long")
    } else {
        Ok(())
    }
}

fn encode(started_unix_ns: u64, env: &[(OsString, OsString)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&started_unix_ns.to_le_bytes());
    let count = u32::try_from(env.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for (key, value) in env {
        let (key, value) = (key.as_bytes(), value.as_bytes());
        let len = u32::try_from(key.len() + 1 + value.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
    }
    out
}

type WakeMessage = (u64, Vec<(OsString, OsString)>);

fn receive(stream: &mut UnixStream) -> io::Result<WakeMessage> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    decode(stream)
}

fn decode(input: &mut impl Read) -> io::Result<WakeMessage> {
    fn invalid(what: &'static str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what)
    }
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("bad magic"));
    }
    if read_u32(input)? != VERSION {
        return Err(invalid("unsupported version"));
    }
    let started = read_u64(input)?;
    let count = read_u32(input)?;
    if count > MAX_ENTRIES {
        return Err(invalid("too many entries"));
    }
    let mut env = Vec::new();
    for _ in 0..count {
        let len = read_u32(input)?;
        if len > MAX_ENTRY_LEN {
            return Err(invalid("entry too long"));
        }
        let mut entry = vec![0u8; len as usize];
        input.read_exact(&mut entry)?;
        let eq = entry
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| invalid("entry without '='"))?;
        let value = entry.split_off(eq + 1);
        entry.truncate(eq);
        let (key, value) = (OsString::from_vec(entry), OsString::from_vec(value));
        check_env(&key, &value).map_err(invalid)?;
        env.push((key, value));
    }
    Ok((started, env))
}

fn read_u32(input: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(input: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn unix_ns_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::thread;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn message_round_trips() {
        let entries = env(&[("A", "1"), ("B", "x=y"), ("EMPTY", "")]);
        let bytes = encode(42, &entries);
        let (started, decoded) = decode(&mut bytes.as_slice()).unwrap();
        assert_eq!(started, 42);
        assert_eq!(decoded, entries);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = encode(1, &env(&[("A", "1")]));
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(
            decode(&mut bad_magic.as_slice()).unwrap_err().to_string(),
            "bad magic"
        );
        let truncated = &good[..good.len() - 1];
        assert_eq!(
            decode(&mut &truncated[..]).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut no_eq = encode(1, &[]);
        no_eq.truncate(no_eq.len() - 4);
        no_eq.extend_from_slice(&1u32.to_le_bytes());
        no_eq.extend_from_slice(&1u32.to_le_bytes());
        no_eq.push(b'A');
        assert_eq!(
            decode(&mut no_eq.as_slice()).unwrap_err().to_string(),
            "entry without '='"
        );
    }

    #[test]
    fn wake_rejects_invalid_entries_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let err = wake(dir.path(), &env(&[("A=B", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid environment entry \"A=B\": the key contains '='"
        );
        let err = wake(dir.path(), &env(&[("", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid environment entry \"\": the key is empty"
        );
    }

    #[test]
    fn wake_without_a_paused_process_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_pause_image(dir.path()));
        let err = wake(dir.path(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not a pause image (no pause.sock)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn stale_socket_gives_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap());
        fs::write(dir.path().join(PID_FILE), "12345\n").unwrap();
        assert!(is_pause_image(dir.path()));
        let err = wake(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, PauseError::Connect { .. }), "{err:?}");
    }

    #[test]
    fn pause_and_wake_round_trip() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("image");
        let paused = {
            let dir = dir.clone();
            thread::spawn(move || pause(&dir))
        };
        while !dir.join(PID_FILE).exists() {
            thread::sleep(Duration::from_millis(5));
        }
        let mode = fs::metadata(&dir).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(is_pause_image(&dir));

        // A malformed message does not end the pause.
        let mut junk = UnixStream::connect(dir.join(SOCKET_FILE)).unwrap();
        junk.write_all(b"JUNKJUNKJUNK").unwrap();
        let mut answer = [0u8; 2];
        junk.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"NO");

        let pid = wake(&dir, &env(&[("CRAC_WOKEN", "yes")])).unwrap();
        assert_eq!(pid, std::process::id());
        let facts = paused.join().unwrap().unwrap();
        assert_eq!(facts.env, env(&[("CRAC_WOKEN", "yes")]));
        assert!(facts.resumed_unix_ns >= facts.restore_started_unix_ns);
        assert!(!is_pause_image(&dir), "the socket is removed after waking");
        assert!(dir.join(PID_FILE).exists());
    }

    #[test]
    fn pause_needs_the_parent_directory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("missing").join("image");
        let err = pause(&dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot create image directory {}", dir.display())
        );
    }
}
