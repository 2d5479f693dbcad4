//! Bytes of files inside packages, without inflating an archive from its start per read.
//!
//! - uncompressed tar (and .deb with an uncompressed data member): reads map straight to
//!   offsets in the stored file; so do stored zip members, and a deflated one is inflated
//!   from its own start (a cursor per open file continues where the last read stopped);
//! - sparse members read their data runs in place and zeros between them;
//! - gzip with seek points recorded at publish time: the payload is cut into spans, one per
//!   seek point; a span is inflated once, as far as reads have reached, into a cache shared
//!   by every open file of every package (`vfs::spans`, bounded in bytes, least recently
//!   used out; the inflater is kept with a span made in part, and the next read past its end
//!   goes on from there). A walk of the whole tree in archive order (what `tar -c`, `cp -r`
//!   and `rsync` do when the archive was made sorted, as Debian's and git's are) thus
//!   inflates each compressed byte about once, where a cursor per file re-inflated up to a
//!   whole spacing for each small file; a lone cold read inflates only up to its own end.
//!   A walk's read past the middle of a span has the next one inflated on a background
//!   thread (`Spans::ahead`), so its inflation runs beside its requests rather than between
//!   them;
//! - a payload with a seekable twin (zstd frames made at publication): read frame by frame
//!   through the same cache, each decompressed as far as reads have reached (straight into
//!   the cache's buffer) and the next one ahead likewise;
//! - everything else: the payload is unpacked once into `ROOT/cache/<sha256>.tar`, bounded
//!   in total size, least recently used first out (`vfs::unpacked`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use crate::archive::gzindex::{GzCursor, SeekPoint};
use crate::archive::{Entry, Layout};
use crate::catalog::{Catalog, Frame, PackageRow};
use crate::fetch::objects::Objects;
use crate::store::{read_exact_at, ReadAt};
use crate::vfs::spans::{SpanFill, Spans};
use crate::vfs::unpacked::Cache;

/// Where one entry's bytes come from.
#[derive(Clone)]
pub enum Source {
    /// The stored file itself; the tar stream starts at `base`.
    Plain { file: Arc<dyn ReadAt>, base: u64 },
    /// A gzip payload, read span by span through the shared cache.
    Gzip(Arc<GzPayload>),
    /// A zstd or xz payload, read frame by frame from its seekable twin.
    Frames(Arc<Framed>),
    /// An unpacked tar stream in the cache.
    Unpacked(Arc<File>),
}

/// An open file inside a package.
pub struct EntryReader {
    source: Source,
    /// Offset of the entry's data in the uncompressed tar stream, its size and layout.
    start: u64,
    size: u64,
    layout: Layout,
    /// A deflated member's decoder, kept between reads so a sequential reader inflates once.
    inflater: Mutex<Option<Inflater>>,
}

/// Each package's source, shared by the opens of its files while one catalog generation lasts:
/// a `tar -c` of a package tree opens every file, and each open would otherwise query the
/// catalog for the package and open(2) its store object (and its twin) again — a quarter of
/// the mount's CPU in that walk. Unpacked copies are not kept (`keep`). A new generation drops
/// them all, so that none outlives the catalog it was read from: file rows are never deleted,
/// but a catalog put in place whole (`Catalog::follow`) may number its files otherwise.
#[derive(Default)]
pub struct Sources {
    version: i64,
    by_file: HashMap<i64, Source>,
}

/// Packages whose sources are kept at once; more is a walk over many packages, which starts
/// again.
const SOURCES_KEPT: usize = 64;

impl Sources {
    pub fn get(&mut self, version: i64, file_id: i64) -> Option<Source> {
        if self.version != version {
            self.version = version;
            self.by_file.clear();
        }
        self.by_file.get(&file_id).cloned()
    }

    /// Keeps `source` for later opens of package `file_id` at `version`, unless it is an
    /// unpacked copy, which the unpack cache may evict while we would hold it open.
    pub fn keep(&mut self, version: i64, file_id: i64, source: &Source) {
        if self.version != version || matches!(source, Source::Unpacked(_)) {
            return;
        }
        if self.by_file.len() >= SOURCES_KEPT {
            self.by_file.clear();
        }
        self.by_file.insert(file_id, source.clone());
    }
}

impl EntryReader {
    pub fn new(source: Source, entry: &Entry) -> EntryReader {
        EntryReader {
            source,
            start: entry.data_offset,
            size: entry.size,
            layout: entry.layout.clone(),
            inflater: Mutex::new(None),
        }
    }

    pub fn read(&self, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let want = (size as u64).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; want];
        let end = offset + want as u64;
        match &self.layout {
            Layout::Contiguous => self.read_stream(self.start + offset, &mut buf)?,
            Layout::Sparse(runs) => {
                // Runs are sorted; the first that ends after `offset` may overlap the read.
                let first = runs.partition_point(|r| r.offset + r.len <= offset);
                for r in runs[first..].iter().take_while(|r| r.offset < end) {
                    let (lo, hi) = (r.offset.max(offset), (r.offset + r.len).min(end));
                    let dst = &mut buf[(lo - offset) as usize..(hi - offset) as usize];
                    self.read_stream(r.at + (lo - r.offset), dst)?;
                }
            }
            Layout::Deflated { csize } => self.read_deflated(*csize, offset, &mut buf)?,
        }
        Ok(buf)
    }

    /// Fills `buf` from offset `at` of the uncompressed stream.
    fn read_stream(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let pos = at + done as u64;
            let n = match &self.source {
                Source::Plain { file, base } => file.read_at(&mut buf[done..], base + pos)?,
                Source::Unpacked(file) => FileExt::read_at(&**file, &mut buf[done..], pos)?,
                Source::Gzip(g) => g.read_at(pos, &mut buf[done..])?,
                Source::Frames(f) => f.read_at(pos, &mut buf[done..])?,
            };
            if n == 0 {
                // The catalog promised more bytes than the archive holds.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive shorter than its entry list",
                ));
            }
            done += n;
        }
        Ok(())
    }

    fn read_deflated(&self, csize: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let Source::Plain { file, base } = &self.source else {
            return Err(io::Error::other(
                "a deflated member inside a compressed stream",
            ));
        };
        let mut slot = crate::sync::lock(&self.inflater);
        let restart = slot.as_ref().is_none_or(|i| i.pos > offset);
        if restart {
            let raw = FileRange {
                file: file.clone(),
                at: base + self.start,
                left: csize,
            };
            *slot = Some(Inflater {
                pos: 0,
                decoder: flate2::read::DeflateDecoder::new(io::BufReader::new(raw)),
            });
        }
        let inf = slot
            .as_mut()
            .ok_or_else(|| io::Error::other("no inflater"))?;
        let skip = offset - inf.pos;
        let skipped = io::copy(&mut (&mut inf.decoder).take(skip), &mut io::sink())?;
        inf.pos += skipped;
        if skipped < skip {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "zip member shorter than its entry",
            ));
        }
        let r = inf.decoder.read_exact(buf);
        match r {
            Ok(()) => inf.pos += buf.len() as u64,
            // Unknown position after a failed read: start over next time.
            Err(_) => *slot = None,
        }
        r
    }
}

struct Inflater {
    pos: u64,
    decoder: flate2::read::DeflateDecoder<io::BufReader<FileRange>>,
}

/// `left` bytes of a shared object from `at`.
pub(super) struct FileRange {
    pub(super) file: Arc<dyn ReadAt>,
    pub(super) at: u64,
    pub(super) left: u64,
}

impl Read for FileRange {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// What the catalog offers for reading a payload at an offset.
#[derive(Clone)]
pub enum Seekable {
    /// gzip spans, found in the catalog as reads reach them.
    Gzip(Arc<SpanIndex>),
    /// The seekable twin made at publication (zstd, xz): its object and frame index.
    Frames {
        sha256: String,
        size: u64,
        frames: Arc<[Frame]>,
    },
    /// Nothing: plain payloads need nothing; others fall back to the unpack cache.
    Nothing,
}

/// Opens the source for reading inside `pkg`, whose stored file `object` opens (only when
/// it is read: not for a payload with a seekable twin, nor for one already unpacked).
/// Compressed payloads are read span by span through `spans` (gzip windows are fetched from
/// `catalog` per span).
pub fn source(
    pkg: &PackageRow,
    object: impl FnOnce() -> io::Result<Arc<dyn ReadAt>>,
    seekable: Seekable,
    objects: &Objects,
    spans: &Arc<Spans>,
    catalog: &Arc<Mutex<Catalog>>,
    cache: &Cache,
) -> io::Result<Source> {
    match (pkg.compression.as_str(), seekable) {
        ("none", _) => Ok(Source::Plain {
            file: object()?,
            base: pkg.payload_offset,
        }),
        // No recorded points is fine: the stream's start is always one (small payloads).
        ("gzip", Seekable::Gzip(index)) => Ok(Source::Gzip(Arc::new(GzPayload {
            file_id: pkg.file_id,
            file: object()?,
            base: pkg.payload_offset,
            // Bounded: in a .deb the next ar member follows the gzip stream.
            len: pkg.payload_size,
            index,
            spans: spans.clone(),
            catalog: catalog.clone(),
        }))),
        (
            _,
            Seekable::Frames {
                sha256,
                size,
                frames,
            },
        ) => Ok(Source::Frames(Arc::new(Framed {
            file_id: pkg.file_id,
            file: objects.open(&sha256, size)?,
            frames,
            spans: spans.clone(),
        }))),
        _ => Ok(Source::Unpacked(cache.unpacked(pkg, object)?)),
    }
}

/// A payload read through its seekable twin: independent zstd frames, each decompressed
/// once into the shared span cache.
#[derive(Clone)]
pub struct Framed {
    file_id: i64,
    file: Arc<dyn ReadAt>,
    frames: Arc<[Frame]>,
    spans: Arc<Spans>,
}

impl Framed {
    /// Fills `buf` from uncompressed `offset`, within one frame; 0 only at the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Some(k) = self
            .frames
            .partition_point(|f| f.out <= offset)
            .checked_sub(1)
        else {
            return Ok(0);
        };
        let f = self.frames[k];
        if offset >= f.out + f.out_len {
            return Ok(0);
        }
        let from = (offset - f.out) as usize;
        let n = self
            .spans
            .read((self.file_id, f.out), from, buf, || self.filler(f))?;
        // Past the middle of a frame that a walk reached (it holds the frame before), the
        // next one is decompressed in the background. A lone read does not pay for it.
        if let Some(&next) = self.frames.get(k + 1) {
            let walking = || k == 0 || self.spans.holds((self.file_id, self.frames[k - 1].out));
            if offset - f.out >= f.out_len / 2 && walking() {
                let me = self.clone();
                self.spans
                    .ahead((self.file_id, next.out), move || me.filler(next));
            }
        }
        Ok(n)
    }

    /// A fill of frame `f`: its compressed bytes are read and decompressed as far as asked.
    fn filler(&self, f: Frame) -> io::Result<Box<dyn SpanFill>> {
        let mut dctx = zstd::zstd_safe::DCtx::create();
        // Decompressed straight into the span's buffer, which is the window too: no second
        // megabyte of fresh pages and no copy (the output must then stay where it is).
        dctx.set_parameter(zstd::zstd_safe::DParameter::StableOutBuffer(true))
            .map_err(zstd_error)?;
        Ok(Box::new(FrameFill {
            file: self.file.clone(),
            at: f.inp,
            in_len: usize::try_from(f.in_len).unwrap_or(usize::MAX),
            packed: Vec::new(),
            used: 0,
            dctx,
            want: usize::try_from(f.out_len).unwrap_or(usize::MAX),
        }))
    }
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("zstd: {}", zstd::zstd_safe::get_error_name(code)),
    )
}

/// Compressed bytes handed to the decoder at a time: a cut fill stops within about one
/// block of output past the reader's end.
const FRAME_FEED: usize = 16 << 10;
/// Compressed bytes read from the object at a time while a fill is cut.
const FRAME_READ: usize = 128 << 10;

/// One zstd frame of a seekable twin, decompressed as far as a fill asks.
struct FrameFill {
    file: Arc<dyn ReadAt>,
    /// The frame's compressed bytes: where they start, how many, those read so far, and
    /// how many of those the decoder has taken.
    at: u64,
    in_len: usize,
    packed: Vec<u8>,
    used: usize,
    dctx: zstd::zstd_safe::DCtx<'static>,
    want: usize,
}

impl FrameFill {
    /// Reads more of the frame's compressed bytes: all that is left if `all`.
    fn read_more(&mut self, all: bool) -> io::Result<()> {
        let left = self.in_len - self.packed.len();
        let n = if all { left } else { left.min(FRAME_READ) };
        let have = self.packed.len();
        self.packed.resize(have + n, 0);
        read_exact_at(&*self.file, &mut self.packed[have..], self.at + have as u64)
    }
}

impl SpanFill for FrameFill {
    fn held(&self) -> usize {
        self.packed.capacity() + self.dctx.sizeof()
    }

    fn fill(&mut self, out: &mut Vec<u8>, upto: usize) -> io::Result<bool> {
        use zstd::zstd_safe::{InBuffer, OutBuffer};
        // The whole frame's room at once: the decoder's output may not move between calls.
        out.reserve_exact(self.want.saturating_sub(out.capacity()));
        let all = upto >= self.want;
        loop {
            if out.len() >= upto.min(self.want) && !all {
                return Ok(false);
            }
            // With all the input taken, one more call may still end the frame.
            if self.used == self.packed.len() && self.packed.len() < self.in_len {
                self.read_more(all)?;
            }
            let feed = match all {
                true => self.packed.len(),
                false => (self.used + FRAME_FEED).min(self.packed.len()),
            };
            let before = out.len();
            let mut input = InBuffer::around(&self.packed[self.used..feed]);
            let mut output = OutBuffer::around_pos(out, before);
            let hint = self
                .dctx
                .decompress_stream(&mut output, &mut input)
                .map_err(zstd_error)?;
            let took = input.pos();
            self.used += took;
            // The frame's end: zstd may ask for one more call to say so (it does when fed a
            // piece at a time), but every compressed byte taken with the output exactly full
            // is that frame, whole.
            if hint == 0 || (out.len() == self.want && self.used == self.in_len) {
                return match out.len() == self.want && self.used == self.in_len {
                    true => Ok(true),
                    false => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zstd frame of another length than its index says",
                    )),
                };
            }
            if took == 0 && out.len() == before {
                // Stuck: only more input can help, and there is none.
                if self.packed.len() == self.in_len {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zstd frame does not decode to its index's length",
                    ));
                }
                self.read_more(all)?;
            }
        }
    }
}

/// A span longer than this is refused as corrupt: points are recorded every few MiB, so
/// only a damaged index could ask for more.
const SPAN_MAX: usize = 256 << 20;

/// The spans of one gzip payload met so far (start -> end; `u64::MAX` for the last),
/// shared by all open files of the package. Spans are looked up in the catalog as reads reach
/// them, so a first read costs two point queries, not a load of every seek point.
#[derive(Default)]
pub struct SpanIndex {
    known: Mutex<std::collections::BTreeMap<u64, u64>>,
}

impl SpanIndex {
    fn find(&self, offset: u64) -> Option<(u64, u64)> {
        let known = crate::vfs::lock(&self.known);
        let (&start, &end) = known.range(..=offset).next_back()?;
        (offset < end).then_some((start, end))
    }
}

/// One gzip payload of a package, as its open files read it.
#[derive(Clone)]
pub struct GzPayload {
    file_id: i64,
    file: Arc<dyn ReadAt>,
    base: u64,
    len: u64,
    index: Arc<SpanIndex>,
    spans: Arc<Spans>,
    /// Span bounds and windows are fetched per span, only for the spans read.
    catalog: Arc<Mutex<Catalog>>,
}

impl GzPayload {
    /// The span holding `offset`: (start, end), end `u64::MAX` for the last.
    fn span_of(&self, offset: u64) -> io::Result<(u64, u64)> {
        if let Some(s) = self.index.find(offset) {
            return Ok(s);
        }
        let (start, end) = crate::vfs::lock(&self.catalog)
            .seek_span(self.file_id, offset)
            .map_err(io::Error::other)?;
        let end = end.unwrap_or(u64::MAX);
        crate::vfs::lock(&self.index.known).insert(start, end);
        Ok((start, end))
    }

    /// Fills `buf` from uncompressed `offset`, within one span; 0 only at the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let (start, end) = self.span_of(offset)?;
        let from = usize::try_from(offset - start).unwrap_or(usize::MAX);
        let n = self
            .spans
            .read((self.file_id, start), from, buf, || self.filler(start, end))?;
        // Past the middle of a span that a walk reached (it holds the span before), the next
        // one is inflated in the background. A lone read does not pay for it.
        if end != u64::MAX && offset - start >= (end - start) / 2 && self.walking(start) {
            let me = self.clone();
            self.spans
                .ahead((self.file_id, end), move || match me.span_of(end)? {
                    (s, e) if s == end => me.filler(s, e),
                    _ => Err(io::Error::other("gzip spans do not meet")),
                });
        }
        Ok(n)
    }

    /// Whether the span at `start` was reached by a walk: it is the first, or the one
    /// before it is held.
    fn walking(&self, start: u64) -> bool {
        let before = crate::vfs::lock(&self.index.known)
            .range(..start)
            .next_back()
            .filter(|(_, &end)| end == start)
            .map(|(&s, _)| s);
        start == 0 || before.is_some_and(|s| self.spans.holds((self.file_id, s)))
    }

    /// A fill of the span `start..end`, inflating from its seek point as far as asked.
    fn filler(&self, start: u64, end: u64) -> io::Result<Box<dyn SpanFill>> {
        let point = match start {
            0 => None,
            _ => Some(
                crate::vfs::lock(&self.catalog)
                    .seek_point(self.file_id, start)
                    .map_err(io::Error::other)?
                    .ok_or_else(|| io::Error::other("seek point vanished from the catalog"))?,
            ),
        };
        let points: Arc<[SeekPoint]> = point.into_iter().collect();
        Ok(Box::new(GzFill {
            cursor: GzCursor::new(self.file.clone(), self.base, points).with_len(self.len),
            start,
            // The last span runs to the end of the stream.
            want: usize::try_from(end - start).map_or(SPAN_MAX, |w| w.min(SPAN_MAX)),
        }))
    }
}

/// One gzip span, inflated from its seek point as far as a fill asks.
struct GzFill {
    cursor: GzCursor,
    start: u64,
    want: usize,
}

/// What a kept gzip fill holds: its inflater's state, output ring and input buffer
/// (`archive::gzindex`), about.
const GZ_FILL_HELD: usize = 200 << 10;

impl SpanFill for GzFill {
    fn held(&self) -> usize {
        GZ_FILL_HELD
    }

    fn fill(&mut self, out: &mut Vec<u8>, upto: usize) -> io::Result<bool> {
        // Room for a whole span at once (the last one's length is known only at its end).
        out.reserve_exact(self.want.min(8 << 20).saturating_sub(out.capacity()));
        loop {
            let n = out.len();
            if n >= self.want {
                return Ok(true);
            }
            if n >= upto {
                return Ok(false);
            }
            let room = self.want - n;
            let step = match upto {
                usize::MAX => room.min(n.max(1 << 20)),
                _ => room.min(upto - n),
            };
            out.resize(n + step, 0);
            let got = self.cursor.read_at(self.start + n as u64, &mut out[n..])?;
            out.truncate(n + got);
            if got < step {
                // The end of the stream: the last span is whole.
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text-like bytes that compress about as source code does.
    fn prose(n: usize) -> Vec<u8> {
        let words = [
            "frame ", "span ", "inflate ", "read ", "mount\n", "kernel ", "page ",
        ];
        let mut out = Vec::with_capacity(n);
        let mut x = 12345u64;
        while out.len() < n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(words[(x >> 33) as usize % words.len()].as_bytes());
        }
        out.truncate(n);
        out
    }

    /// Frames as `ingest::publish` makes a twin's: 1 MiB of output each, level 3.
    fn twin(data: &[u8]) -> (Arc<dyn ReadAt>, Vec<Frame>) {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let (mut packed, mut frames) = (Vec::new(), Vec::new());
        for (k, chunk) in data.chunks(1 << 20).enumerate() {
            let c = z.compress(chunk).unwrap();
            frames.push(Frame {
                out: (k << 20) as u64,
                out_len: chunk.len() as u64,
                inp: packed.len() as u64,
                in_len: c.len() as u64,
            });
            packed.extend_from_slice(&c);
        }
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &packed).unwrap();
        (Arc::new(f), frames)
    }

    fn framed(file: Arc<dyn ReadAt>, frames: Vec<Frame>) -> Framed {
        Framed {
            file_id: 1,
            file,
            frames: frames.into(),
            spans: Arc::new(Spans::new(64 << 20)),
        }
    }

    #[test]
    fn a_frame_cut_anywhere_and_finished_is_the_whole_frame() {
        let data = prose(2_500_000);
        let (file, frames) = twin(&data);
        let f = framed(file, frames.clone());
        for frame in &frames {
            let whole = &data[frame.out as usize..(frame.out + frame.out_len) as usize];
            for cut in [0, 1, 4095, 100_000, 524_288, whole.len() - 1, whole.len()] {
                let mut filler = f.filler(*frame).unwrap();
                let mut out = Vec::new();
                let complete = filler.fill(&mut out, cut).unwrap();
                assert!(
                    out.len() >= cut.min(whole.len()),
                    "cut {cut}: {}",
                    out.len()
                );
                assert_eq!(out[..], whole[..out.len()], "cut {cut}");
                assert_eq!(complete, out.len() == whole.len());
                // A cut fill stops near its cut, not at the frame's end.
                if cut <= 524_288 {
                    assert!(out.len() < cut + (256 << 10), "cut {cut}: {}", out.len());
                }
                assert!(filler.fill(&mut out, usize::MAX).unwrap());
                assert_eq!(out[..], whole[..], "cut {cut}, finished");
            }
        }
    }

    #[test]
    fn frames_read_through_the_spans_give_the_payload_back() {
        let data = prose(3_000_000);
        let (file, frames) = twin(&data);
        let f = framed(file, frames);
        // Reads that start cold in each frame, then the rest in order.
        for at in [2_900_000usize, 1_500_000, 10, 0] {
            let mut buf = vec![0u8; 5000];
            let n = f.read_at(at as u64, &mut buf).unwrap();
            assert_eq!(buf[..n], data[at..at + n]);
        }
        let mut all = Vec::new();
        while all.len() < data.len() {
            let mut buf = vec![0u8; 70_000];
            let n = f.read_at(all.len() as u64, &mut buf).unwrap();
            assert!(n > 0);
            all.extend_from_slice(&buf[..n]);
        }
        assert!(all == data);
    }

    #[test]
    fn a_corrupt_frame_is_an_error_not_bytes() {
        let data = prose(1 << 20);
        let (file, frames) = twin(&data);
        let mut packed = vec![0u8; frames[0].in_len as usize];
        file.read_at(&mut packed, 0).unwrap();
        let mid = packed.len() / 2;
        packed[mid] ^= 0x55;
        packed[mid + 1] ^= 0x55;
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &packed).unwrap();
        let bad = framed(Arc::new(f), frames.clone());
        let mut out = Vec::new();
        let got = bad.filler(frames[0]).unwrap().fill(&mut out, usize::MAX);
        // Either zstd notices the damage, or the output differs and the checksum-free frame
        // is still refused for its length; never the original's bytes silently changed.
        match got {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            Ok(_) => assert!(out != data, "a flipped frame decoded to the original"),
        }
        // A frame whose index claims more bytes than it holds.
        let mut long = frames[0];
        long.out_len += 10;
        let short = framed(file, vec![long]);
        let mut out = Vec::new();
        let err = short
            .filler(long)
            .unwrap()
            .fill(&mut out, usize::MAX)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
