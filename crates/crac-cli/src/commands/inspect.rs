//! `crac inspect DIR`: describe an image and whether it can be restored here.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crac_engine::identity::{self, FileMatch};
use crac_engine::restore::{self, ProblemKind};
use crac_image::{Image, ImageReadError, ImageSummary, VerifyError};
use serde::Serialize;

use crate::cli::InspectArgs;
use crate::output::{self, Reporter};

/// Version of the `crac inspect --json` shape; raised only when a field
/// changes meaning or goes away (fields may be added at any time).
pub const JSON_VERSION: u32 = 1;

/// Why `crac inspect` failed.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The directory does not exist.
    #[error("image directory {} does not exist", dir.display())]
    NotFound {
        /// The directory given.
        dir: PathBuf,
    },
    /// The image could not be read or is invalid.
    #[error("cannot read the image in {}", dir.display())]
    Read {
        /// The image.
        dir: PathBuf,
        /// What is wrong.
        #[source]
        source: ImageReadError,
    },
    /// `--verify` found a damaged page file (the description was printed).
    #[error("the image in {} failed verification", dir.display())]
    Verify {
        /// The image.
        dir: PathBuf,
        /// What is wrong.
        #[source]
        source: VerifyError,
    },
    /// Printing failed.
    #[error("cannot write the description")]
    Output(#[source] io::Error),
}

/// `crac inspect --json`: the image summary's fields (`ImageSummary`,
/// documented in `docs/image-format.md`) plus what this machine says about
/// the image (documented in the crate's README).
#[derive(Debug, Serialize)]
struct InspectReport<'a> {
    #[serde(flatten)]
    image: &'a ImageSummary,
    inspect_version: u32,
    dir: String,
    files_here: Vec<FileHere>,
    restore: RestoreHere,
    checksums: Checksums,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    leftovers: Vec<super::leftovers::LeftoverJson>,
}

/// Whether a file the image depends on still matches on this machine.
#[derive(Debug, Serialize)]
struct FileHere {
    path: String,
    matches: bool,
    problem: Option<String>,
    /// How a file with the same content differs (another inode, mtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// Whether the image can be restored here.
#[derive(Debug, Serialize)]
struct RestoreHere {
    possible: bool,
    problems: Vec<ProblemView>,
}

#[derive(Debug, Serialize)]
struct ProblemView {
    kind: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
struct Checksums {
    /// Always checked when the image is read.
    metadata: &'static str,
    /// `"ok"` or `"corrupt"` with --verify, else `"not-checked"`.
    pages: &'static str,
    /// The verification failure, if any.
    error: Option<String>,
}

fn kind_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::Image => "image",
        ProblemKind::Checksum => "checksum",
        ProblemKind::File => "file",
        ProblemKind::Cpu => "cpu",
        ProblemKind::Vdso => "vdso",
        ProblemKind::IdTaken => "id-taken",
        ProblemKind::ZoneCollision => "zone-collision",
        ProblemKind::Rlimit => "rlimit",
        ProblemKind::Address => "address",
        ProblemKind::Trust => "trust",
        _ => "other",
    }
}

/// The restore preflight's problems (none if the image can be restored).
fn restore_here(dir: &Path) -> RestoreHere {
    let problems = match restore::preflight(dir) {
        Ok(_) => Vec::new(),
        Err(restore::RestoreError::Preflight { problems, .. }) => problems
            .into_iter()
            .map(|p| ProblemView {
                kind: kind_name(p.kind),
                message: p.message,
            })
            .collect(),
        Err(other) => vec![ProblemView {
            kind: "other",
            message: other.to_string(),
        }],
    };
    RestoreHere {
        possible: problems.is_empty(),
        problems,
    }
}

/// Runs `crac inspect`.
pub fn inspect(args: &InspectArgs, out: Reporter) -> Result<ExitCode, InspectError> {
    let dir = &args.dir;
    if !dir.exists() {
        return Err(InspectError::NotFound { dir: dir.clone() });
    }
    if crac_engine::pause::is_pause_image(dir) {
        // No memory image: a paused process waits to be woken.
        // Read safely: the directory may be another user's.
        let pid = crac_engine::pause::read_pid(dir).ok();
        let line = if args.json {
            format!(
                "{}\n",
                serde_json::json!({
                    "inspect_version": JSON_VERSION,
                    "dir": dir.display().to_string(),
                    "paused_pid": pid,
                })
            )
        } else {
            format!(
                "pause image {}: process {} is paused; wake it with `crac restore {}`\n",
                dir.display(),
                pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                dir.display()
            )
        };
        io::stdout()
            .write_all(line.as_bytes())
            .map_err(InspectError::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let leftovers = super::leftovers::find(dir);
    if !dir.join(crac_image::META_FILE).exists() && !leftovers.is_empty() {
        // A directory holding images: what killed checkpoints left there.
        let text = if args.json {
            let json = serde_json::json!({
                "inspect_version": JSON_VERSION,
                "dir": dir.display().to_string(),
                "leftovers": super::leftovers::json(&leftovers),
            });
            format!("{json:#}\n")
        } else {
            format!(
                "no image in {}\n{}",
                dir.display(),
                super::leftovers::human(&leftovers)
            )
        };
        io::stdout()
            .write_all(text.as_bytes())
            .map_err(InspectError::Output)?;
        return Ok(ExitCode::SUCCESS);
    }
    let image = Image::read(dir).map_err(|source| InspectError::Read {
        dir: dir.clone(),
        source,
    })?;
    let summary = image.summary();
    let spinner = out.spinner(format!("checking {}", dir.display()));
    let mut restore = restore_here(dir);
    let verified = args.verify.then(|| image.verify_pages(dir));
    drop(spinner);
    // A restore would fail when it loads the damaged piece.
    if let Some(Err(e)) = &verified {
        restore.possible = false;
        restore.problems.insert(
            0,
            ProblemView {
                kind: kind_name(ProblemKind::Checksum),
                message: e.to_string(),
            },
        );
    }
    let files_here = image
        .files
        .iter()
        .map(|f| {
            let path = String::from_utf8_lossy(&f.path).into_owned();
            let (problem, note) = match identity::mapped_file(&f.as_record()) {
                FileMatch::Same => (None, None),
                FileMatch::SameContent { moved } => {
                    (None, Some(format!("same content; {}", moved.join(", "))))
                }
                FileMatch::Differs(what) => {
                    (Some(format!("{path} (mapped by the image) {what}")), None)
                }
            };
            FileHere {
                path,
                matches: problem.is_none(),
                problem,
                note,
            }
        })
        .collect();
    let checksums = Checksums {
        metadata: "ok",
        pages: match &verified {
            None => "not-checked",
            Some(Ok(())) => "ok",
            Some(Err(_)) => "corrupt",
        },
        error: match &verified {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        },
    };
    let report = InspectReport {
        inspect_version: JSON_VERSION,
        dir: dir.display().to_string(),
        image: &summary,
        files_here,
        restore,
        checksums,
        leftovers: super::leftovers::json(&leftovers),
    };
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&report)
            .map_err(|e| InspectError::Output(io::Error::other(e)))?;
        json.push('\n');
        json
    } else {
        human(&report) + &super::leftovers::human(&leftovers)
    };
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(InspectError::Output)?;
    match verified {
        Some(Err(source)) => Err(InspectError::Verify {
            dir: dir.clone(),
            source,
        }),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The description for people.
fn human(r: &InspectReport<'_>) -> String {
    let s = r.image;
    let p = &s.process;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "image       {} (format {}, {})",
        r.dir, s.format_version, s.arch
    );
    let _ = writeln!(o, "program     {}", p.exe);
    let _ = writeln!(o, "arguments   {}", shell_words(&p.argv));
    let _ = writeln!(
        o,
        "made        {} ({}) on {}, kernel {}",
        output::utc(p.realtime_ns),
        output::ago(p.realtime_ns),
        p.hostname,
        p.kernel_release
    );
    let _ = writeln!(
        o,
        "process     PID {}, uid {}, gid {}, cwd {}",
        p.pid, p.uid, p.gid, p.cwd
    );
    runs_as(&mut o, s.creds.as_ref());
    let _ = writeln!(o, "threads     {}", s.threads.len());
    for t in &s.threads {
        let _ = writeln!(
            o,
            "  TID {:<8} {}{}",
            t.tid,
            t.name,
            if t.dumper {
                " (made the checkpoint)"
            } else {
                ""
            }
        );
    }
    let m = &s.memory;
    let _ = writeln!(
        o,
        "memory      {} areas, {} mapped, {} populated, {} stored ({} pages)",
        m.vmas,
        output::bytes(m.mapped_bytes),
        output::bytes(m.populated_bytes),
        output::bytes(m.stored_bytes),
        m.stored_pages
    );
    match &s.compression {
        Some(c) => {
            let _ = writeln!(
                o,
                "compression {}: {} of page data stored in {} ({:.1}%; {} pieces compressed, {} raw)",
                c.method,
                output::bytes(c.data_bytes),
                output::bytes(c.stored_bytes),
                c.stored_bytes as f64 * 100.0 / c.data_bytes.max(1) as f64,
                c.compressed_pieces,
                c.raw_pieces
            );
        }
        None => {
            let _ = writeln!(o, "compression none");
        }
    }
    let _ = writeln!(
        o,
        "  {:<29} {:<5} {:>10} {:>10} {:>10}  NAME",
        "ADDRESS", "PERMS", "SIZE", "POPULATED", "STORED"
    );
    for v in &s.vmas {
        let _ = writeln!(
            o,
            "  {:<29} {:<5} {:>10} {:>10} {:>10}  {}",
            format!("{}-{}", v.start, v.end),
            v.perms,
            output::bytes(v.bytes),
            output::bytes(v.populated_bytes),
            output::bytes(v.stored_bytes),
            v.name
        );
    }
    let _ = writeln!(o, "files       {}", r.files_here.len());
    for f in &r.files_here {
        match &f.problem {
            None => match &f.note {
                None => {
                    let _ = writeln!(o, "  {}  (matches)", f.path);
                }
                Some(note) => {
                    let _ = writeln!(o, "  {}  (matches: {note})", f.path);
                }
            },
            Some(problem) => {
                let _ = writeln!(o, "  {}  (DIFFERS: {problem})", f.path);
            }
        }
    }
    if !s.fds.is_empty() {
        let _ = writeln!(o, "descriptors {}", s.fds.len());
        for f in &s.fds {
            let mut line = format!("  {:>4}  {}", f.fd, f.kind);
            for part in [&f.name, &f.state] {
                if !part.is_empty() {
                    line.push_str("  ");
                    line.push_str(part);
                }
            }
            let _ = writeln!(o, "{line}  (flags {})", f.flags);
        }
    }
    if r.restore.possible {
        let _ = writeln!(o, "restore     possible here");
    } else {
        let _ = writeln!(o, "restore     NOT possible here:");
        for problem in &r.restore.problems {
            let _ = writeln!(o, "  - {}", problem.message);
        }
    }
    let _ = writeln!(
        o,
        "checksums   metadata {}, pages {}{}",
        r.checksums.metadata,
        r.checksums.pages,
        if r.checksums.pages == "not-checked" {
            " (use --verify)"
        } else {
            ""
        }
    );
    o
}

/// Arguments as a shell would need them quoted.
/// A name from an `/etc/passwd`-style file (`name:x:id:...`), if listed.
fn name_of(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

fn ids_text(what: &str, file: &str, ids: &[u32; 4]) -> String {
    let named = |id: u32| match name_of(file, id) {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    };
    if ids.iter().all(|&i| i == ids[0]) {
        format!("{what} {}", named(ids[0]))
    } else {
        format!(
            "{what} {} (effective {}, saved {}, fs {})",
            named(ids[0]),
            named(ids[1]),
            ids[2],
            ids[3]
        )
    }
}

fn caps_text(names: &[String]) -> String {
    let all = crac_image::creds::CAP_NAMES.len();
    if names.is_empty() {
        return "none".into();
    }
    if names.len() == all {
        return "all".into();
    }
    if names.len() + 3 >= all {
        let missing: Vec<String> = crac_image::creds::CAP_NAMES
            .iter()
            .map(|n| format!("cap_{n}"))
            .filter(|n| !names.contains(n))
            .collect();
        return format!("all but {}", missing.join(", "));
    }
    names.join(", ")
}

/// The `runs as` lines: who the restored process will be.
fn runs_as(o: &mut String, c: Option<&crac_image::creds::CredsView>) {
    let Some(c) = c else {
        let _ = writeln!(
            o,
            "runs as     unknown: the image has no credentials record (restore refuses it)"
        );
        return;
    };
    let groups = if c.groups.is_empty() {
        "no supplementary groups".to_owned()
    } else {
        let g: Vec<String> = c
            .groups
            .iter()
            .map(|&g| match name_of("/etc/group", g) {
                Some(n) => format!("{g} ({n})"),
                None => g.to_string(),
            })
            .collect();
        format!("groups {}", g.join(", "))
    };
    let _ = writeln!(
        o,
        "runs as     {}, {}, {groups}",
        ids_text("uid", "/etc/passwd", &c.uids),
        ids_text("gid", "/etc/group", &c.gids)
    );
    let mut caps = if c.cap_effective == c.cap_permitted {
        caps_text(&c.cap_effective)
    } else {
        format!(
            "effective {}; permitted {}",
            caps_text(&c.cap_effective),
            caps_text(&c.cap_permitted)
        )
    };
    for (what, set) in [
        ("inheritable", &c.cap_inheritable),
        ("ambient", &c.cap_ambient),
    ] {
        if !set.is_empty() {
            caps += &format!("; {what} {}", caps_text(set));
        }
    }
    if c.no_new_privs {
        caps += "; no_new_privs";
    }
    let _ = writeln!(o, "            capabilities {caps}");
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(
            shell_words(&["a".into(), "b c".into(), "it's".into(), String::new()]),
            "a 'b c' 'it'\\''s' ''"
        );
    }
}
