//! Checks that an image can be restored here, before anything is touched.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crac_image::{
    decode_pages_header, decode_rlimits, decode_runs, CpuRecord, FdRecord, FileRecord, Header,
    Image, ImageReadError, MmRecord, PageRun, ProcessRecord, Reader, RlimitRecord, Tag,
    ThreadRecord, VdsoRecord, VerifiedImage, VmaRecord, CPU_FEATURE_WORDS, META_FILE, PAGES_FILE,
    PAGES_HEADER_LEN, RESTORER_ZONE_BASE, RESTORER_ZONE_LEN, RLIMIT_NAMES, VMA_FILE, VMA_SHARED,
    VMA_VDSO, VMA_VSYSCALL,
};

use super::RestoreError;

/// Threads the restorer can create (32 KiB stacks from 112 MiB into the zone).
const MAX_THREADS: u64 = (RESTORER_ZONE_LEN - 0x0700_0000) / 0x8000;

/// `PR_SET_MM_MAP` refuses a data segment plus heap above the soft
/// `RLIMIT_DATA` (the restored process inherits this process's limits).
fn check_data_limit(m: &MmRecord<'_>, p: &mut Problems) {
    let Ok((cur, _)) = crac_sys::sys::prlimit(2, None) else {
        return;
    };
    let need = m.brk.saturating_sub(m.start_brk) + m.end_data.saturating_sub(m.start_data);
    if cur != u64::MAX && need > cur {
        p.add(
            ProblemKind::Rlimit,
            format!(
                "the image's data segment and heap take {need} bytes, above this process's RLIMIT_DATA ({cur})"
            ),
        );
    }
}

/// What a restore of an image will create, as found by [`preflight`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// The image directory.
    pub dir: PathBuf,
    /// The process's PID.
    pub pid: u32,
    /// Every thread's TID, the main thread's (= PID) included.
    pub tids: Vec<u32>,
    /// The executable.
    pub exe: PathBuf,
    /// Number of memory areas.
    pub areas: usize,
    /// Number of stored pages.
    pub pages: u64,
    /// The files the image maps.
    pub files: Vec<PathBuf>,
    /// The descriptors the image records.
    pub fds: Vec<crac_image::model::Fd>,
    /// The stored pages a lazy restore leaves to `crac restore`: those of
    /// private anonymous areas, as `(address, length, page file offset)`.
    pub lazy: Vec<(u64, u64, u64)>,
    /// The image as checked: the restore passes these bytes and this page
    /// file descriptor to the restorer instead of opening the paths again.
    pub(crate) verified: Arc<VerifiedImage>,
    /// Who the restored process runs as (checked: the caller may restore
    /// it); handed to the restorer, which refuses an image that says
    /// otherwise by then.
    pub creds: crac_image::creds::Creds,
}

/// MemTotal + SwapTotal from /proc/meminfo, in bytes.
fn memory_and_swap() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(
        kib("MemTotal:")?
            .saturating_add(kib("SwapTotal:").unwrap_or(0))
            .saturating_mul(1024),
    )
}

/// `e` and its sources, joined with ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let _ = write!(s, ": {c}");
        src = c.source();
    }
    s
}

/// The parts of page runs that lie in private anonymous areas (the areas
/// the restorer registers with its userfaultfd in a lazy restore: not file
/// mappings, not shared, not the kernel's vDSO block).
fn lazy_extents(vmas: &[(u64, u64, u32)], runs: &[PageRun]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for r in runs {
        let (mut a, end) = (r.addr, r.addr.saturating_add(r.len()));
        // Areas are sorted and disjoint (checked by the strict reader): start
        // at the first that ends after the run starts, stop at the first that
        // starts after it ends. No scan of every area per run.
        let first = vmas.partition_point(|&(_, ve, _)| ve <= a);
        for &(vs, ve, flags) in &vmas[first..] {
            if vs >= end {
                break;
            }
            let lazy = flags & (VMA_FILE | VMA_SHARED | VMA_VDSO | VMA_VSYSCALL) == 0;
            let (s, e) = (a.max(vs), end.min(ve));
            if lazy && s < e {
                out.push((s, e - s, r.offset + (s - r.addr)));
            }
            a = e;
        }
    }
    out
}

/// What kind of obstacle a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// An image file is missing, unreadable, of another version or damaged.
    Image,
    /// A checksum does not match.
    Checksum,
    /// A file the image maps (or its executable) is missing or changed.
    File,
    /// This CPU lacks features, or its xsave layout differs.
    Cpu,
    /// This kernel's vDSO differs from the image's.
    Vdso,
    /// The PID or a TID is in use.
    IdTaken,
    /// An image memory area overlaps the restorer zone.
    ZoneCollision,
    /// A resource limit of the image exceeds what can be set here.
    Rlimit,
    /// A listening socket's address is in use or cannot be bound here.
    Address,
    /// The image was made by another user than the caller, its credentials
    /// are missing, or another user could have written its directory or
    /// files.
    Trust,
}

/// One reason an image cannot be restored here, as a sentence with the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// The sentence (lower case start, no final period).
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, kind: ProblemKind, message: String) {
        self.0.push(Problem { kind, message });
    }
}

fn path_of(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// Who holds `id`: `process 1234 (sleep)` or `a thread of process 1200 (java)`.
pub(crate) fn holder(id: u32) -> String {
    let status = fs::read_to_string(format!("/proc/{id}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let name = field("Name:").unwrap_or_else(|| "?".into());
    match field("Tgid:").and_then(|t| t.parse::<u32>().ok()) {
        Some(tgid) if tgid != id => {
            let pname = fs::read_to_string(format!("/proc/{tgid}/comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("thread {id} ({name}) of process {tgid} ({pname})")
        }
        _ if field("State:").is_some_and(|s| s.starts_with('Z')) => {
            let ppid = field("PPid:").unwrap_or_else(|| "?".into());
            format!("process {id} ({name}), a zombie until its parent {ppid} reaps it (an orphan is reaped by init within a few seconds)")
        }
        _ => format!("process {id} ({name})"),
    }
}

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

fn check_cpu(cpu: &CpuRecord<'_>, p: &mut Problems) {
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

fn check_vdso(img: &VdsoRecord, p: &mut Problems) {
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

fn check_file(f: &FileRecord<'_>, p: &mut Problems) {
    // Identified by content: a byte-identical copy restores.
    if let crate::identity::FileMatch::Differs(what) = crate::identity::mapped_file(f) {
        p.add(
            ProblemKind::File,
            format!("{} (mapped by the image) {what}", path_of(f.path).display()),
        );
    }
}

/// Returns the page count of `f` (its length and header page were checked
/// by the strict reader). Images with a piece table (format 1.3 and later)
/// have each piece checked as it is loaded, so the page data is not read
/// here; older ones have their page data CRC-32 checked.
fn check_pages(f: &File, path: &Path, h: &Header, pieces: bool, p: &mut Problems) -> u64 {
    let len = h.pages_len;
    let mut head = vec![0u8; PAGES_HEADER_LEN as usize];
    let count = f
        .read_exact_at(&mut head, 0)
        .ok()
        .and_then(|()| decode_pages_header(&head))
        .unwrap_or(0);
    if pieces {
        return count;
    }
    let crc = match pages_crc(f, PAGES_HEADER_LEN, len) {
        Ok(c) => c,
        Err(e) => {
            p.add(
                ProblemKind::Image,
                format!("the page file {} cannot be read: {e}", path.display()),
            );
            return count;
        }
    };
    if crc != h.pages_crc {
        p.add(
            ProblemKind::Checksum,
            format!(
                "the page file {} is damaged (checksum {crc:#010x}, expected {:#010x})",
                path.display(),
                h.pages_crc
            ),
        );
    }
    count
}

/// Page files of at least this many bytes are checksummed on two threads.
const CRC_SPLIT_MIN: u64 = 4 << 20;

/// CRC-32 of `f[start..end]`. All but small files are split between two
/// threads (copying the pages out of the page cache costs more than the
/// checksum itself, and dominates the restore of a large image) and the
/// partial checksums combined.
fn pages_crc(f: &File, start: u64, end: u64) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    // Mapped, not read: copying a gigabyte out of the page cache first costs
    // as much as the restore's own page loading.
    let view = crac_sys::map::FileView::map(f.as_raw_fd(), end as usize)?;
    let data = &view.bytes()[start as usize..end as usize];
    if data.len() < CRC_SPLIT_MIN as usize {
        return Ok(crc32fast::hash(data));
    }
    let mid = data.len() / 2 / 4096 * 4096;
    let (first, second) = data.split_at(mid);
    let (mut a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| {
            let mut h = crc32fast::Hasher::new();
            h.update(second);
            h
        });
        let mut a = crc32fast::Hasher::new();
        a.update(first);
        (a, b.join())
    });
    a.combine(&b.map_err(|_| io::Error::other("checksum thread panicked"))?);
    Ok(a.finalize())
}

fn rlimit_text(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

fn check_rlimits(lims: &[RlimitRecord; 16], p: &mut Problems) {
    for (i, l) in lims.iter().enumerate() {
        let Ok((_, max)) = crac_sys::sys::prlimit(i as u32, None) else {
            continue;
        };
        if l.max > max {
            p.add(
                ProblemKind::Rlimit,
                format!(
                    "the {} hard limit of the image ({}) is above this process's ({}), which cannot be raised without CAP_SYS_RESOURCE",
                    RLIMIT_NAMES[i],
                    rlimit_text(l.max),
                    rlimit_text(max)
                ),
            );
        }
    }
}

fn check_ids(pid: u32, threads: &[(u32, String)], p: &mut Problems) {
    let pid_max = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    for (id, name) in threads {
        let what = if *id == pid {
            format!("PID {id}")
        } else {
            format!("TID {id} (thread {name})")
        };
        if *id >= pid_max {
            p.add(
                ProblemKind::IdTaken,
                format!("{what} is above this system's pid_max ({pid_max})"),
            );
        } else if Path::new(&format!("/proc/{id}")).exists() {
            p.add(
                ProblemKind::IdTaken,
                format!(
                    "{what} is taken by {} (`crac restore --pidns` restores a copy in a PID \
                     namespace of its own)",
                    holder(*id)
                ),
            );
        }
    }
}

/// Who may restore the image and whether its directory can be trusted.
fn check_creds(
    dir: &Path,
    verified: &VerifiedImage,
    creds: Option<&crac_image::creds::Creds>,
    p: &mut Problems,
) {
    let Some(creds) = creds else {
        // Without it the restored process would run as the caller.
        p.add(
            ProblemKind::Trust,
            "the image has no credentials record: it does not say which user it runs as".into(),
        );
        return;
    };
    match crate::creds::current() {
        Ok(me) => {
            if let Some(why) = crate::creds::refusal(&me, creds) {
                p.add(ProblemKind::Trust, why);
            }
        }
        Err(e) => p.add(
            ProblemKind::Trust,
            format!("this process's credentials cannot be read: {e}"),
        ),
    }
    for why in crate::creds::image_dir_problems(dir, verified, creds.uids[0]) {
        p.add(ProblemKind::Trust, why);
    }
}

/// Checks that the image in `image_dir` can be restored here and describes
/// what the restore will create. Reads only: the metadata, the page file's
/// header page (and all of its page data in an image without a piece
/// table, for its checksum), the mapped files' attributes, this process's
/// CPU, maps and limits, and `/proc`. Every problem found is reported in
/// one [`RestoreError::Preflight`].
pub fn preflight(image_dir: impl AsRef<Path>) -> Result<Plan, RestoreError> {
    preflight_with(image_dir, false)
}

/// [`preflight`]; with `verify_pages` it also checks every piece of the
/// page data against the piece table (what `crac restore --verify` asks
/// for: a damaged piece is found before anything is restored).
pub fn preflight_with(
    image_dir: impl AsRef<Path>,
    verify_pages: bool,
) -> Result<Plan, RestoreError> {
    let dir = image_dir.as_ref();
    let mut p = Problems(Vec::new());
    let fail = |p: Problems| RestoreError::Preflight {
        dir: dir.to_path_buf(),
        problems: p.0,
    };
    let meta_path = dir.join(META_FILE);
    // The strict reader: every check `inspect --verify` makes except the
    // page data checksum (below), on files opened once without following
    // links or blocking; the restorer gets what was checked here.
    let verified = match Image::read_verified(dir) {
        Ok(v) => Arc::new(v),
        Err(ImageReadError::BodyChecksum {
            path,
            stored,
            computed,
        }) => {
            p.add(
                ProblemKind::Checksum,
                format!(
                    "the metadata file {} is damaged (checksum {computed:#010x}, expected {stored:#010x})",
                    path.display()
                ),
            );
            return Err(fail(p));
        }
        Err(e) => {
            p.add(ProblemKind::Image, error_chain(&e));
            return Err(fail(p));
        }
    };
    let h = verified.header();
    let body = verified.body();
    // Bounded work: a page file larger than this machine could ever hold
    // (a sparse file, say) is refused before it is checksummed.
    if let Some(room) = memory_and_swap() {
        // Uncompressed, for a compressed image.
        let pages_len = verified.image.logical_pages_len().max(h.pages_len);
        if pages_len > room {
            p.add(
                ProblemKind::Image,
                format!(
                    "the page file {} holds {} bytes of pages, more than this machine's memory and swap ({room} bytes)",
                    dir.join(PAGES_FILE).display(),
                    pages_len
                ),
            );
            return Err(fail(p));
        }
    }
    let pieces = verified.image.pieces.is_some();
    let page_count = check_pages(&verified.pages, &dir.join(PAGES_FILE), &h, pieces, &mut p);
    if verify_pages && pieces {
        if let Err(e) = verified
            .image
            .verify_pages_file(&verified.pages, &dir.join(PAGES_FILE))
        {
            p.add(ProblemKind::Checksum, error_chain(&e));
        }
    }

    // Decode what the checks need.
    let mut process = None;
    let mut mm = None;
    let mut cpu = None;
    let mut vdso = None;
    let mut rlimits = None;
    let mut files = Vec::new();
    let mut fds = Vec::new();
    let mut fd_records = Vec::new();
    let mut threads = Vec::new();
    let mut areas = 0;
    let mut vmas = Vec::new();
    let mut runs = Vec::new();
    let mut damaged = None;
    let mut creds = None;
    let mut r = Reader::new(body);
    loop {
        let (tag, mut s) = match r.next_section() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => {
                damaged = Some(e);
                break;
            }
        };
        let res = match Tag::from_u32(tag) {
            Some(Tag::Process) => ProcessRecord::decode(&mut s).map(|x| process = Some(x)),
            Some(Tag::Mm) => MmRecord::decode(&mut s).map(|x| mm = Some(x)),
            Some(Tag::Cpu) => CpuRecord::decode(&mut s).map(|x| cpu = Some(x)),
            Some(Tag::Vdso) => VdsoRecord::decode(&mut s).map(|x| vdso = Some(x)),
            Some(Tag::Rlimits) => decode_rlimits(&mut s).map(|x| rlimits = Some(x)),
            Some(Tag::File) => FileRecord::decode(&mut s).map(|x| files.push(x)),
            Some(Tag::Fd) => FdRecord::decode(&mut s).map(|x| {
                fds.push((&x).into());
                fd_records.push(x);
            }),
            Some(Tag::Thread) => ThreadRecord::decode(&mut s)
                .map(|t| threads.push((t.tid, String::from_utf8_lossy(t.name).into_owned()))),
            Some(Tag::Vma) => VmaRecord::decode(&mut s).map(|v| {
                areas += 1;
                vmas.push((v.start, v.end, v.flags));
                let zone_end = RESTORER_ZONE_BASE + RESTORER_ZONE_LEN;
                if v.start < zone_end && RESTORER_ZONE_BASE < v.end {
                    p.add(
                        ProblemKind::ZoneCollision,
                        format!(
                            "the memory area {:#x}-{:#x} {}overlaps the restorer zone {RESTORER_ZONE_BASE:#x}-{zone_end:#x}",
                            v.start,
                            v.end,
                            if v.name.is_empty() {
                                String::new()
                            } else {
                                format!("({}) ", String::from_utf8_lossy(v.name))
                            }
                        ),
                    );
                }
            }),
            Some(Tag::Creds) => crac_image::CredsRecord::decode(&mut s)
                .map(|c| creds = Some(crac_image::creds::Creds::from(&c))),
            Some(Tag::Runs) => decode_runs(s).try_for_each(|r| r.map(|r| runs.push(r))),
            _ => Ok(()),
        };
        if let Err(e) = res {
            damaged = Some(e);
            break;
        }
    }
    if let Some(e) = damaged {
        p.add(
            ProblemKind::Image,
            format!("the metadata file {} is damaged: {e}", meta_path.display()),
        );
    }
    let Some(process) = process else {
        p.add(
            ProblemKind::Image,
            format!(
                "the metadata file {} has no process record",
                meta_path.display()
            ),
        );
        return Err(fail(p));
    };
    check_creds(dir, &verified, creds.as_ref(), &mut p);
    if !threads.iter().any(|(t, _)| *t == process.pid) {
        p.add(
            ProblemKind::Image,
            format!(
                "the image has no record of its main thread (TID {})",
                process.pid
            ),
        );
    }
    check_ids(process.pid, &threads, &mut p);
    match cpu {
        Some(c) => check_cpu(&c, &mut p),
        None => p.add(ProblemKind::Image, "the image has no CPU record".into()),
    }
    check_vdso(&vdso.unwrap_or_default(), &mut p);
    for f in &files {
        check_file(f, &mut p);
    }
    p.0.extend(super::preflight_files::check(body));
    let exe = path_of(process.exe).to_path_buf();
    if !files.iter().any(|f| f.path == process.exe) {
        match fs::metadata(&exe) {
            Ok(m) if m.is_file() => {}
            Ok(_) => p.add(
                ProblemKind::File,
                format!("the executable {} is not a regular file", exe.display()),
            ),
            Err(e) => p.add(
                ProblemKind::File,
                format!("the executable {} cannot be found: {e}", exe.display()),
            ),
        }
    }
    match mm {
        Some(m) => check_data_limit(&m, &mut p),
        None => p.add(ProblemKind::Image, "the image has no mm record".into()),
    }
    if threads.len() as u64 > MAX_THREADS {
        p.add(
            ProblemKind::Image,
            format!(
                "the image has {} threads, more than the restorer's {MAX_THREADS}",
                threads.len()
            ),
        );
    }
    if let Some(l) = rlimits {
        check_rlimits(&l, &mut p);
    }
    for (kind, message) in super::inherit::problems(&fds) {
        p.add(kind, message);
    }
    p.0.extend(super::preflight_sock::check(&fd_records));
    if !p.0.is_empty() {
        return Err(fail(p));
    }
    Ok(Plan {
        verified: Arc::clone(&verified),
        dir: dir.to_path_buf(),
        pid: process.pid,
        tids: threads.iter().map(|(t, _)| *t).collect(),
        exe,
        areas,
        pages: page_count,
        lazy: lazy_extents(&vmas, &runs),
        creds: creds.unwrap_or_default(),
        fds,
        files: files
            .iter()
            .map(|f| path_of(f.path).to_path_buf())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extents of page runs in private anonymous areas, against the
    /// obvious scan of every area for every page.
    #[test]
    fn lazy_extents_follow_the_areas() {
        const P: u64 = 4096;
        // Anonymous, file, anonymous (adjacent), a gap, anonymous.
        let vmas = [
            (0x10 * P, 0x20 * P, 0),
            (0x20 * P, 0x24 * P, VMA_FILE),
            (0x24 * P, 0x30 * P, 0),
            (0x40 * P, 0x48 * P, 0),
        ];
        let runs = [
            PageRun {
                addr: 0x12 * P,
                pages: 0x14,
                offset: 0,
            },
            PageRun {
                addr: 0x40 * P,
                pages: 2,
                offset: 0x14 * P,
            },
            PageRun {
                addr: 0x47 * P,
                pages: 1,
                offset: 0x16 * P,
            },
        ];
        let got = lazy_extents(&vmas, &runs);
        assert_eq!(
            got,
            vec![
                (0x12 * P, 0xe * P, 0),
                (0x24 * P, 0x2 * P, 0x12 * P),
                (0x40 * P, 2 * P, 0x14 * P),
                (0x47 * P, P, 0x16 * P),
            ]
        );
        // Page by page, the same pages.
        let mut want = Vec::new();
        for r in &runs {
            for i in 0..r.pages {
                let a = r.addr + i * P;
                if vmas
                    .iter()
                    .any(|&(s, e, f)| s <= a && a < e && f & VMA_FILE == 0)
                {
                    want.push((a, r.offset + i * P));
                }
            }
        }
        let pages: Vec<(u64, u64)> = got
            .iter()
            .flat_map(|&(a, len, off)| (0..len / P).map(move |i| (a + i * P, off + i * P)))
            .collect();
        assert_eq!(pages, want);
    }
}
