//! Compressed images (format 1.4): the stored-pieces table (tag 16), read,
//! validated, verified and summarised; damage is named per piece.

mod common;

use common::{meta_bytes, sample, write_raw};
use crac_image::model::header_for;
use crac_image::{
    Image, SanityError, Stored, StoredError, StoredPiece, VerifyError, PIECE_LEN, STORED_LZ4,
    STORED_RAW, STORED_ZSTD,
};

/// `image` with `data` (its uncompressed page data) stored with `method`,
/// as `(meta.crac, pages.crac)` bytes.
fn compressed(image: &mut Image, data: &[u8], method: u32) -> (Vec<u8>, Vec<u8>) {
    let mut file = vec![0u8; 4096];
    let mut stored = Vec::new();
    for piece in data.chunks(PIECE_LEN as usize) {
        let mut out = vec![0u8; piece.len() * 2 + 1024];
        let n = match method {
            STORED_LZ4 => lz4_flex::block::compress_into_with_table(
                piece,
                &mut out,
                &mut lz4_flex::block::CompressTable::large(),
            )
            .unwrap(),
            STORED_ZSTD => zstd_safe::compress(&mut out[..], piece, 3).unwrap(),
            _ => {
                out[..piece.len()].copy_from_slice(piece);
                piece.len()
            }
        };
        stored.push(StoredPiece {
            offset: file.len() as u64,
            len: n as u32,
            method,
        });
        file.extend_from_slice(&out[..n]);
    }
    file.resize(file.len().next_multiple_of(4096), 0);
    let head = crac_image::encode_pages_header(file.len() as u64 / 4096 - 1);
    file[..4096].copy_from_slice(&head);
    image.stored = Some(Stored {
        compression: if method == STORED_RAW {
            STORED_LZ4
        } else {
            method
        },
        data_len: data.len() as u64,
        pieces: stored,
    });
    let body = image.encode_body();
    let mut h = header_for(&body, &file[4096..]);
    h.pages_len = file.len() as u64;
    image.header = h;
    (meta_bytes(&h, &body), file)
}

fn dir_with(meta: &[u8], pages: &[u8]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_raw(tmp.path(), meta, pages);
    tmp
}

#[test]
fn compressed_images_read_verify_and_summarise() {
    for method in [STORED_LZ4, STORED_ZSTD, STORED_RAW] {
        let (mut image, data) = sample();
        let (meta, pages) = compressed(&mut image, &data, method);
        let tmp = dir_with(&meta, &pages);
        let back = Image::read(tmp.path()).unwrap();
        assert_eq!(back, image);
        assert_eq!(back.logical_pages_len(), 4096 + data.len() as u64);
        back.verify_pages(tmp.path()).unwrap();
        let s = back.summary();
        let c = s.compression.unwrap();
        assert_eq!(c.data_bytes, data.len() as u64);
        assert_eq!(c.stored_bytes, back.stored.as_ref().unwrap().stored_bytes());
        assert_eq!(c.raw_pieces, u64::from(method == STORED_RAW));
        assert_eq!(s.format_version, "1.4");
    }
}

#[test]
fn a_damaged_compressed_piece_is_named() {
    for method in [STORED_LZ4, STORED_ZSTD] {
        let (mut image, data) = sample();
        let (meta, mut pages) = compressed(&mut image, &data, method);
        let p = image.stored.as_ref().unwrap().pieces[0];
        pages[p.offset as usize + p.len as usize / 2] ^= 0x5a;
        let tmp = dir_with(&meta, &pages);
        let back = Image::read(tmp.path()).unwrap();
        let e = back.verify_pages(tmp.path()).unwrap_err();
        assert!(
            matches!(e, VerifyError::StoredPiece { index: 0, .. }),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "is damaged: piece 0 (stored {} at file bytes {:#x}-{:#x})",
                crac_image::method_name(method),
                p.offset,
                p.offset + u64::from(p.len)
            )),
            "{text}"
        );
    }
}

fn sanity(edit: impl FnOnce(&mut Image)) -> SanityError {
    let (mut image, data) = sample();
    compressed(&mut image, &data, STORED_LZ4);
    edit(&mut image);
    image.sanity_check().unwrap_err()
}

#[test]
fn a_bad_stored_table_is_refused() {
    let e = sanity(|i| i.header.minor = 3);
    assert!(
        matches!(e, SanityError::UnexpectedStored { minor: 3, .. }),
        "{e}"
    );
    let e = sanity(|i| {
        let st = i.stored.as_mut().unwrap();
        let st0 = st.pieces[0];
        st.pieces.push(st0)
    });
    assert!(
        matches!(
            e,
            SanityError::Stored(StoredError::Count {
                found: 2,
                expected: 1
            })
        ),
        "{e}"
    );
    let e = sanity(|i| i.stored.as_mut().unwrap().pieces[0].method = 9);
    assert!(e.to_string().contains("unknown storage method"), "{e}");
    let e = sanity(|i| i.stored.as_mut().unwrap().pieces[0].offset = 1 << 40);
    assert!(e.to_string().contains("outside the page file"), "{e}");
    let e = sanity(|i| i.stored.as_mut().unwrap().pieces[0].len = PIECE_LEN as u32 + 1);
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = sanity(|i| {
        let p = &mut i.stored.as_mut().unwrap().pieces[0];
        p.method = STORED_RAW;
        p.len = 100;
    });
    assert!(e.to_string().contains("stored whole"), "{e}");
    let e = sanity(|i| i.stored.as_mut().unwrap().data_len = 8192 + 100);
    assert!(
        matches!(e, SanityError::Stored(StoredError::DataLen { .. })),
        "{e}"
    );
    // Runs are checked against the uncompressed length.
    let e = sanity(|i| i.stored.as_mut().unwrap().data_len = 4096);
    assert!(matches!(e, SanityError::RunOutsidePageFile { .. }), "{e}");
}
