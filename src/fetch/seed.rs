//! The primary as first seeder: every published file's torrent, served by librqbit straight
//! from the store.
//!
//! librqbit's default storage opens files read-write and truncates or recreates what does not
//! match (platform notes); a store object must never change. So each torrent gets a storage
//! of its own that reads its one store object and refuses every write. The seeder runs an
//! async runtime of its own.
//!
//! A torrent is live only while peers use it: librqbit asks `Resolver` (one catalog query by
//! infohash) for the torrent an incoming handshake names (the tracker's leecher hook does the
//! same), so a publication is seeded as soon as it commits, and one
//! without peers for `live_idle` is removed, so what seeding costs follows the live set, not
//! the number of published files.
//!
//! Nothing is read to start seeding: every object's sha256 was checked when it was published
//! and the store never changes one, so a torrent starts with every piece (librqbit's initial
//! check skipped), and each piece is checked against its SHA-1 when first read for a peer. A
//! file changed behind the store's back is never served: its bad piece is refused, the object
//! is dropped from seeding and the tracker, and the log says why (`corrupt-object`). The
//! catalog records it (`corrupt_objects`), so a restart, which vouches for every piece again,
//! keeps refusing it until its bytes match its sha256 again (checked at start: they are few).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use librqbit::{AddTorrent, AddTorrentOptions, Session};
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
    /// Objects a first read found corrupt (sha256, piece, why), for `Seeder::follow` to stop
    /// seeding them.
    corrupt: Mutex<Vec<(String, u64, String)>>,
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
        lock(&self.files.corrupt).push((self.sha256.to_string(), piece, why.to_string()));
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

/// How often the seeder stops idle torrents and drops corrupt objects.
const POLL: Duration = Duration::from_secs(1);

/// Live torrents at most, beyond those with peers: each costs librqbit two 100 ms tickers
/// (speed estimator, super-seeding) and its state.
const LIVE_MAX: usize = 1024;

/// How long an incoming peer's handshake waits for its torrent to be made live.
const LIVE_WAIT: Duration = Duration::from_secs(10);

/// What makes a published infohash's torrent live: the catalog says whether the repository
/// publishes it and what its object and info dictionary are.
struct Resolver {
    catalog: Mutex<Catalog>,
    store: Store,
    /// Announce URLs the live torrents carry (external trackers only).
    trackers: Vec<String>,
    files: Arc<StoreFiles>,
    /// Objects refused (a first read found them corrupt; the catalog remembers them).
    refused: Mutex<HashSet<String>>,
    /// Live infohashes and their objects, to stop an object's torrents when it is corrupt.
    live: Mutex<HashMap<[u8; 20], Arc<str>>>,
}

impl Resolver {
    /// The torrent of `hash` as librqbit adds it, if published and not refused.
    fn torrent(&self, hash: [u8; 20]) -> Option<(AddTorrent<'static>, AddTorrentOptions)> {
        let hex = hex::encode(hash);
        let found = lock(&self.catalog).torrent_by_info_hash(&hex);
        let (info, sha256) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                warn!(torrent = %hex, error = %format!("{e:#}"), "cannot look up a torrent");
                return None;
            }
        };
        if lock(&self.refused).contains(&sha256) {
            return None;
        }
        // No announce URL, no announcing (librqbit 9.1 ignores `disable_trackers`).
        let bytes = torrent::torrent_file(&info, &self.trackers, &[], "").ok()?;
        let path = self.store.object_path(&sha256);
        let opts = AddTorrentOptions {
            overwrite: true,
            storage_factory: Some(store_object(path, &sha256, &self.files)),
            // The primary is the first source of everything it publishes: each peer is
            // handed pieces no other peer has, so a fleet fetching a new package at once
            // costs it about one copy and the mirrors trade the rest.
            super_seed: true,
            ..Default::default()
        };
        info!(torrent = %hex, object = %sha256, "seeding: live on demand");
        lock(&self.live).insert(hash, Arc::from(sha256.as_str()));
        Some((AddTorrent::TorrentFileBytes(bytes.into()), opts))
    }
}

/// The primary's seeder. Only torrents peers ask for are live: a torrent costs librqbit
/// timers, tasks and memory whether or not anyone fetches it (an idle primary of 4,402 live
/// torrents burned 17.6 % of a core), so a peer's handshake naming a published infohash
/// makes its torrent live before it is answered (librqbit asks `Resolver`), and a torrent
/// with no peer for `idle` stops again. The tracker names the seeder for every published
/// infohash, live or not.
pub struct Seeder {
    runtime: tokio::runtime::Runtime,
    session: Arc<Session>,
    resolver: Arc<Resolver>,
    idle: Duration,
}

impl Seeder {
    /// Starts a session accepting peers on `listen` (port 0: any), without DHT or local
    /// discovery: peers come from the trackers the torrents name. `recheck`: librqbit reads
    /// each object back as its torrent is made live. `trackers`: external announce URLs
    /// live torrents announce to. `idle`: how long a live torrent may go without a peer.
    pub fn start(
        scratch: &Path,
        listen: SocketAddr,
        recheck: bool,
        trackers: Vec<String>,
        idle: Duration,
        catalog: Catalog,
        store: Store,
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
        let mut catalog = catalog;
        let refused = still_corrupt(&mut catalog, &store)?;
        let resolver = Arc::new(Resolver {
            catalog: Mutex::new(catalog),
            store,
            trackers,
            files: Arc::new(StoreFiles::new(!recheck, OPEN_FILES)),
            refused: Mutex::new(refused),
            live: Mutex::new(HashMap::new()),
        });
        let r = resolver.clone();
        session.set_torrent_resolver(Arc::new(move |hash| {
            let r = r.clone();
            Box::pin(async move {
                // One indexed point query in SQLite: off the runtime's workers.
                tokio::task::spawn_blocking(move || r.torrent(hash.0))
                    .await
                    .ok()
                    .flatten()
            })
        }));
        info!(addr = ?session.listen_addr(), "seeding: every published object, live on demand");
        Ok(Seeder {
            runtime,
            session,
            resolver,
            idle,
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

    /// Stops the torrents of objects a first read found corrupt and refuses them from now
    /// on (recorded in the catalog); their infohashes (hex), if there were any.
    fn drop_corrupt(&self) -> Vec<String> {
        let found = std::mem::take(&mut *lock(&self.resolver.files.corrupt));
        if found.is_empty() {
            return Vec::new();
        }
        for (sha256, piece, why) in &found {
            if let Err(e) = lock(&self.resolver.catalog).record_corrupt(sha256, *piece, why) {
                warn!(object = %sha256, error = %e, "cannot record a corrupt object: refused until restart");
            }
        }
        let corrupt: HashSet<String> = found.into_iter().map(|(sha, _, _)| sha).collect();
        lock(&self.resolver.refused).extend(corrupt.iter().cloned());
        let hashes: Vec<[u8; 20]> = lock(&self.resolver.live)
            .iter()
            .filter(|(_, sha256)| corrupt.contains(&***sha256))
            .map(|(h, _)| *h)
            .collect();
        for h in &hashes {
            self.stop_torrent(*h);
        }
        hashes.iter().map(hex::encode).collect()
    }

    /// Removes torrent `hash` from the session (nothing is deleted from the store).
    fn stop_torrent(&self, hash: [u8; 20]) {
        lock(&self.resolver.live).remove(&hash);
        let id = librqbit::api::TorrentIdOrHash::Hash(librqbit_core::Id20::new(hash));
        if let Err(e) = self.runtime.block_on(self.session.delete(id, false)) {
            warn!(torrent = %hex::encode(hash), error = %format!("{e:#}"), "could not stop a torrent");
        }
    }

    /// Stops the live torrents that have had no peer for `idle`; `last_busy` remembers when
    /// each live torrent last had one.
    fn stop_idle(&self, last_busy: &mut HashMap<[u8; 20], Instant>, now: Instant) {
        let live: Vec<([u8; 20], bool)> = self
            .session
            .with_torrents(|ts| ts.map(|(_, t)| (t.info_hash().0, busy(t))).collect());
        let present: HashSet<[u8; 20]> = live.iter().map(|(h, _)| *h).collect();
        last_busy.retain(|h, _| present.contains(h));
        let mut stopped = 0;
        for (hash, busy) in live {
            let since = last_busy.entry(hash).or_insert(now);
            if busy {
                *since = now;
            } else if now.duration_since(*since) >= self.idle {
                self.stop_torrent(hash);
                last_busy.remove(&hash);
                stopped += 1;
            }
        }
        // Beyond the cap, the longest without a peer stop first (peers asking for many
        // distinct files at once must not make every torrent live).
        let excess = last_busy.len().saturating_sub(LIVE_MAX);
        if excess > 0 {
            let mut quiet: Vec<([u8; 20], Instant)> = last_busy
                .iter()
                .filter(|(_, since)| **since < now)
                .map(|(h, since)| (*h, *since))
                .collect();
            quiet.sort_by_key(|(_, since)| *since);
            for (hash, _) in quiet.into_iter().take(excess) {
                self.stop_torrent(hash);
                last_busy.remove(&hash);
                stopped += 1;
            }
        }
        if stopped > 0 {
            info!(
                stopped,
                live = last_busy.len(),
                "seeding: idle torrents stopped"
            );
        }
    }

    /// The infohashes (hex) of every published torrent of a refused object.
    fn refused_hashes(&self) -> HashSet<String> {
        let refused = lock(&self.resolver.refused).clone();
        if refused.is_empty() {
            return HashSet::new();
        }
        match lock(&self.resolver.catalog).seedable_objects() {
            Ok(all) => all
                .into_iter()
                .filter(|(sha, _)| refused.contains(sha))
                .map(|(_, hash)| hash)
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot list the torrents of refused objects");
                HashSet::new()
            }
        }
    }

    /// Until `stop` is set: stops idle torrents, and drops what a read found corrupt from
    /// seeding and from the tracker's answers.
    pub fn follow(&self, tracker: &Arc<super::tracker::Tracker>, stop: &AtomicBool) {
        // Refused before this start too: the tracker names no seeder for them.
        let mut refused = self.refused_hashes();
        if !refused.is_empty() {
            tracker.set_refused(refused.clone());
        }
        let mut last_busy = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            let dropped = self.drop_corrupt();
            if !dropped.is_empty() {
                // Live or not, every torrent of the object.
                refused.extend(dropped);
                refused.extend(self.refused_hashes());
                tracker.set_refused(refused.clone());
            }
            self.stop_idle(&mut last_busy, Instant::now());
            std::thread::sleep(POLL);
        }
    }

    /// Connects to `peer` for the torrent `info_hash`, made live if published (a leecher the
    /// tracker just heard from: some clients never dial the seeder the tracker names).
    pub fn add_peer(&self, info_hash: [u8; 20], peer: SocketAddr) {
        let session = self.session.clone();
        self.runtime.spawn(async move {
            let hash = librqbit_core::Id20::new(info_hash);
            let Some((_, t)) = session.resolve(hash).await else {
                return;
            };
            if tokio::time::timeout(LIVE_WAIT, t.wait_until_initialized())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                dial(&t, peer);
            }
        });
    }

    /// Stops seeding: peers are disconnected, nothing is written.
    pub fn stop(self) {
        self.runtime.block_on(self.session.stop());
        self.runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

/// The objects the catalog records corrupt whose store bytes still do not match their
/// sha256; a row whose object matches again (an operator restored it) goes, and so does one
/// whose object left the store (unpublished: a later publication of those bytes is new).
fn still_corrupt(catalog: &mut Catalog, store: &Store) -> anyhow::Result<HashSet<String>> {
    let mut refused = HashSet::new();
    for c in catalog.corrupt_objects()? {
        let matches =
            crate::store::file_sha256(&store.object_path(&c.sha256)).map(|h| h == c.sha256);
        let gone = matches
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if gone {
            catalog.clear_corrupt(&c.sha256)?;
            info!(object = %c.sha256, reason = "corrupt-object", "corrupt store object gone from the store: forgotten");
        } else if matches.unwrap_or(false) {
            catalog.clear_corrupt(&c.sha256)?;
            info!(object = %c.sha256, reason = "corrupt-object", "store object matches its sha256 again: seeded again");
        } else {
            warn!(object = %c.sha256, piece = c.piece, reason = "corrupt-object", why = %c.why, "store object still corrupt: not seeded");
            refused.insert(c.sha256);
        }
    }
    Ok(refused)
}

/// Whether torrent `t` is in use: starting, or with a peer connected, connecting or queued.
fn busy(t: &librqbit::ManagedTorrent) -> bool {
    if let Some(live) = t.live() {
        let p = live.stats_snapshot().peer_stats;
        return p.live + p.connecting + p.queued > 0;
    }
    t.with_state(|s| matches!(s, librqbit::ManagedTorrentState::Initializing(_)))
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

    /// At start, a recorded corrupt object stays refused while its bytes are wrong; one whose
    /// bytes match again, or that left the store, is forgotten.
    #[test]
    fn recorded_corrupt_objects_stay_refused_until_their_bytes_match() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let mut catalog = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        let put = |bytes: &[u8], sha: &str| {
            let p = store.object_path(sha);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        };
        let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
        let (restored, still, gone) = (sha(b"restored"), sha(b"still"), sha(b"gone"));
        put(b"restored", &restored);
        put(b"stilL", &still);
        for s in [&restored, &still, &gone] {
            catalog
                .record_corrupt(s, 0, "piece 0 does not match")
                .unwrap();
        }
        let refused = still_corrupt(&mut catalog, &store).unwrap();
        assert_eq!(refused, HashSet::from([still.clone()]));
        let rows: Vec<String> = catalog
            .corrupt_objects()
            .unwrap()
            .into_iter()
            .map(|c| c.sha256)
            .collect();
        assert_eq!(rows, [still]);
    }

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
