//! `PR_SET_MM_MAP`: the image's code, data, heap and stack bounds, its
//! auxiliary vector and its executable (`/proc/PID/exe`), set once every
//! area is mapped.

use core::fmt::Write as _;

use crate::files::open_path;
use crate::image::Image;
use crate::sys::*;
use crate::{err, B, R};

/// `struct prctl_mm_map`.
#[repr(C)]
struct PrctlMmMap {
    fields: [u64; 11],
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// Gives the process the image's memory layout, auxiliary vector and
/// executable (`PR_SET_MM_MAP`).
pub(crate) fn set_mm(img: &Image) -> R<()> {
    let exe = open_path(img.process.exe, O_RDONLY, "the executable")?;
    let m = &img.mm;
    let map = PrctlMmMap {
        fields: m.fields(),
        auxv: m.auxv.as_ptr() as u64,
        auxv_size: m.auxv.len() as u32,
        exe_fd: exe as u32,
    };
    // SAFETY: `map` and the auxv bytes it points to are valid for the call.
    let r = unsafe {
        prctl(
            PR_SET_MM,
            PR_SET_MM_MAP,
            &map as *const PrctlMmMap as u64,
            core::mem::size_of::<PrctlMmMap>() as u64,
        )
    };
    let _ = close(exe);
    r.map(drop).map_err(|e| {
        fail!(
            e,
            m.start_brk,
            "PR_SET_MM_MAP refused code {:#x}-{:#x} data {:#x}-{:#x} brk {:#x}-{:#x} stack {:#x} auxv {} bytes exe {}",
            m.start_code,
            m.end_code,
            m.start_data,
            m.end_data,
            m.start_brk,
            m.brk,
            m.start_stack,
            m.auxv.len(),
            B(img.process.exe)
        )
    })
}
