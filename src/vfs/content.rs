//! Bytes of files inside packages, without inflating an archive from its start per read.
//!
//! - uncompressed tar (and .deb with an uncompressed data member): reads map straight to
//!   offsets in the stored file; so do stored zip members, and a deflated one is inflated
//!   from its own start (a cursor per open file continues where the last read stopped);
//! - sparse members read their data runs in place and zeros between them;
//! - gzip with seek points recorded at publish time: the payload is cut into spans, one per
//!   seek point; a span is inflated whole, once, into a cache shared by every open file of
//!   every package (`Spans`, bounded in bytes, least recently used out). A walk of the whole
//!   tree in archive order (what `tar -c`, `cp -r` and `rsync` do when the archive was made
//!   sorted, as Debian's and git's are) thus inflates each compressed byte about once, where
//!   a cursor per file re-inflated up to a whole spacing for each small file. A read past the
//!   middle of a span has the next one inflated on a background thread (`Spans::ahead`), so
//!   a walk's inflation runs beside its requests rather than between them;
//! - a payload with a seekable twin (zstd frames made at publication): read frame by frame
//!   through the same cache, the next frame decompressed ahead likewise;
//! - everything else: the payload is unpacked once into `ROOT/cache/<sha256>.tar`, bounded
//!   in total size, least recently used first out.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
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
    pub fn unpacked(&self, pkg: &PackageRow, object: &Arc<dyn ReadAt>) -> io::Result<Arc<File>> {
        let path = self.dir.join(format!("{}.tar", pkg.sha256));
        let mut busy = crate::sync::lock(&self.busy);
        let deadline = std::time::Instant::now() + UNPACK_WAIT;
        while busy.contains(&pkg.sha256) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "unpacking took too long",
                ));
            }
            busy = self
                .done
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if let Ok(f) = File::open(&path) {
            // Recently used: keep it longest.
            let _ = f.set_modified(SystemTime::now());
            return Ok(Arc::new(f));
        }
        busy.insert(pkg.sha256.clone());
        drop(busy);
        let result = self.unpack(pkg, object, &path);
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

/// Opens the source for reading inside `pkg`. Compressed payloads are read span by span
/// through `spans` (gzip windows are fetched from `catalog` per span).
pub fn source(
    pkg: &PackageRow,
    object: Arc<dyn ReadAt>,
    seekable: Seekable,
    objects: &Objects,
    spans: &Arc<Spans>,
    catalog: &Arc<Mutex<Catalog>>,
    cache: &Cache,
) -> io::Result<Source> {
    match (pkg.compression.as_str(), seekable) {
        ("none", _) => Ok(Source::Plain {
            file: object,
            base: pkg.payload_offset,
        }),
        // No recorded points is fine: the stream's start is always one (small payloads).
        ("gzip", Seekable::Gzip(index)) => Ok(Source::Gzip(Arc::new(GzPayload {
            file_id: pkg.file_id,
            file: object,
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
        _ => Ok(Source::Unpacked(cache.unpacked(pkg, &object)?)),
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
        let frame = self
            .spans
            .get((self.file_id, f.out), || self.decompress(f))?;
        // Past the middle of a frame, the next one is decompressed in the background.
        if let Some(&next) = self.frames.get(k + 1) {
            if offset - f.out >= f.out_len / 2 {
                let me = self.clone();
                self.spans
                    .ahead((self.file_id, next.out), move || me.decompress(next));
            }
        }
        let from = (offset - f.out) as usize;
        let n = (frame.len() - from).min(buf.len());
        buf[..n].copy_from_slice(&frame[from..from + n]);
        Ok(n)
    }

    fn decompress(&self, f: Frame) -> io::Result<Vec<u8>> {
        let mut packed = vec![0u8; usize::try_from(f.in_len).unwrap_or(usize::MAX)];
        read_exact_at(&*self.file, &mut packed, f.inp)?;
        let want = usize::try_from(f.out_len).unwrap_or(usize::MAX);
        let out = zstd::bulk::decompress(&packed, want)?;
        if out.len() != want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "zstd frame shorter than its index says",
            ));
        }
        Ok(out)
    }
}

/// `read_exact_at` for any object.
fn read_exact_at(f: &dyn ReadAt, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.read_at(buf, at) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shorter than the catalog says",
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
        let span = self
            .spans
            .get((self.file_id, start), || self.inflate(start, end))?;
        // Past the middle of a span, the next one is inflated in the background.
        if end != u64::MAX && offset - start >= (end - start) / 2 {
            let me = self.clone();
            self.spans
                .ahead((self.file_id, end), move || match me.span_of(end)? {
                    (s, e) if s == end => me.inflate(s, e),
                    _ => Err(io::Error::other("gzip spans do not meet")),
                });
        }
        let from = usize::try_from(offset - start).unwrap_or(usize::MAX);
        let Some(have) = span.get(from..) else {
            return Ok(0);
        };
        let n = have.len().min(buf.len());
        buf[..n].copy_from_slice(&have[..n]);
        Ok(n)
    }

    /// Inflates the span `start..end` whole, from its seek point.
    fn inflate(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
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
        let mut cursor = GzCursor::new(self.file.clone(), self.base, points).with_len(self.len);
        // The last span runs to the end of the stream.
        let want = usize::try_from(end - start).map_or(SPAN_MAX, |w| w.min(SPAN_MAX));
        let mut out = vec![0u8; want.min(8 << 20)];
        let mut n = 0;
        loop {
            if n == out.len() {
                if n >= want {
                    break;
                }
                if n >= SPAN_MAX {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "gzip span longer than any seek spacing",
                    ));
                }
                out.resize((n * 2).min(want), 0);
            }
            let got = cursor.read_at(start + n as u64, &mut out[n..])?;
            if got == 0 {
                break;
            }
            n += got;
        }
        out.truncate(n);
        Ok(out)
    }
}

/// Inflated gzip spans shared by every reader of every package, within a byte budget; least
/// recently used out. A span being inflated is a slot whose lock the inflating thread holds,
/// so a second reader of the same span waits for it instead of inflating it again.
///
/// Lock order: `inner`, then never a slot; a slot, then `inner` (to account its size).
pub struct Spans {
    budget: u64,
    inner: Mutex<SpanLru>,
    /// The way to the thread that fills spans ahead of their readers, once started.
    worker: Mutex<Option<std::sync::mpsc::SyncSender<(SpanKey, Fill)>>>,
}

/// A span's fill, sent to the thread that fills ahead.
type Fill = Box<dyn FnOnce() -> io::Result<Vec<u8>> + Send>;

/// Package and the span's (or frame's) first uncompressed offset.
type SpanKey = (i64, u64);
type SpanData = Arc<Vec<u8>>;
/// Filled once; its lock is held while filling, so other readers of the span wait.
type Slot = Arc<Mutex<Option<SpanData>>>;

#[derive(Default)]
struct SpanLru {
    tick: u64,
    bytes: u64,
    /// Slot, its size once filled, and when it was last used.
    map: HashMap<SpanKey, (Slot, u64, u64)>,
}

impl Spans {
    pub fn new(budget: u64) -> Spans {
        Spans {
            budget,
            inner: Mutex::new(SpanLru::default()),
            worker: Mutex::new(None),
        }
    }

    /// Fills the span at `key` on the background thread, unless it is held or that thread
    /// is busy. A walk in archive order then finds the next span ready while it handles this
    /// one: the inflation runs beside the reader's own work instead of between its requests.
    /// One long-lived thread, so its buffers come from one malloc arena.
    pub fn ahead(
        self: &Arc<Self>,
        key: SpanKey,
        fill: impl FnOnce() -> io::Result<Vec<u8>> + Send + 'static,
    ) {
        if crate::vfs::lock(&self.inner).map.contains_key(&key) {
            return;
        }
        let mut worker = crate::vfs::lock(&self.worker);
        if worker.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(SpanKey, Fill)>(0);
            // The thread holds only a weak reference: it ends when the spans are dropped.
            let spans = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("span-ahead".into())
                .spawn(move || {
                    for (key, fill) in rx {
                        let Some(spans) = spans.upgrade() else { return };
                        // A failed fill leaves no slot; the reader that needs the span meets
                        // the error itself.
                        let _ = spans.get(key, fill);
                    }
                });
            match spawned {
                Ok(_) => *worker = Some(tx),
                Err(_) => return,
            }
        }
        if let Some(tx) = &*worker {
            // A rendezvous channel: handed over only if the thread waits for work.
            let _ = tx.try_send((key, Box::new(fill)));
        }
    }

    /// Bytes of inflated spans held now (never above the budget, except the one span just
    /// filled when a single span is larger than the whole budget).
    pub fn held(&self) -> u64 {
        crate::vfs::lock(&self.inner).bytes
    }

    /// The span at `key`, filled by `fill` if no one has it.
    pub fn get(
        &self,
        key: SpanKey,
        fill: impl FnOnce() -> io::Result<Vec<u8>>,
    ) -> io::Result<SpanData> {
        let slot = {
            let mut lru = crate::vfs::lock(&self.inner);
            lru.tick += 1;
            let tick = lru.tick;
            let e = lru
                .map
                .entry(key)
                .or_insert_with(|| (Arc::default(), 0, tick));
            e.2 = tick;
            e.0.clone()
        };
        let mut data = crate::vfs::lock(&slot);
        if let Some(d) = &*data {
            return Ok(d.clone());
        }
        let d = match fill() {
            Ok(d) => Arc::new(d),
            Err(e) => {
                drop(data);
                let mut lru = crate::vfs::lock(&self.inner);
                if lru.map.get(&key).is_some_and(|e| Arc::ptr_eq(&e.0, &slot)) {
                    lru.map.remove(&key);
                }
                return Err(e);
            }
        };
        *data = Some(d.clone());
        drop(data);
        let mut lru = crate::vfs::lock(&self.inner);
        let size = d.len() as u64;
        match lru.map.get_mut(&key) {
            // Still the same slot (not evicted while filling): account for it.
            Some(e) if Arc::ptr_eq(&e.0, &slot) && e.1 == 0 => {
                e.1 = size;
                lru.bytes += size;
            }
            _ => return Ok(d),
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
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn spans_stay_within_budget_least_recently_used_out() {
        let s = Spans::new(10);
        let fills = AtomicUsize::new(0);
        let get = |k: u64, len: usize| {
            s.get((1, k), || {
                fills.fetch_add(1, Ordering::Relaxed);
                Ok(vec![k as u8; len])
            })
            .unwrap()
        };
        get(0, 4);
        get(1, 4);
        assert_eq!(s.held(), 8);
        assert_eq!(*get(0, 4), vec![0; 4]); // a hit: 0 is now the most recently used
        assert_eq!(fills.load(Ordering::Relaxed), 2);
        get(2, 4); // 12 > 10: 1 goes
        assert_eq!(s.held(), 8);
        get(0, 4);
        assert_eq!(fills.load(Ordering::Relaxed), 3);
        get(1, 4);
        assert_eq!(
            fills.load(Ordering::Relaxed),
            4,
            "1 was evicted and filled again"
        );
        // One span over the whole budget is kept while it is the one in use, alone.
        get(3, 25);
        assert_eq!(s.held(), 25);
        get(4, 1);
        assert_eq!(s.held(), 1);
        // A failed fill leaves nothing behind and is retried.
        assert!(s.get((1, 9), || Err(io::Error::other("boom"))).is_err());
        assert_eq!(*get(9, 2), vec![9; 2]);
    }

    #[test]
    fn a_span_filled_ahead_is_not_filled_again_by_its_reader() {
        let s = Arc::new(Spans::new(1 << 20));
        let fills = Arc::new(AtomicUsize::new(0));
        let f = fills.clone();
        // The thread is started by the first call and takes work only while it waits.
        let started = std::time::Instant::now();
        while fills.load(Ordering::Relaxed) == 0 && started.elapsed() < Duration::from_secs(10) {
            let f = f.clone();
            s.ahead((3, 0), move || {
                f.fetch_add(1, Ordering::Relaxed);
                Ok(vec![7; 100])
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = s.get((3, 0), || {
            fills.fetch_add(1, Ordering::Relaxed);
            Ok(vec![0; 100])
        });
        assert_eq!(*got.unwrap(), vec![7; 100]);
        assert_eq!(fills.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn concurrent_readers_of_one_span_fill_it_once() {
        let s = Arc::new(Spans::new(1 << 20));
        let fills = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, fills) = (s.clone(), fills.clone());
                std::thread::spawn(move || {
                    s.get((7, 0), || {
                        fills.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok(vec![42; 1000])
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(*t.join().unwrap(), vec![42; 1000]);
        }
        assert_eq!(fills.load(Ordering::Relaxed), 1);
    }
}
