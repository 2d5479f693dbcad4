//! A BitTorrent HTTP tracker for this repository only, at `/announce` and `/scrape` on the
//! `--listen` endpoint, for repositories that name no tracker of their own.
//!
//! - It answers only for infohashes the repository publishes (as opentracker's whitelist
//!   does): anything else gets a BitTorrent failure reason, so the tracker is no free
//!   rendezvous for other content. What the seeder reports is the fast answer; an infohash it
//!   has not reported yet (published since its last look) is asked of the catalog, so a
//!   client that finds a new `.torrent` at once is not turned away.
//! - It always names the primary's own seeder for those infohashes, so a stock client holding
//!   only a `.torrent` finds the first seeder.
//! - Peers that stop announcing expire after two intervals; a sweep of every swarm runs at
//!   most once an interval, so forgotten swarms do not pile up.
//! - Compact peer lists: IPv4 in `peers` (BEP 23), IPv6 in `peers6` (BEP 7).
//! - `/scrape` (BEP 48) counts seeders, leechers and completed downloads per infohash.
//!
//! The decisions are plain functions of the request and the clock (`Tracker::announce_at`,
//! `Tracker::scrape_at`), so they are tested without HTTP; the handlers only translate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use librqbit_bencode::{bencode_serialize_to_writer, ByteBufOwned};
use serde::Serialize;

use crate::catalog::Catalog;

/// What clients are told to wait between announces, unless configured
/// (`[distribution] announce_interval`).
pub const INTERVAL: Duration = Duration::from_secs(60);
/// Most peers in one answer (BEP 3's customary default).
const MAX_PEERS: usize = 50;

pub struct Tracker {
    interval: Duration,
    swarms: Mutex<Swarms>,
    /// Infohashes (hex) the repository publishes; `None` until the seeder first reports, when
    /// every announce is answered (a primary starting up must not turn its clients away).
    published: RwLock<Option<HashSet<String>>>,
    /// Where the primary's seeder listens.
    pub seeder: RwLock<Option<SocketAddr>>,
    /// The catalog, for infohashes published since the seeder's last report.
    catalog: Option<Mutex<Catalog>>,
    /// Told of each leecher that joins a swarm (the primary's seeder dials it).
    on_leecher: RwLock<Option<LeecherHook>>,
    /// Infohashes (hex) published but not seeded here: their object is corrupt in the store.
    /// Peers may still share them; the seeder is not named or counted.
    refused: RwLock<HashSet<String>>,
}

/// What the tracker calls with a new leecher's infohash and address.
pub type LeecherHook = Box<dyn Fn([u8; 20], SocketAddr) + Send + Sync>;

struct Swarms {
    by_hash: HashMap<[u8; 20], Swarm>,
    swept: Instant,
}

#[derive(Default)]
struct Swarm {
    peers: HashMap<SocketAddr, Peer>,
    /// Announces with `event=completed` (scrape's `downloaded`).
    downloaded: u64,
}

#[derive(Clone, Copy)]
struct Peer {
    seen: Instant,
    seed: bool,
    /// The client's `peer_id`: one client may announce from several addresses.
    id: Option<[u8; 20]>,
}

/// One announce, decoded from its query.
#[derive(Debug, Clone)]
pub struct Announce {
    pub info_hash: [u8; 20],
    /// The client's id: libtorrent 2.0 announces once per listen socket, each with its own
    /// port and the same id.
    pub peer_id: Option<[u8; 20]>,
    pub port: u16,
    pub event: Option<String>,
    /// Bytes the peer still lacks: 0 means a seeder.
    pub left: Option<u64>,
    pub numwant: Option<usize>,
}

/// What an announce is answered with (before bencoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub interval: Duration,
    pub peers: Vec<SocketAddr>,
    pub complete: u64,
    pub incomplete: u64,
}

/// One infohash's counts in a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScrapeCounts {
    pub complete: u64,
    pub downloaded: u64,
    pub incomplete: u64,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(INTERVAL)
    }
}

impl Tracker {
    pub fn new(interval: Duration) -> Tracker {
        Tracker {
            interval,
            swarms: Mutex::new(Swarms {
                by_hash: HashMap::new(),
                swept: Instant::now(),
            }),
            published: RwLock::new(None),
            seeder: RwLock::new(None),
            catalog: None,
            on_leecher: RwLock::new(None),
            refused: RwLock::new(HashSet::new()),
        }
    }

    /// Asks `catalog` about infohashes the seeder has not reported (yet).
    pub fn with_catalog(mut self, catalog: Catalog) -> Tracker {
        self.catalog = Some(Mutex::new(catalog));
        self
    }

    /// Calls `hook` with each leecher that joins a swarm. The primary's seeder otherwise learns
    /// of one only at its own next announce (up to an interval), and a client that does not
    /// dial the seeder itself waits that long: Transmission 3.00 drops tracker peers on
    /// 127.0.0.0/8 (libtransmission's `isMartianAddr`).
    pub fn on_leecher(&self, hook: LeecherHook) {
        *crate::sync::write(&self.on_leecher) = Some(hook);
    }

    /// The infohashes (hex) the repository publishes, as the seeder last saw them.
    pub fn set_published(&self, hashes: HashSet<String>) {
        *crate::sync::write(&self.published) = Some(hashes);
    }

    /// The infohashes the seeder no longer seeds though they are published.
    pub fn set_refused(&self, hashes: HashSet<String>) {
        *crate::sync::write(&self.refused) = hashes;
    }

    /// The peers still fetching `hash` (the seeder dials them when it starts seeding it: a
    /// mirror that announced a moment before had found no torrent at the seeder, and would
    /// otherwise wait for its own reconnect or next announce).
    pub fn leechers(&self, hash: &[u8; 20]) -> Vec<SocketAddr> {
        let swarms = crate::sync::lock(&self.swarms);
        swarms.by_hash.get(hash).map_or_else(Vec::new, |s| {
            s.peers
                .iter()
                .filter(|(_, p)| !p.seed)
                .map(|(a, _)| *a)
                .collect()
        })
    }

    /// Whether the seeder seeds `hash` (published, and not refused).
    fn seeded(&self, hash: &[u8; 20]) -> bool {
        !crate::sync::read(&self.refused).contains(&hex::encode(hash))
    }

    fn is_published(&self, hash: &[u8; 20]) -> bool {
        let hex = hex::encode(hash);
        let reported = match &*crate::sync::read(&self.published) {
            Some(set) if set.contains(&hex) => return true,
            Some(_) => true,
            None => false,
        };
        match &self.catalog {
            // One indexed point query; a failed one is not taken as "unknown".
            Some(c) => !matches!(crate::sync::lock(c).torrent_by_info_hash(&hex), Ok(None)),
            None => !reported,
        }
    }

    /// The primary's seeder as `client` (which reached us as `host`) can reach it: a seeder on
    /// the unspecified address is on this host, so the address the client used reaches it too.
    fn seeder_for(&self, host: Option<&str>) -> Option<SocketAddr> {
        let seeder = (*crate::sync::read(&self.seeder))?;
        if !seeder.ip().is_unspecified() {
            return Some(seeder);
        }
        let host_ip = host.and_then(|h| h.parse::<SocketAddr>().ok())?.ip();
        Some(SocketAddr::new(host_ip, seeder.port()))
    }

    /// Answers `a` from `remote` (who reached us at `host`) at time `now`.
    pub fn announce_at(
        &self,
        a: &Announce,
        remote: SocketAddr,
        host: Option<&str>,
        now: Instant,
    ) -> Result<Answer, String> {
        if !self.is_published(&a.info_hash) {
            return Err("unregistered torrent: not published by this repository".into());
        }
        if a.port == 0 {
            return Err("port missing".into());
        }
        // The peer is where the request came from (an `ip` parameter is not trusted).
        let me = SocketAddr::new(canonical(remote.ip()), a.port);
        let want = a.numwant.unwrap_or(MAX_PEERS).min(MAX_PEERS);
        let mut peers = Vec::new();
        let seeder = self.seeder_for(host).filter(|s| *s != me);
        let (mut complete, incomplete, joined, seeder_listed);
        {
            let mut swarms = crate::sync::lock(&self.swarms);
            self.sweep(&mut swarms, now);
            let swarm = swarms.by_hash.entry(a.info_hash).or_default();
            let stale = 2 * self.interval;
            swarm
                .peers
                .retain(|_, p| now.duration_since(p.seen) < stale);
            match a.event.as_deref() {
                Some("stopped") => {
                    swarm.peers.remove(&me);
                    joined = false;
                }
                event => {
                    if event == Some("completed") {
                        swarm.downloaded += 1;
                    }
                    let seed = a.left == Some(0) || event == Some("completed");
                    let id = a.peer_id;
                    let before = swarm.peers.insert(
                        me,
                        Peer {
                            seen: now,
                            seed,
                            id,
                        },
                    );
                    joined = !seed && before.is_none_or(|p| p.seed);
                }
            }
            // The seeder announces too: counted once.
            seeder_listed = seeder.is_some_and(|s| swarm.peers.contains_key(&s));
            complete = swarm.peers.values().filter(|p| p.seed).count() as u64;
            incomplete = swarm.peers.len() as u64 - complete;
            // Seeders are of no use to a seeder. Nor is a client's own other address (same
            // `peer_id`): libtorrent dials it and finds itself, and where peers share an IP
            // (one host, NAT) it keeps one connection per IP, so that one competes with the
            // real peer's.
            let i_seed = swarm.peers.get(&me).is_some_and(|p| p.seed);
            let mine = |p: &Peer| a.peer_id.is_some() && p.id == a.peer_id;
            peers.extend(
                swarm
                    .peers
                    .iter()
                    .filter(|(addr, p)| **addr != me && !(i_seed && p.seed) && !mine(p))
                    .map(|(addr, _)| *addr)
                    .take(want),
            );
        }
        if joined {
            if let Some(hook) = &*crate::sync::read(&self.on_leecher) {
                hook(a.info_hash, me);
            }
        }
        if let Some(seeder) = seeder.filter(|_| self.seeded(&a.info_hash)) {
            if !seeder_listed {
                complete += 1;
            }
            if !peers.contains(&seeder) {
                peers.insert(0, seeder);
                peers.truncate(want.max(1));
            }
        }
        Ok(Answer {
            interval: self.interval,
            peers,
            complete,
            incomplete,
        })
    }

    /// Forgets peers silent for two intervals in every swarm, and empty swarms; at most once
    /// an interval, so an announce costs O(1) amortized.
    fn sweep(&self, swarms: &mut Swarms, now: Instant) {
        if now.duration_since(swarms.swept) < self.interval {
            return;
        }
        swarms.swept = now;
        let stale = 2 * self.interval;
        swarms.by_hash.retain(|_, s| {
            s.peers.retain(|_, p| now.duration_since(p.seen) < stale);
            !s.peers.is_empty() || s.downloaded > 0
        });
    }

    /// Counts for each asked infohash the repository publishes (unknown ones are left out, as
    /// BEP 48 allows); with none asked, every swarm this tracker knows.
    pub fn scrape_at(&self, hashes: &[[u8; 20]], now: Instant) -> BTreeMap<[u8; 20], ScrapeCounts> {
        let seeder = crate::sync::read(&self.seeder).is_some();
        // Asked of the catalog before the swarms are locked: announces wait on that lock.
        let published: Vec<[u8; 20]> = hashes
            .iter()
            .filter(|h| self.is_published(h))
            .copied()
            .collect();
        let mut swarms = crate::sync::lock(&self.swarms);
        self.sweep(&mut swarms, now);
        let stale = 2 * self.interval;
        let asked: Vec<[u8; 20]> = if hashes.is_empty() {
            swarms.by_hash.keys().copied().collect()
        } else {
            published
        };
        asked
            .into_iter()
            .map(|h| {
                let (mut complete, mut incomplete, mut downloaded) = (0, 0, 0);
                if let Some(s) = swarms.by_hash.get(&h) {
                    for p in s
                        .peers
                        .values()
                        .filter(|p| now.duration_since(p.seen) < stale)
                    {
                        if p.seed {
                            complete += 1
                        } else {
                            incomplete += 1
                        }
                    }
                    downloaded = s.downloaded;
                }
                if seeder && self.seeded(&h) {
                    complete += 1;
                }
                (
                    h,
                    ScrapeCounts {
                        complete,
                        downloaded,
                        incomplete,
                    },
                )
            })
            .collect()
    }
}

/// An IPv4 peer that reached a dual-stack socket shows as `::ffff:a.b.c.d`; it is an IPv4 peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `/announce` and `/scrape`, for the composition root to merge into the endpoint's router.
pub fn routes(tracker: Arc<Tracker>) -> axum::Router {
    axum::Router::new()
        .route("/announce", axum::routing::get(announce))
        .route("/scrape", axum::routing::get(scrape))
        .with_state(tracker)
}

#[derive(Serialize)]
struct AnswerWire {
    interval: u64,
    #[serde(rename = "min interval")]
    min_interval: u64,
    complete: u64,
    incomplete: u64,
    peers: ByteBufOwned,
    #[serde(skip_serializing_if = "Option::is_none")]
    peers6: Option<ByteBufOwned>,
}

#[derive(Serialize)]
struct Failure {
    #[serde(rename = "failure reason")]
    reason: String,
}

#[derive(Serialize)]
struct ScrapeWire {
    files: BTreeMap<ByteBufOwned, ScrapeCounts>,
}

fn bencoded<T: Serialize>(v: &T) -> Response {
    let mut body = Vec::new();
    match bencode_serialize_to_writer(v, &mut body) {
        Ok(()) => (StatusCode::OK, [("content-type", "text/plain")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn failure(reason: String) -> Response {
    bencoded(&Failure { reason })
}

/// The query's parameters in order, percent-decoded to bytes (`info_hash` and `peer_id` are
/// binary, and a scrape repeats `info_hash`).
fn params(query: &str) -> Vec<(String, Vec<u8>)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v: Vec<u8> = percent_encoding::percent_decode_str(v).collect();
            (k.to_string(), v)
        })
        .collect()
}

fn decode_announce(query: &str) -> Result<Announce, String> {
    let p = params(query);
    let get = |k: &str| {
        p.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_slice())
    };
    let text = |k: &str| get(k).and_then(|v| std::str::from_utf8(v).ok());
    let info_hash = get("info_hash")
        .and_then(|h| <[u8; 20]>::try_from(h).ok())
        .ok_or("info_hash must be 20 bytes")?;
    let port = text("port")
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or("port missing")?;
    Ok(Announce {
        info_hash,
        peer_id: get("peer_id").and_then(|v| <[u8; 20]>::try_from(v).ok()),
        port,
        event: text("event").filter(|e| !e.is_empty()).map(str::to_string),
        left: text("left").and_then(|v| v.parse().ok()),
        numwant: text("numwant").and_then(|v| v.parse().ok()),
    })
}

fn compact(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for a in peers {
        match a {
            SocketAddr::V4(a) => {
                v4.extend_from_slice(&a.ip().octets());
                v4.extend_from_slice(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                v6.extend_from_slice(&a.ip().octets());
                v6.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

async fn announce(
    State(t): State<Arc<Tracker>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let answer = decode_announce(query.as_deref().unwrap_or(""))
        .and_then(|a| t.announce_at(&a, remote, host, Instant::now()));
    match answer {
        Ok(a) => {
            let (v4, v6) = compact(&a.peers);
            bencoded(&AnswerWire {
                interval: a.interval.as_secs().max(1),
                min_interval: (a.interval.as_secs() / 2).max(1),
                complete: a.complete,
                incomplete: a.incomplete,
                peers: v4.into(),
                peers6: (!v6.is_empty()).then(|| v6.into()),
            })
        }
        Err(reason) => failure(reason),
    }
}

async fn scrape(State(t): State<Arc<Tracker>>, RawQuery(query): RawQuery) -> Response {
    let mut hashes = Vec::new();
    for (k, v) in params(query.as_deref().unwrap_or("")) {
        if k == "info_hash" {
            match <[u8; 20]>::try_from(v.as_slice()) {
                Ok(h) => hashes.push(h),
                Err(_) => return failure("info_hash must be 20 bytes".into()),
            }
        }
    }
    let files = t
        .scrape_at(&hashes, Instant::now())
        .into_iter()
        .map(|(h, c)| (ByteBufOwned::from(h.to_vec()), c))
        .collect();
    bencoded(&ScrapeWire { files })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: [u8; 20] = [7; 20];
    const OTHER: [u8; 20] = [9; 20];

    fn tracker() -> Tracker {
        let t = Tracker::new(Duration::from_secs(60));
        t.set_published([hex::encode(H)].into());
        t
    }

    fn ann(port: u16, left: u64, event: Option<&str>) -> Announce {
        Announce {
            info_hash: H,
            peer_id: None,
            port,
            event: event.map(str::to_string),
            left: Some(left),
            numwant: None,
        }
    }

    fn from(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn binary_parameters_are_decoded() {
        let a = decode_announce("info_hash=%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07&port=6881&event=started&left=0&numwant=5").unwrap();
        assert_eq!(a.info_hash, H);
        assert_eq!(a.port, 6881);
        assert_eq!(a.event.as_deref(), Some("started"));
        assert_eq!((a.left, a.numwant), (Some(0), Some(5)));
        assert!(decode_announce("info_hash=%07&port=1").is_err());
        assert!(decode_announce("port=1").is_err());
    }

    /// libtorrent 2.0 announces once per listen socket, each with its own port and the same
    /// `peer_id`: it is never handed its own other addresses; other clients see them all.
    #[test]
    fn a_client_announcing_from_several_ports_is_not_handed_itself() {
        let t = tracker();
        let now = Instant::now();
        let id = "-LT2080-abcdefghijkl";
        let q = |port: u16| {
            format!("info_hash=%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07%07&peer_id={id}&port={port}&left=5")
        };
        let first = decode_announce(&q(6881)).unwrap();
        assert_eq!(
            first.peer_id.as_ref(),
            Some(id.as_bytes().try_into().unwrap())
        );
        t.announce_at(&first, from("127.0.0.1"), None, now).unwrap();
        let second = decode_announce(&q(6882)).unwrap();
        let a = t
            .announce_at(&second, from("127.0.0.1"), None, now)
            .unwrap();
        assert_eq!(a.peers, vec![], "its own other port");
        let other = t
            .announce_at(&ann(7000, 5, None), from("127.0.0.1"), None, now)
            .unwrap();
        assert_eq!(other.peers.len(), 2, "{:?}", other.peers);
    }

    #[test]
    fn an_unknown_infohash_is_refused_once_the_seeder_has_reported() {
        let t = Tracker::default();
        let now = Instant::now();
        let mut a = ann(1000, 5, None);
        a.info_hash = OTHER;
        // Before the seeder's first report the tracker answers everything.
        assert!(t.announce_at(&a, from("10.0.0.1"), None, now).is_ok());
        t.set_published([hex::encode(H)].into());
        let err = t.announce_at(&a, from("10.0.0.1"), None, now).unwrap_err();
        assert!(err.contains("unregistered"), "{err}");
        assert!(t
            .announce_at(&ann(1000, 5, None), from("10.0.0.1"), None, now)
            .is_ok());
    }

    #[test]
    fn the_seeder_hears_of_each_new_leecher_once_and_is_counted_once() {
        let t = tracker();
        let seeder = SocketAddr::new("10.0.0.9".parse().unwrap(), 7000);
        *crate::sync::write(&t.seeder) = Some(seeder);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        t.on_leecher(Box::new(move |hash, peer| {
            crate::sync::lock(&h).push((hash, peer))
        }));
        let now = Instant::now();
        // The seeder's own announce: a seed, not a leecher; it is then counted once.
        t.announce_at(&ann(7000, 0, Some("started")), from("10.0.0.9"), None, now)
            .unwrap();
        let leecher = ann(1001, 5, Some("started"));
        let a = t
            .announce_at(&leecher, from("10.0.0.1"), None, now)
            .unwrap();
        assert_eq!((a.complete, a.incomplete), (1, 1));
        assert_eq!(a.peers, vec![seeder]);
        t.announce_at(&ann(1001, 3, None), from("10.0.0.1"), None, now)
            .unwrap();
        t.announce_at(&ann(1002, 0, Some("started")), from("10.0.0.2"), None, now)
            .unwrap();
        let want = vec![(H, SocketAddr::new("10.0.0.1".parse().unwrap(), 1001))];
        assert_eq!(*crate::sync::lock(&heard), want);
    }

    #[test]
    fn peers_see_each_other_and_a_silent_peer_expires() {
        let t = tracker();
        let t0 = Instant::now();
        t.announce_at(&ann(1001, 5, Some("started")), from("10.0.0.1"), None, t0)
            .unwrap();
        let b = t
            .announce_at(&ann(1002, 5, Some("started")), from("10.0.0.2"), None, t0)
            .unwrap();
        assert_eq!(b.peers, vec!["10.0.0.1:1001".parse().unwrap()]);
        // Peer 2 keeps announcing; peer 1 falls silent for two intervals.
        let later = t0 + Duration::from_secs(121);
        let b = t
            .announce_at(&ann(1002, 5, None), from("10.0.0.2"), None, later)
            .unwrap();
        assert!(b.peers.is_empty(), "{:?}", b.peers);
        assert_eq!((b.complete, b.incomplete), (0, 1));
    }

    #[test]
    fn the_sweep_forgets_swarms_nobody_announces_to() {
        let t = tracker();
        let t0 = Instant::now();
        t.announce_at(&ann(1001, 5, None), from("10.0.0.1"), None, t0)
            .unwrap();
        assert_eq!(crate::sync::lock(&t.swarms).by_hash.len(), 1);
        // Another swarm's announce, long after, sweeps the silent one away.
        let t2 = Tracker::new(Duration::from_secs(60));
        t2.set_published([hex::encode(H), hex::encode(OTHER)].into());
        t2.announce_at(&ann(1001, 5, None), from("10.0.0.1"), None, t0)
            .unwrap();
        let mut other = ann(1003, 5, None);
        other.info_hash = OTHER;
        t2.announce_at(
            &other,
            from("10.0.0.3"),
            None,
            t0 + Duration::from_secs(200),
        )
        .unwrap();
        let swarms = crate::sync::lock(&t2.swarms);
        assert!(!swarms.by_hash.contains_key(&H));
        assert!(swarms.by_hash.contains_key(&OTHER));
    }

    #[test]
    fn ipv6_peers_are_returned_and_mapped_ipv4_is_ipv4() {
        let t = tracker();
        let now = Instant::now();
        t.announce_at(&ann(1001, 5, None), from("fd00::1"), None, now)
            .unwrap();
        t.announce_at(&ann(1002, 5, None), from("::ffff:10.0.0.2"), None, now)
            .unwrap();
        let a = t
            .announce_at(&ann(1003, 5, None), from("10.0.0.3"), None, now)
            .unwrap();
        let (v4, v6) = compact(&a.peers);
        assert_eq!(v4, [10, 0, 0, 2, 0x03, 0xea]);
        let mut want6 = "fd00::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        want6.extend_from_slice(&1001u16.to_be_bytes());
        assert_eq!(v6, want6);
    }

    #[test]
    fn the_seeder_is_named_first_at_the_address_the_client_used() {
        let t = tracker();
        *crate::sync::write(&t.seeder) = Some("0.0.0.0:5000".parse().unwrap());
        let now = Instant::now();
        let a = t
            .announce_at(
                &ann(1001, 5, None),
                from("10.0.0.1"),
                Some("10.9.9.9:8080"),
                now,
            )
            .unwrap();
        assert_eq!(a.peers, vec!["10.9.9.9:5000".parse().unwrap()]);
        assert_eq!(a.complete, 1);
        let a = t
            .announce_at(
                &ann(1002, 5, None),
                from("fd00::2"),
                Some("[fd00::9]:8080"),
                now,
            )
            .unwrap();
        assert_eq!(a.peers[0], "[fd00::9]:5000".parse().unwrap());
    }

    /// An object the seeder refuses (corrupt in the store) is still published, but the
    /// seeder is neither named nor counted for it.
    #[test]
    fn a_refused_object_is_announced_without_the_seeder() {
        let t = tracker();
        *crate::sync::write(&t.seeder) = Some("10.9.9.9:5000".parse().unwrap());
        t.set_refused([hex::encode(H)].into());
        let now = Instant::now();
        let a = t
            .announce_at(&ann(1001, 5, None), from("10.0.0.1"), None, now)
            .unwrap();
        assert!(a.peers.is_empty(), "{:?}", a.peers);
        assert_eq!(a.complete, 0);
        assert_eq!(t.scrape_at(&[H], now)[&H].complete, 0);
    }

    #[test]
    fn scrape_counts_seeders_leechers_and_completions() {
        let t = tracker();
        let now = Instant::now();
        t.announce_at(&ann(1001, 5, Some("started")), from("10.0.0.1"), None, now)
            .unwrap();
        t.announce_at(
            &ann(1002, 0, Some("completed")),
            from("10.0.0.2"),
            None,
            now,
        )
        .unwrap();
        let s = t.scrape_at(&[H, OTHER], now);
        assert_eq!(s.len(), 1, "an unpublished infohash is left out");
        assert_eq!(
            s[&H],
            ScrapeCounts {
                complete: 1,
                downloaded: 1,
                incomplete: 1
            }
        );
        let mut body = Vec::new();
        let files = s
            .into_iter()
            .map(|(h, c)| (ByteBufOwned::from(h.to_vec()), c))
            .collect();
        bencode_serialize_to_writer(&ScrapeWire { files }, &mut body).unwrap();
        let mut want = b"d5:filesd20:".to_vec();
        want.extend_from_slice(&H);
        want.extend_from_slice(b"d8:completei1e10:downloadedi1e10:incompletei1eeee");
        assert_eq!(body, want);
    }

    #[test]
    fn a_stopped_peer_leaves_at_once() {
        let t = tracker();
        let now = Instant::now();
        t.announce_at(&ann(1001, 5, None), from("10.0.0.1"), None, now)
            .unwrap();
        t.announce_at(&ann(1001, 5, Some("stopped")), from("10.0.0.1"), None, now)
            .unwrap();
        let a = t
            .announce_at(&ann(1002, 5, None), from("10.0.0.2"), None, now)
            .unwrap();
        assert!(a.peers.is_empty());
    }
}
