//! [`Context`]: an ordered set of resources that is itself a resource.

use std::fmt;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::error::{
    CheckpointError, CheckpointProblem, HookFailure, HookPanicked, Phase, RestoreError,
    RestoreProblem,
};
use crate::resource::{BoxError, FnResource, Resource};

/// An ordered set of resources: CRaC's `Context` (its default
/// `OrderedContext` implementation).
///
/// A context is a [`Resource`], so contexts nest: register one context in
/// another (usually in the [global one](crate::global_context)) to notify a
/// group of resources together.
///
/// # Rules
///
/// * `before_checkpoint` runs in **reverse** registration order,
///   `after_restore` in registration order. A nested context notifies its own
///   resources in the same way when its turn comes.
/// * Every resource is notified even when another one fails. Each
///   resource notified with `before_checkpoint` gets `after_restore`, also
///   when the checkpoint fails.
/// * Errors of a nested context are flattened into its parent's list.
/// * Registration never blocks on a checkpoint in progress. A resource
///   registered during a notification is notified from the next checkpoint
///   on, unless it is registered into a context that has not run yet in the
///   current round: that context takes its list when its turn comes, so the
///   new resource is notified in this round.
/// * There is no unregistration. A resource registered with
///   [`register_weak`](Context::register_weak) is skipped once dropped; it is
///   held strongly from its `before_checkpoint` until its `after_restore`.
/// * Do not register a context into itself or into one of its descendants.
pub struct Context {
    state: Mutex<State>,
}

struct State {
    entries: Vec<Entry>,
    /// The resources notified by the running round, in registration order;
    /// taken by `after_restore`.
    round: Option<Vec<Arc<dyn Resource>>>,
}

enum Entry {
    Strong(Arc<dyn Resource>),
    Weak(Weak<dyn Resource>),
}

impl Entry {
    fn get(&self) -> Option<Arc<dyn Resource>> {
        match self {
            Entry::Strong(r) => Some(Arc::clone(r)),
            Entry::Weak(r) => r.upgrade(),
        }
    }
}

impl Context {
    /// Creates an empty context.
    pub fn new() -> Self {
        crate::fds::ensure_inherited_recorded();
        Self::empty()
    }

    pub(crate) const fn empty() -> Self {
        Context {
            state: Mutex::new(State {
                entries: Vec::new(),
                round: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Hooks never run under this lock, so poisoning only means a panic in
        // our own short critical sections; the state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `resource`, holding it strongly.
    ///
    /// Pass an `Arc<T>` for any `T: Resource`; it converts to
    /// `Arc<dyn Resource>` at the call.
    pub fn register(&self, resource: Arc<dyn Resource>) {
        self.lock().entries.push(Entry::Strong(resource));
    }

    /// Registers `resource` weakly (CRaC's default): once every strong
    /// reference is dropped, the resource is skipped.
    ///
    /// Pass `Arc::downgrade(&resource)`.
    pub fn register_weak(&self, resource: Weak<dyn Resource>) {
        self.lock().entries.push(Entry::Weak(resource));
    }

    /// Registers a resource made of two closures, held strongly. In errors it
    /// is named `closure registered at FILE:LINE:COLUMN` after the caller.
    ///
    /// ```
    /// crac::global_context().register_fn(
    ///     |_| {
    ///         println!("going down");
    ///         Ok(())
    ///     },
    ///     |_| Ok(()),
    /// );
    /// ```
    #[track_caller]
    pub fn register_fn<B, A>(&self, before_checkpoint: B, after_restore: A)
    where
        B: Fn(&Context) -> Result<(), BoxError> + Send + Sync + 'static,
        A: Fn(&Context) -> Result<(), BoxError> + Send + Sync + 'static,
    {
        self.register(Arc::new(FnResource {
            before: before_checkpoint,
            after: after_restore,
            location: Location::caller(),
        }));
    }

    /// Number of registered resources, counting weak ones still alive.
    pub fn len(&self) -> usize {
        self.lock()
            .entries
            .iter()
            .filter(|e| match e {
                Entry::Strong(_) => true,
                Entry::Weak(w) => w.strong_count() > 0,
            })
            .count()
    }

    /// Whether no live resource is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notifies every resource, last registered first. Returns the problems,
    /// nested contexts' problems flattened in.
    pub(crate) fn notify_before(&self) -> Vec<CheckpointProblem> {
        let round: Vec<Arc<dyn Resource>> = {
            let mut state = self.lock();
            state.entries.retain(|e| match e {
                Entry::Strong(_) => true,
                Entry::Weak(w) => w.strong_count() > 0,
            });
            let round: Vec<_> = state.entries.iter().filter_map(Entry::get).collect();
            state.round = Some(round.clone());
            round
        };
        let mut problems = Vec::new();
        for resource in round.iter().rev() {
            let Err(error) = call(resource, Phase::BeforeCheckpoint, self) else {
                continue;
            };
            match error.downcast::<CheckpointError>() {
                Ok(nested) => problems.extend(nested.into_problems()),
                Err(error) => problems.push(CheckpointProblem::Hook(HookFailure::new(
                    resource.name(),
                    Phase::BeforeCheckpoint,
                    error,
                ))),
            }
        }
        problems
    }

    /// Notifies the resources of the running round, first registered first.
    pub(crate) fn notify_after(&self) -> Vec<RestoreProblem> {
        let round = self.lock().round.take().unwrap_or_default();
        let mut problems = Vec::new();
        for resource in &round {
            let Err(error) = call(resource, Phase::AfterRestore, self) else {
                continue;
            };
            match error.downcast::<RestoreError>() {
                Ok(nested) => problems.extend(nested.into_problems()),
                Err(error) => problems.push(RestoreProblem::Hook(HookFailure::new(
                    resource.name(),
                    Phase::AfterRestore,
                    error,
                ))),
            }
        }
        problems
    }
}

/// Runs one hook, turning a panic into an error.
fn call(resource: &Arc<dyn Resource>, phase: Phase, context: &Context) -> Result<(), BoxError> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| match phase {
        Phase::BeforeCheckpoint => resource.before_checkpoint(context),
        Phase::AfterRestore => resource.after_restore(context),
    }));
    match result {
        Ok(result) => result,
        Err(payload) => Err(Box::new(HookPanicked::from_payload(&*payload))),
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Context")
            .field("entries", &state.entries.len())
            .field("in_round", &state.round.is_some())
            .finish()
    }
}

/// A nested context: its hooks notify its own resources and return every
/// failure as one [`CheckpointError`] / [`RestoreError`], which the parent
/// flattens into its own list.
impl Resource for Context {
    fn before_checkpoint(&self, _parent: &Context) -> Result<(), BoxError> {
        let problems = self.notify_before();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Box::new(CheckpointError::new(problems)))
        }
    }

    fn after_restore(&self, _parent: &Context) -> Result<(), BoxError> {
        let problems = self.notify_after();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Box::new(RestoreError::new(problems)))
        }
    }

    fn name(&self) -> String {
        "crac::Context".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    struct Recorder {
        name: &'static str,
        log: Arc<StdMutex<Vec<String>>>,
        fail_before: bool,
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
            Ok(())
        }
        fn name(&self) -> String {
            self.name.to_owned()
        }
    }

    fn recorder(
        name: &'static str,
        log: &Arc<StdMutex<Vec<String>>>,
        fail_before: bool,
    ) -> Arc<Recorder> {
        Arc::new(Recorder {
            name,
            log: Arc::clone(log),
            fail_before,
        })
    }

    #[test]
    fn nested_order_and_flattening() {
        let log = Arc::default();
        let outer = Context::empty();
        let inner = Arc::new(Context::empty());
        outer.register(recorder("a", &log, false));
        outer.register(inner.clone());
        inner.register(recorder("b", &log, true));
        inner.register(recorder("c", &log, true));
        outer.register(recorder("d", &log, false));

        let problems = outer.notify_before();
        let after = outer.notify_after();
        assert!(after.is_empty());
        assert_eq!(
            *log.lock().unwrap(),
            [
                "d-before", "c-before", "b-before", "a-before", "a-after", "b-after", "c-after",
                "d-after"
            ]
        );
        let names: Vec<_> = problems
            .iter()
            .map(|p| match p {
                CheckpointProblem::Hook(h) => h.resource().to_owned(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, ["c", "b"]);
    }

    #[test]
    fn panicking_hook_is_reported_and_others_still_run() {
        let log = Arc::default();
        let ctx = Context::empty();
        ctx.register(recorder("a", &log, false));
        ctx.register_fn(|_| panic!("kaboom"), |_| Ok(()));
        let problems = ctx.notify_before();
        ctx.notify_after();
        assert_eq!(*log.lock().unwrap(), ["a-before", "a-after"]);
        assert_eq!(problems.len(), 1);
        let CheckpointProblem::Hook(h) = &problems[0] else {
            panic!("unexpected {problems:?}")
        };
        assert!(h.resource().starts_with("closure registered at "));
        assert!(h.resource().contains("context.rs"));
        assert_eq!(h.error().to_string(), "panicked: kaboom");
    }

    #[test]
    fn default_name_is_the_type_name() {
        let log = Arc::default();
        let r: Arc<dyn Resource> = recorder("x", &log, false);
        assert_eq!(r.name(), "x");
        assert_eq!(Context::empty().name(), "crac::Context");
        struct Plain;
        impl Resource for Plain {
            fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
                Ok(())
            }
            fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
                Ok(())
            }
        }
        let p: Arc<dyn Resource> = Arc::new(Plain);
        assert_eq!(
            p.name(),
            "crac::context::tests::default_name_is_the_type_name::Plain"
        );
    }
}
