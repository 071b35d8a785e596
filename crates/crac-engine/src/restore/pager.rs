//! Lazy restore: loading private anonymous memory after the process resumed.
//!
//! In a lazy restore the restorer maps every area but leaves the stored
//! pages of private anonymous areas unloaded (but for small areas, which
//! it loads: [`crac_image::eager_small_area`]): it registers those areas with
//! a userfaultfd (reporting forks, `mremap`, `MADV_DONTNEED`-like removals
//! and `munmap`), hands the fd to `crac restore` and resumes the program at
//! once. The pager thread started here then
//!
//! * serves page faults first: the faulting page's piece of the image (up to
//!   [`crac_image::PIECE_LEN`] bytes) is copied in with `UFFDIO_COPY`, which
//!   wakes the thread; a fault on a page the image does not hold (or one the program
//!   discarded since) gets zeros;
//! * loads everything else in the background, going on from the last fault
//!   (a program reading through its memory finds it loaded) or else from
//!   the lowest address;
//! * follows the program's own changes: a removed or unmapped range is
//!   never filled afterwards (it must read as zeros or be gone), a moved
//!   range is filled at its new address, and a forked child gets a
//!   userfaultfd of its own with a copy of the parent's pending set, served
//!   the same way (the child's memory is the parent's at the fork);
//! * closes each userfaultfd once nothing is pending for it: the kernel
//!   then unregisters the areas and the process is plain again.
//!
//! Nothing can run with memory missing: the restorer set the restored
//! process's parent-death signal to SIGKILL (if `crac restore` dies, the
//! process dies with it), and if a page cannot be loaded the pager kills
//! the process rather than let it see zeros.
//!
//! Nor with damaged memory: each piece of the page file
//! ([`crac_image::PIECE_LEN`] bytes by file offset) is read (for a
//! compressed image: decompressed) into the pager's own buffer and hashed
//! and compared with the image's piece table there, and the copy into the
//! process is made from that buffer: what was checked is what the process
//! gets. On a mismatch the process is killed before anything of the piece
//! reaches it, and the pager reports [`LoadError::Damaged`].
//!
//! Known limits: a child forked while memory loads is not tied to `crac
//! restore` (the parent-death signal is not inherited), so it is loaded
//! first; and if another thread discards or moves still-loading memory
//! while one thread forks, the kernel does not tell whether that happened
//! before the fork or after: a discard reported just before the fork is
//! taken to come after it (the child keeps those pages), which is what the
//! kernel's ordering makes likely.
//!
//! # Safety
//! The one `unsafe` block wraps the userfaultfd as a [`Handler`]: the fd
//! must belong to another address space. [`Pager::start`] is only called by
//! `restore` with the fd the restorer created inside the restored process
//! and sent over the status socket.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crac_sys::handler::{Handler, Msg};
use crac_sys::raw::Errno;

mod pending;
mod source;

use pending::Pending;
use source::{piece_end, Source, Unusable};

// One copy is at most one piece ([`crac_image::PIECE_LEN`]): a fault's
// piece, and one background step between two looks at the messages (small,
// so a fault never waits long; bigger steps measured slower when the
// program reads while it loads).
const PAGE: u64 = 4096;
/// End of the user address space (x86-64, 4-level paging).
const USER_END: u64 = 0x7fff_ffff_f000;
/// After the resume the pager serves faults only, until none came for
/// [`QUIET`] or [`STARTUP`] passed; then it also loads in the background.
const QUIET: Duration = Duration::from_millis(1);
const STARTUP: Duration = Duration::from_millis(3);
/// How often a one-page copy failing with `ENOENT` is retried (after the
/// events were read, 100 µs apart) before the page counts as unmapped.
const ENOENT_TRIES: u32 = 5;
/// How often a copy failing with `ENOMEM` is retried (1 ms apart) before
/// the process is given up.
const NOMEM_TRIES: u32 = 2000;

/// What a lazy load did.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Bytes of image pages copied in (faults and background).
    pub bytes: u64,
    /// Faults served.
    pub faults: u64,
    /// Address spaces served (the process and the children it forked while
    /// loading).
    pub spaces: u32,
    /// From the start of the pager until the last space was complete.
    pub elapsed: Duration,
}

/// Why the lazy load of a restored process failed. The process (or the
/// child concerned) was killed: it never runs with memory missing or
/// damaged.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Copying memory in failed.
    #[error(
        "loading the memory of process {pid} at {addr:#x} failed ({what}); the process was killed"
    )]
    Failed {
        /// The process (or the forked child's thread) concerned; 0 if unknown.
        pid: u32,
        /// The address being loaded.
        addr: u64,
        /// What failed, with its errno.
        what: String,
    },
    /// A piece of the page file does not match its hash.
    #[error(
        "the page file {} is damaged: piece {index} (file bytes {start:#x}-{end:#x}, memory {}) \
         hashes to {computed:#018x}, the piece table records {stored:#018x}; process {pid} was \
         killed before it could read {addr:#x}-{addr_end:#x}",
        path.display(),
        crac_image::model::ranges_text(memory)
    )]
    Damaged {
        /// The process killed; 0 if unknown.
        pid: u32,
        /// The page file.
        path: PathBuf,
        /// The piece's index.
        index: u64,
        /// Its first byte in the page file.
        start: u64,
        /// Its end in the page file (exclusive).
        end: u64,
        /// Hash in the piece table.
        stored: u64,
        /// Hash of the bytes in the file.
        computed: u64,
        /// Address ranges of the memory the piece holds.
        memory: Vec<(u64, u64)>,
        /// The memory that was to be loaded from it.
        addr: u64,
        /// End of that memory (exclusive).
        addr_end: u64,
    },
}

/// The running pager of one lazy restore.
#[derive(Debug)]
pub struct Pager {
    thread: Option<JoinHandle<Result<Loaded, LoadError>>>,
    resumed: Arc<AtomicBool>,
}

impl Pager {
    /// Starts serving `uffd` (the restorer's, created in process `pid`)
    /// with the image pages `extents` (`(address, length, page file
    /// offset)`) read from the page file of `image` (whose piece table each
    /// piece is checked against); `on_loaded` is called on the pager's
    /// thread once everything is loaded.
    pub(crate) fn start(
        uffd: OwnedFd,
        pid: u32,
        image: Arc<crac_image::VerifiedImage>,
        extents: &[(u64, u64, u64)],
        on_loaded: Option<super::OnLoaded>,
    ) -> io::Result<Pager> {
        let mut pending = Pending::default();
        for &(a, l, o) in extents {
            pending.0.insert(a, (l, o));
        }
        // SAFETY: the restorer created this userfaultfd in process `pid`
        // (see the module's safety note); nothing of ours is registered.
        let uffd = unsafe { Handler::from_foreign(uffd) };
        let pidfd = rustix::process::Pid::from_raw(pid as i32).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        let mut space = Space::new(uffd, pending);
        (space.pid, space.pidfd) = (pid, pidfd);
        // Each child forked while loading brings a userfaultfd of its own.
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if nofile.current < nofile.maximum {
            let raised = rustix::process::Rlimit {
                current: nofile.maximum,
                ..nofile
            };
            let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised);
        }
        let source = Source::new(image);
        let resumed = Arc::new(AtomicBool::new(false));
        let flag = resumed.clone();
        let thread = std::thread::Builder::new()
            .name("crac-pager".into())
            .spawn(move || {
                let r = run(space, source, &flag);
                if let (Ok(l), Some(f)) = (&r, &on_loaded) {
                    (f.0)(l);
                }
                r
            })?;
        Ok(Pager {
            thread: Some(thread),
            resumed,
        })
    }

    /// The process resumed (or the restore ended): from now on the pager
    /// also loads in the background. Until then it only serves the
    /// restorer's faults, leaving the CPU to the restorer.
    pub(crate) fn resumed(&self) {
        self.resumed.store(true, Ordering::SeqCst);
    }

    /// Waits until every address space is loaded (or gone).
    pub fn finish(&mut self) -> Result<Loaded, LoadError> {
        self.resumed();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(LoadError::Failed {
                    pid: 0,
                    addr: 0,
                    what: "the pager thread panicked".into(),
                })
            }),
            None => Ok(Loaded::default()),
        }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        // A process must not outlive the pager with memory missing.
        if let Err(e) = self.finish() {
            tracing::error!("{e}");
        }
    }
}

/// One address space being loaded.
struct Space {
    uffd: Handler,
    pending: Pending,
    /// Faults read and not served yet (page addresses).
    faults: VecDeque<u64>,
    /// Where background loading goes on: after the last fault served.
    cursor: u64,
    /// Pending pieces discarded (`MADV_DONTNEED`...) since the last copy
    /// that went through: a fork reported after them may predate them.
    recent: Pending,
    /// The process (or a thread of it, for a forked child) to kill if its
    /// memory cannot be loaded; 0 while unknown.
    pid: u32,
    pidfd: Option<OwnedFd>,
    nomem: u32,
    /// The page whose copy last failed with `ENOENT`, and how often.
    enoent: (u64, u32),
}

/// What one copy step came to.
enum Step {
    Done,
    /// The address space is changing: read the events, then retry.
    Retry,
    /// The process is gone (exited or exec'd).
    Gone,
}

impl Space {
    /// A space whose process is not known yet (see [`Space::learn_pid`]).
    fn new(uffd: Handler, pending: Pending) -> Space {
        Space {
            uffd,
            pending,
            faults: VecDeque::new(),
            cursor: 0,
            recent: Pending::default(),
            pid: 0,
            pidfd: None,
            nomem: 0,
            enoent: (0, 0),
        }
    }

    fn find(&self, addr: u64) -> Option<(u64, u64, u64)> {
        self.pending.find(addr)
    }

    fn remove(&mut self, s: u64, e: u64) {
        self.pending.remove(s, e);
    }

    fn remap(&mut self, from: u64, to: u64, len: u64) {
        self.pending.remap(from, to, len);
    }

    fn handle(&mut self, m: Msg, born: &mut Vec<Space>) {
        match m {
            Msg::PageFault { addr, tid, .. } => {
                if self.pid == 0 {
                    self.learn_pid(tid);
                }
                self.faults.push_back(addr & !(PAGE - 1));
            }
            Msg::Fork { child } => born.push(Space::new(child, self.child_pending())),
            Msg::Remap { from, to, len } => self.remap(from, to, len),
            // munmap is done before its event is queued; a discard (madvise)
            // only after the event was read, maybe after a fork's copy.
            Msg::Unmap { start, end } => self.remove(start, end),
            Msg::Remove { start, end } => {
                for (a, l, o) in self.pending.within(start, end) {
                    self.recent.0.insert(a, (l, o));
                }
                self.remove(start, end)
            }
            Msg::Other(_) => {}
        }
    }

    /// Where the first mapping at or after `addr` starts in this space's
    /// process (`addr` itself if it is mapped); `None` if the process or
    /// its map is not known.
    fn next_area(&self, addr: u64) -> Option<u64> {
        if self.pid == 0 {
            return None;
        }
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).ok()?;
        let areas: Vec<(u64, u64)> = maps
            .lines()
            .filter_map(|l| {
                let (s, rest) = l.split_once('-')?;
                let e = rest.split_once(' ')?.0;
                Some((
                    u64::from_str_radix(s, 16).ok()?,
                    u64::from_str_radix(e, 16).ok()?,
                ))
            })
            .collect();
        // An empty map (the process is exiting) tells nothing.
        if areas.is_empty() {
            return None;
        }
        Some(
            areas
                .iter()
                .find(|&&(_, e)| e > addr)
                .map_or(USER_END, |&(s, _)| s.max(addr)),
        )
    }

    /// What a child forked now has to load: what this space has, but for
    /// areas marked `MADV_WIPEONFORK` (the child gets them empty) or
    /// `MADV_DONTFORK` (it does not get them).
    fn child_pending(&self) -> Pending {
        let mut p = self.pending.clone();
        // A discard reported just before the fork most likely happened
        // after it (the kernel queues the fork event only once the child's
        // memory is copied; a discard is done only once its event is
        // read): the child keeps those pages.
        for (&a, &(l, o)) in &self.recent.0 {
            p.remove(a, a + l);
            p.0.insert(a, (l, o));
        }
        if self.pid == 0 {
            return p;
        }
        let smaps = format!("/proc/{}/smaps", self.pid);
        for (s, e, bits) in crate::dump::collect::read_advice(&smaps).unwrap_or_default() {
            if bits & (crac_image::VMA_WIPEONFORK | crac_image::VMA_DONTFORK) != 0 {
                p.remove(s, e);
            }
        }
        p
    }

    /// Copies the pending piece `[a, a + len)` (file offset `off`) in.
    fn copy(
        &mut self,
        pages: &Source,
        a: u64,
        len: u64,
        off: u64,
        stats: &mut Loaded,
    ) -> Result<Step, LoadError> {
        // Checked before any byte of it reaches the process.
        let data = match pages.bytes(off, len) {
            Ok(d) => d,
            Err(Unusable::Missing) => {
                return Err(LoadError::Failed {
                    pid: self.pid,
                    addr: a,
                    what: format!("the page file has no {len} bytes at offset {off:#x}"),
                })
            }
            Err(Unusable::Damaged(d)) => {
                return Err(LoadError::Damaged {
                    pid: self.pid,
                    path: pages.path(),
                    index: d.index,
                    start: d.start,
                    end: d.end,
                    stored: d.stored,
                    computed: d.computed,
                    memory: pages.image.image.piece_memory(d.start, d.end),
                    addr: a,
                    addr_end: a + len,
                })
            }
        };
        let r = self.uffd.copy(a, &data);
        drop(data);
        let (errno, done) = match r {
            Ok(n) => (None, n),
            Err((e, n)) => (Some(e), n),
        };
        self.remove(a, a + done);
        stats.bytes += done;
        let Some(e) = errno else {
            self.nomem = 0;
            if done > 0 {
                // No fork is copying this address space right now (copies
                // fail while one does): what was removed before is older.
                self.recent = Pending::default();
            }
            return Ok(Step::Done);
        };
        let at = a + done;
        match e {
            // Present already (a fault raced this copy): nothing to load.
            Errno::EEXIST => {
                self.remove(at, at + PAGE);
                let _ = self.uffd.wake(at, PAGE);
                Ok(Step::Done)
            }
            Errno::EAGAIN => Ok(Step::Retry),
            Errno::ESRCH => Ok(Step::Gone),
            // The piece spans two areas (split without an event: mprotect,
            // mlock, MADV_DONTFORK...) or its area is changing: one page.
            Errno::ENOENT if len > PAGE => self.copy(pages, at, PAGE, off + (at - a), stats),
            // No registered area holds the page now. An unmap or a move
            // reports itself: look at the events a few times before
            // deciding that nothing can fault there any more.
            Errno::ENOENT if self.enoent.0 != at || self.enoent.1 < ENOENT_TRIES => {
                self.enoent = if self.enoent.0 == at {
                    (at, self.enoent.1 + 1)
                } else {
                    (at, 1)
                };
                std::thread::sleep(Duration::from_micros(100));
                Ok(Step::Retry)
            }
            Errno::ENOENT => {
                // Nothing is mapped there: skip to the next area (or just
                // this page when the process's map cannot be read).
                self.enoent = (0, 0);
                let next = self.next_area(at).unwrap_or(at + PAGE).max(at + PAGE);
                self.remove(at, next);
                let _ = self.uffd.wake(at, PAGE);
                Ok(Step::Done)
            }
            Errno::ENOMEM if self.nomem < NOMEM_TRIES => {
                self.nomem += 1;
                std::thread::sleep(Duration::from_millis(1));
                Ok(Step::Retry)
            }
            e => Err(LoadError::Failed {
                pid: self.pid,
                addr: at,
                what: format!("UFFDIO_COPY: {e}"),
            }),
        }
    }

    /// Serves a fault at page `p`.
    fn serve(&mut self, pages: &Source, p: u64, stats: &mut Loaded) -> Result<Step, LoadError> {
        stats.faults += 1;
        if let Some((s, l, o)) = self.find(p) {
            // The piece of the page file that holds the page, clipped to
            // its extent.
            let at = o + (p - s);
            let piece_start = piece_end(at) - crac_image::PIECE_LEN;
            let a = s + (piece_start.max(o) - o);
            let e = s + (piece_end(at).min(o + l) - o);
            self.cursor = e;
            return self.copy(pages, a, e - a, o + (a - s), stats);
        }
        // Not in the image, or discarded by the program since: zeros.
        match self.uffd.zeropage(p, PAGE) {
            Ok(_) => {
                self.recent = Pending::default();
                Ok(Step::Done)
            }
            Err((Errno::EAGAIN, _)) => Ok(Step::Retry),
            Err((Errno::ESRCH, _)) => Ok(Step::Gone),
            Err((Errno::EEXIST | Errno::ENOENT, _)) => {
                let _ = self.uffd.wake(p, PAGE);
                Ok(Step::Done)
            }
            Err((Errno::ENOMEM, _)) if self.nomem < NOMEM_TRIES => {
                self.nomem += 1;
                std::thread::sleep(Duration::from_millis(1));
                Ok(Step::Retry)
            }
            Err((e, _)) => Err(LoadError::Failed {
                pid: self.pid,
                addr: p,
                what: format!("UFFDIO_ZEROPAGE: {e}"),
            }),
        }
    }

    /// Loads the next background piece.
    fn background(&mut self, pages: &Source, stats: &mut Loaded) -> Result<Step, LoadError> {
        // Go on from the last fault (a program reading through its memory
        // then finds it loaded), else from the lowest address.
        let Some((s, l, o)) = self
            .pending
            .at_or_after(self.cursor)
            .or_else(|| self.pending.first())
        else {
            return Ok(Step::Done);
        };
        self.copy(pages, s, l.min(piece_end(o) - o), o, stats)
    }

    /// Kills the process this space belongs to.
    fn kill(&self) {
        if let Some(fd) = &self.pidfd {
            let _ = rustix::process::pidfd_send_signal(fd.as_fd(), rustix::process::Signal::KILL);
        }
    }

    /// A forked child's process, from the thread that faulted first: its
    /// thread group, held by a pidfd (never a bare number that may be
    /// reused).
    fn learn_pid(&mut self, tid: u32) {
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        let Some(tgid) = tgid else { return };
        let pidfd = rustix::process::Pid::from_raw(tgid as i32).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        if pidfd.is_some() {
            self.pid = tgid;
            self.pidfd = pidfd;
        }
    }
}

fn run(first: Space, pages: Source, resumed: &AtomicBool) -> Result<Loaded, LoadError> {
    let t0 = Instant::now();
    let mut stats = Loaded {
        spaces: 1,
        ..Loaded::default()
    };
    let mut spaces = vec![first];
    let mut msgs = Vec::new();
    let mut born = Vec::new();
    let mut failure = None;
    let mut resumed_at = None;
    let mut served_lately = true;
    while !spaces.is_empty() {
        let mut gone = vec![false; spaces.len()];
        // Spaces whose copies wait for events not read yet.
        let mut waiting = vec![false; spaces.len()];
        for (i, sp) in spaces.iter_mut().enumerate() {
            if let Err(e) = sp.uffd.read(&mut msgs) {
                msgs.clear();
                failure.get_or_insert(LoadError::Failed {
                    pid: sp.pid,
                    addr: 0,
                    what: format!("reading the userfaultfd: {e}"),
                });
                sp.kill();
                gone[i] = true;
                continue;
            }
            for m in msgs.drain(..) {
                sp.handle(m, &mut born);
            }
            // A fault read is not delivered again: it stays queued here
            // until served (after the events that made it retry).
            while let Some(&p) = sp.faults.front() {
                match sp.serve(&pages, p, &mut stats) {
                    // Served once its page is no longer pending (a copy
                    // may stop short of it).
                    Ok(Step::Done) => {
                        if sp.find(p).is_none() {
                            sp.faults.pop_front();
                        }
                    }
                    Ok(Step::Retry) => waiting[i] = true,
                    Ok(Step::Gone) => gone[i] = true,
                    Err(e) => {
                        sp.kill();
                        failure.get_or_insert(e);
                        gone[i] = true;
                    }
                }
                if waiting[i] || gone[i] {
                    break;
                }
            }
        }
        if resumed_at.is_none() && resumed.load(Ordering::SeqCst) {
            resumed_at = Some(Instant::now());
        }
        // Faults only until the process runs, and while it starts up
        // faulting (its first steps wait for nothing else).
        let faults_only = match resumed_at {
            None => true,
            Some(t) => served_lately && t.elapsed() < STARTUP,
        };
        let any_waiting = waiting.iter().any(|&w| w);
        if !any_waiting && faults_only {
            let mut fds: Vec<_> = spaces
                .iter()
                .map(|sp| rustix::event::PollFd::new(&sp.uffd, rustix::event::PollFlags::IN))
                .collect();
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: QUIET.as_nanos() as i64,
            };
            let n = rustix::event::poll(&mut fds, Some(&ts)).unwrap_or(1);
            // A quiet spell after the resume ends the start-up.
            served_lately = n > 0 || resumed_at.is_none();
        } else if !faults_only {
            // One background step, for the newest space first: a child
            // forked while loading is short of memory only until it is
            // complete (and it is not tied to crac restore).
            for i in (0..spaces.len()).rev() {
                if gone[i] || waiting[i] || spaces[i].pending.is_empty() {
                    continue;
                }
                match spaces[i].background(&pages, &mut stats) {
                    Ok(Step::Done | Step::Retry) => {}
                    Ok(Step::Gone) => gone[i] = true,
                    Err(e) => {
                        spaces[i].kill();
                        failure.get_or_insert(e);
                        gone[i] = true;
                    }
                }
                break;
            }
        }
        if any_waiting {
            // The events that make the copy wait may not be queued yet.
            std::thread::yield_now();
        }
        // Complete or gone: closing the fd unregisters what is left.
        let mut i = 0;
        spaces.retain(|sp| {
            let keep = !gone[i] && !sp.pending.is_empty();
            i += 1;
            keep
        });
        stats.spaces += born.len() as u32;
        spaces.append(&mut born);
    }
    stats.elapsed = t0.elapsed();
    match failure {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}
