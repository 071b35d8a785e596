//! Restoring a process from an image (`crac restore`).
//!
//! 1. [`preflight`] checks, before anything is touched, everything that would
//!    make a restore fail or misbehave, and reports all problems at once:
//!    format and checksums, the files the image maps, the CPU, the vDSO
//!    layout, the PID and TIDs, the restorer zone, resource limits.
//! 2. [`restore`] creates a process with the image's PID (`clone3` with
//!    `set_tid`, a fork) that executes the embedded restorer
//!    (`crates/crac-restorer`) from a memfd with
//!    fd 3 = the `meta.crac` bytes preflight checked (a sealed memfd),
//!    fd 4 = `pages.crac` (the descriptor preflight opened and checked),
//!    fd 5 = the status socket and
//!    fd 6 = the restore arguments (start time, flags, caller PID,
//!    environment block), and the descriptors the program inherited at
//!    start above those (see `inherit`). The restorer rebuilds memory, the
//!    vDSO position, mm fields and the threads, then jumps into the
//!    program; it reports its progress and its outcome as
//!    [`crac_image::status`] records on the socket.
//! 3. In a lazy restore (the default) the restorer leaves the stored pages
//!    of private anonymous areas to the caller: it sends a userfaultfd for
//!    them, and the [`Pager`] thread started here serves the process's page
//!    faults and loads the rest in the background while it runs
//!    ([`Restored::finish`] waits for it). The process is killed if the
//!    thread that called [`restore`] ends before (parent-death signal).
//! 4. [`wait_and_forward`] waits for the restored process (a child of the
//!    caller) and forwards the signals the caller receives to it.
//!
//! # Restorer zone
//! The restorer and everything it uses lie in
//! `[RESTORER_ZONE_BASE, +RESTORER_ZONE_LEN)` = `0x2a00_0000_0000 + 256 MiB`:
//! the program itself at +0 (at most 16 MiB, checked at build time), the
//! metadata at +16 MiB (at most 64 MiB), the arguments and environment block
//! at +80 MiB (at most 16 MiB), a parking spot for the vDSO block at +96 MiB
//! and 32 KiB per-thread stacks from +112 MiB (at most 4608 threads). The
//! restored program unmaps the zone once every thread has resumed.

#[cfg(test)]
mod creds_tests;
mod inherit;
mod memfd;
mod pager;
pub mod pidns;
mod preflight;
mod preflight_files;
mod preflight_sock;
mod unpack;
mod wait;
pub use wait::{signal_name, wait_and_forward, wait_and_forward_as_init, wait_and_forward_with};
#[cfg(test)]
mod testimg;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crac_image::status::Stage;
use crac_image::status::{Status, StatusKind, STATUS_LEN};
use crac_sys::raw::{Errno, ExecChild};
use memfd::{memfd, sealed_memfd};

pub use inherit::RestoreWarning;
pub use pager::{LoadError, Loaded, Pager};
pub use preflight::{preflight, preflight_with, Plan, Problem, ProblemKind};

/// The restorer program, built by `build.rs` from `crates/crac-restorer`.
static RESTORER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crac-restorer"));

/// The embedded restorer executable (a static ELF file).
pub fn restorer_binary() -> &'static [u8] {
    RESTORER
}

/// How long the restorer may take before it is killed.
const RESTORER_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Start the restored process in a session of its own (`setsid`), so it
    /// is not in the caller's process group and keeps running unaffected by
    /// the terminal when the caller exits. The caller does not wait for it
    /// (it is still the caller's child: a long-lived caller should reap it).
    pub detach: bool,
    /// Environment values handed to the restored program (it applies them
    /// itself after resuming).
    pub env: Vec<(OsString, OsString)>,
    /// Load all memory before the process resumes. By default (and never
    /// with `detach`) the private anonymous memory of a restore is loaded
    /// lazily: the process resumes as soon as its areas are mapped and the
    /// caller's pager thread serves its page faults and loads the rest in
    /// the background (see [`Restored::finish`]).
    pub eager: bool,
    /// Check every piece of the page data before anything is restored
    /// (otherwise each piece is checked as it is loaded).
    pub verify: bool,
    /// Called on the pager thread once lazy loading ended: everything is
    /// loaded while the process runs on, or the process ended first (not
    /// for eager or detached restores, nor when loading fails:
    /// [`Restored::finish`] reports that). It may run before [`restore`]
    /// returns.
    pub on_loaded: Option<OnLoaded>,
}

/// See [`RestoreOptions::on_loaded`].
#[derive(Clone)]
pub struct OnLoaded(pub std::sync::Arc<dyn Fn(&Loaded) + Send + Sync>);

impl std::fmt::Debug for OnLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnLoaded(..)")
    }
}

/// A process restored and running.
#[derive(Debug)]
pub struct Restored {
    /// Its PID (the image's).
    pub pid: u32,
    /// Number of threads it has.
    pub threads: u32,
    /// Time from the start of [`restore`] until the process resumed.
    pub elapsed: Duration,
    /// Bytes of page data left to load after the resume (0: eager).
    pub lazy_bytes: u64,
    /// What the restored process got differently from what it had.
    pub warnings: Vec<RestoreWarning>,
    pager: Option<Pager>,
}

impl Restored {
    /// Waits until the lazily loaded memory of the process (and of any child
    /// it forked meanwhile) is complete, or the process is gone. Returns at
    /// once after an eager restore. Dropping a `Restored` waits the same way:
    /// the process is tied to the caller (it is killed if the caller dies)
    /// until its memory is complete.
    pub fn finish(&mut self) -> Result<Loaded, LoadError> {
        match &mut self.pager {
            Some(p) => p.finish(),
            None => Ok(Loaded::default()),
        }
    }
}

/// Why a restore failed. After any of these no restored process is left
/// behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// [`preflight`] found problems; nothing was started.
    #[error("the image {} cannot be restored here:{}", dir.display(), problem_list(problems))]
    Preflight {
        /// The image directory.
        dir: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// An image file could not be opened for the restorer.
    #[error("could not open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Preparing the restorer's memfds or pipe failed.
    #[error("could not prepare the restorer ({what})")]
    Setup {
        /// What was being prepared.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A piece of a compressed image is damaged (found while decompressing
    /// it for the restorer, before anything ran).
    #[error(transparent)]
    Pages(crac_image::VerifyError),
    /// Another process took the PID after the preflight.
    #[error("PID {pid} is taken by {holder}")]
    PidTaken {
        /// The image's PID.
        pid: u32,
        /// Who holds it, e.g. `process 1234 (sleep)`.
        holder: String,
    },
    /// A caller other than root lacks the capability to choose PIDs.
    #[error(
        "could not create process {pid} with its PID: this user lacks CAP_CHECKPOINT_RESTORE \
         (`crac restore --pidns` restores it in user and PID namespaces of its own)"
    )]
    SpawnRefused {
        /// The image's PID.
        pid: u32,
    },
    /// `clone3` failed otherwise.
    #[error("could not create process {pid}")]
    Spawn {
        /// The image's PID.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The restorer reported an error and exited.
    #[error("the restorer failed while {stage}: {}", restorer_facts(detail, *errno, *object))]
    Restorer {
        /// The stage that failed.
        stage: Stage,
        /// The failed system call's errno, if any.
        errno: Option<i32>,
        /// The address or id concerned (0 if none).
        object: u64,
        /// What failed, with its facts.
        detail: String,
    },
    /// The restorer died without reporting (a crash or a kill).
    #[error("the restorer {how} while {stage}")]
    RestorerDied {
        /// The last stage it reported.
        stage: Stage,
        /// `was killed by SIGSEGV`, `exited with status 3`, `did not finish within 120 s`.
        how: String,
    },
    /// Reading the restorer's status pipe failed.
    #[error("could not read the restorer's status while {stage}")]
    Status {
        /// The last stage it reported.
        stage: Stage,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the restored process failed.
    #[error("could not wait for process {pid}")]
    Wait {
        /// The restored process.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn problem_list(problems: &[Problem]) -> String {
    let mut s = String::new();
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(&p.message);
    }
    s
}

fn restorer_facts(detail: &str, errno: Option<i32>, object: u64) -> String {
    let mut s = if detail.is_empty() {
        format!("at {object:#x}")
    } else {
        detail.to_string()
    };
    if let Some(e) = errno {
        s.push_str(&format!(": {}", Errno(e)));
    }
    s
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> RestoreError {
    move |source| RestoreError::Setup { what, source }
}

/// Restore argument flag: load private anonymous memory lazily.
const ARG_LAZY: u64 = 1;

/// The restore arguments (fd 6): start time, flags ([`ARG_LAZY`]), the
/// caller's PID, environment length (`u64` each), then `KEY=VALUE\0`
/// entries; then, 8-aligned, the length (`u64`) of the credentials the
/// preflight checked and those credentials as one `Creds` section. The
/// restorer gives the process these and refuses an image whose own record
/// differs: an image file its user rewrites after the preflight cannot
/// make the process root.
fn restore_args(
    started_ns: u64,
    flags: u64,
    env: &[(OsString, OsString)],
    creds: &crac_image::creds::Creds,
) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in env {
        block.extend_from_slice(k.as_bytes());
        block.push(b'=');
        block.extend_from_slice(v.as_bytes());
        block.push(0);
    }
    let mut out = Vec::with_capacity(32 + block.len());
    out.extend_from_slice(&started_ns.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&u64::from(std::process::id()).to_le_bytes());
    out.extend_from_slice(&(block.len() as u64).to_le_bytes());
    out.extend_from_slice(&block);
    out.resize(out.len().next_multiple_of(8), 0);
    let mut buf = vec![0u8; 128 + creds.groups_le.len()];
    let mut w = crac_image::Writer::new(&mut buf);
    creds.as_record().encode(&mut w);
    let section = w.finish().expect("sized for the record");
    out.extend_from_slice(&(section.len() as u64).to_le_bytes());
    out.extend_from_slice(section);
    out
}

/// Restores the image in `image_dir` as a child of the calling process and
/// returns once it runs (or the restore failed, leaving nothing behind).
pub fn restore(
    image_dir: impl AsRef<Path>,
    opts: RestoreOptions,
) -> Result<Restored, RestoreError> {
    restore_with_progress(image_dir, opts, &mut |_, _, _| {})
}

/// [`restore`], calling `progress(stage, done, total)` on the calling thread
/// as the restore goes on: once the preflight passed ([`Stage::Start`]), as
/// the restorer enters each stage (`done` = `total` = 0), and while it loads
/// the pages of an image with at least
/// [`BYTE_PROGRESS_MIN`](crac_image::status::BYTE_PROGRESS_MIN) bytes of
/// page data ([`Stage::LoadPages`], `done` of `total` bytes, `done` never
/// decreasing). The callback only observes: it cannot change the outcome,
/// and it should return quickly (the restorer waits while the status pipe is
/// full).
pub fn restore_with_progress(
    image_dir: impl AsRef<Path>,
    opts: RestoreOptions,
    progress: &mut dyn FnMut(Stage, u64, u64),
) -> Result<Restored, RestoreError> {
    let t0 = Instant::now();
    let started_ns = now_unix_ns();
    let dir = image_dir.as_ref();
    let plan = preflight_with(dir, opts.verify)?;
    let pid = plan.pid;
    tracing::debug!(elapsed = ?t0.elapsed(), "preflight done");
    progress(Stage::Start, 0, 0);
    if !rustix::process::geteuid().is_root() {
        // Best effort: without capabilities the restorer reports what it
        // was refused.
        let _ = pidns::keep_capabilities_across_exec();
    }

    // The restorer gets what preflight checked, never the paths again: the
    // metadata bytes in a sealed memfd, the page file's descriptor.
    let lazy = !opts.eager && !opts.detach && !plan.lazy.is_empty();
    // A compressed image: an LZ4 one goes to the restorer as it is (it
    // decompresses and checks each piece it loads itself); for a Zstandard
    // one the restorer reads an uncompressed view of its pieces (see
    // `unpack`). The lazy pager reads and checks its pieces itself.
    let direct = unpack::restorer_reads(&plan.verified.image);
    let unpacked = match plan.verified.image.stored {
        Some(_) if !direct => Some(unpack::unpack(&plan.verified, dir, !lazy, &plan.lazy)?),
        _ => None,
    };
    let meta_bytes = unpacked
        .as_ref()
        .map_or(&plan.verified.meta[..], |u| &u.meta[..]);
    let meta = sealed_memfd(c"crac-meta", meta_bytes).map_err(setup("metadata memfd"))?;
    let pages_file = unpacked.as_ref().map_or(&plan.verified.pages, |u| &u.pages);
    let pages = pages_file
        .try_clone()
        .map_err(|source| RestoreError::Open {
            path: dir.join(crac_image::PAGES_FILE),
            source: io::Error::new(
                source.kind(),
                format!("duplicating its descriptor: {source}"),
            ),
        })?;
    let mut exe = memfd(c"crac-restorer", true).map_err(setup("restorer memfd"))?;
    exe.write_all(RESTORER).map_err(setup("restorer memfd"))?;
    let mut args = memfd(c"crac-restore-args", false).map_err(setup("arguments memfd"))?;
    let flags = if lazy { ARG_LAZY } else { 0 };
    args.write_all(&restore_args(started_ns, flags, &opts.env, &plan.creds))
        .map_err(setup("arguments memfd"))?;
    // A socket, not a pipe: the restorer of a lazy restore sends its
    // userfaultfd along with a record.
    let (status_r, status_w): (OwnedFd, OwnedFd) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RestoreError::Setup {
        what: "status socket",
        source: e.into(),
    })?;

    // Descriptors inherited at start pass through (see `inherit`).
    let handoff = inherit::prepare(&plan.fds).map_err(setup("inherited descriptors"))?;
    let mut fds = vec![
        (meta.as_raw_fd(), 3),
        (pages.as_raw_fd(), 4),
        (status_w.as_raw_fd(), 5),
        (args.as_raw_fd(), 6),
    ];
    fds.extend_from_slice(&handoff.pairs);
    let fail_record = Status::error(Stage::Start, 0, 0)
        .with_detail(b"executing the restorer failed (step: object)")
        .encode();
    let child = ExecChild {
        fds: &fds,
        close_from: 7,
        exec_fd: exe.as_raw_fd(),
        argv: &[c"crac-restorer"],
        envp: &[],
        fail_fd: status_w.as_raw_fd(),
        fail_record: &fail_record,
        fail_errno_at: 16,
        fail_step_at: 24,
        new_session: opts.detach,
    };
    // Preflight saw the PID free; a process that just died may hold it a
    // little longer (until reaped).
    let spawned =
        crac_sys::commit::retry_taken(|| crac_sys::raw::spawn_exec_with_pid(pid as i32, &child));
    let warnings = handoff.warnings;
    drop((meta, pages, exe, args, status_w, handoff.null, unpacked));
    let child_pid = match spawned {
        Ok(p) => p as u32,
        Err(Errno::EEXIST) => {
            return Err(RestoreError::PidTaken {
                pid,
                holder: preflight::holder(pid),
            })
        }
        Err(Errno::EPERM) if !rustix::process::geteuid().is_root() => {
            return Err(RestoreError::SpawnRefused { pid })
        }
        Err(e) => {
            return Err(RestoreError::Spawn {
                pid,
                source: e.into(),
            })
        }
    };
    debug_assert_eq!(child_pid, pid);
    tracing::debug!(elapsed = ?t0.elapsed(), "restorer spawned");

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

fn reap(pid: u32) -> io::Result<ExitStatus> {
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

fn kill_and_reap(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = reap(pid);
}

/// `was killed by SIGSEGV`, `exited with status 3`.
fn describe_end(st: ExitStatus) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_restorer_lies_in_its_zone() {
        let b = restorer_binary();
        assert_eq!(&b[0..4], b"\x7fELF");
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(u16_at(16), 2, "ET_EXEC");
        let (phoff, phentsize, phnum) = (
            u64_at(32) as usize,
            u16_at(54) as usize,
            u16_at(56) as usize,
        );
        let zone = crac_image::RESTORER_ZONE_BASE..crac_image::RESTORER_ZONE_BASE + 0x0100_0000;
        let mut loads = 0;
        for i in 0..phnum {
            let o = phoff + i * phentsize;
            if u32_at(o) == 1 {
                let (vaddr, memsz) = (u64_at(o + 16), u64_at(o + 40));
                assert!(
                    zone.contains(&vaddr) && vaddr + memsz <= zone.end,
                    "{vaddr:#x}+{memsz:#x}"
                );
                loads += 1;
            }
            assert!(![2, 3].contains(&u32_at(o)), "dynamic segment");
        }
        assert!(loads >= 2);
        const { assert!(crac_image::RESTORER_ZONE_LEN >= 0x1000_0000) };
    }

    #[test]
    fn restore_args_layout() {
        let mut creds = crac_image::creds::Creds {
            uids: [5; 4],
            ..Default::default()
        };
        creds.set_groups(vec![9]);
        let a = restore_args(
            7,
            ARG_LAZY,
            &[("A".into(), "1".into()), ("B".into(), "".into())],
            &creds,
        );
        assert_eq!(&a[0..8], &7u64.to_le_bytes());
        assert_eq!(&a[8..16], &ARG_LAZY.to_le_bytes());
        assert_eq!(&a[16..24], &u64::from(std::process::id()).to_le_bytes());
        assert_eq!(&a[24..32], &7u64.to_le_bytes());
        assert_eq!(&a[32..40], b"A=1\0B=\0\0");
        let len = u64::from_le_bytes(a[40..48].try_into().unwrap()) as usize;
        assert_eq!(a.len(), 48 + len);
        let (tag, mut p) = crac_image::Reader::new(&a[48..])
            .next_section()
            .unwrap()
            .unwrap();
        assert_eq!(tag, crac_image::Tag::Creds as u32);
        let back = crac_image::CredsRecord::decode(&mut p).unwrap();
        assert_eq!(back, creds.as_record());
    }

    #[test]
    fn messages_name_the_stage_and_facts() {
        let e = RestoreError::Restorer {
            stage: Stage::MapMemory,
            errno: Some(2),
            object: 0x1000,
            detail: "opening the mapped file /lib/x.so failed".into(),
        };
        assert_eq!(
            e.to_string(),
            "the restorer failed while mapping memory: opening the mapped file /lib/x.so failed: ENOENT (errno 2)"
        );
        let e = RestoreError::RestorerDied {
            stage: Stage::LoadPages,
            how: describe_end(ExitStatus::from_raw(11)),
        };
        assert_eq!(
            e.to_string(),
            "the restorer was killed by SIGSEGV while loading pages"
        );
        assert_eq!(signal_name(40), "signal 40");
    }

    fn tmpdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn preflight_accepts_a_good_image() {
        let d = tmpdir();
        let (pid, tid) = testimg::free_ids();
        testimg::write(d.path(), pid, tid, &testimg::Tweaks::default());
        let plan = preflight(d.path()).unwrap();
        assert_eq!(plan.pid, pid);
        assert_eq!(plan.tids, [pid, tid]);
        assert_eq!(plan.pages, 1);
    }

    #[test]
    fn preflight_reports_every_problem_at_once() {
        let d = tmpdir();
        let me = std::process::id();
        let tweaks = testimg::Tweaks {
            area_start: Some(crac_image::RESTORER_ZONE_BASE),
            file: Some((b"/nonexistent/lib.so".to_vec(), 10, 0x50_0000)),
            nofile_max: Some(u64::MAX),
            ..Default::default()
        };
        testimg::write(d.path(), me, me + 1, &tweaks);
        // Damage the page data: only a preflight that verifies every
        // piece reads it (a restore checks each piece as it loads it).
        let pages = d.path().join(crac_image::PAGES_FILE);
        let mut b = std::fs::read(&pages).unwrap();
        b[4096] ^= 0xff;
        std::fs::write(&pages, b).unwrap();
        let RestoreError::Preflight { problems, .. } = preflight(d.path()).unwrap_err() else {
            panic!("not a preflight error");
        };
        assert!(problems.iter().all(|p| p.kind != ProblemKind::Checksum));
        let err = preflight_with(d.path(), true).unwrap_err();
        let RestoreError::Preflight { problems, .. } = &err else {
            panic!("{err}");
        };
        let kinds: Vec<_> = problems.iter().map(|p| p.kind).collect();
        for k in [
            ProblemKind::Checksum,
            ProblemKind::IdTaken,
            ProblemKind::ZoneCollision,
            ProblemKind::File,
        ] {
            assert!(kinds.contains(&k), "{k:?} missing in {err}");
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("PID {me} is taken by process {me}")),
            "{text}"
        );
        assert!(text.contains("/nonexistent/lib.so"), "{text}");
        assert!(
            text.contains(&format!(
                "page file {}/pages.crac is damaged: piece 0 (file bytes 0x1000-0x2000) hashes to",
                d.path().display()
            )),
            "{text}"
        );
        let hard_nofile = crac_sys::sys::prlimit(7, None).unwrap().1;
        if hard_nofile != u64::MAX {
            assert!(kinds.contains(&ProblemKind::Rlimit), "{text}");
        }
    }

    #[test]
    fn restores_a_hand_made_image() {
        let d = tmpdir();
        let (pid, tid) = testimg::free_ids();
        testimg::write(d.path(), pid, tid, &testimg::Tweaks::default());
        let r = restore(d.path(), RestoreOptions::default()).unwrap();
        assert_eq!((r.pid, r.threads), (pid, 2));
        let st = wait_and_forward(pid).unwrap();
        assert_eq!(st.code(), Some(42), "{st:?}");
        eprintln!("restore took {:?}", r.elapsed);
    }

    #[test]
    fn restorer_errors_name_stage_and_object() {
        let d = tmpdir();
        let (pid, tid) = testimg::free_ids();
        let tweaks = testimg::Tweaks {
            area_start: Some(0x8000_0000_0000),
            ..Default::default()
        };
        testimg::write(d.path(), pid, tid, &tweaks);
        let err = restore(d.path(), RestoreOptions::default()).unwrap_err();
        let RestoreError::Restorer {
            stage,
            object,
            errno,
            ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(
            (*stage, *object),
            (Stage::MapMemory, 0x8000_0000_0000),
            "{err}"
        );
        eprintln!("{err}");
        assert!(errno.is_some(), "{err}");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the restorer was not reaped"
        );
    }

    #[test]
    fn wait_and_forward_forwards_signals_and_reports_them() {
        let d = tmpdir();
        let (pid, tid) = testimg::free_ids();
        let tweaks = testimg::Tweaks {
            wait_signal: true,
            ..Default::default()
        };
        testimg::write(d.path(), pid, tid, &tweaks);
        restore(d.path(), RestoreOptions::default()).unwrap();
        let me = crac_sys::sys::gettid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // To the waiting thread only (other test threads do not block it).
            crac_sys::sys::tgkill(std::process::id(), me, 10).unwrap();
        });
        let st = wait_and_forward(pid).unwrap();
        killer.join().unwrap();
        assert_eq!(st.signal(), Some(10), "{st:?}");
    }

    /// Images with 8 MiB of pages or more are loaded by two restorer
    /// threads: every page must arrive, and the helper thread must be gone
    /// (it never holds an image TID) when the program runs.
    #[test]
    fn big_image_loads_every_page_on_two_threads() {
        big_image_loads_every_page(true);
    }

    /// A lazy restore: once the pager is done, every page is there.
    #[test]
    fn big_image_loads_every_page_lazily() {
        big_image_loads_every_page(false);
    }

    fn big_image_loads_every_page(eager: bool) {
        let d = tmpdir();
        let pages = 4099; // not an even split
        let (pid, tid) = testimg::free_ids();
        let tweaks = testimg::Tweaks {
            big_pages: pages,
            wait_signal: true,
            ..Default::default()
        };
        testimg::write(d.path(), pid, tid, &tweaks);
        let opts = RestoreOptions {
            eager,
            ..Default::default()
        };
        let mut r = restore(d.path(), opts).unwrap();
        assert_eq!((r.pid, r.threads), (pid, 2));
        assert_eq!(r.lazy_bytes == 0, eager, "{r:?}");
        // Other processes cannot read memory that is still loading (EIO).
        let loaded = r.finish().unwrap();
        if !eager {
            assert!(loaded.bytes >= pages * 4096, "{loaded:?}");
        }
        let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        assert!(
            tasks.iter().all(|t| *t == pid || *t == tid),
            "unexpected threads {tasks:?}"
        );
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
        let mut got = vec![0u8; pages as usize * 4096];
        use std::os::unix::fs::FileExt;
        mem.read_exact_at(&mut got, testimg::BIG).unwrap();
        kill_and_reap(pid);
        for (i, page) in got.chunks(4096).enumerate() {
            let want = i as u8 | 1;
            assert!(page.iter().all(|b| *b == want), "page {i} differs");
        }
    }

    /// Images with 64 MiB of pages or more report the bytes loaded: from 0
    /// to the total, never decreasing, in steps of at most 16 MiB per
    /// thread; smaller images only report their stages.
    #[test]
    fn big_image_reports_byte_progress() {
        use crac_image::status::{BYTE_PROGRESS_MIN, BYTE_PROGRESS_STEP};
        let d = tmpdir();
        let pages = BYTE_PROGRESS_MIN / 4096 + 1000;
        let (pid, tid) = testimg::free_ids();
        let tweaks = testimg::Tweaks {
            big_pages: pages,
            ..Default::default()
        };
        testimg::write(d.path(), pid, tid, &tweaks);
        let mut seen = Vec::new();
        let mut record = |stage, done, total| seen.push((stage, done, total));
        let eager = RestoreOptions {
            eager: true,
            ..Default::default()
        };
        restore_with_progress(d.path(), eager, &mut record).unwrap();
        let _ = reap(pid);
        assert_eq!(seen.first(), Some(&(Stage::Start, 0, 0)));
        let bytes: Vec<(u64, u64)> = seen
            .iter()
            .filter(|(s, _, t)| *s == Stage::LoadPages && *t > 0)
            .map(|(_, d, t)| (*d, *t))
            .collect();
        // The small pages of the test program's other areas count too.
        let total = bytes[0].1;
        assert!(total >= pages * 4096, "{seen:?}");
        assert_eq!(bytes.first(), Some(&(0, total)), "{seen:?}");
        assert_eq!(bytes.last(), Some(&(total, total)), "{seen:?}");
        assert!(bytes.len() as u64 >= total / BYTE_PROGRESS_STEP, "{seen:?}");
        assert!(bytes.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
        assert!(bytes.iter().all(|b| b.1 == total), "{seen:?}");
        let at = |s| seen.iter().position(|x| x.0 == s).unwrap();
        assert!(at(Stage::MapMemory) < at(Stage::LoadPages), "{seen:?}");
        assert!(at(Stage::LoadPages) < at(Stage::SetMm), "{seen:?}");

        let small = tmpdir();
        let (pid, tid) = testimg::free_ids();
        testimg::write(small.path(), pid, tid, &testimg::Tweaks::default());
        let mut seen = Vec::new();
        let mut record = |stage, done, total| seen.push((stage, done, total));
        restore_with_progress(small.path(), RestoreOptions::default(), &mut record).unwrap();
        let _ = reap(pid);
        assert!(seen.iter().all(|(_, d, t)| (*d, *t) == (0, 0)), "{seen:?}");
        assert!(seen.iter().any(|x| x.0 == Stage::Resume), "{seen:?}");
    }

    #[test]
    fn detached_restore_gets_its_own_session() {
        let d = tmpdir();
        let (pid, tid) = testimg::free_ids();
        let tweaks = testimg::Tweaks {
            wait_signal: true,
            ..Default::default()
        };
        testimg::write(d.path(), pid, tid, &tweaks);
        let opts = RestoreOptions {
            detach: true,
            ..Default::default()
        };
        restore(d.path(), opts).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // Fields 5 (pgrp) and 6 (session), counted from 1 with pid and comm.
        assert_eq!(
            (fields[2], fields[3]),
            (&*pid.to_string(), &*pid.to_string())
        );
        kill_and_reap(pid);
    }
}
