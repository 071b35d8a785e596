//! The pause engine: "checkpoint" by blocking the process until it is woken.
//!
//! No image of memory is written. The paused process stays alive and a second
//! process (normally `crac restore DIR`) wakes it, handing over environment
//! entries the way a real restore would. This mirrors CRaC's `simengine` with
//! `pause=true`.
//!
//! # Protocol
//!
//! [`pause`] creates the image directory (mode 0700; its parent must exist)
//! or takes an existing one only if it belongs to the effective uid and no
//! one else may write to it. It binds a Unix stream socket at
//! `DIR/pause.sock`, then writes its pid in decimal to `DIR/pid` (a new file
//! under an unguessable name, `O_EXCL|O_NOFOLLOW`, renamed into place), so a
//! `pid` file means the socket already listens. It then blocks in `accept`
//! and reads only from wakers running as root or as its own uid
//! (`SO_PEERCRED`).
//!
//! [`wake`] reads `DIR/pid` (no symlink, no FIFO, at most 32 bytes), checks
//! that the directory, the pid file and the socket belong to the effective
//! uid of that process and that no one else may write to the directory,
//! connects to `DIR/pause.sock` and checks that the process listening is
//! that process (`SO_PEERCRED`: its pid and uid) before it sends one message
//! (integers little-endian):
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

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

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
/// A pid file holds a decimal pid and a newline: anything longer is not one.
const MAX_PID_FILE: u64 = 32;
/// Mode bits that let users other than the owner change a directory.
const OTHERS_WRITE: u32 = 0o022;

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
    /// The image directory could not be opened (a symlink, not a
    /// directory, no permission).
    #[error("cannot open image directory {}", path.display())]
    OpenDir {
        /// The image directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The image directory belongs to another user, who could replace the
    /// files in it.
    #[error(
        "image directory {} belongs to uid {owner}, not to uid {expected}: another user's \
         directory is not used",
        path.display()
    )]
    ForeignDir {
        /// The image directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The uid it must belong to.
        expected: u32,
    },
    /// Users other than the owner may write to the image directory.
    #[error(
        "image directory {} has mode {mode:o}: other users may write to it, so its files \
         cannot be trusted",
        path.display()
    )]
    WritableDir {
        /// The image directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
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
    /// The pid file is not a regular file (a FIFO, a device, a socket).
    #[error("{} is not a regular file but a {kind}", path.display())]
    PidNotRegular {
        /// The pid file path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The pid file is too large to hold a pid.
    #[error("{} holds {size} bytes, more than a process id", path.display())]
    PidTooLarge {
        /// The pid file path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The pid file does not hold a pid.
    #[error("{} does not hold a process id: {content:?}", path.display())]
    InvalidPid {
        /// The pid file path.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The process the pid file names does not run.
    #[error("process {pid} named in {} does not run", path.display())]
    NotRunning {
        /// The pid file path.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
    },
    /// A file of the pause image belongs to a user other than the paused
    /// process's.
    #[error(
        "{} belongs to uid {owner} but process {pid} runs as uid {uid}: refusing to wake it",
        path.display()
    )]
    ForeignFile {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The paused process.
        pid: u32,
        /// The paused process's effective uid.
        uid: u32,
    },
    /// The socket is served by another process than the one the pid file
    /// names: nothing was sent to it.
    #[error(
        "{} is served by process {peer_pid} (uid {peer_uid}), not by the paused process {pid} \
         (uid {uid}): nothing was sent",
        path.display()
    )]
    WrongPeer {
        /// The socket path.
        path: PathBuf,
        /// The process listening on it.
        peer_pid: i32,
        /// Its uid.
        peer_uid: u32,
        /// The process the pid file names.
        pid: u32,
        /// That process's effective uid.
        uid: u32,
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
/// An existing `dir` must belong to the effective uid and be writable by
/// no one else (another user could otherwise plant or swap its files).
/// Returns the facts the waker handed over: its start time, the time this
/// process resumed and the environment entries to apply.
pub fn pause(dir: &Path) -> Result<RestoreFacts, PauseError> {
    let dir_fd = own_dir(dir)?;
    let socket_path = dir.join(SOCKET_FILE);
    // A socket left by an earlier pause in the same directory (only ever a
    // socket: anything else makes the bind below fail).
    if rustix::fs::statat(&dir_fd, SOCKET_FILE, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Socket)
    {
        let _ = rustix::fs::unlinkat(&dir_fd, SOCKET_FILE, AtFlags::empty());
    }
    // Bound through the descriptor so a directory swapped after the checks
    // is not used; bind never follows a symlink at the socket's name.
    let listener =
        UnixListener::bind(in_dir_fd(&dir_fd, SOCKET_FILE)).map_err(|source| PauseError::Bind {
            path: socket_path.clone(),
            source,
        })?;
    let _socket_guard = RemoveOnDrop(&dir_fd);

    write_pid(&dir_fd).map_err(|source| PauseError::WritePid {
        path: dir.join(PID_FILE),
        source,
    })?;
    tracing::debug!(dir = %dir.display(), "paused, waiting for a waker");

    let euid = rustix::process::geteuid().as_raw();
    loop {
        let (mut stream, _) = listener.accept().map_err(|source| PauseError::Accept {
            path: socket_path.clone(),
            source,
        })?;
        // Only the owner or root may wake: nothing is read from anyone else.
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(c) if c.uid.is_root() || c.uid.as_raw() == euid => {}
            Ok(c) => {
                tracing::warn!(
                    "refused a wake from process {} running as uid {}",
                    c.pid.as_raw_nonzero(),
                    c.uid.as_raw()
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a wake whose sender is unknown");
                continue;
            }
        }
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

/// Creates `dir` (mode 0700), or opens an existing one that belongs to the
/// effective uid and that no one else may write to, and makes it 0700.
fn own_dir(dir: &Path) -> Result<OwnedFd, PauseError> {
    match rustix::fs::mkdirat(CWD, dir, Mode::RWXU) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => {
            return Err(PauseError::CreateDir {
                path: dir.to_owned(),
                source: e.into(),
            })
        }
    }
    // Not followed: a link here could lead anywhere another user chose.
    let (fd, st) = open_dir_with(dir, OFlags::NOFOLLOW)?;
    let euid = rustix::process::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(PauseError::ForeignDir {
            path: dir.to_owned(),
            owner: st.st_uid,
            expected: euid,
        });
    }
    not_writable_by_others(dir, &st)?;
    rustix::fs::fchmod(&fd, Mode::RWXU).map_err(|e| PauseError::CreateDir {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    Ok(fd)
}

/// A path to `name` in the directory open at `dir`, resolved through the
/// descriptor (not through the directory's path again).
fn in_dir_fd(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Wakes the process paused in `dir`, handing it `env`.
///
/// Before anything is sent it checks that `dir`, its pid file and socket
/// belong to the uid of the process the pid file names, that no one else
/// may write to `dir`, and that the process listening on the socket is that
/// process (`SO_PEERCRED`). Returns the pid of the woken process once it
/// acknowledged the message.
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
    let dir_fd = open_dir(dir)?;
    let socket_path = dir.join(SOCKET_FILE);
    let socket = match rustix::fs::statat(&dir_fd, SOCKET_FILE, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Socket => st,
        _ => {
            return Err(PauseError::NotPaused {
                path: dir.to_owned(),
            })
        }
    };
    let (pid, pid_owner) = read_pid_at(&dir_fd, dir)?;
    let uid = process_euid(pid).ok_or_else(|| PauseError::NotRunning {
        path: dir.join(PID_FILE),
        pid,
    })?;
    let dir_st = rustix::fs::fstat(&dir_fd).map_err(|e| PauseError::OpenDir {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    let foreign = |path: PathBuf, owner| PauseError::ForeignFile {
        path,
        owner,
        pid,
        uid,
    };
    if dir_st.st_uid != uid {
        return Err(foreign(dir.to_owned(), dir_st.st_uid));
    }
    if pid_owner != uid {
        return Err(foreign(dir.join(PID_FILE), pid_owner));
    }
    if socket.st_uid != uid {
        return Err(foreign(socket_path, socket.st_uid));
    }

    let mut stream = UnixStream::connect(in_dir_fd(&dir_fd, SOCKET_FILE)).map_err(|source| {
        PauseError::Connect {
            path: socket_path.clone(),
            source,
        }
    })?;
    let transfer = |source| PauseError::Transfer {
        path: socket_path.clone(),
        source,
    };
    // The listener's credentials from when it listened: the paused
    // process itself, or someone who put a socket in its place.
    let peer = rustix::net::sockopt::socket_peercred(&stream).map_err(|e| transfer(e.into()))?;
    let peer_pid = peer.pid.as_raw_nonzero().get();
    if u32::try_from(peer_pid).ok() != Some(pid) || peer.uid.as_raw() != uid {
        return Err(PauseError::WrongPeer {
            path: socket_path,
            peer_pid,
            peer_uid: peer.uid.as_raw(),
            pid,
            uid,
        });
    }
    let message = encode(unix_ns_now(), env);
    let mut answer = [0u8; 2];
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

/// The pid of the process paused in `dir`, read safely (no symlink, no
/// FIFO, a bounded read), for `inspect` and `checkpoint`.
pub fn read_pid(dir: &Path) -> Result<u32, PauseError> {
    let dir_fd = open_dir(dir)?;
    read_pid_at(&dir_fd, dir).map(|(pid, _)| pid)
}

/// Opens the image directory `dir` (the caller's path: a symlink there is
/// the caller's choice) and checks no one but its owner may write to it.
fn open_dir(dir: &Path) -> Result<OwnedFd, PauseError> {
    let (fd, st) = open_dir_with(dir, OFlags::empty())?;
    not_writable_by_others(dir, &st)?;
    Ok(fd)
}

/// Opens directory `dir` (with `extra` flags) and reads what it is.
fn open_dir_with(dir: &Path, extra: OFlags) -> Result<(OwnedFd, rustix::fs::Stat), PauseError> {
    let open_err = |e: rustix::io::Errno| PauseError::OpenDir {
        path: dir.to_owned(),
        source: e.into(),
    };
    let fd = rustix::fs::openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra,
        Mode::empty(),
    )
    .map_err(open_err)?;
    let st = rustix::fs::fstat(&fd).map_err(open_err)?;
    Ok((fd, st))
}

/// Refuses a directory that group or others may write to.
fn not_writable_by_others(dir: &Path, st: &rustix::fs::Stat) -> Result<(), PauseError> {
    if st.st_mode & OTHERS_WRITE != 0 {
        return Err(PauseError::WritableDir {
            path: dir.to_owned(),
            mode: st.st_mode & 0o7777,
        });
    }
    Ok(())
}

/// Reads the pid file in the directory open at `dir_fd`: never follows a
/// symlink, never blocks on a FIFO, reads at most [`MAX_PID_FILE`] bytes.
/// Returns the pid and the file's owner.
fn read_pid_at(dir_fd: &OwnedFd, dir: &Path) -> Result<(u32, u32), PauseError> {
    let path = dir.join(PID_FILE);
    let read_err = |e: io::Error| PauseError::ReadPid {
        path: path.clone(),
        source: e,
    };
    let fd = rustix::fs::openat(
        dir_fd,
        PID_FILE,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| read_err(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| read_err(e.into()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(PauseError::PidNotRegular {
            path,
            kind: file_kind(kind),
        });
    }
    let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
    if size > MAX_PID_FILE {
        return Err(PauseError::PidTooLarge { path, size });
    }
    let mut bytes = Vec::new();
    File::from(fd)
        .take(MAX_PID_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    let content = String::from_utf8_lossy(&bytes).into_owned();
    match content.trim().parse::<u32>() {
        Ok(pid) if pid > 0 && bytes.len() as u64 <= MAX_PID_FILE => Ok((pid, st.st_uid)),
        _ => Err(PauseError::InvalidPid { path, content }),
    }
}

fn file_kind(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// The effective uid of process `pid`, if it runs (not a zombie).
fn process_euid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut state = None;
    let mut euid = None;
    for line in status.lines() {
        if let Some(s) = line.strip_prefix("State:") {
            state = s.trim().chars().next();
        } else if let Some(u) = line.strip_prefix("Uid:") {
            euid = u.split_whitespace().nth(1)?.parse().ok();
        }
    }
    match state {
        Some('Z' | 'X') | None => None,
        Some(_) => euid,
    }
}

/// Writes the pid file atomically: a new temporary file under an
/// unguessable name (`O_EXCL|O_NOFOLLOW`, so nothing planted is followed or
/// reused), then a rename over `pid` (which replaces a symlink there, never
/// follows it).
fn write_pid(dir: &OwnedFd) -> io::Result<()> {
    let content = format!("{}\n", std::process::id());
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..8 {
        let tmp = format!(
            ".{PID_FILE}.tmp-{:016x}",
            RandomState::new().hash_one(unix_ns_now())
        );
        let fd = match rustix::fs::openat(
            dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => {
                last = rustix::io::Errno::EXIST.into();
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let written = File::from(fd).write_all(content.as_bytes());
        let renamed = written.and_then(|()| {
            rustix::fs::renameat(dir, tmp.as_str(), dir, PID_FILE).map_err(io::Error::from)
        });
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        }
        return renamed;
    }
    Err(last)
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

/// Removes the wake socket from the directory open at the descriptor.
struct RemoveOnDrop<'a>(&'a OwnedFd);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(self.0.as_fd(), SOCKET_FILE, AtFlags::empty());
    }
}

#[cfg(test)]
#[path = "pause_tests.rs"]
mod tests;
