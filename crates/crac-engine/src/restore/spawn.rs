//! Stage 2 of a restore: starting the restorer. It gets what the preflight
//! checked, never a path again (the metadata bytes in a sealed memfd, the
//! page file's descriptor), its arguments and the descriptors the program
//! inherited at start, and runs as a new process with the image's PID.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crac_image::status::{Stage, Status};
use crac_sys::raw::{Errno, ExecChild};

use super::memfd::{memfd, sealed_memfd};
use super::{
    inherit, preflight, setup, unpack, Plan, RestoreError, RestoreOptions, RestoreWarning,
};

/// The restorer program, built by `build.rs` from `crates/crac-restorer`.
pub(super) static RESTORER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crac-restorer"));

/// The restorer, started.
pub(super) struct Spawned {
    /// Its PID: the image's.
    pub pid: u32,
    /// Our end of its status socket.
    pub status: OwnedFd,
    /// Inherited descriptors the program gets as /dev/null.
    pub warnings: Vec<RestoreWarning>,
    /// It reads the (LZ4) image itself (see `unpack`).
    pub direct: bool,
    /// It leaves private anonymous memory to the pager.
    pub lazy: bool,
}

/// Restore argument flag: load private anonymous memory lazily.
pub(super) const ARG_LAZY: u64 = 1;

/// The restore arguments (fd 6): start time, flags ([`ARG_LAZY`]), the
/// caller's PID, environment length (`u64` each), then `KEY=VALUE\0`
/// entries; then, 8-aligned, the length (`u64`) of the credentials the
/// preflight checked and those credentials as one `Creds` section. The
/// restorer gives the process these and refuses an image whose own record
/// differs: an image file its user rewrites after the preflight cannot
/// make the process root.
pub(super) fn restore_args(
    started_ns: u64,
    flags: u64,
    env: &[(OsString, OsString)],
    creds: &crac_image::creds::Creds,
) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in env {
        block.extend_from_slice(k.as_bytes());
        block.push(b'=');
        block.extend_from_slice(v.as_bytes());
        block.push(0);
    }
    let mut out = Vec::with_capacity(32 + block.len());
    out.extend_from_slice(&started_ns.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&u64::from(std::process::id()).to_le_bytes());
    out.extend_from_slice(&(block.len() as u64).to_le_bytes());
    out.extend_from_slice(&block);
    out.resize(out.len().next_multiple_of(8), 0);
    let mut buf = vec![0u8; 128 + creds.groups_le.len()];
    let mut w = crac_image::Writer::new(&mut buf);
    creds.as_record().encode(&mut w);
    let section = w.finish().expect("sized for the record");
    out.extend_from_slice(&(section.len() as u64).to_le_bytes());
    out.extend_from_slice(section);
    out
}

/// Starts the restorer for `plan` (the image in `dir`), loading memory
/// lazily if `lazy`.
pub(super) fn spawn(
    dir: &Path,
    plan: &Plan,
    opts: &RestoreOptions,
    started_ns: u64,
    lazy: bool,
) -> Result<Spawned, RestoreError> {
    let pid = plan.pid;
    // A compressed image: an LZ4 one goes to the restorer as it is (it
    // decompresses and checks each piece it loads itself); for a Zstandard
    // one the restorer reads an uncompressed view of its pieces (see
    // `unpack`). The lazy pager reads and checks its pieces itself.
    let direct = unpack::restorer_reads(&plan.verified.image);
    let unpacked = match plan.verified.image.stored {
        Some(_) if !direct => Some(unpack::unpack(&plan.verified, dir, !lazy, &plan.lazy)?),
        _ => None,
    };
    let meta_bytes = unpacked
        .as_ref()
        .map_or(&plan.verified.meta[..], |u| &u.meta[..]);
    let meta = sealed_memfd(c"crac-meta", meta_bytes).map_err(setup("metadata memfd"))?;
    let pages_file = unpacked.as_ref().map_or(&plan.verified.pages, |u| &u.pages);
    let pages = pages_file
        .try_clone()
        .map_err(|source| RestoreError::Open {
            path: dir.join(crac_image::PAGES_FILE),
            source: io::Error::new(
                source.kind(),
                format!("duplicating its descriptor: {source}"),
            ),
        })?;
    let mut exe = memfd(c"crac-restorer", true).map_err(setup("restorer memfd"))?;
    exe.write_all(RESTORER).map_err(setup("restorer memfd"))?;
    let mut args = memfd(c"crac-restore-args", false).map_err(setup("arguments memfd"))?;
    let flags = if lazy { ARG_LAZY } else { 0 };
    args.write_all(&restore_args(started_ns, flags, &opts.env, &plan.creds))
        .map_err(setup("arguments memfd"))?;
    // A socket, not a pipe: the restorer of a lazy restore sends its
    // userfaultfd along with a record.
    let (status_r, status_w): (OwnedFd, OwnedFd) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RestoreError::Setup {
        what: "status socket",
        source: e.into(),
    })?;

    // Descriptors inherited at start pass through (see `inherit`).
    let handoff = inherit::prepare(&plan.fds).map_err(setup("inherited descriptors"))?;
    let mut fds = vec![
        (meta.as_raw_fd(), 3),
        (pages.as_raw_fd(), 4),
        (status_w.as_raw_fd(), 5),
        (args.as_raw_fd(), 6),
    ];
    fds.extend_from_slice(&handoff.pairs);
    let fail_record = Status::error(Stage::Start, 0, 0)
        .with_detail(b"executing the restorer failed (step: object)")
        .encode();
    let child = ExecChild {
        fds: &fds,
        close_from: 7,
        exec_fd: exe.as_raw_fd(),
        argv: &[c"crac-restorer"],
        envp: &[],
        fail_fd: status_w.as_raw_fd(),
        fail_record: &fail_record,
        fail_errno_at: 16,
        fail_step_at: 24,
        new_session: opts.detach,
    };
    // Preflight saw the PID free; a process that just died may hold it a
    // little longer (until reaped).
    let spawned =
        crac_sys::commit::retry_taken(|| crac_sys::raw::spawn_exec_with_pid(pid as i32, &child));
    let warnings = handoff.warnings;
    drop((meta, pages, exe, args, status_w, handoff.null, unpacked));
    let child_pid = match spawned {
        Ok(p) => p as u32,
        Err(Errno::EEXIST) => {
            return Err(RestoreError::PidTaken {
                pid,
                holder: preflight::holder(pid),
            })
        }
        Err(Errno::EPERM) if !rustix::process::geteuid().is_root() => {
            return Err(RestoreError::SpawnRefused { pid })
        }
        Err(e) => {
            return Err(RestoreError::Spawn {
                pid,
                source: e.into(),
            })
        }
    };
    debug_assert_eq!(child_pid, pid);
    Ok(Spawned {
        pid,
        status: status_r,
        warnings,
        direct,
        lazy,
    })
}
