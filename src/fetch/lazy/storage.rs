//! The mirror's torrents store into the cache: librqbit reads and writes the cache object
//! (`cache::CacheObject`), which never lets a write land on a verified piece. A torrent added
//! (at start, or again after eviction) resumes from the pieces the cache records verified,
//! without reading them back; each is checked when first read for a peer or a stream, and one
//! that fails leaves the verified set and goes to `repair`. The librqbit plumbing is
//! `fetch::swarm`'s.

use std::sync::Arc;

use librqbit::storage::BoxStorageFactory;
use tracing::warn;

use super::super::cache::CacheObject;
use super::super::swarm::{self, ObjectFile};
use super::repair::{Found, Reports};

/// One cached object, as librqbit's storage: reads and writes go to the cache object.
/// A piece found corrupt goes to `reports` (`repair`).
pub fn cache_storage(object: Arc<CacheObject>, reports: Reports) -> BoxStorageFactory {
    swarm::factory(move || {
        Ok(CacheFile {
            object: object.clone(),
            reports: reports.clone(),
            checking: true,
        })
    })
}

struct CacheFile {
    object: Arc<CacheObject>,
    reports: Reports,
    /// librqbit's first check runs on the storage it created; `take` hands over a live one.
    checking: bool,
}

impl ObjectFile for CacheFile {
    fn pread(&self, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        self.object.pread(offset, buf, self.checking)
    }

    fn pwrite(&self, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        self.object.pwrite(offset, buf)
    }

    fn check_len(&self, length: u64) -> anyhow::Result<()> {
        anyhow::ensure!(
            length == self.object.size,
            "torrent says {length} bytes, the catalog {}",
            self.object.size
        );
        Ok(())
    }

    /// The pieces the cache records verified: checked against their SHA-1 and synced first.
    fn known_pieces(&self, length: u64, pieces: usize) -> Option<Vec<bool>> {
        let known = self.object.verified_pieces();
        (length == self.object.size && known.len() == pieces).then_some(known)
    }

    /// Out of the verified set (the mount stops reading it, a peer's bytes may land on it),
    /// then fetched again (`repair`).
    fn corrupt(&self, piece: u64, why: &str) {
        warn!(
            object = %self.object.sha256,
            piece,
            reason = "corrupt-cache",
            "cached piece changed since it was verified ({why}): no longer served; fetching it again"
        );
        if let Err(e) = self.object.unverify(piece) {
            warn!(object = %self.object.sha256, piece, error = %e, "cannot record a corrupt piece");
        }
        let _ = self.reports.send(Found {
            sha256: self.object.sha256.clone(),
            size: self.object.size,
            piece,
            why: why.to_string(),
        });
    }

    fn take(&self) -> CacheFile {
        CacheFile {
            object: self.object.clone(),
            reports: self.reports.clone(),
            checking: false,
        }
    }
}
