//! Kernel objects behind file descriptors across a checkpoint: `fds KIND`
//! sets one kind up with a known state, checkpoints itself, and after
//! restore checks that the descriptor has the same number, flags and state,
//! then prints "KIND OK" (or "FAILED: ..." and exits 1).
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use payload::{check, checkpoint, errno, fail, flags, move_to};

fn read_u64(fd: RawFd) -> Result<u64, i32> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let n = unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
    if n == 8 {
        Ok(v)
    } else {
        Err(errno())
    }
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
    // Before crac starts threads: they inherit the mask, so a signal sent
    // to the process waits for the signalfd instead of ending it.
    if std::env::args().nth(1).as_deref() == Some("signalfd") {
        block_usr_signals();
    }
    crac::init();
    match std::env::args().nth(1).as_deref() {
        Some("eventfd") => eventfd(),
        Some("timerfd") => timerfd(),
        Some("signalfd") => signalfd(),
        Some("epoll") => epoll(),
        Some("memfd") => memfd(),
        Some("epoll-stale") => epoll_stale(),
        other => fail(&format!("unknown kind {other:?}")),
    }
}

// ---- timerfd, signalfd, epoll, memfd ----

const MS: i64 = 1_000_000;

fn ts(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ns / 1_000_000_000,
        tv_nsec: ns % 1_000_000_000,
    }
}

fn ns_of(t: libc::timespec) -> i64 {
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut t = ts(0);
    // SAFETY: writes one timespec into `t`.
    unsafe { libc::clock_gettime(clock, &mut t) };
    ns_of(t)
}

fn settime(fd: RawFd, flags: i32, interval: i64, value: i64) {
    let spec = libc::itimerspec {
        it_interval: ts(interval),
        it_value: ts(value),
    };
    // SAFETY: reads one itimerspec; no old value asked for.
    let r = unsafe { libc::timerfd_settime(fd, flags, &spec, std::ptr::null_mut()) };
    check(r == 0, "timerfd_settime");
}

/// (interval ns, ns left).
fn gettime(fd: RawFd) -> (i64, i64) {
    let mut spec = libc::itimerspec {
        it_interval: ts(0),
        it_value: ts(0),
    };
    // SAFETY: writes one itimerspec.
    check(
        unsafe { libc::timerfd_gettime(fd, &mut spec) } == 0,
        "timerfd_gettime",
    );
    (ns_of(spec.it_interval), ns_of(spec.it_value))
}

fn timer(clock: libc::clockid_t, flags: i32, to: RawFd) -> RawFd {
    // SAFETY: plain timerfd creation.
    let fd = unsafe { libc::timerfd_create(clock, flags) };
    check(fd >= 0, "timerfd_create");
    move_to(fd, to, flags & libc::TFD_CLOEXEC != 0)
}

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

fn fdinfo(fd: RawFd) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default()
}

/// Timers on both sides of a rest of at least 2 s between checkpoint and
/// restore (the test sleeps): a periodic one goes on with its interval, a
/// one-shot that expired during the rest fires at once, a disarmed one
/// stays disarmed, an expiration not read before the checkpoint is still
/// there, an absolute wall-clock deadline stays where it was.
fn timerfd() {
    let nb = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
    let periodic = timer(libc::CLOCK_MONOTONIC, nb, 50);
    settime(periodic, 0, 50 * MS, 50 * MS);
    let oneshot = timer(libc::CLOCK_MONOTONIC, nb, 51);
    settime(oneshot, 0, 0, 1500 * MS);
    let disarmed = timer(libc::CLOCK_MONOTONIC, 0, 52);
    settime(disarmed, 0, 0, 10_000 * MS);
    settime(disarmed, 0, 0, 0);
    let unread = timer(libc::CLOCK_BOOTTIME, nb, 53);
    settime(unread, 0, 0, MS);
    // SAFETY: duplicating onto a number reserved for the test.
    check(unsafe { libc::dup3(unread, 55, 0) } == 55, "dup3");
    let abs = timer(libc::CLOCK_REALTIME, nb, 54);
    let deadline = now_ns(libc::CLOCK_REALTIME) + 60_000 * MS;
    settime(abs, libc::TFD_TIMER_ABSTIME, 0, deadline);
    std::thread::sleep(std::time::Duration::from_millis(20));
    checkpoint();
    let rested = now_ns(libc::CLOCK_REALTIME) - (deadline - 60_000 * MS);
    check(rested >= 2_000 * MS, &format!("rested only {rested} ns"));

    // The one-shot that expired during the rest fires at once.
    check(
        readable(oneshot, 200),
        "one-shot that expired during the rest did not fire at once",
    );
    check(read_u64(oneshot) == Ok(1), "one-shot expirations");
    check(gettime(oneshot) == (0, 0), "one-shot rearmed");
    check(
        read_u64(oneshot) == Err(libc::EAGAIN),
        "one-shot fired twice",
    );

    // The periodic one keeps firing with its interval.
    let (fl, cloexec) = flags(periodic);
    check(
        fl & libc::O_NONBLOCK != 0 && cloexec,
        "periodic timer flags",
    );
    check(gettime(periodic).0 == 50 * MS, "periodic interval");
    let _ = read_u64(periodic);
    let t = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let n = read_u64(periodic).unwrap_or(0);
    let periods = (t.elapsed().as_millis() / 50) as u64;
    check(
        n + 2 >= periods && n <= periods + 2,
        &format!("periodic timer fired {n} times in {periods} periods of 50 ms"),
    );

    // Disarmed stays disarmed; flags kept.
    let (fl, cloexec) = flags(disarmed);
    check(
        fl & libc::O_NONBLOCK == 0 && !cloexec,
        "disarmed timer flags",
    );
    check(gettime(disarmed) == (0, 0), "disarmed timer armed");
    check(!readable(disarmed, 0), "disarmed timer readable");

    // The expiration not read before the checkpoint.
    check(fdinfo(unread).contains("clockid: 7"), "boottime clock");
    // Read through its duplicate: one timer, one count.
    check(read_u64(55) == Ok(1), "unread expiration lost");
    check(
        read_u64(unread) == Err(libc::EAGAIN),
        "unread expiration doubled (the duplicate became a second timer)",
    );

    // The absolute deadline stays.
    let left = gettime(abs).1;
    let want = deadline - now_ns(libc::CLOCK_REALTIME);
    check(
        (left - want).abs() < 100 * MS,
        &format!("absolute deadline moved: {left} ns left, want {want}"),
    );
    check(
        fdinfo(abs).contains("settime flags: 01"),
        "absolute flag lost",
    );
    println!("TIMERFD OK");
}

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in sigs {
        // SAFETY: as above.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

fn block_usr_signals() {
    let set = sigset(&[libc::SIGUSR1, libc::SIGUSR2]);
    // SAFETY: changes this thread's mask.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    check(r == 0, "block SIGUSR1 and SIGUSR2");
}

/// The signal number a signalfd read gives, or the errno.
fn read_signal(fd: RawFd) -> Result<u32, i32> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads one signalfd_siginfo into `si`.
    let n = unsafe { libc::read(fd, (&raw mut si).cast(), len) };
    if n == len as isize {
        Ok(si.ssi_signo)
    } else {
        Err(errno())
    }
}

/// A non-blocking signalfd for SIGUSR1 and a blocking one for SIGUSR2
/// (signals blocked since start): after restore each reads its signal sent
/// to the process, and the SIGUSR2 pending at the checkpoint.
fn signalfd() {
    let set = sigset(&[libc::SIGUSR1]);
    // SAFETY: a new signalfd for `set`.
    let usr1 = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    let usr1 = move_to(usr1, 60, true);
    let set = sigset(&[libc::SIGUSR2]);
    // SAFETY: as above.
    let usr2 = unsafe { libc::signalfd(-1, &set, 0) };
    let usr2 = move_to(usr2, 61, false);
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: sends SIGUSR2 to this process (blocked: it stays pending).
    unsafe { libc::kill(pid, libc::SIGUSR2) };
    checkpoint();
    check(
        readable(usr2, 0),
        "SIGUSR2 pending at the checkpoint is gone",
    );
    check(
        read_signal(usr2) == Ok(libc::SIGUSR2 as u32),
        "SIGUSR2 pending at the checkpoint",
    );
    let (fl, cloexec) = flags(usr1);
    check(
        fl & libc::O_NONBLOCK != 0 && cloexec,
        "SIGUSR1 signalfd flags",
    );
    let (fl, cloexec) = flags(usr2);
    check(
        fl & libc::O_NONBLOCK == 0 && !cloexec,
        "SIGUSR2 signalfd flags",
    );
    check(
        fdinfo(usr1).contains("sigmask:\t0000000000000200"),
        &fdinfo(usr1),
    );
    check(
        read_signal(usr1) == Err(libc::EAGAIN),
        "signal before any was sent",
    );
    // SAFETY: as above, after restore.
    unsafe { libc::kill(pid, libc::SIGUSR2) };
    // SAFETY: as above, SIGUSR1.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    check(
        read_signal(usr1) == Ok(libc::SIGUSR1 as u32),
        "SIGUSR1 from its signalfd",
    );
    check(read_signal(usr1) == Err(libc::EAGAIN), "SIGUSR1 twice");
    check(
        read_signal(usr2) == Ok(libc::SIGUSR2 as u32),
        "SIGUSR2 from its signalfd",
    );
    println!("SIGNALFD OK");
}

fn ep_add(ep: RawFd, fd: RawFd, events: u32, data: u64) {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: reads one epoll_event.
    check(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } == 0,
        "epoll_ctl",
    );
}

/// The data words epoll `ep` reports now (no waiting).
fn ep_ready(ep: RawFd) -> Vec<u64> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    // SAFETY: room for 16 events.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 16, 0) };
    check(n >= 0, "epoll_wait");
    let mut v: Vec<u64> = evs[..n as usize].iter().map(|e| e.u64).collect();
    v.sort_unstable();
    v
}

fn new_eventfd(to: RawFd) -> RawFd {
    // SAFETY: plain eventfd creation.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    move_to(fd, to, true)
}

fn bump(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a local.
    check(
        unsafe { libc::write(fd, (&raw const one).cast(), 8) } == 8,
        "write",
    );
}

/// An epoll watching an eventfd (edge-triggered), a pipe (level), a
/// one-shot eventfd, a one-shot that already fired and another epoll:
/// after restore each reports its data word when its target gets ready,
/// with the same modes.
fn epoll() {
    const ET: u64 = 0xdead_beef_0000_0001;
    // SAFETY: plain epoll creation.
    let ep = move_to(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        70,
        true,
    );
    let edge = new_eventfd(71);
    let mut p = [0; 2];
    // SAFETY: pipe2 writes two ints.
    check(
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK) } == 0,
        "pipe2",
    );
    let (r, w) = (move_to(p[0], 72, false), move_to(p[1], 73, false));
    let once = new_eventfd(74);
    // SAFETY: plain epoll creation.
    let inner = move_to(unsafe { libc::epoll_create1(0) }, 75, false);
    let inner_target = new_eventfd(76);
    let fired = new_eventfd(77);
    let (inn, et, one) = (
        libc::EPOLLIN as u32,
        libc::EPOLLET as u32,
        libc::EPOLLONESHOT as u32,
    );
    ep_add(ep, edge, inn | et, ET);
    ep_add(ep, r, inn, 7);
    ep_add(ep, once, inn | one, 9);
    ep_add(inner, inner_target, inn, 11);
    ep_add(ep, inner, inn, 12);
    ep_add(ep, fired, inn | one, 13);
    // Duplicates: the outer epoll at 78, the inner one at 79 (also watched).
    // SAFETY: duplicating onto numbers reserved for the test.
    check(unsafe { libc::dup3(ep, 78, libc::O_CLOEXEC) } == 78, "dup3");
    // SAFETY: as above.
    check(unsafe { libc::dup3(inner, 79, 0) } == 79, "dup3");
    ep_add(ep, 79, inn, 14);
    // A thread waits in epoll_wait across the checkpoint, as an async
    // runtime's reactor does.
    // SAFETY: plain epoll creation.
    let reactor = move_to(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        85,
        true,
    );
    let wake = new_eventfd(86);
    ep_add(reactor, wake, inn | et, 42);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }];
        // SAFETY: room for one event.
        match unsafe { libc::epoll_wait(reactor, ev.as_mut_ptr(), 1, -1) } {
            1 => {
                let _ = tx.send(ev[0].u64);
                return;
            }
            _ if errno() == libc::EINTR => {}
            _ => {
                let _ = tx.send(0);
                return;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    bump(fired);
    check(ep_ready(ep) == [13], "one-shot before the checkpoint");
    check(
        ep_ready(ep).is_empty(),
        "nothing ready before the checkpoint",
    );
    checkpoint();

    let (_, cloexec) = flags(ep);
    check(cloexec, "epoll close-on-exec");
    let (_, cloexec) = flags(inner);
    check(!cloexec, "inner epoll close-on-exec");
    // The one-shot that fired stays disabled although its eventfd is ready.
    check(
        ep_ready(ep).is_empty(),
        &format!("ready after restore: {:x?}", ep_ready(ep)),
    );
    bump(edge);
    check(ep_ready(78) == [ET], "edge-triggered eventfd data word");
    check(
        ep_ready(ep).is_empty(),
        "edge-triggered reported twice (or the duplicate is a second epoll)",
    );
    let b = [1u8];
    // SAFETY: writes one byte.
    check(
        unsafe { libc::write(w, b.as_ptr().cast(), 1) } == 1,
        "pipe write",
    );
    check(ep_ready(ep) == [7], "pipe data word");
    check(
        ep_ready(ep) == [7],
        "level-triggered pipe reported once only",
    );
    let mut c = [0u8];
    // SAFETY: reads one byte.
    check(
        unsafe { libc::read(r, c.as_mut_ptr().cast(), 1) } == 1,
        "pipe read",
    );
    check(ep_ready(ep).is_empty(), "pipe still ready");
    bump(once);
    check(ep_ready(ep) == [9], "one-shot data word");
    bump(once);
    check(ep_ready(ep).is_empty(), "one-shot reported twice");
    bump(inner_target);
    check(ep_ready(ep) == [12, 14], "nested epoll data words");
    check(ep_ready(inner) == [11], "inner epoll data word");
    check(fdinfo(ep).matches("tfd:").count() == 6, &fdinfo(ep));
    bump(wake);
    let got = rx.recv_timeout(std::time::Duration::from_secs(5));
    check(got == Ok(42), &format!("waiting thread got {got:?}"));
    println!("EPOLL OK");
}

/// An epoll whose entry outlives its descriptor number (the eventfd was
/// added as 90, then reached only through its dup 91): the entry cannot be
/// rebuilt, so the checkpoint is refused and the process goes on.
fn epoll_stale() {
    let efd = new_eventfd(90);
    // SAFETY: duplicating onto a number reserved for the test.
    check(
        unsafe { libc::dup3(efd, 91, libc::O_CLOEXEC) } == 91,
        "dup3",
    );
    // SAFETY: plain epoll creation.
    let ep = move_to(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        92,
        true,
    );
    ep_add(ep, efd, libc::EPOLLIN as u32, 5);
    // SAFETY: closing a number owned here; the entry stays (91 holds the file).
    unsafe { libc::close(efd) };
    match crac::checkpoint_restore() {
        Ok(()) => fail("checkpoint of an epoll with a stale entry succeeded"),
        Err(e) => println!("refused: {e}"),
    }
    bump(91);
    check(ep_ready(ep) == [5], "the epoll after the refusal");
    println!("EPOLL-STALE OK");
}

const SPARSE_SIZE: usize = 64 << 20;
const SPARSE_DATA: usize = 40 << 20;

/// A 64 MiB memfd with one page of data at 40 MiB and three bytes at the
/// end; the rest are holes.
fn sparse_memfd() -> RawFd {
    let name = c"crac-sparse";
    // SAFETY: a new memfd with a NUL-terminated name.
    let fd = move_to(
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) },
        83,
        true,
    );
    // SAFETY: integer arguments.
    check(
        unsafe { libc::ftruncate(fd, SPARSE_SIZE as i64) } == 0,
        "ftruncate",
    );
    let page: Vec<u8> = (0..4096).map(pattern).collect();
    // SAFETY: writes `page`.
    let n = unsafe { libc::pwrite(fd, page.as_ptr().cast(), 4096, SPARSE_DATA as i64) };
    check(n == 4096, "pwrite");
    // SAFETY: writes three bytes.
    let n = unsafe { libc::pwrite(fd, b"end".as_ptr().cast(), 3, SPARSE_SIZE as i64 - 3) };
    check(n == 3, "pwrite");
    fd
}

/// The sparse memfd came back with its data, and its holes as holes.
fn check_sparse(fd: RawFd) {
    // SAFETY: struct stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat.
    check(unsafe { libc::fstat(fd, &mut st) } == 0, "fstat");
    check(st.st_size == SPARSE_SIZE as i64, "sparse memfd size");
    check(
        st.st_blocks * 512 <= 64 << 10,
        &format!("sparse memfd holes filled: {} blocks", st.st_blocks),
    );
    let mut buf = vec![0u8; 8192];
    // SAFETY: reads into `buf`.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 8192, SPARSE_DATA as i64 - 4096) };
    check(n == 8192, "sparse read");
    check(buf[..4096].iter().all(|&b| b == 0), "hole before the data");
    check(
        buf[4096..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(i)),
        "sparse memfd data",
    );
    // SAFETY: reads three bytes.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 3, SPARSE_SIZE as i64 - 3) };
    check(n == 3 && &buf[..3] == b"end", "sparse memfd tail");
}

const MEMFD_SIZE: usize = 3 << 20;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 12)) as u8 | 1
}

fn inode(fd: RawFd) -> u64 {
    // SAFETY: struct stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat.
    check(unsafe { libc::fstat(fd, &mut st) } == 0, "fstat");
    st.st_ino
}

fn seek(fd: RawFd, off: i64, whence: i32) -> i64 {
    // SAFETY: integer arguments.
    unsafe { libc::lseek(fd, off, whence) }
}

/// A sealed 3 MiB memfd at offset 12345, a dup of it and a read-only second
/// open at another offset: after restore name, bytes, size, seals, offsets
/// and sharing match, and the seals still hold.
fn memfd() {
    let name = c"crac-test";
    // SAFETY: a new memfd with a NUL-terminated name.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    let fd = move_to(fd, 80, true);
    let data: Vec<u8> = (0..MEMFD_SIZE).map(pattern).collect();
    // SAFETY: writes `data`.
    check(
        unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) } == MEMFD_SIZE as isize,
        "fill",
    );
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    // SAFETY: integer fcntl.
    check(
        unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } == 0,
        "F_ADD_SEALS",
    );
    check(seek(fd, 12345, libc::SEEK_SET) == 12345, "lseek");
    // SAFETY: duplicating onto a number reserved for the test.
    check(unsafe { libc::dup3(fd, 81, 0) } == 81, "dup3");
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
    // SAFETY: opens a NUL-terminated path.
    let ro = move_to(
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) },
        82,
        true,
    );
    check(seek(ro, 100, libc::SEEK_SET) == 100, "lseek ro");
    drop(data);
    let sparse = sparse_memfd();
    checkpoint();

    let link = std::fs::read_link("/proc/self/fd/80").map(|p| p.display().to_string());
    check(
        link.as_ref()
            .is_ok_and(|l| l == "/memfd:crac-test (deleted)"),
        &format!("memfd link {link:?}"),
    );
    let (fl, cloexec) = flags(fd);
    check(
        fl & libc::O_ACCMODE == libc::O_RDWR && cloexec,
        "memfd flags",
    );
    // SAFETY: integer fcntl.
    check(
        unsafe { libc::fcntl(fd, libc::F_GET_SEALS) } == seals,
        "seals",
    );
    check(seek(fd, 0, libc::SEEK_CUR) == 12345, "offset");
    check(seek(fd, 0, libc::SEEK_END) == MEMFD_SIZE as i64, "size");
    let mut back = vec![0u8; MEMFD_SIZE];
    // SAFETY: reads into `back`.
    let n = unsafe { libc::pread(fd, back.as_mut_ptr().cast(), MEMFD_SIZE, 0) };
    check(n == MEMFD_SIZE as isize, "read back");
    let bad = back.iter().enumerate().position(|(i, &b)| b != pattern(i));
    check(
        bad.is_none(),
        &format!("contents differ from byte {bad:?} on"),
    );
    // SAFETY: writes one byte past the end.
    let r = unsafe { libc::pwrite(fd, b"x".as_ptr().cast(), 1, MEMFD_SIZE as i64) };
    check(
        r == -1 && errno() == libc::EPERM,
        "write past the end despite F_SEAL_GROW",
    );
    // The dup shares the offset; the second open has its own, read-only.
    check(seek(fd, 500, libc::SEEK_SET) == 500, "lseek");
    check(
        seek(81, 0, libc::SEEK_CUR) == 500,
        "dup does not share the offset",
    );
    let (fl, cloexec) = flags(81);
    check(
        fl & libc::O_ACCMODE == libc::O_RDWR && !cloexec,
        "dup flags",
    );
    let (fl, cloexec) = flags(ro);
    check(
        fl & libc::O_ACCMODE == libc::O_RDONLY && cloexec,
        "read-only flags",
    );
    check(seek(ro, 0, libc::SEEK_CUR) == 100, "second open's offset");
    let mut one = [0u8];
    // SAFETY: reads one byte.
    check(
        unsafe { libc::pread(ro, one.as_mut_ptr().cast(), 1, 7) } == 1 && one[0] == pattern(7),
        "read-only contents",
    );
    check(inode(fd) == inode(ro), "second open is another file");
    check_sparse(sparse);
    println!("MEMFD OK");
}
