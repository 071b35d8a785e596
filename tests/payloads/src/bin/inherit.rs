//! Descriptors inherited at start across a checkpoint: `inherit FD...` is
//! started with each FD open (`7>>file` in a shell); it writes
//! "before FD\n" to each, marks the first one close-on-exec and
//! non-blocking, checkpoints itself and, after restore, writes "after FD\n"
//! to each, prints "fd FD -> TARGET append=0|1" for each, checks that it
//! has exactly the descriptors it had (nothing of `crac restore`'s came
//! along) and prints "INHERIT OK" (or "FAILED: ..." and exits 1). With
//! `INHERIT_AGAIN=1` set after a restore it writes "again FD\n" to each and
//! checkpoints once more, with the descriptors it got as inherited ones.
//! Lines go only to the descriptors open for writing at start. `inherit
//! pipe` runs `inherit 7 8` with both ends of one pipe inherited.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;

use payload::{check, checkpoint, fail, flags};

fn write_line(fd: RawFd, text: &str) {
    // SAFETY: writes `text.len()` bytes from `text`.
    let n = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    check(
        n == text.len() as isize,
        &format!(
            "write to descriptor {fd} returned {n}: {}",
            std::io::Error::last_os_error()
        ),
    );
}

fn link(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into())
}

/// Every open descriptor and its `/proc/self/fd` link.
fn open_fds() -> BTreeMap<RawFd, String> {
    let names: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own descriptor is closed by now.
    names
        .into_iter()
        .filter(|&fd| std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok())
        .map(|fd| (fd, link(fd)))
        .collect()
}

/// The inodes of this process's crac control sockets (`@crac/PID`), which
/// the library closes for a checkpoint and opens again after it.
fn control_sockets() -> Vec<String> {
    let name = format!("@crac/{}", std::process::id());
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(7) == Some(&name.as_str())).then(|| format!("socket:[{}]", cols[6]))
        })
        .collect()
}

/// The descriptors other than the control socket. Right after a restore
/// the library may have created that socket but not bound it to its name
/// yet: a socket that is not the control socket is looked at again for up
/// to a second before it counts.
fn program_fds() -> BTreeMap<RawFd, String> {
    let mut tries = 0;
    loop {
        let control = control_sockets();
        let mut fds = open_fds();
        fds.retain(|_, l| !control.contains(l));
        tries += 1;
        if tries >= 100 || !fds.values().any(|l| l.starts_with("socket:")) {
            return fds;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `inherit pipe`: starts itself again as `inherit 7 8` with a pipe's
/// write end at 7 and read end at 8, both inherited (a pipe the engine
/// would carry had the program made it itself).
fn exec_with_pipe() -> ! {
    let mut ends = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`; no close-on-exec.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), 0) } == 0, "pipe2");
    for (end, at) in [(ends[1], 7), (ends[0], 8)] {
        // SAFETY: descriptor numbers this program owns; the copy has no
        // close-on-exec.
        check(unsafe { libc::dup2(end, at) } == at, "dup2");
        // SAFETY: the original number, owned here.
        unsafe { libc::close(end) };
    }
    let e = std::process::Command::new("/proc/self/exe")
        .args(["7", "8"])
        .exec();
    fail(&format!("exec: {e}"))
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("pipe") {
        exec_with_pipe();
    }
    crac::init();
    let inherited: Vec<RawFd> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or_else(|_| fail(&format!("bad fd {a}"))))
        .collect();
    check(!inherited.is_empty(), "usage: inherit FD...");
    // Lines go to the descriptors open for writing at start.
    let writable: Vec<RawFd> = inherited
        .iter()
        .copied()
        .filter(|&fd| flags(fd).0 & libc::O_ACCMODE != libc::O_RDONLY)
        .collect();
    for &fd in &writable {
        write_line(fd, &format!("before {fd}\n"));
    }
    let first = inherited[0];
    // SAFETY: flag changes on a descriptor this program inherited.
    unsafe {
        libc::fcntl(first, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let (fl, _) = flags(first);
    // SAFETY: as above.
    unsafe {
        libc::fcntl(first, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    loop {
        let before = program_fds();
        checkpoint();
        after_restore(&inherited, &writable, &before);
        println!("INHERIT OK");
        if std::env::var("INHERIT_AGAIN").as_deref() != Ok("1") {
            break;
        }
        // Once more, with what `crac restore` handed over as inherited.
        for &fd in &writable {
            write_line(fd, &format!("again {fd}\n"));
        }
    }
}

/// The checks after a restore; `before` = the descriptors at the checkpoint.
fn after_restore(inherited: &[RawFd], writable: &[RawFd], before: &BTreeMap<RawFd, String>) {
    let first = inherited[0];
    let (fl, cloexec) = flags(first);
    check(cloexec, "the first descriptor lost close-on-exec");
    check(
        fl & libc::O_NONBLOCK != 0,
        "the first descriptor lost O_NONBLOCK",
    );
    for &fd in inherited {
        let (fl, cloexec) = flags(fd);
        check(
            fd == first || !cloexec,
            &format!("descriptor {fd} became close-on-exec"),
        );
        if writable.contains(&fd) {
            write_line(fd, &format!("after {fd}\n"));
        }
        println!(
            "fd {fd} -> {} append={}",
            link(fd),
            u8::from(fl & libc::O_APPEND != 0)
        );
    }
    let after = program_fds();
    let numbers = |m: &BTreeMap<RawFd, String>| m.keys().copied().collect::<Vec<_>>();
    check(
        numbers(before) == numbers(&after),
        &format!("descriptors before the checkpoint: {before:?}, after restore: {after:?}"),
    );
    // Stdio and the inherited ones come from `crac restore`; the rest must
    // be what it was.
    for (fd, l) in before {
        check(
            *fd <= 2 || inherited.contains(fd) || after.get(fd) == Some(l),
            &format!(
                "descriptor {fd} was {l}, is {:?} after restore",
                after.get(fd)
            ),
        );
    }
}
