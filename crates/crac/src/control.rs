//! The control channel: how `crac checkpoint PID` asks a running process to
//! checkpoint itself, the counterpart of CRaC's `jcmd PID JDK.checkpoint`.
//!
//! # When it exists
//!
//! If `CRAC_CHECKPOINT_TO` is set (and not empty) when the library is first
//! used ([`init`](crate::init), [`global_context`](crate::global_context) or
//! [`checkpoint_restore`](crate::checkpoint_restore)), the library listens on
//! the abstract Unix stream socket `@crac/PID` ([`socket_name`]; in a PID
//! namespace other than the initial one `@crac/pidns-INODE/PID`,
//! [`socket_name_in`]) and serves it
//! from a thread named `crac-control` ([`THREAD_NAME`]). An abstract socket
//! leaves no file behind and vanishes with the process. The decision is made
//! once: setting the variable later opens no channel. `crac run` sets it.
//!
//! The hooks of a checkpoint asked for this way run on the `crac-control`
//! thread, like CRaC's run on the Attach Listener thread.
//!
//! The listening socket and the connection being served are the library's
//! own descriptors: the open-descriptor check lets them pass. The listening
//! socket is closed while the descriptor check and the engine of **any**
//! checkpoint run (the image must not hold it) and opened again afterwards: in the restored process, in
//! the process kept running, or after a failure. The connection stays open
//! so the caller learns when the image is durable; in a restored process its
//! number means nothing (it may even belong to something else), so it is
//! neither written to nor closed there.
//!
//! # Who may use it
//!
//! Only a caller with the process's effective uid, or root, as the kernel
//! reports it for the connection (`SO_PEERCRED`). The credentials are
//! checked right after `accept`: anyone else is told why (`refused`) and
//! dropped at once, nothing read from them, and the process prints at most
//! one line per uid and minute on its standard error.
//!
//! The channel keeps listening while a request is read: each allowed
//! connection is served by a thread of its own (at most [`MAX_WORKERS`] at
//! once, all named `crac-control`), so a caller that sends nothing only
//! holds its own thread until [`IO_TIMEOUT`]. One request is carried out at
//! a time; another one meanwhile is answered `busy`.
//!
//! The caller checks the server's credentials too: the socket must be
//! served by the target process with the target's uid (anyone can bind an
//! abstract name first, and the process then warns that its name is taken).
//!
//! # Protocol
//!
//! Lines of UTF-8 text, each ending with `\n`. The caller sends one request:
//!
//! ```text
//! checkpoint leave_running=0        (or leave_running=1)
//! checkpoint leave_running=1 to=DIR (this checkpoint's image goes to DIR,
//!                                    an absolute path, escaped as below)
//! status
//! ```
//!
//! `status` is answered at once, even during a checkpoint, with one line
//! `status engine=ENGINE restores=N busy=0|1 dir=DIR` (`restores`: how many
//! times this process was restored; `dir`: where checkpoints go, escaped),
//! then the connection closes (`crac list`).
//!
//! To a `checkpoint` request the process answers with, in order:
//!
//! * `refused`, then one line saying why, then it closes the connection;
//! * `busy`: another request is being carried out; or
//! * `accepted engine=ENGINE dir=DIR`: the request is being carried out
//!   (`ENGINE` is `native`, `simulate` or `pause`; `DIR` is the rest of the
//!   line, the image directory with `\` written `\\` and a newline `\n`).
//!   Then:
//!   * `durable`: the image is complete, synced and in place (native
//!     engine). The connection then closes when the process exits (CRaC's
//!     default), or `ok left-running paused_ns=N` follows once the
//!     `after_restore` hooks ran in the process kept running
//!     (`leave_running=1` or the `keep_running` engine option); `N` is how
//!     long the program's threads were stopped, in nanoseconds (a live
//!     checkpoint: until the copy-on-write copy was made);
//!   * `ok simulated` (simulate engine: the hooks ran, no image);
//!   * `ok restored` (pause engine: only once the process is woken; a caller
//!     normally stops waiting when the pause image appears);
//!   * `error`, then the whole error text on the following lines (every
//!     problem found: failed hooks, open files, the engine's failure), then
//!     the connection closes. After `durable` this means the image was made
//!     but `after_restore` hooks failed in the process kept running.
//!
//! A connection that closes before `durable`, `ok …` or `error` means the
//! process ended during the checkpoint.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{self, Config, EngineKind};
use crate::engine::Request;
use crate::fds;

/// Name of the thread that serves the channel.
pub const THREAD_NAME: &str = "crac-control";

/// First line of the answer when the caller is not allowed or the request is
/// malformed.
pub const REFUSED: &str = "refused";
/// The answer when another request is being carried out.
pub const BUSY: &str = "busy";
/// First word of the line that says the request is being carried out.
pub const ACCEPTED: &str = "accepted";
/// Line sent once the image is complete and durable.
pub const DURABLE: &str = "durable";
/// Line that precedes the error text.
pub const ERROR: &str = "error";
/// Start of the line sent when the process kept running after writing the
/// image (` paused_ns=N` follows).
pub const OK_LEFT_RUNNING: &str = "ok left-running";
/// Line sent when the simulate engine ran the hooks.
pub const OK_SIMULATED: &str = "ok simulated";
/// Line sent when a paused process was woken.
pub const OK_RESTORED: &str = "ok restored";
/// The request for the process's state, and the first word of its answer.
pub const STATUS: &str = "status";

/// Longest request line accepted, newline included.
const MAX_REQUEST: u64 = 256;
/// How long the process waits for the request line, and for the caller to
/// take an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections served at once (reading a request or carrying it out);
/// only callers allowed to checkpoint the process can take them.
pub const MAX_WORKERS: usize = 4;
/// A refused uid is logged at most once in this time.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// How many refused uids are remembered for that.
const REFUSAL_LOG_UIDS: usize = 16;

/// The abstract socket name (without the leading NUL) of process `pid`'s
/// channel: `crac/PID`, shown as `@crac/PID` by `ss -x`.
pub fn socket_name(pid: u32) -> String {
    format!("crac/{pid}")
}

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`, fixed by
/// the kernel).
pub const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The control socket name of process `pid` (as its own PID namespace
/// numbers it) in PID namespace `pidns` (its inode): `crac/PID` in the
/// initial namespace, `crac/pidns-INODE/PID` in any other, so copies of
/// one image restored with `crac restore --pidns` (same PID, one network
/// namespace) each have their own.
pub fn socket_name_in(pidns: u64, pid: u32) -> String {
    if pidns == INITIAL_PID_NAMESPACE {
        socket_name(pid)
    } else {
        format!("crac/pidns-{pidns}/{pid}")
    }
}

/// This process's control socket name ([`socket_name_in`]).
fn own_socket_name() -> String {
    use std::os::unix::fs::MetadataExt;
    let pidns = std::fs::metadata("/proc/self/ns/pid").map_or(INITIAL_PID_NAMESPACE, |m| m.ino());
    socket_name_in(pidns, std::process::id())
}

/// The request line for a checkpoint, newline included.
pub fn request_line(leave_running: bool, to: Option<&std::path::Path>) -> String {
    match to {
        None => format!("checkpoint leave_running={}\n", u8::from(leave_running)),
        Some(dir) => format!(
            "checkpoint leave_running={} to={}\n",
            u8::from(leave_running),
            escape_dir(dir)
        ),
    }
}

/// A `status` answer's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The engine checkpoints use.
    pub engine: String,
    /// How many times this process was restored.
    pub restores: u32,
    /// Whether a checkpoint is being carried out.
    pub busy: bool,
    /// Where checkpoints go.
    pub dir: std::path::PathBuf,
}

/// Parses a `status` answer line (without its newline).
pub fn parse_status(line: &str) -> Option<Status> {
    let rest = line.strip_prefix("status engine=")?;
    let (engine, rest) = rest.split_once(" restores=")?;
    let (restores, rest) = rest.split_once(" busy=")?;
    let (busy, dir) = rest.split_once(" dir=")?;
    Some(Status {
        engine: engine.to_string(),
        restores: restores.parse().ok()?,
        busy: match busy {
            "0" => false,
            "1" => true,
            _ => return None,
        },
        dir: unescape_dir(dir),
    })
}

/// What a caller asked for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Checkpoint {
        leave_running: bool,
        to: Option<std::path::PathBuf>,
    },
    Status,
}

/// Writes `dir` as the `accepted` line carries it (see the module docs).
pub fn escape_dir(dir: &std::path::Path) -> String {
    dir.to_string_lossy()
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
}

/// Reverses [`escape_dir`].
pub fn unescape_dir(text: &str) -> std::path::PathBuf {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out.into()
}

/// State shared by the `crac-control` thread and checkpoints.
struct Channel {
    /// The listening socket while the thread accepts on it.
    listener: Option<Arc<UnixListener>>,
    /// The thread has a listening socket open (or is opening one).
    open: bool,
    /// A checkpoint's engine runs: no listening socket may be open.
    closed_for_checkpoint: bool,
}

static CHANNEL: Mutex<Channel> = Mutex::new(Channel {
    listener: None,
    open: false,
    closed_for_checkpoint: false,
});
static CHANGED: Condvar = Condvar::new();
static STARTED: OnceLock<bool> = OnceLock::new();
/// Threads serving a connection.
static WORKERS: AtomicUsize = AtomicUsize::new(0);
/// A request is being carried out.
static REQUEST_RUNNING: AtomicBool = AtomicBool::new(false);
/// The socket name was found taken, and this was reported.
static NAME_TAKEN_REPORTED: AtomicBool = AtomicBool::new(false);
/// When each refused uid was last logged.
static REFUSALS_LOGGED: Mutex<Vec<(u32, Instant)>> = Mutex::new(Vec::new());

fn channel() -> MutexGuard<'static, Channel> {
    CHANNEL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the channel if `CRAC_CHECKPOINT_TO` is set; decided once.
pub(crate) fn start_if_configured() {
    STARTED.get_or_init(|| {
        let configured = std::env::var_os(config::CHECKPOINT_TO_VAR).is_some_and(|v| !v.is_empty());
        if !configured {
            return false;
        }
        // Bound before `init` returns, so that the channel answers as soon as
        // the program runs.
        let first = open_listener();
        let spawned = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || serve(first));
        match spawned {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the crac control thread");
                false
            }
        }
    });
}

/// Opens and publishes a listening socket unless a checkpoint runs.
fn open_listener() -> Option<Arc<UnixListener>> {
    {
        let mut ch = channel();
        if ch.closed_for_checkpoint {
            return None;
        }
        ch.open = true;
    }
    let pid = std::process::id();
    let name = own_socket_name();
    let bound =
        SocketAddr::from_abstract_name(&name).and_then(|addr| UnixListener::bind_addr(&addr));
    let mut ch = channel();
    match bound {
        Ok(listener) => {
            fds::register_own(listener.as_raw_fd());
            NAME_TAKEN_REPORTED.store(false, Ordering::Relaxed);
            let listener = Arc::new(listener);
            if ch.closed_for_checkpoint {
                close_locked(&mut ch, listener);
                return None;
            }
            ch.listener = Some(Arc::clone(&listener));
            Some(listener)
        }
        Err(e) => {
            ch.open = false;
            CHANGED.notify_all();
            drop(ch);
            if e.kind() == std::io::ErrorKind::AddrInUse {
                // Another process bound the name first: `crac checkpoint`
                // refuses to talk to it, but cannot reach this process.
                if !NAME_TAKEN_REPORTED.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "crac: the control socket name @{} is taken by another process; \
                         `crac checkpoint {pid}` cannot reach this process until it is free \
                         (retrying)",
                        name
                    );
                }
            } else {
                tracing::warn!(error = %e, %name,
                    "cannot open the crac control channel; retrying");
            }
            None
        }
    }
}

/// Closes the thread's listening socket; `ch` is the locked state.
fn close_locked(ch: &mut Channel, listener: Arc<UnixListener>) {
    let fd = listener.as_raw_fd();
    ch.listener = None;
    // The last reference: this closes the socket.
    drop(listener);
    fds::unregister_own(fd);
    ch.open = false;
    CHANGED.notify_all();
}

/// The `crac-control` thread: accepts connections and hands each allowed
/// one to a thread of its own. The listening socket stays open until a
/// checkpoint closes it (see [`close_for_checkpoint`]).
fn serve(mut listening: Option<Arc<UnixListener>>) {
    loop {
        let listener = match listening.take() {
            Some(l) => l,
            None => {
                wait_until_allowed();
                match open_listener() {
                    Some(l) => l,
                    None => {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
            }
        };
        let failed = match listener.accept() {
            Ok((stream, _)) => {
                // Own before anything else: a checkpoint's descriptor check
                // runs only once the listening socket is closed, after this.
                fds::register_own(stream.as_raw_fd());
                dispatch(stream);
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "crac control channel: accept failed");
                true
            }
        };
        let mut ch = channel();
        if ch.closed_for_checkpoint {
            close_locked(&mut ch, listener);
            continue;
        }
        drop(ch);
        if failed {
            // A transient failure (EMFILE): do not spin.
            std::thread::sleep(Duration::from_millis(100));
        }
        listening = Some(listener);
    }
}

fn wait_until_allowed() {
    let mut ch = channel();
    while ch.closed_for_checkpoint {
        ch = CHANGED.wait(ch).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Keeps the listening socket closed while alive; see
/// [`close_for_checkpoint`].
#[derive(Debug)]
pub(crate) struct ClosedForCheckpoint(());

impl Drop for ClosedForCheckpoint {
    fn drop(&mut self) {
        channel().closed_for_checkpoint = false;
        CHANGED.notify_all();
    }
}

/// Closes the listening socket (waking the thread from `accept`) and keeps
/// it closed until the returned guard drops. Called with the checkpoint lock
/// held, right before the descriptor check: once it returns, no connection
/// is accepted, and every accepted one is registered as the library's own.
pub(crate) fn close_for_checkpoint() -> ClosedForCheckpoint {
    let mut ch = channel();
    ch.closed_for_checkpoint = true;
    if let Some(listener) = &ch.listener {
        // Wakes `accept` with EINVAL; the thread then closes the socket.
        let _ = rustix::net::shutdown(listener.as_fd(), rustix::net::Shutdown::Both);
    }
    let mut waited = Duration::ZERO;
    while ch.open {
        let step = Duration::from_millis(100);
        ch = CHANGED
            .wait_timeout(ch, step)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        waited += step;
        if waited >= IO_TIMEOUT {
            tracing::warn!("the crac control thread did not close its socket in time");
            break;
        }
    }
    ClosedForCheckpoint(())
}

/// A caller refused for its credentials.
struct Refusal {
    /// Its uid, when known.
    uid: Option<u32>,
    /// Why, in a sentence.
    reason: String,
}

/// Serves the new connection `stream`: refuses a caller without the right
/// at once, or hands it to a thread of its own. Never blocks.
fn dispatch(stream: UnixStream) {
    let fd = stream.as_raw_fd();
    if let Err(refusal) = check_peer(&stream) {
        if should_log_refusal(refusal.uid) {
            eprintln!(
                "crac: {} (refusals of this uid are logged once a minute)",
                refusal.reason
            );
        }
        answer_and_close(
            stream,
            fd,
            format!("{REFUSED}\n{}\n", refusal.reason).as_bytes(),
        );
        return;
    }
    let Some(slot) = WorkerSlot::take() else {
        tracing::warn!("crac control channel: {MAX_WORKERS} connections are being served");
        answer_and_close(stream, fd, format!("{BUSY}\n").as_bytes());
        return;
    };
    let spawned = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            let _slot = slot;
            handle(stream);
        });
    if let Err(e) = spawned {
        // The closure, and with it the connection and the slot, is dropped.
        fds::unregister_own(fd);
        tracing::warn!(error = %e, "crac control channel: cannot start a thread");
    }
}

/// Sends `answer` without waiting (a new connection's buffer takes it) and
/// closes the connection, nothing read.
fn answer_and_close(stream: UnixStream, fd: std::os::fd::RawFd, answer: &[u8]) {
    let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
    let _ = rustix::net::send(&stream, answer, flags);
    drop(stream);
    fds::unregister_own(fd);
}

/// One of the [`MAX_WORKERS`] connection threads, given back when dropped.
struct WorkerSlot(());

impl WorkerSlot {
    fn take() -> Option<WorkerSlot> {
        WORKERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WORKERS).then_some(n + 1)
            })
            .ok()
            .map(|_| WorkerSlot(()))
    }
}

impl Drop for WorkerSlot {
    fn drop(&mut self) {
        WORKERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a refusal of `uid` is logged now: at most once per
/// [`REFUSAL_LOG_EVERY`] and uid, so that nobody can fill the process's
/// standard error.
fn should_log_refusal(uid: Option<u32>) -> bool {
    let uid = uid.unwrap_or(u32::MAX);
    let now = Instant::now();
    let mut logged = REFUSALS_LOGGED
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((_, last)) = logged.iter_mut().find(|(u, _)| *u == uid) {
        if now.duration_since(*last) < REFUSAL_LOG_EVERY {
            return false;
        }
        *last = now;
        return true;
    }
    if logged.len() >= REFUSAL_LOG_UIDS {
        if let Some(oldest) = (0..logged.len()).min_by_key(|&i| logged[i].1) {
            logged.swap_remove(oldest);
        }
    }
    logged.push((uid, now));
    true
}

/// Marks a request as being carried out while alive.
struct RequestRunning(());

impl RequestRunning {
    fn take() -> Option<RequestRunning> {
        REQUEST_RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| RequestRunning(()))
    }
}

impl Drop for RequestRunning {
    fn drop(&mut self) {
        REQUEST_RUNNING.store(false, Ordering::Release);
    }
}

/// Serves one allowed connection on a thread of its own.
fn handle(stream: UnixStream) {
    let fd = stream.as_raw_fd();
    let restores_before = crate::restore_info().restore_count;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let request = read_request(&stream);
    if crate::restore_info().restore_count != restores_before
        && Config::from_env().map_or(true, |c| c.engine() == EngineKind::Native)
    {
        // Another thread's checkpoint was restored while the request was
        // read: this connection does not exist here.
        forget_connection(stream, fd);
        return;
    }
    let answer = match request {
        Err(reason) => {
            tracing::warn!("crac control channel: {reason}");
            format!("{REFUSED}\n{reason}\n")
        }
        Ok(Asked::Status) => status_line(),
        Ok(Asked::Checkpoint { leave_running, to }) => match RequestRunning::take() {
            Some(running) => {
                checkpoint_for(stream, fd, leave_running, to, restores_before);
                drop(running);
                return;
            }
            None => format!("{BUSY}\n"),
        },
    };
    send_all(&stream, answer.as_bytes());
    drop(stream);
    fds::unregister_own(fd);
}

/// In a restored process: the connection `fd` of the original process is
/// not open here (its number may belong to something else now). Neither
/// write to it nor close it.
fn forget_connection<T>(stream: T, fd: std::os::fd::RawFd) {
    fds::unregister_own(fd);
    std::mem::forget(stream);
}

/// Only the process's own effective uid and root may ask.
fn check_peer(stream: &UnixStream) -> Result<(), Refusal> {
    let cred = crac_sys::peercred::peer_cred(stream.as_raw_fd()).map_err(|e| Refusal {
        uid: None,
        reason: format!(
            "refused a checkpoint request: the caller's credentials cannot be read: {e}"
        ),
    })?;
    let me = rustix::process::geteuid().as_raw();
    if cred.uid == me || cred.uid == 0 {
        return Ok(());
    }
    Err(Refusal {
        uid: Some(cred.uid),
        reason: format!(
            "refused a checkpoint request from process {} running as uid {}: only uid {me} or \
             root may checkpoint this process",
            cred.pid, cred.uid
        ),
    })
}

/// Reads the request line.
fn read_request(stream: &UnixStream) -> Result<Asked, String> {
    let mut line = String::new();
    BufReader::new(stream.take(MAX_REQUEST))
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    parse_request(&line)
}

fn parse_request(line: &str) -> Result<Asked, String> {
    let malformed = || format!("malformed request {line:?}");
    let body = line.strip_suffix('\n').ok_or_else(malformed)?;
    if body == STATUS {
        return Ok(Asked::Status);
    }
    let rest = body
        .strip_prefix("checkpoint leave_running=")
        .ok_or_else(malformed)?;
    let (flag, to) = match rest.split_once(' ') {
        None => (rest, None),
        Some((flag, to)) => (flag, Some(to.strip_prefix("to=").ok_or_else(malformed)?)),
    };
    let leave_running = match flag {
        "0" => false,
        "1" => true,
        _ => return Err(malformed()),
    };
    let to = to.map(unescape_dir);
    if let Some(dir) = &to {
        if !dir.is_absolute() {
            return Err(format!(
                "the image directory {} of a checkpoint request is not an absolute path",
                dir.display()
            ));
        }
    }
    Ok(Asked::Checkpoint { leave_running, to })
}

/// The answer to `status`.
fn status_line() -> String {
    let (engine, dir) = match Config::from_env() {
        Ok(c) => (c.engine().to_string(), escape_dir(c.checkpoint_to())),
        Err(_) => ("none".to_string(), String::new()),
    };
    let busy = REQUEST_RUNNING.load(Ordering::SeqCst);
    format!(
        "{STATUS} engine={engine} restores={} busy={} dir={dir}\n",
        crate::restore_info().restore_count,
        u8::from(busy)
    )
}

/// Runs a checkpoint for the caller on `stream` and reports the outcome.
fn checkpoint_for(
    stream: UnixStream,
    fd: std::os::fd::RawFd,
    leave_running: bool,
    to: Option<std::path::PathBuf>,
    restores_before: u32,
) {
    let stream = Arc::new(stream);
    let engine = match Config::from_env() {
        Ok(config) => {
            let dir = to.as_deref().unwrap_or(config.checkpoint_to());
            let line = format!(
                "{ACCEPTED} engine={} dir={}\n",
                config.engine(),
                escape_dir(dir)
            );
            send_all(&stream, line.as_bytes());
            Some(config.engine())
        }
        // `checkpoint_restore_with` reports the configuration error.
        Err(_) => None,
    };
    let on_durable: Arc<dyn Fn() + Send + Sync> = {
        let stream = Arc::clone(&stream);
        // Runs while other threads may be stopped holding the allocator's
        // lock: a plain `send` of a constant, nothing allocated.
        Arc::new(move || send_all(&stream, b"durable\n"))
    };
    // How long the threads were stopped, for the caller (`ok left-running`).
    let paused_ns = Arc::new(AtomicU64::new(0));
    let on_kept_running: Arc<dyn Fn(Duration) + Send + Sync> = {
        let paused_ns = Arc::clone(&paused_ns);
        Arc::new(move |paused: Duration| {
            let ns = u64::try_from(paused.as_nanos()).unwrap_or(u64::MAX);
            paused_ns.store(ns, Ordering::Relaxed);
        })
    };
    let request = Request {
        leave_running,
        on_durable: Some(on_durable),
        on_kept_running: Some(on_kept_running),
        dir: to,
    };
    let result = crate::checkpoint_restore_with(&request);
    drop(request);

    if engine == Some(EngineKind::Native) && crate::restore_info().restore_count != restores_before
    {
        // This is a restored process.
        forget_connection(stream, fd);
        if let Err(e) = result {
            eprintln!("crac: {e:#}");
        }
        tracing::debug!("restored; the checkpoint request's connection stayed behind");
        return;
    }
    let answer = match (&result, engine) {
        (Ok(()), Some(EngineKind::Simulate)) => format!("{OK_SIMULATED}\n"),
        (Ok(()), Some(EngineKind::Pause)) => format!("{OK_RESTORED}\n"),
        (Ok(()), _) => format!(
            "{OK_LEFT_RUNNING} paused_ns={}\n",
            paused_ns.load(Ordering::Relaxed)
        ),
        (Err(e), _) => format!("{ERROR}\n{e:#}\n"),
    };
    send_all(&stream, answer.as_bytes());
    drop(stream);
    fds::unregister_own(fd);
}

/// Sends all of `buf`, ignoring failures (the caller may be gone); never
/// raises SIGPIPE and never allocates.
fn send_all(stream: &UnixStream, mut buf: &[u8]) {
    while !buf.is_empty() {
        match rustix::net::send(stream, buf, rustix::net::SendFlags::NOSIGNAL) {
            Ok(0) => return,
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_escaping_round_trips() {
        for dir in ["/tmp/img", "/tmp/a\\b", "/tmp/new\nline", "/tmp/\\n"] {
            let path = std::path::Path::new(dir);
            let escaped = escape_dir(path);
            assert!(!escaped.contains('\n'));
            assert_eq!(unescape_dir(&escaped), path);
        }
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_uid() {
        // Uids no other test uses.
        assert!(should_log_refusal(Some(4_000_000_001)));
        assert!(!should_log_refusal(Some(4_000_000_001)));
        assert!(should_log_refusal(Some(4_000_000_002)));
        // The memory is bounded: many uids push the oldest out, and each new
        // one is still logged.
        for uid in 4_000_001_000..4_000_001_000 + 2 * REFUSAL_LOG_UIDS as u32 {
            assert!(should_log_refusal(Some(uid)));
        }
        assert!(REFUSALS_LOGGED.lock().unwrap().len() <= REFUSAL_LOG_UIDS);
        assert!(should_log_refusal(Some(4_000_000_001)));
    }

    #[test]
    fn connection_threads_are_bounded() {
        let slots: Vec<WorkerSlot> = std::iter::from_fn(WorkerSlot::take).take(100).collect();
        assert_eq!(slots.len(), MAX_WORKERS);
        assert!(WorkerSlot::take().is_none());
        drop(slots);
        assert!(WorkerSlot::take().is_some());
    }

    #[test]
    fn request_lines() {
        assert_eq!(request_line(false, None), "checkpoint leave_running=0\n");
        assert_eq!(request_line(true, None), "checkpoint leave_running=1\n");
        let to = std::path::Path::new("/img/a b\nc");
        assert_eq!(
            request_line(true, Some(to)),
            "checkpoint leave_running=1 to=/img/a b\\nc\n"
        );
        for leave_running in [false, true] {
            for to in [None, Some(to)] {
                assert_eq!(
                    parse_request(&request_line(leave_running, to)),
                    Ok(Asked::Checkpoint {
                        leave_running,
                        to: to.map(std::path::Path::to_path_buf)
                    })
                );
            }
        }
        assert_eq!(parse_request("status\n"), Ok(Asked::Status));
        assert!(parse_request("checkpoint leave_running=1 to=img\n")
            .unwrap_err()
            .contains("not an absolute path"));
        for bad in [
            "checkpoint leave_running=2\n",
            "checkpoint leave_running=1 x=/a\n",
            "status",
        ] {
            assert!(parse_request(bad)
                .unwrap_err()
                .starts_with("malformed request"));
        }
        let s = parse_status("status engine=native restores=3 busy=1 dir=/a b\\nc").unwrap();
        assert_eq!(
            (s.engine.as_str(), s.restores, s.busy, s.dir),
            ("native", 3, true, std::path::PathBuf::from("/a b\nc"))
        );
        assert_eq!(socket_name(42), "crac/42");
        assert_eq!(socket_name_in(INITIAL_PID_NAMESPACE, 42), "crac/42");
        assert_eq!(socket_name_in(4026532999, 42), "crac/pidns-4026532999/42");
    }
}
