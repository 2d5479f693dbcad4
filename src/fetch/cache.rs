//! A mirror's object cache, `ROOT/mirror/`.
//!
//! - `complete/<sha256>`: whole objects whose sha256 (from the catalog) was checked; read like
//!   store objects (passthrough).
//! - `partial/<sha256>`: a sparse file of the object's size, and `partial/<sha256>.bits`, one
//!   byte per 256 KiB torrent piece, 1 once that piece's bytes were checked against the
//!   torrent's SHA-1 *and* made durable (the data file is synced before the byte is written,
//!   so a crash can lose a bit, never leave a bit over bytes that are not there).
//!
//! Only repofsd writes here. The mount reads bits and data of partial objects and touches the
//! mtime of what it opens: eviction takes the least recently touched first.

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_lc_rs::digest::{Context as Sha1, SHA1_FOR_LEGACY_USE_ONLY};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::torrent::PIECE_LENGTH;

mod evict;
mod repair;

const PIECE: u64 = PIECE_LENGTH as u64;

/// The pieces covering bytes `[from, to)`.
pub fn pieces(from: u64, to: u64) -> std::ops::Range<u64> {
    from / PIECE..to.div_ceil(PIECE)
}

/// Paths in the cache directory; what the mount needs.
#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
}

impl CacheDir {
    pub fn new(root: PathBuf) -> CacheDir {
        CacheDir { root }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn complete_path(&self, sha256: &str) -> PathBuf {
        self.root.join("complete").join(sha256)
    }
    pub fn partial_path(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(sha256)
    }
    pub fn bits_path(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(format!("{sha256}.bits"))
    }

    /// The mount's view of a partial object: None if nothing of it is cached. The bits file is
    /// opened first: repofsd creates it before the data file.
    pub fn open_view(&self, sha256: &str, size: u64) -> io::Result<Option<PartialView>> {
        if let Ok(f) = File::open(self.complete_path(sha256)) {
            let _ = f.set_modified(SystemTime::now());
            return Ok(Some(PartialView {
                data: f,
                bits: None,
            }));
        }
        let bits = match File::open(self.bits_path(sha256)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = match File::open(self.partial_path(sha256)) {
            Ok(d) => d,
            // Promoted between the two opens.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(File::open(self.complete_path(sha256))
                    .ok()
                    .map(|data| PartialView { data, bits: None }))
            }
            Err(e) => return Err(e),
        };
        if data.metadata()?.len() != size {
            return Ok(None);
        }
        let _ = data.set_modified(SystemTime::now());
        Ok(Some(PartialView {
            data,
            bits: Some(bits),
        }))
    }
}

/// An object's cache files as the mount opened them (bits None: complete).
pub struct PartialView {
    data: File,
    bits: Option<File>,
}

impl PartialView {
    pub fn data(&self) -> &File {
        &self.data
    }

    /// Whether every piece of `[from, to)` is verified.
    pub fn has(&self, from: u64, to: u64) -> io::Result<bool> {
        let Some(bits) = &self.bits else {
            return Ok(true);
        };
        let p = pieces(from, to);
        let mut buf = vec![0u8; (p.end - p.start) as usize];
        let n = FileExt::read_at(bits, &mut buf, p.start)?;
        Ok(n == buf.len() && buf.iter().all(|&b| b == 1))
    }
}

/// One object in the cache, as repofsd holds it while fetching or seeding it.
pub struct CacheObject {
    pub sha256: String,
    pub size: u64,
    /// The torrent's piece hashes (20 bytes each).
    hashes: Vec<u8>,
    data: File,
    /// None once complete.
    bits: Mutex<Option<File>>,
    verified: Mutex<Vec<bool>>,
    complete: AtomicBool,
    /// Bytes of this object fetched from peers (written into the cache).
    pub downloaded: AtomicU64,
    /// Verified bytes of this object fetched from the origins over HTTP (`lazy::sources`).
    pub from_origin: AtomicU64,
    /// How far a read-ahead in flight (or done) reaches.
    pub ahead: AtomicU64,
    /// A sequential reader's whole-object stream is running (`lazy::Fetcher::sequential`).
    pub streaming: AtomicBool,
    /// Woken whenever pieces become verified (and when a stream ends): readers wait on it.
    pub changed: tokio::sync::Notify,
    dir: CacheDir,
}

impl CacheObject {
    pub fn piece_count(&self) -> u64 {
        self.size.div_ceil(PIECE)
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub fn verified_count(&self) -> u64 {
        lock(&self.verified).iter().filter(|&&v| v).count() as u64
    }

    pub fn is_verified(&self, piece: u64) -> bool {
        self.is_complete() || lock(&self.verified).get(piece as usize) == Some(&true)
    }

    pub fn has(&self, from: u64, to: u64) -> bool {
        pieces(from, to).all(|p| self.is_verified(p))
    }

    /// Each piece's state as recorded: verified (against its SHA-1, and durable) or not.
    pub fn verified_pieces(&self) -> Vec<bool> {
        match self.is_complete() {
            true => vec![true; self.piece_count() as usize],
            false => lock(&self.verified).clone(),
        }
    }

    /// Whether any piece at or after `piece` is verified (librqbit's first check reads on).
    fn verified_from(&self, piece: u64) -> bool {
        self.is_complete()
            || lock(&self.verified)
                .get(piece as usize..)
                .is_some_and(|v| v.iter().any(|&b| b))
    }

    fn piece_range(&self, piece: u64) -> (u64, u64) {
        let start = piece * PIECE;
        (start, (start + PIECE).min(self.size))
    }

    /// Checks the pieces covering `[from, to)` in the cache file against their SHA-1 and
    /// records each verified once its bytes are durable (one sync for the range).
    /// Err(InvalidData) if the bytes of a piece are not that piece.
    pub fn verify(&self, from: u64, to: u64) -> io::Result<()> {
        self.verify_pieces(pieces(from, to.min(self.size)))
    }

    /// `verify` of the given pieces, wherever they are (one sync for all).
    pub fn verify_pieces(&self, pieces: impl IntoIterator<Item = u64>) -> io::Result<()> {
        let todo: Vec<u64> = pieces
            .into_iter()
            .filter(|&p| p < self.piece_count() && !self.is_verified(p))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let mut buf = vec![0u8; PIECE as usize];
        let mut good = Vec::with_capacity(todo.len());
        let mut bad = None;
        for piece in todo {
            let (start, end) = self.piece_range(piece);
            let buf = &mut buf[..(end - start) as usize];
            self.data.read_exact_at(buf, start)?;
            if !self.is_piece(piece, buf)? {
                bad = Some(self.bad_piece(piece));
                break;
            }
            good.push(piece);
        }
        // The pieces before a bad one still count.
        self.seal(&good)?;
        bad.map_or(Ok(()), Err)
    }

    fn bad_piece(&self, piece: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("piece {piece} of {} fails its SHA-1", self.sha256),
        )
    }

    fn piece_hash(&self, piece: u64) -> io::Result<&[u8]> {
        self.hashes
            .get(piece as usize * 20..piece as usize * 20 + 20)
            .ok_or_else(|| io::Error::other("piece beyond the torrent"))
    }

    /// Whether `bytes` are `piece`, by its SHA-1 in the torrent.
    fn is_piece(&self, piece: u64, bytes: &[u8]) -> io::Result<bool> {
        let want = self.piece_hash(piece)?;
        Ok(aws_lc_rs::digest::digest(&SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref() == want)
    }

    /// Writes `piece` from bytes fetched over HTTP (`fetch::origin`), after checking them
    /// against the piece's SHA-1; `seal` then records it. Ok(false): already verified, not
    /// written. Err(InvalidData): the bytes are not that piece.
    pub fn put_piece(&self, piece: u64, bytes: &[u8]) -> io::Result<bool> {
        let (start, end) = self.piece_range(piece);
        if bytes.len() as u64 != end - start {
            return Err(io::Error::other("a piece of the wrong length"));
        }
        if !self.is_piece(piece, bytes)? {
            return Err(self.bad_piece(piece));
        }
        if self.is_verified(piece) {
            return Ok(false);
        }
        self.data.write_all_at(bytes, start)?;
        Ok(true)
    }

    /// Records `pieces`, whose bytes were checked against their SHA-1, as verified once the
    /// data file is synced (one sync for all).
    pub fn seal(&self, pieces: &[u64]) -> io::Result<()> {
        if pieces.is_empty() {
            return Ok(());
        }
        self.data.sync_data()?;
        if let Some(bits) = &*lock(&self.bits) {
            for &p in pieces {
                bits.write_all_at(&[1], p)?;
            }
        }
        {
            let mut v = lock(&self.verified);
            for &p in pieces {
                if let Some(b) = v.get_mut(p as usize) {
                    *b = true;
                }
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Once every piece is verified: checks the whole object's sha256 and moves it to
    /// `complete/`. Ok(false) if pieces are missing. `streamed`: the sha256 of the object's
    /// bytes as one in-order stream returned them (`StreamCheck`); without it, the file is
    /// read again.
    pub fn promote(&self, streamed: Option<[u8; 32]>) -> io::Result<bool> {
        if self.is_complete() {
            return Ok(true);
        }
        if self.verified_count() < self.piece_count() {
            return Ok(false);
        }
        let digest = match streamed {
            Some(d) => d,
            None => {
                let mut h = Sha256::new();
                let mut r = io::BufReader::with_capacity(1 << 20, FileRange(&self.data, 0));
                io::copy(&mut r, &mut h)?;
                h.finalize().into()
            }
        };
        let got = hex::encode(digest);
        if got != self.sha256 {
            // Every piece matched its SHA-1 yet the whole does not: the catalog's torrent and
            // sha256 disagree. Start over rather than serve it as complete.
            warn!(object = %self.sha256, got = %got, "object fails its sha256; dropping it");
            let mut v = lock(&self.verified);
            v.iter_mut().for_each(|b| *b = false);
            if let Some(bits) = &*lock(&self.bits) {
                bits.write_all_at(&vec![0u8; v.len()], 0)?;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "object fails its sha256",
            ));
        }
        fs::create_dir_all(self.dir.root().join("complete"))?;
        fs::rename(
            self.dir.partial_path(&self.sha256),
            self.dir.complete_path(&self.sha256),
        )?;
        self.complete.store(true, Ordering::Release);
        *lock(&self.bits) = None;
        let _ = fs::remove_file(self.dir.bits_path(&self.sha256));
        info!(object = %self.sha256, bytes = self.size, "object complete in the cache");
        Ok(true)
    }

    /// librqbit reads: during its first check only verified pieces (others read as absent:
    /// an error past the last verified piece stops the check reading a sparse file);
    /// afterwards what it asks for (pieces it verified itself).
    pub fn pread(&self, offset: u64, buf: &mut [u8], checking: bool) -> anyhow::Result<()> {
        let piece = offset / PIECE;
        if checking && !self.is_verified(piece) {
            anyhow::ensure!(self.verified_from(piece), "not cached");
            buf.fill(0);
            return Ok(());
        }
        Ok(self.data.read_exact_at(buf, offset)?)
    }

    /// librqbit writes a chunk from a peer; never over a verified piece.
    pub fn pwrite(&self, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        if self.is_verified(offset / PIECE) {
            return Ok(());
        }
        self.data.write_all_at(buf, offset)?;
        self.downloaded
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Checks an object's bytes as one in-order stream returns them (`lazy`'s sequential
/// stream), so nothing is read back for it: each piece's SHA-1 from those bytes; pieces
/// recorded verified a batch at a time, after one sync (the same rule as `verify`); and the
/// whole object's sha256 when the stream covers it from its start (a verified prefix before
/// the stream is read once), so that `promote` need not re-read the object.
pub struct StreamCheck {
    object: Arc<CacheObject>,
    /// The next byte the stream returns.
    pos: u64,
    /// The current piece, unless it was verified before the stream reached it.
    piece: Option<Sha1>,
    whole: Option<Sha256>,
    /// Pieces whose SHA-1 matched, not yet synced and recorded.
    pending: Vec<u64>,
    /// Where the batch being gathered started, and how many bytes it takes.
    batch_from: u64,
    batch: u64,
    next_batch: u64,
}

impl StreamCheck {
    /// A check of the stream starting at `pos` (a piece boundary); the first batch is
    /// `first_batch` bytes (the first reader waits for it), the others `batch`.
    pub fn new(
        object: Arc<CacheObject>,
        pos: u64,
        first_batch: u64,
        batch: u64,
    ) -> io::Result<StreamCheck> {
        if !pos.is_multiple_of(PIECE) || pos > object.size {
            return Err(io::Error::other(
                "a stream check starts at a piece boundary",
            ));
        }
        // The prefix is in the page cache (it was just fetched) and costs one read here
        // instead of the whole object's at promotion.
        let whole = if object.has(0, pos) {
            let mut h = Sha256::new();
            let mut r = io::BufReader::with_capacity(1 << 20, FileRange(&object.data, 0));
            io::copy(&mut Read::take(&mut r, pos), &mut h)?;
            Some(h)
        } else {
            None
        };
        let piece = (!object.is_verified(pos / PIECE)).then(sha1);
        Ok(StreamCheck {
            object,
            pos,
            piece,
            whole,
            pending: Vec::new(),
            batch_from: pos,
            batch: first_batch.max(1),
            next_batch: batch.max(1),
        })
    }

    /// The stream's next bytes. Err(InvalidData) if a piece's bytes are not that piece.
    pub fn update(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let o = self.object.clone();
        if buf.len() as u64 > o.size - self.pos {
            return Err(io::Error::other("the stream ran past the object's end"));
        }
        while !buf.is_empty() {
            let p = self.pos / PIECE;
            let (_, end) = o.piece_range(p);
            let take = ((end - self.pos) as usize).min(buf.len());
            let (now, rest) = buf.split_at(take);
            if let Some(h) = &mut self.piece {
                h.update(now);
            }
            if let Some(h) = &mut self.whole {
                h.update(now);
            }
            self.pos += take as u64;
            buf = rest;
            if self.pos < end {
                continue;
            }
            if let Some(h) = self.piece.take() {
                if h.finish().as_ref() != o.piece_hash(p)? {
                    return Err(o.bad_piece(p));
                }
                self.pending.push(p);
            }
            if self.pos < o.size {
                self.piece = (!o.is_verified(p + 1)).then(sha1);
            }
            if self.pos - self.batch_from >= self.batch || self.pos == o.size {
                o.seal(&self.pending)?;
                self.pending.clear();
                self.batch_from = self.pos;
                self.batch = self.next_batch;
            }
        }
        Ok(())
    }

    /// After the stream's last bytes: records what is pending; the object's sha256 if the
    /// stream reached its end and covered it from the start.
    pub fn finish(mut self) -> io::Result<Option<[u8; 32]>> {
        self.object.seal(&self.pending)?;
        self.pending.clear();
        Ok(match self.whole.take() {
            Some(h) if self.pos == self.object.size => Some(h.finalize().into()),
            _ => None,
        })
    }
}

/// A piece's SHA-1 (aws-lc: ~1.8x the `sha1` crate's speed here, both with SHA-NI).
fn sha1() -> Sha1 {
    Sha1::new(&SHA1_FOR_LEGACY_USE_ONLY)
}

/// `File` from an offset, as a reader.
struct FileRange<'a>(&'a File, u64);

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = FileExt::read_at(self.0, buf, self.1)?;
        self.1 += n as u64;
        Ok(n)
    }
}

/// The cache as repofsd manages it: objects open for fetching or seeding, and the size bound.
pub struct Cache {
    pub dir: CacheDir,
    pub limit: u64,
    objects: Mutex<HashMap<String, Arc<CacheObject>>>,
}

impl Cache {
    pub fn new(dir: CacheDir, limit: u64) -> io::Result<Cache> {
        fs::create_dir_all(dir.root().join("partial"))?;
        fs::create_dir_all(dir.root().join("complete"))?;
        Ok(Cache {
            dir,
            limit,
            objects: Mutex::new(HashMap::new()),
        })
    }

    /// The object `sha256`, opened from the cache or made empty there.
    pub fn object(&self, sha256: &str, size: u64, hashes: &[u8]) -> io::Result<Arc<CacheObject>> {
        let mut objects = lock(&self.objects);
        if let Some(o) = objects.get(sha256) {
            return Ok(o.clone());
        }
        let n = size.div_ceil(PIECE) as usize;
        if hashes.len() != n * 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "torrent does not match the object's size",
            ));
        }
        let o = match File::open(self.dir.complete_path(sha256)) {
            Ok(data) if data.metadata()?.len() == size => CacheObject {
                sha256: sha256.into(),
                size,
                hashes: hashes.to_vec(),
                data,
                bits: Mutex::new(None),
                verified: Mutex::new(vec![true; n]),
                complete: AtomicBool::new(true),
                downloaded: AtomicU64::new(0),
                from_origin: AtomicU64::new(0),
                ahead: AtomicU64::new(0),
                streaming: AtomicBool::new(false),
                changed: tokio::sync::Notify::new(),
                dir: self.dir.clone(),
            },
            _ => {
                let bits_path = self.dir.bits_path(sha256);
                let bits = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&bits_path)?;
                let data = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(self.dir.partial_path(sha256))?;
                let mut verified = vec![false; n];
                if data.metadata()?.len() == size && bits.metadata()?.len() == n as u64 {
                    let mut b = vec![0u8; n];
                    bits.read_exact_at(&mut b, 0)?;
                    for (v, b) in verified.iter_mut().zip(&b) {
                        *v = *b == 1;
                    }
                } else {
                    // New, or torn before it was set up: start empty.
                    bits.set_len(0)?;
                    bits.set_len(n as u64)?;
                    data.set_len(0)?;
                    data.set_len(size)?;
                }
                CacheObject {
                    sha256: sha256.into(),
                    size,
                    hashes: hashes.to_vec(),
                    data,
                    bits: Mutex::new(Some(bits)),
                    verified: Mutex::new(verified),
                    complete: AtomicBool::new(false),
                    downloaded: AtomicU64::new(0),
                    from_origin: AtomicU64::new(0),
                    ahead: AtomicU64::new(0),
                    streaming: AtomicBool::new(false),
                    changed: tokio::sync::Notify::new(),
                    dir: self.dir.clone(),
                }
            }
        };
        let o = Arc::new(o);
        objects.insert(sha256.to_string(), o.clone());
        Ok(o)
    }

    pub fn open_objects(&self) -> Vec<Arc<CacheObject>> {
        lock(&self.objects).values().cloned().collect()
    }

    /// Objects on disk (complete or partial), by sha256: what a restarted repofsd seeds.
    pub fn on_disk(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["complete", "partial"] {
            if let Ok(rd) = fs::read_dir(self.dir.root().join(sub)) {
                for e in rd.filter_map(Result::ok) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                        out.push(name);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Bytes the cache occupies on disk (sparse files count what is allocated).
    pub fn usage(&self) -> u64 {
        evict::entries(&self.dir).iter().map(|e| e.bytes).sum()
    }

    /// Least recently touched objects to drop so that the cache fits its limit, never one
    /// in `busy`.
    pub fn victims(&self, busy: &HashSet<String>) -> Vec<String> {
        evict::victims(evict::entries(&self.dir), self.limit, busy)
    }

    /// Drops an object from the cache (its torrent must be gone from the session first).
    pub fn remove(&self, sha256: &str) {
        lock(&self.objects).remove(sha256);
        for p in [
            self.dir.bits_path(sha256),
            self.dir.partial_path(sha256),
            self.dir.complete_path(sha256),
        ] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    warn!(path = %p.display(), error = %e, "could not evict");
                }
                _ => {}
            }
        }
        info!(object = %sha256, "evicted from the cache");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torrent::PieceHasher;

    pub(super) fn object(len: usize) -> (Vec<u8>, String, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = PieceHasher::default();
        h.update(&data);
        let sha = hex::encode(Sha256::digest(&data));
        (data, sha, h.finish())
    }

    #[test]
    fn a_bit_is_set_only_for_a_piece_whose_bytes_match() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
        let (data, sha, hashes) = object(PIECE as usize * 2 + 1000);
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        // Piece 0 right, piece 1 with one byte wrong.
        o.pwrite(0, &data[..PIECE as usize]).unwrap();
        let mut bad = data[PIECE as usize..2 * PIECE as usize].to_vec();
        bad[7] ^= 1;
        o.pwrite(PIECE, &bad).unwrap();
        o.verify(0, PIECE).unwrap();
        let e = o.verify(PIECE, 2 * PIECE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(o.is_verified(0) && !o.is_verified(1));
        let view = cache
            .dir
            .open_view(&sha, data.len() as u64)
            .unwrap()
            .unwrap();
        assert!(view.has(0, PIECE).unwrap());
        assert!(!view.has(0, PIECE + 1).unwrap());
        // A verified piece is never written over (a late or bad peer).
        o.pwrite(0, &[0u8; 100]).unwrap();
        let mut first = vec![0u8; 100];
        view.data().read_exact_at(&mut first, 0).unwrap();
        assert_eq!(first, data[..100]);
    }

    #[test]
    fn bits_survive_a_reopen_and_a_whole_object_is_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let (data, sha, hashes) = object(PIECE as usize * 3);
        {
            let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
            let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
            o.pwrite(PIECE, &data[PIECE as usize..2 * PIECE as usize])
                .unwrap();
            o.verify(PIECE, 2 * PIECE).unwrap();
        }
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
        assert_eq!(cache.on_disk(), vec![sha.clone()]);
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        assert_eq!(o.verified_count(), 1);
        assert!(!o.promote(None).unwrap(), "not every piece is there");
        o.pwrite(0, &data[..PIECE as usize]).unwrap();
        o.pwrite(2 * PIECE, &data[2 * PIECE as usize..]).unwrap();
        o.verify(0, data.len() as u64).unwrap();
        assert!(o.promote(None).unwrap());
        assert_eq!(fs::read(cache.dir.complete_path(&sha)).unwrap(), data);
        assert!(!cache.dir.bits_path(&sha).exists());
        assert!(!cache.dir.partial_path(&sha).exists());
    }

    #[test]
    fn a_stream_check_verifies_what_the_stream_returns_and_yields_the_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
        let (data, sha, hashes) = object(PIECE as usize * 5 + 1000);
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        o.pwrite(0, &data).unwrap();
        // Piece 0 was verified before the stream: the check starts after it and reads it once.
        o.verify(0, PIECE).unwrap();
        let mut c = StreamCheck::new(o.clone(), PIECE, PIECE, 2 * PIECE).unwrap();
        let mut chunks = data[PIECE as usize..].chunks(100_000);
        c.update(chunks.next().unwrap()).unwrap();
        assert!(
            !o.is_verified(1),
            "a piece is recorded only once all of it was checked"
        );
        for chunk in chunks.by_ref().take(2) {
            c.update(chunk).unwrap();
        }
        assert!(o.is_verified(1), "the first batch is one piece");
        assert!(!o.is_verified(2));
        for chunk in chunks {
            c.update(chunk).unwrap();
        }
        let digest = c.finish().unwrap().expect("the sha256, from the stream");
        assert_eq!(hex::encode(digest), sha);
        assert_eq!(o.verified_count(), o.piece_count());
        let view = cache.dir.open_view(&sha, data.len() as u64).unwrap();
        assert!(view.unwrap().has(0, data.len() as u64).unwrap());
        assert!(o.promote(Some(digest)).unwrap());
        assert_eq!(fs::read(cache.dir.complete_path(&sha)).unwrap(), data);
    }

    #[test]
    fn a_stream_check_refuses_a_bad_piece_and_a_wrong_sha256_is_not_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
        let (data, sha, hashes) = object(PIECE as usize * 3);
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        // Piece 0 missing: no sha256 from a stream starting at piece 1.
        let mut bad = data.clone();
        bad[2 * PIECE as usize + 5] ^= 1;
        o.pwrite(PIECE, &bad[PIECE as usize..]).unwrap();
        let mut c = StreamCheck::new(o.clone(), PIECE, PIECE, PIECE).unwrap();
        c.update(&bad[PIECE as usize..2 * PIECE as usize]).unwrap();
        let e = c.update(&bad[2 * PIECE as usize..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(o.is_verified(1) && !o.is_verified(2));
        let mut c = StreamCheck::new(o.clone(), 2 * PIECE, PIECE, PIECE).unwrap();
        o.pwrite(2 * PIECE, &data[2 * PIECE as usize..]).unwrap();
        c.update(&data[2 * PIECE as usize..]).unwrap();
        assert_eq!(
            c.finish().unwrap(),
            None,
            "the stream did not cover piece 0"
        );
        o.pwrite(0, &data[..PIECE as usize]).unwrap();
        o.verify(0, PIECE).unwrap();
        // A digest that is not the object's: dropped, every bit cleared.
        assert!(o.promote(Some([0u8; 32])).is_err());
        assert_eq!(o.verified_count(), 0);
        assert!(!cache.dir.complete_path(&sha).exists());
    }

    #[test]
    fn the_least_recently_touched_object_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 300 << 10).unwrap();
        let (a, sa, ha) = object(PIECE as usize);
        let (mut b, _, _) = object(PIECE as usize);
        b[0] ^= 1;
        let sb = hex::encode(Sha256::digest(&b));
        let mut hb = PieceHasher::default();
        hb.update(&b);
        let hb = hb.finish();
        for (d, s, h) in [(&a, &sa, &ha), (&b, &sb, &hb)] {
            let o = cache.object(s, d.len() as u64, h).unwrap();
            o.pwrite(0, d).unwrap();
            o.verify(0, d.len() as u64).unwrap();
            assert!(o.promote(None).unwrap());
        }
        // a was read (touched) after b: b goes.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        File::open(cache.dir.complete_path(&sb))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(cache.victims(&HashSet::new()), vec![sb.clone()]);
        // Busy objects are never picked.
        assert_eq!(
            cache.victims(&HashSet::from([sb.clone()])),
            vec![sa.clone()]
        );
    }
}
