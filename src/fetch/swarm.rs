//! librqbit as the seeder (`seed`, store objects read only) and the mirror's fetcher (`lazy`,
//! the cache) both run it: a session on a port known before it announces, and storage for a
//! torrent of one object.
//!
//! Every torrent here has one file, one object, and its storage never creates, removes or
//! resizes anything: a store object must never change, and the cache decides alone what it
//! keeps. So the librqbit plumbing (factory, no-op lifecycle calls, `take`) lives once here and
//! each adapter says only how it reads, writes and checks the length, and which pieces it
//! vouches for without a read (`ObjectFile`). librqbit skips its initial check for those;
//! `FirstReads` checks each against its SHA-1 the first time it is read instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest::{Context as Sha1, SHA1_FOR_LEGACY_USE_ONLY};
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ListenerOptions, Session, SessionOptions};
use tracing::warn;

use crate::sync::lock;

/// The first 8 bytes of the peer id a primary's seeder sends in its handshakes, and a mirror's
/// fetcher. A mirror counts the bytes of a peer whose id starts with `PRIMARY_ID` as the
/// primary's, any other peer's as other mirrors' (`lazy::sources`). Addresses could not tell
/// them apart: on one host (tests, a primary that also mirrors) they share an IP, and the
/// seeder's port is nowhere a mirror can learn it. The id is the peer's own word, so it only
/// ever shifts a statistic: every piece is checked whoever sent it.
pub const PRIMARY_ID: &[u8; 8] = b"-RP0001-";
pub const MIRROR_ID: &[u8; 8] = b"-RM0001-";

/// Whether a peer id (from `PeerStats::peer_id`) is a primary's seeder.
pub fn is_primary(peer_id: &[u8; 20]) -> bool {
    peer_id.starts_with(PRIMARY_ID)
}

/// Starts a session in `scratch` accepting peers on `listen` (port 0: any), without DHT or
/// local discovery: peers come from the trackers the torrents name. `blocking`: librqbit's
/// blocking pool (None: its default). `id`: `PRIMARY_ID` or `MIRROR_ID`, then random bytes.
pub fn session(
    runtime: &tokio::runtime::Runtime,
    scratch: PathBuf,
    listen: SocketAddr,
    blocking: Option<usize>,
    id: &[u8; 8],
) -> anyhow::Result<Arc<Session>> {
    // One open object per torrent.
    if let Err(e) = librqbit::try_increase_nofile_limit() {
        warn!(error = %e, "could not raise the open-file limit");
    }
    // librqbit announces no port for a loopback listener unless told one, and cannot be
    // asked which port 0 became before it announces: pick the port here.
    let listen = match listen.port() {
        0 => std::net::TcpListener::bind(listen)?.local_addr()?,
        _ => listen,
    };
    std::fs::create_dir_all(&scratch)?;
    let opts = SessionOptions {
        dht: None,
        disable_local_service_discovery: true,
        persistence: None,
        runtime_worker_threads: blocking,
        peer_id: Some(librqbit_core::peer_id::generate_peer_id(id)),
        listen: Some(ListenerOptions {
            listen_addr: listen,
            announce_port: Some(listen.port()),
            ..Default::default()
        }),
        ..Default::default()
    };
    runtime.block_on(Session::new_with_opts(scratch, opts))
}

/// The one file of a single-object torrent, as librqbit reads and writes it.
pub trait ObjectFile: Send + Sync + Sized + 'static {
    /// Reads `buf.len()` bytes at `offset` (librqbit checking or uploading pieces).
    fn pread(&self, offset: u64, buf: &mut [u8]) -> anyhow::Result<()>;
    /// Writes a chunk a peer sent at `offset`.
    fn pwrite(&self, offset: u64, buf: &[u8]) -> anyhow::Result<()>;
    /// Err unless the object is `length` bytes, the torrent's length. Never resizes.
    fn check_len(&self, length: u64) -> anyhow::Result<()>;
    /// The file librqbit goes on with after its first check (`TorrentStorage::take`).
    fn take(&self) -> Self;
    /// Which of the `pieces` pieces of this `length`-byte object are good without a read
    /// (verified when they were stored), or None for librqbit to read every piece as the
    /// torrent is added. Each known piece is checked against its SHA-1 when first read.
    fn known_pieces(&self, _length: u64, _pieces: usize) -> Option<Vec<bool>> {
        None
    }
    /// A known piece failed its first-read check (`why`): it is never served from now on.
    fn corrupt(&self, _piece: u64, _why: &str) {}
}

/// Per piece: what a read of it still needs.
#[derive(Clone, Copy, PartialEq)]
enum Piece {
    /// librqbit's: unknown at the start, so checked by librqbit before it serves it.
    Librqbit,
    /// Known at the start and not read since: checked on its first read.
    Unchecked,
    /// Known, and read and checked since.
    Checked,
    /// Known, and failed its check: never read again.
    Corrupt,
}

/// A torrent's known pieces, checked as they are first read: a file changed behind the
/// store's back (or a cache's) is never served, though nothing read it at start.
struct FirstReads {
    /// 20-byte SHA-1 per piece, from the torrent.
    hashes: Vec<u8>,
    length: u64,
    piece: u64,
    state: Mutex<Vec<Piece>>,
}

impl FirstReads {
    fn of(metadata: &librqbit::TorrentMetadata) -> FirstReads {
        let lengths = metadata.info.lengths();
        let piece = lengths.default_piece_length() as u64;
        FirstReads::new(
            metadata.info.info().pieces.as_ref(),
            lengths.total_length(),
            piece,
        )
    }

    fn new(hashes: &[u8], length: u64, piece: u64) -> FirstReads {
        FirstReads {
            hashes: hashes.to_vec(),
            length,
            piece,
            state: Mutex::new(vec![Piece::Librqbit; length.div_ceil(piece) as usize]),
        }
    }

    /// Marks the `known` pieces to be checked on their first read.
    fn know(&self, known: &[bool]) {
        let mut state = lock(&self.state);
        for (s, &k) in state.iter_mut().zip(known) {
            if k {
                *s = Piece::Unchecked;
            }
        }
    }

    /// Checks the unchecked pieces `[offset, offset + len)` touches; Err if one is corrupt.
    fn check<T: ObjectFile>(&self, file: &T, offset: u64, len: usize) -> anyhow::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = offset.saturating_add(len as u64).min(self.length);
        for p in offset / self.piece..end.div_ceil(self.piece) {
            let state = lock(&self.state).get(p as usize).copied();
            match state {
                Some(Piece::Unchecked) => self.verify(file, p)?,
                Some(Piece::Corrupt) => anyhow::bail!("piece {p} is corrupt: not served"),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads piece `p` whole and compares its SHA-1. Concurrent first reads may both hash it.
    fn verify<T: ObjectFile>(&self, file: &T, p: u64) -> anyhow::Result<()> {
        let start = p * self.piece;
        let mut buf = vec![0; (self.length - start).min(self.piece) as usize];
        let why = match file.pread(start, &mut buf) {
            Ok(()) => {
                let mut sha1 = Sha1::new(&SHA1_FOR_LEGACY_USE_ONLY);
                sha1.update(&buf);
                let want = self.hashes.get(p as usize * 20..p as usize * 20 + 20);
                if want == Some(sha1.finish().as_ref()) {
                    self.set(p, Piece::Checked);
                    return Ok(());
                }
                format!("piece {p} does not match its SHA-1")
            }
            Err(e) if is_short(&e) => format!("piece {p} is cut short ({e:#})"),
            // Not the bytes' fault (yet): not served now, checked again on the next read.
            Err(e) => return Err(e),
        };
        if self.set(p, Piece::Corrupt) {
            file.corrupt(p, &why);
        }
        anyhow::bail!("{why}: not served")
    }

    /// Settles unchecked piece `p` as `to`; true if it was unchecked. A verdict stands: a
    /// concurrent check that read other bytes does not undo `Corrupt`.
    fn set(&self, p: u64, to: Piece) -> bool {
        let mut state = lock(&self.state);
        match state.get_mut(p as usize) {
            Some(s) if *s == Piece::Unchecked => {
                *s = to;
                true
            }
            _ => false,
        }
    }
}

/// Whether a read failed because the file ended early.
fn is_short(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// The storage librqbit drives, over one `ObjectFile`.
pub struct Storage<T> {
    file: T,
    /// Shared with the storage `take` hands over: the check's state outlives the first one.
    first: Arc<FirstReads>,
}

impl<T: ObjectFile> TorrentStorage for Storage<T> {
    fn init(
        &mut self,
        _: &librqbit::ManagedTorrentShared,
        _: &librqbit::TorrentMetadata,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, _file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.first.check(&self.file, offset, buf.len())?;
        self.file.pread(offset, buf)
    }

    fn known_pieces(&self) -> Option<Vec<bool>> {
        let first = &self.first;
        let known = self
            .file
            .known_pieces(first.length, lock(&first.state).len())?;
        first.know(&known);
        Some(known)
    }

    fn pwrite_all(&self, _file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.file.pwrite(offset, buf)
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        Ok(()) // a store object outlives any torrent of it; the cache decides what goes
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _file_id: usize, length: u64) -> anyhow::Result<()> {
        self.file.check_len(length)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(Storage {
            file: self.file.take(),
            first: self.first.clone(),
        }))
    }
}

/// Makes a torrent's storage with `open`, called when librqbit creates it.
#[derive(Clone)]
struct Factory<F>(F);

impl<T, F> StorageFactory for Factory<F>
where
    T: ObjectFile,
    F: Fn() -> anyhow::Result<T> + Clone + Send + Sync + 'static,
{
    type Storage = Storage<T>;

    fn create(
        &self,
        _: &librqbit::ManagedTorrentShared,
        metadata: &librqbit::TorrentMetadata,
    ) -> anyhow::Result<Storage<T>> {
        Ok(Storage {
            file: (self.0)()?,
            first: Arc::new(FirstReads::of(metadata)),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// The storage factory for `AddTorrentOptions::storage_factory`: each storage librqbit
/// creates is `open()`'s file.
pub fn factory<T, F>(open: F) -> BoxStorageFactory
where
    T: ObjectFile,
    F: Fn() -> anyhow::Result<T> + Clone + Send + Sync + 'static,
{
    Factory(open).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An object in memory that counts its reads and its corrupt reports.
    #[derive(Clone, Default)]
    struct Mem {
        bytes: Arc<Mutex<Vec<u8>>>,
        reads: Arc<AtomicUsize>,
        corrupt: Arc<Mutex<Vec<u64>>>,
    }

    impl ObjectFile for Mem {
        fn pread(&self, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let bytes = lock(&self.bytes);
            let src = bytes
                .get(offset as usize..offset as usize + buf.len())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn pwrite(&self, _: u64, _: &[u8]) -> anyhow::Result<()> {
            anyhow::bail!("read-only")
        }
        fn check_len(&self, _: u64) -> anyhow::Result<()> {
            Ok(())
        }
        fn take(&self) -> Mem {
            self.clone()
        }
        fn corrupt(&self, piece: u64, _: &str) {
            lock(&self.corrupt).push(piece);
        }
    }

    const P: u64 = 4;

    /// Ten bytes in pieces of four (the last of two), with their SHA-1s.
    fn object() -> (Mem, FirstReads) {
        let bytes: Vec<u8> = (0..10).collect();
        let hashes: Vec<u8> = bytes
            .chunks(P as usize)
            .flat_map(|c| {
                let mut h = Sha1::new(&SHA1_FOR_LEGACY_USE_ONLY);
                h.update(c);
                h.finish().as_ref().to_vec()
            })
            .collect();
        let mem = Mem::default();
        *lock(&mem.bytes) = bytes;
        (mem, FirstReads::new(&hashes, 10, P))
    }

    fn reads(mem: &Mem) -> usize {
        mem.reads.load(Ordering::Relaxed)
    }

    /// A known piece is read whole and hashed once, on its first read; pieces librqbit
    /// checks itself are not.
    #[test]
    fn a_known_piece_is_checked_once_on_first_read() {
        let (mem, first) = object();
        first.know(&[true, true, false]);
        first.check(&mem, 8, 2).unwrap();
        assert_eq!(reads(&mem), 0, "piece 2 is librqbit's");
        first.check(&mem, 5, 2).unwrap();
        assert_eq!(reads(&mem), 1, "piece 1 read whole");
        first.check(&mem, 4, 4).unwrap();
        assert_eq!(reads(&mem), 1, "and only once");
        first.check(&mem, 3, 2).unwrap();
        assert_eq!(reads(&mem), 2, "a read across 0 and 1 checks 0");
        assert!(lock(&mem.corrupt).is_empty());
    }

    /// A changed byte fails its piece, reported once and refused from then on; the other
    /// pieces are still served.
    #[test]
    fn a_changed_piece_is_refused_and_reported_once() {
        let (mem, first) = object();
        first.know(&[true, true, true]);
        lock(&mem.bytes)[5] ^= 1;
        let e = first.check(&mem, 4, 1).unwrap_err();
        assert!(format!("{e}").contains("piece 1 does not match"), "{e}");
        assert!(first.check(&mem, 6, 1).is_err());
        assert_eq!(*lock(&mem.corrupt), [1]);
        first.check(&mem, 0, 4).unwrap();
        first.check(&mem, 8, 2).unwrap();
    }

    /// A file cut short fails the pieces it no longer holds.
    #[test]
    fn a_short_file_fails_its_missing_pieces() {
        let (mem, first) = object();
        first.know(&[true, true, true]);
        lock(&mem.bytes).truncate(9);
        let e = first.check(&mem, 8, 2).unwrap_err();
        assert!(format!("{e}").contains("cut short"), "{e}");
        assert_eq!(*lock(&mem.corrupt), [2]);
        first.check(&mem, 0, 8).unwrap();
    }
}
