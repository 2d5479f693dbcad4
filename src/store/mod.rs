//! The content store: published bytes, addressed by their SHA-256.
//!
//! Layout: `objects/ab/abcdef…` (immutable, 0444) and `tmp/` for objects being written.
//! Bytes are copied in while they are hashed and verified (`Staging`), so what is published is
//! exactly what was checked, even if the uploader rewrites the spool file afterwards, and each
//! byte is read once for md5, sha256 and the signature together.
//!
//! Crash safety comes from ordering: an object is fsynced and renamed into place *before* the
//! catalog transaction that refers to it commits. A crash in between leaves an unreferenced
//! object, which `gc` removes at start-up; a committed catalog row never points at nothing.
//! Storage I/O is synchronous on purpose: it is sequential, and simpler than async here.

pub mod object;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::torrent::PieceHasher;
pub use object::{object_path, read_exact_at, ReadAt, Received};

pub struct Store {
    root: PathBuf,
}

/// Hashes of one file, computed in a single pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub sha256: String,
    pub md5: String,
    pub size: u64,
    /// SHA-1 of each BitTorrent piece (`torrent::PIECE_LENGTH`), concatenated.
    pub pieces: Vec<u8>,
}

/// What `gc` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub orphans: usize,
    pub temporaries: usize,
}

impl Store {
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root.join("objects"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Where object `sha256` is (or would be) once committed.
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        object_path(&self.root, sha256)
    }

    /// Starts writing a new object into `tmp/`.
    pub fn stage(&self) -> io::Result<Staging> {
        self.stage_received(None)
    }

    /// Like `stage`, borrowing the md5 the mount computed as the file streamed in
    /// (`received`) instead of computing it again: md5 is the slowest hash here (~600 MB/s).
    /// sha256 is always computed over the bytes staged, and the md5 is only borrowed if that
    /// sha256 is the one recorded with it; otherwise the staged copy is hashed once more.
    fn stage_received(&self, received: Option<&Received>) -> io::Result<Staging> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}.{}.{}",
            std::process::id(),
            crate::time::now(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.root.join("tmp").join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Staging {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hashing: Some(Hashing {
                md5: received.is_none().then(Md5::new),
                received: received.cloned(),
                sha256: Sha256::new(),
                pieces: PieceHasher::default(),
                size: 0,
            }),
            written: 0,
        })
    }

    /// Moves a finished object into place. Idempotent: an object with the same hash already
    /// present is identical by definition, and the staged copy is dropped.
    pub fn commit(&self, staged: &mut Staged) -> io::Result<PathBuf> {
        let dest = self.object_path(&staged.hashes.sha256);
        let Some(src) = staged.path.take() else {
            return Ok(dest);
        };
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        if dest.exists() {
            fs::remove_file(&src)?;
            return Ok(dest);
        }
        fs::set_permissions(&src, fs::Permissions::from_mode(0o444))?;
        fs::rename(&src, &dest)?;
        File::open(&dir)?.sync_all()?;
        Ok(dest)
    }

    /// Removes temporaries and objects the catalog does not reference. Run at start-up only,
    /// by the single writer, before any publication can be in flight.
    pub fn gc(&self, referenced: &HashSet<String>) -> io::Result<GcReport> {
        let mut report = GcReport::default();
        for e in fs::read_dir(self.root.join("tmp"))? {
            fs::remove_file(e?.path())?;
            report.temporaries += 1;
        }
        for prefix in fs::read_dir(self.root.join("objects"))? {
            let prefix = prefix?;
            if !prefix.file_type()?.is_dir() {
                continue;
            }
            for obj in fs::read_dir(prefix.path())? {
                let obj = obj?;
                let name = obj.file_name();
                if !referenced.contains(name.to_string_lossy().as_ref()) {
                    fs::remove_file(obj.path())?;
                    report.orphans += 1;
                }
            }
        }
        Ok(report)
    }

    /// All object hashes present (for consistency checks and tests).
    pub fn objects(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for prefix in fs::read_dir(self.root.join("objects"))? {
            let prefix = prefix?;
            if prefix.file_type()?.is_dir() {
                for obj in fs::read_dir(prefix.path())? {
                    out.push(obj?.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The sha256 (hex) of a file's bytes as they are now: an object checked again, a file an
/// installation left behind.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    io::copy(
        &mut io::BufReader::with_capacity(1 << 20, File::open(path)?),
        &mut h,
    )?;
    Ok(hex::encode(h.finalize()))
}

/// An object being written: every byte written is hashed on the way to disk.
pub struct Staging {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    /// Taken while the bytes are hashed on a thread of their own (`stage_while`).
    hashing: Option<Hashing>,
    written: u64,
}

/// md5 (unless borrowed from what the mount received), sha256 and the torrent's piece
/// hashes of the bytes staged.
struct Hashing {
    md5: Option<Md5>,
    received: Option<Received>,
    sha256: Sha256,
    pieces: PieceHasher,
    size: u64,
}

impl Hashing {
    fn update(&mut self, b: &[u8]) {
        if let Some(md5) = &mut self.md5 {
            md5.update(b);
        }
        self.sha256.update(b);
        self.pieces.update(b);
        self.size += b.len() as u64;
    }

    fn finish(self, staged: &Path) -> io::Result<Hashes> {
        let sha256 = hex::encode(self.sha256.finalize());
        let md5 = match (self.md5, self.received) {
            (Some(md5), _) => hex::encode(md5.finalize()),
            (None, Some(r)) if r.sha256 == sha256 => r.md5,
            // Not the bytes the mount hashed (rewritten since): hash the staged copy.
            (None, _) => {
                let mut md5 = Md5::new();
                io::copy(&mut File::open(staged)?, &mut md5)?;
                hex::encode(md5.finalize())
            }
        };
        Ok(Hashes {
            sha256,
            md5,
            size: self.size,
            pieces: self.pieces.finish(),
        })
    }
}

/// Written bytes are handed to the disk in windows of this size as they come, so the fsync
/// at the end waits for the last window, not for the whole object.
const WRITEBACK_WINDOW: u64 = 8 << 20;

impl Staging {
    /// Flushes, fsyncs and returns the finished (not yet committed) object.
    pub fn finish(mut self) -> io::Result<Staged> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("staging already finished"))?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let hashes = self
            .hashing
            .take()
            .ok_or_else(|| io::Error::other("staging lost its hashes"))?
            .finish(&self.path)?;
        Ok(Staged {
            path: Some(std::mem::take(&mut self.path)),
            hashes,
        })
    }
}

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("staging finished"))?;
        let n = file.write(buf)?;
        if let Some(h) = &mut self.hashing {
            h.update(&buf[..n]);
        }
        let before = self.written;
        self.written += n as u64;
        if before / WRITEBACK_WINDOW != self.written / WRITEBACK_WINDOW {
            file.flush()?;
            let start = (before / WRITEBACK_WINDOW) * WRITEBACK_WINDOW;
            // SAFETY: a valid fd; this only starts writeback of a range already written.
            unsafe {
                libc::sync_file_range(
                    file.get_ref().as_raw_fd(),
                    start as i64,
                    (self.written - start) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A fully written, fsynced object in `tmp/`. Removed on drop unless committed.
pub struct Staged {
    path: Option<PathBuf>,
    pub hashes: Hashes,
}

impl Staged {
    /// Where the bytes are right now (in `tmp/` until committed).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// The error a staging reader returns once more than its limit has passed through it.
#[derive(Debug, thiserror::Error)]
#[error("file exceeds {0} bytes")]
pub struct TooLarge(pub u64);

/// Where `StageReader` sends what it read; shared by the writer and hasher threads.
type ChunkSender = std::sync::mpsc::SyncSender<Arc<Vec<u8>>>;

/// Bytes handed to the store threads at a time.
const CHUNK: usize = 1 << 20;

impl Store {
    /// Stages everything `input` yields while `consume` reads it (e.g. a signature check).
    /// The copy is hashed on a second thread and written on a third, so one read of an upload
    /// costs max(consume, hashes, write) instead of their sum. Whatever `consume` leaves
    /// unread is read afterwards: the staged object is always the whole input.
    /// More than `limit` bytes make reads fail with a `TooLarge` error.
    pub fn stage_while<R, T>(
        &self,
        input: R,
        limit: u64,
        received: Option<&Received>,
        consume: impl FnOnce(&mut StageReader<R>) -> T,
    ) -> io::Result<(T, io::Result<Staged>)>
    where
        R: Read + Send + Sync,
    {
        let mut staging = self.stage_received(received)?;
        let mut hashing = staging
            .hashing
            .take()
            .ok_or_else(|| io::Error::other("staging lost its hashes"))?;
        let (to_writer, for_writer) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(4);
        let (to_hasher, for_hasher) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(4);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let recycle_tx2 = recycle_tx.clone();
        // Whichever of the two threads is done with a chunk last hands it back for reuse.
        let recycle = |tx: &std::sync::mpsc::Sender<Vec<u8>>, chunk: Arc<Vec<u8>>| {
            if let Some(v) = Arc::into_inner(chunk) {
                let _ = tx.send(v);
            }
        };
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> io::Result<Staging> {
                for chunk in for_writer {
                    staging.write_all(&chunk)?;
                    recycle(&recycle_tx, chunk);
                }
                Ok(staging)
            });
            let hasher = scope.spawn(move || -> Hashing {
                for chunk in for_hasher {
                    hashing.update(&chunk);
                    recycle(&recycle_tx2, chunk);
                }
                hashing
            });
            let mut reader = StageReader {
                inner: input,
                tx: Some((to_writer, to_hasher)),
                recycled: std::sync::Mutex::new(recycle_rx),
                pending: Vec::with_capacity(CHUNK),
                passed: 0,
                limit,
            };
            let out = consume(&mut reader);
            let rest = io::copy(&mut reader, &mut io::sink()).and_then(|_| reader.flush_pending());
            drop(reader); // closes the channels: writer and hasher finish
            let hashing = hasher.join();
            let staged = match (writer.join(), hashing) {
                (Ok(Ok(mut staging)), Ok(hashing)) => rest.and_then(|()| {
                    staging.hashing = Some(hashing);
                    staging.finish()
                }),
                (Ok(Err(e)), _) => Err(e),
                _ => Err(io::Error::other("store thread panicked")),
            };
            Ok((out, staged))
        })
    }
}

/// What `stage_while` hands its consumer: reads `input`, passing every byte to the store.
pub struct StageReader<R> {
    inner: R,
    /// To the writer and to the hasher.
    tx: Option<(ChunkSender, ChunkSender)>,
    /// Chunks the writer is done with, reused so a large upload does not allocate per MiB.
    recycled: std::sync::Mutex<std::sync::mpsc::Receiver<Vec<u8>>>,
    pending: Vec<u8>,
    passed: u64,
    limit: u64,
}

impl<R> StageReader<R> {
    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let next = self
            .recycled
            .lock()
            .ok()
            .and_then(|r| r.try_recv().ok())
            .map(|mut v| {
                v.clear();
                v
            })
            .unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let full = Arc::new(std::mem::replace(&mut self.pending, next));
        let (writer, hasher) = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("staging closed"))?;
        // A send fails only if the writer stopped; its own error is reported by stage_while.
        hasher
            .send(full.clone())
            .and_then(|()| writer.send(full))
            .map_err(|_| io::Error::other("store writer stopped"))
    }
}

impl<R: Read> Read for StageReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.passed += n as u64;
        if self.passed > self.limit {
            return Err(io::Error::other(TooLarge(self.limit)));
        }
        self.pending.extend_from_slice(&buf[..n]);
        if n == 0 || self.pending.len() >= CHUNK {
            self.flush_pending()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_hashes_commit_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut s = store.stage().unwrap();
        s.write_all(b"abc").unwrap();
        let mut staged = s.finish().unwrap();
        assert_eq!(
            staged.hashes.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(staged.hashes.md5, "900150983cd24fb0d6963f7d28e17f72");
        let path = store.commit(&mut staged).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        // Committing the same content again is a no-op that leaves no temporary behind.
        let mut again = store.stage().unwrap();
        again.write_all(b"abc").unwrap();
        store.commit(&mut again.finish().unwrap()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // An abandoned staging and an unreferenced object are removed by gc, the rest kept.
        let mut orphan = store.stage().unwrap();
        orphan.write_all(b"orphan").unwrap();
        let mut orphan = orphan.finish().unwrap();
        store.commit(&mut orphan).unwrap();
        std::mem::forget(store.stage().unwrap()); // as if the process died mid-write
        let keep: HashSet<String> = [staged.hashes.sha256.clone()].into();
        assert_eq!(
            store.gc(&keep).unwrap(),
            GcReport {
                orphans: 1,
                temporaries: 1
            }
        );
        assert_eq!(store.objects().unwrap(), vec![staged.hashes.sha256.clone()]);
    }

    #[test]
    fn md5_is_borrowed_only_with_the_sha256_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let stage = |received: &Received| {
            let (_, staged) = store
                .stage_while(&b"abc"[..], 100, Some(received), |r| {
                    io::copy(r, &mut io::sink())
                })
                .unwrap();
            staged.unwrap().hashes.md5.clone()
        };
        // Recorded with the sha256 of these bytes: the md5 is taken as recorded (not recomputed,
        // which this made-up value shows).
        let borrowed = Received {
            md5: "recorded-md5".into(),
            sha256: sha_abc.into(),
        };
        assert_eq!(stage(&borrowed), "recorded-md5");
        // Recorded for other bytes: ignored, the md5 of what was staged is computed.
        let stale = Received {
            md5: "recorded-md5".into(),
            sha256: "00".repeat(32),
        };
        assert_eq!(stage(&stale), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn stage_while_copies_everything_once_and_enforces_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        // The consumer reads only a little; the rest is still staged.
        let (first, staged) = store
            .stage_while(&data[..], 10_000_000, None, |r| {
                let mut head = [0u8; 10];
                r.read_exact(&mut head).map(|()| head)
            })
            .unwrap();
        assert_eq!(first.unwrap(), data[..10]);
        let mut staged = staged.unwrap();
        assert_eq!(staged.hashes.size, data.len() as u64);
        assert_eq!(fs::read(store.commit(&mut staged).unwrap()).unwrap(), data);

        let (res, staged) = store
            .stage_while(&data[..], 1000, None, |r| io::copy(r, &mut io::sink()))
            .unwrap();
        let err = res.unwrap_err();
        assert!(err
            .get_ref()
            .and_then(|e| e.downcast_ref::<TooLarge>())
            .is_some());
        assert!(staged.is_err());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "temporary left behind"
        );
    }
}
