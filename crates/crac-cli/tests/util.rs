//! Helpers for the CLI tests (ripgrep style): a temporary directory, a
//! command that shows everything about itself when an expectation fails,
//! and running services whose output is collected line by line.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `crac` binary under test.
pub fn crac_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_crac"))
}

/// A test payload (`tests/payloads`), built into the same target directory
/// as this test (CI runs `cargo build --workspace --all-targets` first).
pub fn payload(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "payload {} is missing: run `cargo build --workspace --all-targets` first",
        p.display()
    );
    p
}

/// The line a payload prints right before it checkpoints itself.
pub const PRE_CHECKPOINT: &str = "pre-checkpoint PID: ";

/// How long a checkpointed process may take to disappear.
pub const GONE: Duration = Duration::from_secs(10);

/// Payload `name` set to checkpoint itself into `image`, with the engine
/// and its options left to the defaults.
pub fn checkpointing(name: &str, image: &Path) -> TestCommand {
    let mut cmd = TestCommand::new(payload(name));
    cmd.env("CRAC_CHECKPOINT_TO", image)
        .env_remove("CRAC_ENGINE")
        .env_remove("CRAC_ENGINE_OPTIONS");
    cmd
}

/// The number after `prefix` on the first line of `text` starting with it.
pub fn number_after(text: &str, prefix: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A temporary directory, removed when dropped.
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::Builder::new()
                .prefix("crac-cli-test-")
                .tempdir()
                .expect("temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Every file below the directory with its size, for failure reports.
    pub fn listing(&self) -> String {
        fn walk(dir: &Path, out: &mut String) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push_str(&format!("  {} ({len} bytes)\n", p.display()));
                if p.is_dir() {
                    walk(&p, out);
                }
            }
        }
        let mut out = String::new();
        walk(self.path(), &mut out);
        out
    }
}

/// A command to run to completion, described in failure messages.
pub struct TestCommand {
    cmd: Command,
    listing: Option<String>,
}

/// `crac ARGS...`.
pub fn crac<I, S>(args: I) -> TestCommand
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut t = TestCommand::new(crac_exe());
    t.cmd.args(args);
    t
}

impl From<Command> for TestCommand {
    fn from(mut cmd: Command) -> TestCommand {
        cmd.stdin(Stdio::null());
        TestCommand { cmd, listing: None }
    }
}

impl TestCommand {
    pub fn new(program: impl AsRef<std::ffi::OsStr>) -> TestCommand {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        TestCommand { cmd, listing: None }
    }

    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<S: AsRef<std::ffi::OsStr>>(&mut self, args: &[S]) -> &mut Self {
        self.cmd.args(args);
        self
    }

    pub fn env(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(&mut self, k: &str) -> &mut Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn current_dir(&mut self, d: &Path) -> &mut Self {
        self.cmd.current_dir(d);
        self
    }

    /// Lists `dir` in failure messages.
    pub fn show_dir(&mut self, dir: &Dir) -> &mut Self {
        self.listing = Some(dir.listing());
        self
    }

    pub fn output(&mut self) -> Out {
        let output = self.cmd.output().expect("run the command");
        Out {
            output,
            description: format!(
                "command: {:?}\ncwd: {:?}\n{}",
                self.cmd,
                self.cmd.get_current_dir(),
                self.listing
                    .as_deref()
                    .map(|l| format!("directory:\n{l}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// Runs it and requires exit status 0.
    pub fn ok(&mut self) -> Out {
        let out = self.output();
        assert!(
            out.output.status.success(),
            "expected success\n{}",
            out.dump()
        );
        out
    }

    /// Runs it and requires exit status `code`.
    pub fn fails_with(&mut self, code: i32) -> Out {
        let out = self.output();
        assert_eq!(
            out.output.status.code(),
            Some(code),
            "expected exit status {code}\n{}",
            out.dump()
        );
        out
    }
}

/// A finished command.
pub struct Out {
    pub output: Output,
    description: String,
}

impl Out {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Everything about the run, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "{}status: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.description,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// The PID on the first stdout line starting with `prefix`.
    pub fn pid_after(&self, prefix: &str) -> u32 {
        number_after(&self.stdout(), prefix)
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}\n{}", self.dump()))
    }

    /// The PID the payload printed before it checkpointed itself, once
    /// that process is gone.
    pub fn checkpointed_pid(&self) -> u32 {
        let pid = self.pid_after(PRE_CHECKPOINT);
        wait_gone(pid, GONE);
        pid
    }

    /// Requires `text` in standard output.
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout().contains(text),
            "expected {text:?} in stdout\n{}",
            self.dump()
        );
        self
    }

    /// Requires `text` in standard error.
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr().contains(text),
            "expected {text:?} in stderr\n{}",
            self.dump()
        );
        self
    }
}

/// A long-running process started by a test, its output collected line by
/// line. Dropping it ends, by PID, the processes it started that still run.
pub struct Service {
    child: Child,
    description: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Other processes to end when dropped (e.g. a restored one), with the
    /// executable they run, so a reused PID is left alone.
    also: Vec<(u32, PathBuf)>,
    status: Option<ExitStatus>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) => into.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
}

impl Service {
    /// Starts `cmd` with standard output and error collected.
    pub fn start(mut cmd: Command) -> Service {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{cmd:?}");
        let mut child = cmd.spawn().expect("start the service");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout));
        collect(child.stderr.take().unwrap(), Arc::clone(&stderr));
        Service {
            child,
            description,
            stdout,
            stderr,
            also: Vec::new(),
            status: None,
        }
    }

    /// `crac run --checkpoint-to DIR [--engine E] -- PAYLOAD ARGS...`.
    pub fn crac_run(dir: &Path, engine: Option<&str>, name: &str, args: &[&str]) -> Service {
        let mut cmd = Command::new(crac_exe());
        cmd.arg("run").arg("--checkpoint-to").arg(dir);
        if let Some(e) = engine {
            cmd.arg("--engine").arg(e);
        }
        cmd.arg("--").arg(payload(name)).args(args);
        cmd.env_remove("CRAC_ENGINE")
            .env_remove("CRAC_ENGINE_OPTIONS")
            .env_remove("CRAC_RESTORE_FROM");
        Service::start(cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends `pid`, which runs `exe`, too when this is dropped.
    pub fn also_end(&mut self, pid: u32, exe: &Path) {
        self.also.push((pid, exe.to_owned()));
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything about the service, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "service: {}\nPID {}, status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description,
            self.child.id(),
            self.status,
            self.stdout_lines().join("\n"),
            self.stderr_lines().join("\n")
        )
    }

    /// Waits for a line of standard output containing `text`; returns it.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_for_after(text, 0, timeout)
    }

    /// Waits for a line containing `text` among the lines from index `from`.
    pub fn wait_for_after(&self, text: &str, from: usize, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            if let Some(l) = self
                .stdout_lines()
                .iter()
                .skip(from)
                .find(|l| l.contains(text))
            {
                return l.clone();
            }
            assert!(
                t.elapsed() < timeout,
                "no line with {text:?} within {timeout:?}\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process (or the program it became) still runs.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            _ => true,
        }
    }

    /// Waits for the process to end (and reaps it, freeing its PID).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        while self.is_running() {
            assert!(
                t.elapsed() < timeout,
                "still running after {timeout:?}\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the collectors take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        self.status.expect("ended")
    }

    /// Sends `signal` to the process.
    /// Waits until `crac restore` (this service) says process `pid` runs.
    pub fn wait_restored(&self, pid: u32, timeout: Duration) {
        let text = format!("restored process {pid} ");
        let t = Instant::now();
        while !self.stderr_lines().iter().any(|l| l.contains(&text)) {
            assert!(t.elapsed() < timeout, "not restored\n{}", self.dump());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        signal_pid(self.child.id(), signal);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for (pid, exe) in &self.also {
            end_if_runs(*pid, exe);
        }
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to `pid` if it exists.
pub fn signal_pid(pid: u32, signal: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, signal);
    }
}

/// Ends `pid` with SIGKILL if it still runs `exe` (never a reused PID).
pub fn end_if_runs(pid: u32, exe: &Path) {
    if fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe) {
        signal_pid(pid, rustix::process::Signal::KILL);
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone or a zombie (an orphan may linger until init
/// reaps it).
pub fn wait_dead(pid: u32, timeout: Duration) {
    let t = Instant::now();
    while alive(pid) {
        assert!(t.elapsed() < timeout, "PID {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `pid` no longer exists at all (reaped).
pub fn wait_gone(pid: u32, timeout: Duration) {
    let t = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(t.elapsed() < timeout, "PID {pid} still exists");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `libcrac.so`, built next to the `crac` binary under test (CI runs
/// `cargo build --workspace --all-targets` first).
pub fn libcrac() -> PathBuf {
    let lib = crac_exe().with_file_name("libcrac.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` first",
        lib.display()
    );
    lib
}

/// Compiles C `source` into `out` with gcc and `args`; fails loudly if gcc
/// is missing or the program does not compile.
pub fn gcc(source: &Path, out: &Path, args: &[&std::ffi::OsStr]) {
    let output = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-O2", "-pthread", "-o"])
        .arg(out)
        .arg(source)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the C tests build their programs with gcc, which cannot be run ({e}): install gcc"
            )
        });
    assert!(
        output.status.success(),
        "gcc failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asks the `live` payload behind `s` to check its memory (SIGUSR1 to
/// `pid`, or to `s` itself, which forwards it, when `None`) and returns the
/// numbers of its `ok` answer: generation, cursor, sweeps, PID, monotonic
/// ns. Panics on a `BAD` answer.
pub fn ask_live(s: &Service, pid: Option<u32>) -> Vec<u64> {
    let from = s.stdout_lines().len();
    match pid {
        Some(p) => signal_pid(p, rustix::process::Signal::USR1),
        None => s.signal(rustix::process::Signal::USR1),
    }
    let line = s.wait_for_after("ok ", from, Duration::from_secs(60));
    if let Some(bad) = s.stdout_lines().iter().find(|l| l.starts_with("BAD")) {
        panic!("{bad}\n{}", s.dump());
    }
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Restores `image` (of a program that checks all its memory and prints
/// `data ok: true`, as memhog does; process `pid`) lazily, eagerly, with
/// `--verify` and detached (its output logged in `d`), waiting each time
/// until `pid` is gone.
pub fn restores_in_every_mode(d: &Dir, image: &Path, pid: u32, timeout: Duration) {
    for mode in [None, Some("--eager"), Some("--verify")] {
        let mut cmd = crac(["restore"]);
        cmd.arg(image);
        if let Some(m) = mode {
            cmd.arg(m);
        }
        cmd.ok().stdout_has("data ok: true");
        wait_gone(pid, timeout);
    }
    let log = d.join("detached.log");
    let file = fs::File::create(&log).unwrap();
    let status = Command::new(crac_exe())
        .arg("restore")
        .arg("--detach")
        .arg(image)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    assert!(status.success(), "{}", fs::read_to_string(&log).unwrap());
    let t = Instant::now();
    while !fs::read_to_string(&log).unwrap().contains("data ok: ") {
        assert!(
            t.elapsed() < timeout,
            "{}",
            fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_gone(pid, timeout);
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("data ok: true"), "{text}");
}

/// Sends SIGUSR1 to `pid` (a program that answers `check PID: ...` on
/// its standard output, as the C and Python examples do) and returns the
/// answer, which must start with `check PID: {ok}`.
pub fn ask_check(service: &Service, pid: u32, ok: &str, timeout: Duration) -> String {
    let from = service.stdout_lines().len();
    signal_pid(pid, rustix::process::Signal::USR1);
    let line = service.wait_for_after(&format!("check {pid}:"), from, timeout);
    assert!(
        line.starts_with(&format!("check {pid}: {ok}")),
        "{line}\n{}",
        service.dump()
    );
    line
}

/// Copies the files of `image` into a new image directory `name` in `d`.
pub fn copy_image(d: &Dir, image: &Path, name: &str) -> PathBuf {
    let copy = d.join(name);
    fs::create_dir(&copy).unwrap();
    for f in ["meta.crac", "pages.crac"] {
        fs::copy(image.join(f), copy.join(f)).unwrap();
    }
    copy
}

/// The longest page run of private anonymous memory in `img` (the data of
/// a payload like memhog, loaded lazily by default).
pub fn longest_anon_run(img: &crac_image::Image) -> crac_image::PageRun {
    use crac_image::{VMA_FILE, VMA_SHARED};
    let anon = |r: &crac_image::PageRun| {
        img.vmas
            .iter()
            .any(|v| v.start <= r.addr && r.addr < v.end && v.flags & (VMA_FILE | VMA_SHARED) == 0)
    };
    img.runs
        .iter()
        .filter(|r| anon(r))
        .max_by_key(|r| r.pages)
        .copied()
        .unwrap()
}

/// Two rounds of checkpointing a program (run by a [`Service`], answering
/// SIGUSR1 with `check PID: {checked}...`) from outside with `crac
/// checkpoint PID` into `image`, then `crac restore image`: each restored
/// copy must answer as the original did. The last copy is ended with
/// SIGTERM.
pub struct Rounds<'a> {
    pub dir: &'a Dir,
    pub image: &'a Path,
    /// The program's executable (to end a copy a test leaves behind).
    pub exe: &'a Path,
    pub checked: &'a str,
    /// Also require `crac checkpoint` to say the process exited and the
    /// process to exit with status 0.
    pub exits_cleanly: bool,
}

impl Rounds<'_> {
    /// Runs the rounds on the program `service` runs, whose answer was
    /// `before`.
    pub fn run(&self, service: Service, before: &str, timeout: Duration) {
        let short = Duration::from_secs(10);
        let pid = service.pid();
        let mut service = Some(service);
        for round in 1..=2 {
            let out = crac(["checkpoint", &pid.to_string()])
                .show_dir(self.dir)
                .ok();
            out.stdout_has(&format!(
                "checkpointed process {pid} into {}",
                self.image.display()
            ));
            let mut gone = service.take().unwrap();
            if self.exits_cleanly {
                out.stdout_has("the process exited");
                assert!(gone.wait_exit(short).success(), "{}", gone.dump());
            } else {
                gone.wait_exit(short);
            }
            wait_gone(pid, short);

            let mut cmd = Command::new(crac_exe());
            cmd.arg("restore").arg(self.image);
            let mut restored = Service::start(cmd);
            restored.also_end(pid, self.exe);
            restored.wait_restored(pid, timeout);
            assert_eq!(
                ask_check(&restored, pid, self.checked, timeout),
                before,
                "round {round}"
            );
            service = Some(restored);
        }
        let mut last = service.take().unwrap();
        signal_pid(pid, rustix::process::Signal::TERM);
        last.wait_exit(short);
    }
}
