//! memfd: name, contents, size, seals and file offset.
//!
//! The contents are copied while threads are stopped into a buffer sized
//! in the plan (a memfd that grew meanwhile makes the dump try again). In
//! the restored process a new memfd of the same name gets the contents
//! (pages of zeros stay holes), its size and offset, then its seals.
//! Several descriptors of one memfd stay one file: a `dup` shares the open
//! file description again (`kcmp(KCMP_FILE)`), a second open (through
//! `/proc/self/fd`) opens the new file again with its own offset.

use crac_image::{FdRecord, FD_MEMFD};
use crac_sys::{fdobj, sys, Errno};

use super::{proc_path, Carried, FdFailure, State, CHANGED, F_DUPFD_CLOEXEC, O_ACCMODE, O_CLOEXEC};

const MFD_CLOEXEC: u32 = 1;
const MFD_ALLOW_SEALING: u32 = 2;
const MFD_NOEXEC_SEAL: u32 = 8;
const F_SEAL_EXEC: u32 = 0x20;
const SEEK_SET: i32 = 0;
const SEEK_CUR: i32 = 1;
const SEEK_DATA: i32 = 3;
const SEEK_HOLE: i32 = 4;
const PAGE: usize = 4096;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// Where a memfd descriptor's file comes from in the restored process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A new memfd with the contents.
    Own,
    /// The same open file description as this (lower) descriptor.
    Dup(i32),
    /// The same file as this (lower) descriptor, opened again.
    Reopen(i32),
}

/// A memfd's state.
#[derive(Debug)]
pub struct MemFd {
    /// The `memfd_create` name, NUL-terminated.
    name: Box<[u8]>,
    dev: u64,
    ino: u64,
    origin: Origin,
    size: u64,
    seals: u32,
    offset: u64,
    /// The contents (`size` bytes valid); empty unless `Origin::Own`.
    data: Box<[u8]>,
}

/// Plans a memfd from its `/proc/self/fd` link (`/memfd:NAME (deleted)`).
/// Huge-page memfds are not carried.
pub fn plan(fd: i32, link: &str) -> Option<MemFd> {
    let name = link.strip_prefix("/memfd:")?.strip_suffix(" (deleted)")?;
    let st = fdobj::fstat(fd).ok()?;
    if st.mode & S_IFMT != S_IFREG || st.blksize != PAGE as u64 {
        return None;
    }
    let seals = fdobj::get_seals(fd).ok()?;
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    // Room to grow a little before the dump must try again.
    let cap = (st.size as usize).checked_add(st.size as usize / 8 + PAGE)?;
    Some(MemFd {
        name: n.into_boxed_slice(),
        dev: st.dev,
        ino: st.ino,
        origin: Origin::Own,
        size: st.size,
        seals,
        offset: 0,
        data: vec![0u8; cap].into_boxed_slice(),
    })
}

/// Links descriptors of one memfd: the lowest owns the contents, the others
/// duplicate a lower one sharing their open file description or open the
/// file again. A descriptor whose sharing cannot be told (no `kcmp`) is
/// dropped: the open-fd check then refuses it.
pub fn link_shared(fds: &mut Vec<Carried>) {
    let mut unknown = Vec::new();
    for i in 0..fds.len() {
        let (before, rest) = fds.split_at_mut(i);
        let c = &mut rest[0];
        let State::MemFd(m) = &mut c.state else {
            continue;
        };
        let same_file = |o: &&Carried| match &o.state {
            State::MemFd(om) => (om.dev, om.ino) == (m.dev, m.ino),
            _ => false,
        };
        let Some(owner) = before.iter().find(same_file) else {
            continue;
        };
        let mut origin = Origin::Reopen(owner.fd);
        for o in before.iter().filter(same_file) {
            match fdobj::same_file(o.fd, c.fd) {
                Ok(true) => {
                    origin = Origin::Dup(o.fd);
                    break;
                }
                Ok(false) => {}
                Err(_) => {
                    unknown.push(c.fd);
                    break;
                }
            }
        }
        m.origin = origin;
        m.data = Box::new([]);
    }
    fds.retain(|c| !unknown.contains(&c.fd));
}

impl MemFd {
    /// Reads size, seals, offset and (for the owner) the contents.
    /// Allocation-free; the file and its offset stay as they were.
    pub fn capture(&mut self, fd: i32) -> Result<(), FdFailure> {
        let st = fdobj::fstat(fd).map_err(|e| ("read a memfd's size", e))?;
        self.size = st.size;
        self.seals = fdobj::get_seals(fd).map_err(|e| ("read a memfd's seals", e))?;
        self.offset = fdobj::lseek(fd, 0, SEEK_CUR).map_err(|e| ("read a memfd's offset", e))?;
        if self.origin != Origin::Own {
            return Ok(());
        }
        if st.size > self.data.len() as u64 {
            return Err(("copy a memfd that grew during the dump", CHANGED));
        }
        // Only the data: holes stay untouched (zero) in the buffer, so the
        // image does not store them and the restore leaves them holes. A
        // description of its own seeks without moving the program's offset.
        let own = reopen(fd, 0)?;
        let r = read_data(own, &mut self.data[..st.size as usize]);
        let _ = sys::close(own);
        r
    }

    /// Fills the record: size, seals, offset; the name.
    pub fn record(&self, r: &mut FdRecord<'_>) {
        r.kind = FD_MEMFD;
        r.id = self.ino;
        r.values = [self.size, u64::from(self.seals), self.offset, 0];
    }

    /// The name for the record (without the NUL).
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name.len() - 1]
    }

    /// A new descriptor of this memfd (the caller places it); `c` is its
    /// carried descriptor. Lower descriptors of the same memfd are in place.
    pub fn recreate(&self, c: &Carried) -> Result<i32, FdFailure> {
        let fd = match self.origin {
            Origin::Dup(of) => {
                return sys::fcntl(of, F_DUPFD_CLOEXEC, 0)
                    .map(|fd| fd as i32)
                    .map_err(|e| ("duplicate a memfd", e));
            }
            Origin::Reopen(of) => reopen(of, c.flags)?,
            Origin::Own => {
                let rw = self.create()?;
                if c.flags & O_ACCMODE == 2 {
                    rw
                } else {
                    let r = reopen(rw, c.flags);
                    let _ = sys::close(rw);
                    r?
                }
            }
        };
        if let Err(e) = fdobj::lseek(fd, self.offset as i64, SEEK_SET) {
            let _ = sys::close(fd);
            return Err(("set a memfd's offset", e));
        }
        Ok(fd)
    }

    /// A new read-write memfd with the name, contents, size and seals.
    fn create(&self) -> Result<i32, FdFailure> {
        let base = MFD_CLOEXEC | MFD_ALLOW_SEALING;
        let fd = if self.seals & F_SEAL_EXEC != 0 {
            fdobj::memfd_create(&self.name, base | MFD_NOEXEC_SEAL)
        } else {
            fdobj::memfd_create(&self.name, base)
        }
        .map_err(|e| ("create a memfd", e))?;
        if let Err(e) = self.fill(fd) {
            let _ = sys::close(fd);
            return Err(e);
        }
        Ok(fd)
    }

    fn fill(&self, fd: i32) -> Result<(), FdFailure> {
        fdobj::ftruncate(fd, self.size).map_err(|e| ("set a memfd's size", e))?;
        let data = &self.data[..self.size as usize];
        for (i, page) in data.chunks(PAGE).enumerate() {
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            let mut done = 0;
            while done < page.len() {
                match fdobj::pwrite(fd, &page[done..], (i * PAGE + done) as u64) {
                    Ok(k) => done += k,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(("refill a memfd", e)),
                }
            }
        }
        let have = fdobj::get_seals(fd).map_err(|e| ("read a memfd's seals", e))?;
        if self.seals & !have != 0 {
            fdobj::add_seals(fd, self.seals & !have).map_err(|e| ("seal a memfd", e))?;
        }
        Ok(())
    }
}

/// Reads the data regions of `fd` (`SEEK_DATA`/`SEEK_HOLE`) into the
/// same offsets of `buf`, which is zero; stops at `buf`'s end (the file
/// shrank or grew meanwhile: the rest stays zero).
fn read_data(fd: i32, buf: &mut [u8]) -> Result<(), FdFailure> {
    let len = buf.len() as u64;
    let mut pos = 0u64;
    while pos < len {
        let start = match fdobj::lseek(fd, pos as i64, SEEK_DATA) {
            Ok(s) => s.min(len),
            // ENXIO: no data after `pos`.
            Err(Errno(6)) => break,
            Err(e) => return Err(("find a memfd's data", e)),
        };
        let end = fdobj::lseek(fd, start as i64, SEEK_HOLE)
            .map_err(|e| ("find a memfd's holes", e))?
            .min(len);
        let mut at = start;
        while at < end {
            match sys::pread(fd, &mut buf[at as usize..end as usize], at) {
                Ok(0) => return Ok(()),
                Ok(k) => at += k as u64,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(("read a memfd's contents", e)),
            }
        }
        pos = end.max(start + 1);
    }
    Ok(())
}

/// Opens descriptor `of`'s file again through `/proc/self/fd` with the
/// access mode in `flags`.
fn reopen(of: i32, flags: u32) -> Result<i32, FdFailure> {
    let mut path = [0u8; 32];
    let n = proc_path(b"/proc/self/fd/", of, &mut path);
    sys::open(&path[..n], ((flags & O_ACCMODE) | O_CLOEXEC) as i32, 0)
        .map_err(|e| ("open a memfd again", e))
}
