//! `crac checkpoint PID`: ask a running process to checkpoint itself through
//! its control channel (protocol: `crac::control`) and report the outcome.

use std::fs;
use std::io::{self, Read, Write};
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
enum Success {
    /// Image durable; the process exited.
    Exited,
    /// Image durable; the process keeps running.
    LeftRunning,
    /// The simulate engine ran the hooks.
    Simulated,
    /// The pause engine paused the process.
    Paused,
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
                Err(e) => return Err(e),
            }
        }
    }

    /// Everything up to the end of the stream, without a timeout.
    fn rest(&mut self) -> io::Result<String> {
        self.stream.set_read_timeout(None)?;
        let mut all = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut all)?;
        Ok(String::from_utf8_lossy(&all).trim_end().to_owned())
    }
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

/// The pages file the process `pid` writes while it checkpoints into the
/// absolute `dir`: `.NAME.tmp-PID/pages.crac` next to it (crac-engine's
/// dump writes the image under that name, then renames it into place).
fn temp_pages_file(dir: &Path, pid: u32) -> PathBuf {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let mut name = std::ffi::OsString::from(".");
    name.push(dir.file_name().unwrap_or("image".as_ref()));
    name.push(format!(".tmp-{pid}"));
    parent.join(name).join(crac_image::PAGES_FILE)
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
    fn start(meter: Meter, file: PathBuf, estimate: u64, message: String) -> PagesWatch {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("crac-progress".into())
            .spawn(move || {
                let mut shown = false;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
                    let Ok(m) = fs::metadata(&file) else { continue };
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

/// Runs `crac checkpoint`.
pub fn checkpoint(args: &CheckpointArgs, out: Reporter) -> Result<ExitCode, CheckpointError> {
    let pid = args.pid;
    let started = Instant::now();
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(CheckpointError::NoSuchProcess { pid });
    }
    // Read before the request: the process exits once its image is durable.
    let resident = fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| statm_resident_bytes(&s));
    let io_err = |step: &'static str| move |source| CheckpointError::Io { pid, step, source };
    let addr =
        SocketAddr::from_abstract_name(control::socket_name(pid)).map_err(io_err("address"))?;
    let mut stream = match UnixStream::connect_addr(&addr) {
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
    stream
        .write_all(control::request_line(args.leave_running).as_bytes())
        .map_err(io_err("send the request to"))?;
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
    if let (true, "native", Some(estimate)) = (spinner.meter().is_drawn(), &*engine, resident) {
        let abs = if dir.is_absolute() {
            Some(dir.clone())
        } else {
            fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()
                .map(|cwd| cwd.join(&dir))
        };
        if let Some(abs) = abs {
            watch = Some(PagesWatch::start(
                spinner.meter(),
                temp_pages_file(&abs, pid),
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
            Next::Line(l) if l == control::OK_LEFT_RUNNING && durable => {
                break Success::LeftRunning
            }
            Next::Line(l) if l == control::OK_SIMULATED => break Success::Simulated,
            Next::Line(l) if l == control::OK_RESTORED => break Success::Paused,
            Next::Line(line) => return Err(CheckpointError::Protocol { pid, line }),
            Next::Eof if durable => break Success::Exited,
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
    let took = output::duration(started.elapsed());
    let size = output::bytes(image_bytes(&dir));
    let d = dir.display();
    match success {
        Success::Exited => {
            println!("checkpointed process {pid} into {d} ({size}, {took}); the process exited")
        }
        Success::LeftRunning => println!(
            "checkpointed process {pid} into {d} ({size}, {took}); the process keeps running"
        ),
        Success::Simulated => {
            println!("process {pid} ran its checkpoint hooks (simulate engine: no image; {took})")
        }
        Success::Paused => {
            println!("process {pid} is paused ({took}); wake it with `crac restore {d}`")
        }
    }
    if let Success::Exited | Success::LeftRunning = success {
        out.status(format!("restore it with `crac restore {d}`"));
    }
    Ok(ExitCode::SUCCESS)
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
        assert_eq!(
            temp_pages_file(Path::new("/tmp/img"), 42),
            Path::new("/tmp/.img.tmp-42/pages.crac")
        );
        assert_eq!(
            temp_pages_file(Path::new("/var/lib/a b/"), 7),
            Path::new("/var/lib/.a b.tmp-7/pages.crac")
        );
        assert_eq!(
            temp_pages_file(Path::new("/"), 7),
            Path::new("/.image.tmp-7/pages.crac")
        );
    }
}
