//! An open repository: the state directory with its catalog and store, as every command and
//! the service use it.

use std::path::Path;

use anyhow::Context;
use tracing::info;

use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::store::{GcReport, Store};

/// Held by the one process allowed to publish; released when dropped (or the process dies).
pub struct WriterLock {
    _file: std::fs::File,
}

pub struct Repo {
    pub layout: Layout,
    pub config: Config,
    pub catalog: Catalog,
    pub store: Store,
}

impl Repo {
    /// Opens (creating if missing) the repository at `root`.
    pub fn open(root: &Path, config: Config) -> anyhow::Result<Repo> {
        let layout = Layout::new(root);
        layout
            .create()
            .with_context(|| format!("creating {}", root.display()))?;
        let catalog = Catalog::open(&layout.catalog())
            .with_context(|| format!("opening {}", layout.catalog().display()))?;
        let store = Store::open(&layout.store())
            .with_context(|| format!("opening {}", layout.store().display()))?;
        Ok(Repo {
            layout,
            config,
            catalog,
            store,
        })
    }

    /// Takes the single-writer lock for as long as the returned guard lives. Two writers
    /// would judge the same upload twice (the second calling it a replay), and one's start-up
    /// store GC could delete an object the other is about to commit.
    pub fn lock_writer(&self) -> anyhow::Result<WriterLock> {
        let path = self.layout.root.join("repofsd.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another repofsd is already working on {} (lock {} is held)",
                self.layout.root.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// Start-up recovery of the single writer: drops store objects that no committed catalog
    /// row refers to (left by a crash between store and catalog commits) and temporaries.
    pub fn recover(&mut self) -> anyhow::Result<GcReport> {
        let referenced = self.catalog.referenced_objects()?;
        let report = self.store.gc(&referenced)?;
        if report != GcReport::default() {
            info!(
                orphans = report.orphans,
                temporaries = report.temporaries,
                "store recovered after an interrupted publication"
            );
        }
        Ok(report)
    }

    /// Makes the torrents of files published before torrents existed (one read of each
    /// stored object). Run by the single writer at start-up; a failure is logged and retried
    /// at the next start, as it only delays distribution.
    pub fn backfill_torrents(&mut self) -> anyhow::Result<usize> {
        let files = self.catalog.files_without_torrent()?;
        for f in &files {
            let mut pieces = crate::torrent::PieceHasher::default();
            let mut file = std::fs::File::open(self.store.object_path(&f.sha256))?;
            std::io::copy(&mut file, &mut pieces)?;
            if let Some(t) = crate::torrent::info(&f.filename, f.size, &pieces.finish())? {
                self.catalog.put_torrent(f.id, &t.info_hash, &t.bytes)?;
            }
        }
        let derived = self.catalog.derived_without_torrent()?;
        for (file_id, sha256, size) in &derived {
            let mut pieces = crate::torrent::PieceHasher::default();
            let mut file = std::fs::File::open(self.store.object_path(sha256))?;
            std::io::copy(&mut file, &mut pieces)?;
            let name = format!("{sha256}.tar.zst");
            if let Some(t) = crate::torrent::info(&name, *size, &pieces.finish())? {
                self.catalog
                    .put_derived_torrent(*file_id, &t.info_hash, &t.bytes)?;
            }
        }
        if !files.is_empty() || !derived.is_empty() {
            info!(
                files = files.len(),
                derived = derived.len(),
                "made torrents for files published before torrents"
            );
        }
        Ok(files.len() + derived.len())
    }
}
