//! Live checkpoints (`--leave-running`): a copy-on-write copy of the process
//! writes the image while the program runs on.

use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;

use crate::util::{self, crac, payload, wait_gone, Dir, Service};

const LONG: Duration = Duration::from_secs(60);

/// A program rewriting 128 MiB in a loop is checkpointed live, twice: it
/// runs on with its memory intact, and the image is one instant of its
/// memory (the generation/cursor invariant holds in the restored process
/// too, which it would not if pages had been read while it wrote them).
#[test]
fn a_live_checkpoint_leaves_the_program_running_and_its_image_is_one_instant() {
    live_checkpoints_then_restore(&["128"]);
}

/// Memory a fork does not copy (`MADV_DONTFORK`) is still in the image: the
/// live dump falls back to dumping in place.
#[test]
fn a_program_with_dontfork_memory_is_checkpointed_live_in_place() {
    live_checkpoints_then_restore(&["16", "dontfork"]);
}

fn live_checkpoints_then_restore(args: &[&str]) {
    let d = Dir::new();
    let image = d.join("image");
    let exe = payload("live");
    let mut s = Service::crac_run(&image, None, "live", args);
    s.wait_for("ready", LONG);
    let pid = s.pid();
    let before = util::ask_live(&s, None);
    for _ in 0..2 {
        crac(["checkpoint", &pid.to_string(), "--leave-running"])
            .show_dir(&d)
            .ok()
            .stdout_has("the process keeps running (its threads were stopped for ");
        assert!(s.is_running(), "{}", s.dump());
        let after = util::ask_live(&s, None);
        // It kept sweeping: its position moved on.
        assert!(
            (after[0], after[1]) > (before[0], before[1]),
            "{before:?} -> {after:?}\n{}",
            s.dump()
        );
    }
    // No copy is left behind: the program's only children are gone.
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    assert_eq!(children.trim(), "", "{}", s.dump());

    s.signal(Signal::KILL);
    s.wait_exit(LONG);
    wait_gone(pid, LONG);
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("restore").arg(&image);
    let mut r = Service::start(cmd);
    r.also_end(pid, &exe);
    r.wait_for("restored", LONG);
    // The same PID runs the payload, and its memory is consistent.
    assert_eq!(
        util::number_after(&r.stderr_lines().join("\n"), "restored process "),
        Some(pid),
        "{}",
        r.dump()
    );
    let restored = util::ask_live(&r, None);
    assert!(restored[0] >= before[0], "{restored:?}\n{}", r.dump());
    r.signal(Signal::KILL);
}
