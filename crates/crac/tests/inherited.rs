//! Descriptors a process inherits from its parent pass the check. The test
//! re-runs this binary with an extra descriptor left open across `exec`.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use common::{checkpoint_error, configure, problem_messages};

const FD_VAR: &str = "CRAC_TEST_INHERITED_FD";
const DIR_VAR: &str = "CRAC_TEST_DIR";

#[test]
fn inherited_descriptors_pass() {
    if let Ok(fd) = std::env::var(FD_VAR) {
        return child(fd.parse().unwrap());
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let file = File::create(dir.join("inherited.txt")).unwrap();
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "inherited_descriptors_pass", "--nocapture"])
        .env(FD_VAR, file.as_raw_fd().to_string())
        .env(DIR_VAR, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child checked"),
        "child failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn child(fd: i32) {
    let _g = common::lock();
    let dir = std::path::PathBuf::from(std::env::var(DIR_VAR).unwrap());
    configure("simulate", &dir.join("image"));
    assert!(
        std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok(),
        "fd {fd} was not inherited"
    );
    crac::checkpoint_restore().unwrap();

    let late_path = dir.join("late.txt");
    let late = File::create(&late_path).unwrap();
    assert_eq!(
        problem_messages(&checkpoint_error()),
        [format!(
            "file descriptor {} is open: {} (regular file); close it in before_checkpoint or \
             add a resource policy (type: file, action: close)",
            late.as_raw_fd(),
            late_path.display()
        )]
    );
    println!("child checked");
}
