//! Kernel objects behind descriptors carried across a checkpoint, one test
//! per kind: the `fds` payload sets the object up, checkpoints itself and
//! checks the object's state after `crac restore`.

use crate::native::{checkpoint_then_restore, pid_in, run_payload, show, wait_gone};
use crate::util::crac;

#[test]
fn eventfd_keeps_its_counter_mode_and_flags() {
    checkpoint_then_restore("fds", &["eventfd"], "EVENTFD OK");
}

#[test]
fn inspect_lists_carried_descriptors_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let out = run_payload("fds", &["eventfd"], &image);
    assert!(out.status.success(), "{}", show(&out));
    wait_gone(pid_in(&out, "pre-checkpoint PID: "));
    let text = crac(["inspect"]).arg(&image).ok().stdout();
    assert!(
        text.contains("\ndescriptors ")
            && text.contains("40  eventfd  counter 5, semaphore")
            && text.contains("41  eventfd  counter 1099511627776"),
        "{text}"
    );
}
