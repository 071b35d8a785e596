//! The in-process dump.
//!
//! 1. [`collect::gather`] reads everything that may be read while the other
//!    threads still run, and sizes every buffer the next steps need.
//! 2. [`stop::Round::stop_all`] stops every other thread in a signal handler.
//! 3. The dumping thread saves its own resume context and, inside that call,
//!    [`Snapshot::run`] reads the memory map and pagemap, writes the
//!    populated pages and encodes the metadata. From step 2 until the threads
//!    are released nothing allocates: a stopped thread may hold the
//!    allocator's lock.
//! 4. The image is synced and renamed into place; the process exits (CRaC's
//!    default) or, with `leave_running`, releases the threads and returns.
//! 5. In a restored process the same call returns a second time, on the same
//!    stack ([`resume`]): the dumping thread waits for every thread to come back, puts
//!    back the process-wide state the restorer does not handle, releases the
//!    threads and unmaps the restorer's zone.

mod collapse;
pub(crate) mod collect;
mod commit;
pub(crate) mod fds;
mod live;
mod maps;
mod meta;
mod pack;
mod pages;
mod resume;
pub(crate) mod stop;
mod zstd;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crac_image::{PageRun, PAGE_SIZE, VMA_DONTFORK, VMA_WIPEONFORK};
use crac_sys::sys;
use crac_sys::Errno;

use crate::native::{DumpError, DumpOptions, DumpOutcome};
use collect::Facts;
use pages::{Batch, Pieces};
use stop::{Round, ThreadSlot, RESTORE_INFO};

/// One mapping as parsed from `/proc/self/maps` during the stop.
#[derive(Debug, Clone, Copy, Default)]
struct Vma {
    start: u64,
    end: u64,
    pgoff: u64,
    prot: u32,
    flags: u32,
    file: u32,
    name_off: u32,
    name_len: u32,
    /// Which pages to store: 0 none, 1 anonymous (skip zero page),
    /// 2 private file (only COW-ed pages), 3 every present page.
    store: u8,
    /// Pages in memory (stored or not).
    populated: u64,
}

/// What went wrong inside the stopped phase (no allocation, so plain data).
#[derive(Debug, Clone, Copy)]
enum SnapFailure {
    Sys(&'static str, Errno),
    UnsupportedMapping {
        start: u64,
        end: u64,
        name_off: u32,
        name_len: u32,
    },
    NewFile,
    Overflow(&'static str),
    Encode {
        needed: usize,
    },
}

/// Buffers and descriptors of the stopped phase, all allocated beforehand.
struct Snapshot<'a> {
    facts: &'a Facts,
    maps: Box<[u8]>,
    maps_len: usize,
    vmas: Vec<Vma>,
    runs: Vec<PageRun>,
    pm: Box<[u8]>,
    bounce: Box<[u8]>,
    /// Memory that may change while the pages are written (the dumping
    /// thread's stack, the bounce buffer, every thread's rseq area, which the
    /// kernel updates on migration). It goes through the bounce buffer, so the
    /// checksum and the data written agree.
    volatile: Vec<(u64, u64)>,
    meta: Box<[u8]>,
    /// Raw numbers, not `OwnedFd`: in a restored process they are not open
    /// and must not be closed (see [`Snapshot::close_fds`]).
    pagemap_fd: i32,
    mem_fd: i32,
    maps_fd_path: &'static [u8],
    meta_fd: i32,
    pages_fd: i32,
    failure: Option<SnapFailure>,
    pages_len: u64,
    /// The piece table, filled by `write_pages` (capacity sized before the
    /// stop).
    pieces: Pieces,
    /// Compresses the page data (`None`: stored as it is, straight from
    /// memory).
    pack: Option<pack::Packer>,
    /// Bytes of page data before compression.
    data_len: u64,
    /// CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME at the stop.
    clocks: [u64; 3],
    /// Page runs queued for one write.
    batch: Batch,
    fds: fds::FdSet,
}

impl Snapshot<'_> {
    /// Closes the /proc descriptors (original process only).
    fn close_fds(&mut self) {
        let _ = sys::close(self.pagemap_fd);
        let _ = sys::close(self.mem_fd);
    }

    fn name(&self, off: u32, len: u32) -> &[u8] {
        &self.maps[off as usize..(off + len) as usize]
    }

    /// The error for a failure of the stopped phase (or of the live
    /// dump's copy).
    fn error(&self, failure: Option<SnapFailure>) -> DumpError {
        let maps = &self.maps[..self.maps_len];
        let name = |off: u32, len: u32| {
            String::from_utf8_lossy(maps.get(off as usize..(off + len) as usize).unwrap_or(b""))
                .into_owned()
        };
        match failure {
            Some(SnapFailure::Sys(what, errno)) => DumpError::Io { what, errno },
            Some(SnapFailure::UnsupportedMapping {
                start,
                end,
                name_off,
                name_len,
            }) => DumpError::UnsupportedMapping {
                start,
                end,
                name: name(name_off, name_len),
            },
            Some(SnapFailure::NewFile) => DumpError::Changed {
                what: "a file was mapped during the dump",
            },
            Some(SnapFailure::Overflow(what)) => DumpError::Changed { what },
            Some(SnapFailure::Encode { needed }) => DumpError::MetadataTooLarge { needed },
            None => DumpError::Io {
                what: "dump the process",
                errno: Errno(5),
            },
        }
    }

    fn fail(&mut self, f: SnapFailure) -> u64 {
        self.failure = Some(f);
        1
    }

    /// What must be read while the threads are stopped, before the memory:
    /// carried descriptors, the memory map, the clocks.
    fn prepare(&mut self) -> Result<(), SnapFailure> {
        match self.fds.capture() {
            Ok(()) => {}
            Err((what, fds::CHANGED)) => return Err(SnapFailure::Overflow(what)),
            Err((what, e)) => return Err(SnapFailure::Sys(what, e)),
        }
        self.read_maps()?;
        self.clocks = [sys::clock_ns(0), sys::clock_ns(1), sys::clock_ns(7)];
        // An address on this thread's stack.
        let probe = [0u8; 1];
        let sp = std::hint::black_box(&probe).as_ptr() as u64;
        let stack = self
            .vmas
            .iter()
            .find(|v| v.start <= sp && sp < v.end)
            .map_or((0, 0), |v| (v.start, v.end));
        // Page-aligned outwards: O_DIRECT writes whole pages.
        let outwards = |at: u64, len: u64| {
            let b = at & !(PAGE_SIZE - 1);
            (b, (at + len + PAGE_SIZE - 1) & !(PAGE_SIZE - 1))
        };
        let bounce = outwards(self.bounce.as_ptr() as u64, self.bounce.len() as u64);
        // The piece table fills while the pages are written and hashed.
        let hashes = &self.pieces.hashes;
        let table = outwards(hashes.as_ptr() as u64, hashes.capacity() as u64 * 8);
        // So does the list of ranges queued for the next write.
        let (ranges, iov) = self.batch.storage();
        for range in [
            stack,
            bounce,
            table,
            outwards(ranges.0, ranges.1),
            outwards(iov.0, iov.1),
        ] {
            if self.volatile.len() < self.volatile.capacity() {
                self.volatile.push(range);
            }
        }
        Ok(())
    }

    /// Whether a fork copies every stored area as it is (see [`live`]).
    fn forkable(&self) -> bool {
        self.vmas
            .iter()
            .all(|v| v.store == 0 || v.flags & (VMA_DONTFORK | VMA_WIPEONFORK) == 0)
    }

    /// In the live dump's copy: opens this process's own `/proc` files (the
    /// ones opened before the fork describe the original, which runs on).
    fn reopen_proc(&mut self) -> Result<(), SnapFailure> {
        self.pagemap_fd = sys::open(b"/proc/self/pagemap\0", 0o2000000, 0)
            .map_err(|e| SnapFailure::Sys("open /proc/self/pagemap", e))?;
        self.mem_fd = sys::open(b"/proc/self/mem\0", 0o2000000, 0)
            .map_err(|e| SnapFailure::Sys("open /proc/self/mem", e))?;
        Ok(())
    }

    /// Writes the page file from this process's memory as it is now.
    fn write_memory(&mut self) -> Result<(), SnapFailure> {
        self.scan_pages()?;
        self.write_pages()?;
        Ok(())
    }
}

/// Dumps the calling process; see [`crate::native::checkpoint`].
pub fn checkpoint(opts: &DumpOptions) -> Result<DumpOutcome, DumpError> {
    // A process that maps files or starts threads while being stopped gets
    // two more tries, with buffers sized anew.
    let mut result = checkpoint_once(opts);
    for _ in 0..2 {
        if !matches!(
            result,
            Err(DumpError::Changed { .. } | DumpError::EpollTargetNotCarried { .. })
        ) {
            break;
        }
        result = checkpoint_once(opts);
    }
    result
}

/// What the stopped phase returns when a copy of the process writes the
/// image (the live dump, [`live`]).
const FORKED: u64 = 2;

/// Set in a process restored lazily until a dump saw its memory complete.
pub(super) static LAZY_LOADING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
/// How long a dump waits for the memory of a lazy restore to be loaded.
const LAZY_WAIT: Duration = Duration::from_secs(60);

/// Waits until no area of this process is registered with a userfaultfd
/// any more (`crac restore` closes it once every page of the last lazy
/// restore is in): a page still missing would look like a zero page to the
/// dump.
fn wait_lazy_loaded() -> Result<(), DumpError> {
    if !LAZY_LOADING.load(Ordering::SeqCst) {
        return Ok(());
    }
    let t = Instant::now();
    loop {
        let smaps =
            std::fs::read("/proc/self/smaps").map_err(|e| DumpError::Gather { source: e })?;
        let registered = smaps
            .split(|&b| b == b'\n')
            .any(|l| l.starts_with(b"VmFlags:") && l.split(|&b| b == b' ').any(|f| f == b"um"));
        if !registered {
            LAZY_LOADING.store(false, Ordering::SeqCst);
            return Ok(());
        }
        if t.elapsed() > LAZY_WAIT {
            return Err(DumpError::StillLoading {
                secs: LAZY_WAIT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn checkpoint_once(opts: &DumpOptions) -> Result<DumpOutcome, DumpError> {
    wait_lazy_loaded()?;
    let dir = &opts.dir;
    check_parent(dir)?;
    // Give freed heap memory back to the kernel so the image stays small.
    stop::malloc_trim();
    if opts.leave_running {
        // A shorter page-table copy, so a shorter pause (see `collapse`).
        collapse::collapse_dense_memory();
    }
    let facts = collect::gather().map_err(|e| DumpError::Gather { source: e })?;
    // Credentials are per thread; the image holds one set for all.
    if let Some((tid, what)) = crate::creds::differing_thread(&facts.creds) {
        return Err(DumpError::MixedCredentials { tid, what });
    }
    // Before the engine opens descriptors of its own.
    let fds = fds::FdSet::plan(&opts.fd_policies);
    if let Some(&fd) = fds.left_out.first() {
        return Err(DumpError::EpollTargetNotCarried { fd });
    }
    let mut tmp = commit::TempDir::create(dir).map_err(|e| DumpError::CreateImage {
        dir: dir.clone(),
        source: e,
    })?;
    let mut snap = new_snapshot(&facts, &tmp, opts, fds)?;
    for w in &RESTORE_INFO.0 {
        w.store(0, Ordering::SeqCst);
    }

    let mut round = Round::new(facts.thread_count * 2 + 16).map_err(|errno| DumpError::Stop {
        what: "install the stop handler",
        errno,
    })?;
    let mut own = Box::new(ThreadSlot::default());
    let mut own_ctx = Box::<crac_sys::ctx::ResumeContext>::default();
    let own_ctx_addr = &*own_ctx as *const _ as u64;
    // No handler may run on this thread while memory is read twice
    // (checksum, then write): a signal that arrives during the dump stays
    // pending until the mask is back.
    let own_mask = sys::sigprocmask(2, Some(!0)).unwrap_or(0);
    // ---- From here until `round.release()`: no allocation. ----
    // The pause the program sees: from the stop to the release.
    let stopped_at = Instant::now();
    if let Err(f) = round.stop_all() {
        round.release();
        let _ = sys::sigprocmask(2, Some(own_mask));
        return Err(stop_error(f));
    }
    own.record_current(own_mask);
    let round_ref = &round;
    let own_ref = &*own;
    let mut live_writer = None;
    let mut result = stop::call_saving_context(&mut own_ctx, &mut || {
        snap.volatile.clear();
        for slot in round_ref
            .stopped_slots()
            .iter()
            .chain(std::iter::once(own_ref))
        {
            let (rseq, _, _) = stop::rseq_area(slot.fs_gs.0);
            if rseq != 0 && snap.volatile.len() < snap.volatile.capacity() {
                // struct rseq may straddle a page boundary: take two pages.
                let page = rseq & !(PAGE_SIZE - 1);
                snap.volatile.push((page, page + 2 * PAGE_SIZE));
            }
        }
        if let Err(f) = snap.prepare() {
            return snap.fail(f);
        }
        let slots = round_ref.stopped_slots();
        if opts.leave_running && snap.forkable() {
            let snap = &mut snap;
            let tmp = &mut tmp;
            let writer = live::fork_writer(|| {
                snap.reopen_proc()?;
                snap.write_memory()?;
                snap.write_meta(slots, own_ref, own_ctx_addr)?;
                tmp.commit().map_err(|(what, e)| SnapFailure::Sys(what, e))
            });
            if let Some(w) = writer {
                live_writer = Some(w);
                return FORKED;
            }
        }
        match snap
            .write_memory()
            .and_then(|()| snap.write_meta(slots, own_ref, own_ctx_addr))
        {
            Ok(()) => 0,
            Err(f) => snap.fail(f),
        }
    });
    if let (Ok(FORKED), Some(w)) = (result, live_writer.take()) {
        // The copy writes the image; the program runs on meanwhile.
        round.release();
        let paused = stopped_at.elapsed();
        let _ = sys::sigprocmask(2, Some(own_mask));
        snap.close_fds();
        return live_outcome(w, &snap, opts, paused);
    }
    if let Ok(0) = result {
        if let Err((what, errno)) = tmp.commit() {
            snap.failure = Some(SnapFailure::Sys(what, errno));
            result = Ok(1);
        } else if let Some(notify) = &opts.on_durable {
            notify();
        }
        if matches!(result, Ok(0)) && !opts.leave_running {
            // CRaC's default: the checkpointed process ends here; the image
            // holds its future.
            sys::exit_group(0);
        }
    }
    if result.is_ok() {
        snap.close_fds();
    }
    match result {
        Ok(0) => {
            round.release();
            let paused = stopped_at.elapsed();
            let _ = sys::sigprocmask(2, Some(own_mask));
            Ok(DumpOutcome::LeftRunning { paused })
        }
        Ok(_) => {
            round.release();
            let _ = sys::sigprocmask(2, Some(own_mask));
            Err(snap.error(snap.failure))
        }
        Err(stop::Resumed) => {
            // The descriptors the dump opened do not exist in the restored
            // process (their numbers may even belong to something else now):
            // forget them instead of closing them. The temporary directory was
            // renamed into the image long ago.
            tmp.forget();

            // Carried descriptors must exist before the threads that use
            // them run again.
            // Wait first: until every thread is back, the restorer may still
            // hold its input descriptors at low numbers.
            round.wait_resumed();
            let fd_result = snap.fds.recreate();
            let own_pending = (own.tid, own.pending, own.shared_pending);
            let restored =
                resume::after_restore(own_pending, &mut round, &facts, own_mask, own.altstack);
            if let Err((what, errno)) = fd_result {
                tracing::error!("restored process: cannot {what}: {errno}");
            }
            Ok(DumpOutcome::Restored(restored))
        }
    }
}

/// The stopped phase's buffers and descriptors, all allocated and opened
/// before the stop, sized from `facts`.
fn new_snapshot<'a>(
    facts: &'a Facts,
    tmp: &commit::TempDir,
    opts: &DumpOptions,
    fds: fds::FdSet,
) -> Result<Snapshot<'a>, DumpError> {
    let open_proc = |p: &'static [u8]| {
        sys::open(p, 0o2000000, 0).map_err(|e| DumpError::Gather { source: e.into() })
    };
    let pagemap_fd = open_proc(b"/proc/self/pagemap\0")?;
    let mem_fd = match open_proc(b"/proc/self/mem\0") {
        Ok(fd) => fd,
        Err(e) => {
            let _ = sys::close(pagemap_fd);
            return Err(e);
        }
    };
    let vma_cap = facts.vma_count * 2 + 256;
    let mut snap = Snapshot {
        facts,
        maps: vec![0u8; facts.maps_len * 2 + 64 * 1024].into_boxed_slice(),
        maps_len: 0,
        vmas: Vec::with_capacity(vma_cap),
        runs: Vec::with_capacity(runs_estimate()),
        pm: vec![0u8; 64 * 1024 * 8].into_boxed_slice(),
        bounce: vec![0u8; (4 << 20) + 4096].into_boxed_slice(),
        volatile: Vec::with_capacity(facts.thread_count * 2 + 32),
        meta: Vec::new().into_boxed_slice(),
        pagemap_fd,
        mem_fd,
        maps_fd_path: b"/proc/self/maps\0",
        meta_fd: tmp.meta_fd,
        pages_fd: tmp.pages_fd,
        failure: None,
        pages_len: 0,
        pieces: Pieces::with_capacity(pieces_estimate(facts.deleted_bytes)),
        pack: None,
        data_len: 0,
        clocks: [0; 3],
        batch: Batch::new(),
        fds,
    };
    if opts.compress != crate::native::Compression::None {
        snap.pack = Some(pack::Packer::new(
            opts.compress,
            snap.pieces.hashes.capacity(),
        ));
    }
    let meta_cap = 256 * 1024
        + vma_cap * 512
        + snap.runs.capacity() * 24
        + snap.pieces.hashes.capacity() * (8 + crac_image::STORED_PIECE_LEN)
        + facts.thread_count * 2048
        + facts.files.len() * 4200;
    snap.meta = vec![0u8; meta_cap].into_boxed_slice();
    Ok(snap)
}

/// How a live checkpoint ended: once the copy `w` wrote and committed the
/// image (or failed).
fn live_outcome(
    w: live::Writer,
    snap: &Snapshot<'_>,
    opts: &DumpOptions,
    paused: Duration,
) -> Result<DumpOutcome, DumpError> {
    match w.wait() {
        Ok(()) => {
            if let Some(notify) = &opts.on_durable {
                notify();
            }
            Ok(DumpOutcome::LeftRunning { paused })
        }
        Err(live::WriterFailure::Snap(f)) => Err(snap.error(Some(f))),
        Err(live::WriterFailure::Died { pid, exit }) => Err(DumpError::WriterDied {
            pid,
            how: match exit {
                crac_sys::fork::Exit::Code(c) => format!("exited with status {c}"),
                crac_sys::fork::Exit::Signal(s) => {
                    format!("was killed by {}", crate::restore::signal_name(s))
                }
            },
        }),
        Err(live::WriterFailure::Wait(errno)) => Err(DumpError::Io {
            what: "wait for the process writing the image",
            errno,
        }),
    }
}

/// The image directory's parent must exist (the image is made next to it).
fn check_parent(dir: &std::path::Path) -> Result<(), DumpError> {
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) if !parent.is_dir() => Err(DumpError::NoParent {
            dir: dir.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// The error for threads that could not be stopped.
fn stop_error(f: stop::StopFailure) -> DumpError {
    match f {
        stop::StopFailure::Timeout { tid } => DumpError::ThreadDidNotStop {
            tid,
            signal: stop::STOP_SIGNAL,
        },
        stop::StopFailure::TooManyThreads => DumpError::Changed {
            what: "threads were created during the dump",
        },
        stop::StopFailure::Sys(what, errno) => DumpError::Stop { what, errno },
    }
}

/// An upper bound on the pieces of the page file: pages are stored only
/// if they are resident or swapped out, or belong to a deleted file's
/// mapping (`deleted_bytes`), with room for growth until the stop.
fn pieces_estimate(deleted_bytes: u64) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let bytes = (kib("VmRSS:") + kib("VmSwap:")) * 1024 + deleted_bytes;
    let pieces = (bytes / crac_image::PIECE_LEN) as usize;
    // An eighth more and 1 GiB of growth (128 KiB of table).
    pieces + pieces / 8 + 16384
}

fn runs_estimate() -> usize {
    // Runs are bounded by the populated pages; the resident set size is a
    // cheap upper bound on those.
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
        })
        .unwrap_or(1 << 16);
    rss_pages + 65536
}
