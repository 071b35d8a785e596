//! The system calls the restorer makes, as thin functions returning
//! `Result<value, errno>`.
//!
//! # Safety
//! The restorer rebuilds its own address space: most of these calls replace
//! memory. Callers (the restorer's stage modules) make sure no Rust
//! reference points into a range they unmap or replace.

use crac_sys::raw::{nr, syscall6};

/// A failed call: positive errno.
pub type Res<T> = Result<T, i32>;

#[inline(always)]
fn ck(r: isize) -> Res<usize> {
    if (-4095..0).contains(&r) {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

#[inline(always)]
fn sc(n: usize, a: [usize; 6]) -> Res<usize> {
    // SAFETY: forwarded; every caller passes arguments valid for `n`.
    ck(unsafe { syscall6(n, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

pub const PROT_READ: u64 = 1;
pub const PROT_WRITE: u64 = 2;
pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const MAP_GROWSDOWN: u64 = 0x100;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MREMAP_MAYMOVE: u64 = 1;
pub const MREMAP_FIXED: u64 = 2;
pub const MADV_POPULATE_READ: u64 = 22;
pub const MADV_POPULATE_WRITE: u64 = 23;
pub const O_RDONLY: u64 = 0;
pub const O_RDWR: u64 = 2;
pub const O_CLOEXEC: u64 = 0o2_000_000;
pub const O_NONBLOCK: u64 = 0o4000;
pub const SEEK_END: u64 = 2;
pub const PR_SET_NAME: u64 = 15;
pub const PR_SET_PDEATHSIG: u64 = 1;
pub const PR_SET_MM: u64 = 35;
pub const PR_SET_MM_MAP: u64 = 14;
pub const ARCH_SET_GS: u64 = 0x1001;
pub const ARCH_SET_FS: u64 = 0x1002;
pub const FUTEX_WAIT_PRIVATE: u64 = 128;
pub const FUTEX_WAKE_PRIVATE: u64 = 129;
pub const CLOCK_REALTIME: u64 = 0;
const SYS_SET_TID_ADDRESS: usize = 218;
const SYS_PERSONALITY: usize = 135;
const SYS_SCHED_YIELD: usize = 24;
const SYS_PROCESS_VM_READV: usize = 310;

/// # Safety
/// With `MAP_FIXED` the range is replaced: nothing may refer into it.
pub unsafe fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: i32, off: u64) -> Res<u64> {
    sc(
        nr::MMAP,
        [
            addr as usize,
            len as usize,
            prot as usize,
            flags as usize,
            fd as isize as usize,
            off as usize,
        ],
    )
    .map(|a| a as u64)
}

/// # Safety
/// Nothing may refer into the range.
pub unsafe fn munmap(addr: u64, len: u64) -> Res<()> {
    sc(nr::MUNMAP, [addr as usize, len as usize, 0, 0, 0, 0]).map(drop)
}

/// # Safety
/// Removing access must not break code still using the range.
pub unsafe fn mprotect(addr: u64, len: u64, prot: u64) -> Res<()> {
    sc(
        nr::MPROTECT,
        [addr as usize, len as usize, prot as usize, 0, 0, 0],
    )
    .map(drop)
}

/// # Safety
/// Both ranges are replaced; nothing may refer into them.
pub unsafe fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64, new: u64) -> Res<u64> {
    sc(
        nr::MREMAP,
        [
            old as usize,
            old_len as usize,
            new_len as usize,
            flags as usize,
            new as usize,
            0,
        ],
    )
    .map(|a| a as u64)
}

pub fn madvise(addr: u64, len: u64, advice: u64) -> Res<()> {
    sc(
        nr::MADVISE,
        [addr as usize, len as usize, advice as usize, 0, 0, 0],
    )
    .map(drop)
}

/// Reads into the raw range `[addr, addr + len)`.
///
/// # Safety
/// The range must be mapped writable and not aliased by a Rust reference.
pub unsafe fn pread_raw(fd: i32, addr: u64, len: u64, off: u64) -> Res<usize> {
    sc(
        nr::PREAD64,
        [fd as usize, addr as usize, len as usize, off as usize, 0, 0],
    )
}

/// Copies `[src, src + len)` of our own memory to `[dst, ...)` through the
/// kernel (`process_vm_readv` on ourselves), so a destination that cannot
/// be written (a file-backed page past its file's end, say) fails with
/// `EFAULT` instead of a fault; returns the bytes copied.
///
/// # Safety
/// The destination must not be aliased by a Rust reference.
pub unsafe fn copy_in(dst: u64, src: u64, len: u64) -> Res<usize> {
    let local = [dst as usize, len as usize];
    let remote = [src as usize, len as usize];
    sc(
        SYS_PROCESS_VM_READV,
        [
            getpid() as usize,
            local.as_ptr() as usize,
            1,
            remote.as_ptr() as usize,
            1,
            0,
        ],
    )
}

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Res<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    unsafe { pread_raw(fd, buf.as_mut_ptr() as u64, buf.len() as u64, off) }
}

/// Reads from `off` until `buf` is full or the file ends (retrying
/// `EINTR`); returns the bytes read.
pub fn pread_full(fd: i32, buf: &mut [u8], off: u64) -> Res<usize> {
    let mut got = 0;
    while got < buf.len() {
        match pread(fd, &mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(4) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub fn read(fd: i32, buf: &mut [u8]) -> Res<usize> {
    sc(
        nr::READ,
        [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

pub fn write(fd: i32, buf: &[u8]) -> Res<usize> {
    sc(
        nr::WRITE,
        [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
    )
}

/// Opens a NUL-terminated path.
pub fn open(path: &[u8], flags: u64) -> Res<i32> {
    if path.last() != Some(&0) {
        return Err(22);
    }
    sc(
        nr::OPENAT,
        [
            -100isize as usize,
            path.as_ptr() as usize,
            flags as usize,
            0,
            0,
            0,
        ],
    )
    .map(|f| f as i32)
}

pub fn close(fd: i32) -> Res<()> {
    sc(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

pub fn close_range(first: u32, last: u32) -> Res<()> {
    sc(nr::CLOSE_RANGE, [first as usize, last as usize, 0, 0, 0, 0]).map(drop)
}

pub fn file_size(fd: i32) -> Res<u64> {
    sc(nr::LSEEK, [fd as usize, 0, SEEK_END as usize, 0, 0, 0]).map(|n| n as u64)
}

pub fn getpid() -> u32 {
    sc(nr::GETPID, [0; 6]).unwrap_or(0) as u32
}

pub fn getppid() -> u32 {
    sc(110, [0; 6]).unwrap_or(0) as u32
}

pub fn gettid() -> u32 {
    sc(nr::GETTID, [0; 6]).unwrap_or(0) as u32
}

pub fn block_all_signals() -> Res<()> {
    let all: u64 = !0;
    sc(
        nr::RT_SIGPROCMASK,
        [2, &all as *const u64 as usize, 0, 8, 0, 0],
    )
    .map(drop)
}

/// # Safety
/// The kernel writes the thread's rseq area and reads the robust list later.
pub unsafe fn set_robust_list(head: u64, len: u64) -> Res<()> {
    sc(
        nr::SET_ROBUST_LIST,
        [head as usize, len as usize, 0, 0, 0, 0],
    )
    .map(drop)
}

/// # Safety
/// The kernel writes `cpu_id` fields into the area from now on.
pub unsafe fn rseq(addr: u64, len: u32, flags: u32, sig: u32) -> Res<()> {
    sc(
        nr::RSEQ,
        [
            addr as usize,
            len as usize,
            flags as usize,
            sig as usize,
            0,
            0,
        ],
    )
    .map(drop)
}

/// # Safety
/// The kernel writes 0 there when the thread exits.
pub unsafe fn set_tid_address(addr: u64) {
    let _ = sc(SYS_SET_TID_ADDRESS, [addr as usize, 0, 0, 0, 0, 0]);
}

/// # Safety
/// Changes the TLS base: the caller must not use thread-local storage.
pub unsafe fn arch_prctl(code: u64, addr: u64) -> Res<()> {
    sc(nr::ARCH_PRCTL, [code as usize, addr as usize, 0, 0, 0, 0]).map(drop)
}

/// # Safety
/// `prctl` options that take pointers need valid pointers.
pub unsafe fn prctl(opt: u64, a2: u64, a3: u64, a4: u64) -> Res<usize> {
    sc(
        nr::PRCTL,
        [opt as usize, a2 as usize, a3 as usize, a4 as usize, 0, 0],
    )
}

pub fn sched_setaffinity(mask: &[u8]) -> Res<()> {
    sc(
        nr::SCHED_SETAFFINITY,
        [0, mask.len(), mask.as_ptr() as usize, 0, 0, 0],
    )
    .map(drop)
}

pub fn personality(p: u32) {
    let _ = sc(SYS_PERSONALITY, [p as usize, 0, 0, 0, 0, 0]);
}

pub fn futex_wait(word: &core::sync::atomic::AtomicU32, val: u32) {
    let _ = sc(
        nr::FUTEX,
        [
            word.as_ptr() as usize,
            FUTEX_WAIT_PRIVATE as usize,
            val as usize,
            0,
            0,
            0,
        ],
    );
}

pub fn futex_wake(word: &core::sync::atomic::AtomicU32) {
    let _ = sc(
        nr::FUTEX,
        [
            word.as_ptr() as usize,
            FUTEX_WAKE_PRIVATE as usize,
            i32::MAX as usize,
            0,
            0,
            0,
        ],
    );
}

pub fn realtime_ns() -> u64 {
    let mut ts = [0i64; 2];
    match sc(
        nr::CLOCK_GETTIME,
        [
            CLOCK_REALTIME as usize,
            ts.as_mut_ptr() as usize,
            0,
            0,
            0,
            0,
        ],
    ) {
        Ok(_) => (ts[0] as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts[1] as u64),
        Err(_) => 0,
    }
}

pub fn exit_group(code: i32) -> ! {
    loop {
        let _ = sc(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
    }
}

/// `FUTEX_WAIT` on a shared key: `clear_child_tid` wakes are not private.
pub const FUTEX_WAIT: u64 = 0;

pub fn futex_wait_shared(word: &core::sync::atomic::AtomicU32, val: u32) {
    let _ = sc(
        nr::FUTEX,
        [
            word.as_ptr() as usize,
            FUTEX_WAIT as usize,
            val as usize,
            0,
            0,
            0,
        ],
    );
}

/// `tgkill(tgid, tid, sig)`; signal 0 only checks that the thread exists.
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> Res<()> {
    sc(
        nr::TGKILL,
        [tgid as usize, tid as usize, sig as usize, 0, 0, 0],
    )
    .map(drop)
}

pub fn sched_yield() {
    let _ = sc(SYS_SCHED_YIELD, [0; 6]);
}

/// Ends the calling thread only.
pub fn exit_thread() -> ! {
    loop {
        let _ = sc(nr::EXIT, [0; 6]);
    }
}
