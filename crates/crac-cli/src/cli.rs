//! The command line, as clap definitions only: no side effects here.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit statuses, shown at the end of `crac --help` and in the man page.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0      success
  1      failure; the reason is printed on standard error as `error: ...`
         followed by one `caused by: ...` line per underlying cause
  2      usage error (unknown option, missing argument)
  other  `crac run`: the program's own status (crac becomes the program);
         `crac restore` (without --detach): the restored program's status;
         if a signal ended it, crac restore ends by the same signal";

/// Coordinated Restore at Checkpoint for Linux processes.
///
/// Run a crac-enabled program so that it can be checkpointed, checkpoint it
/// from another shell, restore it, inspect images and check this machine.
#[derive(Debug, Parser)]
#[command(name = "crac", version, after_help = EXIT_STATUS_HELP, after_long_help = EXIT_STATUS_HELP)]
pub struct Cli {
    /// More detail on standard error (repeat for more: -vv, -vvv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print nothing but errors (and the output asked for).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a program configured for checkpoints, in place.
    ///
    /// Sets CRAC_CHECKPOINT_TO (and CRAC_ENGINE) and executes PROGRAM in
    /// place of crac: same PID, same standard streams, same environment
    /// otherwise. The program then accepts `crac checkpoint PID`, like
    /// `java -XX:CRaCCheckpointTo=DIR`. A dynamically linked program built
    /// without crac gets libcrac.so preloaded (the one next to crac) for
    /// that; a static one without crac is refused.
    Run(RunArgs),
    /// Checkpoint a running crac-enabled process (like `jcmd PID JDK.checkpoint`).
    ///
    /// Asks the process through its control channel; its resources' hooks
    /// run on its `crac-control` thread. Waits for the real outcome: success
    /// only once the image is complete and durable; otherwise every problem
    /// found (failed hooks, open files, the engine's failure) and a non-zero
    /// exit status. Without --leave-running the process exits once its
    /// image is durable, as with CRaC.
    Checkpoint(CheckpointArgs),
    /// Restore an image, as the restored process's waiting parent.
    ///
    /// The restored process gets its original PID and this command's
    /// standard streams, and the descriptors it inherited at start (`7>file`)
    /// from this command's of the same numbers (/dev/null, with a warning,
    /// where this command has none). crac waits for it, forwards the signals it gets
    /// (SIGINT, SIGTERM, SIGHUP, ...) and exits with its status, or ends by
    /// the signal that ended it. A pause image wakes the paused process.
    Restore(RestoreArgs),
    /// Describe an image: program, when and where it was made, threads,
    /// memory, the files it depends on and whether it can be restored here.
    Inspect(InspectArgs),
    /// List the caller's crac-enabled processes (root: everyone's): PID,
    /// engine, how many times each was restored, program and image
    /// directory (like `jcmd` without arguments).
    List(ListArgs),
    /// Check that this machine has every kernel feature the engine uses.
    Check,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// `crac run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image directory for checkpoints; `%p` stands for the PID. Made
    /// absolute. Default: $CRAC_CHECKPOINT_TO.
    #[arg(
        long,
        value_name = "DIR",
        env = "CRAC_CHECKPOINT_TO",
        required_unless_present = "image"
    )]
    pub checkpoint_to: Option<PathBuf>,
    /// Restore DIR if it holds an image that can be restored here (as
    /// `crac restore DIR`), else start PROGRAM fresh with checkpoints going
    /// to DIR, saying once why (like CRaC's -XX:CRaCRestoreFrom with
    /// CRaCIgnoreRestoreIfUnavailable, FastFreeze's `run`). Overrides
    /// --checkpoint-to.
    #[arg(long, value_name = "DIR")]
    pub image: Option<PathBuf>,
    /// With --image: checkpoint the program live (it keeps running) every
    /// DURATION (`30s`, `5min`, `500ms`), replacing the image atomically;
    /// crac stays its parent.
    #[arg(long, value_name = "DURATION", requires = "image", value_parser = humantime::parse_duration)]
    pub checkpoint_every: Option<std::time::Duration>,
    /// With --image: when the program dies (a signal crac did not forward,
    /// or a non-zero exit), restore it from the last image, at most N times
    /// in a row (a checkpoint after a restore starts the count again); crac
    /// stays its parent.
    #[arg(long, value_name = "N", requires = "image")]
    pub restore_on_crash: Option<u32>,
    /// The engine that makes checkpoints. Default: $CRAC_ENGINE, else native.
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub engine: Option<Engine>,
    /// The program and its arguments.
    #[arg(
        value_name = "PROGRAM",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub program: Vec<OsString>,
}

/// The engines `crac run --engine` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Dump the process into the image directory (the default).
    Native,
    /// Run the hooks and checks only, make no image.
    Simulate,
    /// Run the hooks, then keep the process paused until `crac restore DIR`.
    Pause,
}

impl Engine {
    /// The `CRAC_ENGINE` value.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Native => "native",
            Engine::Simulate => "simulate",
            Engine::Pause => "pause",
        }
    }
}

/// `crac checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The process to checkpoint.
    #[arg(value_name = "PID")]
    pub pid: u32,
    /// Keep the process running once the image is written (its
    /// `after_restore` hooks run in it).
    #[arg(long)]
    pub leave_running: bool,
    /// Write this checkpoint's image to DIR instead of the process's
    /// configured directory (CRAC_CHECKPOINT_TO). The process writes it
    /// with its own rights.
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
}

/// `crac restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The image directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Leave the restored process running on its own (in a new session)
    /// and exit at once (its memory is loaded before it resumes).
    #[arg(long)]
    pub detach: bool,
    /// Load all memory before the process resumes. Without it the process
    /// resumes once its memory is mapped (and its small areas, up to 2 MiB,
    /// loaded) and `crac restore` loads the rest of its private anonymous
    /// memory as it is touched and in the background; until it
    /// ends, the process is tied to `crac restore` (killed if it is killed).
    #[arg(long)]
    pub eager: bool,
    /// Check every piece of the page data before restoring anything
    /// (without it each piece is checked as it is loaded).
    #[arg(long)]
    pub verify: bool,
    /// Set an environment variable in the restored process before its
    /// `after_restore` hooks run (repeatable). The value is visible to
    /// every user in this command's /proc/PID/cmdline while it runs: pass
    /// secrets with --env-file.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(OsString, OsString)>,
    /// Like --env, for every KEY=VALUE line of FILE (empty lines and lines
    /// starting with # are skipped; repeatable, applied before --env). FILE
    /// must be a regular file of at most 1 MiB, yours or root's, writable
    /// by no one else.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Write the restored process's PID and a newline to FILE once it has
    /// resumed (replaced atomically; for scripts and benchmarks). With a
    /// paused process, the PID of the process woken.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Restore into a new PID namespace, where the process has the image's
    /// PID and TIDs whatever runs outside (any number of copies of one
    /// image at once). crac is the namespace's init: it reaps, forwards
    /// signals and ends as the program does. The namespace has its own
    /// /proc, and CLOCK_MONOTONIC and CLOCK_BOOTTIME continue from their
    /// values at the checkpoint. The PID file, if any, holds the PID in
    /// the namespace.
    #[arg(long, conflicts_with = "detach")]
    pub pidns: bool,
    /// Report on standard error as JSON lines (one object per line, key
    /// `event`) instead of text: `restored` once the process runs, `woke`,
    /// `warning`, `signal` for each signal forwarded, `loaded` when lazily
    /// loaded memory is complete (the process runs on), `exited` or
    /// `killed` when the process ends, `error` (see the crate's README).
    #[arg(long)]
    pub json: bool,
}

/// `crac inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the description as JSON (stable; documented in the crate's README).
    #[arg(long)]
    pub json: bool,
    /// Also check every piece of the stored page data against its hash.
    #[arg(long)]
    pub verify: bool,
}

/// `crac list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the list as JSON: an array of {pid, uid, program, dir, engine,
    /// restores, busy}.
    #[arg(long)]
    pub json: bool,
}

/// Parses `KEY=VALUE`.
fn parse_env(text: &str) -> Result<(OsString, OsString), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty KEY, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), "".into()));
        parse_env("=x").unwrap_err();
        parse_env("novalue").unwrap_err();
    }
}
