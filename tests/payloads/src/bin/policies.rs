//! Resource policies end to end: `policies MODE` sets descriptors up,
//! checkpoints itself with the policies file the test put in
//! `CRAC_RESOURCE_POLICIES`, and checks the outcome. Prints "MODE OK" (or
//! "FAILED: ..." and exits 1).
//!
//! * `refused`: a listener and an established connection (both ends here);
//!   the checkpoint must fail (no policy); prints `error: MESSAGE`.
//! * `close`: the same, with a policy closing the connection: after
//!   restore both ends read end-of-file, and the restored listener serves
//!   one new connection (`ping` → `pong`).
//! * `ignore`: an inotify descriptor at 50 that no engine carries, with a
//!   policy `ignore`: after restore 50 is `/dev/null`.
//! * `error`: a pipe the engine would carry, with a policy `error`: the
//!   checkpoint must fail; prints `error: MESSAGE`.
//! * `reread`: a pipe, checkpointed under the test's policies; after restore a
//!   second checkpoint under the policies file the restore's environment
//!   names; prints `second checkpoint: OUTCOME`.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use payload::{fail, try_checkpoint};

/// Checkpoints; returns the error text if the checkpoint failed.
fn checkpoint() -> Option<String> {
    let e = try_checkpoint().err()?;
    println!("error: {e}");
    Some(e.to_string())
}

/// A listener on a free loopback port and a connection to it, both ends in
/// this process.
fn connected() -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let port = listener.local_addr().unwrap().port();
    let client =
        TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| fail(&format!("connect: {e}")));
    let (server, _) = listener
        .accept()
        .unwrap_or_else(|e| fail(&format!("accept: {e}")));
    println!(
        "listener 127.0.0.1:{port} client 127.0.0.1:{} fds {} {} {}",
        client.local_addr().unwrap().port(),
        listener.as_raw_fd(),
        client.as_raw_fd(),
        server.as_raw_fd()
    );
    (listener, client, server)
}

fn refused() {
    let _sockets = connected();
    if checkpoint().is_none() {
        fail("the checkpoint with an established connection was not refused");
    }
    println!("REFUSED OK");
}

/// Reads until end-of-file; fails on data or an error other than a reset.
fn expect_eof(name: &str, s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => fail(&format!("{name}: read {n} bytes from a closed connection")),
        Err(e) => fail(&format!("{name}: read from a closed connection: {e}")),
    }
}

fn close() {
    let (listener, mut client, mut server) = connected();
    if let Some(e) = checkpoint() {
        fail(&format!("checkpoint: {e}"));
    }
    expect_eof("client end", &mut client);
    expect_eof("server end", &mut server);
    println!("old connections closed");
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| {
        fail(&format!("the listener is gone: {e}"));
    });
    println!("listening again on {port}");
    let (conn, _) = listener
        .accept()
        .unwrap_or_else(|e| fail(&format!("accept: {e}")));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&conn)
        .read_line(&mut line)
        .unwrap_or_else(|e| fail(&format!("read: {e}")));
    if line != "ping\n" {
        fail(&format!("got {line:?} from the new connection"));
    }
    (&conn)
        .write_all(b"pong\n")
        .unwrap_or_else(|e| fail(&format!("write: {e}")));
    println!("CLOSE OK");
}

fn ignore() {
    // SAFETY: plain inotify creation.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    // SAFETY: dup3 onto a number this program reserves for the test.
    if fd < 0 || unsafe { libc::dup3(fd, 50, libc::O_CLOEXEC) } != 50 {
        fail("inotify at 50");
    }
    // SAFETY: closing the original number, owned here.
    unsafe { libc::close(fd) };
    if let Some(e) = checkpoint() {
        fail(&format!("checkpoint: {e}"));
    }
    match std::fs::read_link("/proc/self/fd/50") {
        Ok(p) if p == std::path::Path::new("/dev/null") => println!("IGNORE OK"),
        other => fail(&format!("descriptor 50 after restore: {other:?}")),
    }
}

fn error() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        fail("pipe2");
    }
    println!("pipe fds {} {}", fds[0], fds[1]);
    if !crac_engine::native::carries_fd(fds[0]) {
        fail("the engine does not carry a pipe with both ends here");
    }
    if checkpoint().is_none() {
        fail("the checkpoint with a pipe refused by policy was not refused");
    }
    println!("ERROR OK");
}

/// A pipe, checkpointed under the test's policies; after restore
/// checkpoints again under whatever policies file `crac restore --env` named
/// and prints that outcome.
fn reread() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        fail("pipe2");
    }
    println!("pipe fds {} {}", fds[0], fds[1]);
    if let Some(e) = checkpoint() {
        fail(&format!("checkpoint: {e}"));
    }
    // Keep running if this one succeeds, so the test sees the outcome.
    std::env::set_var("CRAC_ENGINE_OPTIONS", "keep_running=true");
    std::env::set_var("CRAC_CHECKPOINT_TO", "/nonexistent/second-image");
    match crac::checkpoint_restore() {
        Ok(()) => println!("second checkpoint: made"),
        Err(e) => println!("second checkpoint: {e}"),
    }
    println!("REREAD OK");
}

fn main() {
    crac::init();
    match std::env::args().nth(1).as_deref() {
        Some("refused") => refused(),
        Some("close") => close(),
        Some("ignore") => ignore(),
        Some("error") => error(),
        Some("reread") => reread(),
        other => fail(&format!("unknown mode {other:?}")),
    }
}
