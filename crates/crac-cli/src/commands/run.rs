//! `crac run`: execute a program configured for checkpoints, in place;
//! a program that does not contain crac gets libcrac preloaded.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crac_engine::inject::{self, Injection};

use crate::cli::RunArgs;
use crate::output::Reporter;

/// Why `crac run` could not start the program.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The image directory could not be made absolute.
    #[error("cannot make the image directory {} absolute", dir.display())]
    Absolute {
        /// The directory given.
        dir: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The image directory's parent is missing, so no checkpoint could work.
    #[error("the image directory {} cannot be created: its parent directory does not exist", dir.display())]
    NoParent {
        /// The image directory.
        dir: PathBuf,
    },
    /// The image could not be restored (`--image`).
    #[error(transparent)]
    Restore(#[from] super::restore::RestoreError),
    /// The program could not be started (`--image` with a supervisor).
    #[error("cannot start {}", program.to_string_lossy())]
    Spawn {
        /// The program.
        program: OsString,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the program failed (it keeps running).
    #[error("lost track of process {pid}")]
    Wait {
        /// The program's process.
        pid: u32,
        /// What went wrong.
        #[source]
        source: crac_engine::restore::RestoreError,
    },
    /// The image directory holds a pause image, which cannot be supervised.
    #[error("{} holds a pause image: it wakes a paused process, which crac cannot supervise", dir.display())]
    NotSupervised {
        /// The image directory.
        dir: PathBuf,
    },
    /// The program cannot get crac's library.
    #[error(transparent)]
    Inject(#[from] crac_engine::inject::InjectError),
    /// `execve` failed.
    #[error("cannot run {}", program.to_string_lossy())]
    Exec {
        /// The program.
        program: OsString,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Runs `crac run`: with `--image`, restore or start ([`super::supervise`]);
/// otherwise set the configuration and execute the program in place.
pub fn run(args: RunArgs, out: Reporter) -> Result<ExitCode, RunError> {
    if args.image.is_some() {
        return super::supervise::run_image(args, out);
    }
    let given = args
        .checkpoint_to
        .clone()
        .expect("clap requires --checkpoint-to without --image");
    let dir = absolute(&given)?;
    exec_in_place(&args, &dir)
}

/// `dir`, made absolute.
pub(crate) fn absolute(dir: &Path) -> Result<PathBuf, RunError> {
    std::path::absolute(dir).map_err(|source| RunError::Absolute {
        dir: dir.to_owned(),
        source,
    })
}

/// The program with the configuration for checkpoints into `dir`, and
/// libcrac preloaded if it does not contain crac.
pub(crate) fn program_command(
    args: &RunArgs,
    dir: &Path,
) -> Result<std::process::Command, RunError> {
    let (program, program_args) = args.program.split_first().expect("clap requires PROGRAM");
    let mut command = std::process::Command::new(program);
    command
        .args(program_args)
        .env(crac::config::CHECKPOINT_TO_VAR, dir);
    if let Some(engine) = args.engine {
        command.env(crac::config::ENGINE_VAR, engine.name());
    }
    let exe = std::env::current_exe().unwrap_or_default();
    if let Injection::Preload(lib) = inject::plan(program, &exe)? {
        tracing::debug!(lib = %lib.display(), "preloading");
        let current = std::env::var_os("LD_PRELOAD");
        command.env("LD_PRELOAD", inject::ld_preload(&lib, current.as_deref()));
    }
    Ok(command)
}

/// Executes the program in place (same PID); returns only on failure.
pub(crate) fn exec_in_place(args: &RunArgs, dir: &Path) -> Result<ExitCode, RunError> {
    check_parent(dir)?;
    let mut command = program_command(args, dir)?;
    let program = &args.program[0];
    tracing::debug!(?program, dir = %dir.display(), "executing");
    let source = command.exec();
    Err(RunError::Exec {
        program: program.clone(),
        source,
    })
}

/// Fails if no checkpoint into `dir` could work (its parent is missing).
pub(crate) fn check_parent(dir: &Path) -> Result<(), RunError> {
    // A `%p` placeholder may stand in a parent; only check plain paths.
    if !dir.as_os_str().as_bytes().contains(&b'%') {
        if let Some(parent) = dir.parent() {
            if !parent.is_dir() {
                return Err(RunError::NoParent {
                    dir: dir.to_owned(),
                });
            }
        }
    }
    Ok(())
}
