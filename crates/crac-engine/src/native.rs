//! The native engine: dump the calling process to an image directory.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the native engine is asked to do.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Final image directory (already `%p`-expanded).
    pub dir: PathBuf,
    /// Keep running after the image is durable instead of exiting.
    pub leave_running: bool,
}

/// How [`checkpoint`] returned.
#[derive(Debug)]
pub enum DumpOutcome {
    /// This is the restored process.
    Restored(RestoreFacts),
    /// The image is complete and durable and the process kept running
    /// (`leave_running`).
    LeftRunning,
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

/// Why a dump failed. The process keeps running after any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// Not yet available.
    #[error("the native engine is not available in this build")]
    Unavailable,
}

/// Dumps the calling process into `opts.dir`.
///
/// Returns in the restored process ([`DumpOutcome::Restored`]) or, with
/// `leave_running`, in the original one. Without `leave_running` a successful
/// dump ends the process (exit status 0) and never returns.
pub fn checkpoint(opts: &DumpOptions) -> Result<DumpOutcome, DumpError> {
    let _ = opts;
    Err(DumpError::Unavailable)
}
