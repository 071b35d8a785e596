//! Descriptors the checkpointed program inherited at start (`7>file`) are
//! passed through, like stdio: the restored process gets `crac restore`'s
//! own descriptor of the same number, or /dev/null (read-write) with a
//! warning where `crac restore` was not started with one.
//!
//! "Its own" means inherited by `crac restore` at its start and still the
//! same file (see [`crate::startup`]): its image files, status socket and
//! pager descriptors never pass, whatever their numbers. The restorer needs
//! 3 to 6 for its inputs, so the descriptors are handed over out of the way,
//! at [`handoff_base`] + rank (rank in increasing number order), and the
//! library in the restored process moves them to their numbers before
//! anything else runs (`dump/fds/inherited.rs`). Nothing else of `crac
//! restore`'s reaches the restored process.

use std::fs::File;
use std::os::fd::AsRawFd;

use crac_image::model::Fd;
use crac_image::FD_INHERITED;
use crac_sys::raw::EXEC_CHILD_FDS;

use crate::dump::fds::inherited::handoff_base;

use super::preflight::ProblemKind;

/// The restorer's own inputs take 4 of the spawn's descriptor pairs.
const MAX_INHERITED: usize = EXEC_CHILD_FDS - 4;

const O_ACCMODE: u32 = 3;
const F_GETFL: i32 = 3;
const RLIMIT_NOFILE: u32 = 7;

/// Something the restored process gets that differs from what it had, for
/// `crac restore` to tell its user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreWarning {
    /// `crac restore` was not started with this descriptor open.
    #[error(
        "descriptor {fd}, inherited by the checkpointed program, is not open here; it points \
         to /dev/null in the restored process"
    )]
    InheritedMissing {
        /// The descriptor number.
        fd: u32,
    },
    /// `crac restore`'s descriptor does not allow what the program's did.
    #[error(
        "descriptor {fd}, inherited by the checkpointed program {wanted}, is open here \
         {here}"
    )]
    InheritedMode {
        /// The descriptor number.
        fd: u32,
        /// `for reading`, `for writing`, `for reading and writing`.
        wanted: &'static str,
        /// The same for `crac restore`'s descriptor.
        here: &'static str,
    },
}

/// The image's inherited descriptor numbers above stdio, sorted, each once
/// (stdio always passes through).
pub fn inherited(fds: &[Fd]) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = fds
        .iter()
        .filter(|f| f.kind == FD_INHERITED && f.fd > 2)
        .map(|f| (f.fd, f.flags))
        .collect();
    v.sort_unstable_by_key(|&(fd, _)| fd);
    v.dedup_by_key(|&mut (fd, _)| fd);
    v
}

/// What keeps a hand-over impossible here: too many inherited descriptors,
/// or numbers beyond this process's descriptor limit (which the restorer
/// inherits).
pub fn problems(fds: &[Fd]) -> Vec<(ProblemKind, String)> {
    let list = inherited(fds);
    let mut out = Vec::new();
    let Some(&(largest, _)) = list.last() else {
        return out;
    };
    if list.len() > MAX_INHERITED {
        out.push((
            ProblemKind::Image,
            format!(
                "the image has {} inherited descriptors, more than the {MAX_INHERITED} crac \
                 restore can pass through",
                list.len()
            ),
        ));
        return out;
    }
    // The spawn copies every source above the last hand-over number first.
    let needed = u64::from(handoff_base(largest)) + 2 * list.len() as u64 + 6;
    if let Ok((cur, _)) = crac_sys::sys::prlimit(RLIMIT_NOFILE, None) {
        if needed > cur {
            out.push((
                ProblemKind::Rlimit,
                format!(
                    "passing through inherited descriptor {largest} takes descriptor numbers \
                     up to {needed}, above this process's RLIMIT_NOFILE ({cur})"
                ),
            ));
        }
    }
    out
}

/// The descriptors `crac restore` hands over: `(own number, hand-over
/// number)` pairs for the spawn, the warnings for its user, and the
/// /dev/null they may refer to (open until the spawn is done).
#[derive(Debug)]
pub struct Handoff {
    /// `(source, target)` pairs.
    pub pairs: Vec<(i32, i32)>,
    /// What the user should know.
    pub warnings: Vec<RestoreWarning>,
    /// Stands in for missing descriptors.
    pub null: Option<File>,
}

/// Prepares the hand-over of the image's inherited descriptors.
pub fn prepare(fds: &[Fd]) -> std::io::Result<Handoff> {
    let list = inherited(fds);
    let mut h = Handoff {
        pairs: Vec::new(),
        warnings: Vec::new(),
        null: None,
    };
    let Some(&(largest, _)) = list.last() else {
        return Ok(h);
    };
    let base = handoff_base(largest);
    for (rank, &(fd, flags)) in list.iter().enumerate() {
        let at = (base as usize + rank) as i32;
        let own = fd as i32;
        if crate::startup::still_inherited(own) {
            if let Some(w) = mode_warning(own, flags) {
                h.warnings.push(w);
            }
            h.pairs.push((own, at));
            continue;
        }
        let null = match &h.null {
            Some(n) => n.as_raw_fd(),
            None => {
                let n = File::options().read(true).write(true).open("/dev/null")?;
                h.null.insert(n).as_raw_fd()
            }
        };
        h.pairs.push((null, at));
        h.warnings.push(RestoreWarning::InheritedMissing { fd });
    }
    Ok(h)
}

/// A warning if `crac restore`'s descriptor `fd` lacks the read or write
/// access the program's had (`flags` as recorded).
fn mode_warning(fd: i32, flags: u32) -> Option<RestoreWarning> {
    let here = crac_sys::sys::fcntl(fd, F_GETFL, 0).ok()? as u32 & O_ACCMODE;
    let wanted = flags & O_ACCMODE;
    // 0 read-only, 1 write-only, 2 read-write.
    let reads = |m: u32| m != 1;
    let writes = |m: u32| m != 0;
    if (reads(wanted) && !reads(here)) || (writes(wanted) && !writes(here)) {
        return Some(RestoreWarning::InheritedMode {
            fd: fd as u32,
            wanted: match wanted {
                0 => "for reading",
                1 => "for writing",
                _ => "for reading and writing",
            },
            here: if here == 0 {
                "only for reading"
            } else {
                "only for writing"
            },
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fd: u32, kind: u32) -> Fd {
        Fd {
            fd,
            kind,
            flags: 1,
            id: 0,
            buffered: 0,
            values: [0; 4],
            name: Vec::new(),
            extra: Vec::new(),
        }
    }

    #[test]
    fn only_inherited_records_above_stdio_count_each_once() {
        let fds = [
            rec(9, FD_INHERITED),
            rec(1, FD_INHERITED),
            rec(4, crac_image::FD_EVENTFD),
            rec(3, FD_INHERITED),
            rec(9, FD_INHERITED),
        ];
        assert_eq!(inherited(&fds), vec![(3, 1), (9, 1)]);
        assert!(problems(&fds).is_empty());
    }

    #[test]
    fn too_many_or_too_high_is_a_problem() {
        let many: Vec<Fd> = (3..100).map(|n| rec(n, FD_INHERITED)).collect();
        assert!(problems(&many)[0]
            .1
            .contains("inherited descriptors, more than"));
        let high = [rec(u32::MAX - 1, FD_INHERITED)];
        assert!(problems(&high)[0]
            .1
            .contains("above this process's RLIMIT_NOFILE"));
    }

    #[test]
    fn a_missing_descriptor_becomes_dev_null_with_a_warning() {
        // Far above anything this test process inherited.
        let fds = [rec(900, FD_INHERITED)];
        let h = prepare(&fds).unwrap();
        assert_eq!(h.pairs.len(), 1);
        assert_eq!(h.pairs[0].1, 901);
        assert_eq!(
            h.warnings,
            vec![RestoreWarning::InheritedMissing { fd: 900 }]
        );
        assert_eq!(
            h.warnings[0].to_string(),
            "descriptor 900, inherited by the checkpointed program, is not open here; it points \
             to /dev/null in the restored process"
        );
    }
}
