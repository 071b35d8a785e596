//! An attacker's stand-in for a paused process: `pause_squatter SOCKET`
//! listens on the Unix socket path SOCKET (in a pause image directory it
//! made) and prints "listening", then for each connection
//! "received N bytes: TEXT" (what it read until end of file or 3 s of
//! silence). It runs until it is ended.
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixListener;
use std::time::Duration;

fn main() {
    let path = std::env::args_os()
        .nth(1)
        .expect("usage: pause_squatter SOCKET");
    let listener = UnixListener::bind(&path).expect("bind the socket");
    println!("listening");
    for stream in listener.incoming() {
        let mut stream = stream.expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("read timeout");
        let mut got = Vec::new();
        match stream.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
        println!(
            "received {} bytes: {}",
            got.len(),
            String::from_utf8_lossy(&got).escape_debug()
        );
    }
}
