//! The torrents the fetcher holds: each added to the session on the first read of its object
//! (or at start, for what the cache already holds), kept connected by an anchor while
//! unfinished, and dropped with its cache object when eviction picks it.

use std::collections::HashSet;
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, Instant};

use librqbit::{AddTorrent, AddTorrentOptions, AddTorrentResponse, ManagedTorrent};
use librqbit_bencode::ByteBufOwned;
use librqbit_core::torrent_metainfo::TorrentMetaV1Info;
use tokio::io::AsyncSeekExt;
use tracing::warn;

use super::super::cache::CacheObject;
use super::storage::cache_storage;
use super::{plan, FetchError, Fetcher, ANCHORS, EVICT_EVERY};
use crate::sync::lock;
use crate::torrent;

/// A torrent in the session, with its cache object.
pub(super) struct Held {
    pub(super) torrent: Arc<ManagedTorrent>,
    pub(super) object: Arc<CacheObject>,
    /// An idle stream at the end of the file. librqbit drops peers that have the whole
    /// torrent as soon as no stream is open on an unfinished file, and a stream opened
    /// right then waits for a re-announce (10–20 s stalls, measured); a stream parked at the
    /// end keeps them connected and asks for no piece.
    pub(super) anchor: Option<Box<dyn Send>>,
    pub(super) used: Instant,
}

impl Fetcher {
    /// The object's torrent in the session, added (with its cache object) if it is not yet.
    pub(super) async fn torrent(
        self: &Arc<Self>,
        sha256: &str,
    ) -> Result<Arc<ManagedTorrent>, FetchError> {
        if let Some(h) = lock(&self.held).get(sha256) {
            return Ok(h.torrent.clone());
        }
        let one = self.adding.lock().await;
        if let Some(h) = lock(&self.held).get(sha256) {
            return Ok(h.torrent.clone());
        }
        // The trackers as of now: the index sync records the upstream's as they change.
        let (found, mut trackers) = {
            let mut catalog = lock(&self.catalog);
            // A mirror's first snapshot replaces the catalog's file: read the new one.
            catalog.follow().map_err(|e| FetchError::Failed(e.into()))?;
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
        let bytes = torrent::torrent_file(&info, &trackers, &[], "")
            .map_err(|e| FetchError::Failed(e.into()))?;
        let opts = AddTorrentOptions {
            overwrite: true,
            only_files: Some(vec![]),
            storage_factory: Some(cache_storage(object.clone(), self.reports.clone())),
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
        if let Some(oldest) = plan::anchor_to_drop(anchored, ANCHORS) {
            if let Some(h) = held.get_mut(&oldest) {
                h.anchor = None;
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
    pub(super) async fn object(&self, sha256: &str) -> Option<Arc<CacheObject>> {
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

    /// Drops object `sha256`'s torrent from the session, if one is held. Its counters go with
    /// it: they are read one last time, and a torrent added for the object again counts from
    /// zero.
    pub(super) async fn drop_torrent(&self, sha256: &str) {
        let held = lock(&self.held).remove(sha256);
        let Some(h) = held else { return };
        {
            let mut ledger = lock(&self.ledger);
            ledger.observe(sha256, &super::sources::reading(&h));
            ledger.restarted(sha256);
        }
        if let Err(e) = self.session.delete(h.torrent.id().into(), false).await {
            warn!(error = %format!("{e:#}"), "could not drop a torrent");
        }
    }

    /// Drops least recently read objects until the cache fits its limit. At most once per
    /// `EVICT_EVERY`: it lists the cache directory.
    pub(super) async fn evict(&self) {
        {
            let mut last = lock(&self.last_evict);
            if last.elapsed() < EVICT_EVERY {
                return;
            }
            *last = Instant::now();
        }
        // Held objects stay whatever lazy reads need (`hold`).
        let mut busy: HashSet<String> = lock(&self.busy).keys().cloned().collect();
        busy.extend(self.held_set());
        let victims = tokio::task::block_in_place(|| self.cache.victims(&busy));
        for sha in victims {
            self.drop_torrent(&sha).await;
            tokio::task::block_in_place(|| self.cache.remove(&sha));
            self.origin.forget(&sha);
            lock(&self.ledger).forget(&sha);
        }
    }
}
