//! The Python module `crac`: Coordinated Restore at Checkpoint for Python
//! programs, on the `crac` crate.
//!
//! * `register_before_snapshot(fn)` / `register_after_restore(fn)` (AWS
//!   SnapStart's names, usable as decorators): before hooks run last
//!   registered first, after hooks in registration order;
//! * `Context`, `Resource`, `get_global_context()`: org.crac's;
//! * `checkpoint_restore()`: CRaC's `Core.checkpointRestore`;
//! * `restore_info()`: what `crac::restore_info()` gives;
//! * `CheckpointError` / `RestoreError`: one exception listing every
//!   problem (hooks' exceptions, open descriptors, the engine's failure).
//!
//! The hooks live in one context of this module, registered in the crac
//! runtime's global context ([`runtime`]): the module's own copy of the
//! crate, or libcrac when `crac run` preloaded it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crac_api::{BoxError, Context, Resource};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;

mod runtime;

create_exception!(
    crac,
    CheckpointError,
    PyException,
    "No checkpoint was made (the process goes on): the message lists every problem."
);
create_exception!(
    crac,
    RestoreError,
    PyException,
    "The process was checkpointed and restored, but after_restore hooks failed: the message lists them."
);

/// A Python hook raised an exception: its type and message.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
struct PythonException {
    text: String,
}

impl PythonException {
    fn boxed(py: Python<'_>, err: &PyErr) -> BoxError {
        let text = match err.value(py).str() {
            Ok(msg) if !msg.to_string_lossy().is_empty() => {
                format!(
                    "{}: {}",
                    type_name(err.get_type(py).as_any()),
                    msg.to_string_lossy()
                )
            }
            _ => type_name(err.get_type(py).as_any()),
        };
        Box::new(PythonException { text })
    }
}

/// `__qualname__` of a class or function, else its `repr`.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.getattr("__qualname__")
        .and_then(|n| n.extract::<String>())
        .or_else(|_| obj.repr().map(|r| r.to_string_lossy().into_owned()))
        .unwrap_or_else(|_| "?".to_owned())
}

/// The module's global context: every Python hook is in it (or nested in it).
fn python_context() -> &'static Arc<Context> {
    static CONTEXT: OnceLock<Arc<Context>> = OnceLock::new();
    CONTEXT.get_or_init(|| Arc::new(Context::new()))
}

fn runtime() -> &'static runtime::Runtime {
    runtime::get(python_context())
}

/// A Python object with `before_checkpoint(context)` and
/// `after_restore(context)`, registered in `context`.
#[derive(Debug)]
struct PyResource {
    object: Py<PyAny>,
    context: Py<PyContext>,
    name: String,
}

impl PyResource {
    fn call(&self, method: &str) -> Result<(), BoxError> {
        Python::attach(|py| {
            self.object
                .call_method1(py, method, (self.context.clone_ref(py),))
                .map(drop)
                .map_err(|e| PythonException::boxed(py, &e))
        })
    }
}

impl Resource for PyResource {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        self.call("before_checkpoint")
    }

    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        self.call("after_restore")
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// A function called with no arguments in one phase.
#[derive(Debug)]
struct PyHook {
    function: Py<PyAny>,
    before: bool,
    name: String,
}

impl PyHook {
    fn call(&self, before: bool) -> Result<(), BoxError> {
        if before != self.before {
            return Ok(());
        }
        Python::attach(|py| {
            self.function
                .call0(py)
                .map(drop)
                .map_err(|e| PythonException::boxed(py, &e))
        })
    }
}

impl Resource for PyHook {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        self.call(true)
    }

    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        self.call(false)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// org.crac's `Context`: an ordered set of resources, itself a resource.
/// `before_checkpoint` runs last registered first, `after_restore` in
/// registration order; every resource is notified even when one fails.
#[pyclass(module = "crac", name = "Context", frozen)]
#[derive(Debug)]
struct PyContext {
    inner: Arc<Context>,
}

#[pymethods]
impl PyContext {
    #[new]
    fn new() -> Self {
        PyContext {
            inner: Arc::new(Context::new()),
        }
    }

    /// Registers `resource`: a `Context`, or an object with
    /// `before_checkpoint(context)` and `after_restore(context)` (such as
    /// a subclass of `Resource`). It is held for the rest of the process.
    fn register(slf: &Bound<'_, Self>, resource: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(nested) = resource.cast::<PyContext>() {
            slf.get().inner.register(nested.get().inner.clone());
            return Ok(());
        }
        for method in ["before_checkpoint", "after_restore"] {
            if !resource.getattr(method).is_ok_and(|m| m.is_callable()) {
                return Err(PyTypeError::new_err(format!(
                    "{} has no method {method}(context): register a crac.Resource or a crac.Context",
                    type_name(resource.get_type().as_any())
                )));
            }
        }
        slf.get().inner.register(Arc::new(PyResource {
            object: resource.clone().unbind(),
            context: slf.clone().unbind(),
            name: type_name(resource.get_type().as_any()),
        }));
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("<crac.Context with {} resource(s)>", self.inner.len())
    }
}

/// org.crac's `Resource`: subclass it and override the hooks (both do
/// nothing here).
#[pyclass(module = "crac", name = "Resource", subclass)]
#[derive(Debug)]
struct PyResourceBase;

#[pymethods]
impl PyResourceBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyAny>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        PyResourceBase
    }

    /// Called before a checkpoint: release what cannot be checkpointed.
    fn before_checkpoint(&self, _context: &Bound<'_, PyAny>) {}

    /// Called after a restore (and after a failed checkpoint).
    fn after_restore(&self, _context: &Bound<'_, PyAny>) {}
}

/// The global context (org.crac's `Core.getGlobalContext()`).
#[pyfunction]
fn get_global_context(py: Python<'_>) -> PyResult<Py<PyContext>> {
    static GLOBAL: OnceLock<Py<PyContext>> = OnceLock::new();
    if let Some(g) = GLOBAL.get() {
        return Ok(g.clone_ref(py));
    }
    let g = Py::new(
        py,
        PyContext {
            inner: python_context().clone(),
        },
    )?;
    Ok(GLOBAL.get_or_init(|| g).clone_ref(py))
}

fn register_hook(function: &Bound<'_, PyAny>, before: bool) -> PyResult<Py<PyAny>> {
    if !function.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "{} is not callable",
            type_name(function.get_type().as_any())
        )));
    }
    python_context().register(Arc::new(PyHook {
        function: function.clone().unbind(),
        before,
        name: type_name(function),
    }));
    Ok(function.clone().unbind())
}

/// Registers `fn()` to run before a checkpoint (last registered first);
/// returns `fn`, so it works as a decorator.
#[pyfunction]
fn register_before_snapshot(function: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    register_hook(function, true)
}

/// Registers `fn()` to run after a restore (and after a failed checkpoint),
/// in registration order; returns `fn`, so it works as a decorator.
#[pyfunction]
fn register_after_restore(function: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    register_hook(function, false)
}

/// Checkpoints the process (CRaC's `Core.checkpointRestore`): runs the
/// before hooks, checks open descriptors, saves the process to
/// `CRAC_CHECKPOINT_TO`, and returns in the restored process after the
/// after hooks. Raises `CheckpointError` if no checkpoint was made (the
/// process goes on), `RestoreError` if after hooks failed.
#[pyfunction]
fn checkpoint_restore(py: Python<'_>) -> PyResult<()> {
    let runtime = runtime();
    // Without the GIL: a checkpoint asked for by `crac checkpoint PID` may
    // be running on the control thread, and its hooks need the GIL. The
    // hooks take it themselves.
    py.detach(|| runtime.checkpoint_restore())
        .map_err(|e| match e {
            runtime::Failure::Checkpoint(m) => CheckpointError::new_err(m),
            runtime::Failure::Restore(m) => RestoreError::new_err(m),
        })
}

/// The facts of `restore_info()`; times are seconds (since the Unix epoch
/// for the wall-clock ones), None if the process was never restored.
#[pyclass(module = "crac", name = "RestoreInfo", frozen, get_all)]
#[derive(Debug)]
struct PyRestoreInfo {
    restore_count: u32,
    restored: bool,
    restore_time: Option<f64>,
    restore_started: Option<f64>,
    uptime_since_restore: Option<f64>,
}

#[pymethods]
impl PyRestoreInfo {
    fn __repr__(&self) -> String {
        format!(
            "RestoreInfo(restore_count={}, restored={}, restore_time={:?}, restore_started={:?}, uptime_since_restore={:?})",
            self.restore_count,
            if self.restored { "True" } else { "False" },
            self.restore_time,
            self.restore_started,
            self.uptime_since_restore
        )
    }
}

/// How often and when this process was restored.
#[pyfunction]
fn restore_info() -> PyRestoreInfo {
    let r = runtime().restore_info();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    PyRestoreInfo {
        restore_count: r.restore_count,
        restored: r.restored,
        restore_time: secs(r.restore_time),
        restore_started: secs(r.restore_started),
        uptime_since_restore: secs(r.uptime_since_restore),
    }
}

/// Which crac runs checkpoints: "libcrac" (preloaded by `crac run`, or
/// linked by the executable) or "module" (this module's own).
#[pyfunction(name = "runtime")]
fn runtime_name() -> &'static str {
    if runtime().is_preloaded() {
        "libcrac"
    } else {
        "module"
    }
}

#[pymodule]
fn crac(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add("RestoreError", py.get_type::<RestoreError>())?;
    m.add_class::<PyContext>()?;
    m.add_class::<PyResourceBase>()?;
    m.add_class::<PyRestoreInfo>()?;
    m.add_function(wrap_pyfunction!(get_global_context, m)?)?;
    m.add_function(wrap_pyfunction!(register_before_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(register_after_restore, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_restore, m)?)?;
    m.add_function(wrap_pyfunction!(restore_info, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_name, m)?)?;
    // At import, like `crac::init()` first thing in main: the descriptors
    // open now count as inherited, the control channel opens.
    runtime();
    Ok(())
}
