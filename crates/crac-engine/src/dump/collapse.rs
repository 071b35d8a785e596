//! Before a live dump: dense private anonymous memory becomes transparent
//! huge pages.
//!
//! The pause of a live dump is the stop plus the fork's page-table copy,
//! which costs one entry per 4 KiB page (about 6 ms per GiB here) but one
//! per 2 MiB huge page. So while the program still runs, every 2 MiB-aligned
//! stretch of private anonymous memory whose 512 pages are all present and
//! the process's own is collapsed into a huge page (`MADV_COLLAPSE`). Only
//! fully populated stretches: the resident set stays the same. Areas the
//! program asked not to use huge pages for (`MADV_NOHUGEPAGE`), KSM areas,
//! areas a userfaultfd watches, and systems with transparent huge pages
//! disabled are left alone. A stretch the kernel cannot collapse (no huge
//! page free, pinned pages) stays as it is: this only shortens the pause.
//! Stretches already huge cost one quick call each.

use std::fs;
use std::os::unix::fs::FileExt;

use crac_sys::sys;

const HUGE: u64 = 2 << 20;
const PAGES: usize = (HUGE / 4096) as usize;

/// Collapses what it can; returns the bytes now in huge pages (already
/// huge ones included).
pub(super) fn collapse_dense_memory() -> u64 {
    let enabled = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
    if enabled.map_or(true, |s| s.contains("[never]")) {
        return 0;
    }
    let (Ok(smaps), Ok(pagemap)) = (
        fs::read_to_string("/proc/self/smaps"),
        fs::File::open("/proc/self/pagemap"),
    ) else {
        return 0;
    };
    let mut entries = vec![0u8; PAGES * 8];
    let mut done = 0;
    for (start, end) in candidates(&smaps) {
        let mut at = start.next_multiple_of(HUGE);
        while at + HUGE <= end {
            if dense(&pagemap, at, &mut entries) && sys::collapse_huge(at, HUGE).is_ok() {
                done += HUGE;
            }
            at += HUGE;
        }
    }
    done
}

/// Private, writable, anonymous areas (the heap included) of at least one
/// huge page that no advice or userfaultfd keeps from huge pages.
fn candidates(smaps: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut area = None;
    for l in smaps.lines() {
        if let Some(flags) = l.strip_prefix("VmFlags:") {
            let excluded = flags
                .split_whitespace()
                .any(|f| matches!(f, "nh" | "mg" | "um" | "uw" | "dd" | "wf" | "io" | "pf"));
            if let Some(a) = area.take() {
                if !excluded {
                    out.push(a);
                }
            }
            continue;
        }
        let mut fields = l.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        // start-end perms offset dev inode [path]
        let path = fields.nth(3);
        let anonymous = matches!(path, None | Some("[heap]"));
        area = (perms.starts_with("rw") && perms.ends_with('p') && anonymous && e - s >= HUGE)
            .then_some((s, e));
    }
    out
}

/// Whether all pages of the huge-page-sized stretch at `at` are present and
/// mapped only here (not the shared zero page, not shared with a fork).
fn dense(pagemap: &fs::File, at: u64, buf: &mut [u8]) -> bool {
    const PRESENT: u64 = 1 << 63;
    const EXCLUSIVE: u64 = 1 << 56;
    if pagemap.read_exact_at(buf, at / 4096 * 8).is_err() {
        return false;
    }
    buf.chunks_exact(8).all(|e| {
        let e = u64::from_le_bytes(e.try_into().unwrap_or_default());
        e & (PRESENT | EXCLUSIVE) == PRESENT | EXCLUSIVE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_private_writable_anonymous_and_not_excluded() {
        let smaps = "\
55d0c0000000-55d0c0400000 rw-p 00000000 00:00 0                          [heap]
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
VmFlags: rd wr mr mw me ac nh
7f0000400000-7f0000800000 rw-s 00000000 00:01 5                          /dev/zero (deleted)
VmFlags: rd wr sh mr mw me ms
7f0000800000-7f0000c00000 rw-p 00000000 08:01 42                         /usr/lib/x
VmFlags: rd wr mr mw me ac
7f0000c00000-7f0000c01000 rw-p 00000000 00:00 0
VmFlags: rd wr mr mw me ac
7f0001000000-7f0001400000 rw-p 00000000 00:00 0
Size:               4096 kB
VmFlags: rd wr mr mw me ac
";
        assert_eq!(
            candidates(smaps),
            [
                (0x55d0_c000_0000, 0x55d0_c040_0000),
                (0x7f00_0100_0000, 0x7f00_0140_0000)
            ]
        );
    }

    #[test]
    fn a_dense_stretch_of_own_memory_is_collapsed() {
        let v = vec![7u8; 8 << 20];
        let collapsed = collapse_dense_memory();
        assert!(v.iter().all(|&b| b == 7));
        // 8 MiB hold at least three aligned 2 MiB stretches.
        assert!(
            collapsed >= 3 * HUGE,
            "only {collapsed} bytes in huge pages: are transparent huge pages disabled \
             (/sys/kernel/mm/transparent_hugepage/enabled)?"
        );
    }
}
