//! Waiting for the restored process (a child of the caller) while
//! forwarding the signals the caller gets, as CRaC's restore wrapper does;
//! as the init of a PID namespace (`--pidns`), also reaping orphans.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crac_sys::Errno;

use super::RestoreError;

/// `SIGSEGV` for 11, `signal 40` for unnamed ones.
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(sig as usize) {
        Some(n) if sig > 0 => (*n).to_string(),
        _ => format!("signal {sig}"),
    }
}

/// Signals [`wait_and_forward`] forwards: 1–31 except SIGKILL and SIGSTOP
/// (which cannot be caught), SIGCHLD, and the synchronous fault signals
/// (SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV, SIGSYS), which concern the
/// waiting process itself.
fn forwarded(sig: i32) -> bool {
    (1..=31).contains(&sig) && ![4, 5, 7, 8, 9, 11, 17, 19, 31].contains(&sig)
}

/// Waits for the restored process `pid` (a child of the caller) to end and
/// returns how it ended, so the caller can exit with its status or re-raise
/// its signal.
///
/// Meanwhile every catchable signal 1–31 the calling process receives
/// (SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1/2, SIGTSTP, SIGCONT, SIGWINCH,
/// …) is forwarded to it with `kill`, except ones the terminal sent to the
/// whole foreground process group when the child is in it too (it got its
/// own copy). The signals are blocked in the calling thread for the
/// duration; in a multi-threaded caller other threads should block them too.
pub fn wait_and_forward(pid: u32) -> Result<ExitStatus, RestoreError> {
    wait_and_forward_with(pid, &mut |_| {})
}

/// [`wait_and_forward`], calling `forwarded(signal)` for every signal it
/// forwards (a supervisor tells a death it asked for from a crash).
pub fn wait_and_forward_with(
    pid: u32,
    on_forward: &mut dyn FnMut(i32),
) -> Result<ExitStatus, RestoreError> {
    wait_and_forward_impl(pid, false, on_forward)
}

/// [`wait_and_forward_with`] for the init of a PID namespace
/// ([`pidns`]): also reaps every other process that ends in it (orphans
/// are the init's children).
pub fn wait_and_forward_as_init(
    pid: u32,
    on_forward: &mut dyn FnMut(i32),
) -> Result<ExitStatus, RestoreError> {
    wait_and_forward_impl(pid, true, on_forward)
}

fn wait_and_forward_impl(
    pid: u32,
    init: bool,
    on_forward: &mut dyn FnMut(i32),
) -> Result<ExitStatus, RestoreError> {
    use crac_sys::raw::{sigmask, sigwaitinfo};
    const SIG_BLOCK: i32 = 0;
    const SIG_SETMASK: i32 = 2;
    const SI_KERNEL: i32 = 0x80;
    let wait_err = |e: io::Error| RestoreError::Wait { pid, source: e };
    let p = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| wait_err(io::ErrorKind::InvalidInput.into()))?;
    let mut set = 1u64 << (17 - 1); // SIGCHLD wakes the loop.
    for sig in (1..=31).filter(|&s| forwarded(s)) {
        set |= 1 << (sig - 1);
    }
    let old = sigmask(SIG_BLOCK, set).map_err(|e| wait_err(e.into()))?;
    // The init of a PID namespace gets signals only from the crac outside,
    // which already left out the terminal's (and its process group lies
    // outside the namespace, where it has no number).
    let same_group =
        !init && rustix::process::getpgid(Some(p)).ok() == Some(rustix::process::getpgrp());
    let result = 'outer: loop {
        loop {
            let waited = if init {
                rustix::process::wait(rustix::process::WaitOptions::NOHANG)
            } else {
                rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG)
            };
            match waited {
                Ok(Some((who, st))) if who == p => {
                    break 'outer Ok(ExitStatus::from_raw(st.as_raw()))
                }
                // An orphan the init reaped: look for more.
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => break 'outer Err(wait_err(e.into())),
            }
        }
        let (sig, code, _) = match sigwaitinfo(set) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(e) => break Err(wait_err(e.into())),
        };
        if sig == 17 || (code == SI_KERNEL && same_group && [1, 2, 3, 20, 28].contains(&sig)) {
            continue;
        }
        if let Some(s) = rustix::process::Signal::from_named_raw(sig) {
            on_forward(sig);
            let _ = rustix::process::kill_process(p, s);
        }
    };
    let _ = sigmask(SIG_SETMASK, old);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_forwarded_signals() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(40), "signal 40");
        assert!(forwarded(15) && forwarded(2) && !forwarded(17) && !forwarded(11));
    }
}
