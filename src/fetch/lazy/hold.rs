//! What a mirror holds (`[mirror] hold`, `repofsd --hold`): the published files whose path
//! below dists/ matches a pattern are fetched whole as soon as the catalog names them, with no
//! reader, and are never evicted for lazily read objects.
//!
//! A held object's torrent gets every piece selected and no stream: librqbit's own picker
//! then asks each peer for whatever it has that we lack, so a fleet holding the same new
//! package spreads it the way the primary's super-seeding hands it out (distinct pieces to
//! each mirror), instead of every mirror asking for the same next piece. Pieces librqbit has
//! checked are checked again from the cache file and recorded verified as they come, so
//! readers and status see progress; the whole object is promoted (sha256) at the end.
//!
//! A thread follows the catalog (`PRAGMA data_version`): each change recomputes the held set;
//! each second it starts fetches for held objects not yet complete (a few at once, each with
//! a stall deadline, retried after a pause).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::super::cache::CacheObject;
use super::fallback::{known_peers, tell_swarm};
use super::{Busy, FetchError, Fetcher};
use crate::catalog::Catalog;
use crate::sync::lock;

/// Held objects fetched at once.
const HOLDING: usize = 4;
/// How often the catalog is looked at and held fetches are started.
const TICK: Duration = Duration::from_secs(1);
/// How often a held fetch records what librqbit has.
const RECORD_EVERY: Duration = Duration::from_millis(250);
/// A held fetch that gets no new piece for this long stops; it is retried after `RETRY`.
const STALL: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_secs(5);
/// With no peer known this long after a held fetch starts (tracker down, nobody holds it),
/// the origin serves it over HTTP, `ORIGIN_SPAN` bytes at a time, within `origin_rate`.
const PEER_GRACE: Duration = Duration::from_secs(2);
const ORIGIN_SPAN: u64 = 16 << 20;

/// The stable code of a hold that does not fit the cache (start-up error, status).
pub const TOO_LARGE: &str = "hold-exceeds-cache";

/// The hold patterns, compiled.
pub struct Patterns {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    /// Globs over `DIR/FILE` below dists/ (a leading `dists/` is allowed); `*` crosses `/`.
    pub fn new(patterns: &[String]) -> anyhow::Result<Patterns> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let rel = p.strip_prefix("dists/").unwrap_or(p);
            b.add(Glob::new(rel).with_context(|| format!("hold pattern {p:?}"))?);
        }
        Ok(Patterns {
            patterns: patterns.to_vec(),
            set: b.build()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (below dists/) is held.
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

/// The objects the patterns hold in the catalog now: sha256 → size, in path order.
pub fn wanted(catalog: &Catalog, patterns: &Patterns) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    if patterns.is_empty() {
        return Ok(out);
    }
    for f in catalog.files(false)? {
        let path = crate::paths::join(&f.directory, &f.filename);
        if patterns.matches(&path) && seen.insert(f.sha256.clone()) {
            out.push((f.sha256, f.size));
        }
    }
    Ok(out)
}

/// Err(`TOO_LARGE` …) when the held objects do not fit the cache limit.
pub fn check_fits(wanted: &[(String, u64)], limit: u64) -> anyhow::Result<()> {
    let total: u64 = wanted.iter().map(|(_, n)| n).sum();
    anyhow::ensure!(
        total <= limit,
        "{TOO_LARGE}: the hold is {total} bytes ({} objects), the cache limit {limit} bytes \
         ([mirror] cache_size / --cache-size); held objects are never evicted",
        wanted.len()
    );
    Ok(())
}

/// The held objects that fit `limit`, in order; the rest are left out (and reported).
fn fitting(wanted: &[(String, u64)], limit: u64) -> BTreeMap<String, u64> {
    let mut total = 0u64;
    let mut out = BTreeMap::new();
    for (sha, n) in wanted {
        if total + n > limit {
            break;
        }
        total += n;
        out.insert(sha.clone(), *n);
    }
    out
}

/// What the hold thread shares with eviction and the status.
#[derive(Default)]
pub(super) struct HoldState {
    /// Held objects (sha256 → size): never evicted.
    pub(super) objects: BTreeMap<String, u64>,
    /// Bytes and objects the patterns name (more than `objects` when they do not fit).
    pub(super) named_bytes: u64,
    pub(super) named_objects: u64,
    pub(super) error: Option<String>,
    /// Held fetches running, and when a failed one may run again.
    running: HashSet<String>,
    retry_at: HashMap<String, Instant>,
}

/// `hold` in the fetch status and `repofs status`: held bytes against their total.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct HoldStatus {
    pub patterns: Vec<String>,
    /// Objects the patterns name and their bytes.
    pub objects: u64,
    pub total_bytes: u64,
    /// Of those, complete in the cache, and the bytes verified there.
    pub held_objects: u64,
    pub held_bytes: u64,
    /// `hold-exceeds-cache: …` when the named objects do not fit the cache.
    pub error: Option<String>,
}

/// Starts the hold thread (nothing to do without patterns).
pub(super) fn spawn(
    fetcher: &Arc<Fetcher>,
    catalog_path: std::path::PathBuf,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if fetcher.hold_patterns.is_empty() {
        return Ok(None);
    }
    let f = Arc::downgrade(fetcher);
    let stop = fetcher.stop.clone();
    let t = std::thread::Builder::new()
        .name("hold".into())
        .spawn(move || {
            let mut catalog = match Catalog::open(&catalog_path) {
                Ok(c) => c,
                Err(e) => return error!(error = %e, "hold: cannot open the catalog"),
            };
            let mut seen = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(f) = f.upgrade() else { break };
                // A mirror's first snapshot replaces the catalog's file: read the new one.
                let version = catalog.follow().and_then(|_| catalog.data_version()).ok();
                if version.is_none() || version != seen {
                    match f.rehold(&catalog) {
                        Ok(()) => seen = version,
                        Err(e) => warn!(error = %format!("{e:#}"), "hold: cannot read the catalog"),
                    }
                }
                f.start_held();
                drop(f);
                std::thread::sleep(TICK);
            }
        })?;
    Ok(Some(t))
}

impl Fetcher {
    /// Recomputes the held set from the catalog.
    fn rehold(&self, catalog: &Catalog) -> anyhow::Result<()> {
        let wanted = wanted(catalog, &self.hold_patterns)?;
        let objects = fitting(&wanted, self.cache.limit);
        let error = check_fits(&wanted, self.cache.limit)
            .err()
            .map(|e| e.to_string());
        if let Some(e) = &error {
            error!(
                reason = TOO_LARGE,
                "{e}; holding the first {} objects",
                objects.len()
            );
        }
        let mut h = lock(&self.hold);
        if h.objects.len() != objects.len() {
            info!(objects = objects.len(), "hold: held set changed");
        }
        h.named_bytes = wanted.iter().map(|(_, n)| n).sum();
        h.named_objects = wanted.len() as u64;
        h.objects = objects;
        h.error = error;
        Ok(())
    }

    /// Starts a held fetch for each held object not complete, not running and not pausing
    /// after a failure, up to `HOLDING` at once.
    fn start_held(self: &Arc<Self>) {
        let todo: Vec<String> = {
            let mut h = lock(&self.hold);
            let now = Instant::now();
            h.retry_at.retain(|_, t| *t > now);
            let free = HOLDING.saturating_sub(h.running.len());
            let todo: Vec<String> = h
                .objects
                .keys()
                .filter(|s| !h.running.contains(*s) && !h.retry_at.contains_key(*s))
                .filter(|s| !self.cache.dir.complete_path(s).exists())
                .take(free)
                .cloned()
                .collect();
            h.running.extend(todo.iter().cloned());
            todo
        };
        for sha in todo {
            let me = self.clone();
            self.runtime.spawn(async move {
                let started = Instant::now();
                let r = me.hold_one(&sha).await;
                let mut h = lock(&me.hold);
                h.running.remove(&sha);
                match r {
                    Ok(()) => {
                        info!(object = %sha, elapsed = ?started.elapsed(), "held")
                    }
                    Err(e) => {
                        warn!(object = %sha, error = %e, "held fetch stopped; retrying soon");
                        h.retry_at.insert(sha, Instant::now() + RETRY);
                    }
                }
            });
        }
    }

    /// Fetches one held object whole with librqbit's picker, recording pieces as they come.
    async fn hold_one(self: &Arc<Self>, sha: &str) -> Result<(), FetchError> {
        let _busy = Busy::new(self, sha);
        let torrent = self.torrent(sha).await?;
        let object = self
            .object(sha)
            .await
            .ok_or_else(|| FetchError::Failed(anyhow::anyhow!("object left the cache")))?;
        if !object.is_complete() {
            self.session
                .update_only_files(&torrent, &HashSet::from([0]))
                .await
                .map_err(FetchError::Failed)?;
            // Random order (a repofs patch): mirrors holding the same new object spread their
            // asks over every holder instead of all asking for the lowest pieces they lack.
            // Not for readers' torrents: a lone sequential reader measured slower with it.
            if let Some(live) = torrent.live() {
                live.set_random_pieces(true);
            }
        }
        let (started, mut progress) = (Instant::now(), Instant::now());
        while !object.is_complete() {
            let had = object.verified_count();
            if had == object.piece_count() {
                self.promote(sha, &object, None).await;
                if !object.is_complete() {
                    return Err(FetchError::Failed(anyhow::anyhow!("promotion failed")));
                }
                break;
            }
            let have = torrent.live().and_then(|l| l.have_pieces());
            let new: Vec<u64> = have
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter(|&(p, &b)| b && !object.is_verified(p as u64))
                .map(|(p, _)| p as u64)
                .collect();
            if !new.is_empty() {
                let o = object.clone();
                tokio::task::spawn_blocking(move || o.verify_pieces(new))
                    .await
                    .map_err(|e| FetchError::Failed(e.into()))??;
            }
            if known_peers(&torrent) == 0 && started.elapsed() >= PEER_GRACE {
                self.hold_from_origin(&torrent, sha, &object).await;
            }
            if object.verified_count() > had {
                progress = Instant::now();
            } else if progress.elapsed() > STALL {
                return Err(FetchError::Timeout(STALL));
            }
            tokio::time::sleep(RECORD_EVERY).await;
        }
        Ok(())
    }

    /// With no peer to ask: the next `ORIGIN_SPAN` from the first missing piece, over HTTP
    /// from the origins (each piece checked before it is written), then told to the swarm.
    async fn hold_from_origin(
        &self,
        torrent: &Arc<librqbit::ManagedTorrent>,
        sha: &str,
        object: &Arc<CacheObject>,
    ) {
        let seeds = self.web_seeds();
        if !self.origin.available(&seeds) {
            return;
        }
        let piece = u64::from(crate::torrent::PIECE_LENGTH);
        let Some(first) = (0..object.piece_count()).find(|&p| !object.is_verified(p)) else {
            return;
        };
        let (from, to) = (
            first * piece,
            (first * piece + ORIGIN_SPAN).min(object.size),
        );
        let filled = tokio::time::timeout(
            self.read_timeout.max(Duration::from_secs(1)) * 4,
            self.origin.fill(object, &seeds, from, to, false),
        )
        .await;
        if let Ok(Err(e)) = &filled {
            warn!(object = %sha, reason = e.code(), error = %e, "the origin could not serve a held object");
        }
        tell_swarm(torrent, object, from, to);
    }

    /// The held objects: eviction never picks them.
    pub(super) fn held_set(&self) -> HashSet<String> {
        lock(&self.hold).objects.keys().cloned().collect()
    }

    /// Held bytes against their total, for the status file.
    pub(super) fn hold_status(&self) -> HoldStatus {
        let h = lock(&self.hold);
        let open: HashMap<String, _> = self
            .cache
            .open_objects()
            .into_iter()
            .map(|o| (o.sha256.clone(), o))
            .collect();
        let mut s = HoldStatus {
            patterns: self.hold_patterns.patterns.clone(),
            objects: h.named_objects,
            total_bytes: h.named_bytes,
            error: h.error.clone(),
            ..Default::default()
        };
        for (sha, &size) in &h.objects {
            let (complete, bytes) = match open.get(sha) {
                Some(o) if o.is_complete() => (true, size),
                Some(o) => (
                    false,
                    (o.verified_count() * crate::torrent::PIECE_LENGTH as u64).min(size),
                ),
                None if self.cache.dir.complete_path(sha).exists() => (true, size),
                None => (false, 0),
            };
            s.held_objects += u64::from(complete);
            s.held_bytes += bytes;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Patterns {
        Patterns::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_star_holds_everything_and_a_directory_glob_its_subtree() {
        let all = p(&["*"]);
        assert!(all.matches("hello/hello-1.0.tar.gz"));
        assert!(all.matches("a/b/c.deb"));
        let hello = p(&["dists/hello/*"]);
        assert!(hello.matches("hello/hello-1.0.tar.gz"));
        assert!(hello.matches("hello/sub/x.bin"));
        assert!(!hello.matches("world/hello-1.0.tar.gz"));
        let debs = p(&["*.deb"]);
        assert!(debs.matches("apt/pool/x_1.0_amd64.deb"));
        assert!(!debs.matches("apt/pool/x_1.0_amd64.deb.sig"));
        assert!(p(&[]).is_empty());
        assert!(Patterns::new(&["[".to_string()]).is_err());
    }

    #[test]
    fn a_hold_larger_than_the_cache_is_refused_and_what_fits_is_held() {
        let w = vec![
            ("a".to_string(), 40),
            ("b".to_string(), 40),
            ("c".to_string(), 40),
        ];
        assert!(check_fits(&w, 120).is_ok());
        let e = check_fits(&w, 100).unwrap_err().to_string();
        assert!(e.starts_with(TOO_LARGE), "{e}");
        assert_eq!(fitting(&w, 100).keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(fitting(&w, 120).len(), 3);
    }
}
