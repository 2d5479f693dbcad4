//! Upload verdicts (`uploads`) and the directive signatures already used (`used_signatures`):
//! the record of every accepted or rejected upload, what stops a replayed directive, and how a
//! restart recognizes the spool files it already published.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{Catalog, CatalogError, NewUpload, Result, UploadRow};
use crate::time::now;

impl Catalog {
    /// Verdicts, most recent first.
    pub fn uploads(&self, limit: usize) -> Result<Vec<UploadRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, state, reason, message, files, directory, uploader, quarantine, created_at
             FROM uploads ORDER BY id DESC LIMIT ?",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                let files: String = r.get(4)?;
                Ok(UploadRow {
                    id: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    message: r.get(3)?,
                    files: serde_json::from_str(&files).unwrap_or_default(),
                    directory: r.get(5)?,
                    uploader: r.get(6)?,
                    quarantine: r.get(7)?,
                    created_at: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many uploads got each verdict: `(state, reason, count)`, the reason None when
    /// accepted (`/metrics`).
    pub fn upload_counts(&self) -> Result<Vec<(String, Option<String>, u64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT state, reason, COUNT(*) FROM uploads GROUP BY state, reason ORDER BY 1, 2",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The accepted upload that used this directive signature, if any.
    pub fn signature_use(&self, digest: &[u8]) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT upload_id FROM used_signatures WHERE digest = ?",
                [digest],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The accepted upload whose spool files had exactly these identities (see
    /// `ingest::spool::SpoolFile::identity`): how a restart recognizes its own leftovers.
    pub fn accepted_upload_by_spool_ids(&self, ids: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM uploads WHERE spool_ids = ? AND state = 'accepted' ORDER BY id DESC LIMIT 1",
                [ids],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records a verdict on its own (rejections, and accepted uploads that changed nothing).
    pub fn record_upload(&mut self, u: &NewUpload) -> Result<i64> {
        let tx = self.conn.transaction()?;
        let id = insert_upload(&tx, u)?;
        tx.commit()?;
        Ok(id)
    }
}

pub(super) fn insert_upload(tx: &Transaction<'_>, u: &NewUpload) -> Result<i64> {
    let files =
        serde_json::to_string(&u.files).map_err(|e| CatalogError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO uploads (state, reason, message, files, directory, uploader, directive,
                              quarantine, spool_ids, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            if u.accepted { "accepted" } else { "rejected" },
            u.reason,
            u.message,
            files,
            u.directory,
            u.uploader,
            u.directive,
            u.quarantine,
            u.spool_ids,
            now()
        ],
    )?;
    Ok(tx.last_insert_rowid())
}
