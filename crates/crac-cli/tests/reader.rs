//! Issue 10, cases 5–7: hostile image directories are refused by `inspect`
//! and `restore` at once (within 5 s, bounded memory), with a clear error,
//! before anything of the image runs.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crac_image::model::header_for;
use crac_image::{Image, META_FILE, PAGES_FILE};

use super::util::{self, crac_exe, wait_gone, Dir};

/// Each case must end within this.
const LIMIT: Duration = Duration::from_secs(5);

/// What a `crac` run within [`LIMIT`] printed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `crac ARGS`; kills it (by its PID) and fails the test if it does not
/// end within [`LIMIT`].
fn crac_within(args: &[&str], dir: &Path) -> Ran {
    let out_path = dir.with_extension("out");
    let err_path = dir.with_extension("err");
    let mut child = Command::new(crac_exe())
        .args(args)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "crac {args:?} {} did not end within {LIMIT:?}: {}",
                dir.display(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ran = Ran {
        code: status.code(),
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
    };
    let _ = fs::remove_file(out_path);
    let _ = fs::remove_file(err_path);
    ran
}

/// An image of the writer example (it wrote "hello" before the checkpoint
/// and writes " there!" once restored), its process gone.
struct Source {
    d: Dir,
    image: PathBuf,
    pid: u32,
}

fn source() -> Source {
    let d = Dir::new();
    let image = super::writer_image(&d);
    let pid = Image::read(&image).unwrap().process.pid;
    wait_gone(pid, Duration::from_secs(10));
    Source { d, image, pid }
}

impl Source {
    /// A copy of the image in `name`.
    fn copy(&self, name: &str) -> PathBuf {
        let dir = self.d.join(name);
        fs::create_dir(&dir).unwrap();
        for f in [META_FILE, PAGES_FILE] {
            fs::copy(self.image.join(f), dir.join(f)).unwrap();
        }
        dir
    }

    /// A copy of the image with `change` applied to its records, written
    /// as is (not checked), with a valid header and checksums.
    fn edited(&self, name: &str, change: impl FnOnce(&mut Image)) -> PathBuf {
        let dir = self.copy(name);
        let mut img = Image::read(&dir).unwrap();
        change(&mut img);
        let body = img.encode_body();
        let pages = fs::read(dir.join(PAGES_FILE)).unwrap();
        let header = header_for(&body, &pages[4096..]);
        let mut meta = header.encode().to_vec();
        meta.extend_from_slice(&body);
        fs::write(dir.join(META_FILE), meta).unwrap();
        dir
    }

    /// `restore` of `dir` is refused at once with `reason`, and nothing of
    /// the image ran: its PID is not alive and the program did not write.
    fn restore_refused(&self, dir: &Path, reason: &str) {
        let r = crac_within(&["restore"], dir);
        assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .starts_with(&format!("error: cannot restore {}\n", dir.display())),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains(reason), "{reason:?} not in: {}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing ran: {}", r.stdout);
        assert!(!util::alive(self.pid), "PID {} is alive", self.pid);
        let out = fs::read_to_string(self.d.join("out.txt")).unwrap();
        assert!(!out.contains("there"), "the program ran: {out:?}");
    }

    /// `inspect` of `dir` fails at once with `reason`.
    fn inspect_refused(&self, dir: &Path, reason: &str) {
        let r = crac_within(&["inspect"], dir);
        assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(reason), "{reason:?} not in: {}", r.stderr);
    }
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// Case 5: `meta.crac` and `pages.crac` as symbolic links to /dev/zero.
#[test]
fn image_files_linked_to_dev_zero_are_refused_at_once() {
    let s = source();
    let both = s.d.join("zero-both");
    fs::create_dir(&both).unwrap();
    symlink("/dev/zero", both.join(META_FILE)).unwrap();
    symlink("/dev/zero", both.join(PAGES_FILE)).unwrap();
    let reason = format!("{} is a symbolic link", both.join(META_FILE).display());
    s.restore_refused(&both, &reason);
    s.inspect_refused(&both, &reason);

    // Only the page file: the metadata is the real one.
    let pages = s.copy("zero-pages");
    fs::remove_file(pages.join(PAGES_FILE)).unwrap();
    symlink("/dev/zero", pages.join(PAGES_FILE)).unwrap();
    let reason = format!("{} is a symbolic link", pages.join(PAGES_FILE).display());
    s.restore_refused(&pages, &reason);
    s.inspect_refused(&pages, &reason);

    // A link to a good copy is refused all the same: no file is followed.
    let linked = s.d.join("linked");
    fs::create_dir(&linked).unwrap();
    symlink(s.image.join(META_FILE), linked.join(META_FILE)).unwrap();
    fs::copy(s.image.join(PAGES_FILE), linked.join(PAGES_FILE)).unwrap();
    s.restore_refused(&linked, "is a symbolic link");
}

/// Case 6: `meta.crac` or `pages.crac` as a FIFO (nobody writes to it).
#[test]
fn image_files_that_are_fifos_are_refused_at_once() {
    let s = source();
    for name in [META_FILE, PAGES_FILE] {
        let dir = s.copy(&format!("fifo-{name}"));
        fs::remove_file(dir.join(name)).unwrap();
        mkfifo(&dir.join(name));
        let reason = format!("{} is a FIFO, not a regular file", dir.join(name).display());
        s.restore_refused(&dir, &reason);
        s.inspect_refused(&dir, &reason);
    }
}

/// Case 6: a mapped-file record that names a FIFO whose attributes match
/// the record (so only its type tells it apart).
#[test]
fn a_mapped_file_that_is_a_fifo_is_refused_at_once() {
    let s = source();
    let fifo = s.d.join("lib.fifo");
    mkfifo(&fifo);
    let md = fs::metadata(&fifo).unwrap();
    let dir = s.edited("fifo-file", |img| {
        let f = img
            .files
            .iter_mut()
            .find(|f| !f.build_id.is_empty())
            .expect("a mapped file with a build-id");
        f.path = fifo.as_os_str().as_encoded_bytes().to_vec();
        (f.dev, f.ino, f.size) = (md.dev(), md.ino(), md.size());
        (f.mtime_sec, f.mtime_nsec) = (md.mtime(), md.mtime_nsec() as u32);
    });
    let reason = format!(
        "{} (mapped by the image) is not a regular file",
        fifo.display()
    );
    s.restore_refused(&dir, &reason);
    let r = crac_within(&["inspect"], &dir);
    assert!(
        r.stdout.contains("restore     NOT possible here") && r.stdout.contains(&reason),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
}

/// Case 7: a damaged page-file header (no checksum covers it) is refused by
/// restore as by `inspect`.
#[test]
fn a_damaged_page_file_header_is_refused_before_anything_runs() {
    let s = source();
    for (at, what) in [
        (8, "its format version differs from meta.crac's"),
        (16, "its page count does not match the file length"),
    ] {
        let dir = s.copy(&format!("pages-header-{at}"));
        let path = dir.join(PAGES_FILE);
        let mut b = fs::read(&path).unwrap();
        b[at] ^= 0x01;
        fs::write(&path, b).unwrap();
        s.restore_refused(&dir, what);
        s.inspect_refused(&dir, what);
    }
}

/// Case 7: overlapping mappings, which `inspect` calls inconsistent.
#[test]
fn overlapping_mappings_are_refused_before_anything_runs() {
    let s = source();
    let dir = s.edited("overlap", |img| {
        let i = (1..img.vmas.len())
            .find(|&i| img.vmas[i].len() >= 0x2000)
            .expect("a mapping of two pages or more");
        img.vmas[i - 1].end = img.vmas[i].start + 0x1000;
    });
    let reason = "is inconsistent";
    s.restore_refused(&dir, reason);
    s.restore_refused(&dir, "starts before the previous mapping ends");
    s.inspect_refused(&dir, reason);
}

/// Case 7: a page run whose data lies past the end of `pages.crac`.
#[test]
fn a_page_run_past_the_page_file_is_refused_before_anything_runs() {
    let s = source();
    let dir = s.edited("run-past-end", |img| {
        let pages_len = fs::metadata(s.image.join(PAGES_FILE)).unwrap().len();
        let r = img.runs.last_mut().unwrap();
        r.offset = pages_len;
    });
    let reason = "outside the page data of the";
    s.restore_refused(&dir, reason);
    s.inspect_refused(&dir, reason);
}

/// Case 6: an fd record of a regular file (kind 7) that names a FIFO whose
/// attributes match the record.
#[test]
fn an_open_file_record_that_is_a_fifo_is_refused_at_once() {
    let s = source();
    let fifo = s.d.join("data.fifo");
    mkfifo(&fifo);
    let md = fs::metadata(&fifo).unwrap();
    let dir = s.edited("fifo-fd", |img| {
        let mtime_ns = md.mtime() as u64 * 1_000_000_000 + md.mtime_nsec() as u64;
        img.fds.push(crac_image::model::Fd {
            fd: 900,
            kind: crac_image::FD_FILE,
            flags: 0,
            id: md.dev(),
            values: [0, md.size(), mtime_ns, md.ino()],
            name: fifo.as_os_str().as_encoded_bytes().to_vec(),
            ..Default::default()
        });
    });
    let reason = format!(
        "{} (open as file descriptor 900) is no longer a regular file",
        fifo.display()
    );
    s.restore_refused(&dir, &reason);
}

/// Case 5 (bounded work): a sparse page file larger than this machine's
/// memory and swap, with headers that agree with it, is refused before it is
/// read.
#[test]
fn a_page_file_larger_than_the_machine_is_refused_before_it_is_read() {
    let s = source();
    let dir = s.copy("huge-pages");
    let info = fs::read_to_string("/proc/meminfo").unwrap();
    let kib = |k: &str| -> u64 {
        info.lines().find_map(|l| l.strip_prefix(k)).map_or(0, |v| {
            v.trim().trim_end_matches("kB").trim().parse().unwrap()
        })
    };
    let room = (kib("MemTotal:") + kib("SwapTotal:")) * 1024;
    let len = (room / 4096 + 2) * 4096;
    let pages = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(PAGES_FILE))
        .unwrap();
    pages.set_len(len).unwrap();
    use std::os::unix::fs::FileExt;
    pages
        .write_all_at(&(len / 4096 - 1).to_le_bytes(), 16)
        .unwrap();
    // A piece table of the right count, so the image is consistent.
    let mut img = Image::read(&s.image).unwrap();
    img.pieces = Some(vec![0; crac_image::piece_count(len) as usize]);
    let body = img.encode_body();
    let mut h = header_for(&body, &[]);
    h.pages_len = len;
    let mut meta = h.encode().to_vec();
    meta.extend_from_slice(&body);
    fs::write(dir.join(META_FILE), meta).unwrap();
    s.restore_refused(&dir, "more than this machine's memory and swap");
}
