//! Credentials of the calling thread: ids, groups, capabilities and the
//! `prctl` flags that go with them (dump: recorded; restorer: set).
//!
//! Raw system calls act on the calling thread only (no libc broadcast), which
//! is what the restorer needs: it sets each thread's credentials itself.
//! Raw-int API like [`crate::sys`]: no allocation, async-signal-safe.
#![allow(unsafe_code)]

use crate::raw::{check, syscall6, Errno};

const NR_SETGROUPS: usize = 116;
const NR_GETGROUPS: usize = 115;
const NR_SETRESUID: usize = 117;
const NR_GETRESUID: usize = 118;
const NR_SETRESGID: usize = 119;
const NR_GETRESGID: usize = 120;
const NR_SETFSUID: usize = 122;
const NR_SETFSGID: usize = 123;
const NR_CAPGET: usize = 125;
const NR_CAPSET: usize = 126;
const NR_PRCTL: usize = 157;

/// `_LINUX_CAPABILITY_VERSION_3` (64-bit sets in two words).
const CAP_V3: u32 = 0x2008_0522;

/// `PR_GET_DUMPABLE`.
pub const PR_GET_DUMPABLE: i32 = 3;
/// `PR_SET_DUMPABLE`.
pub const PR_SET_DUMPABLE: i32 = 4;
/// `PR_CAPBSET_READ`.
pub const PR_CAPBSET_READ: i32 = 23;
/// `PR_CAPBSET_DROP`.
pub const PR_CAPBSET_DROP: i32 = 24;
/// `PR_GET_SECUREBITS`.
pub const PR_GET_SECUREBITS: i32 = 27;
/// `PR_SET_SECUREBITS`.
pub const PR_SET_SECUREBITS: i32 = 28;
/// `PR_SET_NO_NEW_PRIVS`.
pub const PR_SET_NO_NEW_PRIVS: i32 = 38;
/// `PR_GET_NO_NEW_PRIVS`.
pub const PR_GET_NO_NEW_PRIVS: i32 = 39;
/// `PR_CAP_AMBIENT`.
pub const PR_CAP_AMBIENT: i32 = 47;
/// `PR_CAP_AMBIENT_IS_SET`.
pub const PR_CAP_AMBIENT_IS_SET: usize = 1;
/// `PR_CAP_AMBIENT_RAISE`.
pub const PR_CAP_AMBIENT_RAISE: usize = 2;
/// `PR_CAP_AMBIENT_CLEAR_ALL`.
pub const PR_CAP_AMBIENT_CLEAR_ALL: usize = 4;
/// `SECBIT_NO_SETUID_FIXUP`: uid changes leave capabilities alone.
pub const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;

/// `prctl(op, a2, a3, a4, a5)` for the integer-only options above.
pub fn prctl(op: i32, a2: usize, a3: usize, a4: usize, a5: usize) -> Result<usize, Errno> {
    // SAFETY: the options used with this wrapper take integers only.
    check(unsafe { syscall6(NR_PRCTL, op as usize, a2, a3, a4, a5, 0) })
}

fn get3(nr: usize) -> Result<[u32; 3], Errno> {
    let mut v = [0u32; 3];
    let p = v.as_mut_ptr();
    // SAFETY: three u32 slots of `v`, borrowed for the call.
    check(unsafe {
        syscall6(
            nr,
            p as usize,
            p.wrapping_add(1) as usize,
            p.wrapping_add(2) as usize,
            0,
            0,
            0,
        )
    })?;
    Ok(v)
}

/// `getresuid()`: real, effective, saved.
pub fn getresuid() -> Result<[u32; 3], Errno> {
    get3(NR_GETRESUID)
}

/// `getresgid()`: real, effective, saved.
pub fn getresgid() -> Result<[u32; 3], Errno> {
    get3(NR_GETRESGID)
}

/// `setresuid(r, e, s)` for the calling thread.
pub fn setresuid(r: u32, e: u32, s: u32) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_SETRESUID, r as usize, e as usize, s as usize, 0, 0, 0) })
        .map(|_| ())
}

/// `setresgid(r, e, s)` for the calling thread.
pub fn setresgid(r: u32, e: u32, s: u32) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { syscall6(NR_SETRESGID, r as usize, e as usize, s as usize, 0, 0, 0) })
        .map(|_| ())
}

/// `setfsuid(id)`; returns the previous fs uid (the call cannot report
/// failure: compare with `fsuid_now()`).
pub fn setfsuid(id: u32) -> u32 {
    // SAFETY: integer argument only.
    unsafe { syscall6(NR_SETFSUID, id as usize, 0, 0, 0, 0, 0) as u32 }
}

/// `setfsgid(id)`; returns the previous fs gid.
pub fn setfsgid(id: u32) -> u32 {
    // SAFETY: integer argument only.
    unsafe { syscall6(NR_SETFSGID, id as usize, 0, 0, 0, 0, 0) as u32 }
}

/// The current fs uid (`setfsuid(-1)` changes nothing and returns it).
pub fn fsuid_now() -> u32 {
    setfsuid(u32::MAX)
}

/// The current fs gid.
pub fn fsgid_now() -> u32 {
    setfsgid(u32::MAX)
}

/// `getgroups(buf)`: the number of supplementary groups written (with an
/// empty `buf`: the number there are).
pub fn getgroups(buf: &mut [u32]) -> Result<usize, Errno> {
    // SAFETY: `buf` is writable for its length, borrowed for the call.
    check(unsafe {
        syscall6(
            NR_GETGROUPS,
            buf.len(),
            buf.as_mut_ptr() as usize,
            0,
            0,
            0,
            0,
        )
    })
}

/// `setgroups(groups)` for the calling thread.
pub fn setgroups(groups: &[u32]) -> Result<(), Errno> {
    // SAFETY: `groups` is readable for its length, borrowed for the call.
    check(unsafe {
        syscall6(
            NR_SETGROUPS,
            groups.len(),
            groups.as_ptr() as usize,
            0,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// Capability sets of the calling thread: (effective, permitted,
/// inheritable), 64-bit masks.
pub fn capget() -> Result<(u64, u64, u64), Errno> {
    let hdr = [CAP_V3, 0];
    let mut data = [0u32; 6];
    // SAFETY: a v3 header and two `__user_cap_data_struct`s (three u32 each),
    // borrowed for the call.
    check(unsafe {
        syscall6(
            NR_CAPGET,
            hdr.as_ptr() as usize,
            data.as_mut_ptr() as usize,
            0,
            0,
            0,
            0,
        )
    })?;
    let join = |i: usize| u64::from(data[i]) | (u64::from(data[i + 3]) << 32);
    Ok((join(0), join(1), join(2)))
}

/// Sets the calling thread's capability sets.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let hdr = [CAP_V3, 0];
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    let data = [
        lo(effective),
        lo(permitted),
        lo(inheritable),
        hi(effective),
        hi(permitted),
        hi(inheritable),
    ];
    // SAFETY: as `capget`; the data is only read.
    check(unsafe {
        syscall6(
            NR_CAPSET,
            hdr.as_ptr() as usize,
            data.as_ptr() as usize,
            0,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// Whether capability `cap` is in the bounding set (`None`: the kernel
/// does not know it).
pub fn cap_bound(cap: u32) -> Option<bool> {
    prctl(PR_CAPBSET_READ, cap as usize, 0, 0, 0)
        .ok()
        .map(|v| v == 1)
}

/// Whether capability `cap` is ambient (`None`: unknown to the kernel).
pub fn cap_ambient(cap: u32) -> Option<bool> {
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap as usize, 0, 0)
        .ok()
        .map(|v| v == 1)
}
