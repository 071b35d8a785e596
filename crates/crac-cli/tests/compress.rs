//! Compressed images (`CRAC_ENGINE_OPTIONS=compress=lz4|zstd`, format 1.4)
//! on real processes: the `compressible` payload checks every byte of its
//! data after a lazy, eager, verified and detached restore; a damaged
//! compressed piece is refused or kills the process before it reads it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crac_image::{Image, PageRun, STORED_RAW, VMA_FILE, VMA_SHARED};

use crate::util::{checkpointing, crac, wait_dead, wait_gone, Dir};

const SHORT: Duration = Duration::from_secs(20);

/// A checkpointed `compressible` with 16 MiB of data, compressed with
/// `method`; returns the image and its PID (gone by now).
fn image(d: &Dir, method: &str) -> (PathBuf, u32) {
    let image = d.join(&format!("image-{method}"));
    checkpointing("compressible", &image)
        .env("CRAC_ENGINE_OPTIONS", format!("compress={method}"))
        .arg("16")
        .ok()
        .stdout_has("checkpoint ");
    let pid = crate::image_pid(&image);
    wait_gone(pid, SHORT);
    (image, pid)
}

fn restores_in_every_mode(method: &str) {
    let d = Dir::new();
    let (image, pid) = image(&d, method);
    let img = Image::read(&image).unwrap();
    let st = img.stored.as_ref().expect("compressed");
    assert_eq!(crac_image::method_name(st.compression), method);
    assert!(
        st.stored_bytes() * 2 < st.data_len,
        "{} of {}",
        st.stored_bytes(),
        st.data_len
    );
    assert!(
        st.pieces.iter().any(|p| p.method == STORED_RAW),
        "random data stays raw"
    );
    let text = crac(["inspect"]).arg(&image).ok().stdout();
    assert!(text.contains(&format!("compression {method}: ")), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&crac(["inspect", "--json"]).arg(&image).ok().stdout()).unwrap();
    assert_eq!(json["format_version"], "1.4");
    assert_eq!(json["compression"]["method"], method);
    assert_eq!(json["compression"]["data_bytes"], st.data_len);
    assert_eq!(json["compression"]["stored_bytes"], st.stored_bytes());
    crac(["inspect", "--verify"])
        .arg(&image)
        .ok()
        .stdout_has("pages ok");
    crate::util::restores_in_every_mode(&d, &image, pid, SHORT);
}

#[test]
fn an_lz4_image_restores_in_every_mode() {
    restores_in_every_mode("lz4");
}

#[test]
fn a_zstd_image_restores_in_every_mode() {
    restores_in_every_mode("zstd");
}

/// A copy of `image` with one stored byte changed in the middle of a
/// compressed piece of the longest private anonymous run (the payload's
/// data, loaded lazily by default). Returns the copy and the piece's text
/// in messages (`piece N (stored lz4 at file bytes`).
fn damaged_copy(d: &Dir, image: &Path, name: &str) -> (PathBuf, String, u64) {
    let copy = crate::util::copy_image(d, image, name);
    let img = Image::read(image).unwrap();
    let st = img.stored.as_ref().unwrap();
    let run = crate::util::longest_anon_run(&img);
    // A compressed piece wholly inside the run, near its start (text).
    let first = (run.offset - 4096).div_ceil(crac_image::PIECE_LEN) + 2;
    let index = (first..)
        .find(|&i| st.pieces[i as usize].method != STORED_RAW)
        .unwrap();
    let p = st.pieces[index as usize];
    let pages = copy.join("pages.crac");
    let mut b = fs::read(&pages).unwrap();
    let at = p.offset as usize + p.len as usize / 2;
    b[at] ^= 0x5a;
    fs::write(&pages, b).unwrap();
    let addr = run.addr + (4096 + index * crac_image::PIECE_LEN - run.offset);
    (
        copy,
        format!(
            "piece {index} (stored {} at file bytes {:#x}-{:#x})",
            crac_image::method_name(p.method),
            p.offset,
            p.offset + u64::from(p.len)
        ),
        addr,
    )
}

fn damaged(method: &str) {
    let d = Dir::new();
    let (image, pid) = image(&d, method);
    let (bad, piece, _addr) = damaged_copy(&d, &image, "bad");
    let (start, end) = {
        let i: u64 = piece[6..].split(' ').next().unwrap().parse().unwrap();
        let s = 4096 + i * crac_image::PIECE_LEN;
        (s, s + crac_image::PIECE_LEN)
    };
    // Lazy: the pager finds it, kills the process before it reads it.
    let out = crac(["restore"]).arg(&bad).fails_with(1);
    wait_dead(pid, SHORT);
    out.stderr_has(&format!("error: cannot restore {}", bad.display()))
        .stderr_has(&format!(
            "the page file {}/pages.crac is damaged: piece {} (file bytes {start:#x}-{end:#x}",
            bad.display(),
            &piece[6..].split(' ').next().unwrap()
        ));
    assert!(!out.stdout().contains("data ok"), "{}", out.dump());
    assert!(!out.stdout().contains("checked "), "{}", out.dump());
    // Eager and detached: refused before anything runs.
    for mode in ["--eager", "--detach"] {
        let out = crac(["restore", mode]).arg(&bad).fails_with(1);
        out.stderr_has(&format!(
            "page file {}/pages.crac is damaged: {piece}",
            bad.display()
        ));
        assert!(out.stdout().is_empty(), "never ran: {}", out.dump());
        assert!(!crate::util::alive(pid));
    }
    // --verify and inspect --verify name it up front.
    let out = crac(["restore", "--verify"]).arg(&bad).fails_with(1);
    out.stderr_has(&format!(
        "page file {}/pages.crac is damaged: {piece}",
        bad.display()
    ));
    assert!(out.stdout().is_empty(), "nothing ran: {}", out.dump());
    crac(["inspect", "--verify"])
        .arg(&bad)
        .fails_with(1)
        .stdout_has("pages corrupt")
        .stderr_has(&format!(
            "page file {}/pages.crac is damaged: {piece}",
            bad.display()
        ));
}

#[test]
fn a_damaged_lz4_piece_is_refused_or_kills_before_the_program_reads_it() {
    damaged("lz4");
}

#[test]
fn a_damaged_zstd_piece_is_refused_or_kills_before_the_program_reads_it() {
    damaged("zstd");
}

/// A live dump (`keep_running`: a forked copy writes the image while the
/// program runs on) compresses the same way; the image restores.
#[test]
fn a_live_dump_compresses_too() {
    let d = Dir::new();
    let image = d.join("live");
    checkpointing("compressible", &image)
        .env("CRAC_ENGINE_OPTIONS", "keep_running,compress=zstd")
        .arg("8")
        .ok()
        .stdout_has("data ok: true");
    let img = Image::read(&image).unwrap();
    let st = img.stored.as_ref().expect("compressed");
    assert!(st.stored_bytes() * 2 < st.data_len);
    let pid = crate::image_pid(&image);
    crac(["restore", "--eager"])
        .arg(&image)
        .ok()
        .stdout_has("data ok: true");
    wait_gone(pid, SHORT);
}

/// In a lazy restore of an LZ4 image the restorer reads the pieces of the
/// areas it loads itself (not private anonymous memory) straight from
/// `pages.crac`: a damaged one fails the restore before the program
/// resumes, named like everywhere else.
#[test]
fn a_damaged_lz4_piece_the_restorer_loads_fails_a_lazy_restore() {
    let d = Dir::new();
    let (image, pid) = image(&d, "lz4");
    let img = Image::read(&image).unwrap();
    let st = img.stored.as_ref().unwrap();
    let restorers = |r: &PageRun| {
        img.vmas
            .iter()
            .any(|v| v.start <= r.addr && r.addr < v.end && v.flags & (VMA_FILE | VMA_SHARED) != 0)
    };
    let index = img
        .runs
        .iter()
        .filter(|r| restorers(r))
        .flat_map(|r| {
            (0..r.pages).map(move |k| (r.offset + k * 4096 - 4096) / crac_image::PIECE_LEN)
        })
        .find(|&i| st.pieces[i as usize].method == crac_image::STORED_LZ4)
        .expect("an LZ4 piece of a file-backed or shared area");
    let p = st.pieces[index as usize];
    let bad = d.join("bad");
    fs::create_dir(&bad).unwrap();
    fs::copy(image.join("meta.crac"), bad.join("meta.crac")).unwrap();
    let mut b = fs::read(image.join("pages.crac")).unwrap();
    // The whole piece: garbage that no longer decodes or hashes right.
    for x in &mut b[p.offset as usize..(p.offset + u64::from(p.len)) as usize] {
        *x ^= 0xa5;
    }
    fs::write(bad.join("pages.crac"), b).unwrap();
    let out = crac(["restore"]).arg(&bad).fails_with(1);
    out.stderr_has(&format!(
        "page file {}/pages.crac is damaged: piece {index} (stored lz4 at file bytes {:#x}-{:#x})",
        bad.display(),
        p.offset,
        p.offset + u64::from(p.len)
    ));
    assert!(out.stdout().is_empty(), "never ran: {}", out.dump());
    assert!(!crate::util::alive(pid));
}
