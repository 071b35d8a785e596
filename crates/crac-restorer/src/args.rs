//! The restore arguments (fd 6): a header with the restore start time, the
//! flags and the PID of `crac restore`, the environment block, and the
//! credentials the preflight checked, mapped read-only into the zone.

use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use crac_image::{CredsRecord, Reader, Tag};

use crate::sys::*;
use crate::userfault::LAZY_REQUESTED;
use crate::{err, page_up, watch_parent, ARGS_AREA, ARGS_FD, ARGS_MAX, R};

/// Restore arguments header: start time, flags, parent PID, environment
/// length (`u64` each).
pub(crate) const ARGS_HEADER: u64 = 32;
/// Restore argument flag: load private anonymous memory lazily.
const ARG_LAZY: u64 = 1;

/// What the restore arguments say (the lazy flag goes to
/// [`LAZY_REQUESTED`]).
pub(crate) struct Args {
    /// When `crac restore` started (ns since the epoch).
    pub(crate) started_ns: u64,
    /// The PID of `crac restore`.
    pub(crate) parent: u64,
    /// The length of the environment block, which follows the header.
    pub(crate) env_len: u64,
    /// The credentials the preflight checked.
    pub(crate) checked: CredsRecord<'static>,
}

/// Reads the restore arguments and maps them into the zone; sets the
/// parent-death signal as soon as it knows the parent.
pub(crate) fn read_args() -> R<Args> {
    let mut hdr = [0u8; ARGS_HEADER as usize];
    match pread(ARGS_FD, &mut hdr, 0) {
        Ok(n) if n == hdr.len() => {}
        Ok(n) => {
            return Err(fail!(
                0,
                n as u64,
                "the restore arguments are {n} bytes, fewer than {ARGS_HEADER}"
            ))
        }
        Err(e) => return Err(fail!(e, 0, "reading the restore arguments failed")),
    }
    let word = |i: usize| u64::from_le_bytes(hdr[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let (started_ns, flags, parent, env_len) = (word(0), word(1), word(2), word(3));
    // If `crac restore` dies, so does this process: never half restored,
    // and never running with memory nobody will load.
    watch_parent(parent)?;
    LAZY_REQUESTED.store((flags & ARG_LAZY != 0) as u32, Ordering::Relaxed);
    if env_len > ARGS_MAX - ARGS_HEADER {
        return Err(fail!(
            0,
            env_len,
            "the environment block has {env_len} bytes (at most {} fit)",
            ARGS_MAX - ARGS_HEADER
        ));
    }
    // The credentials the preflight checked follow the environment.
    let creds_at = (ARGS_HEADER + env_len).next_multiple_of(8);
    let mut len = [0u8; 8];
    if pread(ARGS_FD, &mut len, creds_at) != Ok(8) {
        return Err(fail!(
            0,
            creds_at,
            "the restore arguments lack the checked credentials"
        ));
    }
    let creds_len = u64::from_le_bytes(len);
    if creds_len > ARGS_MAX - creds_at - 8 {
        return Err(fail!(
            0,
            creds_len,
            "the checked credentials have {creds_len} bytes"
        ));
    }
    // SAFETY: the arguments area of the zone is reserved for this mapping.
    unsafe {
        mmap(
            ARGS_AREA,
            page_up(creds_at + 8 + creds_len),
            PROT_READ,
            MAP_PRIVATE | MAP_FIXED,
            ARGS_FD,
            0,
        )
    }
    .map_err(|e| fail!(e, ARGS_AREA, "mapping the restore arguments failed"))?;

    // SAFETY: mapped read-only just above, never unmapped or written while
    // the restorer runs.
    let blob: &'static [u8] = unsafe {
        core::slice::from_raw_parts((ARGS_AREA + creds_at + 8) as *const u8, creds_len as usize)
    };
    let checked = checked_creds(blob)?;
    Ok(Args {
        started_ns,
        parent,
        env_len,
        checked,
    })
}

/// Decodes the credentials `crac restore` checked (one `Creds` section).
fn checked_creds(blob: &'static [u8]) -> R<CredsRecord<'static>> {
    let bad = || {
        fail!(
            0,
            0,
            "the checked credentials in the restore arguments are damaged"
        )
    };
    match Reader::new(blob).next_section() {
        Ok(Some((tag, mut p))) if tag == Tag::Creds as u32 => {
            CredsRecord::decode(&mut p).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}
