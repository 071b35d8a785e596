//! A hand-made image of a tiny two-thread process, for testing the restore
//! path without the dump: one RWX page of code at 0x400000 that every thread
//! enters with `rdi` = its context address. The main thread (context
//! 0x400900) checks that the restorer filled the restore-info block at
//! 0x400800 and exits with status 42 (1 if not), or, if the byte at
//! 0x400c00 is set, unblocks all signals and waits for one; the other thread
//! (context 0x400a00) exits.

use std::fs;
use std::path::Path;

use crac_image::{
    encode_pages_header, CpuRecord, Header, MmRecord, PageRun, ProcessRecord, Tag, ThreadRecord,
    VdsoRecord, VmaRecord, Writer, ARCH_X86_64, FORMAT_VERSION, NO_FILE, VMA_VDSO,
};

pub const BASE: u64 = 0x40_0000;

const CODE: [u8; 113] = [
    0x48, 0x81, 0xff, 0x00, 0x0a, 0x40, 0x00, 0x74, 0x3d, 0x48, 0x81, 0xff, 0x00, 0x09, 0x40, 0x00,
    0x75, 0x28, 0x48, 0x8b, 0x04, 0x25, 0x00, 0x08, 0x40, 0x00, 0x48, 0xb9, 0x54, 0x53, 0x45, 0x52,
    0x63, 0x61, 0x72, 0x63, 0x48, 0x39, 0xc8, 0x75, 0x11, 0x80, 0x3c, 0x25, 0x00, 0x0c, 0x40, 0x00,
    0x00, 0x75, 0x1c, 0xbf, 0x2a, 0x00, 0x00, 0x00, 0xeb, 0x05, 0xbf, 0x01, 0x00, 0x00, 0x00, 0xb8,
    0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05, 0xb8,
    0x0e, 0x00, 0x00, 0x00, 0xbf, 0x02, 0x00, 0x00, 0x00, 0xbe, 0x00, 0x0b, 0x40, 0x00, 0x31, 0xd2,
    0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb,
    0xf7,
];

/// Two free consecutive ids (PID, TID).
pub fn free_ids() -> (u32, u32) {
    let max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let lo = max / 2;
    let span = max - lo - 2;
    for i in 0..span {
        let p = lo + (seed.wrapping_add(i.wrapping_mul(7919))) % span;
        if !Path::new(&format!("/proc/{p}")).exists()
            && !Path::new(&format!("/proc/{}", p + 1)).exists()
        {
            return (p, p + 1);
        }
    }
    panic!("no free ids");
}

/// Knobs for damaged or unusual images.
#[derive(Default)]
pub struct Tweaks {
    /// An extra one-page area here (no page data).
    pub area_start: Option<u64>,
    /// An extra (file) area with this path.
    pub file: Option<(Vec<u8>, u64, u64)>,
    /// Hard limit of RLIMIT_NOFILE in the image.
    pub nofile_max: Option<u64>,
    /// The main thread waits for a signal instead of exiting.
    pub wait_signal: bool,
    /// An extra read-write anonymous area at `BIG` with this many stored pages.
    pub big_pages: u64,
}

/// Where [`Tweaks::big_pages`] are.
pub const BIG: u64 = 0x1000_0000;

/// Writes the image to `dir`.
pub fn write(dir: &Path, pid: u32, tid: u32, t: &Tweaks) {
    fs::create_dir_all(dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap().as_bytes().to_vec();
    let (vendor, xcr0, xsave_size, features) = super::preflight_machine::cpu_here();
    let parts = super::preflight_machine::vdso_here().unwrap();
    let crc = {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; parts[2].1 as usize];
        fs::File::open("/proc/self/mem")
            .unwrap()
            .read_exact_at(&mut b, parts[2].0)
            .unwrap();
        crc32fast::hash(&b)
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut w = Writer::new(&mut buf);
    ProcessRecord {
        pid,
        ppid: 1,
        dumping_tid: pid,
        resume_entry: BASE,
        restore_info_addr: BASE + 0x800,
        exe: &exe,
        cwd: b"/",
        comm: b"tiny",
        ..Default::default()
    }
    .encode(&mut w);
    CpuRecord {
        vendor: &vendor,
        xcr0,
        xsave_size,
        features,
    }
    .encode(&mut w);
    MmRecord {
        start_code: BASE,
        end_code: BASE + 0x1000,
        start_data: BASE + 0x1000,
        end_data: BASE + 0x2000,
        start_brk: BASE + 0x2000,
        brk: BASE + 0x2000,
        start_stack: BASE + 0x3000,
        arg_start: BASE + 0x3000,
        arg_end: BASE + 0x3000,
        env_start: BASE + 0x3000,
        env_end: BASE + 0x3000,
        auxv: &[],
    }
    .encode(&mut w);
    VdsoRecord {
        vvar: parts[0],
        vvar_vclock: parts[1],
        vdso: parts[2],
        vdso_crc: crc,
    }
    .encode(&mut w);
    if let Some((path, size, _)) = &t.file {
        crac_image::FileRecord {
            id: 0,
            size: *size,
            path,
            ..Default::default()
        }
        .encode(&mut w);
    }
    // Sorted by address, as a dump writes them (the strict reader refuses
    // anything else).
    let anon = |start: u64, prot: u32| VmaRecord {
        start,
        end: start + 0x1000,
        prot,
        flags: 0,
        file: NO_FILE,
        name: b"",
        populated: 0,
        pgoff: 0,
    };
    let mut vmas = vec![anon(BASE, 7)];
    if let Some(start) = t.area_start {
        vmas.push(anon(start, 3));
    }
    if let Some((path, _, at)) = &t.file {
        vmas.push(VmaRecord {
            start: *at,
            end: at + 0x1000,
            prot: 1,
            flags: crac_image::VMA_FILE,
            file: 0,
            name: path,
            populated: 0,
            pgoff: 0,
        });
    }
    if t.big_pages > 0 {
        vmas.push(VmaRecord {
            end: BIG + t.big_pages * 4096,
            ..anon(BIG, 3)
        });
    }
    for p in parts.iter().filter(|p| p.1 != 0) {
        vmas.push(VmaRecord {
            start: p.0,
            end: p.0 + p.1,
            prot: 5,
            flags: VMA_VDSO,
            file: NO_FILE,
            name: b"[vdso]",
            populated: 0,
            pgoff: 0,
        });
    }
    vmas.sort_by_key(|v| v.start);
    for v in &vmas {
        v.encode(&mut w);
    }
    w.section(Tag::Runs as u32, |w| {
        PageRun {
            addr: BASE,
            pages: 1,
            offset: 4096,
        }
        .encode(w);
        if t.big_pages > 0 {
            PageRun {
                addr: BIG,
                pages: t.big_pages,
                offset: 8192,
            }
            .encode(w);
        }
    });
    ThreadRecord {
        tid: pid,
        flags: crac_image::THREAD_DUMPER,
        ctx_addr: BASE + 0x900,
        name: b"tiny",
        ..Default::default()
    }
    .encode(&mut w);
    ThreadRecord {
        tid,
        ctx_addr: BASE + 0xa00,
        name: b"tiny-worker",
        ..Default::default()
    }
    .encode(&mut w);
    // The test's own credentials: the image restores as whoever runs it.
    let creds = crate::creds::current().expect("own credentials");
    creds.as_record().encode(&mut w);
    let mut lims = [crac_image::RlimitRecord { cur: 0, max: 0 }; 16];
    if let Some(m) = t.nofile_max {
        lims[7] = crac_image::RlimitRecord { cur: 0, max: m };
    }
    crac_image::encode_rlimits(&mut w, &lims);
    crac_image::ArgvRecord { cmdline: &exe }.encode(&mut w);
    crac_image::encode_sigactions(&mut w, &[crac_image::SigactionRecord::default(); 64]);
    crac_image::TimersRecord::default().encode(&mut w);

    let mut page = vec![0u8; 4096];
    page[..CODE.len()].copy_from_slice(&CODE);
    page[0xc00] = u8::from(t.wait_signal);
    let mut pages = encode_pages_header(1 + t.big_pages).to_vec();
    pages.extend_from_slice(&page);
    for i in 0..t.big_pages {
        pages.extend(std::iter::repeat_n(i as u8 | 1, 4096));
    }
    crac_image::PieceTable::encode(&mut w, &crac_image::model::piece_hashes(&pages[4096..]));
    let body = w.finish().unwrap().to_vec();
    let h = Header {
        major: FORMAT_VERSION.0,
        minor: FORMAT_VERSION.1,
        body_len: body.len() as u64,
        body_crc: crc32fast::hash(&body),
        arch: ARCH_X86_64,
        pages_len: pages.len() as u64,
        pages_crc: 0,
    };
    let mut meta = h.encode().to_vec();
    meta.extend_from_slice(&body);
    fs::write(dir.join(crac_image::META_FILE), meta).unwrap();
    fs::write(dir.join(crac_image::PAGES_FILE), pages).unwrap();
}
