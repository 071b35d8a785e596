//! The open-file-descriptor check run before every checkpoint.
//!
//! Like CRaC's `VM_Crac::check_fds`, it walks `/proc/self/fd` and lets pass:
//!
//! 1. stdin, stdout and stderr (0, 1, 2);
//! 2. descriptors inherited from the parent: those open when the library
//!    initialised (see below), as long as they still refer to the same file
//!    (the native engine passes them through a restore: the restored
//!    process gets `crac restore`'s own descriptors of those numbers);
//! 3. the library's own descriptors: the [control channel](crate::control)'s
//!    listening socket and the connection that asked for the checkpoint,
//!    as long as they still refer to the same socket;
//! 4. descriptors a [resource policy](crate::policy) closes, ignores or
//!    reopens for the checkpoint (`CRAC_RESOURCE_POLICIES`);
//! 5. descriptors no policy refuses that the active engine carries across a
//!    checkpoint (the native engine: pipes, eventfds, regular files still at
//!    their path and more, see `crac_engine::dump::fds`; `simulate` and
//!    `pause` carry nothing beyond stdio, like CRaC's check).
//!
//! Every other descriptor is one
//! [`CheckpointProblem::OpenFd`](crate::CheckpointProblem):
//! `file descriptor N is open: DESCRIPTION; close it in before_checkpoint or
//! add a resource policy (type: KIND, action: close)`, with the descriptions
//! listed at [`FdKind`] (one refused by a policy is
//! [`CheckpointProblem::RefusedByPolicy`](crate::CheckpointProblem)).
//!
//! # Which descriptors are inherited
//!
//! `crac-engine` records the descriptors open at process start in a
//! constructor that runs before `main`; this library notes what each of them
//! refers to (device and inode) at its first use, so a number closed and
//! reused later no longer passes. Where that record is empty, this
//! library records the descriptors open at its **first use**: the first call
//! of [`init`](crate::init), [`global_context`](crate::global_context),
//! [`Context::new`](crate::Context::new),
//! [`checkpoint_restore`](crate::checkpoint_restore) or
//! [`open_fds`]. Call [`init`](crate::init) first thing in `main` so that
//! nothing the program opens itself counts as inherited.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use crac_engine::native::FdPolicy;

use crate::error::CheckpointProblem;
use crate::net::{SocketInfo, SocketTable};
use crate::policy::{Decision, Policies};

/// An open file descriptor and what it refers to.
///
/// Displays as `file descriptor N: DESCRIPTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    fd: RawFd,
    kind: FdKind,
}

impl FdInfo {
    #[cfg(test)]
    pub(crate) fn new(fd: RawFd, kind: FdKind) -> Self {
        FdInfo { fd, kind }
    }

    /// The descriptor number.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// What it refers to.
    pub fn kind(&self) -> &FdKind {
        &self.kind
    }
}

impl fmt::Display for FdInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file descriptor {}: {}", self.fd, self.kind)
    }
}

/// What a file descriptor refers to.
///
/// The `Display` form is the description used in messages:
///
/// | Kind | Description |
/// |---|---|
/// | regular file | `/tmp/out.txt (regular file)`; unlinked: `/tmp/out.txt (regular file, deleted)` |
/// | directory | `/tmp (directory)` |
/// | anonymous pipe | `pipe:[12345] (pipe)` |
/// | named pipe | `/tmp/fifo (FIFO)` |
/// | socket | see [`SocketInfo`], e.g. `TCP socket 0.0.0.0:8080 (listening)` |
/// | eventfd, epoll, timerfd, signalfd, inotify | `eventfd`, `epoll`, `timerfd`, `signalfd`, `inotify` |
/// | memfd | `/memfd:name (memfd)` |
/// | device | `/dev/null (character device)`, `/dev/sda (block device)` |
/// | anything else | the `/proc/self/fd` link target, then ` (other)`: `anon_inode:[pidfd] (other)` |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdKind {
    /// A regular file.
    RegularFile {
        /// Its path (as when opened).
        path: PathBuf,
        /// Whether it has been unlinked.
        deleted: bool,
    },
    /// A directory.
    Directory {
        /// Its path.
        path: PathBuf,
    },
    /// An anonymous pipe (`pipe(2)`).
    Pipe {
        /// The pipe's inode.
        inode: u64,
    },
    /// A named pipe.
    Fifo {
        /// Its path.
        path: PathBuf,
    },
    /// A socket.
    Socket(SocketInfo),
    /// An `eventfd(2)`.
    EventFd,
    /// An `epoll(7)` instance.
    Epoll,
    /// A `timerfd_create(2)` timer.
    TimerFd,
    /// A `signalfd(2)`.
    SignalFd,
    /// An `inotify(7)` instance.
    Inotify,
    /// A `memfd_create(2)` file.
    Memfd {
        /// The name given to `memfd_create`.
        name: String,
    },
    /// A character device.
    CharDevice {
        /// Its path.
        path: PathBuf,
    },
    /// A block device.
    BlockDevice {
        /// Its path.
        path: PathBuf,
    },
    /// Anything else.
    Other {
        /// The `/proc/self/fd` link target.
        target: PathBuf,
    },
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdKind::RegularFile {
                path,
                deleted: false,
            } => write!(f, "{} (regular file)", path.display()),
            FdKind::RegularFile {
                path,
                deleted: true,
            } => write!(f, "{} (regular file, deleted)", path.display()),
            FdKind::Directory { path } => write!(f, "{} (directory)", path.display()),
            FdKind::Pipe { inode } => write!(f, "pipe:[{inode}] (pipe)"),
            FdKind::Fifo { path } => write!(f, "{} (FIFO)", path.display()),
            FdKind::Socket(socket) => write!(f, "{socket}"),
            FdKind::EventFd => f.write_str("eventfd"),
            FdKind::Epoll => f.write_str("epoll"),
            FdKind::TimerFd => f.write_str("timerfd"),
            FdKind::SignalFd => f.write_str("signalfd"),
            FdKind::Inotify => f.write_str("inotify"),
            FdKind::Memfd { name } => write!(f, "/memfd:{name} (memfd)"),
            FdKind::CharDevice { path } => write!(f, "{} (character device)", path.display()),
            FdKind::BlockDevice { path } => write!(f, "{} (block device)", path.display()),
            FdKind::Other { target } => write!(f, "{} (other)", target.display()),
        }
    }
}

/// Identity of an inherited descriptor: device and inode of what it refers
/// to, so that a closed and reused number does not pass as inherited.
type Identity = (u64, u64);

static INHERITED: OnceLock<HashMap<RawFd, Identity>> = OnceLock::new();

/// The library's own descriptors (see [`register_own`]).
static OWN: Mutex<Vec<(RawFd, Identity)>> = Mutex::new(Vec::new());

/// Lets `fd`, a descriptor the library itself opened, pass the check while
/// it refers to what it refers to now.
pub(crate) fn register_own(fd: RawFd) {
    if let Some(id) = identity(fd) {
        let mut own = OWN.lock().unwrap_or_else(PoisonError::into_inner);
        own.retain(|(f, _)| *f != fd);
        own.push((fd, id));
    }
}

/// Forgets `fd` as one of the library's own descriptors. Call it after the
/// descriptor is closed (the identity check covers the moment between), or
/// in a restored process where the number means nothing any more.
pub(crate) fn unregister_own(fd: RawFd) {
    OWN.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(f, _)| *f != fd);
}

fn is_own(fd: RawFd) -> bool {
    let own = OWN.lock().unwrap_or_else(PoisonError::into_inner);
    own.iter()
        .any(|(f, id)| *f == fd && identity(fd).as_ref() == Some(id))
}

/// Records the inherited descriptors once (see the [module docs](self)).
pub(crate) fn ensure_inherited_recorded() {
    INHERITED.get_or_init(|| {
        let recorded = crac_engine::startup::initial_fds();
        let fds = if recorded.is_empty() {
            list_fds().unwrap_or_default()
        } else {
            recorded.to_vec()
        };
        let inherited: HashMap<_, _> = fds
            .into_iter()
            .filter_map(|fd| Some((fd, identity(fd)?)))
            .collect();
        tracing::debug!(fds = ?inherited.keys().collect::<Vec<_>>(), "recorded inherited fds");
        inherited
    });
}

fn is_inherited(fd: RawFd) -> bool {
    ensure_inherited_recorded();
    INHERITED
        .get()
        .is_some_and(|inherited| is_inherited_in(inherited, fd))
}

/// Whether `fd` is in `inherited` and still refers to the same file.
fn is_inherited_in(inherited: &HashMap<RawFd, Identity>, fd: RawFd) -> bool {
    inherited
        .get(&fd)
        .is_some_and(|id| identity(fd).as_ref() == Some(id))
}

fn proc_fd(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn identity(fd: RawFd) -> Option<Identity> {
    fs::metadata(proc_fd(fd)).ok().map(|m| (m.dev(), m.ino()))
}

/// The numbers in `/proc/self/fd`, sorted. The directory's own descriptor is
/// among them; it is closed when this returns, so callers skip numbers that
/// are no longer open.
fn list_fds() -> io::Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        if let Some(Ok(fd)) = entry?.file_name().to_str().map(str::parse) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// Lists every open file descriptor of the process, stdio and inherited
/// ones included, classified as in the checkpoint check.
pub fn open_fds() -> io::Result<Vec<FdInfo>> {
    ensure_inherited_recorded();
    let mut sockets = None;
    Ok(list_fds()?
        .into_iter()
        .filter_map(|fd| classify(fd, &mut sockets))
        .collect())
}

/// What the checkpoint check found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// One problem per descriptor that may not stay open.
    pub(crate) problems: Vec<CheckpointProblem>,
    /// The descriptors resource policies hand to the engine, and how.
    pub(crate) policies: Vec<(RawFd, FdPolicy)>,
}

/// The checkpoint check. A descriptor passes if a resource policy applies
/// `close`, `ignore` or `reopen` to it, or if no policy matches it and the
/// engine carries it; an `error` policy refuses it even if the engine could
/// carry it.
pub(crate) fn check(
    carried: impl FnOnce(&[(RawFd, FdPolicy)]) -> Box<dyn Fn(RawFd) -> bool>,
    policies: &Policies,
) -> Checked {
    ensure_inherited_recorded();
    let fds = match list_fds() {
        Ok(fds) => fds,
        Err(e) => {
            return Checked {
                problems: vec![CheckpointProblem::FdCheck(e)],
                policies: Vec::new(),
            }
        }
    };
    let mut sockets = None;
    let mut checked = Checked::default();
    // Policies first: what the engine carries may depend on what they do
    // with other descriptors (an epoll whose target a policy closes).
    let mut defaults = Vec::new();
    for info in fds
        .into_iter()
        .filter(|&fd| fd > 2 && !is_inherited(fd) && !is_own(fd))
        .filter_map(|fd| classify(fd, &mut sockets))
    {
        match policies.decide(&info) {
            Decision::Default => defaults.push(info),
            Decision::Apply(policy, _) => checked.policies.push((info.fd, policy)),
            Decision::Refuse(reason, rule) => {
                checked
                    .problems
                    .push(CheckpointProblem::RefusedByPolicy { info, rule, reason });
            }
        }
    }
    let carries = carried(&checked.policies);
    for info in defaults {
        if !carries(info.fd) {
            checked.problems.push(CheckpointProblem::OpenFd(info));
        }
    }
    checked
}

/// Classifies `fd`, or returns `None` if it is no longer open. The socket
/// table is read on the first socket.
fn classify(fd: RawFd, sockets: &mut Option<SocketTable>) -> Option<FdInfo> {
    let link = proc_fd(fd);
    let target = match fs::read_link(&link) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(_) => PathBuf::from("?"),
    };
    let text = target.to_string_lossy();
    let bracketed = |prefix: &str| -> Option<u64> {
        text.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
    };
    let kind = if let Some(inode) = bracketed("socket:[") {
        FdKind::Socket(sockets.get_or_insert_with(SocketTable::load).get(inode))
    } else if let Some(inode) = bracketed("pipe:[") {
        FdKind::Pipe { inode }
    } else if let Some(anon) = text.strip_prefix("anon_inode:") {
        match anon {
            "[eventfd]" => FdKind::EventFd,
            "[eventpoll]" => FdKind::Epoll,
            "[timerfd]" => FdKind::TimerFd,
            "[signalfd]" => FdKind::SignalFd,
            "inotify" | "[inotify]" => FdKind::Inotify,
            _ => FdKind::Other { target },
        }
    } else if let Some(name) = text.strip_prefix("/memfd:") {
        FdKind::Memfd {
            name: name.strip_suffix(" (deleted)").unwrap_or(name).to_owned(),
        }
    } else {
        classify_by_stat(&link, target)
    };
    Some(FdInfo { fd, kind })
}

fn classify_by_stat(link: &Path, target: PathBuf) -> FdKind {
    let Ok(meta) = fs::metadata(link) else {
        return FdKind::Other { target };
    };
    let file_type = meta.file_type();
    if file_type.is_file() {
        let deleted = meta.nlink() == 0;
        let path = if deleted {
            strip_deleted(target)
        } else {
            target
        };
        FdKind::RegularFile { path, deleted }
    } else if file_type.is_dir() {
        FdKind::Directory { path: target }
    } else if file_type.is_fifo() {
        FdKind::Fifo { path: target }
    } else if file_type.is_char_device() {
        FdKind::CharDevice { path: target }
    } else if file_type.is_block_device() {
        FdKind::BlockDevice { path: target }
    } else {
        FdKind::Other { target }
    }
}

fn strip_deleted(target: PathBuf) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    match target.as_os_str().as_bytes().strip_suffix(b" (deleted)") {
        Some(path) => PathBuf::from(std::ffi::OsString::from_vec(path.to_vec())),
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_display() {
        let cases = [
            (
                FdKind::RegularFile {
                    path: "/tmp/out.txt".into(),
                    deleted: false,
                },
                "/tmp/out.txt (regular file)",
            ),
            (
                FdKind::RegularFile {
                    path: "/tmp/gone".into(),
                    deleted: true,
                },
                "/tmp/gone (regular file, deleted)",
            ),
            (FdKind::Pipe { inode: 7 }, "pipe:[7] (pipe)"),
            (
                FdKind::Other {
                    target: "anon_inode:[pidfd]".into(),
                },
                "anon_inode:[pidfd] (other)",
            ),
        ];
        for (kind, text) in cases {
            assert_eq!(kind.to_string(), text);
        }
        let info = FdInfo {
            fd: 4,
            kind: FdKind::Epoll,
        };
        assert_eq!(info.to_string(), "file descriptor 4: epoll");
    }

    #[test]
    fn stdio_is_listed() {
        let fds = open_fds().unwrap();
        assert!(fds.iter().any(|f| f.fd() == 0), "{fds:?}");
        assert!(fds.iter().all(|f| f.fd() >= 0));
    }

    #[test]
    fn a_reused_number_is_not_inherited() {
        let file = tempfile::tempfile().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let same: HashMap<_, _> = [(fd, identity(fd).unwrap())].into();
        assert!(is_inherited_in(&same, fd));
        let other = tempfile::tempfile().unwrap();
        let other_id = identity(std::os::fd::AsRawFd::as_raw_fd(&other)).unwrap();
        let reused: HashMap<_, _> = [(fd, other_id)].into();
        assert!(!is_inherited_in(&reused, fd));
        assert!(!is_inherited_in(&HashMap::new(), fd));
    }

    #[test]
    fn deleted_suffix_is_stripped() {
        assert_eq!(
            strip_deleted("/tmp/a (deleted)".into()),
            PathBuf::from("/tmp/a")
        );
        assert_eq!(strip_deleted("/tmp/a".into()), PathBuf::from("/tmp/a"));
    }
}
