//! Errors of [`checkpoint_restore`](crate::checkpoint_restore).
//!
//! Like CRaC's `CheckpointException` and `RestoreException`, the two errors are
//! aggregates: they carry a list of problems and no source of their own. Their
//! `Display` is one line that lists every problem, each followed by its source
//! chain (`problem: source: source of source`), separated by `; `:
//!
//! ```text
//! checkpoint failed: file descriptor 4 is open: /tmp/out.txt (regular file, deleted); \
//!     close it in before_checkpoint or add a resource policy (type: file, action: close)
//! checkpoint failed with 2 problems: resource app::Db failed in before_checkpoint: \
//!     connection busy; file descriptor 4 is open: /tmp/out.txt (regular file, deleted); …
//! ```
//!
//! The alternate form (`{:#}`) puts each problem on its own line instead.

use std::error::Error;
use std::fmt;
use std::io;

use crate::config::ConfigError;
use crate::fds::FdInfo;
use crate::policy::{PolicyError, PolicyRefusal, RuleRef};
use crate::resource::BoxError;

/// The two notification phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// [`Resource::before_checkpoint`](crate::Resource::before_checkpoint).
    BeforeCheckpoint,
    /// [`Resource::after_restore`](crate::Resource::after_restore).
    AfterRestore,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::BeforeCheckpoint => "before_checkpoint",
            Phase::AfterRestore => "after_restore",
        })
    }
}

/// A resource's hook returned an error (or panicked).
///
/// Displays as `resource NAME failed in PHASE`; the hook's error is the
/// [`source`](Error::source). `NAME` is [`Resource::name`](crate::Resource::name).
#[derive(Debug)]
pub struct HookFailure {
    resource: String,
    phase: Phase,
    source: BoxError,
}

impl HookFailure {
    pub(crate) fn new(resource: String, phase: Phase, source: BoxError) -> Self {
        HookFailure {
            resource,
            phase,
            source,
        }
    }

    /// The failing resource's [name](crate::Resource::name).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The hook that failed.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The error the hook returned.
    pub fn error(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.source
    }

    /// Takes the error the hook returned.
    pub fn into_error(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resource {} failed in {}", self.resource, self.phase)
    }
}

impl Error for HookFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The source of a [`HookFailure`] whose hook panicked.
#[derive(Debug)]
pub struct HookPanicked {
    message: String,
}

impl HookPanicked {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic payload".to_owned()
        };
        HookPanicked { message }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HookPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.message)
    }
}

impl Error for HookPanicked {}

/// One reason a checkpoint failed. See [`CheckpointError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointProblem {
    /// A resource's `before_checkpoint` failed, or its `after_restore`
    /// failed while the failed checkpoint was being rolled back.
    #[error(transparent)]
    Hook(HookFailure),
    /// A file descriptor that no one may carry across a checkpoint is open:
    /// `file descriptor N is open: DESCRIPTION; close it in before_checkpoint
    /// or add a resource policy (type: KIND, action: close)` (see
    /// [`FdKind`](crate::FdKind) for the descriptions and
    /// [`policy`](crate::policy) for the policies).
    #[error("file descriptor {} is open: {}; {}", .0.fd(), .0.kind(), crate::policy::hint(.0))]
    OpenFd(FdInfo),
    /// A [resource policy](crate::policy) refused an open descriptor (even
    /// one the engine could carry): `file descriptor N is open: DESCRIPTION;
    /// the resource policy on lines 4-6 of FILE refuses it (action: error)`.
    #[error("file descriptor {} is open: {}; the resource policy on {rule} {reason}",
        .info.fd(), .info.kind())]
    RefusedByPolicy {
        /// The descriptor.
        info: FdInfo,
        /// The rule that refused it.
        rule: RuleRef,
        /// Why.
        reason: PolicyRefusal,
    },
    /// The resource policies file is missing or invalid; no resource was
    /// notified. One problem per invalid rule.
    #[error(transparent)]
    Policy(PolicyError),
    /// The open file descriptors could not be listed.
    #[error("cannot list open file descriptors in /proc/self/fd")]
    FdCheck(#[source] io::Error),
    /// The engine failed to make the image.
    #[error("engine {engine} failed")]
    Engine {
        /// The engine's name (`native`, `simulate`, `pause`).
        engine: &'static str,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// Checkpointing is not configured or misconfigured; no resource was
    /// notified.
    #[error(transparent)]
    Config(ConfigError),
    /// [`checkpoint_restore`](crate::checkpoint_restore) was called from a
    /// resource's hook.
    #[error(
        "recursive checkpoint is not allowed: checkpoint_restore was called \
         from a before_checkpoint or after_restore hook"
    )]
    Recursive,
}

/// A checkpoint failed; the process goes on running.
///
/// Every resource that got `before_checkpoint` also got `after_restore`. The
/// error lists every problem found: failed hooks (of nested contexts too,
/// flattened), open file descriptors and the engine's failure, in that order,
/// followed by `after_restore` failures of the rollback.
///
/// Like CRaC's `CheckpointException` it is an aggregate with no source of
/// its own. `Display` is one line listing every problem, each followed by its
/// source chain (`problem: source: source of source`), separated by `; `:
///
/// ```text
/// checkpoint failed: file descriptor 4 is open: /tmp/out.txt (regular file, deleted); \
///     close it in before_checkpoint or add a resource policy (type: file, action: close)
/// checkpoint failed with 2 problems: resource app::Db failed in before_checkpoint: \
///     connection busy; file descriptor 4 is open: /tmp/out.txt (regular file, deleted); …
/// ```
///
/// The alternate form (`{:#}`) puts each problem on its own line instead.
#[derive(Debug)]
pub struct CheckpointError {
    problems: Vec<CheckpointProblem>,
}

impl CheckpointError {
    pub(crate) fn new(problems: Vec<CheckpointProblem>) -> Self {
        debug_assert!(!problems.is_empty());
        CheckpointError { problems }
    }

    /// The problems, in the order they were found. Never empty.
    pub fn problems(&self) -> std::slice::Iter<'_, CheckpointProblem> {
        self.problems.iter()
    }

    /// Takes the problems.
    pub fn into_problems(self) -> Vec<CheckpointProblem> {
        self.problems
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_aggregate(f, "checkpoint failed", &self.problems)
    }
}

impl Error for CheckpointError {}

/// One reason the hooks after a restore failed. See [`RestoreError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreProblem {
    /// A resource's `after_restore` failed.
    #[error(transparent)]
    Hook(HookFailure),
}

/// The checkpoint succeeded but `after_restore` hooks failed.
///
/// Returned in the restored process (or in the original one when the engine
/// kept it running). Every resource got `after_restore`; the error lists each
/// failure (of nested contexts too, flattened). Displayed like
/// [`CheckpointError`]: `restore failed: …` or
/// `restore failed with N problems: …; …`.
#[derive(Debug)]
pub struct RestoreError {
    problems: Vec<RestoreProblem>,
}

impl RestoreError {
    pub(crate) fn new(problems: Vec<RestoreProblem>) -> Self {
        debug_assert!(!problems.is_empty());
        RestoreError { problems }
    }

    /// The problems, in the order they were found. Never empty.
    pub fn problems(&self) -> std::slice::Iter<'_, RestoreProblem> {
        self.problems.iter()
    }

    /// Takes the problems.
    pub fn into_problems(self) -> Vec<RestoreProblem> {
        self.problems
    }
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_aggregate(f, "restore failed", &self.problems)
    }
}

impl Error for RestoreError {}

/// Why [`checkpoint_restore`](crate::checkpoint_restore) failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointRestoreError {
    /// No checkpoint was made; this is the original process.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint was made and this process was restored (or kept
    /// running), but `after_restore` hooks failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

impl CheckpointRestoreError {
    /// The checkpoint error, if this is one.
    pub fn as_checkpoint(&self) -> Option<&CheckpointError> {
        match self {
            CheckpointRestoreError::Checkpoint(e) => Some(e),
            CheckpointRestoreError::Restore(_) => None,
        }
    }

    /// The restore error, if this is one.
    pub fn as_restore(&self) -> Option<&RestoreError> {
        match self {
            CheckpointRestoreError::Restore(e) => Some(e),
            CheckpointRestoreError::Checkpoint(_) => None,
        }
    }
}

fn write_aggregate<P: Error>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    problems: &[P],
) -> fmt::Result {
    let alternate = f.alternate();
    match problems.len() {
        1 => write!(f, "{what}: ")?,
        n => write!(f, "{what} with {n} problems:")?,
    }
    for (i, problem) in problems.iter().enumerate() {
        if alternate && problems.len() > 1 {
            f.write_str("\n  - ")?;
        } else if problems.len() > 1 {
            f.write_str(if i == 0 { " " } else { "; " })?;
        }
        write_chain(f, problem)?;
    }
    Ok(())
}

/// Writes `error: source: source of source`.
fn write_chain(f: &mut fmt::Formatter<'_>, error: &dyn Error) -> fmt::Result {
    write!(f, "{error}")?;
    let mut source = error.source();
    while let Some(s) = source {
        write!(f, ": {s}")?;
        source = s.source();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, phase: Phase, msg: &str) -> HookFailure {
        HookFailure::new(name.to_owned(), phase, msg.into())
    }

    #[test]
    fn one_problem_is_one_line() {
        let e = CheckpointError::new(vec![CheckpointProblem::Hook(hook(
            "app::Db",
            Phase::BeforeCheckpoint,
            "busy",
        ))]);
        assert_eq!(
            e.to_string(),
            "checkpoint failed: resource app::Db failed in before_checkpoint: busy"
        );
        assert!(e.source().is_none());
    }

    #[test]
    fn several_problems_are_listed_with_their_sources() {
        let inner = io::Error::other("disk full");
        let e = CheckpointError::new(vec![
            CheckpointProblem::Hook(hook("a::A", Phase::BeforeCheckpoint, "x")),
            CheckpointProblem::Engine {
                engine: "native",
                source: Box::new(inner),
            },
            CheckpointProblem::Recursive,
        ]);
        assert_eq!(
            e.to_string(),
            "checkpoint failed with 3 problems: resource a::A failed in before_checkpoint: x; \
             engine native failed: disk full; recursive checkpoint is not allowed: \
             checkpoint_restore was called from a before_checkpoint or after_restore hook"
        );
        assert_eq!(e.problems().len(), 3);
    }

    #[test]
    fn alternate_form_uses_one_line_per_problem() {
        let e = RestoreError::new(vec![
            RestoreProblem::Hook(hook("a::A", Phase::AfterRestore, "x")),
            RestoreProblem::Hook(hook("b::B", Phase::AfterRestore, "y")),
        ]);
        assert_eq!(
            format!("{e:#}"),
            "restore failed with 2 problems:\n  - resource a::A failed in after_restore: x\
             \n  - resource b::B failed in after_restore: y"
        );
    }

    #[test]
    fn hook_failure_does_not_repeat_its_source() {
        let h = hook("a::A", Phase::AfterRestore, "boom");
        assert_eq!(h.to_string(), "resource a::A failed in after_restore");
        assert_eq!(h.source().unwrap().to_string(), "boom");
    }
}
