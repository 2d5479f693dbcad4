//! BitTorrent rows: each published file's torrent (`torrents`) and each seekable twin's
//! (`derived.info`), looked up by file, by content hash (`object_torrent`) or by infohash
//! (what a peer asks for), plus the backfills for rows made before torrents existed.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row};

use super::{file_row, Catalog, FileRow, Result, FILE_COLUMNS};

impl Catalog {
    /// Infohash and info-dictionary length of every published file's torrent: what dists/
    /// lists (the .torrent's size follows from it) without loading the pieces.
    pub fn torrents(&self) -> Result<HashMap<i64, (String, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.file_id, t.info_hash, length(t.info) FROM torrents t
             JOIN files f ON f.id = t.file_id WHERE f.state = 'published'",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get::<_, i64>(2)? as u64)))
            })?
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(rows)
    }

    /// Every object a primary seeds: (sha256, infohash) of each published file with a
    /// torrent and of each published package's seekable twin.
    pub fn seedable_objects(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.sha256, t.info_hash FROM torrents t
             JOIN files f ON f.id = t.file_id WHERE f.state = 'published'
             UNION
             SELECT d.sha256, d.info_hash FROM derived d
             JOIN files f ON f.id = d.file_id
             WHERE f.state = 'published' AND d.info IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The bencoded info dictionary of a file's torrent.
    pub fn torrent_info(&self, file_id: i64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT info FROM torrents WHERE file_id = ?")?
            .query_row([file_id], |r| r.get(0))
            .optional()?)
    }

    /// Published, non-empty files without a torrent (published before torrents existed).
    pub fn files_without_torrent(&self) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files
             WHERE state = 'published' AND size > 0
               AND NOT EXISTS (SELECT 1 FROM torrents t WHERE t.file_id = files.id)
             ORDER BY id"
        );
        let rows = self
            .conn
            .prepare(&sql)?
            .query_map([], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn put_torrent(&mut self, file_id: i64, info_hash: &str, info: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO torrents (file_id, info_hash, info) VALUES (?1, ?2, ?3)",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }
    /// The torrent of a content object by its sha256: a published (else archived) file's, or a
    /// derived object's. Returns (infohash, bencoded info dictionary, object size).
    pub fn object_torrent(&self, sha256: &str) -> Result<Option<(String, Vec<u8>, u64)>> {
        let row = |r: &Row<'_>| -> rusqlite::Result<(String, Vec<u8>, u64)> {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        };
        let file = self
            .conn
            .prepare_cached(
                "SELECT t.info_hash, t.info, f.size FROM torrents t JOIN files f ON f.id = t.file_id
                 WHERE f.sha256 = ? ORDER BY f.state = 'published' DESC, f.id DESC LIMIT 1",
            )?
            .query_row([sha256], row)
            .optional()?;
        if file.is_some() {
            return Ok(file);
        }
        Ok(self
            .conn
            .prepare_cached(
                "SELECT info_hash, info, size FROM derived
                 WHERE sha256 = ? AND info IS NOT NULL LIMIT 1",
            )?
            .query_row([sha256], row)
            .optional()?)
    }

    /// Derived objects made before they had torrents: (file id, sha256, size).
    pub fn derived_without_torrent(&self) -> Result<Vec<(i64, String, u64)>> {
        let rows = self
            .conn
            .prepare(
                "SELECT file_id, sha256, size FROM derived WHERE info IS NULL ORDER BY file_id",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn put_derived_torrent(
        &mut self,
        file_id: i64,
        info_hash: &str,
        info: &[u8],
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE derived SET info_hash = ?2, info = ?3 WHERE file_id = ?1",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    /// The bencoded info dictionary with this infohash (hex), and its object's sha256: a
    /// published file's or its derived object's.
    pub fn torrent_by_info_hash(&self, info_hash: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT t.info, f.sha256 FROM torrents t JOIN files f ON f.id = t.file_id
                 WHERE t.info_hash = ?1 AND f.state = 'published'
                 UNION ALL
                 SELECT d.info, d.sha256 FROM derived d JOIN files f ON f.id = d.file_id
                 WHERE d.info_hash = ?1 AND f.state = 'published'
                 LIMIT 1",
            )?
            .query_row([info_hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }
}
