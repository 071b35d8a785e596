//! Per-piece hashes of the page data (the piece table, [`Tag::Pieces`]).
//!
//! The page data of `pages.crac` (the bytes after its header page) is cut
//! into pieces of [`PIECE_LEN`] bytes by file offset, the last one possibly
//! shorter; the table holds the XXH3-64 hash of each. A restore checks only
//! the pieces it loads, when it loads them, so its time does not grow with
//! the size of the image; `inspect --verify` and `restore --verify` check
//! them all.
//!
//! Allocation-free: the dump hashes in its stopped phase ([`PieceHasher`])
//! and the restorer checks pieces in `no_std` ([`piece_hash`]).

use crate::wire::{DecodeError, Reader, Writer};
use crate::{Tag, PAGES_HEADER_LEN};

/// Bytes of page data per piece (the last piece of a file may be shorter).
pub const PIECE_LEN: u64 = 64 * 1024;
/// [`PieceTable::kind`]: XXH3 with 64-bit output and seed 0.
pub const PIECE_HASH_XXH3_64: u32 = 1;
/// Encoded size of the piece table's fixed fields.
pub const PIECE_TABLE_HEADER_LEN: usize = 16;

/// The hash of one piece.
pub fn piece_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// Number of pieces of a page file of `pages_len` bytes (header page
/// included).
pub fn piece_count(pages_len: u64) -> u64 {
    pages_len
        .saturating_sub(PAGES_HEADER_LEN)
        .div_ceil(PIECE_LEN)
}

/// File offsets `[start, end)` of piece `index` of a page file of
/// `pages_len` bytes, or `None` past the last piece.
pub fn piece_range(index: u64, pages_len: u64) -> Option<(u64, u64)> {
    if index >= piece_count(pages_len) {
        return None;
    }
    let start = PAGES_HEADER_LEN + index * PIECE_LEN;
    Some((start, (start + PIECE_LEN).min(pages_len)))
}

/// Indexes of the pieces that hold any byte of the file range
/// `[off, off + len)` (`off` at or after the header page, `len` > 0).
pub fn pieces_of(off: u64, len: u64) -> core::ops::Range<u64> {
    let data = off.saturating_sub(PAGES_HEADER_LEN);
    let end = data.saturating_add(len.max(1));
    data / PIECE_LEN..end.div_ceil(PIECE_LEN)
}

/// The piece table: tag 15, once per image of format 1.3 and later.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | piece length in bytes ([`PIECE_LEN`]) |
/// | 4 | 4 | hash kind ([`PIECE_HASH_XXH3_64`]) |
/// | 8 | 8 | piece count |
/// | 16 | 8 × count | the hashes, in file order |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceTable<'a> {
    /// Hash kind.
    pub kind: u32,
    hashes: &'a [u8],
}

impl<'a> PieceTable<'a> {
    /// Encodes a [`Tag::Pieces`] section with `hashes`.
    pub fn encode(w: &mut Writer<'_>, hashes: &[u64]) {
        w.section(Tag::Pieces as u32, |w| {
            w.u32(PIECE_LEN as u32);
            w.u32(PIECE_HASH_XXH3_64);
            w.u64(hashes.len() as u64);
            for h in hashes {
                w.u64(*h);
            }
        });
    }

    /// Decodes a [`Tag::Pieces`] payload. Refuses another piece length or
    /// hash kind, and a count the payload does not hold. Whether the count
    /// fits the page file is [`PieceTable::check`]'s business.
    pub fn decode(r: &mut Reader<'a>) -> Result<PieceTable<'a>, DecodeError> {
        let piece_len = r.u32()?;
        let kind = r.u32()?;
        let count = r.u64()?;
        if u64::from(piece_len) != PIECE_LEN {
            return Err(DecodeError::Invalid {
                what: "piece length (must be 65536)",
            });
        }
        if kind != PIECE_HASH_XXH3_64 {
            return Err(DecodeError::Invalid {
                what: "piece hash kind",
            });
        }
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .ok_or(DecodeError::Invalid {
                what: "piece count",
            })?;
        let hashes = r.bytes(bytes)?;
        Ok(PieceTable { kind, hashes })
    }

    /// Number of pieces.
    pub fn len(&self) -> u64 {
        (self.hashes.len() / 8) as u64
    }

    /// Whether the table is empty (a page file without page data).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The recorded hash of piece `index`.
    pub fn get(&self, index: u64) -> Option<u64> {
        let at = usize::try_from(index).ok()?.checked_mul(8)?;
        let b = self.hashes.get(at..at.checked_add(8)?)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    /// The hashes in file order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        self.hashes.chunks_exact(8).map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
    }

    /// Whether the table has one hash per piece of a page file of
    /// `pages_len` bytes.
    pub fn check(&self, pages_len: u64) -> Result<(), PieceCountError> {
        let expected = piece_count(pages_len);
        if self.len() != expected {
            return Err(PieceCountError {
                found: self.len(),
                expected,
                pages_len,
            });
        }
        Ok(())
    }
}

/// [`StoredPiece::method`]: the piece is stored as it is.
pub const STORED_RAW: u32 = 0;
/// [`StoredPiece::method`] and [`StoredPieces::compression`]: an LZ4 block
/// (no frame, no size prefix).
pub const STORED_LZ4: u32 = 1;
/// [`StoredPiece::method`] and [`StoredPieces::compression`]: one Zstandard
/// frame.
pub const STORED_ZSTD: u32 = 2;
/// Encoded size of the stored-pieces table's fixed fields.
pub const STORED_TABLE_HEADER_LEN: usize = 24;
/// Encoded size of one [`StoredPiece`].
pub const STORED_PIECE_LEN: usize = 16;

/// Name of a storage method, for messages and JSON.
pub fn method_name(method: u32) -> &'static str {
    match method {
        STORED_RAW => "raw",
        STORED_LZ4 => "lz4",
        STORED_ZSTD => "zstd",
        _ => "unknown",
    }
}

/// Where and how one piece of a compressed image is stored in `pages.crac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredPiece {
    /// Offset of its stored bytes in `pages.crac`.
    pub offset: u64,
    /// Number of stored bytes (at most [`PIECE_LEN`]).
    pub len: u32,
    /// [`STORED_RAW`], [`STORED_LZ4`] or [`STORED_ZSTD`].
    pub method: u32,
}

impl StoredPiece {
    /// Encodes the 16-byte entry.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.offset);
        w.u32(self.len);
        w.u32(self.method);
    }
}

/// The stored-pieces table: tag 16, once in a compressed image (format 1.4
/// and later). Page run offsets and the piece table then describe the
/// *uncompressed* page data (`PAGES_HEADER_LEN + data_len` bytes, as if it
/// followed the header page); this table says where each piece of it lies in
/// `pages.crac` and how it is stored.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | compression the dump used ([`STORED_LZ4`], [`STORED_ZSTD`]) |
/// | 4 | 4 | zero |
/// | 8 | 8 | uncompressed page data length (a multiple of 4096) |
/// | 16 | 8 | count (the piece table's) |
/// | 24 | 16 × count | [`StoredPiece`]: offset u64, stored length u32, method u32 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPieces<'a> {
    /// The compression the dump used (pieces it did not shrink are raw).
    pub compression: u32,
    /// Bytes of uncompressed page data.
    pub data_len: u64,
    entries: &'a [u8],
}

impl<'a> StoredPieces<'a> {
    /// Encodes a [`Tag::Stored`] section.
    pub fn encode(w: &mut Writer<'_>, compression: u32, data_len: u64, pieces: &[StoredPiece]) {
        w.section(Tag::Stored as u32, |w| {
            w.u32(compression);
            w.u32(0);
            w.u64(data_len);
            w.u64(pieces.len() as u64);
            for p in pieces {
                p.encode(w);
            }
        });
    }

    /// Decodes a [`Tag::Stored`] payload. Refuses an unknown compression
    /// and a count the payload does not hold; whether the entries fit the
    /// files is [`StoredPieces::check`]'s business.
    pub fn decode(r: &mut Reader<'a>) -> Result<StoredPieces<'a>, DecodeError> {
        let compression = r.u32()?;
        let _zero = r.u32()?;
        let data_len = r.u64()?;
        let count = r.u64()?;
        if compression != STORED_LZ4 && compression != STORED_ZSTD {
            return Err(DecodeError::Invalid {
                what: "page data compression",
            });
        }
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(STORED_PIECE_LEN))
            .ok_or(DecodeError::Invalid {
                what: "stored piece count",
            })?;
        let entries = r.bytes(bytes)?;
        Ok(StoredPieces {
            compression,
            data_len,
            entries,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        (self.entries.len() / STORED_PIECE_LEN) as u64
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entry `index`.
    pub fn get(&self, index: u64) -> Option<StoredPiece> {
        let at = usize::try_from(index).ok()?.checked_mul(STORED_PIECE_LEN)?;
        let b = self.entries.get(at..at.checked_add(STORED_PIECE_LEN)?)?;
        Some(entry(b))
    }

    /// The entries in piece order.
    pub fn iter(&self) -> impl Iterator<Item = StoredPiece> + 'a {
        self.entries.chunks_exact(STORED_PIECE_LEN).map(entry)
    }

    /// The page file length the piece offsets refer to: the header page
    /// and the uncompressed page data.
    pub fn logical_len(&self) -> u64 {
        PAGES_HEADER_LEN.saturating_add(self.data_len)
    }

    /// Checks the entries against a page file of `pages_len` bytes (header
    /// page included), see [`check_stored`].
    pub fn check(&self, pages_len: u64) -> Result<(), StoredError> {
        check_stored(self.data_len, self.iter(), pages_len)
    }
}

fn entry(b: &[u8]) -> StoredPiece {
    let mut o = [0u8; 8];
    o.copy_from_slice(&b[..8]);
    let mut l = [0u8; 4];
    l.copy_from_slice(&b[8..12]);
    let mut m = [0u8; 4];
    m.copy_from_slice(&b[12..16]);
    StoredPiece {
        offset: u64::from_le_bytes(o),
        len: u32::from_le_bytes(l),
        method: u32::from_le_bytes(m),
    }
}

/// Checks a stored-pieces table: the uncompressed length is whole pages,
/// there is one entry per piece of it, every entry has a known method, a
/// stored length of 1 to [`PIECE_LEN`] bytes (a raw one exactly its piece's
/// length) and lies inside the page data of a `pages_len`-byte page file.
pub fn check_stored(
    data_len: u64,
    pieces: impl Iterator<Item = StoredPiece>,
    pages_len: u64,
) -> Result<(), StoredError> {
    if !data_len.is_multiple_of(4096) {
        return Err(StoredError::DataLen { data_len });
    }
    let logical = PAGES_HEADER_LEN.saturating_add(data_len);
    let mut n = 0u64;
    for (index, p) in (0u64..).zip(pieces) {
        n += 1;
        let piece_len = piece_range(index, logical).map_or(0, |(s, e)| e - s);
        let bad = |what| StoredError::Piece {
            index,
            offset: p.offset,
            len: p.len,
            method: p.method,
            what,
        };
        match p.method {
            STORED_RAW if u64::from(p.len) != piece_len => {
                return Err(bad("a raw piece must be stored whole"))
            }
            STORED_RAW | STORED_LZ4 | STORED_ZSTD => {}
            _ => return Err(bad("unknown storage method")),
        }
        if p.len == 0 || u64::from(p.len) > PIECE_LEN {
            return Err(bad("stored length out of range"));
        }
        let end = p.offset.checked_add(u64::from(p.len));
        if p.offset < PAGES_HEADER_LEN || end.is_none_or(|e| e > pages_len) {
            return Err(bad("stored bytes outside the page file"));
        }
    }
    let expected = piece_count(logical);
    if n != expected {
        return Err(StoredError::Count { found: n, expected });
    }
    Ok(())
}

/// A stored-pieces table that does not fit the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredError {
    /// The uncompressed length is not whole pages.
    DataLen {
        /// The recorded length.
        data_len: u64,
    },
    /// Not one entry per piece.
    Count {
        /// Entries in the table.
        found: u64,
        /// Pieces of the uncompressed page data.
        expected: u64,
    },
    /// An entry is out of range.
    Piece {
        /// Its index.
        index: u64,
        /// Its stored offset.
        offset: u64,
        /// Its stored length.
        len: u32,
        /// Its method.
        method: u32,
        /// What is wrong.
        what: &'static str,
    },
}

impl core::fmt::Display for StoredError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            StoredError::DataLen { data_len } => write!(
                f,
                "the stored-pieces table records {data_len} bytes of page data, not whole pages"
            ),
            StoredError::Count { found, expected } => write!(
                f,
                "the stored-pieces table has {found} entries, the page data has {expected} pieces of {PIECE_LEN} bytes"
            ),
            StoredError::Piece {
                index,
                offset,
                len,
                method,
                what,
            } => write!(
                f,
                "stored piece {index} ({len} bytes at {offset:#x}, method {method}): {what}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StoredError {}

/// A piece table whose count does not match the page file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceCountError {
    /// Hashes in the table.
    pub found: u64,
    /// Pieces of the page file.
    pub expected: u64,
    /// Length of the page file (header page included).
    pub pages_len: u64,
}

impl core::fmt::Display for PieceCountError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the piece table has {} hashes, the {}-byte page file has {} pieces of {PIECE_LEN} bytes",
            self.found, self.pages_len, self.expected
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PieceCountError {}

/// Hashes page data fed in file order, piece by piece, without allocating
/// (the dump runs it while the other threads are stopped).
#[derive(Clone)]
pub struct PieceHasher {
    state: xxhash_rust::xxh3::Xxh3,
    /// Bytes of the current piece fed so far.
    filled: u64,
}

impl core::fmt::Debug for PieceHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PieceHasher")
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl Default for PieceHasher {
    fn default() -> Self {
        PieceHasher::new()
    }
}

impl PieceHasher {
    /// A hasher at the start of the page data.
    pub const fn new() -> PieceHasher {
        PieceHasher {
            state: xxhash_rust::xxh3::Xxh3::new(),
            filled: 0,
        }
    }

    /// Feeds the next bytes of page data; calls `done` with the hash of each
    /// piece they complete.
    pub fn update(&mut self, mut data: &[u8], mut done: impl FnMut(u64)) {
        while !data.is_empty() {
            let room = (PIECE_LEN - self.filled) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.state.update(now);
            self.filled += now.len() as u64;
            data = rest;
            if self.filled == PIECE_LEN {
                done(self.state.digest());
                self.state.reset();
                self.filled = 0;
            }
        }
    }

    /// Ends the page data: calls `done` with the hash of the last, short
    /// piece if there is one.
    pub fn finish(&mut self, mut done: impl FnMut(u64)) {
        if self.filled > 0 {
            done(self.state.digest());
            self.state.reset();
            self.filled = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_counts() {
        let h = PAGES_HEADER_LEN;
        assert_eq!(piece_count(h), 0);
        assert_eq!(piece_count(h + 4096), 1);
        assert_eq!(piece_count(h + PIECE_LEN), 1);
        assert_eq!(piece_count(h + PIECE_LEN + 4096), 2);
        assert_eq!(
            piece_range(1, h + PIECE_LEN + 4096),
            Some((h + PIECE_LEN, h + PIECE_LEN + 4096))
        );
        assert_eq!(piece_range(2, h + PIECE_LEN + 4096), None);
        assert_eq!(pieces_of(h, 4096), 0..1);
        assert_eq!(pieces_of(h + PIECE_LEN - 4096, 8192), 0..2);
        assert_eq!(pieces_of(h + PIECE_LEN, PIECE_LEN), 1..2);
    }

    #[test]
    fn stored_pieces_round_trip_and_are_checked() {
        let h = PAGES_HEADER_LEN;
        let entries = [
            StoredPiece {
                offset: h,
                len: 100,
                method: STORED_LZ4,
            },
            StoredPiece {
                offset: h + 100,
                len: 8192,
                method: STORED_RAW,
            },
        ];
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        StoredPieces::encode(&mut w, STORED_LZ4, PIECE_LEN + 8192, &entries);
        let body = w.finish().unwrap();
        let mut r = Reader::new(body);
        let (tag, mut p) = r.next_section().unwrap().unwrap();
        assert_eq!(tag, Tag::Stored as u32);
        let t = StoredPieces::decode(&mut p).unwrap();
        assert_eq!(t.compression, STORED_LZ4);
        assert_eq!(t.logical_len(), h + PIECE_LEN + 8192);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(1), Some(entries[1]));
        assert_eq!(t.get(2), None);
        assert!(t.iter().eq(entries.iter().copied()));
        t.check(h + 8292).unwrap();
        // One byte short of the last piece's end.
        assert!(matches!(
            t.check(h + 8291),
            Err(StoredError::Piece { index: 1, .. })
        ));
        // Too few entries for the data.
        assert_eq!(
            check_stored(
                3 * PIECE_LEN,
                entries.iter().copied().take(1).chain([StoredPiece {
                    len: PIECE_LEN as u32,
                    ..entries[1]
                }]),
                1 << 30
            ),
            Err(StoredError::Count {
                found: 2,
                expected: 3
            })
        );
        // An unknown compression or a count the payload lacks.
        for (at, v) in [(0usize, 7u64), (16, 3)] {
            let mut b = body.to_vec();
            b[8 + at..8 + at + 8].copy_from_slice(&v.to_le_bytes());
            let mut r = Reader::new(&b);
            let (_, mut p) = r.next_section().unwrap().unwrap();
            assert!(StoredPieces::decode(&mut p).is_err(), "field {at}");
        }
    }

    #[test]
    fn streaming_matches_one_shot_hashes() {
        let data: [u8; 3 * PIECE_LEN as usize + 12288] =
            core::array::from_fn(|i| (i * 7 % 251) as u8);
        let mut got = [0u64; 4];
        let mut n = 0;
        let mut h = PieceHasher::new();
        // Odd feeding steps, across piece boundaries.
        for c in data.chunks(40_000) {
            h.update(c, |x| {
                got[n] = x;
                n += 1;
            });
        }
        h.finish(|x| {
            got[n] = x;
            n += 1;
        });
        assert_eq!(n, 4);
        for (i, c) in data.chunks(PIECE_LEN as usize).enumerate() {
            assert_eq!(got[i], piece_hash(c), "piece {i}");
        }
    }
}
