//! The primary as first seeder: every published file's torrent, served by librqbit straight
//! from the store.
//!
//! librqbit's default storage opens files read-write and truncates or recreates what does not
//! match (platform notes); a store object must never change. So each torrent gets a storage
//! of its own that reads its one store object and refuses every write. The seeder is the only
//! part of repofsd that runs an async runtime; it follows the catalog by polling its data
//! version, as the mount does.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use librqbit::{AddTorrent, AddTorrentOptions, Session};
use tracing::{info, warn};

use super::swarm::{self, ObjectFile};
use crate::catalog::Catalog;
use crate::store::Store;
use crate::torrent;

/// One store object, read-only: every write is refused.
struct ReadOnly(Arc<File>);

impl ObjectFile for ReadOnly {
    fn pread(&self, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        Ok(self.0.read_exact_at(buf, offset)?)
    }

    fn pwrite(&self, _: u64, _: &[u8]) -> anyhow::Result<()> {
        anyhow::bail!("store objects are never written")
    }

    fn check_len(&self, length: u64) -> anyhow::Result<()> {
        let have = self.0.metadata()?.len();
        anyhow::ensure!(
            have == length,
            "store object is {have} bytes, torrent says {length}"
        );
        Ok(())
    }

    fn take(&self) -> ReadOnly {
        ReadOnly(self.0.clone())
    }
}

/// The storage of a store object's torrent: the object opened read-only.
fn store_object(path: PathBuf) -> librqbit::storage::BoxStorageFactory {
    let path = Arc::new(path);
    swarm::factory(move || {
        let file = File::open(&*path).with_context(|| format!("opening {}", path.display()))?;
        Ok(ReadOnly(Arc::new(file)))
    })
}

/// How often the seeder looks for new publications.
const POLL: Duration = Duration::from_secs(1);

pub struct Seeder {
    runtime: tokio::runtime::Runtime,
    session: Arc<Session>,
}

impl Seeder {
    /// Starts a session accepting peers on `listen` (port 0: any), without DHT or local
    /// discovery: peers come from the trackers the torrents name.
    pub fn start(scratch: &Path, listen: SocketAddr) -> anyhow::Result<Seeder> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("seeder")
            .build()?;
        let session = swarm::session(&runtime, scratch.to_path_buf(), listen, None)
            .context("starting the BitTorrent session")?;
        info!(addr = ?session.listen_addr(), "seeding");
        Ok(Seeder { runtime, session })
    }

    /// Where peers reach this seeder.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    /// Seeds every published file and seekable twin not seeded yet, by object (identical
    /// files share one torrent). librqbit checks each object's pieces once as it is added (a
    /// read of the object).
    pub fn sync(
        &self,
        catalog: &Catalog,
        store: &Store,
        trackers: &[String],
        seeded: &mut HashMap<String, String>,
    ) -> anyhow::Result<()> {
        for (sha256, hash) in catalog.seedable_objects()? {
            if seeded.contains_key(&sha256) {
                continue;
            }
            let Some((_, info, _)) = catalog.object_torrent(&sha256)? else {
                continue;
            };
            let bytes = torrent::torrent_file(&info, trackers, &[], "")?;
            let opts = AddTorrentOptions {
                overwrite: true,
                storage_factory: Some(store_object(store.object_path(&sha256))),
                ..Default::default()
            };
            let added = self.runtime.block_on(
                self.session
                    .add_torrent(AddTorrent::TorrentFileBytes(bytes.into()), Some(opts)),
            );
            match added {
                Ok(_) => {
                    seeded.insert(sha256, hash);
                }
                Err(e) => warn!(object = %sha256, error = %format!("{e:#}"), "cannot seed"),
            }
        }
        Ok(())
    }

    /// Polls the catalog until `stop` is set, seeding what gets published and telling the
    /// tracker what is seeded.
    pub fn follow(
        &self,
        catalog: &Catalog,
        store: &Store,
        trackers: &[String],
        tracker: &super::tracker::Tracker,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        let mut seeded = HashMap::new();
        let mut version = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let now = catalog.data_version().ok();
            if now.is_none() || now != version {
                match self.sync(catalog, store, trackers, &mut seeded) {
                    Ok(()) => {
                        version = now;
                        tracker.set_published(seeded.values().cloned().collect());
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), "seeding sync failed"),
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// Connects to `peer` for the torrent `info_hash` if seeding it (a leecher the tracker
    /// just heard from: the seeder need not wait for its own next announce to learn of it).
    pub fn add_peer(&self, info_hash: [u8; 20], peer: SocketAddr) {
        let id = librqbit::api::TorrentIdOrHash::Hash(librqbit_core::Id20::new(info_hash));
        if let Some(live) = self.session.get(id).and_then(|t| t.live()) {
            if let Err(e) = live.add_peer_if_not_seen(peer) {
                tracing::debug!(error = %e, %peer, "seeder: cannot add the peer");
            }
        }
    }

    /// Stops seeding: peers are disconnected, nothing is written.
    pub fn stop(self) {
        self.runtime.block_on(self.session.stop());
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}
