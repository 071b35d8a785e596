//! C programs: one using libcrac's C ABI (`examples/c/hello.c`), one that
//! knows nothing of crac (`examples/c/plain.c`) under `crac run`, which
//! preloads libcrac into it, and a static program `crac run` refuses.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{self, crac, gcc, wait_gone, Dir, Service, TestCommand};

/// The answer to SIGUSR1 once the program checked its data, thread and pipe.
const CHECKED: &str = "ok, 64 MiB checksum ";
const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);

/// `examples/c/NAME.c` compiled into `dir`.
fn example(dir: &Dir, name: &str, args: &[&OsStr]) -> PathBuf {
    let exe = dir.join(name);
    let source = util::repo_root()
        .join("examples/c")
        .join(format!("{name}.c"));
    gcc(&source, &exe, args);
    exe
}

/// hello.c linked with libcrac.so, found at run time where it was built.
fn hello(dir: &Dir) -> PathBuf {
    let lib = util::libcrac();
    let libdir = lib.parent().unwrap();
    let include = util::repo_root().join("crates/crac-capi/include");
    let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
    rpath.push(libdir);
    let mut l = std::ffi::OsString::from("-L");
    l.push(libdir);
    let mut i = std::ffi::OsString::from("-I");
    i.push(&include);
    example(dir, "hello", &[&i, &l, OsStr::new("-lcrac"), &rpath])
}

fn lines(out: &util::Out) -> Vec<String> {
    out.stdout().lines().map(str::to_owned).collect()
}

/// The C ABI: hooks in CRaC order (before last-registered first, after in
/// registration order, also after a failed checkpoint), a checkpoint that
/// fails naming a (deleted) open file while the program goes on, then two
/// checkpoints and restores with the same PID and the data intact.
#[test]
fn c_program_using_the_c_abi_fails_naming_the_file_then_restores_twice() {
    let d = Dir::new();
    let exe = hello(&d);
    let image = d.join("image");
    let scratch = d.join("scratch");
    let out = TestCommand::new(&exe)
        .arg("2")
        .arg(&scratch)
        .env("CRAC_CHECKPOINT_TO", &image)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .show_dir(&d)
        .ok();
    let pid = out.checkpointed_pid();
    let failed = "checkpoint with a file open: code 1: checkpoint failed: file descriptor ";
    let got = lines(&out);
    assert_eq!(got.len(), 8, "{}", out.dump());
    assert_eq!(
        got[..4],
        [
            "before_checkpoint second",
            "before_checkpoint first",
            "after_restore first",
            "after_restore second",
        ],
        "{}",
        out.dump()
    );
    assert!(
        got[4].starts_with(failed)
            && got[4].contains(&format!(
                " is open: {} (regular file, deleted); close it in before_checkpoint",
                scratch.display()
            )),
        "{}",
        out.dump()
    );
    assert_eq!(
        got[5..],
        [
            format!("pre-checkpoint PID: {pid}"),
            "before_checkpoint second".into(),
            "before_checkpoint first".into(),
        ],
        "{}",
        out.dump()
    );

    for (n, again) in [(1, true), (2, false)] {
        let out = crac(["restore"]).arg(&image).show_dir(&d).ok();
        let mut expected = vec![
            "after_restore first".to_owned(),
            "after_restore second".into(),
            format!("restored PID: {pid}, restores: {n}, data intact"),
        ];
        if again {
            expected.extend([
                format!("pre-checkpoint PID: {pid}"),
                "before_checkpoint second".into(),
                "before_checkpoint first".into(),
            ]);
        }
        assert_eq!(lines(&out), expected, "{}", out.dump());
        wait_gone(pid, SHORT);
    }
}

fn maps_libcrac(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .contains("/libcrac.so")
}

/// An unmodified C program (64 MiB of data, a thread, a pipe with bytes
/// queued) under `crac run`: libcrac is preloaded, `crac checkpoint PID`
/// works, and the restored process (same PID) finds everything intact,
/// twice, the second time from an image the restored process made.
#[test]
fn unmodified_c_program_under_crac_run_is_checkpointed_from_outside() {
    let d = Dir::new();
    let exe = example(&d, "plain", &[]);
    let image = d.join("image");
    let mut cmd = std::process::Command::new(util::crac_exe());
    cmd.args(["run", "--checkpoint-to"])
        .arg(&image)
        .arg("--")
        .arg(&exe)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS")
        .env_remove("LD_PRELOAD");
    let service = Service::start(cmd);
    let pid = service.pid();
    service.wait_for(&format!("ready PID: {pid}"), LONG);
    assert!(
        maps_libcrac(pid),
        "libcrac.so is not loaded\n{}",
        service.dump()
    );
    let before = util::ask_check(&service, pid, CHECKED, LONG);

    let rounds = util::Rounds {
        dir: &d,
        image: &image,
        exe: &exe,
        checked: CHECKED,
        exits_cleanly: true,
    };
    rounds.run(service, &before, LONG);
}

/// A program that contains crac (a Rust payload) is not given libcrac: two
/// copies would both serve its control channel.
#[test]
fn crac_run_does_not_preload_a_program_that_contains_crac() {
    let d = Dir::new();
    let service = super::warmup(&d.join("image"), Some("simulate"), &[]);
    assert!(!maps_libcrac(service.pid()), "{}", service.dump());
}

/// A static program cannot be given a library: `crac run` says so and runs
/// nothing.
#[test]
fn crac_run_refuses_a_static_program() {
    let d = Dir::new();
    let source = d.join("static.c");
    fs::write(
        &source,
        "#include <stdio.h>\nint main(int argc, char **argv) {\n    (void)argc;\n    \
         FILE *f = fopen(argv[1], \"w\");\n    return f ? 0 : 1;\n}\n",
    )
    .unwrap();
    let exe = d.join("static");
    gcc(&source, &exe, &[OsStr::new("-static")]);
    let marker = d.join("ran");
    let out = crac(["run", "--checkpoint-to"])
        .arg(d.join("image"))
        .arg("--")
        .arg(&exe)
        .arg(&marker)
        .fails_with(1);
    assert_eq!(
        out.stderr(),
        format!(
            "error: {} is statically linked: crac cannot inject its library; link it with \
             libcrac or the crac crate\n",
            exe.display()
        ),
        "{}",
        out.dump()
    );
    assert!(!Path::new(&marker).exists(), "the program ran");
}
