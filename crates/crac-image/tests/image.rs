//! Reading, validating, writing and summarising whole image directories.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{arb_image, blank_header, meta_bytes, sample, write_raw};
use crac_image::model::{header_for, DecodeBodyError, UnknownSection};
use crac_image::{
    prepare_temp_dir, Header, HeaderError, Image, ImageDirError, ImageReadError, PageRun,
    PieceCountError, PieceTable, SanityError, Tag, VerifyError, Writer, FORMAT_VERSION, HEADER_LEN,
    META_FILE, PAGES_FILE, THREAD_DUMPER,
};
use proptest::prelude::*;

/// Writes `image` to a fresh directory and returns it.
fn written(image: &Image, pages: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    image.write(&dir, pages).unwrap();
    (tmp, dir)
}

fn read_files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        fs::read(dir.join(META_FILE)).unwrap(),
        fs::read(dir.join(PAGES_FILE)).unwrap(),
    )
}

/// Reads and, if that succeeds, verifies the page data.
fn read_and_verify(dir: &Path) -> Result<Image, String> {
    let image = Image::read(dir).map_err(|e| e.to_string())?;
    image.verify_pages(dir).map_err(|e| e.to_string())?;
    Ok(image)
}

/// `image` as read back: the header is the written one.
fn expected(image: &Image, pages: &[u8]) -> Image {
    let mut e = image.clone();
    e.header = header_for(&image.encode_body(), pages);
    e
}

#[test]
fn sample_round_trips_and_verifies() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let back = Image::read(&dir).unwrap();
    assert_eq!(back, expected(&image, &pages));
    back.verify_pages(&dir).unwrap();
    assert_eq!(back.stored_pages_per_vma(), [0, 2]);
    assert_eq!(back.mapped_bytes(), 4 * 4096);
    assert_eq!(back.stored_bytes(), 2 * 4096);
    assert_eq!(back.dumper().map(|t| t.tid), Some(100));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_images_round_trip((image, pages) in arb_image()) {
        let (_tmp, dir) = written(&image, &pages);
        let back = Image::read(&dir).unwrap();
        prop_assert_eq!(&back, &expected(&image, &pages));
        back.verify_pages(&dir).unwrap();
        let per_vma: u64 = back.stored_pages_per_vma().iter().sum();
        prop_assert_eq!(per_vma, back.stored_pages());
        prop_assert_eq!(back.stored_bytes(), pages.len() as u64);
        // The summary never panics and serialises.
        back.summary().to_json_pretty().unwrap();
    }
}

#[test]
fn crc32fast_matches_the_core_crc() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 256) as u8).collect();
    assert_eq!(crc32fast::hash(&data), crac_image::crc32(0, &data));
    assert_eq!(crc32fast::hash(b""), crac_image::crc32(0, b""));
}

#[test]
fn every_truncation_is_an_error() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let (meta, pagefile) = read_files(&dir);
    for len in 0..meta.len() {
        write_raw(&dir, &meta[..len], &pagefile);
        assert!(
            Image::read(&dir).is_err(),
            "meta.crac cut at {len} was accepted"
        );
    }
    // Every length of the header page, then every page boundary and a few
    // odd lengths of the data.
    let mut cuts: Vec<usize> = (0..4200).collect();
    cuts.extend((4096..pagefile.len()).step_by(512));
    for len in cuts.into_iter().filter(|&l| l < pagefile.len()) {
        write_raw(&dir, &meta, &pagefile[..len]);
        assert!(
            read_and_verify(&dir).is_err(),
            "pages.crac cut at {len} was accepted"
        );
    }
}

#[test]
fn every_flipped_byte_is_an_error() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let (meta, pagefile) = read_files(&dir);
    for i in 0..meta.len() {
        for bit in [0x01, 0x80] {
            let mut m = meta.clone();
            m[i] ^= bit;
            write_raw(&dir, &m, &pagefile);
            assert!(
                Image::read(&dir).is_err(),
                "meta.crac byte {i} ^ {bit:#x} was accepted"
            );
        }
    }
    for i in 0..pagefile.len() {
        let mut p = pagefile.clone();
        p[i] ^= 0x10;
        write_raw(&dir, &meta, &p);
        assert!(
            read_and_verify(&dir).is_err(),
            "pages.crac byte {i} was accepted"
        );
    }
}

#[test]
fn truncated_body_message_states_the_facts() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let (meta, pagefile) = read_files(&dir);
    write_raw(&dir, &meta[..HEADER_LEN + 120], &pagefile);
    let e = Image::read(&dir).unwrap_err();
    let body_len = meta.len() - HEADER_LEN;
    assert_eq!(
        e.to_string(),
        format!(
            "image {} is truncated: 120 of {body_len} body bytes",
            dir.join(META_FILE).display()
        )
    );
}

fn with_header(dir: &Path, edit: impl FnOnce(&mut Header)) -> ImageReadError {
    let (meta, pagefile) = read_files(dir);
    let mut h = Header::decode(&meta).unwrap();
    edit(&mut h);
    let mut m = meta;
    m[..HEADER_LEN].copy_from_slice(&h.encode());
    write_raw(dir, &m, &pagefile);
    Image::read(dir).unwrap_err()
}

#[test]
fn too_new_foreign_and_oversized_images_are_refused() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let (meta, pagefile) = read_files(&dir);

    let e = with_header(&dir, |h| h.minor = FORMAT_VERSION.1 + 1);
    assert!(matches!(
        e,
        ImageReadError::Header {
            source: HeaderError::UnsupportedVersion { .. },
            ..
        }
    ));
    write_raw(&dir, &meta, &pagefile);
    let e = with_header(&dir, |h| h.major = FORMAT_VERSION.0 + 1);
    assert!(matches!(
        e,
        ImageReadError::Header {
            source: HeaderError::UnsupportedVersion { .. },
            ..
        }
    ));
    write_raw(&dir, &meta, &pagefile);
    let e = with_header(&dir, |h| h.arch = 183); // aarch64
    assert!(matches!(
        e,
        ImageReadError::Header {
            source: HeaderError::ForeignArch(183),
            ..
        }
    ));
    write_raw(&dir, &meta, &pagefile);
    let e = with_header(&dir, |h| h.body_len = u64::MAX);
    assert!(matches!(e, ImageReadError::TooLarge { .. }), "{e}");

    let mut foreign = meta.clone();
    foreign[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\0");
    write_raw(&dir, &foreign, &pagefile);
    let e = Image::read(&dir).unwrap_err();
    assert!(matches!(
        e,
        ImageReadError::Header {
            source: HeaderError::BadMagic,
            ..
        }
    ));

    let mut trailing = meta.clone();
    trailing.push(0);
    write_raw(&dir, &trailing, &pagefile);
    let e = Image::read(&dir).unwrap_err();
    assert!(matches!(e, ImageReadError::TrailingData { .. }), "{e}");
}

#[test]
fn missing_files_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Image::read(tmp.path()).unwrap_err();
    assert!(matches!(e, ImageReadError::Io { step: "open", .. }));
    assert_eq!(
        e.to_string(),
        format!("cannot open {}", tmp.path().join(META_FILE).display())
    );

    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    fs::remove_file(dir.join(PAGES_FILE)).unwrap();
    let e = Image::read(&dir).unwrap_err();
    assert!(e.to_string().ends_with(PAGES_FILE), "{e}");
}

/// Writes `body` (re-encoded by the caller) with a correct header.
fn read_body(body: &[u8], pages: &[u8]) -> Result<Image, ImageReadError> {
    let tmp = tempfile::tempdir().unwrap();
    let h = header_for(body, pages);
    let mut pagefile = crac_image::encode_pages_header(pages.len() as u64 / 4096).to_vec();
    pagefile.extend_from_slice(pages);
    write_raw(tmp.path(), &meta_bytes(&h, body), &pagefile);
    Image::read(tmp.path())
}

#[test]
fn unknown_sections_are_skipped_and_listed() {
    let (image, pages) = sample();
    let mut body = image.encode_body();
    let mut extra = [0u8; 64];
    let mut w = Writer::new(&mut extra);
    w.section(0x7777, |w| w.u64(42));
    body.extend_from_slice(w.finish().unwrap());
    let back = read_body(&body, &pages).unwrap();
    assert_eq!(
        back.unknown_sections,
        [UnknownSection {
            tag: 0x7777,
            len: 8
        }]
    );
    let json = back.summary().to_json_pretty().unwrap();
    assert!(json.contains("\"tag\": 30583"), "{json}");
}

#[test]
fn missing_and_duplicate_sections_are_errors() {
    let (image, pages) = sample();
    let body = image.encode_body();
    // Drop the timers section (the last one).
    let mut r = crac_image::Reader::new(&body);
    let mut without = Vec::new();
    let mut timers = Vec::new();
    loop {
        let at = body.len() - r.remaining();
        let Some((tag, _)) = r.next_section().unwrap() else {
            break;
        };
        let end = body.len() - r.remaining();
        if tag == Tag::Timers as u32 {
            timers.extend_from_slice(&body[at..end]);
        } else {
            without.extend_from_slice(&body[at..end]);
        }
    }
    let e = read_body(&without, &pages).unwrap_err();
    let ImageReadError::Body { source, .. } = e else {
        panic!("{e}")
    };
    assert_eq!(
        source,
        DecodeBodyError::Missing {
            tag: Tag::Timers as u32
        }
    );
    assert_eq!(
        source.to_string(),
        "mandatory section 12 (timers) is missing"
    );

    let mut twice = body.clone();
    twice.extend_from_slice(&timers);
    let e = read_body(&twice, &pages).unwrap_err();
    assert!(
        matches!(
            e,
            ImageReadError::Body {
                source: DecodeBodyError::Duplicate { tag: 12, .. },
                ..
            }
        ),
        "{e}"
    );
}

fn sanity(edit: impl FnOnce(&mut Image)) -> SanityError {
    let (mut image, pages) = sample();
    edit(&mut image);
    let e = read_body(&image.encode_body(), &pages).unwrap_err();
    match e {
        ImageReadError::Sanity { source, .. } => source,
        e => panic!("expected a sanity error, got {e}"),
    }
}

#[test]
fn sanity_check_catches_each_inconsistency() {
    assert_eq!(sanity(|i| i.threads.clear()), SanityError::NoThreads);
    assert_eq!(
        sanity(|i| i.threads[1].flags |= THREAD_DUMPER),
        SanityError::DumperCount { count: 2 }
    );
    assert_eq!(
        sanity(|i| i.threads[0].flags = 0),
        SanityError::DumperCount { count: 0 }
    );
    assert_eq!(
        sanity(|i| i.process.dumping_tid = 101),
        SanityError::DumperMismatch {
            flagged: 100,
            recorded: 101
        }
    );
    assert_eq!(
        sanity(|i| i.threads[1].tid = 100),
        SanityError::DuplicateThread { tid: 100 }
    );
    assert_eq!(
        sanity(|i| {
            i.vmas.clear();
            i.runs.clear();
        }),
        SanityError::NoMappings
    );
    assert_eq!(
        sanity(|i| i.vmas.swap(0, 1)),
        SanityError::VmaOrder {
            start: 0x40_0000,
            end: 0x40_2000,
            prev_end: 0x60_2000
        }
    );
    assert_eq!(
        sanity(|i| i.vmas[1].start = 0x40_1000),
        SanityError::VmaOrder {
            start: 0x40_1000,
            end: 0x60_2000,
            prev_end: 0x40_2000
        }
    );
    assert_eq!(
        sanity(|i| i.vmas[0].file = 9),
        SanityError::MissingFile {
            start: 0x40_0000,
            end: 0x40_2000,
            file: 9
        }
    );
    assert_eq!(
        sanity(|i| {
            let f = i.files[0].clone();
            i.files.push(f);
        }),
        SanityError::DuplicateFile { id: 0 }
    );
    assert_eq!(
        sanity(|i| i.runs[0].addr = 0x60_1000),
        SanityError::RunOutsideVmas {
            addr: 0x60_1000,
            pages: 2
        }
    );
    assert_eq!(
        sanity(|i| i.runs[0].pages = 1 << 30),
        SanityError::RunOutsideVmas {
            addr: 0x60_0000,
            pages: 1 << 30
        }
    );
    assert_eq!(
        sanity(|i| i.runs[0].offset = 0),
        SanityError::RunOutsidePageFile {
            addr: 0x60_0000,
            pages: 2,
            offset: 0,
            pages_len: 3 * 4096
        }
    );
    assert_eq!(
        sanity(|i| i.runs[0].offset = 2 * 4096),
        SanityError::RunOutsidePageFile {
            addr: 0x60_0000,
            pages: 2,
            offset: 2 * 4096,
            pages_len: 3 * 4096
        }
    );
    assert_eq!(
        sanity(|i| {
            let f = i.fds[0].clone();
            i.fds.push(f);
        }),
        SanityError::DuplicateFd { fd: 5 }
    );
    assert_eq!(
        sanity(|i| {
            i.runs = vec![
                crac_image::PageRun {
                    addr: 0x60_1000,
                    pages: 1,
                    offset: 4096,
                },
                crac_image::PageRun {
                    addr: 0x60_0000,
                    pages: 1,
                    offset: 8192,
                },
            ];
        }),
        SanityError::RunOrder {
            addr: 0x60_0000,
            prev_end: 0x60_2000
        }
    );
}

#[test]
fn runs_may_span_adjacent_mappings() {
    let (mut image, pages) = sample();
    // Make the heap two adjacent mappings; the run covers both.
    let mut second = image.vmas[1].clone();
    image.vmas[1].end = 0x60_1000;
    second.start = 0x60_1000;
    image.vmas.push(second);
    let back = read_body(&image.encode_body(), &pages).unwrap();
    assert_eq!(back.stored_pages_per_vma(), [0, 1, 1]);
}

#[test]
fn verify_reports_the_damaged_piece_and_length() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let back = Image::read(&dir).unwrap();
    let (_, mut pagefile) = read_files(&dir);
    pagefile[5000] ^= 1;
    fs::write(dir.join(PAGES_FILE), &pagefile).unwrap();
    let e = back.verify_pages(&dir).unwrap_err();
    let VerifyError::Piece {
        index,
        start,
        end,
        ref memory,
        ..
    } = e
    else {
        panic!("not a piece error: {e}");
    };
    assert_eq!((index, start, end), (0, 0x1000, 0x3000));
    assert_eq!(memory, &[(0x60_0000, 0x60_2000)]);
    assert!(
        e.to_string()
            .contains("is damaged: piece 0 (file bytes 0x1000-0x3000) hashes to 0x")
            && e.to_string().ends_with("it holds memory 0x600000-0x602000"),
        "{e}"
    );
    pagefile.truncate(8192);
    fs::write(dir.join(PAGES_FILE), &pagefile).unwrap();
    let e = back.verify_pages(&dir).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Length {
                expected: 8192,
                found: 4096,
                ..
            }
        ),
        "{e}"
    );
}

/// Pieces are cut by file offset, whole ones of 64 KiB and a short last
/// one; a damaged byte names the piece that holds it, and the memory of
/// every run with data in that piece.
#[test]
fn verify_names_the_piece_of_a_large_page_file() {
    let (mut image, _) = sample();
    // 20 pages in the heap, stored as two runs: 0x600000 (12 pages) and
    // 0x610000 (8 pages); the second run starts in piece 0 and ends in
    // piece 1.
    image.vmas[1].end = 0x62_0000;
    image.runs = vec![
        PageRun {
            addr: 0x60_0000,
            pages: 12,
            offset: 4096,
        },
        PageRun {
            addr: 0x61_0000,
            pages: 8,
            offset: 4096 + 12 * 4096,
        },
    ];
    let pages: Vec<u8> = (0..20 * 4096u32).map(|i| (i % 253) as u8).collect();
    let (_tmp, dir) = written(&image, &pages);
    let back = Image::read(&dir).unwrap();
    assert_eq!(back.pieces.as_ref().map(Vec::len), Some(2));
    back.verify_pages(&dir).unwrap();
    let (_, mut pagefile) = read_files(&dir);
    // In the second piece: the last 4 pages of the second run.
    pagefile[4096 + 17 * 4096 + 3] ^= 0x80;
    fs::write(dir.join(PAGES_FILE), &pagefile).unwrap();
    match back.verify_pages(&dir).unwrap_err() {
        VerifyError::Piece {
            index: 1,
            start: 0x11000,
            end: 0x15000,
            memory,
            ..
        } => assert_eq!(memory, [(0x61_4000, 0x61_8000)]),
        e => panic!("wrong error: {e}"),
    }
    pagefile[4096 + 17 * 4096 + 3] ^= 0x80;
    pagefile[4096 + 15 * 4096] ^= 1;
    fs::write(dir.join(PAGES_FILE), &pagefile).unwrap();
    match back.verify_pages(&dir).unwrap_err() {
        VerifyError::Piece {
            index: 0,
            start: 0x1000,
            end: 0x11000,
            memory,
            ..
        } => assert_eq!(memory, [(0x60_0000, 0x60_c000), (0x61_0000, 0x61_4000)]),
        e => panic!("wrong error: {e}"),
    }
}

/// A piece table that does not fit the page file, or none in a 1.3 image,
/// is refused when the image is read.
#[test]
fn a_bad_piece_table_is_refused() {
    let (mut image, pages) = sample();
    image.pieces = Some(vec![1, 2]);
    let e = read_body(&image.encode_body(), &pages).unwrap_err();
    assert!(
        matches!(
            e,
            ImageReadError::Sanity {
                source: SanityError::PieceCount(PieceCountError {
                    found: 2,
                    expected: 1,
                    pages_len: 12288
                }),
                ..
            }
        ),
        "{e}"
    );
    assert!(
        anyhow_chain(&e).contains(
            "the piece table has 2 hashes, the 12288-byte page file has 1 pieces of 65536 bytes"
        ),
        "{}",
        anyhow_chain(&e)
    );
    image.pieces = Some(vec![]);
    let e = read_body(&image.encode_body(), &pages).unwrap_err();
    assert!(matches!(e, ImageReadError::Sanity { .. }), "{e}");
    image.pieces = None;
    let e = read_body(&image.encode_body(), &pages).unwrap_err();
    assert!(
        matches!(
            e,
            ImageReadError::Sanity {
                source: SanityError::NoPieceTable { major: 1, minor: 4 },
                ..
            }
        ),
        "{e}"
    );
    // A wrong piece length or hash kind, or a count the payload does not
    // hold, is a malformed section.
    for (at, value) in [(0usize, 4096u64), (4, 2), (8, 3)] {
        let mut table = [0u8; 64];
        let mut w = Writer::new(&mut table);
        PieceTable::encode(&mut w, &[0]);
        let mut t = w.finish().unwrap().to_vec();
        let field = &mut t[8 + at..];
        if at == 8 {
            field[..8].copy_from_slice(&value.to_le_bytes());
        } else {
            field[..4].copy_from_slice(&(value as u32).to_le_bytes());
        }
        let mut r = crac_image::Reader::new(&t);
        let (tag, mut payload) = r.next_section().unwrap().unwrap();
        assert_eq!(tag, 15);
        assert!(PieceTable::decode(&mut payload).is_err(), "field {at}");
    }
}

/// An image of format 1.2 (no piece table) is still read, and its page
/// data is checked against the header's CRC-32.
#[test]
fn an_image_without_pieces_is_checked_by_its_crc() {
    let (mut image, pages) = sample();
    image.pieces = None;
    let body = image.encode_body();
    let mut h = header_for(&body, &pages);
    h.minor = 2;
    h.pages_crc = crac_image::crc32(0, &pages);
    let tmp = tempfile::tempdir().unwrap();
    let mut pagefile = crac_image::encode_pages_header(pages.len() as u64 / 4096).to_vec();
    pagefile[10..12].copy_from_slice(&2u16.to_le_bytes());
    pagefile.extend_from_slice(&pages);
    write_raw(tmp.path(), &meta_bytes(&h, &body), &pagefile);
    let back = Image::read(tmp.path()).unwrap();
    assert_eq!(back.pieces, None);
    back.verify_pages(tmp.path()).unwrap();
    pagefile[5000] ^= 1;
    fs::write(tmp.path().join(PAGES_FILE), &pagefile).unwrap();
    let e = back.verify_pages(tmp.path()).unwrap_err();
    assert!(matches!(e, VerifyError::Checksum { .. }), "{e}");
    assert!(
        e.to_string().contains("is corrupt: page data CRC-32 is 0x"),
        "{e}"
    );
}

/// The error and its sources, one line.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[test]
fn json_summary_has_the_documented_shape() {
    let (image, pages) = sample();
    let (_tmp, dir) = written(&image, &pages);
    let s = Image::read(&dir).unwrap().summary();
    let v: serde_json::Value = serde_json::from_str(&s.to_json_pretty().unwrap()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "arch",
            "compression",
            "cpu",
            "creds",
            "fds",
            "files",
            "format_version",
            "memory",
            "meta_bytes",
            "pages_crc32",
            "pages_file_bytes",
            "pieces",
            "process",
            "rlimits",
            "signals",
            "threads",
            "timers",
            "unknown_sections",
            "vdso",
            "vmas"
        ]
    );
    assert_eq!(v["format_version"], "1.4");
    assert_eq!(v["compression"], serde_json::Value::Null);
    assert_eq!(v["arch"], "x86_64");
    assert_eq!(v["pages_crc32"], "0x00000000");
    assert_eq!(
        v["pieces"],
        serde_json::json!({"piece_bytes": 65536, "count": 1, "hash": "xxh3-64"})
    );
    assert_eq!(
        v["creds"],
        serde_json::json!({
            "uids": [65534, 65534, 65534, 65534], "gids": [65534, 65534, 65534, 100],
            "groups": [27, 65534], "cap_effective": ["cap_net_bind_service"],
            "cap_permitted": ["cap_net_bind_service"], "cap_inheritable": [],
            "cap_bounding": "0x1ffffffffff", "cap_ambient": [], "securebits": "0x0",
            "no_new_privs": false, "dumpable": 1
        })
    );
    assert_eq!(
        v["memory"],
        serde_json::json!({"vmas": 2, "mapped_bytes": 16384, "runs": 1,
                           "populated_bytes": 16384, "stored_pages": 2, "stored_bytes": 8192})
    );
    assert_eq!(
        v["vmas"][1],
        serde_json::json!({
            "start": "0x600000", "end": "0x602000", "bytes": 8192, "perms": "rw-p",
            "flags": ["heap"], "file": null, "offset": 0, "name": "[heap]",
            "populated_bytes": 8192, "stored_pages": 2, "stored_bytes": 8192
        })
    );
    assert_eq!(v["vmas"][0]["file"], 0);
    assert_eq!(
        v["threads"][0],
        serde_json::json!({
            "tid": 100, "name": "app", "dumper": true, "sigmask": "0x0", "cpus": [0, 2],
            "fs_base": "0x0", "rseq": null, "altstack": null
        })
    );
    assert_eq!(
        v["files"][0],
        serde_json::json!({
            "id": 0, "path": "/usr/bin/app", "size": 8192, "mode": "100755", "dev": 0,
            "ino": 0, "mtime_sec": 0, "mtime_nsec": 0, "build_id": "abcd", "vmas": 1
        })
    );
    assert_eq!(
        v["process"]["argv"],
        serde_json::json!(["app", "--port", "8080"])
    );
    assert_eq!(v["process"]["umask"], "0022");
    assert_eq!(
        v["process"]["boot_id"],
        "0b9c6f3e-7d7b-4c1e-9c3e-2f4a8c1d0e11"
    );
    assert_eq!(v["cpu"]["features"]["cpuid.1.ecx"], "0x1");
    assert_eq!(
        v["rlimits"][7],
        serde_json::json!({"name": "RLIMIT_NOFILE", "soft": null, "hard": null})
    );
    assert_eq!(
        v["vdso"]["vvar"],
        serde_json::json!({"start": "0x7fff00000000", "bytes": 16384})
    );
    assert_eq!(v["vdso"]["vvar_vclock"], serde_json::Value::Null);
    assert_eq!(
        v["fds"],
        serde_json::json!([{
            "fd": 5, "kind": "pipe", "flags": "2000", "id": 4242, "buffered": 3,
            "values": [0, 0, 0, 0], "name": "", "state": "3 bytes buffered"
        }])
    );
    assert_eq!(v["signals"], serde_json::json!([]));
    assert_eq!(v["timers"]["itimers"], serde_json::json!([]));
}

// ---- the atomic directory writer ----

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn temp_dir_has_private_modes_and_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let t = prepare_temp_dir(&target).unwrap();
    let tmp_path = t.path().to_path_buf();
    let name = tmp_path.file_name().unwrap().to_str().unwrap();
    let random = name.strip_prefix(".img.tmp-").unwrap();
    assert_eq!(random.len(), 16, "{name}");
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    assert_eq!(mode(&tmp_path), 0o700);
    assert_eq!(mode(&tmp_path.join(META_FILE)), 0o600);
    assert_eq!(mode(&tmp_path.join(PAGES_FILE)), 0o600);
    use std::io::Write;
    t.meta_file().write_all(b"meta").unwrap();
    t.commit().unwrap();
    assert!(!tmp_path.exists());
    assert_eq!(fs::read(target.join(META_FILE)).unwrap(), b"meta");
    assert_eq!(mode(&target), 0o700);
}

#[test]
fn dropping_an_uncommitted_temp_dir_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let t = prepare_temp_dir(&target).unwrap();
    let p = t.path().to_path_buf();
    assert!(p.is_dir());
    drop(t);
    assert!(!p.exists());
    assert!(!target.exists());
}

#[test]
fn a_stale_temp_dir_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    let stale = tmp.path().join(format!(".img.tmp-{}", std::process::id()));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join(META_FILE), b"old").unwrap();
    let t = prepare_temp_dir(&target).unwrap();
    assert_eq!(fs::read(t.path().join(META_FILE)).unwrap(), b"");
    // The stale one (whatever its PID) is gone; the one in use is kept,
    // and so is one holding files that are not an image's.
    assert!(!stale.exists());
    let odd = tmp.path().join(".img.old-0123456789abcdef");
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join("notes.txt"), b"mine").unwrap();
    let t2 = prepare_temp_dir(&target).unwrap();
    assert!(t.path().exists() && t2.path().exists() && odd.exists());
    let left = crac_image::find_leftovers(tmp.path()).unwrap();
    let state = |p: &Path| left.iter().find(|l| l.path == p).map(|l| l.state);
    assert_eq!(state(t.path()), Some(crac_image::LeftoverState::InUse));
    assert_eq!(state(&odd), Some(crac_image::LeftoverState::Foreign));
}

#[test]
fn commit_replaces_a_previous_image() {
    let (image, pages) = sample();
    let (tmp, dir) = written(&image, &pages);
    let mut newer = image.clone();
    newer.process.pid = 777;
    newer.write(&dir, &pages).unwrap();
    assert_eq!(Image::read(&dir).unwrap().process.pid, 777);
    // No temporary or old directories are left behind.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["img"]);
}

#[test]
fn commit_into_an_empty_directory_works() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("img");
    fs::create_dir(&target).unwrap();
    let (image, pages) = sample();
    image.write(&target, &pages).unwrap();
    Image::read(&target).unwrap();
}

#[test]
fn a_directory_that_is_not_an_image_is_never_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("home");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("thesis.tex"), b"precious").unwrap();
    let e = prepare_temp_dir(&target).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<ImageDirError>())
        .unwrap();
    assert!(matches!(inner, ImageDirError::NotAnImage { .. }));
    assert!(e.to_string().starts_with("refusing to replace "), "{e}");
    assert_eq!(fs::read(target.join("thesis.tex")).unwrap(), b"precious");

    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    prepare_temp_dir(&file).unwrap_err();
    prepare_temp_dir(Path::new("/")).unwrap_err();
}

#[test]
fn io_errors_name_the_step_and_keep_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("missing-parent").join("img");
    let e = prepare_temp_dir(&target).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(
        e.to_string()
            .starts_with("cannot create temporary image directory "),
        "{e}"
    );
    let source = std::error::Error::source(&e).unwrap();
    assert!(source.downcast_ref::<std::io::Error>().is_some());
}

#[test]
fn write_refuses_inconsistent_images() {
    let (mut image, pages) = sample();
    image.threads.clear();
    let tmp = tempfile::tempdir().unwrap();
    let e = image.write(&tmp.path().join("img"), &pages).unwrap_err();
    assert!(matches!(
        e,
        crac_image::ImageWriteError::Inconsistent(SanityError::NoThreads)
    ));
    assert!(!tmp.path().join("img").exists());
    let _ = blank_header();
}

/// The strict reader opens only regular files, follows no symbolic link,
/// never blocks on a FIFO and refuses an oversized `meta.crac` before
/// reading it; what it accepts comes with the bytes and page file it checked.
#[test]
fn strict_reader_refuses_what_is_not_a_regular_file() {
    let (image, pages) = sample();
    let (tmp, dir) = written(&image, &pages);
    let v = Image::read_verified(&dir).unwrap();
    assert_eq!(v.meta, fs::read(dir.join(META_FILE)).unwrap());
    assert_eq!(
        v.pages.metadata().unwrap().len(),
        fs::metadata(dir.join(PAGES_FILE)).unwrap().len()
    );

    type Make = fn(&Path);
    let cases: [(&str, &str, Make); 4] = [
        ("symlink", "a symbolic link", |p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
        ("fifo", "a FIFO", |p| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap()
        }),
        ("directory", "a directory", |p| fs::create_dir(p).unwrap()),
        ("socket", "a socket", |p| {
            std::mem::forget(std::os::unix::net::UnixListener::bind(p).unwrap())
        }),
    ];
    for (name, what, make) in cases {
        for file in [META_FILE, PAGES_FILE] {
            let d = tmp.path().join(format!("{name}-{file}"));
            fs::create_dir(&d).unwrap();
            for f in [META_FILE, PAGES_FILE] {
                if f != file {
                    fs::copy(dir.join(f), d.join(f)).unwrap();
                }
            }
            make(&d.join(file));
            let e = Image::read_verified(&d).unwrap_err();
            assert!(
                matches!(&e, ImageReadError::NotRegular { what: w, .. } if *w == what),
                "{name} {file}: {e}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "image file {} is {what}, not a regular file",
                    d.join(file).display()
                )
            );
        }
    }

    // A meta.crac larger than the limit is refused before its body is read.
    let big = tmp.path().join("big");
    fs::create_dir(&big).unwrap();
    fs::copy(dir.join(PAGES_FILE), big.join(PAGES_FILE)).unwrap();
    let f = fs::File::create(big.join(META_FILE)).unwrap();
    use std::io::Write;
    (&f).write_all(&fs::read(dir.join(META_FILE)).unwrap())
        .unwrap();
    f.set_len(crac_image::MAX_META_LEN + 1).unwrap();
    let e = Image::read_verified(&big).unwrap_err();
    assert!(matches!(e, ImageReadError::FileTooLarge { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "image {} is {} bytes, more than the {}-byte limit",
            big.join(META_FILE).display(),
            crac_image::MAX_META_LEN + 1,
            crac_image::MAX_META_LEN
        )
    );
}
