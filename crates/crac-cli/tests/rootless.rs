//! Restores by a user other than root: in user and PID namespaces of its
//! own (`--pidns`), or in place with `setcap cap_checkpoint_restore+ep` on
//! `crac`; and `crac check` telling which of these works.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{self, payload, wait_gone, Dir, Service, TestCommand};

const LONG: Duration = Duration::from_secs(60);

/// A directory nobody can use: binaries nobody may run, and a 0700 image
/// parent nobody owns.
struct Nobody {
    d: Dir,
    crac: PathBuf,
    live: PathBuf,
    work: PathBuf,
}

impl Nobody {
    fn new() -> Nobody {
        assert!(
            Path::new("/usr/bin/setpriv").exists(),
            "this test needs setpriv (util-linux)"
        );
        let d = Dir::new();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let (crac, live) = (d.join("crac"), d.join("live"));
        for (from, to) in [(util::crac_exe(), &crac), (payload("live"), &live)] {
            fs::copy(from, to).unwrap();
            fs::set_permissions(to, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let work = d.join("work");
        fs::create_dir(&work).unwrap();
        std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
        fs::set_permissions(&work, fs::Permissions::from_mode(0o700)).unwrap();
        Nobody {
            d,
            crac,
            live,
            work,
        }
    }

    /// `program args...` as uid/gid 65534 with no supplementary groups.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .current_dir(&self.work)
            .env_remove("CRAC_ENGINE")
            .env_remove("CRAC_ENGINE_OPTIONS")
            .env_remove("CRAC_RESTORE_FROM");
        cmd
    }

    fn crac(&self, args: &[&str]) -> TestCommand {
        let mut cmd = self.command(&self.crac);
        cmd.args(args);
        TestCommand::from(cmd)
    }

    /// Nobody's `live` payload, checkpointed by nobody: (PID, image).
    fn image(&self) -> (u32, PathBuf) {
        let image = self.work.join("image");
        let mut cmd = self.command(&self.crac);
        cmd.arg("run")
            .arg("--checkpoint-to")
            .arg(&image)
            .arg("--")
            .arg(&self.live)
            .arg("4");
        let mut s = Service::start(cmd);
        s.wait_for("ready", LONG);
        let pid = s.pid();
        self.crac(&["checkpoint", &pid.to_string()]).ok();
        s.wait_exit(LONG);
        wait_gone(pid, LONG);
        (pid, image)
    }
}

fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|k| k.parse().unwrap())
        .collect()
}

fn status_field(pid: u32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn crac_check_as_another_user_says_pidns_restores_work() {
    let n = Nobody::new();
    let out = n.crac(&["check"]).ok();
    out.stdout_has("MISSING  clone3 set_tid")
        .stdout_has("OK       restore --pidns   a user namespace, PID, mount and time namespaces")
        .stderr_has("`crac restore --pidns` works for this user");
}

#[test]
fn another_user_restores_its_own_image_in_namespaces_with_its_pid() {
    let n = Nobody::new();
    let (pid, image) = n.image();
    // In place it lacks the capability, and is told what works.
    n.crac(&["restore", image.to_str().unwrap()])
        .fails_with(1)
        .stderr_has(&format!(
            "could not create process {pid} with its PID: this user lacks CAP_CHECKPOINT_RESTORE"
        ))
        .stderr_has("--pidns");
    let mut cmd = n.command(&n.crac);
    cmd.args(["restore", "--pidns"]).arg(&image);
    let mut r = Service::start(cmd);
    r.wait_for("restored", LONG);
    // setpriv execs crac: crac -> init -> the program.
    let init = children(r.pid());
    assert_eq!(init.len(), 1, "{}", r.dump());
    let program = children(init[0]);
    assert_eq!(program.len(), 1, "{}", r.dump());
    let here = program[0];
    // It sees its own PID as the image's, and its memory checks.
    assert_eq!(
        util::ask_live(&r, Some(here))[3],
        u64::from(pid),
        "{}",
        r.dump()
    );
    assert_eq!(status_field(here, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(here, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(here, "CapAmb:"), "0000000000000000");
    r.signal(rustix::process::Signal::TERM);
    r.wait_exit(LONG);
    drop(n.d);
}

#[test]
fn another_user_with_a_setcap_crac_restores_in_place() {
    let n = Nobody::new();
    let (pid, image) = n.image();
    let st = Command::new("/usr/sbin/setcap")
        .arg("cap_checkpoint_restore+ep")
        .arg(&n.crac)
        .status()
        .expect("this test needs setcap (libcap2-bin)");
    assert!(st.success());
    let mut cmd = n.command(&n.crac);
    cmd.arg("restore").arg(&image);
    let mut r = Service::start(cmd);
    r.also_end(pid, &n.live);
    r.wait_for("restored", LONG);
    assert_eq!(
        util::ask_live(&r, Some(pid))[3],
        u64::from(pid),
        "{}",
        r.dump()
    );
    assert_eq!(status_field(pid, "Uid:"), "65534\t65534\t65534\t65534");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapAmb:"), "0000000000000000");
    r.signal(rustix::process::Signal::TERM);
    r.wait_exit(LONG);
}
