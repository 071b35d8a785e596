//! The page file of a compressed image (format 1.4): the page data is cut
//! into 64 KiB pieces, each stored compressed (or raw if that does not
//! shrink it) one after the other after the header page. Every buffer is
//! allocated before the stop; the stopped phase only fills them.
//!
//! Stored pieces have any length, so they go out through an aligned buffer
//! in whole pages (O_DIRECT works on them); the tail is padded with zeros
//! to a page.

use crac_image::{StoredPiece, PIECE_LEN, STORED_LZ4, STORED_RAW, STORED_ZSTD};
use crac_sys::{sys, Errno};

use super::zstd::StaticCctx;
use crate::native::Compression;

const PAGE: usize = 4096;
/// Bytes written per `pwrite`.
const OUT_LEN: usize = 4 << 20;

/// Compresses and writes pieces; see the module documentation.
pub(super) struct Packer {
    pub(super) compression: Compression,
    /// The piece being gathered (uncompressed).
    pub(super) piece: Box<[u8]>,
    pub(super) piece_len: usize,
    scratch: Box<[u8]>,
    out: Box<[u8]>,
    /// Offset of the aligned part of `out`.
    out_start: usize,
    /// Bytes in `out` not yet written.
    out_len: usize,
    /// File offset of `out`'s first byte (page-aligned).
    file_off: u64,
    /// Bytes of stored pieces so far.
    stored_bytes: u64,
    /// One entry per piece (capacity sized before the stop).
    pub(super) stored: Vec<StoredPiece>,
    pub(super) overflow: bool,
    lz4: lz4_flex::block::CompressTable,
    zstd: Option<StaticCctx>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("compression", &self.compression)
            .field("stored", &self.stored.len())
            .finish_non_exhaustive()
    }
}

impl Packer {
    /// Allocates every buffer for up to `pieces` pieces (before the stop).
    pub(super) fn new(compression: Compression, pieces: usize) -> Packer {
        let piece_len = PIECE_LEN as usize;
        let bound = lz4_flex::block::get_maximum_output_size(piece_len)
            .max(piece_len + piece_len / 8 + 1024);
        let out = vec![0u8; OUT_LEN + 2 * PAGE].into_boxed_slice();
        let out_start = (PAGE - out.as_ptr() as usize % PAGE) % PAGE;
        Packer {
            compression,
            piece: vec![0u8; piece_len].into_boxed_slice(),
            piece_len: 0,
            scratch: vec![0u8; bound].into_boxed_slice(),
            out,
            out_start,
            out_len: 0,
            file_off: crac_image::PAGES_HEADER_LEN,
            stored_bytes: 0,
            stored: Vec::with_capacity(pieces),
            overflow: false,
            lz4: lz4_flex::block::CompressTable::large(),
            zstd: if compression == Compression::Zstd {
                StaticCctx::new()
            } else {
                None
            },
        }
    }

    /// Back to the start of the page data (a dump's second attempt).
    pub(super) fn reset(&mut self) {
        self.piece_len = 0;
        self.out_len = 0;
        self.file_off = crac_image::PAGES_HEADER_LEN;
        self.stored_bytes = 0;
        self.stored.clear();
        self.overflow = false;
    }

    /// The image's compression code.
    pub(super) fn method(&self) -> u32 {
        match self.compression {
            Compression::Zstd => STORED_ZSTD,
            _ => STORED_LZ4,
        }
    }

    /// Room left in the piece being gathered.
    pub(super) fn room(&mut self) -> &mut [u8] {
        &mut self.piece[self.piece_len..]
    }

    /// Stores the gathered piece (full, or the last one) and returns its
    /// hash.
    pub(super) fn emit(&mut self, fd: i32) -> Result<u64, Errno> {
        let len = self.piece_len;
        let data = &self.piece[..len];
        let hash = crac_image::piece_hash(data);
        let packed = match self.compression {
            Compression::None => None,
            Compression::Lz4 => {
                lz4_flex::block::compress_into_with_table(data, &mut self.scratch, &mut self.lz4)
                    .ok()
                    .map(|n| (n, STORED_LZ4))
            }
            Compression::Zstd => self
                .zstd
                .as_mut()
                .and_then(|z| z.compress(data, &mut self.scratch))
                .map(|n| (n, STORED_ZSTD)),
        };
        let (n, method) = match packed {
            Some((n, m)) if n > 0 && n < len => (n, m),
            _ => (len, STORED_RAW),
        };
        if self.stored.len() == self.stored.capacity() {
            self.overflow = true;
        } else {
            self.stored.push(StoredPiece {
                offset: crac_image::PAGES_HEADER_LEN + self.stored_bytes,
                len: n as u32,
                method,
            });
        }
        self.stored_bytes += n as u64;
        let src_from_piece = method == STORED_RAW;
        let mut done = 0;
        while done < n {
            let room = OUT_LEN - self.out_len;
            let k = room.min(n - done);
            let at = self.out_start + self.out_len;
            let src = if src_from_piece {
                &self.piece[done..done + k]
            } else {
                &self.scratch[done..done + k]
            };
            self.out[at..at + k].copy_from_slice(src);
            self.out_len += k;
            done += k;
            if self.out_len == OUT_LEN {
                self.flush(fd, false)?;
            }
        }
        self.piece_len = 0;
        Ok(hash)
    }

    /// Writes the whole pages of `out` (with `last`: all of it, padded with
    /// zeros to a page) and keeps the rest at its start.
    pub(super) fn flush(&mut self, fd: i32, last: bool) -> Result<(), Errno> {
        let s = self.out_start;
        let mut whole = self.out_len / PAGE * PAGE;
        if last && whole < self.out_len {
            let end = self.out_len.next_multiple_of(PAGE);
            self.out[s + self.out_len..s + end].fill(0);
            whole = end;
            self.out_len = end;
        }
        if whole > 0 {
            let addr = self.out[s..].as_ptr() as u64;
            sys::pwrite_from_addr(fd, addr, whole as u64, self.file_off)?;
            self.file_off += whole as u64;
            self.out.copy_within(s + whole..s + self.out_len, s);
            self.out_len -= whole;
        }
        Ok(())
    }

    /// Length of the page file once [`Packer::flush`] wrote the last bytes.
    pub(super) fn file_len(&self) -> u64 {
        self.file_off + self.out_len as u64
    }

    /// Writes the page file's header page (`pages` pages of stored data
    /// after it) at offset 0, from the aligned buffer.
    pub(super) fn write_header(&mut self, fd: i32, pages: u64) -> Result<(), Errno> {
        let head = crac_image::encode_pages_header(pages);
        let s = self.out_start;
        self.out[s..s + head.len()].copy_from_slice(&head);
        let addr = self.out[s..].as_ptr() as u64;
        sys::pwrite_from_addr(fd, addr, head.len() as u64, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_through_a_file() {
        for c in [Compression::Lz4, Compression::Zstd] {
            let f = tempfile::tempfile().unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            let mut p = Packer::new(c, 4);
            // Compressible, incompressible, compressible short piece.
            let mut x = 0x1234_5678_u32;
            let noise: Vec<u8> = (0..PIECE_LEN)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let text: Vec<u8> = b"warm cache line "
                .iter()
                .copied()
                .cycle()
                .take(PIECE_LEN as usize)
                .collect();
            let pieces: [&[u8]; 3] = [&text, &noise, &text[..8192]];
            let mut hashes = Vec::new();
            for data in pieces {
                p.room()[..data.len()].copy_from_slice(data);
                p.piece_len = data.len();
                hashes.push(p.emit(fd).unwrap());
            }
            p.flush(fd, true).unwrap();
            let len = p.file_len();
            assert_eq!(len % 4096, 0);
            assert_eq!(p.stored[1].method, STORED_RAW, "{c:?}");
            assert_ne!(p.stored[0].method, STORED_RAW, "{c:?}");
            assert!(len < 4096 + 2 * PIECE_LEN, "{c:?}: {len}");
            let bytes = {
                use std::os::unix::fs::FileExt;
                let mut b = vec![0u8; len as usize];
                f.read_exact_at(&mut b, 0).unwrap();
                b
            };
            let mut dec = crac_image::Decompressor::new();
            for (i, s) in p.stored.iter().enumerate() {
                let src = &bytes[s.offset as usize..s.offset as usize + s.len as usize];
                let mut out = vec![0u8; pieces[i].len()];
                dec.piece(s.method, src, &mut out).unwrap();
                assert_eq!(out, pieces[i], "{c:?} piece {i}");
                assert_eq!(crac_image::piece_hash(&out), hashes[i]);
            }
        }
    }
}
