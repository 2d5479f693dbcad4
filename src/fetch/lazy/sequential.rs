//! The sequential stream: a reader found sequential (`plan::is_sequential`) switches its
//! object to one long-lived stream to the end, with every piece wanted and its bytes checked
//! as they come (`cache::StreamCheck`); its requests then wait on the piece bitmap. One
//! stream per request paid a stream open, a sync and a drained pipeline per read-ahead window.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use librqbit::ManagedTorrent;
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use super::super::cache::{CacheObject, StreamCheck, RECORD_EVERY};
use super::{plan, Busy, FetchError, Fetcher, SEQ_BUFFERS, SEQ_CHUNK, SEQ_PREFIX};

/// The shortest stall that stops the sequential stream (see `stream_on`).
const STALL_MIN: Duration = Duration::from_secs(1);

impl Fetcher {
    /// Starts, unless one runs, the sequential stream of `object`: from the first missing
    /// piece at or after `from` to the end, librqbit told to fetch the whole file, each piece
    /// readable once checked (recorded in the background). Readers wait on the bitmap meanwhile
    /// (`wait_streamed`) instead of opening streams of their own. It ends at the end of the
    /// object or when a read stalls for a quarter of `read_timeout`, at least `STALL_MIN`
    /// (then readers stream for themselves).
    pub(super) fn sequential(
        self: &Arc<Self>,
        sha256: &str,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
    ) {
        if object.is_complete() || object.streaming.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, t, o) = (self.clone(), torrent.clone(), object.clone());
        let sha = sha256.to_string();
        self.runtime.spawn(async move {
            let _busy = Busy::new(&me, &sha);
            let started = Instant::now();
            let r = me.stream_on(&t, &o, from).await;
            let streamed = match r {
                Ok(d) => {
                    info!(object = %sha, elapsed = ?started.elapsed(), whole_sha256 = d.is_some(), "sequential fetch done");
                    d
                }
                Err(e) => {
                    warn!(object = %sha, error = %e, "sequential fetch stopped");
                    None
                }
            };
            // Before readers may promote (they skip it while the stream runs).
            me.promote(&sha, &o, streamed).await;
            o.streaming.store(false, Ordering::Release);
            o.changed.notify_waiters();
        });
    }

    /// The sequential stream: its bytes go, in order, to a `StreamCheck` on a blocking thread
    /// (through a bounded channel of recycled buffers), so hashing and syncs overlap the
    /// stream's reads and nothing is read back. Returns the object's sha256 if the check
    /// could compute it.
    async fn stream_on(
        &self,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
    ) -> Result<Option<[u8; 32]>, FetchError> {
        let Some(first) = plan::first_missing(from, object.size, |p| object.is_verified(p)) else {
            return Ok(None);
        };
        // Every piece wanted: librqbit's picker keeps many requests in flight to each peer,
        // where a stream alone asks only for the pieces just ahead of it.
        self.session
            .update_only_files(torrent, &HashSet::from([0]))
            .await
            .map_err(FetchError::Failed)?;
        let _permit = self
            .ahead_streams
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| FetchError::Failed(e.into()))?;
        // A short prefix still in flight (a read-ahead): the stream starts at 0 instead, so
        // that it sees every byte in order and the sha256 needs no re-read at promotion.
        let mut pos = plan::stream_start(first, SEQ_PREFIX, |p| object.is_verified(p));
        // Opened where the reader is, not at 0 (a plain stream queues from 0 until it seeks).
        let mut stream = torrent
            .clone()
            .stream_at(0, pos, 32 << 20)
            .await
            .map_err(FetchError::Failed)?;
        let (o, start) = (object.clone(), pos);
        let mut check =
            tokio::task::spawn_blocking(move || StreamCheck::new(o, start, RECORD_EVERY))
                .await
                .map_err(|e| FetchError::Failed(e.into()))??;
        // Memory: SEQ_BUFFERS buffers in all (queued, being read, being hashed).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(SEQ_BUFFERS - 2);
        let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(SEQ_BUFFERS);
        let checker = tokio::task::spawn_blocking(move || -> std::io::Result<Option<[u8; 32]>> {
            while let Some(buf) = rx.blocking_recv() {
                check.update(&buf)?;
                let _ = back_tx.try_send(buf); // the reader may have gone
            }
            check.finish()
        });
        // How long the stream may wait for its next bytes. Readers wait on this stream rather
        // than fetch for themselves while it runs, so a whole `read_timeout` stalled on one
        // piece no peer delivers was the EIO of every read behind it, though other peers held
        // those pieces (bench/RESULTS.md, "The primary dies part-way").
        let stall = (self.read_timeout / 4).max(STALL_MIN);
        let read = async {
            let mut made = 0;
            while pos < object.size {
                let mut buf = match back_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if made < SEQ_BUFFERS => {
                        made += 1;
                        vec![0u8; SEQ_CHUNK]
                    }
                    // The checker hands buffers back; a stuck one (a sync that never
                    // returns) must not hold the stream, and with it its readers, forever.
                    Err(_) => tokio::time::timeout(self.read_timeout, back_rx.recv())
                        .await
                        .map_err(|_| FetchError::Timeout(self.read_timeout))?
                        .ok_or_else(|| FetchError::Failed(anyhow::anyhow!("checker stopped")))?,
                };
                buf.resize(SEQ_CHUNK.min((object.size - pos) as usize), 0);
                let mut got = 0;
                while got < buf.len() {
                    let n = match tokio::time::timeout(stall, stream.read(&mut buf[got..])).await {
                        Ok(n) => n.map_err(|e| FetchError::Failed(e.into()))?,
                        // A piece no peer delivers (its only holder died): what was read goes
                        // to the checker, which records its pieces as it finishes, and the
                        // stream stops so that readers of the pieces before it are served.
                        Err(_) => {
                            buf.truncate(got);
                            let _ = tokio::time::timeout(self.read_timeout, tx.send(buf)).await;
                            return Err(FetchError::Timeout(stall));
                        }
                    };
                    if n == 0 {
                        return Err(FetchError::Failed(anyhow::anyhow!("stream ended early")));
                    }
                    got += n;
                }
                pos += got as u64;
                tokio::time::timeout(self.read_timeout, tx.send(buf))
                    .await
                    .map_err(|_| FetchError::Timeout(self.read_timeout))?
                    .map_err(|_| FetchError::Failed(anyhow::anyhow!("checker stopped")))?;
            }
            Ok::<(), FetchError>(())
        };
        let read = read.await;
        drop(tx); // the checker finishes what is queued and ends
        let checked = tokio::time::timeout(self.read_timeout, checker)
            .await
            .map_err(|_| FetchError::Timeout(self.read_timeout))?
            .map_err(|e| FetchError::Failed(e.into()))?;
        // A bad piece stops the checker, and then the reader: report the piece.
        let digest = checked?;
        read?;
        Ok(digest)
    }

    /// Waits while the sequential stream of `object` runs for `[from, to)` to be verified:
    /// true once it is, false if no stream runs (or it stopped) and the caller must fetch.
    /// The caller's deadline bounds the wait.
    pub(super) async fn wait_streamed(&self, object: &CacheObject, from: u64, to: u64) -> bool {
        loop {
            let changed = object.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if object.has(from, to) {
                return true;
            }
            if !object.streaming.load(Ordering::Acquire) {
                return false;
            }
            changed.await;
        }
    }
}
