//! Issue 10, case 1: a restored process runs as the image's user, with the
//! image's groups and capabilities, in every thread; only root or the
//! image's own user may restore it; an image another user could have
//! written is refused. The `creds` payload prints its credentials before
//! the checkpoint (`pre`) and after the restore (`main`, `thread`), then
//! tries to open a root-owned file for writing.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{crac, payload, wait_gone, Dir, Out, TestCommand};

const NOBODY: u32 = 65534;
/// Every case must end within this (no hang).
const CASE: Duration = Duration::from_secs(5);
const KEYS: [&str; 9] = [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
];

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory nobody can enter, with a copy of the payload nobody may run
/// and a root-owned file (0644) the restored process must not be able to
/// write.
struct Setup {
    d: Dir,
    exe: PathBuf,
    root_file: PathBuf,
}

fn setup() -> Setup {
    assert!(
        Path::new("/usr/bin/setpriv").exists(),
        "this test needs setpriv (util-linux)"
    );
    let d = Dir::new();
    chmod(d.path(), 0o755);
    let exe = d.join("creds");
    fs::copy(payload("creds"), &exe).unwrap();
    chmod(&exe, 0o755);
    let root_file = d.join("root-owned");
    fs::write(&root_file, "root's\n").unwrap();
    chmod(&root_file, 0o644);
    Setup { d, exe, root_file }
}

/// Runs the payload through `setpriv ARGS` into `image`; returns its PID
/// once it is gone.
fn make_image(s: &Setup, setpriv: &[&str], image: &Path) -> (u32, Out) {
    let mut cmd = TestCommand::new("/usr/bin/setpriv");
    for a in setpriv {
        cmd.arg(a);
    }
    let out = cmd
        .arg(&s.exe)
        .arg(&s.root_file)
        .env("CRAC_CHECKPOINT_TO", image)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .current_dir(s.d.path())
        .show_dir(&s.d)
        .ok();
    let pid = out
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("pre-checkpoint PID: ")?.trim().parse().ok())
        .expect("PID line");
    wait_gone(pid, Duration::from_secs(10));
    assert!(image.join("meta.crac").exists(), "{}", s.d.listing());
    (pid, out)
}

/// An image of the payload run as nobody, in a directory of nobody's (0700).
fn nobody_image(s: &Setup, extra: &[&str]) -> (PathBuf, u32, Out) {
    let home = s.d.join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&home, 0o700);
    let image = home.join("image");
    let mut args = vec!["--reuid=65534", "--regid=65534"];
    if !extra.iter().any(|a| a.starts_with("--groups=")) {
        args.push("--clear-groups");
    }
    args.extend_from_slice(extra);
    let (pid, out) = make_image(s, &args, &image);
    (image, pid, out)
}

/// `WHO KEY: value` lines of the payload's output, by key.
fn creds_of(text: &str, who: &str) -> BTreeMap<String, String> {
    let m: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.strip_prefix(who)?.strip_prefix(' ')?.split_once(": ")?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect();
    for k in KEYS {
        assert!(m.contains_key(k), "no {who} {k} line in:\n{text}");
    }
    m
}

/// Restores as root within [`CASE`]; returns stdout, checked: same PID,
/// every thread with the credentials the process had at the checkpoint.
fn restore_same_creds(image: &Path, pid: u32, before: &Out) -> String {
    restore_with(&[], image, pid, before).stdout()
}

/// [`restore_same_creds`] with more options for `crac restore`.
fn restore_with(opts: &[&str], image: &Path, pid: u32, before: &Out) -> Out {
    let t = Instant::now();
    let mut cmd = crac(["restore"]);
    for o in opts {
        cmd.arg(o);
    }
    let out = cmd.arg(image).ok();
    assert!(t.elapsed() < CASE, "restore took {:?}", t.elapsed());
    let text = out.stdout();
    assert!(text.contains("CREDS DONE"), "{}", out.dump());
    assert!(
        text.contains(&format!("post-restore PID: {pid}")),
        "{}",
        out.dump()
    );
    let pre = creds_of(&before.stdout(), "pre");
    assert_eq!(creds_of(&text, "main"), pre, "main thread\n{text}");
    assert_eq!(creds_of(&text, "thread"), pre, "other thread\n{text}");
    out
}

#[test]
fn nobodys_image_restored_by_root_runs_as_nobody_in_every_thread() {
    let s = setup();
    let (image, pid, before) = nobody_image(&s, &[]);
    let text = restore_same_creds(&image, pid, &before);
    let main = creds_of(&text, "main");
    assert_eq!(main["Uid"], "65534 65534 65534 65534", "{text}");
    assert_eq!(main["Gid"], "65534 65534 65534 65534", "{text}");
    assert_eq!(main["Groups"], "", "{text}");
    assert_eq!(main["CapEff"], "0000000000000000", "{text}");
    assert_eq!(main["CapPrm"], "0000000000000000", "{text}");
    // The kernel says no, as it would have to nobody before the checkpoint.
    assert!(
        text.contains(&format!(
            "write {}: denied (errno 13)",
            s.root_file.display()
        )),
        "{text}"
    );
    assert_eq!(fs::read_to_string(&s.root_file).unwrap(), "root's\n");
    // `inspect` says who it will run as.
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has("runs as     uid 65534 (nobody), gid 65534")
        .stdout_has("capabilities none");
    let json = crac(["inspect", "--json"]).arg(&image).ok().stdout();
    assert!(
        json.contains("\"creds\"") && json.contains("65534"),
        "{json}"
    );
    // Both ways pages get in: lazily (the pager serves a process that is
    // no longer root's) and eagerly.
    let lazy = restore_with(&[], &image, pid, &before);
    lazy.stderr_has("while it runs");
    let eager = restore_with(&["--eager"], &image, pid, &before);
    assert!(
        !eager.stderr().contains("while it runs"),
        "{}",
        eager.dump()
    );
}

/// Ambient capabilities of a non-root user survive the uid change the
/// restorer makes (root to nobody) and come back in every thread.
#[test]
fn a_users_ambient_capability_comes_back_and_nothing_more() {
    let s = setup();
    let caps = [
        "--inh-caps=+net_bind_service",
        "--ambient-caps=+net_bind_service",
    ];
    let (image, pid, before) = nobody_image(&s, &caps);
    let text = restore_same_creds(&image, pid, &before);
    let main = creds_of(&text, "main");
    assert_eq!(main["Uid"], "65534 65534 65534 65534", "{text}");
    // CAP_NET_BIND_SERVICE is bit 10.
    for k in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(main[k], "0000000000000400", "{k}\n{text}");
    }
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has("capabilities cap_net_bind_service; inheritable cap_net_bind_service; ambient cap_net_bind_service");
}

/// Root's image keeps root's capabilities, its smaller bounding set and its
/// inheritable and ambient sets.
#[test]
fn roots_image_keeps_its_capabilities_and_bounding_set() {
    let s = setup();
    let image = s.d.join("image");
    let args = [
        "--bounding-set=-net_raw",
        "--inh-caps=+net_admin",
        "--ambient-caps=+net_admin",
    ];
    let (pid, before) = make_image(&s, &args, &image);
    let text = restore_same_creds(&image, pid, &before);
    let main = creds_of(&text, "main");
    assert_eq!(main["Uid"], "0 0 0 0", "{text}");
    let bnd = u64::from_str_radix(&main["CapBnd"], 16).unwrap();
    assert_eq!(
        bnd & (1 << 13),
        0,
        "CAP_NET_RAW back in the bounding set\n{text}"
    );
    assert_ne!(bnd & (1 << 21), 0, "CAP_SYS_ADMIN lost\n{text}");
    assert_eq!(main["CapAmb"], "0000000000001000", "{text}");
    assert!(
        text.contains(&format!("write {}: ok", s.root_file.display())),
        "{text}"
    );
}

/// A user may restore only its own images: nobody restoring root's image
/// is refused in the preflight, before any process exists.
#[test]
fn a_user_cannot_restore_roots_image() {
    let s = setup();
    let image = s.d.join("image");
    let (pid, _) = make_image(&s, &[], &image);
    // Readable by nobody, still not writable by anyone but root.
    chmod(&image, 0o755);
    for f in ["meta.crac", "pages.crac"] {
        chmod(&image.join(f), 0o644);
    }
    let (_bin, mut as_nobody) = crate::crac_as_nobody();
    let t = Instant::now();
    let out = as_nobody.arg("restore").arg(&image).fails_with(1);
    assert!(t.elapsed() < CASE);
    out.stderr_has(
        "the image runs as uid 0 and this user (uid 65534) may restore only its own images",
    );
    assert!(!out.stdout().contains("post-restore"), "{}", out.dump());
    assert!(
        !crate::util::alive(pid),
        "a process with the image's PID runs"
    );
}

/// An image directory or file that a user other than root and the image's
/// user could have written is refused, naming it; put right, it restores.
#[test]
fn an_image_others_could_write_is_refused() {
    let s = setup();
    let (image, pid, before) = nobody_image(&s, &[]);
    let refused = |what: &str| {
        let t = Instant::now();
        let out = crac(["restore"]).arg(&image).fails_with(1);
        assert!(t.elapsed() < CASE);
        out.stderr_has(what);
        assert!(!out.stdout().contains("post-restore"), "{}", out.dump());
        assert!(!crate::util::alive(pid), "the process was started");
    };
    chmod(&image, 0o770);
    refused(&format!(
        "the image directory {} has mode 0770: writable by its group",
        image.display()
    ));
    chmod(&image, 0o700);
    let meta = image.join("meta.crac");
    chmod(&meta, 0o602);
    refused(&format!(
        "the image file {} has mode 0602: writable by every user",
        meta.display()
    ));
    chmod(&meta, 0o600);
    std::os::unix::fs::chown(&meta, Some(1234), None).unwrap();
    refused(&format!(
        "the image file {} is owned by uid 1234, neither root nor the image's user (uid 65534)",
        meta.display()
    ));
    // Root's own files are trusted for any image.
    std::os::unix::fs::chown(&meta, Some(0), None).unwrap();
    restore_same_creds(&image, pid, &before);
}

/// Supplementary groups come back (root restores; it sets them).
#[test]
fn supplementary_groups_come_back() {
    let s = setup();
    let (image, pid, before) = nobody_image(&s, &["--groups=27,100"]);
    let text = restore_same_creds(&image, pid, &before);
    assert_eq!(creds_of(&text, "main")["Groups"], "27 100", "{text}");
    crac(["inspect"])
        .arg(&image)
        .ok()
        .stdout_has(", groups 27 (sudo), 100 (users)");
}

/// A user restores its own image with nothing but CAP_CHECKPOINT_RESTORE
/// (which `clone3` with `set_tid` needs): the process gets the image's
/// credentials, not the restorer's capability.
#[test]
fn a_user_restores_its_own_image_and_the_restorers_capability_stays_behind() {
    let s = setup();
    let (image, pid, before) = nobody_image(&s, &[]);
    let exe = s.d.join("crac");
    fs::copy(crate::util::crac_exe(), &exe).unwrap();
    chmod(&exe, 0o755);
    let mut cmd = TestCommand::new("/usr/bin/setpriv");
    for a in [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+checkpoint_restore",
        "--ambient-caps=+checkpoint_restore",
    ] {
        cmd.arg(a);
    }
    let t = Instant::now();
    let out = cmd.arg(&exe).arg("restore").arg(&image).ok();
    assert!(t.elapsed() < CASE);
    let text = out.stdout();
    assert!(
        text.contains(&format!("post-restore PID: {pid}")),
        "{}",
        out.dump()
    );
    let pre = creds_of(&before.stdout(), "pre");
    assert_eq!(creds_of(&text, "main"), pre, "{text}");
    assert_eq!(creds_of(&text, "thread"), pre, "{text}");
    assert_eq!(pre["CapAmb"], "0000000000000000");
}

/// The restorer opens the files an image maps with the image's user's
/// rights: nobody's image that mapped a file nobody may no longer read is
/// refused, and the file's contents never reach the process.
#[test]
fn an_image_cannot_map_a_file_its_user_cannot_open() {
    let s = setup();
    let secret = s.d.join("secret");
    fs::write(&secret, "the secret\n").unwrap();
    chmod(&secret, 0o644);
    let home = s.d.join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&home, 0o700);
    let image = home.join("image");
    let mut cmd = TestCommand::new("/usr/bin/setpriv");
    for a in ["--reuid=65534", "--regid=65534", "--clear-groups"] {
        cmd.arg(a);
    }
    let out = cmd
        .arg(&s.exe)
        .arg(&s.root_file)
        .arg(&secret)
        .env("CRAC_CHECKPOINT_TO", &image)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .current_dir(s.d.path())
        .ok();
    let pid: u32 = out
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("pre-checkpoint PID: ")?.trim().parse().ok())
        .expect("PID line");
    wait_gone(pid, Duration::from_secs(10));
    // Readable, it comes back (the mapping works at all).
    let back = crac(["restore"]).arg(&image).ok();
    back.stdout_has("mapped: the secret");
    // Root takes the file away from nobody (same inode, size and mtime).
    chmod(&secret, 0o600);
    let t = Instant::now();
    let out = crac(["restore"]).arg(&image).output();
    assert!(t.elapsed() < CASE);
    assert_ne!(out.output.status.code(), Some(0), "{}", out.dump());
    assert!(!out.stdout().contains("the secret"), "{}", out.dump());
    assert!(!out.stdout().contains("post-restore"), "{}", out.dump());
    out.stderr_has(&format!("{}", secret.display()))
        .stderr_has("EACCES");
    assert!(!crate::util::alive(pid), "the process runs");
}

/// A service of nobody's, checkpointed by root from outside and restored by
/// root, runs as nobody; checkpointed again (by root, through its control
/// channel) it makes an image of nobody's that restores as nobody again.
#[test]
fn a_users_service_stays_that_user_across_checkpoints_and_restores() {
    use crate::util::Service;

    let s = setup();
    let (crac_copy, warmup) = (s.d.join("crac"), s.d.join("warmup"));
    fs::copy(crate::util::crac_exe(), &crac_copy).unwrap();
    fs::copy(payload("warmup"), &warmup).unwrap();
    chmod(&crac_copy, 0o755);
    chmod(&warmup, 0o755);
    let home = s.d.join("home");
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&home, 0o700);
    let image = home.join("image");
    let mut cmd = std::process::Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&crac_copy)
        .args(["run", "--checkpoint-to"])
        .arg(&image)
        .arg("--")
        .arg(&warmup)
        .args(["--mib", "4"])
        .current_dir(s.d.path())
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("CRAC_RESTORE_FROM");
    let service = Service::start(cmd);
    service.wait_for("serving", Duration::from_secs(60));
    let pid = service.pid();
    let uid_line = || {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(uid_line(), "65534 65534 65534 65534");
    crac(["checkpoint", &pid.to_string()]).ok();
    drop(service);
    wait_gone(pid, Duration::from_secs(10));
    for round in 0..2 {
        let mut restore = std::process::Command::new(crate::util::crac_exe());
        restore.arg("restore").arg(&image);
        let mut restored = Service::start(restore);
        restored.also_end(pid, &warmup);
        restored.wait_for("restored in", CASE);
        assert_eq!(uid_line(), "65534 65534 65534 65534", "round {round}");
        crac(["checkpoint", &pid.to_string()]).ok();
        assert_eq!(
            restored.wait_exit(CASE).code(),
            Some(0),
            "{}",
            restored.dump()
        );
        wait_gone(pid, Duration::from_secs(10));
        let owner =
            std::os::unix::fs::MetadataExt::uid(&fs::metadata(image.join("meta.crac")).unwrap());
        assert_eq!(owner, NOBODY, "the image is nobody's");
    }
}
