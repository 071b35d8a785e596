//! Gives the calling thread the image's credentials.
//!
//! Credentials are per thread: every image thread calls [`apply`] itself,
//! after everything that needs the restorer's privilege (`clone3` with
//! `set_tid`, `PR_SET_MM_MAP` with the executable) is done. The order keeps
//! the privilege needed for each step until that step ran:
//! groups, `SECBIT_NO_SETUID_FIXUP` (uid changes then keep capabilities),
//! gids, uids, bounding set, inheritable and ambient sets, securebits, and
//! last the effective and permitted sets. Steps that would change nothing
//! are skipped, so an unprivileged caller restoring its own image needs no
//! privilege here. The result is read back: a thread never runs with
//! credentials other than the image's.

use crac_image::CredsRecord;
use crac_sys::creds as sc;

use core::fmt::Write as _;

use crate::{err, R};

const CAP_SETGID: u64 = 6;
const CAP_SETPCAP: u64 = 8;

fn errno(e: crac_sys::Errno) -> i32 {
    e.0
}

/// The supplementary groups as `u32`s, in place in the mapped metadata.
fn groups(c: &CredsRecord<'static>) -> R<&'static [u32]> {
    let b = c.groups;
    if !(b.as_ptr() as usize).is_multiple_of(4) {
        return Err(fail!(
            0,
            0,
            "the credentials record's group list is misaligned"
        ));
    }
    // SAFETY: `b` lies in the read-only metadata mapping, which lives as long
    // as the restorer; it is 4-aligned (checked) and its length a multiple of
    // 4 (checked by the decoder); every bit pattern is a valid u32.
    Ok(unsafe { core::slice::from_raw_parts(b.as_ptr() as *const u32, b.len() / 4) })
}

/// `setgroups(groups)`, except where the kernel allows no process to set
/// groups: in a user namespace whose `setgroups` is `deny` (a rootless
/// restore, `crac restore --pidns` as another user than root), the caller
/// keeps its own groups, which the preflight found to include the image's.
fn set_groups(groups: &[u32]) -> Result<(), crac_sys::Errno> {
    match sc::setgroups(groups) {
        Err(e) if e.0 == 1 && setgroups_denied() => Ok(()),
        r => r,
    }
}

fn setgroups_denied() -> bool {
    let Ok(fd) = crate::sys::open(b"/proc/self/setgroups\0", 0) else {
        return false;
    };
    let mut b = [0u8; 8];
    let n = crate::sys::read(fd, &mut b).unwrap_or(0);
    let _ = crate::sys::close(fd);
    b[..n].starts_with(b"deny")
}

fn has(set: u64, cap: u64) -> bool {
    set & (1 << cap) != 0
}

/// Before the restorer opens any file the image names: opens are checked
/// with the image's filesystem ids and groups, so an image cannot map a file
/// its user could not open (moving the fs uid away from 0 also drops the
/// file capabilities from the effective set). Everything else keeps the
/// restorer's privilege until [`apply`].
pub fn enter_fs(c: &CredsRecord<'static>) -> R<()> {
    let groups = groups(c)?;
    let (eff, _, _) =
        sc::capget().map_err(|e| fail!(errno(e), 0, "reading the capabilities failed"))?;
    if has(eff, CAP_SETGID) {
        set_groups(groups).map_err(|e| {
            fail!(
                errno(e),
                0,
                "setting {} supplementary groups failed",
                groups.len()
            )
        })?;
    }
    let (fu, fg) = (c.uids[3], c.gids[3]);
    sc::setfsgid(fg);
    sc::setfsuid(fu);
    if sc::fsuid_now() != fu || sc::fsgid_now() != fg {
        return Err(fail!(
            0,
            u64::from(fu),
            "opening files as the image's user (fs uid {fu}, fs gid {fg}) is not permitted"
        ));
    }
    Ok(())
}

/// Sets the calling thread's credentials to `c` (thread `tid`, for errors).
pub fn apply(c: &CredsRecord<'static>, tid: u32) -> R<()> {
    let t = tid as u64;
    let groups = groups(c)?;
    let (eff, _, _) =
        sc::capget().map_err(|e| fail!(errno(e), t, "reading the capabilities failed"))?;
    // Without CAP_SETGID the caller restores its own image (preflight) and
    // keeps its own groups.
    if has(eff, CAP_SETGID) {
        set_groups(groups).map_err(|e| {
            fail!(
                errno(e),
                t,
                "setting {} supplementary groups failed for TID {tid}",
                groups.len()
            )
        })?;
    }
    let [ru, eu, su, fu] = c.uids;
    let [rg, eg, sg, fg] = c.gids;
    let uids_now = sc::getresuid().map_err(|e| fail!(errno(e), t, "getresuid failed"))?;
    let secbits_now = sc::prctl(sc::PR_GET_SECUREBITS, 0, 0, 0, 0).unwrap_or(0) as u32;
    if uids_now != [ru, eu, su] && has(eff, CAP_SETPCAP) {
        sc::prctl(
            sc::PR_SET_SECUREBITS,
            (secbits_now | sc::SECBIT_NO_SETUID_FIXUP) as usize,
            0,
            0,
            0,
        )
        .map_err(|e| {
            fail!(
                errno(e),
                t,
                "keeping capabilities across the uid change failed"
            )
        })?;
    }
    sc::setresgid(rg, eg, sg).map_err(|e| {
        fail!(
            errno(e),
            t,
            "setresgid({rg}, {eg}, {sg}) failed for TID {tid}"
        )
    })?;
    sc::setfsgid(fg);
    sc::setresuid(ru, eu, su).map_err(|e| {
        fail!(
            errno(e),
            t,
            "setresuid({ru}, {eu}, {su}) failed for TID {tid}"
        )
    })?;
    sc::setfsuid(fu);
    for cap in 0..crac_image::creds::CAP_BITS {
        if has(c.cap_bounding, cap as u64) {
            continue;
        }
        match sc::cap_bound(cap) {
            // Past the kernel's last capability: none after it exists.
            None => break,
            Some(false) => continue,
            Some(true) => {}
        }
        sc::prctl(sc::PR_CAPBSET_DROP, cap as usize, 0, 0, 0).map_err(|e| {
            fail!(
                errno(e),
                t,
                "dropping capability {cap} from the bounding set failed"
            )
        })?;
    }
    let (_, perm, _) = sc::capget().map_err(|e| fail!(errno(e), t, "capget failed"))?;
    // Keep every permitted capability effective until the last step: the
    // securebits need CAP_SETPCAP.
    sc::capset(perm, perm, c.cap_inheritable)
        .map_err(|e| fail!(errno(e), t, "setting the inheritable capabilities failed"))?;
    let _ = sc::prctl(sc::PR_CAP_AMBIENT, sc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for cap in 0..crac_image::creds::CAP_BITS {
        if has(c.cap_ambient, cap as u64) {
            sc::prctl(
                sc::PR_CAP_AMBIENT,
                sc::PR_CAP_AMBIENT_RAISE,
                cap as usize,
                0,
                0,
            )
            .map_err(|e| fail!(errno(e), t, "raising ambient capability {cap} failed"))?;
        }
    }
    let secbits_now = sc::prctl(sc::PR_GET_SECUREBITS, 0, 0, 0, 0).unwrap_or(0) as u32;
    if secbits_now != c.securebits {
        sc::prctl(sc::PR_SET_SECUREBITS, c.securebits as usize, 0, 0, 0)
            .map_err(|e| fail!(errno(e), t, "setting securebits {:#x} failed", c.securebits))?;
    }
    sc::capset(c.cap_effective, c.cap_permitted, c.cap_inheritable).map_err(|e| {
        fail!(
            errno(e),
            t,
            "setting capabilities (effective {:#x}, permitted {:#x}) failed for TID {tid}",
            c.cap_effective,
            c.cap_permitted
        )
    })?;
    if c.flags & crac_image::CREDS_NO_NEW_PRIVS != 0 {
        sc::prctl(sc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            .map_err(|e| fail!(errno(e), t, "setting no_new_privs failed"))?;
    }
    verify(c, tid)
}

/// Reads the credentials back: a step the kernel ignored (`setfs*id` report
/// nothing) must not go unnoticed.
fn verify(c: &CredsRecord<'static>, tid: u32) -> R<()> {
    let t = tid as u64;
    let uids = sc::getresuid().map_err(|e| fail!(errno(e), t, "getresuid failed"))?;
    let gids = sc::getresgid().map_err(|e| fail!(errno(e), t, "getresgid failed"))?;
    let ids_ok = uids[..] == c.uids[..3]
        && sc::fsuid_now() == c.uids[3]
        && gids[..] == c.gids[..3]
        && sc::fsgid_now() == c.gids[3];
    if !ids_ok {
        return Err(fail!(
            0,
            t,
            "TID {tid} runs as uids {:?} gids {:?}, not the image's {:?} {:?}",
            uids,
            gids,
            c.uids,
            c.gids
        ));
    }
    let caps = sc::capget().map_err(|e| fail!(errno(e), t, "capget failed"))?;
    if caps != (c.cap_effective, c.cap_permitted, c.cap_inheritable) {
        return Err(fail!(
            0,
            t,
            "TID {tid} has capabilities {:#x}/{:#x}/{:#x}, not the image's",
            caps.0,
            caps.1,
            caps.2
        ));
    }
    Ok(())
}

/// After every thread has its credentials: the process's dumpable flag
/// (a credential change reset it to the system's `suid_dumpable`).
pub fn set_dumpable(c: &CredsRecord<'static>) -> R<()> {
    sc::prctl(sc::PR_SET_DUMPABLE, c.dumpable as usize, 0, 0, 0)
        .map(|_| ())
        .map_err(|e| fail!(errno(e), 0, "setting dumpable to {} failed", c.dumpable))
}
