//! The engines behind [`checkpoint_restore`](crate::checkpoint_restore).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crac_engine::native::{self, DumpOptions, DumpOutcome, FdPolicy, RestoreFacts};

use crate::config::{Config, EngineKind};
use crate::resource::BoxError;

/// How an engine's checkpoint returned.
pub(crate) enum Outcome {
    /// This process is the restored one (or, for `simulate` and `pause`,
    /// behaves as if it were).
    Restored(RestoreFacts),
    /// The image was made and the original process kept running, its
    /// threads stopped for `paused`.
    KeptRunning { paused: Duration },
}

/// What the caller of one checkpoint asks for beyond the
/// [configuration](Config): the control channel (`crac checkpoint PID
/// [--leave-running]`) sets it; [`checkpoint_restore`](crate::checkpoint_restore)
/// uses the default.
#[derive(Clone, Default)]
pub(crate) struct Request {
    /// Keep the process running once the image is written, whatever the
    /// `keep_running` option says (native engine).
    pub(crate) leave_running: bool,
    /// Called once the image is complete and durable, before the process
    /// exits or its threads are released (native engine). Must not allocate.
    pub(crate) on_durable: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Called with how long the threads were stopped, once the process kept
    /// running after its image was made (native engine).
    pub(crate) on_kept_running: Option<Arc<dyn Fn(Duration) + Send + Sync>>,
    /// This checkpoint's image directory instead of `CRAC_CHECKPOINT_TO`'s
    /// (`crac checkpoint PID --to DIR`).
    pub(crate) dir: Option<std::path::PathBuf>,
}

/// What an engine does at a checkpoint.
pub(crate) trait Engine: Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Which descriptors the engine carries across the checkpoint, so that
    /// the open-descriptor check lets them pass: asked once per check.
    /// stdio always passes without asking. `simulate` and `pause` keep the
    /// process alive and could carry everything, but like CRaC the check
    /// applies to every engine.
    fn carried(&self, policies: &[(RawFd, FdPolicy)]) -> Box<dyn Fn(RawFd) -> bool> {
        let _ = policies;
        Box::new(|_| false)
    }

    /// Makes the checkpoint. Called after the hooks and the open-descriptor
    /// check passed, with the checkpoint lock held. `fd_policies` are the
    /// resource policies the check applied (descriptor, action).
    fn checkpoint(
        &self,
        config: &Config,
        request: &Request,
        fd_policies: &[(i32, FdPolicy)],
    ) -> Result<Outcome, BoxError>;
}

/// The engine for `kind`.
pub(crate) fn engine(kind: EngineKind) -> &'static dyn Engine {
    match kind {
        EngineKind::Native => &Native,
        EngineKind::Simulate => &Simulate,
        EngineKind::Pause => &Pause,
    }
}

struct Native;

impl Engine for Native {
    fn kind(&self) -> EngineKind {
        EngineKind::Native
    }

    /// The native engine says which descriptors it carries.
    fn carried(&self, policies: &[(RawFd, FdPolicy)]) -> Box<dyn Fn(RawFd) -> bool> {
        let fds = native::carried_fds_under(policies);
        Box::new(move |fd| fds.binary_search(&fd).is_ok())
    }

    fn checkpoint(
        &self,
        config: &Config,
        request: &Request,
        fd_policies: &[(i32, FdPolicy)],
    ) -> Result<Outcome, BoxError> {
        let options = DumpOptions {
            dir: config.checkpoint_to().to_owned(),
            leave_running: config.keep_running() || request.leave_running,
            on_durable: request.on_durable.clone(),
            fd_policies: fd_policies.to_vec(),
            compress: config.compress(),
        };
        match native::checkpoint(&options)? {
            DumpOutcome::Restored(facts) => Ok(Outcome::Restored(facts)),
            DumpOutcome::LeftRunning { paused } => Ok(Outcome::KeptRunning { paused }),
        }
    }
}

struct Simulate;

impl Engine for Simulate {
    fn kind(&self) -> EngineKind {
        EngineKind::Simulate
    }

    /// Policies do nothing here: the process keeps its descriptors.
    fn checkpoint(
        &self,
        _config: &Config,
        _request: &Request,
        _fd_policies: &[(i32, FdPolicy)],
    ) -> Result<Outcome, BoxError> {
        let now = unix_ns_now();
        Ok(Outcome::Restored(RestoreFacts {
            restore_started_unix_ns: now,
            resumed_unix_ns: now,
            env: Vec::new(),
        }))
    }
}

struct Pause;

impl Engine for Pause {
    fn kind(&self) -> EngineKind {
        EngineKind::Pause
    }

    /// Policies do nothing here: the process keeps its descriptors.
    fn checkpoint(
        &self,
        config: &Config,
        _request: &Request,
        _fd_policies: &[(i32, FdPolicy)],
    ) -> Result<Outcome, BoxError> {
        Ok(Outcome::Restored(crac_engine::pause::pause(
            config.checkpoint_to(),
        )?))
    }
}

pub(crate) fn unix_ns_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
