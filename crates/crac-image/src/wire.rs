//! Allocation-free little-endian encoding of the metadata body.
//!
//! The body is a sequence of sections, each `tag: u32, len: u32, payload`,
//! padded with zeros to a multiple of 8 bytes. Inside a payload, integers are
//! little-endian and byte strings are a `u32` length followed by the bytes.
//!
//! The [`Writer`] encodes into a caller-provided buffer and never allocates:
//! the in-process dump runs while other threads are stopped, possibly inside
//! `malloc`, so it must not touch the heap.

/// The buffer given to a [`Writer`] is too small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError {
    /// Bytes the encoding needed in total (at least).
    pub needed: usize,
    /// Bytes the buffer had.
    pub capacity: usize,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the metadata buffer of {} bytes is too small (at least {} needed)",
            self.capacity, self.needed
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Why a body or record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The data ended inside a field.
    Truncated {
        /// Offset at which more bytes were needed.
        offset: usize,
    },
    /// A section's length runs past the end of the body.
    BadSectionLength {
        /// Section tag.
        tag: u32,
        /// Declared length.
        len: u32,
    },
    /// A value is out of its allowed range.
    Invalid {
        /// What was being decoded.
        what: &'static str,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { offset } => write!(f, "the data ends early at offset {offset}"),
            Self::BadSectionLength { tag, len } => {
                write!(
                    f,
                    "section {tag} claims {len} bytes, past the end of the body"
                )
            }
            Self::Invalid { what } => write!(f, "invalid {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// Encodes into a fixed buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    section_start: Option<usize>,
    overflow: bool,
    needed: usize,
}

impl<'a> Writer<'a> {
    /// A writer over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            section_start: None,
            overflow: false,
            needed: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The bytes written so far, or the overflow if the buffer was too small.
    ///
    /// Writes never fail one by one; an overflow is reported once, here.
    pub fn finish(self) -> Result<&'a [u8], EncodeError> {
        if self.overflow {
            return Err(EncodeError {
                needed: self.needed,
                capacity: self.buf.len(),
            });
        }
        let Writer { buf, pos, .. } = self;
        Ok(&buf[..pos])
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        let end = self.pos + b.len();
        self.needed = self.needed.max(end);
        if self.overflow || end > self.buf.len() {
            self.overflow = true;
            self.pos = end;
            return;
        }
        self.buf[self.pos..end].copy_from_slice(b);
        self.pos = end;
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    /// Appends a little-endian `i64`.
    pub fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }
    /// Appends a length-prefixed byte string.
    pub fn str(&mut self, s: &[u8]) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.bytes(s);
    }

    /// Starts a section with `tag`; [`Writer::end_section`] closes it.
    pub fn begin_section(&mut self, tag: u32) {
        debug_assert!(self.section_start.is_none(), "sections do not nest");
        self.u32(tag);
        self.section_start = Some(self.pos);
        self.u32(0);
    }

    /// Closes the open section: patches its length and pads to 8 bytes.
    pub fn end_section(&mut self) {
        let Some(len_at) = self.section_start.take() else {
            return;
        };
        let len = self.pos - len_at - 4;
        if !self.overflow {
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        }
        while !self.pos.is_multiple_of(8) {
            self.u8(0);
        }
    }

    /// Writes a whole section produced by `f`.
    pub fn section(&mut self, tag: u32, f: impl FnOnce(&mut Self)) {
        self.begin_section(tag);
        f(self);
        self.end_section();
    }
}

/// Decodes from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data` within the whole body, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            base: 0,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Takes `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                offset: self.base + self.pos,
            });
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    /// Reads a little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }
    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }
    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }
    /// Reads a little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }
    /// Reads a length-prefixed byte string.
    pub fn str(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    /// The next section as `(tag, payload reader)`, or `None` at the end.
    pub fn next_section(&mut self) -> Result<Option<(u32, Reader<'a>)>, DecodeError> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        let tag = self.u32()?;
        let len = self.u32()?;
        let start = self.pos;
        let payload = self
            .bytes(len as usize)
            .map_err(|_| DecodeError::BadSectionLength { tag, len })?;
        // Padding may be missing only at the very end of the body.
        let pad = (8 - (self.pos % 8)) % 8;
        self.pos = (self.pos + pad).min(self.data.len());
        Ok(Some((
            tag,
            Reader {
                data: payload,
                pos: 0,
                base: self.base + start,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_round_trip() {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        w.section(7, |w| {
            w.u32(1);
            w.str(b"abc");
        });
        w.section(9, |w| w.u64(u64::MAX));
        let body = w.finish().unwrap();
        assert_eq!(body.len() % 8, 0);
        let mut r = Reader::new(body);
        let (t, mut p) = r.next_section().unwrap().unwrap();
        assert_eq!((t, p.u32().unwrap(), p.str().unwrap()), (7, 1, &b"abc"[..]));
        let (t, mut p) = r.next_section().unwrap().unwrap();
        assert_eq!((t, p.u64().unwrap()), (9, u64::MAX));
        assert!(r.next_section().unwrap().is_none());
    }

    #[test]
    fn overflow_is_reported_once_with_the_size_needed() {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.u64(1);
        w.u64(2);
        assert_eq!(
            w.finish(),
            Err(EncodeError {
                needed: 16,
                capacity: 8
            })
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[1, 0, 0, 0, 200, 0, 0, 0, 1]);
        assert!(matches!(
            r.next_section(),
            Err(DecodeError::BadSectionLength { tag: 1, len: 200 })
        ));
        let mut r = Reader::new(&[1, 2]);
        assert!(matches!(r.u32(), Err(DecodeError::Truncated { offset: 0 })));
    }
}
