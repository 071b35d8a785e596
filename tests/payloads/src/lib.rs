//! What the payload programs share: report a failure and exit, read a
//! descriptor's flags, move a descriptor to a chosen number, and checkpoint
//! with the "pre-checkpoint PID: " / "post-restore PID: " lines the tests
//! read; one-page mappings for the mapping-count benchmarks.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::path::PathBuf;

use crac_engine::native::{checkpoint as engine_checkpoint, DumpOptions, DumpOutcome, FdPolicy};

/// Prints "FAILED: MSG" (what the tests look for) and exits 1.
pub fn fail(msg: &str) -> ! {
    println!("FAILED: {msg}");
    std::process::exit(1)
}

/// Fails with `msg` unless `cond` holds.
pub fn check(cond: bool, msg: &str) {
    if !cond {
        fail(msg);
    }
}

/// The last system call's errno (0 if none).
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The descriptor's status flags (`F_GETFL`) and whether close-on-exec is set.
pub fn flags(fd: RawFd) -> (i32, bool) {
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
pub fn move_to(fd: RawFd, to: RawFd, cloexec: bool) -> RawFd {
    let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 onto a number this program reserves for the test.
    check(unsafe { libc::dup3(fd, to, fl) } == to, "dup3");
    // SAFETY: closing the original number, owned here.
    unsafe { libc::close(fd) };
    to
}

/// Checkpoints through `crac`; prints the PID before and, once restored,
/// after.
pub fn try_checkpoint() -> Result<(), crac::CheckpointRestoreError> {
    println!("pre-checkpoint PID: {}", std::process::id());
    crac::checkpoint_restore()?;
    println!("post-restore PID: {}", std::process::id());
    Ok(())
}

/// [`try_checkpoint`], failing the program if the checkpoint fails.
pub fn checkpoint() {
    if let Err(e) = try_checkpoint() {
        fail(&format!("checkpoint: {e}"));
    }
}

/// Checkpoints through the engine API into `dir` with per-descriptor
/// policies; fails the program unless it comes back restored.
pub fn checkpoint_with_policies(dir: PathBuf, fd_policies: Vec<(RawFd, FdPolicy)>) {
    println!("pre-checkpoint PID: {}", std::process::id());
    match engine_checkpoint(&DumpOptions {
        dir,
        fd_policies,
        ..Default::default()
    }) {
        Ok(DumpOutcome::Restored(_)) => {}
        other => fail(&format!("checkpoint: {other:?}")),
    }
    println!("post-restore PID: {}", std::process::id());
}

/// A deliberately slow hash: the "expensive computation" a service warms
/// up with.
pub fn slow_hash(mut x: u64) -> u64 {
    for _ in 0..64 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    }
    x ^ (x >> 33)
}

/// One page of a mapping of its own, holding its index.
#[derive(Debug)]
pub struct Page(*mut u64);

impl Page {
    /// The value written into the page.
    pub fn get(&self) -> u64 {
        // SAFETY: the page is mapped for the life of the process (never
        // unmapped) and readable.
        unsafe { self.0.read_volatile() }
    }
}

/// `n` one-page anonymous mappings; every other one is made read-only after
/// it is written, so neighbours never merge into one area.
pub fn many_mappings(n: usize) -> Vec<Page> {
    (0..n)
        .map(|i| {
            // SAFETY: a fresh private anonymous page, written once below.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            let p = p.cast::<u64>();
            // SAFETY: the page was just mapped writable.
            unsafe { p.write_volatile(i as u64) };
            if i % 2 == 1 {
                // SAFETY: changes only this page's protection.
                unsafe { libc::mprotect(p.cast(), 4096, libc::PROT_READ) };
            }
            Page(p)
        })
        .collect()
}

/// The wall clock in ns since the epoch (what the benchmarks' lines carry).
pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
