//! Which crac runs the checkpoint: the module's own copy of the `crac`
//! crate, or a libcrac that `crac run` preloaded into the interpreter.
//!
//! `crac run -- python3 app.py` preloads libcrac.so into python3 (it does
//! not contain crac), and libcrac's constructor initialises its copy of the
//! crate before Python starts: the inherited descriptors, the control
//! channel `@crac/PID`, the global context. A second copy in this module
//! would keep a second global context, its descriptor check would not know
//! the first copy's control socket, and its own channel could not bind the
//! name. So, when the process already has libcrac (its C ABI is in the
//! global symbol scope: preloaded or linked), the module uses that copy
//! through the C ABI and leaves its own untouched; otherwise it
//! initialises its own. Either way the Python hooks live in one context of
//! this module ([`crate::python_context`]), registered once in the runtime's
//! global context, so both `crac.checkpoint_restore()` and
//! `crac checkpoint PID` run them.
//!
//! This file holds the bindings' only unsafe code: looking the C ABI up and
//! calling it.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crac_api::{Context, Resource};

/// The runtime this process uses, chosen at import.
#[derive(Debug)]
pub enum Runtime {
    /// The module's own copy of the crate.
    Own,
    /// libcrac, already in the process.
    Preloaded(Capi),
}

/// What a checkpoint ended with, as text (the runtimes' messages).
#[derive(Debug)]
pub enum Failure {
    /// No checkpoint was made; the process goes on.
    Checkpoint(String),
    /// Checkpointed and restored, but `after_restore` hooks failed.
    Restore(String),
}

/// `crac::RestoreInfo`, as both runtimes give it.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub restore_count: u32,
    pub restored: bool,
    pub restore_time: Option<Duration>,
    pub restore_started: Option<Duration>,
    pub uptime_since_restore: Option<Duration>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime, chosen (and `context` registered in it) on first use.
pub fn get(context: &Arc<Context>) -> &'static Runtime {
    RUNTIME.get_or_init(|| match Capi::find() {
        Some(capi) => {
            capi.register(context);
            Runtime::Preloaded(capi)
        }
        None => {
            // Records the descriptors open now as inherited, opens the
            // control channel if CRAC_CHECKPOINT_TO is set.
            crac_api::init();
            crac_api::global_context().register(context.clone());
            Runtime::Own
        }
    })
}

impl Runtime {
    pub fn is_preloaded(&self) -> bool {
        matches!(self, Runtime::Preloaded(_))
    }

    pub fn checkpoint_restore(&self) -> Result<(), Failure> {
        match self {
            Runtime::Own => crac_api::checkpoint_restore().map_err(|e| match e {
                crac_api::CheckpointRestoreError::Checkpoint(e) => {
                    Failure::Checkpoint(e.to_string())
                }
                crac_api::CheckpointRestoreError::Restore(e) => Failure::Restore(e.to_string()),
            }),
            Runtime::Preloaded(capi) => capi.checkpoint_restore(),
        }
    }

    pub fn restore_info(&self) -> Info {
        match self {
            Runtime::Own => {
                let r = crac_api::restore_info();
                let since_epoch =
                    |t: Option<SystemTime>| t.and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                Info {
                    restore_count: r.restore_count,
                    restored: r.restored,
                    restore_time: since_epoch(r.restore_time),
                    restore_started: since_epoch(r.restore_started),
                    uptime_since_restore: r.uptime_since_restore,
                }
            }
            Runtime::Preloaded(capi) => capi.restore_info(),
        }
    }
}

type Callback = unsafe extern "C" fn(*mut c_void) -> c_int;
type RegisterFn =
    unsafe extern "C" fn(*const c_char, Option<Callback>, Option<Callback>, *mut c_void) -> c_int;
type CheckpointFn = unsafe extern "C" fn(*mut c_char, usize) -> c_int;
type RestoreInfoFn = unsafe extern "C" fn(*mut CracRestoreInfo) -> c_int;

/// `struct crac_restore_info` (crates/crac-capi/include/crac.h).
#[repr(C)]
#[derive(Debug, Default)]
struct CracRestoreInfo {
    restore_count: u32,
    restored: i32,
    restore_time_ns: i64,
    restore_started_ns: i64,
    uptime_since_restore_ns: i64,
}

/// libcrac's functions (crac.h), found in the process.
#[derive(Debug)]
pub struct Capi {
    register: RegisterFn,
    checkpoint_restore: CheckpointFn,
    restore_info: RestoreInfoFn,
}

/// The name the module's context has in libcrac's global context; its
/// failures are replaced by the Python hooks' own messages.
const NAME: &CStr = c"python";

/// What the Python context's hooks failed with in the latest call through
/// libcrac (whose callbacks carry only a code).
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The module's context, for the callbacks (set once by `register`).
static CONTEXT: OnceLock<Arc<Context>> = OnceLock::new();

impl Capi {
    /// libcrac's C ABI in the global symbol scope (the executable, what it
    /// links, what was preloaded), if all of it is there.
    fn find() -> Option<Capi> {
        let register = lookup(c"crac_register")?;
        let checkpoint_restore = lookup(c"crac_checkpoint_restore")?;
        let restore_info = lookup(c"crac_restore_info")?;
        // SAFETY: these symbols are libcrac's functions of
        // these signatures (crac.h); a pointer to a function and a function
        // pointer have the same representation.
        let register = unsafe { std::mem::transmute::<*mut c_void, RegisterFn>(register) };
        // SAFETY: as above.
        let checkpoint_restore =
            unsafe { std::mem::transmute::<*mut c_void, CheckpointFn>(checkpoint_restore) };
        // SAFETY: as above.
        let restore_info =
            unsafe { std::mem::transmute::<*mut c_void, RestoreInfoFn>(restore_info) };
        Some(Capi {
            register,
            checkpoint_restore,
            restore_info,
        })
    }

    fn register(&self, context: &Arc<Context>) {
        // `get` runs once, so this is the only registration.
        let _ = CONTEXT.set(context.clone());
        // SAFETY: NAME is NUL-terminated; the callbacks take no argument and
        // may run on any thread for the rest of the process's life (they
        // only use statics), as crac.h asks.
        let code = unsafe {
            (self.register)(
                NAME.as_ptr(),
                Some(before_checkpoint),
                Some(after_restore),
                std::ptr::null_mut(),
            )
        };
        debug_assert_eq!(code, 0, "crac_register with valid arguments");
    }

    fn checkpoint_restore(&self) -> Result<(), Failure> {
        failures().clear();
        let mut buf = vec![0 as c_char; 64 * 1024];
        // SAFETY: `buf` has `buf.len()` writable bytes.
        let code = unsafe { (self.checkpoint_restore)(buf.as_mut_ptr(), buf.len()) };
        if code == 0 {
            return Ok(());
        }
        let text = CStr::from_bytes_until_nul(&buf.iter().map(|&c| c as u8).collect::<Vec<_>>())
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = with_python_failures(&text, &std::mem::take(&mut *failures()));
        Err(match code {
            2 => Failure::Restore(text),
            _ => Failure::Checkpoint(text),
        })
    }

    fn restore_info(&self) -> Info {
        let mut raw = CracRestoreInfo::default();
        // SAFETY: `raw` is a writable struct crac_restore_info.
        unsafe { (self.restore_info)(&mut raw) };
        let duration = |ns: i64| u64::try_from(ns).ok().map(Duration::from_nanos);
        Info {
            restore_count: raw.restore_count,
            restored: raw.restored != 0,
            restore_time: duration(raw.restore_time_ns),
            restore_started: duration(raw.restore_started_ns),
            uptime_since_restore: duration(raw.uptime_since_restore_ns),
        }
    }
}

fn lookup(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the global
    // scope and returns NULL if nothing there has the name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

fn failures() -> std::sync::MutexGuard<'static, Vec<String>> {
    FAILURES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The text libcrac gives the context's failure in `phase`.
fn placeholder(phase: &str) -> String {
    format!("resource python failed in {phase}: the callback returned 1")
}

/// libcrac's message with its problem for the Python context replaced by
/// the Python hooks' own problems, and the count in its header (`checkpoint
/// failed: …` or `checkpoint failed with N problems: …`) set to match.
fn with_python_failures(text: &str, failures: &[String]) -> String {
    let Some((what, mut count, rest)) = split_header(text) else {
        return text.to_owned();
    };
    let mut rest = rest.to_owned();
    for phase in ["before_checkpoint", "after_restore"] {
        let p = placeholder(phase);
        let mine: Vec<&str> = failures
            .iter()
            .map(String::as_str)
            .filter(|f| f.contains(&format!(" failed in {phase}: ")))
            .collect();
        if let (Some(at), false) = (rest.find(&p), mine.is_empty()) {
            rest.replace_range(at..at + p.len(), &mine.join("; "));
            count = count - 1 + mine.len();
        }
    }
    match count {
        1 => format!("{what}: {rest}"),
        n => format!("{what} with {n} problems: {rest}"),
    }
}

/// `("checkpoint failed", N, problems)` of an aggregate error's text.
fn split_header(text: &str) -> Option<(&str, usize, &str)> {
    for what in ["checkpoint failed", "restore failed"] {
        let Some(after) = text.strip_prefix(what) else {
            continue;
        };
        if let Some(rest) = after.strip_prefix(": ") {
            return Some((what, 1, rest));
        }
        let (n, rest) = after.strip_prefix(" with ")?.split_once(" problems: ")?;
        return Some((what, n.parse().ok()?, rest));
    }
    None
}

/// Runs the module's context in `phase`, recording its problems.
fn notify(before: bool) -> c_int {
    let Some(context) = CONTEXT.get() else {
        return 0;
    };
    let parent = Context::new();
    let result = if before {
        context.before_checkpoint(&parent)
    } else {
        context.after_restore(&parent)
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let problems: Vec<String> =
                if let Some(e) = e.downcast_ref::<crac_api::CheckpointError>() {
                    e.problems().map(|p| chain(p)).collect()
                } else if let Some(e) = e.downcast_ref::<crac_api::RestoreError>() {
                    e.problems().map(|p| chain(p)).collect()
                } else {
                    vec![chain(&*e)]
                };
            failures().extend(problems);
            1
        }
    }
}

extern "C" fn before_checkpoint(_: *mut c_void) -> c_int {
    notify(true)
}

extern "C" fn after_restore(_: *mut c_void) -> c_int {
    notify(false)
}

/// `error: source: source of source`, as the crate's errors list problems.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_problems_replace_the_callbacks_code_and_the_count() {
        let text = format!(
            "checkpoint failed with 3 problems: {}; file descriptor 5 is open: /x (regular file); close it; {}",
            placeholder("before_checkpoint"),
            placeholder("after_restore")
        );
        let failures = [
            "resource B failed in before_checkpoint: ValueError: b".to_owned(),
            "resource A failed in before_checkpoint: OSError".to_owned(),
            "resource A failed in after_restore: KeyError: 'k'".to_owned(),
        ];
        assert_eq!(
            with_python_failures(&text, &failures),
            "checkpoint failed with 4 problems: resource B failed in before_checkpoint: ValueError: b; \
             resource A failed in before_checkpoint: OSError; \
             file descriptor 5 is open: /x (regular file); close it; \
             resource A failed in after_restore: KeyError: 'k'"
        );
        let one = format!("restore failed: {}", placeholder("after_restore"));
        assert_eq!(
            with_python_failures(&one, &failures[2..]),
            "restore failed: resource A failed in after_restore: KeyError: 'k'"
        );
        assert_eq!(
            with_python_failures("engine broke", &failures),
            "engine broke"
        );
    }
}
