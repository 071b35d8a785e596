//! Where images go and which processes can be checkpointed: `crac
//! checkpoint PID --to DIR` and `crac list`.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use crate::util::{self, crac, payload, wait_gone, Dir, Service, TestCommand};

const LONG: Duration = Duration::from_secs(60);

fn warmup(image: &std::path::Path) -> Service {
    let s = Service::crac_run(image, None, "warmup", &["--mib", "4"]);
    s.wait_for("serving", LONG);
    s
}

/// The `crac list --json` entry of `pid`, if listed.
fn listed(out: &str, pid: u32) -> Option<serde_json::Value> {
    let all: Vec<serde_json::Value> = serde_json::from_str(out).unwrap();
    all.into_iter().find(|e| e["pid"] == pid)
}

#[test]
fn checkpoint_to_writes_this_checkpoint_elsewhere_and_list_shows_the_processes() {
    let d = Dir::new();
    let configured = d.join("configured");
    let mut a = warmup(&configured);
    let b = warmup(&d.join("other"));
    let (pa, pb) = (a.pid(), b.pid());

    // Both listed, with their engine, image directory and restore count.
    let text = crac(["list"]).ok().stdout();
    for (pid, dir) in [(pa, &configured), (pb, &d.join("other"))] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("{pid} not listed:\n{text}"));
        assert!(
            line.contains("native") && line.ends_with(&dir.display().to_string()),
            "{line}"
        );
        assert!(
            line.contains(&payload("warmup").display().to_string()),
            "{line}"
        );
    }
    let json = crac(["list", "--json"]).ok().stdout();
    let e = listed(&json, pa).unwrap();
    assert_eq!(e["restores"], 0);
    assert_eq!(e["engine"], "native");
    assert_eq!(e["dir"], configured.display().to_string());

    // A relative --to is the caller's, not the process's working directory.
    crac([
        "checkpoint",
        &pa.to_string(),
        "--leave-running",
        "--to",
        "elsewhere",
    ])
    .current_dir(d.path())
    .ok()
    .stdout_has(&format!(
        "checkpointed process {pa} into {}",
        d.join("elsewhere").display()
    ));
    assert!(
        d.join("elsewhere").join("meta.crac").exists(),
        "{}",
        d.listing()
    );
    assert!(!configured.exists(), "{}", d.listing());
    // The next one goes to the configured directory again.
    crac(["checkpoint", &pa.to_string(), "--leave-running"])
        .ok()
        .stdout_has(&format!("into {}", configured.display()));

    // The image from --to restores; the restored process counts it.
    a.signal(rustix::process::Signal::KILL);
    a.wait_exit(LONG);
    wait_gone(pa, LONG);
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("restore").arg(d.join("elsewhere"));
    let mut r = Service::start(cmd);
    r.also_end(pa, &payload("warmup"));
    r.wait_for("restored in", LONG);
    // Its control channel opens again on its own thread, soon after.
    let t = std::time::Instant::now();
    let e = loop {
        if let Some(e) = listed(&crac(["list", "--json"]).ok().stdout(), pa) {
            break e;
        }
        assert!(t.elapsed() < LONG, "restored process {pa} never listed");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(e["restores"], 1);
    assert_eq!(e["dir"], configured.display().to_string());

    // Another user sees none of root's processes.
    let (_bin, mut cmd) = crate::control::as_nobody(&util::crac_exe());
    cmd.args(["list", "--json"]);
    let out = TestCommand::from(cmd).ok().stdout();
    assert!(
        listed(&out, pa).is_none() && listed(&out, pb).is_none(),
        "{out}"
    );
    drop(b);
}

/// `crac run --image DIR ...` with the `live` payload (4 MiB).
fn run_image(dir: &std::path::Path, extra: &[&str]) -> Service {
    let mut cmd = Command::new(util::crac_exe());
    cmd.arg("run")
        .arg("--image")
        .arg(dir)
        .args(extra)
        .arg("--")
        .arg(payload("live"))
        .arg("4");
    cmd.env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM")
        .env_remove("CRAC_CHECKPOINT_TO");
    Service::start(cmd)
}

/// Asks the `live` payload `pid` for its position: (generation, cursor).
fn position(s: &Service, pid: u32) -> (u64, u64) {
    let v = util::ask_live(s, Some(pid));
    (v[0], v[1])
}

fn stderr_count(s: &Service, text: &str) -> usize {
    s.stderr_lines().iter().filter(|l| l.contains(text)).count()
}

fn wait_stderr_count(s: &Service, text: &str, n: usize) {
    let t = std::time::Instant::now();
    while stderr_count(s, text) < n {
        assert!(t.elapsed() < LONG, "no {n}th {text:?}\n{}", s.dump());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn run_image_starts_fresh_on_an_empty_directory_and_restores_on_the_next_run() {
    let d = Dir::new();
    let image = d.join("image");
    let mut first = run_image(&image, &[]);
    let line = first.wait_for("ready ", LONG);
    let pid: u32 = line.trim_start_matches("ready ").parse().unwrap();
    // crac executed the program in place.
    assert_eq!(pid, first.pid());
    assert_eq!(
        stderr_count(
            &first,
            &format!("fresh: {} holds no image", image.display())
        ),
        1,
        "{}",
        first.dump()
    );
    crac(["checkpoint", &pid.to_string()]).ok();
    first.wait_exit(LONG);
    wait_gone(pid, LONG);

    let mut second = run_image(&image, &[]);
    second.also_end(pid, &payload("live"));
    second.wait_for("restored", LONG);
    assert!(
        second
            .stderr_lines()
            .iter()
            .any(|l| l.starts_with(&format!("restored process {pid} "))),
        "{}",
        second.dump()
    );
    assert_eq!(stderr_count(&second, "fresh"), 0, "{}", second.dump());
    position(&second, pid);
    second.signal(rustix::process::Signal::TERM);
    assert_eq!(
        second.wait_exit(LONG).signal(),
        Some(15),
        "{}",
        second.dump()
    );
}

/// A program checkpointed every 300 ms and killed with SIGKILL comes back
/// from the last image: at least as far as it was before that image was
/// made, never further than where it died.
#[test]
fn a_periodically_checkpointed_program_killed_is_restored_from_the_last_image() {
    let d = Dir::new();
    let image = d.join("image");
    let mut s = run_image(
        &image,
        &["--checkpoint-every", "300ms", "--restore-on-crash", "2"],
    );
    let line = s.wait_for("ready ", LONG);
    let pid: u32 = line.trim_start_matches("ready ").parse().unwrap();
    assert_ne!(pid, s.pid(), "crac stays the parent");
    s.also_end(pid, &payload("live"));
    wait_stderr_count(&s, &format!("checkpoint 1: process {pid} into"), 1);
    // Live: each line says how long the program was stopped.
    let made = s.stderr_lines();
    let made: Vec<_> = made
        .iter()
        .filter(|l| l.contains(&format!(": process {pid} into")))
        .collect();
    assert!(
        made.iter()
            .all(|l| l.contains("; its threads were stopped for ")),
        "{}",
        s.dump()
    );
    let before = position(&s, pid);
    // A checkpoint made after `before` was seen.
    let n = stderr_count(&s, "checkpoint ");
    wait_stderr_count(&s, "checkpoint ", n + 1);
    let from = s.stdout_lines().len();
    let at_death = position(&s, pid);
    util::signal_pid(pid, rustix::process::Signal::KILL);
    s.wait_for_after("restored", from, LONG);
    assert_eq!(
        stderr_count(
            &s,
            &format!(
                "process {pid} was killed by SIGKILL; restoring it from {}",
                image.display()
            )
        ),
        1,
        "{}",
        s.dump()
    );
    let back = position(&s, pid);
    assert!(
        before <= back && back <= at_death,
        "{before:?} <= {back:?} <= {at_death:?}"
    );
    // Checkpoints go on for the restored process.
    let n = stderr_count(&s, "checkpoint ");
    wait_stderr_count(&s, "checkpoint ", n + 1);

    // SIGTERM to crac is forwarded and ends it all: no restore.
    s.signal(rustix::process::Signal::TERM);
    assert_eq!(s.wait_exit(LONG).signal(), Some(15), "{}", s.dump());
    assert_eq!(stderr_count(&s, "restoring it from"), 1, "{}", s.dump());
    wait_gone(pid, LONG);
}

/// Without checkpoints in between, a program that keeps crashing is
/// restored at most N times in a row; then crac ends as it did.
#[test]
fn restore_on_crash_gives_up_after_n_restores_in_a_row() {
    let d = Dir::new();
    let image = d.join("image");
    let mut s = run_image(&image, &["--restore-on-crash", "1"]);
    let line = s.wait_for("ready ", LONG);
    let pid: u32 = line.trim_start_matches("ready ").parse().unwrap();
    s.also_end(pid, &payload("live"));
    crac(["checkpoint", &pid.to_string(), "--leave-running"]).ok();
    let from = s.stdout_lines().len();
    util::signal_pid(pid, rustix::process::Signal::KILL);
    s.wait_for_after("restored", from, LONG);
    position(&s, pid);
    util::signal_pid(pid, rustix::process::Signal::KILL);
    assert_eq!(s.wait_exit(LONG).signal(), Some(9), "{}", s.dump());
    assert_eq!(stderr_count(&s, "restoring it from"), 1, "{}", s.dump());
    assert_eq!(
        stderr_count(&s, "not restored again (1 restore in a row"),
        1,
        "{}",
        s.dump()
    );
}
