//! Reading inside a package: its entry list, and the seek points (gzip) and derived frames
//! (zstd twins) that let one member be read without inflating the payload from the start.
//! Seek-point windows are stored deflated; both directions of that encoding live here.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{entry_row, Catalog, CatalogError, Derived, Frame, Result};
use crate::archive::gzindex::SeekPoint;
use crate::archive::Entry;

impl Catalog {
    /// A package's entry list, in archive order.
    pub fn entries(&self, file_id: i64) -> Result<Vec<Entry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, kind, mode, size, mtime, uid, gid, link_target, data_offset, sha256,
                    layout
             FROM entries WHERE file_id = ? ORDER BY data_offset, path",
        )?;
        let rows = stmt
            .query_map([file_id], entry_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One entry of a package by path: a primary-key lookup, so serving one path never
    /// loads the whole list.
    pub fn entry(&self, file_id: i64, path: &str) -> Result<Option<Entry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, kind, mode, size, mtime, uid, gid, link_target, data_offset, sha256,
                    layout
             FROM entries WHERE file_id = ? AND path = ?",
        )?;
        Ok(stmt
            .query_row(params![file_id, path], entry_row)
            .optional()?)
    }

    /// Whether any entry lies below directory `dir` ("" is the package root): how a
    /// directory the archive implies but does not list is recognised, by a range query on
    /// the primary key (`'0'` is the byte after `'/'`).
    pub fn has_entries_below(&self, file_id: i64, dir: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM entries WHERE file_id = ?1 AND path > ?2 AND path < ?3 LIMIT 1",
        )?;
        let (lo, hi) = if dir.is_empty() {
            (String::new(), "\u{10ffff}".to_string())
        } else {
            (format!("{dir}/"), format!("{dir}0"))
        };
        Ok(stmt
            .query_row(params![file_id, lo, hi], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The span of a gzip payload holding uncompressed `offset`: from the last seek point at
    /// or before it (0 if none) to the next one (None: to the end). Two primary-key range
    /// queries, so a first read does not load every point of a large package.
    pub fn seek_span(&self, file_id: i64, offset: u64) -> Result<(u64, Option<u64>)> {
        let start: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT uncompressed_offset FROM seek_points WHERE file_id = ?1
                 AND uncompressed_offset <= ?2 ORDER BY uncompressed_offset DESC LIMIT 1",
            )?
            .query_row(params![file_id, offset as i64], |r| r.get(0))
            .optional()?;
        let end: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT uncompressed_offset FROM seek_points WHERE file_id = ?1
                 AND uncompressed_offset > ?2 ORDER BY uncompressed_offset LIMIT 1",
            )?
            .query_row(params![file_id, offset as i64], |r| r.get(0))
            .optional()?;
        Ok((start.map_or(0, |s| s as u64), end.map(|e| e as u64)))
    }

    /// One seek point, window included, by its uncompressed offset.
    pub fn seek_point(&self, file_id: i64, out: u64) -> Result<Option<SeekPoint>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT compressed_offset, bits, window FROM seek_points
             WHERE file_id = ? AND uncompressed_offset = ?",
        )?;
        let row = stmt
            .query_row(params![file_id, out as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u8,
                    r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                ))
            })
            .optional()?;
        row.map(|(inp, bits, packed)| seek_point(file_id, out, inp, bits, &packed))
            .transpose()
    }

    /// The seekable twins of published packages: twin sha256 → the package's file id.
    pub fn published_twins(&self) -> Result<HashMap<String, i64>> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT d.sha256, d.file_id FROM derived d
                 JOIN files f ON f.id = d.file_id WHERE f.state = 'published'",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(rows)
    }

    /// The seekable form of a package's payload, if the publication made one.
    pub fn derived(&self, file_id: i64) -> Result<Option<Derived>> {
        let sha256: Option<String> = self
            .conn
            .prepare_cached("SELECT sha256 FROM derived WHERE file_id = ?")?
            .query_row([file_id], |r| r.get(0))
            .optional()?;
        let Some(sha256) = sha256 else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT uncompressed_offset, uncompressed_size, compressed_offset, compressed_size
             FROM frames WHERE file_id = ? ORDER BY uncompressed_offset",
        )?;
        let frames = stmt
            .query_map([file_id], |r| {
                Ok(Frame {
                    out: r.get::<_, i64>(0)? as u64,
                    out_len: r.get::<_, i64>(1)? as u64,
                    inp: r.get::<_, i64>(2)? as u64,
                    in_len: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Derived { sha256, frames }))
    }

    /// Seek points of a gzip payload, by uncompressed offset (windows stored deflated).
    pub fn seek_points(&self, file_id: i64) -> Result<Vec<SeekPoint>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT uncompressed_offset, compressed_offset, bits, window FROM seek_points
             WHERE file_id = ? ORDER BY uncompressed_offset",
        )?;
        let rows = stmt
            .query_map([file_id], |r| {
                let window: Vec<u8> = r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default();
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u8,
                    window,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(out, inp, bits, packed)| seek_point(file_id, out, inp, bits, &packed))
            .collect()
    }
}

/// Windows are 32 KiB of mostly text: deflated they take a fraction of that in the database.
pub(super) fn deflate(window: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(window);
    e.finish().unwrap_or_default()
}

/// A seek point as stored: its window is kept deflated.
fn seek_point(file_id: i64, out: u64, inp: u64, bits: u8, packed: &[u8]) -> Result<SeekPoint> {
    Ok(SeekPoint {
        out,
        inp,
        bits,
        window: inflate(packed).map_err(|e| {
            CatalogError::Corrupt(format!("seek point window of file {file_id}: {e}"))
        })?,
    })
}

fn inflate(packed: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(32 << 10);
    flate2::read::DeflateDecoder::new(packed)
        .take(64 << 10)
        .read_to_end(&mut out)?;
    Ok(out)
}
