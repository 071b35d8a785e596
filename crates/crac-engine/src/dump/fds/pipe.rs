//! Anonymous pipes whose both ends are open in the process (a thread feeding
//! another, a self-pipe). Their buffered bytes are read out while the
//! threads are stopped, written back for the original process, and written
//! into a new pipe in the restored one, which then takes the original
//! descriptor numbers and flags.

use crac_image::{FdRecord, FD_PIPE};
use crac_sys::{sys, Errno};

use super::{dup_to, Carried, FdFailure, State, F_DUPFD_CLOEXEC, O_ACCMODE, O_CLOEXEC};

const F_SETPIPE_SZ: i32 = 1031;
const F_GETPIPE_SZ: i32 = 1032;

/// One pipe and its buffered bytes.
#[derive(Debug)]
pub struct PipeState {
    /// Pipe inode.
    pub inode: u64,
    /// A descriptor of the read end.
    pub read_fd: i32,
    /// A descriptor of the write end.
    pub write_fd: i32,
    /// Pipe capacity.
    pub size: usize,
    /// Buffered bytes at dump time (`len` of them are valid).
    pub data: Box<[u8]>,
    /// Number of valid bytes in `data`.
    pub len: usize,
}

fn inode_of(c: &Carried) -> Option<u64> {
    match c.state {
        State::Pipe { inode } => Some(inode),
        _ => None,
    }
}

/// Drops pipe descriptors whose pipe lacks a read or a write end in the
/// process: bytes written to or read from the outside cannot be carried.
pub fn keep_complete(fds: &mut Vec<Carried>) {
    let ends: Vec<(u64, u32)> = fds
        .iter()
        .filter_map(|c| Some((inode_of(c)?, c.flags & O_ACCMODE)))
        .collect();
    fds.retain(|c| {
        let Some(ino) = inode_of(c) else {
            return true;
        };
        let r = ends.iter().any(|&(i, m)| i == ino && m != 1);
        let w = ends.iter().any(|&(i, m)| i == ino && m != 0);
        r && w
    });
}

/// The pipes behind the pipe descriptors of `fds`, with buffers sized for
/// their capacity.
pub fn plan(fds: &[Carried]) -> Vec<PipeState> {
    let mut out: Vec<PipeState> = Vec::new();
    for c in fds {
        let Some(inode) = inode_of(c) else { continue };
        if out.iter().any(|p| p.inode == inode) {
            continue;
        }
        let ends = fds.iter().filter(|x| inode_of(x) == Some(inode));
        let read_fd = ends
            .clone()
            .find(|x| x.flags & O_ACCMODE != 1)
            .map_or(-1, |x| x.fd);
        let write_fd = ends
            .clone()
            .find(|x| x.flags & O_ACCMODE != 0)
            .map_or(-1, |x| x.fd);
        let size = sys::fcntl(c.fd, F_GETPIPE_SZ, 0).unwrap_or(65536);
        out.push(PipeState {
            inode,
            read_fd,
            write_fd,
            size,
            data: vec![0u8; size].into_boxed_slice(),
            len: 0,
        });
    }
    out
}

/// While threads are stopped: takes each pipe's buffered bytes and puts
/// them back, so the original process sees no difference. Allocation-free.
pub fn capture(pipes: &mut [PipeState]) -> Result<(), FdFailure> {
    for p in pipes {
        let n = sys::fionread(p.read_fd).map_err(|e| ("measure a pipe's contents", e))?;
        let n = n.min(p.data.len());
        let mut got = 0;
        while got < n {
            match sys::read(p.read_fd, &mut p.data[got..n]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(("read a pipe's contents", e)),
            }
        }
        p.len = got;
        sys::write_all(p.write_fd, &p.data[..got])
            .map_err(|e| ("put a pipe's contents back", e))?;
    }
    Ok(())
}

/// Fills the record of a pipe end.
pub fn record(inode: u64, pipes: &[PipeState], r: &mut FdRecord<'_>) {
    r.kind = FD_PIPE;
    r.id = inode;
    r.buffered = pipes
        .iter()
        .find(|p| p.inode == inode)
        .map_or(0, |p| p.len as u64);
}

/// In the restored process: recreates every carried pipe at its original
/// descriptor numbers with its flags and buffered bytes. New descriptors
/// go to `above` or higher first, out of the way of every target number.
pub fn recreate(fds: &[Carried], pipes: &[PipeState], above: i32) -> Result<(), FdFailure> {
    for p in pipes {
        let (r, w) = sys::pipe2(O_CLOEXEC as i32).map_err(|e| ("create a pipe", e))?;
        let r2 = sys::fcntl(r, F_DUPFD_CLOEXEC, above as usize)
            .map_err(|e| ("move a pipe end", e))? as i32;
        let w2 = sys::fcntl(w, F_DUPFD_CLOEXEC, above as usize)
            .map_err(|e| ("move a pipe end", e))? as i32;
        let _ = sys::close(r);
        let _ = sys::close(w);
        let _ = sys::fcntl(w2, F_SETPIPE_SZ, p.size);
        sys::write_all(w2, &p.data[..p.len]).map_err(|e| ("refill a pipe", e))?;
        for c in fds.iter().filter(|c| inode_of(c) == Some(p.inode)) {
            let src = if c.flags & O_ACCMODE == 1 { w2 } else { r2 };
            dup_to(src, c.fd, c.flags)?;
        }
        let _ = sys::close(r2);
        let _ = sys::close(w2);
    }
    Ok(())
}
