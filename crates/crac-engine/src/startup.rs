//! Facts about the process recorded at start-up, before `main`.
//!
//! # Safety
//! A constructor in `.init_array` runs before `main`, single-threaded, after
//! the C library and the Rust runtime's allocator are usable; it only reads
//! `/proc/self/fd` and stores the result.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The descriptors open at start, sorted, and the device and inode of what
/// each refers to: a number closed and reused later for something else no
/// longer counts as inherited. A restored process takes over new
/// descriptors at those numbers and records what they refer to instead
/// ([`refresh`]), where nothing may allocate: hence atomics.
#[derive(Debug)]
struct Initial {
    fds: Vec<i32>,
    ids: Vec<[AtomicU64; 2]>,
}

static INITIAL: OnceLock<Initial> = OnceLock::new();

fn open_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

fn identity(fd: i32) -> Option<(u64, u64)> {
    crac_sys::inherit::identity(fd).ok()
}

extern "C" fn record_at_start() {
    // The directory fd that read_dir itself opens is closed again by the
    // time the listing is returned; drop any fd that is no longer open.
    let (fds, ids) = open_fds()
        .into_iter()
        .filter_map(|fd| {
            let (dev, ino) = identity(fd)?;
            Some((fd, [AtomicU64::new(dev), AtomicU64::new(ino)]))
        })
        .unzip();
    let _ = INITIAL.set(Initial { fds, ids });
}

// SAFETY: `record_at_start` is an `extern "C" fn()` that neither unwinds nor
// depends on anything `main` sets up; placing its address in `.init_array`
// is how the ELF ABI runs constructors.
#[used]
#[link_section = ".init_array"]
static RECORD_AT_START: extern "C" fn() = record_at_start;

/// The name of the note that marks a file containing the crac engine.
pub const NOTE_NAME: &[u8] = b"CRaC\0";
/// Its type.
pub const NOTE_TYPE: u32 = 1;

/// An ELF note (`CRaC`, type 1, descriptor: version 1) in every executable
/// or library the engine is linked into, so that `crac run` can tell a
/// program that already contains crac (no preload; two copies would both
/// serve its control channel) without relying on symbols, which `strip`
/// removes. Note sections are kept by the linker's garbage collection and
/// land in a `PT_NOTE` segment. The name is four bytes little-endian plus
/// a NUL padded to eight.
// SAFETY: a plain read-only array in a section of its own; nothing reads it
// at run time.
#[used]
#[link_section = ".note.crac"]
static CRAC_NOTE: [u32; 6] = [
    NOTE_NAME.len() as u32,
    4,
    NOTE_TYPE,
    u32::from_le_bytes(*b"CRaC"),
    0,
    1,
];

/// File descriptors that were open when the process started (inherited from
/// its parent, as CRaC allows), sorted. Empty only if recording failed.
pub fn initial_fds() -> &'static [i32] {
    INITIAL.get().map_or(&[], |i| i.fds.as_slice())
}

/// Whether `fd` was open when the process started and still refers to the
/// same file (device and inode) now.
pub fn still_inherited(fd: i32) -> bool {
    let Some(init) = INITIAL.get() else {
        return false;
    };
    match init.fds.binary_search(&fd) {
        Ok(i) => {
            let [dev, ino] = &init.ids[i];
            identity(fd) == Some((dev.load(Ordering::Relaxed), ino.load(Ordering::Relaxed)))
        }
        Err(_) => false,
    }
}

/// In a restored process, after `fd`, inherited at start, was taken over
/// from `crac restore`: what it refers to now is what counts as inherited
/// (for the next checkpoint). Allocation-free.
pub fn refresh(fd: i32) {
    let Some(init) = INITIAL.get() else {
        return;
    };
    if let (Ok(i), Some((d, n))) = (init.fds.binary_search(&fd), identity(fd)) {
        let [dev, ino] = &init.ids[i];
        dev.store(d, Ordering::Relaxed);
        ino.store(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stdio_was_recorded_at_start() {
        let fds = super::initial_fds();
        assert!(
            fds.contains(&0) && fds.contains(&1) && fds.contains(&2),
            "{fds:?}"
        );
        assert!(super::still_inherited(0));
    }

    #[test]
    fn a_descriptor_opened_later_is_not_inherited() {
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        assert!(!super::still_inherited(fd));
    }
}
