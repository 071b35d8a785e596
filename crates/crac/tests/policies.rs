//! Resource policies (`CRAC_RESOURCE_POLICIES`) in the open-descriptor check.
//!
//! What the native engine then does with a descriptor a policy closes,
//! ignores or reopens is tested end to end in `crac-cli`'s tests.

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{checkpoint_error, configure, lock, problem_messages, scoped_context};
use crac::CheckpointProblem;

/// Configures `engine` with a policies file holding `rules`; returns the
/// temporary directory and the file.
fn setup(engine: &str, rules: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    configure(engine, &dir.path().join("image"));
    let file = dir.path().join("policies.yaml");
    std::fs::write(&file, rules).unwrap();
    std::env::set_var("CRAC_RESOURCE_POLICIES", &file);
    (dir, file)
}

fn inotify() -> rustix::fd::OwnedFd {
    rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::CLOEXEC).unwrap()
}

#[test]
fn ignore_lets_a_descriptor_pass_that_no_engine_carries() {
    let _g = lock();
    let fd = inotify();
    let (_dir, file) = setup(
        "simulate",
        &format!(
            "type: filedescriptor\nvalue: {}\naction: ignore\nwarn: false\n",
            fd.as_raw_fd()
        ),
    );
    crac::checkpoint_restore().unwrap();

    // The file is read at every checkpoint: without the rule it fails.
    std::fs::write(&file, "# no rules\n").unwrap();
    assert_eq!(
        problem_messages(&checkpoint_error()),
        [format!(
            "file descriptor {0} is open: inotify; close it in before_checkpoint or add a \
             resource policy (type: filedescriptor, value: {0}, action: close)",
            fd.as_raw_fd()
        )]
    );
}

#[test]
fn error_refuses_a_descriptor_the_native_engine_carries() {
    let _g = lock();
    let (r, w) = rustix::pipe::pipe().unwrap();
    assert!(
        crac_engine::native::carries_fd(r.as_raw_fd()),
        "the native engine carries a pipe with both ends in the process"
    );
    let (_dir, file) = setup(
        "native",
        "# pipes must not cross\ntype: PIPE\naction: Error\n",
    );
    // Should the check let it pass, the engine would keep this process
    // running (and the test fails below) rather than end it.
    std::env::set_var("CRAC_ENGINE_OPTIONS", "keep_running=true");
    let e = checkpoint_error();
    let lines = |fd: &rustix::fd::OwnedFd| {
        let inode = rustix::fs::fstat(fd).unwrap().st_ino;
        format!(
            "file descriptor {} is open: pipe:[{inode}] (pipe); the resource policy on \
             lines 2-3 of {} refuses it (action: error)",
            fd.as_raw_fd(),
            file.display()
        )
    };
    assert_eq!(problem_messages(&e), [lines(&r), lines(&w)]);
    let Some(CheckpointProblem::RefusedByPolicy { info, rule, .. }) = e.problems().next() else {
        panic!("{e:?}")
    };
    assert_eq!(info.fd(), r.as_raw_fd());
    assert_eq!(rule.lines(), (2, 3));
    assert_eq!(rule.file(), file);
}

#[test]
fn an_invalid_file_fails_before_any_resource_is_notified() {
    let _g = lock();
    let (_dir, file) = setup(
        "simulate",
        "type: file\naction: close\n---\n# second\naction: ignore\npath: /x\n---\ntype: pipe\n",
    );
    let ctx = scoped_context();
    let notified = Arc::new(Mutex::new(0));
    let n = notified.clone();
    ctx.register_fn(
        move |_| {
            *n.lock().unwrap() += 1;
            Ok(())
        },
        |_| Ok(()),
    );
    let e = checkpoint_error();
    let f = file.display();
    assert_eq!(
        problem_messages(&e),
        [
            format!("invalid rule in policies file {f} on lines 5-6: no 'type'"),
            format!("invalid rule in policies file {f} on line 8: no 'action'"),
        ]
    );
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint failed with 2 problems: invalid rule in policies file {f} on lines \
             5-6: no 'type'; invalid rule in policies file {f} on line 8: no 'action'"
        )
    );
    assert_eq!(*notified.lock().unwrap(), 0);

    std::env::set_var("CRAC_RESOURCE_POLICIES", Path::new("/nonexistent/p.yaml"));
    assert_eq!(
        problem_messages(&checkpoint_error()),
        ["policies file /nonexistent/p.yaml named by CRAC_RESOURCE_POLICIES does not exist"]
    );
    assert_eq!(*notified.lock().unwrap(), 0);
}

#[test]
fn first_matching_rule_wins_per_descriptor() {
    let _g = lock();
    let a = inotify();
    let b = inotify();
    let (_dir, file) = setup(
        "simulate",
        &format!(
            "type: filedescriptor\nvalue: {}\naction: close\nwarn: false\n---\n\
             type: filedescriptor\naction: error\n---\n\
             type: filedescriptor\naction: ignore\n",
            a.as_raw_fd()
        ),
    );
    assert_eq!(
        problem_messages(&checkpoint_error()),
        [format!(
            "file descriptor {} is open: inotify; the resource policy on lines 6-7 of {} \
             refuses it (action: error)",
            b.as_raw_fd(),
            file.display()
        )]
    );
    drop(b);
    crac::checkpoint_restore().unwrap();
}
