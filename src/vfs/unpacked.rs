//! The unpack cache: payloads read neither in place nor span by span (bzip2, lzip, xz
//! without a seekable twin) are unpacked once into `ROOT/cache/<sha256>.tar`, bounded in
//! total size, least recently used first out.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::archive::Compression;
use crate::catalog::PackageRow;
use crate::store::ReadAt;
use crate::sync::wait_until;
use crate::vfs::content::FileRange;

/// How long a reader waits for another thread's unpacking before failing with EIO.
const UNPACK_WAIT: Duration = Duration::from_secs(600);

/// The unpack cache.
pub struct Cache {
    dir: PathBuf,
    limit: u64,
    busy: Mutex<HashSet<String>>,
    done: Condvar,
}

impl Cache {
    pub fn new(dir: PathBuf, limit: u64) -> Cache {
        Cache {
            dir,
            limit,
            busy: Mutex::new(HashSet::new()),
            done: Condvar::new(),
        }
    }

    /// The unpacked tar stream of `pkg` (stored at `object`), unpacking it if needed. One
    /// thread unpacks; others wait for it (bounded).
    pub fn unpacked(
        &self,
        pkg: &PackageRow,
        object: impl FnOnce() -> io::Result<Arc<dyn ReadAt>>,
    ) -> io::Result<Arc<File>> {
        let path = self.dir.join(format!("{}.tar", pkg.sha256));
        let mut busy = crate::sync::lock(&self.busy);
        let deadline = std::time::Instant::now() + UNPACK_WAIT;
        while busy.contains(&pkg.sha256) {
            busy = wait_until(&self.done, busy, deadline, "unpacking took too long")?;
        }
        if let Ok(f) = File::open(&path) {
            // Recently used: keep it longest.
            let _ = f.set_modified(SystemTime::now());
            return Ok(Arc::new(f));
        }
        busy.insert(pkg.sha256.clone());
        drop(busy);
        let result = object().and_then(|object| self.unpack(pkg, &object, &path));
        let mut busy = crate::sync::lock(&self.busy);
        busy.remove(&pkg.sha256);
        self.done.notify_all();
        drop(busy);
        result.map(Arc::new)
    }

    fn unpack(&self, pkg: &PackageRow, object: &Arc<dyn ReadAt>, path: &Path) -> io::Result<File> {
        fs::create_dir_all(&self.dir)?;
        self.evict(pkg.unpacked_size)?;
        let compression = Compression::parse(&pkg.compression)
            .ok_or_else(|| io::Error::other(format!("unknown compression {}", pkg.compression)))?;
        let src = io::BufReader::with_capacity(
            1 << 20,
            FileRange {
                file: object.clone(),
                at: pkg.payload_offset,
                left: pkg.payload_size,
            },
        );
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        let started = std::time::Instant::now();
        let mut reader = compression.reader(src)?;
        let n = io::copy(&mut reader, &mut tmp.as_file())?;
        let f = tmp.persist(path).map_err(|e| e.error)?;
        info!(package = %pkg.name, bytes = n, elapsed = ?started.elapsed(), "unpacked into the cache");
        Ok(f)
    }

    /// Removes least recently used entries until `incoming` more bytes fit under the limit.
    fn evict(&self, incoming: u64) -> io::Result<()> {
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total + incoming <= self.limit {
                break;
            }
            if let Err(e) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not evict from the cache");
            }
            total = total.saturating_sub(len);
        }
        Ok(())
    }
}
