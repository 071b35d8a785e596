//! Stable fallback for `fuzz/`: random and mutated inputs through the same
//! decode entry points as the cargo-fuzz targets. Nothing may panic.

mod common;

use common::{arb_image, blank_header};
use crac_image::{crc32, Header, Image, PieceTable, Reader, StoredPieces, Tag, HEADER_LEN};
use proptest::prelude::*;

/// What `fuzz/fuzz_targets/meta_body.rs` does with its input.
fn decode_body_target(body: &[u8]) {
    let mut header = blank_header();
    header.body_len = body.len() as u64;
    header.pages_len = 1 << 40;
    if let Ok(image) = Image::decode_body(header, body) {
        let _ = image.sanity_check();
        let _ = image.summary();
        let _ = image.stored_pages_per_vma();
    }
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
}

/// What `fuzz/fuzz_targets/header.rs` does with its input: as given, and
/// with the header checksum fixed up so the later checks are reached.
fn header_target(data: &[u8]) {
    let check = |d: &[u8]| {
        if let Ok(h) = Header::decode(d) {
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
    };
    check(data);
    if data.len() >= HEADER_LEN {
        let mut fixed = data[..HEADER_LEN].to_vec();
        let crc = crc32(0, &fixed[..60]);
        fixed[60..64].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_body_target(&body);
    }

    /// Stored pieces are hostile: random bytes and mutated valid pieces
    /// decompress into their piece or fail, never panic or overrun.
    #[test]
    fn random_stored_pieces_never_panic(
        src in proptest::collection::vec(any::<u8>(), 0..4096),
        method in 0u32..4,
        out_len in prop_oneof![Just(65536usize), 1usize..70000],
        flip in any::<proptest::sample::Index>(),
    ) {
        let mut dec = crac_image::Decompressor::new();
        let mut out = vec![0u8; out_len];
        let _ = dec.piece(method, &src, &mut out);
        // A valid piece with one byte changed.
        let text: Vec<u8> = b"warm cache ".iter().copied().cycle().take(65536).collect();
        let mut packed = vec![0u8; 80000];
        let n = match method {
            2 => zstd_safe::compress(&mut packed[..], &text, 1).unwrap(),
            _ => lz4_flex::block::compress_into_with_table(
                &text,
                &mut packed,
                &mut lz4_flex::block::CompressTable::large(),
            )
            .unwrap(),
        };
        packed.truncate(n);
        let i = flip.index(n);
        packed[i] ^= 0x5a;
        let mut out = vec![0u8; 65536];
        let _ = dec.piece(method.clamp(1, 2), &packed, &mut out);
    }

    #[test]
    fn random_headers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
        header_target(&data);
    }

    /// Headers with plausible magic, version and architecture fields.
    #[test]
    fn plausible_headers_never_panic(
        major in 0u16..3, minor in 0u16..6, arch in prop_oneof![Just(62u32), any::<u32>()],
        rest in proptest::collection::vec(any::<u8>(), 52),
    ) {
        let mut d = crac_image::META_MAGIC.to_vec();
        d.extend_from_slice(&major.to_le_bytes());
        d.extend_from_slice(&minor.to_le_bytes());
        d.extend_from_slice(&rest);
        d[28..32].copy_from_slice(&arch.to_le_bytes());
        header_target(&d);
    }

    /// Random sections with plausible tags and lengths reach the record
    /// decoders more often than random bytes do.
    #[test]
    fn random_sections_never_panic(
        sections in proptest::collection::vec(
            (1u32..17, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)
    ) {
        let mut body = Vec::new();
        for (tag, payload) in sections {
            body.extend_from_slice(&tag.to_le_bytes());
            body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            body.extend_from_slice(&payload);
            while body.len() % 8 != 0 {
                body.push(0);
            }
        }
        decode_body_target(&body);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Valid bodies with a few bytes changed or cut: deep into every decoder.
    #[test]
    fn mutated_valid_bodies_never_panic(
        (image, _pages) in arb_image(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<proptest::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut body = image.encode_body();
        for (i, v) in flips {
            let i = i.index(body.len());
            body[i] = v;
        }
        if do_cut {
            body.truncate(cut.index(body.len()));
        }
        decode_body_target(&body);
    }
}

/// What the strict reader ([`Image::read_verified`], used by `inspect`,
/// restore's preflight and so the restorer) does with a whole image
/// directory: `meta.crac` and `pages.crac` as given. Nothing may panic, and
/// whatever it accepts is consistent and is the bytes on disk.
fn strict_reader_target(meta: &[u8], pages: &[u8]) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    common::write_raw(tmp.path(), meta, pages);
    match Image::read_verified(tmp.path()) {
        Ok(v) => {
            assert_eq!(v.meta, meta);
            v.image.sanity_check().unwrap();
            let _ = v.image.summary();
            let _ = v.image.stored_pages_per_vma();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// `meta.crac` and `pages.crac` bytes of a valid image.
fn image_files(image: &Image, page_data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let body = image.encode_body();
    let header = crac_image::model::header_for(&body, page_data);
    let mut pages = crac_image::encode_pages_header(page_data.len() as u64 / 4096).to_vec();
    pages.extend_from_slice(page_data);
    (common::meta_bytes(&header, &body), pages)
}

/// With the header's own and body checksums fixed up, so that mutated
/// bodies reach the decoders and the consistency checks.
fn fix_checksums(meta: &mut [u8]) {
    if meta.len() < HEADER_LEN {
        return;
    }
    let body_crc = crc32(0, &meta[HEADER_LEN..]);
    meta[24..28].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32(0, &meta[..60]);
    meta[60..64].copy_from_slice(&crc.to_le_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Valid image directories are accepted; with bytes of either file
    /// changed or cut (checksums fixed up or not) nothing panics.
    #[test]
    fn strict_reader_on_mutated_images_never_panics(
        (image, page_data) in arb_image(),
        in_pages in any::<bool>(),
        fixup in any::<bool>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<proptest::sample::Index>()),
    ) {
        let (mut meta, mut pages) = image_files(&image, &page_data);
        let untouched = flips.is_empty() && cut.is_none();
        let target = if in_pages { &mut pages } else { &mut meta };
        for (i, v) in flips {
            // The page file's header page: no checksum covers it.
            let len = if in_pages { target.len().min(4096) } else { target.len() };
            let i = i.index(len);
            target[i] = v;
        }
        if let Some(c) = cut {
            let n = c.index(target.len());
            target.truncate(n);
        }
        if fixup && !in_pages {
            fix_checksums(&mut meta);
        }
        let accepted = strict_reader_target(&meta, &pages);
        if untouched {
            prop_assert!(accepted, "a valid image was refused");
        }
    }
}
