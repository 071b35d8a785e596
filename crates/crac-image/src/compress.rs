//! Decompression of the stored pieces of a compressed image (format 1.4,
//! [`StoredPieces`](crate::StoredPieces)). The input is hostile: a piece
//! decompresses into a buffer of exactly its length or is refused.

use crate::pieces::{STORED_LZ4, STORED_RAW, STORED_ZSTD};

/// Decompresses pieces, reusing its buffers and its Zstandard context.
pub struct Decompressor {
    zstd: Option<zstd_safe::DCtx<'static>>,
    /// Stored bytes of the piece being read ([`Image::load_piece`](crate::Image::load_piece)).
    pub(crate) input: Vec<u8>,
}

impl core::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Decompressor::new()
    }
}

impl Decompressor {
    /// A decompressor; the Zstandard context is made on first use.
    pub fn new() -> Decompressor {
        Decompressor {
            zstd: None,
            input: Vec::new(),
        }
    }

    /// Decompresses `src`, stored with `method`, into all of `out`: an
    /// error unless it yields exactly `out.len()` bytes.
    pub fn piece(&mut self, method: u32, src: &[u8], out: &mut [u8]) -> Result<(), String> {
        let n = match method {
            STORED_RAW => {
                if src.len() != out.len() {
                    return Err(format!("a raw piece of {} bytes", src.len()));
                }
                out.copy_from_slice(src);
                src.len()
            }
            STORED_LZ4 => lz4_flex::block::decompress_into(src, out).map_err(|e| e.to_string())?,
            STORED_ZSTD => {
                let dctx = self.zstd.get_or_insert_with(zstd_safe::DCtx::create);
                dctx.decompress(out, src)
                    .map_err(|code| zstd_safe::get_error_name(code).to_string())?
            }
            m => return Err(format!("unknown storage method {m}")),
        };
        if n != out.len() {
            return Err(format!("it yields {n} bytes"));
        }
        Ok(())
    }
}
