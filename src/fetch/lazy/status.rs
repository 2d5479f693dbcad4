//! The fetch service's report, `ROOT/mirror/fetch-status.json`, which `repofs status` reads
//! (`fetch::status`): cache use, session counters and each held object's progress. A thread of
//! its own rewrites it every `STATUS_EVERY` while anything changes, and evicts on the way (a
//! burst of reads may end with the cache over its bound and no request after it).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::sources::{self, Sources};
use super::Fetcher;
use crate::fetch::origin::OriginStatus;
use crate::sync::lock;

/// How often the status file is rewritten while something changes.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Starts the thread that evicts and rewrites the status until `fetcher.stop` is set (or the
/// fetcher is gone).
pub(super) fn spawn(fetcher: &Arc<Fetcher>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let f = Arc::downgrade(fetcher);
    let stop = fetcher.stop.clone();
    std::thread::Builder::new()
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
        })
}

impl Fetcher {
    /// Rewrites `ROOT/mirror/fetch-status.json` if anything changed since `last`.
    pub(super) fn write_status(&self, last: &mut String) -> anyhow::Result<()> {
        let objects: Vec<ObjectStatus> = {
            let held = lock(&self.held);
            let mut ledger = lock(&self.ledger);
            let mut v: Vec<_> = held
                .iter()
                .map(|(sha, h)| {
                    ledger.observe(sha, &sources::reading(h));
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
                        offered_bytes: h
                            .torrent
                            .live()
                            .and_then(|l| l.get_hns())
                            .map_or(0, |hns| hns.have_bytes),
                        peers: live.map_or(0, |l| l.snapshot.peer_stats.live as u64),
                        down_mbps: live.map_or(0.0, |l| l.download_speed.mbps),
                        up_mbps: live.map_or(0.0, |l| l.upload_speed.mbps),
                        sources: ledger.object(sha),
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
            sources: lock(&self.ledger).total(),
            uploaded_bytes: s.counters.uploaded_bytes,
            fetched_bytes: s.counters.fetched_bytes,
            peers: s.peers.live as u64,
            down_mbps: s.download_speed.mbps,
            up_mbps: s.upload_speed.mbps,
            origin: self.origin.status(),
            hold: self.hold_status(),
            corrupt: lock(&self.corrupt).clone(),
            objects,
        };
        write_if_changed(
            &self.status_path,
            serde_json::to_string_pretty(&status)?,
            last,
        )
    }
}
/// What `ROOT/mirror/fetch-status.json` holds (`repofs status` reads it).
#[derive(Serialize, Deserialize)]
pub struct Status {
    pub cache_bytes: u64,
    pub cache_limit: u64,
    /// Bytes written into the cache from peers (all objects held now).
    pub downloaded_bytes: u64,
    /// Where the bytes came from, since the cache was made (`sources`).
    #[serde(default)]
    pub sources: Sources,
    /// librqbit's session counters.
    pub fetched_bytes: u64,
    pub uploaded_bytes: u64,
    pub peers: u64,
    pub down_mbps: f64,
    pub up_mbps: f64,
    /// What came over HTTP from the origins, and how they failed.
    #[serde(default)]
    pub origin: OriginStatus,
    /// What `[mirror] hold` names, and how much of it is in the cache.
    #[serde(default)]
    pub hold: super::HoldStatus,
    /// Cached pieces found corrupt and fetched again (`repair`).
    #[serde(default)]
    pub corrupt: super::CorruptStatus,
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
    /// Bytes the swarm session holds and offers to peers (from peers, the origin or the cache).
    #[serde(default)]
    pub offered_bytes: u64,
    pub peers: u64,
    pub down_mbps: f64,
    pub up_mbps: f64,
    /// Where this object's bytes came from, while it is in the cache.
    #[serde(default)]
    pub sources: Sources,
}

/// Replaces the file at `path` with `text` (atomically: a reader sees the old or the new) unless
/// `text` is `last`, what was written before; `last` becomes `text`.
fn write_if_changed(path: &Path, text: String, last: &mut String) -> anyhow::Result<()> {
    if text == *last {
        return Ok(());
    }
    let dir = path.parent().context("status path has no parent")?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), &text)?;
    tmp.persist(path)?;
    *last = text;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_is_rewritten_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fetch-status.json");
        let mut last = String::new();
        write_if_changed(&path, "one".into(), &mut last).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
        assert_eq!(last, "one");
        // Unchanged: not written (a removed file stays removed).
        std::fs::remove_file(&path).unwrap();
        write_if_changed(&path, "one".into(), &mut last).unwrap();
        assert!(!path.exists());
        write_if_changed(&path, "two".into(), &mut last).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(last, "two");
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
