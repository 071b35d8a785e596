//! Credentials across the restore: the restorer uses the credentials the
//! preflight checked.

use std::path::Path;

use super::{restore_with_progress, testimg, RestoreOptions};
use crac_image::status::Stage;

/// An image its user rewrites after the preflight (here: to claim root)
/// is refused by the restorer, which compares the image's credentials
/// with those the preflight checked, before anything runs.
#[test]
fn an_image_rewritten_after_the_preflight_cannot_change_who_runs() {
    let d = tempfile::tempdir().unwrap();
    let (pid, tid) = testimg::free_ids();
    testimg::write(d.path(), pid, tid, &testimg::Tweaks::default());
    let meta_path = d.path().join(crac_image::META_FILE);
    let as_root = std::fs::read(&meta_path).unwrap();
    // The same image made by nobody.
    let mut as_nobody = as_root.clone();
    let body_at = crac_image::HEADER_LEN;
    let mut r = crac_image::Reader::new(&as_root[body_at..]);
    loop {
        let before = r.remaining();
        let (tag, _) = r.next_section().unwrap().expect("a creds section");
        if tag == crac_image::Tag::Creds as u32 {
            let payload = as_root.len() - before + 8;
            for i in 0..8 {
                let at = payload + 4 * i;
                as_nobody[at..at + 4].copy_from_slice(&65534u32.to_le_bytes());
            }
            break;
        }
    }
    let mut h = crac_image::Header::decode(&as_nobody).unwrap();
    h.body_crc = crc32fast::hash(&as_nobody[body_at..]);
    as_nobody[..body_at].copy_from_slice(&h.encode());
    std::fs::write(&meta_path, &as_nobody).unwrap();
    let mut swap = |stage: Stage, _: u64, _: u64| {
        if stage == Stage::Start {
            // In place, as the image's owner could.
            std::fs::write(&meta_path, &as_root).unwrap();
        }
    };
    let err = restore_with_progress(d.path(), RestoreOptions::default(), &mut swap)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "the image's credentials (uid 0) are not those the preflight checked (uid 65534)"
        ),
        "{err}"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "it runs");
}
