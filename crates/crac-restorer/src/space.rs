//! The address space the image's memory goes into: the restorer's own
//! segments made anonymous at start-up ([`anonymize`]), everything outside
//! the zone but the kernel's vDSO block unmapped ([`clear_address_space`]),
//! and that block moved to the image's addresses ([`move_vdso`]).

use core::fmt::Write as _;

use crac_image::VdsoRecord;

use crate::sys::*;
use crate::{err, B, PARK_AREA, PARK_MAX, R, ZONE, ZONE_END};

/// Highest user address + 1 on x86-64 with 4-level paging; `[vsyscall]` lies
/// above and cannot be unmapped.
const USER_END: u64 = 0x7fff_ffff_f000;

/// Replaces `[start, end)` by an anonymous copy with protection `prot`.
pub(crate) unsafe fn anonymize(start: u64, end: u64, prot: u64) -> R<()> {
    let len = end - start;
    // SAFETY: a fresh mapping somewhere the kernel chooses.
    let tmp = unsafe {
        mmap(
            0,
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .map_err(|e| fail!(e, start, "mapping a copy of the restorer failed"))?;
    // SAFETY: both ranges are mapped and `len` long; they do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, tmp as *mut u8, len as usize) };
    // SAFETY: `tmp` is ours; then it replaces the identical original range.
    unsafe {
        mprotect(tmp, len, prot)
            .map_err(|e| fail!(e, tmp, "protecting the restorer copy failed"))?;
        mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, start)
            .map_err(|e| fail!(e, start, "moving the restorer copy into place failed"))?;
    }
    Ok(())
}

static mut MAPS_BUF: [u8; 64 * 1024] = [0; 64 * 1024];

/// The kernel's vvar/vdso block as found here: (start, len) per part.
#[derive(Clone, Copy, Default)]
pub(crate) struct Block {
    parts: [(u64, u64); 3],
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    if s.is_empty() {
        return None;
    }
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Unmaps everything outside the zone except the vDSO block; returns the block.
pub(crate) fn clear_address_space() -> R<Block> {
    // SAFETY: the only reference to the buffer, used in this function only.
    let buf: &mut [u8; 64 * 1024] = unsafe { &mut *core::ptr::addr_of_mut!(MAPS_BUF) };
    let fd = open(b"/proc/self/maps\0", O_RDONLY | O_CLOEXEC)
        .map_err(|e| fail!(e, 0, "opening /proc/self/maps failed"))?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            let _ = close(fd);
            return Err(fail!(
                0,
                len as u64,
                "/proc/self/maps is larger than the restorer's buffer"
            ));
        }
        match read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(4) => {}
            Err(e) => {
                let _ = close(fd);
                return Err(fail!(e, 0, "reading /proc/self/maps failed"));
            }
        }
    }
    let _ = close(fd);
    let mut block = Block::default();
    for line in buf[..len].split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(|&c| c == b' ').filter(|f| !f.is_empty());
        let range = fields.next().unwrap_or(b"");
        let name = fields.nth(4).unwrap_or(b"");
        let mut ends = range.split(|&c| c == b'-');
        let (Some(start), Some(end)) = (
            ends.next().and_then(parse_hex),
            ends.next().and_then(parse_hex),
        ) else {
            return Err(fail!(0, 0, "cannot parse /proc/self/maps line {}", B(line)));
        };
        let part = match name {
            b"[vvar]" => Some(0),
            b"[vvar_vclock]" => Some(1),
            b"[vdso]" => Some(2),
            _ => None,
        };
        if let Some(i) = part {
            block.parts[i] = (start, end - start);
            continue;
        }
        if (start >= ZONE && end <= ZONE_END) || start >= USER_END {
            continue;
        }
        // SAFETY: outside the zone nothing is in use any more: we run on the
        // zone's stack and the program lives in the zone.
        unsafe { munmap(start, end - start) }.map_err(|e| {
            fail!(
                e,
                start,
                "unmapping {start:#x}-{end:#x} ({}) failed",
                B(name)
            )
        })?;
    }
    Ok(block)
}

/// Moves this kernel's vvar/vvar_vclock/vdso block to the image's addresses.
pub(crate) fn move_vdso(img: &VdsoRecord, here: &mut Block) -> R<()> {
    let want = [img.vvar, img.vvar_vclock, img.vdso];
    let names = ["[vvar]", "[vvar_vclock]", "[vdso]"];
    if want.iter().all(|p| p.1 == 0) {
        // The image had no vDSO: drop ours.
        for &(a, l) in here.parts.iter().filter(|p| p.1 != 0) {
            // SAFETY: nothing uses the vDSO in the restorer.
            unsafe { munmap(a, l) }.map_err(|e| fail!(e, a, "unmapping the vDSO failed"))?;
        }
        return Ok(());
    }
    let base_img = want.iter().find(|p| p.1 != 0).map(|p| p.0).unwrap_or(0);
    let base_here = here
        .parts
        .iter()
        .find(|p| p.1 != 0)
        .map(|p| p.0)
        .unwrap_or(0);
    for i in 0..3 {
        let (w, h) = (want[i], here.parts[i]);
        let same =
            w.1 == h.1 && (w.1 == 0 || w.0.wrapping_sub(base_img) == h.0.wrapping_sub(base_here));
        if !same {
            return Err(fail!(
                0,
                w.0,
                "the vDSO layout differs: {} is {:#x} bytes at +{:#x} in the image, {:#x} bytes at +{:#x} here",
                names[i],
                w.1,
                w.0.wrapping_sub(base_img),
                h.1,
                h.0.wrapping_sub(base_here)
            ));
        }
    }
    if base_img == base_here {
        return Ok(());
    }
    let span = |ps: &[(u64, u64); 3], base: u64| {
        let end = ps
            .iter()
            .filter(|p| p.1 != 0)
            .map(|p| p.0 + p.1)
            .max()
            .unwrap_or(base);
        (base, end)
    };
    let (hs, he) = span(&here.parts, base_here);
    let (ws, we) = span(&want, base_img);
    if we - ws > PARK_MAX {
        return Err(fail!(
            0,
            ws,
            "the vDSO block is {:#x} bytes, larger than its parking spot",
            we - ws
        ));
    }
    // Overlapping source and destination: hop via the parking spot first.
    if hs < we && ws < he {
        for p in here.parts.iter_mut().filter(|p| p.1 != 0) {
            let to = PARK_AREA + (p.0 - hs);
            // SAFETY: moves a special mapping nothing refers to into the
            // zone's reserved parking spot.
            unsafe { mremap(p.0, p.1, p.1, MREMAP_MAYMOVE | MREMAP_FIXED, to) }
                .map_err(|e| fail!(e, p.0, "parking the vDSO block at {to:#x} failed"))?;
            p.0 = to;
        }
    }
    for i in 0..3 {
        let (from, len) = here.parts[i];
        if len == 0 {
            continue;
        }
        let to = want[i].0;
        // SAFETY: the destination is outside the zone, where nothing is
        // mapped any more; the kernel updates its vDSO pointer itself.
        unsafe { mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to) }.map_err(|e| {
            fail!(
                e,
                to,
                "moving {} from {from:#x} to {to:#x} failed",
                names[i]
            )
        })?;
        here.parts[i].0 = to;
    }
    Ok(())
}
