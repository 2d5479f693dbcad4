//! What the views and the CLI read of the published tree: files, symlinks, packages and their
//! listings, the stored repository metadata, and the dependency resolver's package list.
//! Read-only; the mount asks some of these on every lookup, so those keep their statements
//! prepared (`prepare_cached`) and stream rows instead of collecting them where lists are long.

use std::collections::HashSet;

use rusqlite::OptionalExtension;

use super::{
    file_row, package_row, Catalog, FileBrief, FileRow, PackageListing, PackageRow, Result,
    SymlinkRow, FILE_COLUMNS, PACKAGE_COLUMNS,
};

impl Catalog {
    pub fn files(&self, include_archived: bool) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files {} ORDER BY directory, filename, id",
            if include_archived {
                ""
            } else {
                "WHERE state = 'published'"
            }
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn symlinks(&self) -> Result<Vec<SymlinkRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT directory, name, target, upload_id, created_at FROM symlinks
             ORDER BY directory, name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SymlinkRow {
                    directory: r.get(0)?,
                    name: r.get(1)?,
                    target: r.get(2)?,
                    upload_id: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every content hash the catalog refers to, published or archived: what the store must keep.
    pub fn referenced_objects(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sha256 FROM files UNION SELECT sha256 FROM derived")?;
        let set = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<HashSet<String>, _>>()?;
        Ok(set)
    }

    /// Live packages with their payload location (what `pkgs/` lists).
    pub fn packages(&self) -> Result<Vec<PackageRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.state = 'published' ORDER BY p.name, p.file_id"
        ))?;
        let rows = stmt
            .query_map([], package_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One live package by file id: what the mount reads on open instead of holding every
    /// package row.
    pub fn package(&self, file_id: i64) -> Result<Option<PackageRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages p JOIN files f ON f.id = p.file_id
             WHERE p.file_id = ? AND f.state = 'published'"
        ))?;
        Ok(stmt.query_row([file_id], package_row).optional()?)
    }

    /// The live packages of files in `directory` (for its index.json).
    pub fn packages_in(&self, directory: &str) -> Result<Vec<PackageRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.directory = ? AND f.state = 'published'"
        ))?;
        let rows = stmt
            .query_map([directory], package_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every stored repository metadata file: (directory, name, size), for the mount's view.
    pub fn dist_meta_names(&self) -> Result<Vec<(String, String, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT directory, name, length(data) FROM dist_meta")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The bytes of one repository metadata file.
    pub fn dist_meta(&self, directory: &str, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT data FROM dist_meta WHERE directory = ?1 AND name = ?2")?
            .query_row([directory, name], |r| r.get(0))
            .optional()?)
    }

    /// Directories that hold live packages of `meta_source` `deb` or `pkginfo` but have no
    /// repository metadata yet (published before `pkgmeta` existed): repofsd backfills them.
    pub fn dirs_without_dist_meta(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT f.directory FROM files f JOIN packages p ON p.file_id = f.id
             WHERE f.state = 'published' AND p.meta_source IN ('deb', 'pkginfo')
               AND f.directory NOT IN (SELECT directory FROM dist_meta)
             ORDER BY f.directory",
        )?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// Live pacman packages that have no repository-key signature yet (backfill).
    pub fn pacman_packages_without_sig(&self) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE state = 'published' AND id IN
               (SELECT file_id FROM packages WHERE meta_source = 'pkginfo')
             AND id NOT IN (SELECT file_id FROM repo_sigs)"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every live package with where its file is and the full metadata JSON, for the
    /// dependency resolver (`deps`), which needs Provides/Conflicts and the raw fields.
    pub fn packages_for_deps(&self) -> Result<Vec<PackageListing>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {PACKAGE_COLUMNS}, f.directory, f.filename, p.metadata
             FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.state = 'published' ORDER BY p.name, p.file_id"
        ))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PackageListing {
                    package: package_row(r)?,
                    directory: r.get(15)?,
                    filename: r.get(16)?,
                    metadata: r.get(17)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One published file by id (the mount opens files by it).
    pub fn published_file(&self, id: i64) -> Result<Option<FileRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE id = ? AND state = 'published'"
        ))?;
        Ok(stmt.query_row([id], file_row).optional()?)
    }

    /// The published files in `directory` (for its generated files).
    pub fn published_files_in(&self, directory: &str) -> Result<Vec<FileRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE directory = ? AND state = 'published'"
        ))?;
        let rows = stmt
            .query_map([directory], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The published files in `directory` named `first` ..= `last` (byte order, as the views
    /// sort): one page of an HTTP listing in one query on the `files_live` index.
    pub fn published_files_between(
        &self,
        directory: &str,
        first: &str,
        last: &str,
    ) -> Result<Vec<FileRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE directory = ?1 AND state = 'published'
             AND filename >= ?2 AND filename <= ?3"
        ))?;
        let rows = stmt
            .query_map([directory, first, last], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Streams what the mount keeps of each published file, row by row, so that loading
    /// 100,000 files never holds them all as full rows.
    pub fn for_each_published_file(&self, mut f: impl FnMut(FileBrief<'_>)) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT f.id, f.directory, f.filename, f.size, f.published_at, length(t.info)
             FROM files f LEFT JOIN torrents t ON t.file_id = f.id
             WHERE f.state = 'published'",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let directory = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let filename = r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
            f(FileBrief {
                id: r.get(0)?,
                directory,
                filename,
                size: r.get::<_, i64>(3)? as u64,
                published_at: r.get(4)?,
                torrent_info_len: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
            });
        }
        Ok(())
    }

    /// Streams (file id, name, version, meta_source) of each live package: what `pkgs/`
    /// lists.
    pub fn for_each_package_version(
        &self,
        mut f: impl FnMut(i64, &str, Option<&str>, &str),
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT p.file_id, p.name, p.version, p.meta_source
             FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.state = 'published' ORDER BY p.name, p.file_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let version = r
                .get_ref(2)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
            let meta_source = r.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?;
            f(r.get(0)?, name, version, meta_source);
        }
        Ok(())
    }
}
