//! `crac run --image DIR -- PROGRAM`: restore DIR if it holds an image that
//! can be restored here, else start PROGRAM fresh with checkpoints going to
//! DIR (the reason printed once).
//!
//! Alone, this restores as `crac restore DIR` does or executes the program
//! in place as `crac run --checkpoint-to DIR` does. With
//! `--checkpoint-every` or `--restore-on-crash`, crac stays the program's
//! parent: a thread asks for a live checkpoint every period (the engine
//! replaces the image atomically), and when the program dies of a signal
//! crac did not forward, or exits non-zero, it is restored from the last
//! image, at most N times in a row. A checkpoint after a restore shows the
//! program ran again and starts the count anew.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crac_engine::restore as engine;

use super::restore::{self, Running, Started};
use super::run::{absolute, check_parent, exec_in_place, program_command, RunError};
use crate::cli::{RestoreArgs, RunArgs};
use crate::output::{self, Reporter};

/// Why the image in `dir` cannot be restored here, or `None` if it can.
fn why_not_restorable(dir: &Path) -> Option<String> {
    if !dir.join(crac_image::META_FILE).exists() {
        return Some(format!("{} holds no image", dir.display()));
    }
    match engine::preflight(dir) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn restore_args(dir: &Path) -> RestoreArgs {
    RestoreArgs {
        dir: dir.to_owned(),
        detach: false,
        eager: false,
        verify: false,
        env: Vec::new(),
        env_file: Vec::new(),
        pid_file: None,
        pidns: false,
        json: false,
    }
}

/// Runs `crac run --image DIR`.
pub fn run_image(args: RunArgs, out: Reporter) -> Result<ExitCode, RunError> {
    let dir = absolute(args.image.as_deref().expect("run_image needs --image"))?;
    check_parent(&dir)?;
    let program = args.program[0].to_string_lossy().into_owned();
    let why_not = why_not_restorable(&dir);
    if let Some(why) = &why_not {
        out.status(format!("starting {program} fresh: {why}"));
    }
    if args.checkpoint_every.is_none() && args.restore_on_crash.is_none() {
        return match why_not {
            None => Ok(restore::restore(restore_args(&dir), out)?),
            Some(_) => exec_in_place(&args, &dir),
        };
    }
    Supervisor {
        dir,
        out,
        pid: Arc::new(AtomicU32::new(0)),
        in_a_row: Arc::new(AtomicU32::new(0)),
    }
    .run(&args, why_not.is_none())
}

/// The process crac is the parent of.
enum Child {
    Started(std::process::Child),
    Restored(Running),
}

struct Supervisor {
    dir: PathBuf,
    out: Reporter,
    /// The program's PID (0 while none runs).
    pid: Arc<AtomicU32>,
    /// Restores since the last checkpoint.
    in_a_row: Arc<AtomicU32>,
}

impl Supervisor {
    fn restore(&self) -> Result<Child, RunError> {
        match restore::start(restore_args(&self.dir), self.out)? {
            Started::Attached(r) => Ok(Child::Restored(r)),
            // Neither detached nor a pause image (the preflight read it).
            Started::Done(_) => Err(RunError::NotSupervised {
                dir: self.dir.clone(),
            }),
        }
    }

    fn run(self, args: &RunArgs, restorable: bool) -> Result<ExitCode, RunError> {
        let mut child = if restorable {
            self.restore()?
        } else {
            let mut command = program_command(args, &self.dir)?;
            let program = args.program[0].clone();
            Child::Started(
                command
                    .spawn()
                    .map_err(|source| RunError::Spawn { program, source })?,
            )
        };
        let stop = Arc::new(AtomicBool::new(false));
        let checkpoints = args.checkpoint_every.map(|every| {
            let (pid, in_a_row, stop) = (
                Arc::clone(&self.pid),
                Arc::clone(&self.in_a_row),
                Arc::clone(&stop),
            );
            let out = self.out;
            std::thread::Builder::new()
                .name("crac-checkpoints".into())
                .spawn(move || checkpoint_every(every, &pid, &in_a_row, &stop, out))
        });
        let limit = args.restore_on_crash.unwrap_or(0);
        let result = loop {
            let (pid, status) = match self.wait(child) {
                Ok(x) => x,
                Err(e) => break Err(e),
            };
            let Some(reason) = crashed(&status.0) else {
                break Ok((pid, status.0));
            };
            if status.1 {
                // It died of a signal crac forwarded: asked for, not a crash.
                break Ok((pid, status.0));
            }
            let n = self.in_a_row.fetch_add(1, Ordering::SeqCst) + 1;
            if n > limit || !self.dir.join(crac_image::META_FILE).exists() {
                if limit > 0 {
                    self.out.status(format!(
                        "process {pid} {reason}; not restored again ({} restore{} in a row \
                         without a checkpoint in between)",
                        n - 1,
                        if n == 2 { "" } else { "s" }
                    ));
                }
                break Ok((pid, status.0));
            }
            self.out.status(format!(
                "process {pid} {reason}; restoring it from {} ({n} of at most {limit} in a row)",
                self.dir.display()
            ));
            // The PID is free: crac reaped it.
            child = match self.restore() {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
        };
        stop.store(true, Ordering::SeqCst);
        if let Some(Ok(t)) = checkpoints {
            let _ = t.join();
        }
        let (pid, status) = result?;
        Ok(restore::exit_like(pid, status))
    }

    /// Waits for the child, forwarding signals; returns its PID, how it
    /// ended and whether crac forwarded it a signal that ends a program.
    fn wait(&self, child: Child) -> Result<(u32, (std::process::ExitStatus, bool)), RunError> {
        let pid = match &child {
            Child::Started(c) => c.id(),
            Child::Restored(r) => r.pid,
        };
        self.pid.store(pid, Ordering::SeqCst);
        let mut asked = false;
        let mut forwarded = |sig: i32| {
            // SIGHUP, SIGINT, SIGQUIT, SIGABRT, SIGUSR1/2, SIGPIPE, SIGALRM,
            // SIGTERM: a death after these was asked for.
            asked |= [1, 2, 3, 6, 10, 12, 13, 14, 15].contains(&sig);
        };
        let status = match child {
            Child::Started(_) => engine::wait_and_forward_with(pid, &mut forwarded)
                .map_err(|source| RunError::Wait { pid, source })?,
            Child::Restored(r) => r.wait(&mut forwarded)?.1,
        };
        self.pid.store(0, Ordering::SeqCst);
        Ok((pid, (status, asked)))
    }
}

/// How the program crashed ("was killed by SIGKILL", "exited with status
/// 3"), or `None` for a clean exit.
fn crashed(status: &std::process::ExitStatus) -> Option<String> {
    if let Some(sig) = status.signal() {
        return Some(format!("was killed by {}", engine::signal_name(sig)));
    }
    match status.code() {
        Some(0) | None => None,
        Some(c) => Some(format!("exited with status {c}")),
    }
}

/// The periodic live checkpoints, on a thread of their own.
fn checkpoint_every(
    every: Duration,
    pid: &AtomicU32,
    in_a_row: &AtomicU32,
    stop: &AtomicBool,
    out: Reporter,
) {
    // Signals are for the waiting thread to forward: blocked here, so the
    // kernel leaves them to it.
    let _ = crac_sys::raw::sigmask(0, !0);
    let mut count = 0u32;
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next = now + every;
        let p = pid.load(Ordering::SeqCst);
        if p == 0 {
            continue;
        }
        let started = Instant::now();
        match super::checkpoint::request(p, true, None, Reporter::new(true)) {
            Ok((success, dir)) => {
                count += 1;
                in_a_row.store(0, Ordering::SeqCst);
                let paused = match success {
                    super::checkpoint::Success::LeftRunning(Some(p)) => {
                        format!("; its threads were stopped for {}", output::duration(p))
                    }
                    _ => String::new(),
                };
                out.status(format!(
                    "checkpoint {count}: process {p} into {} ({}{paused})",
                    dir.display(),
                    output::duration(started.elapsed())
                ));
            }
            Err(e) if !stop.load(Ordering::SeqCst) && pid.load(Ordering::SeqCst) == p => {
                out.warn(format!(
                    "periodic checkpoint failed: {}",
                    output::format_error(&e).trim_end()
                ));
            }
            Err(_) => {}
        }
    }
}
