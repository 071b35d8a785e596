//! Process state across a checkpoint: a POSIX timer and an interval timer
//! keep firing, signal dispositions, umask, working directory, a lowered
//! soft limit and the main thread's alternate signal stack are back.
//! `state` prints "STATE OK" after restore; `state shared` maps shared
//! anonymous memory, which the native engine must refuse (naming the
//! mapping) while the program goes on.
#![allow(unsafe_code)]
// A test program driving libc directly: one SAFETY comment per setup block.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use payload::{checkpoint, fail};

static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
static ALARM_TICKS: AtomicU64 = AtomicU64::new(0);
static AFTER_RESTORE: AtomicU64 = AtomicU64::new(0);
static USR2: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr2(_: libc::c_int) {
    USR2.fetch_add(1, Ordering::SeqCst);
}

/// Blocks or unblocks SIGUSR2 in the calling thread.
fn usr2_blocked(block: bool) {
    // SAFETY: a sigset built with sigemptyset/sigaddset, applied to this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

extern "C" fn on_usr1(_: libc::c_int) {
    TIMER_TICKS.fetch_add(1, Ordering::SeqCst);
}
extern "C" fn on_alarm(_: libc::c_int) {
    ALARM_TICKS.fetch_add(1, Ordering::SeqCst);
}

fn install(sig: libc::c_int, f: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with a plain handler that only touches an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = f as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn handler_of(sig: libc::c_int) -> usize {
    // SAFETY: querying a disposition into a zeroed struct.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut sa);
        sa.sa_sigaction
    }
}

fn main() {
    crac::init();
    crac::global_context().register_fn(
        |_| Ok(()),
        |_| {
            AFTER_RESTORE.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
    );
    if std::env::args().nth(1).as_deref() == Some("shared") {
        // SAFETY: a fresh shared anonymous mapping, only written below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping is 1 MiB long and writable.
        unsafe { *p.cast::<u8>() = 1 };
        println!("shared mapping at {:#x}", p as usize);
        match crac::checkpoint_restore() {
            Ok(()) => fail("a shared anonymous mapping was dumped"),
            Err(e) => println!("{e}"),
        }
        println!(
            "after_restore ran {} time(s); still running",
            AFTER_RESTORE.load(Ordering::SeqCst)
        );
        std::process::exit(3);
    }

    install(libc::SIGUSR1, on_usr1);
    install(libc::SIGALRM, on_alarm);
    install(libc::SIGUSR2, on_usr2);
    // A signal pending for the main thread across the checkpoint.
    usr2_blocked(true);
    // SAFETY: sends SIGUSR2 to this very thread, where it is blocked.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::gettid(),
            libc::SIGUSR2,
        )
    };
    // A POSIX timer: SIGUSR1 every 20 ms.
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: standard timer_create/timer_settime with valid structs.
    unsafe {
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = libc::SIGUSR1;
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer),
            0
        );
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            },
        };
        assert_eq!(
            libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
            0
        );
        // An interval timer: SIGALRM every 30 ms.
        let it = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 30_000,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 30_000,
            },
        };
        assert_eq!(
            libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()),
            0
        );
        libc::umask(0o027);
        let lim = libc::rlimit {
            rlim_cur: 512,
            rlim_max: libc::RLIM_INFINITY,
        };
        let mut cur: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
        let lim = libc::rlimit {
            rlim_max: cur.rlim_max,
            ..lim
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    std::env::set_current_dir("/tmp").unwrap();
    // A file mapped shared and read-only (the descriptor is closed again):
    // the restorer maps it again from the file.
    let data_path = std::env::temp_dir().join(format!("crac-state-{}.dat", std::process::id()));
    let pattern: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&data_path, &pattern).unwrap();
    let shared_file = {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&data_path).unwrap();
        // SAFETY: maps 64 KiB of a 64 KiB file read-only; only read below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                65536,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as usize
    };
    let shared_bytes = || {
        // SAFETY: the mapping above is 64 KiB, readable, and never unmapped.
        unsafe { std::slice::from_raw_parts(shared_file as *const u8, 65536) }.to_vec()
    };
    assert_eq!(shared_bytes(), pattern);
    // A private mapping of a file deleted afterwards, only partly read, and
    // two pages longer than the file: the image must keep every file page.
    let gone_path = std::env::temp_dir().join(format!("crac-gone-{}.dat", std::process::id()));
    // 1 MiB: well beyond the kernel's 64 KiB fault-around window.
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&gone_path, &big).unwrap();
    let gone = {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&gone_path).unwrap();
        // SAFETY: maps 1 MiB + 2 pages of a 1 MiB file privately, read-only;
        // only the first 1 MiB is ever read.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (1 << 20) + 8192,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as usize
    };
    std::fs::remove_file(&gone_path).unwrap();
    // SAFETY: reads the first byte of the mapping made above.
    let first = unsafe { *(gone as *const u8) };
    assert_eq!(first, big[0]);
    let gone_bytes = || {
        // SAFETY: the first 1 MiB of the mapping lies within the file.
        unsafe { std::slice::from_raw_parts(gone as *const u8, 1 << 20) }.to_vec()
    };
    std::thread::sleep(Duration::from_millis(100));
    let usr1 = handler_of(libc::SIGUSR1);
    checkpoint();
    let shared_ok = shared_bytes() == pattern;
    let _ = std::fs::remove_file(&data_path);
    if !shared_ok {
        fail("the shared file mapping differs after restore");
    }
    if gone_bytes() != big {
        fail("the mapping of a deleted file differs after restore");
    }
    let (t0, a0) = (
        TIMER_TICKS.load(Ordering::SeqCst),
        ALARM_TICKS.load(Ordering::SeqCst),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (t1, a1) = (
        TIMER_TICKS.load(Ordering::SeqCst),
        ALARM_TICKS.load(Ordering::SeqCst),
    );
    if t1 < t0 + 5 {
        fail(&format!("the POSIX timer stopped ({t0} -> {t1})"));
    }
    if a1 < a0 + 3 {
        fail(&format!("the interval timer stopped ({a0} -> {a1})"));
    }
    // SAFETY: querying state only.
    let (mask, soft, gettime_ok) = unsafe {
        let m = libc::umask(0);
        libc::umask(m);
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        let mut spec: libc::itimerspec = std::mem::zeroed();
        (
            m,
            r.rlim_cur,
            libc::timer_gettime(timer, &mut spec) == 0 && spec.it_interval.tv_nsec == 20_000_000,
        )
    };
    if mask != 0o027 {
        fail(&format!("umask is {mask:o}"));
    }
    if soft != 512 {
        fail(&format!("RLIMIT_NOFILE soft limit is {soft}"));
    }
    if !gettime_ok {
        fail("the timer id does not refer to the same timer");
    }
    if std::env::current_dir().unwrap() != std::path::Path::new("/tmp") {
        fail("the working directory changed");
    }
    if handler_of(libc::SIGUSR1) != usr1 {
        fail("the SIGUSR1 disposition changed");
    }
    if USR2.load(Ordering::SeqCst) != 0 {
        fail("SIGUSR2 was delivered while blocked");
    }
    usr2_blocked(false);
    if USR2.load(Ordering::SeqCst) != 1 {
        fail("the thread's pending SIGUSR2 was lost");
    }
    if AFTER_RESTORE.load(Ordering::SeqCst) != 1 {
        fail("after_restore did not run once");
    }
    // The main thread's alternate signal stack (Rust's std installs one).
    // SAFETY: querying the current alternate stack.
    let ss = unsafe {
        let mut ss: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut ss);
        ss
    };
    if ss.ss_flags & libc::SS_DISABLE != 0 {
        fail("the alternate signal stack is gone");
    }
    println!("STATE OK");
}
