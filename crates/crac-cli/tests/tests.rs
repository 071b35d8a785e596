//! The `crac` command's integration tests: every subcommand on real
//! processes and images, including the texts of its failures.
//!
//! One test binary (ripgrep style): helpers in `util`, the native engine's
//! end-to-end tests in `native`.

mod commit;
mod compress;
mod control;
mod creds;
mod fds;
mod fds_file;
mod fds_sock;
mod identity;
mod inherit;
mod lazy;
mod lifecycle;
mod live;
mod native;
mod native_c;
mod pause_attacks;
mod pidns;
mod pieces;
mod policies;
mod python;
mod reader;
mod rootless;
mod tokio_svc;
mod uniqueness;
mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rustix::process::Signal;
use util::{crac, payload, wait_dead, wait_gone, Dir, Service, TestCommand};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);

/// Starts the demo service with a small cache and waits until it serves.
fn warmup(dir: &Path, engine: Option<&str>, extra: &[&str]) -> Service {
    let mut args = vec!["--mib", "4"];
    args.extend_from_slice(extra);
    let service = Service::crac_run(dir, engine, "warmup", &args);
    service.wait_for("serving", LONG);
    service
}

/// The PID an image restores with, as `crac inspect --json` tells it.
fn image_pid(image: &Path) -> u32 {
    let json: serde_json::Value =
        serde_json::from_str(&crac(["inspect", "--json"]).arg(image).ok().stdout()).unwrap();
    json["process"]["pid"].as_u64().unwrap() as u32
}

/// Makes an image of the classic writer example (it checkpoints itself).
fn writer_image(d: &Dir) -> std::path::PathBuf {
    let image = d.join("image");
    crac(["run", "--checkpoint-to"])
        .arg(&image)
        .arg("--")
        .arg(payload("writer"))
        .arg(d.join("out.txt"))
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .show_dir(d)
        .ok()
        .stdout_has("pre-checkpoint PID: ");
    assert!(image.join("meta.crac").exists(), "{}", d.listing());
    image
}

/// `crac` run as user nobody (uid 65534, no capabilities) through
/// `setpriv`, from a copy nobody may execute; keep the `Dir` alive.
fn crac_as_nobody() -> (Dir, TestCommand) {
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "this test needs setpriv (util-linux)"
    );
    let bin = Dir::new();
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.join("crac");
    fs::copy(util::crac_exe(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = TestCommand::new("/usr/bin/setpriv");
    cmd.arg("--reuid=65534")
        .arg("--regid=65534")
        .arg("--clear-groups")
        .arg(&exe);
    (bin, cmd)
}

fn flip_byte(path: &Path, from_end: usize) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() - from_end;
    b[i] ^= 0x40;
    fs::write(path, b).unwrap();
}

// ---- crac run ----

#[test]
fn run_becomes_the_program_with_the_configuration_set() {
    let d = Dir::new();
    let mut cmd = Command::new(util::crac_exe());
    cmd.current_dir(d.path())
        .args([
            "run",
            "--checkpoint-to",
            "img-%p",
            "--engine",
            "simulate",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "echo pid=$$; echo to=$CRAC_CHECKPOINT_TO; echo engine=$CRAC_ENGINE",
        ]);
    let mut s = Service::start(cmd);
    let pid = s.pid();
    assert!(s.wait_exit(SHORT).success(), "{}", s.dump());
    let out = s.stdout_lines();
    assert_eq!(out[0], format!("pid={pid}"), "same PID: {}", s.dump());
    assert_eq!(
        out[1],
        format!("to={}", d.join("img-%p").display()),
        "made absolute"
    );
    assert_eq!(out[2], "engine=simulate");
}

#[test]
fn run_failures_are_explained() {
    let out = crac([
        "run",
        "--checkpoint-to",
        "/tmp/x",
        "--",
        "/nonexistent/program",
    ])
    .fails_with(1);
    assert_eq!(
        out.stderr(),
        "error: cannot run /nonexistent/program\n  caused by: No such file or directory (os error 2)\n",
        "{}",
        out.dump()
    );
    crac([
        "run",
        "--checkpoint-to",
        "/nonexistent/dir/img",
        "--",
        "true",
    ])
    .fails_with(1)
    .stderr_has(
        "error: the image directory /nonexistent/dir/img cannot be created: its parent \
             directory does not exist",
    );
    crac(["run", "--", "true"])
        .env_remove("CRAC_CHECKPOINT_TO")
        .fails_with(2)
        .stderr_has("--checkpoint-to <DIR>");
}

// ---- crac checkpoint + crac restore (native engine) ----

#[test]
fn checkpoint_from_outside_then_restore_warm_with_new_env() {
    let d = Dir::new();
    let image = d.join("image");
    let mut service = warmup(&image, None, &[]);
    let pid = service.pid();
    service.wait_for("request 1:", LONG);

    let out = crac(["checkpoint", &pid.to_string()]).show_dir(&d).ok();
    out.stdout_has(&format!(
        "checkpointed process {pid} into {}",
        image.display()
    ))
    .stdout_has("the process exited");
    // The hooks ran in the process, which then ended once its image was durable.
    service.wait_for("checkpointing after", SHORT);
    assert!(service.wait_exit(SHORT).success(), "{}", service.dump());
    assert!(image.join("meta.crac").exists() && image.join("pages.crac").exists());

    // The image describes the process.
    let out = crac(["inspect"]).arg(&image).arg("--verify").ok();
    out.stdout_has(&format!("PID {pid}"))
        .stdout_has("warmup")
        .stdout_has("crac-control")
        .stdout_has("(made the checkpoint)")
        .stdout_has("restore     possible here")
        .stdout_has("checksums   metadata ok, pages ok");
    let json: serde_json::Value =
        serde_json::from_str(&crac(["inspect", "--json"]).arg(&image).ok().stdout()).unwrap();
    assert_eq!(json["inspect_version"], 1);
    assert_eq!(json["process"]["pid"], pid);
    assert_eq!(json["restore"]["possible"], true, "{json:#}");
    assert_eq!(json["checksums"]["pages"], "not-checked");
    let threads = json["threads"].as_array().unwrap();
    assert!(threads.iter().any(|t| t["tid"] == pid));
    assert!(threads
        .iter()
        .any(|t| t["name"] == "crac-control" && t["dumper"] == true));
    let files = json["files_here"].as_array().unwrap();
    assert!(!files.is_empty());
    assert!(files.iter().all(|f| f["matches"] == true), "{json:#}");

    // Restore it, warm, with a new environment value.
    let mut restore = Command::new(util::crac_exe());
    restore
        .arg("restore")
        .arg(&image)
        .args(["--env", "CRAC_DEMO_GREETING=hello again"]);
    let mut restored = Service::start(restore);
    restored.also_end(pid, &payload("warmup"));
    restored.wait_for("restored in", LONG);
    restored.wait_for("greeting: hello again", SHORT);
    let n = restored.stdout_lines().len();
    restored.wait_for_after("request ", n, SHORT);
    assert!(util::alive(pid), "{}", restored.dump());

    // The control channel is open again in the restored process.
    crac(["checkpoint", &pid.to_string(), "--leave-running"])
        .ok()
        .stdout_has("the process keeps running");
    restored.wait_for_after("checkpointing after", n, SHORT);
    let n = restored.stdout_lines().len();
    restored.wait_for_after("request ", n, SHORT);

    // A signal that ends the restored process ends `crac restore` the same way.
    util::signal_pid(pid, Signal::TERM);
    let status = restored.wait_exit(SHORT);
    assert_eq!(status.signal(), Some(15), "{}", restored.dump());
}

#[test]
fn leave_running_keeps_the_process_and_its_pid_blocks_a_restore() {
    let d = Dir::new();
    let image = d.join("image");
    let mut service = warmup(&image, None, &[]);
    let pid = service.pid();
    crac(["checkpoint", &pid.to_string(), "--leave-running"])
        .show_dir(&d)
        .ok()
        .stdout_has("the process keeps running");
    let n = service.stdout_lines().len();
    service.wait_for_after("request ", n, SHORT);
    assert!(service.is_running());
    assert!(image.join("meta.crac").exists());

    // The original still holds the PID: inspect and restore say so.
    let taken = format!("PID {pid} is taken by process {pid}");
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has("restore     NOT possible here")
        .stdout_has(&taken);
    let out = crac(["restore"]).arg(&image).fails_with(1);
    out.stderr_has(&format!("error: cannot restore {}", image.display()))
        .stderr_has(&taken);
    assert!(out.stdout().is_empty(), "{}", out.dump());

    // Checkpointing again works (the channel reopened after the first).
    crac(["checkpoint", &pid.to_string(), "--leave-running"])
        .ok()
        .stdout_has("keeps running");
    assert!(service.is_running(), "{}", service.dump());
}

#[test]
fn detached_restore_leaves_the_process_running_on_its_own() {
    let d = Dir::new();
    let image = d.join("image");
    let mut service = warmup(&image, None, &[]);
    let pid = service.pid();
    crac(["checkpoint", &pid.to_string()]).ok();
    service.wait_exit(SHORT);
    // The detached process keeps crac's standard streams: send them to a
    // file, since a pipe would stay open as long as it runs.
    let log = d.join("restore.log");
    let file = fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let status = Command::new(util::crac_exe())
        .arg("restore")
        .arg("--detach")
        .arg(&image)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let text = || fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{}", text());
    assert!(
        text().contains(&format!("restored process {pid}")),
        "{}",
        text()
    );
    assert!(
        text().contains(&format!("process {pid} runs on its own")),
        "{}",
        text()
    );
    assert!(util::alive(pid), "{}", text());
    // It runs on its own: it serves on.
    let t = std::time::Instant::now();
    while !text().contains("restored in") {
        assert!(t.elapsed() < SHORT, "{}", text());
        std::thread::sleep(Duration::from_millis(20));
    }
    util::end_if_runs(pid, &payload("warmup"));
    wait_dead(pid, SHORT);
}

/// Large enough for the restorer's byte progress records (64 MiB of pages):
/// with standard error not a terminal, no spinner or bar is drawn.
#[test]
fn no_progress_bar_unless_standard_error_is_a_terminal() {
    let d = Dir::new();
    let image = d.join("image");
    let args = ["--mib", "96"];
    let mut service = Service::crac_run(&image, None, "warmup", &args);
    service.wait_for("serving", LONG);
    let pid = service.pid();
    let drawn = |text: &str| text.contains('\r') || text.contains('\x1b') || text.contains(" of ");
    let out = crac(["checkpoint", &pid.to_string()]).ok();
    assert!(!drawn(&out.stderr()), "{}", out.dump());
    service.wait_exit(SHORT);
    let stored = fs::metadata(image.join("pages.crac")).unwrap().len();
    assert!(stored >= 64 << 20, "{stored}");
    let log = d.join("restore.log");
    let file = fs::File::create(&log).unwrap();
    let status = Command::new(util::crac_exe())
        .arg("restore")
        .arg("--detach")
        .arg(&image)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    let text = fs::read_to_string(&log).unwrap();
    util::end_if_runs(pid, &payload("warmup"));
    wait_dead(pid, SHORT);
    assert!(status.success(), "{text}");
    assert!(
        text.starts_with(&format!("restored process {pid} ")),
        "{text}"
    );
    assert!(!drawn(&text), "{text}");
}

#[test]
fn an_open_file_refuses_the_checkpoint_and_the_process_goes_on() {
    let d = Dir::new();
    let image = d.join("image");
    let file = d.join("held-open.log");
    let mut service = warmup(&image, None, &["--open", file.to_str().unwrap()]);
    let pid = service.pid();
    let out = crac(["checkpoint", &pid.to_string()])
        .show_dir(&d)
        .fails_with(1);
    out.stderr_has(&format!(
        "error: process {pid} was not checkpointed and goes on running\n  caused by: checkpoint \
         failed: file descriptor "
    ))
    .stderr_has(&format!(
        "is open: {} (regular file, deleted)",
        file.display()
    ));
    assert!(out.stdout().is_empty(), "{}", out.dump());
    // Still running, still serving; no image.
    let n = service.stdout_lines().len();
    service.wait_for_after("request ", n, SHORT);
    assert!(service.is_running(), "{}", service.dump());
    assert!(!image.exists(), "{}", d.listing());
}

#[test]
fn a_process_without_control_channel_is_not_crac_enabled() {
    let mut sleeper = Service::start({
        let mut c = Command::new("sleep");
        c.arg("60");
        c
    });
    let pid = sleeper.pid();
    let out = crac(["checkpoint", &pid.to_string()]).fails_with(1);
    assert_eq!(
        out.stderr(),
        format!(
            "error: process {pid} is not crac-enabled (no control channel): start it with `crac \
             run` or set CRAC_CHECKPOINT_TO\n"
        ),
        "{}",
        out.dump()
    );
    assert!(sleeper.is_running());

    let out = crac(["checkpoint", "4000000"]).fails_with(1);
    assert_eq!(out.stderr(), "error: there is no process 4000000\n");
    crac(["checkpoint", "not-a-pid"]).fails_with(2);
}

#[test]
fn the_control_channel_refuses_another_uid() {
    let d = Dir::new();
    let image = d.join("image");
    let mut service = warmup(&image, None, &[]);
    let pid = service.pid();
    let (_bin, mut as_nobody) = crac_as_nobody();
    let out = as_nobody
        .arg("checkpoint")
        .arg(pid.to_string())
        .fails_with(1);
    out.stderr_has(&format!("error: process {pid} refused the checkpoint\n  caused by: refused a checkpoint request from process "))
        .stderr_has("running as uid 65534: only uid 0 or root may checkpoint this process");
    // The process logged the refusal and goes on.
    let t = std::time::Instant::now();
    while !service
        .stderr_lines()
        .iter()
        .any(|l| l.starts_with("crac: refused a checkpoint request from process"))
    {
        assert!(t.elapsed() < SHORT, "{}", service.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = service.stdout_lines().len();
    service.wait_for_after("request ", n, SHORT);
    assert!(service.is_running());
    assert!(!image.exists());
    // The owner still may.
    crac(["checkpoint", &pid.to_string(), "--leave-running"]).ok();
}

// ---- other engines ----

#[test]
fn pause_engine_checkpoint_then_wake_with_env() {
    let d = Dir::new();
    let image = d.join("paused");
    let mut service = warmup(&image, Some("pause"), &[]);
    let pid = service.pid();
    crac(["checkpoint", &pid.to_string()])
        .ok()
        .stdout_has(&format!("process {pid} is paused"))
        .stdout_has(&format!("crac restore {}", image.display()));
    service.wait_for("checkpointing after", SHORT);
    assert!(service.is_running());
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has(&format!("process {pid} is paused"));
    crac(["restore"])
        .arg(&image)
        .arg("--env")
        .arg("CRAC_DEMO_GREETING=woken")
        .ok()
        .stderr_has(&format!("woke process {pid}"));
    service.wait_for("restored in", SHORT);
    service.wait_for("greeting: woken", SHORT);
    assert!(service.is_running());
}

#[test]
fn simulate_engine_runs_the_hooks_only() {
    let d = Dir::new();
    let image = d.join("none");
    let service = warmup(&image, Some("simulate"), &[]);
    let pid = service.pid();
    crac(["checkpoint", &pid.to_string()])
        .ok()
        .stdout_has(&format!(
            "process {pid} ran its checkpoint hooks (simulate engine"
        ));
    service.wait_for("checkpointing after", SHORT);
    service.wait_for("restored in", SHORT);
    assert!(!image.exists());
}

// ---- damaged and missing images ----

#[test]
fn missing_images_are_named() {
    let out = crac(["restore", "/nonexistent/image"]).fails_with(1);
    assert_eq!(
        out.stderr(),
        "error: image directory /nonexistent/image does not exist\n"
    );
    let out = crac(["inspect", "/nonexistent/image"]).fails_with(1);
    assert_eq!(
        out.stderr(),
        "error: image directory /nonexistent/image does not exist\n"
    );
}

#[test]
fn corrupt_images_are_refused_with_the_reason() {
    let d = Dir::new();
    let image = writer_image(&d);
    let pid = image_pid(&image);
    wait_gone(pid, SHORT);

    // A damaged metadata body.
    let bad = d.join("bad-meta");
    fs::create_dir(&bad).unwrap();
    for f in ["meta.crac", "pages.crac"] {
        fs::copy(image.join(f), bad.join(f)).unwrap();
    }
    flip_byte(&bad.join("meta.crac"), 9);
    let out = crac(["restore"]).arg(&bad).fails_with(1);
    out.stderr_has(&format!(
        "error: cannot restore {}\n  caused by: ",
        bad.display()
    ))
    .stderr_has("is damaged (checksum");
    assert!(out.stdout().is_empty(), "nothing ran: {}", out.dump());
    crac(["inspect"])
        .arg(&bad)
        .fails_with(1)
        .stderr_has(&format!(
            "error: cannot read the image in {}\n  caused by: image ",
            bad.display()
        ))
        .stderr_has("is corrupt: body CRC-32 is");

    // A damaged page: found by --verify, which inspect then counts against
    // a restore; without it the page data is not read (a restore checks
    // each piece as it loads it).
    let bad = d.join("bad-pages");
    fs::create_dir(&bad).unwrap();
    for f in ["meta.crac", "pages.crac"] {
        fs::copy(image.join(f), bad.join(f)).unwrap();
    }
    flip_byte(&bad.join("pages.crac"), 100);
    crac(["inspect"])
        .arg(&bad)
        .ok()
        .stdout_has("checksums   metadata ok, pages not-checked");
    let out = crac(["inspect", "--verify"]).arg(&bad).fails_with(1);
    out.stdout_has("pages corrupt")
        .stdout_has("restore     NOT possible here")
        .stderr_has(&format!(
            "error: the image in {} failed verification\n  caused by: page file ",
            bad.display()
        ))
        .stderr_has("is damaged: piece ");
    let json: serde_json::Value = serde_json::from_str(
        &crac(["inspect", "--json", "--verify"])
            .arg(&bad)
            .fails_with(1)
            .stdout(),
    )
    .unwrap();
    assert_eq!(json["checksums"]["pages"], "corrupt");
    assert_eq!(json["restore"]["possible"], false);
    assert_eq!(json["restore"]["problems"][0]["kind"], "checksum");
    // An eager restore loads every piece: it fails before anything runs.
    let out = crac(["restore", "--eager"]).arg(&bad).fails_with(1);
    out.stderr_has(&format!("error: cannot restore {}", bad.display()))
        .stderr_has("is damaged: hash ");
    assert!(out.stdout().is_empty(), "nothing ran: {}", out.dump());
    assert!(!util::alive(pid));
}

// ---- check, completions, man, help ----

#[test]
fn check_probes_each_feature() {
    let out = crac(["check"]).ok();
    for name in [
        "clone3 set_tid",
        "capabilities",
        "PR_SET_MM_MAP",
        "vDSO layout",
        "pagemap PFNs",
        "CAP_SYS_RESOURCE",
        "userfaultfd",
        "time namespaces",
    ] {
        out.stdout_has(name);
    }
    // This machine (root, CAP_CHECKPOINT_RESTORE) has what the engine needs.
    out.stdout_has("OK       clone3 set_tid    created a process with the chosen PID")
        .stdout_has("OK       vDSO layout")
        .stderr_has("everything the engine needs is here");
    // Without CAP_SYS_RESOURCE here: reported, not fatal.
    out.stdout_has("absent   CAP_SYS_RESOURCE");
}

#[test]
fn check_without_privileges_names_what_in_place_restores_lack() {
    let (_bin, mut as_nobody) = crac_as_nobody();
    // Restores in place are not possible; with --pidns they are (issue 12:
    // rootless), so the check as a whole succeeds and says which is which.
    let out = as_nobody.arg("check").ok();
    out.stdout_has("MISSING  clone3 set_tid")
        .stdout_has("MISSING  capabilities")
        .stderr_has(
            "restores in place need root or CAP_CHECKPOINT_RESTORE here (missing: clone3 \
             set_tid, capabilities)",
        );
}

#[test]
fn completions_man_page_and_help() {
    let bash = crac(["completions", "bash"]).ok().stdout();
    assert!(
        bash.contains("_crac()") && bash.contains("checkpoint"),
        "{bash}"
    );
    crac(["completions", "zsh"])
        .ok()
        .stdout_has("#compdef crac");
    let man = crac(["man"]).ok().stdout();
    assert!(man.contains(".TH crac"), "{man}");
    assert!(man.contains("checkpoint"), "{man}");
    let help = crac(["--help"]).ok().stdout();
    assert!(help.contains("Exit status:"), "{help}");
    assert!(help.contains("2      usage error"), "{help}");
    crac(["restore", "--env", "novalue", "/tmp"]).fails_with(2);
    crac(["frobnicate"]).fails_with(2);
}

/// `--pid-file` holds the restored PID once the process runs, lazily and
/// eagerly; a link planted at its path is replaced, never followed.
#[test]
fn restore_writes_the_pid_file_once_the_process_runs() {
    let d = Dir::new();
    let image = writer_image(&d);
    let pid = image_pid(&image);
    let target = d.join("target");
    fs::write(&target, "keep").unwrap();
    let pid_file = d.join("restored.pid");
    std::os::unix::fs::symlink(&target, &pid_file).unwrap();
    for mode in [None, Some("--eager")] {
        wait_dead(pid, SHORT);
        let _ = fs::remove_file(d.join("out.txt"));
        fs::write(d.join("out.txt"), "hello").unwrap();
        let mut cmd = crac(["restore"]);
        cmd.arg(&image).arg("--pid-file").arg(&pid_file);
        if let Some(m) = mode {
            cmd.arg(m);
        }
        let out = cmd.ok();
        assert_eq!(out.pid_after("post-restore PID: "), pid, "{}", out.dump());
        assert_eq!(
            fs::read_to_string(&pid_file).unwrap(),
            format!("{pid}\n"),
            "{mode:?}"
        );
        assert!(!fs::symlink_metadata(&pid_file).unwrap().is_symlink());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}

/// The JSON events of `crac restore --json`, in order, from its standard
/// error (the program's own lines there are skipped).
fn events(stderr: &[String]) -> Vec<serde_json::Value> {
    stderr
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect()
}

/// `--json`: `restored` once the process runs (PID, mode, resume time),
/// `loaded` while it runs on, `signal` for a forwarded SIGTERM, `killed`;
/// no text lines of crac's own; a failure is one `error` event.
#[test]
fn restore_json_reports_events() {
    let d = Dir::new();
    let image = d.join("image");
    let mut service = warmup(&image, None, &[]);
    let pid = service.pid();
    service.wait_for("request 1:", LONG);
    crac(["checkpoint", &pid.to_string()]).show_dir(&d).ok();
    assert!(service.wait_exit(SHORT).success(), "{}", service.dump());
    wait_dead(pid, SHORT);

    let mut restore = Command::new(util::crac_exe());
    restore.arg("restore").arg("--json").arg(&image);
    let mut restored = Service::start(restore);
    restored.also_end(pid, &payload("warmup"));
    let t = std::time::Instant::now();
    while !events(&restored.stderr_lines())
        .iter()
        .any(|e| e["event"] == "restored")
    {
        assert!(t.elapsed() < LONG, "not restored\n{}", restored.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    // `loaded` comes from the pager thread: it may overtake `restored`.
    let evs = events(&restored.stderr_lines());
    let first = evs
        .iter()
        .find(|e| e["event"] == "restored")
        .expect("a restored event");
    assert_eq!(first["pid"], pid, "{first}");
    assert_eq!(first["mode"], "lazy", "{first}");
    assert_eq!(first["image"], image.display().to_string(), "{first}");
    assert!(first["resume_ms"].as_f64().unwrap() > 0.0, "{first}");
    assert!(first["lazy_bytes"].as_u64().unwrap() > 0, "{first}");
    assert!(first["unix_ns"].as_u64().unwrap() > 0, "{first}");
    let n = restored.stdout_lines().len();
    restored.wait_for_after("request ", n, SHORT);
    // Loading ends while the process runs on.
    let t = std::time::Instant::now();
    while events(&restored.stderr_lines()).len() < 2 {
        assert!(t.elapsed() < LONG, "not loaded\n{}", restored.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(util::alive(pid), "{}", restored.dump());

    restored.signal(Signal::TERM);
    assert_eq!(restored.wait_exit(SHORT).signal(), Some(15));
    let stderr = restored.stderr_lines();
    let names: Vec<_> = events(&stderr)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    let mut first_two = names[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, ["loaded", "restored"], "{}", restored.dump());
    assert_eq!(names[2..], ["signal", "killed"], "{}", restored.dump());
    let ev = events(&stderr);
    let loaded = ev.iter().find(|e| e["event"] == "loaded").unwrap();
    assert!(loaded["bytes"].as_u64().unwrap() > 0, "{loaded}");
    assert_eq!(loaded["spaces"], 1, "{loaded}");
    assert_eq!(ev[2]["signal"], "SIGTERM");
    assert_eq!(ev[3]["signal"], "SIGTERM");
    assert_eq!(ev[3]["pid"], pid);
    // Only events and the program's own lines: no text status of crac's.
    assert!(
        !stderr.iter().any(|l| l.contains("restored process")),
        "{}",
        restored.dump()
    );

    let out = crac(["restore", "--json"])
        .arg(d.join("missing"))
        .fails_with(1);
    let err = out.stderr();
    let ev: serde_json::Value = serde_json::from_str(err.trim()).expect("one JSON line");
    assert_eq!(ev["event"], "error");
    assert_eq!(
        ev["message"],
        format!(
            "image directory {} does not exist",
            d.join("missing").display()
        )
    );
}
