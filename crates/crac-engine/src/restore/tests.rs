use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::follow::{describe_end, kill_and_reap, reap};
use super::spawn::{restore_args, ARG_LAZY};
use super::*;

#[test]
fn embedded_restorer_lies_in_its_zone() {
    let b = restorer_binary();
    assert_eq!(&b[0..4], b"\x7fELF");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(u16_at(16), 2, "ET_EXEC");
    let (phoff, phentsize, phnum) = (
        u64_at(32) as usize,
        u16_at(54) as usize,
        u16_at(56) as usize,
    );
    let zone = crac_image::RESTORER_ZONE_BASE..crac_image::RESTORER_ZONE_BASE + 0x0100_0000;
    let mut loads = 0;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if u32_at(o) == 1 {
            let (vaddr, memsz) = (u64_at(o + 16), u64_at(o + 40));
            assert!(
                zone.contains(&vaddr) && vaddr + memsz <= zone.end,
                "{vaddr:#x}+{memsz:#x}"
            );
            loads += 1;
        }
        assert!(![2, 3].contains(&u32_at(o)), "dynamic segment");
    }
    assert!(loads >= 2);
    const { assert!(crac_image::RESTORER_ZONE_LEN >= 0x1000_0000) };
}

#[test]
fn restore_args_layout() {
    let mut creds = crac_image::creds::Creds {
        uids: [5; 4],
        ..Default::default()
    };
    creds.set_groups(vec![9]);
    let a = restore_args(
        7,
        ARG_LAZY,
        &[("A".into(), "1".into()), ("B".into(), "".into())],
        &creds,
    );
    assert_eq!(&a[0..8], &7u64.to_le_bytes());
    assert_eq!(&a[8..16], &ARG_LAZY.to_le_bytes());
    assert_eq!(&a[16..24], &u64::from(std::process::id()).to_le_bytes());
    assert_eq!(&a[24..32], &7u64.to_le_bytes());
    assert_eq!(&a[32..40], b"A=1\0B=\0\0");
    let len = u64::from_le_bytes(a[40..48].try_into().unwrap()) as usize;
    assert_eq!(a.len(), 48 + len);
    let (tag, mut p) = crac_image::Reader::new(&a[48..])
        .next_section()
        .unwrap()
        .unwrap();
    assert_eq!(tag, crac_image::Tag::Creds as u32);
    let back = crac_image::CredsRecord::decode(&mut p).unwrap();
    assert_eq!(back, creds.as_record());
}

#[test]
fn messages_name_the_stage_and_facts() {
    let e = RestoreError::Restorer {
        stage: Stage::MapMemory,
        errno: Some(2),
        object: 0x1000,
        detail: "opening the mapped file /lib/x.so failed".into(),
    };
    assert_eq!(
        e.to_string(),
        "the restorer failed while mapping memory: opening the mapped file /lib/x.so failed: ENOENT (errno 2)"
    );
    let e = RestoreError::RestorerDied {
        stage: Stage::LoadPages,
        how: describe_end(ExitStatus::from_raw(11)),
    };
    assert_eq!(
        e.to_string(),
        "the restorer was killed by SIGSEGV while loading pages"
    );
    assert_eq!(signal_name(40), "signal 40");
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Writes to `dir` an image whose main thread waits for a signal, with
/// `big_pages` more stored pages (see `testimg`); returns its PID and its
/// other thread's TID.
fn waiting_image(dir: &Path, big_pages: u64) -> (u32, u32) {
    let (pid, tid) = testimg::free_ids();
    let tweaks = testimg::Tweaks {
        big_pages,
        wait_signal: true,
        ..Default::default()
    };
    testimg::write(dir, pid, tid, &tweaks);
    (pid, tid)
}

#[test]
fn preflight_accepts_a_good_image() {
    let d = tmpdir();
    let (pid, tid) = testimg::free_ids();
    testimg::write(d.path(), pid, tid, &testimg::Tweaks::default());
    let plan = preflight(d.path()).unwrap();
    assert_eq!(plan.pid, pid);
    assert_eq!(plan.tids, [pid, tid]);
    assert_eq!(plan.pages, 1);
}

#[test]
fn preflight_reports_every_problem_at_once() {
    let d = tmpdir();
    let me = std::process::id();
    let tweaks = testimg::Tweaks {
        area_start: Some(crac_image::RESTORER_ZONE_BASE),
        file: Some((b"/nonexistent/lib.so".to_vec(), 10, 0x50_0000)),
        nofile_max: Some(u64::MAX),
        ..Default::default()
    };
    testimg::write(d.path(), me, me + 1, &tweaks);
    // Damage the page data: only a preflight that verifies every
    // piece reads it (a restore checks each piece as it loads it).
    let pages = d.path().join(crac_image::PAGES_FILE);
    let mut b = std::fs::read(&pages).unwrap();
    b[4096] ^= 0xff;
    std::fs::write(&pages, b).unwrap();
    let RestoreError::Preflight { problems, .. } = preflight(d.path()).unwrap_err() else {
        panic!("not a preflight error");
    };
    assert!(problems.iter().all(|p| p.kind != ProblemKind::Checksum));
    let err = preflight_with(d.path(), true).unwrap_err();
    let RestoreError::Preflight { problems, .. } = &err else {
        panic!("{err}");
    };
    let kinds: Vec<_> = problems.iter().map(|p| p.kind).collect();
    for k in [
        ProblemKind::Checksum,
        ProblemKind::IdTaken,
        ProblemKind::ZoneCollision,
        ProblemKind::File,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing in {err}");
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("PID {me} is taken by process {me}")),
        "{text}"
    );
    assert!(text.contains("/nonexistent/lib.so"), "{text}");
    assert!(
        text.contains(&format!(
            "page file {}/pages.crac is damaged: piece 0 (file bytes 0x1000-0x2000) hashes to",
            d.path().display()
        )),
        "{text}"
    );
    let hard_nofile = crac_sys::sys::prlimit(7, None).unwrap().1;
    if hard_nofile != u64::MAX {
        assert!(kinds.contains(&ProblemKind::Rlimit), "{text}");
    }
}

#[test]
fn restores_a_hand_made_image() {
    let d = tmpdir();
    let (pid, tid) = testimg::free_ids();
    testimg::write(d.path(), pid, tid, &testimg::Tweaks::default());
    let r = restore(d.path(), RestoreOptions::default()).unwrap();
    assert_eq!((r.pid, r.threads), (pid, 2));
    let st = wait_and_forward(pid).unwrap();
    assert_eq!(st.code(), Some(42), "{st:?}");
    eprintln!("restore took {:?}", r.elapsed);
}

#[test]
fn restorer_errors_name_stage_and_object() {
    let d = tmpdir();
    let (pid, tid) = testimg::free_ids();
    let tweaks = testimg::Tweaks {
        area_start: Some(0x8000_0000_0000),
        ..Default::default()
    };
    testimg::write(d.path(), pid, tid, &tweaks);
    let err = restore(d.path(), RestoreOptions::default()).unwrap_err();
    let RestoreError::Restorer {
        stage,
        object,
        errno,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (*stage, *object),
        (Stage::MapMemory, 0x8000_0000_0000),
        "{err}"
    );
    eprintln!("{err}");
    assert!(errno.is_some(), "{err}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the restorer was not reaped"
    );
}

#[test]
fn wait_and_forward_forwards_signals_and_reports_them() {
    let d = tmpdir();
    let (pid, _) = waiting_image(d.path(), 0);
    restore(d.path(), RestoreOptions::default()).unwrap();
    let me = crac_sys::sys::gettid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // To the waiting thread only (other test threads do not block it).
        crac_sys::sys::tgkill(std::process::id(), me, 10).unwrap();
    });
    let st = wait_and_forward(pid).unwrap();
    killer.join().unwrap();
    assert_eq!(st.signal(), Some(10), "{st:?}");
}

/// Images with 8 MiB of pages or more are loaded by two restorer
/// threads: every page must arrive, and the helper thread must be gone
/// (it never holds an image TID) when the program runs.
#[test]
fn big_image_loads_every_page_on_two_threads() {
    big_image_loads_every_page(true);
}

/// A lazy restore: once the pager is done, every page is there.
#[test]
fn big_image_loads_every_page_lazily() {
    big_image_loads_every_page(false);
}

fn big_image_loads_every_page(eager: bool) {
    let d = tmpdir();
    let pages = 4099; // not an even split
    let (pid, tid) = waiting_image(d.path(), pages);
    let opts = RestoreOptions {
        eager,
        ..Default::default()
    };
    let mut r = restore(d.path(), opts).unwrap();
    assert_eq!((r.pid, r.threads), (pid, 2));
    assert_eq!(r.lazy_bytes == 0, eager, "{r:?}");
    // Other processes cannot read memory that is still loading (EIO).
    let loaded = r.finish().unwrap();
    if !eager {
        assert!(loaded.bytes >= pages * 4096, "{loaded:?}");
    }
    let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        tasks.iter().all(|t| *t == pid || *t == tid),
        "unexpected threads {tasks:?}"
    );
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut got = vec![0u8; pages as usize * 4096];
    use std::os::unix::fs::FileExt;
    mem.read_exact_at(&mut got, testimg::BIG).unwrap();
    kill_and_reap(pid);
    for (i, page) in got.chunks(4096).enumerate() {
        let want = i as u8 | 1;
        assert!(page.iter().all(|b| *b == want), "page {i} differs");
    }
}

/// Images with 64 MiB of pages or more report the bytes loaded: from 0
/// to the total, never decreasing, in steps of at most 16 MiB per
/// thread; smaller images only report their stages.
#[test]
fn big_image_reports_byte_progress() {
    use crac_image::status::{BYTE_PROGRESS_MIN, BYTE_PROGRESS_STEP};
    let d = tmpdir();
    let pages = BYTE_PROGRESS_MIN / 4096 + 1000;
    let (pid, tid) = testimg::free_ids();
    let tweaks = testimg::Tweaks {
        big_pages: pages,
        ..Default::default()
    };
    testimg::write(d.path(), pid, tid, &tweaks);
    let mut seen = Vec::new();
    let mut record = |stage, done, total| seen.push((stage, done, total));
    let eager = RestoreOptions {
        eager: true,
        ..Default::default()
    };
    restore_with_progress(d.path(), eager, &mut record).unwrap();
    let _ = reap(pid);
    assert_eq!(seen.first(), Some(&(Stage::Start, 0, 0)));
    let bytes: Vec<(u64, u64)> = seen
        .iter()
        .filter(|(s, _, t)| *s == Stage::LoadPages && *t > 0)
        .map(|(_, d, t)| (*d, *t))
        .collect();
    // The small pages of the test program's other areas count too.
    let total = bytes[0].1;
    assert!(total >= pages * 4096, "{seen:?}");
    assert_eq!(bytes.first(), Some(&(0, total)), "{seen:?}");
    assert_eq!(bytes.last(), Some(&(total, total)), "{seen:?}");
    assert!(bytes.len() as u64 >= total / BYTE_PROGRESS_STEP, "{seen:?}");
    assert!(bytes.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(bytes.iter().all(|b| b.1 == total), "{seen:?}");
    let at = |s| seen.iter().position(|x| x.0 == s).unwrap();
    assert!(at(Stage::MapMemory) < at(Stage::LoadPages), "{seen:?}");
    assert!(at(Stage::LoadPages) < at(Stage::SetMm), "{seen:?}");

    let small = tmpdir();
    let (pid, tid) = testimg::free_ids();
    testimg::write(small.path(), pid, tid, &testimg::Tweaks::default());
    let mut seen = Vec::new();
    let mut record = |stage, done, total| seen.push((stage, done, total));
    restore_with_progress(small.path(), RestoreOptions::default(), &mut record).unwrap();
    let _ = reap(pid);
    assert!(seen.iter().all(|(_, d, t)| (*d, *t) == (0, 0)), "{seen:?}");
    assert!(seen.iter().any(|x| x.0 == Stage::Resume), "{seen:?}");
}

#[test]
fn detached_restore_gets_its_own_session() {
    let d = tmpdir();
    let (pid, _) = waiting_image(d.path(), 0);
    let opts = RestoreOptions {
        detach: true,
        ..Default::default()
    };
    restore(d.path(), opts).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Fields 5 (pgrp) and 6 (session), counted from 1 with pid and comm.
    assert_eq!(
        (fields[2], fields[3]),
        (&*pid.to_string(), &*pid.to_string())
    );
    kill_and_reap(pid);
}
