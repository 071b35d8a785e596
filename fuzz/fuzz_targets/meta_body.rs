//! Arbitrary bytes as a `meta.crac` body, through the section and record
//! decoders (the piece table's also on its own), the sanity check and the
//! inspect summary. Nothing may panic.
//!
//! The same entry points run on stable in
//! `crates/crac-image/tests/decode_fuzz.rs`.
#![no_main]

use crac_image::{Header, Image, PieceTable, Reader, StoredPieces, Tag, ARCH_X86_64, FORMAT_VERSION};
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|body: &[u8]| -> Corpus {
    // A body shorter than one section header cannot reach a decoder.
    if body.len() < 8 {
        return Corpus::Reject;
    }
    let header = Header {
        major: FORMAT_VERSION.0,
        minor: FORMAT_VERSION.1,
        body_len: body.len() as u64,
        body_crc: 0,
        arch: ARCH_X86_64,
        // Large enough that page runs are judged by the mappings.
        pages_len: 1 << 40,
        pages_crc: 0,
    };
    if let Ok(image) = Image::decode_body(header, body) {
        let _ = image.sanity_check();
        let _ = image.stored_pages_per_vma();
        let _ = image.summary();
    }
    // The piece table decoder on its own too: the restorer and the lazy
    // pager use it without the owned model.
    let mut r = Reader::new(body);
    while let Ok(Some((tag, mut s))) = r.next_section() {
        if tag == Tag::Pieces as u32 {
            if let Ok(t) = PieceTable::decode(&mut s) {
                let _ = t.check(4096 + 65536 * t.len().min(1 << 40));
                let _ = (t.iter().count(), t.get(t.len()), t.get(0));
            }
        }
        if tag == Tag::Stored as u32 {
            if let Ok(t) = StoredPieces::decode(&mut s) {
                let _ = t.check(4096 + 65536 * t.len().min(1 << 40));
                let _ = (t.iter().count(), t.get(t.len()), t.get(0), t.logical_len());
            }
        }
    }
    Corpus::Keep
});
