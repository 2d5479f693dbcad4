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
//!
//! Here: the service, its requests and promotion. `torrents` adds, anchors and evicts what the
//! session holds; `range` fetches a reader's range and its read-ahead; `sequential` runs the
//! one-stream fetch; `storage` is librqbit's storage over the cache; `status` writes the
//! report; `plan` holds the decisions (which pieces, which reader is sequential, which
//! anchor goes), tested without a swarm; `fallback` lets the origin serve over HTTP
//! (`fetch::origin`) when the swarm has no peers or falls behind; `hold` fetches what
//! `[mirror] hold` names as soon as it is published, with no reader; `repair` fetches again a
//! cached piece found corrupt on its first read for a peer or a stream.

mod fallback;
mod hold;
mod plan;
mod range;
mod repair;
mod sequential;
mod sources;
mod status;
mod storage;
mod torrents;

pub use hold::{HoldStatus, TOO_LARGE as HOLD_TOO_LARGE};
pub use repair::{CorruptPiece, CorruptStatus};
pub use status::{ObjectStatus, Status};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use librqbit::Session;
use tracing::{debug, info, warn};

use super::cache::{Cache, CacheDir, CacheObject};
use super::origin::Origin;
use super::swarm;
use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::control;
use crate::fetch::protocol::{FetchReply, FetchRequest};
use crate::sync::lock;
use torrents::Held;

pub use sources::Sources;

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
/// A sequential stream's bytes go to its checker in chunks of this size, at most
/// `SEQ_BUFFERS` of them allocated.
const SEQ_CHUNK: usize = 1 << 20;
const SEQ_BUFFERS: usize = 6;
/// A sequential stream starting this close to the object's start starts at 0 (`stream_on`).
const SEQ_PREFIX: u64 = 64 << 20;

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
    /// Bytes by source, kept across restarts in the status report (`sources`).
    ledger: Mutex<sources::Ledger>,
    /// The upstream and the primary's web seeds over HTTP, for reads the swarm cannot serve.
    origin: Origin,
    /// `[mirror] origin_after`: how long a reader waits on a swarm with peers.
    origin_after: Duration,
    status_path: PathBuf,
    /// Corrupt cached pieces found and fetched again (`repair`), and where storages report them.
    corrupt: Mutex<CorruptStatus>,
    reports: repair::Reports,
    /// `[mirror] hold`: what is fetched without a reader and never evicted (`hold`).
    hold_patterns: hold::Patterns,
    hold: Mutex<hold::HoldState>,
    last_evict: Mutex<Instant>,
    stop: Arc<AtomicBool>,
    status_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    hold_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
        // A hold that cannot fit is refused now, not turned into an eviction loop.
        let hold_patterns = hold::Patterns::new(&config.mirror.hold)?;
        hold::check_fits(&hold::wanted(&catalog, &hold_patterns)?, cache.limit)?;
        let session = swarm::session(
            &runtime,
            layout.mirror().join("session"),
            listen,
            Some(POOL),
            swarm::MIRROR_ID,
        )
        .context("starting the mirror's BitTorrent session")?;
        info!(addr = ?session.listen_addr(), "mirror fetch service");
        let status_path = layout.mirror().join("fetch-status.json");
        let ledger = sources::restore(&status_path, &cache.on_disk());
        let corrupt = repair::restore(&status_path);
        let (reports, found) = tokio::sync::mpsc::unbounded_channel();
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
            ledger: Mutex::new(ledger),
            origin: Origin::new(config.mirror.upstream.clone(), config.mirror.origin_rate)?,
            origin_after: config.mirror.origin_after,
            status_path,
            corrupt: Mutex::new(corrupt),
            reports,
            hold_patterns,
            hold: Mutex::new(hold::HoldState::default()),
            last_evict: Mutex::new(
                Instant::now()
                    .checked_sub(EVICT_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
            stop: Arc::new(AtomicBool::new(false)),
            status_thread: Mutex::new(None),
            hold_thread: Mutex::new(None),
        });
        repair::spawn(&fetcher, found);
        // Seed what survived a restart, in the background: each object resumes from the
        // pieces its cache records verified (nothing is read back), but adding thousands
        // of torrents still takes a moment that reads must not wait for.
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
        let t = status::spawn(&fetcher)?;
        *lock(&fetcher.status_thread) = Some(t);
        *lock(&fetcher.hold_thread) = hold::spawn(&fetcher, layout.catalog())?;
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
                    std::thread::spawn(move || {
                        match control::read_request::<FetchRequest>(&s, "path") {
                            Ok(control::Incoming::Ours(r)) => {
                                if let Err(e) = control::write_reply(&s, &me.handle(&r)) {
                                    debug!(error = %e, "mount went away before the fetch finished");
                                }
                            }
                            Ok(control::Incoming::Theirs) => {
                                debug!("a closed-file report on a mirror")
                            }
                            Err(e) => warn!(error = %e, "bad control request"),
                        }
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

    async fn fetch(self: &Arc<Self>, req: &FetchRequest) -> Result<(), FetchError> {
        plan::check_request(req)?;
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
        let swarm = async {
            // A reader this far into a sequential run reads on: one stream fetches the rest.
            if plan::is_sequential(
                req.to,
                req.ahead,
                self.readahead,
                object.size,
                self.cache.limit,
            ) {
                self.sequential(&req.fetch, &torrent, &object, req.from);
            }
            if !self.wait_streamed(&object, req.from, req.to).await {
                self.read_ahead(&req.fetch, &torrent, &object, req.to, req.ahead);
                self.fetch_range(&torrent, &object, req.from, req.to)
                    .await?;
            }
            Ok(())
        };
        self.with_origin(swarm, req, &torrent, &object).await?;
        self.promote_later(&req.fetch, &object);
        self.evict().await;
        Ok(())
    }

    /// `maybe_promote` in the background, once every piece is verified: a reader's request
    /// waits for its own pieces, not for the whole object's sha256 (~0.5 s a GiB).
    fn promote_later(self: &Arc<Self>, sha256: &str, object: &Arc<CacheObject>) {
        if object.is_complete() || object.verified_count() < object.piece_count() {
            return;
        }
        let (me, o, sha) = (self.clone(), object.clone(), sha256.to_string());
        self.runtime.spawn(async move {
            let _busy = Busy::new(&me, &sha);
            me.maybe_promote(&sha, &o).await;
        });
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
                let torrent = lock(&self.held).get_mut(sha256).map(|h| {
                    h.anchor = None;
                    h.torrent.clone()
                });
                // Pieces verified before the torrent was live (a first read served by the
                // origin while librqbit still initialised it) were never offered: offer all.
                if let Some(t) = torrent {
                    fallback::tell_swarm(&t, object, 0, object.size);
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "promotion failed"),
            Err(e) => warn!(error = %e, "promotion panicked"),
        }
    }

    /// Stops the session; pieces already verified stay in the cache.
    pub fn stop(&self) {
        // The last word while the torrents still count, so that the next start goes on from
        // every byte counted (the status thread may write once more: the same or newer).
        if let Err(e) = self.write_status(&mut String::new()) {
            debug!(error = %e, "could not write the fetch status");
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in [&self.status_thread, &self.hold_thread] {
            if let Some(t) = lock(t).take() {
                let _ = t.join();
            }
        }
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.session.stop()).await;
        });
    }
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
