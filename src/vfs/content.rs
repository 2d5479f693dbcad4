//! Bytes of files inside packages, without inflating an archive from its start per read.
//!
//! - uncompressed tar (and .deb with an uncompressed data member): reads map straight to
//!   offsets in the stored file; so do stored zip members, and a deflated one is inflated
//!   from its own start (a cursor per open file continues where the last read stopped);
//! - sparse members read their data runs in place and zeros between them;
//! - gzip with seek points recorded at publish time: inflation starts at the nearest point
//!   before the offset, and a cursor per open file continues where the last read stopped;
//! - everything else (zstd, xz): the payload is unpacked
//!   once into `ROOT/cache/<sha256>.tar`, bounded in total size, least recently used first out.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::archive::gzindex::{GzCursor, SeekPoint};
use crate::archive::{Compression, Entry, Layout};
use crate::catalog::PackageRow;

/// How long a reader waits for another thread's unpacking before failing with EIO.
const UNPACK_WAIT: Duration = Duration::from_secs(600);

/// Where one entry's bytes come from.
pub enum Source {
    /// The stored file itself; the tar stream starts at `base`.
    Plain {
        file: Arc<File>,
        base: u64,
    },
    Gzip(Mutex<GzCursor>),
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
                Source::Unpacked(file) => file.read_at(&mut buf[done..], pos)?,
                Source::Gzip(c) => c
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read_at(pos, &mut buf[done..])?,
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
        let mut slot = self.inflater.lock().unwrap_or_else(|e| e.into_inner());
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

/// `left` bytes of a shared file from `at`, without touching its file position.
struct FileRange {
    file: Arc<File>,
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
    pub fn unpacked(&self, pkg: &PackageRow, object: &Path) -> io::Result<Arc<File>> {
        let path = self.dir.join(format!("{}.tar", pkg.sha256));
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
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
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.remove(&pkg.sha256);
        self.done.notify_all();
        drop(busy);
        result.map(Arc::new)
    }

    fn unpack(&self, pkg: &PackageRow, object: &Path, path: &Path) -> io::Result<File> {
        fs::create_dir_all(&self.dir)?;
        self.evict(pkg.unpacked_size)?;
        let compression = Compression::parse(&pkg.compression)
            .ok_or_else(|| io::Error::other(format!("unknown compression {}", pkg.compression)))?;
        let mut src = File::open(object)?;
        src.seek(SeekFrom::Start(pkg.payload_offset))?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let started = std::time::Instant::now();
        let mut reader = compression.reader(src.take(pkg.payload_size))?;
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

/// Opens the source for reading inside `pkg`.
pub fn source(
    pkg: &PackageRow,
    object: &Path,
    points: Option<Arc<[SeekPoint]>>,
    cache: &Cache,
) -> io::Result<Source> {
    match (pkg.compression.as_str(), points) {
        ("none", _) => Ok(Source::Plain {
            file: Arc::new(OpenOptions::new().read(true).open(object)?),
            base: pkg.payload_offset,
        }),
        // No recorded points is fine: the stream's start is always one (small payloads).
        ("gzip", Some(points)) => {
            let file = Arc::new(File::open(object)?);
            // Bounded: in a .deb the next ar member follows the gzip stream.
            let cursor = GzCursor::new(file, pkg.payload_offset, points).with_len(pkg.payload_size);
            Ok(Source::Gzip(Mutex::new(cursor)))
        }
        _ => Ok(Source::Unpacked(cache.unpacked(pkg, object)?)),
    }
}
