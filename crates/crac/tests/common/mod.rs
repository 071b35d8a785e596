//! Helpers shared by the integration tests.
//!
//! The configuration (environment), the global context and the set of open
//! descriptors are process-wide, so every test takes [`lock`] first.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crac::{BoxError, CheckpointError, CheckpointRestoreError, Context, Resource};

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of one binary and initialises the library.
pub fn lock() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    crac::init();
    guard
}

/// Configures `engine` with the image directory `dir`.
pub fn configure(engine: &str, dir: &Path) {
    std::env::set_var("CRAC_ENGINE", engine);
    std::env::set_var("CRAC_CHECKPOINT_TO", dir);
    std::env::remove_var("CRAC_ENGINE_OPTIONS");
    std::env::remove_var("CRAC_RESOURCE_POLICIES");
}

/// A context registered weakly in the global one: gone when the test drops it.
pub fn scoped_context() -> Arc<Context> {
    let ctx = Arc::new(Context::new());
    let weak: std::sync::Weak<dyn Resource> = Arc::downgrade(&ctx) as _;
    crac::global_context().register_weak(weak);
    ctx
}

pub type Log = Arc<Mutex<Vec<String>>>;

pub fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// Records its notifications as `NAME-before` / `NAME-after`; fails on demand
/// with `NAME refused` / `NAME after failed`.
pub struct Recorder {
    pub name: &'static str,
    pub log: Log,
    pub fail_before: bool,
    pub fail_after: bool,
}

impl Recorder {
    pub fn new(name: &'static str, log: &Log) -> Arc<Self> {
        Self::failing(name, log, false, false)
    }

    pub fn failing(name: &'static str, log: &Log, before: bool, after: bool) -> Arc<Self> {
        Arc::new(Recorder {
            name,
            log: Arc::clone(log),
            fail_before: before,
            fail_after: after,
        })
    }
}

impl Resource for Recorder {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}-before", self.name));
        if self.fail_before {
            return Err(format!("{} refused", self.name).into());
        }
        Ok(())
    }

    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}-after", self.name));
        if self.fail_after {
            return Err(format!("{} after failed", self.name).into());
        }
        Ok(())
    }

    fn name(&self) -> String {
        self.name.to_owned()
    }
}

/// Runs a checkpoint that must fail before the engine; returns its error.
pub fn checkpoint_error() -> CheckpointError {
    match crac::checkpoint_restore() {
        Err(CheckpointRestoreError::Checkpoint(e)) => e,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

/// The problems of a failed checkpoint, as messages.
pub fn problem_messages(e: &CheckpointError) -> Vec<String> {
    e.problems()
        .map(|p| {
            let mut s = p.to_string();
            let mut source = std::error::Error::source(p);
            while let Some(inner) = source {
                s.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            s
        })
        .collect()
}
