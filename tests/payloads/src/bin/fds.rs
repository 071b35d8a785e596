//! Kernel objects behind file descriptors across a checkpoint: `fds KIND`
//! sets one kind up with a known state, checkpoints itself, and after
//! restore checks that the descriptor has the same number, flags and state,
//! then prints "KIND OK" (or "FAILED: ..." and exits 1).
#![allow(unsafe_code)]

use std::os::fd::RawFd;

fn fail(msg: &str) -> ! {
    println!("FAILED: {msg}");
    std::process::exit(1)
}

fn check(cond: bool, msg: &str) {
    if !cond {
        fail(msg);
    }
}

/// The descriptor's status flags (`F_GETFL`) and whether close-on-exec is set.
fn flags(fd: RawFd) -> (i32, bool) {
    // SAFETY: fcntl queries on a descriptor number.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    let fdfl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    check(
        fl >= 0 && fdfl >= 0,
        &format!("descriptor {fd} is not open"),
    );
    (fl, fdfl & libc::FD_CLOEXEC != 0)
}

/// Moves `fd` to `to` (keeping close-on-exec as asked) so the test sees a
/// number no other descriptor would get by chance.
fn move_to(fd: RawFd, to: RawFd, cloexec: bool) -> RawFd {
    let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 onto a number this program reserves for the test.
    check(unsafe { libc::dup3(fd, to, fl) } == to, "dup3");
    // SAFETY: closing the original number, owned here.
    unsafe { libc::close(fd) };
    to
}

fn read_u64(fd: RawFd) -> Result<u64, i32> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let n = unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
    if n == 8 {
        Ok(v)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

fn checkpoint() {
    println!("pre-checkpoint PID: {}", std::process::id());
    if let Err(e) = crac::checkpoint_restore() {
        fail(&format!("checkpoint: {e}"));
    }
    println!("post-restore PID: {}", std::process::id());
}

/// An eventfd in semaphore mode with counter 5, non-blocking: five reads of
/// 1, then EAGAIN; a second one, blocking and without close-on-exec, holds
/// 2^40.
fn eventfd() {
    // SAFETY: plain eventfd creation.
    let sem = unsafe {
        libc::eventfd(
            5,
            libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
        )
    };
    let sem = move_to(sem, 40, true);
    // SAFETY: as above.
    let big = unsafe { libc::eventfd(0, 0) };
    let big = move_to(big, 41, false);
    let add = 1u64 << 40;
    // SAFETY: writes 8 bytes from a local.
    check(
        unsafe { libc::write(big, (&raw const add).cast(), 8) } == 8,
        "write",
    );
    checkpoint();
    let (fl, cloexec) = flags(sem);
    check(
        fl & libc::O_NONBLOCK != 0 && cloexec,
        "semaphore eventfd flags",
    );
    for i in 0..5 {
        check(read_u64(sem) == Ok(1), &format!("semaphore read {i}"));
    }
    check(
        read_u64(sem) == Err(libc::EAGAIN),
        "semaphore empty after 5 reads",
    );
    let (fl, cloexec) = flags(big);
    check(
        fl & libc::O_NONBLOCK == 0 && !cloexec,
        "plain eventfd flags",
    );
    check(read_u64(big) == Ok(1 << 40), "plain eventfd counter");
    println!("EVENTFD OK");
}

fn main() {
    crac::init();
    match std::env::args().nth(1).as_deref() {
        Some("eventfd") => eventfd(),
        other => fail(&format!("unknown kind {other:?}")),
    }
}
