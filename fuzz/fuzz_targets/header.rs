//! Arbitrary bytes as a `meta.crac` header, as given and with the header
//! checksum fixed up (so the version and architecture checks are reached).
//! Nothing may panic, and an accepted header re-encodes to one that decodes
//! the same.
//!
//! The same entry point runs on stable in
//! `crates/crac-image/tests/decode_fuzz.rs`.
#![no_main]

use crac_image::{crc32, Header, HEADER_LEN};
use libfuzzer_sys::{fuzz_target, Corpus};

fn check(data: &[u8]) {
    if let Ok(h) = Header::decode(data) {
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }
}

fuzz_target!(|data: &[u8]| -> Corpus {
    if data.len() < HEADER_LEN {
        return Corpus::Reject;
    }
    check(data);
    let mut fixed = data[..HEADER_LEN].to_vec();
    let crc = crc32(0, &fixed[..60]);
    fixed[60..64].copy_from_slice(&crc.to_le_bytes());
    check(&fixed);
    Corpus::Keep
});
