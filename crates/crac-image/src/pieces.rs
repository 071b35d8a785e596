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
