//! Where a mirror's bytes came from: the origin over HTTP (`fetch::origin`), the primary as a
//! peer, and other mirrors (any other peer; `swarm::is_primary` tells them apart by peer id).
//!
//! The counters behind it restart: a torrent added again after eviction has a new cache object
//! and new peers, librqbit drops a peer whose reconnects ran out, and the process restarts.
//! So the ledger reads each counter as it goes (`observe`: every status report, and just
//! before eviction drops a torrent) and adds what grew since its last reading; a counter found
//! smaller than before restarted from zero, and all of it is new. Totals are kept since the
//! cache was made: the status report carries them and the next start restores them from it
//! (what came in after the last report before a crash is lost; at most `STATUS_EVERY`). Per
//! object, the record lives as long as the object is in the cache.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use librqbit::{PeerStatsFilter, PeerStatsFilterState};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::torrents::Held;
use super::Status;
use crate::fetch::swarm;

/// Bytes by source. Peer bytes are what peers sent (librqbit's per-peer count, a chunk that
/// arrived after its request was cancelled included); origin bytes are verified pieces.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    pub origin: u64,
    pub primary: u64,
    pub mirrors: u64,
}

impl Sources {
    fn add(&mut self, o: &Sources) {
        self.origin += o.origin;
        self.primary += o.primary;
        self.mirrors += o.mirrors;
    }
}

/// One reading of an object's counters.
pub(super) struct Reading {
    /// Verified bytes its cache object took from the origins.
    pub origin: u64,
    /// Per peer (address): whether it is the primary, and the bytes it sent.
    pub peers: Vec<(String, bool, u64)>,
}

#[derive(Default)]
pub(super) struct Ledger {
    total: Sources,
    objects: HashMap<String, Sources>,
    /// Per object, the counters as last read: the origin's, and each peer's.
    last: HashMap<String, (u64, HashMap<String, u64>)>,
}

/// What a counter that read `last` before and `now` now has added.
fn grown(last: u64, now: u64) -> u64 {
    match now >= last {
        true => now - last,
        // It restarted from zero.
        false => now,
    }
}

impl Ledger {
    /// A ledger that goes on from a report's totals and the records of objects still cached.
    pub fn restore(total: Sources, objects: impl IntoIterator<Item = (String, Sources)>) -> Ledger {
        Ledger {
            total,
            objects: objects.into_iter().collect(),
            last: HashMap::new(),
        }
    }

    pub fn observe(&mut self, sha256: &str, r: &Reading) {
        let (origin, peers) = self.last.entry(sha256.to_string()).or_default();
        let mut add = Sources {
            origin: grown(*origin, r.origin),
            ..Default::default()
        };
        *origin = r.origin;
        for (addr, primary, bytes) in &r.peers {
            let last = peers.entry(addr.clone()).or_default();
            let n = grown(*last, *bytes);
            *last = *bytes;
            match primary {
                true => add.primary += n,
                false => add.mirrors += n,
            }
        }
        self.total.add(&add);
        self.objects
            .entry(sha256.to_string())
            .or_default()
            .add(&add);
    }

    /// The object's counters start again from zero (its torrent and cache object were made
    /// anew): what they read next is all new.
    pub fn restarted(&mut self, sha256: &str) {
        self.last.remove(sha256);
    }

    /// The object left the cache: its record goes (the totals keep its bytes), and a torrent
    /// added for it again starts its counters afresh.
    pub fn forget(&mut self, sha256: &str) {
        self.objects.remove(sha256);
        self.last.remove(sha256);
    }

    pub fn object(&self, sha256: &str) -> Sources {
        self.objects.get(sha256).copied().unwrap_or_default()
    }

    pub fn total(&self) -> Sources {
        self.total
    }
}

/// Reads a held object's counters: its cache object's origin bytes, and every peer librqbit
/// still knows of, connected or not.
pub(super) fn reading(h: &Held) -> Reading {
    let filter = PeerStatsFilter {
        state: PeerStatsFilterState::All,
    };
    let peers = h.torrent.live().map_or_else(Vec::new, |l| {
        l.per_peer_stats_snapshot(filter)
            .peers
            .into_iter()
            .map(|(addr, s)| {
                let primary = s.peer_id.is_some_and(|id| swarm::is_primary(&id.0));
                (addr, primary, s.counters.fetched_bytes)
            })
            .collect()
    });
    Reading {
        origin: h.object.from_origin.load(Ordering::Relaxed),
        peers,
    }
}

/// The ledger a start goes on with: the totals of the last report at `status`, and the records
/// of the objects still `cached`. Without a readable report, from zero.
pub(super) fn restore(status: &Path, cached: &[String]) -> Ledger {
    let last: Status = match std::fs::read(status) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "the last fetch status is unreadable: byte sources start from zero");
                return Ledger::default();
            }
        },
        Err(_) => return Ledger::default(),
    };
    let objects = last
        .objects
        .into_iter()
        .filter(|o| cached.contains(&o.sha256))
        .map(|o| (o.sha256, o.sources));
    Ledger::restore(last.sources, objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(origin: u64, peers: &[(&str, bool, u64)]) -> Reading {
        Reading {
            origin,
            peers: peers
                .iter()
                .map(|(a, p, b)| (a.to_string(), *p, *b))
                .collect(),
        }
    }

    #[test]
    fn each_source_counts_what_grew_and_a_restarted_counter_counts_whole() {
        let mut l = Ledger::default();
        l.observe("a", &reading(10, &[("p:1", true, 100), ("m:2", false, 5)]));
        l.observe("a", &reading(30, &[("p:1", true, 150), ("m:2", false, 5)]));
        let want = Sources {
            origin: 30,
            primary: 150,
            mirrors: 5,
        };
        assert_eq!(l.object("a"), want);
        // The mirror peer was dropped and came back: its counter restarted.
        l.observe("a", &reading(30, &[("p:1", true, 150), ("m:2", false, 3)]));
        assert_eq!(l.object("a").mirrors, 8);
        // Another object adds to the totals only.
        l.observe("b", &reading(7, &[]));
        assert_eq!(l.object("a").origin, 30);
        assert_eq!(l.total().origin, 37);
        assert_eq!(l.total().primary, 150);
    }

    #[test]
    fn an_evicted_object_leaves_its_bytes_in_the_totals_and_starts_afresh() {
        let mut l = Ledger::restore(
            Sources {
                origin: 1,
                primary: 2,
                mirrors: 3,
            },
            [("a".to_string(), Sources::default())],
        );
        l.observe("a", &reading(4, &[("p:1", true, 50)]));
        l.forget("a");
        assert_eq!(l.object("a"), Sources::default());
        // Added again: a new cache object and new peers, counted from zero.
        l.observe("a", &reading(2, &[("p:1", true, 10)]));
        assert_eq!(l.object("a").primary, 10);
        assert_eq!(
            l.total(),
            Sources {
                origin: 7,
                primary: 62,
                mirrors: 3
            }
        );
    }

    /// A repaired object's torrent is made anew: counters that climb back to where the old
    /// ones stood are still new bytes, and the object keeps what it had.
    #[test]
    fn a_restarted_object_counts_its_new_counters_whole() {
        let mut l = Ledger::default();
        l.observe("a", &reading(0, &[("p:1", true, 262144)]));
        l.restarted("a");
        l.observe("a", &reading(0, &[("p:1", true, 262144)]));
        assert_eq!(l.object("a").primary, 2 * 262144);
        assert_eq!(l.total().primary, 2 * 262144);
    }
}
