//! End-to-end tests of the native engine on real processes: the payloads in
//! `tests/payloads` checkpoint themselves and check their own state after
//! `crac restore` brings them back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, checkpointing, number_after, payload, GONE, PRE_CHECKPOINT};

fn crac() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crac"));
    c.stdin(Stdio::null());
    c
}

pub(crate) fn show(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a payload configured to checkpoint into `image` and returns its output.
pub(crate) fn run_payload(name: &str, args: &[&str], image: &Path) -> Output {
    checkpointing(name, image).args(args).output().output
}

/// Runs a payload until it checkpoints itself into `image`, requires
/// success, and returns its output and PID once that process is gone.
pub(crate) fn checkpoint_payload(name: &str, args: &[&str], image: &Path) -> (Output, u32) {
    let out = run_payload(name, args, image);
    assert!(out.status.success(), "{}", show(&out));
    let pid = checkpointed_pid(&out);
    (out, pid)
}

/// `crac restore IMAGE`.
pub(crate) fn restore(image: &Path) -> Output {
    crac()
        .arg("restore")
        .arg(image)
        .output()
        .expect("run crac restore")
}

/// The PID on the first stdout line starting with `prefix`.
pub(crate) fn pid_in(out: &Output, prefix: &str) -> u32 {
    number_after(&String::from_utf8_lossy(&out.stdout), prefix)
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{}", show(out)))
}

/// The PID `out`'s payload printed before it checkpointed itself, once that
/// process is gone.
pub(crate) fn checkpointed_pid(out: &Output) -> u32 {
    let pid = pid_in(out, PRE_CHECKPOINT);
    wait_gone(pid);
    pid
}

/// Waits until `pid` is gone (an orphan may linger until init reaps it).
pub(crate) fn wait_gone(pid: u32) {
    util::wait_gone(pid, GONE);
}

/// Runs `name` until it checkpoints itself, restores the image once and
/// checks that the restored process prints `ok_line` with the same PID.
pub(crate) fn checkpoint_then_restore(name: &str, args: &[&str], ok_line: &str) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let (_, pid) = checkpoint_payload(name, args, &image);
    let out = restore(&image);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(ok_line), "{}", show(&out));
    assert_eq!(pid_in(&out, "post-restore PID: "), pid, "{}", show(&out));
}

/// Checkpoints the classic writer into a fresh image; returns (dir, image, file, pid).
fn writer_image() -> (tempfile::TempDir, PathBuf, PathBuf, u32) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let file = dir.path().join("out.txt");
    let (out, pid) = checkpoint_payload("writer", &[file.to_str().unwrap()], &image);
    assert!(
        image.join("meta.crac").exists() && image.join("pages.crac").exists(),
        "{}",
        show(&out)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "hello");
    (dir, image, file, pid)
}

#[test]
fn classic_example_restores_with_the_same_pid_again_and_again() {
    let (_dir, image, file, pid) = writer_image();
    for n in 1..=4 {
        let out = restore(&image);
        assert!(out.status.success(), "restore {n}: {}", show(&out));
        assert_eq!(
            pid_in(&out, "post-restore PID: "),
            pid,
            "restore {n}: {}",
            show(&out)
        );
        let want = format!("hello{}", " there!\n".repeat(n));
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            want,
            "after restore {n}"
        );
        wait_gone(pid);
    }
}

#[test]
fn an_open_file_refuses_the_checkpoint_and_the_program_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let file = dir.path().join("out.txt");
    let out = run_payload("writer", &[file.to_str().unwrap(), "--leave-open"], &image);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // Deleted: an open file still at its path would be carried.
    let want = format!("is open: {} (regular file, deleted)", file.display());
    assert!(text.contains(&want), "{}", show(&out));
    assert!(text.contains("still running: PID"), "{}", show(&out));
    assert!(!image.exists(), "a refused checkpoint must leave no image");
}

#[test]
fn threads_registers_memory_and_tids_survive() {
    checkpoint_then_restore("threads", &["256"], "THREADS OK");
}

#[test]
fn allocator_state_survives() {
    checkpoint_then_restore("allocator", &[], "ALLOCATOR OK");
}

#[test]
fn one_hundred_consecutive_restores_all_succeed() {
    let (_dir, image, file, pid) = writer_image();
    for n in 1..=100 {
        let out = restore(&image);
        assert!(out.status.success(), "restore {n}: {}", show(&out));
        assert_eq!(pid_in(&out, "post-restore PID: "), pid, "restore {n}");
        wait_gone(pid);
    }
    let text = fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches(" there!\n").count(), 100);
}

#[test]
fn a_taken_pid_is_a_clear_error_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let (_, pid) = checkpoint_payload("threads", &["8"], &image);
    // The first restore holds the PID for about three seconds.
    let first = crac()
        .arg("restore")
        .arg(&image)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "first restore did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = restore(&image);
    assert!(!second.status.success(), "{}", show(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("PID {pid} is taken")),
        "{}",
        show(&second)
    );
    assert!(
        second.stdout.is_empty(),
        "nothing of the image may run: {}",
        show(&second)
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("THREADS OK"),
        "{}",
        show(&first)
    );
}

/// Edits the 64-byte header of `meta.crac` and fixes its own checksum, so
/// only the edited field is wrong.
fn rewrite_header(d: &Path, edit: impl Fn(&mut [u8])) {
    let p = d.join("meta.crac");
    let mut b = fs::read(&p).unwrap();
    edit(&mut b[..64]);
    let crc = crac_image::crc32(0, &b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    fs::write(&p, b).unwrap();
}

/// Damages a copy of an image in one way.
type Damage = Box<dyn Fn(&Path)>;

/// Copies an image directory.
fn copy_image(from: &Path, to: &Path) {
    fs::create_dir(to).unwrap();
    for f in ["meta.crac", "pages.crac"] {
        fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn corrupt_truncated_and_foreign_images_are_refused_and_nothing_runs() {
    let (dir, image, file, pid) = writer_image();
    let too_new = format!(
        "format version 9.{} is not supported",
        crac_image::FORMAT_VERSION.1
    );
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "flipped body byte",
            Box::new(|d: &Path| {
                let p = d.join("meta.crac");
                let mut b = fs::read(&p).unwrap();
                let i = b.len() - 9;
                b[i] ^= 0x40;
                fs::write(&p, b).unwrap();
            }),
            "checksum",
        ),
        (
            "truncated page file",
            Box::new(|d: &Path| {
                let p = d.join("pages.crac");
                let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len - 4096).unwrap();
            }),
            "pages.crac",
        ),
        (
            "flipped page byte",
            Box::new(|d: &Path| {
                let p = d.join("pages.crac");
                let mut b = fs::read(&p).unwrap();
                let i = b.len() - 100;
                b[i] ^= 1;
                fs::write(&p, b).unwrap();
            }),
            // Found when its piece loads: by the restorer or, for private
            // anonymous memory, by the pager (the stack is touched at once).
            "(file bytes 0x",
        ),
        (
            "foreign architecture",
            Box::new(|d: &Path| {
                rewrite_header(d, |h| h[28..32].copy_from_slice(&183u32.to_le_bytes()))
            }),
            "ELF machine 183",
        ),
        (
            "too new a format",
            Box::new(|d: &Path| {
                rewrite_header(d, |h| h[8..10].copy_from_slice(&9u16.to_le_bytes()))
            }),
            &too_new,
        ),
        (
            "not an image",
            Box::new(|d: &Path| fs::write(d.join("meta.crac"), b"#!/bin/sh\necho hi\n").unwrap()),
            "meta.crac",
        ),
        (
            "missing page file",
            Box::new(|d: &Path| fs::remove_file(d.join("pages.crac")).unwrap()),
            "pages.crac",
        ),
    ];
    for (i, (what, damage, expect)) in cases.iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}"));
        copy_image(&image, &bad);
        damage(&bad);
        let out = restore(&bad);
        assert!(!out.status.success(), "{what}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expect),
            "{what}: expected {expect:?} in the error\n{}",
            show(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{what}: nothing may run\n{}",
            show(&out)
        );
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{what}: PID {pid} exists"
        );
    }
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "hello",
        "no damaged image may have run"
    );
    let out = restore(&dir.path().join("no-such-image"));
    assert!(!out.status.success(), "{}", show(&out));
}

#[test]
fn crac_restore_from_restores_instead_of_starting() {
    let (_dir, image, file, pid) = writer_image();
    // Like `java -XX:CRaCRestoreFrom=DIR`: the program's arguments are ignored,
    // the image runs, and the starter exits with its status.
    let out = Command::new(payload("writer"))
        .arg("/nonexistent/ignored")
        .env("CRAC_RESTORE_FROM", &image)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(pid_in(&out, "post-restore PID: "), pid, "{}", show(&out));
    assert_eq!(fs::read_to_string(&file).unwrap(), "hello there!\n");
}

#[test]
fn timers_signals_limits_and_cwd_survive() {
    checkpoint_then_restore("state", &[], "STATE OK");
}

#[test]
fn a_shared_anonymous_mapping_is_refused_by_name_and_the_program_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let out = run_payload("state", &["shared"], &image);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("shared mapping at "))
        .expect("payload prints the mapping address")
        .to_owned();
    assert!(text.contains(&format!("mapping {addr}-")), "{}", show(&out));
    assert!(
        text.contains("is shared memory without a file behind it"),
        "{}",
        show(&out)
    );
    assert!(
        text.contains("after_restore ran 1 time(s); still running"),
        "{}",
        show(&out)
    );
    assert!(!image.exists(), "a failed dump leaves no image");
}

/// A small tmpfs mounted for one test and unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> SmallFs {
        fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root and CAP_SYS_ADMIN"
        );
        SmallFs(at.to_owned())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_checkpoint_leaves_no_image_and_the_program_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let small = SmallFs::mount(&dir.path().join("small"), "2m");
    let image = small.0.join("image");
    let out = Command::new(payload("threads"))
        .arg("16")
        .env("CRAC_CHECKPOINT_TO", &image)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED: checkpoint: checkpoint failed"),
        "{}",
        show(&out)
    );
    assert!(
        text.contains("ENOSPC"),
        "the error names the errno: {}",
        show(&out)
    );
    let left: Vec<_> = fs::read_dir(&small.0).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing may be left on the file system: {left:?}"
    );
}

#[test]
fn a_missing_parent_directory_fails_the_checkpoint_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("no/such/dir/image");
    let out = run_payload(
        "writer",
        &[dir.path().join("out.txt").to_str().unwrap()],
        &image,
    );
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("its parent directory does not exist"),
        "{}",
        show(&out)
    );
    assert!(text.contains("still running"), "{}", show(&out));
}
