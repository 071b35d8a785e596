//! Per-piece checks of the page data on real processes: a byte changed in
//! `pages.crac` is found when its piece is loaded (lazily by the pager,
//! eagerly by the restorer) or up front with `--verify`, and the program
//! never runs on the damaged memory.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crac_image::{Image, PAGE_SIZE};

use crate::util::{checkpointing, crac, wait_dead, wait_gone, Dir};

const SHORT: Duration = Duration::from_secs(10);

/// A checkpointed `memhog` with 8 MiB of data; returns the image and the
/// PID it restores with (gone by now).
fn memhog_image(d: &Dir) -> (PathBuf, u32) {
    let image = d.join("image");
    checkpointing("memhog", &image)
        .arg("8")
        .ok()
        .stdout_has("checkpoint ");
    let pid = crate::image_pid(&image);
    wait_gone(pid, SHORT);
    (image, pid)
}

/// A copy of `image` with one byte of page data changed in the middle of
/// the longest run of private anonymous memory (memhog's data, loaded
/// lazily by default). Returns the copy and what an error must name: the
/// piece (`piece N (file bytes 0xA-0xB`) and the changed address.
fn damaged_copy(d: &Dir, image: &Path, name: &str) -> (PathBuf, String, u64) {
    let copy = crate::util::copy_image(d, image, name);
    let img = Image::read(image).unwrap();
    let run = crate::util::longest_anon_run(&img);
    assert!(run.pages * PAGE_SIZE >= 4 << 20, "{run:?}");
    let at = run.len() / 2 + 123;
    let (off, addr) = (run.offset + at, run.addr + at);
    let index = (off - 4096) / crac_image::PIECE_LEN;
    let (start, end) = crac_image::piece_range(index, img.header.pages_len).unwrap();
    let pages = copy.join("pages.crac");
    let mut b = fs::read(&pages).unwrap();
    b[off as usize] ^= 0x5a;
    fs::write(&pages, b).unwrap();
    (
        copy,
        format!("piece {index} (file bytes {start:#x}-{end:#x}"),
        addr,
    )
}

/// Lazy restore (the default): the pager finds the damage before it
/// copies the piece in, kills the process, and `crac restore` fails naming
/// the image, the piece and the memory; the program never finished its
/// check of the data.
#[test]
fn a_damaged_piece_kills_a_lazy_restore_before_the_program_reads_it() {
    let d = Dir::new();
    let (image, pid) = memhog_image(&d);
    let (bad, piece, addr) = damaged_copy(&d, &image, "bad");
    let out = crac(["restore"]).arg(&bad).fails_with(1);
    wait_dead(pid, SHORT);
    out.stderr_has(&format!("error: cannot restore {}", bad.display()))
        .stderr_has(&format!(
            "the page file {}/pages.crac is damaged: {piece}, memory 0x",
            bad.display()
        ))
        .stderr_has(&format!("process {pid} was killed before it could read"));
    // The memory the piece holds includes the changed byte.
    let text = out.stderr();
    let memory = text
        .split(", memory ")
        .nth(1)
        .and_then(|m| m.split(')').next())
        .unwrap();
    let holds = memory.split(", ").any(|r| {
        let (s, e) = r.split_once('-').unwrap();
        let parse = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap();
        parse(s) <= addr && addr < parse(e)
    });
    assert!(holds, "{addr:#x} not in {memory}\n{}", out.dump());
    // It never got through its data.
    assert!(!out.stdout().contains("data ok"), "{}", out.dump());
    assert!(!out.stdout().contains("checked "), "{}", out.dump());
}

/// Eager restore: the restorer checks the piece before it reads it in and
/// fails before the program resumes.
#[test]
fn a_damaged_piece_fails_an_eager_restore_before_the_program_resumes() {
    let d = Dir::new();
    let (image, pid) = memhog_image(&d);
    let (bad, piece, _) = damaged_copy(&d, &image, "bad");
    let out = crac(["restore", "--eager"]).arg(&bad).fails_with(1);
    wait_dead(pid, SHORT);
    out.stderr_has(&format!("error: cannot restore {}", bad.display()))
        .stderr_has(&format!(
            "the restorer failed while loading pages: page file {piece}) is damaged: hash 0x"
        ))
        .stderr_has("not loaded into 0x");
    assert!(out.stdout().is_empty(), "never resumed: {}", out.dump());
}

/// `--verify` checks every piece before anything is restored.
#[test]
fn restore_verify_refuses_a_damaged_piece_up_front() {
    let d = Dir::new();
    let (image, pid) = memhog_image(&d);
    let (bad, piece, _) = damaged_copy(&d, &image, "bad");
    let out = crac(["restore", "--verify"]).arg(&bad).fails_with(1);
    out.stderr_has(&format!(
        "error: cannot restore {}\n  caused by: the image {} cannot be restored here:\n    - page file {}/pages.crac is damaged: {piece}) hashes to 0x",
        bad.display(),
        bad.display(),
        bad.display()
    ));
    assert!(out.stdout().is_empty(), "nothing ran: {}", out.dump());
    assert!(!crate::util::alive(pid));
    // Without --verify the same image is not read up front.
    crac(["inspect"])
        .arg(&bad)
        .ok()
        .stdout_has("restore     possible here");
}

/// `inspect --verify` checks every piece and names the damaged one.
#[test]
fn inspect_verify_names_the_damaged_piece() {
    let d = Dir::new();
    let (image, _) = memhog_image(&d);
    let (bad, piece, _) = damaged_copy(&d, &image, "bad");
    let out = crac(["inspect", "--verify"]).arg(&bad).fails_with(1);
    out.stdout_has("pages corrupt").stderr_has(&format!(
        "error: the image in {} failed verification\n  caused by: page file {}/pages.crac is damaged: {piece}) hashes to 0x",
        bad.display(),
        bad.display()
    ));
    let json: serde_json::Value = serde_json::from_str(
        &crac(["inspect", "--json", "--verify"])
            .arg(&bad)
            .fails_with(1)
            .stdout(),
    )
    .unwrap();
    assert_eq!(json["checksums"]["pages"], "corrupt");
    assert!(
        json["checksums"]["error"]
            .as_str()
            .unwrap()
            .contains(&piece),
        "{json}"
    );
    // The undamaged image verifies.
    crac(["inspect", "--verify"])
        .arg(&image)
        .ok()
        .stdout_has("pages ok");
}

/// An undamaged image restores lazily, eagerly, with --verify and detached.
#[test]
fn an_undamaged_image_restores_in_every_mode() {
    let d = Dir::new();
    let (image, pid) = memhog_image(&d);
    crate::util::restores_in_every_mode(&d, &image, pid, SHORT);
}
