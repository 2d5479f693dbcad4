//! Upload verdicts (`uploads`) and the directive signatures already used (`used_signatures`):
//! the record of every accepted or rejected upload, what stops a replayed directive, and how a
//! restart recognizes the spool files it already published.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{Catalog, CatalogError, NewUpload, Result, UploadRow};
use crate::time::now;

/// `(state, reason, count)` per verdict (`Catalog::upload_counts_after`).
pub type UploadCounts = Vec<(String, Option<String>, u64)>;

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

    /// How many uploads after id `after` got each verdict: `(state, reason, count)` (the
    /// reason None when accepted), and the highest id counted (`after` if none). A verdict
    /// row never changes its state and ids only grow (one writer at a time, no deletes), so
    /// `/metrics` adds each scrape's rows to the last and reads only what is new.
    pub fn upload_counts_after(&self, after: i64) -> Result<(i64, UploadCounts)> {
        let mut stmt = self.conn.prepare(
            "SELECT state, reason, COUNT(*), MAX(id) FROM uploads WHERE id > ?1
             GROUP BY state, reason",
        )?;
        let rows = stmt
            .query_map([after], |r| {
                let row = (r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64);
                Ok((row, r.get::<_, i64>(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let last = rows.iter().map(|(_, max)| *max).fold(after, i64::max);
        Ok((last, rows.into_iter().map(|(row, _)| row).collect()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reason: Option<&str>) -> NewUpload {
        NewUpload {
            accepted: reason.is_none(),
            reason: reason.map(String::from),
            message: String::new(),
            files: vec!["hello/x".into()],
            directory: None,
            uploader: None,
            directive: None,
            quarantine: None,
            spool_ids: None,
        }
    }

    #[test]
    fn verdicts_are_counted_after_an_id_and_the_last_id_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert_eq!(c.upload_counts_after(0).unwrap(), (0, vec![]));
        for r in [None, Some("bad-signature"), None] {
            c.record_upload(&verdict(r)).unwrap();
        }
        let (last, mut rows) = c.upload_counts_after(0).unwrap();
        rows.sort();
        assert_eq!(last, 3);
        assert_eq!(
            rows,
            vec![
                ("accepted".to_string(), None, 2),
                ("rejected".to_string(), Some("bad-signature".to_string()), 1)
            ]
        );
        // Only what came after.
        c.record_upload(&verdict(Some("too-large"))).unwrap();
        let (last, rows) = c.upload_counts_after(3).unwrap();
        assert_eq!(last, 4);
        assert_eq!(
            rows,
            vec![("rejected".to_string(), Some("too-large".to_string()), 1)]
        );
        assert_eq!(c.upload_counts_after(4).unwrap(), (4, vec![]));
    }
}
