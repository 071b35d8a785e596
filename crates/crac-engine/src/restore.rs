//! Restoring a process from an image (`crac restore`).
//!
//! 1. [`preflight`] checks, before anything is touched, everything that would
//!    make a restore fail or misbehave, and reports all problems at once:
//!    format and checksums, the files the image maps, the CPU, the vDSO
//!    layout, the PID and TIDs, the restorer zone, resource limits.
//! 2. [`restore`] creates a process with the image's PID (`clone3` with
//!    `set_tid`, a fork; `spawn`) that executes the embedded restorer
//!    (`crates/crac-restorer`) from a memfd with
//!    fd 3 = the `meta.crac` bytes preflight checked (a sealed memfd),
//!    fd 4 = `pages.crac` (the descriptor preflight opened and checked),
//!    fd 5 = the status socket and
//!    fd 6 = the restore arguments (start time, flags, caller PID,
//!    environment block), and the descriptors the program inherited at
//!    start above those (see `inherit`). The restorer rebuilds memory, the
//!    vDSO position, mm fields and the threads, then jumps into the
//!    program; it reports its progress and its outcome as
//!    [`crac_image::status`] records on the socket (read by `follow`).
//! 3. In a lazy restore (the default) the restorer leaves the stored pages
//!    of private anonymous areas to the caller (but those of small areas,
//!    [`crac_image::eager_small_area`]): it sends a userfaultfd for
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
mod follow;
mod inherit;
mod memfd;
mod pager;
pub mod pidns;
mod preflight;
mod preflight_files;
mod preflight_machine;
mod preflight_sock;
mod spawn;
mod unpack;
mod wait;
pub use wait::{signal_name, wait_and_forward, wait_and_forward_as_init, wait_and_forward_with};
#[cfg(test)]
mod testimg;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crac_image::status::Stage;
use crac_sys::raw::Errno;

pub use inherit::RestoreWarning;
pub use pager::{LoadError, Loaded, Pager};
pub use preflight::{preflight, preflight_with, Plan, Problem, ProblemKind};

/// The embedded restorer executable (a static ELF file).
pub fn restorer_binary() -> &'static [u8] {
    spawn::RESTORER
}

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
    tracing::debug!(elapsed = ?t0.elapsed(), "preflight done");
    progress(Stage::Start, 0, 0);
    if !rustix::process::geteuid().is_root() {
        // Best effort: without capabilities the restorer reports what it
        // was refused.
        let _ = pidns::keep_capabilities_across_exec();
    }

    let lazy = !opts.eager && !opts.detach && !plan.lazy.is_empty();
    let spawned = spawn::spawn(dir, &plan, &opts, started_ns, lazy)?;
    tracing::debug!(elapsed = ?t0.elapsed(), "restorer spawned");
    follow::follow(spawned, dir, &plan, &opts, t0, progress)
}

#[cfg(test)]
mod tests;
