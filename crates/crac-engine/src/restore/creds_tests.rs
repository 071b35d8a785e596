//! Credentials across the restore: the process runs with the credentials
//! the preflight checked.

use std::path::Path;

use super::follow::kill_and_reap;
use super::{restore_with_progress, testimg, RestoreOptions};
use crac_image::status::Stage;

/// An image its user rewrites after the preflight (here: to claim root)
/// does not change who runs: the restorer gets the metadata preflight
/// checked (a sealed memfd), not the file, and the process runs as the
/// user preflight saw.
#[test]
fn an_image_rewritten_after_the_preflight_cannot_change_who_runs() {
    let d = tempfile::tempdir().unwrap();
    let (pid, tid) = testimg::free_ids();
    let tweaks = testimg::Tweaks {
        wait_signal: true,
        ..Default::default()
    };
    testimg::write(d.path(), pid, tid, &tweaks);
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
    let restored = restore_with_progress(d.path(), RestoreOptions::default(), &mut swap);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kill_and_reap(pid);
    match restored.map_err(|e| e.to_string()) {
        // Ran: as the user preflight saw.
        Ok(_) => {
            let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
            assert_eq!(
                uids.split_whitespace().skip(1).collect::<Vec<_>>(),
                ["65534"; 4],
                "{status}"
            );
        }
        // Or, where this test binary lies in a directory only root may
        // enter, stopped opening it as that user: also not as root.
        Err(e) => assert!(
            e.contains("opening the executable") && e.contains("EACCES"),
            "{e}"
        ),
    }
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "still runs");
}
