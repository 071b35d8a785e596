//! Sockets carried across a checkpoint: the `fds_sock` payload sets them
//! up, checkpoints itself and checks them after `crac restore`; the image
//! records are checked with `crac inspect --json`.

use std::fs;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::util::{alive, checkpointing, crac, wait_gone, Dir, Out};
use std::time::Duration;

const SHORT: Duration = Duration::from_secs(10);

/// Runs `fds_sock MODE ARGS` until it checkpoints itself into `image`.
fn run(mode: &str, args: &[&str], image: &Path) -> Out {
    checkpointing("fds_sock", image).arg(mode).args(args).ok()
}

fn value_after(out: &Out, prefix: &str) -> String {
    out.stdout()
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{}", out.dump()))
}

/// The image's descriptor records, by number.
fn fd_records(image: &Path) -> Vec<serde_json::Value> {
    let out = crac(["inspect", "--json"]).arg(image).ok();
    let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    json["fds"].as_array().cloned().unwrap_or_default()
}

fn record(fds: &[serde_json::Value], fd: u64) -> &serde_json::Value {
    fds.iter()
        .find(|f| f["fd"] == fd)
        .unwrap_or_else(|| panic!("no record of descriptor {fd}: {fds:#?}"))
}

/// Restores `image` and requires `ok_line` from the restored process with
/// the same PID.
fn restore_ok(image: &Path, pid: u32, ok_line: &str) {
    let out = crac(["restore"]).arg(image).ok();
    out.stdout_has(ok_line)
        .stdout_has(&format!("post-restore PID: {pid}\n"));
    wait_gone(pid, SHORT);
}

#[test]
fn socket_pairs_keep_their_queues_both_ways() {
    let d = Dir::new();
    let image = d.join("image");
    let out = run("pairs", &[], &image);
    out.stdout_has("PAIRS LEFT OK");
    let pid = out.checkpointed_pid();
    let fds = fd_records(&image);
    for (fd, ty, buffered) in [
        (40, 1, 4),
        (41, 1, 100_000),
        (46, 1, 4),
        (42, 2, 3),
        (43, 2, 1 + 100 + 3000 + 60_000 + 7),
        (44, 5, 4),
        (45, 5, 19),
    ] {
        let r = record(&fds, fd);
        assert_eq!(r["kind"], "socketpair", "{r:#}");
        assert_eq!(r["values"][1], ty, "{r:#}");
        assert_eq!(r["buffered"], buffered, "{r:#}");
    }
    assert_eq!(record(&fds, 40)["values"][0], record(&fds, 41)["id"]);
    restore_ok(&image, pid, "PAIRS OK");
}

#[test]
fn listening_and_bound_sockets_take_new_connections_at_their_address() {
    let d = Dir::new();
    let image = d.join("image");
    let out = run("listeners", &[d.path().to_str().unwrap()], &image);
    let pid = out.checkpointed_pid();
    let addrs = value_after(&out, "addresses: ");
    let addrs: Vec<&str> = addrs.split(' ').collect();
    let fds = fd_records(&image);
    // family, type, backlog (listeners), options (1 SO_REUSEADDR, 4 IPV6_V6ONLY)
    for (i, fd) in (50..=56).enumerate() {
        let r = record(&fds, fd);
        assert_eq!(r["kind"], "listening socket", "{r:#}");
        assert_eq!(r["name"], addrs[i], "{r:#}");
    }
    assert_eq!(record(&fds, 50)["values"][0], 2);
    assert_eq!(record(&fds, 50)["values"][3], 1);
    assert_eq!(record(&fds, 51)["values"], serde_json::json!([10, 1, 7, 4]));
    assert_eq!(record(&fds, 52)["values"], serde_json::json!([2, 2, 0, 0]));
    assert_eq!(record(&fds, 53)["values"][0], 10);
    assert_eq!(record(&fds, 53)["values"][1], 2);
    assert_eq!(record(&fds, 56)["values"], serde_json::json!([1, 2, 0, 0]));
    // A relative path is recorded (and bound again) as an absolute one.
    let rel = d.join("rel.sock");
    assert_eq!(record(&fds, 57)["name"], rel.to_str().unwrap());
    // The Unix socket files are still there (stale): the restore replaces them.
    assert!(d.join("listen.sock").exists() && d.join("dgram.sock").exists());
    restore_ok(&image, pid, "LISTENERS OK");
}

#[test]
fn an_address_in_use_stops_the_restore_before_the_process_runs() {
    let d = Dir::new();
    let image = d.join("image");
    let out = run("tcp-port", &[], &image);
    let pid = out.checkpointed_pid();
    let port = value_after(&out, "port: ");
    let taken = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    let problem =
        format!("the address 127.0.0.1:{port} of descriptor 50 (listening TCP socket) is in use");
    let out = crac(["restore"]).arg(&image).fails_with(1);
    out.stderr_has(&format!("error: cannot restore {}", image.display()))
        .stderr_has(&problem);
    assert!(out.stdout().is_empty(), "{}", out.dump());
    assert!(!alive(pid), "{}", out.dump());
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has("restore     NOT possible here")
        .stdout_has(&problem);
    // Once the port is free again the same image restores and listens.
    drop(taken);
    restore_ok(&image, pid, "TCP-PORT OK");
}

#[test]
fn a_unix_path_taken_at_restore_stops_it_a_stale_socket_file_does_not() {
    let d = Dir::new();
    let image = d.join("image");
    let path = d.join("s.sock");
    let out = run("unix-path", &[d.path().to_str().unwrap()], &image);
    let pid = out.checkpointed_pid();
    let name = path.display();
    // Someone else listens at the path.
    fs::remove_file(&path).unwrap();
    let taken = UnixListener::bind(&path).unwrap();
    let out = crac(["restore"]).arg(&image).fails_with(1);
    out.stderr_has(&format!(
        "the address {name} of descriptor 50 (listening Unix socket) is in use: another socket \
         listens there"
    ));
    assert!(!alive(pid), "{}", out.dump());
    drop(taken);
    // A regular file at the path.
    fs::remove_file(&path).unwrap();
    fs::write(&path, "not a socket").unwrap();
    crac(["restore"])
        .arg(&image)
        .fails_with(1)
        .stderr_has(&format!(
            "the address {name} of descriptor 50 (listening Unix socket) is taken by a file \
             that is not a socket"
        ));
    assert_eq!(fs::read_to_string(&path).unwrap(), "not a socket");
    // Free again (the listener's socket file is stale): restored, it accepts.
    fs::remove_file(&path).unwrap();
    drop(UnixListener::bind(&path).unwrap());
    restore_ok(&image, pid, "UNIX-PATH OK");
}

#[test]
fn a_connection_with_the_close_policy_comes_back_closed() {
    let d = Dir::new();
    let image = d.join("image");
    let out = run("close", &[], &image);
    let pid = out.checkpointed_pid();
    let fds = fd_records(&image);
    for fd in [60, 61] {
        let r = record(&fds, fd);
        assert_eq!(r["kind"], "closed by policy", "{r:#}");
        let name = r["name"].as_str().unwrap();
        assert!(
            name.starts_with("tcp socket 127.0.0.1:") && name.contains(" -> 127.0.0.1:"),
            "{r:#}"
        );
    }
    assert_eq!(record(&fds, 62)["kind"], "listening socket");
    restore_ok(&image, pid, "CLOSE OK");
}

#[test]
fn a_descriptor_in_flight_refuses_the_checkpoint_and_the_queue_stays() {
    let d = Dir::new();
    let image = d.join("image");
    let out = run("scm", &[], &image);
    out.stdout_has("SCM REFUSED")
        .stdout_has("cannot carry a socket pair: descriptors are in flight (SCM_RIGHTS): EBADMSG");
    assert!(!image.exists(), "{}", d.listing());
}
