//! The preflight's checks of this machine against the one the image was made
//! on: the CPU's vendor, enabled xsave features, xsave size and feature bits
//! (a program may use any instruction its CPU had), and the kernel's vDSO
//! (its layout and code, which the restored program calls into).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;

use crac_image::{CpuRecord, VdsoRecord, CPU_FEATURE_WORDS};

use super::preflight::{ProblemKind, Problems};

/// This process's `[vvar]`, `[vvar_vclock]`, `[vdso]` as (start, len).
pub(crate) fn vdso_here() -> io::Result<[(u64, u64); 3]> {
    let maps = fs::read_to_string("/proc/self/maps")?;
    let mut parts = [(0, 0); 3];
    for line in maps.lines() {
        let i = match line.split_whitespace().nth(5) {
            Some("[vvar]") => 0,
            Some("[vvar_vclock]") => 1,
            Some("[vdso]") => 2,
            _ => continue,
        };
        let range = line.split(' ').next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let a = u64::from_str_radix(a, 16).unwrap_or(0);
        let b = u64::from_str_radix(b, 16).unwrap_or(0);
        parts[i] = (a, b.saturating_sub(a));
    }
    Ok(parts)
}

fn vdso_crc(start: u64, len: u64) -> io::Result<u32> {
    let mut buf = vec![0u8; len as usize];
    File::open("/proc/self/mem")?.read_exact_at(&mut buf, start)?;
    Ok(crc32fast::hash(&buf))
}

/// The CPU facts of this machine, in [`CpuRecord`] form.
pub(crate) fn cpu_here() -> (Vec<u8>, u64, u32, [u32; 8]) {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let v = __cpuid(0);
    let max = v.eax;
    let mut vendor = Vec::with_capacity(12);
    for r in [v.ebx, v.edx, v.ecx] {
        vendor.extend_from_slice(&r.to_le_bytes());
    }
    let leaf = |l: u32, s: u32| {
        if l <= max {
            __cpuid_count(l, s)
        } else {
            __cpuid_count(0, 0)
        }
    };
    let (l1, l7, l71, ld1) = (leaf(1, 0), leaf(7, 0), leaf(7, 1), leaf(0xd, 1));
    let z = |ok: bool, v: u32| if ok { v } else { 0 };
    let ext_max = __cpuid(0x8000_0000).eax;
    let e1 = if ext_max >= 0x8000_0001 {
        __cpuid(0x8000_0001).ecx
    } else {
        0
    };
    let osxsave = l1.ecx & (1 << 27) != 0;
    let xcr0 = if osxsave { crac_sys::sys::xcr0() } else { 0 };
    let xsave_size = if max >= 0xd {
        __cpuid_count(0xd, 0).ebx
    } else {
        0
    };
    let features = [
        l1.ecx,
        l1.edx,
        z(max >= 7, l7.ebx),
        z(max >= 7, l7.ecx),
        z(max >= 7, l7.edx),
        z(max >= 7, l71.eax),
        z(max >= 0xd, ld1.eax),
        e1,
    ];
    (vendor, xcr0, xsave_size, features)
}

/// Names of well-known feature bits: (word, bit, name).
const FEATURE_NAMES: &[(usize, u32, &str)] = &[
    (0, 0, "sse3"),
    (0, 1, "pclmulqdq"),
    (0, 9, "ssse3"),
    (0, 12, "fma"),
    (0, 13, "cx16"),
    (0, 19, "sse4.1"),
    (0, 20, "sse4.2"),
    (0, 22, "movbe"),
    (0, 23, "popcnt"),
    (0, 25, "aes"),
    (0, 26, "xsave"),
    (0, 28, "avx"),
    (0, 29, "f16c"),
    (0, 30, "rdrand"),
    (1, 25, "sse"),
    (1, 26, "sse2"),
    (2, 3, "bmi1"),
    (2, 5, "avx2"),
    (2, 8, "bmi2"),
    (2, 9, "erms"),
    (2, 16, "avx512f"),
    (2, 17, "avx512dq"),
    (2, 18, "rdseed"),
    (2, 19, "adx"),
    (2, 21, "avx512ifma"),
    (2, 28, "avx512cd"),
    (2, 29, "sha"),
    (2, 30, "avx512bw"),
    (2, 31, "avx512vl"),
    (3, 1, "avx512vbmi"),
    (3, 6, "avx512vbmi2"),
    (3, 8, "gfni"),
    (3, 9, "vaes"),
    (3, 10, "vpclmulqdq"),
    (3, 11, "avx512vnni"),
    (3, 12, "avx512bitalg"),
    (3, 14, "avx512vpopcntdq"),
    (4, 4, "fsrm"),
    (4, 8, "avx512vp2intersect"),
    (4, 22, "amx-bf16"),
    (4, 23, "avx512fp16"),
    (4, 24, "amx-tile"),
    (4, 25, "amx-int8"),
    (5, 4, "avx-vnni"),
    (5, 5, "avx512bf16"),
    (6, 0, "xsaveopt"),
    (6, 1, "xsavec"),
    (6, 3, "xsaves"),
    (7, 0, "lahf_lm"),
    (7, 5, "lzcnt"),
    (7, 6, "sse4a"),
    (7, 8, "prefetchw"),
    (7, 16, "fma4"),
];

fn feature_name(word: usize, bit: u32) -> String {
    FEATURE_NAMES
        .iter()
        .find(|(w, b, _)| *w == word && *b == bit)
        .map_or_else(
            || format!("{} bit {bit}", CPU_FEATURE_WORDS[word]),
            |(_, _, n)| (*n).to_string(),
        )
}

pub(super) fn check_cpu(cpu: &CpuRecord<'_>, p: &mut Problems) {
    let (vendor, xcr0, xsave_size, features) = cpu_here();
    if cpu.vendor != vendor.as_slice() {
        p.add(
            ProblemKind::Cpu,
            format!(
                "the image was made on a {} CPU, this one is {}",
                String::from_utf8_lossy(cpu.vendor),
                String::from_utf8_lossy(&vendor)
            ),
        );
    }
    if cpu.xcr0 != xcr0 {
        p.add(
            ProblemKind::Cpu,
            format!(
                "the enabled xsave features (XCR0) differ: {:#x} in the image, {xcr0:#x} here",
                cpu.xcr0
            ),
        );
    }
    if cpu.xsave_size != xsave_size {
        p.add(
            ProblemKind::Cpu,
            format!(
                "the xsave area size differs: {} bytes in the image, {xsave_size} here",
                cpu.xsave_size
            ),
        );
    }
    let mut missing = Vec::new();
    for (w, (&img, &here)) in cpu.features.iter().zip(features.iter()).enumerate() {
        let lack = img & !here;
        for bit in (0..32).filter(|b| lack & (1 << b) != 0) {
            missing.push(feature_name(w, bit));
        }
    }
    if !missing.is_empty() {
        p.add(
            ProblemKind::Cpu,
            format!(
                "this CPU lacks features the image's CPU had: {}",
                missing.join(", ")
            ),
        );
    }
}

pub(super) fn check_vdso(img: &VdsoRecord, p: &mut Problems) {
    let here = match vdso_here() {
        Ok(h) => h,
        Err(e) => {
            p.add(
                ProblemKind::Vdso,
                format!("this process's maps cannot be read to find the vDSO: {e}"),
            );
            return;
        }
    };
    let want = [img.vvar, img.vvar_vclock, img.vdso];
    let names = ["[vvar]", "[vvar_vclock]", "[vdso]"];
    let base = |ps: &[(u64, u64); 3]| ps.iter().find(|x| x.1 != 0).map_or(0, |x| x.0);
    let (bw, bh) = (base(&want), base(&here));
    let mut layout_ok = true;
    for i in 0..3 {
        let (w, h) = (want[i], here[i]);
        if w.1 != h.1 || (w.1 != 0 && w.0.wrapping_sub(bw) != h.0.wrapping_sub(bh)) {
            layout_ok = false;
            p.add(
                ProblemKind::Vdso,
                format!(
                    "the vDSO layout differs: {} is {:#x} bytes at +{:#x} in the image, {:#x} bytes at +{:#x} here",
                    names[i],
                    w.1,
                    w.0.wrapping_sub(bw),
                    h.1,
                    h.0.wrapping_sub(bh)
                ),
            );
        }
    }
    if layout_ok && img.vdso_crc != 0 && here[2].1 != 0 {
        match vdso_crc(here[2].0, here[2].1) {
            Ok(c) if c != img.vdso_crc => p.add(
                ProblemKind::Vdso,
                format!(
                    "the vDSO code differs from the image's (checksum {c:#010x} here, {:#010x} in the image): the kernel changed since the checkpoint",
                    img.vdso_crc
                ),
            ),
            Ok(_) => {}
            Err(e) => p.add(ProblemKind::Vdso, format!("the vDSO cannot be read to compare it: {e}")),
        }
    }
}
