//! A mirror's fetch service (repofsd, when the catalog names an upstream).
//!
//! The mount asks over the control socket for a byte range of an object; this fetches the
//! pieces covering it from the swarm into the cache (`cache`) and answers once they are
//! verified. Torrents join the librqbit session lazily — on first request, and at start for
//! what the cache already holds (so the mirror seeds it) — never all at once.
//!
//! librqbit fetches nothing on its own (`only_files: []`); a range is fetched by reading it
//! through a `FileStream`, which makes librqbit request exactly those pieces. Streams hold a
//! slot of librqbit's blocking pool, so a semaphore keeps them well under it, and every await
//! has a deadline. librqbit checks each piece's SHA-1; the cache checks it again from the
//! bytes on disk before a read may see them, so no peer's bytes reach a reader unchecked.
//!
//! A sequential reader (its requests read a whole `readahead` past what they need) switches
//! the object to one long-lived stream with every piece wanted, verified in batches; its
//! requests then wait on the bitmap. One stream per request paid a stream open, a sync and
//! a drained pipeline at the end of every read-ahead window. That stream's bytes (which
//! librqbit reads from the cache file) are hashed as they come (`cache::StreamCheck`): each
//! piece's SHA-1 and the object's sha256, so neither the batch check nor promotion reads the
//! object again.

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use librqbit::storage::{StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerOptions, ManagedTorrent, Session,
    SessionOptions,
};
use librqbit_bencode::ByteBufOwned;
use librqbit_core::torrent_metainfo::TorrentMetaV1Info;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::{debug, info, warn};

use super::cache::{Cache, CacheDir, CacheObject, StreamCheck};
use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::control;
use crate::fetch::protocol::{FetchReply, FetchRequest, Request};
use crate::torrent;

/// Streams reading at once for readers, and for read-ahead.
const STREAMS: usize = 6;
const AHEAD_STREAMS: usize = 2;
/// Torrents kept "streamed" by an idle stream parked at the end of the file (see `Held`).
const ANCHORS: usize = 64;
/// librqbit's blocking pool: every open stream holds a slot of it (platform notes), so it
/// must hold all anchors and readers and still leave slots for librqbit's own work.
const POOL: usize = ANCHORS + STREAMS + AHEAD_STREAMS + 16;
/// Eviction runs at most this often (the cache may overshoot by what is fetched meanwhile).
const EVICT_EVERY: Duration = Duration::from_millis(500);
/// Bytes a sequential stream verifies at once (one fdatasync of the cache file each).
const SEQ_BATCH: u64 = 8 << 20;
/// A sequential stream's bytes go to its checker in chunks of this size, at most
/// `SEQ_BUFFERS` of them allocated.
const SEQ_CHUNK: usize = 1 << 20;
const SEQ_BUFFERS: usize = 6;
/// A sequential stream starting this close to the object's start starts at 0 (`stream_on`).
const SEQ_PREFIX: u64 = 64 << 20;
/// How often the status file is rewritten while something changes.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Why a fetch failed; `code` is what the mount logs and `repofs fetch` prints.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("no torrent for object {0} in the catalog")]
    UnknownObject(String),
    #[error("no peer delivered the range within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    BadPiece(String),
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl FetchError {
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::BadRequest(_) => "bad-request",
            FetchError::UnknownObject(_) => "unknown-object",
            FetchError::Timeout(_) => "timeout",
            FetchError::BadPiece(_) => "bad-piece",
            FetchError::Failed(_) => "fetch-failed",
        }
    }
}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::InvalidData => FetchError::BadPiece(e.to_string()),
            _ => FetchError::Failed(e.into()),
        }
    }
}

/// One cached object, as librqbit's storage: reads and writes go to the cache object.
#[derive(Clone)]
struct CacheStorageFactory(Arc<CacheObject>);

impl StorageFactory for CacheStorageFactory {
    type Storage = CacheStorage;

    fn create(
        &self,
        _: &librqbit::ManagedTorrentShared,
        _: &librqbit::TorrentMetadata,
    ) -> anyhow::Result<CacheStorage> {
        Ok(CacheStorage {
            object: self.0.clone(),
            checking: true,
        })
    }

    fn clone_box(&self) -> librqbit::storage::BoxStorageFactory {
        self.clone().boxed()
    }
}

struct CacheStorage {
    object: Arc<CacheObject>,
    /// librqbit's first check runs on the storage it created; `take` hands over a live one.
    checking: bool,
}

impl TorrentStorage for CacheStorage {
    fn init(
        &mut self,
        _: &librqbit::ManagedTorrentShared,
        _: &librqbit::TorrentMetadata,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    fn pread_exact(&self, _: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.object.pread(offset, buf, self.checking)
    }

    fn pwrite_all(&self, _: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.object.pwrite(offset, buf)
    }

    fn remove_file(&self, _: usize, _: &Path) -> anyhow::Result<()> {
        Ok(()) // the cache decides what goes
    }

    fn remove_directory_if_empty(&self, _: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn ensure_file_length(&self, _: usize, length: u64) -> anyhow::Result<()> {
        anyhow::ensure!(
            length == self.object.size,
            "torrent says {length} bytes, the catalog {}",
            self.object.size
        );
        Ok(())
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        Ok(Box::new(CacheStorage {
            object: self.object.clone(),
            checking: false,
        }))
    }
}

struct Held {
    torrent: Arc<ManagedTorrent>,
    object: Arc<CacheObject>,
    /// An idle stream at the end of the file. librqbit drops peers that have the whole
    /// torrent as soon as no stream is open on an unfinished file, and a stream opened
    /// right then waits for a re-announce (10–20 s stalls, measured); a stream parked at the
    /// end keeps them connected and asks for no piece.
    anchor: Option<Box<dyn Send>>,
    used: Instant,
}

/// The fetch service: a librqbit session over the cache.
pub struct Fetcher {
    runtime: tokio::runtime::Runtime,
    session: Arc<Session>,
    cache: Cache,
    catalog: Mutex<Catalog>,
    /// Trackers this mirror adds to the ones its upstream's index names.
    own_trackers: Vec<String>,
    initial_peers: Vec<SocketAddr>,
    read_timeout: Duration,
    /// `[mirror] readahead`: a request reading this far ahead comes from a sequential reader.
    readahead: u64,
    held: Mutex<HashMap<String, Held>>,
    /// Serializes adding torrents (one add per object).
    adding: tokio::sync::Mutex<()>,
    streams: Arc<tokio::sync::Semaphore>,
    ahead_streams: Arc<tokio::sync::Semaphore>,
    /// Objects with a fetch in flight: never evicted.
    busy: Mutex<HashMap<String, usize>>,
    status_path: PathBuf,
    last_evict: Mutex<Instant>,
    stop: Arc<AtomicBool>,
    status_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Fetcher {
    /// Starts the session (peers on `listen`, port 0: any) and seeds what the cache holds.
    pub fn start(
        layout: &Layout,
        config: &Config,
        listen: SocketAddr,
    ) -> anyhow::Result<Arc<Fetcher>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("fetch")
            .build()?;
        let catalog = Catalog::open(&layout.catalog())?;
        let cache = Cache::new(CacheDir::new(layout.mirror()), config.mirror.cache_size)?;
        if let Err(e) = librqbit::try_increase_nofile_limit() {
            warn!(error = %e, "could not raise the open-file limit");
        }
        // As in seed.rs: the port must be known before the first announce.
        let listen = match listen.port() {
            0 => std::net::TcpListener::bind(listen)?.local_addr()?,
            _ => listen,
        };
        let scratch = layout.mirror().join("session");
        std::fs::create_dir_all(&scratch)?;
        let opts = SessionOptions {
            dht: None,
            disable_local_service_discovery: true,
            persistence: None,
            runtime_worker_threads: Some(POOL),
            listen: Some(ListenerOptions {
                listen_addr: listen,
                announce_port: Some(listen.port()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let session = runtime
            .block_on(Session::new_with_opts(scratch, opts))
            .context("starting the mirror's BitTorrent session")?;
        info!(addr = ?session.listen_addr(), "mirror fetch service");
        let fetcher = Arc::new(Fetcher {
            runtime,
            session,
            cache,
            catalog: Mutex::new(catalog),
            own_trackers: config.distribution.trackers.clone(),
            initial_peers: Vec::new(),
            read_timeout: config.mirror.read_timeout,
            readahead: config.mirror.readahead.max(1),
            held: Mutex::new(HashMap::new()),
            adding: tokio::sync::Mutex::new(()),
            streams: Arc::new(tokio::sync::Semaphore::new(STREAMS)),
            ahead_streams: Arc::new(tokio::sync::Semaphore::new(AHEAD_STREAMS)),
            busy: Mutex::new(HashMap::new()),
            status_path: layout.mirror().join("fetch-status.json"),
            last_evict: Mutex::new(
                Instant::now()
                    .checked_sub(EVICT_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
            stop: Arc::new(AtomicBool::new(false)),
            status_thread: Mutex::new(None),
        });
        // Seed what survived a restart, in the background: librqbit checks each object's
        // verified pieces as it is added (a read of all of a complete object), and reads
        // must not wait for that.
        let cached = fetcher.cache.on_disk();
        let weak = Arc::downgrade(&fetcher);
        fetcher.runtime.spawn(async move {
            for sha in cached {
                let Some(f) = weak.upgrade() else { return };
                match tokio::time::timeout(Duration::from_secs(600), f.torrent(&sha)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(error = %e, "cannot seed a cached object"),
                    Err(_) => warn!("adding a cached object timed out"),
                }
            }
        });
        let f = Arc::downgrade(&fetcher);
        let stop = fetcher.stop.clone();
        let t = std::thread::Builder::new()
            .name("fetch-status".into())
            .spawn(move || {
                let mut last = String::new();
                while !stop.load(Ordering::Relaxed) {
                    let Some(f) = f.upgrade() else { break };
                    // Also here: a burst of reads may end with the cache over its bound.
                    f.runtime.block_on(f.evict());
                    if let Err(e) = f.write_status(&mut last) {
                        debug!(error = %e, "could not write the fetch status");
                    }
                    drop(f);
                    std::thread::sleep(STATUS_EVERY);
                }
            })?;
        *lock(&fetcher.status_thread) = Some(t);
        Ok(fetcher)
    }

    /// Where peers reach this mirror.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    /// Answers the mount's requests on the control socket, each on its own thread, until the
    /// process ends. A mirror takes no uploads, so a closed-file report gets no verdict.
    pub fn serve_requests(self: &Arc<Self>, socket: &Path) -> anyhow::Result<()> {
        let listener =
            control::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("fetch-requests".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let s = match conn {
                        Ok(s) => s,
                        Err(e) => {
                            warn!(error = %e, "control socket accept failed");
                            continue;
                        }
                    };
                    let me = me.clone();
                    std::thread::spawn(move || match control::read_request(&s) {
                        Ok(Request::Fetch(r)) => {
                            if let Err(e) = control::write_reply(&s, &me.handle(&r)) {
                                debug!(error = %e, "mount went away before the fetch finished");
                            }
                        }
                        Ok(Request::Closed(_)) => debug!("a closed-file report on a mirror"),
                        Err(e) => warn!(error = %e, "bad control request"),
                    });
                }
            })?;
        Ok(())
    }

    /// Answers one request of the mount (blocking; called on a control-socket thread).
    pub fn handle(self: &Arc<Self>, req: &FetchRequest) -> FetchReply {
        let started = Instant::now();
        let deadline = self.read_timeout;
        let me = self.clone();
        let req2 = req.clone();
        let r = self.runtime.block_on(async move {
            match tokio::time::timeout(deadline, me.fetch(&req2)).await {
                Ok(r) => r,
                Err(_) => Err(FetchError::Timeout(deadline)),
            }
        });
        match r {
            Ok(()) => {
                info!(object = %req.fetch, from = req.from, to = req.to, elapsed = ?started.elapsed(), "fetched");
                FetchReply::default()
            }
            Err(e) => {
                warn!(object = %req.fetch, from = req.from, to = req.to, error = %e, "fetch failed");
                FetchReply {
                    reason: Some(e.code().into()),
                    error: Some(e.to_string()),
                }
            }
        }
    }

    /// The object's torrent in the session, added (with its cache object) if it is not yet.
    async fn torrent(self: &Arc<Self>, sha256: &str) -> Result<Arc<ManagedTorrent>, FetchError> {
        if let Some(h) = lock(&self.held).get(sha256) {
            return Ok(h.torrent.clone());
        }
        let one = self.adding.lock().await;
        if let Some(h) = lock(&self.held).get(sha256) {
            return Ok(h.torrent.clone());
        }
        // The trackers as of now: the index sync records the upstream's as they change.
        let (found, mut trackers) = {
            let catalog = lock(&self.catalog);
            let found = catalog
                .object_torrent(sha256)
                .map_err(|e| FetchError::Failed(e.into()))?;
            let trackers: Vec<String> = catalog
                .setting("trackers")
                .map_err(|e| FetchError::Failed(e.into()))?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            (found, trackers)
        };
        trackers.extend(self.own_trackers.iter().cloned());
        trackers.dedup();
        let (_, info, size) = found.ok_or_else(|| FetchError::UnknownObject(sha256.into()))?;
        let parsed: TorrentMetaV1Info<ByteBufOwned> = librqbit_bencode::from_bytes(&info)
            .map_err(|e| FetchError::Failed(anyhow::anyhow!("bad info dictionary: {e}")))?;
        let object = {
            let cache = &self.cache;
            let pieces = parsed.pieces.as_ref().to_vec();
            let sha = sha256.to_string();
            tokio::task::block_in_place(|| cache.object(&sha, size, &pieces))?
        };
        let bytes =
            torrent::torrent_file(&info, &trackers).map_err(|e| FetchError::Failed(e.into()))?;
        let opts = AddTorrentOptions {
            overwrite: true,
            only_files: Some(vec![]),
            storage_factory: Some(CacheStorageFactory(object.clone()).boxed()),
            initial_peers: (!self.initial_peers.is_empty()).then(|| self.initial_peers.clone()),
            ..Default::default()
        };
        let added = self
            .session
            .add_torrent(AddTorrent::TorrentFileBytes(bytes.into()), Some(opts))
            .await
            .map_err(FetchError::Failed)?;
        let torrent = match added {
            AddTorrentResponse::Added(_, h) | AddTorrentResponse::AlreadyManaged(_, h) => h,
            AddTorrentResponse::ListOnly(_) => {
                return Err(FetchError::Failed(anyhow::anyhow!(
                    "torrent added list-only"
                )))
            }
        };
        // Parking a stream waits for librqbit's first check: not while holding up other adds.
        drop(one);
        let anchor = match object.is_complete() {
            true => None,
            false => self.anchor(&torrent).await,
        };
        let mut held = lock(&self.held);
        held.insert(
            sha256.to_string(),
            Held {
                torrent: torrent.clone(),
                object,
                anchor,
                used: Instant::now(),
            },
        );
        // Bound the anchors (each holds a pool slot): the least recently used lets go.
        let anchored: Vec<(Instant, String)> = held
            .iter()
            .filter(|(_, h)| h.anchor.is_some())
            .map(|(k, h)| (h.used, k.clone()))
            .collect();
        if anchored.len() > ANCHORS {
            if let Some((_, oldest)) = anchored.iter().min() {
                if let Some(h) = held.get_mut(oldest) {
                    h.anchor = None;
                }
            }
        }
        Ok(torrent)
    }

    async fn anchor(&self, torrent: &Arc<ManagedTorrent>) -> Option<Box<dyn Send>> {
        let opened = tokio::time::timeout(Duration::from_secs(10), torrent.clone().stream(0)).await;
        match opened {
            Ok(Ok(mut s)) => match s.seek(SeekFrom::End(0)).await {
                Ok(_) => Some(Box::new(s)),
                Err(e) => {
                    warn!(error = %e, "cannot park a stream");
                    None
                }
            },
            Ok(Err(e)) => {
                warn!(error = %format!("{e:#}"), "cannot open a stream");
                None
            }
            Err(_) => {
                warn!("opening a stream timed out");
                None
            }
        }
    }

    /// The held object, marked used (and anchored again if it had let go).
    async fn object(&self, sha256: &str) -> Option<Arc<CacheObject>> {
        let (object, torrent, anchored) = {
            let mut held = lock(&self.held);
            let h = held.get_mut(sha256)?;
            h.used = Instant::now();
            (h.object.clone(), h.torrent.clone(), h.anchor.is_some())
        };
        if !anchored && !object.is_complete() {
            let a = self.anchor(&torrent).await;
            if let Some(h) = lock(&self.held).get_mut(sha256) {
                h.anchor = h.anchor.take().or(a);
            }
        }
        Some(object)
    }

    async fn fetch(self: &Arc<Self>, req: &FetchRequest) -> Result<(), FetchError> {
        if req.fetch.len() != 64 || !req.fetch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FetchError::BadRequest("not a sha256".into()));
        }
        if req.from >= req.to || req.to > req.size {
            return Err(FetchError::BadRequest(format!(
                "range {}..{} of a {}-byte object",
                req.from, req.to, req.size
            )));
        }
        let _busy = Busy::new(self, &req.fetch);
        let torrent = self.torrent(&req.fetch).await?;
        let object = self
            .object(&req.fetch)
            .await
            .ok_or_else(|| FetchError::Failed(anyhow::anyhow!("object left the cache")))?;
        if object.size != req.size {
            return Err(FetchError::BadRequest(format!(
                "object is {} bytes, not {}",
                object.size, req.size
            )));
        }
        // A reader this far into a sequential run reads on: one stream fetches the rest.
        if req.ahead.saturating_sub(req.to) >= self.readahead && object.size <= self.cache.limit / 2
        {
            self.sequential(&req.fetch, &torrent, &object, req.from);
        }
        if !self.wait_streamed(&object, req.from, req.to).await {
            self.read_ahead(&req.fetch, &torrent, &object, req.to, req.ahead);
            self.fetch_range(&torrent, &object, req.from, req.to)
                .await?;
        }
        self.maybe_promote(&req.fetch, &object).await;
        self.evict().await;
        Ok(())
    }

    /// Once every piece is verified: checks the whole object and makes it complete. Not while
    /// a sequential stream runs: it promotes at its end, with the sha256 it computed.
    async fn maybe_promote(&self, sha256: &str, object: &Arc<CacheObject>) {
        if object.streaming.load(Ordering::Acquire) {
            return;
        }
        self.promote(sha256, object, None).await
    }

    async fn promote(&self, sha256: &str, object: &Arc<CacheObject>, streamed: Option<[u8; 32]>) {
        if object.is_complete() || object.verified_count() < object.piece_count() {
            return;
        }
        let o = object.clone();
        match tokio::task::spawn_blocking(move || o.promote(streamed)).await {
            Ok(Ok(true)) => {
                // Complete: librqbit keeps its peers by itself now.
                if let Some(h) = lock(&self.held).get_mut(sha256) {
                    h.anchor = None;
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "promotion failed"),
            Err(e) => warn!(error = %e, "promotion panicked"),
        }
    }

    /// Starts, unless one runs, the sequential stream of `object`: from the first missing
    /// piece at or after `from` to the end, librqbit told to fetch the whole file, pieces
    /// verified (one sync) every `SEQ_BATCH` bytes. Readers wait on the bitmap meanwhile
    /// (`wait_streamed`) instead of opening streams of their own. It ends at the end of the
    /// object or when a read stalls past `read_timeout` (then readers stream for themselves).
    fn sequential(
        self: &Arc<Self>,
        sha256: &str,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
    ) {
        if object.is_complete() || object.streaming.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, t, o) = (self.clone(), torrent.clone(), object.clone());
        let sha = sha256.to_string();
        self.runtime.spawn(async move {
            let _busy = Busy::new(&me, &sha);
            let started = Instant::now();
            let r = me.stream_on(&t, &o, from).await;
            let streamed = match r {
                Ok(d) => {
                    info!(object = %sha, elapsed = ?started.elapsed(), whole_sha256 = d.is_some(), "sequential fetch done");
                    d
                }
                Err(e) => {
                    warn!(object = %sha, error = %e, "sequential fetch stopped");
                    None
                }
            };
            // Before readers may promote (they skip it while the stream runs).
            me.promote(&sha, &o, streamed).await;
            o.streaming.store(false, Ordering::Release);
            o.changed.notify_waiters();
        });
    }

    /// The sequential stream: its bytes go, in order, to a `StreamCheck` on a blocking thread
    /// (through a bounded channel of recycled buffers), so hashing and syncs overlap the
    /// stream's reads and nothing is read back. Returns the object's sha256 if the check
    /// could compute it.
    async fn stream_on(
        &self,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
    ) -> Result<Option<[u8; 32]>, FetchError> {
        let piece = u64::from(torrent::PIECE_LENGTH);
        let Some(first) = (from / piece..object.piece_count()).find(|&p| !object.is_verified(p))
        else {
            return Ok(None);
        };
        // Every piece wanted: librqbit's picker keeps many requests in flight to each peer,
        // where a stream alone asks only for the pieces just ahead of it.
        self.session
            .update_only_files(torrent, &HashSet::from([0]))
            .await
            .map_err(FetchError::Failed)?;
        let _permit = self
            .ahead_streams
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| FetchError::Failed(e.into()))?;
        let mut pos = first * piece;
        // A short prefix still in flight (a read-ahead): the stream starts at 0 instead, so
        // that it sees every byte in order and the sha256 needs no re-read at promotion.
        if pos <= SEQ_PREFIX && !object.has(0, pos) {
            pos = 0;
        }
        // Opened where the reader is, not at 0 (a plain stream queues from 0 until it seeks).
        let mut stream = torrent
            .clone()
            .stream_at(0, pos, 32 << 20)
            .await
            .map_err(FetchError::Failed)?;
        // The first reader waits for little; then fewer syncs.
        let (o, start) = (object.clone(), pos);
        let mut check =
            tokio::task::spawn_blocking(move || StreamCheck::new(o, start, piece * 4, SEQ_BATCH))
                .await
                .map_err(|e| FetchError::Failed(e.into()))??;
        // Memory: SEQ_BUFFERS buffers in all (queued, being read, being hashed).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(SEQ_BUFFERS - 2);
        let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(SEQ_BUFFERS);
        let checker = tokio::task::spawn_blocking(move || -> std::io::Result<Option<[u8; 32]>> {
            while let Some(buf) = rx.blocking_recv() {
                check.update(&buf)?;
                let _ = back_tx.try_send(buf); // the reader may have gone
            }
            check.finish()
        });
        let read = async {
            let mut made = 0;
            while pos < object.size {
                let mut buf = match back_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if made < SEQ_BUFFERS => {
                        made += 1;
                        vec![0u8; SEQ_CHUNK]
                    }
                    // The checker hands buffers back; a stuck one (a sync that never
                    // returns) must not hold the stream, and with it its readers, forever.
                    Err(_) => tokio::time::timeout(self.read_timeout, back_rx.recv())
                        .await
                        .map_err(|_| FetchError::Timeout(self.read_timeout))?
                        .ok_or_else(|| FetchError::Failed(anyhow::anyhow!("checker stopped")))?,
                };
                buf.resize(SEQ_CHUNK.min((object.size - pos) as usize), 0);
                let mut got = 0;
                while got < buf.len() {
                    let n = tokio::time::timeout(self.read_timeout, stream.read(&mut buf[got..]))
                        .await
                        .map_err(|_| FetchError::Timeout(self.read_timeout))?
                        .map_err(|e| FetchError::Failed(e.into()))?;
                    if n == 0 {
                        return Err(FetchError::Failed(anyhow::anyhow!("stream ended early")));
                    }
                    got += n;
                }
                pos += got as u64;
                tokio::time::timeout(self.read_timeout, tx.send(buf))
                    .await
                    .map_err(|_| FetchError::Timeout(self.read_timeout))?
                    .map_err(|_| FetchError::Failed(anyhow::anyhow!("checker stopped")))?;
            }
            Ok::<(), FetchError>(())
        };
        let read = read.await;
        drop(tx); // the checker finishes what is queued and ends
        let checked = tokio::time::timeout(self.read_timeout, checker)
            .await
            .map_err(|_| FetchError::Timeout(self.read_timeout))?
            .map_err(|e| FetchError::Failed(e.into()))?;
        // A bad piece stops the checker, and then the reader: report the piece.
        let digest = checked?;
        read?;
        Ok(digest)
    }

    /// Waits while the sequential stream of `object` runs for `[from, to)` to be verified:
    /// true once it is, false if no stream runs (or it stopped) and the caller must fetch.
    /// The caller's deadline bounds the wait.
    async fn wait_streamed(&self, object: &CacheObject, from: u64, to: u64) -> bool {
        loop {
            let changed = object.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if object.has(from, to) {
                return true;
            }
            if !object.streaming.load(Ordering::Acquire) {
                return false;
            }
            changed.await;
        }
    }

    /// Fetches `[from, ahead)` in the background unless a read-ahead already covers it.
    /// Read-aheads have their own few stream slots, so a reader's own requests never wait
    /// behind them.
    fn read_ahead(
        self: &Arc<Self>,
        sha256: &str,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
        ahead: u64,
    ) {
        let ahead = ahead.min(object.size);
        let start = from.max(object.ahead.load(Ordering::Relaxed));
        if ahead <= start || object.has(start, ahead) {
            return;
        }
        let Ok(permit) = self.ahead_streams.clone().try_acquire_owned() else {
            return;
        };
        object.ahead.fetch_max(ahead, Ordering::Relaxed);
        let (me, t, o) = (self.clone(), torrent.clone(), object.clone());
        let sha = sha256.to_string();
        self.runtime.spawn(async move {
            let _busy = Busy::new(&me, &sha);
            let r = tokio::time::timeout(
                me.read_timeout,
                me.stream_range(&t, &o, start, ahead, Some(permit)),
            )
            .await;
            if !matches!(r, Ok(Ok(()))) {
                // Let a later reader try these pieces again.
                o.ahead.fetch_min(start, Ordering::Relaxed);
                debug!("read-ahead failed");
            }
            me.maybe_promote(&sha, &o).await;
        });
    }

    /// Makes `[from, to)` verified in the cache.
    async fn fetch_range(
        &self,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
        to: u64,
    ) -> Result<(), FetchError> {
        if object.has(from, to) {
            return Ok(());
        }
        self.stream_range(torrent, object, from, to, None).await
    }

    async fn stream_range(
        &self,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
        to: u64,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(), FetchError> {
        // Only the span from the first missing piece to the last.
        let piece = u64::from(torrent::PIECE_LENGTH);
        let missing: Vec<u64> = super::cache::pieces(from, to)
            .filter(|&p| !object.is_verified(p))
            .collect();
        let (Some(first), Some(last)) = (missing.first(), missing.last()) else {
            return Ok(());
        };
        let (a, b) = (first * piece, ((last + 1) * piece).min(object.size));
        {
            let _permit = match permit {
                Some(p) => p,
                None => self
                    .streams
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| FetchError::Failed(e.into()))?,
            };
            // Opened at `a`, queueing only up to `b`: librqbit pulls the range's pieces and no
            // more (a plain stream queues 32 MiB ahead, from the file's start until it seeks).
            let mut stream = torrent
                .clone()
                .stream_at(0, a, b - a)
                .await
                .map_err(FetchError::Failed)?;
            let mut left = b - a;
            let mut buf = vec![0u8; 256 << 10];
            while left > 0 {
                let want = (buf.len() as u64).min(left) as usize;
                let n = stream
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| FetchError::Failed(e.into()))?;
                if n == 0 {
                    return Err(FetchError::Failed(anyhow::anyhow!("stream ended early")));
                }
                left -= n as u64;
            }
            // The stream (and its slot) goes here, before verifying.
        }
        let o = object.clone();
        tokio::task::spawn_blocking(move || o.verify(a, b))
            .await
            .map_err(|e| FetchError::Failed(e.into()))??;
        Ok(())
    }

    /// Drops least recently read objects until the cache fits its limit. At most once per
    /// `EVICT_EVERY`: it lists the cache directory.
    async fn evict(&self) {
        {
            let mut last = lock(&self.last_evict);
            if last.elapsed() < EVICT_EVERY {
                return;
            }
            *last = Instant::now();
        }
        let busy: HashSet<String> = lock(&self.busy).keys().cloned().collect();
        let victims = tokio::task::block_in_place(|| self.cache.victims(&busy));
        for sha in victims {
            let held = lock(&self.held).remove(&sha);
            if let Some(h) = held {
                let id = h.torrent.id();
                if let Err(e) = self.session.delete(id.into(), false).await {
                    warn!(error = %format!("{e:#}"), "could not drop a torrent");
                }
            }
            tokio::task::block_in_place(|| self.cache.remove(&sha));
        }
    }

    /// Rewrites `ROOT/mirror/fetch-status.json` if anything changed since `last`.
    fn write_status(&self, last: &mut String) -> anyhow::Result<()> {
        let objects: Vec<ObjectStatus> = {
            let held = lock(&self.held);
            let mut v: Vec<_> = held
                .iter()
                .map(|(sha, h)| {
                    let stats = h.torrent.stats();
                    let live = stats.live.as_ref();
                    ObjectStatus {
                        sha256: sha.clone(),
                        size: h.object.size,
                        pieces: h.object.piece_count(),
                        verified_pieces: h.object.verified_count(),
                        complete: h.object.is_complete(),
                        downloaded_bytes: h.object.downloaded.load(Ordering::Relaxed),
                        uploaded_bytes: stats.uploaded_bytes,
                        peers: live.map_or(0, |l| l.snapshot.peer_stats.live as u64),
                        down_mbps: live.map_or(0.0, |l| l.download_speed.mbps),
                        up_mbps: live.map_or(0.0, |l| l.upload_speed.mbps),
                    }
                })
                .collect();
            v.sort_by(|a, b| a.sha256.cmp(&b.sha256));
            v
        };
        let s = self.session.stats_snapshot();
        let status = Status {
            cache_bytes: self.cache.usage(),
            cache_limit: self.cache.limit,
            downloaded_bytes: objects.iter().map(|o| o.downloaded_bytes).sum(),
            uploaded_bytes: s.counters.uploaded_bytes,
            fetched_bytes: s.counters.fetched_bytes,
            peers: s.peers.live as u64,
            down_mbps: s.download_speed.mbps,
            up_mbps: s.upload_speed.mbps,
            objects,
        };
        let text = serde_json::to_string_pretty(&status)?;
        if text == *last {
            return Ok(());
        }
        let dir = self
            .status_path
            .parent()
            .context("status path has no parent")?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), &text)?;
        tmp.persist(&self.status_path)?;
        *last = text;
        Ok(())
    }

    /// Stops the session; pieces already verified stay in the cache.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.status_thread).take() {
            let _ = t.join();
        }
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.session.stop()).await;
        });
    }
}

/// What `ROOT/mirror/fetch-status.json` holds (`repofs status` reads it).
#[derive(Serialize, Deserialize)]
pub struct Status {
    pub cache_bytes: u64,
    pub cache_limit: u64,
    /// Bytes written into the cache from peers (all objects held now).
    pub downloaded_bytes: u64,
    /// librqbit's session counters.
    pub fetched_bytes: u64,
    pub uploaded_bytes: u64,
    pub peers: u64,
    pub down_mbps: f64,
    pub up_mbps: f64,
    pub objects: Vec<ObjectStatus>,
}

#[derive(Serialize, Deserialize)]
pub struct ObjectStatus {
    pub sha256: String,
    pub size: u64,
    pub pieces: u64,
    pub verified_pieces: u64,
    pub complete: bool,
    pub downloaded_bytes: u64,
    pub uploaded_bytes: u64,
    pub peers: u64,
    pub down_mbps: f64,
    pub up_mbps: f64,
}

/// Marks an object busy (not evictable) while a fetch of it runs.
struct Busy<'a> {
    fetcher: &'a Fetcher,
    sha256: String,
}

impl<'a> Busy<'a> {
    fn new(fetcher: &'a Fetcher, sha256: &str) -> Busy<'a> {
        *lock(&fetcher.busy).entry(sha256.to_string()).or_default() += 1;
        Busy {
            fetcher,
            sha256: sha256.to_string(),
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut busy = lock(&self.fetcher.busy);
        if let Some(n) = busy.get_mut(&self.sha256) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.sha256);
            }
        }
    }
}
