//! Zstandard compression of page data pieces without allocating: a static
//! compression context (`ZSTD_initStaticCCtx`) lives in a workspace sized
//! and allocated before the threads stop, and libzstd never allocates with
//! a static context (it fails instead, and the piece is then stored raw).
#![allow(unsafe_code)]

/// Compression level: fast enough for the stopped phase of a dump.
const LEVEL: i32 = 1;

/// A static compression context in a workspace of its own.
pub(super) struct StaticCctx {
    /// 8-byte aligned, as libzstd requires; never moved or resized.
    workspace: Box<[u64]>,
    cctx: *mut zstd_sys::ZSTD_CCtx,
}

impl std::fmt::Debug for StaticCctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCctx")
            .field("workspace_bytes", &(self.workspace.len() * 8))
            .finish_non_exhaustive()
    }
}

impl StaticCctx {
    /// Allocates the workspace (call before the stop).
    pub(super) fn new() -> Option<StaticCctx> {
        // SAFETY: a pure function of its argument.
        let bytes = unsafe { zstd_sys::ZSTD_estimateCCtxSize(LEVEL) };
        let mut workspace = vec![0u64; bytes.div_ceil(8)].into_boxed_slice();
        // SAFETY: the workspace is 8-byte aligned, `bytes` long at least, and
        // outlives the context (both live in `Self`; the box's heap block
        // does not move when `Self` does).
        let cctx = unsafe {
            zstd_sys::ZSTD_initStaticCCtx(workspace.as_mut_ptr().cast(), workspace.len() * 8)
        };
        (!cctx.is_null()).then_some(StaticCctx { workspace, cctx })
    }

    /// Compresses `src` into `dst`; `None` if it fails or does not fit.
    pub(super) fn compress(&mut self, src: &[u8], dst: &mut [u8]) -> Option<usize> {
        // SAFETY: the context is valid (see `new`) and used by one caller at
        // a time (`&mut self`); the pointers and lengths come from slices.
        let n = unsafe {
            zstd_sys::ZSTD_compressCCtx(
                self.cctx,
                dst.as_mut_ptr().cast(),
                dst.len(),
                src.as_ptr().cast(),
                src.len(),
                LEVEL,
            )
        };
        // SAFETY: a pure function of its argument.
        let failed = unsafe { zstd_sys::ZSTD_isError(n) } != 0;
        (!failed && n <= dst.len()).then_some(n)
    }
}
