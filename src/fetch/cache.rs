//! A mirror's object cache, `ROOT/mirror/`.
//!
//! - `complete/<sha256>`: whole objects whose sha256 (from the catalog) was checked; read like
//!   store objects (passthrough).
//! - `partial/<sha256>`: a sparse file of the object's size, and `partial/<sha256>.bits`, one
//!   byte per 256 KiB torrent piece: 2 once that piece's bytes were checked against the
//!   torrent's SHA-1 (readable in this boot), 1 once they are durable too (the data file is
//!   synced before the 1 is written, so a crash can lose a bit, never leave a bit over bytes
//!   that are not there). Readers never wait on the sync (`record`).
//!
//! Only repofsd writes here. The mount reads bits and data of partial objects and touches the
//! mtime of what it opens: eviction takes the least recently touched first.

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::torrent::PIECE_LENGTH;

mod evict;
mod record;
mod repair;
mod stream;
mod tally;

pub use record::RECORD_EVERY;
pub use stream::StreamCheck;

const PIECE: u64 = PIECE_LENGTH as u64;
/// While the cache is written, `usage` lists it at most this often.
const USAGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

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
                fresh: false,
            }));
        }
        // Read before the bits: a cache named for this boot later has no 2 of another.
        let fresh = record::fresh(self.root());
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
                    .map(|data| PartialView {
                        data,
                        bits: None,
                        fresh: false,
                    }))
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
            fresh,
        }))
    }
}

/// An object's cache files as the mount opened them (bits None: complete).
pub struct PartialView {
    data: File,
    bits: Option<File>,
    /// The cache names this boot: a 2 (verified, maybe not yet durable) counts.
    fresh: bool,
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
        Ok(n == buf.len()
            && buf
                .iter()
                .all(|&b| b == record::RECORDED || (b == record::READABLE && self.fresh)))
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
    /// Checked against their SHA-1 (readable; `recorder` makes them durable).
    verified: Mutex<Vec<bool>>,
    recorder: record::Recorder,
    promoting: Mutex<()>,
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
    /// The cache's, told of every write (`usage` lists only after one).
    tally: Arc<tally::Tally>,
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

    /// Each piece's state: verified (against its SHA-1) or not.
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
    /// seals those that match (readable now, recorded once durable).
    /// Err(InvalidData) if the bytes of a piece are not that piece.
    pub fn verify(self: &Arc<Self>, from: u64, to: u64) -> io::Result<()> {
        self.verify_pieces(pieces(from, to.min(self.size)))
    }

    /// `verify` of the given pieces, wherever they are.
    pub fn verify_pieces(
        self: &Arc<Self>,
        pieces: impl IntoIterator<Item = u64>,
    ) -> io::Result<()> {
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
    /// against the piece's SHA-1; `readable` and `seal` then count it. Ok(false): already verified, not
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
        self.tally.wrote(start, end - start);
        Ok(true)
    }

    /// Once every piece is verified: checks the whole object's sha256 and moves it to
    /// `complete/`. Ok(false) if pieces are missing. `streamed`: the sha256 of the object's
    /// bytes as one in-order stream returned them (`StreamCheck`); without it, the file is
    /// read again.
    pub fn promote(&self, streamed: Option<[u8; 32]>) -> io::Result<bool> {
        // One at a time: the others find it complete instead of hashing it again.
        let _one = lock(&self.promoting);
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
        // A complete object is trusted as it is on disk: durable before it is one.
        self.data.sync_data()?;
        fs::create_dir_all(self.dir.root().join("complete"))?;
        fs::rename(
            self.dir.partial_path(&self.sha256),
            self.dir.complete_path(&self.sha256),
        )?;
        self.complete.store(true, Ordering::Release);
        *lock(&self.bits) = None;
        let _ = self.tally.remove_file(&self.dir.bits_path(&self.sha256));
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
        self.tally.wrote(offset, buf.len() as u64);
        self.downloaded
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
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
    tally: Arc<tally::Tally>,
}

impl Cache {
    pub fn new(dir: CacheDir, limit: u64) -> io::Result<Cache> {
        fs::create_dir_all(dir.root().join("partial"))?;
        fs::create_dir_all(dir.root().join("complete"))?;
        record::adopt(&dir)?;
        let block = fs::metadata(dir.root().join("partial"))?.blksize();
        Ok(Cache {
            dir,
            limit,
            objects: Mutex::new(HashMap::new()),
            tally: Arc::new(tally::Tally::new(block)),
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
        let mut readable = Vec::new();
        let o = match File::open(self.dir.complete_path(sha256)) {
            Ok(data) if data.metadata()?.len() == size => {
                self.open_object(sha256, size, hashes, data, None, vec![true; n])
            }
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
                // Its bits file may grow to one block per 4,096 pieces, holes filled.
                self.tally.made(n as u64);
                if data.metadata()?.len() == size && bits.metadata()?.len() == n as u64 {
                    let mut b = vec![0u8; n];
                    bits.read_exact_at(&mut b, 0)?;
                    // A 2 here is of this boot (`Cache::new` cleared others): recorded below.
                    for (v, b) in verified.iter_mut().zip(&b) {
                        *v = *b == record::RECORDED || *b == record::READABLE;
                    }
                    readable = (0..n as u64)
                        .filter(|&p| b[p as usize] == record::READABLE)
                        .collect();
                } else {
                    // New, or torn before it was set up: start empty.
                    bits.set_len(0)?;
                    bits.set_len(n as u64)?;
                    data.set_len(0)?;
                    data.set_len(size)?;
                }
                self.open_object(sha256, size, hashes, data, Some(bits), verified)
            }
        };
        let o = Arc::new(o);
        o.record_later(&readable);
        objects.insert(sha256.to_string(), o.clone());
        Ok(o)
    }

    /// An object over its opened files: complete when it has no bits file.
    fn open_object(
        &self,
        sha256: &str,
        size: u64,
        hashes: &[u8],
        data: File,
        bits: Option<File>,
        verified: Vec<bool>,
    ) -> CacheObject {
        CacheObject {
            sha256: sha256.into(),
            size,
            hashes: hashes.to_vec(),
            data,
            complete: AtomicBool::new(bits.is_none()),
            bits: Mutex::new(bits),
            verified: Mutex::new(verified),
            recorder: Default::default(),
            promoting: Mutex::new(()),
            downloaded: AtomicU64::new(0),
            from_origin: AtomicU64::new(0),
            ahead: AtomicU64::new(0),
            streaming: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            dir: self.dir.clone(),
            tally: self.tally.clone(),
        }
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

    /// Bytes the cache occupies on disk (sparse files count what is allocated). Lists the
    /// directory only if something was written since the last listing, at most every
    /// `USAGE_EVERY`; in between, an upper bound (what was written since, counted whole).
    pub fn usage(&self) -> u64 {
        self.known_usage().unwrap_or_else(|| self.list().1)
    }

    /// Least recently touched objects to drop so that the cache fits its limit, never one
    /// in `busy`. None without a listing while `known_usage` is within the limit.
    pub fn victims(&self, busy: &HashSet<String>) -> Vec<String> {
        if self.known_usage().is_some_and(|b| b <= self.limit) {
            return Vec::new();
        }
        evict::victims(self.list().0, self.limit, busy)
    }

    /// The usage without a listing: exact if nothing was written since the last one, else
    /// its bound while that listing is younger than `USAGE_EVERY` (so that a bound which
    /// counted a file system's allocation short is corrected that often while writes go on).
    fn known_usage(&self) -> Option<u64> {
        self.tally
            .exact()
            .or_else(|| self.tally.recent_bound(USAGE_EVERY))
    }

    fn list(&self) -> (Vec<evict::Entry>, u64) {
        self.tally.list(|| {
            let entries = evict::entries(&self.dir);
            let total = entries.iter().map(|e| e.bytes).sum();
            (entries, total)
        })
    }

    /// Drops an object from the cache (its torrent must be gone from the session first).
    pub fn remove(&self, sha256: &str) {
        lock(&self.objects).remove(sha256);
        for p in [
            self.dir.bits_path(sha256),
            self.dir.partial_path(sha256),
            self.dir.complete_path(sha256),
        ] {
            match self.tally.remove_file(&p) {
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

    /// A cache in a temporary directory (gone with it), and an object of `len` bytes opened
    /// in it: its bytes, sha256 and piece hashes, and the open object.
    pub(super) fn cached(
        len: usize,
    ) -> (
        tempfile::TempDir,
        Cache,
        Vec<u8>,
        String,
        Vec<u8>,
        Arc<CacheObject>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 1 << 30).unwrap();
        let (data, sha, hashes) = object(len);
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        (dir, cache, data, sha, hashes, o)
    }

    pub(super) fn object(len: usize) -> (Vec<u8>, String, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = PieceHasher::default();
        h.update(&data);
        let sha = hex::encode(Sha256::digest(&data));
        (data, sha, h.finish())
    }

    #[test]
    fn a_bit_is_set_only_for_a_piece_whose_bytes_match() {
        let (_dir, cache, data, sha, _, o) = cached(PIECE as usize * 2 + 1000);
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
    fn the_least_recently_touched_object_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), 300 << 10).unwrap();
        // Listed empty: from here only the writes' tally can tell eviction to look again.
        assert_eq!(cache.usage(), 0);
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
        // A removal keeps the total true without a listing.
        cache.remove(&sb);
        let listed: u64 = evict::entries(&cache.dir).iter().map(|e| e.bytes).sum();
        assert_eq!(cache.tally.exact(), Some(listed));
        assert!(cache.victims(&HashSet::new()).is_empty());
    }
}
