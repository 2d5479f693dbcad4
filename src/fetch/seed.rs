//! The primary as first seeder: every published file's torrent, served by librqbit straight
//! from the store.
//!
//! librqbit's default storage opens files read-write and truncates or recreates what does not
//! match (platform notes); a store object must never change. So each torrent gets a storage
//! of its own that reads its one store object and refuses every write. The seeder is the only
//! part of repofsd that runs an async runtime; it follows the catalog by polling its data
//! version, as the mount does.
//!
//! Nothing is read to start seeding: every object's sha256 was checked when it was published
//! and the store never changes one, so a torrent starts with every piece (librqbit's initial
//! check skipped), and each piece is checked against its SHA-1 when first read for a peer. A
//! file changed behind the store's back is never served: its bad piece is refused, the object
//! is dropped from seeding and the tracker, and the log says why (`corrupt-object`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use librqbit::{AddTorrent, AddTorrentOptions, AddTorrentResponse, Session};
use tracing::{info, warn};

use super::swarm::{self, ObjectFile};
use crate::catalog::Catalog;
use crate::store::Store;
use crate::sync::lock;
use crate::torrent;

/// What the storages of all store objects share.
struct StoreFiles {
    /// Trust the publication's check (`known_pieces`) rather than read objects back.
    trusted: bool,
    open: Mutex<OpenFiles>,
    /// Objects a first read found corrupt, for `Seeder::follow` to stop seeding them.
    corrupt: Mutex<Vec<String>>,
}

/// Store objects open for reading: beyond `cap`, the least recently read is closed. One
/// descriptor held per seeded object ran out of them at 20,000 objects (hard limit here).
struct OpenFiles {
    cap: usize,
    files: HashMap<Arc<str>, (Arc<File>, u64)>,
    tick: u64,
}

/// Store objects kept open at once.
const OPEN_FILES: usize = 1024;

impl StoreFiles {
    fn new(trusted: bool, cap: usize) -> StoreFiles {
        StoreFiles {
            trusted,
            open: Mutex::new(OpenFiles {
                cap,
                files: HashMap::new(),
                tick: 0,
            }),
            corrupt: Mutex::new(Vec::new()),
        }
    }

    /// Object `sha256` at `path`, open.
    fn file(&self, sha256: &Arc<str>, path: &Path) -> std::io::Result<Arc<File>> {
        {
            let mut open = lock(&self.open);
            open.tick += 1;
            let tick = open.tick;
            if let Some((f, used)) = open.files.get_mut(sha256) {
                *used = tick;
                return Ok(f.clone());
            }
        }
        let f = Arc::new(File::open(path)?);
        let mut open = lock(&self.open);
        if open.files.len() >= open.cap {
            let oldest = open.files.iter().min_by_key(|(_, (_, used))| *used);
            if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                open.files.remove(&k);
            }
        }
        let tick = open.tick;
        open.files.insert(sha256.clone(), (f.clone(), tick));
        Ok(f)
    }
}

/// One store object, read-only: every write is refused.
struct ReadOnly {
    path: Arc<Path>,
    sha256: Arc<str>,
    files: Arc<StoreFiles>,
}

impl ObjectFile for ReadOnly {
    fn pread(&self, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        let file = self.files.file(&self.sha256, &self.path)?;
        Ok(file.read_exact_at(buf, offset)?)
    }

    fn pwrite(&self, _: u64, _: &[u8]) -> anyhow::Result<()> {
        anyhow::bail!("store objects are never written")
    }

    fn check_len(&self, length: u64) -> anyhow::Result<()> {
        let have = std::fs::metadata(&self.path)?.len();
        anyhow::ensure!(
            have == length,
            "store object is {have} bytes, torrent says {length}"
        );
        Ok(())
    }

    fn take(&self) -> ReadOnly {
        ReadOnly {
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            files: self.files.clone(),
        }
    }

    /// Every piece: the object's sha256 was checked when it was published and the store
    /// never changes an object. A file of another length is not the published object: read.
    fn known_pieces(&self, length: u64, pieces: usize) -> Option<Vec<bool>> {
        let len = std::fs::metadata(&self.path).ok()?.len();
        (self.files.trusted && len == length).then(|| vec![true; pieces])
    }

    fn corrupt(&self, piece: u64, why: &str) {
        warn!(
            object = %self.sha256,
            piece,
            reason = "corrupt-object",
            "store object changed since it was published ({why}): no longer seeded"
        );
        lock(&self.files.corrupt).push(self.sha256.to_string());
    }
}

/// The storage of a store object's torrent: the object, read-only (opened when read).
fn store_object(
    path: PathBuf,
    sha256: &str,
    files: &Arc<StoreFiles>,
) -> librqbit::storage::BoxStorageFactory {
    let (path, sha256, files) = (
        Arc::<Path>::from(path),
        Arc::<str>::from(sha256),
        files.clone(),
    );
    swarm::factory(move || {
        std::fs::metadata(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(ReadOnly {
            path: path.clone(),
            sha256: sha256.clone(),
            files: files.clone(),
        })
    })
}

/// How often the seeder looks for new publications.
const POLL: Duration = Duration::from_secs(1);

pub struct Seeder {
    runtime: tokio::runtime::Runtime,
    session: Arc<Session>,
    files: Arc<StoreFiles>,
    /// Announce to the torrents' trackers: not when the only one is this repository's own,
    /// which names the seeder in every answer anyway (20,000 torrents announced to it every
    /// interval, for nothing).
    announce: bool,
}

/// An object being seeded: its torrent's infohash (the tracker's) and session id.
struct Seeded {
    hash: String,
    id: usize,
}

/// What the seeder seeds, by object sha256, and what it refuses until repofsd restarts (with
/// its infohash).
#[derive(Default)]
struct Seeding {
    seeded: HashMap<String, Seeded>,
    refused: HashMap<String, String>,
}

impl Seeding {
    /// The infohashes seeded, for the tracker.
    fn hashes(&self) -> HashSet<String> {
        self.seeded.values().map(|s| s.hash.clone()).collect()
    }
}

impl Seeder {
    /// Starts a session accepting peers on `listen` (port 0: any), without DHT or local
    /// discovery: peers come from the trackers the torrents name. `recheck`: librqbit reads
    /// every object back as it starts seeding it. `announce`: to the torrents' trackers.
    pub fn start(
        scratch: &Path,
        listen: SocketAddr,
        recheck: bool,
        announce: bool,
    ) -> anyhow::Result<Seeder> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("seeder")
            .build()?;
        let session = swarm::session(
            &runtime,
            scratch.to_path_buf(),
            listen,
            None,
            swarm::PRIMARY_ID,
        )
        .context("starting the BitTorrent session")?;
        info!(addr = ?session.listen_addr(), "seeding");
        Ok(Seeder {
            runtime,
            session,
            files: Arc::new(StoreFiles::new(!recheck, OPEN_FILES)),
            announce,
        })
    }

    /// Peers connected now, over all torrents.
    pub fn peers(&self) -> u64 {
        self.session.stats_snapshot().peers.live as u64
    }

    /// Where peers reach this seeder.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    /// Seeds every published file and seekable twin not seeded yet, by object (identical
    /// files share one torrent). Nothing is read: each piece is checked when first read for a
    /// peer (unless `recheck`, where librqbit reads each object as it is added). Logs once
    /// every torrent added is live.
    fn sync(
        &self,
        catalog: &Catalog,
        store: &Store,
        trackers: &[String],
        tracker: &Arc<super::tracker::Tracker>,
        seeding: &mut Seeding,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut added = Vec::new();
        for (sha256, hash) in catalog.seedable_objects()? {
            if seeding.seeded.contains_key(&sha256) || seeding.refused.contains_key(&sha256) {
                continue;
            }
            let Some((_, info, _)) = catalog.object_torrent(&sha256)? else {
                continue;
            };
            // No announce URL, no announcing (librqbit 9.1 ignores `disable_trackers`).
            let announce_to = if self.announce { trackers } else { &[] };
            let bytes = torrent::torrent_file(&info, announce_to, &[], "")?;
            let path = store.object_path(&sha256);
            let opts = AddTorrentOptions {
                overwrite: true,
                storage_factory: Some(store_object(path, &sha256, &self.files)),
                // The primary is the first source of everything it publishes: each peer is
                // handed pieces no other peer has, so a fleet fetching a new package at once
                // costs it about one copy and the mirrors trade the rest.
                super_seed: true,
                ..Default::default()
            };
            let add = self
                .session
                .add_torrent(AddTorrent::TorrentFileBytes(bytes.into()), Some(opts));
            match self.runtime.block_on(add) {
                Ok(
                    AddTorrentResponse::Added(id, h) | AddTorrentResponse::AlreadyManaged(id, h),
                ) => {
                    seeding.seeded.insert(sha256, Seeded { hash, id });
                    added.push(h);
                }
                Ok(AddTorrentResponse::ListOnly(_)) => {}
                Err(e) => warn!(object = %sha256, error = %format!("{e:#}"), "cannot seed"),
            }
        }
        if !added.is_empty() {
            let total = seeding.seeded.len();
            let tracker = tracker.clone();
            self.runtime.spawn(async move {
                let n = added.len();
                for h in added {
                    if h.wait_until_initialized().await.is_err() {
                        continue;
                    }
                    // Leechers that announced before this torrent was live found no torrent
                    // here; dial them now rather than leave them to their next announce.
                    for peer in tracker.leechers(&h.info_hash().0) {
                        dial(&h, peer);
                    }
                }
                info!(added = n, objects = total, elapsed = ?start.elapsed(), "seeding: every torrent live");
            });
        }
        Ok(())
    }

    /// Stops seeding the objects a first read found corrupt; true if there were any.
    fn drop_corrupt(&self, seeding: &mut Seeding) -> bool {
        let corrupt = std::mem::take(&mut *lock(&self.files.corrupt));
        let mut dropped = false;
        for sha256 in corrupt {
            let Some(s) = seeding.seeded.remove(&sha256) else {
                continue;
            };
            seeding.refused.insert(sha256.clone(), s.hash);
            dropped = true;
            if let Err(e) = self
                .runtime
                .block_on(self.session.delete(s.id.into(), false))
            {
                warn!(object = %sha256, error = %format!("{e:#}"), "could not drop a corrupt object's torrent");
            }
        }
        dropped
    }

    /// Polls the catalog until `stop` is set, seeding what gets published, dropping what a
    /// read found corrupt, and telling the tracker what is seeded.
    pub fn follow(
        &self,
        catalog: &Catalog,
        store: &Store,
        trackers: &[String],
        tracker: &Arc<super::tracker::Tracker>,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        let mut seeding = Seeding::default();
        let mut version = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let now = catalog.data_version().ok();
            let mut changed = self.drop_corrupt(&mut seeding);
            if now.is_none() || now != version {
                match self.sync(catalog, store, trackers, tracker, &mut seeding) {
                    Ok(()) => {
                        version = now;
                        changed = true;
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), "seeding sync failed"),
                }
            }
            if changed {
                tracker.set_refused(seeding.refused.values().cloned().collect());
                tracker.set_published(seeding.hashes());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Connects to `peer` for the torrent `info_hash` if seeding it (a leecher the tracker
    /// just heard from: the seeder need not wait for its own next announce to learn of it).
    pub fn add_peer(&self, info_hash: [u8; 20], peer: SocketAddr) {
        let id = librqbit::api::TorrentIdOrHash::Hash(librqbit_core::Id20::new(info_hash));
        if let Some(t) = self.session.get(id) {
            dial(&t, peer);
        }
    }

    /// Stops seeding: peers are disconnected, nothing is written.
    pub fn stop(self) {
        self.runtime.block_on(self.session.stop());
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// Connects the seeder to `peer` for torrent `t` if it is live and does not know that peer.
fn dial(t: &librqbit::ManagedTorrent, peer: SocketAddr) {
    if let Some(Err(e)) = t.live().map(|live| live.add_peer_if_not_seen(peer)) {
        tracing::debug!(error = %e, %peer, "seeder: cannot add the peer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beyond the cap, the least recently read object is closed (and opened again if read).
    #[test]
    fn open_files_stay_within_their_cap() {
        let dir = tempfile::tempdir().unwrap();
        let files = StoreFiles::new(true, 2);
        let objects: Vec<(Arc<str>, PathBuf)> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                std::fs::write(dir.path().join(n), n).unwrap();
                (Arc::from(*n), dir.path().join(n))
            })
            .collect();
        let open = |i: usize| files.file(&objects[i].0, &objects[i].1).unwrap();
        let a = open(0);
        open(1);
        assert!(Arc::ptr_eq(&a, &open(0)), "a still open");
        open(2);
        let held: Vec<String> = lock(&files.open)
            .files
            .keys()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(held.len(), 2);
        assert!(
            !held.contains(&"b".to_string()),
            "b, least recently read, closed: {held:?}"
        );
    }
}
