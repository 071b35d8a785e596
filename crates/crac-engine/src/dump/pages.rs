//! The page data in the stopped phase: which pages are stored (pagemap),
//! and the page file written from memory with its piece table.

use crac_image::{PageRun, PAGE_SIZE, PROT_READ, VMA_DELETED, VMA_VDSO, VMA_VSYSCALL};
use crac_sys::sys::{self, IoVec};
use crac_sys::Errno;

use super::stop;
use super::{SnapFailure, Snapshot};

/// The hashes of the page data's pieces as `write_pages` writes it, in
/// file order (see `crac_image::pieces`).
#[derive(Debug, Default)]
pub(super) struct Pieces {
    hasher: crac_image::PieceHasher,
    pub(super) hashes: Vec<u64>,
    overflow: bool,
}

impl Pieces {
    pub(super) fn with_capacity(n: usize) -> Pieces {
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

pub(super) fn push_bounded(v: &mut Vec<u64>, overflow: &mut bool, x: u64) {
    if v.len() < v.capacity() {
        v.push(x);
    } else {
        *overflow = true;
    }
}

/// The end of the bounce buffer that queued copies leave free, for a run
/// that must be read through `/proc/self/mem` while copies are queued.
const BOUNCE_RESERVE: usize = 64 * 1024;

/// Page runs waiting to go out with one `pwritev`, consecutive in the
/// file: straight from memory, or copies in the bounce buffer of memory
/// that may change (volatile). Sized before the stop (no allocation after).
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// `(address, length)` in file order.
    ranges: Vec<(u64, u64)>,
    /// The file offset of the first.
    off: u64,
    /// Bytes queued.
    len: u64,
    /// Bytes of the bounce buffer holding queued copies of volatile memory.
    bounce_used: usize,
    /// The `pwritev` argument, rebuilt from `ranges` for each write.
    iov: Vec<IoVec>,
}

impl Batch {
    /// At most `IOV_MAX` ranges per write.
    pub(super) fn new() -> Batch {
        Batch {
            ranges: Vec::with_capacity(1024),
            iov: Vec::with_capacity(1024),
            ..Batch::default()
        }
    }

    /// Where its two lists live (`(address, bytes)` each): memory that
    /// changes while pages are written.
    pub(super) fn storage(&self) -> ((u64, u64), (u64, u64)) {
        let bytes = |p: usize, cap: usize, each: usize| (p as u64, (cap * each) as u64);
        (
            bytes(
                self.ranges.as_ptr() as usize,
                self.ranges.capacity(),
                std::mem::size_of::<(u64, u64)>(),
            ),
            bytes(
                self.iov.as_ptr() as usize,
                self.iov.capacity(),
                std::mem::size_of::<IoVec>(),
            ),
        )
    }
}

impl Snapshot<'_> {
    pub(super) fn scan_pages(&mut self) -> Result<(), SnapFailure> {
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

    /// Writes `[addr, addr + len)` at `off` through the bounce buffer from
    /// byte `from` on (what lies before may be queued copies), feeding the
    /// piece hashes with exactly the bytes written.
    fn write_bounced(
        &mut self,
        pieces: &mut Pieces,
        from: usize,
        addr: u64,
        len: u64,
        off: u64,
    ) -> Result<(), SnapFailure> {
        let (fd, mem_fd) = (self.pages_fd, self.mem_fd);
        let mut done = 0u64;
        while done < len {
            let b = &mut self.bounce()[from..];
            let n = (len - done).min(b.len() as u64) as usize;
            let at = addr + done;
            // Through /proc/self/mem: the direct write of this range failed.
            read_into(mem_fd, false, at, &mut b[..n])?;
            pieces.update(&b[..n]);
            sys::pwrite_from_addr(fd, b.as_ptr() as u64, n as u64, off + done)
                .map_err(|e| SnapFailure::Sys("write the page file", e))?;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes the page file and fills the piece table.
    pub(super) fn write_pages(&mut self) -> Result<(), SnapFailure> {
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
                    if readable {
                        // Fast path: the kernel writes straight from the
                        // process's memory (with O_DIRECT, without a
                        // page-cache copy), many runs per write; the memory
                        // cannot change until the threads go.
                        self.queue_direct(pieces, pos, stable_end - pos, off(pos))?;
                    } else {
                        self.queue_bounced(pieces, readable, pos, stable_end - pos, off(pos))?;
                    }
                }
                if let Some((_, vend)) = vol {
                    let from = stable_end;
                    let to = vend.min(end);
                    if from < to {
                        self.queue_bounced(pieces, readable, from, to - from, off(from))?;
                    }
                    pos = to.max(stable_end);
                } else {
                    pos = end;
                }
            }
        }
        self.flush_batch(pieces)?;
        pieces.finish()
    }

    /// Queues `[addr, addr + len)` (readable, not volatile) for file offset
    /// `off`, writing what is queued first if it does not continue it.
    fn queue_direct(
        &mut self,
        pieces: &mut Pieces,
        addr: u64,
        len: u64,
        off: u64,
    ) -> Result<(), SnapFailure> {
        let b = &self.batch;
        if !b.ranges.is_empty() && (b.off + b.len != off || b.ranges.len() == b.ranges.capacity()) {
            self.flush_batch(pieces)?;
        }
        let b = &mut self.batch;
        if b.ranges.is_empty() {
            b.off = off;
        }
        b.ranges.push((addr, len));
        b.len += len;
        Ok(())
    }

    /// Queues a copy of `[addr, addr + len)` (through `/proc/self/mem`
    /// unless `readable`) made now in the bounce buffer, for file offset
    /// `off`; what is queued is written first when it does not continue it
    /// or the buffer is full.
    fn queue_bounced(
        &mut self,
        pieces: &mut Pieces,
        readable: bool,
        addr: u64,
        len: u64,
        off: u64,
    ) -> Result<(), SnapFailure> {
        let cap = self.bounce().len() - BOUNCE_RESERVE;
        let mut done = 0u64;
        while done < len {
            let at = off + done;
            let room = cap - self.batch.bounce_used;
            let b = &self.batch;
            if !b.ranges.is_empty()
                && (b.off + b.len != at || b.ranges.len() == b.ranges.capacity() || room == 0)
            {
                self.flush_batch(pieces)?;
            }
            let used = self.batch.bounce_used;
            let mem_fd = self.mem_fd;
            let buf = &mut self.bounce()[used..cap];
            let n = (len - done).min(buf.len() as u64) as usize;
            read_into(mem_fd, readable, addr + done, &mut buf[..n])?;
            let base = buf.as_ptr() as u64;
            let b = &mut self.batch;
            if b.ranges.is_empty() {
                b.off = at;
            }
            b.ranges.push((base, n as u64));
            b.len += n as u64;
            b.bounce_used += n;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes the queued runs with one `pwritev` (with many small runs, as
    /// thread stacks are, one O_DIRECT write each was most of the dump) and
    /// hashes them in file order (copies in the bounce buffer as written).
    /// If the kernel refuses the batch (a range
    /// not readable after all, alignment) each run goes out on its own, as
    /// it is or through the bounce buffer.
    fn flush_batch(&mut self, pieces: &mut Pieces) -> Result<(), SnapFailure> {
        let fail = |e| SnapFailure::Sys("write the page file", e);
        if self.batch.ranges.is_empty() {
            return Ok(());
        }
        // Moved out and back (no allocation either way).
        let mut b = std::mem::take(&mut self.batch);
        b.iov.clear();
        b.iov
            .extend(b.ranges.iter().map(|&(base, len)| IoVec { base, len }));
        let r = match sys::pwritev_from_addrs(self.pages_fd, &mut b.iov, b.off) {
            Ok(()) => {
                for &(a, l) in &b.ranges {
                    stop::read_memory(a, l, |d| pieces.update(d));
                }
                Ok(())
            }
            Err(Errno(14)) | Err(Errno::EINVAL) => self.write_each(pieces, &b),
            Err(e) => Err(fail(e)),
        };
        b.ranges.clear();
        b.len = 0;
        b.bounce_used = 0;
        self.batch = b;
        r
    }

    /// The runs of `b` one by one: straight from memory where the kernel
    /// takes it, else through the bounce buffer (`/proc/self/mem`).
    fn write_each(&mut self, pieces: &mut Pieces, b: &Batch) -> Result<(), SnapFailure> {
        let mut off = b.off;
        for &(a, l) in &b.ranges {
            match sys::pwrite_from_addr(self.pages_fd, a, l, off) {
                Ok(()) => stop::read_memory(a, l, |d| pieces.update(d)),
                // EFAULT, alignment
                // Past the queued copies, which are still to be written.
                Err(Errno(14)) | Err(Errno::EINVAL) => {
                    self.write_bounced(pieces, b.bounce_used, a, l, off)?;
                }
                Err(e) => return Err(SnapFailure::Sys("write the page file", e)),
            }
            off += l;
        }
        Ok(())
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
