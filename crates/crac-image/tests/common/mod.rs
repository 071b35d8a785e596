//! Builders of valid images for the integration tests.
#![allow(dead_code)]

use std::path::Path;

use crac_image::model::{Argv, Cpu, Fd, FileRef, Image, Mm, Process, Thread, Vma};
use crac_image::{
    Header, PageRun, RlimitRecord, SigactionRecord, TimersRecord, VdsoRecord, ARCH_X86_64, FD_PIPE,
    FORMAT_VERSION, META_FILE, NO_FILE, PAGES_FILE, PAGE_SIZE, PROT_READ, PROT_WRITE,
    THREAD_DUMPER, VMA_FILE, VMA_HEAP,
};
use proptest::prelude::*;

/// A header placeholder; [`Image::write`] computes the real one.
pub fn blank_header() -> Header {
    Header {
        major: FORMAT_VERSION.0,
        minor: FORMAT_VERSION.1,
        body_len: 0,
        body_crc: 0,
        arch: ARCH_X86_64,
        pages_len: 0,
        pages_crc: 0,
    }
}

/// A small valid image: a file mapping, a heap with two stored pages, two
/// threads. Returns the image and its page data.
pub fn sample() -> (Image, Vec<u8>) {
    let image = Image {
        header: blank_header(),
        process: Process {
            pid: 100,
            ppid: 1,
            dumping_tid: 100,
            umask: 0o022,
            exe: b"/usr/bin/app".to_vec(),
            cwd: b"/srv".to_vec(),
            comm: b"app".to_vec(),
            kernel_release: b"6.18.0".to_vec(),
            boot_id: b"0b9c6f3e-7d7b-4c1e-9c3e-2f4a8c1d0e11\n".to_vec(),
            hostname: b"host".to_vec(),
            realtime_ns: 1_700_000_000_000_000_000,
            ..Default::default()
        },
        argv: Argv {
            cmdline: b"app\0--port\08080\0".to_vec(),
        },
        cpu: Cpu {
            vendor: b"GenuineIntel".to_vec(),
            xcr0: 0x2e7,
            xsave_size: 2696,
            features: [1, 2, 3, 4, 5, 6, 7, 8],
        },
        mm: Mm {
            start_brk: 0x60_0000,
            brk: 0x60_2000,
            auxv: vec![6, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        },
        vdso: VdsoRecord {
            vvar: (0x7fff_0000_0000, 0x4000),
            vvar_vclock: (0, 0),
            vdso: (0x7fff_0000_4000, 0x2000),
            vdso_crc: 0x1234_5678,
        },
        files: vec![FileRef {
            id: 0,
            size: 8192,
            mode: 0o100_755,
            build_id: vec![0xab, 0xcd],
            path: b"/usr/bin/app".to_vec(),
            ..Default::default()
        }],
        vmas: vec![
            Vma {
                start: 0x40_0000,
                end: 0x40_2000,
                prot: PROT_READ,
                flags: VMA_FILE,
                file: 0,
                name: b"/usr/bin/app".to_vec(),
                pgoff: 0,
                populated: 2,
            },
            Vma {
                start: 0x60_0000,
                end: 0x60_2000,
                prot: PROT_READ | PROT_WRITE,
                flags: VMA_HEAP,
                file: NO_FILE,
                name: b"[heap]".to_vec(),
                pgoff: 0,
                populated: 2,
            },
        ],
        runs: vec![PageRun {
            addr: 0x60_0000,
            pages: 2,
            offset: 4096,
        }],
        threads: vec![
            Thread {
                tid: 100,
                flags: THREAD_DUMPER,
                name: b"app".to_vec(),
                affinity: vec![0b101],
                ..Default::default()
            },
            Thread {
                tid: 101,
                name: b"worker".to_vec(),
                affinity: vec![0xff],
                ..Default::default()
            },
        ],
        sigactions: [SigactionRecord::default(); 64],
        rlimits: [RlimitRecord {
            cur: u64::MAX,
            max: u64::MAX,
        }; 16],
        timers: TimersRecord::default(),
        fds: vec![Fd {
            fd: 5,
            kind: FD_PIPE,
            flags: 0o2000,
            id: 4242,
            buffered: 3,
            ..Default::default()
        }],
        creds: Some({
            let mut c = crac_image::creds::Creds {
                uids: [65534, 65534, 65534, 65534],
                gids: [65534, 65534, 65534, 100],
                cap_permitted: 1 << 10,
                cap_effective: 1 << 10,
                cap_bounding: (1 << 41) - 1,
                securebits: 0,
                dumpable: 1,
                ..Default::default()
            };
            c.set_groups(vec![27, 65534]);
            c
        }),
        pieces: None,
        stored: None,
        unknown_sections: Vec::new(),
    };
    let pages: Vec<u8> = (0..2 * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
    let mut image = image;
    image.set_pieces(&pages);
    (image, pages)
}

/// Writes `meta.crac` and `pages.crac` as given, bypassing all checks.
pub fn write_raw(dir: &Path, meta: &[u8], pages: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(META_FILE), meta).unwrap();
    std::fs::write(dir.join(PAGES_FILE), pages).unwrap();
}

/// `meta.crac` bytes for `body` with a correct header (given page data).
pub fn meta_bytes(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut m = header.encode().to_vec();
    m.extend_from_slice(body);
    m
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

prop_compose! {
    fn arb_process()(
        pid in 1u32..4_000_000, ppid in any::<u32>(), uid in any::<u32>(), gid in any::<u32>(),
        umask in 0u32..0o777, personality in any::<u32>(),
        clocks in any::<[u64; 5]>(),
        strs in proptest::collection::vec(bytes(40), 6),
    ) -> Process {
        Process {
            pid, ppid, uid, gid, umask, personality, dumping_tid: 0,
            realtime_ns: clocks[0], monotonic_ns: clocks[1], boottime_ns: clocks[2],
            resume_entry: clocks[3], restore_info_addr: clocks[4],
            exe: strs[0].clone(), cwd: strs[1].clone(), comm: strs[2].clone(),
            kernel_release: strs[3].clone(), boot_id: strs[4].clone(), hostname: strs[5].clone(),
        }
    }
}

prop_compose! {
    fn arb_thread()(
        flags in any::<u32>(), v in any::<[u64; 10]>(), w in any::<[u32; 3]>(),
        affinity in bytes(16), name in bytes(16),
    ) -> Thread {
        Thread {
            tid: 0, flags: flags & !THREAD_DUMPER,
            ctx_addr: v[0], fs_base: v[1], gs_base: v[2], clear_tid: v[3], robust_head: v[4],
            robust_len: v[5], rseq_addr: v[6], rseq_len: w[0], rseq_sig: w[1], sigmask: v[7],
            altstack: (v[8], v[9], w[2]), affinity, name,
        }
    }
}

prop_compose! {
    fn arb_file()(
        dev in any::<u64>(), ino in any::<u64>(), size in any::<u64>(),
        mtime_sec in any::<i64>(), mtime_nsec in any::<u32>(), mode in any::<u32>(),
        build_id in bytes(20), path in bytes(64), content_hash in bytes(32),
    ) -> FileRef {
        FileRef { id: 0, dev, ino, size, mtime_sec, mtime_nsec, mode, build_id, path, content_hash }
    }
}

/// One mapping layout: gap before it and length in pages, plus its stored
/// sub-ranges as (skip, len) pairs in pages.
type VmaShape = (u64, u64, u32, u32, Vec<u8>, Vec<(u64, u64)>, bool);

fn arb_vma_shape() -> impl Strategy<Value = VmaShape> {
    (
        0u64..4,
        1u64..6,
        0u32..8,
        any::<u32>(),
        bytes(24),
        proptest::collection::vec((0u64..3, 1u64..3), 0..3),
        any::<bool>(),
    )
}

prop_compose! {
    /// A random valid image and its page data.
    pub fn arb_image()(
        mut process in arb_process(),
        cmdline in bytes(64),
        cpu in (bytes(12), any::<u64>(), any::<u32>(), any::<[u32; 8]>()),
        mm in (any::<[u64; 11]>(), bytes(64)),
        vdso in any::<[(u64, u64); 3]>(), vdso_crc in any::<u32>(),
        mut files in proptest::collection::vec(arb_file(), 0..4),
        shapes in proptest::collection::vec(arb_vma_shape(), 1..8),
        mut threads in proptest::collection::vec(arb_thread(), 1..5),
        tid_base in 1u32..1_000_000,
        dumper_pick in any::<proptest::sample::Index>(),
        sigactions in proptest::collection::vec(any::<[u64; 4]>(), 64),
        rlimits in proptest::collection::vec(any::<(u64, u64)>(), 16),
        timers in (any::<[(u64, u64); 3]>(), any::<u32>(), any::<u64>()),
        fds in proptest::collection::btree_map(any::<u32>(), any::<(u32, u32, u64, u64)>(), 0..4),
    ) -> (Image, Vec<u8>) {
        for (i, f) in files.iter_mut().enumerate() {
            f.id = (i as u32) * 3 + 1;
        }
        for (i, t) in threads.iter_mut().enumerate() {
            t.tid = tid_base + i as u32;
        }
        let d = dumper_pick.index(threads.len());
        threads[d].flags |= THREAD_DUMPER;
        process.dumping_tid = threads[d].tid;
        let mut vmas = Vec::new();
        let mut runs: Vec<PageRun> = Vec::new();
        let mut addr = 0x1000_0000u64;
        let mut offset = 4096u64;
        for (gap, len, prot, flags, name, stored, filed) in shapes {
            addr += gap * PAGE_SIZE;
            let start = addr;
            let end = start + len * PAGE_SIZE;
            let file = match (filed, files.is_empty()) {
                (true, false) => files[(start as usize / 4096) % files.len()].id,
                _ => NO_FILE,
            };
            vmas.push(Vma { start, end, pgoff: 0, prot, flags, file, name, populated: 0 });
            let mut at = start;
            for (skip, n) in stored {
                let s = at + skip * PAGE_SIZE;
                let e = (s + n * PAGE_SIZE).min(end);
                if s >= e {
                    break;
                }
                let pages = (e - s) / PAGE_SIZE;
                // Merge with a directly preceding run half of the time.
                match runs.last_mut() {
                    Some(r) if r.addr + r.pages * PAGE_SIZE == s && pages.is_multiple_of(2) => {
                        r.pages += pages;
                    }
                    _ => runs.push(PageRun { addr: s, pages, offset }),
                }
                offset += pages * PAGE_SIZE;
                at = e;
            }
            addr = end;
        }
        let data_len = offset - 4096;
        let page_data: Vec<u8> = (0..data_len).map(|i| (i.wrapping_mul(7) >> 3) as u8).collect();
        let mut sa = [SigactionRecord::default(); 64];
        for (a, v) in sa.iter_mut().zip(&sigactions) {
            *a = SigactionRecord { handler: v[0], flags: v[1], restorer: v[2], mask: v[3] };
        }
        let mut rl = [RlimitRecord::default(); 16];
        for (l, v) in rl.iter_mut().zip(&rlimits) {
            *l = RlimitRecord { cur: v.0, max: v.1 };
        }
        let (f0, f1) = (mm.0, mm.1);
        let image = Image {
            header: blank_header(),
            process,
            argv: Argv { cmdline },
            cpu: Cpu { vendor: cpu.0, xcr0: cpu.1, xsave_size: cpu.2, features: cpu.3 },
            mm: Mm {
                start_code: f0[0], end_code: f0[1], start_data: f0[2], end_data: f0[3],
                start_brk: f0[4], brk: f0[5], start_stack: f0[6], arg_start: f0[7],
                arg_end: f0[8], env_start: f0[9], env_end: f0[10], auxv: f1,
            },
            vdso: VdsoRecord { vvar: vdso[0], vvar_vclock: vdso[1], vdso: vdso[2], vdso_crc },
            files,
            vmas,
            runs,
            threads,
            sigactions: sa,
            rlimits: rl,
            timers: TimersRecord { itimers: timers.0, posix_timers: timers.1, shared_pending: timers.2 },
            fds: fds
                .into_iter()
                .map(|(fd, (kind, flags, id, buffered))| Fd { fd, kind, flags, id, buffered, ..Default::default() })
                .collect(),
            creds: None,
            pieces: Some(crac_image::model::piece_hashes(&page_data)),
            stored: None,
            unknown_sections: Vec::new(),
        };
        (image, page_data)
    }
}
