//! Async Rust services checkpointed unchanged: the `axum_service` payload
//! (a `#[tokio::main]` axum server with tokio's signal and time drivers,
//! `crac::init()` its only crac line) is checkpointed while it serves,
//! restored on the same port with its warm table and counters, checkpointed
//! again, and shut down gracefully with SIGINT through `crac restore`.
//!
//! The client is a plain `std::net::TcpStream` speaking HTTP/1.1 with
//! `Connection: close`, so no connection is left open when the process is
//! checkpointed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::util::{crac, crac_exe, payload, wait_gone, Dir, Service};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);
const NAME: &str = "axum_service";

/// `GET path` on 127.0.0.1:`port`; the body of a 200 answer, or why not.
fn get(port: u16, path: &str) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(SHORT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(SHORT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send GET {path}: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read the answer to GET {path}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP header in {answer:?}"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(format!("GET {path}: {head}"));
    }
    Ok(body.to_owned())
}

/// `GET path`, which must succeed.
fn get_ok(service: &Service, port: u16, path: &str) -> String {
    get(port, path).unwrap_or_else(|e| panic!("{e}\n{}\n{}", service.dump(), fd_report(port)))
}

/// The descriptors of the running payload (on `port`), with the interest
/// lists of its epoll instances: tells an engine problem (a
/// descriptor missing or not the same after restore) from a payload one.
fn fd_report(port: u16) -> String {
    let Some(pid) = pid_of_payload(port) else {
        return format!("no axum_service process listens on port {port}");
    };
    let mut out = format!("descriptors of process {pid}:\n");
    let dir = format!("/proc/{pid}/fd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return format!("{dir} cannot be read");
    };
    let mut fds: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    for fd in fds {
        let link = std::fs::read_link(format!("{dir}/{fd}")).unwrap_or_default();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        out.push_str(&format!("  {fd} -> {}\n", link.display()));
        for l in info
            .lines()
            .filter(|l| l.starts_with("tfd:") || l.starts_with("flags:"))
        {
            out.push_str(&format!("       {l}\n"));
        }
    }
    out
}

/// The PID of the `axum_service` process that holds the socket listening
/// on `port` (found through `/proc/net/tcp`).
fn pid_of_payload(port: u16) -> Option<String> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{port:04X}");
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[1].ends_with(&local) && f[3] == "0A").then(|| f[9].to_owned())
    })?;
    let socket = std::path::PathBuf::from(format!("socket:[{inode}]"));
    let exe = payload(NAME);
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_str()?.to_owned();
        name.parse::<u32>().ok()?;
        if std::fs::read_link(e.path().join("exe")).ok()? != exe {
            return None;
        }
        let mut fds = std::fs::read_dir(e.path().join("fd")).ok()?.flatten();
        fds.any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == socket))
            .then_some(name)
    })
}

/// Waits until the service answers on `port`; returns how long that took
/// from `since`.
fn wait_serving(service: &mut Service, port: u16, since: Instant) -> Duration {
    loop {
        if get(port, "/pid").is_ok() {
            return since.elapsed();
        }
        assert!(
            service.is_running() && since.elapsed() < LONG,
            "nothing answers on port {port}\n{}\n{}",
            service.dump(),
            fd_report(port)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The number after `prefix` in the service's output.
fn number_after(service: &Service, prefix: &str) -> String {
    let line = service.wait_for(prefix, LONG);
    let rest = &line[line.find(prefix).unwrap() + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap()
        .to_owned()
}

/// A freshly started service: (service, PID, port, checksum of the warm
/// table as printed, start to serving).
fn start(image: &Path) -> (Service, u32, u16, String, Duration) {
    let t = Instant::now();
    let mut service = Service::crac_run(image, None, NAME, &[]);
    let port: u16 = number_after(&service, "listening on port ")
        .parse()
        .unwrap();
    let checksum = number_after(&service, "(checksum ");
    let took = wait_serving(&mut service, port, t);
    let pid = service.pid();
    assert_eq!(get_ok(&service, port, "/pid"), pid.to_string());
    (service, pid, port, checksum, took)
}

/// `crac restore IMAGE ARGS...` of the service with `pid`, serving again
/// on `port`; returns it and how long from `crac restore` to serving.
fn restore(image: &Path, pid: u32, port: u16, args: &[String]) -> (Service, Duration) {
    let mut cmd = Command::new(crac_exe());
    cmd.arg("restore").arg(image).args(args);
    restored_by(cmd, pid, port)
}

/// Starts `cmd`, which restores the service with `pid`: see [`restore`].
fn restored_by(cmd: Command, pid: u32, port: u16) -> (Service, Duration) {
    let t = Instant::now();
    let mut restored = Service::start(cmd);
    restored.also_end(pid, &payload(NAME));
    let took = wait_serving(&mut restored, port, t);
    assert_eq!(get_ok(&restored, port, "/pid"), pid.to_string());
    (restored, took)
}

/// The restored copy answers `/count` (continuing from `next`) while the
/// tokio interval keeps ticking; returns the next count.
fn serves_while_ticking(service: &Service, port: u16, mut next: u64) -> u64 {
    let t = Instant::now();
    let first: u64 = get_ok(service, port, "/ticks").parse().unwrap();
    for _ in 0..10 {
        assert_eq!(get_ok(service, port, "/count"), next.to_string());
        next += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let ticks: u64 = get_ok(service, port, "/ticks").parse().unwrap();
    // The interval ticks every 50 ms; allow for a slow, shared machine.
    let expected = (t.elapsed().as_millis() / 50 / 4) as u64;
    assert!(
        ticks >= first + expected.max(2),
        "the interval ticked {} times in {:?} (from {first} to {ticks})\n{}",
        ticks - first,
        t.elapsed(),
        service.dump()
    );
    next
}

/// SIGINT to `crac restore`, forwarded to the restored service: it shuts
/// down gracefully having answered `count` requests and exits 0, and so
/// does `crac restore`.
fn interrupt(mut service: Service, pid: u32, count: u64) {
    let n = service.stdout_lines().len();
    service.signal(Signal::INT);
    let status = service.wait_exit(SHORT);
    service.wait_for_after(
        &format!("shut down gracefully after {count} requests"),
        n,
        SHORT,
    );
    assert_eq!(status.code(), Some(0), "{}", service.dump());
    wait_gone(pid, SHORT);
}

/// [`serves_while_ticking`] from `next`, then [`interrupt`] once served.
fn serves_then_interrupt(service: Service, pid: u32, port: u16, next: u64) {
    let next = serves_while_ticking(&service, port, next);
    interrupt(service, pid, next - 1);
}

/// `crac checkpoint PID` of the service: it exits once its image (in `d`)
/// is written, and is gone.
fn checkpoint_from_outside(d: &Dir, mut service: Service, pid: u32) {
    crac(["checkpoint", &pid.to_string()])
        .show_dir(d)
        .ok()
        .stdout_has("the process exited");
    assert!(service.wait_exit(SHORT).success(), "{}", service.dump());
    wait_gone(pid, SHORT);
}

/// Asks the service with `pid` to checkpoint itself (`/checkpoint`) and
/// waits until it has exited after its image was written and is gone;
/// fails at once if the checkpoint failed.
fn self_checkpoint(service: &mut Service, pid: u32, port: u16) {
    assert_eq!(get_ok(service, port, "/checkpoint"), "checkpoint scheduled");
    let t = Instant::now();
    while service.is_running() {
        assert!(
            !service
                .stdout_lines()
                .iter()
                .any(|l| l.contains("self-checkpoint failed")),
            "{}",
            service.dump()
        );
        assert!(t.elapsed() < LONG, "{}", service.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(service.wait_exit(SHORT).success(), "{}", service.dump());
    wait_gone(pid, SHORT);
}

#[test]
fn axum_service_checkpointed_from_outside_restores_twice_warm_on_its_port() {
    let d = Dir::new();
    let (image, image2) = (d.join("image"), d.join("image2"));
    let (service, pid, port, checksum, warm) = start(&image);
    for n in 1..=3 {
        assert_eq!(get_ok(&service, port, "/count"), n.to_string());
    }
    assert_eq!(get_ok(&service, port, "/state"), checksum);
    let ticks: u64 = get_ok(&service, port, "/ticks").parse().unwrap();

    checkpoint_from_outside(&d, service, pid);

    // First restore: warm, same port, counters go on, SIGINT still works.
    let (restored, took) = restore(&image, pid, port, &[]);
    eprintln!("start to serving {warm:?} (warm-up); crac restore to serving {took:?}");
    assert_eq!(get_ok(&restored, port, "/state"), checksum);
    let now: u64 = get_ok(&restored, port, "/ticks").parse().unwrap();
    assert!(now >= ticks, "ticks went back from {ticks} to {now}");
    serves_then_interrupt(restored, pid, port, 4);

    // Second restore of the same image: the same state as the first, and
    // it checkpoints again (into a second image, named by the restore).
    let env = [
        "--env".into(),
        format!("CRAC_CHECKPOINT_TO={}", image2.display()),
    ];
    let (mut restored, took) = restore(&image, pid, port, &env);
    eprintln!("second restore to serving {took:?}");
    assert_eq!(get_ok(&restored, port, "/count"), "4");
    assert_eq!(get_ok(&restored, port, "/state"), checksum);
    crac(["checkpoint", &pid.to_string()])
        .show_dir(&d)
        .ok()
        .stdout_has(&format!(
            "checkpointed process {pid} into {}",
            image2.display()
        ));
    assert!(restored.wait_exit(SHORT).success(), "{}", restored.dump());
    wait_gone(pid, SHORT);

    // The restored process's own image: it goes on from there.
    let (restored, _) = restore(&image2, pid, port, &[]);
    assert_eq!(get_ok(&restored, port, "/state"), checksum);
    serves_then_interrupt(restored, pid, port, 5);
}

#[test]
fn axum_service_checkpoints_itself_from_spawn_blocking() {
    let d = Dir::new();
    let image = d.join("image");
    let (mut service, pid, port, checksum, _) = start(&image);
    for n in 1..=2 {
        assert_eq!(get_ok(&service, port, "/count"), n.to_string());
    }
    self_checkpoint(&mut service, pid, port);

    // Twice from the same image; the second copy checkpoints itself again
    // (into a second image, named by the restore), and that image restores.
    let (restored, _) = restore(&image, pid, port, &[]);
    restored.wait_for("self-checkpoint: restored", SHORT);
    assert_eq!(get_ok(&restored, port, "/state"), checksum);
    serves_then_interrupt(restored, pid, port, 3);

    let image2 = d.join("image2");
    let env = [
        "--env".into(),
        format!("CRAC_CHECKPOINT_TO={}", image2.display()),
    ];
    let (mut restored, _) = restore(&image, pid, port, &env);
    restored.wait_for("self-checkpoint: restored", SHORT);
    let next = serves_while_ticking(&restored, port, 3);
    self_checkpoint(&mut restored, pid, port);

    let (restored, _) = restore(&image2, pid, port, &[]);
    restored.wait_for("self-checkpoint: restored", SHORT);
    assert_eq!(get_ok(&restored, port, "/state"), checksum);
    serves_then_interrupt(restored, pid, port, next);
}

#[test]
fn axum_service_left_running_by_a_checkpoint_serves_on_and_its_image_restores() {
    let d = Dir::new();
    let image = d.join("image");
    let (service, pid, port, checksum, _) = start(&image);
    assert_eq!(get_ok(&service, port, "/count"), "1");
    crac(["checkpoint", &pid.to_string(), "--leave-running"])
        .show_dir(&d)
        .ok()
        .stdout_has("the process keeps running");
    // Capturing the descriptors changed nothing: the original serves on,
    // its timer ticks, and SIGINT still reaches its signal driver.
    assert_eq!(get_ok(&service, port, "/state"), checksum);
    serves_then_interrupt(service, pid, port, 2);

    // Eagerly this time: every page in before it runs.
    let (restored, _) = restore(&image, pid, port, &["--eager".into()]);
    serves_then_interrupt(restored, pid, port, 2);

    // CRaC's -XX:CRaCRestoreFrom: the program itself, started with
    // CRAC_RESTORE_FROM, restores the image from its `crac::init()` and
    // forwards SIGINT to the restored copy.
    let mut cmd = Command::new(payload(NAME));
    cmd.env("CRAC_RESTORE_FROM", &image)
        .env_remove("CRAC_CHECKPOINT_TO")
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS");
    let (restored, _) = restored_by(cmd, pid, port);
    assert_eq!(get_ok(&restored, port, "/state"), checksum);
    serves_then_interrupt(restored, pid, port, 2);
}

/// An HTTP/1.1 client that keeps its connection open between requests.
struct KeepAlive {
    stream: TcpStream,
}

impl KeepAlive {
    fn connect(port: u16) -> KeepAlive {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(SHORT)).unwrap();
        KeepAlive { stream }
    }

    /// `GET path` on the open connection; the body (status 200 required).
    fn get(&mut self, path: &str) -> String {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).expect("read the header");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("read the body");
        String::from_utf8(body).unwrap()
    }
}

#[test]
fn an_open_client_connection_refuses_the_checkpoint_and_the_service_goes_on() {
    let d = Dir::new();
    let image = d.join("image");
    let (service, pid, port, _, _) = start(&image);
    let mut client = KeepAlive::connect(port);
    assert_eq!(client.get("/count"), "1");
    let client_port = client.stream.local_addr().unwrap().port();
    // The server's end of the idle keep-alive connection is an established
    // TCP socket, which the engine does not carry by default.
    crac(["checkpoint", &pid.to_string()])
        .show_dir(&d)
        .fails_with(1)
        .stderr_has(&format!(
            "process {pid} was not checkpointed and goes on running"
        ))
        .stderr_has(&format!(
            "TCP socket 127.0.0.1:{port} -> 127.0.0.1:{client_port} (established)"
        ));
    assert!(!image.exists(), "{}", d.listing());
    // Both the open connection and new ones are served on.
    assert_eq!(client.get("/count"), "2");
    assert_eq!(get_ok(&service, port, "/count"), "3");
    // Closed, it no longer stands in the way.
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    checkpoint_from_outside(&d, service, pid);
    let (restored, _) = restore(&image, pid, port, &[]);
    assert_eq!(get_ok(&restored, port, "/count"), "4");
    interrupt(restored, pid, 4);
}

#[test]
fn sigint_shuts_the_axum_service_down_gracefully_before_any_checkpoint() {
    // The same check as on a restored copy, on the original process, so a
    // failure after restore is the engine's and not the payload's.
    let d = Dir::new();
    let (mut service, _, port, _, _) = start(&d.join("image"));
    assert_eq!(get_ok(&service, port, "/count"), "1");
    service.signal(Signal::INT);
    let status = service.wait_exit(SHORT);
    service.wait_for("shut down gracefully after 1 requests", SHORT);
    assert_eq!(status.code(), Some(0), "{}", service.dump());
}

#[test]
fn checkpoints_left_running_under_load_never_disturb_the_clients() {
    let d = Dir::new();
    let image = d.join("image");
    let (mut service, pid, port, _, _) = start(&image);
    // A client asks for /count back to back: every answer must come, one
    // more than the last.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut last = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && last < 10_000 {
                match get(port, "/count").map(|b| b.parse::<u64>()) {
                    Ok(Ok(n)) if n == last + 1 => last = n,
                    other => return Err(format!("after {last}: {other:?}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(last)
        })
    };
    // A connection open at the check refuses a checkpoint (the process
    // goes on); the others go through.
    let (mut made, mut refused) = (0, 0);
    let t = Instant::now();
    while made < 3 && t.elapsed() < LONG {
        let out = crac(["checkpoint", &pid.to_string(), "--leave-running"]).output();
        if out.output.status.success() {
            out.stdout_has("the process keeps running");
            made += 1;
        } else if !out.stderr().contains("is busy with another checkpoint") {
            // (Busy: the last one is still finishing in the process.)
            out.stderr_has(&format!(
                "process {pid} was not checkpointed and goes on running"
            ));
            refused += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let count = client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", service.dump()));
    eprintln!("{made} checkpoints made, {refused} refused, {count} requests served");
    assert_eq!(made, 3, "{}", service.dump());
    assert!(count > 0);
    let n = service.stdout_lines().len();
    service.signal(Signal::INT);
    assert_eq!(service.wait_exit(SHORT).code(), Some(0));
    service.wait_for_after(
        &format!("shut down gracefully after {count} requests"),
        n,
        SHORT,
    );
    wait_gone(pid, SHORT);

    // The last image restores, its count between the start and the end.
    let (restored, _) = restore(&image, pid, port, &[]);
    let got: u64 = get_ok(&restored, port, "/count").parse().unwrap();
    assert!((1..=count + 1).contains(&got), "{got} after {count}");
    interrupt(restored, pid, got);
}

#[test]
fn an_open_client_connection_under_a_close_policy_comes_back_closed() {
    let d = Dir::new();
    let image = d.join("image");
    let rules = d.join("policies.yaml");
    std::fs::write(&rules, "# none yet\n").unwrap();
    let t = Instant::now();
    let mut cmd = Command::new(crac_exe());
    cmd.arg("run")
        .arg("--checkpoint-to")
        .arg(&image)
        .arg("--")
        .arg(payload(NAME))
        .env("CRAC_RESOURCE_POLICIES", &rules)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS");
    let mut service = Service::start(cmd);
    let port: u16 = number_after(&service, "listening on port ")
        .parse()
        .unwrap();
    wait_serving(&mut service, port, t);
    let pid = service.pid();
    let mut client = KeepAlive::connect(port);
    assert_eq!(client.get("/count"), "1");
    let client_port = client.stream.local_addr().unwrap().port();
    std::fs::write(
        &rules,
        format!("type: socket\nremotePort: {client_port}\naction: close\n"),
    )
    .unwrap();
    checkpoint_from_outside(&d, service, pid);
    // The client sees its connection end with the original process.
    let mut rest = Vec::new();
    assert_eq!(client.stream.read_to_end(&mut rest).unwrap(), 0);

    let (restored, _) = restore(&image, pid, port, &[]);
    // The server's end came back closed: hyper sees end-of-file and drops
    // it, and the service serves new connections.
    let next = serves_while_ticking(&restored, port, 2);
    let t = Instant::now();
    loop {
        let report = fd_report(port);
        let sockets = report.matches("socket:[").count();
        // Listener, control socket, the signal pair (3 descriptors).
        if sockets <= 5 {
            break;
        }
        assert!(t.elapsed() < SHORT, "{report}");
        std::thread::sleep(Duration::from_millis(50));
    }
    interrupt(restored, pid, next - 1);
}
