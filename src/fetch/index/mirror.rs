//! A mirror's side of the index: fetch the signed root, check it against the pinned key, and
//! bring the catalog to its generation in one transaction.
//!
//! Refused, and the last good index kept: a root that does not verify (`bad-signature`), one
//! signed by another key (`wrong-key`), an older generation (`rollback`), the same generation
//! with another head (`fork`), an expired root (`expired`), an object whose hash does not match
//! (`bad-hash`), or objects that do not chain up (`bad-index`). Every HTTP call has a deadline.
//! The metadata files a delta names by hash are made in `meta`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{
    unpack_replica, unpack_streamed, IndexDir, Root, MAX_ROOT, ROOT_FORMAT, SNAPSHOT_EVERY,
};
use crate::catalog::{Catalog, MetaRef, PublishTx, ReplicaMeta};
use crate::time::now;

mod meta;

/// Deadline for fetching the root (a few hundred bytes).
const ROOT_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline for one object (a snapshot of a large repository is big) and for each read of it.
const OBJECT_DEADLINE: Duration = Duration::from_secs(600);
const READ_DEADLINE: Duration = Duration::from_secs(30);
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How often a sync that changed nothing records its time (`index_synced_at`).
const SYNCED_AT_EVERY: i64 = 60;
/// Largest object accepted.
const MAX_OBJECT: u64 = 16 << 30;

/// Where a mirror syncs from.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base URL of the upstream's `--listen` endpoint (`http://HOST:PORT`).
    pub url: String,
    /// The pinned repository key (as exported by `repofs keys export-repo`).
    pub repo_key: Vec<u8>,
    pub poll: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{code}: {message}")]
    Refused { code: &'static str, message: String },
    #[error("{0:#}")]
    Local(#[from] anyhow::Error),
}

impl From<crate::catalog::CatalogError> for SyncError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        SyncError::Local(e.into())
    }
}

impl From<std::io::Error> for SyncError {
    fn from(e: std::io::Error) -> Self {
        SyncError::Local(e.into())
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> SyncError {
    SyncError::Refused {
        code,
        message: message.into(),
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pub from: Option<i64>,
    pub generation: i64,
    /// Objects downloaded and their bytes (objects already held are not fetched again).
    pub objects: usize,
    pub bytes: u64,
    /// Metadata files the deltas named by hash that this mirror rendered itself, and those
    /// it fetched whole (their bytes are in `bytes`) because its render differed.
    pub meta_rendered: usize,
    pub meta_fetched: usize,
}

pub struct Mirror {
    upstream: Upstream,
    dir: IndexDir,
    /// Set by SIGTERM: a download in progress gives up at its next chunk.
    stop: std::sync::Arc<AtomicBool>,
    /// Serving the index again: hold every object the held root names (the snapshot too,
    /// which an incremental sync does not otherwise fetch), so a mirror below can start.
    pub reserve: bool,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

enum Fetch {
    Got,
    Missing,
}

impl Mirror {
    pub fn new(
        root: &Path,
        mut upstream: Upstream,
        stop: std::sync::Arc<AtomicBool>,
    ) -> anyhow::Result<Mirror> {
        upstream.url = upstream.url.trim_end_matches('/').to_string();
        let dir = IndexDir::new(root);
        dir.create()?;
        dir.clean_tmp()?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_DEADLINE)
            .read_timeout(READ_DEADLINE)
            .build()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("mirror")
            .build()?;
        Ok(Mirror {
            upstream,
            dir,
            stop,
            reserve: false,
            client,
            rt,
        })
    }

    /// GET `url`, answered within `deadline`: the response, None when the upstream does not
    /// have it (404); a transport error or any other status is `Unreachable`.
    async fn get(
        &self,
        url: &str,
        deadline: Duration,
    ) -> Result<Option<reqwest::Response>, SyncError> {
        let resp = self
            .client
            .get(url)
            .timeout(deadline)
            .send()
            .await
            .map_err(|e| SyncError::Unreachable(format!("{url}: {e}")))?;
        match resp.status() {
            s if s.is_success() => Ok(Some(resp)),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => Err(SyncError::Unreachable(format!("{url}: HTTP {s}"))),
        }
    }

    /// Fetches and checks the root; returns the signed bytes and the parsed body.
    fn root(&self) -> Result<(Vec<u8>, Root), SyncError> {
        let url = format!("{}/index/root.asc", self.upstream.url);
        let signed = self.rt.block_on(async {
            let mut resp = self
                .get(&url, ROOT_DEADLINE)
                .await?
                .ok_or_else(|| not_found(&url))?;
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| SyncError::Unreachable(format!("{url}: {e}")))?
            {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > MAX_ROOT {
                    return Err(refused("too-large", format!("root over {MAX_ROOT} bytes")));
                }
            }
            Ok(body)
        })?;
        let body =
            crate::verify::index_root(&self.upstream.repo_key, &signed, MAX_ROOT).map_err(|r| {
                SyncError::Refused {
                    code: r.code,
                    message: r.message,
                }
            })?;
        let root: Root = serde_json::from_slice(&body)
            .map_err(|e| refused("bad-index", format!("root body: {e}")))?;
        if root.format != ROOT_FORMAT {
            return Err(refused(
                "bad-index",
                format!(
                    "root format {} (this repofs reads {ROOT_FORMAT})",
                    root.format
                ),
            ));
        }
        if root.expires < now() {
            return Err(refused(
                "expired",
                format!(
                    "root of generation {} expired at {}",
                    root.generation, root.expires
                ),
            ));
        }
        Ok((signed, root))
    }

    /// Object `sha256` in the local index dir, fetched (and its hash checked) if missing.
    fn object(&self, sha256: &str, stats: &mut Synced) -> Result<Fetch, SyncError> {
        self.fetch_object(sha256, None, stats)
    }

    /// `object`, each chunk also handed to `tee` as it arrives (the unpacker of `replica`)
    /// while it is hashed and stored; a `tee` that hangs up is no longer fed. Whatever `tee`
    /// made is untrusted until this returns `Got`: the object's hash has then checked.
    fn fetch_object(
        &self,
        sha256: &str,
        tee: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
        stats: &mut Synced,
    ) -> Result<Fetch, SyncError> {
        let dest = self
            .dir
            .object_path(sha256)
            .ok_or_else(|| refused("bad-index", format!("{sha256:?} is not a sha256")))?;
        if dest.exists() {
            return Ok(Fetch::Got);
        }
        let url = format!("{}/index/objects/{sha256}", self.upstream.url);
        let tmp = self.dir.temp_path("download");
        let got = self.rt.block_on(async {
            let mut tee = tee;
            let unreachable = |e: reqwest::Error| SyncError::Unreachable(format!("{url}: {e}"));
            let Some(mut resp) = self.get(&url, OBJECT_DEADLINE).await? else {
                return Ok(None);
            };
            let mut f = tokio::fs::File::create(&tmp).await?;
            let mut hash = Sha256::new();
            let mut len = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
                if self.stop.load(Ordering::Relaxed) {
                    return Err(SyncError::Local(anyhow::anyhow!("stopping")));
                }
                len += chunk.len() as u64;
                if len > MAX_OBJECT {
                    return Err(refused(
                        "too-large",
                        format!("{url}: over {MAX_OBJECT} bytes"),
                    ));
                }
                hash.update(&chunk);
                if let Some(t) = &tee {
                    if t.send(chunk.to_vec()).await.is_err() {
                        tee = None;
                    }
                }
                f.write_all(&chunk).await?;
            }
            f.sync_all().await?;
            Ok(Some((hex::encode(hash.finalize()), len)))
        });
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let Some((actual, len)) = got else {
            return Ok(Fetch::Missing);
        };
        if actual != sha256 {
            let _ = fs::remove_file(&tmp);
            return Err(refused(
                "bad-hash",
                format!("object {sha256} arrived with sha256 {actual}"),
            ));
        }
        fs::rename(&tmp, &dest)?;
        tracing::debug!(object = sha256, bytes = len, "object fetched");
        stats.objects += 1;
        stats.bytes += len;
        Ok(Fetch::Got)
    }

    /// Fetches `/index/since/G` into the local objects, each checked against the hash it is
    /// announced with (whether the chain names it is checked when the chain is walked).
    fn prefetch_since(&self, held: i64, stats: &mut Synced) -> Result<(), SyncError> {
        let url = format!("{}/index/since/{held}", self.upstream.url);
        self.rt.block_on(async {
            let unreachable = |e: reqwest::Error| SyncError::Unreachable(format!("{url}: {e}"));
            let mut resp = self
                .get(&url, OBJECT_DEADLINE)
                .await?
                .ok_or_else(|| not_found(&url))?;
            let mut pending: Vec<u8> = Vec::new();
            let mut count = 0i64;
            loop {
                count += 1;
                if count > SNAPSHOT_EVERY + 1 {
                    return Err(refused("bad-index", format!("{url}: too many objects")));
                }
                // The header: "SHA256 LEN\n".
                let nl = loop {
                    if let Some(i) = pending.iter().position(|b| *b == b'\n') {
                        break Some(i);
                    }
                    if pending.len() > 200 {
                        return Err(refused("bad-index", format!("{url}: bad framing")));
                    }
                    match resp.chunk().await.map_err(unreachable)? {
                        Some(c) => pending.extend_from_slice(&c),
                        None => break None,
                    }
                };
                let Some(nl) = nl else {
                    return if pending.is_empty() {
                        Ok(())
                    } else {
                        Err(refused("bad-index", format!("{url}: truncated")))
                    };
                };
                let head = String::from_utf8_lossy(&pending[..nl]).into_owned();
                pending.drain(..=nl);
                let (sha, len) = head
                    .split_once(' ')
                    .and_then(|(s, l)| Some((s.to_string(), l.parse::<u64>().ok()?)))
                    .filter(|(s, l)| super::is_sha256_hex(s) && *l <= MAX_OBJECT)
                    .ok_or_else(|| refused("bad-index", format!("{url}: bad header {head:?}")))?;
                let tmp = self.dir.temp_path("since");
                let mut f = tokio::fs::File::create(&tmp).await?;
                let mut hash = Sha256::new();
                let mut left = len;
                loop {
                    let take = (left as usize).min(pending.len());
                    hash.update(&pending[..take]);
                    f.write_all(&pending[..take]).await?;
                    pending.drain(..take);
                    left -= take as u64;
                    if left == 0 {
                        break;
                    }
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(SyncError::Local(anyhow::anyhow!("stopping")));
                    }
                    match resp.chunk().await.map_err(unreachable)? {
                        Some(c) => pending.extend_from_slice(&c),
                        None => {
                            let _ = tokio::fs::remove_file(&tmp).await;
                            return Err(refused("bad-index", format!("{url}: truncated")));
                        }
                    }
                }
                f.sync_all().await?;
                drop(f);
                let actual = hex::encode(hash.finalize());
                if actual != sha {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(refused(
                        "bad-hash",
                        format!("object {sha} arrived with sha256 {actual}"),
                    ));
                }
                let dest = self
                    .dir
                    .object_path(&sha)
                    .ok_or_else(|| refused("bad-index", "bad object name"))?;
                tokio::fs::rename(&tmp, &dest).await?;
                stats.objects += 1;
                stats.bytes += len;
            }
        })
    }

    /// Object `sha256` unpacked into a replica database, its own description checked. One
    /// not held is unpacked as it downloads, as `curl | zstd -d` would (the unpacked file is
    /// opened only once the object's hash has checked).
    fn replica(
        &self,
        sha256: &str,
        stats: &mut Synced,
        temps: &mut Vec<PathBuf>,
    ) -> Result<Option<(PathBuf, ReplicaMeta)>, SyncError> {
        let db = self.dir.temp_path("replica");
        temps.push(db.clone());
        let bad = |e: &dyn std::fmt::Display| refused("bad-index", format!("object {sha256}: {e}"));
        let held = self.dir.object_path(sha256).filter(|p| p.exists());
        if let Some(object) = held {
            unpack_replica(fs::File::open(object)?, &db).map_err(|e| bad(&e))?;
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let out = db.clone();
            let unpacker = std::thread::Builder::new()
                .name("unpack".into())
                .spawn(move || unpack_streamed(rx, &out))?;
            let fetched = self.fetch_object(sha256, Some(tx), stats);
            // The sender is gone with `fetch_object`: the unpacker sees the end and returns.
            let unpacked = unpacker
                .join()
                .map_err(|_| SyncError::Local(anyhow::anyhow!("the unpacker panicked")))?;
            if let Fetch::Missing = fetched? {
                return Ok(None);
            }
            // The object has checked; if the streaming unpack stopped, unpack what is held.
            if let Err(e) = unpacked {
                tracing::debug!(object = sha256, error = %e, "unpacking the checked object");
                let object = self.dir.object_path(sha256).ok_or_else(|| bad(&sha256))?;
                unpack_replica(fs::File::open(object)?, &db).map_err(|e| bad(&e))?;
            }
        }
        tracing::debug!(object = sha256, "object unpacked");
        let meta = Catalog::replica_meta(&db).map_err(|e| bad(&e))?;
        Ok(Some((db, meta)))
    }

    /// One sync. On any error the catalog is as it was.
    pub fn sync(&self, catalog: &mut Catalog) -> Result<Synced, SyncError> {
        let mut temps = Vec::new();
        let result = self.sync_inner(catalog, &mut temps);
        for t in temps {
            super::remove_db(&t);
        }
        result
    }

    fn sync_inner(
        &self,
        catalog: &mut Catalog,
        temps: &mut Vec<PathBuf>,
    ) -> Result<Synced, SyncError> {
        let (signed, root) = self.root()?;
        tracing::debug!(generation = root.generation, "root verified");
        let held: Option<i64> = catalog
            .setting("index_generation")?
            .and_then(|g| g.parse().ok());
        let head_sha = root
            .head
            .as_ref()
            .map(|h| h.sha256.clone())
            .unwrap_or_default();
        let mut stats = Synced {
            from: held,
            generation: root.generation,
            ..Synced::default()
        };
        if let Some(m) = held {
            if root.generation < m {
                return Err(refused(
                    "rollback",
                    format!(
                        "upstream root is at generation {}, this mirror at {m}",
                        root.generation
                    ),
                ));
            }
            if root.generation == m {
                if catalog.setting("index_head")?.unwrap_or_default() != head_sha {
                    return Err(refused(
                        "fork",
                        format!("generation {m} names another head than the one applied"),
                    ));
                }
                // The same index, maybe re-signed with a later expiry: serve the newer root.
                self.dir.put_root(&signed)?;
                // Every catalog commit makes the mount reload its views (a second or more
                // for 100,000 packages): the time of a sync that changed nothing is written
                // at most once a minute.
                let synced_at: Option<i64> = catalog
                    .setting("index_synced_at")?
                    .and_then(|t| t.parse().ok());
                let mut settings = vec![
                    ("upstream_state", "ok".to_string()),
                    ("upstream_error", String::new()),
                    ("trackers", trackers_json(&root)?),
                    ("web_seeds", web_seeds_json(&root)?),
                    ("web_seeds", web_seeds_json(&root)?),
                ];
                if synced_at.is_none_or(|t| now() - t >= SYNCED_AT_EVERY) {
                    settings.push(("index_synced_at", now().to_string()));
                }
                catalog.set_settings(&settings)?;
                return Ok(stats);
            }
        }
        let mut use_snapshot = match held {
            None => true,
            Some(m) => root.generation - m > SNAPSHOT_EVERY,
        };
        if let (false, Some(m)) = (use_snapshot, held) {
            // One request for every delta since; each is still checked against the chain.
            match self.prefetch_since(m, &mut stats) {
                Ok(()) => {}
                // A wrong object is refused whichever way it came.
                Err(e @ SyncError::Refused { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "no deltas in one request; fetching them by hash")
                }
            }
        }
        let chain = loop {
            match self.chain(&root, held, use_snapshot, &mut stats, temps)? {
                Some(c) => break c,
                // A delta this upstream does not hold (it started from a snapshot itself).
                None if !use_snapshot => use_snapshot = true,
                None => return Err(refused("bad-index", "the root names a missing object")),
            }
        };
        let settings = [
            ("index_generation", root.generation.to_string()),
            // When the upstream signed the root that brought this generation (its age).
            ("index_created_at", root.created.to_string()),
            ("index_head", head_sha),
            ("index_synced_at", now().to_string()),
            ("upstream_state", "ok".to_string()),
            ("upstream_error", String::new()),
            ("trackers", trackers_json(&root)?),
            ("web_seeds", web_seeds_json(&root)?),
        ];
        let target = self.staged(&chain, use_snapshot, temps)?;
        let mut resolve =
            |tx: &PublishTx<'_>, refs: &[MetaRef]| self.resolve_meta(tx, refs, &mut stats);
        // From empty, the unpacked snapshot becomes the catalog (written once, not thrice).
        let adopted = use_snapshot
            && held.is_none()
            && catalog.adopt_replica(&target, &settings, &mut resolve)?;
        if !adopted {
            catalog.apply_replica(&target, use_snapshot, &settings, &mut resolve)?;
        }
        if self.reserve {
            // Best effort: without it only mirrors starting from empty below this one wait.
            if let Err(e) = self.object(&root.snapshot.sha256, &mut stats) {
                tracing::warn!(error = %e, "could not fetch the snapshot to serve it again");
            }
        }
        self.dir.put_root(&signed)?;
        Ok(stats)
    }

    /// The one replica to apply for `chain` (oldest first). Several objects become one
    /// staging replica first, which is then applied in a single transaction. The unpacked
    /// snapshot (a scratch copy) is that staging replica itself, so its rows are copied
    /// once, not twice.
    fn staged(
        &self,
        chain: &[PathBuf],
        use_snapshot: bool,
        temps: &mut Vec<PathBuf>,
    ) -> Result<PathBuf, SyncError> {
        Ok(match chain {
            [one] => one.clone(),
            [snap, deltas @ ..] if use_snapshot => {
                let mut s = Catalog::open(snap)?;
                for p in deltas {
                    s.merge_replica(p, false)?;
                }
                drop(s);
                snap.clone()
            }
            many => {
                let staging = self.dir.temp_path("staging");
                temps.push(staging.clone());
                let mut s = Catalog::open(&staging)?;
                for p in many {
                    s.merge_replica(p, false)?;
                }
                drop(s);
                staging
            }
        })
    }

    /// The replicas to apply, oldest first: the snapshot (if `use_snapshot`), then the deltas
    /// after it (or after `held`). None when the upstream lacks one of them.
    fn chain(
        &self,
        root: &Root,
        held: Option<i64>,
        use_snapshot: bool,
        stats: &mut Synced,
        temps: &mut Vec<PathBuf>,
    ) -> Result<Option<Vec<PathBuf>>, SyncError> {
        let mut out = Vec::new();
        let base = if use_snapshot {
            let Some((db, meta)) = self.replica(&root.snapshot.sha256, stats, temps)? else {
                return Ok(None);
            };
            if !meta.snapshot || meta.to != root.snapshot.generation {
                return Err(refused(
                    "bad-index",
                    "the snapshot is not the one the root names",
                ));
            }
            out.push(db);
            root.snapshot.generation
        } else {
            held.unwrap_or(0)
        };
        let mut deltas = Vec::new();
        let mut next = match (&root.head, root.generation > base) {
            (Some(h), true) => Some((h.sha256.clone(), h.generation)),
            (None, true) => return Err(refused("bad-index", "root has no head delta")),
            (_, false) => None,
        };
        while let Some((sha, generation)) = next.take() {
            if deltas.len() as i64 > SNAPSHOT_EVERY + 1 {
                return Err(refused("bad-index", "delta chain longer than allowed"));
            }
            let Some((db, meta)) = self.replica(&sha, stats, temps)? else {
                return Ok(None);
            };
            if meta.snapshot || meta.to != generation || meta.from >= meta.to {
                return Err(refused(
                    "bad-index",
                    format!("delta {sha} does not cover generation {generation}"),
                ));
            }
            deltas.push(db);
            if meta.from > base {
                let prev = meta.prev.ok_or_else(|| {
                    refused("bad-index", format!("delta {sha} names no previous"))
                })?;
                next = Some((prev, meta.from));
            }
        }
        deltas.reverse();
        out.extend(deltas);
        Ok(Some(out))
    }
}

fn trackers_json(root: &Root) -> Result<String, SyncError> {
    serde_json::to_string(&root.trackers).map_err(|e| SyncError::Local(e.into()))
}

fn web_seeds_json(root: &Root) -> Result<String, SyncError> {
    serde_json::to_string(&root.web_seeds).map_err(|e| SyncError::Local(e.into()))
}

/// Records the outcome of a sync in `settings`, for `repofs status`.
fn record(catalog: &mut Catalog, outcome: &Result<Synced, SyncError>) {
    let settings: Vec<(&str, String)> = match outcome {
        Ok(s) => {
            if s.objects > 0 {
                tracing::info!(
                    from = ?s.from,
                    generation = s.generation,
                    objects = s.objects,
                    bytes = s.bytes,
                    meta_rendered = s.meta_rendered,
                    meta_fetched = s.meta_fetched,
                    "index synced"
                );
            }
            return;
        }
        Err(SyncError::Unreachable(m)) => {
            tracing::warn!(error = %m, "upstream unreachable; serving the last good index");
            vec![
                ("upstream_state", "unreachable".into()),
                ("upstream_error", m.clone()),
            ]
        }
        Err(e @ SyncError::Refused { .. }) => {
            tracing::error!(error = %e, "upstream index refused; serving the last good index");
            vec![
                ("upstream_state", "refused".into()),
                ("upstream_error", e.to_string()),
            ]
        }
        Err(SyncError::Local(e)) => {
            tracing::error!(error = %format!("{e:#}"), "index sync failed here");
            vec![("upstream_error", format!("local: {e:#}"))]
        }
    };
    if let Err(e) = catalog.set_settings(&settings) {
        tracing::error!(error = %e, "could not record the sync state");
    }
}

/// Syncs at once, then every `poll`, until `stop`.
pub fn run(mirror: &Mirror, catalog: &mut Catalog, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let outcome = mirror.sync(catalog);
        record(catalog, &outcome);
        let until = std::time::Instant::now() + mirror.upstream.poll;
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Mirror mode of repofsd: records `upstream` in the catalog (which makes the mount a
/// mirror's), serves `http` — a bound listener and the router repofsd composed: the verified index
/// again, for mirrors below this one, and the views — and syncs until SIGTERM/SIGINT.
/// `ready` is called after the first sync attempt.
pub fn serve(
    layout: &crate::config::Layout,
    catalog: &mut Catalog,
    upstream: Upstream,
    http: Option<(std::net::TcpListener, axum::Router)>,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    use std::sync::Arc;
    catalog.set_setting("upstream", &upstream.url)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let mut mirror = Mirror::new(&layout.root, upstream, stop.clone())?;
    mirror.reserve = http.is_some();
    let mut served = None;
    if let Some((listener, app)) = http {
        let endpoint = crate::fetch::serve_http(listener, app)?;
        tracing::info!(addr = ?endpoint.addr, "serving the index again");
        served = Some(endpoint);
    }
    let outcome = mirror.sync(catalog);
    record(catalog, &outcome);
    ready();
    let until = std::time::Instant::now() + mirror.upstream.poll;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    run(&mirror, catalog, &stop);
    tracing::info!("mirror stopping");
    if let Some(endpoint) = served {
        endpoint.stop();
    }
    Ok(())
}

/// What a missing root or delta list means: the upstream is not serving an index there.
fn not_found(url: &str) -> SyncError {
    SyncError::Unreachable(format!("{url}: HTTP 404 Not Found"))
}
