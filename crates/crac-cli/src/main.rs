//! The `crac` command: run, checkpoint, restore, inspect, list, check.
//!
//! A thin binary: argument definitions in [`cli`], one module per
//! subcommand in [`commands`], one error enum per operation, gathered in
//! [`CliError`]. See the crate's README for usage, exit statuses, the
//! control protocol and the `inspect --json` shape.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use output::Reporter;

/// Why a subcommand failed: exit status 1.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Run(#[from] commands::run::RunError),
    #[error(transparent)]
    Checkpoint(#[from] commands::checkpoint::CheckpointError),
    #[error(transparent)]
    Restore(#[from] commands::restore::RestoreError),
    #[error(transparent)]
    Inspect(#[from] commands::inspect::InspectError),
    #[error(transparent)]
    Check(#[from] commands::check::CheckError),
    #[error(transparent)]
    List(#[from] commands::list::ListError),
    /// Writing the output asked for failed.
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Reporter::new(cli.quiet);
    if matches!(&cli.command, Command::Restore(a) if a.json) {
        out = out.json();
    }
    output::init_logging(cli.quiet || out.is_json(), cli.verbose);
    match main_exec(cli, out) {
        Ok(code) => code,
        Err(e) if out.is_json() => {
            out.event("error", output::error_event(&e));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprint!("{}", output::format_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn main_exec(cli: Cli, out: Reporter) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run(args) => Ok(commands::run::run(args, out)?),
        Command::Checkpoint(args) => Ok(commands::checkpoint::checkpoint(&args, out)?),
        Command::Restore(args) => Ok(commands::restore::restore(args, out)?),
        Command::Inspect(args) => Ok(commands::inspect::inspect(&args, out)?),
        Command::List(args) => Ok(commands::list::list(&args)?),
        Command::Check => Ok(commands::check::check(out)?),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "crac", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(CliError::Output)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
