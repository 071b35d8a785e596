//! The [`Resource`] trait and the closure form of a resource.

use std::fmt;
use std::panic::Location;

use crate::context::Context;

/// Any error a hook may return. `?` converts every `std::error::Error +
/// Send + Sync` (and `String`/`&str`) into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Something that must be told about a checkpoint: CRaC's `Resource`.
///
/// Register it in a [`Context`], usually the [global
/// one](crate::global_context). `before_checkpoint` should release what
/// cannot survive a checkpoint (close files and sockets, stop threads that
/// hold them); `after_restore` re-acquires it.
///
/// * Both hooks of one checkpoint run on the thread that called
///   [`checkpoint_restore`](crate::checkpoint_restore); other threads keep
///   running, so guard shared state.
/// * `after_restore` also runs when the checkpoint failed, even if this
///   resource's own `before_checkpoint` failed.
/// * An error (or a panic) does not stop the other resources from being
///   notified; it becomes one entry of the
///   [`CheckpointError`](crate::CheckpointError) or
///   [`RestoreError`](crate::RestoreError).
pub trait Resource: Send + Sync {
    /// Called before the checkpoint, with the context that notifies it.
    fn before_checkpoint(&self, context: &Context) -> Result<(), BoxError>;

    /// Called after the restore, or after a failed checkpoint, with the
    /// context that notifies it.
    fn after_restore(&self, context: &Context) -> Result<(), BoxError>;

    /// How errors name this resource: its type name by default.
    fn name(&self) -> String {
        std::any::type_name::<Self>().to_owned()
    }
}

/// The closure form of a resource, made by [`Context::register_fn`].
pub(crate) struct FnResource<B, A> {
    pub(crate) before: B,
    pub(crate) after: A,
    pub(crate) location: &'static Location<'static>,
}

impl<B, A> Resource for FnResource<B, A>
where
    B: Fn(&Context) -> Result<(), BoxError> + Send + Sync,
    A: Fn(&Context) -> Result<(), BoxError> + Send + Sync,
{
    fn before_checkpoint(&self, context: &Context) -> Result<(), BoxError> {
        (self.before)(context)
    }

    fn after_restore(&self, context: &Context) -> Result<(), BoxError> {
        (self.after)(context)
    }

    /// `closure registered at FILE:LINE:COLUMN`.
    fn name(&self) -> String {
        format!("closure registered at {}", self.location)
    }
}

impl<B, A> fmt::Debug for FnResource<B, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnResource")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}
