//! Bytes of files inside packages, without inflating an archive from its start per read.
//!
//! - uncompressed tar (and .deb with an uncompressed data member): reads map straight to
//!   offsets in the stored file; so do stored zip members, and a deflated one is inflated
//!   from its own start (a cursor per open file continues where the last read stopped);
//! - sparse members read their data runs in place and zeros between them;
//! - gzip with seek points recorded at publish time: the payload is cut into spans, one per
//!   seek point; a span is inflated once, as far as reads have reached, into a cache shared
//!   by every open file of every package (`Spans`, bounded in bytes, least recently used
//!   out; the inflater is kept with a span made in part, and the next read past its end
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
//!   in total size, least recently used first out.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::archive::gzindex::{GzCursor, SeekPoint};
use crate::archive::{Compression, Entry, Layout};
use crate::catalog::{Catalog, Frame, PackageRow};
use crate::fetch::objects::Objects;
use crate::store::ReadAt;

/// How long a reader waits for another thread's unpacking before failing with EIO.
const UNPACK_WAIT: Duration = Duration::from_secs(600);

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
struct FileRange {
    file: Arc<dyn ReadAt>,
    at: u64,
    left: u64,
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

/// Waits on `cv` until woken, or fails with `what` once `deadline` has passed.
fn wait_until<'a, T>(
    cv: &Condvar,
    guard: std::sync::MutexGuard<'a, T>,
    deadline: std::time::Instant,
    what: &str,
) -> io::Result<std::sync::MutexGuard<'a, T>> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, what.to_string()));
    }
    Ok(cv
        .wait_timeout(guard, left)
        .unwrap_or_else(|e| e.into_inner())
        .0)
}

/// The unpack cache.
pub struct Cache {
    dir: PathBuf,
    limit: u64,
    busy: Mutex<HashSet<String>>,
    done: Condvar,
}

impl Cache {
    pub fn new(dir: PathBuf, limit: u64) -> Cache {
        Cache {
            dir,
            limit,
            busy: Mutex::new(HashSet::new()),
            done: Condvar::new(),
        }
    }

    /// The unpacked tar stream of `pkg` (stored at `object`), unpacking it if needed. One
    /// thread unpacks; others wait for it (bounded).
    pub fn unpacked(
        &self,
        pkg: &PackageRow,
        object: impl FnOnce() -> io::Result<Arc<dyn ReadAt>>,
    ) -> io::Result<Arc<File>> {
        let path = self.dir.join(format!("{}.tar", pkg.sha256));
        let mut busy = crate::sync::lock(&self.busy);
        let deadline = std::time::Instant::now() + UNPACK_WAIT;
        while busy.contains(&pkg.sha256) {
            busy = wait_until(&self.done, busy, deadline, "unpacking took too long")?;
        }
        if let Ok(f) = File::open(&path) {
            // Recently used: keep it longest.
            let _ = f.set_modified(SystemTime::now());
            return Ok(Arc::new(f));
        }
        busy.insert(pkg.sha256.clone());
        drop(busy);
        let result = object().and_then(|object| self.unpack(pkg, &object, &path));
        let mut busy = crate::sync::lock(&self.busy);
        busy.remove(&pkg.sha256);
        self.done.notify_all();
        drop(busy);
        result.map(Arc::new)
    }

    fn unpack(&self, pkg: &PackageRow, object: &Arc<dyn ReadAt>, path: &Path) -> io::Result<File> {
        fs::create_dir_all(&self.dir)?;
        self.evict(pkg.unpacked_size)?;
        let compression = Compression::parse(&pkg.compression)
            .ok_or_else(|| io::Error::other(format!("unknown compression {}", pkg.compression)))?;
        let src = io::BufReader::with_capacity(
            1 << 20,
            FileRange {
                file: object.clone(),
                at: pkg.payload_offset,
                left: pkg.payload_size,
            },
        );
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let started = std::time::Instant::now();
        let mut reader = compression.reader(src)?;
        let n = io::copy(&mut reader, &mut tmp.as_file())?;
        let f = tmp.persist(path).map_err(|e| e.error)?;
        info!(package = %pkg.name, bytes = n, elapsed = ?started.elapsed(), "unpacked into the cache");
        Ok(f)
    }

    /// Removes least recently used entries until `incoming` more bytes fit under the limit.
    fn evict(&self, incoming: u64) -> io::Result<()> {
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total + incoming <= self.limit {
                break;
            }
            if let Err(e) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not evict from the cache");
            }
            total = total.saturating_sub(len);
        }
        Ok(())
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
            let walking = k == 0 || self.spans.holds((self.file_id, self.frames[k - 1].out));
            if offset - f.out >= f.out_len / 2 && walking {
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
        let mut done = 0;
        while done < n {
            let pos = self.at + (have + done) as u64;
            match self.file.read_at(&mut self.packed[have + done..], pos) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object shorter than the catalog says",
                    ))
                }
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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

/// How a span is made: `fill` appends its bytes to `out` until it holds at least `upto` of
/// them (or the whole span), and says whether the span is now whole. `out` never grows past
/// the capacity the first call reserves, so its bytes never move while a fill is under way.
pub trait SpanFill: Send {
    fn fill(&mut self, out: &mut Vec<u8>, upto: usize) -> io::Result<bool>;
    /// Bytes the fill itself holds while kept with a span made in part (its decoder's
    /// state and buffers), counted against the cache's budget with the span.
    fn held(&self) -> usize;
}

/// Inflated gzip spans and zstd frames shared by every reader of every package, within a
/// byte budget; least recently used out.
///
/// A span is made only as far as reads have reached: a reader that needs bytes past what is
/// there continues the span's fill (the inflater or decoder kept with it) up to its read's
/// end. A cold read of a small file 40 % into its span thus costs 40 % of the span, and a walk
/// in archive order still inflates each byte once. A span being extended is `Filling`, so
/// a second reader waits for it instead of filling it again.
///
/// Lock order: `inner`, then never a slot; a slot, then `inner` (to account its size).
pub struct Spans {
    budget: u64,
    inner: Mutex<SpanLru>,
    /// The thread that fills spans ahead of their readers, once started, and whether it is
    /// at work (it takes a span only when idle).
    worker: Mutex<Option<std::sync::mpsc::Sender<Ahead>>>,
    busy: Arc<AtomicBool>,
}

/// A span for the background thread to fill whole; its slot is `Filling` until then.
struct Ahead {
    key: SpanKey,
    slot: Slot,
    start: Box<dyn FnOnce() -> io::Result<Box<dyn SpanFill>> + Send>,
}

/// Package and the span's (or frame's) first uncompressed offset.
type SpanKey = (i64, u64);
type SpanData = Arc<Vec<u8>>;
type Slot = Arc<SlotCell>;

/// How long a reader waits for another thread's fill of the same span. The fill's own reads
/// have deadlines (a mirror's fetch gives up after `read_timeout`), so this only bounds a
/// fill stuck elsewhere.
const FILL_WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct SlotCell {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Empty,
    /// A thread is making more of it.
    Filling,
    /// Made up to `out.len()`; the fill continues from there.
    Partial(Vec<u8>, Box<dyn SpanFill>),
    Ready(SpanData),
}

#[derive(Default)]
struct SpanLru {
    tick: u64,
    bytes: u64,
    /// Slot, the bytes it holds (its whole reserved room while partial), and when it was
    /// last used.
    map: HashMap<SpanKey, (Slot, u64, u64)>,
}

/// The part of `span` from `from` that fits in `buf`, copied; 0 past its end.
fn copy_out(span: &[u8], from: usize, buf: &mut [u8]) -> usize {
    let Some(have) = span.get(from..) else {
        return 0;
    };
    let n = have.len().min(buf.len());
    buf[..n].copy_from_slice(&have[..n]);
    n
}

/// The background thread is taken while this lives.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Spans {
    pub fn new(budget: u64) -> Spans {
        Spans {
            budget,
            inner: Mutex::new(SpanLru::default()),
            worker: Mutex::new(None),
            busy: Arc::default(),
        }
    }

    /// Fills the span at `key` whole on the background thread, unless it is held or that
    /// thread is busy. A walk in archive order then finds the next span ready while it
    /// handles this one: the inflation runs beside the reader's own work instead of between
    /// its requests. One long-lived thread, so its buffers come from one malloc arena.
    pub fn ahead(
        self: &Arc<Self>,
        key: SpanKey,
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>> + Send + 'static,
    ) {
        if crate::vfs::lock(&self.inner).map.contains_key(&key) {
            return;
        }
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let busy = Busy(self.busy.clone());
        let mut worker = crate::vfs::lock(&self.worker);
        if worker.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<Ahead>();
            // The thread holds only a weak reference: it ends when the spans are dropped.
            let spans = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("span-ahead".into())
                .spawn(move || {
                    for job in rx {
                        let Some(spans) = spans.upgrade() else { return };
                        let _done = Busy(spans.busy.clone());
                        // A failed fill leaves the slot empty; the reader that needs the
                        // span meets the error itself.
                        let _ = spans.fill(
                            job.key,
                            &job.slot,
                            SlotState::Empty,
                            usize::MAX,
                            None,
                            job.start,
                        );
                    }
                });
            if spawned.is_err() {
                return;
            }
            *worker = Some(tx);
        }
        // Taken now, so that its reader waits for this fill instead of making its own.
        let slot = self.slot(key);
        {
            let mut state = crate::vfs::lock(&slot.state);
            if !matches!(*state, SlotState::Empty) {
                return;
            }
            *state = SlotState::Filling;
        }
        let job = Ahead {
            key,
            slot,
            start: Box::new(start),
        };
        match worker.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => std::mem::forget(busy),
            // The thread is gone: give the slot back.
            Some(Err(std::sync::mpsc::SendError(job))) => {
                self.store(job.key, &job.slot, SlotState::Empty);
            }
            None => {}
        }
    }

    /// Bytes of spans held now (never above the budget, except the one span just filled when
    /// a single span is larger than the whole budget).
    pub fn held(&self) -> u64 {
        crate::vfs::lock(&self.inner).bytes
    }

    /// Whether some of the span at `key` is made.
    fn holds(&self, key: SpanKey) -> bool {
        crate::vfs::lock(&self.inner)
            .map
            .get(&key)
            .is_some_and(|e| e.1 > 0)
    }

    /// The slot of `key`, made if new, marked as used now.
    fn slot(&self, key: SpanKey) -> Slot {
        let mut lru = crate::vfs::lock(&self.inner);
        lru.tick += 1;
        let tick = lru.tick;
        let e = lru
            .map
            .entry(key)
            .or_insert_with(|| (Arc::default(), 0, tick));
        e.2 = tick;
        e.0.clone()
    }

    /// Reads `buf` from offset `from` of the span at `key`; 0 past its end. Bytes not made
    /// yet are made first, by the span's kept fill or by `start`'s.
    pub fn read(
        &self,
        key: SpanKey,
        from: usize,
        buf: &mut [u8],
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>>,
    ) -> io::Result<usize> {
        let slot = self.slot(key);
        let need = from.saturating_add(buf.len());
        self.extend(key, &slot, need, Some((from, buf)), start)
    }

    /// Makes the span in `slot` up to `need` bytes (or whole), then copies into `copy`'s
    /// buffer from its offset; how many bytes were copied.
    fn extend(
        &self,
        key: SpanKey,
        slot: &Slot,
        need: usize,
        copy: Option<(usize, &mut [u8])>,
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>>,
    ) -> io::Result<usize> {
        let deadline = std::time::Instant::now() + FILL_WAIT;
        let mut state = crate::vfs::lock(&slot.state);
        let taken = loop {
            match &*state {
                SlotState::Ready(d) => return Ok(copy.map_or(0, |(at, b)| copy_out(d, at, b))),
                SlotState::Partial(out, _) if out.len() >= need => {
                    return Ok(copy.map_or(0, |(at, b)| copy_out(out, at, b)))
                }
                SlotState::Filling => {
                    let what = "another reader's fill of this span took too long";
                    state = wait_until(&slot.changed, state, deadline, what)?;
                }
                SlotState::Empty | SlotState::Partial(..) => {
                    break std::mem::replace(&mut *state, SlotState::Filling)
                }
            }
        };
        drop(state);
        self.fill(key, slot, taken, need, copy, start)
    }

    /// Fills `slot`, which this thread has marked `Filling`, from what it held (`taken`).
    fn fill(
        &self,
        key: SpanKey,
        slot: &Slot,
        taken: SlotState,
        need: usize,
        copy: Option<(usize, &mut [u8])>,
        start: impl FnOnce() -> io::Result<Box<dyn SpanFill>>,
    ) -> io::Result<usize> {
        let (mut out, kept) = match taken {
            SlotState::Partial(out, filler) => (out, Some(filler)),
            _ => (Vec::new(), None),
        };
        let filled = kept.map_or_else(start, Ok).and_then(|mut filler| {
            let whole = filler.fill(&mut out, need)?;
            Ok((whole, filler))
        });
        let n = copy.map_or(0, |(at, b)| copy_out(&out, at, b));
        match filled {
            Ok((true, _)) => self.store(key, slot, SlotState::Ready(Arc::new(out))),
            Ok((false, filler)) => self.store(key, slot, SlotState::Partial(out, filler)),
            Err(e) => {
                self.store(key, slot, SlotState::Empty);
                return Err(e);
            }
        }
        Ok(n)
    }

    /// Puts `state` in `slot` after a fill, wakes its waiters, and accounts for it: an empty
    /// slot leaves the cache (the next reader tries again), a filled one may push the least
    /// recently used others out.
    fn store(&self, key: SpanKey, slot: &Slot, state: SlotState) {
        let size = match &state {
            SlotState::Ready(d) => d.len() as u64,
            SlotState::Partial(out, filler) => (out.capacity() + filler.held()) as u64,
            SlotState::Empty | SlotState::Filling => 0,
        };
        *crate::vfs::lock(&slot.state) = state;
        slot.changed.notify_all();
        let mut lru = crate::vfs::lock(&self.inner);
        let ours = lru.map.get(&key).is_some_and(|e| Arc::ptr_eq(&e.0, slot));
        if size == 0 {
            if ours {
                if let Some((_, old, _)) = lru.map.remove(&key) {
                    lru.bytes -= old;
                }
            }
            return;
        }
        lru.tick += 1;
        let tick = lru.tick;
        match lru.map.get_mut(&key) {
            Some(e) if ours => {
                let old = std::mem::replace(&mut e.1, size);
                lru.bytes = lru.bytes - old + size;
            }
            // Another fill's slot took the key; it accounts for itself.
            Some(_) => return,
            // Evicted while it was being made, or dropped when an earlier fill failed.
            None => {
                lru.map.insert(key, (slot.clone(), size, tick));
                lru.bytes += size;
            }
        }
        while lru.bytes > self.budget {
            let victim = lru
                .map
                .iter()
                .filter(|(k, e)| **k != key && e.1 > 0)
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| *k);
            let Some(v) = victim else { break };
            if let Some((_, size, _)) = lru.map.remove(&v) {
                lru.bytes -= size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fill from bytes at hand that records each `upto` it is asked for, and fails from
    /// call `fail_at` on.
    struct Given {
        bytes: Vec<u8>,
        calls: Arc<Mutex<Vec<usize>>>,
        fail_at: usize,
    }

    impl Given {
        fn boxed(bytes: &[u8], calls: &Arc<Mutex<Vec<usize>>>) -> Box<dyn SpanFill> {
            Box::new(Given {
                bytes: bytes.to_vec(),
                calls: calls.clone(),
                fail_at: usize::MAX,
            })
        }
    }

    impl SpanFill for Given {
        fn held(&self) -> usize {
            0
        }

        fn fill(&mut self, out: &mut Vec<u8>, upto: usize) -> io::Result<bool> {
            let mut calls = self.calls.lock().unwrap();
            calls.push(upto);
            if calls.len() > self.fail_at {
                return Err(io::Error::other("the disk said no"));
            }
            let end = upto.min(self.bytes.len()).max(out.len());
            out.extend_from_slice(&self.bytes[out.len()..end]);
            Ok(end == self.bytes.len())
        }
    }

    fn numbers(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn read(s: &Spans, key: u64, from: usize, len: usize, fill: &[u8]) -> Vec<u8> {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut buf = vec![0u8; len];
        let n = s.read((1, key), from, &mut buf, || Ok(Given::boxed(fill, &calls)));
        buf.truncate(n.unwrap());
        buf
    }

    #[test]
    fn spans_stay_within_budget_least_recently_used_out() {
        let s = Spans::new(10);
        read(&s, 0, 0, 4, &[0; 4]);
        read(&s, 1, 0, 4, &[1; 4]);
        assert_eq!(s.held(), 8);
        // A hit (its fill is not asked): 0 is now the most recently used.
        assert_eq!(read(&s, 0, 0, 4, &[9; 4]), vec![0; 4]);
        read(&s, 2, 0, 4, &[2; 4]); // 12 > 10: 1 goes
        assert_eq!(s.held(), 8);
        assert_eq!(read(&s, 0, 0, 4, &[9; 4]), vec![0; 4]);
        assert_eq!(
            read(&s, 1, 0, 4, &[5; 4]),
            vec![5; 4],
            "1 was evicted and made again"
        );
        // One span over the whole budget is kept while it is the one in use, alone.
        read(&s, 3, 0, 25, &[3; 25]);
        assert_eq!(s.held(), 25);
        read(&s, 4, 0, 1, &[4; 1]);
        assert_eq!(s.held(), 1);
    }

    #[test]
    fn a_cold_read_makes_only_its_own_bytes_and_later_reads_continue_the_fill() {
        let s = Spans::new(1 << 20);
        let bytes = numbers(1000);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut starts = 0;
        let mut read_at = |from: usize, len: usize| {
            let mut buf = vec![0u8; len];
            let n = s.read((1, 0), from, &mut buf, || {
                starts += 1;
                Ok(Given::boxed(&bytes, &calls))
            });
            buf.truncate(n.unwrap());
            buf
        };
        assert_eq!(read_at(100, 10), bytes[100..110]);
        assert_eq!(read_at(0, 10), bytes[..10], "within what is made: no fill");
        assert_eq!(read_at(500, 10), bytes[500..510]);
        assert_eq!(read_at(990, 20), bytes[990..]);
        assert_eq!(read_at(2000, 20), b"", "past the span's end");
        assert_eq!(starts, 1, "one fill, continued");
        assert_eq!(*calls.lock().unwrap(), vec![110, 510, 1010]);
        assert_eq!(s.held(), 1000);
    }

    #[test]
    fn a_fill_that_fails_part_way_is_made_again_by_the_next_reader() {
        let s = Spans::new(1 << 20);
        let bytes = numbers(1000);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let failing = Given {
            bytes: bytes.clone(),
            calls: calls.clone(),
            fail_at: 1,
        };
        let mut buf = [0u8; 10];
        let n = s.read((1, 0), 0, &mut buf, || Ok(Box::new(failing)));
        assert_eq!(n.unwrap(), 10);
        let err = s.read((1, 0), 500, &mut buf, || panic!("the kept fill goes on"));
        assert_eq!(err.unwrap_err().to_string(), "the disk said no");
        assert_eq!(s.held(), 0, "nothing is kept of a failed fill");
        assert_eq!(read(&s, 0, 500, 10, &bytes), bytes[500..510]);
    }

    #[test]
    fn concurrent_readers_of_one_span_fill_it_once() {
        let s = Arc::new(Spans::new(1 << 20));
        let starts = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, starts) = (s.clone(), starts.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1000];
                    let n = s.read((7, 0), 0, &mut buf, || {
                        starts.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok(Given::boxed(&[42; 1000], &Arc::default()))
                    });
                    assert_eq!(n.unwrap(), 1000);
                    buf
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), [42; 1000]);
        }
        assert_eq!(starts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_span_filled_ahead_is_not_filled_again_by_its_reader() {
        let s = Arc::new(Spans::new(1 << 20));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        s.ahead((3, 0), move || Ok(Given::boxed(&[7; 100], &c)));
        let mut buf = [0u8; 100];
        let n = s.read((3, 0), 0, &mut buf, || {
            Err(io::Error::other("filled twice"))
        });
        // The reader found the slot taken (or filled) by the background thread and waited.
        assert_eq!(n.unwrap(), 100);
        assert_eq!(buf, [7; 100]);
        assert_eq!(*calls.lock().unwrap(), vec![usize::MAX]);
    }

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
