//! Facts about the process recorded at start-up, before `main`.
//!
//! # Safety
//! A constructor in `.init_array` runs before `main`, single-threaded, after
//! the C library and the Rust runtime's allocator are usable; it only reads
//! `/proc/self/fd` and stores the result.
#![allow(unsafe_code)]

use std::sync::OnceLock;

static INITIAL_FDS: OnceLock<Vec<i32>> = OnceLock::new();

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

extern "C" fn record_at_start() {
    // The directory fd that read_dir itself opens is closed again by the
    // time the listing is returned; drop any fd that is no longer open.
    let fds = open_fds()
        .into_iter()
        .filter(|fd| std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok())
        .collect();
    let _ = INITIAL_FDS.set(fds);
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
    INITIAL_FDS.get().map_or(&[], Vec::as_slice)
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
    }
}
