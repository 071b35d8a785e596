//! `crac run`: execute a program configured for checkpoints, in place.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::RunArgs;

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

/// Sets the configuration and executes the program; returns only on failure.
pub fn run(args: RunArgs) -> Result<ExitCode, RunError> {
    let dir = std::path::absolute(&args.checkpoint_to).map_err(|source| RunError::Absolute {
        dir: args.checkpoint_to.clone(),
        source,
    })?;
    // A `%p` placeholder may stand in a parent; only check plain paths.
    if !dir.as_os_str().as_bytes().contains(&b'%') {
        if let Some(parent) = dir.parent() {
            if !parent.is_dir() {
                return Err(RunError::NoParent { dir });
            }
        }
    }
    let (program, program_args) = args.program.split_first().expect("clap requires PROGRAM");
    let mut command = std::process::Command::new(program);
    command
        .args(program_args)
        .env(crac::config::CHECKPOINT_TO_VAR, &dir);
    if let Some(engine) = args.engine {
        command.env(crac::config::ENGINE_VAR, engine.name());
    }
    tracing::debug!(?program, dir = %dir.display(), "executing");
    let source = command.exec();
    Err(RunError::Exec {
        program: program.clone(),
        source,
    })
}
