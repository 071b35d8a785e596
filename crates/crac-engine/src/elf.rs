//! Just enough ELF to read a build-id note, and to tell how a program is
//! linked (`crac run` decides from it whether to preload libcrac).

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
    let phdrs = program_headers(f)?;
    find_note(f, &phdrs, b"GNU\0", 3)
}

/// `PT_NOTE`, `PT_INTERP`, `PT_DYNAMIC`, `PT_LOAD`.
const PT_NOTE: u32 = 4;
const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const PT_LOAD: u32 = 1;

/// The fields of a program header this module uses.
#[derive(Debug, Clone, Copy)]
struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The program headers of a 64-bit little-endian ELF file; `None` if `f` is
/// not one.
fn program_headers(f: &std::fs::File) -> Option<Vec<Phdr>> {
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
    (0..phnum)
        .map(|i| {
            let e = &ph[i * phentsize..];
            Some(Phdr {
                kind: u32_at(e, 0)?,
                offset: u64_at(e, 8)?,
                vaddr: u64_at(e, 16)?,
                filesz: u64_at(e, 32)?,
            })
        })
        .collect()
}

/// The descriptor of the first note named `name` (with its NUL) of type
/// `ty` in a `PT_NOTE` segment.
fn find_note(f: &std::fs::File, phdrs: &[Phdr], name: &[u8], ty: u32) -> Option<Vec<u8>> {
    for p in phdrs.iter().filter(|p| p.kind == PT_NOTE) {
        if p.filesz > 64 * 1024 {
            continue;
        }
        let mut notes = vec![0u8; p.filesz as usize];
        f.read_exact_at(&mut notes, p.offset).ok()?;
        let mut o = 0usize;
        while o + 12 <= notes.len() {
            let namesz = u32_at(&notes, o)? as usize;
            let descsz = u32_at(&notes, o + 4)? as usize;
            let note_ty = u32_at(&notes, o + 8)?;
            let name_at = o + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if note_ty == ty && notes.get(name_at..name_at + namesz) == Some(name) {
                return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            o = next;
        }
    }
    None
}

/// What a program file is, as far as loading libcrac into it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// Not an ELF file (a script: the kernel runs its interpreter).
    NotElf,
    /// An ELF file other than 64-bit little-endian (e.g. 32-bit).
    OtherElf,
    /// A 64-bit little-endian ELF file.
    Elf(Linking),
}

/// How a 64-bit ELF program is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linking {
    /// It names a dynamic loader (`PT_INTERP`): the loader honours
    /// `LD_PRELOAD`. A static program (also static-pie) has none.
    pub dynamic: bool,
    /// It contains the crac engine (the `crac` crate or libcrac linked in
    /// statically): its note ([`crate::startup`]) is in the file.
    pub has_crac: bool,
    /// Its `DT_NEEDED` libraries, as named in the file.
    pub needed: Vec<String>,
}

/// Reads how the program at `path` is linked.
pub fn program(path: &Path) -> std::io::Result<Program> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    let mut magic = [0u8; 4];
    if f.read_exact_at(&mut magic, 0).is_err() || &magic != b"\x7fELF" {
        return Ok(Program::NotElf);
    }
    let Some(phdrs) = program_headers(&f) else {
        return Ok(Program::OtherElf);
    };
    Ok(Program::Elf(Linking {
        dynamic: phdrs.iter().any(|p| p.kind == PT_INTERP),
        has_crac: find_note(
            &f,
            &phdrs,
            crate::startup::NOTE_NAME,
            crate::startup::NOTE_TYPE,
        )
        .is_some(),
        needed: needed(&f, &phdrs).unwrap_or_default(),
    }))
}

/// Whether the running executable contains the crac engine (see
/// [`Linking::has_crac`]).
pub fn self_has_crac() -> bool {
    matches!(program(Path::new("/proc/self/exe")), Ok(Program::Elf(l)) if l.has_crac)
}

/// The `DT_NEEDED` names of the dynamic section.
fn needed(f: &std::fs::File, phdrs: &[Phdr]) -> Option<Vec<String>> {
    const DT_NEEDED: u64 = 1;
    const DT_STRTAB: u64 = 5;
    const DT_STRSZ: u64 = 10;
    let dynamic = phdrs.iter().find(|p| p.kind == PT_DYNAMIC)?;
    if dynamic.filesz > 64 * 1024 {
        return None;
    }
    let mut d = vec![0u8; dynamic.filesz as usize];
    f.read_exact_at(&mut d, dynamic.offset).ok()?;
    let (mut strtab, mut strsz, mut names) = (None, None, Vec::new());
    for e in d.chunks_exact(16) {
        let (tag, val) = (u64_at(e, 0)?, u64_at(e, 8)?);
        match tag {
            0 => break, // DT_NULL
            DT_NEEDED => names.push(val),
            DT_STRTAB => strtab = Some(val),
            DT_STRSZ => strsz = Some(val),
            _ => {}
        }
    }
    let (strtab, strsz) = (strtab?, strsz?.min(1 << 20));
    // DT_STRTAB is an address: find the file offset of the segment holding it.
    let load = phdrs
        .iter()
        .find(|p| p.kind == PT_LOAD && p.vaddr <= strtab && strtab - p.vaddr < p.filesz)?;
    let mut strings = vec![0u8; strsz as usize];
    f.read_exact_at(&mut strings, strtab - load.vaddr + load.offset)
        .ok()?;
    names
        .into_iter()
        .map(|at| {
            let s = strings.get(at as usize..)?;
            let end = s.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&s[..end]).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_executable_has_a_build_id() {
        let exe = std::env::current_exe().unwrap();
        let id = super::build_id(&exe).expect("rustc links with a build-id on Debian");
        assert!(id.len() >= 16, "{id:?}");
    }

    #[test]
    fn own_executable_is_dynamic_and_has_crac() {
        let exe = std::env::current_exe().unwrap();
        let super::Program::Elf(l) = super::program(&exe).unwrap() else {
            panic!("not a 64-bit ELF");
        };
        assert!(l.dynamic && l.has_crac, "{l:?}");
        assert!(l.needed.iter().any(|n| n.starts_with("libc.so")), "{l:?}");
        assert!(super::self_has_crac());
    }

    #[test]
    fn a_script_is_not_elf() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"#!/bin/sh\n").unwrap();
        assert_eq!(super::program(f.path()).unwrap(), super::Program::NotElf);
    }
}
