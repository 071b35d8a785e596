//! Lazy restore payload: the program changes its memory the moment it is
//! restored, while `crac restore` is still loading it, and checks that every
//! change means what it means in a process never checkpointed.
//!
//! Before the checkpoint it fills six private anonymous regions with a
//! pattern. Right after the restore (`restored` printed first; `loading at
//! start` tells whether memory was still loading then):
//!
//! * A: `MADV_DONTNEED` of its middle third → zeros there, pattern around;
//! * B: unmapped and mapped anew at the same address → zeros;
//! * C: moved with `mremap` → the pattern at its new address;
//! * D, F: a forked child checks them after its parent has exited;
//! * E: the kernel reads it (`write` to a pipe) and writes into it (`read`
//!   from `/dev/zero`) → the pattern arrives, then zeros;
//! * G (no access) and H (read-only), protected before the checkpoint: the
//!   pattern, once G is made readable again.
//!
//! With the argument `hold` it only sleeps 30 s after the restore (then
//! exits with status 3). With the argument `again` the program then checkpoints once more at
//! once (`still loading` tells whether memory was still loading;
//! `CRAC_CHECKPOINT_TO` is set anew through `crac restore --env`), and the
//! checks run after that second restore. Otherwise they run right away.
//!
//! Each check prints `NAME ok: true|false`; the exit status is 0 only if all
//! held.
use std::io::{Read, Write};

const MIB: usize = 1 << 20;
const SIZES: [usize; 8] = [
    32 * MIB,
    32 * MIB,
    32 * MIB,
    32 * MIB,
    32 * MIB,
    128 * MIB,
    2 * MIB,
    2 * MIB,
];

fn word(region: usize, i: usize) -> u64 {
    let mut x = (region as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn map(len: usize) -> *mut u64 {
    // SAFETY: a fresh private anonymous mapping chosen by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

fn words<'a>(p: *mut u64, from: usize, to: usize) -> &'a mut [u64] {
    // SAFETY: callers pass word ranges inside a live mapping of theirs that
    // no other reference covers.
    unsafe { std::slice::from_raw_parts_mut(p.wrapping_add(from), to - from) }
}

fn pattern_ok(region: usize, p: *mut u64, from: usize, to: usize) -> bool {
    words(p, from, to)
        .iter()
        .enumerate()
        .all(|(k, &w)| w == word(region, from + k))
}

fn zeros_ok(p: *mut u64, from: usize, to: usize) -> bool {
    words(p, from, to).iter().all(|&w| w == 0)
}

fn report(name: &str, ok: bool, all: &mut bool) {
    println!("{name} ok: {ok}");
    *all &= ok;
}

/// Whether any area of this process is still registered with a userfaultfd.
fn loading() -> bool {
    std::fs::read_to_string("/proc/self/smaps")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "um"))
}

fn main() {
    crac::init();
    let r: Vec<*mut u64> = SIZES.iter().map(|&len| map(len)).collect();
    for (n, (&p, &len)) in r.iter().zip(&SIZES).enumerate() {
        for (i, w) in words(p, 0, len / 8).iter_mut().enumerate() {
            *w = word(n, i);
        }
    }
    let w = |n: usize| SIZES[n] / 8;
    // Advice the restore gives back: G is not inherited by a child, E
    // asks for huge pages.
    for (n, advice) in [(6, libc::MADV_DONTFORK), (4, libc::MADV_HUGEPAGE)] {
        // SAFETY: the whole of a mapping of ours.
        let rc = unsafe { libc::madvise(r[n].cast(), SIZES[n], advice) };
        assert_eq!(rc, 0);
    }
    // G has no access and H is read-only while they load.
    for (n, prot) in [(6, libc::PROT_NONE), (7, libc::PROT_READ)] {
        // SAFETY: the whole of a mapping of ours; no reference into it lives.
        let rc = unsafe { libc::mprotect(r[n].cast(), SIZES[n], prot) };
        assert_eq!(rc, 0);
    }
    println!("pre-checkpoint PID: {}", std::process::id());
    std::io::stdout().flush().unwrap();
    if let Err(e) = crac::checkpoint_restore() {
        println!("error: {e}");
        std::process::exit(1);
    }
    println!("restored");
    if std::env::args().nth(1).as_deref() == Some("hold") {
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(30));
        std::process::exit(3);
    }
    // Everything below first changes memory, while it is still loading
    // (the pager fills from low addresses up: A, mapped first, lies
    // highest), and only then reads it.
    let at_start = loading();
    let mut all = true;

    // A: the middle third discarded.
    let (a, third) = (r[0], w(0) / 3 / 512 * 512);
    // SAFETY: a page-aligned range inside A, which no reference covers.
    let r_a =
        unsafe { libc::madvise(a.wrapping_add(third).cast(), third * 8, libc::MADV_DONTNEED) };
    assert_eq!(r_a, 0);
    // B: unmapped and mapped anew.
    let b = r[1];
    // SAFETY: B is ours; nothing refers into it.
    assert_eq!(unsafe { libc::munmap(b.cast(), SIZES[1]) }, 0);
    // SAFETY: refills the hole just made.
    let nb = unsafe {
        libc::mmap(
            b.cast(),
            SIZES[1],
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    assert_eq!(nb, b.cast());
    // C: moved elsewhere.
    let dest = map(SIZES[2]);
    // SAFETY: moves C over the fresh reservation `dest`.
    let c = unsafe {
        libc::mremap(
            r[2].cast(),
            SIZES[2],
            SIZES[2],
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dest.cast::<libc::c_void>(),
        )
    };
    assert_eq!(c, dest.cast());
    let c: *mut u64 = c.cast();
    // D: one page made read-only, which splits its area in three (the
    // kernel reports no event for that).
    let split = r[3].wrapping_add(2 * MIB + 3 * 512);
    // SAFETY: one page inside D; no reference into it lives.
    let rc = unsafe { libc::mprotect(split.cast(), 4096, libc::PROT_READ) };
    assert_eq!(rc, 0);
    // H: a child gets it empty.
    // SAFETY: the whole of H, a mapping of ours.
    let rc = unsafe { libc::madvise(r[7].cast(), SIZES[7], libc::MADV_WIPEONFORK) };
    assert_eq!(rc, 0);
    // D, F and H: a child checks them after its parent is gone.
    // SAFETY: the child only reads memory, prints and exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let g = format!("{:x}-", r[6] as usize);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let ok = pattern_ok(3, r[3], 0, w(3))
            && pattern_ok(5, r[5], 0, w(5))
            && zeros_ok(r[7], 0, w(7))
            && !maps.lines().any(|l| l.starts_with(&g));
        println!("child ok: {ok}");
        std::io::stdout().flush().unwrap();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    // E: the kernel reads and writes lazily loaded memory.
    let e = r[4];
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let chunk = 16384usize;
    // SAFETY: E holds at least `chunk` bytes at word 4096.
    let n = unsafe { libc::write(fds[1], e.wrapping_add(4096).cast(), chunk) };
    let mut back = vec![0u8; chunk];
    // SAFETY: the read end was just created and is owned here.
    let mut rd = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[0])
    });
    rd.read_exact(&mut back).unwrap();
    let mut zero = std::fs::File::open("/dev/zero").unwrap();
    zero.read_exact(bytemuck_bytes(e, 65536, 8192)).unwrap();
    // No descriptors left open for the next checkpoint.
    drop((rd, zero));
    // SAFETY: the write end is ours and nothing else uses it.
    unsafe { libc::close(fds[1]) };
    println!("loading at start: {at_start}");

    if std::env::args().nth(1).as_deref() == Some("again") {
        println!("still loading: {}", loading());
        std::io::stdout().flush().unwrap();
        if let Err(e) = crac::checkpoint_restore() {
            println!("error: {e}");
            std::process::exit(1);
        }
        println!("restored again");
    }
    report(
        "dontneed",
        pattern_ok(0, a, 0, third)
            && zeros_ok(a, third, 2 * third)
            && pattern_ok(0, a, 2 * third, w(0)),
        &mut all,
    );
    report("remapped", zeros_ok(b, 0, w(1)), &mut all);
    report("moved", pattern_ok(2, c, 0, w(2)), &mut all);
    let expect: Vec<u8> = (0..chunk / 8)
        .flat_map(|k| word(4, 4096 + k).to_le_bytes())
        .collect();
    report(
        "kernel-read",
        n == chunk as isize && back == expect,
        &mut all,
    );
    report(
        "kernel-write",
        zeros_ok(e, 65536, 65536 + 1024) && pattern_ok(4, e, 0, 65536),
        &mut all,
    );
    report(
        "untouched",
        pattern_ok(3, r[3], 0, w(3)) && pattern_ok(5, r[5], 0, w(5)),
        &mut all,
    );
    // SAFETY: the whole of G, a mapping of ours; no reference into it lives.
    let rc = unsafe { libc::mprotect(r[6].cast(), SIZES[6], libc::PROT_READ) };
    assert_eq!(rc, 0);
    report(
        "advice",
        flags_of(r[6]).contains(&"dc".to_string()) && flags_of(r[4]).contains(&"hg".to_string()),
        &mut all,
    );
    report(
        "protected",
        pattern_ok(6, r[6], 0, w(6)) && pattern_ok(7, r[7], 0, w(7)),
        &mut all,
    );
    std::io::stdout().flush().unwrap();
    std::process::exit(if all { 0 } else { 1 });
}

/// The `VmFlags` of the mapping that starts at `p`.
fn flags_of(p: *mut u64) -> Vec<String> {
    let head = format!("{:x}-", p as usize);
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    smaps
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .find_map(|l| l.strip_prefix("VmFlags:"))
        .map(|f| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `len` bytes of the mapping `p` from word `from`, as bytes.
fn bytemuck_bytes<'a>(p: *mut u64, from: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: inside a live mapping of ours; no other reference covers it.
    unsafe { std::slice::from_raw_parts_mut(p.wrapping_add(from).cast(), len) }
}
