//! A cached piece that fails its SHA-1 when first read for a peer or a stream (`swarm`'s
//! check; the storage has already taken it out of the cache's verified set,
//! `CacheObject::unverify`) is fetched again, from the swarm or else the origin, as a reader's
//! range would be, so the object is whole (and seeded) again. librqbit still counts the piece
//! as had, and has no way to forget one: the torrent is dropped and added again, resuming from
//! the pieces the cache now records. Each such piece is reported (`corrupt-cache`) in the log
//! and in the status, whose counts survive restarts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{FetchRequest, Fetcher};
use crate::sync::lock;

/// What the storage reports: `piece` of object `sha256` (`size` bytes) failed its check.
pub(super) struct Found {
    pub sha256: String,
    pub size: u64,
    pub piece: u64,
    pub why: String,
}

pub(super) type Reports = mpsc::UnboundedSender<Found>;

/// Corrupt pieces found in the cache, in the status report.
#[derive(Serialize, Deserialize, Default, Clone, PartialEq, Debug)]
pub struct CorruptStatus {
    /// Pieces found corrupt since the cache was made.
    pub found: u64,
    /// Of those, fetched again and verified.
    pub refetched: u64,
    /// The last `RECENT`, newest last.
    pub recent: Vec<CorruptPiece>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct CorruptPiece {
    pub sha256: String,
    pub piece: u64,
    /// Why its check failed.
    pub why: String,
    /// When (RFC 3339).
    pub found: String,
    /// `fetching`, `refetched` or `failed`.
    pub state: String,
    pub error: Option<String>,
}

/// Pieces listed in `CorruptStatus::recent`.
const RECENT: usize = 32;

impl CorruptStatus {
    fn record(&mut self, f: &Found) {
        self.found += 1;
        self.recent.push(CorruptPiece {
            sha256: f.sha256.clone(),
            piece: f.piece,
            why: f.why.clone(),
            found: crate::time::rfc3339(crate::time::now()),
            state: "fetching".into(),
            error: None,
        });
        let over = self.recent.len().saturating_sub(RECENT);
        self.recent.drain(..over);
    }

    fn settle(&mut self, f: &Found, error: Option<String>) {
        if error.is_none() {
            self.refetched += 1;
        }
        let entry = self
            .recent
            .iter_mut()
            .rev()
            .find(|c| c.sha256 == f.sha256 && c.piece == f.piece);
        if let Some(c) = entry {
            c.state = if error.is_none() {
                "refetched"
            } else {
                "failed"
            }
            .into();
            c.error = error;
        }
    }
}

/// The last status's counts (a restart goes on from them). A piece still being fetched when
/// repofsd stopped stays out of the verified set: the next read of it fetches it.
pub(super) fn restore(status: &std::path::Path) -> CorruptStatus {
    let mut c = std::fs::read(status)
        .ok()
        .and_then(|b| serde_json::from_slice::<super::Status>(&b).ok())
        .map(|s| s.corrupt)
        .unwrap_or_default();
    for p in c.recent.iter_mut().filter(|p| p.state == "fetching") {
        p.state = "failed".into();
        p.error = Some("repofsd stopped first; the next read fetches it".into());
    }
    c
}

/// Repairs what the storages report until the fetcher is gone.
pub(super) fn spawn(fetcher: &Arc<Fetcher>, mut found: mpsc::UnboundedReceiver<Found>) {
    let weak = Arc::downgrade(fetcher);
    fetcher.runtime.spawn(async move {
        while let Some(f) = found.recv().await {
            let Some(me) = weak.upgrade() else { return };
            let me2 = me.clone();
            // One at a time would let one slow piece hold up the rest.
            me.runtime.spawn(async move { me2.repair(f).await });
        }
    });
}

impl Fetcher {
    async fn repair(self: Arc<Self>, f: Found) {
        lock(&self.corrupt).record(&f);
        self.drop_torrent(&f.sha256).await;
        self.cache.forget(&f.sha256);
        let piece = crate::torrent::PIECE_LENGTH as u64;
        let from = f.piece * piece;
        let to = (from + piece).min(f.size);
        let req = FetchRequest {
            fetch: f.sha256.clone(),
            size: f.size,
            from,
            to,
            ahead: to,
        };
        let r = tokio::time::timeout(self.read_timeout, self.fetch(&req)).await;
        let error = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{}: {e}", e.code())),
            Err(_) => Some(format!("timeout after {:?}", self.read_timeout)),
        };
        match &error {
            None => info!(
                object = %f.sha256,
                piece = f.piece,
                reason = "corrupt-cache",
                "corrupt cached piece fetched again"
            ),
            Some(e) => warn!(
                object = %f.sha256,
                piece = f.piece,
                reason = "corrupt-cache",
                error = %e,
                "corrupt cached piece could not be fetched again: the next read asks for it"
            ),
        }
        lock(&self.corrupt).settle(&f, error);
    }
}
