//! Descriptors inherited at start (`7>>file`) pass through `crac restore`
//! like stdio: the restored process gets `crac restore`'s own descriptor of
//! that number, or /dev/null with a warning, and nothing else of its. The
//! `inherit` payload checks its descriptors itself after the restore.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::native::{checkpoint_payload, checkpointed_pid, pid_in, show, wait_gone};
use crate::util::{crac_exe, payload, Dir};

/// `program args` started through `sh` with each `(fd, file)` open for
/// appending, and stdio; nothing else of this test process's.
fn with_fds(program: &Path, args: &[&OsStr], fds: &[(u32, &Path)]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    let mut script = String::from("exec \"$@\"");
    for (fd, path) in fds {
        script.push_str(&format!(" {fd}>>\"$CRAC_TEST_FD{fd}\""));
        cmd.env(format!("CRAC_TEST_FD{fd}"), path);
    }
    cmd.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(program)
        .args(args)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .stdin(Stdio::null());
    cmd
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
}

/// Runs the payload with `fds` inherited (each to a file `A<fd>`) until it
/// checkpoints itself into `DIR/image`; returns the image and its PID.
fn checkpoint_with(d: &Dir, fds: &[u32]) -> (PathBuf, u32) {
    let image = d.join("image");
    let files: Vec<(u32, PathBuf)> = fds.iter().map(|&n| (n, d.join(&format!("A{n}")))).collect();
    let pairs: Vec<(u32, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let args: Vec<String> = fds.iter().map(u32::to_string).collect();
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let out = with_fds(&payload("inherit"), &args, &pairs)
        .env("CRAC_CHECKPOINT_TO", &image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let pid = checkpointed_pid(&out);
    for (n, path) in &files {
        assert_eq!(read(path), format!("before {n}\n"), "{}", show(&out));
    }
    (image, pid)
}

/// `crac restore IMAGE EXTRA` with `fds` open (each to a file
/// `<letter><fd>`); checks that the restored payload passed its own checks
/// with the same PID.
fn restore_with(
    d: &Dir,
    image: &Path,
    pid: u32,
    fds: &[u32],
    letter: &str,
    extra: &[&str],
) -> Output {
    let files: Vec<(u32, PathBuf)> = fds
        .iter()
        .map(|&n| (n, d.join(&format!("{letter}{n}"))))
        .collect();
    let pairs: Vec<(u32, &Path)> = files.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let mut args = vec![OsStr::new("restore"), image.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    let out = with_fds(&crac_exe(), &args, &pairs).output().unwrap();
    wait_gone(pid);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("INHERIT OK"), "{}", show(&out));
    assert_eq!(pid_in(&out, "post-restore PID: "), pid, "{}", show(&out));
    out
}

fn missing_warning(fd: u32) -> String {
    format!(
        "warning: descriptor {fd}, inherited by the checkpointed program, is not open here; it \
         points to /dev/null in the restored process\n"
    )
}

#[test]
fn an_inherited_descriptor_writes_to_what_crac_restore_was_given() {
    let d = Dir::new();
    let (image, pid) = checkpoint_with(&d, &[7]);
    let (a, b) = (d.join("A7"), d.join("B7"));
    let inspect = Command::new(crac_exe())
        .arg("inspect")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        stdout(&inspect).contains("     7  inherited"),
        "{}",
        show(&inspect)
    );

    // `crac restore IMAGE 7>>B`: the restored process writes to B. It then
    // checkpoints again, with B as its inherited descriptor 7.
    let image2 = d.join("image2");
    let again = format!("CRAC_CHECKPOINT_TO={}", image2.display());
    let extra = ["--env", &again, "--env", "INHERIT_AGAIN=1"];
    let out = restore_with(&d, &image, pid, &[7], "B", &extra);
    assert!(
        stdout(&out).contains(&format!("fd 7 -> {} append=1", b.display())),
        "{}",
        show(&out)
    );
    assert!(!stderr(&out).contains("warning"), "{}", show(&out));
    assert_eq!(read(&b), "after 7\nagain 7\n", "{}", show(&out));
    assert_eq!(read(&a), "before 7\n");

    // The second image passes 7 through the same way.
    let once = ["--env", "INHERIT_AGAIN=0"];
    let out = restore_with(&d, &image2, pid, &[7], "C", &once);
    assert_eq!(read(&d.join("C7")), "after 7\n", "{}", show(&out));
    assert_eq!(read(&b), "after 7\nagain 7\n");

    // Without a descriptor 7: /dev/null, a warning, and the write succeeds.
    let out = restore_with(&d, &image, pid, &[], "B", &[]);
    assert!(stderr(&out).contains(&missing_warning(7)), "{}", show(&out));
    assert!(
        stdout(&out).contains("fd 7 -> /dev/null append=0"),
        "{}",
        show(&out)
    );
    assert_eq!(read(&b), "after 7\nagain 7\n");
    assert_eq!(read(&a), "before 7\n");
}

/// 3 to 6 are the restorer's inputs and 9 lies above a gap; `crac restore`
/// gets 3, 5 and 9, not 4 and 6, and an 8 the program never had.
#[test]
fn inherited_descriptors_at_the_restorers_own_numbers_pass_through() {
    let d = Dir::new();
    let (image, pid) = checkpoint_with(&d, &[3, 4, 5, 6, 9]);
    let out = restore_with(&d, &image, pid, &[3, 5, 8, 9], "B", &[]);
    let (text, warnings) = (stdout(&out), stderr(&out));
    for n in [3, 5, 9] {
        let b = d.join(&format!("B{n}"));
        assert!(
            text.contains(&format!("fd {n} -> {} append=1", b.display())),
            "{}",
            show(&out)
        );
        assert_eq!(read(&b), format!("after {n}\n"), "{}", show(&out));
    }
    for n in [4, 6] {
        assert!(warnings.contains(&missing_warning(n)), "{}", show(&out));
        assert!(
            text.contains(&format!("fd {n} -> /dev/null")),
            "{}",
            show(&out)
        );
    }
    assert_eq!(warnings.matches("warning:").count(), 2, "{}", show(&out));
    assert_eq!(read(&d.join("B8")), "", "{}", show(&out));
    for n in [3, 4, 5, 6, 9] {
        assert_eq!(read(&d.join(&format!("A{n}"))), format!("before {n}\n"));
    }
}

/// Both ends of a pipe inherited: the engine would carry such a pipe had the
/// program made it; inherited, it is passed through instead.
#[test]
fn an_inherited_pipe_is_passed_through_not_carried() {
    let d = Dir::new();
    let image = d.join("image");
    let (_, pid) = checkpoint_payload("inherit", &["pipe"], &image);
    let inspect = Command::new(crac_exe())
        .arg("inspect")
        .arg(&image)
        .output()
        .unwrap();
    let text = stdout(&inspect);
    assert!(
        text.contains("     7  inherited")
            && text.contains("     8  inherited")
            && !text.contains("(pipe)"),
        "{}",
        show(&inspect)
    );
    let out = restore_with(&d, &image, pid, &[7], "B", &[]);
    assert_eq!(read(&d.join("B7")), "after 7\n", "{}", show(&out));
    assert!(stderr(&out).contains(&missing_warning(8)), "{}", show(&out));
    assert_eq!(
        stderr(&out).matches("warning:").count(),
        1,
        "{}",
        show(&out)
    );
}
