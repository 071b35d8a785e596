//! The control channel `@crac/PID` with hostile users (issue 10, cases 3
//! and 4): another user who binds the name first is not believed, and one
//! who connects and sends nothing neither blocks the owner's checkpoint nor
//! fills the process's standard error.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, crac, payload, Dir, Service};

/// Every attack must be over, with the safe outcome, within this.
const QUICK: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(60);

/// `exe` run as user nobody (uid 65534, no capabilities) through
/// `setpriv`, from a copy nobody may execute; keep the `Dir` alive.
pub fn as_nobody(exe: &Path) -> (Dir, Command) {
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "this test needs setpriv (util-linux)"
    );
    let bin = Dir::new();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = bin.join(exe.file_name().unwrap().to_str().unwrap());
    fs::copy(exe, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy);
    (bin, cmd)
}

/// Waits for a line of standard error containing `text`.
fn wait_for_stderr(service: &Service, text: &str, timeout: Duration) {
    let t = Instant::now();
    while !service.stderr_lines().iter().any(|l| l.contains(text)) {
        assert!(
            t.elapsed() < timeout,
            "no {text:?} on standard error\n{}",
            service.dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Case 3: another user binds `@crac/PID` before the process does. Root's
/// `crac checkpoint PID` used to print "checkpointed process ..." and exit
/// 0 on the squatter's word; now it checks who serves the socket and fails
/// with the reason, at once, and the process is unaffected.
#[test]
fn a_control_socket_bound_by_another_user_first_is_not_believed() {
    let d = Dir::new();
    let image = d.join("image");
    let go = d.join("go");
    // The process waits for `go` before it becomes `crac run` and then the
    // service (same PID), so that the squatter can take its name first. The
    // shell is not started by `crac run`, which would preload libcrac into
    // it (it contains no crac) and so have it serve the name itself.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"while [ ! -e "$1" ]; do sleep 0.02; done; shift; exec "$@""#)
        .arg("sh")
        .arg(&go)
        .arg(util::crac_exe())
        .arg("run")
        .arg("--checkpoint-to")
        .arg(&image)
        .arg("--")
        .arg(payload("warmup"))
        .args(["--mib", "4"])
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM");
    let mut target = Service::start(cmd);
    let pid = target.pid();

    let (_bin, mut squat) = as_nobody(&payload("control_peer"));
    squat.args(["squat", &pid.to_string()]);
    let squatter = Service::start(squat);
    let squatter_pid = squatter.pid();
    squatter.wait_for("bound", QUICK);
    fs::write(&go, "").unwrap();
    target.wait_for("serving", LONG);
    // The process says that its name is taken.
    wait_for_stderr(
        &target,
        &format!("crac: the control socket name @crac/{pid} is taken by another process"),
        QUICK,
    );

    let t = Instant::now();
    let out = crac(["checkpoint", &pid.to_string()]).fails_with(1);
    assert!(t.elapsed() < QUICK, "took {:?}", t.elapsed());
    assert_eq!(
        out.stderr(),
        format!(
            "error: the control socket @crac/{pid} is served by process {squatter_pid} uid \
             65534, not by the target (process {pid} runs as uid 0); nothing was checkpointed\n"
        ),
        "{}",
        out.dump()
    );
    assert!(!out.stdout().contains("checkpointed"), "{}", out.dump());
    assert!(target.is_running(), "{}", target.dump());
    assert!(!image.exists());
    assert!(!Path::new("/tmp/crac-squatted").exists());

    // Once the squatter is gone the process takes its name, and the owner's
    // checkpoint works.
    drop(squatter);
    let t = Instant::now();
    loop {
        let out = crac(["checkpoint", &pid.to_string(), "--leave-running"]).output();
        if out.output.status.success() {
            out.stdout_has(&format!(
                "checkpointed process {pid} into {}",
                image.display()
            ));
            break;
        }
        out.stderr_has(&format!(
            "error: process {pid} is busy with another checkpoint"
        ));
        assert!(t.elapsed() < QUICK, "{}\n{}", out.dump(), target.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(image.join("meta.crac").exists());
    assert!(target.is_running(), "{}", target.dump());
}

/// Case 4: another user keeps connecting to `@crac/PID` and sends nothing
/// (and a caller of the owner's uid holds connections open too). The
/// process used to stop listening while it waited 5 s for each request, so
/// the owner's checkpoint was "busy", and it logged every attempt. Now the
/// stranger is dropped at once, a silent caller only holds a thread of its
/// own, the owner's checkpoint works at once, and the stranger's refusals
/// make one line on standard error.
#[test]
fn silent_connections_neither_block_the_owner_nor_flood_the_log() {
    let d = Dir::new();
    let image = d.join("image");
    let mut target = Service::crac_run(&image, None, "warmup", &["--mib", "4"]);
    target.wait_for("serving", LONG);
    let pid = target.pid().to_string();

    let (_bin, mut stranger) = as_nobody(&payload("control_peer"));
    stranger.args(["silent", &pid, "16", "4"]);
    let mut stranger = Service::start(stranger);
    stranger.wait_for("connected", QUICK);
    // Let the attack run a little.
    std::thread::sleep(Duration::from_millis(300));
    let checkpoint = |what: &str| {
        let t = Instant::now();
        let out = crac(["checkpoint", &pid, "--leave-running"]).ok();
        assert!(t.elapsed() < QUICK, "{what}: took {:?}", t.elapsed());
        out.stdout_has(&format!(
            "checkpointed process {pid} into {}",
            image.display()
        ))
        .stdout_has("the process keeps running");
        assert!(image.join("meta.crac").exists());
    };
    checkpoint("while another user connects and sends nothing");

    // A silent caller of the owner's own uid holds a thread each, not the
    // channel.
    let mut own = Command::new(payload("control_peer"));
    own.args(["silent", &pid, "2", "3"]);
    let own = Service::start(own);
    own.wait_for("connected", QUICK);
    std::thread::sleep(Duration::from_millis(300));
    checkpoint("while the owner's uid holds two silent connections");

    // The stranger went on connecting all along, and was refused every
    // time: one line on standard error.
    let done = stranger.wait_for("connections ", QUICK + QUICK);
    let made: u64 = done["connections ".len()..].parse().unwrap();
    assert!(made > 100, "{done}");
    let refusals: Vec<String> = target
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("refused a checkpoint request"))
        .collect();
    assert_eq!(refusals.len(), 1, "{}", target.dump());
    assert!(
        refusals[0].contains("running as uid 65534: only uid 0 or root may checkpoint"),
        "{}",
        target.dump()
    );
    assert!(target.is_running(), "{}", target.dump());
    assert!(!stranger.is_running() || stranger.wait_exit(QUICK).success());
}
