//! timerfd: clock, absolute or relative setting, interval, time left and
//! expirations not yet read.
//!
//! The time left is counted from the dump's wall clock: a timer whose
//! deadline passed while the image rested fires at once after restore
//! (its expiration is added to the unread ones), a periodic one then goes
//! on with its interval. Absolute `CLOCK_REALTIME` timers keep their
//! deadline; other clocks (monotonic, boottime) restart in a new boot or
//! a new process, so their deadline is moved by the time the image rested.

use crac_image::{FdRecord, FD_TIMERFD};
use crac_sys::{fdobj, sys, Errno};

use super::{fdinfo_field, parse_num, read_fdinfo, FdFailure};

const TFD_CLOEXEC: i32 = 0o2000000;
const TFD_TIMER_ABSTIME: u32 = 1;
const CLOCK_REALTIME: i32 = 0;
const CLOCK_REALTIME_ALARM: i32 = 8;
#[cfg(test)]
const NS: u64 = 1_000_000_000;

/// A timerfd's state.
#[derive(Debug, Default)]
pub struct TimerFd {
    clock: i32,
    /// `TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`.
    settime_flags: u32,
    interval_ns: u64,
    /// Time to the next expiry at capture; 0 = disarmed.
    left_ns: u64,
    /// Expirations not read yet.
    ticks: u64,
    /// Wall clock at capture (ns since the epoch).
    wall_ns: u64,
}

/// Plans a timerfd (its fdinfo must show the fields this build reads).
/// Not carried where the kernel cannot set a timerfd's unread
/// expirations (`TFD_IOC_SET_TICKS` needs `CONFIG_CHECKPOINT_RESTORE`):
/// the open-fd check then refuses it.
pub fn plan(fd: i32) -> Option<TimerFd> {
    if !set_ticks_works() {
        return None;
    }
    let mut buf = [0u8; 1024];
    let mut t = TimerFd::default();
    t.capture(fd, &mut buf).ok()?;
    Some(t)
}

/// Whether `TFD_IOC_SET_TICKS` works here (probed once on a timerfd of
/// its own).
fn set_ticks_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let Ok(fd) = fdobj::timerfd_create(1, TFD_CLOEXEC) else {
            return false;
        };
        let ok = fdobj::timerfd_set_ticks(fd, 1).is_ok();
        let _ = sys::close(fd);
        ok
    })
}

impl TimerFd {
    /// Reads the setting and the unread expirations. Allocation-free; the
    /// timer runs on unchanged.
    pub fn capture(&mut self, fd: i32, buf: &mut [u8]) -> Result<(), FdFailure> {
        // First: on a periodic timer that expired, gettime counts the
        // periods that passed since into the ticks fdinfo shows.
        let (interval, left) =
            fdobj::timerfd_gettime(fd).map_err(|e| ("read a timerfd's setting", e))?;
        let text = read_fdinfo(fd, buf)?;
        let bad = ("understand a timerfd's fdinfo", Errno::EINVAL);
        let num = |key: &[u8], radix| fdinfo_field(text, key).and_then(|v| parse_num(v, radix));
        self.clock = num(b"clockid:", 10).ok_or(bad)? as i32;
        self.ticks = num(b"ticks:", 10).ok_or(bad)?;
        self.settime_flags = num(b"settime flags:", 8).ok_or(bad)? as u32;
        self.interval_ns = interval;
        self.left_ns = left;
        self.wall_ns = sys::clock_ns(CLOCK_REALTIME);
        Ok(())
    }

    /// Fills the record: clock id (settime flags in the high half),
    /// interval, time left, unread expirations.
    pub fn record(&self, r: &mut FdRecord<'_>) {
        r.kind = FD_TIMERFD;
        r.values = [
            (self.clock as u32 as u64) | (u64::from(self.settime_flags) << 32),
            self.interval_ns,
            self.left_ns,
            self.ticks,
        ];
    }

    /// A new timerfd with this state (the caller places it).
    pub fn recreate(&self) -> Result<i32, FdFailure> {
        let fd =
            fdobj::timerfd_create(self.clock, TFD_CLOEXEC).map_err(|e| ("create a timerfd", e))?;
        if let Err(e) = self.arm(fd) {
            let _ = sys::close(fd);
            return Err(e);
        }
        Ok(fd)
    }

    fn arm(&self, fd: i32) -> Result<(), FdFailure> {
        let (value, fired) = self.setting(sys::clock_ns(CLOCK_REALTIME), sys::clock_ns(self.clock));
        // The flags matter even when disarmed: fdinfo shows them.
        if value != 0 || self.settime_flags != 0 {
            fdobj::timerfd_settime(fd, self.settime_flags as i32, self.interval_ns, value)
                .map_err(|e| ("arm a timerfd", e))?;
        }
        // After settime, which clears the count.
        let ticks = self.ticks + u64::from(fired);
        if ticks != 0 {
            fdobj::timerfd_set_ticks(fd, ticks)
                .map_err(|e| ("set a timerfd's unread expirations (TFD_IOC_SET_TICKS)", e))?;
        }
        Ok(())
    }

    /// The value to arm with now (absolute on the timer's clock if the
    /// timer is absolute, else relative; 0 = disarmed) and whether the
    /// deadline passed while the image rested (one more expiration).
    fn setting(&self, now_wall: u64, now_clock: u64) -> (u64, bool) {
        if self.left_ns == 0 {
            return (0, false);
        }
        let abs = self.settime_flags & TFD_TIMER_ABSTIME != 0;
        let wall_clock = matches!(self.clock, CLOCK_REALTIME | CLOCK_REALTIME_ALARM);
        // Nanoseconds left now and the absolute deadline on the timer's
        // clock: a wall-clock deadline stays; any other moves with the rest.
        let (left, deadline) = if wall_clock {
            let deadline = self.wall_ns + self.left_ns;
            (deadline.saturating_sub(now_wall), deadline)
        } else {
            let rested = now_wall.saturating_sub(self.wall_ns);
            let left = self.left_ns.saturating_sub(rested);
            (left, now_clock + left)
        };
        if left > 0 {
            return (if abs { deadline } else { left }, false);
        }
        // Past: the expiration counts now; a periodic timer goes on one
        // interval later (an absolute one in phase with its deadline).
        if self.interval_ns == 0 {
            return (0, true);
        }
        if !abs {
            return (self.interval_ns, true);
        }
        let now = if wall_clock { now_wall } else { now_clock };
        let periods = (now.saturating_sub(deadline)) / self.interval_ns + 1;
        (
            deadline.saturating_add(periods.saturating_mul(self.interval_ns)),
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(clock: i32, flags: u32, interval: u64, left: u64) -> TimerFd {
        TimerFd {
            clock,
            settime_flags: flags,
            interval_ns: interval,
            left_ns: left,
            ticks: 0,
            wall_ns: 1000 * NS,
        }
    }

    #[test]
    fn settings_after_a_rest() {
        // Relative monotonic, 3 s left, rested 1 s: 2 s left.
        let t = timer(1, 0, 0, 3 * NS);
        assert_eq!(t.setting(1001 * NS, 7 * NS), (2 * NS, false));
        // Rested 5 s: fires at once, one-shot stays disarmed.
        assert_eq!(t.setting(1005 * NS, 7 * NS), (0, true));
        // Periodic: fires at once, then every interval.
        let t = timer(1, 0, NS / 10, 3 * NS);
        assert_eq!(t.setting(1005 * NS, 7 * NS), (NS / 10, true));
        // Disarmed stays disarmed.
        let t = timer(1, 0, NS, 0);
        assert_eq!(t.setting(1005 * NS, 7 * NS), (0, false));
        // Absolute realtime keeps its deadline (1003 s).
        let t = timer(CLOCK_REALTIME, 1, 0, 3 * NS);
        assert_eq!(t.setting(1001 * NS, 1001 * NS), (1003 * NS, false));
        // Absolute monotonic: deadline moved onto the new clock.
        let t = timer(1, 1, 0, 3 * NS);
        assert_eq!(t.setting(1001 * NS, 7 * NS), (9 * NS, false));
        // Absolute periodic realtime past: next deadline in phase.
        let t = timer(CLOCK_REALTIME, 1, 2 * NS, 3 * NS);
        assert_eq!(t.setting(1006 * NS, 1006 * NS), (1007 * NS, true));
    }
}
