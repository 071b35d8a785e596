//! The pause engine against another user (issue 10, case 2): uid 65534
//! (through `setpriv`) prepares an image directory, plants symlinks or
//! listens on its own `pause.sock`; root's process and root's
//! `crac restore` must refuse, change nothing outside the directory, send no
//! secret and claim no wake. Each attack is over in well under 5 s.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{crac, payload, Dir, Service, TestCommand};

const SHORT: Duration = Duration::from_secs(10);
/// Each attack must be refused within this time.
const ATTACK: Duration = Duration::from_secs(5);
const NOBODY: u32 = 65534;

/// A temporary directory uid 65534 may enter, with a subdirectory `shared`
/// it may create files in (like /tmp).
fn shared_dir() -> (Dir, PathBuf) {
    let d = Dir::new();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = d.join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(NOBODY), Some(NOBODY)).unwrap();
    (d, shared)
}

/// `program ARGS...` as uid/gid 65534 without supplementary groups.
fn as_nobody(program: &Path) -> Command {
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "this test needs setpriv (util-linux)"
    );
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program);
    cmd
}

/// Runs the shell script `script` as uid 65534 with `args` as $1, $2, ...
fn sh_as_nobody(script: &str, args: &[&str]) {
    let mut cmd = TestCommand::new("/usr/bin/setpriv");
    cmd.arg("--reuid=65534")
        .arg("--regid=65534")
        .arg("--clear-groups")
        .arg("/bin/sh")
        .arg("-ec")
        .arg(script)
        .arg("sh");
    for a in args {
        cmd.arg(a);
    }
    cmd.ok();
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// A copy of payload `name` that uid 65534 may run (the build's target
/// directory may be closed to it); keep the `Dir` alive.
fn payload_for_nobody(name: &str) -> (Dir, PathBuf) {
    let bin = Dir::new();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.join(name);
    fs::copy(payload(name), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    (bin, exe)
}

#[test]
fn a_root_process_does_not_pause_into_a_directory_another_user_made() {
    let (d, shared) = shared_dir();
    let target = d.join("root-file");
    fs::write(&target, "original\n").unwrap();
    let image = shared.join("image");
    // The attacker makes the directory and plants symlinks at the names
    // the engine writes (the old temporary name and the pid file).
    sh_as_nobody(
        "mkdir -m 0755 \"$1\"; ln -s \"$2\" \"$1/.pid.tmp\"; ln -s \"$2\" \"$1/pid\"",
        &[path(&image), path(&target)],
    );

    let mut service = super::warmup(&image, Some("pause"), &[]);
    let pid = service.pid();
    let t = Instant::now();
    let out = crac(["checkpoint", &pid.to_string()])
        .show_dir(&d)
        .fails_with(1);
    assert!(t.elapsed() < ATTACK, "took {:?}", t.elapsed());
    out.stderr_has(&format!(
        "error: process {pid} was not checkpointed and goes on running"
    ))
    .stderr_has(&format!(
        "image directory {} belongs to uid 65534, not to uid 0: another user's directory is \
         not used",
        image.display()
    ));
    assert!(!out.stdout().contains("paused"), "{}", out.dump());
    // Nothing outside the directory was written, nothing in it either.
    assert_eq!(fs::read_to_string(&target).unwrap(), "original\n");
    assert!(
        fs::symlink_metadata(image.join("pid")).is_ok_and(|m| m.file_type().is_symlink()),
        "{}",
        d.listing()
    );
    assert!(!image.join("pause.sock").exists(), "{}", d.listing());
    // The process goes on serving.
    let n = service.stdout_lines().len();
    service.wait_for_after("request ", n, SHORT);
    assert!(service.is_running(), "{}", service.dump());
}

/// Starts the squatter as uid 65534 on `image/pause.sock`.
fn squatter(exe: &Path, image: &Path) -> Service {
    let mut cmd = as_nobody(exe);
    cmd.arg(image.join("pause.sock"));
    let s = Service::start(cmd);
    s.wait_for("listening", SHORT);
    s
}

/// Root's `crac restore --env SECRET=... image`: refused within the time
/// limit, nothing claimed on standard output or error.
fn restore_with_secret(image: &Path, expect: &str) {
    let t = Instant::now();
    let out = crac(["restore"]).arg(image).args_env_secret().fails_with(1);
    assert!(t.elapsed() < ATTACK, "took {:?}", t.elapsed());
    out.stderr_has(&format!(
        "error: cannot wake the process paused in {}",
        image.display()
    ))
    .stderr_has(expect);
    assert!(
        !out.stdout().contains("woke") && !out.stderr().contains("woke"),
        "{}",
        out.dump()
    );
}

trait SecretEnv {
    fn args_env_secret(&mut self) -> &mut Self;
}

impl SecretEnv for TestCommand {
    fn args_env_secret(&mut self) -> &mut Self {
        self.arg("--env").arg("SECRET=hunter2")
    }
}

/// Waits a moment for late output, then requires that the squatter read
/// no byte from any connection.
fn received_nothing(s: &Service) {
    std::thread::sleep(Duration::from_millis(200));
    for line in s.stdout_lines() {
        assert!(
            line == "listening" || line.starts_with("received 0 bytes"),
            "the squatter got data: {}",
            s.dump()
        );
    }
}

#[test]
fn a_squatters_socket_receives_no_secret_from_restore() {
    let (_d, shared) = shared_dir();
    let (_bin, exe) = payload_for_nobody("pause_squatter");
    let image = shared.join("image");
    sh_as_nobody("mkdir -m 0700 \"$1\"", &[path(&image)]);
    let mut squat = squatter(&exe, &image);

    // Its pid file names a root process, as if root's process paused here.
    let mut root_sleep = Service::start({
        let mut c = Command::new("sleep");
        c.arg("60");
        c
    });
    let root_pid = root_sleep.pid();
    sh_as_nobody(
        "echo \"$2\" > \"$1/pid\"",
        &[path(&image), &root_pid.to_string()],
    );
    restore_with_secret(
        &image,
        &format!(
            "{} belongs to uid 65534 but process {root_pid} runs as uid 0: refusing to wake it",
            image.display()
        ),
    );
    received_nothing(&squat);
    assert!(
        squat.stdout_lines().len() == 1,
        "never connected: {}",
        squat.dump()
    );

    // Its pid file names another process of its own uid, still "paused":
    // the files agree, the listener is not that process.
    let mut nobody_sleep = Service::start({
        let mut c = as_nobody(Path::new("/bin/sleep"));
        c.arg("60");
        c
    });
    let other = nobody_sleep.pid();
    sh_as_nobody(
        "rm -f \"$1/pid\"; echo \"$2\" > \"$1/pid\"",
        &[path(&image), &other.to_string()],
    );
    restore_with_secret(
        &image,
        &format!(
            "{} is served by process {} (uid 65534), not by the paused process {other} (uid \
             65534): nothing was sent",
            image.join("pause.sock").display(),
            squat.pid()
        ),
    );
    received_nothing(&squat);
    assert!(squat.is_running() && root_sleep.is_running() && nobody_sleep.is_running());
}

#[test]
fn a_pid_file_that_is_a_fifo_or_a_symlink_is_refused_at_once() {
    let (_d, shared) = shared_dir();
    let (_bin, exe) = payload_for_nobody("pause_squatter");
    let image = shared.join("image");
    sh_as_nobody("mkdir -m 0700 \"$1\"; mkfifo \"$1/pid\"", &[path(&image)]);
    let squat = squatter(&exe, &image);
    restore_with_secret(
        &image,
        &format!("{}/pid is not a regular file but a FIFO", image.display()),
    );
    sh_as_nobody("rm \"$1/pid\"; ln -s /dev/zero \"$1/pid\"", &[path(&image)]);
    restore_with_secret(&image, &format!("cannot read {}/pid", image.display()));
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has("process ? is paused");
    received_nothing(&squat);
}
