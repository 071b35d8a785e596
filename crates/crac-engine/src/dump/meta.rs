//! The metadata file: every record of the image, encoded in the stopped
//! phase into a buffer sized beforehand.

use crac_image::{
    ArgvRecord, CpuRecord, Header, MmRecord, ProcessRecord, Tag, ThreadRecord, TimersRecord,
    VdsoRecord, VmaRecord, Writer, FORMAT_VERSION, THREAD_DUMPER,
};
use crac_sys::sys;

use super::stop::{self, ThreadSlot, RESTORE_INFO};
use super::{SnapFailure, Snapshot};

impl Snapshot<'_> {
    /// Encodes the metadata and writes it with its header.
    pub(super) fn write_meta(
        &mut self,
        slots: &[ThreadSlot],
        own: &ThreadSlot,
        own_ctx: u64,
    ) -> Result<(), SnapFailure> {
        let mut meta = std::mem::take(&mut self.meta);
        let r = {
            let mut w = Writer::new(&mut meta);
            encode_body(self, slots, own, own_ctx, &mut w);
            match w.finish() {
                Ok(body) => {
                    let header = Header {
                        major: FORMAT_VERSION.0,
                        minor: FORMAT_VERSION.1,
                        body_len: body.len() as u64,
                        body_crc: crc32fast::hash(body),
                        arch: crac_image::ARCH_X86_64,
                        pages_len: self.pages_len,
                        // Unused from format 1.3 on: the piece table
                        // covers the page data.
                        pages_crc: 0,
                    };
                    sys::write_all(self.meta_fd, &header.encode())
                        .and_then(|()| sys::write_all(self.meta_fd, body))
                        .map_err(|e| SnapFailure::Sys("write the metadata file", e))
                }
                Err(e) => Err(SnapFailure::Encode { needed: e.needed }),
            }
        };
        self.meta = meta;
        r
    }
}

/// Encodes the metadata body.
pub(super) fn encode_body(
    s: &Snapshot<'_>,
    slots: &[ThreadSlot],
    own: &ThreadSlot,
    own_ctx: u64,
    w: &mut Writer<'_>,
) {
    let f = s.facts;
    let own_tid = own.tid;
    let mut mm = f.mm;
    mm[5] = sys::current_brk();
    ProcessRecord {
        pid: f.pid,
        ppid: f.ppid,
        uid: f.uid,
        gid: f.gid,
        umask: f.umask,
        personality: f.personality,
        dumping_tid: own_tid,
        realtime_ns: s.clocks[0],
        monotonic_ns: s.clocks[1],
        boottime_ns: s.clocks[2],
        resume_entry: crac_sys::ctx::resume_entry(),
        restore_info_addr: RESTORE_INFO.0.as_ptr() as u64,
        exe: &f.exe,
        cwd: &f.cwd,
        comm: &f.comm,
        kernel_release: &f.kernel_release,
        boot_id: &f.boot_id,
        hostname: &f.hostname,
    }
    .encode(w);
    ArgvRecord {
        cmdline: &f.cmdline,
    }
    .encode(w);
    CpuRecord {
        vendor: &f.cpu_vendor,
        xcr0: f.xcr0,
        xsave_size: f.xsave_size,
        features: f.cpu_features,
    }
    .encode(w);
    MmRecord {
        start_code: mm[0],
        end_code: mm[1],
        start_data: mm[2],
        end_data: mm[3],
        start_brk: mm[4],
        brk: mm[5],
        start_stack: mm[6],
        arg_start: mm[7],
        arg_end: mm[8],
        env_start: mm[9],
        env_end: mm[10],
        auxv: &f.auxv,
    }
    .encode(w);
    let mut vdso = VdsoRecord {
        vdso_crc: f.vdso_crc,
        ..Default::default()
    };
    for v in &s.vmas {
        let part = (v.start, v.end - v.start);
        match s.name(v.name_off, v.name_len) {
            b"[vvar]" => vdso.vvar = part,
            b"[vvar_vclock]" => vdso.vvar_vclock = part,
            b"[vdso]" => vdso.vdso = part,
            _ => {}
        }
    }
    vdso.encode(w);
    for m in &f.files {
        m.as_record().encode(w);
    }
    for v in &s.vmas {
        VmaRecord {
            start: v.start,
            end: v.end,
            pgoff: v.pgoff,
            prot: v.prot,
            flags: v.flags,
            file: v.file,
            name: s.name(v.name_off, v.name_len),
            populated: v.populated,
        }
        .encode(w);
    }
    w.section(Tag::Runs as u32, |w| {
        for r in &s.runs {
            r.encode(w);
        }
    });
    for slot in slots.iter().chain(std::iter::once(own)) {
        let (rseq_addr, rseq_len, rseq_sig) = stop::rseq_area(slot.fs_gs.0);
        let name_len = slot.name.iter().position(|&b| b == 0).unwrap_or(16);
        ThreadRecord {
            tid: slot.tid,
            flags: if slot.tid == own_tid {
                THREAD_DUMPER
            } else {
                0
            },
            ctx_addr: if slot.tid == own_tid {
                own_ctx
            } else {
                &slot.ctx as *const _ as u64
            },
            fs_base: slot.fs_gs.0,
            gs_base: slot.fs_gs.1,
            clear_tid: slot.clear_tid,
            robust_head: slot.robust.0,
            robust_len: slot.robust.1,
            rseq_addr,
            rseq_len,
            rseq_sig,
            sigmask: slot.sigmask,
            altstack: slot.altstack,
            affinity: &slot.affinity[..slot.affinity_len as usize],
            name: &slot.name[..name_len],
        }
        .encode(w);
    }
    let mut acts = [crac_image::SigactionRecord::default(); 64];
    acts.copy_from_slice(&f.sigactions[..64]);
    crac_image::encode_sigactions(w, &acts);
    let mut lims = [crac_image::RlimitRecord::default(); 16];
    lims.copy_from_slice(&f.rlimits[..16]);
    crac_image::encode_rlimits(w, &lims);
    TimersRecord {
        itimers: f.itimers,
        posix_timers: f.posix_timers,
        shared_pending: own.shared_pending,
    }
    .encode(w);
    s.fds.encode(w);
    f.creds.as_record().encode(w);
    crac_image::PieceTable::encode(w, &s.pieces.hashes);
    if let Some(p) = &s.pack {
        crac_image::StoredPieces::encode(w, p.method(), s.data_len, &p.stored);
    }
}
