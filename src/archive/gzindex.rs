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
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use flate2::Compression;
    use std::io::Write;

    /// Moderately compressible text: words from a small vocabulary, picked by xorshift.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "alpha", "beta", "gamma", "delta", "repo", "fuse", "tar", "deb", "index", "zran",
            "window", "block", "\n", "0123", "xyzzy", "package", "mount", "seek",
        ];
        let mut s = seed | 1;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            out.extend_from_slice(WORDS[(s % WORDS.len() as u64) as usize].as_bytes());
            if s & 0x300 == 0 {
                out.push((s >> 20) as u8);
            }
            out.push(b' ');
        }
        out.truncate(len);
        out
    }

    fn gz(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn gzip_cmd(data: &[u8]) -> Vec<u8> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        let out = std::process::Command::new("gzip")
            .args(["-9", "-c"])
            .arg(f.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn index(gz: &[u8], spacing: u64) -> io::Result<(Vec<u8>, Vec<SeekPoint>, u64)> {
        let mut r = IndexingReader::new(gz, spacing);
        let mut out = Vec::new();
        // Read part through Read and leave the rest to finish(), as the tar walk does.
        let mut chunk = vec![0; 100_003];
        let n = r.read(&mut chunk)?;
        out.extend_from_slice(&chunk[..n]);
        r.read_to_end(&mut out)?;
        let (points, total) = r.finish()?;
        Ok((out, points, total))
    }

    /// Writes `prefix + gz + suffix` to a file and returns a cursor over the gzip part.
    fn cursor(gz: &[u8], points: &[SeekPoint]) -> (GzCursor, tempfile::NamedTempFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"!<arch>\nsome prefix").unwrap();
        f.write_all(gz).unwrap();
        f.write_all(b"data.tar.xz trailing ar member").unwrap();
        let file = Arc::new(f.reopen().unwrap());
        let c = GzCursor::new(file, 19, points.to_vec().into()).with_len(gz.len() as u64);
        (c, f)
    }

    fn check_points(points: &[SeekPoint], spacing: u64, total: u64) {
        let mut last = 0;
        for p in points {
            assert!(p.out >= last + spacing && p.out < total, "{p:?}");
            assert_eq!(p.window.len() as u64, p.out.min(WINDOW as u64));
            assert!(p.bits < 8);
            last = p.out;
        }
    }

    fn check_reads(c: &mut GzCursor, data: &[u8], points: &[SeekPoint], seed: u64) {
        let len = data.len() as u64;
        let mut offs = vec![0, 1, len - 1, len.saturating_sub(5000), len / 2];
        for p in points {
            offs.extend([p.out - 1, p.out, p.out + 1, p.out.saturating_sub(40_000)]);
        }
        let mut s = seed | 1;
        for _ in 0..60 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            offs.push(s % len);
        }
        for (i, &o) in offs.iter().enumerate() {
            let want = [1usize, 100, 4096, 70_000, 300_000][i % 5];
            let mut buf = vec![0; want];
            let n = c.read_at(o, &mut buf).unwrap();
            let end = (o as usize + want).min(data.len());
            assert_eq!(n, end - o as usize, "short read at {o}");
            assert!(buf[..n] == data[o as usize..end], "mismatch at {o}");
        }
        let mut buf = [0u8; 10];
        assert_eq!(c.read_at(len, &mut buf).unwrap(), 0);
        assert_eq!(c.read_at(len + 100, &mut buf).unwrap(), 0);
    }

    #[test]
    fn flate2_levels_roundtrip_and_random_reads() {
        let data = text(3 << 20, 7);
        for level in [1, 6, 9] {
            let z = gz(&data, level);
            let spacing = 256 << 10;
            let (out, points, total) = index(&z, spacing).unwrap();
            assert!(out == data);
            assert_eq!(total, data.len() as u64);
            assert!(points.len() >= 4, "level {level}: {} points", points.len());
            check_points(&points, spacing, total);
            // Mid-byte restarts (the `bits` path) are exercised.
            assert!(points.iter().any(|p| p.bits > 0));
            let (mut c, _f) = cursor(&z, &points);
            check_reads(&mut c, &data, &points, level as u64);
        }
    }

    #[test]
    fn gzip_cmd_concatenated_members_with_empty_one() {
        let a = text(1_500_000, 1);
        let b = text(1_200_000, 2);
        let mut z = gzip_cmd(&a);
        z.extend(gzip_cmd(b""));
        let b_start = z.len();
        z.extend(gzip_cmd(&b));
        z.extend(gz(&a[..1000], 6));
        let mut data = [a.clone(), b.clone()].concat();
        data.extend_from_slice(&a[..1000]);

        let spacing = 200_000;
        let (out, points, total) = index(&z, spacing).unwrap();
        assert!(out == data);
        assert_eq!(total, data.len() as u64);
        check_points(&points, spacing, total);
        // A member start is a candidate point too (here the empty member's, which comes
        // first at that offset); restarting there crosses the empty member into the next.
        let (_, at_member, _) = index(&z, a.len() as u64).unwrap();
        assert_eq!(at_member[0].out, a.len() as u64);
        assert_eq!(at_member[0].bits, 0);
        assert!(at_member[0].inp < b_start as u64);
        let (mut c, _f) = cursor(&z, &at_member);
        check_reads(&mut c, &data, &at_member, 3);

        let (mut c, _f) = cursor(&z, &points);
        check_reads(&mut c, &data, &points, 99);
        let edge = a.len() as u64;
        for o in [edge - 10, edge, edge + 1, data.len() as u64 - 1010] {
            let mut buf = vec![0; 3000];
            let n = c.read_at(o, &mut buf).unwrap();
            let end = (o as usize + 3000).min(data.len());
            assert!(buf[..n] == data[o as usize..end]);
        }

        // Without points the cursor inflates from the start, through every member.
        let (mut c, _f) = cursor(&z, &[]);
        check_reads(&mut c, &data, &[], 5);
    }

    #[test]
    fn header_with_all_optional_fields() {
        let data = text(300_000, 3);
        let mut d = DeflateEncoder::new(Vec::new(), Compression::new(6));
        d.write_all(&data).unwrap();
        let body = d.finish().unwrap();
        let mut z = vec![0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 1, 2, 3, 4, 0, 3];
        z.extend([5, 0, b'a', b'b', 0, 1, 2]);
        z.extend(b"name.tar\0a comment\0");
        let hcrc = crc32fast::hash(&z) as u16;
        z.extend(hcrc.to_le_bytes());
        z.extend(&body);
        z.extend(crc32fast::hash(&data).to_le_bytes());
        z.extend((data.len() as u32).to_le_bytes());
        let (out, _, _) = index(&z, 1 << 20).unwrap();
        assert!(out == data);

        let mut bad = z.clone();
        bad[12] ^= 1; // inside FEXTRA, covered by the header CRC
        assert!(index(&bad, 1 << 20).is_err());
    }

    #[test]
    fn sequential_reads_continue_inflating() {
        let data = text(6 << 20, 11);
        let z = gz(&data, 6);
        let (_, points, _) = index(&z, 512 << 10).unwrap();
        let (mut c, _f) = cursor(&z, &points);
        let mut buf = vec![0; 128 << 10];
        let mut off = 0;
        loop {
            let n = c.read_at(off as u64, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n] == data[off..off + n], "at {off}");
            off += n;
        }
        assert_eq!(off, data.len());
        // One pass over the input, no restarts.
        assert!(c.compressed_read() <= z.len() as u64 + IN_BUF as u64);
    }

    #[test]
    fn corrupt_truncated_empty_and_garbage_are_errors() {
        let data = text(400_000, 5);
        let z = gz(&data, 6);
        assert!(index(&[], 1000).is_err());
        assert!(index(b"not gzip at all", 1000).is_err());
        let mut trailing = z.clone();
        trailing.extend(b"garbage");
        assert!(index(&trailing, 1000).is_err());
        let mut zeros = z.clone();
        zeros.extend([0u8; 8]);
        assert!(index(&zeros, 1000).is_err());
        for cut in [1, 5, 10, 11, 100, z.len() / 2, z.len() - 8, z.len() - 1] {
            assert!(index(&z[..cut], 1000).is_err(), "cut at {cut}");
        }
        for pos in [
            0,
            1,
            2,
            10,
            11,
            50,
            1000,
            z.len() / 3,
            z.len() - 6,
            z.len() - 2,
        ] {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = z.clone();
                bad[pos] ^= flip;
                assert!(index(&bad, 1000).is_err(), "flip {flip:#x} at {pos}");
            }
        }
        // Cursor over corrupt data: errors, and keeps erroring, without panicking.
        let (_, points, _) = index(&z, 50_000).unwrap();
        let mut bad = z.clone();
        for i in (z.len() / 2..z.len() / 2 + 64).step_by(3) {
            bad[i] ^= 0x5a;
        }
        let (mut c, _f) = cursor(&bad, &points);
        let mut buf = vec![0; 1 << 20];
        let mut errs = 0;
        for o in [0, 300_000, 390_000] {
            errs += c.read_at(o, &mut buf).is_err() as u32;
        }
        assert!(errs > 0);
        let (mut c, _f) = cursor(&z[..z.len() / 2], &points);
        assert!(c.read_at(390_000, &mut buf).is_err());
        // A malformed point is refused.
        let mut wrong = points.clone();
        wrong[0].window.truncate(10);
        let (mut c, _f) = cursor(&z, &wrong);
        assert!(c.read_at(wrong[0].out + 5, &mut buf).is_err());
    }

    /// `cargo test --release --lib gzindex -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn speed_vs_flate2() {
        let data = text(256 << 20, 17);
        let z = gz(&data, 6);
        let mb = data.len() as f64 / 1e6;
        let t = std::time::Instant::now();
        let mut r = IndexingReader::new(&z[..], 4 << 20);
        let n = io::copy(&mut r, &mut io::sink()).unwrap();
        let (points, _) = r.finish().unwrap();
        let ours = t.elapsed().as_secs_f64();
        assert_eq!(n, data.len() as u64);
        let t = std::time::Instant::now();
        let mut d = flate2::read::MultiGzDecoder::new(&z[..]);
        io::copy(&mut d, &mut io::sink()).unwrap();
        let theirs = t.elapsed().as_secs_f64();
        let (mut c, _f) = cursor(&z, &points);
        let mut buf = vec![0; 128 << 10];
        let t = std::time::Instant::now();
        let mut off = 0;
        while off < data.len() {
            off += c.read_at(off as u64, &mut buf).unwrap();
        }
        let seq = t.elapsed().as_secs_f64();
        eprintln!(
            "indexing {:.0} MB/s, cursor sequential {:.0} MB/s, flate2 {:.0} MB/s, {} points",
            mb / ours,
            mb / seq,
            mb / theirs,
            points.len()
        );
    }

    #[test]
    fn read_near_end_is_bounded_work() {
        let data = text(64 << 20, 13);
        let z = gz(&data, 1);
        let spacing = 1 << 20;
        let (_, points, total) = index(&z, spacing).unwrap();
        assert_eq!(total, data.len() as u64);
        let max_gap = points
            .windows(2)
            .map(|w| w[1].inp - w[0].inp)
            .max()
            .unwrap();
        let (mut c, _f) = cursor(&z, &points);
        let off = data.len() - 5000;
        let mut buf = vec![0; 100];
        assert_eq!(c.read_at(off as u64, &mut buf).unwrap(), 100);
        assert!(buf[..] == data[off..off + 100]);
        let work = c.compressed_read();
        assert!(
            work < 2 * max_gap + IN_BUF as u64 && work < z.len() as u64 / 16,
            "read {work} of {} compressed bytes (gap {max_gap})",
            z.len()
        );
    }
}
