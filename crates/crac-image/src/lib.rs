//! The crac image format.
//!
//! An image is a directory with two files:
//!
//! * `meta.crac`: a fixed 64-byte [`Header`] followed by a body of
//!   tagged, 8-byte aligned sections ([`Tag`]). The header carries the format
//!   version, the body length and its CRC-32, and the length and CRC-32 of the
//!   page file.
//! * `pages.crac`: a 4096-byte header page ([`PAGES_MAGIC`]) followed by raw
//!   page data. Every run of pages starts at a page-aligned offset, so restore
//!   can read it with large `preadv` calls or map it.
//!
//! The core of this crate ([`wire`], [`records`]) is `no_std`, allocation-free
//! and shared with the restorer, which decodes the metadata in place. With the
//! `std` feature the crate adds an owned model of a whole image for tools
//! (`crac inspect`), JSON views and checksum verification.
//!
//! `docs/image-format.md` describes the byte layout and the version policy.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
pub mod compress;
pub mod creds;
#[cfg(feature = "std")]
pub mod dir;
#[cfg(feature = "std")]
pub mod leftover;
#[cfg(feature = "std")]
pub mod model;
pub mod pieces;
pub mod records;
pub mod status;
#[cfg(feature = "std")]
pub mod strict;
#[cfg(feature = "std")]
pub mod summary;
pub mod wire;

#[cfg(feature = "std")]
pub use compress::Decompressor;
pub use creds::{CredsRecord, CREDS_NO_NEW_PRIVS};
#[cfg(feature = "std")]
pub use dir::{prepare_temp_dir, ImageDirError, ImageWriteError, TempImageDir};
#[cfg(feature = "std")]
pub use leftover::{clean_leftovers, find_leftovers, Leftover, LeftoverState};
#[cfg(feature = "std")]
pub use model::{
    DecodeBodyError, Image, ImageReadError, SanityError, Stored, VerifyError, MAX_META_LEN,
};
pub use pieces::{
    check_stored, method_name, piece_count, piece_hash, piece_range, pieces_of, PieceCountError,
    PieceHasher, PieceTable, StoredError, StoredPiece, StoredPieces, PIECE_HASH_XXH3_64, PIECE_LEN,
    STORED_LZ4, STORED_PIECE_LEN, STORED_RAW, STORED_TABLE_HEADER_LEN, STORED_ZSTD,
};
pub use records::*;
#[cfg(feature = "std")]
pub use strict::{ImageDir, VerifiedImage};
#[cfg(feature = "std")]
pub use summary::ImageSummary;
pub use wire::{DecodeError, EncodeError, Reader, Writer};

/// Format version written by this build: `(major, minor)`.
///
/// Readers accept the same major and a minor no newer than theirs; unknown
/// sections of an older minor are skipped.
pub const FORMAT_VERSION: (u16, u16) = (1, 4);

/// First minor version whose images carry a piece table ([`PieceTable`]);
/// its readers ignore the header's page data CRC (written as 0).
pub const PIECES_MINOR: u16 = 3;

/// First minor version whose images may store the page data compressed
/// ([`StoredPieces`], tag 16).
pub const COMPRESSION_MINOR: u16 = 4;

/// Magic at the start of `meta.crac`.
pub const META_MAGIC: [u8; 8] = *b"CRACIMG\0";
/// Magic at the start of `pages.crac`.
pub const PAGES_MAGIC: [u8; 8] = *b"CRACPAG\0";
/// File name of the metadata file inside an image directory.
pub const META_FILE: &str = "meta.crac";
/// File name of the page file inside an image directory.
pub const PAGES_FILE: &str = "pages.crac";
/// Size of the header page of `pages.crac`; page data starts here.
pub const PAGES_HEADER_LEN: u64 = 4096;
/// In a lazy restore, a private anonymous area with pages of at most this
/// length is loaded by the restorer before the resume, while such areas
/// total at most [`EAGER_SMALL_AREAS`] bytes (in address order): the
/// program's first steps touch its stacks, heap and malloc arenas at once,
/// and each fault served lazily costs a round trip through `crac restore`.
/// Larger areas, and small ones past the budget, are loaded lazily.
pub const SMALL_AREA_MAX: u64 = 1 << 20;
/// The budget of [`SMALL_AREA_MAX`].
pub const EAGER_SMALL_AREAS: u64 = 2 << 20;

/// Whether the private anonymous area `len` bytes long with pages, after
/// `used` bytes of such areas were loaded before the resume, is loaded
/// before the resume too (then `used` grows by `len`): the one rule the
/// restorer and `crac restore` both follow.
pub fn eager_small_area(len: u64, used: &mut u64) -> bool {
    if len <= SMALL_AREA_MAX && *used + len <= EAGER_SMALL_AREAS {
        *used += len;
        true
    } else {
        false
    }
}

/// Page size the format assumes (x86-64).
pub const PAGE_SIZE: u64 = 4096;
/// ELF machine number of x86-64, the only architecture images are made for.
pub const ARCH_X86_64: u32 = 62;

/// Base address of the restorer's zone: its code, stack, the mapped metadata
/// and per-thread stacks all live in `[RESTORER_ZONE_BASE, +RESTORER_ZONE_LEN)`.
/// A process whose mappings intersect this range cannot be restored; the
/// restore preflight reports that as a collision.
pub const RESTORER_ZONE_BASE: u64 = 0x2a00_0000_0000;
/// Length of the restorer's zone.
pub const RESTORER_ZONE_LEN: u64 = 0x1000_0000;

/// The fixed 64-byte header of `meta.crac`.
///
/// | offset | field |
/// |---|---|
/// | 0 | magic `CRACIMG\0` |
/// | 8 | major u16, minor u16 |
/// | 12 | header length u32 (64) |
/// | 16 | body length u64 |
/// | 24 | body CRC-32 u32 |
/// | 28 | architecture u32 (62 = x86-64) |
/// | 32 | page file length u64 |
/// | 40 | page file data CRC-32 u32 (bytes after the header page); 0 and
///        unused from minor [`PIECES_MINOR`] on (the piece table replaces it) |
/// | 44 | reserved, zero (16 bytes) |
/// | 60 | header CRC-32 u32 over bytes 0..60 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format major version.
    pub major: u16,
    /// Format minor version.
    pub minor: u16,
    /// Length of the body that follows the header.
    pub body_len: u64,
    /// CRC-32 (IEEE) of the body.
    pub body_crc: u32,
    /// ELF machine number.
    pub arch: u32,
    /// Total length of `pages.crac`, header page included.
    pub pages_len: u64,
    /// CRC-32 (IEEE) of the page data after the header page; 0 and unused
    /// in images with a piece table (minor [`PIECES_MINOR`] and later).
    pub pages_crc: u32,
}

/// Length of [`Header`] on disk.
pub const HEADER_LEN: usize = 64;

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 64 bytes.
    Truncated,
    /// Not a crac image.
    BadMagic,
    /// The header's own checksum does not match.
    BadChecksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum computed over the header bytes.
        computed: u32,
    },
    /// Made by a newer, incompatible crac.
    UnsupportedVersion {
        /// Image major version.
        major: u16,
        /// Image minor version.
        minor: u16,
    },
    /// Made for another architecture.
    ForeignArch(u32),
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => write!(f, "the metadata file is shorter than its {HEADER_LEN}-byte header"),
            Self::BadMagic => write!(f, "the metadata file does not start with the crac magic"),
            Self::BadChecksum { stored, computed } => write!(
                f,
                "the header checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::UnsupportedVersion { major, minor } => write!(
                f,
                "format version {major}.{minor} is not supported (this build reads {}.0 to {}.{})",
                FORMAT_VERSION.0, FORMAT_VERSION.0, FORMAT_VERSION.1
            ),
            Self::ForeignArch(a) => write!(f, "the image is for ELF machine {a}, not x86-64 ({ARCH_X86_64})"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for HeaderError {}

impl Header {
    /// Encodes the header, computing its own checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&META_MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.body_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.body_crc.to_le_bytes());
        b[28..32].copy_from_slice(&self.arch.to_le_bytes());
        b[32..40].copy_from_slice(&self.pages_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.pages_crc.to_le_bytes());
        let crc = crc32(0, &b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header: magic, own checksum, version, architecture.
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Truncated);
        }
        if b[0..8] != META_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let le64 = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let stored = le32(60);
        let computed = crc32(0, &b[0..60]);
        if stored != computed {
            return Err(HeaderError::BadChecksum { stored, computed });
        }
        let major = u16::from_le_bytes([b[8], b[9]]);
        let minor = u16::from_le_bytes([b[10], b[11]]);
        if major != FORMAT_VERSION.0 || minor > FORMAT_VERSION.1 {
            return Err(HeaderError::UnsupportedVersion { major, minor });
        }
        let arch = le32(28);
        if arch != ARCH_X86_64 {
            return Err(HeaderError::ForeignArch(arch));
        }
        Ok(Header {
            major,
            minor,
            body_len: le64(16),
            body_crc: le32(24),
            arch,
            pages_len: le64(32),
            pages_crc: le32(40),
        })
    }
}

/// Encodes the 4096-byte header page of `pages.crac`.
pub fn encode_pages_header(page_count: u64) -> [u8; PAGES_HEADER_LEN as usize] {
    let mut b = [0u8; PAGES_HEADER_LEN as usize];
    b[0..8].copy_from_slice(&PAGES_MAGIC);
    b[8..10].copy_from_slice(&FORMAT_VERSION.0.to_le_bytes());
    b[10..12].copy_from_slice(&FORMAT_VERSION.1.to_le_bytes());
    b[16..24].copy_from_slice(&page_count.to_le_bytes());
    b
}

/// Reads the page count from a `pages.crac` header page, or `None` if the
/// magic does not match.
pub fn decode_pages_header(b: &[u8]) -> Option<u64> {
    if b.len() < 24 || b[0..8] != PAGES_MAGIC {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[16..24]);
    Some(u64::from_le_bytes(a))
}

/// CRC-32 (IEEE 802.3, reflected, as zlib) continuing from `crc`.
///
/// A plain table-free implementation: the core must stay dependency-free for
/// the restorer. The engine uses a faster implementation with the same result
/// for page data.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &byte in data {
        c ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (c & 1).wrapping_neg();
            c = (c >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_known_vector() {
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(crc32(0, b"1234"), b"56789"), 0xCBF4_3926);
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = Header {
            major: 1,
            minor: 0,
            body_len: 1234,
            body_crc: 0xdead_beef,
            arch: ARCH_X86_64,
            pages_len: 8192,
            pages_crc: 7,
        };
        let mut b = h.encode();
        assert_eq!(Header::decode(&b), Ok(h));
        b[17] ^= 1;
        assert!(matches!(
            Header::decode(&b),
            Err(HeaderError::BadChecksum { .. })
        ));
        assert_eq!(Header::decode(&b[..10]), Err(HeaderError::Truncated));
        let mut c = h.encode();
        c[0] = b'X';
        assert_eq!(Header::decode(&c), Err(HeaderError::BadMagic));
    }
}
