//! Step 5 of the dump, in a restored process: the dumping thread has
//! returned from its saved context a second time. It waits for every other
//! thread, puts back the process-wide state the restorer leaves to the
//! library, releases the threads and unmaps the restorer's zone.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::Ordering;

use crac_image::RestoreInfo;
use crac_sys::sys;

use super::collect::Facts;
use super::stop::{self, Round, RESTORE_INFO};
use super::LAZY_LOADING;
use crate::native::RestoreFacts;

/// In the restored process: waits for the other threads, puts back what the
/// restorer leaves to the library, releases the threads and unmaps the
/// restorer's zone.
pub(super) fn after_restore(
    own_pending: (u32, u64, u64),
    round: &mut Round,
    facts: &Facts,
    own_mask: u64,
    altstack: (u64, u64, u32),
) -> RestoreFacts {
    round.wait_resumed();
    for (i, a) in facts.sigactions.iter().enumerate() {
        let sig = i as i32 + 1;
        if sig == 9 || sig == 19 || sig == stop::STOP_SIGNAL {
            continue;
        }
        let k = sys::KernelSigaction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        };
        stop::set_sigaction(sig, &k);
    }
    for (r, l) in facts.rlimits.iter().enumerate() {
        let _ = sys::prlimit(r as u32, Some((l.cur, l.max)));
    }
    sys::umask(facts.umask);
    let _ = sys::chdir(&facts.cwd_c);
    for (i, (interval, value)) in facts.itimers.iter().enumerate() {
        if *value != 0 {
            let _ = sys::setitimer(i as i32, *interval, *value);
        }
    }
    if altstack.2 & 2 == 0 && altstack.1 != 0 {
        let _ = sys::sigaltstack(Some((altstack.0, altstack.1, 0)));
    }
    // No allocation until the threads are released: one of them may hold
    // the allocator's lock.
    let words: [u64; 8] = std::array::from_fn(|i| RESTORE_INFO.0[i].load(Ordering::SeqCst));
    let info = RestoreInfo {
        magic: words[0],
        zone_start: words[1],
        zone_len: words[2],
        restore_started_ns: words[3],
        resumed_ns: words[4],
        env_addr: words[5],
        env_len: words[6],
        flags: words[7],
    };
    LAZY_LOADING.store(
        info.magic == crac_image::RESTORE_INFO_MAGIC && info.flags & crac_image::RESTORE_LAZY != 0,
        Ordering::SeqCst,
    );
    round.release();
    // Allocation is fine from here on (a failed timer is logged).
    for t in &facts.timers {
        if let Err(e) = sys::timer_recreate(
            t.id,
            t.clock,
            sys::SigEvent {
                sigval: t.sigval,
                signo: t.signo,
                notify: t.notify,
                tid: t.tid,
            },
            t.interval_ns,
            t.value_ns,
        ) {
            tracing::warn!(
                "restored process: cannot re-create POSIX timer {}: {e}",
                t.id
            );
        }
    }
    let env = if info.magic == crac_image::RESTORE_INFO_MAGIC {
        stop::take_env_and_unmap_zone(&info)
    } else {
        Vec::new()
    };
    let _ = sys::sigprocmask(2, Some(own_mask));
    // Pending signals come back as new signals (their siginfo is not kept).
    let others = round
        .stopped_slots()
        .iter()
        .map(|s| (s.tid, s.pending, s.shared_pending));
    let shared = others.clone().chain([own_pending]).fold(0, |a, p| a | p.2);
    for sig in 1..=64 {
        let bit = 1u64 << (sig - 1);
        if sig == stop::STOP_SIGNAL {
            continue;
        }
        if shared & bit != 0 {
            let _ = sys::kill(facts.pid as i32, sig);
        }
        for (tid, own, _) in others.clone().chain([own_pending]) {
            if own & bit != 0 {
                let _ = sys::tgkill(facts.pid, tid, sig);
            }
        }
    }
    let env = env
        .split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            Some((
                OsString::from_vec(kv[..eq].to_vec()),
                OsString::from_vec(kv[eq + 1..].to_vec()),
            ))
        })
        .collect();
    RestoreFacts {
        restore_started_unix_ns: info.restore_started_ns,
        resumed_unix_ns: info.resumed_ns,
        env,
    }
}
