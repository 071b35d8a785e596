//! A hostile peer of a process's control channel `@crac/PID`, for the
//! tests of `crac checkpoint` (run as another user):
//!
//! * `control_peer squat PID`: binds `@crac/PID` before the process does,
//!   prints `bound`, and answers every request as a process that
//!   checkpointed itself would (`accepted`, `durable`, close).
//! * `control_peer silent PID N SECS`: for SECS seconds keeps N connections
//!   to `@crac/PID` open, sending nothing, and opens a new one whenever the
//!   process answers or closes one; prints `connected` once one is open, and
//!   at the end `connections C` (how many it opened).

use std::io::{ErrorKind, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

fn fail(msg: &str) -> ! {
    println!("FAILED: {msg}");
    std::process::exit(1)
}

fn address(pid: &str) -> SocketAddr {
    SocketAddr::from_abstract_name(format!("crac/{pid}"))
        .unwrap_or_else(|e| fail(&format!("address: {e}")))
}

fn squat(pid: &str) -> ! {
    let listener = UnixListener::bind_addr(&address(pid))
        .unwrap_or_else(|e| fail(&format!("cannot bind @crac/{pid}: {e}")));
    println!("bound");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        // Takes the request like the real channel, so that the caller reads
        // the answer whole (a caller that sends nothing waits 1 s).
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut request = [0u8; 256];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"accepted engine=native dir=/tmp/crac-squatted\ndurable\n");
    }
    fail("accept failed")
}

/// Whether the process has answered or closed `stream`.
fn answered(stream: &UnixStream) -> bool {
    let mut b = [0u8; 64];
    // Nonblocking: what was read, if anything, is not needed.
    !matches!((&*stream).read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

fn silent(pid: &str, n: usize, secs: u64) {
    let addr = address(pid);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut open: Vec<UnixStream> = Vec::new();
    let mut connections = 0u64;
    let mut said = false;
    while Instant::now() < end {
        open.retain(|s| !answered(s));
        while open.len() < n {
            match UnixStream::connect_addr(&addr) {
                Ok(s) => {
                    s.set_nonblocking(true)
                        .unwrap_or_else(|e| fail(&format!("nonblocking: {e}")));
                    open.push(s);
                    connections += 1;
                }
                // Closed for a checkpoint meanwhile: try again soon.
                Err(_) => break,
            }
        }
        if !said && !open.is_empty() {
            println!("connected");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("connections {connections}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["squat", pid] => squat(pid),
        ["silent", pid, n, secs] => silent(
            pid,
            n.parse().unwrap_or_else(|_| fail("N")),
            secs.parse().unwrap_or_else(|_| fail("SECS")),
        ),
        _ => fail("usage: control_peer squat PID | silent PID N SECS"),
    }
}
