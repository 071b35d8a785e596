//! `crac restore --pidns`: copies of one image in PID namespaces of their
//! own, each with the image's PID, at once; clocks that continue from the
//! checkpoint.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;

use crate::util::{self, crac, payload, wait_gone, Dir, Service};

const LONG: Duration = Duration::from_secs(60);

fn restore_pidns(image: &std::path::Path, extra: &[&str]) -> Service {
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("restore").arg("--pidns").args(extra).arg(image);
    Service::start(cmd)
}

/// The only child of process `pid`.
fn child_of(pid: u32) -> u32 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kids: Vec<u32> = text
        .split_whitespace()
        .map(|k| k.parse().unwrap())
        .collect();
    assert_eq!(kids.len(), 1, "children of {pid}: {text}");
    kids[0]
}

#[test]
fn eight_copies_of_one_image_run_at_once_each_with_the_image_pid() {
    let d = Dir::new();
    let image = d.join("image");
    let mut original = Service::crac_run(&image, None, "live", &["4"]);
    original.wait_for("ready", LONG);
    let pid = original.pid();
    crac(["checkpoint", &pid.to_string(), "--leave-running"]).ok();

    // The original holds the PID: a plain restore says so and how else.
    crac(["restore"])
        .arg(&image)
        .fails_with(1)
        .stderr_has(&format!("PID {pid} is taken by process {pid}"))
        .stderr_has("`crac restore --pidns` restores a copy");

    let copies: Vec<Service> = (0..8).map(|_| restore_pidns(&image, &[])).collect();
    for c in &copies {
        c.wait_for("restored", LONG);
        assert!(
            c.stderr_lines()
                .iter()
                .any(|l| l.starts_with(&format!("restored process {pid} "))),
            "{}",
            c.dump()
        );
    }
    // Each checks its memory and reports the image's PID as its own.
    for c in &copies {
        assert_eq!(util::ask_live(c, None)[3], u64::from(pid), "{}", c.dump());
    }
    // The original runs on, unaffected.
    assert!(original.is_running());

    // A copy is checkpointed from outside by the PID it has here.
    let program = child_of(child_of(copies[3].pid()));
    assert_ne!(program, pid);
    crac([
        "checkpoint",
        &program.to_string(),
        "--leave-running",
        "--to",
    ])
    .arg(d.join("copy"))
    .ok()
    .stdout_has(&format!("checkpointed process {program} into"));
    assert!(d.join("copy").join("meta.crac").exists());
    // `crac list` shows the copies by the PIDs they have here.
    let t = std::time::Instant::now();
    for c in &copies {
        let p = child_of(child_of(c.pid()));
        // Each copy's control channel opens on its own thread, soon after.
        loop {
            let list: Vec<serde_json::Value> =
                serde_json::from_str(&crac(["list", "--json"]).ok().stdout()).unwrap();
            if list.iter().any(|e| e["pid"] == p) {
                break;
            }
            assert!(t.elapsed() < LONG, "{p} not in {list:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    for mut c in copies {
        c.signal(Signal::TERM);
        assert_eq!(c.wait_exit(LONG).signal(), Some(15), "{}", c.dump());
    }
    original.signal(Signal::KILL);
    original.wait_exit(LONG);
    wait_gone(pid, LONG);
}

#[test]
fn the_monotonic_clock_of_a_pidns_copy_continues_from_the_checkpoint() {
    let d = Dir::new();
    let image = d.join("image");
    let mut s = Service::crac_run(&image, None, "live", &["4"]);
    s.wait_for("ready", LONG);
    let pid = s.pid();
    let before = util::ask_live(&s, None)[4];
    crac(["checkpoint", &pid.to_string()]).ok();
    s.wait_exit(LONG);
    // Time passes while the image rests.
    std::thread::sleep(Duration::from_secs(3));
    let mut c = restore_pidns(&image, &[]);
    c.wait_for("restored", LONG);
    let after = util::ask_live(&c, None)[4];
    assert!(after > before, "the clock went back: {before} -> {after}");
    assert!(
        after - before < 2_000_000_000,
        "the clock jumped by the {} ms the image rested: {before} -> {after}",
        (after - before) / 1_000_000
    );
    c.signal(Signal::TERM);
    c.wait_exit(LONG);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fetch(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn two_pidns_copies_of_a_service_serve_on_the_ports_their_environments_name() {
    let d = Dir::new();
    let image = d.join("image");
    let port0 = free_port();
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("run")
        .arg("--checkpoint-to")
        .arg(&image)
        .arg("--")
        .arg(payload("portsvc"))
        .env("PORT", port0.to_string())
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS");
    let mut s = Service::start(cmd);
    s.wait_for("ready", LONG);
    let pid = s.pid();
    assert_eq!(fetch(port0), format!("pid {pid} port {port0}\n"));
    crac(["checkpoint", &pid.to_string()]).ok();
    s.wait_exit(LONG);

    let ports = [free_port(), free_port()];
    let copies: Vec<Service> = ports
        .iter()
        .map(|p| restore_pidns(&image, &["--env", &format!("PORT={p}")]))
        .collect();
    for (c, p) in copies.iter().zip(ports) {
        c.wait_for(&format!("serving {p}"), LONG);
    }
    for p in ports {
        assert_eq!(fetch(p), format!("pid {pid} port {p}\n"));
    }
    for mut c in copies {
        c.signal(Signal::TERM);
        c.wait_exit(LONG);
    }
}
