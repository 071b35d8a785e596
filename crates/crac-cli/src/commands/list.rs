//! `crac list`: the caller's crac-enabled processes (those serving a control
//! channel), like `jcmd` without arguments: PID, program, image directory,
//! engine and how many times each was restored.
//!
//! Candidates are the abstract sockets `@crac/PID` in `/proc/net/unix`;
//! each is asked `status` through the same checked connection `crac
//! checkpoint` uses (served by that very process with its uid), so a
//! socket name squatted by someone else is not listed as the process. Root
//! sees every user's processes, others only their own.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Duration;

use crac::control;
use serde::Serialize;

use super::checkpoint::{connect, Target};
use crate::cli::ListArgs;

/// Why `crac list` failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// `/proc/net/unix` cannot be read.
    #[error("cannot read the Unix sockets of this network namespace (/proc/net/unix)")]
    Sockets(#[source] io::Error),
    /// Writing the list failed.
    #[error("cannot write the list")]
    Output(#[source] io::Error),
}

/// One crac-enabled process.
#[derive(Debug, Serialize)]
struct Entry {
    pid: u32,
    uid: u32,
    program: String,
    /// Where its checkpoints go.
    dir: String,
    engine: String,
    restores: u32,
    /// Carrying out a checkpoint request.
    busy: bool,
}

/// The processes named by listening control sockets in `/proc/net/unix`:
/// `@crac/PID`, or `@crac/pidns-INODE/PID` for a process in another PID
/// namespace (numbered there), as (namespace inode or 0, PID).
fn candidates(net_unix: &str) -> BTreeSet<(u64, u32)> {
    net_unix
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|path| {
            let name = path.strip_prefix("@crac/")?;
            match name.strip_prefix("pidns-") {
                None => Some((0, name.parse().ok()?)),
                Some(rest) => {
                    let (ns, pid) = rest.split_once('/')?;
                    Some((ns.parse().ok()?, pid.parse().ok()?))
                }
            }
        })
        .collect()
}

/// The PIDs, in this namespace, of the processes that are `inner` in the
/// PID namespaces given as (inode, inner PID).
fn resolve(wanted: &BTreeSet<(u64, u32)>) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let ns = fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino());
            let inner = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| super::checkpoint::innermost_pid(&s));
            matches!((ns, inner), (Ok(ns), Some(i)) if wanted.contains(&(ns, i)))
        })
        .collect()
}

fn euid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    super::checkpoint::status_euid(&status)
}

/// Asks `pid` for its status; `None` if it is not (or no longer) the
/// process serving its channel, or does not answer in time.
fn status_of(pid: u32) -> Option<control::Status> {
    let target = Target::open(pid).ok()?;
    let mut stream = connect(&target).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(control::STATUS.as_bytes()).ok()?;
    stream.write_all(b"\n").ok()?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    control::parse_status(line.strip_suffix('\n')?)
}

/// Runs `crac list`.
pub fn list(args: &ListArgs) -> Result<ExitCode, ListError> {
    let me = rustix::process::geteuid().as_raw();
    let net = fs::read_to_string("/proc/net/unix").map_err(ListError::Sockets)?;
    let (plain, other): (BTreeSet<_>, BTreeSet<_>) =
        candidates(&net).into_iter().partition(|(ns, _)| *ns == 0);
    let mut pids: Vec<u32> = plain.into_iter().map(|(_, p)| p).collect();
    pids.extend(resolve(&other));
    pids.sort_unstable();
    let mut entries = Vec::new();
    for pid in pids {
        let Some(uid) = euid_of(pid) else {
            continue;
        };
        if me != 0 && uid != me {
            continue;
        }
        let program = fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        // Only a process that answers for itself is listed (a squatter's
        // socket named after another process is not that process).
        let Some(status) = status_of(pid) else {
            continue;
        };
        entries.push(Entry {
            pid,
            uid,
            program,
            dir: status.dir.display().to_string(),
            engine: status.engine,
            restores: status.restores,
            busy: status.busy,
        });
    }
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &entries)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
            .map_err(ListError::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:>7}  {:<8}  {:>8}  {:<28}  IMAGE DIR",
        "PID", "ENGINE", "RESTORED", "PROGRAM"
    )
    .map_err(ListError::Output)?;
    for e in entries {
        let mut dir = e.dir;
        if e.busy {
            dir.push_str("  (checkpointing)");
        }
        writeln!(
            out,
            "{:>7}  {:<8}  {:>8}  {:<28}  {dir}",
            e.pid, e.engine, e.restores, e.program,
        )
        .map_err(ListError::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sockets_name_their_pids() {
        let net = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 31337 @crac/4242
0000000000000000: 00000002 00000000 00010000 0001 01 31338 @crac/x
0000000000000000: 00000002 00000000 00010000 0001 01 31339 /run/crac/17
0000000000000000: 00000003 00000000 00000000 0001 03 31340
0000000000000000: 00000002 00000000 00010000 0001 01 31341 @crac/12
0000000000000000: 00000002 00000000 00010000 0001 01 31342 @crac/pidns-4026532999/7
";
        assert_eq!(
            candidates(net).into_iter().collect::<Vec<_>>(),
            [(0, 12), (0, 4242), (4026532999, 7)]
        );
    }
}
