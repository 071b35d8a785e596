//! The Python module `crac` (bindings/python), built into a wheel with
//! maturin and installed into target/pyenv by scripts/python-wheel.sh, on
//! real python3 processes: a program using the module under `crac run`
//! (libcrac preloaded: the module uses it) and on its own (the module's
//! own crac), hooks raising before a checkpoint and after a restore,
//! descriptors the engine cannot carry, and an unmodified script
//! checkpointed from outside. Without python3, venv or (on first use) PyPI
//! for maturin, the tests fail saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::util::{self, crac, wait_gone, Dir, Service, TestCommand};

/// The answer to SIGUSR1 once the script checked its data.
const CHECKED: &str = "ok, 1000000 numbers, checksum ";
const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);

/// The virtual environment's python3 with the module installed (built
/// once per test run).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = util::repo_root().join("scripts/python-wheel.sh");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): the Python tests need python3 with venv, and PyPI the first time (maturin)\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn example(name: &str) -> PathBuf {
    util::repo_root().join("examples/python").join(name)
}

/// `crac run --checkpoint-to IMAGE -- python3 ARGS...`.
fn crac_run(image: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(util::crac_exe());
    cmd.args(["run", "--checkpoint-to"])
        .arg(image)
        .arg("--")
        .arg(python())
        .args(args);
    cmd.env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM")
        .env_remove("LD_PRELOAD");
    cmd
}

/// `python3 ARGS...` with `CRAC_CHECKPOINT_TO=IMAGE` and no `crac run`: the
/// module's own crac runs.
fn python_own(image: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.args(args).env("CRAC_CHECKPOINT_TO", image);
    cmd.env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM")
        .env_remove("LD_PRELOAD");
    cmd
}

/// The two runtimes a program using the module can have, as
/// `crac.runtime()` names them: libcrac preloaded by `crac run`, or the
/// module's own crac.
const RUNTIMES: [&str; 2] = ["libcrac", "module"];

/// `python3 ARGS...` checkpointing into `image` with `runtime`.
fn python_with(runtime: &str, image: &Path, args: &[&str]) -> Command {
    match runtime {
        "libcrac" => crac_run(image, args),
        _ => python_own(image, args),
    }
}

fn lines(out: &util::Out) -> Vec<String> {
    out.stdout().lines().map(str::to_owned).collect()
}

/// The app builds a dict of 2 million entries, registers hooks with the
/// decorators and checkpoints itself under `crac run` (through the
/// preloaded libcrac); restored twice from the image, same PID, hooks in
/// order, dict intact. Prints start and restore times (not asserted).
#[test]
fn python_app_checkpoints_itself_and_restores_twice() {
    let d = Dir::new();
    let image = d.join("image");
    let app = example("app.py");
    let out = TestCommand::from(crac_run(&image, &[app.to_str().unwrap(), "2000000"]))
        .show_dir(&d)
        .ok();
    let got = lines(&out);
    assert_eq!(got.len(), 4, "{}", out.dump());
    assert!(
        got[0].starts_with("built 2000000 entries in ") && got[0].ends_with(", runtime libcrac"),
        "{}",
        out.dump()
    );
    let checksum = got[0].split(", ").nth(1).unwrap().to_owned();
    let pid = util::number_after(&got[1], "pre-checkpoint PID ").expect("PID");
    assert_eq!(
        got[2..],
        ["before second", "before first"],
        "{}",
        out.dump()
    );
    wait_gone(pid, SHORT);

    for _ in 0..2 {
        let out = crac(["restore"]).arg(&image).show_dir(&d).ok();
        let got = lines(&out);
        assert_eq!(got.len(), 4, "{}", out.dump());
        assert_eq!(got[..2], ["after first", "after second"], "{}", out.dump());
        eprintln!("{}", got[2]);
        assert!(got[2].starts_with("start "), "{}", out.dump());
        assert_eq!(
            got[3],
            format!("restored PID {pid}, restores 1, dict intact, {checksum}"),
            "{}",
            out.dump()
        );
        wait_gone(pid, SHORT);
    }
}

/// Hooks raising exceptions: one `crac.CheckpointError` lists both, the
/// program goes on; with the preloaded libcrac and with the module's own
/// crac (CRAC_CHECKPOINT_TO set, no `crac run`).
#[test]
fn python_hooks_raising_fail_the_checkpoint_with_one_error() {
    let d = Dir::new();
    let app = example("app.py");
    for runtime in RUNTIMES {
        let image = d.join(runtime);
        let cmd = python_with(runtime, &image, &[app.to_str().unwrap(), "1000", "fail"]);
        let out = TestCommand::from(cmd).show_dir(&d).ok();
        let got = lines(&out);
        assert_eq!(got.len(), 7, "{runtime}: {}", out.dump());
        assert!(
            got[0].ends_with(&format!("runtime {runtime}")),
            "{}",
            out.dump()
        );
        // Before hooks last registered first, after hooks in order, also
        // after a failed checkpoint; then the one error.
        assert_eq!(
            got[1..5],
            [
                "before second",
                "before first",
                "after first",
                "after second"
            ],
            "{}",
            out.dump()
        );
        assert_eq!(
            got[5],
            "CheckpointError: checkpoint failed with 2 problems: \
             resource Quiet failed in before_checkpoint: RuntimeError: also broken; \
             resource Failing failed in before_checkpoint: ValueError: cannot checkpoint: busy",
            "{runtime}: {}",
            out.dump()
        );
        assert!(got[6].starts_with("goes on, PID "), "{}", out.dump());
    }
}

/// After-restore hooks raising in the restored process: every after hook
/// runs, in registration order, then one `crac.RestoreError` lists both
/// failures; same PID, the program goes on with its data. With both
/// runtimes.
#[test]
fn python_after_hooks_raising_give_the_restored_process_one_restore_error() {
    let d = Dir::new();
    let app = example("app.py");
    for runtime in RUNTIMES {
        let image = d.join(runtime);
        let cmd = python_with(
            runtime,
            &image,
            &[app.to_str().unwrap(), "1000", "fail-after"],
        );
        let out = TestCommand::from(cmd).show_dir(&d).ok();
        let got = lines(&out);
        assert_eq!(got.len(), 4, "{runtime}: {}", out.dump());
        assert!(
            got[0].ends_with(&format!("runtime {runtime}")),
            "{}",
            out.dump()
        );
        let pid = util::number_after(&got[1], "pre-checkpoint PID ").expect("PID");
        // No after hook ran in the checkpointed process.
        assert_eq!(
            got[2..],
            ["before second", "before first"],
            "{runtime}: {}",
            out.dump()
        );
        wait_gone(pid, SHORT);

        let out = crac(["restore"]).arg(&image).show_dir(&d).ok();
        assert_eq!(
            lines(&out),
            [
                "after first",
                "after second",
                "after Reconnect",
                "after third",
                "RestoreError: restore failed with 2 problems: \
                 resource Reconnect failed in after_restore: ConnectionError: database unreachable; \
                 resource third_after failed in after_restore: KeyError: 'session'",
                &format!("goes on, PID {pid}, restores 1, dict intact"),
            ],
            "{runtime}: {}",
            out.dump()
        );
        wait_gone(pid, SHORT);
    }
}

/// The number after `name` in a line of `, `-separated fields.
fn field(line: &str, name: &str) -> u32 {
    line.split(", ")
        .find_map(|f| f.strip_prefix(name))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {name:?} in {line:?}"))
}

/// A deleted file and a connected TCP socket held by the Python program:
/// `crac.checkpoint_restore()` raises one `crac.CheckpointError` naming
/// both as the Rust API does (number, what it is, the hint), the program
/// goes on; with both closed, the checkpoint succeeds and the image
/// restores. With both runtimes.
#[test]
fn python_open_file_and_tcp_connection_fail_the_checkpoint_until_closed() {
    let d = Dir::new();
    let script = example("open_fds.py");
    for runtime in RUNTIMES {
        // The peer: the connection completes in the listen queue, so it
        // need not be accepted.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let image = d.join(runtime);
        let file = d.join(&format!("scratch-{runtime}"));
        let cmd = python_with(
            runtime,
            &image,
            &[
                script.to_str().unwrap(),
                &port.to_string(),
                file.to_str().unwrap(),
            ],
        );
        let out = TestCommand::from(cmd).show_dir(&d).ok();
        let got = lines(&out);
        assert_eq!(got.len(), 3, "{runtime}: {}", out.dump());
        assert!(
            got[0].starts_with(&format!("runtime {runtime}, ")),
            "{}",
            out.dump()
        );
        let (file_fd, sock_fd, local) = (
            field(&got[0], "file fd "),
            field(&got[0], "socket fd "),
            field(&got[0], "local port "),
        );
        let hint = |kind| {
            format!("close it in before_checkpoint or add a resource policy (type: {kind}, action: close)")
        };
        assert_eq!(
            got[1],
            format!(
                "CheckpointError: checkpoint failed with 2 problems: \
                 file descriptor {file_fd} is open: {} (regular file, deleted); {}; \
                 file descriptor {sock_fd} is open: TCP socket 127.0.0.1:{local} -> \
                 127.0.0.1:{port} (established); {}",
                file.display(),
                hint("file"),
                hint("socket")
            ),
            "{runtime}: {}",
            out.dump()
        );
        let pid = util::number_after(&got[2], "goes on, PID ").expect("PID");
        wait_gone(pid, SHORT);

        let out = crac(["restore"]).arg(&image).show_dir(&d).ok();
        assert_eq!(
            lines(&out),
            [format!("restored PID {pid}, restores 1")],
            "{runtime}: {}",
            out.dump()
        );
        wait_gone(pid, SHORT);
        drop(listener);
    }
}

/// A script that does not import crac, under `crac run` (libcrac preloaded
/// into python3), checkpointed from outside with `crac checkpoint PID` and
/// restored twice with the same PID and its data intact.
#[test]
fn unmodified_python_script_is_checkpointed_from_outside() {
    let d = Dir::new();
    let image = d.join("image");
    let script = example("plain.py");
    let exe = std::fs::canonicalize(python()).unwrap();
    let service = Service::start(crac_run(&image, &[script.to_str().unwrap()]));
    let pid = service.pid();
    service.wait_for(&format!("ready PID: {pid}"), LONG);
    let before = util::ask_check(&service, pid, CHECKED, LONG);

    let rounds = util::Rounds {
        dir: &d,
        image: &image,
        exe: &exe,
        checked: CHECKED,
        exits_cleanly: false,
    };
    rounds.run(service, &before, LONG);
}
