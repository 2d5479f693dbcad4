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
//!
//! What is still incomplete is kept in memory (`HoldState::incomplete`): a catalog change
//! looks at the files of newly held objects only, a held fetch that ends removes its object,
//! and every `RECHECK` all held files are looked at again (one removed behind our back). So an
//! idle hold costs the same at 100,000 held objects as at ten; looking at every held file each
//! second and each status write did not (bench/RESULTS.md, "Holds at 100,000 objects").

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
/// How often every held object's file is looked at again.
const RECHECK: Duration = Duration::from_secs(600);

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
    /// Held objects not known complete in the cache (a subset of `objects`), and the bytes
    /// of all held objects.
    incomplete: BTreeSet<String>,
    held_bytes: u64,
    /// Held fetches running, and when a failed one may run again.
    running: HashSet<String>,
    retry_at: HashMap<String, Instant>,
}

impl HoldState {
    /// Holds `objects` from now on. Only objects newly held are looked at (`complete`); the
    /// others keep what is known of them.
    fn hold(&mut self, objects: BTreeMap<String, u64>, complete: impl Fn(&str) -> bool) {
        let before = std::mem::take(&mut self.incomplete);
        self.incomplete = objects
            .keys()
            .filter(|s| {
                if self.objects.contains_key(*s) {
                    before.contains(*s)
                } else {
                    !complete(s)
                }
            })
            .cloned()
            .collect();
        self.held_bytes = objects.values().sum();
        self.objects = objects;
    }

    /// Looks at every held object's file again.
    fn recheck(&mut self, complete: impl Fn(&str) -> bool) {
        self.incomplete = self
            .objects
            .keys()
            .filter(|s| !complete(s))
            .cloned()
            .collect();
    }

    /// Held objects to fetch now, marked running: incomplete, not running, not pausing after
    /// a failure, up to `HOLDING` at once. One a reader completed meanwhile is dropped.
    fn due(&mut self, now: Instant, complete: impl Fn(&str) -> bool) -> Vec<String> {
        self.retry_at.retain(|_, t| *t > now);
        let free = HOLDING.saturating_sub(self.running.len());
        let mut todo = Vec::new();
        let mut done = Vec::new();
        for s in &self.incomplete {
            if todo.len() >= free {
                break;
            }
            if self.running.contains(s) || self.retry_at.contains_key(s) {
                continue;
            }
            if complete(s) {
                done.push(s.clone());
            } else {
                todo.push(s.clone());
            }
        }
        for s in &done {
            self.incomplete.remove(s);
        }
        self.running.extend(todo.iter().cloned());
        todo
    }

    /// Held objects complete and bytes verified, given what `open` says of an open object
    /// (complete, verified bytes). Complete unless known incomplete: only those are looked at.
    fn held(&self, open: impl Fn(&str) -> Option<(bool, u64)>) -> (u64, u64) {
        let mut objects = (self.objects.len() - self.incomplete.len()) as u64;
        let mut bytes = self.held_bytes;
        for sha in &self.incomplete {
            let size = self.objects.get(sha).copied().unwrap_or(0);
            let (complete, verified) = match open(sha) {
                Some((true, _)) => (true, size),
                Some((false, verified)) => (false, verified.min(size)),
                None => (false, 0),
            };
            objects += u64::from(complete);
            bytes -= size - verified;
        }
        (objects, bytes)
    }

    /// A held fetch of `sha` ended; complete if `ok`.
    fn ended(&mut self, sha: &str, ok: bool, now: Instant) {
        self.running.remove(sha);
        if ok {
            self.incomplete.remove(sha);
        } else {
            self.retry_at.insert(sha.to_string(), now + RETRY);
        }
    }
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
            let mut checked = Instant::now();
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
                if checked.elapsed() >= RECHECK {
                    let dir = &f.cache.dir;
                    lock(&f.hold).recheck(|s| dir.complete_path(s).exists());
                    checked = Instant::now();
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
        let dir = &self.cache.dir;
        h.hold(objects, |s| dir.complete_path(s).exists());
        h.error = error;
        Ok(())
    }

    /// Starts a held fetch for each held object not complete, not running and not pausing
    /// after a failure, up to `HOLDING` at once.
    fn start_held(self: &Arc<Self>) {
        let dir = &self.cache.dir;
        let todo = lock(&self.hold).due(Instant::now(), |s| dir.complete_path(s).exists());
        for sha in todo {
            let me = self.clone();
            self.runtime.spawn(async move {
                let started = Instant::now();
                let r = me.hold_one(&sha).await;
                lock(&me.hold).ended(&sha, r.is_ok(), Instant::now());
                match r {
                    Ok(()) => info!(object = %sha, elapsed = ?started.elapsed(), "held"),
                    Err(e) => warn!(object = %sha, error = %e, "held fetch stopped; retrying soon"),
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
            self.origin.fill(object, &seeds, from, to),
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
        let (held_objects, held_bytes) = h.held(|sha| {
            let o = open.get(sha)?;
            let piece = u64::from(crate::torrent::PIECE_LENGTH);
            Some((o.is_complete(), o.verified_count() * piece))
        });
        HoldStatus {
            patterns: self.hold_patterns.patterns.clone(),
            objects: h.named_objects,
            total_bytes: h.named_bytes,
            held_objects,
            held_bytes,
            error: h.error.clone(),
        }
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

    fn held(names: &[&str]) -> BTreeMap<String, u64> {
        names.iter().map(|n| (n.to_string(), 1)).collect()
    }

    #[test]
    fn only_newly_held_objects_are_looked_at_and_ended_fetches_leave_the_set() {
        let looked = std::cell::RefCell::new(Vec::new());
        let complete = |s: &str| {
            looked.borrow_mut().push(s.to_string());
            s == "b"
        };
        let mut h = HoldState::default();
        h.hold(held(&["a", "b", "c"]), complete);
        assert_eq!(h.incomplete.iter().collect::<Vec<_>>(), ["a", "c"]);
        looked.borrow_mut().clear();
        h.hold(held(&["a", "b", "c", "d"]), complete);
        assert_eq!(
            *looked.borrow(),
            ["d"],
            "a catalog change looks at new objects only"
        );
        let now = Instant::now();
        let due = h.due(now, |_| false);
        assert_eq!(due, ["a", "c", "d"]);
        assert!(h.due(now, |_| false).is_empty(), "running");
        h.ended("a", true, now);
        h.ended("c", false, now);
        assert_eq!(h.incomplete.iter().collect::<Vec<_>>(), ["c", "d"]);
        assert!(h.due(now, |_| false).is_empty(), "c pauses, d runs");
        h.ended("d", false, now);
        assert_eq!(h.due(now + RETRY, |_| false), ["c", "d"]);
        // Dropped from the hold, then a file removed behind our back: seen at a recheck.
        h.hold(held(&["a", "b"]), |_| true);
        assert!(h.incomplete.is_empty());
        h.recheck(|s| s != "b");
        assert_eq!(h.incomplete.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(h.held(|_| None), (1, 1));
        assert_eq!(h.held(|_| Some((true, 0))), (2, 2), "a reader completed b");
    }

    #[test]
    fn an_object_a_reader_completed_is_not_fetched() {
        let mut h = HoldState::default();
        h.hold(held(&["a", "b"]), |_| false);
        assert_eq!(h.due(Instant::now(), |s| s == "a"), ["b"]);
        assert_eq!(h.incomplete.iter().collect::<Vec<_>>(), ["b"]);
    }

    /// The idle cost of 100,000 held objects, all complete in a cache directory: CPU-seconds
    /// a minute of the hold thread's ticks (one a second) and of the status writes (one every
    /// two seconds) cost, before (every held file looked at each time) and now. On demand:
    /// `cargo test --lib idle_cost_of_a_large_hold -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn idle_cost_of_a_large_hold() {
        const N: usize = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let objects: BTreeMap<String, u64> = (0..N).map(|i| (format!("{i:064x}"), 1)).collect();
        for sha in objects.keys() {
            std::fs::File::create(dir.path().join(sha)).unwrap();
        }
        let complete = |s: &str| dir.path().join(s).exists();
        let (ticks, writes) = (60, 30);
        // Before: each tick filtered every held object by its file, and each status write
        // looked at every held object's file.
        let t0 = crate::sync::thread_cpu();
        for _ in 0..ticks {
            let todo: Vec<&String> = objects.keys().filter(|s| !complete(s)).take(4).collect();
            assert!(todo.is_empty());
        }
        for _ in 0..writes {
            assert_eq!(objects.keys().filter(|s| complete(s)).count(), N);
        }
        let before = crate::sync::thread_cpu() - t0;
        let mut h = HoldState::default();
        let t0 = crate::sync::thread_cpu();
        h.hold(objects.clone(), complete);
        let first = crate::sync::thread_cpu() - t0;
        let t0 = crate::sync::thread_cpu();
        for _ in 0..ticks {
            assert!(h.due(Instant::now(), complete).is_empty());
        }
        for _ in 0..writes {
            assert_eq!(h.held(|_| None), (N as u64, N as u64));
        }
        let now = crate::sync::thread_cpu() - t0;
        eprintln!(
            "{N} held objects, CPU-seconds per idle minute: before {before:.3}, now {now:.5} \
             (holding them first: {first:.3} s, once per catalog change that adds them all; \
             a recheck of every file each {} s costs about as much)",
            RECHECK.as_secs()
        );
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
