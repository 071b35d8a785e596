//! `crac checkpoint PID`: ask a running process to checkpoint itself through
//! its control channel (protocol: `crac::control`) and report the outcome.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crac::control;

use crate::cli::CheckpointArgs;
use crate::output::{self, Meter, Reporter};

/// Why `crac checkpoint` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// No such process.
    #[error("there is no process {pid}")]
    NoSuchProcess {
        /// The PID given.
        pid: u32,
    },
    /// The process has no control channel.
    #[error(
        "process {pid} is not crac-enabled (no control channel): start it with `crac run` or \
         set CRAC_CHECKPOINT_TO"
    )]
    NotCracEnabled {
        /// The process.
        pid: u32,
    },
    /// The process has a control thread but its channel is closed: a
    /// checkpoint is under way.
    #[error("process {pid} is busy with another checkpoint; try again when it is done")]
    Busy {
        /// The process.
        pid: u32,
    },
    /// The target's credentials cannot be read.
    #[error("cannot read the credentials of process {pid}")]
    Credentials {
        /// The process.
        pid: u32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Someone else serves the target's socket name (anyone can bind an
    /// abstract name first): nothing is sent to it, and no answer trusted.
    #[error(
        "the control socket @crac/{pid} is served by process {server_pid} uid {server_uid}, \
         not by the target (process {pid} runs as uid {target_uid}); nothing was checkpointed"
    )]
    NotTheTarget {
        /// The process.
        pid: u32,
        /// The process that serves the socket, as the kernel reports it.
        server_pid: u32,
        /// Its effective uid.
        server_uid: u32,
        /// The target's effective uid.
        target_uid: u32,
    },
    /// The process ended (and its PID may have been reused) before its
    /// channel's credentials were checked.
    #[error("process {pid} ended before its control channel could be checked")]
    Vanished {
        /// The process.
        pid: u32,
    },
    /// Connecting or talking to the process failed.
    #[error("cannot {step} process {pid}'s control channel")]
    Io {
        /// The process.
        pid: u32,
        /// What was being done.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The process refused the caller.
    #[error("process {pid} refused the checkpoint")]
    Refused {
        /// The process.
        pid: u32,
        /// Why, as the process said.
        #[source]
        reason: Report,
    },
    /// The checkpoint failed; the process goes on running.
    #[error("process {pid} was not checkpointed and goes on running")]
    Failed {
        /// The process.
        pid: u32,
        /// Every problem, as the process reported them.
        #[source]
        report: Report,
    },
    /// The image is durable, but `after_restore` hooks failed in the
    /// process kept running.
    #[error(
        "process {pid} was checkpointed into {}, but its after_restore hooks failed in the \
         process that kept running",
        dir.display()
    )]
    AfterRestore {
        /// The process.
        pid: u32,
        /// The image.
        dir: PathBuf,
        /// The hooks' failures.
        #[source]
        report: Report,
    },
    /// The process ended before reporting an outcome.
    #[error("process {pid} ended during the checkpoint without reporting an outcome{}",
        if *durable { " (its image was reported durable)" } else { "" })]
    Ended {
        /// The process.
        pid: u32,
        /// Whether `durable` had been received.
        durable: bool,
    },
    /// The process answered something this build does not understand.
    #[error("process {pid} sent an unexpected answer: {line:?}")]
    Protocol {
        /// The process.
        pid: u32,
        /// The line.
        line: String,
    },
}

/// Text reported by the checkpointed process (its error, its refusal).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Report(String);

/// How the checkpoint ended, when it succeeded.
pub(crate) enum Success {
    /// Image durable; the process exited.
    Exited,
    /// Image durable; the process keeps running, its threads stopped for
    /// this long (if the process said).
    LeftRunning(Option<Duration>),
    /// The simulate engine ran the hooks.
    Simulated,
    /// The pause engine paused the process.
    Paused,
    /// The image was committed, but the process ended before it said so.
    CommittedUnreported,
}

/// Reads `\n`-terminated lines, with an optional timeout per read.
struct Lines<'a> {
    stream: &'a UnixStream,
    buf: Vec<u8>,
}

enum Next {
    Line(String),
    Eof,
    Timeout,
}

impl Lines<'_> {
    fn next(&mut self) -> io::Result<Next> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line[..i]).into_owned();
                return Ok(Next::Line(text));
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(Next::Eof),
                Ok(0) => {
                    let text = String::from_utf8_lossy(&self.buf).into_owned();
                    self.buf.clear();
                    return Ok(Next::Line(text));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Next::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // What was sent before the close has been read.
                Err(e) if closed_by_peer(&e) && self.buf.is_empty() => return Ok(Next::Eof),
                Err(e) if closed_by_peer(&e) => {
                    let text = String::from_utf8_lossy(&self.buf).into_owned();
                    self.buf.clear();
                    return Ok(Next::Line(text));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Everything up to the end of the stream, without a timeout.
    fn rest(&mut self) -> io::Result<String> {
        self.stream.set_read_timeout(None)?;
        let mut all = std::mem::take(&mut self.buf);
        match self.stream.read_to_end(&mut all) {
            // What was sent before the close has been read.
            Err(e) if closed_by_peer(&e) => {}
            r => {
                r?;
            }
        }
        Ok(String::from_utf8_lossy(&all).trim_end().to_owned())
    }
}

/// The process to checkpoint, held by a pidfd so that a reused PID is
/// noticed, with its effective uid.
pub(crate) struct Target {
    pub(crate) pid: u32,
    pidfd: OwnedFd,
    euid: u32,
}

impl Target {
    pub(crate) fn open(pid: u32) -> Result<Target, CheckpointError> {
        let raw = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or(CheckpointError::NoSuchProcess { pid })?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
            .map_err(|e| match e {
                rustix::io::Errno::SRCH => CheckpointError::NoSuchProcess { pid },
                e => CheckpointError::Credentials {
                    pid,
                    source: e.into(),
                },
            })?;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| CheckpointError::Credentials { pid, source })?;
        let euid = status_euid(&status).ok_or_else(|| CheckpointError::Credentials {
            pid,
            source: io::Error::new(io::ErrorKind::InvalidData, "no Uid line in its status"),
        })?;
        let target = Target { pid, pidfd, euid };
        // The status read was this process's, not a later one's with its PID.
        target.ensure_alive()?;
        Ok(target)
    }

    /// Fails unless the process the pidfd holds still runs: then its PID
    /// still names it.
    fn ensure_alive(&self) -> Result<(), CheckpointError> {
        use rustix::event::{PollFd, PollFlags};
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut fds, Some(&zero)) {
            // A pidfd is readable once its process has ended.
            Ok(0) => Ok(()),
            Ok(_) => Err(CheckpointError::Vanished { pid: self.pid }),
            Err(e) => Err(CheckpointError::Credentials {
                pid: self.pid,
                source: e.into(),
            }),
        }
    }

    /// Checks that the target itself, with its uid, serves `stream`: the
    /// kernel's credentials of the listening socket (`SO_PEERCRED`).
    fn check_server(&self, stream: &UnixStream) -> Result<(), CheckpointError> {
        let pid = self.pid;
        let cred =
            crac_sys::peercred::peer_cred(stream.as_raw_fd()).map_err(|e| CheckpointError::Io {
                pid,
                step: "read the credentials of",
                source: io::Error::from_raw_os_error(e.0),
            })?;
        let (server_pid, server_uid) = (cred.pid, cred.uid);
        if server_pid != pid || server_uid != self.euid {
            return Err(CheckpointError::NotTheTarget {
                pid,
                server_pid,
                server_uid,
                target_uid: self.euid,
            });
        }
        // The PID was not reused between `pidfd_open` and the check.
        self.ensure_alive()
    }
}

/// The control socket name of process `pid` (a PID of this namespace):
/// named after its PID in its own PID namespace if that is another one
/// (a copy restored with `--pidns`).
fn target_socket_name(pid: u32) -> String {
    let pidns = fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino());
    let inner = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| innermost_pid(&s));
    match (pidns, inner) {
        (Ok(ns), Some(inner)) => control::socket_name_in(ns, inner),
        _ => control::socket_name(pid),
    }
}

/// The last PID of the `NSpid:` line (the process's PID in its own PID
/// namespace).
pub(crate) fn innermost_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// The effective uid on the `Uid:` line of a `/proc/PID/status` text.
pub(crate) fn status_euid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether `e` says the other end closed the connection (it may do so as
/// soon as it has answered, before reading anything).
fn closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Whether `pid` runs a thread named like the control thread.
fn has_control_thread(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        fs::read_to_string(t.path().join("comm"))
            .is_ok_and(|c| c.trim_end() == control::THREAD_NAME)
    })
}

/// Whether `dir` holds the pause image of `pid`.
fn paused_in(dir: &Path, pid: u32) -> bool {
    crac_engine::pause::is_pause_image(dir)
        && crac_engine::pause::read_pid(dir).is_ok_and(|p| p == pid)
}

/// The page size `/proc/PID/statm` counts in (x86-64).
const PAGE_SIZE: u64 = 4096;
/// How often the size of the pages file being written is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The resident set of a `/proc/PID/statm` text in bytes: an estimate of
/// the page data the process's image will hold.
fn statm_resident_bytes(statm: &str) -> Option<u64> {
    statm
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?
        .checked_mul(PAGE_SIZE)
}

/// The pages file being written for the image at the absolute `dir`: the
/// largest `.NAME.tmp-RANDOM/pages.crac` next to it owned by `uid`
/// (crac-engine's dump writes the image under such a name, then renames it
/// into place; another user's look-alike is not followed).
fn temp_pages_file(dir: &Path, uid: u32) -> Option<PathBuf> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(dir.file_name().unwrap_or("image".as_ref()));
    prefix.push(".tmp-");
    let prefix = prefix.as_encoded_bytes();
    fs::read_dir(parent)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(prefix))
        .map(|e| e.path().join(crac_image::PAGES_FILE))
        .filter_map(|f| fs::symlink_metadata(&f).ok().map(|m| (m, f)))
        .filter(|(m, _)| m.uid() == uid && m.is_file())
        .map(|(m, f)| (m.len(), f))
        .max()
        .map(|(_, f)| f)
}

/// What identifies the image at `dir` (its directory's device and inode):
/// a commit replaces the directory.
fn image_identity(dir: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(dir.join(crac_image::META_FILE)).ok()?;
    fs::symlink_metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `dir` now holds an image of `pid` that replaced the one
/// identified by `before`: the process committed and died before it could
/// say so.
fn committed_since(dir: &Path, pid: u32, before: Option<(u64, u64)>) -> bool {
    let now = image_identity(dir);
    now.is_some()
        && now != before
        && crac_image::Image::read(dir).is_ok_and(|image| image.process.pid == pid)
}

/// Turns the spinner into a byte bar driven by the size of the pages file
/// the process writes, looked at every [`WATCH_EVERY`] from a thread of its
/// own until dropped. It only draws: while the file is not there the
/// spinner stays as it is, and nothing it meets changes the outcome.
struct PagesWatch {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PagesWatch {
    fn start(meter: Meter, dir: PathBuf, uid: u32, estimate: u64, message: String) -> PagesWatch {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("crac-progress".into())
            .spawn(move || {
                let mut shown = false;
                let mut file = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
                    if file.is_none() {
                        file = temp_pages_file(&dir, uid);
                    }
                    let Some(Ok(m)) = file.as_ref().map(fs::metadata) else {
                        continue;
                    };
                    if !shown {
                        meter.set_message(message.as_str());
                        shown = true;
                    }
                    // A large O_DIRECT pwrite moves the size only when it
                    // completes; the blocks grow as it goes.
                    meter.set_bytes(m.len().max(m.blocks().saturating_mul(512)), estimate);
                }
            })
            .ok();
        PagesWatch {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for PagesWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn image_bytes(dir: &Path) -> u64 {
    [crac_image::META_FILE, crac_image::PAGES_FILE]
        .iter()
        .filter_map(|f| fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Connects to the target's channel, checks who serves it and sends the
/// request.
/// Connects to the target's control channel and checks that the target
/// itself serves it.
pub(crate) fn connect(target: &Target) -> Result<UnixStream, CheckpointError> {
    let pid = target.pid;
    let io_err = |step: &'static str| move |source| CheckpointError::Io { pid, step, source };
    let addr =
        SocketAddr::from_abstract_name(target_socket_name(pid)).map_err(io_err("address"))?;
    let stream = match UnixStream::connect_addr(&addr) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(if has_control_thread(pid) {
                CheckpointError::Busy { pid }
            } else {
                CheckpointError::NotCracEnabled { pid }
            });
        }
        Err(e) => return Err(io_err("connect to")(e)),
    };
    // Nothing is sent to, nor believed from, anyone but the target.
    target.check_server(&stream)?;
    Ok(stream)
}

fn send_request(
    target: &Target,
    leave_running: bool,
    to: Option<&Path>,
) -> Result<UnixStream, CheckpointError> {
    let pid = target.pid;
    let io_err = |step: &'static str| move |source| CheckpointError::Io { pid, step, source };
    let mut stream = connect(target)?;
    match stream.write_all(control::request_line(leave_running, to).as_bytes()) {
        // A refusal comes without reading the request: read it.
        Err(e) if closed_by_peer(&e) => {}
        r => r.map_err(io_err("send the request to"))?,
    }
    Ok(stream)
}

/// `Some` if `line` says the process kept running: `ok left-running`, then
/// how long its threads were stopped (` paused_ns=N`) if it says.
fn left_running(line: &str) -> Option<Option<Duration>> {
    let rest = line.strip_prefix(control::OK_LEFT_RUNNING)?;
    if rest.is_empty() {
        return Some(None);
    }
    let ns = rest.strip_prefix(" paused_ns=")?.parse().ok()?;
    Some(Some(Duration::from_nanos(ns)))
}

/// Runs `crac checkpoint`.
pub fn checkpoint(args: &CheckpointArgs, out: Reporter) -> Result<ExitCode, CheckpointError> {
    let pid = args.pid;
    let started = Instant::now();
    let (success, dir) = request(pid, args.leave_running, args.to.as_deref(), out)?;
    let took = output::duration(started.elapsed());
    let size = output::bytes(image_bytes(&dir));
    let d = dir.display();
    match success {
        Success::Exited => {
            println!("checkpointed process {pid} into {d} ({size}, {took}); the process exited")
        }
        Success::LeftRunning(paused) => {
            let paused = paused.map_or_else(String::new, |p| {
                format!(" (its threads were stopped for {})", output::duration(p))
            });
            println!(
                "checkpointed process {pid} into {d} ({size}, {took}); the process keeps \
                 running{paused}"
            )
        }
        Success::CommittedUnreported => println!(
            "checkpointed process {pid} into {d} ({size}, {took}); the process ended before \
             reporting it, but the image is committed and complete"
        ),
        Success::Simulated => {
            println!("process {pid} ran its checkpoint hooks (simulate engine: no image; {took})")
        }
        Success::Paused => {
            println!("process {pid} is paused ({took}); wake it with `crac restore {d}`")
        }
    }
    if let Success::Exited | Success::LeftRunning(_) | Success::CommittedUnreported = success {
        out.status(format!("restore it with `crac restore {d}`"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks process `pid` for a checkpoint (into `to`, else its configured
/// directory) and waits for the real outcome: how it succeeded and the
/// image directory.
pub(crate) fn request(
    pid: u32,
    leave_running: bool,
    to: Option<&Path>,
    out: Reporter,
) -> Result<(Success, PathBuf), CheckpointError> {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(CheckpointError::NoSuchProcess { pid });
    }
    let target = Target::open(pid)?;
    // Read before the request: the process exits once its image is durable.
    let resident = fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| statm_resident_bytes(&s));
    let io_err = |step: &'static str| move |source| CheckpointError::Io { pid, step, source };
    // The process resolves paths against its own working directory.
    let to = match to {
        Some(dir) => {
            Some(std::path::absolute(dir).map_err(io_err("resolve the image directory for"))?)
        }
        None => None,
    };
    let stream = send_request(&target, leave_running, to.as_deref())?;
    let spinner = out.spinner(format!("checkpointing process {pid}"));
    let mut lines = Lines {
        stream: &stream,
        buf: Vec::new(),
    };
    let read = |lines: &mut Lines<'_>| lines.next().map_err(io_err("read the answer of"));
    let report = |lines: &mut Lines<'_>| {
        lines
            .rest()
            .map(Report)
            .map_err(io_err("read the answer of"))
    };

    // accepted / refused / error
    let (engine, dir) = match read(&mut lines)? {
        Next::Line(l) if l == control::REFUSED => {
            return Err(CheckpointError::Refused {
                pid,
                reason: report(&mut lines)?,
            })
        }
        Next::Line(l) if l == control::ERROR => {
            return Err(CheckpointError::Failed {
                pid,
                report: report(&mut lines)?,
            })
        }
        Next::Line(l) if l == control::BUSY => return Err(CheckpointError::Busy { pid }),
        Next::Line(l) => match parse_accepted(&l) {
            Some(x) => x,
            None => return Err(CheckpointError::Protocol { pid, line: l }),
        },
        Next::Eof | Next::Timeout => {
            return Err(CheckpointError::Ended {
                pid,
                durable: false,
            })
        }
    };
    tracing::info!(engine, dir = %dir.display(), "the process accepted the request");
    spinner.set_message(format!(
        "process {pid}: running its hooks and writing {}",
        dir.display()
    ));
    let mut watch = None;
    let abs = if dir.is_absolute() {
        Some(dir.clone())
    } else {
        fs::read_link(format!("/proc/{pid}/cwd"))
            .ok()
            .map(|cwd| cwd.join(&dir))
    };
    // The hooks run first, so the image there now is the previous one.
    let before = abs.as_deref().and_then(image_identity);
    if let (true, "native", Some(estimate)) = (spinner.meter().is_drawn(), &*engine, resident) {
        let uid = fs::metadata(format!("/proc/{pid}")).map(|m| m.uid());
        if let (Some(abs), Ok(uid)) = (abs.clone(), uid) {
            watch = Some(PagesWatch::start(
                spinner.meter(),
                abs,
                uid,
                estimate,
                format!("writing {}", dir.display()),
            ));
        }
    }
    if engine == "pause" {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(io_err("read the answer of"))?;
    }

    let mut durable = false;
    let success = loop {
        match read(&mut lines)? {
            Next::Line(l) if l == control::DURABLE => {
                durable = true;
                drop(watch.take());
                spinner.set_message(format!("process {pid}: image durable"));
            }
            Next::Line(l) if l == control::ERROR => {
                let report = report(&mut lines)?;
                return Err(if durable {
                    CheckpointError::AfterRestore { pid, dir, report }
                } else {
                    CheckpointError::Failed { pid, report }
                });
            }
            Next::Line(l) if durable && left_running(&l).is_some() => {
                break Success::LeftRunning(left_running(&l).flatten())
            }
            Next::Line(l) if l == control::OK_SIMULATED => break Success::Simulated,
            Next::Line(l) if l == control::OK_RESTORED => break Success::Paused,
            Next::Line(line) => return Err(CheckpointError::Protocol { pid, line }),
            Next::Eof if durable => break Success::Exited,
            Next::Eof
                if engine == "native"
                    && abs
                        .as_deref()
                        .is_some_and(|a| committed_since(a, pid, before)) =>
            {
                break Success::CommittedUnreported
            }
            Next::Eof => return Err(CheckpointError::Ended { pid, durable }),
            Next::Timeout => {
                if paused_in(&dir, pid) {
                    break Success::Paused;
                }
            }
        }
    };
    drop(watch);
    drop(spinner);
    Ok((success, dir))
}

/// Parses `accepted engine=ENGINE dir=DIR`.
fn parse_accepted(line: &str) -> Option<(String, PathBuf)> {
    let rest = line
        .strip_prefix(control::ACCEPTED)?
        .strip_prefix(" engine=")?;
    let (engine, dir) = rest.split_once(" dir=")?;
    Some((engine.to_owned(), control::unescape_dir(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_lines() {
        assert_eq!(
            parse_accepted("accepted engine=native dir=/tmp/a b"),
            Some(("native".into(), PathBuf::from("/tmp/a b")))
        );
        assert_eq!(parse_accepted("accepted engine=native"), None);
        assert_eq!(parse_accepted("durable"), None);
    }

    #[test]
    fn left_running_lines() {
        assert_eq!(
            left_running("ok left-running paused_ns=1500000"),
            Some(Some(Duration::from_micros(1500)))
        );
        assert_eq!(left_running("ok left-running"), Some(None));
        assert_eq!(left_running("ok left-running paused_ns=x"), None);
        assert_eq!(left_running("ok left-runningx"), None);
        assert_eq!(left_running("ok simulated"), None);
    }

    #[test]
    fn innermost_pid_from_status() {
        assert_eq!(innermost_pid("Name:\tx\nNSpid:\t4021\t17\n"), Some(17));
        assert_eq!(innermost_pid("NSpid:\t4021\n"), Some(4021));
        assert_eq!(innermost_pid("Name:\tx\n"), None);
    }

    #[test]
    fn effective_uid_from_status() {
        let status = "Name:\tx\nUmask:\t0022\nUid:\t1000\t65534\t1000\t1000\nGid:\t0\t0\t0\t0\n";
        assert_eq!(status_euid(status), Some(65534));
        assert_eq!(status_euid("Name:\tx\n"), None);
        assert_eq!(status_euid("Uid:\t1\n"), None);
    }

    #[test]
    fn resident_set_estimate() {
        assert_eq!(
            statm_resident_bytes("70000 262144 300 10 0 262000 0\n"),
            Some(1 << 30)
        );
        assert_eq!(statm_resident_bytes("70000"), None);
        assert_eq!(statm_resident_bytes(""), None);
        assert_eq!(statm_resident_bytes("1 x 2"), None);
        assert_eq!(statm_resident_bytes("1 18446744073709551615"), None);
    }

    #[test]
    fn temporary_pages_file_is_next_to_the_image() {
        let t = std::env::temp_dir().join(format!("crac-watch-{}", std::process::id()));
        let img = t.join("img");
        fs::create_dir_all(t.join(".img.tmp-0123456789abcdef")).unwrap();
        fs::create_dir_all(t.join(".other.tmp-0123456789abcdef")).unwrap();
        let me = fs::metadata(&t).unwrap().uid();
        assert_eq!(temp_pages_file(&img, me), None);
        let pages = t
            .join(".img.tmp-0123456789abcdef")
            .join(crac_image::PAGES_FILE);
        fs::write(&pages, b"x").unwrap();
        fs::write(t.join(".other.tmp-0123456789abcdef/pages.crac"), b"xx").unwrap();
        assert_eq!(temp_pages_file(&img, me), Some(pages));
        assert_eq!(temp_pages_file(&img, me + 1), None);
        fs::remove_dir_all(&t).unwrap();
    }
}
