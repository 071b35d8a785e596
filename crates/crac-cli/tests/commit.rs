//! Issue 10, cases 8-10: the dump's commit on overlayfs, killed dumps and
//! their leftovers, temporary names another user cannot take.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{self, crac, payload, Dir, Service, TestCommand};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);

/// The warmup service checkpointing to `image`, with `env` set.
fn service(image: &Path, env: &[(&str, &str)]) -> Service {
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("run")
        .arg("--checkpoint-to")
        .arg(image)
        .arg("--")
        .arg(payload("warmup"))
        .args(["--mib", "4"]);
    cmd.env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let s = Service::start(cmd);
    s.wait_for("serving", LONG);
    s
}

/// The entries of `dir` whose names start with `.NAME.` of the image.
fn temp_dirs(image: &Path) -> Vec<PathBuf> {
    let mut prefix = String::from(".");
    prefix.push_str(&image.file_name().unwrap().to_string_lossy());
    prefix.push('.');
    let mut v: Vec<PathBuf> = fs::read_dir(image.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Checkpoints `service` (exits) into `image` and checks the image is its.
fn checkpoint_ok(mut s: Service, image: &Path) {
    let pid = s.pid();
    crac(["checkpoint", &pid.to_string()])
        .ok()
        .stdout_has(&format!("checkpointed process {pid} into"));
    assert!(s.wait_exit(SHORT).success(), "{}", s.dump());
    crac(["inspect", "--verify"])
        .arg(image)
        .ok()
        .stdout_has(&format!("PID {pid}"))
        .stdout_has("checksums   metadata ok, pages ok");
}

/// An overlay mount, unmounted (lazily, so a failing test still cleans
/// up) when dropped.
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    /// Mounts `d/lower` + `d/upper` at `d/merged` with `redirect_dir=off`
    /// (the default of many kernels): a lower directory cannot be renamed.
    fn mount(d: &Dir) -> Overlay {
        for sub in ["upper", "work", "merged"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off",
            d.join("lower").display(),
            d.join("upper").display(),
            d.join("work").display()
        );
        let out = TestCommand::new("mount")
            .arg("-t")
            .arg("overlay")
            .arg("overlay")
            .arg("-o")
            .arg(&opts)
            .arg(d.join("merged"))
            .output();
        assert!(
            out.output.status.success(),
            "this test needs overlayfs (mount -t overlay):\n{}",
            out.dump()
        );
        Overlay {
            merged: d.join("merged"),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
    }
}

/// Case 8: the previous image is a lower directory of an overlay mount,
/// which cannot be renamed (EXDEV): the re-checkpoint still commits.
#[test]
fn re_checkpoint_on_overlayfs_commits() {
    let d = Dir::new();
    let old = d.join("lower").join("image");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("meta.crac"), b"an older image").unwrap();
    fs::write(old.join("pages.crac"), b"its pages").unwrap();
    let ovl = Overlay::mount(&d);
    let image = ovl.merged.join("image");

    checkpoint_ok(service(&image, &[]), &image);
    assert_eq!(temp_dirs(&image), Vec::<PathBuf>::new());
    // The lower layer is never written.
    assert_eq!(fs::read(old.join("meta.crac")).unwrap(), b"an older image");
    // And again, now that the image is in the upper layer.
    checkpoint_ok(service(&image, &[]), &image);
    assert_eq!(temp_dirs(&image), Vec::<PathBuf>::new());
}

/// Case 9: a dump killed before its commit leaves its temporary directory;
/// `inspect` of the parent reports it, and the next checkpoint of the
/// image, by another process, removes it.
#[test]
fn a_killed_dump_is_cleaned_up_by_the_next_checkpoint() {
    let d = Dir::new();
    let image = d.join("image");
    let mut s = service(&image, &[("CRAC_FAULT", "kill-before-commit")]);
    let pid = s.pid();
    crac(["checkpoint", &pid.to_string()])
        .fails_with(1)
        .stderr_has(&format!(
            "process {pid} ended during the checkpoint without reporting an outcome"
        ));
    assert_eq!(s.wait_exit(SHORT).code(), None, "{}", s.dump());
    assert!(!image.exists(), "{}", d.listing());
    let left = temp_dirs(&image);
    assert_eq!(left.len(), 1, "{}", d.listing());
    assert!(left[0].join("pages.crac").metadata().unwrap().len() > 4 << 20);
    crac(["inspect"])
        .arg(d.path())
        .ok()
        .stdout_has(&format!("leftover    {}", left[0].display()))
        .stdout_has("left by a checkpoint that was killed");

    let next = service(&image, &[]);
    assert_ne!(next.pid(), pid);
    checkpoint_ok(next, &image);
    assert_eq!(temp_dirs(&image), Vec::<PathBuf>::new(), "{}", d.listing());
}

/// Case 9, without a fault hook: SIGKILL while the process writes a big
/// image. The dead dump's lock is gone with it, so the next checkpoint of
/// the image removes the partial directory.
#[test]
fn sigkill_while_writing_leaves_nothing_behind_the_next_checkpoint() {
    let d = Dir::new();
    let image = d.join("image");
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("run")
        .arg("--checkpoint-to")
        .arg(&image)
        .arg("--")
        .arg(payload("warmup"))
        .args(["--mib", "96"]);
    cmd.env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM");
    let mut s = Service::start(cmd);
    s.wait_for("serving", LONG);
    let pid = s.pid();
    let mut cli = Command::new(util::crac_exe())
        .args(["checkpoint", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as its pages file has data.
    let started = Instant::now();
    loop {
        let writing = temp_dirs(&image)
            .iter()
            .any(|t| fs::metadata(t.join("pages.crac")).is_ok_and(|m| m.blocks() > 0));
        if writing {
            break;
        }
        assert!(started.elapsed() < LONG, "{}", d.listing());
        std::thread::sleep(Duration::from_millis(1));
    }
    s.signal(rustix::process::Signal::KILL);
    assert_eq!(s.wait_exit(SHORT).code(), None);
    let _ = cli.wait();
    assert!(!image.join("meta.crac").exists(), "{}", d.listing());
    assert_eq!(temp_dirs(&image).len(), 1, "{}", d.listing());

    checkpoint_ok(service(&image, &[]), &image);
    assert_eq!(temp_dirs(&image), Vec::<PathBuf>::new(), "{}", d.listing());
}

/// Case 9: killed after the new image was swapped in, before it could say
/// so: `crac checkpoint` reports the commit (not "ended without an
/// outcome"), the image restores, and the stranded old image is removed by
/// the next checkpoint.
#[test]
fn a_dump_killed_after_its_commit_is_reported_committed() {
    let d = Dir::new();
    let image = d.join("image");
    let mut s = service(&image, &[("CRAC_FAULT", "kill-after-swap")]);
    let pid = s.pid();
    // The first checkpoint finds no image: a plain rename, no fault.
    crac(["checkpoint", &pid.to_string(), "--leave-running"])
        .ok()
        .stdout_has("keeps running");
    let first = fs::metadata(&image).unwrap().ino();
    crac(["checkpoint", &pid.to_string()])
        .ok()
        .stdout_has(&format!("checkpointed process {pid} into"))
        .stdout_has("the process ended before reporting it, but the image is committed");
    assert_eq!(s.wait_exit(SHORT).code(), None, "{}", s.dump());
    assert_ne!(fs::metadata(&image).unwrap().ino(), first);
    crac(["inspect", "--verify"])
        .arg(&image)
        .ok()
        .stdout_has("checksums   metadata ok, pages ok")
        .stdout_has("leftover    ");
    assert_eq!(temp_dirs(&image).len(), 1, "{}", d.listing());

    // It restores.
    let mut restore = Command::new(util::crac_exe());
    // The restored process would fault again: the image holds its
    // environment.
    restore
        .arg("restore")
        .arg(&image)
        .args(["--env", "CRAC_FAULT=none"]);
    let mut restored = Service::start(restore);
    restored.also_end(pid, &payload("warmup"));
    restored.wait_for("restored in", LONG);
    // Its checkpoint clears the stranded old image.
    crac(["checkpoint", &pid.to_string(), "--leave-running"])
        .ok()
        .stdout_has("keeps running");
    assert_eq!(temp_dirs(&image), Vec::<PathBuf>::new(), "{}", d.listing());
}

/// Case 10: in a shared (sticky, world-writable) directory, another user
/// creates every temporary name the old scheme would use (the PIDs to
/// come) and one of the new pattern: a non-root process's checkpoint still
/// succeeds, and the other user's directories are left alone.
#[test]
fn squatted_temporary_names_do_not_block_a_checkpoint() {
    let d = Dir::new();
    let shared = d.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let bin = d.join("bin");
    fs::create_dir(&bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    for (name, from) in [("crac", util::crac_exe()), ("writer", payload("writer"))] {
        fs::copy(from, bin.join(name)).unwrap();
        fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The squatter, uid 65533: the next 3000 PIDs and a random-looking name.
    let last: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut script = String::from("cd \"$1\" && for i in $(seq $2 $3); do mkdir .image.tmp-$i .image.old-$i; done; mkdir .image.tmp-0123456789abcdef");
    script.push_str(" && echo squatted");
    let out = TestCommand::new("/usr/bin/setpriv")
        .arg("--reuid=65533")
        .arg("--regid=65533")
        .arg("--clear-groups")
        .arg("sh")
        .arg("-c")
        .arg(&script)
        .arg("sh")
        .arg(&shared)
        .arg((last + 1).to_string())
        .arg((last + 3000).to_string())
        .ok();
    out.stdout_has("squatted");
    let squatted = temp_dirs(&shared.join("image")).len();
    assert_eq!(squatted, 6001);

    // uid 65534 checkpoints into the shared directory.
    let image = shared.join("image");
    let started = Instant::now();
    TestCommand::new("/usr/bin/setpriv")
        .arg("--reuid=65534")
        .arg("--regid=65534")
        .arg("--clear-groups")
        .arg(bin.join("crac"))
        .arg("run")
        .arg("--checkpoint-to")
        .arg(&image)
        .arg("--")
        .arg(bin.join("writer"))
        .arg(shared.join("out.txt"))
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .ok()
        .stdout_has("pre-checkpoint PID: ");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fs::metadata(image.join("meta.crac")).unwrap().uid(), 65534);
    // Nothing of the squatter's was removed, nothing of ours is left.
    let left = temp_dirs(&image);
    assert_eq!(left.len(), squatted);
    assert!(left.iter().all(|p| fs::metadata(p).unwrap().uid() == 65533));
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has("uid 65533): left by a checkpoint that was killed; not removed");
}

/// Case 11: a secret given with `--env-file` reaches the restored process
/// but is in neither `/proc/PID/cmdline` (readable by every user) nor
/// `/proc/PID/environ` of `crac restore`; unsafe files are refused at once.
#[test]
fn env_file_secrets_stay_out_of_proc() {
    let d = Dir::new();
    let image = d.join("image");
    let s = service(&image, &[]);
    let pid = s.pid();
    checkpoint_ok(s, &image);

    let secret = format!("s3cret-{}", std::process::id());
    let file = d.join("env");
    fs::write(
        &file,
        format!("# the database\nCRAC_DEMO_GREETING={secret}\n"),
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let mut restore = Command::new(util::crac_exe());
    restore
        .arg("restore")
        .arg(&image)
        .arg("--env-file")
        .arg(&file);
    let mut restored = Service::start(restore);
    restored.also_end(pid, &payload("warmup"));
    restored.wait_for("restored in", LONG);
    restored.wait_for(&format!("greeting: {secret}"), SHORT);
    for p in [restored.pid(), pid] {
        for what in ["cmdline", "environ"] {
            let text = fs::read(format!("/proc/{p}/{what}")).unwrap();
            let text = String::from_utf8_lossy(&text);
            assert!(
                !text.contains(&secret) || (p == pid && what == "environ"),
                "secret in /proc/{p}/{what}: {text:?}"
            );
        }
    }

    // Refused before anything runs, quickly, without echoing a value.
    let refused = |path: &Path, why: &str| {
        let started = Instant::now();
        let out = crac(["restore"])
            .arg(&image)
            .arg("--env-file")
            .arg(path)
            .fails_with(1);
        out.stderr_has(why);
        assert!(!out.stderr().contains(&secret), "{}", out.dump());
        assert!(started.elapsed() < Duration::from_secs(5));
    };
    let link = d.join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    refused(&link, "cannot read environment file");
    let fifo = d.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    refused(&fifo, "is not a regular file");
    let open = d.join("open");
    fs::write(&open, "A=1\n").unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o666)).unwrap();
    refused(&open, "writable by no one else");
    let bad = d.join("bad");
    fs::write(&bad, format!("A=1\n{secret}\n")).unwrap();
    refused(&bad, "line 2: expected KEY=VALUE");
}

/// A child with PID `pid` through `clone3` `set_tid`, as a restore makes
/// it; it fails its exec on purpose and exits at once.
fn spawn_with_pid(pid: u32, report: &fs::File) -> Result<i32, crac_sys::Errno> {
    use std::os::fd::AsRawFd;
    let child = crac_sys::raw::ExecChild {
        fds: &[],
        close_from: 3,
        exec_fd: -1,
        argv: &[c"crac-test"],
        envp: &[],
        fail_fd: report.as_raw_fd(),
        fail_record: &[0; 16],
        fail_errno_at: 0,
        fail_step_at: 8,
        new_session: false,
    };
    crac_sys::commit::retry_taken(|| crac_sys::raw::spawn_exec_with_pid(pid as i32, &child))
}

fn reap(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
}

/// Case 12: a PID (or TID) preflight saw free may still be held by a
/// process that has died but is not reaped yet; creating it is retried
/// briefly, and given up quickly when it stays taken.
#[test]
fn a_pid_still_held_by_a_dead_process_is_retried() {
    let devnull = fs::File::options().write(true).open("/dev/null").unwrap();
    // Ended, not reaped: its PID is taken (EEXIST), though no process runs.
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    util::wait_dead(pid, SHORT);
    let reaper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        dead.wait().unwrap();
    });
    let started = Instant::now();
    let got = spawn_with_pid(pid, &devnull);
    let took = started.elapsed();
    reaper.join().unwrap();
    if let Ok(p) = got {
        reap(p);
    }
    assert_eq!(got, Ok(pid as i32), "after {took:?}");
    assert!(took >= Duration::from_millis(20), "{took:?}");

    // A PID that stays taken is given up after about 100 ms.
    let mut live = Command::new("sleep").arg("10").spawn().unwrap();
    let started = Instant::now();
    let got = spawn_with_pid(live.id(), &devnull);
    let took = started.elapsed();
    live.kill().unwrap();
    live.wait().unwrap();
    assert_eq!(got, Err(crac_sys::Errno::EEXIST));
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(2),
        "{took:?}"
    );
}
