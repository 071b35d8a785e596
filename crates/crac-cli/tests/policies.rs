//! Resource policies end to end with the native engine: the `policies`
//! payload checkpoints itself under `CRAC_RESOURCE_POLICIES` and checks the
//! restored process.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::util::{checkpointing, crac_exe, payload, wait_gone, Dir, Service};

const LONG: Duration = Duration::from_secs(60);

/// Runs `policies MODE` with `rules` (if any) as its policies file.
fn run(d: &Dir, mode: &str, rules: Option<&str>) -> crate::util::Out {
    let mut cmd = checkpointing("policies", &d.join("image"));
    cmd.arg(mode).env_remove("CRAC_RESOURCE_POLICIES");
    if let Some(rules) = rules {
        let file = d.join("policies.yaml");
        std::fs::write(&file, rules).unwrap();
        cmd.env("CRAC_RESOURCE_POLICIES", &file);
    }
    cmd.show_dir(d).output()
}

/// `crac restore` of DIR/image with `rules` in the policies file DIR/NAME
/// that its environment names; returns that file and the restore's output.
fn restore_under(d: &Dir, name: &str, rules: &str) -> (PathBuf, crate::util::Out) {
    let file = d.join(name);
    std::fs::write(&file, rules).unwrap();
    let restored = crate::util::crac(["restore", "--env"])
        .arg(format!("CRAC_RESOURCE_POLICIES={}", file.display()))
        .arg(d.join("image"))
        .ok();
    (file, restored)
}

/// The numbers after `key` on the line starting with `key`.
fn numbers(out: &crate::util::Out, key: &str) -> Vec<u32> {
    out.stdout()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no line {key:?}\n{}", out.dump()))
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn an_established_connection_is_refused_by_default() {
    let d = Dir::new();
    let out = run(&d, "refused", None);
    out.stdout_has("REFUSED OK");
    // listener 127.0.0.1:P client 127.0.0.1:C fds L CL S
    let n = numbers(&out, "listener ");
    let (port, cport, client_fd, server_fd) = (n[4], n[9], n[11], n[12]);
    let hint = "close it in before_checkpoint or add a resource policy (type: socket, \
                action: close)";
    out.stdout_has(&format!(
        "file descriptor {client_fd} is open: TCP socket 127.0.0.1:{cport} -> \
         127.0.0.1:{port} (established); {hint}"
    ))
    .stdout_has(&format!(
        "file descriptor {server_fd} is open: TCP socket 127.0.0.1:{port} -> \
         127.0.0.1:{cport} (established); {hint}"
    ));
    assert!(!d.join("image").exists(), "{}", d.listing());
}

#[test]
fn close_policy_checkpoints_a_service_with_a_client_connection() {
    let d = Dir::new();
    let rules = "# connections to ourselves are dropped\n\
                 type: socket\nfamily: ipv4\nremoteAddress: 127.0.0.1\naction: close\n";
    let out = run(&d, "close", Some(rules));
    assert!(out.output.status.success(), "{}", out.dump());
    let pid = out.checkpointed_pid();
    let port = numbers(&out, "listener ")[4];
    // The rule's warning names the connection and the rule.
    assert!(
        out.stderr().contains(&format!(
            "is closed in the restored process (resource policy on lines 2-5 of {}",
            d.join("policies.yaml").display()
        )),
        "{}",
        out.dump()
    );

    let mut restore = Command::new(crac_exe());
    restore.arg("restore").arg(d.join("image"));
    let mut restored = Service::start(restore);
    restored.also_end(pid, &payload("policies"));
    restored.wait_for("old connections closed", LONG);
    restored.wait_for(&format!("listening again on {port}"), LONG);
    let mut conn = TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    conn.write_all(b"ping\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    assert_eq!(line, "pong\n", "{}", restored.dump());
    restored.wait_for("CLOSE OK", LONG);
    assert!(restored.wait_exit(LONG).success(), "{}", restored.dump());
}

#[test]
fn ignore_policy_leaves_dev_null_for_a_descriptor_no_engine_carries() {
    let d = Dir::new();
    let out = run(
        &d,
        "ignore",
        Some("type: filedescriptor\nvalue: 50\naction: ignore\nwarn: false\n"),
    );
    assert!(out.output.status.success(), "{}", out.dump());
    assert!(
        !out.stderr().contains("warning"),
        "warn: false\n{}",
        out.dump()
    );
    out.checkpointed_pid();
    let restored = crate::util::crac(["restore"]).arg(d.join("image")).ok();
    restored.stdout_has("IGNORE OK");
}

#[test]
fn error_policy_refuses_a_descriptor_the_engine_carries() {
    let d = Dir::new();
    let out = run(&d, "error", Some("type: pipe\naction: error\n"));
    out.stdout_has("ERROR OK");
    let fds = numbers(&out, "pipe fds ");
    let policies = d.join("policies.yaml");
    for fd in fds {
        out.stdout_has(&format!("file descriptor {fd} is open: pipe:["))
            .stdout_has(&format!(
                "(pipe); the resource policy on lines 1-2 of {} refuses it (action: error)",
                policies.display()
            ));
    }
    assert!(!d.join("image").exists(), "{}", d.listing());
}

#[test]
fn a_restore_applies_the_policies_file_its_environment_names() {
    let d = Dir::new();
    // At the checkpoint: a rule that closes the pipe, and says so.
    let out = run(&d, "reread", Some("type: pipe\naction: close\n"));
    assert!(out.output.status.success(), "{}", out.dump());
    let pid = out.checkpointed_pid();
    let fds = numbers(&out, "pipe fds ");
    for fd in &fds {
        out.stderr_has(&format!("crac: warning: file descriptor {fd} (pipe:["))
            .stderr_has(&format!(
                "(pipe)) is closed in the restored process (resource policy on lines 1-2 of \
                 {}, action: close; add 'warn: false' to silence)",
                d.join("policies.yaml").display()
            ));
    }

    // Another file: its rule refuses the pipe at the next checkpoint.
    let (_, restored) = restore_under(&d, "refuse.yaml", "type: pipe\naction: error\n");
    restored.stdout_has("REREAD OK").stdout_has(&format!(
        "second checkpoint: checkpoint failed with 2 problems: file descriptor {} is open: \
         pipe:[",
        fds[0]
    ));
    restored.stdout_has(&format!(
        "refuses it (action: error); file descriptor {} is open: pipe:[",
        fds[1]
    ));
    wait_gone(pid, Duration::from_secs(10));

    // An invalid one is reported right after the restore, and fails the
    // next checkpoint.
    let (invalid, restored) = restore_under(&d, "invalid.yaml", "type: pipe\n");
    let problem = format!(
        "invalid rule in policies file {} on line 1: no 'action'",
        invalid.display()
    );
    restored
        .stderr_has(&format!(
            "crac: warning: {problem}; the next checkpoint will fail"
        ))
        .stdout_has(&format!("second checkpoint: checkpoint failed: {problem}"));
}
