//! The records of the metadata body, one section each.
//!
//! Records borrow their strings from the body, so the restorer decodes them
//! without allocating. Every record has `encode` (into a [`Writer`]) and
//! `decode` (from a section payload). New fields are only ever appended to a
//! record, with a minor version bump; decoders ignore trailing bytes.

use crate::wire::{DecodeError, Reader, Writer};

/// Section tags of the metadata body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Tag {
    /// [`ProcessRecord`], exactly once, first.
    Process = 1,
    /// [`ArgvRecord`], once.
    Argv = 2,
    /// [`CpuRecord`], once.
    Cpu = 3,
    /// [`MmRecord`], once.
    Mm = 4,
    /// [`VdsoRecord`], once.
    Vdso = 5,
    /// [`FileRecord`], one per file the image depends on.
    File = 6,
    /// [`VmaRecord`], one per mapping, in address order.
    Vma = 7,
    /// [`PageRun`]s, all in one section, in address order.
    Runs = 8,
    /// [`ThreadRecord`], one per thread.
    Thread = 9,
    /// 64 [`SigactionRecord`]s for signals 1..=64.
    Sigactions = 10,
    /// 16 [`RlimitRecord`]s in `RLIMIT_*` order.
    Rlimits = 11,
    /// [`TimersRecord`], once.
    Timers = 12,
    /// [`FdRecord`], one per file descriptor the engine carries across
    /// (besides stdio, which the restoring side provides).
    Fd = 13,
    /// [`CredsRecord`](crate::CredsRecord), once: who the process runs as.
    Creds = 14,
    /// [`PieceTable`](crate::PieceTable), once from format 1.3 on: a hash
    /// of every 64 KiB piece of the page data.
    Pieces = 15,
    /// [`StoredPieces`](crate::StoredPieces), once in a compressed image
    /// (format 1.4 on): where and how each piece is stored.
    Stored = 16,
}

impl Tag {
    /// The tag for a raw value, if known.
    pub fn from_u32(v: u32) -> Option<Tag> {
        Some(match v {
            1 => Tag::Process,
            2 => Tag::Argv,
            3 => Tag::Cpu,
            4 => Tag::Mm,
            5 => Tag::Vdso,
            6 => Tag::File,
            7 => Tag::Vma,
            8 => Tag::Runs,
            9 => Tag::Thread,
            10 => Tag::Sigactions,
            11 => Tag::Rlimits,
            12 => Tag::Timers,
            13 => Tag::Fd,
            14 => Tag::Creds,
            15 => Tag::Pieces,
            16 => Tag::Stored,
            _ => return None,
        })
    }
}

/// Process-wide facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessRecord<'a> {
    /// PID (the restored process gets it again).
    pub pid: u32,
    /// Parent PID at dump time (informational).
    pub ppid: u32,
    /// Real user id at dump time.
    pub uid: u32,
    /// Real group id at dump time.
    pub gid: u32,
    /// File mode creation mask.
    pub umask: u32,
    /// `personality(0xffffffff)`.
    pub personality: u32,
    /// TID of the thread that ran the dump.
    pub dumping_tid: u32,
    /// Wall clock at dump (ns since the Unix epoch).
    pub realtime_ns: u64,
    /// CLOCK_MONOTONIC at dump (ns).
    pub monotonic_ns: u64,
    /// CLOCK_BOOTTIME at dump (ns).
    pub boottime_ns: u64,
    /// Address of the library's resume routine: the restorer enters every
    /// thread there with `rdi` = the thread's context address.
    pub resume_entry: u64,
    /// Address of the library's restore-info block, which the restorer fills
    /// (see [`RestoreInfo`]) before resuming threads.
    pub restore_info_addr: u64,
    /// Path of the executable.
    pub exe: &'a [u8],
    /// Working directory.
    pub cwd: &'a [u8],
    /// Process name (`comm`).
    pub comm: &'a [u8],
    /// `uname -r` of the dumping kernel.
    pub kernel_release: &'a [u8],
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: &'a [u8],
    /// Host name.
    pub hostname: &'a [u8],
}

impl<'a> ProcessRecord<'a> {
    /// Encodes as a [`Tag::Process`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Process as u32, |w| {
            for v in [
                self.pid,
                self.ppid,
                self.uid,
                self.gid,
                self.umask,
                self.personality,
                self.dumping_tid,
            ] {
                w.u32(v);
            }
            w.u32(0);
            for v in [
                self.realtime_ns,
                self.monotonic_ns,
                self.boottime_ns,
                self.resume_entry,
                self.restore_info_addr,
            ] {
                w.u64(v);
            }
            for s in [
                self.exe,
                self.cwd,
                self.comm,
                self.kernel_release,
                self.boot_id,
                self.hostname,
            ] {
                w.str(s);
            }
        });
    }

    /// Decodes a [`Tag::Process`] payload.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let pid = r.u32()?;
        let ppid = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let umask = r.u32()?;
        let personality = r.u32()?;
        let dumping_tid = r.u32()?;
        let _pad = r.u32()?;
        Ok(ProcessRecord {
            pid,
            ppid,
            uid,
            gid,
            umask,
            personality,
            dumping_tid,
            realtime_ns: r.u64()?,
            monotonic_ns: r.u64()?,
            boottime_ns: r.u64()?,
            resume_entry: r.u64()?,
            restore_info_addr: r.u64()?,
            exe: r.str()?,
            cwd: r.str()?,
            comm: r.str()?,
            kernel_release: r.str()?,
            boot_id: r.str()?,
            hostname: r.str()?,
        })
    }
}

/// The command line, as `/proc/self/cmdline` shows it (NUL-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArgvRecord<'a> {
    /// NUL-separated arguments, `argv[0]` first.
    pub cmdline: &'a [u8],
}

impl<'a> ArgvRecord<'a> {
    /// Encodes as a [`Tag::Argv`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Argv as u32, |w| w.str(self.cmdline));
    }
    /// Decodes a [`Tag::Argv`] payload.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(ArgvRecord { cmdline: r.str()? })
    }
    /// The arguments.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> {
        let c = self.cmdline;
        let c = c.strip_suffix(&[0]).unwrap_or(c);
        c.split(|&b| b == 0).filter(move |_| !c.is_empty())
    }
}

/// CPU facts that decide whether the image's code and register state can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuRecord<'a> {
    /// CPUID vendor string.
    pub vendor: &'a [u8],
    /// XCR0: the xsave features the kernel enabled.
    pub xcr0: u64,
    /// Size of the xsave area for XCR0 (CPUID 0xD.0 EBX).
    pub xsave_size: u32,
    /// CPUID.1 ECX, CPUID.1 EDX, CPUID.7.0 EBX, ECX, EDX, CPUID.7.1 EAX,
    /// CPUID.0xD.1 EAX, CPUID.0x80000001 ECX.
    pub features: [u32; 8],
}

/// Names of the words in [`CpuRecord::features`].
pub const CPU_FEATURE_WORDS: [&str; 8] = [
    "cpuid.1.ecx",
    "cpuid.1.edx",
    "cpuid.7.0.ebx",
    "cpuid.7.0.ecx",
    "cpuid.7.0.edx",
    "cpuid.7.1.eax",
    "cpuid.d.1.eax",
    "cpuid.80000001.ecx",
];

impl<'a> CpuRecord<'a> {
    /// Encodes as a [`Tag::Cpu`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Cpu as u32, |w| {
            w.str(self.vendor);
            w.u64(self.xcr0);
            w.u32(self.xsave_size);
            for f in self.features {
                w.u32(f);
            }
        });
    }
    /// Decodes a [`Tag::Cpu`] payload.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let vendor = r.str()?;
        let xcr0 = r.u64()?;
        let xsave_size = r.u32()?;
        let mut features = [0u32; 8];
        for f in &mut features {
            *f = r.u32()?;
        }
        Ok(CpuRecord {
            vendor,
            xcr0,
            xsave_size,
            features,
        })
    }
}

/// The mm fields `PR_SET_MM_MAP` restores, and the auxiliary vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MmRecord<'a> {
    /// Start of the code segment.
    pub start_code: u64,
    /// End of the code segment.
    pub end_code: u64,
    /// Start of the data segment.
    pub start_data: u64,
    /// End of the data segment.
    pub end_data: u64,
    /// Start of the brk heap.
    pub start_brk: u64,
    /// Current program break.
    pub brk: u64,
    /// Start of the main stack.
    pub start_stack: u64,
    /// Start of the argument strings.
    pub arg_start: u64,
    /// End of the argument strings.
    pub arg_end: u64,
    /// Start of the environment strings.
    pub env_start: u64,
    /// End of the environment strings.
    pub env_end: u64,
    /// Raw auxiliary vector (`/proc/self/auxv`).
    pub auxv: &'a [u8],
}

impl<'a> MmRecord<'a> {
    /// The fields in `PR_SET_MM_MAP` order.
    pub fn fields(&self) -> [u64; 11] {
        [
            self.start_code,
            self.end_code,
            self.start_data,
            self.end_data,
            self.start_brk,
            self.brk,
            self.start_stack,
            self.arg_start,
            self.arg_end,
            self.env_start,
            self.env_end,
        ]
    }
    /// Encodes as a [`Tag::Mm`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Mm as u32, |w| {
            for v in self.fields() {
                w.u64(v);
            }
            w.str(self.auxv);
        });
    }
    /// Decodes a [`Tag::Mm`] payload.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut f = [0u64; 11];
        for v in &mut f {
            *v = r.u64()?;
        }
        Ok(MmRecord {
            start_code: f[0],
            end_code: f[1],
            start_data: f[2],
            end_data: f[3],
            start_brk: f[4],
            brk: f[5],
            start_stack: f[6],
            arg_start: f[7],
            arg_end: f[8],
            env_start: f[9],
            env_end: f[10],
            auxv: r.str()?,
        })
    }
}

/// Where the kernel's `[vvar][vvar_vclock][vdso]` block was. The restorer
/// moves the running kernel's block there as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VdsoRecord {
    /// `[vvar]` start, length.
    pub vvar: (u64, u64),
    /// `[vvar_vclock]` start, length (0, 0 on kernels without it).
    pub vvar_vclock: (u64, u64),
    /// `[vdso]` start, length.
    pub vdso: (u64, u64),
    /// CRC-32 of the vdso text, to tell a different kernel build.
    pub vdso_crc: u32,
}

impl VdsoRecord {
    /// Encodes as a [`Tag::Vdso`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Vdso as u32, |w| {
            for (a, l) in [self.vvar, self.vvar_vclock, self.vdso] {
                w.u64(a);
                w.u64(l);
            }
            w.u32(self.vdso_crc);
        });
    }
    /// Decodes a [`Tag::Vdso`] payload.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = [(0u64, 0u64); 3];
        for v in &mut p {
            *v = (r.u64()?, r.u64()?);
        }
        Ok(VdsoRecord {
            vvar: p[0],
            vvar_vclock: p[1],
            vdso: p[2],
            vdso_crc: r.u32()?,
        })
    }
    /// Lowest start and highest end of the block.
    pub fn span(&self) -> (u64, u64) {
        let parts = [self.vvar, self.vvar_vclock, self.vdso];
        let start = parts
            .iter()
            .filter(|p| p.1 != 0)
            .map(|p| p.0)
            .min()
            .unwrap_or(0);
        let end = parts
            .iter()
            .filter(|p| p.1 != 0)
            .map(|p| p.0.saturating_add(p.1))
            .max()
            .unwrap_or(0);
        (start, end)
    }
}

/// A file the image depends on (executable, libraries, mapped files), with
/// what identifies its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileRecord<'a> {
    /// Index referenced by [`VmaRecord::file`].
    pub id: u32,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime` seconds.
    pub mtime_sec: i64,
    /// `st_mtime` nanoseconds.
    pub mtime_nsec: u32,
    /// `st_mode`.
    pub mode: u32,
    /// ELF build-id note, empty if none.
    pub build_id: &'a [u8],
    /// Absolute path.
    pub path: &'a [u8],
    /// BLAKE3 hash of the whole file, for files without a build-id (their
    /// content identity: a byte-identical copy restores); empty if not
    /// recorded (ELF files, images before format 1.2).
    pub content_hash: &'a [u8],
}

impl<'a> FileRecord<'a> {
    /// Encodes as a [`Tag::File`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::File as u32, |w| {
            w.u32(self.id);
            w.u32(self.mode);
            w.u64(self.dev);
            w.u64(self.ino);
            w.u64(self.size);
            w.i64(self.mtime_sec);
            w.u32(self.mtime_nsec);
            w.str(self.build_id);
            w.str(self.path);
            w.str(self.content_hash);
        });
    }
    /// Decodes a [`Tag::File`] payload.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let id = r.u32()?;
        let mode = r.u32()?;
        Ok(FileRecord {
            id,
            mode,
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_sec: r.i64()?,
            mtime_nsec: r.u32()?,
            build_id: r.str()?,
            path: r.str()?,
            // Absent in images before format 1.2.
            content_hash: if r.remaining() > 0 { r.str()? } else { &[] },
        })
    }
}

/// [`VmaRecord::flags`]: mapped `MAP_SHARED`.
pub const VMA_SHARED: u32 = 1 << 0;
/// [`VmaRecord::flags`]: backed by [`VmaRecord::file`].
pub const VMA_FILE: u32 = 1 << 1;
/// [`VmaRecord::flags`]: grows down (a stack).
pub const VMA_GROWSDOWN: u32 = 1 << 2;
/// [`VmaRecord::flags`]: the brk heap.
pub const VMA_HEAP: u32 = 1 << 3;
/// [`VmaRecord::flags`]: the main thread's stack.
pub const VMA_STACK: u32 = 1 << 4;
/// [`VmaRecord::flags`]: part of the vvar/vdso block; not mapped by the
/// restorer, which moves the running kernel's block instead.
pub const VMA_VDSO: u32 = 1 << 5;
/// [`VmaRecord::flags`]: `[vsyscall]`, which the kernel provides itself.
pub const VMA_VSYSCALL: u32 = 1 << 6;
/// [`VmaRecord::flags`]: the file was deleted; its content is in the page
/// file, and the restorer maps anonymous memory instead.
pub const VMA_DELETED: u32 = 1 << 7;
/// [`VmaRecord::flags`]: `MADV_DONTFORK` (a child does not get the area).
pub const VMA_DONTFORK: u32 = 1 << 8;
/// [`VmaRecord::flags`]: `MADV_WIPEONFORK` (a child gets it empty).
pub const VMA_WIPEONFORK: u32 = 1 << 9;
/// [`VmaRecord::flags`]: `MADV_DONTDUMP` (left out of core dumps).
pub const VMA_DONTDUMP: u32 = 1 << 10;
/// [`VmaRecord::flags`]: `MADV_HUGEPAGE`.
pub const VMA_HUGEPAGE: u32 = 1 << 11;
/// [`VmaRecord::flags`]: `MADV_NOHUGEPAGE`.
pub const VMA_NOHUGEPAGE: u32 = 1 << 12;
/// [`VmaRecord::flags`]: `MADV_MERGEABLE` (KSM).
pub const VMA_MERGEABLE: u32 = 1 << 13;
/// [`VmaRecord::flags`]: `MADV_SEQUENTIAL`.
pub const VMA_SEQUENTIAL: u32 = 1 << 14;
/// [`VmaRecord::flags`]: `MADV_RANDOM`.
pub const VMA_RANDOM: u32 = 1 << 15;
/// The [`VmaRecord::flags`] that record `madvise` advice, each with the
/// `/proc/PID/smaps` `VmFlags` mnemonic it comes from and the `MADV_*`
/// value that gives it back.
pub const VMA_ADVICE: [(u32, &str, u32); 8] = [
    (VMA_DONTFORK, "dc", 10),
    (VMA_WIPEONFORK, "wf", 18),
    (VMA_DONTDUMP, "dd", 16),
    (VMA_HUGEPAGE, "hg", 14),
    (VMA_NOHUGEPAGE, "nh", 15),
    (VMA_MERGEABLE, "mg", 12),
    (VMA_SEQUENTIAL, "sr", 2),
    (VMA_RANDOM, "rr", 1),
];

/// `PROT_READ` in [`VmaRecord::prot`].
pub const PROT_READ: u32 = 1;
/// `PROT_WRITE` in [`VmaRecord::prot`].
pub const PROT_WRITE: u32 = 2;
/// `PROT_EXEC` in [`VmaRecord::prot`].
pub const PROT_EXEC: u32 = 4;

/// No file: [`VmaRecord::file`] of an anonymous mapping.
pub const NO_FILE: u32 = u32::MAX;

/// One mapping of the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmaRecord<'a> {
    /// Start address (page-aligned).
    pub start: u64,
    /// End address (exclusive, page-aligned).
    pub end: u64,
    /// File offset of `start`, in bytes.
    pub pgoff: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `VMA_*` bits.
    pub flags: u32,
    /// [`FileRecord::id`], or [`NO_FILE`].
    pub file: u32,
    /// Name as `/proc/self/maps` shows it (`[heap]`, a path, empty).
    pub name: &'a [u8],
    /// Pages that were in memory at dump time (stored or not: clean pages
    /// of a file mapping are mapped again from the file). Added in 1.0;
    /// absent (0) in records that end after `name`.
    pub populated: u64,
}

impl<'a> VmaRecord<'a> {
    /// Encodes as a [`Tag::Vma`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Vma as u32, |w| {
            w.u64(self.start);
            w.u64(self.end);
            w.u64(self.pgoff);
            w.u32(self.prot);
            w.u32(self.flags);
            w.u32(self.file);
            w.str(self.name);
            w.u64(self.populated);
        });
    }
    /// Decodes a [`Tag::Vma`] payload and checks its bounds.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let v = VmaRecord {
            start: r.u64()?,
            end: r.u64()?,
            pgoff: r.u64()?,
            prot: r.u32()?,
            flags: r.u32()?,
            file: r.u32()?,
            name: r.str()?,
            populated: 0,
        };
        let v = VmaRecord {
            populated: if r.remaining() >= 8 { r.u64()? } else { 0 },
            ..v
        };
        if v.start >= v.end
            || !v.start.is_multiple_of(crate::PAGE_SIZE)
            || !v.end.is_multiple_of(crate::PAGE_SIZE)
        {
            return Err(DecodeError::Invalid {
                what: "mapping bounds",
            });
        }
        Ok(v)
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// Whether the mapping is empty (never, once decoded).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A run of consecutive stored pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageRun {
    /// Address of the first page.
    pub addr: u64,
    /// Number of pages.
    pub pages: u64,
    /// Offset of the first page in `pages.crac` (page-aligned).
    pub offset: u64,
}

/// Encoded size of a [`PageRun`].
pub const PAGE_RUN_LEN: usize = 24;

impl PageRun {
    /// Appends the run to an open [`Tag::Runs`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.addr);
        w.u64(self.pages);
        w.u64(self.offset);
    }
    /// Decodes one run.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let run = PageRun {
            addr: r.u64()?,
            pages: r.u64()?,
            offset: r.u64()?,
        };
        let len = run.pages.checked_mul(crate::PAGE_SIZE);
        let fits = |base: u64| len.and_then(|l| l.checked_add(base)).is_some();
        if !run.addr.is_multiple_of(crate::PAGE_SIZE)
            || !run.offset.is_multiple_of(crate::PAGE_SIZE)
            || run.pages == 0
            || !fits(run.addr)
            || !fits(run.offset)
        {
            return Err(DecodeError::Invalid { what: "page run" });
        }
        Ok(run)
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.pages.saturating_mul(crate::PAGE_SIZE)
    }
    /// Whether the run is empty (never, once decoded).
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }
}

/// Iterates the runs of a [`Tag::Runs`] payload.
pub fn decode_runs<'a>(
    mut r: Reader<'a>,
) -> impl Iterator<Item = Result<PageRun, DecodeError>> + 'a {
    core::iter::from_fn(move || (r.remaining() >= PAGE_RUN_LEN).then(|| PageRun::decode(&mut r)))
}

/// [`ThreadRecord::flags`]: this thread ran the dump.
pub const THREAD_DUMPER: u32 = 1 << 0;

/// One thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadRecord<'a> {
    /// Thread id (restored with `clone3` `set_tid`).
    pub tid: u32,
    /// `THREAD_*` bits.
    pub flags: u32,
    /// Address of the thread's saved resume context in image memory.
    pub ctx_addr: u64,
    /// FS base (TLS pointer).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// `set_tid_address` pointer (clear_child_tid).
    pub clear_tid: u64,
    /// Robust futex list head.
    pub robust_head: u64,
    /// Robust futex list head length.
    pub robust_len: u64,
    /// rseq area, 0 if none.
    pub rseq_addr: u64,
    /// rseq registration length.
    pub rseq_len: u32,
    /// rseq signature.
    pub rseq_sig: u32,
    /// Blocked signals outside the stop handler (informational; the resume
    /// path restores the mask itself).
    pub sigmask: u64,
    /// Alternate signal stack: base, size, flags.
    pub altstack: (u64, u64, u32),
    /// CPU affinity mask bytes (`sched_getaffinity`).
    pub affinity: &'a [u8],
    /// Thread name (`comm`).
    pub name: &'a [u8],
}

impl<'a> ThreadRecord<'a> {
    /// Encodes as a [`Tag::Thread`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Thread as u32, |w| {
            w.u32(self.tid);
            w.u32(self.flags);
            for v in [
                self.ctx_addr,
                self.fs_base,
                self.gs_base,
                self.clear_tid,
                self.robust_head,
                self.robust_len,
                self.rseq_addr,
            ] {
                w.u64(v);
            }
            w.u32(self.rseq_len);
            w.u32(self.rseq_sig);
            w.u64(self.sigmask);
            w.u64(self.altstack.0);
            w.u64(self.altstack.1);
            w.u32(self.altstack.2);
            w.str(self.affinity);
            w.str(self.name);
        });
    }
    /// Decodes a [`Tag::Thread`] payload.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let tid = r.u32()?;
        let flags = r.u32()?;
        let mut v = [0u64; 7];
        for x in &mut v {
            *x = r.u64()?;
        }
        Ok(ThreadRecord {
            tid,
            flags,
            ctx_addr: v[0],
            fs_base: v[1],
            gs_base: v[2],
            clear_tid: v[3],
            robust_head: v[4],
            robust_len: v[5],
            rseq_addr: v[6],
            rseq_len: r.u32()?,
            rseq_sig: r.u32()?,
            sigmask: r.u64()?,
            altstack: (r.u64()?, r.u64()?, r.u32()?),
            affinity: r.str()?,
            name: r.str()?,
        })
    }
}

/// One signal disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigactionRecord {
    /// Handler address, or 0 (`SIG_DFL`) / 1 (`SIG_IGN`).
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// Encodes 64 dispositions as a [`Tag::Sigactions`] section.
pub fn encode_sigactions(w: &mut Writer<'_>, acts: &[SigactionRecord; 64]) {
    w.section(Tag::Sigactions as u32, |w| {
        for a in acts {
            w.u64(a.handler);
            w.u64(a.flags);
            w.u64(a.restorer);
            w.u64(a.mask);
        }
    });
}

/// Decodes a [`Tag::Sigactions`] payload.
pub fn decode_sigactions(r: &mut Reader<'_>) -> Result<[SigactionRecord; 64], DecodeError> {
    let mut acts = [SigactionRecord::default(); 64];
    for a in &mut acts {
        *a = SigactionRecord {
            handler: r.u64()?,
            flags: r.u64()?,
            restorer: r.u64()?,
            mask: r.u64()?,
        };
    }
    Ok(acts)
}

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RlimitRecord {
    /// Soft limit (`u64::MAX` = unlimited).
    pub cur: u64,
    /// Hard limit (`u64::MAX` = unlimited).
    pub max: u64,
}

/// Names of the 16 resource limits, in `RLIMIT_*` order.
pub const RLIMIT_NAMES: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// Encodes 16 limits as a [`Tag::Rlimits`] section.
pub fn encode_rlimits(w: &mut Writer<'_>, lims: &[RlimitRecord; 16]) {
    w.section(Tag::Rlimits as u32, |w| {
        for l in lims {
            w.u64(l.cur);
            w.u64(l.max);
        }
    });
}

/// Decodes a [`Tag::Rlimits`] payload.
pub fn decode_rlimits(r: &mut Reader<'_>) -> Result<[RlimitRecord; 16], DecodeError> {
    let mut l = [RlimitRecord::default(); 16];
    for x in &mut l {
        *x = RlimitRecord {
            cur: r.u64()?,
            max: r.u64()?,
        };
    }
    Ok(l)
}

/// Interval timers and pending signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimersRecord {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`: (interval ns, value ns).
    pub itimers: [(u64, u64); 3],
    /// Number of POSIX timers (restored by the library from its memory).
    pub posix_timers: u32,
    /// Process-wide pending signals.
    pub shared_pending: u64,
}

impl TimersRecord {
    /// Encodes as a [`Tag::Timers`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Timers as u32, |w| {
            for (i, v) in self.itimers {
                w.u64(i);
                w.u64(v);
            }
            w.u32(self.posix_timers);
            w.u32(0);
            w.u64(self.shared_pending);
        });
    }
    /// Decodes a [`Tag::Timers`] payload.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut itimers = [(0, 0); 3];
        for t in &mut itimers {
            *t = (r.u64()?, r.u64()?);
        }
        let posix_timers = r.u32()?;
        let _pad = r.u32()?;
        Ok(TimersRecord {
            itimers,
            posix_timers,
            shared_pending: r.u64()?,
        })
    }
}

/// [`FdRecord::kind`]: one end of an anonymous pipe whose both ends are in
/// the process. `id` = pipe inode, `buffered` = bytes in the pipe.
pub const FD_PIPE: u32 = 1;
/// [`FdRecord::kind`]: an `eventfd`. `values` = [counter, 1 if
/// `EFD_SEMAPHORE`].
pub const FD_EVENTFD: u32 = 2;
/// [`FdRecord::kind`]: a `timerfd`. `values` = [clock id, with the
/// `timerfd_settime` flags (`TFD_TIMER_ABSTIME` 1, `TFD_TIMER_CANCEL_ON_SET`
/// 2) in the high 32 bits; interval ns; remaining ns until the next expiry
/// (0 = disarmed); expirations not yet read].
pub const FD_TIMERFD: u32 = 3;
/// [`FdRecord::kind`]: a `signalfd`. `values` = [signal mask].
pub const FD_SIGNALFD: u32 = 4;
/// [`FdRecord::kind`]: an `epoll` instance. `values` = [entries, nesting
/// depth (0 = no target is an epoll)]; `extra` = its interest list, 16
/// bytes an entry: target fd (u32), events (u32), data word (u64).
pub const FD_EPOLL: u32 = 5;
/// [`FdRecord::kind`]: a `memfd`. `values` = [size, seals, file offset];
/// `id` = inode; `name` = the name given to `memfd_create`; the contents
/// travel in process memory.
pub const FD_MEMFD: u32 = 6;
/// [`FdRecord::kind`]: a regular file. `id` = device, `values` = [offset,
/// size, mtime ns, inode]; `name` = path; `extra` = option bits
/// `FILE_*` (u64, little-endian; absent = 0).
pub const FD_FILE: u32 = 7;
/// [`FdRecord::kind`]: one end of a Unix socket pair whose both ends are in
/// the process. `id` = socket inode, `values` = [peer inode, socket type];
/// `buffered` = bytes queued for this end.
pub const FD_SOCKETPAIR: u32 = 8;
/// [`FdRecord::kind`]: a listening TCP or Unix stream socket, or a bound UDP
/// or Unix datagram socket. `values` = [family, socket type, backlog,
/// option bits `SOCKOPT_*`]; `name` = address (`127.0.0.1:8080`, `[::1]:80`,
/// a path, or `@name` for an abstract Unix address).
pub const FD_LISTEN: u32 = 9;
/// [`FdRecord::kind`]: a descriptor a resource policy asked to close. A
/// socket comes back as a closed connection (reads give EOF, epoll reports
/// HUP), anything else as a pipe end of the same direction whose other end
/// is closed (a read-write descriptor as a read end). `values` = [socket
/// type] for a socket; `name` = what it was.
pub const FD_CLOSED: u32 = 10;
/// [`FdRecord::kind`]: a descriptor inherited at process start; `crac
/// restore` passes its own descriptor of the same number (else /dev/null).
pub const FD_INHERITED: u32 = 11;
/// [`FdRecord::kind`]: a descriptor a resource policy said to ignore; it
/// comes back as /dev/null with the same access mode. `name` = what it was.
pub const FD_IGNORED: u32 = 12;

/// [`FD_FILE`] option bit: a resource policy asked to reopen the file; it
/// is opened again at restore whatever changed (at the same offset, clamped
/// to its size), so `crac restore` does not check it is unchanged.
pub const FILE_REOPEN: u64 = 1;

/// [`FD_LISTEN`] option bit: `SO_REUSEADDR`.
pub const SOCKOPT_REUSEADDR: u64 = 1;
/// [`FD_LISTEN`] option bit: `SO_REUSEPORT`.
pub const SOCKOPT_REUSEPORT: u64 = 2;
/// [`FD_LISTEN`] option bit: `IPV6_V6ONLY`.
pub const SOCKOPT_V6ONLY: u64 = 4;

/// A short name of an `FD_*` kind, for tools.
pub fn fd_kind_name(kind: u32) -> Option<&'static str> {
    Some(match kind {
        FD_PIPE => "pipe",
        FD_EVENTFD => "eventfd",
        FD_TIMERFD => "timerfd",
        FD_SIGNALFD => "signalfd",
        FD_EPOLL => "epoll",
        FD_MEMFD => "memfd",
        FD_FILE => "file",
        FD_SOCKETPAIR => "socketpair",
        FD_LISTEN => "listening socket",
        FD_CLOSED => "closed by policy",
        FD_INHERITED => "inherited",
        FD_IGNORED => "ignored by policy",
        _ => return None,
    })
}

/// A file descriptor the engine carries across. The library recreates it in
/// the restored process from its own memory; the record describes it for
/// tools and for the checks `crac restore` makes before anything runs
/// (files unchanged, addresses free, inherited descriptors present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdRecord<'a> {
    /// Descriptor number.
    pub fd: u32,
    /// `FD_*` kind.
    pub kind: u32,
    /// Open flags as `/proc/self/fdinfo` shows them (access mode, O_NONBLOCK,
    /// O_CLOEXEC).
    pub flags: u32,
    /// Kind-specific identity (an inode).
    pub id: u64,
    /// Bytes buffered at dump time (pipes, sockets).
    pub buffered: u64,
    /// Kind-specific numbers, see each `FD_*` kind (minor 1).
    pub values: [u64; 4],
    /// Kind-specific text: a path, an address, a name (minor 1).
    pub name: &'a [u8],
    /// Kind-specific bytes: an epoll interest list (minor 1).
    pub extra: &'a [u8],
}

impl<'a> FdRecord<'a> {
    /// Encodes as a [`Tag::Fd`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Fd as u32, |w| {
            w.u32(self.fd);
            w.u32(self.kind);
            w.u32(self.flags);
            w.u32(0);
            w.u64(self.id);
            w.u64(self.buffered);
            for v in self.values {
                w.u64(v);
            }
            w.str(self.name);
            w.str(self.extra);
        });
    }
    /// Decodes a [`Tag::Fd`] payload (a minor-0 record has no values, name
    /// or extra bytes).
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let fd = r.u32()?;
        let kind = r.u32()?;
        let flags = r.u32()?;
        let _pad = r.u32()?;
        let id = r.u64()?;
        let buffered = r.u64()?;
        let mut values = [0u64; 4];
        let (mut name, mut extra): (&[u8], &[u8]) = (&[], &[]);
        if r.remaining() > 0 {
            for v in &mut values {
                *v = r.u64()?;
            }
            name = r.str()?;
            extra = r.str()?;
        }
        Ok(FdRecord {
            fd,
            kind,
            flags,
            id,
            buffered,
            values,
            name,
            extra,
        })
    }

    /// The option bits of an [`FD_FILE`] record (`FILE_*`).
    pub fn file_options(&self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.extra.len().min(8);
        b[..n].copy_from_slice(&self.extra[..n]);
        u64::from_le_bytes(b)
    }

    /// The epoll interest list in `extra`: (target fd, events, data word).
    pub fn epoll_entries(&self) -> impl Iterator<Item = (u32, u32, u64)> + 'a {
        self.extra.chunks_exact(16).map(|c| {
            let u32_at = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            let mut d = [0u8; 8];
            d.copy_from_slice(&c[8..16]);
            (u32_at(0), u32_at(4), u64::from_le_bytes(d))
        })
    }
}

/// The block the restorer fills in the restored process's memory at
/// [`ProcessRecord::restore_info_addr`] before it resumes the threads. The
/// library reads it to find and unmap the restorer's zone and to learn the
/// restore facts. All fields are `u64`, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestoreInfo {
    /// [`RESTORE_INFO_MAGIC`] once filled.
    pub magic: u64,
    /// Start of the restorer's zone, to unmap.
    pub zone_start: u64,
    /// Length of the restorer's zone.
    pub zone_len: u64,
    /// Wall clock when `crac restore` started (ns since the epoch).
    pub restore_started_ns: u64,
    /// Wall clock just before the threads resumed (ns since the epoch).
    pub resumed_ns: u64,
    /// Address of the `KEY=VALUE\0...` environment block in the zone.
    pub env_addr: u64,
    /// Length of the environment block.
    pub env_len: u64,
    /// [`RESTORE_LAZY`] if private anonymous memory is still being loaded
    /// by `crac restore` through a userfaultfd when the threads resume.
    pub flags: u64,
}

/// [`RestoreInfo::flags`]: memory is loaded lazily after the resume.
pub const RESTORE_LAZY: u64 = 1;

/// Bytes of the [`RestoreInfo`] block in memory.
pub const RESTORE_INFO_LEN: u64 = 64;

/// Value of [`RestoreInfo::magic`] once the restorer filled the block.
pub const RESTORE_INFO_MAGIC: u64 = 0x6372_6163_5245_5354; // "cracREST"

impl RestoreInfo {
    /// The fields in memory order.
    pub fn to_words(&self) -> [u64; 8] {
        [
            self.magic,
            self.zone_start,
            self.zone_len,
            self.restore_started_ns,
            self.resumed_ns,
            self.env_addr,
            self.env_len,
            self.flags,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut buf = [0u8; 4096];
        let mut w = Writer::new(&mut buf);
        let p = ProcessRecord {
            pid: 42,
            exe: b"/bin/x",
            resume_entry: 0x1000,
            ..Default::default()
        };
        p.encode(&mut w);
        let v = VmaRecord {
            populated: 2,
            start: 0x1000,
            end: 0x3000,
            prot: 3,
            flags: VMA_HEAP,
            file: NO_FILE,
            name: b"[heap]",
            pgoff: 0,
        };
        v.encode(&mut w);
        let t = ThreadRecord {
            tid: 43,
            name: b"worker",
            affinity: &[3],
            ..Default::default()
        };
        t.encode(&mut w);
        w.section(Tag::Runs as u32, |w| {
            PageRun {
                addr: 0x1000,
                pages: 2,
                offset: 4096,
            }
            .encode(w);
        });
        let body = w.finish().unwrap();
        let mut r = Reader::new(body);
        let (tag, mut s) = r.next_section().unwrap().unwrap();
        assert_eq!(Tag::from_u32(tag), Some(Tag::Process));
        assert_eq!(ProcessRecord::decode(&mut s).unwrap(), p);
        let (_, mut s) = r.next_section().unwrap().unwrap();
        assert_eq!(VmaRecord::decode(&mut s).unwrap(), v);
        let (_, mut s) = r.next_section().unwrap().unwrap();
        assert_eq!(ThreadRecord::decode(&mut s).unwrap(), t);
        let (_, s) = r.next_section().unwrap().unwrap();
        let runs: Vec<_> = decode_runs(s).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            runs,
            [PageRun {
                addr: 0x1000,
                pages: 2,
                offset: 4096
            }]
        );
    }

    #[test]
    fn argv_splits_on_nul() {
        let a = ArgvRecord {
            cmdline: b"prog\0-x\0y\0",
        };
        assert_eq!(a.args().collect::<Vec<_>>(), [&b"prog"[..], b"-x", b"y"]);
    }
}
