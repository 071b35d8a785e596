//! libcrac: the C ABI of the `crac` crate (`include/crac.h`), and the
//! library `crac run` preloads into dynamically linked programs that do not
//! link crac.
//!
//! Each function is a thin wrapper over the Rust API: [`crac_init`] over
//! `crac::init`, [`crac_register`] over `crac::global_context().register`
//! with a resource whose hooks call the C callbacks, [`crac_checkpoint_restore`]
//! over `crac::checkpoint_restore` and [`crac_restore_info`] over
//! `crac::restore_info`. Ordering, aggregation of failures and the
//! open-descriptor check are the `crac` crate's.
//!
//! When the library is loaded (preloaded or linked), its constructor removes
//! libcrac from `LD_PRELOAD`, so the program's children are not injected,
//! and, if `CRAC_CHECKPOINT_TO` is set and the executable does not contain
//! crac itself, calls `crac::init()`, which opens the control channel that
//! `crac checkpoint PID` uses.
//!
//! This crate is the only one of the C ABI's unsafe code: every pointer the
//! caller hands over is checked for NULL and otherwise trusted as the header
//! documents.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crac_api::{BoxError, Context, Resource};

/// Success: restored (or, with `keep_running`, checkpointed and running on).
pub const CRAC_OK: c_int = 0;
/// No checkpoint was made; the process goes on.
pub const CRAC_ERR_CHECKPOINT: c_int = 1;
/// Checkpointed and restored, but `after_restore` callbacks failed.
pub const CRAC_ERR_RESTORE: c_int = 2;
/// An argument was invalid (a NULL pointer where one is required).
pub const CRAC_ERR_INVALID: c_int = -1;

/// A C callback: `int (*)(void *arg)`; NULL for none.
type Callback = Option<unsafe extern "C" fn(*mut c_void) -> c_int>;

/// A resource registered from C.
#[derive(Debug)]
struct CResource {
    name: String,
    before: Callback,
    after: Callback,
    arg: *mut c_void,
}

// SAFETY: `crac_register`'s contract (crac.h) is that the callbacks may be
// called with `arg` from any thread (the one calling
// crac_checkpoint_restore, or the control channel's) for the rest of the
// process's life; the pointer itself is never dereferenced here.
unsafe impl Send for CResource {}
// SAFETY: as for Send: shared access only passes `arg` to the callbacks,
// which the caller made safe to call from any thread.
unsafe impl Sync for CResource {}

/// A callback returned a non-zero code.
#[derive(Debug, thiserror::Error)]
#[error("the callback returned {code}")]
struct CallbackFailed {
    code: c_int,
}

impl CResource {
    fn call(&self, callback: Callback) -> Result<(), BoxError> {
        let Some(f) = callback else {
            return Ok(());
        };
        // SAFETY: crac_register's caller promised that `f` is a valid
        // function taking `arg`, callable from any thread until the process
        // ends (crac.h).
        let code = unsafe { f(self.arg) };
        match code {
            0 => Ok(()),
            code => Err(Box::new(CallbackFailed { code })),
        }
    }
}

impl Resource for CResource {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        self.call(self.before)
    }

    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        self.call(self.after)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// `crac_init`: see crac.h.
#[no_mangle]
pub extern "C" fn crac_init() -> c_int {
    crac_api::init();
    CRAC_OK
}

/// `crac_register`: see crac.h.
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string; `before` and `after` are NULL
/// or functions that may be called with `arg` from any thread for the rest
/// of the process's life.
#[no_mangle]
pub unsafe extern "C" fn crac_register(
    name: *const c_char,
    before: Callback,
    after: Callback,
    arg: *mut c_void,
) -> c_int {
    if name.is_null() {
        return CRAC_ERR_INVALID;
    }
    // SAFETY: `name` is not NULL and, by the contract above, NUL-terminated
    // and readable; it is copied before returning.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    crac_api::global_context().register(Arc::new(CResource {
        name,
        before,
        after,
        arg,
    }));
    CRAC_OK
}

/// `crac_checkpoint_restore`: see crac.h.
///
/// # Safety
///
/// `err` is NULL or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn crac_checkpoint_restore(err: *mut c_char, len: usize) -> c_int {
    let (code, text) = match crac_api::checkpoint_restore() {
        Ok(()) => (CRAC_OK, String::new()),
        Err(e) => {
            let code = match e {
                crac_api::CheckpointRestoreError::Checkpoint(_) => CRAC_ERR_CHECKPOINT,
                crac_api::CheckpointRestoreError::Restore(_) => CRAC_ERR_RESTORE,
            };
            (code, e.to_string())
        }
    };
    if !err.is_null() && len > 0 {
        // SAFETY: `err` is not NULL and points to `len` writable bytes (the
        // contract above), which nothing else refers to during this call.
        let buf = unsafe { std::slice::from_raw_parts_mut(err.cast::<u8>(), len) };
        let bytes = truncated(&text, len - 1);
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[bytes.len()] = 0;
    }
    code
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncated(text: &str, max: usize) -> &[u8] {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

/// `struct crac_restore_info`: see crac.h.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CracRestoreInfo {
    /// How many times this process was restored.
    pub restore_count: u32,
    /// 1 if restored at least once, else 0.
    pub restored: i32,
    /// Wall-clock time the process resumed after the latest restore, in
    /// nanoseconds since the Unix epoch; -1 if never restored.
    pub restore_time_ns: i64,
    /// Wall-clock time the latest restore began; -1 if never restored.
    pub restore_started_ns: i64,
    /// Monotonic time since the latest restore; -1 if never restored.
    pub uptime_since_restore_ns: i64,
}

/// `crac_restore_info`: see crac.h.
///
/// # Safety
///
/// `info` is NULL or points to a writable `struct crac_restore_info`.
#[no_mangle]
pub unsafe extern "C" fn crac_restore_info(info: *mut CracRestoreInfo) -> c_int {
    if info.is_null() {
        return CRAC_ERR_INVALID;
    }
    let r = crac_api::restore_info();
    let since_epoch = |t: Option<SystemTime>| {
        t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(-1, nanos)
    };
    let facts = CracRestoreInfo {
        restore_count: r.restore_count,
        restored: r.restored.into(),
        restore_time_ns: since_epoch(r.restore_time),
        restore_started_ns: since_epoch(r.restore_started),
        uptime_since_restore_ns: r.uptime_since_restore.map_or(-1, nanos),
    };
    // SAFETY: `info` is not NULL and points to a writable struct
    // crac_restore_info (the contract above), whose layout is `repr(C)` here.
    unsafe { info.write(facts) };
    CRAC_OK
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Runs when the library is loaded, before the program's `main`.
extern "C" fn on_load() {
    remove_from_ld_preload();
    let configured =
        std::env::var_os(crac_api::config::CHECKPOINT_TO_VAR).is_some_and(|v| !v.is_empty());
    // A program that contains crac itself initialises its own copy; a
    // second one would compete for the control channel.
    if configured && !crac_engine::elf::self_has_crac() {
        crac_api::init();
    }
}

// SAFETY: `on_load` is an `extern "C" fn()` that does not unwind (a panic
// in it aborts); the dynamic loader runs `.init_array` entries of a library
// when it loads it, after the C library is initialised.
#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

/// Removes libcrac from `LD_PRELOAD` (single-threaded: before `main`), so
/// that `crac run` injects the program it starts, not the program's children.
fn remove_from_ld_preload() {
    let Some(value) = std::env::var_os("LD_PRELOAD") else {
        return;
    };
    let entries: Vec<&[u8]> = value
        .as_bytes()
        .split(|&b| b == b':' || b == b' ')
        .filter(|e| !e.is_empty())
        .collect();
    let kept: Vec<&[u8]> = entries
        .iter()
        .copied()
        .filter(|e| {
            std::path::Path::new(std::ffi::OsStr::from_bytes(e)).file_name()
                != Some(std::ffi::OsStr::new("libcrac.so"))
        })
        .collect();
    if kept.len() == entries.len() {
        return;
    }
    if kept.is_empty() {
        std::env::remove_var("LD_PRELOAD");
    } else {
        std::env::set_var("LD_PRELOAD", OsString::from_vec(kept.join(&b':')));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header's constants and struct are the library's.
    #[test]
    fn header_matches() {
        let header = include_str!("../include/crac.h");
        for (name, value) in [
            ("CRAC_OK", CRAC_OK),
            ("CRAC_ERR_CHECKPOINT", CRAC_ERR_CHECKPOINT),
            ("CRAC_ERR_RESTORE", CRAC_ERR_RESTORE),
            ("CRAC_ERR_INVALID", CRAC_ERR_INVALID),
        ] {
            let line = format!("#define {name} ({value})");
            assert!(header.contains(&line), "crac.h lacks {line:?}");
        }
        assert_eq!(std::mem::size_of::<CracRestoreInfo>(), 32);
        for field in [
            "uint32_t restore_count;",
            "int32_t restored;",
            "int64_t restore_time_ns;",
            "int64_t restore_started_ns;",
            "int64_t uptime_since_restore_ns;",
        ] {
            assert!(header.contains(field), "crac.h lacks {field:?}");
        }
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("héllo", 2), b"h");
        assert_eq!(truncated("héllo", 3), "hé".as_bytes());
        assert_eq!(truncated("abc", 10), b"abc");
    }

    #[test]
    fn error_text_is_whole_and_nul_terminated() {
        let mut buf = [0x55 as c_char; 8];
        // Not configured: fails before any hook runs, with the config error.
        std::env::remove_var(crac_api::config::CHECKPOINT_TO_VAR);
        // SAFETY: `buf` has 8 writable bytes.
        let code = unsafe { crac_checkpoint_restore(buf.as_mut_ptr(), buf.len()) };
        assert_eq!(code, CRAC_ERR_CHECKPOINT);
        // SAFETY: the function NUL-terminated the buffer.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(text.to_bytes(), b"checkpo");
    }
}
