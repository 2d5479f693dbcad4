//! `/metrics`: the repository's figures for Prometheus, in the OpenMetrics text format that
//! `prometheus-client` writes. Each scrape reads them afresh: a primary's verdicts from the
//! catalog's `uploads`, the index generation, peers, and on a mirror what the fetch service last
//! reported (`fetch::status`, the same numbers `repofs status --json` and `/status.json`
//! show, so the two always agree).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::catalog_error;
use crate::catalog::{Catalog, UploadCounts};
use crate::config::Layout;
use crate::fetch::status::MirrorStatus;

/// Peers connected now (a primary's seeder); a mirror's come from its fetch report.
pub type PeerGauge = Arc<dyn Fn() -> u64 + Send + Sync>;

struct Metrics {
    layout: Layout,
    peers: Option<PeerGauge>,
    verdicts: Mutex<Tally>,
}

/// Verdicts counted so far, and the last upload id counted: a scrape reads only newer rows (a
/// primary's history grows without bound; counting it all took 0.7-1.2 s at 1,000,000 rows).
#[derive(Default)]
struct Tally {
    last: i64,
    counts: BTreeMap<(String, Option<String>), u64>,
}

/// The `/metrics` route, to merge into the endpoint's router. `peers`: a primary's seeder.
pub fn routes(layout: &Layout, peers: Option<PeerGauge>) -> axum::Router {
    let state = Arc::new(Metrics {
        layout: layout.clone(),
        peers,
        verdicts: Mutex::new(Tally::default()),
    });
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// What one scrape reports, read in one go.
struct Figures {
    /// `(state, reason, count)` per verdict; None on a mirror, which takes no uploads (the
    /// rows its replica carries are its primary's business).
    uploads: Option<UploadCounts>,
    generation: u64,
    generation_age: Option<u64>,
    peers: u64,
    /// A primary's store objects refused from seeding (changed on disk); None on a mirror.
    corrupt_objects: Option<u64>,
    mirror: Option<MirrorStatus>,
}

fn gather(m: &Metrics) -> anyhow::Result<Figures> {
    // Its own connection, as a listing: file requests never wait behind it.
    let cat = Catalog::open(&m.layout.catalog())?;
    let now = crate::time::now();
    match crate::fetch::status::mirror_status(&m.layout, &cat)? {
        Some(s) => Ok(Figures {
            uploads: None,
            generation: s.generation.unwrap_or(0),
            generation_age: s.generation_age_secs,
            peers: s.peers,
            corrupt_objects: None,
            mirror: Some(s),
        }),
        None => Ok(Figures {
            uploads: Some(verdicts(m, &cat)?),
            generation: cat.generation()?.max(0) as u64,
            generation_age: cat
                .generation_time()?
                .map(|t| now.saturating_sub(t).max(0) as u64),
            peers: m.peers.as_ref().map_or(0, |p| p()),
            corrupt_objects: Some(cat.corrupt_objects()?.len() as u64),
            mirror: None,
        }),
    }
}

/// Every verdict so far: the last scrape's and the rows since.
fn verdicts(m: &Metrics, cat: &Catalog) -> anyhow::Result<UploadCounts> {
    let mut v = crate::sync::lock(&m.verdicts);
    let (last, rows) = cat.upload_counts_after(v.last)?;
    v.last = last;
    for (state, reason, n) in rows {
        *v.counts.entry((state, reason)).or_default() += n;
    }
    Ok(v.counts
        .iter()
        .map(|((s, r), n)| (s.clone(), r.clone(), *n))
        .collect())
}

async fn metrics(State(m): State<Arc<Metrics>>) -> Response {
    let figures = match tokio::task::spawn_blocking(move || gather(&m)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return catalog_error(format!("{e:#}")).into_response(),
        Err(e) => return catalog_error(e).into_response(),
    };
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry(&figures)) {
        return catalog_error(e).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: u64) -> Gauge<u64, AtomicU64> {
    let g = Gauge::<u64, AtomicU64>::default();
    g.set(v);
    g
}

/// The figures as metrics (a registry made for this scrape: nothing is kept between scrapes).
fn registry(f: &Figures) -> Registry {
    let mut r = Registry::with_prefix("repofs");
    if let Some(uploads) = &f.uploads {
        register_verdicts(&mut r, uploads);
    }
    r.register(
        "index_generation",
        "The newest generation of the signed index this repository holds",
        gauge(f.generation),
    );
    if let Some(age) = f.generation_age {
        r.register_with_unit(
            "index_age",
            "How long ago that generation was made",
            Unit::Seconds,
            gauge(age),
        );
    }
    r.register("peers", "BitTorrent peers connected now", gauge(f.peers));
    if let Some(n) = f.corrupt_objects {
        r.register(
            "corrupt_objects",
            "Store objects refused from seeding: a read found them changed since publication",
            gauge(n),
        );
    }
    if let Some(s) = &f.mirror {
        register_mirror(&mut r, s);
    }
    r
}

/// A primary's verdicts, from `(state, reason, count)` rows.
fn register_verdicts(r: &mut Registry, uploads: &[(String, Option<String>, u64)]) {
    let count = |accepted: bool| -> u64 {
        uploads
            .iter()
            .filter(|(state, _, _)| (state == "accepted") == accepted)
            .map(|(_, _, n)| n)
            .sum()
    };
    r.register(
        "uploads",
        "Uploads judged (accepted or rejected)",
        counter(count(true) + count(false)),
    );
    r.register(
        "publications",
        "Uploads accepted and published",
        counter(count(true)),
    );
    let rejections = Family::<ReasonLabel, Counter>::default();
    for (state, reason, n) in uploads {
        if state != "accepted" {
            let reason = reason.clone().unwrap_or_else(|| "unknown".into());
            rejections.get_or_create(&ReasonLabel { reason }).inc_by(*n);
        }
    }
    r.register("rejections", "Uploads rejected, by reason code", rejections);
}

/// A mirror's cache and where its bytes came from (`fetch::lazy::sources`).
fn register_mirror(r: &mut Registry, s: &MirrorStatus) {
    let bytes = Family::<SourceLabel, Counter>::default();
    for (source, n) in [
        ("origin", s.sources.origin),
        ("primary", s.sources.primary),
        ("mirrors", s.sources.mirrors),
    ] {
        bytes.get_or_create(&SourceLabel { source }).inc_by(n);
    }
    r.register_with_unit(
        "fetch",
        "Bytes fetched since the cache was made, by source: the origin over HTTP, \
         the primary as a peer, other mirrors",
        Unit::Bytes,
        bytes,
    );
    r.register_with_unit(
        "seeded",
        "Bytes this mirror sent to peers since it started",
        Unit::Bytes,
        counter(s.uploaded_bytes),
    );
    r.register_with_unit(
        "cache",
        "Bytes the cache holds",
        Unit::Bytes,
        gauge(s.cache_bytes),
    );
    r.register_with_unit(
        "cache_limit",
        "The cache's bound",
        Unit::Bytes,
        gauge(s.cache_limit),
    );
    r.register(
        "origin_failures",
        "Origin requests that failed since the fetch service started",
        counter(s.origin.failures),
    );
    r.register(
        "cache_corrupt_pieces",
        "Cached pieces found changed on disk since they were verified, since the cache was made",
        counter(s.corrupt.found),
    );
    r.register(
        "cache_refetched_pieces",
        "Of those, pieces fetched again and verified",
        counter(s.corrupt.refetched),
    );
    r.register(
        "origin_corrupt_pieces",
        "Pieces an origin sent that failed their SHA-1 since the fetch service started",
        counter(s.origin.corrupt_pieces),
    );
}
