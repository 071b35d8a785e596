//! Kernel objects behind descriptors carried across a checkpoint, one test
//! per kind: the `fds` payload sets the object up, checkpoints itself and
//! checks the object's state after `crac restore`.

use std::time::Duration;

use crate::native::{checkpoint_payload, checkpoint_then_restore};
use crate::util::{checkpointing, crac, Dir};

#[test]
fn eventfd_keeps_its_counter_mode_and_flags() {
    checkpoint_then_restore("fds", &["eventfd"], "EVENTFD OK");
}

#[test]
fn inspect_lists_carried_descriptors_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    checkpoint_payload("fds", &["eventfd"], &image);
    let text = crac(["inspect"]).arg(&image).ok().stdout();
    assert!(
        text.contains("\ndescriptors ")
            && text.contains("40  eventfd  counter 5, semaphore")
            && text.contains("41  eventfd  counter 1099511627776"),
        "{text}"
    );
}

#[test]
fn signalfd_keeps_its_mask_and_reads_signals_sent_after_restore() {
    checkpoint_then_restore("fds", &["signalfd"], "SIGNALFD OK");
}

#[test]
fn epoll_keeps_its_interest_list_modes_and_data_words() {
    checkpoint_then_restore("fds", &["epoll"], "EPOLL OK");
}

/// The payload also holds a 64 MiB memfd with two small data regions: the
/// image stores its data, not its holes.
#[test]
fn memfd_keeps_name_contents_size_seals_offset_holes_and_sharing() {
    let d = Dir::new();
    let image = d.join("image");
    let out = checkpointing("fds", &image).arg("memfd").show_dir(&d).ok();
    let pid = out.checkpointed_pid();
    let stored = std::fs::metadata(image.join("pages.crac")).unwrap().len();
    assert!(stored < 32 << 20, "holes stored: {stored} bytes of pages");
    crac(["restore"])
        .arg(&image)
        .ok()
        .stdout_has("MEMFD OK")
        .stdout_has(&format!("post-restore PID: {pid}"));
}

/// The image rests 3 s between checkpoint and restore: the payload's
/// one-shot timer (1.5 s) must fire at once after restore.
#[test]
fn timerfd_counts_the_rest_and_keeps_interval_ticks_and_deadlines() {
    let d = Dir::new();
    let image = d.join("image");
    let out = checkpointing("fds", &image)
        .arg("timerfd")
        .show_dir(&d)
        .ok();
    let pid = out.checkpointed_pid();
    std::thread::sleep(Duration::from_secs(3));
    let out = crac(["restore"]).arg(&image).ok();
    out.stdout_has("TIMERFD OK")
        .stdout_has(&format!("post-restore PID: {pid}"));
    // The image describes the timers.
    let json: serde_json::Value =
        serde_json::from_str(&crac(["inspect", "--json"]).arg(&image).ok().stdout()).unwrap();
    let fds = json["fds"].as_array().expect("fds");
    let state = |fd: u64| {
        fds.iter()
            .find(|f| f["fd"] == fd)
            .and_then(|f| f["state"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(state(50).contains("interval 50.000 ms"), "{json:#}");
    assert!(state(52).contains("disarmed"), "{json:#}");
    assert!(state(53).contains("1 expirations unread"), "{json:#}");
    assert!(state(54).contains("absolute"), "{json:#}");
}

/// An epoll entry whose descriptor number was closed (the file lives on
/// through a dup) cannot be rebuilt: the checkpoint is refused, naming the
/// epoll, and the process goes on with its epoll intact.
#[test]
fn epoll_with_a_stale_entry_refuses_the_checkpoint() {
    let d = Dir::new();
    let image = d.join("image");
    checkpointing("fds", &image)
        .arg("epoll-stale")
        .show_dir(&d)
        .ok()
        .stdout_has("refused: checkpoint failed: file descriptor 92 is open: epoll")
        .stdout_has("EPOLL-STALE OK");
    assert!(!image.exists(), "{}", d.listing());
}

/// With `keep_running`, the dump must leave every object as it was: the
/// original passes the same checks as the restored process (epoll readiness
/// and modes, memfd contents and offsets, signalfd masks), then the image
/// restores as well.
#[test]
fn left_running_originals_keep_their_objects_unchanged() {
    for (kind, ok) in [
        ("epoll", "EPOLL OK"),
        ("memfd", "MEMFD OK"),
        ("signalfd", "SIGNALFD OK"),
    ] {
        let d = Dir::new();
        let image = d.join("image");
        let out = checkpointing("fds", &image)
            .arg(kind)
            .env("CRAC_ENGINE_OPTIONS", "keep_running=true")
            .show_dir(&d)
            .ok();
        out.stdout_has(ok);
        let pid = out.checkpointed_pid();
        crac(["restore"])
            .arg(&image)
            .ok()
            .stdout_has(ok)
            .stdout_has(&format!("post-restore PID: {pid}"));
    }
}
