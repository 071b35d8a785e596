//! The open-descriptor check: one exact message per kind of descriptor.

mod common;

use std::fs::{self, File, OpenOptions};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;

use common::{checkpoint_error, configure, lock, problem_messages};
use crac::{CheckpointProblem, FdKind, SocketInfo, TcpState};

/// Configures `simulate`; returns the (canonical) temporary directory.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    configure("simulate", &dir.path().join("image"));
    let path = fs::canonicalize(dir.path()).unwrap();
    (dir, path)
}

/// The message of an open descriptor whose resource policy would have
/// `type: TYPE` (`filedescriptor` with the number for other kinds).
fn open_as(fd: &impl AsRawFd, description: &str, policy_type: &str) -> String {
    let fd = fd.as_raw_fd();
    let rule = match policy_type {
        "filedescriptor" => format!("type: filedescriptor, value: {fd}"),
        other => format!("type: {other}"),
    };
    format!(
        "file descriptor {fd} is open: {description}; close it in before_checkpoint or add \
         a resource policy ({rule}, action: close)"
    )
}

fn open_file(fd: &impl AsRawFd, description: &str) -> String {
    open_as(fd, description, "file")
}

fn open_pipe(fd: &impl AsRawFd, description: &str) -> String {
    open_as(fd, description, "pipe")
}

fn open_socket(fd: &impl AsRawFd, description: &str) -> String {
    open_as(fd, description, "socket")
}

fn open_other(fd: &impl AsRawFd, description: &str) -> String {
    open_as(fd, description, "filedescriptor")
}

/// The messages of the checkpoint that must fail.
fn messages() -> Vec<String> {
    problem_messages(&checkpoint_error())
}

#[test]
fn nothing_open_passes() {
    let _g = lock();
    let _dir = setup();
    crac::checkpoint_restore().unwrap();
}

#[test]
fn regular_file() {
    let _g = lock();
    let (_dir, tmp) = setup();
    let path = tmp.join("out.txt");
    let file = File::create(&path).unwrap();
    assert_eq!(
        messages(),
        [open_file(
            &file,
            &format!("{} (regular file)", path.display())
        )]
    );
    let e = checkpoint_error();
    let Some(CheckpointProblem::OpenFd(info)) = e.problems().next() else {
        panic!("{e:?}")
    };
    assert_eq!(info.fd(), file.as_raw_fd());
    assert_eq!(
        info.kind(),
        &FdKind::RegularFile {
            path,
            deleted: false
        }
    );
}

#[test]
fn deleted_regular_file() {
    let _g = lock();
    let (_dir, tmp) = setup();
    let path = tmp.join("gone.txt");
    let file = File::create(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(
        messages(),
        [open_file(
            &file,
            &format!("{} (regular file, deleted)", path.display())
        )]
    );
}

#[test]
fn directory() {
    let _g = lock();
    let (_dir, tmp) = setup();
    let file = File::open(&tmp).unwrap();
    assert_eq!(
        messages(),
        [open_file(&file, &format!("{} (directory)", tmp.display()))]
    );
}

#[test]
fn pipe() {
    let _g = lock();
    let _dir = setup();
    let (r, w) = rustix::pipe::pipe().unwrap();
    let inode = rustix::fs::fstat(&r).unwrap().st_ino;
    let description = format!("pipe:[{inode}] (pipe)");
    assert_eq!(
        messages(),
        [open_pipe(&r, &description), open_pipe(&w, &description)]
    );
}

#[test]
fn fifo() {
    let _g = lock();
    let (_dir, tmp) = setup();
    let path = tmp.join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &path,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .unwrap();
    // Read-write, so opening does not wait for a peer.
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    assert_eq!(
        messages(),
        [open_file(&fifo, &format!("{} (FIFO)", path.display()))]
    );
}

#[test]
fn character_device() {
    let _g = lock();
    let _dir = setup();
    let null = File::open("/dev/null").unwrap();
    assert_eq!(
        messages(),
        [open_file(&null, "/dev/null (character device)")]
    );
}

#[test]
fn tcp_v4_listening_and_connected() {
    let _g = lock();
    let _dir = setup();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(
        messages(),
        [open_socket(
            &listener,
            &format!("TCP socket 127.0.0.1:{port} (listening)")
        )]
    );

    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let cport = client.local_addr().unwrap().port();
    assert_eq!(
        messages(),
        [
            open_socket(
                &listener,
                &format!("TCP socket 127.0.0.1:{port} (listening)")
            ),
            open_socket(
                &client,
                &format!("TCP socket 127.0.0.1:{cport} -> 127.0.0.1:{port} (established)")
            ),
            open_socket(
                &server,
                &format!("TCP socket 127.0.0.1:{port} -> 127.0.0.1:{cport} (established)")
            ),
        ]
    );
    let e = checkpoint_error();
    let Some(CheckpointProblem::OpenFd(info)) = e.problems().nth(1) else {
        panic!("{e:?}")
    };
    assert!(matches!(
        info.kind(),
        FdKind::Socket(SocketInfo::Tcp { state: TcpState::Established, peer: Some(p), .. })
            if p.port() == port
    ));
}

#[test]
fn tcp_v6_listening_and_connected() {
    let _g = lock();
    let _dir = setup();
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("SKIPPED tcp_v6_listening_and_connected: IPv6 loopback unavailable");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("::1", port)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let cport = client.local_addr().unwrap().port();
    assert_eq!(
        messages(),
        [
            open_socket(&listener, &format!("TCPv6 socket [::1]:{port} (listening)")),
            open_socket(
                &client,
                &format!("TCPv6 socket [::1]:{cport} -> [::1]:{port} (established)")
            ),
            open_socket(
                &server,
                &format!("TCPv6 socket [::1]:{port} -> [::1]:{cport} (established)")
            ),
        ]
    );
}

#[test]
fn udp_unconnected_and_connected() {
    let _g = lock();
    let _dir = setup();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    b.connect(("127.0.0.1", pa)).unwrap();
    assert_eq!(
        messages(),
        [
            open_socket(&a, &format!("UDP socket 127.0.0.1:{pa} (unconnected)")),
            open_socket(
                &b,
                &format!("UDP socket 127.0.0.1:{pb} -> 127.0.0.1:{pa} (connected)")
            ),
        ]
    );
}

#[test]
fn udp_v6() {
    let _g = lock();
    let _dir = setup();
    let Ok(s) = UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIPPED udp_v6: IPv6 loopback unavailable");
        return;
    };
    let port = s.local_addr().unwrap().port();
    assert_eq!(
        messages(),
        [open_socket(
            &s,
            &format!("UDPv6 socket [::1]:{port} (unconnected)")
        )]
    );
}

#[test]
fn unix_sockets() {
    let _g = lock();
    let (_dir, tmp) = setup();
    let path = tmp.join("x.sock");
    let listener = UnixListener::bind(&path).unwrap();
    assert_eq!(
        messages(),
        [open_socket(
            &listener,
            &format!("Unix socket {} (listening)", path.display())
        )]
    );
    drop(listener);

    let (a, b) = UnixStream::pair().unwrap();
    let dgram_path = tmp.join("d.sock");
    let d = UnixDatagram::bind(&dgram_path).unwrap();
    assert_eq!(
        messages(),
        [
            open_socket(&a, "unnamed Unix socket (connected)"),
            open_socket(&b, "unnamed Unix socket (connected)"),
            open_socket(
                &d,
                &format!(
                    "Unix datagram socket {} (unconnected)",
                    dgram_path.display()
                )
            ),
        ]
    );
}

#[test]
fn eventfd() {
    let _g = lock();
    let _dir = setup();
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    assert_eq!(messages(), [open_other(&fd, "eventfd")]);
}

#[test]
fn epoll() {
    let _g = lock();
    let _dir = setup();
    let fd = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).unwrap();
    assert_eq!(messages(), [open_other(&fd, "epoll")]);
}

#[test]
fn timerfd() {
    let _g = lock();
    let _dir = setup();
    let fd = rustix::time::timerfd_create(
        rustix::time::TimerfdClockId::Monotonic,
        rustix::time::TimerfdFlags::CLOEXEC,
    )
    .unwrap();
    assert_eq!(messages(), [open_other(&fd, "timerfd")]);
}

#[test]
fn signalfd() {
    let _g = lock();
    let _dir = setup();
    let mask = nix::sys::signal::SigSet::empty();
    let fd = nix::sys::signalfd::SignalFd::new(&mask).unwrap();
    assert_eq!(messages(), [open_other(&fd.as_fd(), "signalfd")]);
}

#[test]
fn inotify() {
    let _g = lock();
    let _dir = setup();
    let fd = rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::CLOEXEC).unwrap();
    assert_eq!(messages(), [open_other(&fd, "inotify")]);
}

#[test]
fn memfd() {
    let _g = lock();
    let _dir = setup();
    let fd = rustix::fs::memfd_create("crac-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    assert_eq!(messages(), [open_other(&fd, "/memfd:crac-test (memfd)")]);
}

#[test]
fn open_fds_lists_stdio_too() {
    let _g = lock();
    let _dir = setup();
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let all = crac::open_fds().unwrap();
    assert!(all.iter().any(|f| f.fd() == 0));
    let ours = all.iter().find(|f| f.fd() == fd.as_raw_fd()).unwrap();
    assert_eq!(
        ours.to_string(),
        format!("file descriptor {}: eventfd", fd.as_raw_fd())
    );
}
