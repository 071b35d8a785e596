//! Regular files and the generic resource policies across a checkpoint:
//! `fds_file MODE DIR` opens files in DIR at known offsets and numbers,
//! checkpoints itself, and after restore checks each descriptor's number,
//! flags, offset and file, then prints "MODE OK" (or "FAILED: ..." and
//! exits 1). The test changes the files between checkpoint and restore
//! where a mode needs it.
//!
//! * `read`: a read-only file at offset 1000 reads the right bytes; a
//!   duplicate of it shares its offset.
//! * `write`: a read-write file written after restore changes the right bytes.
//! * `append`: an `O_APPEND` log another writer grew appends at its new end.
//! * `changed`: two files the test changes; the restore must refuse to run.
//! * `deleted`: a deleted open file refuses the checkpoint; exits 3.
//! * `policies`: the engine API with `Reopen`, `Ignore` and `Close`
//!   (into `FDS_FILE_IMAGE`).
#![allow(unsafe_code)]

use std::fs;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crac_engine::native::FdPolicy;
use payload::{
    check, checkpoint, checkpoint_with_policies, errno, fail, flags, move_to, try_checkpoint,
};

fn open_at(path: &Path, flags: i32, to: RawFd, cloexec: bool) -> RawFd {
    let f = fs::OpenOptions::new()
        .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
        .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
        .custom_flags(flags & !libc::O_ACCMODE)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("open {}: {e}", path.display())));
    move_to(f.into_raw_fd(), to, cloexec)
}

fn offset(fd: RawFd) -> i64 {
    // SAFETY: reads the offset; no memory is passed.
    unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
}

fn seek(fd: RawFd, to: i64) {
    // SAFETY: as above.
    check(unsafe { libc::lseek(fd, to, libc::SEEK_SET) } == to, "seek");
}

/// `read` into a fresh buffer: the bytes or the errno.
fn read(fd: RawFd, n: usize) -> Result<Vec<u8>, i32> {
    let mut b = vec![0u8; n];
    // SAFETY: reads at most `n` bytes into `b`.
    let r = unsafe { libc::read(fd, b.as_mut_ptr().cast(), n) };
    if r < 0 {
        return Err(errno());
    }
    b.truncate(r as usize);
    Ok(b)
}

fn write(fd: RawFd, b: &[u8]) -> Result<usize, i32> {
    // SAFETY: writes from a borrowed slice.
    let r = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

fn link(fd: RawFd) -> String {
    fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| fail(&format!("descriptor {fd}: {e}")))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn read_mode(dir: &Path) {
    let path = dir.join("data");
    let data = pattern(4096);
    fs::write(&path, &data).unwrap();
    let fd = open_at(&path, libc::O_RDONLY, 50, true);
    check(read(fd, 1000) == Ok(data[..1000].to_vec()), "first read");
    // A duplicate shares the open file (one offset), without close-on-exec.
    // SAFETY: dup of a descriptor this program owns.
    let dup = move_to(unsafe { libc::dup(fd) }, 56, false);
    checkpoint();
    let (fl, cloexec) = flags(fd);
    check(fl & libc::O_ACCMODE == libc::O_RDONLY && cloexec, "flags");
    check(link(fd) == path.display().to_string(), "path");
    check(
        offset(fd) == 1000,
        &format!("offset {} not 1000", offset(fd)),
    );
    check(
        read(fd, 16) == Ok(data[1000..1016].to_vec()),
        "bytes at 1000",
    );
    check(write(fd, b"x") == Err(libc::EBADF), "read-only");
    let (_, cloexec) = flags(dup);
    check(!cloexec, "duplicate's close-on-exec");
    check(offset(dup) == 1016, "the duplicate shares the offset");
    check(
        read(dup, 4) == Ok(data[1016..1020].to_vec()),
        "duplicate read",
    );
    check(offset(fd) == 1020, "the original moved along");
    println!("READ OK");
}

fn write_mode(dir: &Path) {
    let path = dir.join("data");
    fs::write(&path, [b'a'; 100]).unwrap();
    let fd = open_at(&path, libc::O_RDWR | libc::O_NONBLOCK, 51, false);
    seek(fd, 50);
    checkpoint();
    let (fl, cloexec) = flags(fd);
    check(
        fl & libc::O_ACCMODE == libc::O_RDWR && fl & libc::O_NONBLOCK != 0 && !cloexec,
        "flags",
    );
    check(write(fd, b"XYZ") == Ok(3), "write");
    let mut want = vec![b'a'; 100];
    want[50..53].copy_from_slice(b"XYZ");
    check(fs::read(&path).unwrap() == want, "written at offset 50");
    seek(fd, 49);
    check(read(fd, 5) == Ok(b"aXYZa".to_vec()), "read back");
    println!("WRITE OK");
}

fn append_mode(dir: &Path) {
    let path = dir.join("log");
    let fd = open_at(
        &path,
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT,
        52,
        true,
    );
    check(write(fd, b"first\n") == Ok(6), "first write");
    checkpoint();
    let (fl, _) = flags(fd);
    check(fl & libc::O_APPEND != 0, "O_APPEND");
    check(write(fd, b"after\n") == Ok(6), "write after restore");
    let text = fs::read_to_string(&path).unwrap();
    check(
        text == "first\nanother writer\nafter\n",
        &format!("log is {text:?}"),
    );
    check(offset(fd) == text.len() as i64, "offset at the end");
    println!("APPEND OK");
}

fn changed_mode(dir: &Path) {
    for (name, to) in [("same-size", 53), ("replaced", 54)] {
        let path = dir.join(name);
        fs::write(&path, b"original contents").unwrap();
        open_at(&path, libc::O_RDONLY, to, true);
    }
    checkpoint();
    println!("CHANGED RAN");
}

fn deleted_mode(dir: &Path) {
    let path = dir.join("gone");
    fs::write(&path, b"soon deleted").unwrap();
    let fd = open_at(&path, libc::O_RDONLY, 55, true);
    fs::remove_file(&path).unwrap();
    match try_checkpoint() {
        Ok(()) => fail("the checkpoint of a deleted open file succeeded"),
        Err(e) => println!("{e}"),
    }
    check(read(fd, 4) == Ok(b"soon".to_vec()), "still open");
    println!("still running: PID {}", std::process::id());
    std::process::exit(3);
}

fn policies_mode(dir: &Path, image: PathBuf) {
    // Reopen: the test replaces the file with a shorter one.
    let reopen = dir.join("reopen");
    fs::write(&reopen, [b'r'; 100]).unwrap();
    let old_ino = fs::metadata(&reopen).unwrap().ino();
    let r = open_at(&reopen, libc::O_RDONLY, 60, true);
    seek(r, 80);
    // Ignore: a log (write-only, append) and a deleted read-write file the
    // engine could not carry otherwise, and an eventfd it could.
    let ig_log = open_at(
        &dir.join("ignored.log"),
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT,
        61,
        false,
    );
    let gone = dir.join("gone");
    let ig_gone = open_at(&gone, libc::O_RDWR | libc::O_CREAT, 62, true);
    fs::remove_file(&gone).unwrap();
    // SAFETY: plain eventfd creation.
    let ig_ev = move_to(unsafe { libc::eventfd(3, libc::EFD_NONBLOCK) }, 63, true);
    // Close: a file read-only, a file write-only, a directory.
    fs::write(dir.join("closed-r"), b"unread").unwrap();
    let cl_r = open_at(&dir.join("closed-r"), libc::O_RDONLY, 64, true);
    let cl_w = open_at(
        &dir.join("closed-w"),
        libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK,
        65,
        false,
    );
    let cl_d = open_at(dir, libc::O_RDONLY | libc::O_DIRECTORY, 66, true);
    let fd_policies = vec![
        (r, FdPolicy::Reopen),
        (ig_log, FdPolicy::Ignore),
        (ig_gone, FdPolicy::Ignore),
        (ig_ev, FdPolicy::Ignore),
        (cl_r, FdPolicy::Close),
        (cl_w, FdPolicy::Close),
        (cl_d, FdPolicy::Close),
    ];
    checkpoint_with_policies(image, fd_policies);

    let st = fs::metadata(format!("/proc/self/fd/{r}")).unwrap();
    check(
        st.ino() != old_ino && st.len() == 40,
        "reopened the new file",
    );
    check(offset(r) == 40, &format!("offset {} not 40", offset(r)));
    check(read(r, 8) == Ok(Vec::new()), "at the end");
    seek(r, 0);
    check(read(r, 4) == Ok(b"NNNN".to_vec()), "new contents");

    for (fd, mode, append, cloexec) in [
        (ig_log, libc::O_WRONLY, true, false),
        (ig_gone, libc::O_RDWR, false, true),
        (ig_ev, libc::O_RDWR, false, true),
    ] {
        check(link(fd) == "/dev/null", &format!("{fd} is /dev/null"));
        let (fl, ce) = flags(fd);
        check(
            fl & libc::O_ACCMODE == mode && (fl & libc::O_APPEND != 0) == append && ce == cloexec,
            &format!("flags of ignored {fd}: {fl:#o}"),
        );
        check(write(fd, b"dropped") == Ok(7), "write to /dev/null");
    }
    check(
        read(ig_gone, 4) == Ok(Vec::new()),
        "/dev/null reads nothing",
    );
    check(read(ig_log, 4) == Err(libc::EBADF), "write-only /dev/null");

    for fd in [cl_r, cl_w, cl_d] {
        check(link(fd).starts_with("pipe:"), &format!("{fd} is a pipe"));
    }
    check(read(cl_r, 4) == Ok(Vec::new()), "closed file reads EOF");
    check(
        read(cl_d, 4) == Ok(Vec::new()),
        "closed directory reads EOF",
    );
    let (fl, ce) = flags(cl_w);
    check(
        fl & libc::O_NONBLOCK != 0 && !ce,
        "flags of closed write end",
    );
    check(
        write(cl_w, b"x") == Err(libc::EPIPE),
        "closed write gives EPIPE",
    );
    println!("POLICIES OK");
}

fn main() {
    crac::init();
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| fail("usage: fds_file MODE DIR")),
    );
    match mode.as_str() {
        "read" => read_mode(&dir),
        "write" => write_mode(&dir),
        "append" => append_mode(&dir),
        "changed" => changed_mode(&dir),
        "deleted" => deleted_mode(&dir),
        "policies" => {
            // Not CRAC_CHECKPOINT_TO: the library would serve its control
            // channel, whose socket the engine alone does not carry.
            let image = std::env::var_os("FDS_FILE_IMAGE")
                .unwrap_or_else(|| fail("policies needs FDS_FILE_IMAGE"));
            policies_mode(&dir, image.into());
        }
        other => fail(&format!("unknown mode {other:?}")),
    }
}
