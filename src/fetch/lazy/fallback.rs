//! When the origin serves (`fetch::origin`): the swarm comes first while it has peers and
//! keeps up. A request's range goes to the origin too once the swarm has made the reader wait
//! `[mirror] origin_after`; when it knows no peer (none live, connecting or queued: the
//! tracker is down, or no one holds the object) at once, but not before `PEER_GRACE` after
//! the object's first read (the tracker's answer).
//! Whichever source verifies the range first answers. A reader whose range the origin served,
//! still without peers, has its read-ahead fetched from the origin as well; a sequential
//! reader the rest of the object, `ORIGIN_AHEAD` at a time in two requests, while no peer
//! turns up. Its reads then find their pieces readable in the cache and ask repofsd nothing,
//! so the read-ahead cannot wait for the reader's next request to go on.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use librqbit::ManagedTorrent;
use tracing::{debug, warn};

use super::super::cache::{pieces, CacheObject};
use super::{plan, Busy, FetchError, Fetcher};
use crate::fetch::protocol::FetchRequest;
use crate::sync::lock;

/// How long after an object's first read its peers may take to connect (a tracker's answer,
/// a handshake: ~0.1 s on loopback).
const PEER_GRACE: Duration = Duration::from_secs(2);
/// The origin's read-ahead goes on this much at a time, in two requests at once (one
/// receives while the other's pieces are hashed: 1.75–1.87 s a GiB against 2.09–2.22 s for
/// one, bench/RESULTS.md); each step has its own deadline.
const ORIGIN_AHEAD: u64 = 128 << 20;
const PIECE: u64 = crate::torrent::PIECE_LENGTH as u64;

impl Fetcher {
    /// Runs `swarm` (the request's fetch from peers) beside the origin's; Ok once either made
    /// the range verified, the swarm's error if neither could.
    pub(super) async fn with_origin(
        self: &Arc<Self>,
        swarm: impl Future<Output = Result<(), FetchError>>,
        req: &FetchRequest,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
    ) -> Result<(), FetchError> {
        let origin = self.from_origin(req, torrent, object);
        tokio::pin!(swarm, origin);
        let mut swarm_failed = None;
        let mut origin_done = false;
        loop {
            tokio::select! {
                r = &mut swarm, if swarm_failed.is_none() => match r {
                    Ok(()) => {
                        // The origin's pieces are readable before its response ends, so the
                        // swarm's wait may end first and drop the origin's future before that
                        // told librqbit: tell it here, or peers are never offered them.
                        tell_swarm(torrent, object, req.from, req.to);
                        return Ok(());
                    }
                    Err(e) if origin_done => return Err(e),
                    Err(e) => swarm_failed = Some(e),
                },
                served = &mut origin, if !origin_done => {
                    if served {
                        return Ok(());
                    }
                    origin_done = true;
                    if let Some(e) = swarm_failed.take() {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The web seeds the index names (setting `web_seeds`), read as they change.
    pub(super) fn web_seeds(&self) -> Vec<String> {
        let mut catalog = lock(&self.catalog);
        let _ = catalog.follow();
        catalog
            .setting("web_seeds")
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// True once the origin made the request's range verified; false if it could not (or there
    /// is none to ask).
    async fn from_origin(
        self: &Arc<Self>,
        req: &FetchRequest,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
    ) -> bool {
        let seeds = self.web_seeds();
        if !self.origin.available(&seeds) {
            return false;
        }
        // The swarm first: `origin_after` while it knows peers (live or connecting), else
        // until PEER_GRACE after the object's first read (the tracker's answer).
        let (asked, first) = (Instant::now(), self.origin.first_asked(&req.fetch));
        loop {
            if object.has(req.from, req.to) {
                return true;
            }
            let due = match known_peers(torrent) {
                0 => first + PEER_GRACE,
                _ => asked + self.origin_after,
            };
            let now = Instant::now();
            let due = due.min(asked + self.origin_after);
            if now >= due {
                break;
            }
            tokio::time::sleep((due - now).min(Duration::from_millis(100))).await;
        }
        if let Err(e) = self.origin.fill(object, &seeds, req.from, req.to).await {
            warn!(object = %req.fetch, reason = e.code(), error = %e, "the origin could not serve a read");
            return false;
        }
        tell_swarm(torrent, object, req.from, req.to);
        if req.ahead > req.to && (known_peers(torrent) == 0 || self.origin_after.is_zero()) {
            let sequential = plan::is_sequential(
                req.to,
                req.ahead,
                self.readahead,
                object.size,
                self.cache.limit,
            );
            let until = match sequential {
                true => object.size,
                false => req.ahead,
            };
            let until = until.min(object.size);
            self.origin_ahead(torrent, &req.fetch, object, seeds, req.to, until);
        }
        self.promote_later(&req.fetch, object);
        true
    }

    /// Fetches `[from, to)` from the origin in the background, from where the last such fill
    /// reached, if that leaves at least half `ORIGIN_AHEAD`; one `ORIGIN_AHEAD` step (two
    /// requests) after another, until the swarm has peers (unless `origin_after` is 0).
    /// Pieces another fill claimed are left to it.
    fn origin_ahead(
        self: &Arc<Self>,
        torrent: &Arc<ManagedTorrent>,
        sha256: &str,
        object: &Arc<CacheObject>,
        seeds: Vec<String>,
        from: u64,
        to: u64,
    ) {
        let Some((from, to)) =
            self.origin
                .ahead_span(sha256, from, to, object.size, ORIGIN_AHEAD / 2)
        else {
            return;
        };
        let (me, o, sha) = (self.clone(), object.clone(), sha256.to_string());
        let t = torrent.clone();
        self.runtime.spawn(async move {
            let _busy = Busy::new(&me, &sha);
            let mut at = from;
            while at < to {
                if known_peers(&t) > 0 && !me.origin_after.is_zero() {
                    me.origin.ahead_failed(&sha, at);
                    debug!(object = %sha, "origin read-ahead yields to the swarm");
                    break;
                }
                let end = (at + ORIGIN_AHEAD).min(to);
                let mid = (at + (end - at) / 2).div_ceil(PIECE) * PIECE;
                let both = async {
                    let (a, b) = tokio::join!(
                        me.origin.fill(&o, &seeds, at, mid.min(end)),
                        me.origin.fill(&o, &seeds, mid.min(end), end)
                    );
                    a.and(b)
                };
                let r = tokio::time::timeout(me.read_timeout.max(Duration::from_secs(1)) * 4, both)
                    .await;
                tell_swarm(&t, &o, at, end);
                if !matches!(r, Ok(Ok(()))) {
                    me.origin.ahead_failed(&sha, at);
                    debug!(object = %sha, "origin read-ahead stopped");
                    break;
                }
                at = end;
            }
            me.maybe_promote(&sha, &o).await;
        });
    }
}

/// Tells librqbit which pieces of `[from, to)` the origin verified into the cache, so that it
/// offers them to peers at once and its streams waiting on them go on (librqbit's
/// `add_checked_piece`, a repofs patch); pieces it has already are skipped.
pub(super) fn tell_swarm(torrent: &ManagedTorrent, object: &CacheObject, from: u64, to: u64) {
    let Some(live) = torrent.live() else { return };
    for p in pieces(from, to.min(object.size)).filter(|&p| object.is_verified(p)) {
        if let Err(e) = live.add_checked_piece(p as u32) {
            debug!(error = %format!("{e:#}"), "librqbit refused an origin's piece");
        }
    }
}

/// Peers the swarm has or is about to have (live, connecting or queued), not dead ones.
pub(super) fn known_peers(torrent: &ManagedTorrent) -> u32 {
    torrent.stats().live.as_ref().map_or(0, |l| {
        let p = &l.snapshot.peer_stats;
        p.live + p.connecting + p.queued
    })
}
