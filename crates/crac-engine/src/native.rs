//! The native engine: dump the calling process to an image directory.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::dump::fds::FdPolicy;

/// What the native engine is asked to do.
#[derive(Clone, Default)]
pub struct DumpOptions {
    /// Final image directory (already `%p`-expanded).
    pub dir: PathBuf,
    /// Keep running after the image is durable instead of exiting.
    pub leave_running: bool,
    /// Called once the image is complete, synced and renamed into place,
    /// right before the process exits (or the threads are released). Other
    /// threads may still be stopped, possibly holding the allocator's lock:
    /// the callback must not allocate (a `write` to a socket is fine). With
    /// `leave_running` the threads usually run again already (a copy of the
    /// process wrote the image).
    pub on_durable: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
    /// Resource policies for single descriptors (CRaC's `close`, `ignore`,
    /// `reopen`), overriding the engine's default for those numbers.
    pub fd_policies: Vec<(i32, FdPolicy)>,
    /// How the page data is stored (image format 1.4 for a compressed one).
    pub compress: Compression,
}

/// Compression of the page data, per 64 KiB piece (`CRAC_ENGINE_OPTIONS`'s
/// `compress=none|lz4|zstd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as it is (written straight from memory).
    #[default]
    None,
    /// LZ4 blocks: fast, for dump and restore speed.
    Lz4,
    /// Zstandard, level 1: smaller images.
    Zstd,
}

impl Compression {
    /// The option's value: `none`, `lz4` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses an option value.
    pub fn from_name(s: &str) -> Option<Compression> {
        Some(match s {
            "none" => Compression::None,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

impl std::fmt::Debug for DumpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpOptions")
            .field("dir", &self.dir)
            .field("leave_running", &self.leave_running)
            .field("on_durable", &self.on_durable.is_some())
            .field("fd_policies", &self.fd_policies)
            .field("compress", &self.compress)
            .finish()
    }
}

/// How [`checkpoint`] returned.
#[derive(Debug)]
pub enum DumpOutcome {
    /// This is the restored process.
    Restored(RestoreFacts),
    /// The image is complete and durable and the process kept running
    /// (`leave_running`).
    LeftRunning {
        /// How long the program's threads were stopped: until the
        /// copy-on-write copy was made (a live checkpoint), or the whole
        /// dump (a process dumped in place).
        paused: Duration,
    },
}

/// Facts handed to a restored process by the restorer.
#[derive(Debug, Clone, Default)]
pub struct RestoreFacts {
    /// Wall-clock time (ns since the Unix epoch) when `crac restore` started.
    pub restore_started_unix_ns: u64,
    /// Wall-clock time (ns since the Unix epoch) when the process resumed.
    pub resumed_unix_ns: u64,
    /// Environment values the restoring side asked for (`crac restore --env`).
    pub env: Vec<(OsString, OsString)>,
}

/// Why a dump failed. The process keeps running after any of these, and no
/// image (not even a partial one) is left behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// The image directory's parent does not exist.
    #[error("cannot create image directory {}: its parent directory does not exist", dir.display())]
    NoParent {
        /// The image directory.
        dir: PathBuf,
    },
    /// Creating the temporary image directory failed.
    #[error("cannot create the image next to {}", dir.display())]
    CreateImage {
        /// The image directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading the process's own state from /proc failed.
    #[error("cannot read the process state from /proc")]
    Gather {
        /// The underlying error.
        source: std::io::Error,
    },
    /// The threads do not share their credentials (the image can hold one
    /// set for all).
    #[error("thread {tid} has other {what} than the dumping thread: a process whose threads differ in credentials cannot be checkpointed")]
    MixedCredentials {
        /// The differing thread.
        tid: u32,
        /// Which part differs.
        what: &'static str,
    },
    /// Stopping the other threads failed.
    #[error("cannot stop the other threads: {what} failed with {errno}")]
    Stop {
        /// The step.
        what: &'static str,
        /// The errno.
        errno: crac_sys::Errno,
    },
    /// A thread did not reach the stop handler.
    #[error("thread {tid} did not stop within 5 s (does it block signal {signal}?)")]
    ThreadDidNotStop {
        /// The thread.
        tid: u32,
        /// The stop signal.
        signal: i32,
    },
    /// An epoll the open-descriptor check let pass could not be carried,
    /// three times in a row: its targets kept changing (descriptors opened
    /// or closed during the checkpoint).
    #[error("descriptor {fd} (epoll) cannot be carried: what it watches changed during the checkpoint (e.g. a new connection the engine does not carry)")]
    EpollTargetNotCarried {
        /// The epoll's descriptor.
        fd: i32,
    },
    /// The process changed while it was being dumped, three times in a row.
    #[error("the process kept changing during the dump: {what}")]
    Changed {
        /// What changed.
        what: &'static str,
    },
    /// A mapping the engine cannot restore.
    #[error("mapping {start:#x}-{end:#x} ({name}) is shared memory without a file behind it, which this engine cannot restore")]
    UnsupportedMapping {
        /// Start address.
        start: u64,
        /// End address.
        end: u64,
        /// Name in /proc/self/maps.
        name: String,
    },
    /// The metadata did not fit the buffer sized before the stop.
    #[error("the image metadata needs {needed} bytes, more than was reserved")]
    MetadataTooLarge {
        /// Bytes needed.
        needed: usize,
    },
    /// The memory of the last (lazy) restore was still loading.
    #[error("the memory of the last restore is still being loaded by crac restore after {secs} s")]
    StillLoading {
        /// How long the dump waited.
        secs: u64,
    },
    /// The copy of the process that writes a live checkpoint's image ended
    /// without committing it.
    #[error("the process writing the image (PID {pid}, a copy of this one) {how} before the image was complete")]
    WriterDied {
        /// Its PID.
        pid: i32,
        /// How it ended ("was killed by SIGKILL").
        how: String,
    },
    /// A system call failed while writing the image.
    #[error("cannot {what}: {errno}")]
    Io {
        /// The step.
        what: &'static str,
        /// The errno.
        errno: crac_sys::Errno,
    },
}

/// Dumps the calling process into `opts.dir`.
///
/// Returns in the restored process ([`DumpOutcome::Restored`]) or, with
/// `leave_running`, in the original one. Without `leave_running` a successful
/// dump ends the process (exit status 0) and never returns.
pub fn checkpoint(opts: &DumpOptions) -> Result<DumpOutcome, DumpError> {
    crate::dump::checkpoint(opts)
}

/// The descriptors the native engine carries across a checkpoint by default
/// (see `dump::fds` for the kinds), sorted. The open-descriptor check lets
/// them pass.
pub fn carried_fds() -> Vec<i32> {
    crate::dump::fds::carried(&[])
}

/// The descriptors the native engine carries when resource policies apply
/// `policies` (descriptor, action) to some: an epoll is carried only if all
/// its targets are, and a target a policy closes or ignores is.
pub fn carried_fds_under(policies: &[(i32, FdPolicy)]) -> Vec<i32> {
    crate::dump::fds::carried(policies)
}

/// Whether the native engine carries descriptor `fd` across a checkpoint by
/// default.
pub fn carries_fd(fd: i32) -> bool {
    carried_fds().binary_search(&fd).is_ok()
}
