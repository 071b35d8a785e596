//! Summaries of an image for `crac inspect`, and their JSON shape.
//!
//! [`ImageSummary`] is what `crac inspect --json` prints. Its shape is
//! documented field by field in `docs/image-format.md` ("JSON shape") and is
//! stable: fields are only added. Addresses and bit masks are hex strings
//! (`"0x7f00c0de0000"`), because JSON numbers lose precision above 2^53;
//! sizes and counts are numbers. Byte strings from the image (paths, names)
//! are decoded as UTF-8 with invalid sequences replaced by U+FFFD.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Image, Thread, Vma};
use crate::records::*;
use crate::{ARCH_X86_64, HEADER_LEN, PAGE_SIZE};

/// The whole summary (`crac inspect --json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// Image format version, `"major.minor"`.
    pub format_version: String,
    /// `"x86_64"` (the only architecture images are made for).
    pub arch: String,
    /// Length of `meta.crac`.
    pub meta_bytes: u64,
    /// Length of `pages.crac`, header page included.
    pub pages_file_bytes: u64,
    /// CRC-32 of the page data, as recorded in the header (`0x00000000`,
    /// unused, in images with a piece table).
    pub pages_crc32: String,
    /// The piece table (`null` in images older than format 1.3).
    pub pieces: Option<PiecesView>,
    /// How the page data is compressed (`null`: stored as it is).
    pub compression: Option<CompressionView>,
    /// Process-wide facts.
    pub process: ProcessView,
    /// CPU facts.
    pub cpu: CpuView,
    /// Totals over all mappings.
    pub memory: MemoryView,
    /// Mappings, in address order.
    pub vmas: Vec<VmaView>,
    /// Threads, in image order.
    pub threads: Vec<ThreadView>,
    /// Files the image depends on.
    pub files: Vec<FileView>,
    /// File descriptors the engine carries across.
    pub fds: Vec<FdView>,
    /// The vvar/vdso block.
    pub vdso: VdsoView,
    /// Resource limits, in `RLIMIT_*` order.
    pub rlimits: Vec<RlimitView>,
    /// Signals whose disposition is not the default.
    pub signals: Vec<SignalView>,
    /// Interval timers and pending signals.
    pub timers: TimersView,
    /// Sections skipped because this build does not know their tag.
    pub unknown_sections: Vec<UnknownSectionView>,
    /// Who the restored process runs as (`null`: the image has no creds
    /// section and cannot be restored).
    pub creds: Option<crate::creds::CredsView>,
}

/// `pieces` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct PiecesView {
    /// Bytes of page data per piece.
    pub piece_bytes: u64,
    /// Number of pieces (hashes).
    pub count: u64,
    /// The hash function, `"xxh3-64"`.
    pub hash: String,
}

/// `compression` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct CompressionView {
    /// The compression the dump used, `"lz4"` or `"zstd"`.
    pub method: String,
    /// Bytes of page data, uncompressed.
    pub data_bytes: u64,
    /// Bytes the pieces take in `pages.crac`.
    pub stored_bytes: u64,
    /// Pieces stored compressed.
    pub compressed_pieces: u64,
    /// Pieces stored raw (compression did not shrink them).
    pub raw_pieces: u64,
}

/// `process` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Octal, e.g. `"0022"`.
    pub umask: String,
    pub personality: String,
    pub comm: String,
    pub exe: String,
    pub cwd: String,
    pub argv: Vec<String>,
    pub dumping_tid: u32,
    pub kernel_release: String,
    pub boot_id: String,
    pub hostname: String,
    /// CLOCK_REALTIME at dump, ns since the Unix epoch.
    pub realtime_ns: u64,
    /// CLOCK_MONOTONIC at dump.
    pub monotonic_ns: u64,
    /// CLOCK_BOOTTIME at dump.
    pub boottime_ns: u64,
}

/// `cpu` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct CpuView {
    /// CPUID vendor string.
    pub vendor: String,
    /// XCR0, hex.
    pub xcr0: String,
    /// xsave area size in bytes.
    pub xsave_size: u32,
    /// Feature words by name ([`CPU_FEATURE_WORDS`]), hex.
    pub features: BTreeMap<String, String>,
}

/// `memory` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct MemoryView {
    /// Number of mappings.
    pub vmas: usize,
    /// Sum of the mapping lengths.
    pub mapped_bytes: u64,
    /// Number of page runs.
    pub runs: usize,
    /// Bytes that were in memory at dump time (stored or mapped again from
    /// their file).
    pub populated_bytes: u64,
    /// Pages stored in `pages.crac`.
    pub stored_pages: u64,
    /// Bytes stored in `pages.crac` (`stored_pages * 4096`).
    pub stored_bytes: u64,
}

/// One entry of `vmas` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct VmaView {
    /// Start address, hex.
    pub start: String,
    /// End address (exclusive), hex.
    pub end: String,
    /// Length in bytes.
    pub bytes: u64,
    /// `/proc/pid/maps` style: `r`, `w`, `x` or `-`, then `s` (shared) or
    /// `p` (private).
    pub perms: String,
    /// Names of the `VMA_*` bits set: `shared`, `file`, `growsdown`, `heap`,
    /// `stack`, `vdso`, `vsyscall`, `deleted`; unknown bits as hex.
    pub flags: Vec<String>,
    /// File id (`files[].id`), or null for anonymous memory.
    pub file: Option<u32>,
    /// File offset of `start` in bytes.
    pub offset: u64,
    /// Name as `/proc/pid/maps` shows it.
    pub name: String,
    /// Bytes of this mapping that were in memory at dump time.
    pub populated_bytes: u64,
    /// Pages of this mapping stored in `pages.crac`.
    pub stored_pages: u64,
    /// `stored_pages * 4096`.
    pub stored_bytes: u64,
}

/// One entry of `threads` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct ThreadView {
    /// Thread id.
    pub tid: u32,
    /// Thread name.
    pub name: String,
    /// Whether this thread ran the dump.
    pub dumper: bool,
    /// Blocked signals, hex.
    pub sigmask: String,
    /// CPUs in the affinity mask.
    pub cpus: Vec<u32>,
    /// FS base (TLS pointer), hex.
    pub fs_base: String,
    /// rseq area, hex, or null if none.
    pub rseq: Option<String>,
    /// Alternate signal stack, or null if none.
    pub altstack: Option<AltstackView>,
}

/// `altstack` of a [`ThreadView`].
#[derive(Debug, Clone, Serialize)]
pub struct AltstackView {
    /// Base address, hex.
    pub base: String,
    /// Size in bytes.
    pub size: u64,
    /// `ss_flags`.
    pub flags: u32,
}

/// One entry of `files` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// Id referenced by `vmas[].file`.
    pub id: u32,
    /// Absolute path.
    pub path: String,
    /// Size in bytes at dump.
    pub size: u64,
    /// `st_mode`, octal, e.g. `"100755"`.
    pub mode: String,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_mtime` seconds.
    pub mtime_sec: i64,
    /// `st_mtime` nanoseconds.
    pub mtime_nsec: u32,
    /// ELF build id, lowercase hex, or null if none.
    pub build_id: Option<String>,
    /// Number of mappings of this file.
    pub vmas: usize,
}

/// One entry of `fds` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct FdView {
    /// Descriptor number.
    pub fd: u32,
    /// `"pipe"`, `"eventfd"`, `"timerfd"`, `"signalfd"`, `"epoll"`,
    /// `"memfd"`, `"file"`, `"socketpair"`, `"listening socket"`, `"closed
    /// by policy"`, `"inherited"`, `"ignored by policy"`, or `"unknown-N"`
    /// for a kind this build does not know.
    pub kind: String,
    /// Open flags, octal as `/proc/pid/fdinfo` shows them.
    pub flags: String,
    /// Kind-specific identity (a pipe's inode).
    pub id: u64,
    /// Bytes buffered at dump.
    pub buffered: u64,
    /// Kind-specific numbers (see the image format document).
    pub values: [u64; 4],
    /// Kind-specific text: a path, an address, a name.
    pub name: String,
    /// Kind-specific state in words, e.g. `counter 3, semaphore` or an
    /// epoll interest list.
    pub state: String,
}

/// `vdso` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct VdsoView {
    /// `[vvar]`, or null if absent.
    pub vvar: Option<RangeView>,
    /// `[vvar_vclock]`, or null if absent.
    pub vvar_vclock: Option<RangeView>,
    /// `[vdso]`, or null if absent.
    pub vdso: Option<RangeView>,
    /// CRC-32 of the vdso text, hex.
    pub vdso_crc32: String,
}

/// An address range.
#[derive(Debug, Clone, Serialize)]
pub struct RangeView {
    /// Start address, hex.
    pub start: String,
    /// Length in bytes.
    pub bytes: u64,
}

/// One entry of `rlimits` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct RlimitView {
    /// `RLIMIT_*` name.
    pub name: String,
    /// Soft limit, or null for unlimited.
    pub soft: Option<u64>,
    /// Hard limit, or null for unlimited.
    pub hard: Option<u64>,
}

/// One entry of `signals` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct SignalView {
    /// Signal number, 1..=64.
    pub signal: u32,
    /// `"ignore"`, or the handler address in hex.
    pub handler: String,
    /// `SA_*` flags, hex.
    pub flags: String,
    /// Signals blocked in the handler, hex.
    pub mask: String,
}

/// `timers` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct TimersView {
    /// Armed interval timers only.
    pub itimers: Vec<ItimerView>,
    /// Number of POSIX timers.
    pub posix_timers: u32,
    /// Process-wide pending signals, hex.
    pub shared_pending: String,
}

/// One armed interval timer.
#[derive(Debug, Clone, Serialize)]
pub struct ItimerView {
    /// `"real"`, `"virtual"` or `"prof"`.
    pub which: String,
    /// Interval in ns.
    pub interval_ns: u64,
    /// Time to the next expiry in ns.
    pub value_ns: u64,
}

/// One entry of `unknown_sections` in [`ImageSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct UnknownSectionView {
    /// Section tag.
    pub tag: u32,
    /// Payload length in bytes.
    pub bytes: u32,
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn range(r: (u64, u64)) -> Option<RangeView> {
    (r.1 != 0).then(|| RangeView {
        start: hex(r.0),
        bytes: r.1,
    })
}

fn limit(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

/// CPU numbers set in an affinity mask (little-endian bit order).
fn cpus(mask: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for (i, &b) in (0u32..).zip(mask) {
        for bit in 0..8 {
            if b & (1 << bit) != 0 {
                out.push(i.saturating_mul(8).saturating_add(bit));
            }
        }
    }
    out
}

const VMA_FLAG_NAMES: [(u32, &str); 8] = [
    (VMA_SHARED, "shared"),
    (VMA_FILE, "file"),
    (VMA_GROWSDOWN, "growsdown"),
    (VMA_HEAP, "heap"),
    (VMA_STACK, "stack"),
    (VMA_VDSO, "vdso"),
    (VMA_VSYSCALL, "vsyscall"),
    (VMA_DELETED, "deleted"),
];

fn vma_flags(flags: u32) -> Vec<String> {
    let advice = VMA_ADVICE.iter().map(|(bit, name, _)| (*bit, *name));
    let names = VMA_FLAG_NAMES.iter().copied().chain(advice);
    let mut out: Vec<String> = names
        .clone()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| n.to_owned())
        .collect();
    let known = names.fold(0, |a, (b, _)| a | b);
    if flags & !known != 0 {
        out.push(format!("{:#x}", flags & !known));
    }
    out
}

fn perms(v: &Vma) -> String {
    let bit = |b: u32, c: char| if v.prot & b != 0 { c } else { '-' };
    let share = if v.flags & VMA_SHARED != 0 { 's' } else { 'p' };
    [
        bit(PROT_READ, 'r'),
        bit(PROT_WRITE, 'w'),
        bit(PROT_EXEC, 'x'),
        share,
    ]
    .iter()
    .collect()
}

fn thread_view(t: &Thread) -> ThreadView {
    ThreadView {
        tid: t.tid,
        name: text(&t.name),
        dumper: t.is_dumper(),
        sigmask: hex(t.sigmask),
        cpus: cpus(&t.affinity),
        fs_base: hex(t.fs_base),
        rseq: (t.rseq_addr != 0).then(|| hex(t.rseq_addr)),
        altstack: (t.altstack.1 != 0).then(|| AltstackView {
            base: hex(t.altstack.0),
            size: t.altstack.1,
            flags: t.altstack.2,
        }),
    }
}

impl Image {
    /// The summary `crac inspect` prints.
    pub fn summary(&self) -> ImageSummary {
        let per_vma = self.stored_pages_per_vma();
        let vmas = self
            .vmas
            .iter()
            .zip(&per_vma)
            .map(|(v, &stored)| VmaView {
                start: hex(v.start),
                end: hex(v.end),
                bytes: v.len(),
                perms: perms(v),
                flags: vma_flags(v.flags),
                file: (v.file != NO_FILE).then_some(v.file),
                offset: v.pgoff,
                name: text(&v.name),
                populated_bytes: v.populated.saturating_mul(PAGE_SIZE),
                stored_pages: stored,
                stored_bytes: stored.saturating_mul(PAGE_SIZE),
            })
            .collect();
        let files = self
            .files
            .iter()
            .map(|f| FileView {
                id: f.id,
                path: text(&f.path),
                size: f.size,
                mode: format!("{:o}", f.mode),
                dev: f.dev,
                ino: f.ino,
                mtime_sec: f.mtime_sec,
                mtime_nsec: f.mtime_nsec,
                build_id: (!f.build_id.is_empty())
                    .then(|| f.build_id.iter().map(|b| format!("{b:02x}")).collect()),
                vmas: self.vmas.iter().filter(|v| v.file == f.id).count(),
            })
            .collect();
        let signals = (1u32..)
            .zip(&self.sigactions)
            .filter(|(_, a)| a.handler != 0)
            .map(|(signal, a)| SignalView {
                signal,
                handler: if a.handler == 1 {
                    "ignore".to_owned()
                } else {
                    hex(a.handler)
                },
                flags: hex(a.flags),
                mask: hex(a.mask),
            })
            .collect();
        let itimers = ["real", "virtual", "prof"]
            .iter()
            .zip(self.timers.itimers)
            .filter(|(_, (i, v))| *i != 0 || *v != 0)
            .map(|(which, (interval_ns, value_ns))| ItimerView {
                which: (*which).to_owned(),
                interval_ns,
                value_ns,
            })
            .collect();
        let p = &self.process;
        ImageSummary {
            format_version: format!("{}.{}", self.header.major, self.header.minor),
            arch: if self.header.arch == ARCH_X86_64 {
                "x86_64".to_owned()
            } else {
                format!("elf-machine-{}", self.header.arch)
            },
            meta_bytes: self.header.body_len.saturating_add(HEADER_LEN as u64),
            pages_file_bytes: self.header.pages_len,
            pages_crc32: format!("{:#010x}", self.header.pages_crc),
            pieces: self.pieces.as_ref().map(|p| PiecesView {
                piece_bytes: crate::PIECE_LEN,
                count: p.len() as u64,
                hash: "xxh3-64".to_owned(),
            }),
            compression: self.stored.as_ref().map(|st| {
                let raw = st
                    .pieces
                    .iter()
                    .filter(|p| p.method == crate::STORED_RAW)
                    .count() as u64;
                CompressionView {
                    method: crate::method_name(st.compression).to_owned(),
                    data_bytes: st.data_len,
                    stored_bytes: st.stored_bytes(),
                    compressed_pieces: st.pieces.len() as u64 - raw,
                    raw_pieces: raw,
                }
            }),
            process: ProcessView {
                pid: p.pid,
                ppid: p.ppid,
                uid: p.uid,
                gid: p.gid,
                umask: format!("{:04o}", p.umask),
                personality: hex(u64::from(p.personality)),
                comm: text(&p.comm),
                exe: text(&p.exe),
                cwd: text(&p.cwd),
                argv: self.argv.args().map(text).collect(),
                dumping_tid: p.dumping_tid,
                kernel_release: text(&p.kernel_release),
                boot_id: text(p.boot_id.trim_ascii()),
                hostname: text(&p.hostname),
                realtime_ns: p.realtime_ns,
                monotonic_ns: p.monotonic_ns,
                boottime_ns: p.boottime_ns,
            },
            cpu: CpuView {
                vendor: text(&self.cpu.vendor),
                xcr0: hex(self.cpu.xcr0),
                xsave_size: self.cpu.xsave_size,
                features: CPU_FEATURE_WORDS
                    .iter()
                    .zip(self.cpu.features)
                    .map(|(n, w)| ((*n).to_owned(), hex(u64::from(w))))
                    .collect(),
            },
            memory: MemoryView {
                vmas: self.vmas.len(),
                mapped_bytes: self.mapped_bytes(),
                runs: self.runs.len(),
                populated_bytes: self
                    .vmas
                    .iter()
                    .map(|v| v.populated.saturating_mul(PAGE_SIZE))
                    .fold(0u64, u64::saturating_add),
                stored_pages: self.stored_pages(),
                stored_bytes: self.stored_bytes(),
            },
            vmas,
            threads: self.threads.iter().map(thread_view).collect(),
            files,
            fds: self
                .fds
                .iter()
                .map(|f| FdView {
                    fd: f.fd,
                    kind: fd_kind_name(f.kind)
                        .map_or_else(|| format!("unknown-{}", f.kind), str::to_owned),
                    flags: format!("{:o}", f.flags),
                    id: f.id,
                    buffered: f.buffered,
                    values: f.values,
                    name: String::from_utf8_lossy(&f.name).into_owned(),
                    state: fd_state(f),
                })
                .collect(),
            vdso: VdsoView {
                vvar: range(self.vdso.vvar),
                vvar_vclock: range(self.vdso.vvar_vclock),
                vdso: range(self.vdso.vdso),
                vdso_crc32: format!("{:#010x}", self.vdso.vdso_crc),
            },
            rlimits: RLIMIT_NAMES
                .iter()
                .zip(&self.rlimits)
                .map(|(n, l)| RlimitView {
                    name: (*n).to_owned(),
                    soft: limit(l.cur),
                    hard: limit(l.max),
                })
                .collect(),
            signals,
            timers: TimersView {
                itimers,
                posix_timers: self.timers.posix_timers,
                shared_pending: hex(self.timers.shared_pending),
            },
            unknown_sections: self
                .unknown_sections
                .iter()
                .map(|s| UnknownSectionView {
                    tag: s.tag,
                    bytes: s.len,
                })
                .collect(),
            creds: self.creds.as_ref().map(Into::into),
        }
    }
}

impl ImageSummary {
    /// Pretty-printed JSON, as `crac inspect --json` prints it.
    pub fn to_json_pretty(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

/// A carried descriptor's state in words, for `crac inspect`.
fn fd_state(f: &crate::model::Fd) -> String {
    let v = f.values;
    let ms = |ns: u64| format!("{:.3} ms", ns as f64 / 1e6);
    match f.kind {
        FD_PIPE | FD_SOCKETPAIR => format!("{} bytes buffered", f.buffered),
        FD_EVENTFD => format!(
            "counter {}{}",
            v[0],
            if v[1] != 0 { ", semaphore" } else { "" }
        ),
        FD_TIMERFD if v[2] == 0 => format!(
            "clock {}, disarmed, {} expirations unread",
            v[0] as u32, v[3]
        ),
        FD_TIMERFD => format!(
            "clock {}{}, next in {}, interval {}, {} expirations unread",
            v[0] as u32,
            if (v[0] >> 32) & 1 != 0 {
                ", absolute"
            } else {
                ""
            },
            ms(v[2]),
            ms(v[1]),
            v[3]
        ),
        FD_SIGNALFD => format!("mask {:#x}", v[0]),
        FD_EPOLL => {
            let r = f.as_record();
            let list: Vec<String> = r
                .epoll_entries()
                .map(|(fd, ev, data)| format!("fd {fd} events {ev:#x} data {data:#x}"))
                .collect();
            format!("{} targets: {}", list.len(), list.join("; "))
        }
        FD_MEMFD => format!("{} bytes, seals {:#x}, offset {}", v[0], v[1], v[2]),
        FD_FILE => format!(
            "offset {}, size {}{}",
            v[0],
            v[1],
            if f.as_record().file_options() & FILE_REOPEN != 0 {
                ", reopened whatever changed"
            } else {
                ""
            }
        ),
        FD_LISTEN => format!("backlog {}, options {:#x}", v[2], v[3]),
        _ => String::new(),
    }
}
