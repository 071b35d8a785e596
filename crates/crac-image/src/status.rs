//! The restorer's status protocol.
//!
//! The restorer (a `no_std` program running inside the process being
//! restored) reports to the orchestrator (`crac restore`) over a
//! `SOCK_SEQPACKET` socket (one record per message) with
//! fixed-size [`Status`] records of [`STATUS_LEN`] bytes: a
//! [`StatusKind::Progress`] record when it enters a [`Stage`], then exactly
//! one [`StatusKind::Ok`] record just before the process resumes, or exactly
//! one [`StatusKind::Error`] record before it exits with status 127. In a
//! lazy restore one [`StatusKind::Lazy`] record, with the userfaultfd
//! attached, comes before the `Ok` record. Each record is one message, so
//! writes are atomic (the restorer's page loading threads may both write).
//!
//! Byte progress: while it loads the pages of an image with at least
//! [`BYTE_PROGRESS_MIN`] bytes of page data, the restorer also sends
//! [`Stage::LoadPages`] progress records ([`Status::bytes`]) with `object` =
//! bytes loaded so far and `aux` = the total, every [`BYTE_PROGRESS_STEP`]
//! bytes and once more when everything is loaded. Records from the two
//! loading threads may arrive slightly out of order: take the largest
//! `object` seen. Stage-entry progress records have `object` = `aux` = 0.
//!
//! Layout (little-endian):
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `CRACSTA\0` |
//! | 8 | kind u32 |
//! | 12 | stage u32 |
//! | 16 | errno i32 (0 if none) |
//! | 20 | detail length u32 |
//! | 24 | object u64 (an address, id or count; meaning depends on the stage) |
//! | 32 | aux u64 (a second value) |
//! | 40 | detail bytes ([`DETAIL_MAX`]), zero padded |

/// Magic at the start of every status record.
pub const STATUS_MAGIC: [u8; 8] = *b"CRACSTA\0";
/// Size of one encoded record.
pub const STATUS_LEN: usize = 256;
/// Maximum length of [`Status::detail`]; longer text is truncated.
pub const DETAIL_MAX: usize = STATUS_LEN - 40;
/// Exit status of a restorer that reported an error (or panicked).
pub const RESTORER_FAILURE_EXIT: i32 = 127;
/// Images with at least this many bytes of page data get byte progress
/// records while their pages load.
pub const BYTE_PROGRESS_MIN: u64 = 64 << 20;
/// Bytes loaded between two byte progress records.
pub const BYTE_PROGRESS_STEP: u64 = 16 << 20;

/// What a record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum StatusKind {
    /// The restorer entered [`Status::stage`].
    Progress = 1,
    /// Restore finished; the process resumes now.
    Ok = 2,
    /// Restore failed in [`Status::stage`]; the restorer exits.
    Error = 3,
    /// The record carries (`SCM_RIGHTS`) the userfaultfd of the areas left
    /// to load lazily; `object` = their bytes of page data. Sent at most
    /// once, before [`StatusKind::Ok`].
    Lazy = 4,
}

impl StatusKind {
    /// The kind for a raw value.
    pub fn from_u32(v: u32) -> Option<StatusKind> {
        Some(match v {
            1 => StatusKind::Progress,
            2 => StatusKind::Ok,
            3 => StatusKind::Error,
            4 => StatusKind::Lazy,
            _ => return None,
        })
    }
}

/// The steps of a restore, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Stage {
    /// Creating the process and executing the restorer (orchestrator side).
    Start = 1,
    /// Reading the arguments memfd (fd 6).
    Args = 2,
    /// Mapping and decoding `meta.crac`.
    Metadata = 3,
    /// Unmapping everything outside the restorer's zone.
    Unmap = 4,
    /// Moving the kernel's vvar/vdso block to the image's addresses.
    Vdso = 5,
    /// Mapping the image's memory areas.
    MapMemory = 6,
    /// Reading page contents from `pages.crac`.
    LoadPages = 7,
    /// Setting the final memory protection.
    Protect = 8,
    /// `PR_SET_MM_MAP`: mm fields, auxiliary vector, executable.
    SetMm = 9,
    /// Creating the other threads with their original ids.
    Threads = 10,
    /// Restoring per-thread kernel state (TLS, robust list, rseq, ...).
    ThreadState = 11,
    /// Filling the restore-info block and jumping into the program.
    Resume = 12,
}

impl Stage {
    /// All stages, in order.
    pub const ALL: [Stage; 12] = [
        Stage::Start,
        Stage::Args,
        Stage::Metadata,
        Stage::Unmap,
        Stage::Vdso,
        Stage::MapMemory,
        Stage::LoadPages,
        Stage::Protect,
        Stage::SetMm,
        Stage::Threads,
        Stage::ThreadState,
        Stage::Resume,
    ];

    /// The stage for a raw value.
    pub fn from_u32(v: u32) -> Option<Stage> {
        Stage::ALL.iter().copied().find(|s| *s as u32 == v)
    }

    /// A short identifier (`"map-memory"`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Args => "args",
            Stage::Metadata => "metadata",
            Stage::Unmap => "unmap",
            Stage::Vdso => "vdso",
            Stage::MapMemory => "map-memory",
            Stage::LoadPages => "load-pages",
            Stage::Protect => "protect",
            Stage::SetMm => "set-mm",
            Stage::Threads => "threads",
            Stage::ThreadState => "thread-state",
            Stage::Resume => "resume",
        }
    }

    /// What the restorer does in this stage, as a sentence fragment that
    /// fits "failed while ..." (`"mapping memory"`).
    pub fn description(self) -> &'static str {
        match self {
            Stage::Start => "starting the restorer",
            Stage::Args => "reading the restore arguments",
            Stage::Metadata => "reading the metadata",
            Stage::Unmap => "clearing the address space",
            Stage::Vdso => "moving the vDSO",
            Stage::MapMemory => "mapping memory",
            Stage::LoadPages => "loading pages",
            Stage::Protect => "setting memory protection",
            Stage::SetMm => "setting mm fields",
            Stage::Threads => "creating threads",
            Stage::ThreadState => "restoring thread state",
            Stage::Resume => "resuming the process",
        }
    }
}

impl core::fmt::Display for Stage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.description())
    }
}

/// Why a status record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    /// Fewer than [`STATUS_LEN`] bytes.
    Truncated(usize),
    /// The magic does not match.
    BadMagic,
    /// Unknown kind value.
    BadKind(u32),
    /// Unknown stage value.
    BadStage(u32),
}

impl core::fmt::Display for StatusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated(n) => write!(f, "the status record has {n} of {STATUS_LEN} bytes"),
            Self::BadMagic => write!(f, "the status record does not start with its magic"),
            Self::BadKind(k) => write!(f, "the status record has unknown kind {k}"),
            Self::BadStage(s) => write!(f, "the status record has unknown stage {s}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StatusError {}

/// One status record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// What the record reports.
    pub kind: StatusKind,
    /// The stage it concerns.
    pub stage: Stage,
    /// Positive errno of the failed system call, 0 if none.
    pub errno: i32,
    /// Address, id or count the record is about (see the restorer).
    pub object: u64,
    /// A second value (e.g. a length).
    pub aux: u64,
    detail: [u8; DETAIL_MAX],
    detail_len: usize,
}

impl core::fmt::Debug for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Status")
            .field("kind", &self.kind)
            .field("stage", &self.stage)
            .field("errno", &self.errno)
            .field("object", &format_args!("{:#x}", self.object))
            .field("aux", &format_args!("{:#x}", self.aux))
            .field("detail", &DetailText(self.detail()))
            .finish()
    }
}

struct DetailText<'a>(&'a [u8]);

impl core::fmt::Debug for DetailText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.utf8_chunks() {
            write!(f, "{}", chunk.valid().escape_debug())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

impl Status {
    /// A record with no detail text.
    pub fn new(kind: StatusKind, stage: Stage) -> Status {
        Status {
            kind,
            stage,
            errno: 0,
            object: 0,
            aux: 0,
            detail: [0; DETAIL_MAX],
            detail_len: 0,
        }
    }

    /// A progress record for entering `stage`.
    pub fn progress(stage: Stage) -> Status {
        Status::new(StatusKind::Progress, stage)
    }

    /// A byte progress record while loading pages: `done` of `total` bytes
    /// of page data are loaded.
    pub fn bytes(done: u64, total: u64) -> Status {
        Status {
            object: done,
            aux: total,
            ..Status::new(StatusKind::Progress, Stage::LoadPages)
        }
    }

    /// The success record.
    pub fn ok() -> Status {
        Status::new(StatusKind::Ok, Stage::Resume)
    }

    /// An error record.
    pub fn error(stage: Stage, errno: i32, object: u64) -> Status {
        Status {
            errno,
            object,
            ..Status::new(StatusKind::Error, stage)
        }
    }

    /// Sets `aux`.
    pub fn with_aux(mut self, aux: u64) -> Status {
        self.aux = aux;
        self
    }

    /// Replaces the detail text (truncated to [`DETAIL_MAX`] bytes).
    pub fn with_detail(mut self, text: &[u8]) -> Status {
        self.detail_len = 0;
        self.push_detail(text);
        self
    }

    /// Appends to the detail text, truncating at [`DETAIL_MAX`] bytes.
    pub fn push_detail(&mut self, text: &[u8]) {
        let n = text.len().min(DETAIL_MAX - self.detail_len);
        self.detail[self.detail_len..self.detail_len + n].copy_from_slice(&text[..n]);
        self.detail_len += n;
    }

    /// The detail text: a path, a name or a short explanation.
    pub fn detail(&self) -> &[u8] {
        &self.detail[..self.detail_len]
    }

    /// Encodes the record.
    pub fn encode(&self) -> [u8; STATUS_LEN] {
        let mut b = [0u8; STATUS_LEN];
        b[0..8].copy_from_slice(&STATUS_MAGIC);
        b[8..12].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b[12..16].copy_from_slice(&(self.stage as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.errno.to_le_bytes());
        b[20..24].copy_from_slice(&(self.detail_len as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.object.to_le_bytes());
        b[32..40].copy_from_slice(&self.aux.to_le_bytes());
        b[40..40 + self.detail_len].copy_from_slice(self.detail());
        b
    }

    /// Decodes a record.
    pub fn decode(b: &[u8]) -> Result<Status, StatusError> {
        if b.len() < STATUS_LEN {
            return Err(StatusError::Truncated(b.len()));
        }
        if b[0..8] != STATUS_MAGIC {
            return Err(StatusError::BadMagic);
        }
        let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let le64 = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let kind = StatusKind::from_u32(le32(8)).ok_or(StatusError::BadKind(le32(8)))?;
        let stage = Stage::from_u32(le32(12)).ok_or(StatusError::BadStage(le32(12)))?;
        let detail_len = (le32(20) as usize).min(DETAIL_MAX);
        let mut detail = [0u8; DETAIL_MAX];
        detail[..detail_len].copy_from_slice(&b[40..40 + detail_len]);
        Ok(Status {
            kind,
            stage,
            errno: le32(16) as i32,
            object: le64(24),
            aux: le64(32),
            detail,
            detail_len,
        })
    }
}

/// Formatting into the detail text (truncating), for `write!` in `no_std`.
impl core::fmt::Write for Status {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push_detail(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn records_round_trip() {
        let mut s = Status::error(Stage::MapMemory, 12, 0x7f00_0000_1000).with_aux(4096);
        let path = "/usr/lib/libc.so.6";
        write!(s, "mmap of {path} failed").unwrap();
        let b = s.encode();
        assert_eq!(b.len(), STATUS_LEN);
        let d = Status::decode(&b).unwrap();
        assert_eq!(d, s);
        assert_eq!(d.detail(), b"mmap of /usr/lib/libc.so.6 failed");
        assert_eq!(d.kind, StatusKind::Error);
        assert_eq!(d.stage.description(), "mapping memory");
        assert_eq!(
            Status::decode(&Status::ok().encode()).unwrap().kind,
            StatusKind::Ok
        );
    }

    #[test]
    fn byte_progress_round_trips() {
        let d = Status::decode(&Status::bytes(3 << 20, 1 << 30).encode()).unwrap();
        assert_eq!(
            (d.kind, d.stage, d.object, d.aux),
            (StatusKind::Progress, Stage::LoadPages, 3 << 20, 1 << 30)
        );
    }

    #[test]
    fn long_detail_is_truncated() {
        let s = Status::progress(Stage::Threads).with_detail(&[b'x'; 1000]);
        assert_eq!(s.detail().len(), DETAIL_MAX);
        assert_eq!(
            Status::decode(&s.encode()).unwrap().detail().len(),
            DETAIL_MAX
        );
    }

    #[test]
    fn damage_is_refused() {
        let b = Status::ok().encode();
        assert_eq!(Status::decode(&b[..100]), Err(StatusError::Truncated(100)));
        let mut c = b;
        c[0] = b'X';
        assert_eq!(Status::decode(&c), Err(StatusError::BadMagic));
        let mut c = b;
        c[8] = 9;
        assert_eq!(Status::decode(&c), Err(StatusError::BadKind(9)));
        let mut c = b;
        c[12] = 99;
        assert_eq!(Status::decode(&c), Err(StatusError::BadStage(99)));
    }

    #[test]
    fn stages_have_names_and_descriptions() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_u32(s as u32), Some(s));
            assert!(!s.name().is_empty());
            let d = s.description();
            assert!(d.chars().next().unwrap().is_lowercase());
        }
    }
}
