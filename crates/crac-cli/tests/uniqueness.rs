//! Uniqueness after restore: `crac::rand::rng()` gives different numbers on
//! every thread in every restored copy of one image, while the raw thread
//! generator (whose state is in the image) repeats itself.

use std::collections::{BTreeMap, HashSet};

use crate::util::{checkpointing, crac, wait_gone, Dir};

/// `after T raw=N crac=N` lines: thread → (raw, crac).
fn afters(stdout: &str) -> BTreeMap<u32, (u64, u64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("after ")?;
            let (t, rest) = rest.split_once(" raw=")?;
            let (raw, fresh) = rest.split_once(" crac=")?;
            Some((t.parse().ok()?, (raw.parse().ok()?, fresh.parse().ok()?)))
        })
        .collect()
}

#[test]
fn crac_rand_differs_per_thread_in_every_restore() {
    let d = Dir::new();
    let image = d.join("image");
    let out = checkpointing("uniq", &image).show_dir(&d).ok();
    let before: HashSet<u64> = out
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("before ")?.split_once(' ')?.1.parse().ok())
        .collect();
    assert_eq!(before.len(), 4, "four different numbers\n{}", out.dump());
    let pid = out.checkpointed_pid();

    let mut runs = Vec::new();
    for _ in 0..2 {
        let out = crac(["restore"]).arg(&image).ok();
        out.stdout_has("UNIQ OK").stdout_has("generation 1\n");
        let after = afters(&out.stdout());
        assert_eq!(after.len(), 4, "{}", out.dump());
        runs.push(after);
        wait_gone(pid, std::time::Duration::from_secs(10));
    }
    for t in 0..4 {
        let ((raw1, fresh1), (raw2, fresh2)) = (runs[0][&t], runs[1][&t]);
        // The image carries each thread's generator state: the raw
        // generator repeats itself, so the test would see a missing reseed.
        assert_eq!(raw1, raw2, "thread {t}: {runs:?}");
        assert_ne!(fresh1, fresh2, "thread {t} repeats itself: {runs:?}");
        assert!(
            !before.contains(&fresh1) && !before.contains(&fresh2),
            "thread {t}: {runs:?} {before:?}"
        );
    }
    let all: HashSet<u64> = runs.iter().flat_map(|r| r.values().map(|v| v.1)).collect();
    assert_eq!(all.len(), 8, "every thread, every restore: {runs:?}");
}
