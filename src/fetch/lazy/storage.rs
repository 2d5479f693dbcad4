//! The mirror's torrents store into the cache: librqbit reads and writes the cache object
//! (`cache::CacheObject`), which decides what a read during librqbit's first check sees and
//! never lets a write land on a verified piece. The librqbit plumbing is `fetch::swarm`'s.

use std::sync::Arc;

use librqbit::storage::BoxStorageFactory;

use super::super::cache::CacheObject;
use super::super::swarm::{self, ObjectFile};

/// One cached object, as librqbit's storage: reads and writes go to the cache object.
pub fn cache_storage(object: Arc<CacheObject>) -> BoxStorageFactory {
    swarm::factory(move || {
        Ok(CacheFile {
            object: object.clone(),
            checking: true,
        })
    })
}

struct CacheFile {
    object: Arc<CacheObject>,
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

    fn take(&self) -> CacheFile {
        CacheFile {
            object: self.object.clone(),
            checking: false,
        }
    }
}
