//! The publication transaction (`PublishTx`): everything one upload changes, committed at once
//! or not at all, which is what makes a publication atomic. Each change of the published view
//! is logged under the transaction's generation (`generations`, `changes`), so a mirror is
//! sent only what changed (`replica.rs`).

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use super::entries::deflate;
use super::uploads::insert_upload;
use super::{
    file_row, Catalog, Derived, DistPackage, FileRow, NewFile, NewUpload, Result, FILE_COLUMNS,
};
use crate::archive::gzindex::SeekPoint;
use crate::archive::{EntryKind, Inspection, Layout};
use crate::time::now;

impl Catalog {
    /// Starts a publication; nothing it writes is visible until `PublishTx::commit`.
    pub fn transaction(&mut self) -> Result<PublishTx<'_>> {
        Ok(PublishTx {
            tx: self.conn.transaction()?,
            generation: std::cell::Cell::new(None),
        })
    }
}

/// One publication in progress. Dropping it without `commit` rolls everything back, so an
/// upload rejected half-way (say, its third directive line fails) changes nothing.
pub struct PublishTx<'c> {
    tx: Transaction<'c>,
    /// The generation this transaction's changes belong to, allocated at the first change.
    generation: std::cell::Cell<Option<i64>>,
}

impl<'c> PublishTx<'c> {
    /// A replica's apply (`replica.rs`): its transaction, so the metadata it renders there
    /// reads the rows it has just applied. It logs no generation of its own.
    pub(super) fn wrap(tx: Transaction<'c>) -> PublishTx<'c> {
        PublishTx {
            tx,
            generation: std::cell::Cell::new(None),
        }
    }

    pub(super) fn sql(&self) -> &Transaction<'c> {
        &self.tx
    }
}

impl PublishTx<'_> {
    /// Logs one change of the published view under this transaction's generation.
    fn log_change(
        &self,
        kind: &str,
        file_id: Option<i64>,
        symlink: Option<(&str, &str)>,
    ) -> Result<()> {
        let generation = match self.generation.get() {
            Some(g) => g,
            None => {
                let g: i64 = self.tx.query_row(
                    "SELECT COALESCE(MAX(generation), 0) + 1 FROM generations",
                    [],
                    |r| r.get(0),
                )?;
                self.tx.execute(
                    "INSERT INTO generations (generation, created_at) VALUES (?1, ?2)",
                    params![g, now()],
                )?;
                self.generation.set(Some(g));
                g
            }
        };
        self.tx.execute(
            "INSERT INTO changes (generation, kind, file_id, directory, name)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                generation,
                kind,
                file_id,
                symlink.map(|s| s.0),
                symlink.map(|s| s.1)
            ],
        )?;
        Ok(())
    }

    pub fn insert_upload(&self, u: &NewUpload) -> Result<i64> {
        insert_upload(&self.tx, u)
    }

    pub fn set_upload_message(&self, id: i64, message: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE uploads SET message = ?2 WHERE id = ?1",
            params![id, message],
        )?;
        Ok(())
    }

    pub fn live_file(&self, directory: &str, filename: &str) -> Result<Option<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files
             WHERE directory = ? AND filename = ? AND state = 'published'"
        );
        Ok(self
            .tx
            .query_row(&sql, [directory, filename], file_row)
            .optional()?)
    }

    /// Whether anything is published below `path` (i.e. `path` is a directory in dists/).
    pub fn is_directory(&self, path: &str) -> Result<bool> {
        let like = format!(
            "{}/%",
            path.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let n: i64 = self.tx.query_row(
            "SELECT (SELECT COUNT(*) FROM files WHERE state = 'published'
                       AND (directory = ?1 OR directory LIKE ?2 ESCAPE '\\'))
                  + (SELECT COUNT(*) FROM symlinks WHERE directory = ?1 OR directory LIKE ?2 ESCAPE '\\')",
            params![path, like],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn insert_file(&self, f: &NewFile<'_>) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO files (directory, filename, kind, sha256, md5, size, name, version,
                                uploader, upload_id, published_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'published')",
            params![
                f.directory,
                f.filename,
                f.kind,
                f.sha256,
                f.md5,
                f.size as i64,
                f.name,
                f.version,
                f.uploader,
                f.upload_id,
                now()
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        self.log_change("file", Some(id), None)?;
        Ok(id)
    }

    pub fn insert_package(&self, file_id: i64, p: &Inspection) -> Result<()> {
        self.tx.execute(
            "INSERT INTO packages (file_id, format, meta_source, name, version, arch, description,
                                   depends, metadata, payload_offset, payload_size,
                                   payload_compression, unpacked_size, entry_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                file_id,
                p.format.as_str(),
                p.meta.source.as_str(),
                p.meta.name,
                p.meta.version,
                p.meta.arch,
                p.meta.description,
                json(&p.meta.depends),
                json(&p.meta.fields),
                p.payload.offset as i64,
                p.payload.size as i64,
                p.payload.compression.as_str(),
                p.unpacked_size as i64,
                p.entries.len() as i64
            ],
        )?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO entries (file_id, path, kind, mode, size, mtime, uid, gid,
                                             link_target, data_offset, sha256, layout)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for e in &p.entries {
            stmt.execute(params![
                file_id,
                e.path,
                match e.kind {
                    EntryKind::File => "file",
                    EntryKind::Dir => "dir",
                    EntryKind::Symlink => "symlink",
                    EntryKind::Hardlink => "hardlink",
                },
                e.mode,
                e.size as i64,
                e.mtime,
                e.uid as i64,
                e.gid as i64,
                e.link_target,
                e.data_offset as i64,
                e.sha256,
                (e.layout != Layout::Contiguous).then(|| json(&e.layout))
            ])?;
        }
        self.insert_seek_points(file_id, &p.seek_points)
    }

    pub fn insert_torrent(&self, file_id: i64, info_hash: &str, info: &[u8]) -> Result<()> {
        self.tx.execute(
            "INSERT INTO torrents (file_id, info_hash, info) VALUES (?1, ?2, ?3)",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    pub fn insert_seek_points(&self, file_id: i64, points: &[SeekPoint]) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO seek_points
                 (file_id, uncompressed_offset, compressed_offset, bits, window)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for p in points {
            stmt.execute(params![
                file_id,
                p.out as i64,
                p.inp as i64,
                p.bits as i64,
                deflate(&p.window)
            ])?;
        }
        Ok(())
    }

    /// Records the seekable form of package `file_id`'s payload (object staged by the caller).
    pub fn insert_derived(&self, file_id: i64, size: u64, d: &Derived) -> Result<()> {
        self.tx.execute(
            "INSERT INTO derived (file_id, kind, sha256, size) VALUES (?1, 'zstd-frames', ?2, ?3)",
            params![file_id, d.sha256, size as i64],
        )?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO frames (file_id, uncompressed_offset, uncompressed_size,
                                 compressed_offset, compressed_size)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for f in &d.frames {
            stmt.execute(params![
                file_id,
                f.out as i64,
                f.out_len as i64,
                f.inp as i64,
                f.in_len as i64
            ])?;
        }
        Ok(())
    }

    /// The torrent of package `file_id`'s derived object (inserted just before).
    pub fn set_derived_torrent(&self, file_id: i64, info_hash: &str, info: &[u8]) -> Result<()> {
        self.tx.execute(
            "UPDATE derived SET info_hash = ?2, info = ?3 WHERE file_id = ?1",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    /// Takes a file offline; its row and content stay (archived, never destroyed).
    pub fn archive_file(&self, id: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE files SET state = 'archived', archived_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        self.log_change("archive", Some(id), None)
    }

    pub fn symlink(&self, directory: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT target FROM symlinks WHERE directory = ? AND name = ?",
                [directory, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_symlink(
        &self,
        directory: &str,
        name: &str,
        target: &str,
        upload_id: i64,
    ) -> Result<()> {
        self.tx.execute(
            "INSERT OR REPLACE INTO symlinks (directory, name, target, upload_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![directory, name, target, upload_id, now()],
        )?;
        self.log_change("symlink", None, Some((directory, name)))
    }

    pub fn remove_symlink(&self, directory: &str, name: &str) -> Result<bool> {
        let removed = self.tx.execute(
            "DELETE FROM symlinks WHERE directory = ? AND name = ?",
            [directory, name],
        )? > 0;
        if removed {
            self.log_change("symlink", None, Some((directory, name)))?;
        }
        Ok(removed)
    }

    pub fn use_signature(&self, digest: &[u8], upload_id: i64) -> Result<()> {
        self.tx.execute(
            "INSERT INTO used_signatures (digest, upload_id, used_at) VALUES (?1, ?2, ?3)",
            params![digest, upload_id, now()],
        )?;
        Ok(())
    }

    /// Whether this transaction changed the published view (it has a generation).
    pub fn changed(&self) -> bool {
        self.generation.get().is_some()
    }

    /// When this transaction's generation was made, if it has one.
    pub fn generation_time(&self) -> Result<Option<i64>> {
        let Some(g) = self.generation.get() else {
            return Ok(None);
        };
        Ok(self
            .tx
            .query_row(
                "SELECT created_at FROM generations WHERE generation = ?",
                [g],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Logs file `id` as changed again (its rows are immutable, so a mirror applying it twice
    /// changes nothing): a delta then carries rows added to it later, such as a backfilled
    /// repository signature.
    pub fn touch_file(&self, id: i64) -> Result<()> {
        self.log_change("file", Some(id), None)
    }

    /// Logs a change for directory `dir` without changing a file: the backfill of its
    /// repository metadata must reach mirrors, and a delta carries the metadata of the
    /// directories of the files it names. Logs the directory's first live file again (its
    /// rows are immutable, so applying it twice changes nothing). False if it has none.
    pub fn touch_directory(&self, dir: &str) -> Result<bool> {
        let id: Option<i64> = self
            .tx
            .query_row(
                "SELECT MIN(id) FROM files WHERE directory = ? AND state = 'published'",
                [dir],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match id {
            Some(id) => {
                self.log_change("file", Some(id), None)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The live packages of `dir` whose metadata source is `meta_source`, with their file
    /// rows and the metadata fields as JSON (text), in file-id order.
    pub fn dist_packages(&self, dir: &str, meta_source: &str) -> Result<Vec<DistPackage>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS},
                    (SELECT metadata FROM packages p WHERE p.file_id = files.id),
                    (SELECT unpacked_size FROM packages p WHERE p.file_id = files.id),
                    (SELECT sig FROM repo_sigs s WHERE s.file_id = files.id)
             FROM files
             WHERE directory = ?1 AND state = 'published'
               AND id IN (SELECT file_id FROM packages WHERE meta_source = ?2)
             ORDER BY id"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([dir, meta_source], |r| {
                Ok(DistPackage {
                    file: file_row(r)?,
                    metadata: r.get(14)?,
                    unpacked_size: r.get::<_, i64>(15)? as u64,
                    repo_sig: r.get(16)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The paths a package holds and whether each is a directory, sorted by path.
    pub fn package_paths(&self, file_id: i64) -> Result<Vec<(String, bool)>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT path, kind = 'dir' FROM entries WHERE file_id = ? ORDER BY path",
        )?;
        let rows = stmt
            .query_map([file_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every repository metadata file of `dir` as this transaction sees it (name, bytes).
    pub fn dist_meta_files(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name, data FROM main.dist_meta WHERE directory = ?")?;
        let rows = stmt
            .query_map([dir], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The repository key's signature of package `file_id` (made from the store copy).
    pub fn put_repo_sig(&self, file_id: i64, sig: &[u8]) -> Result<()> {
        self.tx.execute(
            "INSERT OR REPLACE INTO repo_sigs (file_id, sig) VALUES (?1, ?2)",
            params![file_id, sig],
        )?;
        Ok(())
    }

    /// Replaces the repository metadata of `dir` (none: the directory has none now). Files
    /// named `by-hash/...` are kept from the `keep_by_hash` newest generations that made any,
    /// so a client that read the previous Release can still fetch the index it names.
    pub fn set_dist_meta(
        &self,
        dir: &str,
        files: &[(String, Vec<u8>)],
        keep_by_hash: usize,
    ) -> Result<()> {
        let made = self.generation.get().unwrap_or(0);
        if files.is_empty() {
            self.tx
                .execute("DELETE FROM dist_meta WHERE directory = ?", [dir])?;
            return Ok(());
        }
        self.tx.execute(
            "DELETE FROM dist_meta WHERE directory = ? AND name NOT LIKE 'by-hash/%'",
            [dir],
        )?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO dist_meta (directory, name, data, made)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (name, data) in files {
            stmt.execute(params![dir, name, data, made])?;
        }
        self.tx.execute(
            "DELETE FROM dist_meta WHERE directory = ?1 AND name LIKE 'by-hash/%'
               AND made NOT IN (SELECT DISTINCT made FROM dist_meta
                                WHERE directory = ?1 AND name LIKE 'by-hash/%'
                                ORDER BY made DESC LIMIT ?2)",
            params![dir, keep_by_hash as i64],
        )?;
        Ok(())
    }

    pub fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}
