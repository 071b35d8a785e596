//! `crac restore DIR`: bring an image back as a child, wait for it and
//! forward signals (CRaC's restore wrapper), or wake a paused process.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitCode;

use crac_engine::pause::{self, PauseError};
use crac_engine::restore::{self, pidns, RestoreOptions};

use crate::cli::RestoreArgs;
use crate::output::{self, Reporter};

/// Why `crac restore` failed. After any of these no restored process is
/// left behind.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The directory does not exist.
    #[error("image directory {} does not exist", dir.display())]
    NotFound {
        /// The directory given.
        dir: PathBuf,
    },
    /// The path is not a directory.
    #[error("{} is not an image directory", dir.display())]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },
    /// The restore failed.
    #[error("cannot restore {}", dir.display())]
    Restore {
        /// The image.
        dir: PathBuf,
        /// What went wrong.
        #[source]
        source: restore::RestoreError,
    },
    /// An `--env-file` was refused.
    #[error(transparent)]
    EnvFile(#[from] super::envfile::EnvFileError),
    /// Waking a paused process failed.
    #[error("cannot wake the process paused in {}", dir.display())]
    Wake {
        /// The pause image.
        dir: PathBuf,
        /// What went wrong.
        #[source]
        source: PauseError,
    },
    /// The PID file could not be written (the process runs).
    #[error("cannot write the PID file {} (process {pid} runs)", path.display())]
    PidFile {
        /// The file asked for.
        path: PathBuf,
        /// The process.
        pid: u32,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A damaged piece of the page file was about to be loaded: the
    /// process was killed before it could read it.
    #[error("cannot restore {}", dir.display())]
    Damaged {
        /// The image.
        dir: PathBuf,
        /// The piece and the memory it holds.
        #[source]
        source: Box<restore::LoadError>,
    },
    /// Waiting for the restored process failed (it keeps running).
    #[error("lost track of restored process {pid}")]
    Wait {
        /// The restored process.
        pid: u32,
        /// What went wrong.
        #[source]
        source: restore::RestoreError,
    },
}

/// Runs `crac restore`.
pub fn restore(args: RestoreArgs, out: Reporter) -> Result<ExitCode, RestoreError> {
    match start(args, out)? {
        Started::Done(code) => Ok(code),
        Started::Attached(running) => {
            let pid = running.pid;
            let (pid, status) = running.wait(&mut |sig| {
                out.event(
                    "signal",
                    serde_json::json!({ "pid": pid, "signal": restore::signal_name(sig) }),
                );
            })?;
            ended_event(out, pid, status);
            Ok(exit_like(pid, status))
        }
    }
}

/// The `exited` or `killed` event (`--json`) for a process that ended.
fn ended_event(out: Reporter, pid: u32, status: std::process::ExitStatus) {
    match status.signal() {
        Some(sig) => out.event(
            "killed",
            serde_json::json!({ "pid": pid, "signal": restore::signal_name(sig) }),
        ),
        None => out.event(
            "exited",
            serde_json::json!({ "pid": pid, "code": status.code().unwrap_or(1) }),
        ),
    }
}

/// What [`start`] left behind.
pub(crate) enum Started {
    /// Nothing to wait for (a paused process woken, or a detached restore).
    Done(ExitCode),
    /// A restored child to wait for.
    Attached(Running),
}

/// A restored process this command is the parent of.
pub(crate) struct Running {
    pub(crate) pid: u32,
    /// The image, for errors.
    dir: PathBuf,
    restored: restore::Restored,
    /// This command is the init of the process's PID namespace.
    init: Option<pidns::Init>,
    out: Reporter,
}

impl Running {
    /// Waits for the process to end, forwarding signals (`forwarded` sees
    /// each), and finishes the lazy loading. Returns the PID and how it
    /// ended.
    pub(crate) fn wait(
        self,
        forwarded: &mut dyn FnMut(i32),
    ) -> Result<(u32, std::process::ExitStatus), RestoreError> {
        let Running {
            pid,
            dir,
            mut restored,
            init,
            out,
        } = self;
        let status = if init.is_some() {
            restore::wait_and_forward_as_init(pid, forwarded)
        } else {
            restore::wait_and_forward_with(pid, forwarded)
        }
        .map_err(|source| RestoreError::Wait { pid, source })?;
        if let Some(init) = init {
            init.report(status);
        }
        // The process has ended; children it forked may still be loading.
        match restored.finish() {
            Ok(l) if l.spaces > 0 => {
                tracing::debug!(
                    "loaded {} lazily ({} faults served, {} address space{}) in {}",
                    output::bytes(l.bytes),
                    l.faults,
                    l.spaces,
                    if l.spaces == 1 { "" } else { "s" },
                    output::duration(l.elapsed)
                );
            }
            Ok(_) => {}
            // Its end (SIGKILL) is the pager's doing, not the program's.
            Err(source @ restore::LoadError::Damaged { .. }) => {
                return Err(RestoreError::Damaged {
                    dir,
                    source: Box::new(source),
                });
            }
            Err(e) if out.is_json() => out.event("error", output::error_event(&e)),
            Err(e) => tracing::error!("{e}"),
        }
        Ok((pid, status))
    }
}

/// Ends like the process did: by the same signal, or with its exit status.
pub(crate) fn exit_like(pid: u32, status: std::process::ExitStatus) -> ExitCode {
    if let Some(sig) = status.signal() {
        tracing::info!("process {pid} was ended by {}", restore::signal_name(sig));
        // Like CRaC's restore wrapper: end by the same signal.
        crac_engine::die_of_signal(sig);
    }
    let code = status.code().unwrap_or(1);
    tracing::info!("process {pid} exited with status {code}");
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Restores (or wakes) what `args` names; an attached restore is left
/// running for the caller to wait for.
pub(crate) fn start(mut args: RestoreArgs, out: Reporter) -> Result<Started, RestoreError> {
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(super::envfile::read(f)?);
    }
    env.append(&mut args.env);
    args.env = env;
    let dir = args.dir;
    if !dir.exists() {
        return Err(RestoreError::NotFound { dir });
    }
    if !dir.is_dir() {
        return Err(RestoreError::NotADirectory { dir });
    }
    if pause::is_pause_image(&dir) {
        let pid = pause::wake(&dir, &args.env).map_err(|source| RestoreError::Wake {
            dir: dir.clone(),
            source,
        })?;
        out.status(format!("woke process {pid}, paused in {}", dir.display()));
        out.event(
            "woke",
            serde_json::json!({ "pid": pid, "image": dir.display().to_string() }),
        );
        write_pid_file(args.pid_file.as_deref(), pid)?;
        return Ok(Started::Done(ExitCode::SUCCESS));
    }

    let mut init = None;
    if args.pidns {
        match pidns::enter(&dir).map_err(|source| RestoreError::Restore {
            dir: dir.clone(),
            source,
        })? {
            // The init restores; this process waits for it.
            pidns::Side::Outside(outside) => {
                let pid = outside.init;
                let status = restore::wait_and_forward(pid)
                    .map_err(|source| RestoreError::Wait { pid, source })?;
                let status = outside.program_status(status);
                ended_event(out, pid, status);
                return Ok(Started::Done(exit_like(pid, status)));
            }
            pidns::Side::Init(i) => init = Some(i),
        }
    }
    let shown = dir.display().to_string();
    let spinner = out.spinner(format!("restoring {shown}: checking the image"));
    let mode = if args.detach {
        "detached"
    } else if args.eager {
        "eager"
    } else {
        "lazy"
    };
    let options = RestoreOptions {
        detach: args.detach,
        env: args.env,
        eager: args.eager,
        verify: args.verify,
        // The moment loading is complete, while the process runs on.
        on_loaded: out.is_json().then(|| {
            restore::OnLoaded(std::sync::Arc::new(move |l: &restore::Loaded| {
                out.event(
                    "loaded",
                    serde_json::json!({
                        "bytes": l.bytes,
                        "faults": l.faults,
                        "spaces": l.spaces,
                        "elapsed_ms": output::millis(l.elapsed),
                    }),
                );
            }))
        }),
    };
    // The bar leaves room for the bytes: while pages load the stage is
    // not named.
    let mut progress = |stage: restore::Stage, done: u64, total: u64| {
        if total > 0 {
            spinner.set_message(format!("restoring {shown}"));
            spinner.set_bytes(done, total);
        } else {
            spinner.set_message(format!("restoring {shown}: {stage}"));
        }
    };
    let result = restore::restore_with_progress(&dir, options, &mut progress);
    drop(spinner);
    let restored = result.map_err(|source| RestoreError::Restore {
        dir: dir.clone(),
        source,
    })?;
    let pid = restored.pid;
    for w in &restored.warnings {
        out.warn(w);
    }
    out.status(format!(
        "restored process {pid} ({} thread{}) in {}{}",
        restored.threads,
        if restored.threads == 1 { "" } else { "s" },
        output::duration(restored.elapsed),
        if restored.lazy_bytes > 0 {
            format!(
                "; loading {} of memory while it runs",
                output::bytes(restored.lazy_bytes)
            )
        } else {
            String::new()
        }
    ));
    out.event(
        "restored",
        serde_json::json!({
            "pid": pid,
            "threads": restored.threads,
            "image": shown,
            // Lazy with nothing left to load is reported as loaded eagerly.
            "mode": if restored.lazy_bytes == 0 && mode == "lazy" { "eager" } else { mode },
            "resume_ms": output::millis(restored.elapsed),
            "lazy_bytes": restored.lazy_bytes,
        }),
    );
    if let Err(e) = write_pid_file(args.pid_file.as_deref(), pid) {
        if args.detach {
            return Err(e);
        }
        // Attached: keep forwarding signals to the process that runs.
        if out.is_json() {
            out.event("error", output::error_event(&e));
        } else {
            eprint!("{}", output::format_error(&e));
        }
    }
    if args.detach {
        out.status(format!("process {pid} runs on its own"));
        return Ok(Started::Done(ExitCode::SUCCESS));
    }
    Ok(Started::Attached(Running {
        pid,
        dir,
        restored,
        init,
        out,
    }))
}

/// Writes `pid` and a newline to `path`, if asked, through a new file in
/// the same directory renamed into place: a reader never sees a partial
/// file, and a link at `path` is replaced, not followed.
fn write_pid_file(path: Option<&std::path::Path>, pid: u32) -> Result<(), RestoreError> {
    use std::io::Write;
    let Some(path) = path else {
        return Ok(());
    };
    let err = |source| RestoreError::PidFile {
        path: path.to_owned(),
        pid,
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".crac-pid")
        .tempfile_in(parent)
        .map_err(err)?;
    // No fsync: the rename alone makes it appear whole, and after a crash
    // of the machine the process is gone anyway.
    writeln!(tmp, "{pid}").map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
