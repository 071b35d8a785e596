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
    ThreadRecord, VdsoRecord, VerifiedImage, VmaRecord, META_FILE, PAGES_FILE, PAGES_HEADER_LEN,
    RESTORER_ZONE_BASE, RESTORER_ZONE_LEN, RLIMIT_NAMES, VMA_FILE, VMA_SHARED, VMA_VDSO,
    VMA_VSYSCALL,
};

use super::{preflight_machine, RestoreError};

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

/// The parts of page runs that a lazy restore leaves to `crac restore`:
/// those in the areas the restorer registers with its userfaultfd, the
/// private anonymous ones (not file mappings, not shared, not the kernel's
/// vDSO block) but the small ones it loads itself
/// ([`crac_image::eager_small_area`], decided in address order over the
/// areas with pages, as the restorer does).
fn lazy_extents(vmas: &[(u64, u64, u32)], runs: &[PageRun]) -> Vec<(u64, u64, u64)> {
    let private_anon = |flags: u32| flags & (VMA_FILE | VMA_SHARED | VMA_VDSO | VMA_VSYSCALL) == 0;
    // Which areas are lazy: one pass over areas and runs together (both
    // sorted and disjoint, checked by the strict reader).
    let mut lazy = vec![false; vmas.len()];
    let (mut small, mut ri) = (0u64, 0usize);
    for (i, &(vs, ve, flags)) in vmas.iter().enumerate() {
        while runs
            .get(ri)
            .is_some_and(|r| r.addr.saturating_add(r.len()) <= vs)
        {
            ri += 1;
        }
        let has_pages = runs.get(ri).is_some_and(|r| r.addr < ve);
        lazy[i] =
            private_anon(flags) && has_pages && !crac_image::eager_small_area(ve - vs, &mut small);
    }
    let mut out = Vec::new();
    for r in runs {
        let (mut a, end) = (r.addr, r.addr.saturating_add(r.len()));
        // Start at the first area that ends after the run starts, stop at
        // the first that starts after it ends. No scan of every area per
        // run.
        let first = vmas.partition_point(|&(_, ve, _)| ve <= a);
        for (i, &(vs, ve, _)) in vmas.iter().enumerate().skip(first) {
            if vs >= end {
                break;
            }
            let (s, e) = (a.max(vs), end.min(ve));
            if lazy[i] && s < e {
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

pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, kind: ProblemKind, message: String) {
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
    let Some((verified, pages)) = read_image(dir, verify_pages, &mut p) else {
        return Err(fail(p));
    };
    let meta_path = dir.join(META_FILE);
    let mut r = Records::decode(verified.body(), &meta_path, &mut p);
    let Some(process) = r.process.take() else {
        p.add(
            ProblemKind::Image,
            format!(
                "the metadata file {} has no process record",
                meta_path.display()
            ),
        );
        return Err(fail(p));
    };
    check_records(dir, &verified, &r, &process, &mut p);
    if !p.0.is_empty() {
        return Err(fail(p));
    }
    Ok(Plan {
        dir: dir.to_path_buf(),
        pid: process.pid,
        tids: r.threads.iter().map(|(t, _)| *t).collect(),
        exe: path_of(process.exe).to_path_buf(),
        areas: r.vmas.len(),
        pages,
        lazy: lazy_extents(&r.vmas, &r.runs),
        creds: r.creds.unwrap_or_default(),
        fds: r.fds,
        files: r
            .files
            .iter()
            .map(|f| path_of(f.path).to_path_buf())
            .collect(),
        verified,
    })
}

/// Reads the image with the strict reader (every check `inspect --verify`
/// makes except the page data's, on files opened once without following
/// links or blocking; the restorer gets what was checked here) and checks
/// the page file's size and header (and, with `verify_pages`, every
/// piece). Returns the image and its number of stored pages, or `None`
/// after a problem that leaves nothing else worth checking.
fn read_image(
    dir: &Path,
    verify_pages: bool,
    p: &mut Problems,
) -> Option<(Arc<VerifiedImage>, u64)> {
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
            return None;
        }
        Err(e) => {
            p.add(ProblemKind::Image, error_chain(&e));
            return None;
        }
    };
    let h = verified.header();
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
            return None;
        }
    }
    let pieces = verified.image.pieces.is_some();
    let pages = check_pages(&verified.pages, &dir.join(PAGES_FILE), &h, pieces, p);
    if verify_pages && pieces {
        if let Err(e) = verified
            .image
            .verify_pages_file(&verified.pages, &dir.join(PAGES_FILE))
        {
            p.add(ProblemKind::Checksum, error_chain(&e));
        }
    }
    Some((verified, pages))
}

/// The records of the metadata body the checks need.
#[derive(Default)]
struct Records<'a> {
    process: Option<ProcessRecord<'a>>,
    mm: Option<MmRecord<'a>>,
    cpu: Option<CpuRecord<'a>>,
    vdso: Option<VdsoRecord>,
    rlimits: Option<[RlimitRecord; 16]>,
    files: Vec<FileRecord<'a>>,
    fds: Vec<crac_image::model::Fd>,
    fd_records: Vec<FdRecord<'a>>,
    /// TID and name of every thread.
    threads: Vec<(u32, String)>,
    /// Start, end and flags of every memory area.
    vmas: Vec<(u64, u64, u32)>,
    runs: Vec<PageRun>,
    creds: Option<crac_image::creds::Creds>,
}

impl<'a> Records<'a> {
    /// Decodes `body` (of the metadata file `meta_path`), reporting damage
    /// and memory areas in the restorer's zone.
    fn decode(body: &'a [u8], meta_path: &Path, p: &mut Problems) -> Records<'a> {
        let mut r = Records::default();
        let mut damaged = None;
        let mut reader = Reader::new(body);
        loop {
            let (tag, mut s) = match reader.next_section() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    damaged = Some(e);
                    break;
                }
            };
            let res = match Tag::from_u32(tag) {
                Some(Tag::Process) => ProcessRecord::decode(&mut s).map(|x| r.process = Some(x)),
                Some(Tag::Mm) => MmRecord::decode(&mut s).map(|x| r.mm = Some(x)),
                Some(Tag::Cpu) => CpuRecord::decode(&mut s).map(|x| r.cpu = Some(x)),
                Some(Tag::Vdso) => VdsoRecord::decode(&mut s).map(|x| r.vdso = Some(x)),
                Some(Tag::Rlimits) => decode_rlimits(&mut s).map(|x| r.rlimits = Some(x)),
                Some(Tag::File) => FileRecord::decode(&mut s).map(|x| r.files.push(x)),
                Some(Tag::Fd) => FdRecord::decode(&mut s).map(|x| {
                    r.fds.push((&x).into());
                    r.fd_records.push(x);
                }),
                Some(Tag::Thread) => ThreadRecord::decode(&mut s).map(|t| {
                    r.threads
                        .push((t.tid, String::from_utf8_lossy(t.name).into_owned()))
                }),
                Some(Tag::Vma) => VmaRecord::decode(&mut s).map(|v| {
                    r.vmas.push((v.start, v.end, v.flags));
                    check_zone(&v, p);
                }),
                Some(Tag::Creds) => crac_image::CredsRecord::decode(&mut s)
                    .map(|c| r.creds = Some(crac_image::creds::Creds::from(&c))),
                Some(Tag::Runs) => decode_runs(s).try_for_each(|x| x.map(|x| r.runs.push(x))),
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
        r
    }
}

/// A memory area in the restorer's zone cannot be restored.
fn check_zone(v: &VmaRecord<'_>, p: &mut Problems) {
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
}

/// Checks the image's records against this machine and the caller: who
/// may restore it, the PID and TIDs, the CPU and vDSO, the files it maps
/// and carries, its limits and descriptors.
fn check_records(
    dir: &Path,
    verified: &VerifiedImage,
    r: &Records<'_>,
    process: &ProcessRecord<'_>,
    p: &mut Problems,
) {
    check_creds(dir, verified, r.creds.as_ref(), p);
    if !r.threads.iter().any(|(t, _)| *t == process.pid) {
        p.add(
            ProblemKind::Image,
            format!(
                "the image has no record of its main thread (TID {})",
                process.pid
            ),
        );
    }
    check_ids(process.pid, &r.threads, p);
    match &r.cpu {
        Some(c) => preflight_machine::check_cpu(c, p),
        None => p.add(ProblemKind::Image, "the image has no CPU record".into()),
    }
    preflight_machine::check_vdso(&r.vdso.unwrap_or_default(), p);
    for f in &r.files {
        check_file(f, p);
    }
    p.0.extend(super::preflight_files::check(verified.body()));
    let exe = path_of(process.exe);
    if !r.files.iter().any(|f| f.path == process.exe) {
        match fs::metadata(exe) {
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
    match &r.mm {
        Some(m) => check_data_limit(m, p),
        None => p.add(ProblemKind::Image, "the image has no mm record".into()),
    }
    if r.threads.len() as u64 > MAX_THREADS {
        p.add(
            ProblemKind::Image,
            format!(
                "the image has {} threads, more than the restorer's {MAX_THREADS}",
                r.threads.len()
            ),
        );
    }
    if let Some(l) = &r.rlimits {
        check_rlimits(l, p);
    }
    for (kind, message) in super::inherit::problems(&r.fds) {
        p.add(kind, message);
    }
    p.0.extend(super::preflight_sock::check(&r.fd_records));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extents of page runs in private anonymous areas, against the
    /// obvious scan of every area for every page.
    #[test]
    fn lazy_extents_follow_the_areas() {
        // Areas past the size loaded first (see the next test).
        const P: u64 = 0x40 * 4096;
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
                pages: 0x14 * 0x40,
                offset: 0,
            },
            PageRun {
                addr: 0x40 * P,
                pages: 2 * 0x40,
                offset: 0x14 * P,
            },
            PageRun {
                addr: 0x47 * P,
                pages: 0x40,
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
        const PAGE: u64 = 4096;
        let mut want = Vec::new();
        for r in &runs {
            for i in 0..r.pages {
                let a = r.addr + i * PAGE;
                if vmas
                    .iter()
                    .any(|&(s, e, f)| s <= a && a < e && f & VMA_FILE == 0)
                {
                    want.push((a, r.offset + i * PAGE));
                }
            }
        }
        let pages: Vec<(u64, u64)> = got
            .iter()
            .flat_map(|&(a, len, off)| (0..len / PAGE).map(move |i| (a + i * PAGE, off + i * PAGE)))
            .collect();
        assert_eq!(pages, want);
    }

    /// Small private anonymous areas with pages are loaded first, in address
    /// order, while they fit the budget; areas without pages, file areas
    /// and large areas do not count.
    #[test]
    fn small_areas_are_loaded_first_within_the_budget() {
        const P: u64 = 4096;
        const M: u64 = 1 << 20;
        let run = |addr: u64, offset: u64| PageRun {
            addr,
            pages: 1,
            offset,
        };
        let vmas = [
            (0x100 * M, 0x100 * M + 16 * P, 0), // small: first
            (0x101 * M, 0x103 * M, 0),          // 2 MiB: lazy
            (0x104 * M, 0x105 * M, 0),          // no pages: not counted
            (0x106 * M, 0x107 * M, VMA_FILE),   // file: not lazy
            (0x108 * M, 0x109 * M, 0),          // 1 MiB: first (1 MiB + 64 KiB)
            (0x10a * M, 0x10b * M, 0),          // 1 MiB: past the 2 MiB budget, lazy
            (0x10c * M, 0x10d * M, 0),          // 1 MiB: lazy
            (0x110 * M, 0x110 * M + P, 0),      // small, fits: first
        ];
        let runs = [
            run(0x100 * M, 0x1000),
            run(0x101 * M, 0x2000),
            run(0x106 * M, 0x3000),
            run(0x108 * M, 0x4000),
            run(0x10a * M, 0x5000),
            run(0x10c * M, 0x6000),
            run(0x110 * M, 0x8000),
        ];
        assert_eq!(
            lazy_extents(&vmas, &runs),
            vec![
                (0x101 * M, P, 0x2000),
                (0x10a * M, P, 0x5000),
                (0x10c * M, P, 0x6000)
            ]
        );
    }
}
