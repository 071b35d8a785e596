//! Descriptors open when the library initialises are inherited and pass the
//! check, as long as they still refer to the same file. One test only: the
//! inherited set is recorded once per process.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;

use common::{checkpoint_error, configure, problem_messages};

#[test]
fn descriptors_open_at_init_pass_until_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let early_path = std::fs::canonicalize(tmp.path()).unwrap().join("early.txt");
    let early = File::create(&early_path).unwrap();
    let fd = early.as_raw_fd();

    // First use of the library: `early` is recorded as inherited.
    let _g = common::lock();
    configure("simulate", &tmp.path().join("image"));
    crac::checkpoint_restore().unwrap();

    // Closed, and the number reused for another file: no longer inherited.
    drop(early);
    let late_path = early_path.with_file_name("late.txt");
    let late = File::create(&late_path).unwrap();
    assert_eq!(late.as_raw_fd(), fd);
    assert_eq!(
        problem_messages(&checkpoint_error()),
        [format!(
            "file descriptor {fd} is open: {} (regular file)",
            late_path.display()
        )]
    );
}
