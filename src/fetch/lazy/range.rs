//! A reader's range: fetched by reading it through a librqbit `FileStream` opened on just its
//! missing pieces, then verified from the cache file; and the read-ahead past it, on slots of
//! its own so that a reader never waits behind one.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use librqbit::ManagedTorrent;
use tokio::io::AsyncReadExt;
use tracing::debug;

use super::super::cache::CacheObject;
use super::{plan, Busy, FetchError, Fetcher};

impl Fetcher {
    /// Fetches `[from, ahead)` in the background unless a read-ahead already covers it.
    /// Read-aheads have their own few stream slots, so a reader's own requests never wait
    /// behind them.
    pub(super) fn read_ahead(
        self: &Arc<Self>,
        sha256: &str,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
        ahead: u64,
    ) {
        let reached = object.ahead.load(Ordering::Relaxed);
        let Some((start, ahead)) =
            plan::read_ahead_span(from, ahead, object.size, reached, |p| object.is_verified(p))
        else {
            return;
        };
        let Ok(permit) = self.ahead_streams.clone().try_acquire_owned() else {
            return;
        };
        object.ahead.fetch_max(ahead, Ordering::Relaxed);
        let (me, t, o) = (self.clone(), torrent.clone(), object.clone());
        let sha = sha256.to_string();
        self.runtime.spawn(async move {
            let _busy = Busy::new(&me, &sha);
            let r = tokio::time::timeout(
                me.read_timeout,
                me.stream_range(&t, &o, start, ahead, Some(permit)),
            )
            .await;
            if !matches!(r, Ok(Ok(()))) {
                // Let a later reader try these pieces again.
                o.ahead.fetch_min(start, Ordering::Relaxed);
                debug!("read-ahead failed");
            }
            me.maybe_promote(&sha, &o).await;
        });
    }

    /// Makes `[from, to)` verified in the cache.
    pub(super) async fn fetch_range(
        &self,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
        to: u64,
    ) -> Result<(), FetchError> {
        if object.has(from, to) {
            return Ok(());
        }
        self.stream_range(torrent, object, from, to, None).await
    }

    /// Streams the missing pieces of `[from, to)` on a stream slot (`permit`, or a reader's
    /// slot), then verifies them.
    async fn stream_range(
        &self,
        torrent: &Arc<ManagedTorrent>,
        object: &Arc<CacheObject>,
        from: u64,
        to: u64,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(), FetchError> {
        // Only the span from the first missing piece to the last.
        let Some((a, b)) = plan::missing_span(from, to, object.size, |p| object.is_verified(p))
        else {
            return Ok(());
        };
        {
            let _permit = match permit {
                Some(p) => p,
                None => self
                    .streams
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| FetchError::Failed(e.into()))?,
            };
            // Opened at `a`, queueing only up to `b`: librqbit pulls the range's pieces and no
            // more (a plain stream queues 32 MiB ahead, from the file's start until it seeks).
            let mut stream = torrent
                .clone()
                .stream_at(0, a, b - a)
                .await
                .map_err(FetchError::Failed)?;
            let mut left = b - a;
            let mut buf = vec![0u8; 256 << 10];
            while left > 0 {
                let want = (buf.len() as u64).min(left) as usize;
                let n = stream
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| FetchError::Failed(e.into()))?;
                if n == 0 {
                    return Err(FetchError::Failed(anyhow::anyhow!("stream ended early")));
                }
                left -= n as u64;
            }
            // The stream (and its slot) goes here, before verifying.
        }
        let o = object.clone();
        tokio::task::spawn_blocking(move || o.verify(a, b))
            .await
            .map_err(|e| FetchError::Failed(e.into()))??;
        Ok(())
    }
}
