//! Facts about the process recorded at start-up, before `main`.
//!
//! # Safety
//! A constructor in `.init_array` runs before `main`, single-threaded, after
//! the C library and the Rust runtime's allocator are usable; it only reads
//! `/proc/self/fd` and stores the result.
#![allow(unsafe_code)]

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// Device and inode of what a descriptor refers to: a number closed and
/// reused later for something else no longer counts as inherited.
type Identity = (u64, u64);

/// The descriptors open at start, sorted, and what each referred to.
#[derive(Debug)]
struct Initial {
    fds: Vec<i32>,
    ids: Vec<Identity>,
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

fn identity(fd: i32) -> Option<Identity> {
    let m = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    Some((m.dev(), m.ino()))
}

extern "C" fn record_at_start() {
    // The directory fd that read_dir itself opens is closed again by the
    // time the listing is returned; drop any fd that is no longer open.
    let (fds, ids) = open_fds()
        .into_iter()
        .filter_map(|fd| Some((fd, identity(fd)?)))
        .unzip();
    let _ = INITIAL.set(Initial { fds, ids });
}

// SAFETY: `record_at_start` is an `extern "C" fn()` that neither unwinds nor
// depends on anything `main` sets up; placing its address in `.init_array`
// is how the ELF ABI runs constructors.
#[used]
#[link_section = ".init_array"]
static RECORD_AT_START: extern "C" fn() = record_at_start;

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
        Ok(i) => identity(fd) == Some(init.ids[i]),
        Err(_) => false,
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
