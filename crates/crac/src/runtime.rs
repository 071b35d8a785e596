//! Runtime facts about restores: the counterpart of CRaC's `CRaCMXBean`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crac_engine::native::RestoreFacts;

/// Facts about this process's restores, from [`restore_info`]: what CRaC's
/// `CRaCMXBean` reports (`getRestoreTime`, `getUptimeSinceRestore`), plus
/// whether and how often the process was restored.
///
/// `simulate` and `pause` checkpoints count as restores; a native checkpoint
/// with `keep_running=true` does not, in the process that kept running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreInfo {
    /// Whether this process was restored at least once.
    pub restored: bool,
    /// Wall-clock time when the process resumed after the latest restore
    /// (`getRestoreTime`); `None` if never restored.
    pub restore_time: Option<SystemTime>,
    /// Wall-clock time when the latest restore began (when `crac restore`
    /// started, or the pause engine's waker); `restore_time` minus this is
    /// how long the restore took. `None` if never restored.
    pub restore_started: Option<SystemTime>,
    /// Time since the latest restore, on the monotonic clock
    /// (`getUptimeSinceRestore`); `None` if never restored.
    pub uptime_since_restore: Option<Duration>,
    /// How many times this process was restored.
    pub restore_count: u32,
}

#[derive(Debug)]
struct State {
    restore_time: Option<SystemTime>,
    restore_started: Option<SystemTime>,
    resumed_at: Option<Instant>,
    restore_count: u32,
}

static STATE: Mutex<State> = Mutex::new(State {
    restore_time: None,
    restore_started: None,
    resumed_at: None,
    restore_count: 0,
});

/// Restores so far, for [`restore_generation`].
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The restore generation: 0 in a process never restored, incremented by
/// each restore before any `after_restore` hook runs.
///
/// One atomic load, cheap enough for hot paths: a library that keeps state
/// which must differ between restored copies (a random generator, a cache of
/// unique ids, a connection id counter) remembers the generation it last
/// saw and renews that state when the generation differs. See
/// `docs/uniqueness.md`. `simulate` and `pause` checkpoints count as
/// restores, as in [`RestoreInfo`].
pub fn restore_generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Returns the facts about this process's restores.
pub fn restore_info() -> RestoreInfo {
    crate::fds::ensure_inherited_recorded();
    let state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    RestoreInfo {
        restored: state.restore_count > 0,
        restore_time: state.restore_time,
        restore_started: state.restore_started,
        uptime_since_restore: state.resumed_at.map(|t| t.elapsed()),
        restore_count: state.restore_count,
    }
}

/// Records a restore described by `facts`.
pub(crate) fn record_restore(facts: &RestoreFacts) {
    let now_wall = SystemTime::now();
    let now = Instant::now();
    let restore_time = match facts.resumed_unix_ns {
        0 => now_wall,
        ns => UNIX_EPOCH + Duration::from_nanos(ns),
    };
    // The monotonic clock of the checkpointed process means nothing here, so
    // the resume instant is derived from how long ago, in wall-clock time,
    // the process resumed.
    let ago = now_wall.duration_since(restore_time).unwrap_or_default();
    let resumed_at = now.checked_sub(ago).unwrap_or(now);
    let restore_started = match facts.restore_started_unix_ns {
        0 => restore_time,
        ns => UNIX_EPOCH + Duration::from_nanos(ns),
    };
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    state.restore_time = Some(restore_time);
    state.restore_started = Some(restore_started);
    state.resumed_at = Some(resumed_at);
    state.restore_count = state.restore_count.saturating_add(1);
    GENERATION.fetch_add(1, Ordering::AcqRel);
}
