//! Where images go and which processes can be checkpointed: `crac
//! checkpoint PID --to DIR` and `crac list`.

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
    let e = listed(&crac(["list", "--json"]).ok().stdout(), pa).expect("restored process listed");
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
