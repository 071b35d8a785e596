//! The in-process dump.
//!
//! 1. [`collect::gather`] reads everything that may be read while the other
//!    threads still run, and sizes every buffer the next steps need.
//! 2. [`stop::Round::stop_all`] stops every other thread in a signal handler.
//! 3. The dumping thread saves its own resume context and, inside that call,
//!    [`Snapshot::run`] reads the memory map and pagemap, writes the
//!    populated pages and encodes the metadata. From step 2 until the threads
//!    are released nothing allocates: a stopped thread may hold the
//!    allocator's lock.
//! 4. The image is synced and renamed into place; the process exits (CRaC's
//!    default) or, with `leave_running`, releases the threads and returns.
//! 5. In a restored process the same call returns a second time, on the same
//!    stack ([`resume`]): the dumping thread waits for every thread to come back, puts
//!    back the process-wide state the restorer does not handle, releases the
//!    threads and unmaps the restorer's zone.

mod collapse;
pub(crate) mod collect;
mod commit;
pub(crate) mod fds;
mod live;
mod pack;
mod resume;
pub(crate) mod stop;
mod zstd;

use std::sync::atomic::Ordering;

use crac_image::{
    ArgvRecord, CpuRecord, Header, MmRecord, PageRun, ProcessRecord, Tag, ThreadRecord,
    TimersRecord, VdsoRecord, VmaRecord, Writer, FORMAT_VERSION, NO_FILE, PAGE_SIZE, PROT_EXEC,
    PROT_READ, PROT_WRITE, THREAD_DUMPER, VMA_DELETED, VMA_DONTFORK, VMA_FILE, VMA_GROWSDOWN,
    VMA_HEAP, VMA_SHARED, VMA_STACK, VMA_VDSO, VMA_VSYSCALL, VMA_WIPEONFORK,
};
use crac_sys::sys;
use crac_sys::Errno;

use crate::native::{DumpError, DumpOptions, DumpOutcome};
use collect::{map_path, Facts};
use stop::{Round, ThreadSlot, RESTORE_INFO};

/// One mapping as parsed from `/proc/self/maps` during the stop.
#[derive(Debug, Clone, Copy, Default)]
struct Vma {
    start: u64,
    end: u64,
    pgoff: u64,
    prot: u32,
    flags: u32,
    file: u32,
    name_off: u32,
    name_len: u32,
    /// Which pages to store: 0 none, 1 anonymous (skip zero page),
    /// 2 private file (only COW-ed pages), 3 every present page.
    store: u8,
    /// Pages in memory (stored or not).
    populated: u64,
}

/// What went wrong inside the stopped phase (no allocation, so plain data).
#[derive(Debug, Clone, Copy)]
enum SnapFailure {
    Sys(&'static str, Errno),
    UnsupportedMapping {
        start: u64,
        end: u64,
        name_off: u32,
        name_len: u32,
    },
    NewFile,
    Overflow(&'static str),
    Encode {
        needed: usize,
    },
}

/// Buffers and descriptors of the stopped phase, all allocated beforehand.
struct Snapshot<'a> {
    facts: &'a Facts,
    maps: Box<[u8]>,
    maps_len: usize,
    vmas: Vec<Vma>,
    runs: Vec<PageRun>,
    pm: Box<[u8]>,
    bounce: Box<[u8]>,
    /// Memory that may change while the pages are written (the dumping
    /// thread's stack, the bounce buffer, every thread's rseq area, which the
    /// kernel updates on migration). It goes through the bounce buffer, so the
    /// checksum and the data written agree.
    volatile: Vec<(u64, u64)>,
    meta: Box<[u8]>,
    /// Raw numbers, not `OwnedFd`: in a restored process they are not open
    /// and must not be closed (see [`Snapshot::close_fds`]).
    pagemap_fd: i32,
    mem_fd: i32,
    maps_fd_path: &'static [u8],
    meta_fd: i32,
    pages_fd: i32,
    failure: Option<SnapFailure>,
    pages_len: u64,
    /// The piece table, filled by `write_pages` (capacity sized before the
    /// stop).
    pieces: Pieces,
    /// Compresses the page data (`None`: stored as it is, straight from
    /// memory).
    pack: Option<pack::Packer>,
    /// Bytes of page data before compression.
    data_len: u64,
    /// CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME at the stop.
    clocks: [u64; 3],
    fds: fds::FdSet,
}

/// The hashes of the page data's pieces as `write_pages` writes it, in
/// file order (see `crac_image::pieces`).
#[derive(Debug, Default)]
struct Pieces {
    hasher: crac_image::PieceHasher,
    hashes: Vec<u64>,
    overflow: bool,
}

impl Pieces {
    fn with_capacity(n: usize) -> Pieces {
        Pieces {
            hashes: Vec::with_capacity(n),
            ..Pieces::default()
        }
    }

    /// Feeds the next bytes of page data (never allocates: a table that is
    /// full is reported by `finish`).
    fn update(&mut self, data: &[u8]) {
        let (hashes, overflow) = (&mut self.hashes, &mut self.overflow);
        self.hasher
            .update(data, |h| push_bounded(hashes, overflow, h));
    }

    fn finish(&mut self) -> Result<(), SnapFailure> {
        let (hashes, overflow) = (&mut self.hashes, &mut self.overflow);
        self.hasher.finish(|h| push_bounded(hashes, overflow, h));
        if self.overflow {
            return Err(SnapFailure::Overflow("page piece table"));
        }
        Ok(())
    }
}

fn push_bounded(v: &mut Vec<u64>, overflow: &mut bool, x: u64) {
    if v.len() < v.capacity() {
        v.push(x);
    } else {
        *overflow = true;
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    if s.is_empty() {
        return None;
    }
    for &c in s {
        let d = (c as char).to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

impl Snapshot<'_> {
    /// Closes the /proc descriptors (original process only).
    fn close_fds(&mut self) {
        let _ = sys::close(self.pagemap_fd);
        let _ = sys::close(self.mem_fd);
    }

    fn name(&self, off: u32, len: u32) -> &[u8] {
        &self.maps[off as usize..(off + len) as usize]
    }

    /// The error for a failure of the stopped phase (or of the live
    /// dump's copy).
    fn error(&self, failure: Option<SnapFailure>) -> DumpError {
        let maps = &self.maps[..self.maps_len];
        let name = |off: u32, len: u32| {
            String::from_utf8_lossy(maps.get(off as usize..(off + len) as usize).unwrap_or(b""))
                .into_owned()
        };
        match failure {
            Some(SnapFailure::Sys(what, errno)) => DumpError::Io { what, errno },
            Some(SnapFailure::UnsupportedMapping {
                start,
                end,
                name_off,
                name_len,
            }) => DumpError::UnsupportedMapping {
                start,
                end,
                name: name(name_off, name_len),
            },
            Some(SnapFailure::NewFile) => DumpError::Changed {
                what: "a file was mapped during the dump",
            },
            Some(SnapFailure::Overflow(what)) => DumpError::Changed { what },
            Some(SnapFailure::Encode { needed }) => DumpError::MetadataTooLarge { needed },
            None => DumpError::Io {
                what: "dump the process",
                errno: Errno(5),
            },
        }
    }

    fn fail(&mut self, f: SnapFailure) -> u64 {
        self.failure = Some(f);
        1
    }

    /// What must be read while the threads are stopped, before the memory:
    /// carried descriptors, the memory map, the clocks.
    fn prepare(&mut self) -> Result<(), SnapFailure> {
        match self.fds.capture() {
            Ok(()) => {}
            Err((what, fds::CHANGED)) => return Err(SnapFailure::Overflow(what)),
            Err((what, e)) => return Err(SnapFailure::Sys(what, e)),
        }
        self.read_maps()?;
        self.clocks = [sys::clock_ns(0), sys::clock_ns(1), sys::clock_ns(7)];
        // An address on this thread's stack.
        let probe = [0u8; 1];
        let sp = std::hint::black_box(&probe).as_ptr() as u64;
        let stack = self
            .vmas
            .iter()
            .find(|v| v.start <= sp && sp < v.end)
            .map_or((0, 0), |v| (v.start, v.end));
        // Page-aligned outwards: O_DIRECT writes whole pages.
        let outwards = |at: u64, len: u64| {
            let b = at & !(PAGE_SIZE - 1);
            (b, (at + len + PAGE_SIZE - 1) & !(PAGE_SIZE - 1))
        };
        let bounce = outwards(self.bounce.as_ptr() as u64, self.bounce.len() as u64);
        // The piece table fills while the pages are written and hashed.
        let hashes = &self.pieces.hashes;
        let table = outwards(hashes.as_ptr() as u64, hashes.capacity() as u64 * 8);
        for range in [stack, bounce, table] {
            if self.volatile.len() < self.volatile.capacity() {
                self.volatile.push(range);
            }
        }
        Ok(())
    }

    /// Whether a fork copies every stored area as it is (see [`live`]).
    fn forkable(&self) -> bool {
        self.vmas
            .iter()
            .all(|v| v.store == 0 || v.flags & (VMA_DONTFORK | VMA_WIPEONFORK) == 0)
    }

    /// In the live dump's copy: opens this process's own `/proc` files (the
    /// ones opened before the fork describe the original, which runs on).
    fn reopen_proc(&mut self) -> Result<(), SnapFailure> {
        self.pagemap_fd = sys::open(b"/proc/self/pagemap\0", 0o2000000, 0)
            .map_err(|e| SnapFailure::Sys("open /proc/self/pagemap", e))?;
        self.mem_fd = sys::open(b"/proc/self/mem\0", 0o2000000, 0)
            .map_err(|e| SnapFailure::Sys("open /proc/self/mem", e))?;
        Ok(())
    }

    /// Writes the page file from this process's memory as it is now.
    fn write_memory(&mut self) -> Result<(), SnapFailure> {
        self.scan_pages()?;
        self.write_pages()?;
        Ok(())
    }

    /// Encodes the metadata and writes it with its header.
    fn write_meta(
        &mut self,
        slots: &[ThreadSlot],
        own: &ThreadSlot,
        own_ctx: u64,
    ) -> Result<(), SnapFailure> {
        let mut meta = std::mem::take(&mut self.meta);
        let r = {
            let mut w = Writer::new(&mut meta);
            encode_body(self, slots, own, own_ctx, &mut w);
            match w.finish() {
                Ok(body) => {
                    let header = Header {
                        major: FORMAT_VERSION.0,
                        minor: FORMAT_VERSION.1,
                        body_len: body.len() as u64,
                        body_crc: crc32fast::hash(body),
                        arch: crac_image::ARCH_X86_64,
                        pages_len: self.pages_len,
                        // Unused from format 1.3 on: the piece table
                        // covers the page data.
                        pages_crc: 0,
                    };
                    sys::write_all(self.meta_fd, &header.encode())
                        .and_then(|()| sys::write_all(self.meta_fd, body))
                        .map_err(|e| SnapFailure::Sys("write the metadata file", e))
                }
                Err(e) => Err(SnapFailure::Encode { needed: e.needed }),
            }
        };
        self.meta = meta;
        r
    }

    fn read_maps(&mut self) -> Result<(), SnapFailure> {
        let fd = sys::open(self.maps_fd_path, 0o2000000, 0)
            .map_err(|e| SnapFailure::Sys("open /proc/self/maps", e))?;
        let mut len = 0;
        loop {
            if len == self.maps.len() {
                let _ = sys::close(fd);
                return Err(SnapFailure::Overflow("memory map text"));
            }
            match sys::read(fd, &mut self.maps[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    let _ = sys::close(fd);
                    return Err(SnapFailure::Sys("read /proc/self/maps", e));
                }
            }
        }
        let _ = sys::close(fd);
        self.maps_len = len;
        self.vmas.clear();
        let mut pos = 0;
        while pos < len {
            let end = self.maps[pos..len]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(len, |i| pos + i);
            let vma = self.parse_line(pos, end)?;
            pos = end + 1;
            if self.vmas.len() == self.vmas.capacity() {
                return Err(SnapFailure::Overflow("mapping list"));
            }
            self.vmas.push(vma);
        }
        Ok(())
    }

    fn parse_line(&self, start: usize, end: usize) -> Result<Vma, SnapFailure> {
        let line = &self.maps[start..end];
        let bad = SnapFailure::Sys("parse /proc/self/maps", Errno::EINVAL);
        let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        let range = fields.next().ok_or(bad)?;
        let perms = fields.next().ok_or(bad)?;
        let off = fields.next().ok_or(bad)?;
        let dash = range.iter().position(|&b| b == b'-').ok_or(bad)?;
        let vstart = parse_hex(&range[..dash]).ok_or(bad)?;
        let vend = parse_hex(&range[dash + 1..]).ok_or(bad)?;
        let pgoff = parse_hex(off).ok_or(bad)?;
        if perms.len() < 4 {
            return Err(bad);
        }
        let mut prot = 0;
        if perms[0] == b'r' {
            prot |= PROT_READ;
        }
        if perms[1] == b'w' {
            prot |= PROT_WRITE;
        }
        if perms[2] == b'x' {
            prot |= PROT_EXEC;
        }
        let shared = perms[3] == b's';
        let name = map_path(line).unwrap_or(b"");
        let name_off = (start + line.len() - name.len()) as u32;
        let name_len = name.len() as u32;
        let mut v = Vma {
            start: vstart,
            end: vend,
            pgoff,
            prot,
            flags: 0,
            file: NO_FILE,
            name_off,
            name_len,
            store: 0,
            populated: 0,
        };
        // Advice read before the stop, for the mapping (or the part of
        // it, if it was split since) that lies within the same range.
        let advice = &self.facts.advice;
        let i = advice.partition_point(|a| a.1 <= vstart);
        if let Some(&(s, e, bits)) = advice.get(i) {
            if s <= vstart && vend <= e {
                v.flags |= bits;
            }
        }
        match name {
            b"[vvar]" | b"[vvar_vclock]" | b"[vdso]" => v.flags |= VMA_VDSO,
            b"[vsyscall]" => v.flags |= VMA_VSYSCALL,
            b"[heap]" => {
                v.flags |= VMA_HEAP;
                v.store = 1;
            }
            b"[stack]" => {
                v.flags |= VMA_STACK | VMA_GROWSDOWN;
                v.store = 1;
            }
            n if n.first() == Some(&b'/') => {
                let deleted = n.ends_with(b" (deleted)");
                if shared {
                    if deleted {
                        return Err(SnapFailure::UnsupportedMapping {
                            start: vstart,
                            end: vend,
                            name_off,
                            name_len,
                        });
                    }
                    v.flags |= VMA_SHARED | VMA_FILE;
                } else if deleted {
                    v.flags |= VMA_DELETED;
                    v.store = 3;
                } else {
                    v.flags |= VMA_FILE;
                    v.store = 2;
                }
                if v.flags & VMA_FILE != 0 {
                    match self.facts.files.iter().position(|f| f.path == n) {
                        Some(i) => v.file = i as u32,
                        None => return Err(SnapFailure::NewFile),
                    }
                }
            }
            _ => {
                if shared {
                    return Err(SnapFailure::UnsupportedMapping {
                        start: vstart,
                        end: vend,
                        name_off,
                        name_len,
                    });
                }
                v.store = 1;
            }
        }
        Ok(v)
    }

    fn scan_pages(&mut self) -> Result<(), SnapFailure> {
        self.runs.clear();
        let mut next_off = crac_image::PAGES_HEADER_LEN;
        let zero = self.facts.zero_pfn;
        let entries_per_chunk = self.pm.len() / 8;
        let skip = VMA_VDSO | VMA_VSYSCALL;
        // `pm` holds the pagemap entries of pages [win, win + win_len): one
        // read covers as many adjacent mappings as fit, not one per mapping.
        let (mut win, mut win_len) = (0u64, 0u64);
        for i in 0..self.vmas.len() {
            let v = self.vmas[i];
            if v.flags & skip != 0 {
                continue;
            }
            let mut populated = 0u64;
            let mut open_run = false;
            let mut page = v.start / PAGE_SIZE;
            let last = v.end / PAGE_SIZE;
            while page < last {
                if !(win <= page && page < win + win_len) {
                    let mut to = last;
                    for w in &self.vmas[i + 1..] {
                        if to - page >= entries_per_chunk as u64
                            || w.start != to * PAGE_SIZE
                            || w.flags & skip != 0
                        {
                            break;
                        }
                        to = w.end / PAGE_SIZE;
                    }
                    let n = ((to - page) as usize).min(entries_per_chunk);
                    let buf = &mut self.pm[..n * 8];
                    let mut got = 0;
                    while got < buf.len() {
                        match sys::pread(self.pagemap_fd, &mut buf[got..], page * 8 + got as u64) {
                            Ok(0) => break,
                            Ok(k) => got += k,
                            Err(Errno::EINTR) => {}
                            Err(e) => return Err(SnapFailure::Sys("read /proc/self/pagemap", e)),
                        }
                    }
                    (win, win_len) = (page, got as u64 / 8);
                    if win_len == 0 {
                        break;
                    }
                }
                let n = (win + win_len).min(last) - page;
                let first = (page - win) as usize;
                let buf = &self.pm[first * 8..(first + n as usize) * 8];
                for j in 0..n as usize {
                    let e = u64::from_le_bytes(buf[j * 8..j * 8 + 8].try_into().unwrap_or([0; 8]));
                    let present = e >> 63 & 1 == 1;
                    let swapped = e >> 62 & 1 == 1;
                    let file_page = e >> 61 & 1 == 1;
                    let pfn = e & ((1 << 55) - 1);
                    populated += u64::from(present || swapped);
                    let keep = match v.store {
                        0 => false,
                        1 => swapped || (present && !(zero != 0 && pfn == zero)),
                        2 => swapped || (present && !file_page),
                        // A deleted file cannot be mapped again: keep every
                        // page, resident or not.
                        _ => true,
                    };
                    let addr = (page + j as u64) * PAGE_SIZE;
                    if !keep {
                        open_run = false;
                        continue;
                    }
                    if open_run {
                        if let Some(r) = self.runs.last_mut() {
                            r.pages += 1;
                            next_off += PAGE_SIZE;
                            continue;
                        }
                    }
                    if self.runs.len() == self.runs.capacity() {
                        return Err(SnapFailure::Overflow("page run list"));
                    }
                    self.runs.push(PageRun {
                        addr,
                        pages: 1,
                        offset: next_off,
                    });
                    next_off += PAGE_SIZE;
                    open_run = true;
                }
                page += n;
            }
            self.vmas[i].populated = populated;
        }
        self.pages_len = next_off;
        Ok(())
    }

    /// Whether the dump may read `addr` directly. Not for deleted files:
    /// pages past the end of such a file would raise SIGBUS in the dumping
    /// thread, so those go through /proc/self/mem, which reports an error.
    fn readable(&self, addr: u64) -> bool {
        // `vmas` come from /proc/self/maps: sorted and disjoint.
        let i = self.vmas.partition_point(|v| v.end <= addr);
        self.vmas.get(i).is_some_and(|v| {
            v.start <= addr && v.prot & PROT_READ != 0 && v.flags & VMA_DELETED == 0
        })
    }

    /// The 4096-aligned part of the bounce buffer (O_DIRECT needs aligned
    /// buffers).
    fn bounce(&mut self) -> &mut [u8] {
        let misalign = self.bounce.as_ptr() as usize % 4096;
        let start = (4096 - misalign) % 4096;
        let len = (self.bounce.len() - start) / 4096 * 4096;
        &mut self.bounce[start..start + len]
    }

    /// The first volatile range that intersects `[from, to)`.
    fn next_volatile(&self, from: u64, to: u64) -> Option<(u64, u64)> {
        self.volatile
            .iter()
            .copied()
            .filter(|&(s, e)| s < to && from < e && s < e)
            .min_by_key(|&(s, _)| s)
    }

    /// Writes `[addr, addr + len)` at `off` through the bounce buffer,
    /// feeding the piece hashes with exactly the bytes written.
    fn write_bounced(
        &mut self,
        pieces: &mut Pieces,
        readable: bool,
        addr: u64,
        len: u64,
        off: u64,
    ) -> Result<(), SnapFailure> {
        let (fd, mem_fd) = (self.pages_fd, self.mem_fd);
        let mut done = 0u64;
        while done < len {
            let b = self.bounce();
            let n = (len - done).min(b.len() as u64) as usize;
            let at = addr + done;
            read_into(mem_fd, readable, at, &mut b[..n])?;
            pieces.update(&b[..n]);
            sys::pwrite_from_addr(fd, b.as_ptr() as u64, n as u64, off + done)
                .map_err(|e| SnapFailure::Sys("write the page file", e))?;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes the page file and fills the piece table.
    fn write_pages(&mut self) -> Result<(), SnapFailure> {
        // Moved out and back (no allocation either way): the loop borrows
        // `self` mutably too.
        let mut pieces = std::mem::take(&mut self.pieces);
        pieces.hashes.clear();
        self.data_len = self.pages_len - crac_image::PAGES_HEADER_LEN;
        let r = if self.pack.is_some() {
            self.write_packed(&mut pieces)
        } else {
            self.write_page_data(&mut pieces)
        };
        self.pieces = pieces;
        r
    }

    /// The compressed page file (see [`pack`]): runs are gathered in file
    /// order into 64 KiB pieces, each hashed and stored as it was copied
    /// (so memory the dump itself changes needs no special care).
    fn write_packed(&mut self, pieces: &mut Pieces) -> Result<(), SnapFailure> {
        let fail = |e| SnapFailure::Sys("write the page file", e);
        let (fd, mem_fd) = (self.pages_fd, self.mem_fd);
        let Some(mut pack) = self.pack.take() else {
            return Ok(());
        };
        pack.reset();
        let r = (|| {
            for i in 0..self.runs.len() {
                let r = self.runs[i];
                let readable = self.readable(r.addr);
                let mut done = 0u64;
                while done < r.len() {
                    let room = pack.room();
                    let n = (r.len() - done).min(room.len() as u64) as usize;
                    read_into(mem_fd, readable, r.addr + done, &mut room[..n])?;
                    pack.piece_len += n;
                    done += n as u64;
                    if pack.piece_len == pack.piece.len() {
                        let h = pack.emit(fd).map_err(fail)?;
                        push_bounded(&mut pieces.hashes, &mut pieces.overflow, h);
                    }
                }
            }
            if pack.piece_len > 0 {
                let h = pack.emit(fd).map_err(fail)?;
                push_bounded(&mut pieces.hashes, &mut pieces.overflow, h);
            }
            if pack.overflow {
                return Err(SnapFailure::Overflow("stored piece table"));
            }
            pack.flush(fd, true).map_err(fail)?;
            let len = pack.file_len();
            pack.write_header(fd, (len - crac_image::PAGES_HEADER_LEN) / PAGE_SIZE)
                .map_err(fail)?;
            self.pages_len = len;
            pieces.finish()
        })();
        self.pack = Some(pack);
        r
    }

    fn write_page_data(&mut self, pieces: &mut Pieces) -> Result<(), SnapFailure> {
        let total_pages = (self.pages_len - crac_image::PAGES_HEADER_LEN) / PAGE_SIZE;
        let head = crac_image::encode_pages_header(total_pages);
        let fail = |e| SnapFailure::Sys("write the page file", e);
        let fd = self.pages_fd;
        {
            let b = self.bounce();
            b[..head.len()].copy_from_slice(&head);
            sys::write_all(fd, &b[..head.len()]).map_err(fail)?;
        }
        let mut i = 0;
        while i < self.runs.len() {
            let r = self.runs[i];
            i += 1;
            // A run lies within one mapping, so its first page tells.
            let readable = self.readable(r.addr);
            let mut end = r.addr + r.len();
            // Runs of neighbouring mappings that follow each other both in
            // memory and in the file go out in one write: with many small
            // mappings one O_DIRECT write per run is most of the dump.
            while let Some(&n) = self.runs.get(i) {
                if !readable
                    || n.addr != end
                    || n.offset != r.offset + (end - r.addr)
                    || !self.readable(n.addr)
                {
                    break;
                }
                end += n.len();
                i += 1;
            }
            let off = |a: u64| r.offset + (a - r.addr);
            let mut pos = r.addr;
            while pos < end {
                let vol = self.next_volatile(pos, end);
                let stable_end = vol.map_or(end, |(s, _)| s.max(pos));
                if pos < stable_end {
                    // Fast path: the kernel writes straight from the
                    // process's memory (with O_DIRECT, without a page-cache
                    // copy); the memory cannot change until the threads go.
                    let direct = readable
                        && match sys::pwrite_from_addr(fd, pos, stable_end - pos, off(pos)) {
                            Ok(()) => true,
                            Err(Errno(14)) | Err(Errno::EINVAL) => false, // EFAULT, alignment
                            Err(e) => return Err(fail(e)),
                        };
                    if direct {
                        stop::read_memory(pos, stable_end - pos, |b| pieces.update(b));
                    } else {
                        self.write_bounced(pieces, readable, pos, stable_end - pos, off(pos))?;
                    }
                }
                if let Some((_, vend)) = vol {
                    let from = stable_end;
                    let to = vend.min(end);
                    if from < to {
                        self.write_bounced(pieces, readable, from, to - from, off(from))?;
                    }
                    pos = to.max(stable_end);
                } else {
                    pos = end;
                }
            }
        }
        pieces.finish()
    }
}

/// Copies memory at `at` into `b`: directly if `readable`, else through
/// `/proc/self/mem` (`mem_fd`).
fn read_into(mem_fd: i32, readable: bool, at: u64, b: &mut [u8]) -> Result<(), SnapFailure> {
    let n = b.len();
    if readable {
        stop::copy_from_memory(at, b);
        return Ok(());
    }
    let mut got = 0;
    while got < n {
        match sys::pread(mem_fd, &mut b[got..n], at + got as u64) {
            Ok(k) if k > 0 => got += k,
            Err(Errno::EINTR) => {}
            // A page that cannot be read (past the end of a deleted
            // file: the program could not read it either) is
            // stored as zeros.
            Ok(_) | Err(Errno(5)) | Err(Errno(14)) => {
                let next = (got / PAGE_SIZE as usize + 1) * PAGE_SIZE as usize;
                let next = next.min(n);
                b[got..next].fill(0);
                got = next;
            }
            Err(e) => return Err(SnapFailure::Sys("read /proc/self/mem", e)),
        }
    }
    Ok(())
}

/// Encodes the metadata body.
fn encode_body(
    s: &Snapshot<'_>,
    slots: &[ThreadSlot],
    own: &ThreadSlot,
    own_ctx: u64,
    w: &mut Writer<'_>,
) {
    let f = s.facts;
    let own_tid = own.tid;
    let mut mm = f.mm;
    mm[5] = sys::current_brk();
    ProcessRecord {
        pid: f.pid,
        ppid: f.ppid,
        uid: f.uid,
        gid: f.gid,
        umask: f.umask,
        personality: f.personality,
        dumping_tid: own_tid,
        realtime_ns: s.clocks[0],
        monotonic_ns: s.clocks[1],
        boottime_ns: s.clocks[2],
        resume_entry: crac_sys::ctx::resume_entry(),
        restore_info_addr: RESTORE_INFO.0.as_ptr() as u64,
        exe: &f.exe,
        cwd: &f.cwd,
        comm: &f.comm,
        kernel_release: &f.kernel_release,
        boot_id: &f.boot_id,
        hostname: &f.hostname,
    }
    .encode(w);
    ArgvRecord {
        cmdline: &f.cmdline,
    }
    .encode(w);
    CpuRecord {
        vendor: &f.cpu_vendor,
        xcr0: f.xcr0,
        xsave_size: f.xsave_size,
        features: f.cpu_features,
    }
    .encode(w);
    MmRecord {
        start_code: mm[0],
        end_code: mm[1],
        start_data: mm[2],
        end_data: mm[3],
        start_brk: mm[4],
        brk: mm[5],
        start_stack: mm[6],
        arg_start: mm[7],
        arg_end: mm[8],
        env_start: mm[9],
        env_end: mm[10],
        auxv: &f.auxv,
    }
    .encode(w);
    let mut vdso = VdsoRecord {
        vdso_crc: f.vdso_crc,
        ..Default::default()
    };
    for v in &s.vmas {
        let part = (v.start, v.end - v.start);
        match s.name(v.name_off, v.name_len) {
            b"[vvar]" => vdso.vvar = part,
            b"[vvar_vclock]" => vdso.vvar_vclock = part,
            b"[vdso]" => vdso.vdso = part,
            _ => {}
        }
    }
    vdso.encode(w);
    for m in &f.files {
        m.as_record().encode(w);
    }
    for v in &s.vmas {
        VmaRecord {
            start: v.start,
            end: v.end,
            pgoff: v.pgoff,
            prot: v.prot,
            flags: v.flags,
            file: v.file,
            name: s.name(v.name_off, v.name_len),
            populated: v.populated,
        }
        .encode(w);
    }
    w.section(Tag::Runs as u32, |w| {
        for r in &s.runs {
            r.encode(w);
        }
    });
    for slot in slots.iter().chain(std::iter::once(own)) {
        let (rseq_addr, rseq_len, rseq_sig) = stop::rseq_area(slot.fs_gs.0);
        let name_len = slot.name.iter().position(|&b| b == 0).unwrap_or(16);
        ThreadRecord {
            tid: slot.tid,
            flags: if slot.tid == own_tid {
                THREAD_DUMPER
            } else {
                0
            },
            ctx_addr: if slot.tid == own_tid {
                own_ctx
            } else {
                &slot.ctx as *const _ as u64
            },
            fs_base: slot.fs_gs.0,
            gs_base: slot.fs_gs.1,
            clear_tid: slot.clear_tid,
            robust_head: slot.robust.0,
            robust_len: slot.robust.1,
            rseq_addr,
            rseq_len,
            rseq_sig,
            sigmask: slot.sigmask,
            altstack: slot.altstack,
            affinity: &slot.affinity[..slot.affinity_len as usize],
            name: &slot.name[..name_len],
        }
        .encode(w);
    }
    let mut acts = [crac_image::SigactionRecord::default(); 64];
    acts.copy_from_slice(&f.sigactions[..64]);
    crac_image::encode_sigactions(w, &acts);
    let mut lims = [crac_image::RlimitRecord::default(); 16];
    lims.copy_from_slice(&f.rlimits[..16]);
    crac_image::encode_rlimits(w, &lims);
    TimersRecord {
        itimers: f.itimers,
        posix_timers: f.posix_timers,
        shared_pending: own.shared_pending,
    }
    .encode(w);
    s.fds.encode(w);
    f.creds.as_record().encode(w);
    crac_image::PieceTable::encode(w, &s.pieces.hashes);
    if let Some(p) = &s.pack {
        crac_image::StoredPieces::encode(w, p.method(), s.data_len, &p.stored);
    }
}

/// Dumps the calling process; see [`crate::native::checkpoint`].
pub fn checkpoint(opts: &DumpOptions) -> Result<DumpOutcome, DumpError> {
    // A process that maps files or starts threads while being stopped gets
    // two more tries, with buffers sized anew.
    let mut result = checkpoint_once(opts);
    for _ in 0..2 {
        if !matches!(
            result,
            Err(DumpError::Changed { .. } | DumpError::EpollTargetNotCarried { .. })
        ) {
            break;
        }
        result = checkpoint_once(opts);
    }
    result
}

/// What the stopped phase returns when a copy of the process writes the
/// image (the live dump, [`live`]).
const FORKED: u64 = 2;

/// Set in a process restored lazily until a dump saw its memory complete.
pub(super) static LAZY_LOADING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
/// How long a dump waits for the memory of a lazy restore to be loaded.
const LAZY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until no area of this process is registered with a userfaultfd
/// any more (`crac restore` closes it once every page of the last lazy
/// restore is in): a page still missing would look like a zero page to the
/// dump.
fn wait_lazy_loaded() -> Result<(), DumpError> {
    if !LAZY_LOADING.load(Ordering::SeqCst) {
        return Ok(());
    }
    let t = std::time::Instant::now();
    loop {
        let smaps =
            std::fs::read("/proc/self/smaps").map_err(|e| DumpError::Gather { source: e })?;
        let registered = smaps
            .split(|&b| b == b'\n')
            .any(|l| l.starts_with(b"VmFlags:") && l.split(|&b| b == b' ').any(|f| f == b"um"));
        if !registered {
            LAZY_LOADING.store(false, Ordering::SeqCst);
            return Ok(());
        }
        if t.elapsed() > LAZY_WAIT {
            return Err(DumpError::StillLoading {
                secs: LAZY_WAIT.as_secs(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn checkpoint_once(opts: &DumpOptions) -> Result<DumpOutcome, DumpError> {
    wait_lazy_loaded()?;
    let dir = &opts.dir;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(DumpError::NoParent { dir: dir.clone() });
        }
    }
    // Give freed heap memory back to the kernel so the image stays small.
    stop::malloc_trim();
    if opts.leave_running {
        // A shorter page-table copy, so a shorter pause (see `collapse`).
        collapse::collapse_dense_memory();
    }
    let facts = collect::gather().map_err(|e| DumpError::Gather { source: e })?;
    // Credentials are per thread; the image holds one set for all.
    if let Some((tid, what)) = crate::creds::differing_thread(&facts.creds) {
        return Err(DumpError::MixedCredentials { tid, what });
    }
    // Before the engine opens descriptors of its own.
    let fds = fds::FdSet::plan(&opts.fd_policies);
    if let Some(&fd) = fds.left_out.first() {
        return Err(DumpError::EpollTargetNotCarried { fd });
    }
    let mut tmp = commit::TempDir::create(dir).map_err(|e| DumpError::CreateImage {
        dir: dir.clone(),
        source: e,
    })?;
    let open_proc = |p: &'static [u8]| {
        sys::open(p, 0o2000000, 0).map_err(|e| DumpError::Gather { source: e.into() })
    };
    let pagemap_fd = open_proc(b"/proc/self/pagemap\0")?;
    let mem_fd = match open_proc(b"/proc/self/mem\0") {
        Ok(fd) => fd,
        Err(e) => {
            let _ = sys::close(pagemap_fd);
            return Err(e);
        }
    };
    let vma_cap = facts.vma_count * 2 + 256;
    let mut snap = Snapshot {
        facts: &facts,
        maps: vec![0u8; facts.maps_len * 2 + 64 * 1024].into_boxed_slice(),
        maps_len: 0,
        vmas: Vec::with_capacity(vma_cap),
        runs: Vec::with_capacity(runs_estimate()),
        pm: vec![0u8; 64 * 1024 * 8].into_boxed_slice(),
        bounce: vec![0u8; (4 << 20) + 4096].into_boxed_slice(),
        volatile: Vec::with_capacity(facts.thread_count * 2 + 32),
        meta: Vec::new().into_boxed_slice(),
        pagemap_fd,
        mem_fd,
        maps_fd_path: b"/proc/self/maps\0",
        meta_fd: tmp.meta_fd,
        pages_fd: tmp.pages_fd,
        failure: None,
        pages_len: 0,
        pieces: Pieces::with_capacity(pieces_estimate(facts.deleted_bytes)),
        pack: None,
        data_len: 0,
        clocks: [0; 3],
        fds,
    };
    if opts.compress != crate::native::Compression::None {
        snap.pack = Some(pack::Packer::new(
            opts.compress,
            snap.pieces.hashes.capacity(),
        ));
    }
    let meta_cap = 256 * 1024
        + vma_cap * 512
        + snap.runs.capacity() * 24
        + snap.pieces.hashes.capacity() * (8 + crac_image::STORED_PIECE_LEN)
        + facts.thread_count * 2048
        + facts.files.len() * 4200;
    snap.meta = vec![0u8; meta_cap].into_boxed_slice();
    for w in &RESTORE_INFO.0 {
        w.store(0, Ordering::SeqCst);
    }

    let mut round = Round::new(facts.thread_count * 2 + 16).map_err(|errno| DumpError::Stop {
        what: "install the stop handler",
        errno,
    })?;
    let mut own = Box::new(ThreadSlot::default());
    let mut own_ctx = Box::<crac_sys::ctx::ResumeContext>::default();
    let own_ctx_addr = &*own_ctx as *const _ as u64;
    // No handler may run on this thread while memory is read twice
    // (checksum, then write): a signal that arrives during the dump stays
    // pending until the mask is back.
    let own_mask = sys::sigprocmask(2, Some(!0)).unwrap_or(0);
    // ---- From here until `round.release()`: no allocation. ----
    if let Err(f) = round.stop_all() {
        round.release();
        let _ = sys::sigprocmask(2, Some(own_mask));
        return Err(match f {
            stop::StopFailure::Timeout { tid } => DumpError::ThreadDidNotStop {
                tid,
                signal: stop::STOP_SIGNAL,
            },
            stop::StopFailure::TooManyThreads => DumpError::Changed {
                what: "threads were created during the dump",
            },
            stop::StopFailure::Sys(what, errno) => DumpError::Stop { what, errno },
        });
    }
    own.record_current(own_mask);
    let round_ref = &round;
    let own_ref = &*own;
    let mut live_writer = None;
    let mut result = stop::call_saving_context(&mut own_ctx, &mut || {
        snap.volatile.clear();
        for slot in round_ref
            .stopped_slots()
            .iter()
            .chain(std::iter::once(own_ref))
        {
            let (rseq, _, _) = stop::rseq_area(slot.fs_gs.0);
            if rseq != 0 && snap.volatile.len() < snap.volatile.capacity() {
                // struct rseq may straddle a page boundary: take two pages.
                let page = rseq & !(PAGE_SIZE - 1);
                snap.volatile.push((page, page + 2 * PAGE_SIZE));
            }
        }
        if let Err(f) = snap.prepare() {
            return snap.fail(f);
        }
        let slots = round_ref.stopped_slots();
        if opts.leave_running && snap.forkable() {
            let snap = &mut snap;
            let tmp = &mut tmp;
            let writer = live::fork_writer(|| {
                snap.reopen_proc()?;
                snap.write_memory()?;
                snap.write_meta(slots, own_ref, own_ctx_addr)?;
                tmp.commit().map_err(|(what, e)| SnapFailure::Sys(what, e))
            });
            if let Some(w) = writer {
                live_writer = Some(w);
                return FORKED;
            }
        }
        match snap
            .write_memory()
            .and_then(|()| snap.write_meta(slots, own_ref, own_ctx_addr))
        {
            Ok(()) => 0,
            Err(f) => snap.fail(f),
        }
    });
    if let (Ok(FORKED), Some(w)) = (result, live_writer.take()) {
        // The copy writes the image; the program runs on meanwhile.
        round.release();
        let _ = sys::sigprocmask(2, Some(own_mask));
        snap.close_fds();
        return match w.wait() {
            Ok(()) => {
                if let Some(notify) = &opts.on_durable {
                    notify();
                }
                Ok(DumpOutcome::LeftRunning)
            }
            Err(live::WriterFailure::Snap(f)) => Err(snap.error(Some(f))),
            Err(live::WriterFailure::Died { pid, exit }) => Err(DumpError::WriterDied {
                pid,
                how: match exit {
                    crac_sys::fork::Exit::Code(c) => format!("exited with status {c}"),
                    crac_sys::fork::Exit::Signal(s) => {
                        format!("was killed by {}", crate::restore::signal_name(s))
                    }
                },
            }),
            Err(live::WriterFailure::Wait(errno)) => Err(DumpError::Io {
                what: "wait for the process writing the image",
                errno,
            }),
        };
    }
    if let Ok(0) = result {
        if let Err((what, errno)) = tmp.commit() {
            snap.failure = Some(SnapFailure::Sys(what, errno));
            result = Ok(1);
        } else if let Some(notify) = &opts.on_durable {
            notify();
        }
        if matches!(result, Ok(0)) && !opts.leave_running {
            // CRaC's default: the checkpointed process ends here; the image
            // holds its future.
            sys::exit_group(0);
        }
    }
    if result.is_ok() {
        snap.close_fds();
    }
    match result {
        Ok(0) => {
            round.release();
            let _ = sys::sigprocmask(2, Some(own_mask));
            Ok(DumpOutcome::LeftRunning)
        }
        Ok(_) => {
            round.release();
            let _ = sys::sigprocmask(2, Some(own_mask));
            Err(snap.error(snap.failure))
        }
        Err(stop::Resumed) => {
            // The descriptors the dump opened do not exist in the restored
            // process (their numbers may even belong to something else now):
            // forget them instead of closing them. The temporary directory was
            // renamed into the image long ago.
            tmp.forget();

            // Carried descriptors must exist before the threads that use
            // them run again.
            // Wait first: until every thread is back, the restorer may still
            // hold its input descriptors at low numbers.
            round.wait_resumed();
            let fd_result = snap.fds.recreate();
            let own_pending = (own.tid, own.pending, own.shared_pending);
            let restored =
                resume::after_restore(own_pending, &mut round, &facts, own_mask, own.altstack);
            if let Err((what, errno)) = fd_result {
                tracing::error!("restored process: cannot {what}: {errno}");
            }
            Ok(DumpOutcome::Restored(restored))
        }
    }
}

/// An upper bound on the pieces of the page file: pages are stored only
/// if they are resident or swapped out, or belong to a deleted file's
/// mapping (`deleted_bytes`), with room for growth until the stop.
fn pieces_estimate(deleted_bytes: u64) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let bytes = (kib("VmRSS:") + kib("VmSwap:")) * 1024 + deleted_bytes;
    let pieces = (bytes / crac_image::PIECE_LEN) as usize;
    // An eighth more and 1 GiB of growth (128 KiB of table).
    pieces + pieces / 8 + 16384
}

fn runs_estimate() -> usize {
    // Runs are bounded by the populated pages; the resident set size is a
    // cheap upper bound on those.
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1 << 16);
    rss_pages + 65536
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_hashed_in_file_order_and_a_full_table_fails() {
        let data: Vec<u8> = (0..2 * 65536 + 4096).map(|i| (i % 241) as u8).collect();
        let mut p = Pieces::with_capacity(3);
        // Fed in uneven steps, as runs and the bounce buffer cut them.
        for c in data.chunks(12_288) {
            p.update(c);
        }
        p.finish().unwrap();
        let want: Vec<u64> = data.chunks(65536).map(crac_image::piece_hash).collect();
        assert_eq!(p.hashes, want);

        let mut p = Pieces::with_capacity(1);
        let cap = p.hashes.capacity();
        p.update(&data);
        assert_eq!(p.hashes.capacity(), cap, "never grows");
        assert!(matches!(p.finish(), Err(SnapFailure::Overflow(_))));
    }
}
