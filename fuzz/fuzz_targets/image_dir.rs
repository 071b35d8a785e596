//! Arbitrary bytes as a whole image directory through the strict reader
//! (`Image::read_verified`, what `crac inspect` and restore's preflight
//! use): the first two bytes give the length of `pages.crac`'s share (in
//! 64-byte units) at the end of the input, the rest is `meta.crac`. Nothing
//! may panic; what is accepted is consistent and is the bytes on disk.
//!
//! The same entry point runs on stable in
//! `crates/crac-image/tests/decode_fuzz.rs`.
#![no_main]

use crac_image::{Image, META_FILE, PAGES_FILE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (usize::from(u16::from_le_bytes([data[0], data[1]])) * 64).min(data.len() - 2);
    let (meta, pages) = data[2..].split_at(data.len() - 2 - split);
    let dir = std::env::temp_dir().join(format!("crac-fuzz-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(META_FILE), meta).unwrap();
    std::fs::write(dir.join(PAGES_FILE), pages).unwrap();
    if let Ok(v) = Image::read_verified(&dir) {
        assert_eq!(v.meta, meta);
        v.image.sanity_check().unwrap();
        let _ = v.image.summary();
    }
});
