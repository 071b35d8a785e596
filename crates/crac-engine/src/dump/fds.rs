//! File descriptors the native engine carries across a checkpoint.
//!
//! Today: anonymous pipes whose both ends are open in the process (a thread
//! feeding another, a self-pipe). Their buffered bytes are read out while the
//! threads are stopped, written back for the original process, and written
//! into a new pipe in the restored one, which then takes the original
//! descriptor numbers and flags.

use std::fs;

use crac_sys::sys;

const O_ACCMODE: u32 = 3;
const O_NONBLOCK: u32 = 0o4000;
const O_CLOEXEC: u32 = 0o2000000;
const F_SETFL: i32 = 4;
const F_DUPFD_CLOEXEC: i32 = 1030;
const F_SETPIPE_SZ: i32 = 1031;
const F_GETPIPE_SZ: i32 = 1032;

/// One carried descriptor.
#[derive(Debug, Clone, Copy)]
pub struct CarriedFd {
    /// Descriptor number.
    pub fd: i32,
    /// Flags from /proc/self/fdinfo.
    pub flags: u32,
    /// Pipe inode.
    pub inode: u64,
}

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

fn pipe_inode(fd: i32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

fn fd_flags(fd: i32) -> Option<u32> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let line = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

fn all_fds() -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Every pipe descriptor of this process whose pipe has both a read and a
/// write end open in this process.
pub fn carried() -> Vec<CarriedFd> {
    let mut pipes: Vec<CarriedFd> = all_fds()
        .into_iter()
        .filter_map(|fd| {
            Some(CarriedFd {
                fd,
                inode: pipe_inode(fd)?,
                flags: fd_flags(fd)?,
            })
        })
        .collect();
    let both = |ino: u64, p: &[CarriedFd]| {
        let r = p.iter().any(|c| c.inode == ino && c.flags & O_ACCMODE != 1);
        let w = p.iter().any(|c| c.inode == ino && c.flags & O_ACCMODE != 0);
        r && w
    };
    let snapshot = pipes.clone();
    pipes.retain(|c| both(c.inode, &snapshot));
    pipes
}

/// Whether the native engine carries descriptor `fd` across a checkpoint.
pub fn carries(fd: i32) -> bool {
    carried().iter().any(|c| c.fd == fd)
}

/// The pipes behind `fds`, with buffers sized for their capacity.
pub fn pipes(fds: &[CarriedFd]) -> Vec<PipeState> {
    let mut out: Vec<PipeState> = Vec::new();
    for c in fds {
        if out.iter().any(|p| p.inode == c.inode) {
            continue;
        }
        let ends = fds.iter().filter(|x| x.inode == c.inode);
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
            inode: c.inode,
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
pub fn capture(pipes: &mut [PipeState]) -> Result<(), (&'static str, crac_sys::Errno)> {
    for p in pipes {
        let n = sys::fionread(p.read_fd).map_err(|e| ("measure a pipe's contents", e))?;
        let n = n.min(p.data.len());
        let mut got = 0;
        while got < n {
            match sys::read(p.read_fd, &mut p.data[got..n]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(crac_sys::Errno::EINTR) => {}
                Err(e) => return Err(("read a pipe's contents", e)),
            }
        }
        p.len = got;
        sys::write_all(p.write_fd, &p.data[..got])
            .map_err(|e| ("put a pipe's contents back", e))?;
    }
    Ok(())
}

/// In the restored process: recreates every carried pipe at its original
/// descriptor numbers with its flags and buffered bytes.
pub fn recreate(
    fds: &[CarriedFd],
    pipes: &[PipeState],
) -> Result<(), (&'static str, crac_sys::Errno)> {
    let above = fds.iter().map(|c| c.fd).max().unwrap_or(2) as usize + 1;
    for p in pipes {
        let (r, w) = sys::pipe2(O_CLOEXEC as i32).map_err(|e| ("create a pipe", e))?;
        // Move out of the way of every target number first.
        let r2 = sys::fcntl(r, F_DUPFD_CLOEXEC, above).map_err(|e| ("move a pipe end", e))? as i32;
        let w2 = sys::fcntl(w, F_DUPFD_CLOEXEC, above).map_err(|e| ("move a pipe end", e))? as i32;
        let _ = sys::close(r);
        let _ = sys::close(w);
        let _ = sys::fcntl(w2, F_SETPIPE_SZ, p.size);
        sys::write_all(w2, &p.data[..p.len]).map_err(|e| ("refill a pipe", e))?;
        for c in fds.iter().filter(|c| c.inode == p.inode) {
            let src = if c.flags & O_ACCMODE == 1 { w2 } else { r2 };
            let cloexec = if c.flags & O_CLOEXEC != 0 {
                O_CLOEXEC as i32
            } else {
                0
            };
            sys::dup3(src, c.fd, cloexec).map_err(|e| ("place a pipe end", e))?;
            if c.flags & O_NONBLOCK != 0 {
                let _ = sys::fcntl(c.fd, F_SETFL, O_NONBLOCK as usize);
            }
        }
        let _ = sys::close(r2);
        let _ = sys::close(w2);
    }
    Ok(())
}
