//! Unit tests of the pause engine: the protocol, and the checks that keep
//! another user's directory, files and socket out.

use super::*;
use std::os::unix::fs::MetadataExt;
use std::thread;

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

#[test]
fn message_round_trips() {
    let entries = env(&[("A", "1"), ("B", "x=y"), ("EMPTY", "")]);
    let bytes = encode(42, &entries);
    let (started, decoded) = decode(&mut bytes.as_slice()).unwrap();
    assert_eq!(started, 42);
    assert_eq!(decoded, entries);
}

#[test]
fn malformed_messages_are_refused() {
    let good = encode(1, &env(&[("A", "1")]));
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(
        decode(&mut bad_magic.as_slice()).unwrap_err().to_string(),
        "bad magic"
    );
    let truncated = &good[..good.len() - 1];
    assert_eq!(
        decode(&mut &truncated[..]).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
    let mut no_eq = encode(1, &[]);
    no_eq.truncate(no_eq.len() - 4);
    no_eq.extend_from_slice(&1u32.to_le_bytes());
    no_eq.extend_from_slice(&1u32.to_le_bytes());
    no_eq.push(b'A');
    assert_eq!(
        decode(&mut no_eq.as_slice()).unwrap_err().to_string(),
        "entry without '='"
    );
}

#[test]
fn wake_rejects_invalid_entries_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let err = wake(dir.path(), &env(&[("A=B", "1")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid environment entry \"A=B\": the key contains '='"
    );
    let err = wake(dir.path(), &env(&[("", "1")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid environment entry \"\": the key is empty"
    );
}

#[test]
fn wake_without_a_paused_process_fails() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!is_pause_image(dir.path()));
    let err = wake(dir.path(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a pause image (no pause.sock)",
            dir.path().display()
        )
    );
}

#[test]
fn stale_socket_gives_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap());
    fs::write(
        dir.path().join(PID_FILE),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    assert!(is_pause_image(dir.path()));
    let err = wake(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PauseError::Connect { .. }), "{err:?}");
}

#[test]
fn pause_and_wake_round_trip() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("image");
    let paused = {
        let dir = dir.clone();
        thread::spawn(move || pause(&dir))
    };
    while !dir.join(PID_FILE).exists() {
        thread::sleep(Duration::from_millis(5));
    }
    let mode = fs::metadata(&dir).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(is_pause_image(&dir));

    // A malformed message does not end the pause.
    let mut junk = UnixStream::connect(dir.join(SOCKET_FILE)).unwrap();
    junk.write_all(b"JUNKJUNKJUNK").unwrap();
    let mut answer = [0u8; 2];
    junk.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"NO");

    let pid = wake(&dir, &env(&[("CRAC_WOKEN", "yes")])).unwrap();
    assert_eq!(pid, std::process::id());
    let facts = paused.join().unwrap().unwrap();
    assert_eq!(facts.env, env(&[("CRAC_WOKEN", "yes")]));
    assert!(facts.resumed_unix_ns >= facts.restore_started_unix_ns);
    assert!(!is_pause_image(&dir), "the socket is removed after waking");
    assert!(dir.join(PID_FILE).exists());
}

#[test]
fn pause_needs_the_parent_directory() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("missing").join("image");
    let err = pause(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot create image directory {}", dir.display())
    );
}

/// A root-owned file outside the image directory that must stay untouched.
fn target_file(parent: &Path) -> PathBuf {
    let target = parent.join("target.txt");
    fs::write(&target, "original\n").unwrap();
    target
}

#[test]
fn pause_refuses_a_directory_of_another_user() {
    let parent = tempfile::tempdir().unwrap();
    let target = target_file(parent.path());
    let dir = parent.path().join("image");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&target, dir.join(".pid.tmp")).unwrap();
    std::os::unix::fs::lchown(dir.join(".pid.tmp"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let err = pause(&dir).unwrap_err();
    let euid = rustix::process::geteuid().as_raw();
    assert_eq!(
        err.to_string(),
        format!(
            "image directory {} belongs to uid 65534, not to uid {euid}: another user's \
             directory is not used",
            dir.display()
        )
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "original\n");
    assert!(!dir.join(SOCKET_FILE).exists() && !dir.join(PID_FILE).exists());
}

#[test]
fn pause_refuses_a_directory_others_may_write_to() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("image");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let err = pause(&dir).unwrap_err();
    assert!(
        matches!(err, PauseError::WritableDir { mode: 0o777, .. }),
        "{err}"
    );
    // A symlink in place of the directory is not followed either.
    let link = parent.path().join("link");
    std::os::unix::fs::symlink(parent.path(), &link).unwrap();
    let err = pause(&link).unwrap_err();
    assert!(matches!(err, PauseError::OpenDir { .. }), "{err}");
}

#[test]
fn planted_symlinks_in_an_own_directory_are_not_followed() {
    let parent = tempfile::tempdir().unwrap();
    let target = target_file(parent.path());
    let dir = parent.path().join("image");
    fs::create_dir(&dir).unwrap();
    for name in [".pid.tmp", PID_FILE] {
        std::os::unix::fs::symlink(&target, dir.join(name)).unwrap();
    }
    let paused = {
        let dir = dir.clone();
        thread::spawn(move || pause(&dir))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !fs::symlink_metadata(dir.join(PID_FILE)).is_ok_and(|m| m.is_file()) {
        assert!(std::time::Instant::now() < deadline, "never paused");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(wake(&dir, &[]).unwrap(), std::process::id());
    paused.join().unwrap().unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "original\n");
    assert_eq!(
        fs::read_to_string(dir.join(PID_FILE)).unwrap(),
        format!("{}\n", std::process::id())
    );
}

/// A directory with a live listener (this process) and `pid` as given.
fn squatted(pid_file: impl FnOnce(&Path)) -> (tempfile::TempDir, UnixListener) {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap();
    listener.set_nonblocking(true).unwrap();
    pid_file(&dir.path().join(PID_FILE));
    (dir, listener)
}

#[test]
fn wake_refuses_pid_files_that_are_no_regular_files() {
    let (dir, _l) = squatted(|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap());
    let err = wake(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, PauseError::ReadPid { .. }), "{err}");
    let (dir, _l) =
        squatted(|p| rustix::fs::mknodat(CWD, p, FileType::Fifo, Mode::RUSR, 0).unwrap());
    let err = wake(dir.path(), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/pid is not a regular file but a FIFO",
            dir.path().display()
        )
    );
    let (dir, _l) = squatted(|p| fs::write(p, "1".repeat(4096)).unwrap());
    let err = wake(dir.path(), &[]).unwrap_err();
    assert!(
        matches!(err, PauseError::PidTooLarge { size: 4096, .. }),
        "{err}"
    );
}

#[test]
fn wake_sends_nothing_to_a_socket_another_process_serves() {
    // The pid file names init (root, running); the listener is this process.
    let (dir, listener) = squatted(|p| fs::write(p, "1\n").unwrap());
    let env = env(&[("SECRET", "x")]);
    let err = wake(dir.path(), &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/pause.sock is served by process {} (uid 0), not by the paused process 1 (uid \
             0): nothing was sent",
            dir.path().display(),
            std::process::id()
        )
    );
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_nonblocking(false).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "received {got:?}");

    // A pid file of another uid than the process it names.
    let (dir, _l) = squatted(|p| {
        fs::write(p, format!("{}\n", std::process::id())).unwrap();
        std::os::unix::fs::chown(p, Some(65534), None).unwrap();
    });
    let err = wake(dir.path(), &env).unwrap_err();
    assert!(
        matches!(err, PauseError::ForeignFile { owner: 65534, .. }),
        "{err}"
    );
}
