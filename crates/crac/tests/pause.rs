//! The `pause` engine: the checkpointing thread blocks until woken, the
//! woken process applies the handed-over environment before `after_restore`.

mod common;

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{checkpoint_error, configure, lock, problem_messages, scoped_context};

#[test]
fn pause_and_wake_round_trip() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    configure("pause", &tmp.path().join("image-%p"));
    let dir = tmp.path().join(format!("image-{}", std::process::id()));
    std::env::remove_var("CRAC_TEST_WOKEN");

    let ctx = scoped_context();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen_b, seen_a) = (seen.clone(), seen.clone());
    ctx.register_fn(
        move |_| {
            seen_b.lock().unwrap().push("before".into());
            Ok(())
        },
        move |_| {
            let woken = std::env::var("CRAC_TEST_WOKEN").unwrap_or_default();
            seen_a.lock().unwrap().push(format!("after {woken}"));
            Ok(())
        },
    );
    let count = crac::restore_info().restore_count;

    let paused = thread::spawn(crac::checkpoint_restore);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crac_engine::pause::is_pause_image(&dir) || !dir.join("pid").exists() {
        assert!(Instant::now() < deadline, "the process never paused");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        *seen.lock().unwrap(),
        ["before"],
        "blocked before after_restore"
    );
    assert!(!paused.is_finished());
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    let env = [(OsString::from("CRAC_TEST_WOKEN"), OsString::from("yes"))];
    let pid = crac_engine::pause::wake(&dir, &env).unwrap();
    assert_eq!(pid, std::process::id());
    paused.join().unwrap().unwrap();

    assert_eq!(*seen.lock().unwrap(), ["before", "after yes"]);
    let info = crac::restore_info();
    assert!(info.restored);
    assert_eq!(info.restore_count, count + 1);
    assert!(!crac_engine::pause::is_pause_image(&dir));
    std::env::remove_var("CRAC_TEST_WOKEN");
}

/// The check runs for the pause engine too, before it pauses.
#[test]
fn open_descriptor_fails_before_pausing() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("image");
    configure("pause", &dir);
    let path = std::fs::canonicalize(tmp.path()).unwrap().join("held.txt");
    let file = File::create(&path).unwrap();
    let e = checkpoint_error();
    assert_eq!(
        problem_messages(&e),
        [format!(
            "file descriptor {} is open: {} (regular file); close it in before_checkpoint or \
             add a resource policy (type: file, action: close)",
            file.as_raw_fd(),
            path.display()
        )]
    );
    assert!(!dir.exists(), "the engine did not run");
}

#[test]
fn pause_engine_failure_is_reported() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("missing-parent").join("image");
    configure("pause", &dir);
    let e = checkpoint_error();
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint failed: engine pause failed: cannot create image directory {}: No such \
             file or directory (os error 2)",
            dir.display()
        )
    );
}
