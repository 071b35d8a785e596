//! The crac restorer: a static `no_std` program that turns the process it
//! runs in into the process an image describes.
//!
//! `crac restore` (crac-engine's `restore` module) creates a process with the
//! image's PID (`clone3` with `set_tid`) and executes this program in it with:
//!
//! * fd 3: the `meta.crac` bytes `crac restore`'s preflight checked (a
//!   sealed memfd), fd 4: `pages.crac` as the preflight opened it
//!   (read-only),
//! * fd 5: its end of the status socket (`SOCK_SEQPACKET`,
//!   [`crac_image::status`]),
//! * fd 6: the restore arguments: `u64` restore start time (ns since the
//!   epoch), `u64` flags (bit 0: lazy), `u64` PID of `crac restore`, `u64`
//!   environment length, then `KEY=VALUE\0...`, then (8-aligned) the
//!   length (`u64`) of the credentials `crac restore`'s preflight checked
//!   and those as one `Creds` section: the image's own record must equal
//!   them (the image cannot change who the process runs as after the check),
//! * from fd 7 up: descriptors the program inherited at start, handed over
//!   for the library in the restored process to move to their numbers; the
//!   restorer leaves them alone (it closes only 3 to 6 before the resume).
//!
//! It sets its parent-death signal to SIGKILL first: if `crac restore` dies,
//! the half-restored process dies with it. An eager restore clears it before
//! the resume; a lazy one keeps it (the process must not run on if nobody
//! loads its memory).
//!
//! Everything the restorer uses lies in the restorer zone
//! `[RESTORER_ZONE_BASE, +RESTORER_ZONE_LEN)` (crac-image), laid out as:
//!
//! | offset | content |
//! |---|---|
//! | 0 | this program: headers, code, data, bss (stack) — at most 16 MiB |
//! | 16 MiB | `meta.crac`, mapped read-only (at most 64 MiB) |
//! | 80 MiB | the restore arguments (fd 6) incl. the environment block (at most 16 MiB) |
//! | 96 MiB | parking spot for the vDSO block while it moves (16 MiB) |
//! | 112 MiB | one 32 KiB stack per thread (at most 4608 threads) |
//!
//! The restore runs in stages (`early`, then `run`); the work of each lies
//! in the modules named:
//!
//! 1. Start-up, on the kernel's stack (`early`): block signals; copy the
//!    file-backed part of its own segments to anonymous memory (so the
//!    executable is no longer mapped and `PR_SET_MM_MAP` may set `exe_fd`;
//!    [`space::anonymize`]).
//! 2. Read the restore arguments ([`args`]); map the metadata and check the
//!    image against them ([`image`]).
//! 3. Unmap everything outside the zone but the vDSO block; move the vDSO
//!    block to the image's addresses ([`space`]).
//! 4. Take the image's fs ids and groups (so every file the image names is
//!    opened with its user's rights: [`creds`], [`files`]); map every memory
//!    area, load its pages and protect it ([`memory`]; every pass walks the
//!    areas and their page runs the same way: [`areas`]):
//!    * pages are read with `pread`, each piece of the page file checked
//!      against the piece table, where the image has one, before its bytes
//!      are used ([`load`]); in an LZ4-compressed image (the metadata has
//!      the stored-pieces table: `crac restore` passed `pages.crac` as it
//!      is) each piece's stored bytes are read instead, decoded into the
//!      thread's 64 KiB scratch buffer (`lz4_flex`, no allocator, never more
//!      than the piece's length) and checked before they are copied into
//!      place (with `UFFDIO_COPY` from that buffer where the area is
//!      registered; there is no view of the page file); images with at least
//!      `BYTE_PROGRESS_MIN` bytes of pages report the bytes loaded every
//!      `BYTE_PROGRESS_STEP`, from either loading thread: a status record is
//!      written atomically;
//!    * images with at least 8 MiB of pages load on two threads: a helper
//!      thread, on a stack in the bss and with a TID the kernel picks, loads
//!      the second half and is gone before any image thread is created
//!      ([`helper`]);
//!    * private anonymous areas of images with at least `UFFD_MIN` bytes of
//!      pages are filled with `UFFDIO_COPY` (each page allocated and copied
//!      in, not zeroed first, no fault per page) from a read-only view of
//!      `pages.crac` mapped where the kernel finds room once every image
//!      area is mapped (the page file may be larger than the zone); the
//!      areas are unregistered, the userfaultfd closed and the view unmapped
//!      before the areas get their protection. Any userfaultfd failure falls
//!      back to reading the rest of that range ([`userfault`]);
//!    * in a lazy restore (flag set and the kernel has a userfaultfd with
//!      fork, remap, remove and unmap events) the stored pages of private
//!      anonymous areas are not loaded: the areas are registered with a new
//!      userfaultfd, which is sent to `crac restore` with a
//!      `StatusKind::Lazy` record (`SCM_RIGHTS`) before anything touches
//!      them and then closed here; `crac restore` serves their faults and
//!      fills them ([`userfault`]).
//! 5. `PR_SET_MM_MAP` ([`mm`]).
//! 6. Create the other threads with their TIDs (each takes the image's
//!    credentials itself: they are per thread, [`creds`]); restore the
//!    calling thread's kernel state ([`threads`]).
//! 7. Take the image's credentials and dumpable flag (nothing after needs
//!    privilege; [`creds`]); fill the image's restore-info block; report success and
//!    jump into the program at its resume entry.
//!
//! Any failure writes one error record and exits with status 127.
#![no_std]
#![no_main]
#![allow(clippy::missing_safety_doc)]
// Errors are fixed-size status records (no allocator); they are returned once.
#![allow(clippy::result_large_err)]

mod mem;
mod sys;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicU32, Ordering};

use crac_image::status::{Stage, Status, RESTORER_FAILURE_EXIT};
use crac_image::{
    RestoreInfo, PAGE_SIZE, RESTORER_ZONE_BASE, RESTORER_ZONE_LEN, RESTORE_INFO_MAGIC, RESTORE_LAZY,
};
use sys::*;

use args::{Args, ARGS_HEADER};

const META_FD: i32 = 3;
const PAGES_FD: i32 = 4;
const STATUS_FD: i32 = 5;
const ARGS_FD: i32 = 6;
const SIGKILL: u64 = 9;

const ZONE: u64 = RESTORER_ZONE_BASE;
const ZONE_END: u64 = RESTORER_ZONE_BASE + RESTORER_ZONE_LEN;
const ELF_MAX: u64 = 0x0100_0000;
const META_AREA: u64 = ZONE + 0x0100_0000;
const META_MAX: u64 = 0x0400_0000;
const ARGS_AREA: u64 = ZONE + 0x0500_0000;
const ARGS_MAX: u64 = 0x0100_0000;
const PARK_AREA: u64 = ZONE + 0x0600_0000;
const PARK_MAX: u64 = 0x0100_0000;
const STACKS_AREA: u64 = ZONE + 0x0700_0000;
const MAIN_STACK: usize = 256 * 1024;

// ---------------------------------------------------------------------------
// Entry, stack, status reporting.

#[repr(C, align(64))]
struct Stack([u8; MAIN_STACK]);
#[no_mangle]
static mut CRAC_RESTORER_STACK: Stack = Stack([0; MAIN_STACK]);

core::arch::global_asm!(
    ".pushsection .text._start,\"ax\",@progbits",
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {early}",
    "    lea rsp, [rip + {stack} + {size}]",
    "    call {main}",
    "    ud2",
    ".size _start, .-_start",
    ".popsection",
    early = sym early,
    main = sym main,
    stack = sym CRAC_RESTORER_STACK,
    size = const MAIN_STACK,
);

extern "C" {
    static __crac_start: u8;
    static __crac_text_end: u8;
    static __crac_data_end: u8;
    static __crac_end: u8;
}

static STAGE: AtomicU32 = AtomicU32::new(Stage::Start as u32);

fn stage() -> Stage {
    Stage::from_u32(STAGE.load(Ordering::Relaxed)).unwrap_or(Stage::Start)
}

/// Enters `s` and reports it.
fn enter(s: Stage) {
    STAGE.store(s as u32, Ordering::Relaxed);
    report(&Status::progress(s));
}

/// Enters `s` without a progress record (sub-steps repeated per area).
fn quiet(s: Stage) {
    STAGE.store(s as u32, Ordering::Relaxed);
}

fn report(s: &Status) {
    let b = s.encode();
    let mut done = 0;
    while done < b.len() {
        match write(STATUS_FD, &b[done..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => done += n,
        }
    }
}

fn die(s: &Status) -> ! {
    report(s);
    exit_group(RESTORER_FAILURE_EXIT)
}

/// An error record for the current stage.
fn err(errno: i32, object: u64) -> Status {
    Status::error(stage(), errno, object)
}

macro_rules! fail {
    ($errno:expr, $obj:expr, $($fmt:tt)*) => {{
        let mut s = err($errno, $obj);
        let _ = write!(s, $($fmt)*);
        s
    }};
}

/// Byte strings (paths) in detail text.
struct B<'a>(&'a [u8]);

impl core::fmt::Display for B<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in self.0.utf8_chunks() {
            f.write_str(c.valid())?;
            if !c.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut s = err(0, 0);
    let _ = write!(s, "the restorer panicked: {}", info.message());
    if let Some(l) = info.location() {
        let _ = write!(s, " at {}:{}", l.file(), l.line());
    }
    die(&s)
}

type R<T> = Result<T, Status>;

// The stages (`run` shows their order), after `fail!`, which they use.
mod areas;
mod args;
mod creds;
mod files;
mod helper;
mod image;
mod load;
mod memory;
mod mm;
mod space;
mod threads;
mod userfault;

fn page_up(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

// ---------------------------------------------------------------------------
// Start-up on the kernel's stack: signals and self-copy.

extern "C" fn early() {
    if let Err(e) = block_all_signals() {
        die(&fail!(e, 0, "blocking signals failed"));
    }
    // Linker-defined symbols; only their addresses are taken.
    let (start, text_end, data_end, end) = (
        core::ptr::addr_of!(__crac_start) as u64,
        core::ptr::addr_of!(__crac_text_end) as u64,
        core::ptr::addr_of!(__crac_data_end) as u64,
        core::ptr::addr_of!(__crac_end) as u64,
    );
    if start != ZONE || end - start > ELF_MAX || !(text_end <= data_end && data_end <= end) {
        die(&fail!(
            0,
            start,
            "the restorer is linked at {start:#x}-{end:#x}, outside its zone"
        ));
    }
    // The bss, page-aligned by the linker script, is anonymous already.
    // SAFETY: copies the file-backed part of the program's segments to
    // anonymous memory at the same addresses; nothing writes .data meanwhile.
    unsafe {
        if let Err(s) = space::anonymize(start, text_end, PROT_READ | 4) {
            die(&s);
        }
        if data_end > text_end {
            if let Err(s) = space::anonymize(text_end, data_end, PROT_READ | PROT_WRITE) {
                die(&s);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Main: the stages in order.

extern "C" fn main() -> ! {
    match run() {
        Ok(never) => match never {},
        Err(s) => die(&s),
    }
}

enum Never {}

fn run() -> R<Never> {
    enter(Stage::Args);
    let args = args::read_args()?;

    enter(Stage::Metadata);
    let img = image::load_image()?;
    image::check_image(&img, args.checked)?;
    let pid = img.process.pid;

    enter(Stage::Unmap);
    let mut block = space::clear_address_space()?;

    enter(Stage::Vdso);
    space::move_vdso(&img.vdso, &mut block)?;

    enter(Stage::MapMemory);
    creds::enter_fs(&img.creds)?;
    // Changing the fs ids cleared the parent-death signal.
    watch_parent(args.parent)?;
    let (info_ok, lazy) = memory::map_memory(&img)?;
    let info_addr = img.process.restore_info_addr;
    if !info_ok || info_addr % 8 != 0 {
        return Err(fail!(
            0,
            info_addr,
            "the restore-info block at {info_addr:#x} is not in writable memory"
        ));
    }

    enter(Stage::SetMm);
    mm::set_mm(&img)?;
    personality(img.process.personality);

    enter(Stage::Threads);
    let main = threads::create_threads(&img)?;

    enter(Stage::ThreadState);
    let a = threads::main_thread_state(&img, &main)?;

    // Last: nothing after this needs the restorer's privilege, and every
    // other thread has set its own (it counted itself ready after that).
    creds::apply(&img.creds, pid)?;
    creds::set_dumpable(&img.creds)?;

    enter(Stage::Resume);
    if lazy {
        // A credential change cleared the parent-death signal.
        watch_parent(args.parent)?;
    } else {
        // Nothing depends on `crac restore` any more.
        // SAFETY: PR_SET_PDEATHSIG takes no pointers.
        let _ = unsafe { prctl(PR_SET_PDEATHSIG, 0, 0, 0) };
    }
    // SAFETY: checked above: 8-aligned, inside a writable image area.
    unsafe { fill_restore_info(info_addr, &args, lazy) };
    let mut ok = Status::ok();
    ok.object = pid as u64;
    ok.aux = img.threads;
    report(&ok);
    let _ = close_range(META_FD as u32, ARGS_FD as u32);
    // SAFETY: every thread's state is restored; nothing after this touches
    // the zone.
    unsafe { threads::jump(a.resume_entry, a.ctx_addr) }
}

/// Sets the parent-death signal to SIGKILL (again: changing ids or
/// credentials clears it) and checks that `crac restore` (PID `parent`) is
/// still the parent: if it dies, so does this process.
fn watch_parent(parent: u64) -> R<()> {
    // SAFETY: PR_SET_PDEATHSIG takes no pointers.
    let _ = unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0) };
    if u64::from(getppid()) != parent {
        return Err(fail!(0, parent, "crac restore (PID {parent}) ended"));
    }
    Ok(())
}

/// Fills the image's restore-info block at `info_addr` for the library in
/// the restored process.
///
/// # Safety
/// `info_addr` must be 8-aligned, with the whole block inside a writable
/// image area.
unsafe fn fill_restore_info(info_addr: u64, args: &Args, lazy: bool) {
    let info = RestoreInfo {
        magic: RESTORE_INFO_MAGIC,
        zone_start: ZONE,
        zone_len: RESTORER_ZONE_LEN,
        restore_started_ns: args.started_ns,
        resumed_ns: realtime_ns(),
        env_addr: ARGS_AREA + ARGS_HEADER,
        env_len: args.env_len,
        flags: if lazy { RESTORE_LAZY } else { 0 },
    };
    for (i, w) in info.to_words().into_iter().enumerate() {
        // SAFETY: the caller checked it: 8-aligned, inside a writable image
        // area.
        unsafe { (info_addr as *mut u64).add(i).write_volatile(w) };
    }
}
