//! End-to-end tests of the restore side on real processes: a payload from
//! `tests/payloads` checkpoints itself with the native engine, then
//! `crac_engine::restore` brings it back.
//!
//! The restored process writes to the restoring process's stdout, so each
//! restore runs in a helper: this test binary re-executed with the
//! [`restore_helper`] test selected and `CRAC_TEST_RESTORE_DIR` set, its
//! output captured. The payloads must be built first
//! (`cargo build --workspace --all-targets`, as `scripts/test.sh` does).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crac_engine::restore::{preflight, restore, wait_and_forward, RestoreError, RestoreOptions};

/// Restores `CRAC_TEST_RESTORE_DIR` (with `CRAC_TEST_RESTORE_ENV=K=V` handed
/// to the program) and exits like the restored process did. Does nothing
/// when run as an ordinary test.
#[test]
fn restore_helper() {
    let Some(dir) = std::env::var_os("CRAC_TEST_RESTORE_DIR") else {
        return;
    };
    let mut opts = RestoreOptions::default();
    if let Ok(kv) = std::env::var("CRAC_TEST_RESTORE_ENV") {
        let (k, v) = kv.split_once('=').unwrap();
        opts.env.push((OsString::from(k), OsString::from(v)));
    }
    match restore(&dir, opts) {
        Ok(r) => {
            eprintln!("HELPER restored {} threads in {:?}", r.threads, r.elapsed);
            let st = wait_and_forward(r.pid).unwrap();
            match st.signal() {
                Some(sig) => std::process::exit(128 + sig),
                None => std::process::exit(st.code().unwrap_or(99)),
            }
        }
        Err(e) => {
            eprintln!("HELPER error: {e}");
            std::process::exit(90);
        }
    }
}

fn payload(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        p.exists(),
        "payload {} is missing: run `cargo build --workspace --all-targets` first",
        p.display()
    );
    p
}

fn show(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn restore_in_helper(image: &Path, env: Option<&str>) -> Output {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "restore_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CRAC_TEST_RESTORE_DIR", image)
    .stdin(Stdio::null());
    if let Some(kv) = env {
        c.env("CRAC_TEST_RESTORE_ENV", kv);
    }
    c.output().unwrap()
}

fn pid_in(out: &Output, prefix: &str) -> u32 {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, r)| r))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} line\n{}", show(out)))
}

fn wait_gone(pid: u32) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "PID {pid} still exists"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checkpoints `engine_smoke` into `dir/image`; returns the image and PID.
fn smoke_image(dir: &Path) -> (PathBuf, u32) {
    let image = dir.join("image");
    let out = Command::new(payload("engine_smoke"))
        .arg(&image)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_in(&out, "pre-checkpoint PID: ");
    wait_gone(pid);
    (image, pid)
}

#[test]
fn smoke_payload_comes_back_with_its_pid_memory_threads_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let (image, pid) = smoke_image(dir.path());

    let plan = preflight(&image).unwrap();
    assert_eq!(plan.pid, pid);
    assert_eq!(plan.tids.len(), 2, "{plan:?}");
    assert!(
        plan.files.iter().any(|f| f.ends_with("engine_smoke")),
        "{plan:?}"
    );

    for round in 0..3 {
        let out = restore_in_helper(&image, Some("CRAC_TEST_VALUE=round"));
        assert!(out.status.success(), "round {round}: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(pid_in(&out, "post-restore PID: "), pid, "{}", show(&out));
        assert!(text.contains("checksum ok: true"), "{}", show(&out));
        assert!(
            text.contains("CRAC_TEST_VALUE"),
            "the env must reach the program\n{}",
            show(&out)
        );
        let ticks = pid_in(&out, "ticks advanced: ");
        assert!(
            ticks > 5,
            "the second thread must run after restore\n{}",
            show(&out)
        );
        wait_gone(pid);
    }
}

#[test]
fn threads_payload_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let out = Command::new(payload("threads"))
        .arg("32")
        .env("CRAC_CHECKPOINT_TO", &image)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_in(&out, "pre-checkpoint PID: ");
    wait_gone(pid);
    let plan = preflight(&image).unwrap();
    assert!(plan.tids.len() >= 8, "{plan:?}");
    let out = restore_in_helper(&image, None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("THREADS OK"),
        "{}",
        show(&out)
    );
    assert_eq!(pid_in(&out, "post-restore PID: "), pid);
}

#[test]
fn a_changed_executable_is_a_preflight_problem() {
    let dir = tempfile::tempdir().unwrap();
    // Checkpoint a copy of the payload, then change the copy.
    let exe = dir.path().join("engine_smoke");
    std::fs::copy(payload("engine_smoke"), &exe).unwrap();
    let image = dir.path().join("image");
    let out = Command::new(&exe)
        .arg(&image)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_in(&out, "pre-checkpoint PID: ");
    wait_gone(pid);
    let mut f = std::fs::OpenOptions::new().append(true).open(&exe).unwrap();
    std::io::Write::write_all(&mut f, b"changed").unwrap();
    drop(f);
    let err = preflight(&image).unwrap_err();
    let RestoreError::Preflight { problems, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains(&*exe.to_string_lossy())),
        "{err}"
    );
    assert!(
        err.to_string().contains("changed since the checkpoint"),
        "{err}"
    );
    let out = restore_in_helper(&image, None);
    assert_eq!(out.status.code(), Some(90), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("post-restore"),
        "nothing may run\n{}",
        show(&out)
    );
}

#[test]
fn allocator_payload_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let out = Command::new(payload("allocator"))
        .env("CRAC_CHECKPOINT_TO", &image)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let pid = pid_in(&out, "pre-checkpoint PID: ");
    wait_gone(pid);
    let out = restore_in_helper(&image, None);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ALLOCATOR OK"),
        "{}",
        show(&out)
    );
    wait_gone(pid);
}
