//! Stage 3 of a restore: following the restorer's status records until the
//! process runs (or the restore failed, leaving nothing behind), with the
//! lazy pager started when the restorer hands over its userfaultfd.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crac_image::status::{Stage, Status, StatusKind, STATUS_LEN};

use super::spawn::Spawned;
use super::{signal_name, unpack, Pager, Plan, RestoreError, RestoreOptions, Restored};

/// How long the restorer may take before it is killed.
const RESTORER_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads the records of the restorer `spawned` (started at `t0` for `plan`,
/// the image in `dir`) until the process runs, calling `progress` as
/// [`restore_with_progress`](super::restore_with_progress) says.
pub(super) fn follow(
    spawned: Spawned,
    dir: &Path,
    plan: &Plan,
    opts: &RestoreOptions,
    t0: Instant,
    progress: &mut dyn FnMut(Stage, u64, u64),
) -> Result<Restored, RestoreError> {
    let Spawned {
        pid,
        status: status_r,
        warnings,
        direct,
        lazy,
    } = spawned;
    let mut stage = Stage::Start;
    let mut loaded = 0u64;
    let mut pager: Option<Pager> = None;
    let mut lazy_bytes = 0;
    let deadline = t0 + RESTORER_TIMEOUT;
    loop {
        let mut rec = [0u8; STATUS_LEN];
        let mut passed = None;
        match read_record(&status_r, &mut rec, &mut passed, deadline) {
            Ok(true) => {}
            Ok(false) => {
                let how = reap(pid).map_or_else(|e| format!("ended ({e})"), describe_end);
                return Err(RestoreError::RestorerDied { stage, how });
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                kill_and_reap(pid);
                return Err(RestoreError::RestorerDied {
                    stage,
                    how: format!("did not finish within {} s", RESTORER_TIMEOUT.as_secs()),
                });
            }
            Err(source) => {
                kill_and_reap(pid);
                return Err(RestoreError::Status { stage, source });
            }
        }
        let st = match Status::decode(&rec) {
            Ok(s) => s,
            Err(e) => {
                kill_and_reap(pid);
                return Err(RestoreError::Status {
                    stage,
                    source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                });
            }
        };
        if st.stage != stage || st.kind != StatusKind::Progress {
            // Where the milliseconds of a restore go (`crac -vv restore`).
            tracing::debug!(elapsed = ?t0.elapsed(), stage = st.stage.name(), "restorer");
        }
        stage = st.stage;
        match st.kind {
            StatusKind::Progress => {
                tracing::trace!(
                    stage = stage.name(),
                    done = st.object,
                    total = st.aux,
                    "restorer progress"
                );
                if stage == Stage::LoadPages && st.aux > 0 {
                    loaded = loaded.max(st.object.min(st.aux));
                    progress(stage, loaded, st.aux);
                } else {
                    progress(stage, 0, 0);
                }
            }
            StatusKind::Lazy => {
                let (true, Some(fd), None) = (lazy, passed, &pager) else {
                    kill_and_reap(pid);
                    return Err(RestoreError::Status {
                        stage,
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            "an unexpected lazy-loading record",
                        ),
                    });
                };
                lazy_bytes = st.object;
                let expected: u64 = plan.lazy.iter().map(|e| e.1).sum();
                if lazy_bytes != expected {
                    // Pages nobody would load must never read as zeros.
                    kill_and_reap(pid);
                    return Err(RestoreError::Restorer {
                        stage,
                        errno: None,
                        object: lazy_bytes,
                        detail: format!(
                            "it left {lazy_bytes} bytes of pages to load lazily, the image holds {expected} in those areas"
                        ),
                    });
                }
                let on_loaded = opts.on_loaded.clone();
                match Pager::start(fd, pid, plan.verified.clone(), &plan.lazy, on_loaded) {
                    Ok(p) => pager = Some(p),
                    Err(source) => {
                        kill_and_reap(pid);
                        return Err(RestoreError::Setup {
                            what: "pager thread",
                            source,
                        });
                    }
                }
            }
            StatusKind::Ok => {
                if let Some(p) = &pager {
                    p.resumed();
                }
                return Ok(Restored {
                    pid,
                    threads: st.aux as u32,
                    elapsed: t0.elapsed(),
                    lazy_bytes,
                    warnings,
                    pager,
                });
            }
            StatusKind::Error => {
                let _ = reap(pid);
                if direct && stage == Stage::LoadPages {
                    // A piece the restorer found damaged, named as the
                    // image checks name it (file bytes, memory).
                    if let Some(e) = unpack::recheck(&plan.verified, dir, st.detail(), st.object) {
                        return Err(e);
                    }
                }
                return Err(RestoreError::Restorer {
                    stage,
                    errno: (st.errno != 0).then_some(st.errno),
                    object: st.object,
                    detail: String::from_utf8_lossy(st.detail()).into_owned(),
                });
            }
        }
    }
}

/// Reads one whole record (one message) and the fd passed with it, if
/// any; `Ok(false)` at end of file (or a short record).
fn read_record(
    sock: &OwnedFd,
    rec: &mut [u8],
    passed: &mut Option<OwnedFd>,
    deadline: Instant,
) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let ts = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(sock, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            sock,
            &mut [io::IoSliceMut::new(rec)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        );
        let msg = match r {
            Ok(m) => m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = m {
                for fd in fds {
                    passed.get_or_insert(fd);
                }
            }
        }
        return Ok(msg.bytes == rec.len() && !msg.flags.contains(ReturnFlags::TRUNC));
    }
}

pub(super) fn reap(pid: u32) -> io::Result<ExitStatus> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or(io::ErrorKind::InvalidInput)?;
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => return Ok(ExitStatus::from_raw(st.as_raw())),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

pub(super) fn kill_and_reap(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = reap(pid);
}

/// `was killed by SIGSEGV`, `exited with status 3`.
pub(super) fn describe_end(st: ExitStatus) -> String {
    if let Some(sig) = st.signal() {
        let core = if st.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        format!("was killed by {}{core}", signal_name(sig))
    } else {
        format!(
            "exited with status {} without reporting",
            st.code().unwrap_or(-1)
        )
    }
}
