//! Just enough ELF to read a build-id note.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const O_NONBLOCK: i32 = 0o4000;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The GNU build-id of a 64-bit little-endian ELF file, if it has one.
pub fn build_id(path: &Path) -> Option<Vec<u8>> {
    // Never blocks on a FIFO; only a regular file is read.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    build_id_of(&f)
}

/// The GNU build-id of the open 64-bit little-endian ELF file `f`.
pub fn build_id_of(f: &std::fs::File) -> Option<Vec<u8>> {
    let mut eh = [0u8; 64];
    f.read_exact_at(&mut eh, 0).ok()?;
    if &eh[0..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let phoff = u64_at(&eh, 32)?;
    let phentsize = u16_at(&eh, 54)? as usize;
    let phnum = u16_at(&eh, 56)? as usize;
    if phentsize < 56 || phnum > 256 {
        return None;
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.read_exact_at(&mut ph, phoff).ok()?;
    for i in 0..phnum {
        let e = &ph[i * phentsize..];
        if u32_at(e, 0)? != 4 {
            continue; // not PT_NOTE
        }
        let (off, size) = (u64_at(e, 8)?, u64_at(e, 32)?);
        if size > 64 * 1024 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.read_exact_at(&mut notes, off).ok()?;
        let mut o = 0usize;
        while o + 12 <= notes.len() {
            let namesz = u32_at(&notes, o)? as usize;
            let descsz = u32_at(&notes, o + 4)? as usize;
            let ty = u32_at(&notes, o + 8)?;
            let name_at = o + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if ty == 3 && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
                return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            o = next;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_executable_has_a_build_id() {
        let exe = std::env::current_exe().unwrap();
        let id = super::build_id(&exe).expect("rustc links with a build-id on Debian");
        assert!(id.len() >= 16, "{id:?}");
    }
}
