//! librqbit as the seeder (`seed`, store objects read only) and the mirror's fetcher (`lazy`,
//! the cache) both run it: a session on a port known before it announces, and storage for a
//! torrent of one object.
//!
//! Every torrent here has one file, one object, and its storage never creates, removes or
//! resizes anything: a store object must never change, and the cache decides alone what it
//! keeps. So the librqbit plumbing (factory, no-op lifecycle calls, `take`) lives once here and
//! each adapter says only how it reads, writes and checks the length (`ObjectFile`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ListenerOptions, Session, SessionOptions};
use tracing::warn;

/// Starts a session in `scratch` accepting peers on `listen` (port 0: any), without DHT or
/// local discovery: peers come from the trackers the torrents name. `blocking`: librqbit's
/// blocking pool (None: its default).
pub fn session(
    runtime: &tokio::runtime::Runtime,
    scratch: PathBuf,
    listen: SocketAddr,
    blocking: Option<usize>,
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
}

/// The storage librqbit drives, over one `ObjectFile`.
pub struct Storage<T>(T);

impl<T: ObjectFile> TorrentStorage for Storage<T> {
    fn init(
        &mut self,
        _: &librqbit::ManagedTorrentShared,
        _: &librqbit::TorrentMetadata,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, _file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.0.pread(offset, buf)
    }

    fn pwrite_all(&self, _file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.0.pwrite(offset, buf)
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        Ok(()) // a store object outlives any torrent of it; the cache decides what goes
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _file_id: usize, length: u64) -> anyhow::Result<()> {
        self.0.check_len(length)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(Storage(self.0.take())))
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
        _: &librqbit::TorrentMetadata,
    ) -> anyhow::Result<Storage<T>> {
        Ok(Storage((self.0)()?))
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
