//! What the cache occupies, without listing its directory each time. A listing stats every
//! file (100,000 objects: a tenth of a CPU-second), and the status thread and eviction asked
//! for one every couple of seconds, idle or not. Only repofsd writes the cache, and every
//! write goes through `CacheObject` (`pwrite`, `put_piece`) or makes an object, so the last
//! listing plus what may have been allocated since, less what was removed, is an upper bound:
//! `usage` and eviction list again only once something was written, and then at most every
//! 10 s unless the bound passes the limit (`Cache::known_usage`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

#[derive(Debug)]
pub(super) struct Tally {
    /// `st_blksize` of the cache directory (the file system's block on ext4 and XFS): a
    /// write may allocate a part-used block at either end.
    block: u64,
    /// Bytes possibly allocated since the cache was opened (only grows).
    grown: AtomicU64,
    /// The last listing's total, `grown` when it started, and when; None: list first.
    listed: Mutex<Option<(u64, u64, Instant)>>,
}

impl Tally {
    pub(super) fn new(block: u64) -> Tally {
        Tally {
            block: block.max(512),
            grown: AtomicU64::new(0),
            listed: Mutex::new(None),
        }
    }

    /// `len` bytes written at `offset`: the blocks they touch may be newly allocated.
    pub(super) fn wrote(&self, offset: u64, len: u64) {
        let b = self.block;
        let span = (offset + len).div_ceil(b) * b - offset / b * b;
        self.grown.fetch_add(span, Ordering::Relaxed);
    }

    /// A new object: its bits file (one byte a piece) may be allocated whole.
    pub(super) fn made(&self, pieces: u64) {
        self.grown
            .fetch_add(pieces.div_ceil(self.block) * self.block, Ordering::Relaxed);
    }

    /// Removes the file at `path` and its allocated bytes from the total. Under the lock: a
    /// listing that no longer saw the file cannot be stored before the subtraction.
    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let bytes = fs::symlink_metadata(path).map_or(0, |m| m.blocks() * 512);
        let mut listed = lock(&self.listed);
        fs::remove_file(path)?;
        if let Some((total, _, _)) = &mut *listed {
            *total = total.saturating_sub(bytes);
        }
        Ok(())
    }

    /// The exact total if nothing was written since the last listing.
    pub(super) fn exact(&self) -> Option<u64> {
        let grown = self.grown.load(Ordering::Relaxed);
        lock(&self.listed).and_then(|(total, at, _)| (at == grown).then_some(total))
    }

    /// At least what the cache occupies now, if a listing was made.
    pub(super) fn bound(&self) -> Option<u64> {
        let grown = self.grown.load(Ordering::Relaxed);
        lock(&self.listed).map(|(total, at, _)| total + (grown - at))
    }

    /// `bound` if the last listing is younger than `age`.
    pub(super) fn recent_bound(&self, age: Duration) -> Option<u64> {
        let fresh = lock(&self.listed).is_some_and(|(_, _, when)| when.elapsed() < age);
        fresh.then(|| self.bound()).flatten()
    }

    /// Runs `list` (a directory listing and its total) and remembers the total. `grown` is
    /// read first: what is written during the listing is counted again, never missed.
    pub(super) fn list<T>(&self, list: impl FnOnce() -> (T, u64)) -> (T, u64) {
        let at = self.grown.load(Ordering::Relaxed);
        let (out, total) = list();
        *lock(&self.listed) = Some((total, at, Instant::now()));
        (out, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_trusted_until_a_write_and_bounds_what_follows() {
        let t = Tally::new(4096);
        assert_eq!((t.exact(), t.bound()), (None, None), "nothing listed yet");
        t.list(|| ((), 10 << 20));
        assert_eq!(t.exact(), Some(10 << 20));
        // An aligned 16 KiB chunk is four blocks; one that straddles blocks counts both ends.
        t.wrote(16384, 16384);
        t.wrote(4095, 2);
        assert_eq!(t.exact(), None);
        assert_eq!(t.bound(), Some((10 << 20) + 16384 + 8192));
        t.made(5000); // 5,000 pieces: two blocks of bits file
        assert_eq!(t.bound(), Some((10 << 20) + 16384 + 8192 + 8192));
        t.list(|| ((), 11 << 20));
        assert_eq!((t.exact(), t.bound()), (Some(11 << 20), Some(11 << 20)));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        fs::write(&f, vec![1u8; 1 << 20]).unwrap();
        let bytes = fs::metadata(&f).unwrap().blocks() * 512;
        t.remove_file(&f).unwrap();
        assert!(!f.exists());
        assert_eq!(t.exact(), Some((11 << 20) - bytes));
        assert_eq!(t.bound(), t.exact());
    }

    /// What 100,000 cached objects cost the status thread and eviction, listing the directory
    /// each time (before) and with the tally: an idle minute (30 status writes, each with an
    /// eviction pass) and a busy one (the same, plus 120 fetches of a piece, each followed by
    /// an eviction pass, the cache under its limit). The loop runs in less than a minute, so
    /// the busy minute's listings (one per `USAGE_EVERY`) are added as measured ones. On demand:
    /// `cargo test --lib cost_of_a_large_cache -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn cost_of_a_large_cache() {
        use super::super::{evict, Cache, CacheDir, USAGE_EVERY};
        use crate::sync::thread_cpu;
        const N: usize = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(CacheDir::new(dir.path().to_path_buf()), u64::MAX / 2).unwrap();
        for i in 0..N {
            fs::write(dir.path().join("complete").join(format!("{i:064x}")), b"x").unwrap();
        }
        let busy = Default::default();
        let t0 = thread_cpu();
        for _ in 0..30 {
            let e = evict::entries(&cache.dir);
            assert!(evict::victims(e, cache.limit, &busy).is_empty());
            assert!(
                evict::entries(&cache.dir)
                    .iter()
                    .map(|e| e.bytes)
                    .sum::<u64>()
                    > 0
            );
        }
        let before = thread_cpu() - t0;
        let t0 = thread_cpu();
        assert!(cache.usage() > 0);
        let one = thread_cpu() - t0;
        let minute = |writes: bool| {
            let t0 = thread_cpu();
            for i in 0..30 {
                for j in 0..if writes { 4 } else { 0 } {
                    cache.tally.wrote((i * 4 + j) << 18, 1 << 18);
                    assert!(cache.victims(&busy).is_empty());
                }
                assert!(cache.victims(&busy).is_empty());
                assert!(cache.usage() > 0);
            }
            thread_cpu() - t0
        };
        let (idle, busy_loop) = (minute(false), minute(true));
        let listings = 60 / USAGE_EVERY.as_secs();
        eprintln!(
            "{N} cached objects, CPU-seconds a minute: listing each time {before:.3} (60 \
             listings, {:.3} each); with the tally idle {idle:.4}, busy {:.3} ({busy_loop:.4} \
             plus {listings} listings); the first listing {one:.3}",
            before / 60.0,
            busy_loop + listings as f64 * before / 60.0,
        );
    }
}
