//! Coordinated Restore at Checkpoint for Rust programs, modelled on OpenJDK
//! CRaC.
//!
//! A program registers [`Resource`]s in the [global context](global_context)
//! and calls [`checkpoint_restore`]. The resources release what cannot
//! survive a checkpoint in [`Resource::before_checkpoint`] (files, sockets,
//! threads holding them) and take it back in [`Resource::after_restore`].
//! The engine then saves the process to an image; `checkpoint_restore`
//! returns in the restored process (or in the original one if the engine
//! kept it running).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use crac::{BoxError, Context, Resource};
//!
//! /// A log file that is closed across checkpoints.
//! struct Log {
//!     file: Mutex<Option<std::fs::File>>,
//! }
//!
//! impl Resource for Log {
//!     fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
//!         self.file.lock().unwrap().take(); // close it
//!         Ok(())
//!     }
//!
//!     fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
//!         let file = std::fs::File::options()
//!             .append(true)
//!             .create(true)
//!             .open(std::env::temp_dir().join("crac-doc.log"))?;
//!         *self.file.lock().unwrap() = Some(file);
//!         Ok(())
//!     }
//! }
//!
//! crac::init(); // first thing in main: pins the inherited descriptors
//! let log = Arc::new(Log { file: Mutex::new(None) });
//! crac::global_context().register(log.clone());
//!
//! // Run with CRAC_CHECKPOINT_TO=/tmp/image (and CRAC_ENGINE=simulate to
//! // try it without the native engine).
//! match crac::checkpoint_restore() {
//!     Ok(()) => println!("restored {} time(s)", crac::restore_info().restore_count),
//!     Err(e) => eprintln!("{e}"), // e.g. checkpoints are not configured
//! }
//! ```
//!
//! # Semantics
//!
//! Exactly CRaC's (its `ContextOrderTest`, `FailedResourceTest`,
//! `RecursiveCheckpointTest` and `DryRunTest`):
//!
//! * Order: see [`Context`]; `before_checkpoint` last registered first,
//!   `after_restore` first registered first, nested contexts the same inside.
//! * Every resource is notified even when one fails; any failure aborts the
//!   checkpoint, every resource notified gets `after_restore`, and the caller
//!   gets **one** [`CheckpointError`] listing every failure, hook errors and
//!   open file descriptors together. The process goes on.
//! * The [open-descriptor check](fds) runs even when a hook failed, so all
//!   problems show at once.
//! * A successful checkpoint whose `after_restore` hooks fail returns a
//!   [`RestoreError`], in the restored process.
//! * Concurrent calls of [`checkpoint_restore`] are serialised; a call from
//!   inside a hook fails with [`CheckpointProblem::Recursive`].
//! * A restore applies the environment handed over by the restoring side
//!   (`std::env::set_var`) before `after_restore` runs.
//!
//! Configuration comes from the environment: see [`config`]. What a
//! checkpoint does with descriptors the program leaves open can be set per
//! descriptor with [resource policies](policy) (`CRAC_RESOURCE_POLICIES`).
//!
//! # Uniqueness
//!
//! Every restored copy of an image starts from the same memory, so state
//! meant to be unique (random generators, `HashMap` keys, UUID generators,
//! tokens) is the same in each. [`restore_generation`] changes with every
//! restore; with the feature `rand`, `crac::rand::rng()` is a thread
//! random number generator reseeded after every restore. See
//! `docs/uniqueness.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::cell::Cell;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, PoisonError};

pub mod config;
mod context;
pub mod control;
mod engine;
mod error;
pub mod fds;
mod net;
pub mod policy;
#[cfg(feature = "rand")]
pub mod rand;
mod resource;
mod runtime;

pub use config::{Config, ConfigError, EngineKind};
pub use context::Context;
pub use error::{
    CheckpointError, CheckpointProblem, CheckpointRestoreError, HookFailure, HookPanicked, Phase,
    RestoreError, RestoreProblem,
};
pub use fds::{open_fds, FdInfo, FdKind};
pub use net::{SocketInfo, TcpState, UnixSocketState, UnixSocketType};
pub use resource::{BoxError, Resource};
pub use runtime::{restore_generation, restore_info, RestoreInfo};

use engine::{Engine, Outcome, Request};
use policy::Policies;

/// The README's Rust snippets, compiled (and run, unless `no_run`) as
/// doctests so that they work as printed.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The snippets of `docs/uniqueness.md` (one needs `crac::rand`).
#[cfg(all(doctest, feature = "rand"))]
#[doc = include_str!("../../../docs/uniqueness.md")]
struct UniquenessDoctests;

static GLOBAL: Context = Context::empty();

/// Serialises checkpoints.
static CHECKPOINT_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set on the thread running a checkpoint's notifications.
    static IN_CHECKPOINT: Cell<bool> = const { Cell::new(false) };
}

/// Initialises the library: records the file descriptors open now as
/// inherited (see [`fds`]), unless they were recorded at process start.
///
/// Optional but recommended: call it first thing in `main`. Otherwise the
/// first use of the library records them, and whatever the program opened
/// before that passes the open-descriptor check. Calling it again does
/// nothing.
///
/// If `CRAC_RESTORE_FROM` names an image (CRaC's `-XX:CRaCRestoreFrom`),
/// `init` does not return: it restores that image instead, as a child that
/// gets this process's standard streams and environment, waits for it while
/// forwarding signals, and exits with its status (or dies of its signal). A
/// failed restore prints the reason and exits with status 1.
pub fn init() {
    if let Some(dir) = std::env::var_os(config::RESTORE_FROM_VAR).filter(|v| !v.is_empty()) {
        restore_instead(std::path::Path::new(&dir));
    }
    fds::ensure_inherited_recorded();
    control::start_if_configured();
}

/// `CRAC_RESTORE_FROM`: becomes the waiting parent of the restored image.
fn restore_instead(dir: &std::path::Path) -> ! {
    let env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != config::RESTORE_FROM_VAR)
        .collect();
    if crac_engine::pause::is_pause_image(dir) {
        match crac_engine::pause::wake(dir, &env) {
            Ok(_) => std::process::exit(0),
            Err(e) => exit_with_chain(&e),
        }
    }
    let opts = crac_engine::restore::RestoreOptions {
        env,
        ..Default::default()
    };
    match crac_engine::restore::restore(dir, opts) {
        Ok(mut restored) => match crac_engine::restore::wait_and_forward(restored.pid) {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt;
                // Children it forked may still be loading their memory.
                if let Err(e) = restored.finish() {
                    eprintln!("error: {e}");
                }
                if let Some(sig) = status.signal() {
                    // Die of the same signal, as the restored process did.
                    crac_engine::die_of_signal(sig);
                }
                std::process::exit(status.code().unwrap_or(1))
            }
            Err(e) => exit_with_chain(&e),
        },
        Err(e) => exit_with_chain(&e),
    }
}

fn exit_with_chain(e: &dyn std::error::Error) -> ! {
    eprintln!(
        "error: cannot restore from {}: {e}",
        config::RESTORE_FROM_VAR
    );
    let mut source = e.source();
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    std::process::exit(1)
}

/// The global context: CRaC's `Context.getGlobalContext()`.
pub fn global_context() -> &'static Context {
    fds::ensure_inherited_recorded();
    control::start_if_configured();
    &GLOBAL
}

/// Checkpoints the process; returns where the restored process resumes.
///
/// In order:
///
/// 1. Reads the [configuration](config). A configuration error (for example
///    [`ConfigError::NotConfigured`]) is returned before any resource is
///    notified.
/// 2. Notifies the [global context](global_context) with `before_checkpoint`.
/// 3. Runs the [open-descriptor check](fds), even if a hook failed.
/// 4. If nothing failed, runs the engine. On a restore it applies the
///    handed-over environment and updates [`restore_info`].
/// 5. Notifies the global context with `after_restore`, whatever happened.
///
/// # Errors
///
/// * [`CheckpointRestoreError::Checkpoint`]: no checkpoint was made; this
///   is the original process, which goes on running. The error lists every
///   problem: failed hooks, open descriptors, the engine's failure, then
///   `after_restore` failures.
/// * [`CheckpointRestoreError::Restore`]: the checkpoint was made, but
///   `after_restore` hooks failed in this (restored) process.
///
/// A call from inside a hook fails at once with
/// [`CheckpointProblem::Recursive`]; calls from other threads wait for the
/// running checkpoint to finish. A hook that waits for another thread which
/// calls `checkpoint_restore` deadlocks.
pub fn checkpoint_restore() -> Result<(), CheckpointRestoreError> {
    checkpoint_restore_with(&Request::default())
}

/// [`checkpoint_restore`] with the extras of a [`Request`]: used by the
/// control channel (`crac checkpoint PID`).
pub(crate) fn checkpoint_restore_with(request: &Request) -> Result<(), CheckpointRestoreError> {
    fds::ensure_inherited_recorded();
    control::start_if_configured();
    if IN_CHECKPOINT.get() {
        return Err(CheckpointError::new(vec![CheckpointProblem::Recursive]).into());
    }
    let _lock = CHECKPOINT_LOCK
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut config =
        Config::from_env().map_err(|e| CheckpointError::new(vec![CheckpointProblem::Config(e)]))?;
    if let Some(dir) = &request.dir {
        config.set_checkpoint_to(dir);
    }
    // Read at every checkpoint, so that an edited file (or, after a restore,
    // another file) applies.
    let policies = Policies::load(config.resource_policies()).map_err(|errors| {
        CheckpointError::new(errors.into_iter().map(CheckpointProblem::Policy).collect())
    })?;
    run(engine::engine(config.engine()), &config, &policies, request)
}

/// Steps 2 to 5 of [`checkpoint_restore`], with the checkpoint lock held.
fn run(
    engine: &dyn Engine,
    config: &Config,
    policies: &Policies,
    request: &Request,
) -> Result<(), CheckpointRestoreError> {
    let _in_checkpoint = InCheckpoint::enter();
    tracing::debug!(engine = %config.engine(), dir = %config.checkpoint_to().display(),
        "starting checkpoint");

    let mut problems = GLOBAL.notify_before();
    // The control channel's listener cannot survive a restore: closed for
    // the descriptor check and the engine, opened again when this guard
    // drops (in the restored process, in the one kept running, or after a
    // failure). Closed before the check, so that every connection the check
    // sees was accepted, and registered, before.
    let channel = control::close_for_checkpoint();
    let checked = fds::check(|applied| engine.carried(applied), policies);
    problems.extend(checked.problems);
    if problems.is_empty() {
        match engine.checkpoint(config, request, &checked.policies) {
            Ok(Outcome::Restored(facts)) => {
                apply_env(facts.env.iter());
                runtime::record_restore(&facts);
                policy::report_after_restore();
                tracing::debug!("restored");
            }
            Ok(Outcome::KeptRunning { paused }) => {
                tracing::debug!(?paused, "checkpoint made, kept running");
                if let Some(report) = &request.on_kept_running {
                    report(paused);
                }
            }
            Err(source) => problems.push(CheckpointProblem::Engine {
                engine: engine.kind().name(),
                source,
            }),
        }
    }
    drop(channel);
    let restore_problems = GLOBAL.notify_after();

    if !problems.is_empty() {
        problems.extend(restore_problems.into_iter().map(|p| match p {
            RestoreProblem::Hook(h) => CheckpointProblem::Hook(h),
        }));
        return Err(CheckpointError::new(problems).into());
    }
    if !restore_problems.is_empty() {
        return Err(RestoreError::new(restore_problems).into());
    }
    Ok(())
}

/// Marks the current thread as running a checkpoint until dropped.
struct InCheckpoint;

impl InCheckpoint {
    fn enter() -> Self {
        IN_CHECKPOINT.set(true);
        InCheckpoint
    }
}

impl Drop for InCheckpoint {
    fn drop(&mut self) {
        IN_CHECKPOINT.set(false);
    }
}

/// Sets the handed-over environment. Entries `set_var` would panic on are
/// skipped with a warning.
fn apply_env<'a>(env: impl Iterator<Item = &'a (OsString, OsString)>) {
    for (key, value) in env {
        let (k, v) = (key.as_bytes(), value.as_bytes());
        if k.is_empty() || k.contains(&b'=') || k.contains(&0) || v.contains(&0) {
            tracing::warn!(
                ?key,
                "skipping an invalid environment entry from the restore"
            );
            continue;
        }
        std::env::set_var(key, value);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use crac_engine::native::{DumpError, RestoreFacts};

    use super::*;

    /// An engine that carries every descriptor (so tests running in parallel
    /// do not disturb the check) and returns a canned outcome.
    struct Fake(fn() -> Result<Outcome, BoxError>);

    impl Engine for Fake {
        fn kind(&self) -> EngineKind {
            EngineKind::Native
        }
        fn carried(
            &self,
            _: &[(std::os::fd::RawFd, crac_engine::native::FdPolicy)],
        ) -> Box<dyn Fn(std::os::fd::RawFd) -> bool> {
            Box::new(|_| true)
        }
        fn checkpoint(
            &self,
            _: &Config,
            _: &Request,
            _: &[(i32, crac_engine::native::FdPolicy)],
        ) -> Result<Outcome, BoxError> {
            (self.0)()
        }
    }

    fn config() -> Config {
        Config::from_vars(
            |name| (name == config::CHECKPOINT_TO_VAR).then(|| "/nonexistent/image".into()),
            1,
        )
        .unwrap()
    }

    /// Runs one checkpoint with `engine`; returns the result, what
    /// `after_restore` saw in `CRAC_UNIT_ENV` and how many restores were
    /// counted.
    fn checkpoint_with(engine: Fake) -> (Result<(), CheckpointRestoreError>, Option<String>, u32) {
        let _lock = CHECKPOINT_LOCK
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = restore_info().restore_count;
        let ctx = Arc::new(Context::new());
        let weak: std::sync::Weak<dyn Resource> = Arc::downgrade(&ctx) as _;
        global_context().register_weak(weak);
        let seen = Arc::new(Mutex::new(None));
        let seen2 = Arc::clone(&seen);
        ctx.register_fn(
            |_| Ok(()),
            move |_| {
                *seen2.lock().unwrap() = Some(std::env::var("CRAC_UNIT_ENV").unwrap_or_default());
                Ok(())
            },
        );
        let result = run(
            &engine,
            &config(),
            &Policies::default(),
            &Request::default(),
        );
        let seen = seen.lock().unwrap().take();
        (result, seen, restore_info().restore_count - before)
    }

    #[test]
    fn engine_failure_is_a_checkpoint_problem() {
        let (result, seen, restores) = checkpoint_with(Fake(|| {
            Err(Box::new(DumpError::NoParent {
                dir: "/nonexistent/image".into(),
            }))
        }));
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "checkpoint failed: engine native failed: cannot create image directory \
             /nonexistent/image: its parent directory does not exist"
        );
        assert!(matches!(
            err.as_checkpoint().unwrap().problems().next(),
            Some(CheckpointProblem::Engine {
                engine: "native",
                ..
            })
        ));
        assert!(seen.is_some(), "after_restore ran after the failure");
        assert_eq!(restores, 0);
    }

    #[test]
    fn restore_applies_env_before_after_restore_and_counts() {
        let (result, seen, restores) = checkpoint_with(Fake(|| {
            Ok(Outcome::Restored(RestoreFacts {
                restore_started_unix_ns: 1_000,
                resumed_unix_ns: 2_000_000_000,
                env: vec![
                    ("CRAC_UNIT_ENV".into(), "restored".into()),
                    ("BAD=KEY".into(), "skipped".into()),
                ],
            }))
        }));
        result.unwrap();
        assert_eq!(seen.as_deref(), Some("restored"));
        assert_eq!(restores, 1);
        let info = restore_info();
        assert!(info.restored);
        assert_eq!(info.restore_time, Some(UNIX_EPOCH + Duration::from_secs(2)));
    }

    #[test]
    fn kept_running_is_not_a_restore() {
        let (result, seen, restores) = checkpoint_with(Fake(|| {
            Ok(Outcome::KeptRunning {
                paused: Duration::ZERO,
            })
        }));
        result.unwrap();
        assert!(seen.is_some(), "after_restore ran");
        assert_eq!(restores, 0);
    }
}
