//! `repofs status` on a mirror: what the index sync recorded in the catalog (`settings`) and
//! what the fetch service last wrote to `ROOT/mirror/fetch-status.json`, with each held object
//! named by the paths that publish it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::config::Layout;
use crate::fetch::lazy;

#[derive(Serialize)]
pub struct MirrorStatus {
    pub upstream: String,
    /// `ok`, `unreachable` or `refused` (what the last sync found).
    pub upstream_state: Option<String>,
    pub upstream_error: Option<String>,
    pub generation: Option<u64>,
    /// When the upstream signed that generation, and how long ago.
    pub generation_created: Option<String>,
    pub generation_age_secs: Option<u64>,
    /// When the mirror last confirmed it holds the upstream's newest generation.
    pub synced: Option<String>,
    pub synced_age_secs: Option<u64>,
    pub cache_bytes: u64,
    pub cache_limit: u64,
    pub peers: u64,
    pub down_mbps: f64,
    pub up_mbps: f64,
    pub downloaded_bytes: u64,
    /// Where the bytes came from since the cache was made: the origin over HTTP, the primary
    /// as a peer, other mirrors (per object in `objects`, while it is cached).
    pub sources: lazy::Sources,
    pub uploaded_bytes: u64,
    /// How old the fetch service's last report is (None: it has not written one).
    pub fetch_report_age_secs: Option<u64>,
    /// Bytes from the origins over HTTP, and their failures (`fetch::origin`).
    pub origin: crate::fetch::origin::OriginStatus,
    /// `[mirror] hold`: held bytes against their total.
    pub hold: lazy::HoldStatus,
    /// Cached pieces found corrupt on disk and fetched again (`lazy::repair`).
    pub corrupt: lazy::CorruptStatus,
    /// `dists/` paths of the objects in `corrupt.recent`.
    pub corrupt_paths: HashMap<String, Vec<String>>,
    pub objects: Vec<ObjectProgress>,
}

#[derive(Serialize)]
pub struct ObjectProgress {
    /// `dists/DIR/FILE` for every published file with these bytes.
    pub paths: Vec<String>,
    /// For a package's seekable twin (what `pkgs/` reads of zstd/xz/bzip2/lzip payloads):
    /// the package it was made from.
    pub twin_of: Option<String>,
    #[serde(flatten)]
    pub fetch: lazy::ObjectStatus,
}

/// A primary's status: store objects refused from seeding because a read for a peer found
/// them changed since publication (`seed`, the catalog's `corrupt_objects`).
#[derive(Serialize)]
pub struct PrimaryStatus {
    pub corrupt_objects: Vec<CorruptObject>,
}

#[derive(Serialize)]
pub struct CorruptObject {
    /// `dists/DIR/FILE` for every published file with these bytes.
    pub paths: Vec<String>,
    /// When it was found (RFC 3339).
    pub found: String,
    #[serde(flatten)]
    pub row: crate::catalog::CorruptObject,
}

/// What a primary reports (whatever the catalog says; call it where `mirror_status` is None).
pub fn primary_status(catalog: &Catalog) -> anyhow::Result<PrimaryStatus> {
    let rows = catalog.corrupt_objects()?;
    let files = match rows.is_empty() {
        true => Vec::new(),
        false => catalog.files(false)?,
    };
    let corrupt_objects = rows
        .into_iter()
        .map(|row| CorruptObject {
            paths: files
                .iter()
                .filter(|f| f.sha256 == row.sha256)
                .map(|f| format!("dists/{}", crate::paths::join(&f.directory, &f.filename)))
                .collect(),
            found: crate::time::rfc3339(row.found_at),
            row,
        })
        .collect();
    Ok(PrimaryStatus { corrupt_objects })
}

/// The mirror's status, or None when this repository is not a mirror.
pub fn mirror_status(layout: &Layout, catalog: &Catalog) -> anyhow::Result<Option<MirrorStatus>> {
    let Some(upstream) = catalog.setting("upstream")? else {
        return Ok(None);
    };
    let now = crate::time::now();
    let setting = |k: &str| -> anyhow::Result<Option<String>> {
        Ok(catalog.setting(k)?.filter(|v| !v.is_empty()))
    };
    let time =
        |k: &str| -> anyhow::Result<Option<i64>> { Ok(setting(k)?.and_then(|v| v.parse().ok())) };
    let created = time("index_created_at")?;
    let synced = time("index_synced_at")?;
    let path = layout.mirror().join("fetch-status.json");
    let (report, report_age) = match std::fs::read(&path) {
        Ok(bytes) => {
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs());
            (Some(serde_json::from_slice::<lazy::Status>(&bytes)?), age)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(e.into()),
    };
    let mut paths: HashMap<String, Vec<String>> = HashMap::new();
    let mut twins: HashMap<String, String> = HashMap::new();
    if report
        .as_ref()
        .is_some_and(|r| !r.objects.is_empty() || !r.corrupt.recent.is_empty())
    {
        let mut by_id = HashMap::new();
        for f in catalog.files(false)? {
            let path = format!("dists/{}", crate::paths::join(&f.directory, &f.filename));
            by_id.insert(f.id, path.clone());
            paths.entry(f.sha256).or_default().push(path);
        }
        for (sha, id) in catalog.published_twins()? {
            if let Some(path) = by_id.get(&id) {
                twins.insert(sha, path.clone());
            }
        }
    }
    let age = |t: Option<i64>| t.map(|t| now.saturating_sub(t).max(0) as u64);
    let mut s = MirrorStatus {
        upstream,
        upstream_state: setting("upstream_state")?,
        upstream_error: setting("upstream_error")?,
        generation: setting("index_generation")?.and_then(|g| g.parse().ok()),
        generation_created: created.map(crate::time::rfc3339),
        generation_age_secs: age(created),
        synced: synced.map(crate::time::rfc3339),
        synced_age_secs: age(synced),
        cache_bytes: 0,
        cache_limit: 0,
        peers: 0,
        down_mbps: 0.0,
        up_mbps: 0.0,
        downloaded_bytes: 0,
        sources: Default::default(),
        uploaded_bytes: 0,
        fetch_report_age_secs: report_age,
        origin: Default::default(),
        hold: Default::default(),
        corrupt: Default::default(),
        corrupt_paths: HashMap::new(),
        objects: Vec::new(),
    };
    if let Some(r) = report {
        s.cache_bytes = r.cache_bytes;
        s.cache_limit = r.cache_limit;
        s.peers = r.peers;
        s.down_mbps = r.down_mbps;
        s.up_mbps = r.up_mbps;
        s.sources = r.sources;
        s.downloaded_bytes = r.downloaded_bytes;
        s.uploaded_bytes = r.uploaded_bytes;
        s.origin = r.origin;
        s.hold = r.hold;
        for c in &r.corrupt.recent {
            let p = paths.get(&c.sha256).cloned().unwrap_or_default();
            s.corrupt_paths.insert(c.sha256.clone(), p);
        }
        s.corrupt = r.corrupt;
        s.objects = r
            .objects
            .into_iter()
            .map(|o| ObjectProgress {
                paths: paths.remove(&o.sha256).unwrap_or_default(),
                twin_of: twins.remove(&o.sha256),
                fetch: o,
            })
            .collect();
    }
    Ok(Some(s))
}

/// The human form: a header, then one line per object held.
pub fn render(s: &MirrorStatus) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let ago = |a: Option<u64>| a.map_or("never".to_string(), |a| format!("{a} s ago"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mirror of {}  upstream {}{}",
        s.upstream,
        s.upstream_state.as_deref().unwrap_or("not synced yet"),
        s.upstream_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "index generation {}  signed {}  synced {}",
        s.generation.map_or("none".into(), |g| g.to_string()),
        ago(s.generation_age_secs),
        ago(s.synced_age_secs)
    );
    let _ = writeln!(
        out,
        "cache {:.1} MiB of {:.1} MiB  peers {}  down {:.1} MiB/s  up {:.1} MiB/s  fetched {:.1} MiB  seeded {:.1} MiB",
        mib(s.cache_bytes),
        mib(s.cache_limit),
        s.peers,
        s.down_mbps,
        s.up_mbps,
        mib(s.downloaded_bytes),
        mib(s.uploaded_bytes)
    );
    render_sources(&mut out, s);
    let o = &s.origin;
    if o.bytes > 0 || o.failures > 0 {
        let _ = writeln!(
            out,
            "origin {:.1} MiB over HTTP  failures {}  corrupt pieces {}",
            mib(o.bytes),
            o.failures,
            o.corrupt_pieces
        );
        for src in o.sources.iter().filter(|s| s.last_error.is_some()) {
            let _ = writeln!(
                out,
                "  {}  {} failures, last: {}{}",
                src.url,
                src.failures,
                src.last_error.as_deref().unwrap_or(""),
                match src.backoff_secs {
                    0 => String::new(),
                    n => format!("  (asked again in {n} s)"),
                }
            );
        }
    }
    let h = &s.hold;
    if !h.patterns.is_empty() {
        let _ = writeln!(
            out,
            "hold {}  {:.1} MiB of {:.1} MiB held  ({} of {} objects){}",
            h.patterns.join(" "),
            mib(h.held_bytes),
            mib(h.total_bytes),
            h.held_objects,
            h.objects,
            h.error
                .as_deref()
                .map(|e| format!("  {e}"))
                .unwrap_or_default()
        );
    }
    render_corrupt(&mut out, s);
    for o in &s.objects {
        let f = &o.fetch;
        let pct = f.verified_pieces * 100 / f.pieces.max(1);
        let name = match (o.paths.first(), &o.twin_of) {
            (Some(p), _) => p.clone(),
            (None, Some(pkg)) => format!("{pkg} (seekable twin, for pkgs/)"),
            (None, None) => f.sha256.clone(),
        };
        let _ = writeln!(
            out,
            "{:>4}%  {name}  {}/{} pieces  {} peers{}  from {}",
            if f.complete { 100 } else { pct },
            f.verified_pieces,
            f.pieces,
            f.peers,
            if f.complete { "  complete" } else { "" },
            sources_line(&f.sources)
        );
    }
    out
}

/// Corrupt cached pieces, if any were ever found: the counts, then the latest, one a line.
fn render_corrupt(out: &mut String, s: &MirrorStatus) {
    let c = &s.corrupt;
    if c.found == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "corrupt pieces {} found, {} fetched again (since the cache was made)",
        c.found, c.refetched
    );
    for p in &c.recent {
        let name = s
            .corrupt_paths
            .get(&p.sha256)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| p.sha256.clone());
        let _ = writeln!(
            out,
            "  {name} piece {}  {}  {}  {}{}",
            p.piece,
            p.state,
            p.found,
            p.why,
            p.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
}

/// The totals by source (`lazy::sources`).
fn render_sources(out: &mut String, s: &MirrorStatus) {
    let _ = writeln!(
        out,
        "bytes from {} (since the cache was made)",
        sources_line(&s.sources)
    );
}

fn sources_line(s: &lazy::Sources) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    format!(
        "origin {:.1} MiB, primary {:.1} MiB, mirrors {:.1} MiB",
        mib(s.origin),
        mib(s.primary),
        mib(s.mirrors)
    )
}
