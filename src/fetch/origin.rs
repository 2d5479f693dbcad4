//! The origin as a verified source: a mirror fetches piece-aligned byte ranges of an object over
//! HTTP (`/by-sha256/SHA256`, the torrents' BEP 19 web seed) from its upstream and from the
//! primary's web seeds, when the swarm cannot serve a read (`lazy::fallback` decides when).
//!
//! Every piece is checked against the torrent's SHA-1 before it is written into the cache
//! (`CacheObject::put_piece`) and is readable as soon as it is written; the cache records it
//! durably in the background (`record_later`), the rule swarm bytes follow. The object's
//! sha256 is checked at promotion as for any object. An origin that sends
//! a bad piece, or fails, is counted, logged with a reason and left alone for a while
//! (`BACKOFF`, doubling). All origins together fetch within `[mirror] origin_rate` (a token
//! bucket), so a fleet cannot stampede its primary. Pieces being fetched are claimed, so
//! concurrent readers of one object never fetch a piece twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::cache::{pieces, CacheObject, RECORD_EVERY};
use crate::sync::lock;
use crate::torrent::{self, PIECE_LENGTH};

const PIECE: u64 = PIECE_LENGTH as u64;
/// Connecting, and the wait for each part of a body: an origin that stalls is dropped.
const CONNECT: Duration = Duration::from_secs(5);
const STALL: Duration = Duration::from_secs(5);
/// An origin that failed is not asked again for this long, doubled at each failure in a row.
const BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("no origin to ask")]
    NoOrigin,
    #[error("{url}: piece {piece} fails its SHA-1")]
    Corrupt { url: String, piece: u64 },
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{0}")]
    Local(std::io::Error),
}

impl OriginError {
    /// The stable reason code logged and shown in the status.
    pub fn code(&self) -> &'static str {
        match self {
            OriginError::NoOrigin => "no-origin",
            OriginError::Corrupt { .. } => "origin-corrupt",
            OriginError::Unreachable { .. } => "origin-unreachable",
            OriginError::Local(_) => "origin-local",
        }
    }
}

/// What `repofs status` shows of the origins.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct OriginStatus {
    /// Verified bytes written into the cache from origins.
    pub bytes: u64,
    /// Pieces an origin sent that failed their SHA-1 (none of them reached a reader).
    pub corrupt_pieces: u64,
    pub failures: u64,
    pub sources: Vec<SourceStatus>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    pub url: String,
    pub bytes: u64,
    pub failures: u64,
    /// Seconds until it is asked again (0: now).
    pub backoff_secs: u64,
    /// `code: message` of its last failure.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Source {
    bytes: u64,
    failures: u64,
    in_a_row: u32,
    until: Option<Instant>,
    last_error: Option<String>,
}

/// The HTTP origins of one mirror.
pub struct Origin {
    client: reqwest::Client,
    /// The mirror's upstream (asked first: the nearest), then the web seeds the index names.
    upstream: Option<String>,
    bucket: Bucket,
    sources: Mutex<HashMap<String, Source>>,
    /// Per object, the pieces some fill is fetching now.
    claimed: Mutex<HashMap<String, HashSet<u64>>>,
    /// When each object was first asked of the origins' fallback (`age`).
    first_asked: Mutex<HashMap<String, Instant>>,
    /// Per object, where the latest background fill started and how far fills reach
    /// (`ahead_span`).
    ahead: Mutex<HashMap<String, (u64, u64)>>,
    /// Verified bytes from all origins (the writers add to it as they go).
    bytes: Arc<AtomicU64>,
    corrupt: AtomicU64,
    failures: AtomicU64,
}

impl Origin {
    /// When object `sha256` was first asked of the fallback (now, the first time).
    pub fn first_asked(&self, sha256: &str) -> Instant {
        *lock(&self.first_asked)
            .entry(sha256.to_string())
            .or_insert_with(Instant::now)
    }

    pub fn new(upstream: Option<String>, rate: u64) -> anyhow::Result<Origin> {
        Ok(Origin {
            client: reqwest::Client::builder()
                .connect_timeout(CONNECT)
                .read_timeout(STALL)
                .build()?,
            upstream: upstream.map(|u| u.trim_end_matches('/').to_string()),
            bucket: Bucket::new(rate),
            sources: Mutex::new(HashMap::new()),
            claimed: Mutex::new(HashMap::new()),
            first_asked: Mutex::new(HashMap::new()),
            ahead: Mutex::new(HashMap::new()),
            bytes: Arc::new(AtomicU64::new(0)),
            corrupt: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The origins to ask now, nearest first: the upstream, then `web_seeds`, minus those
    /// backing off.
    fn usable(&self, web_seeds: &[String]) -> Vec<String> {
        let now = Instant::now();
        let sources = lock(&self.sources);
        let mut out: Vec<String> = Vec::new();
        for url in self.upstream.iter().chain(web_seeds) {
            let url = url.trim_end_matches('/').to_string();
            let resting = sources
                .get(&url)
                .and_then(|s| s.until)
                .is_some_and(|t| t > now);
            if !resting && !out.contains(&url) {
                out.push(url);
            }
        }
        out
    }

    /// The span a read-ahead to `to` should fetch in the background: from where the last one
    /// reached (or `from`), if that is at least `min` bytes (or reaches the end), so that a
    /// sequential reader's requests make few long requests, not one short one each.
    pub fn ahead_span(
        &self,
        sha256: &str,
        from: u64,
        to: u64,
        size: u64,
        min: u64,
    ) -> Option<(u64, u64)> {
        let mut ahead = lock(&self.ahead);
        let (started, reached) = ahead.entry(sha256.to_string()).or_insert((0, 0));
        // A reader before where the latest fill started (another run) starts afresh; one
        // inside what fills cover is theirs already.
        let start = match from < *started {
            true => from,
            false => from.max(*reached),
        };
        if start >= to || (to - start < min && to < size) {
            return None;
        }
        (*started, *reached) = (start, to);
        Some((start, to))
    }

    /// Drops what is kept of an object that left the cache.
    pub fn forget(&self, sha256: &str) {
        lock(&self.first_asked).remove(sha256);
        lock(&self.ahead).remove(sha256);
    }

    /// A background fill from `start` stopped: a later read-ahead may ask again from there.
    pub fn ahead_failed(&self, sha256: &str, start: u64) {
        if let Some((_, r)) = lock(&self.ahead).get_mut(sha256) {
            *r = (*r).min(start);
        }
    }

    /// Whether any origin could be asked now.
    pub fn available(&self, web_seeds: &[String]) -> bool {
        !self.usable(web_seeds).is_empty()
    }

    /// Makes the pieces of `[from, to)` verified in the cache: fetches those no one else is
    /// fetching, waits for the others. The caller's deadline bounds it.
    pub async fn fill(
        &self,
        object: &Arc<CacheObject>,
        web_seeds: &[String],
        from: u64,
        to: u64,
    ) -> Result<(), OriginError> {
        let to = to.min(object.size);
        loop {
            let changed = object.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if object.has(from, to) {
                return Ok(());
            }
            let claim = self.claim(object, from, to);
            if claim.pieces.is_empty() {
                // Others fetch what is missing: they notify when they record or give up.
                changed.await;
                continue;
            }
            for (a, b) in runs(&claim.pieces) {
                self.fetch_run(object, web_seeds, a, b).await?;
            }
        }
    }

    /// Claims the missing, unclaimed pieces of `[from, to)`; released when dropped.
    fn claim<'a>(&'a self, object: &'a Arc<CacheObject>, from: u64, to: u64) -> Claim<'a> {
        let mut claimed = lock(&self.claimed);
        let mine = claimed.entry(object.sha256.clone()).or_default();
        let pieces: Vec<u64> = pieces(from, to)
            .filter(|&p| !object.is_verified(p) && mine.insert(p))
            .collect();
        Claim {
            origin: self,
            object,
            pieces,
        }
    }

    /// Pieces `[a, b)` from the first origin that serves them all.
    async fn fetch_run(
        &self,
        object: &Arc<CacheObject>,
        web_seeds: &[String],
        mut a: u64,
        b: u64,
    ) -> Result<(), OriginError> {
        let mut last = OriginError::NoOrigin;
        for url in self.usable(web_seeds) {
            // What an origin before this one delivered stays.
            while a < b && object.is_verified(a) {
                a += 1;
            }
            if a == b {
                return Ok(());
            }
            match self.get(&url, object, a, b).await {
                Ok(()) => {
                    lock(&self.sources).entry(url).or_default().in_a_row = 0;
                    return Ok(());
                }
                Err(OriginError::Local(e)) => return Err(OriginError::Local(e)),
                Err(e) => {
                    self.failed(&url, &object.sha256, &e);
                    last = e;
                }
            }
        }
        Err(last)
    }

    fn failed(&self, url: &str, sha256: &str, e: &OriginError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if matches!(e, OriginError::Corrupt { .. }) {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        let mut sources = lock(&self.sources);
        let s = sources.entry(url.to_string()).or_default();
        s.failures += 1;
        s.in_a_row = s.in_a_row.saturating_add(1);
        let rest = BACKOFF
            .saturating_mul(1 << (s.in_a_row - 1).min(6))
            .min(MAX_BACKOFF);
        s.until = Some(Instant::now() + rest);
        s.last_error = Some(format!("{}: {e}", e.code()));
        warn!(origin = %url, object = %sha256, reason = e.code(), error = %e, backoff = ?rest, "origin failed; backing off");
    }

    /// One ranged GET of pieces `[a, b)`: each piece checked, written and readable as it
    /// completes, handed to the recorder in batches.
    async fn get(
        &self,
        url: &str,
        object: &Arc<CacheObject>,
        a: u64,
        b: u64,
    ) -> Result<(), OriginError> {
        let (start, end) = (a * PIECE, (b * PIECE).min(object.size));
        let link = torrent::web_seed(url, &object.sha256);
        let down = |message: String| OriginError::Unreachable {
            url: url.to_string(),
            message,
        };
        let mut resp = self
            .client
            .get(&link)
            .header(reqwest::header::RANGE, format!("bytes={start}-{}", end - 1))
            .send()
            .await
            .map_err(|e| down(e.to_string()))?;
        let whole = start == 0 && end == object.size;
        match resp.status() {
            reqwest::StatusCode::PARTIAL_CONTENT => {}
            reqwest::StatusCode::OK if whole => {}
            s => return Err(down(format!("answered {s} to a range"))),
        }
        let started = Instant::now();
        // Whole pieces go to a blocking thread that checks and writes them, so that receiving
        // the next piece overlaps hashing and writing this one.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(QUEUE);
        let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(QUEUE + 2);
        let (o, total) = (object.clone(), self.bytes.clone());
        let writer =
            tokio::task::spawn_blocking(move || write_pieces(&o, &mut rx, &back_tx, &total));
        let received = self
            .receive(&mut resp, object, a, b, &tx, &mut back_rx)
            .await;
        drop(tx); // the writer finishes what is queued and ends
        let (bytes, written) = writer
            .await
            .map_err(|e| OriginError::Local(std::io::Error::other(e)))?;
        lock(&self.sources)
            .entry(url.to_string())
            .or_default()
            .bytes += bytes;
        match written {
            Ok(()) => {}
            Err((piece, e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(OriginError::Corrupt {
                    url: url.to_string(),
                    piece,
                })
            }
            Err((_, e)) => return Err(OriginError::Local(e)),
        }
        let piece = received.map_err(|e| down(e.to_string()))?;
        if piece < b {
            return Err(down(format!("the body ended at piece {piece} of {a}..{b}")));
        }
        info!(origin = %url, object = %object.sha256, from = start, to = end, elapsed = ?started.elapsed(), "fetched from the origin");
        Ok(())
    }

    /// Cuts the body of a response for pieces `[a, b)` into whole pieces for the writer, in
    /// buffers it hands back. Returns the piece it reached: `b`, or less if the body ended
    /// early or the writer stopped (its error says why).
    async fn receive(
        &self,
        resp: &mut reqwest::Response,
        object: &CacheObject,
        a: u64,
        b: u64,
        tx: &tokio::sync::mpsc::Sender<(u64, Vec<u8>)>,
        back: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<u64, reqwest::Error> {
        let mut piece = a;
        let mut buf: Vec<u8> = Vec::with_capacity(PIECE as usize);
        while piece < b {
            let Some(chunk) = resp.chunk().await? else {
                break;
            };
            self.bucket.take(chunk.len() as u64).await;
            let mut c = &chunk[..];
            while !c.is_empty() && piece < b {
                let len = (object.size - piece * PIECE).min(PIECE) as usize;
                let take = (len - buf.len()).min(c.len());
                buf.extend_from_slice(&c[..take]);
                c = &c[take..];
                if buf.len() < len {
                    continue;
                }
                let mut next = back
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(PIECE as usize));
                next.clear();
                if tx
                    .send((piece, std::mem::replace(&mut buf, next)))
                    .await
                    .is_err()
                {
                    return Ok(piece);
                }
                piece += 1;
            }
        }
        Ok(piece)
    }

    pub fn status(&self) -> OriginStatus {
        let now = Instant::now();
        let mut sources: Vec<SourceStatus> = lock(&self.sources)
            .iter()
            .map(|(url, s)| SourceStatus {
                url: url.clone(),
                bytes: s.bytes,
                failures: s.failures,
                backoff_secs: s
                    .until
                    .map_or(0, |t| t.saturating_duration_since(now).as_secs()),
                last_error: s.last_error.clone(),
            })
            .collect();
        sources.sort_by(|a, b| a.url.cmp(&b.url));
        OriginStatus {
            bytes: self.bytes.load(Ordering::Relaxed),
            corrupt_pieces: self.corrupt.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            sources,
        }
    }
}

/// Pieces a fill is fetching; given back (and waiters woken) when it ends, however it ends.
struct Claim<'a> {
    origin: &'a Origin,
    object: &'a Arc<CacheObject>,
    pieces: Vec<u64>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut claimed = lock(&self.origin.claimed);
        if let Some(set) = claimed.get_mut(&self.object.sha256) {
            for p in &self.pieces {
                set.remove(p);
            }
            if set.is_empty() {
                claimed.remove(&self.object.sha256);
            }
        }
        drop(claimed);
        self.object.changed.notify_waiters();
    }
}

/// Whole pieces received and not yet written: the writer's queue (2 MiB).
const QUEUE: usize = 8;
/// The writer makes what it wrote readable once it has caught up with the body, and at least
/// every this many pieces (a reader's READ is 1 MiB): few wake-ups, little waiting.
const READABLE_EVERY: usize = 4;

/// One response's writer (a blocking thread): each piece checked against its SHA-1 and
/// written (`put_piece`), made readable (`READABLE_EVERY`), handed to the recorder every
/// `RECORD_EVERY`. Adds the verified bytes to `total` as it goes and returns how many it took;
/// stops at the first piece that fails (those before it count).
fn write_pieces(
    object: &Arc<CacheObject>,
    rx: &mut tokio::sync::mpsc::Receiver<(u64, Vec<u8>)>,
    back: &tokio::sync::mpsc::Sender<Vec<u8>>,
    total: &AtomicU64,
) -> (u64, Result<(), (u64, std::io::Error)>) {
    let (mut bytes, mut fresh, mut pending) = (0u64, Vec::new(), Vec::new());
    let r = loop {
        let Some((piece, buf)) = rx.blocking_recv() else {
            break Ok(());
        };
        match object.put_piece(piece, &buf) {
            Ok(true) => fresh.push(piece),
            Ok(false) => {}
            Err(e) => break Err((piece, e)),
        }
        let n = buf.len() as u64;
        bytes += n;
        total.fetch_add(n, Ordering::Relaxed);
        object.from_origin.fetch_add(n, Ordering::Relaxed);
        let _ = back.try_send(buf);
        if fresh.len() >= READABLE_EVERY || rx.is_empty() {
            if let Err(e) = object.readable(&fresh) {
                break Err((piece, e));
            }
            pending.append(&mut fresh);
        }
        if pending.len() as u64 * PIECE >= RECORD_EVERY {
            object.record_later(&std::mem::take(&mut pending));
        }
    };
    // What was checked and written before a failure counts.
    let r = match object.readable(&fresh) {
        Ok(()) => r,
        Err(e) => r.and(Err((fresh[0], e))),
    };
    pending.append(&mut fresh);
    object.record_later(&pending);
    (bytes, r)
}

/// Sorted piece numbers as runs `[a, b)` of consecutive pieces (one request each).
fn runs(pieces: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pieces {
        match out.last_mut() {
            Some((_, b)) if *b == p => *b += 1,
            _ => out.push((p, p + 1)),
        }
    }
    out
}

/// Bytes per second, with a second's worth of burst (at least a piece); 0: no limit.
struct Bucket {
    rate: u64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Bucket {
        Bucket {
            rate,
            state: tokio::sync::Mutex::new((rate.max(PIECE) as f64, Instant::now())),
        }
    }

    /// Waits until `n` bytes may go (callers queue on the lock: first come, first served).
    async fn take(&self, n: u64) {
        if self.rate == 0 {
            return;
        }
        let mut s = self.state.lock().await;
        let burst = self.rate.max(PIECE) as f64;
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate as f64).min(burst);
        s.1 = now;
        s.0 -= n as f64;
        if s.0 < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-s.0 / self.rate as f64)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequential reader's fill reaches the end: its later requests start nothing; one that
    /// went back before it starts afresh; after a failure, the next request goes on from there.
    #[test]
    fn a_read_ahead_starts_once_per_run() {
        const MIB: u64 = 1 << 20;
        let o = Origin::new(None, 0).unwrap();
        let (size, min) = (1024 * MIB, 64 * MIB);
        assert_eq!(
            o.ahead_span("a", 10 * MIB, size, size, min),
            Some((10 * MIB, size))
        );
        for from in [11, 200, 1000] {
            assert_eq!(
                o.ahead_span("a", from * MIB, size, size, min),
                None,
                "{from}"
            );
        }
        // Short of `min` and not reaching the end: nothing.
        assert_eq!(o.ahead_span("b", 0, 8 * MIB, size, min), None);
        // Another run from the start.
        assert_eq!(o.ahead_span("a", 0, size, size, min), Some((0, size)));
        assert_eq!(o.ahead_span("a", 5 * MIB, size, size, min), None);
        o.ahead_failed("a", 300 * MIB);
        assert_eq!(
            o.ahead_span("a", 100 * MIB, size, size, min),
            Some((300 * MIB, size))
        );
        assert_eq!(o.ahead_span("a", 400 * MIB, size, size, min), None);
    }

    #[test]
    fn claimed_pieces_go_out_as_runs() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[3, 4, 5, 7, 9, 10]), vec![(3, 6), (7, 8), (9, 11)]);
    }

    #[test]
    fn the_bucket_holds_the_rate() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Bucket::new(8 << 20);
            let t = Instant::now();
            // A second's burst (8 MiB) at once, then 2 MiB more at 8 MiB/s: a quarter second.
            for _ in 0..40 {
                b.take(256 << 10).await;
            }
            let waited = t.elapsed().as_secs_f64();
            assert!((0.24..0.6).contains(&waited), "{waited}");
            let free = Bucket::new(0);
            let t = Instant::now();
            free.take(1 << 40).await;
            assert!(t.elapsed() < Duration::from_millis(50));
        });
    }
}
