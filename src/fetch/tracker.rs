//! A BitTorrent HTTP tracker (BEP 3, compact peer lists as in BEP 23) at `/announce` on the
//! `--listen` endpoint, for repositories that name no tracker of their own. It remembers who
//! announced which infohash, and always names the primary's own seeder for the infohashes the
//! catalog knows, so a stock client holding only a `.torrent` finds the first seeder.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use librqbit_bencode::{bencode_serialize_to_writer, ByteBufOwned};
use serde::Serialize;

/// What clients are told to wait between announces; peers silent for twice as long are
/// forgotten.
const INTERVAL: Duration = Duration::from_secs(60);
/// Most peers in one answer (BEP 3's customary default).
const MAX_PEERS: usize = 50;

#[derive(Default)]
pub struct Tracker {
    swarms: Mutex<HashMap<[u8; 20], HashMap<SocketAddrV4, Instant>>>,
    /// Infohashes (hex) the primary seeds, and where its seeder listens.
    pub seeded: RwLock<HashSet<String>>,
    pub seeder: RwLock<Option<SocketAddr>>,
}

#[derive(Serialize)]
struct Answer {
    interval: u64,
    #[serde(rename = "min interval")]
    min_interval: u64,
    peers: ByteBufOwned,
}

#[derive(Serialize)]
struct Failure {
    #[serde(rename = "failure reason")]
    reason: String,
}

fn bencoded<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let mut body = Vec::new();
    match bencode_serialize_to_writer(v, &mut body) {
        Ok(()) => (status, [("content-type", "text/plain")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The query's parameters, percent-decoded to bytes (`info_hash` and `peer_id` are binary).
fn params(query: &str) -> HashMap<String, Vec<u8>> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v: Vec<u8> = percent_encoding::percent_decode_str(v).collect();
            (k.to_string(), v)
        })
        .collect()
}

/// `/announce`, for the composition root to merge into the endpoint's router.
pub fn routes(tracker: Arc<Tracker>) -> axum::Router {
    axum::Router::new()
        .route("/announce", axum::routing::get(announce))
        .with_state(tracker)
}

pub async fn announce(
    State(t): State<Arc<Tracker>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let fail = |reason: &str| {
        bencoded(
            StatusCode::OK,
            &Failure {
                reason: reason.to_string(),
            },
        )
    };
    let p = params(query.as_deref().unwrap_or(""));
    let Some(Ok(hash)) = p
        .get("info_hash")
        .map(|h| <[u8; 20]>::try_from(h.as_slice()))
    else {
        return fail("info_hash must be 20 bytes");
    };
    let port = p
        .get("port")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u16>().ok());
    let Some(port) = port.filter(|p| *p != 0) else {
        return fail("port missing");
    };
    let stopped = p.get("event").map(Vec::as_slice) == Some(b"stopped");
    // The peer is where the request came from (an `ip` parameter is not trusted).
    let IpAddr::V4(ip) = remote.ip() else {
        return fail("only IPv4 peers are tracked");
    };
    let me = SocketAddrV4::new(ip, port);
    let now = Instant::now();
    let mut peers: Vec<SocketAddrV4> = Vec::new();
    {
        let mut swarms = crate::sync::lock(&t.swarms);
        let swarm = swarms.entry(hash).or_default();
        swarm.retain(|_, seen| now.duration_since(*seen) < 2 * INTERVAL);
        if stopped {
            swarm.remove(&me);
        } else {
            swarm.insert(me, now);
        }
        peers.extend(swarm.keys().filter(|a| **a != me).take(MAX_PEERS));
    }
    let hex = hex::encode(hash);
    let seeds = crate::sync::read(&t.seeded).contains(&hex);
    if let (true, Some(SocketAddr::V4(seeder))) = (seeds, *crate::sync::read(&t.seeder)) {
        // A seeder on 0.0.0.0 is on this host: the address the client reached us at (its
        // Host header) reaches the seeder too. A host name there cannot go in a compact list.
        let host_ip = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<SocketAddrV4>().ok())
            .map(|a| *a.ip());
        let seeder = match (seeder.ip().is_unspecified(), host_ip) {
            (false, _) => Some(seeder),
            (true, Some(ip)) => Some(SocketAddrV4::new(ip, seeder.port())),
            (true, None) => None,
        };
        if let Some(seeder) = seeder.filter(|s| *s != me && !peers.contains(s)) {
            peers.insert(0, seeder);
        }
    }
    let mut compact = Vec::with_capacity(peers.len() * 6);
    for a in peers {
        compact.extend_from_slice(&a.ip().octets());
        compact.extend_from_slice(&a.port().to_be_bytes());
    }
    bencoded(
        StatusCode::OK,
        &Answer {
            interval: INTERVAL.as_secs(),
            min_interval: INTERVAL.as_secs() / 2,
            peers: compact.into(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_parameters_are_decoded() {
        let p = params("info_hash=%12%34abc%FF&port=6881&event=started");
        assert_eq!(p["info_hash"], b"\x12\x34abc\xff");
        assert_eq!(p["port"], b"6881");
    }
}
