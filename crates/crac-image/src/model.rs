//! An owned model of a whole image, for tools (`crac inspect`, tests).
//!
//! [`Image::read`] validates an image directory in two stages before it
//! returns anything:
//!
//! 1. the bytes: `meta.crac` is read with a size bound ([`MAX_META_LEN`]),
//!    then its [`Header`] (magic, own checksum, version, architecture), the
//!    body length and the body CRC-32 are checked, every section is decoded
//!    ([`Image::decode_body`]) and the `pages.crac` header page and length are
//!    checked against the header;
//! 2. the meaning: [`Image::sanity_check`] (threads, mappings, page runs,
//!    file references).
//!
//! The page data itself is only checked on request ([`Image::verify_pages`]:
//! every piece of the piece table, which reads the whole page file); a
//! restore checks each piece as it loads it.

use std::io;
use std::path::{Path, PathBuf};

use crate::pieces::{
    check_stored, method_name, piece_count, piece_hash, piece_range, PieceCountError, PieceTable,
    StoredError, StoredPiece, StoredPieces, PIECE_LEN,
};
use crate::records::*;
use crate::wire::{DecodeError, Reader, Writer};
use crate::{
    Header, HeaderError, ARCH_X86_64, COMPRESSION_MINOR, FORMAT_VERSION, PAGES_FILE,
    PAGES_HEADER_LEN, PAGE_SIZE, PIECES_MINOR,
};

/// Largest `meta.crac` [`Image::read`] accepts, header included.
///
/// The restorer maps the metadata into its 256 MiB zone
/// ([`crate::RESTORER_ZONE_LEN`]), so a real image stays far below this.
pub const MAX_META_LEN: u64 = 64 << 20;

/// Process-wide facts, owned ([`ProcessRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
    pub personality: u32,
    pub dumping_tid: u32,
    pub realtime_ns: u64,
    pub monotonic_ns: u64,
    pub boottime_ns: u64,
    pub resume_entry: u64,
    pub restore_info_addr: u64,
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    pub comm: Vec<u8>,
    pub kernel_release: Vec<u8>,
    pub boot_id: Vec<u8>,
    pub hostname: Vec<u8>,
}

impl From<&ProcessRecord<'_>> for Process {
    fn from(r: &ProcessRecord<'_>) -> Self {
        Process {
            pid: r.pid,
            ppid: r.ppid,
            uid: r.uid,
            gid: r.gid,
            umask: r.umask,
            personality: r.personality,
            dumping_tid: r.dumping_tid,
            realtime_ns: r.realtime_ns,
            monotonic_ns: r.monotonic_ns,
            boottime_ns: r.boottime_ns,
            resume_entry: r.resume_entry,
            restore_info_addr: r.restore_info_addr,
            exe: r.exe.to_vec(),
            cwd: r.cwd.to_vec(),
            comm: r.comm.to_vec(),
            kernel_release: r.kernel_release.to_vec(),
            boot_id: r.boot_id.to_vec(),
            hostname: r.hostname.to_vec(),
        }
    }
}

impl Process {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> ProcessRecord<'_> {
        ProcessRecord {
            pid: self.pid,
            ppid: self.ppid,
            uid: self.uid,
            gid: self.gid,
            umask: self.umask,
            personality: self.personality,
            dumping_tid: self.dumping_tid,
            realtime_ns: self.realtime_ns,
            monotonic_ns: self.monotonic_ns,
            boottime_ns: self.boottime_ns,
            resume_entry: self.resume_entry,
            restore_info_addr: self.restore_info_addr,
            exe: &self.exe,
            cwd: &self.cwd,
            comm: &self.comm,
            kernel_release: &self.kernel_release,
            boot_id: &self.boot_id,
            hostname: &self.hostname,
        }
    }
}

/// The command line, owned ([`ArgvRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Argv {
    /// NUL-separated arguments, `argv[0]` first.
    pub cmdline: Vec<u8>,
}

impl Argv {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> ArgvRecord<'_> {
        ArgvRecord {
            cmdline: &self.cmdline,
        }
    }
    /// The arguments.
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        self.as_record().args()
    }
}

/// CPU facts, owned ([`CpuRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cpu {
    pub vendor: Vec<u8>,
    pub xcr0: u64,
    pub xsave_size: u32,
    /// Words named by [`CPU_FEATURE_WORDS`].
    pub features: [u32; 8],
}

impl From<&CpuRecord<'_>> for Cpu {
    fn from(r: &CpuRecord<'_>) -> Self {
        Cpu {
            vendor: r.vendor.to_vec(),
            xcr0: r.xcr0,
            xsave_size: r.xsave_size,
            features: r.features,
        }
    }
}

impl Cpu {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> CpuRecord<'_> {
        CpuRecord {
            vendor: &self.vendor,
            xcr0: self.xcr0,
            xsave_size: self.xsave_size,
            features: self.features,
        }
    }
}

/// The mm fields and auxiliary vector, owned ([`MmRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mm {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: Vec<u8>,
}

impl From<&MmRecord<'_>> for Mm {
    fn from(r: &MmRecord<'_>) -> Self {
        Mm {
            start_code: r.start_code,
            end_code: r.end_code,
            start_data: r.start_data,
            end_data: r.end_data,
            start_brk: r.start_brk,
            brk: r.brk,
            start_stack: r.start_stack,
            arg_start: r.arg_start,
            arg_end: r.arg_end,
            env_start: r.env_start,
            env_end: r.env_end,
            auxv: r.auxv.to_vec(),
        }
    }
}

impl Mm {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> MmRecord<'_> {
        MmRecord {
            start_code: self.start_code,
            end_code: self.end_code,
            start_data: self.start_data,
            end_data: self.end_data,
            start_brk: self.start_brk,
            brk: self.brk,
            start_stack: self.start_stack,
            arg_start: self.arg_start,
            arg_end: self.arg_end,
            env_start: self.env_start,
            env_end: self.env_end,
            auxv: &self.auxv,
        }
    }
}

/// A file the image depends on, owned ([`FileRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileRef {
    pub id: u32,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub mode: u32,
    pub build_id: Vec<u8>,
    pub path: Vec<u8>,
    pub content_hash: Vec<u8>,
}

impl From<&FileRecord<'_>> for FileRef {
    fn from(r: &FileRecord<'_>) -> Self {
        FileRef {
            id: r.id,
            dev: r.dev,
            ino: r.ino,
            size: r.size,
            mtime_sec: r.mtime_sec,
            mtime_nsec: r.mtime_nsec,
            mode: r.mode,
            build_id: r.build_id.to_vec(),
            path: r.path.to_vec(),
            content_hash: r.content_hash.to_vec(),
        }
    }
}

impl FileRef {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> FileRecord<'_> {
        FileRecord {
            id: self.id,
            dev: self.dev,
            ino: self.ino,
            size: self.size,
            mtime_sec: self.mtime_sec,
            mtime_nsec: self.mtime_nsec,
            mode: self.mode,
            build_id: &self.build_id,
            path: &self.path,
            content_hash: &self.content_hash,
        }
    }
}

/// One mapping, owned ([`VmaRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `VMA_*` bits.
    pub flags: u32,
    /// [`FileRef::id`] or [`NO_FILE`].
    pub file: u32,
    pub name: Vec<u8>,
    /// Pages in memory at dump time.
    pub populated: u64,
}

impl From<&VmaRecord<'_>> for Vma {
    fn from(r: &VmaRecord<'_>) -> Self {
        Vma {
            start: r.start,
            end: r.end,
            pgoff: r.pgoff,
            prot: r.prot,
            flags: r.flags,
            file: r.file,
            name: r.name.to_vec(),
            populated: r.populated,
        }
    }
}

impl Vma {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> VmaRecord<'_> {
        VmaRecord {
            start: self.start,
            end: self.end,
            pgoff: self.pgoff,
            prot: self.prot,
            flags: self.flags,
            file: self.file,
            name: &self.name,
            populated: self.populated,
        }
    }
    /// Length in bytes (0 if the bounds are inverted).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// Whether the mapping is empty (never, once decoded).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// One thread, owned ([`ThreadRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thread {
    pub tid: u32,
    /// `THREAD_*` bits.
    pub flags: u32,
    pub ctx_addr: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub clear_tid: u64,
    pub robust_head: u64,
    pub robust_len: u64,
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    pub sigmask: u64,
    /// Base, size, flags.
    pub altstack: (u64, u64, u32),
    pub affinity: Vec<u8>,
    pub name: Vec<u8>,
}

impl From<&ThreadRecord<'_>> for Thread {
    fn from(r: &ThreadRecord<'_>) -> Self {
        Thread {
            tid: r.tid,
            flags: r.flags,
            ctx_addr: r.ctx_addr,
            fs_base: r.fs_base,
            gs_base: r.gs_base,
            clear_tid: r.clear_tid,
            robust_head: r.robust_head,
            robust_len: r.robust_len,
            rseq_addr: r.rseq_addr,
            rseq_len: r.rseq_len,
            rseq_sig: r.rseq_sig,
            sigmask: r.sigmask,
            altstack: r.altstack,
            affinity: r.affinity.to_vec(),
            name: r.name.to_vec(),
        }
    }
}

/// One carried file descriptor, owned ([`FdRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fd {
    pub fd: u32,
    /// `FD_*` kind.
    pub kind: u32,
    pub flags: u32,
    pub id: u64,
    pub buffered: u64,
    pub values: [u64; 4],
    pub name: Vec<u8>,
    pub extra: Vec<u8>,
}

impl From<&FdRecord<'_>> for Fd {
    fn from(r: &FdRecord<'_>) -> Self {
        Fd {
            fd: r.fd,
            kind: r.kind,
            flags: r.flags,
            id: r.id,
            buffered: r.buffered,
            values: r.values,
            name: r.name.to_vec(),
            extra: r.extra.to_vec(),
        }
    }
}

impl Fd {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> FdRecord<'_> {
        FdRecord {
            fd: self.fd,
            kind: self.kind,
            flags: self.flags,
            id: self.id,
            buffered: self.buffered,
            values: self.values,
            name: &self.name,
            extra: &self.extra,
        }
    }
}

impl Thread {
    /// The borrowed record, for encoding.
    pub fn as_record(&self) -> ThreadRecord<'_> {
        ThreadRecord {
            tid: self.tid,
            flags: self.flags,
            ctx_addr: self.ctx_addr,
            fs_base: self.fs_base,
            gs_base: self.gs_base,
            clear_tid: self.clear_tid,
            robust_head: self.robust_head,
            robust_len: self.robust_len,
            rseq_addr: self.rseq_addr,
            rseq_len: self.rseq_len,
            rseq_sig: self.rseq_sig,
            sigmask: self.sigmask,
            altstack: self.altstack,
            affinity: &self.affinity,
            name: &self.name,
        }
    }
    /// Whether this thread ran the dump.
    pub fn is_dumper(&self) -> bool {
        self.flags & THREAD_DUMPER != 0
    }
}

/// A section whose tag this build does not know; skipped on read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownSection {
    /// Section tag.
    pub tag: u32,
    /// Payload length in bytes.
    pub len: u32,
}

/// A whole image, owned: every record of `meta.crac` plus its header.
///
/// The page data stays in `pages.crac`; [`Image::runs`] says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The `meta.crac` header as read (version, lengths, checksums).
    pub header: Header,
    /// Process-wide facts.
    pub process: Process,
    /// Command line.
    pub argv: Argv,
    /// CPU facts.
    pub cpu: Cpu,
    /// mm fields and auxv.
    pub mm: Mm,
    /// Where the vvar/vdso block was.
    pub vdso: VdsoRecord,
    /// Files the image depends on, in section order.
    pub files: Vec<FileRef>,
    /// Mappings, in address order.
    pub vmas: Vec<Vma>,
    /// Stored page runs, in address order.
    pub runs: Vec<PageRun>,
    /// Threads, in section order.
    pub threads: Vec<Thread>,
    /// Dispositions of signals 1..=64.
    pub sigactions: [SigactionRecord; 64],
    /// Resource limits in `RLIMIT_*` order.
    pub rlimits: [RlimitRecord; 16],
    /// Interval timers and pending signals.
    pub timers: TimersRecord,
    /// File descriptors the engine carries across (besides stdio).
    pub fds: Vec<Fd>,
    /// Who the process runs as (`None`: an image without a creds section,
    /// which restore refuses).
    pub creds: Option<crate::creds::Creds>,
    /// The piece table: the hash of every [`PIECE_LEN`] bytes of page data
    /// (`None` only in images older than format 1.3, whose header CRC
    /// covers the page data instead). [`Image::write`] computes it.
    pub pieces: Option<Vec<u64>>,
    /// How the page data is stored when it is compressed (format 1.4 on;
    /// `None`: stored as it is). Run offsets and the piece table then refer
    /// to the uncompressed page data ([`Image::logical_pages_len`]).
    pub stored: Option<Stored>,
    /// Sections skipped because their tag is unknown (newer minor).
    pub unknown_sections: Vec<UnknownSection>,
}

/// The stored-pieces table of a compressed image (see [`StoredPieces`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The compression the dump used ([`crate::STORED_LZ4`] or
    /// [`crate::STORED_ZSTD`]).
    pub compression: u32,
    /// Bytes of uncompressed page data.
    pub data_len: u64,
    /// Where and how each piece is stored, in piece order.
    pub pieces: Vec<StoredPiece>,
}

impl Stored {
    /// Bytes the pieces take in `pages.crac`.
    pub fn stored_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| u64::from(p.len)).sum()
    }
}

/// Name of a section tag, for messages.
pub fn tag_name(tag: u32) -> &'static str {
    match Tag::from_u32(tag) {
        Some(Tag::Process) => "process",
        Some(Tag::Argv) => "argv",
        Some(Tag::Cpu) => "cpu",
        Some(Tag::Mm) => "mm",
        Some(Tag::Vdso) => "vdso",
        Some(Tag::File) => "file",
        Some(Tag::Vma) => "vma",
        Some(Tag::Runs) => "runs",
        Some(Tag::Thread) => "thread",
        Some(Tag::Sigactions) => "sigactions",
        Some(Tag::Rlimits) => "rlimits",
        Some(Tag::Timers) => "timers",
        Some(Tag::Fd) => "fd",
        Some(Tag::Creds) => "creds",
        Some(Tag::Pieces) => "pieces",
        Some(Tag::Stored) => "stored pieces",
        None => "unknown",
    }
}

/// Why a metadata body could not be decoded ([`Image::decode_body`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeBodyError {
    /// The section framing is broken.
    #[error("the section list is malformed")]
    Framing(#[source] DecodeError),
    /// A section's payload is malformed.
    #[error("section {tag} ({}) at body offset {offset} is malformed", tag_name(*tag))]
    Section {
        /// Section tag.
        tag: u32,
        /// Offset of the section header in the body.
        offset: usize,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// A section that must appear once appears again.
    #[error("section {tag} ({}) appears more than once (again at body offset {offset})", tag_name(*tag))]
    Duplicate {
        /// Section tag.
        tag: u32,
        /// Offset of the second occurrence.
        offset: usize,
    },
    /// A mandatory section is missing.
    #[error("mandatory section {tag} ({}) is missing", tag_name(*tag))]
    Missing {
        /// Section tag.
        tag: u32,
    },
}

/// Why a decoded image is inconsistent ([`Image::sanity_check`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SanityError {
    /// No thread records.
    #[error("the image has no threads")]
    NoThreads,
    /// Not exactly one thread is flagged as the dumper.
    #[error("{count} threads are flagged as the dumping thread, expected exactly 1")]
    DumperCount {
        /// Threads with `THREAD_DUMPER`.
        count: usize,
    },
    /// The dumper flag and the process record disagree.
    #[error("the dumping thread is {flagged} but the process record says {recorded}")]
    DumperMismatch {
        /// TID of the thread flagged `THREAD_DUMPER`.
        flagged: u32,
        /// [`Process::dumping_tid`].
        recorded: u32,
    },
    /// Two thread records have the same TID.
    #[error("thread {tid} appears twice")]
    DuplicateThread {
        /// The TID.
        tid: u32,
    },
    /// No mapping records.
    #[error("the image has no mappings")]
    NoMappings,
    /// A mapping starts before the previous one ends.
    #[error(
        "mapping {start:#x}-{end:#x} starts before the previous mapping ends at {prev_end:#x} \
         (mappings must be sorted and disjoint)"
    )]
    VmaOrder {
        /// Start of the offending mapping.
        start: u64,
        /// End of the offending mapping.
        end: u64,
        /// End of the previous mapping.
        prev_end: u64,
    },
    /// A mapping refers to a file id with no file record.
    #[error("mapping {start:#x}-{end:#x} refers to file {file}, which has no file record")]
    MissingFile {
        /// Start of the mapping.
        start: u64,
        /// End of the mapping.
        end: u64,
        /// The missing id.
        file: u32,
    },
    /// Two file records have the same id.
    #[error("file id {id} appears twice")]
    DuplicateFile {
        /// The id.
        id: u32,
    },
    /// Two fd records have the same descriptor number.
    #[error("file descriptor {fd} appears twice")]
    DuplicateFd {
        /// The descriptor number.
        fd: u32,
    },
    /// A page run starts before the previous one ends.
    #[error(
        "page run at {addr:#x} starts before the previous run ends at {prev_end:#x} \
         (runs must be sorted and disjoint)"
    )]
    RunOrder {
        /// Address of the offending run.
        addr: u64,
        /// End of the previous run.
        prev_end: u64,
    },
    /// Part of a page run lies outside every mapping.
    #[error("page run at {addr:#x} ({pages} pages) is not inside the mappings")]
    RunOutsideVmas {
        /// Address of the run.
        addr: u64,
        /// Length of the run in pages.
        pages: u64,
    },
    /// An image of format 1.3 or later without a piece table.
    #[error("the image (format {major}.{minor}) has no piece table")]
    NoPieceTable {
        /// Format major version.
        major: u16,
        /// Format minor version.
        minor: u16,
    },
    /// The piece table does not fit the page file's length.
    #[error("{0}")]
    PieceCount(PieceCountError),
    /// A stored-pieces table in an image of a format before 1.4 or without
    /// a piece table.
    #[error("the image (format {major}.{minor}) has a stored-pieces table it cannot have")]
    UnexpectedStored {
        /// Format major version.
        major: u16,
        /// Format minor version.
        minor: u16,
    },
    /// The stored-pieces table does not fit the image.
    #[error("{0}")]
    Stored(StoredError),
    /// A page run's data lies outside the page file.
    #[error(
        "page run at {addr:#x} ({pages} pages) has its data at offset {offset:#x}, outside \
         the page data of the {pages_len}-byte page file"
    )]
    RunOutsidePageFile {
        /// Address of the run.
        addr: u64,
        /// Length of the run in pages.
        pages: u64,
        /// Offset of the run's data.
        offset: u64,
        /// Length of the page file from the header.
        pages_len: u64,
    },
}

/// Why [`Image::read`] refused an image directory.
#[derive(Debug, thiserror::Error)]
pub enum ImageReadError {
    /// A file could not be opened, inspected or read.
    #[error("cannot {step} {}", path.display())]
    Io {
        /// What was being done: "open", "read", "stat".
        step: &'static str,
        /// The file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// An image file is not a regular file (a symbolic link, a FIFO, a
    /// device, ...): refused before anything is read.
    #[error("image file {} is {what}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is ("a symbolic link", "a FIFO", ...).
        what: &'static str,
    },
    /// `meta.crac` has an unusable header.
    #[error("image {} has an unusable header", path.display())]
    Header {
        /// The metadata file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: HeaderError,
    },
    /// The header announces a body larger than [`MAX_META_LEN`].
    #[error(
        "image {} announces a {body_len}-byte body, more than the {limit}-byte limit",
        path.display()
    )]
    TooLarge {
        /// The metadata file.
        path: PathBuf,
        /// Body length from the header.
        body_len: u64,
        /// The limit.
        limit: u64,
    },
    /// `meta.crac` is larger than [`MAX_META_LEN`]: refused before it is
    /// read.
    #[error("image {} is {len} bytes, more than the {limit}-byte limit", path.display())]
    FileTooLarge {
        /// The metadata file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// `meta.crac` ends before the body does.
    #[error("image {} is truncated: {found} of {expected} body bytes", path.display())]
    Truncated {
        /// The metadata file.
        path: PathBuf,
        /// Body bytes present.
        found: u64,
        /// Body bytes the header announces.
        expected: u64,
    },
    /// `meta.crac` continues after the body.
    #[error(
        "image {} has data after its {expected}-byte body",
        path.display()
    )]
    TrailingData {
        /// The metadata file.
        path: PathBuf,
        /// Body length from the header.
        expected: u64,
    },
    /// The body checksum does not match.
    #[error(
        "image {} is corrupt: body CRC-32 is {computed:#010x}, the header says {stored:#010x}",
        path.display()
    )]
    BodyChecksum {
        /// The metadata file.
        path: PathBuf,
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the body read.
        computed: u32,
    },
    /// The body's sections could not be decoded.
    #[error("image {} has a malformed body", path.display())]
    Body {
        /// The metadata file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: DecodeBodyError,
    },
    /// The records contradict each other.
    #[error("image {} is inconsistent", path.display())]
    Sanity {
        /// The metadata file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: SanityError,
    },
    /// `pages.crac` does not start with a valid header page.
    #[error("page file {} has a bad header page: {what}", path.display())]
    PagesHeader {
        /// The page file.
        path: PathBuf,
        /// What was wrong.
        what: &'static str,
    },
    /// `pages.crac` does not have the length `meta.crac` records.
    #[error(
        "page file {} is {found} bytes, the image header records {expected}",
        path.display()
    )]
    PagesLength {
        /// The page file.
        path: PathBuf,
        /// Length from the metadata header.
        expected: u64,
        /// Actual length.
        found: u64,
    },
}

/// Why [`Image::verify_pages`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The page file could not be opened or read.
    #[error("cannot {step} {}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// The page file.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The page file's length changed since it was checked.
    #[error(
        "page file {} has {found} bytes of page data, the image header records {expected}",
        path.display()
    )]
    Length {
        /// The page file.
        path: PathBuf,
        /// Page data length from the header.
        expected: u64,
        /// Page data read.
        found: u64,
    },
    /// A piece of page data does not match its hash in the piece table.
    #[error(
        "page file {} is damaged: piece {index} (file bytes {start:#x}-{end:#x}) hashes to \
         {computed:#018x}, the piece table records {stored:#018x}; it holds memory {}",
        path.display(),
        ranges_text(memory)
    )]
    Piece {
        /// The page file.
        path: PathBuf,
        /// The piece's index.
        index: u64,
        /// Its first byte in the page file.
        start: u64,
        /// Its end in the page file (exclusive).
        end: u64,
        /// Hash in the piece table.
        stored: u64,
        /// Hash of the bytes read.
        computed: u64,
        /// Address ranges of the memory it holds.
        memory: Vec<(u64, u64)>,
    },
    /// A compressed image's piece does not decompress to its length or
    /// does not match its hash.
    #[error(
        "page file {} is damaged: piece {index} (stored {} at file bytes {offset:#x}-{:#x}) \
         {what}; it holds memory {}",
        path.display(),
        method_name(*method),
        offset + u64::from(*len),
        ranges_text(memory)
    )]
    StoredPiece {
        /// The page file.
        path: PathBuf,
        /// The piece's index.
        index: u64,
        /// Its stored bytes' offset in the page file.
        offset: u64,
        /// Its stored length.
        len: u32,
        /// How it is stored.
        method: u32,
        /// What is wrong, e.g. the hashes.
        what: String,
        /// Address ranges of the memory it holds.
        memory: Vec<(u64, u64)>,
    },
    /// The page data checksum does not match (images older than format 1.3).
    #[error(
        "page file {} is corrupt: page data CRC-32 is {computed:#010x}, the header says \
         {stored:#010x}",
        path.display()
    )]
    Checksum {
        /// The page file.
        path: PathBuf,
        /// Checksum in the header.
        stored: u32,
        /// Checksum computed.
        computed: u32,
    },
}

/// Address ranges as `0x1000-0x3000, 0x8000-0x9000` (`none` if empty).
pub fn ranges_text(ranges: &[(u64, u64)]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges
        .iter()
        .map(|(s, e)| format!("{s:#x}-{e:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sections that must appear exactly once, decoded.
#[derive(Default)]
struct Once {
    process: Option<Process>,
    argv: Option<Argv>,
    cpu: Option<Cpu>,
    mm: Option<Mm>,
    vdso: Option<VdsoRecord>,
    runs: Option<Vec<PageRun>>,
    sigactions: Option<[SigactionRecord; 64]>,
    rlimits: Option<[RlimitRecord; 16]>,
    timers: Option<TimersRecord>,
    creds: Option<crate::creds::Creds>,
    pieces: Option<Vec<u64>>,
    stored: Option<Stored>,
}

fn set_once<T>(slot: &mut Option<T>, v: T, tag: Tag, offset: usize) -> Result<(), DecodeBodyError> {
    if slot.is_some() {
        return Err(DecodeBodyError::Duplicate {
            tag: tag as u32,
            offset,
        });
    }
    *slot = Some(v);
    Ok(())
}

fn missing(tag: Tag) -> DecodeBodyError {
    DecodeBodyError::Missing { tag: tag as u32 }
}

impl Image {
    /// Decodes a metadata body (the bytes after the header) into an image.
    ///
    /// Checks the framing, decodes every known section, skips unknown ones
    /// and requires every once-only section exactly once. Does not check the
    /// body CRC (the caller did) nor the meaning ([`Image::sanity_check`]).
    pub fn decode_body(header: Header, body: &[u8]) -> Result<Image, DecodeBodyError> {
        let mut once = Once::default();
        let mut files = Vec::new();
        let mut vmas = Vec::new();
        let mut threads = Vec::new();
        let mut unknown_sections = Vec::new();
        let mut fds = Vec::new();
        let mut r = Reader::new(body);
        loop {
            let offset = body.len() - r.remaining();
            let Some((tag, mut s)) = r.next_section().map_err(DecodeBodyError::Framing)? else {
                break;
            };
            let len = u32::try_from(s.remaining()).unwrap_or(u32::MAX);
            let bad = |source| DecodeBodyError::Section {
                tag,
                offset,
                source,
            };
            let Some(t) = Tag::from_u32(tag) else {
                unknown_sections.push(UnknownSection { tag, len });
                continue;
            };
            match t {
                Tag::Fd => fds.push(Fd::from(&FdRecord::decode(&mut s).map_err(bad)?)),
                Tag::Process => {
                    let p = ProcessRecord::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.process, Process::from(&p), t, offset)?;
                }
                Tag::Argv => {
                    let a = ArgvRecord::decode(&mut s).map_err(bad)?;
                    let a = Argv {
                        cmdline: a.cmdline.to_vec(),
                    };
                    set_once(&mut once.argv, a, t, offset)?;
                }
                Tag::Cpu => {
                    let c = CpuRecord::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.cpu, Cpu::from(&c), t, offset)?;
                }
                Tag::Mm => {
                    let m = MmRecord::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.mm, Mm::from(&m), t, offset)?;
                }
                Tag::Vdso => {
                    let v = VdsoRecord::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.vdso, v, t, offset)?;
                }
                Tag::File => files.push(FileRef::from(&FileRecord::decode(&mut s).map_err(bad)?)),
                Tag::Vma => vmas.push(Vma::from(&VmaRecord::decode(&mut s).map_err(bad)?)),
                Tag::Runs => {
                    let runs = decode_runs(s).collect::<Result<Vec<_>, _>>().map_err(bad)?;
                    set_once(&mut once.runs, runs, t, offset)?;
                }
                Tag::Thread => {
                    threads.push(Thread::from(&ThreadRecord::decode(&mut s).map_err(bad)?));
                }
                Tag::Sigactions => {
                    let a = decode_sigactions(&mut s).map_err(bad)?;
                    set_once(&mut once.sigactions, a, t, offset)?;
                }
                Tag::Rlimits => {
                    let l = decode_rlimits(&mut s).map_err(bad)?;
                    set_once(&mut once.rlimits, l, t, offset)?;
                }
                Tag::Timers => {
                    let tm = TimersRecord::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.timers, tm, t, offset)?;
                }
                Tag::Creds => {
                    let c = crate::CredsRecord::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.creds, (&c).into(), t, offset)?;
                }
                Tag::Pieces => {
                    let p = PieceTable::decode(&mut s).map_err(bad)?;
                    set_once(&mut once.pieces, p.iter().collect(), t, offset)?;
                }
                Tag::Stored => {
                    let p = StoredPieces::decode(&mut s).map_err(bad)?;
                    let v = Stored {
                        compression: p.compression,
                        data_len: p.data_len,
                        pieces: p.iter().collect(),
                    };
                    set_once(&mut once.stored, v, t, offset)?;
                }
            }
        }
        Ok(Image {
            header,
            process: once.process.ok_or(missing(Tag::Process))?,
            argv: once.argv.ok_or(missing(Tag::Argv))?,
            cpu: once.cpu.ok_or(missing(Tag::Cpu))?,
            mm: once.mm.ok_or(missing(Tag::Mm))?,
            vdso: once.vdso.ok_or(missing(Tag::Vdso))?,
            files,
            vmas,
            runs: once.runs.ok_or(missing(Tag::Runs))?,
            threads,
            sigactions: once.sigactions.ok_or(missing(Tag::Sigactions))?,
            rlimits: once.rlimits.ok_or(missing(Tag::Rlimits))?,
            timers: once.timers.ok_or(missing(Tag::Timers))?,
            fds,
            creds: once.creds,
            pieces: once.pieces,
            stored: once.stored,
            unknown_sections,
        })
    }

    /// Encodes the records as a metadata body, in tag order.
    ///
    /// [`Image::unknown_sections`] are not written (their payload is not kept).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        loop {
            let mut w = Writer::new(&mut buf);
            self.encode_into(&mut w);
            match w.finish() {
                Ok(body) => {
                    let n = body.len();
                    buf.truncate(n);
                    return buf;
                }
                Err(e) => buf.resize(e.needed.max(buf.len() * 2), 0),
            }
        }
    }

    fn encode_into(&self, w: &mut Writer<'_>) {
        self.process.as_record().encode(w);
        self.argv.as_record().encode(w);
        self.cpu.as_record().encode(w);
        self.mm.as_record().encode(w);
        self.vdso.encode(w);
        for f in &self.files {
            f.as_record().encode(w);
        }
        for v in &self.vmas {
            v.as_record().encode(w);
        }
        w.section(Tag::Runs as u32, |w| {
            for r in &self.runs {
                r.encode(w);
            }
        });
        for t in &self.threads {
            t.as_record().encode(w);
        }
        encode_sigactions(w, &self.sigactions);
        encode_rlimits(w, &self.rlimits);
        self.timers.encode(w);
        for f in &self.fds {
            f.as_record().encode(w);
        }
        if let Some(c) = &self.creds {
            c.as_record().encode(w);
        }
        if let Some(p) = &self.pieces {
            PieceTable::encode(w, p);
        }
        if let Some(st) = &self.stored {
            StoredPieces::encode(w, st.compression, st.data_len, &st.pieces);
        }
    }

    /// The length of the page file that run offsets and the piece table
    /// refer to: `pages.crac`'s, or for a compressed image the header page
    /// plus the uncompressed page data.
    pub fn logical_pages_len(&self) -> u64 {
        match &self.stored {
            Some(st) => PAGES_HEADER_LEN.saturating_add(st.data_len),
            None => self.header.pages_len,
        }
    }

    /// Checks that the records are consistent with each other and with the
    /// page file length in [`Image::header`]:
    ///
    /// * at least one thread, unique TIDs, exactly one `THREAD_DUMPER`, and
    ///   it is [`Process::dumping_tid`];
    /// * at least one mapping, mappings sorted and disjoint;
    /// * file ids unique, every file a mapping refers to exists;
    /// * page runs sorted and disjoint, every page inside a mapping, the data
    ///   of every run inside the page data of `pages.crac`;
    /// * descriptor numbers of fd records unique;
    /// * a piece table (required from format 1.3 on) with one hash per
    ///   piece of the page file.
    pub fn sanity_check(&self) -> Result<(), SanityError> {
        self.check_threads()?;
        self.check_vmas()?;
        self.check_runs()?;
        let mut fds: Vec<u32> = self.fds.iter().map(|f| f.fd).collect();
        fds.sort_unstable();
        if let Some(w) = fds.windows(2).find(|w| w[0] == w[1]) {
            return Err(SanityError::DuplicateFd { fd: w[0] });
        }
        match &self.pieces {
            None if self.header.minor >= PIECES_MINOR => Err(SanityError::NoPieceTable {
                major: self.header.major,
                minor: self.header.minor,
            }),
            None => Ok(()),
            Some(p) => {
                let logical = self.logical_pages_len();
                let expected = piece_count(logical);
                if p.len() as u64 != expected {
                    return Err(SanityError::PieceCount(PieceCountError {
                        found: p.len() as u64,
                        expected,
                        pages_len: logical,
                    }));
                }
                Ok(())
            }
        }?;
        match &self.stored {
            None => Ok(()),
            Some(_) if self.header.minor < COMPRESSION_MINOR || self.pieces.is_none() => {
                Err(SanityError::UnexpectedStored {
                    major: self.header.major,
                    minor: self.header.minor,
                })
            }
            Some(st) => check_stored(
                st.data_len,
                st.pieces.iter().copied(),
                self.header.pages_len,
            )
            .map_err(SanityError::Stored),
        }
    }

    fn check_threads(&self) -> Result<(), SanityError> {
        if self.threads.is_empty() {
            return Err(SanityError::NoThreads);
        }
        let mut tids: Vec<u32> = self.threads.iter().map(|t| t.tid).collect();
        tids.sort_unstable();
        if let Some(w) = tids.windows(2).find(|w| w[0] == w[1]) {
            return Err(SanityError::DuplicateThread { tid: w[0] });
        }
        let dumpers: Vec<&Thread> = self.threads.iter().filter(|t| t.is_dumper()).collect();
        let [dumper] = dumpers[..] else {
            return Err(SanityError::DumperCount {
                count: dumpers.len(),
            });
        };
        if dumper.tid != self.process.dumping_tid {
            return Err(SanityError::DumperMismatch {
                flagged: dumper.tid,
                recorded: self.process.dumping_tid,
            });
        }
        Ok(())
    }

    fn check_vmas(&self) -> Result<(), SanityError> {
        if self.vmas.is_empty() {
            return Err(SanityError::NoMappings);
        }
        for w in self.vmas.windows(2) {
            if w[1].start < w[0].end {
                return Err(SanityError::VmaOrder {
                    start: w[1].start,
                    end: w[1].end,
                    prev_end: w[0].end,
                });
            }
        }
        let mut ids: Vec<u32> = self.files.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(SanityError::DuplicateFile { id: w[0] });
        }
        for v in &self.vmas {
            if v.file != NO_FILE && ids.binary_search(&v.file).is_err() {
                return Err(SanityError::MissingFile {
                    start: v.start,
                    end: v.end,
                    file: v.file,
                });
            }
        }
        Ok(())
    }

    fn check_runs(&self) -> Result<(), SanityError> {
        let pages_len = self.logical_pages_len();
        let mut prev_end = 0u64;
        for run in &self.runs {
            let outside = SanityError::RunOutsideVmas {
                addr: run.addr,
                pages: run.pages,
            };
            let Some(end) = run_len(run).and_then(|l| run.addr.checked_add(l)) else {
                return Err(outside);
            };
            if run.addr < prev_end {
                return Err(SanityError::RunOrder {
                    addr: run.addr,
                    prev_end,
                });
            }
            prev_end = end;
            if !self.covered(run.addr, end) {
                return Err(outside);
            }
            let data_end = run_len(run).and_then(|l| run.offset.checked_add(l));
            if run.offset < PAGES_HEADER_LEN || data_end.is_none_or(|e| e > pages_len) {
                return Err(SanityError::RunOutsidePageFile {
                    addr: run.addr,
                    pages: run.pages,
                    offset: run.offset,
                    pages_len,
                });
            }
        }
        Ok(())
    }

    /// Whether `[start, end)` lies inside contiguous mappings. Needs sorted
    /// mappings.
    fn covered(&self, start: u64, end: u64) -> bool {
        let mut i = self.vmas.partition_point(|v| v.end <= start);
        let mut at = start;
        while at < end {
            match self.vmas.get(i) {
                Some(v) if v.start <= at => at = v.end,
                _ => return false,
            }
            i += 1;
        }
        true
    }

    /// Reads and validates the image in `dir` (see the module documentation)
    /// with the strict reader ([`Image::read_verified`]).
    pub fn read(dir: &Path) -> Result<Image, ImageReadError> {
        Image::read_verified(dir).map(|v| v.image)
    }

    /// Checks the page data in `dir/pages.crac`: the hash of every piece
    /// against the piece table, or, in an image older than format 1.3, the
    /// CRC-32 of all of it against the header's.
    pub fn verify_pages(&self, dir: &Path) -> Result<(), VerifyError> {
        let path = dir.join(PAGES_FILE);
        let (f, _) = crate::strict::ImageDir::open(dir)
            .and_then(|d| d.open_file(PAGES_FILE))
            .map_err(|e| VerifyError::Io {
                step: "open",
                path: path.clone(),
                source: io::Error::other(e),
            })?;
        self.verify_pages_file(&f, &path)
    }

    /// [`Image::verify_pages`] on the page file `f` (opened by the strict
    /// reader; `path` names it in errors). Reads at offsets: the file's
    /// position is left alone.
    pub fn verify_pages_file(&self, f: &std::fs::File, path: &Path) -> Result<(), VerifyError> {
        match (&self.pieces, &self.stored) {
            (Some(p), Some(_)) => self.verify_stored(f, path, p),
            (Some(p), None) => self.verify_pieces(f, path, p),
            (None, _) => self.verify_crc(f, path),
        }
    }

    /// Reads piece `index` of a compressed image from the page file `f` and
    /// decompresses it into `out` (at least [`PIECE_LEN`] bytes), checking
    /// its length and its hash. Returns its length.
    pub fn load_piece(
        &self,
        f: &std::fs::File,
        path: &Path,
        index: u64,
        dec: &mut crate::compress::Decompressor,
        out: &mut [u8],
    ) -> Result<usize, VerifyError> {
        let (Some(st), Some(table)) = (&self.stored, &self.pieces) else {
            return Err(VerifyError::Io {
                step: "decompress",
                path: path.to_path_buf(),
                source: io::Error::other("the image is not compressed"),
            });
        };
        let logical = self.logical_pages_len();
        let p = st.pieces.get(index as usize).copied().unwrap_or_default();
        let (start, end) = piece_range(index, logical).unwrap_or((logical, logical));
        let want = (end - start) as usize;
        let damaged = |what: String| VerifyError::StoredPiece {
            path: path.to_path_buf(),
            index,
            offset: p.offset,
            len: p.len,
            method: p.method,
            what,
            memory: self.piece_memory(start, end),
        };
        if out.len() < want || p.len == 0 || u64::from(p.len) > PIECE_LEN {
            return Err(damaged("is out of range".into()));
        }
        let mut raw = std::mem::take(&mut dec.input);
        raw.resize(p.len as usize, 0);
        let n = read_full(f, &mut raw, p.offset).map_err(|source| VerifyError::Io {
            step: "read",
            path: path.to_path_buf(),
            source,
        });
        let r = n.and_then(|n| {
            if n < raw.len() {
                return Err(damaged(format!("is cut short at {n} bytes")));
            }
            dec.piece(p.method, &raw, &mut out[..want])
                .map_err(|e| damaged(format!("does not decompress to its {want} bytes: {e}")))?;
            let computed = piece_hash(&out[..want]);
            let stored = table.get(index as usize).copied().unwrap_or(0);
            if computed != stored {
                return Err(damaged(format!(
                    "hashes to {computed:#018x} decompressed, the piece table records {stored:#018x}"
                )));
            }
            Ok(want)
        });
        dec.input = raw;
        r
    }

    fn verify_stored(
        &self,
        f: &std::fs::File,
        path: &Path,
        table: &[u64],
    ) -> Result<(), VerifyError> {
        let mut dec = crate::compress::Decompressor::new();
        let mut out = vec![0u8; PIECE_LEN as usize];
        for index in 0..table.len() as u64 {
            self.load_piece(f, path, index, &mut dec, &mut out)?;
        }
        Ok(())
    }

    fn verify_pieces(
        &self,
        f: &std::fs::File,
        path: &Path,
        table: &[u64],
    ) -> Result<(), VerifyError> {
        let io_err = |source| VerifyError::Io {
            step: "read",
            path: path.to_path_buf(),
            source,
        };
        let pages_len = self.header.pages_len;
        // Whole pieces per read: 16 of them.
        let mut buf = vec![0u8; 16 * PIECE_LEN as usize];
        let mut index = 0u64;
        let mut at = PAGES_HEADER_LEN;
        loop {
            let n = read_full(f, &mut buf, at).map_err(io_err)?;
            at += n as u64;
            for piece in buf[..n].chunks(PIECE_LEN as usize) {
                let (start, end) = piece_range(index, pages_len).unwrap_or((pages_len, pages_len));
                let stored = table.get(index as usize).copied();
                if stored.is_none() || end - start != piece.len() as u64 {
                    return Err(VerifyError::Length {
                        path: path.to_path_buf(),
                        expected: pages_len - PAGES_HEADER_LEN,
                        found: (start - PAGES_HEADER_LEN).saturating_add(piece.len() as u64),
                    });
                }
                let computed = piece_hash(piece);
                if Some(computed) != stored {
                    return Err(VerifyError::Piece {
                        path: path.to_path_buf(),
                        index,
                        start,
                        end,
                        stored: stored.unwrap_or(0),
                        computed,
                        memory: self.piece_memory(start, end),
                    });
                }
                index += 1;
            }
            if n < buf.len() {
                break;
            }
        }
        if index != table.len() as u64 {
            let found = piece_range(index.saturating_sub(1), pages_len).map_or(0, |r| r.1);
            return Err(VerifyError::Length {
                path: path.to_path_buf(),
                expected: pages_len - PAGES_HEADER_LEN,
                found: found.saturating_sub(PAGES_HEADER_LEN),
            });
        }
        Ok(())
    }

    /// The memory `[start, end)` of the page file holds: address ranges of
    /// the runs whose data lies there, in run order.
    pub fn piece_memory(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.runs
            .iter()
            .filter_map(|r| {
                let (s, e) = (
                    r.offset.max(start),
                    r.offset.saturating_add(r.len()).min(end),
                );
                (s < e).then(|| (r.addr + (s - r.offset), r.addr + (e - r.offset)))
            })
            .collect()
    }

    /// The whole-file CRC-32 of images older than format 1.3.
    fn verify_crc(&self, f: &std::fs::File, path: &Path) -> Result<(), VerifyError> {
        let path = path.to_path_buf();
        let expected = self.header.pages_len.saturating_sub(PAGES_HEADER_LEN);
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut found = 0u64;
        loop {
            let n = read_full(f, &mut buf, PAGES_HEADER_LEN + found).map_err(|source| {
                VerifyError::Io {
                    step: "read",
                    path: path.clone(),
                    source,
                }
            })?;
            hasher.update(&buf[..n]);
            found += n as u64;
            if n < buf.len() {
                break;
            }
        }
        if found != expected {
            return Err(VerifyError::Length {
                path,
                expected,
                found,
            });
        }
        let computed = hasher.finalize();
        if computed != self.header.pages_crc {
            return Err(VerifyError::Checksum {
                path,
                stored: self.header.pages_crc,
                computed,
            });
        }
        Ok(())
    }

    /// Sets [`Image::pieces`] to the hashes of `page_data` (the bytes after
    /// the header page of `pages.crac`).
    pub fn set_pieces(&mut self, page_data: &[u8]) {
        self.pieces = Some(piece_hashes(page_data));
    }

    /// Total length of all mappings, in bytes.
    pub fn mapped_bytes(&self) -> u64 {
        self.vmas.iter().map(Vma::len).fold(0, u64::saturating_add)
    }

    /// Number of pages stored in `pages.crac`.
    pub fn stored_pages(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| r.pages)
            .fold(0, u64::saturating_add)
    }

    /// Bytes of page data stored in `pages.crac`.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_pages().saturating_mul(PAGE_SIZE)
    }

    /// Stored pages inside each mapping, in [`Image::vmas`] order. Needs
    /// sorted runs (any image [`Image::read`] returned).
    pub fn stored_pages_per_vma(&self) -> Vec<u64> {
        self.vmas
            .iter()
            .map(|v| {
                let first = self
                    .runs
                    .partition_point(|r| run_end(r).is_some_and(|e| e <= v.start));
                self.runs[first..]
                    .iter()
                    .take_while(|r| r.addr < v.end)
                    .map(|r| {
                        let lo = r.addr.max(v.start);
                        let hi = run_end(r).unwrap_or(u64::MAX).min(v.end);
                        hi.saturating_sub(lo) / PAGE_SIZE
                    })
                    .fold(0, u64::saturating_add)
            })
            .collect()
    }

    /// The thread that ran the dump, if exactly one is flagged.
    pub fn dumper(&self) -> Option<&Thread> {
        let mut it = self.threads.iter().filter(|t| t.is_dumper());
        match (it.next(), it.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    }

    /// The file record with `id`.
    pub fn file(&self, id: u32) -> Option<&FileRef> {
        self.files.iter().find(|f| f.id == id)
    }
}

/// The piece table of `page_data` (the bytes after the header page).
pub fn piece_hashes(page_data: &[u8]) -> Vec<u64> {
    page_data
        .chunks(PIECE_LEN as usize)
        .map(piece_hash)
        .collect()
}

/// Reads from `at` until `buf` is full or the file ends; returns the bytes
/// read.
pub fn read_full(f: &std::fs::File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn run_len(r: &PageRun) -> Option<u64> {
    r.pages.checked_mul(PAGE_SIZE)
}

fn run_end(r: &PageRun) -> Option<u64> {
    run_len(r).and_then(|l| r.addr.checked_add(l))
}

/// A header for an image whose body and page data are given, with this
/// build's version and architecture (page data CRC 0: the body's piece
/// table covers the page data).
pub fn header_for(body: &[u8], page_data: &[u8]) -> Header {
    Header {
        major: FORMAT_VERSION.0,
        minor: FORMAT_VERSION.1,
        body_len: body.len() as u64,
        body_crc: crc32fast::hash(body),
        arch: ARCH_X86_64,
        pages_len: PAGES_HEADER_LEN + page_data.len() as u64,
        pages_crc: 0,
    }
}
