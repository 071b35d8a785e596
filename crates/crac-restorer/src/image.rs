//! The image's metadata (fd 3), mapped read-only into the zone: its header
//! and the records the restore starts from checked and decoded
//! ([`load_image`], [`check_image`]), and the walk over its sections
//! ([`sections`]) every later stage reads its records with.

use core::fmt::Write as _;

use crac_image::status::Status;
use crac_image::{
    CredsRecord, DecodeError, Header, MmRecord, PieceTable, ProcessRecord, Reader, StoredPieces,
    Tag, VdsoRecord, HEADER_LEN, PIECES_MINOR, STORED_LZ4,
};

use crate::sys::*;
use crate::{err, page_up, META_AREA, META_FD, META_MAX, PAGES_FD, R};

/// The image as the restorer uses it: records in place in the mapped
/// metadata.
pub(crate) struct Image {
    pub(crate) body: &'static [u8],
    pub(crate) process: ProcessRecord<'static>,
    pub(crate) mm: MmRecord<'static>,
    pub(crate) vdso: VdsoRecord,
    pub(crate) runs: Reader<'static>,
    pub(crate) threads: u64,
    pub(crate) creds: CredsRecord<'static>,
    /// The piece table (`None` in images older than format 1.3, whose page
    /// data `crac restore` checked whole) and the page file length.
    pub(crate) pieces: Option<PieceTable<'static>>,
    /// The logical page file length: header page and uncompressed page
    /// data (page run offsets and the piece table refer to it).
    pub(crate) pages_len: u64,
    /// The stored-pieces table of an LZ4-compressed image (`crac restore`
    /// passes `pages.crac` itself): where each piece lies in the page file.
    /// Checked against the page file's size and always with a piece table.
    pub(crate) stored: Option<StoredPieces<'static>>,
}

pub(crate) fn meta_err(e: DecodeError) -> Status {
    fail!(0, 0, "the metadata is damaged: {e}")
}

pub(crate) fn sections(body: &'static [u8]) -> impl Iterator<Item = R<(Tag, Reader<'static>)>> {
    let mut r = Reader::new(body);
    core::iter::from_fn(move || loop {
        match r.next_section() {
            Ok(None) => return None,
            Err(e) => return Some(Err(meta_err(e))),
            Ok(Some((tag, p))) => match Tag::from_u32(tag) {
                Some(t) => return Some(Ok((t, p))),
                None => continue,
            },
        }
    })
}

pub(crate) fn load_image() -> R<Image> {
    let size = file_size(META_FD).map_err(|e| fail!(e, 0, "the metadata file cannot be sized"))?;
    if size < HEADER_LEN as u64 || size > META_MAX {
        return Err(fail!(
            0,
            size,
            "the metadata file has {size} bytes (at most {META_MAX} fit)"
        ));
    }
    // SAFETY: the metadata area of the zone is reserved for this mapping.
    unsafe {
        mmap(
            META_AREA,
            page_up(size),
            PROT_READ,
            MAP_PRIVATE | MAP_FIXED,
            META_FD,
            0,
        )
    }
    .map_err(|e| fail!(e, META_AREA, "mapping the metadata failed"))?;
    // SAFETY: mapped read-only just above, never unmapped or written while
    // the restorer runs.
    let meta: &'static [u8] =
        unsafe { core::slice::from_raw_parts(META_AREA as *const u8, size as usize) };
    let h = Header::decode(meta).map_err(|e| fail!(0, 0, "the metadata header is invalid: {e}"))?;
    let body_end = (HEADER_LEN as u64)
        .checked_add(h.body_len)
        .filter(|&e| e <= size);
    let Some(body_end) = body_end else {
        return Err(fail!(0, h.body_len, "the metadata body is cut short"));
    };
    let body = &meta[HEADER_LEN..body_end as usize];
    let mut process = None;
    let mut mm = None;
    let mut vdso = VdsoRecord::default();
    let mut runs = Reader::new(&[]);
    let mut threads = 0;
    let mut creds = None;
    let mut pieces = None;
    let mut stored = None;
    for s in sections(body) {
        let (tag, mut p) = s?;
        match tag {
            Tag::Process => process = Some(ProcessRecord::decode(&mut p).map_err(meta_err)?),
            Tag::Mm => mm = Some(MmRecord::decode(&mut p).map_err(meta_err)?),
            Tag::Vdso => vdso = VdsoRecord::decode(&mut p).map_err(meta_err)?,
            Tag::Runs => runs = p,
            Tag::Thread => threads += 1,
            Tag::Creds => creds = Some(CredsRecord::decode(&mut p).map_err(meta_err)?),
            Tag::Pieces => pieces = Some(PieceTable::decode(&mut p).map_err(meta_err)?),
            Tag::Stored => stored = Some(StoredPieces::decode(&mut p).map_err(meta_err)?),
            _ => {}
        }
    }
    let (Some(process), Some(mm)) = (process, mm) else {
        return Err(fail!(0, 0, "the metadata lacks its process or mm record"));
    };
    // Without it the process would run as whoever runs `crac restore`.
    let Some(creds) = creds else {
        return Err(fail!(0, 0, "the metadata lacks its credentials record"));
    };
    let mut pages_len = h.pages_len;
    if let Some(st) = stored {
        // Only LZ4 pieces are decoded here (Zstandard images come
        // decompressed, without this table).
        if st.compression != STORED_LZ4 || pieces.is_none() {
            return Err(fail!(
                0,
                u64::from(st.compression),
                "the image is compressed with method {} the restorer cannot read, or lacks its piece table",
                st.compression
            ));
        }
        // Every entry inside the page file as it is now, stored lengths
        // of 1 to 64 KiB, one entry per piece of the uncompressed data.
        let size = file_size(PAGES_FD).map_err(|e| fail!(e, 0, "the page file cannot be sized"))?;
        st.check(size)
            .map_err(|e| fail!(0, st.len(), "the metadata is damaged: {e}"))?;
        pages_len = st.logical_len();
    }
    match pieces {
        Some(t) => t
            .check(pages_len)
            .map_err(|e| fail!(0, t.len(), "the metadata is damaged: {e}"))?,
        None if h.minor >= PIECES_MINOR => {
            return Err(fail!(0, 0, "the metadata lacks its piece table"));
        }
        None => {}
    }
    Ok(Image {
        body,
        process,
        mm,
        vdso,
        runs,
        threads,
        creds,
        pieces,
        pages_len,
        stored,
    })
}

/// Checks the image against what the preflight checked and where the
/// restorer runs: its credentials must be those the preflight saw and its
/// PID the restorer's own.
pub(crate) fn check_image(img: &Image, checked: CredsRecord<'static>) -> R<()> {
    // The image file may have changed since the preflight read it.
    if img.creds != checked {
        return Err(fail!(
            0,
            u64::from(img.creds.uids[0]),
            "the image's credentials (uid {}) are not those the preflight checked (uid {}): the image changed during the restore",
            img.creds.uids[0],
            checked.uids[0]
        ));
    }
    let pid = img.process.pid;
    if getpid() != pid {
        return Err(fail!(
            0,
            pid as u64,
            "the restorer runs as PID {}, not the image's PID {pid}",
            getpid()
        ));
    }
    Ok(())
}
