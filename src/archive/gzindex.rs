//! zran-style random access into gzip payloads.
//!
//! While a payload is first inflated (at publish time) [`IndexingReader`] records seek points
//! at deflate block boundaries: the compressed bit position plus the 32 KiB of output a later
//! block may refer back to. [`GzCursor`] then serves reads at any offset by restarting the
//! inflater at the nearest point, so a read costs at most one spacing of inflation instead
//! of inflating from the start of the payload.
//!
//! The inflater is miniz_oxide's low-level core (already used by flate2), built with its
//! `block-boundary` feature, which stops between blocks and restarts from a saved state.
//! gzip member framing (RFC 1952) is done here because the core only knows raw deflate.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use crate::store::ReadAt;

use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_STOP_ON_BLOCK_BOUNDARY,
};
use miniz_oxide::inflate::core::{decompress, BlockBoundaryState, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Largest distance a deflate match may reach back.
const WINDOW: usize = 32 * 1024;
/// Output ring; a power of two (the core's wrapping mode needs it) and at least `WINDOW`.
const RING: usize = 64 * 1024;
/// Compressed input read per refill.
const IN_BUF: usize = 64 * 1024;
/// A forward gap a cursor inflates through rather than restarting at a point.
const MAX_SKIP: u64 = 1 << 20;

/// A place where inflation can restart: zran's `point_t`.
#[derive(Clone, PartialEq, Eq)]
pub struct SeekPoint {
    /// Uncompressed offset.
    pub out: u64,
    /// Compressed offset (from the gzip stream start) of the first byte not yet fully used.
    pub inp: u64,
    /// Bits (0..=7) of the byte at `inp - 1` still to be used, zran semantics.
    pub bits: u8,
    /// The `min(out, 32 KiB)` uncompressed bytes preceding `out`.
    pub window: Vec<u8>,
}

/// Hand-written so logs do not dump 32 KiB windows.
impl fmt::Debug for SeekPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeekPoint")
            .field("out", &self.out)
            .field("inp", &self.inp)
            .field("bits", &self.bits)
            .field("window_len", &self.window.len())
            .finish()
    }
}

fn corrupt(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {msg}"))
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "gzip: stream truncated")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Deflate,
    Trailer,
    End,
    Failed,
}

/// Seek-point collection state while indexing.
struct Indexer {
    spacing: u64,
    last: u64,
    points: Vec<SeekPoint>,
}

/// gzip decoder over any byte source, shared by the indexing reader and the cursor.
struct Engine<S: Read> {
    src: S,
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    in_eof: bool,
    /// Stream offset of `inbuf[in_start]`.
    in_abs: u64,
    /// Compressed bytes pulled from `src` (work measure).
    pulled: u64,
    decomp: Box<DecompressorOxide>,
    ring: Box<[u8]>,
    ring_pos: usize,
    /// Inflated bytes not yet handed out: `ring[pend_start..pend_start + pend_len]`.
    pend_start: usize,
    pend_len: usize,
    /// Uncompressed offset of `ring_pos`.
    out_total: u64,
    phase: Phase,
    members: u64,
    /// The current member was inflated from its header, so CRC and ISIZE can be checked.
    checked: bool,
    crc: crc32fast::Hasher,
    member_out: u64,
    index: Option<Indexer>,
}

impl<S: Read> Engine<S> {
    fn new(src: S, in_abs: u64, index: Option<Indexer>) -> Self {
        Engine {
            src,
            inbuf: vec![0; IN_BUF].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            in_eof: false,
            in_abs,
            pulled: 0,
            decomp: Box::default(),
            ring: vec![0; RING].into_boxed_slice(),
            ring_pos: 0,
            pend_start: 0,
            pend_len: 0,
            out_total: 0,
            phase: Phase::Header,
            members: 0,
            checked: false,
            crc: crc32fast::Hasher::new(),
            member_out: 0,
            index,
        }
    }

    /// An engine resuming inside a member at `p`; `src` must start at `p.inp` (or one byte
    /// earlier when `p.bits > 0`).
    fn at_point(src: S, p: &SeekPoint) -> io::Result<Self> {
        let expect = usize::try_from(p.out).map_or(WINDOW, |o| o.min(WINDOW));
        if p.bits > 7 || p.window.len() != expect || (p.bits > 0 && p.inp == 0) {
            return Err(corrupt("invalid seek point"));
        }
        let back = u64::from(p.bits > 0);
        let mut e = Engine::new(src, p.inp - back, None);
        let mut bit_buf = 0;
        if p.bits > 0 {
            bit_buf = e.need()? >> (8 - p.bits);
            e.take();
        }
        e.decomp = Box::new(DecompressorOxide::from_block_boundary_state(
            &BlockBoundaryState {
                num_bits: p.bits,
                bit_buf,
                ..BlockBoundaryState::default()
            },
        ));
        e.ring[..p.window.len()].copy_from_slice(&p.window);
        e.ring_pos = p.window.len();
        e.out_total = p.out;
        e.phase = Phase::Deflate;
        e.members = 1;
        Ok(e)
    }

    /// Uncompressed offset of the next byte `read` returns.
    fn pos(&self) -> u64 {
        self.out_total - self.pend_len as u64
    }

    fn refill(&mut self) -> io::Result<()> {
        if self.in_start < self.in_end || self.in_eof {
            return Ok(());
        }
        let n = loop {
            match self.src.read(&mut self.inbuf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.in_start = 0;
        self.in_end = n;
        self.in_eof = n == 0;
        self.pulled += n as u64;
        Ok(())
    }

    /// Peeks the next input byte; `None` at end of input.
    fn peek(&mut self) -> io::Result<Option<u8>> {
        self.refill()?;
        Ok(self.inbuf[self.in_start..self.in_end].first().copied())
    }

    fn need(&mut self) -> io::Result<u8> {
        self.peek()?.ok_or_else(truncated)
    }

    fn take(&mut self) {
        self.in_start += 1;
        self.in_abs += 1;
    }

    fn hbyte(&mut self, h: &mut crc32fast::Hasher) -> io::Result<u8> {
        let b = self.need()?;
        self.take();
        h.update(&[b]);
        Ok(b)
    }

    /// Parses an RFC 1952 member header; `false` on a clean end of stream before it.
    fn header(&mut self) -> io::Result<bool> {
        match self.peek()? {
            None if self.members == 0 => return Err(corrupt("empty stream")),
            None => return Ok(false),
            Some(0x1f) => {}
            Some(_) if self.members == 0 => return Err(corrupt("not a gzip stream")),
            Some(_) => return Err(corrupt("trailing garbage after member")),
        }
        let mut h = crc32fast::Hasher::new();
        let mut fixed = [0u8; 10];
        for b in &mut fixed {
            *b = self.hbyte(&mut h)?;
        }
        if fixed[1] != 0x8b {
            return Err(corrupt("bad magic"));
        }
        if fixed[2] != 8 {
            return Err(corrupt("unknown compression method"));
        }
        let flg = fixed[3];
        if flg & 0xe0 != 0 {
            return Err(corrupt("reserved header flags set"));
        }
        if flg & 0x04 != 0 {
            let lo = self.hbyte(&mut h)?;
            let hi = self.hbyte(&mut h)?;
            for _ in 0..u16::from_le_bytes([lo, hi]) {
                self.hbyte(&mut h)?;
            }
        }
        for flag in [0x08, 0x10] {
            if flg & flag != 0 {
                while self.hbyte(&mut h)? != 0 {}
            }
        }
        if flg & 0x02 != 0 {
            let want = h.clone().finalize() as u16;
            let lo = self.need()?;
            self.take();
            let hi = self.need()?;
            self.take();
            if u16::from_le_bytes([lo, hi]) != want {
                return Err(corrupt("header CRC mismatch"));
            }
        }
        self.members += 1;
        Ok(true)
    }

    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        for b in &mut t {
            *b = self.need()?;
            self.take();
        }
        if self.checked {
            let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
            if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != crc {
                return Err(corrupt("CRC mismatch"));
            }
            if u32::from_le_bytes([t[4], t[5], t[6], t[7]]) != self.member_out as u32 {
                return Err(corrupt("length mismatch"));
            }
        }
        Ok(())
    }

    /// Records a point at the current position if far enough past the last one.
    fn maybe_point(&mut self, bits: u8) {
        let Some(ix) = self.index.as_mut() else {
            return;
        };
        if self.out_total <= ix.last || self.out_total - ix.last < ix.spacing {
            return;
        }
        let w = usize::try_from(self.out_total).map_or(WINDOW, |o| o.min(WINDOW));
        let start = (self.ring_pos + RING - w) & (RING - 1);
        let mut window = Vec::with_capacity(w);
        if start + w <= RING {
            window.extend_from_slice(&self.ring[start..start + w]);
        } else {
            window.extend_from_slice(&self.ring[start..]);
            window.extend_from_slice(&self.ring[..self.ring_pos]);
        }
        ix.last = self.out_total;
        ix.points.push(SeekPoint {
            out: self.out_total,
            inp: self.in_abs,
            bits,
            window,
        });
    }

    /// One call into the inflater.
    fn inflate_step(&mut self) -> io::Result<()> {
        self.refill()?;
        let mut flags = 0;
        if !self.in_eof {
            flags |= TINFL_FLAG_HAS_MORE_INPUT;
        }
        if self.index.is_some() {
            flags |= TINFL_FLAG_STOP_ON_BLOCK_BOUNDARY;
        }
        let (st, nin, nout) = decompress(
            &mut self.decomp,
            &self.inbuf[self.in_start..self.in_end],
            &mut self.ring,
            self.ring_pos,
            flags,
        );
        self.in_start += nin;
        self.in_abs += nin as u64;
        if nout > 0 {
            if self.checked {
                self.crc
                    .update(&self.ring[self.ring_pos..self.ring_pos + nout]);
            }
            self.member_out += nout as u64;
            self.pend_start = self.ring_pos;
            self.pend_len = nout;
            self.ring_pos = (self.ring_pos + nout) & (RING - 1);
            self.out_total += nout as u64;
        }
        match st {
            TINFLStatus::Done => self.phase = Phase::Trailer,
            TINFLStatus::BlockBoundary => {
                let st = self.decomp.block_boundary_state();
                let bits = st
                    .ok_or_else(|| corrupt("inflater lost block state"))?
                    .num_bits;
                self.maybe_point(bits);
            }
            TINFLStatus::HasMoreOutput => {}
            TINFLStatus::NeedsMoreInput if !self.in_eof => {}
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(truncated())
            }
            _ => return Err(corrupt("invalid deflate data")),
        }
        Ok(())
    }

    /// Makes inflated bytes pending; `false` at the end of the stream.
    fn advance(&mut self) -> io::Result<bool> {
        let r = self.advance_inner();
        if r.is_err() {
            self.phase = Phase::Failed;
            self.pend_len = 0;
        }
        r
    }

    fn advance_inner(&mut self) -> io::Result<bool> {
        while self.pend_len == 0 {
            match self.phase {
                Phase::Header => {
                    if !self.header()? {
                        self.phase = Phase::End;
                        continue;
                    }
                    *self.decomp = DecompressorOxide::new();
                    self.crc = crc32fast::Hasher::new();
                    self.member_out = 0;
                    self.checked = true;
                    self.phase = Phase::Deflate;
                    self.maybe_point(0);
                }
                Phase::Deflate => self.inflate_step()?,
                Phase::Trailer => {
                    self.trailer()?;
                    self.phase = Phase::Header;
                }
                Phase::End => return Ok(false),
                Phase::Failed => return Err(corrupt("stream failed earlier")),
            }
        }
        Ok(true)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.advance()? {
            return Ok(0);
        }
        let n = buf.len().min(self.pend_len);
        buf[..n].copy_from_slice(&self.ring[self.pend_start..self.pend_start + n]);
        self.pend_start += n;
        self.pend_len -= n;
        Ok(n)
    }

    /// Inflates past `n` bytes without copying them; returns how many were skipped.
    fn skip(&mut self, mut n: u64) -> io::Result<u64> {
        let want = n;
        while n > 0 && self.advance()? {
            let k = usize::try_from(n).map_or(self.pend_len, |n| n.min(self.pend_len));
            self.pend_start += k;
            self.pend_len -= k;
            n -= k as u64;
        }
        Ok(want - n)
    }
}

/// Inflates a gzip stream for a consumer (the tar walk) and records seek points on the way.
pub struct IndexingReader<R: Read> {
    engine: Engine<R>,
}

impl<R: Read> IndexingReader<R> {
    /// Points are taken at block boundaries (and member starts) at least `spacing`
    /// uncompressed bytes apart; offset 0 is implicit and not recorded.
    pub fn new(inner: R, spacing: u64) -> Self {
        let index = Indexer {
            spacing: spacing.max(1),
            last: 0,
            points: Vec::new(),
        };
        IndexingReader {
            engine: Engine::new(inner, 0, Some(index)),
        }
    }

    /// Inflates whatever the consumer left (so every CRC and length is checked) and returns
    /// the points and the total uncompressed size.
    pub fn finish(mut self) -> io::Result<(Vec<SeekPoint>, u64)> {
        self.engine.skip(u64::MAX)?;
        let points = self.engine.index.take().map(|ix| ix.points);
        Ok((points.unwrap_or_default(), self.engine.out_total))
    }
}

impl<R: Read> Read for IndexingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.engine.read(buf)
    }
}

/// Reads the gzip stream's bytes straight from the shared file with positioned reads.
struct FileSource {
    file: Arc<dyn ReadAt>,
    pos: u64,
    end: Option<u64>,
}

impl Read for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self
            .end
            .map_or(buf.len() as u64, |e| e.saturating_sub(self.pos));
        let len = usize::try_from(room).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.file.read_at(&mut buf[..len], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Random access to the uncompressed bytes of a gzip stream inside a file, using seek
/// points from [`IndexingReader`]. Keeps its inflater between calls so sequential reads
/// continue where the previous one stopped.
pub struct GzCursor {
    file: Arc<dyn ReadAt>,
    base: u64,
    len: Option<u64>,
    points: Arc<[SeekPoint]>,
    engine: Option<Box<Engine<FileSource>>>,
    /// Uncompressed size, once the end has been reached.
    total: Option<u64>,
    pulled_before: u64,
}

impl GzCursor {
    /// The gzip stream starts at `base` in `file` and runs to its end (see `with_len`).
    pub fn new(file: Arc<dyn ReadAt>, base: u64, points: Arc<[SeekPoint]>) -> Self {
        GzCursor {
            file,
            base,
            len: None,
            points,
            engine: None,
            total: None,
            pulled_before: 0,
        }
    }

    /// The stream is `len` bytes long (in a .deb another ar member follows it).
    pub fn with_len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    /// Compressed bytes read from the file so far (a work measure).
    pub fn compressed_read(&self) -> u64 {
        self.pulled_before + self.engine.as_ref().map_or(0, |e| e.pulled)
    }

    fn nearest(&self, offset: u64) -> Option<&SeekPoint> {
        let i = self.points.partition_point(|p| p.out <= offset);
        i.checked_sub(1).map(|i| &self.points[i])
    }

    fn source(&self, at: u64) -> FileSource {
        FileSource {
            file: self.file.clone(),
            pos: self.base + at,
            end: self.len.map(|l| self.base + l),
        }
    }

    /// Starts a fresh inflater at the nearest point at or before `offset`.
    fn restart(&mut self, offset: u64) -> io::Result<()> {
        if let Some(old) = self.engine.take() {
            self.pulled_before += old.pulled;
        }
        let engine = match self.nearest(offset) {
            Some(p) => {
                let at = p.inp - u64::from(p.bits > 0 && p.inp > 0);
                Engine::at_point(self.source(at), p)?
            }
            None => Engine::new(self.source(0), 0, None),
        };
        self.engine = Some(Box::new(engine));
        Ok(())
    }

    /// Fills `buf` from uncompressed `offset`; short (or 0) only at the end of the stream.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.total.is_some_and(|t| offset >= t) {
            return Ok(0);
        }
        let near = self.nearest(offset).map_or(0, |p| p.out);
        let reuse = self.engine.as_ref().is_some_and(|e| {
            let pos = e.pos();
            e.phase != Phase::Failed && offset >= pos && (offset - pos <= MAX_SKIP || near <= pos)
        });
        if !reuse {
            self.restart(offset)?;
        }
        let Some(e) = self.engine.as_mut() else {
            return Err(io::Error::other("gzip cursor has no inflater"));
        };
        let gap = offset - e.pos();
        if e.skip(gap)? < gap {
            self.total = Some(e.out_total);
            return Ok(0);
        }
        let mut n = 0;
        while n < buf.len() {
            let k = e.read(&mut buf[n..])?;
            if k == 0 {
                self.total = Some(e.out_total);
                break;
            }
            n += k;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
