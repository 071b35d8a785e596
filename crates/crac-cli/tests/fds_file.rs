//! Regular files carried across a checkpoint, and the resource policies
//! `Reopen`, `Ignore` and `Close`: the `fds_file` payload opens files at
//! known numbers and offsets, checkpoints itself, and checks them after
//! `crac restore`; the tests change the files in between where the case
//! needs it.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use crate::native::{checkpointed_pid, pid_in, restore, show, wait_gone};
use crate::util::{self, checkpointing, Dir};

/// Runs `fds_file MODE DIR [extra]` configured to checkpoint into
/// DIR/image; returns its output and PID (after it is gone).
fn run(d: &Dir, mode: &str, extra: &[&str]) -> (Output, u32) {
    let mut cmd = checkpointing("fds_file", &d.join("image"));
    if mode == "policies" {
        cmd.env("FDS_FILE_IMAGE", d.join("image"))
            .env_remove("CRAC_CHECKPOINT_TO");
    }
    let out = cmd.arg(mode).arg(d.path()).args(extra).output().output;
    let pid = checkpointed_pid(&out);
    (out, pid)
}

/// Checkpoints `mode`, lets `between` change the files, restores, and
/// checks the restored process (same PID) printed `ok_line`.
fn checkpoint_change_restore(mode: &str, extra: &[&str], between: impl FnOnce(&Dir), ok: &str) {
    let d = Dir::new();
    let (out, pid) = run(&d, mode, extra);
    assert!(out.status.success(), "{}", show(&out));
    between(&d);
    let out = restore(&d.join("image"));
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(ok),
        "{}",
        show(&out)
    );
    assert_eq!(pid_in(&out, "post-restore PID: "), pid, "{}", show(&out));
    wait_gone(pid);
}

/// Replaces `path` with a new file (another inode) holding `data`.
fn replace(path: &Path, data: &[u8], mtime: Option<SystemTime>) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, data).unwrap();
    if let Some(t) = mtime {
        fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_read_only_file_reads_on_from_its_offset() {
    checkpoint_change_restore(
        "read",
        &[],
        |d| {
            // The image describes the file.
            let out = util::crac(["inspect", "--json"]).arg(d.join("image")).ok();
            let json: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
            let fd = json["fds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["fd"] == 50)
                .unwrap_or_else(|| panic!("{json:#}"))
                .clone();
            assert_eq!(fd["kind"], "file", "{fd:#}");
            assert_eq!(fd["name"], d.join("data").display().to_string());
            assert_eq!(fd["values"][0], 1000, "offset: {fd:#}");
            assert_eq!(fd["values"][1], 4096, "size: {fd:#}");
        },
        "READ OK",
    );
}

#[test]
fn a_read_write_file_is_written_at_its_offset() {
    checkpoint_change_restore("write", &[], |_| {}, "WRITE OK");
}

#[test]
fn an_append_log_grown_by_another_writer_is_appended_at_its_new_end() {
    checkpoint_change_restore(
        "append",
        &[],
        |d| {
            let mut log = fs::File::options()
                .append(true)
                .open(d.join("log"))
                .unwrap();
            std::io::Write::write_all(&mut log, b"another writer\n").unwrap();
        },
        "APPEND OK",
    );
}

#[test]
fn a_changed_file_refuses_the_restore_and_nothing_runs() {
    let d = Dir::new();
    let (out, pid) = run(&d, "changed", &[]);
    assert!(out.status.success(), "{}", show(&out));
    // Same size, other contents, later mtime.
    let same = d.join("same-size");
    let f = fs::File::options().write(true).open(&same).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"ORIGINAL", 0).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    // Same contents, size and mtime, another inode.
    let replaced = d.join("replaced");
    let mtime = fs::metadata(&replaced).unwrap().modified().unwrap();
    replace(&replaced, b"original contents", Some(mtime));

    let out = restore(&d.join("image"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!(
            "{} (open as file descriptor 53) changed since the checkpoint: mtime ",
            same.display()
        ),
        format!(
            "{} (open as file descriptor 54) changed since the checkpoint: inode ",
            replaced.display()
        ),
    ] {
        assert!(err.contains(&want), "{want}\n{}", show(&out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("post-restore") && !text.contains("CHANGED RAN"),
        "{}",
        show(&out)
    );
    assert!(!util::alive(pid));

    // A FIFO in a file's place is refused at once, never waited on.
    fs::remove_file(&replaced).unwrap();
    let st = Command::new("mkfifo").arg(&replaced).status().unwrap();
    assert!(st.success());
    let out = restore(&d.join("image"));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let want = format!(
        "{} (open as file descriptor 54) is no longer a regular file",
        replaced.display()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&want),
        "{}",
        show(&out)
    );
    // `crac inspect` says the same.
    util::crac(["inspect"])
        .arg(d.join("image"))
        .ok()
        .stdout_has("restore     NOT possible here")
        .stdout_has(&want);
}

#[test]
fn a_deleted_open_file_refuses_the_checkpoint_and_the_program_goes_on() {
    let d = Dir::new();
    let (out, _) = run(&d, "deleted", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "file descriptor 55 is open: {} (regular file, deleted)",
        d.join("gone").display()
    );
    assert!(text.contains(&want), "{}", show(&out));
    assert!(text.contains("still running: PID"), "{}", show(&out));
    assert!(!d.join("image").exists(), "{}", d.listing());
}

/// The engine API with resource policies: a file to reopen (the test puts
/// a shorter one in its place), descriptors to ignore (a log, a deleted
/// file, an eventfd) and to close (files read-only and write-only, a
/// directory).
#[test]
fn policies_reopen_ignore_and_close() {
    checkpoint_change_restore(
        "policies",
        &[],
        |d| {
            let out = util::crac(["inspect"]).arg(d.join("image")).ok();
            out.stdout_has("  60  file")
                .stdout_has("  61  ignored by policy")
                .stdout_has("  63  ignored by policy")
                .stdout_has("  64  closed by policy")
                .stdout_has("  66  closed by policy");
            let json: serde_json::Value = serde_json::from_str(
                &util::crac(["inspect", "--json"])
                    .arg(d.join("image"))
                    .ok()
                    .stdout(),
            )
            .unwrap();
            let fds = json["fds"].as_array().unwrap();
            let reopen = fds.iter().find(|f| f["fd"] == 60).unwrap();
            assert!(
                reopen["state"]
                    .as_str()
                    .unwrap()
                    .contains("reopened whatever changed"),
                "{reopen:#}"
            );
            let closed = fds.iter().find(|f| f["fd"] == 66).unwrap();
            assert_eq!(closed["name"], d.path().display().to_string());
            replace(&d.join("reopen"), &[b'N'; 40], None);
        },
        "POLICIES OK",
    );
}
