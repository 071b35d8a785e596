//! Lazy restore (the default): the process resumes before its private
//! anonymous memory is loaded and `crac restore` loads it while it runs.
//! The `lazy` payload changes its memory right after the restore and checks
//! that each change means what it would in a process never checkpointed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{checkpointing, crac, payload, wait_dead, wait_gone, Dir, Out, Service};

/// Runs the `lazy` payload with `mode` until it checkpoints into a new
/// image; returns the directory, the image and the PID.
fn lazy_image(mode: &str) -> (Dir, PathBuf, u32) {
    let dir = Dir::new();
    let image = dir.join("image");
    let pid = checkpointing("lazy", &image)
        .arg(mode)
        .ok()
        .checkpointed_pid();
    (dir, image, pid)
}

/// Asserts every check the payload reports after a restore held.
fn all_checks_hold(out: &Out) {
    for check in [
        "dontneed ok: true",
        "remapped ok: true",
        "moved ok: true",
        "kernel-read ok: true",
        "kernel-write ok: true",
        "untouched ok: true",
        "protected ok: true",
        "advice ok: true",
    ] {
        out.stdout_has(check);
    }
}

#[test]
fn lazy_restore_follows_what_the_program_does_to_its_memory() {
    let (_dir, image, pid) = lazy_image("now");
    let out = crac(["restore"]).arg(&image).ok();
    // The program ran before its memory was complete: this is a lazy
    // restore (a kernel without the userfaultfd features fails here).
    out.stdout_has("loading at start: true");
    all_checks_hold(&out);
    // The child forked while memory was loading read it all after its
    // parent had exited.
    out.stdout_has("child ok: true");
    wait_gone(pid, Duration::from_secs(10));
}

#[test]
fn a_checkpoint_while_memory_still_loads_waits_for_it() {
    let (dir, image, pid) = lazy_image("again");
    let second = dir.join("second");
    let out = crac(["restore", "--env"])
        .arg(format!("CRAC_CHECKPOINT_TO={}", second.display()))
        .arg(&image)
        .ok();
    out.stdout_has("still loading: true");
    out.stdout_has("child ok: true");
    wait_gone(pid, Duration::from_secs(10));
    // The second image holds every page, loaded or not when it was taken.
    let out = crac(["restore"]).arg(&second).ok();
    out.stdout_has("restored again");
    all_checks_hold(&out);
    wait_gone(pid, Duration::from_secs(10));
}

#[test]
fn eager_restore_loads_everything_before_the_process_resumes() {
    let (_dir, image, pid) = lazy_image("now");
    let out = crac(["restore", "--eager"]).arg(&image).ok();
    out.stdout_has("loading at start: false");
    all_checks_hold(&out);
    out.stdout_has("child ok: true");
    wait_gone(pid, Duration::from_secs(10));
}

#[test]
fn killing_crac_restore_while_memory_loads_kills_the_process() {
    let (_dir, image, pid) = lazy_image("hold");
    let exe = payload("lazy");
    let mut cmd = Command::new(crate::util::crac_exe());
    cmd.arg("restore").arg(&image);
    let mut restore = Service::start(cmd);
    restore.also_end(pid, &exe);
    restore.wait_for("restored", Duration::from_secs(30));
    assert!(running(pid, &exe), "{}", restore.dump());
    // SIGKILL cannot be forwarded: the process must not live on with
    // memory nobody loads.
    restore.signal(rustix::process::Signal::KILL);
    restore.wait_exit(Duration::from_secs(10));
    wait_dead(pid, Duration::from_secs(5));
    wait_gone(pid, Duration::from_secs(10));
}

fn running(pid: u32, exe: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe)
}
