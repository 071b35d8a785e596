//! What the dump gathers before it stops the threads. Allocation is still
//! allowed here; everything the stopped phase needs is sized and allocated
//! now.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crac_image::{RlimitRecord, SigactionRecord};
use crac_sys::sys;

/// A file the process maps, identified for the restore check.
pub use crac_image::model::FileRef as FileMeta;

/// One POSIX timer as `/proc/self/timers` and `timer_gettime` show it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub sigval: u64,
    pub signo: i32,
    pub notify: i32,
    pub tid: i32,
    pub interval_ns: u64,
    pub value_ns: u64,
}

/// Parses `/proc/self/timers` and reads each timer's setting.
pub fn posix_timers(text: &str) -> Vec<PosixTimer> {
    let mut out = Vec::new();
    let mut cur: Option<PosixTimer> = None;
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        match key {
            "ID" => {
                out.extend(cur.take());
                cur = Some(PosixTimer {
                    id: val.parse().unwrap_or(-1),
                    ..Default::default()
                });
            }
            "signal" => {
                if let (Some(t), Some((sig, ptr))) = (cur.as_mut(), val.split_once('/')) {
                    t.signo = sig.parse().unwrap_or(0);
                    t.sigval = u64::from_str_radix(ptr.trim_start_matches("0x"), 16).unwrap_or(0);
                }
            }
            "notify" => {
                if let (Some(t), Some((kind, who))) = (cur.as_mut(), val.split_once('/')) {
                    // SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD 2, SIGEV_THREAD_ID 4.
                    let base = match kind {
                        "none" => 1,
                        "thread" => 2,
                        _ => 0,
                    };
                    let (scope, id) = who.split_once('.').unwrap_or(("pid", "0"));
                    t.tid = id.parse().unwrap_or(0);
                    t.notify = if scope == "tid" { 4 } else { base };
                }
            }
            "ClockID" => {
                if let Some(t) = cur.as_mut() {
                    t.clock = val.parse().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    out.extend(cur);
    for t in &mut out {
        if let Ok((i, v)) = sys::timer_gettime(t.id) {
            t.interval_ns = i;
            t.value_ns = v;
        }
    }
    out
}

/// Process-wide facts gathered before the stop.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct Facts {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
    pub personality: u32,
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    /// `cwd` with a trailing NUL, for `chdir` without allocating.
    pub cwd_c: Vec<u8>,
    pub comm: Vec<u8>,
    pub kernel_release: Vec<u8>,
    pub boot_id: Vec<u8>,
    pub hostname: Vec<u8>,
    pub cmdline: Vec<u8>,
    pub auxv: Vec<u8>,
    pub mm: [u64; 11],
    pub cpu_vendor: Vec<u8>,
    pub xcr0: u64,
    pub xsave_size: u32,
    pub cpu_features: [u32; 8],
    pub sigactions: Vec<SigactionRecord>,
    pub rlimits: Vec<RlimitRecord>,
    pub itimers: [(u64, u64); 3],
    pub shared_pending: u64,
    pub posix_timers: u32,
    /// POSIX timers: (id, clock, sigval, signo, notify, tid, interval, value).
    pub timers: Vec<PosixTimer>,
    pub files: Vec<FileMeta>,
    pub vdso_crc: u32,
    pub zero_pfn: u64,
    /// Size of /proc/self/maps now, to size the buffer.
    pub maps_len: usize,
    /// Number of mappings now.
    pub vma_count: usize,
    /// Bytes of mappings of deleted files now (the dump stores every page
    /// of a private one, resident or not: sizes the piece table).
    pub deleted_bytes: u64,
    /// Number of threads now.
    pub thread_count: usize,
    /// `(start, end, VMA_* advice bits)` of the mappings with `madvise`
    /// advice (from `/proc/self/smaps`), in address order.
    pub advice: Vec<(u64, u64, u32)>,
    /// The dumping thread's credentials (the restored process gets them).
    pub creds: crac_image::creds::Creds,
}

fn read_bytes(p: &str) -> Vec<u8> {
    fs::read(p).unwrap_or_default()
}

fn trim_nl(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&b'\n') {
        v.pop();
    }
    v
}

/// Gathers everything that does not have to be read while threads are
/// stopped.
pub fn gather() -> std::io::Result<Facts> {
    let mut f = Facts {
        pid: sys::getpid(),
        ..Default::default()
    };
    let status = fs::read_to_string("/proc/self/status")?;
    for line in status.lines() {
        let mut it = line.split_whitespace();
        match it.next() {
            Some("PPid:") => f.ppid = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            Some("Uid:") => f.uid = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            Some("Gid:") => f.gid = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            Some("Umask:") => {
                f.umask = it
                    .next()
                    .and_then(|v| u32::from_str_radix(v, 8).ok())
                    .unwrap_or(0o22)
            }
            Some("ShdPnd:") => {
                f.shared_pending = it
                    .next()
                    .and_then(|v| u64::from_str_radix(v, 16).ok())
                    .unwrap_or(0)
            }
            Some("Threads:") => {
                f.thread_count = it.next().and_then(|v| v.parse().ok()).unwrap_or(1)
            }
            _ => {}
        }
    }
    f.personality = sys::personality();
    f.creds = crate::creds::current()?;
    f.exe = fs::read_link("/proc/self/exe")?
        .as_os_str()
        .as_bytes()
        .to_vec();
    f.cwd = std::env::current_dir()?.as_os_str().as_bytes().to_vec();
    f.cwd_c = [f.cwd.as_slice(), &[0]].concat();
    f.comm = trim_nl(read_bytes("/proc/self/comm"));
    f.kernel_release = trim_nl(read_bytes("/proc/sys/kernel/osrelease"));
    f.boot_id = trim_nl(read_bytes("/proc/sys/kernel/random/boot_id"));
    f.hostname = trim_nl(read_bytes("/proc/sys/kernel/hostname"));
    f.cmdline = read_bytes("/proc/self/cmdline");
    f.auxv = read_bytes("/proc/self/auxv");
    f.mm = mm_fields()?;
    cpu(&mut f);
    for sig in 1..=64 {
        let mut a = sys::KernelSigaction::default();
        let _ = query_sigaction(sig, &mut a);
        f.sigactions.push(SigactionRecord {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        });
    }
    for r in 0..16 {
        let (cur, max) = sys::prlimit(r, None).unwrap_or((u64::MAX, u64::MAX));
        f.rlimits.push(RlimitRecord { cur, max });
    }
    for (i, t) in f.itimers.iter_mut().enumerate() {
        *t = sys::getitimer(i as i32).unwrap_or((0, 0));
    }
    f.timers = posix_timers(&fs::read_to_string("/proc/self/timers").unwrap_or_default());
    f.posix_timers = f.timers.len() as u32;
    let maps = fs::read("/proc/self/maps")?;
    f.maps_len = maps.len();
    f.vma_count = maps
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        let Some(path) = map_path(line) else { continue };
        if path.ends_with(b" (deleted)") {
            f.deleted_bytes += line_len(line).unwrap_or(0);
        }
        if path.first() != Some(&b'/')
            || path.ends_with(b" (deleted)")
            || seen.iter().any(|p| p == path)
        {
            continue;
        }
        seen.push(path.to_vec());
        if let Some(mut m) = file_meta(path) {
            m.id = f.files.len() as u32;
            f.files.push(m);
        }
    }
    f.zero_pfn = zero_pfn();
    f.vdso_crc = vdso_crc(&maps);
    f.advice = read_advice("/proc/self/smaps")?;
    Ok(f)
}

/// The length of the mapping of a `/proc/self/maps` line.
fn line_len(line: &[u8]) -> Option<u64> {
    let range = std::str::from_utf8(line.split(|&b| b == b' ').next()?).ok()?;
    let (s, e) = range.split_once('-')?;
    let s = u64::from_str_radix(s, 16).ok()?;
    u64::from_str_radix(e, 16).ok()?.checked_sub(s)
}

/// The mappings of a process's `smaps` with advice crac gives back on
/// restore, read a piece at a time: the text is about 700 bytes per mapping
/// (35 MB for 50,000 mappings), of which only two lines matter.
pub fn read_advice(path: &str) -> std::io::Result<Vec<(u64, u64, u32)>> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut have, mut area, mut out) = (0, None, Vec::new());
    loop {
        if have == buf.len() {
            // A line longer than the buffer (a very long file name).
            buf.resize(buf.len() * 2, 0);
        }
        let n = match file.read(&mut buf[have..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            advice_lines(&buf[..have], &mut area, &mut out);
            return Ok(out);
        }
        have += n;
        let whole = memchr::memrchr(b'\n', &buf[..have]).map_or(0, |i| i + 1);
        advice_lines(&buf[..whole], &mut area, &mut out);
        buf.copy_within(whole..have, 0);
        have -= whole;
    }
}

/// Parses whole lines of `smaps` text into `out`; `area` is the mapping
/// whose `VmFlags` line is still to come (it ends each mapping's block).
fn advice_lines(text: &[u8], area: &mut Option<(u64, u64)>, out: &mut Vec<(u64, u64, u32)>) {
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let Some((s, e)) = *area else {
            // A mapping's first line: `start-end perms ...`.
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i);
            let range = rest[..end].split(|&b| b == b' ').next().unwrap_or(&[]);
            if let Some(dash) = memchr::memchr(b'-', range) {
                if let (Some(s), Some(e)) = (
                    super::maps::parse_hex(&range[..dash]),
                    super::maps::parse_hex(&range[dash + 1..]),
                ) {
                    *area = Some((s, e));
                }
            }
            pos += end + 1;
            continue;
        };
        // Straight past the mapping's counters to its flags.
        let at = if rest.starts_with(b"VmFlags:") {
            0
        } else {
            match memchr::memmem::find(rest, b"\nVmFlags:") {
                Some(i) => i + 1,
                None => return,
            }
        };
        let line = &rest[at..];
        let end = memchr::memchr(b'\n', line).map_or(line.len(), |i| i);
        let bits = line[8..end]
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .fold(0, |b, f| {
                b | crac_image::VMA_ADVICE
                    .iter()
                    .find(|a| a.1.as_bytes() == f)
                    .map_or(0, |a| a.0)
            });
        if bits != 0 {
            out.push((s, e, bits));
        }
        *area = None;
        pos += at + end + 1;
    }
}

fn query_sigaction(sig: i32, out: &mut sys::KernelSigaction) -> Result<(), crac_sys::Errno> {
    sys::query_sigaction(sig, out)
}

/// The path field of a maps line, if any.
pub fn map_path(line: &[u8]) -> Option<&[u8]> {
    // start-end perms offset dev inode path
    let mut fields = 0;
    let mut i = 0;
    while i < line.len() && fields < 5 {
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        fields += 1;
    }
    (i < line.len()).then(|| &line[i..])
}

fn file_meta(path: &[u8]) -> Option<FileMeta> {
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let md = fs::metadata(p).ok()?;
    let build_id = crate::elf::build_id(p).unwrap_or_default();
    // Files without a build-id are identified by their content.
    let content_hash = if build_id.is_empty() {
        crate::identity::content_hash(p)
    } else {
        Vec::new()
    };
    Some(FileMeta {
        id: 0,
        path: path.to_vec(),
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime_sec: md.mtime(),
        mtime_nsec: md.mtime_nsec() as u32,
        mode: md.mode(),
        build_id,
        content_hash,
    })
}

fn mm_fields() -> std::io::Result<[u64; 11]> {
    // /proc/self/stat: fields 26-28 (startcode endcode startstack), 45-51
    // (start_data end_data start_brk arg_start arg_end env_start env_end).
    let stat = fs::read_to_string("/proc/self/stat")?;
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let v: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // `rest` starts at field 3.
    let field = |n: usize| v.get(n - 3).copied().unwrap_or(0);
    let brk = sys::current_brk();
    Ok([
        field(26),
        field(27),
        field(45),
        field(46),
        field(47),
        brk,
        field(28),
        field(48),
        field(49),
        field(50),
        field(51),
    ])
}

fn cpu(f: &mut Facts) {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let v = __cpuid(0);
    let mut vendor = Vec::with_capacity(12);
    for r in [v.ebx, v.edx, v.ecx] {
        vendor.extend_from_slice(&r.to_le_bytes());
    }
    f.cpu_vendor = vendor;
    let l1 = __cpuid(1);
    let l7 = __cpuid_count(7, 0);
    let l71 = __cpuid_count(7, 1);
    let ld1 = __cpuid_count(0xd, 1);
    let ext = __cpuid(0x8000_0001);
    f.cpu_features = [
        l1.ecx, l1.edx, l7.ebx, l7.ecx, l7.edx, l71.eax, ld1.eax, ext.ecx,
    ];
    f.xcr0 = sys::xcr0();
    f.xsave_size = __cpuid_count(0xd, 0).ebx;
}

/// PFN of the shared zero page, or 0 when PFNs are hidden (no
/// CAP_SYS_ADMIN); then no page is skipped as zero.
fn zero_pfn() -> u64 {
    // Not through the allocator: its memory may be pages written before.
    crac_sys::map::zero_page_pfn().unwrap_or(0)
}

fn vdso_crc(maps: &[u8]) -> u32 {
    for line in maps.split(|&b| b == b'\n') {
        if map_path(line) == Some(b"[vdso]") {
            let s = std::str::from_utf8(line).unwrap_or("");
            let range = s.split(' ').next().unwrap_or("");
            let mut it = range.split('-');
            let (Some(a), Some(b)) = (it.next(), it.next()) else {
                return 0;
            };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                return 0;
            };
            let mut buf = vec![0u8; (b - a) as usize];
            let Ok(fd) = fs::File::open("/proc/self/mem") else {
                return 0;
            };
            use std::os::unix::fs::FileExt;
            if fd.read_exact_at(&mut buf, a).is_err() {
                return 0;
            }
            return crc32fast::hash(&buf);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    /// Advice comes out the same however the text is cut into whole lines
    /// (the reader parses it a buffer at a time).
    #[test]
    fn advice_of_smaps_text_cut_at_any_line() {
        let text: &[u8] = b"00400000-00401000 r-xp 00000000 fe:00 1 /bin/x y\n\
Size:                  4 kB\n\
VmFlags: rd ex mr mw me dc \n\
00401000-00402000 rw-p 00000000 00:00 0 \n\
Size:                  4 kB\n\
Rss:                   4 kB\n\
VmFlags: rd wr mr mw me ac hg\n\
7f0000000000-7f0000001000 ---p 00000000 00:00 0 \n\
VmFlags: mr\n";
        let want = vec![
            (0x40_0000, 0x40_1000, crac_image::VMA_DONTFORK),
            (0x40_1000, 0x40_2000, crac_image::VMA_HUGEPAGE),
        ];
        let cuts = text.iter().enumerate().filter(|(_, &b)| b == b'\n');
        for cut in std::iter::once(0).chain(cuts.map(|(i, _)| i + 1)) {
            let (mut area, mut out) = (None, Vec::new());
            super::advice_lines(&text[..cut], &mut area, &mut out);
            super::advice_lines(&text[cut..], &mut area, &mut out);
            assert_eq!(out, want, "cut at {cut}");
        }
        super::read_advice("/proc/self/smaps").unwrap();
    }

    /// The zero page's PFN stays the same once the allocator hands out
    /// reused memory for large buffers (after a large buffer was freed).
    #[test]
    fn zero_pfn_is_the_zero_page_even_after_large_frees() {
        let first = super::zero_pfn();
        for len in [8 << 20, 3 << 20] {
            let dirty = vec![0x5au8; len];
            drop(std::hint::black_box(dirty));
        }
        assert_eq!(super::zero_pfn(), first);
        // As root the PFN is visible; this machine's tests run as root.
        if rustix::process::geteuid().is_root() {
            assert_ne!(first, 0);
        }
    }
}
