//! Reading the memory map in the stopped phase: `/proc/self/maps` into
//! [`Vma`]s, without allocation.

use crac_image::{
    NO_FILE, PROT_EXEC, PROT_READ, PROT_WRITE, VMA_DELETED, VMA_FILE, VMA_GROWSDOWN, VMA_HEAP,
    VMA_SHARED, VMA_STACK, VMA_VDSO, VMA_VSYSCALL,
};
use crac_sys::{sys, Errno};

use super::collect::map_path;
use super::{SnapFailure, Snapshot, Vma};

pub(super) fn parse_hex(s: &[u8]) -> Option<u64> {
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
    pub(super) fn read_maps(&mut self) -> Result<(), SnapFailure> {
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
}
