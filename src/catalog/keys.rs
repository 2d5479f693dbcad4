//! Uploader keys and the directories each may publish to (`keys`, `key_dirs`): what the
//! upload verifier trusts. The certificates are stored as given; `crate::keys` parses them.

use rusqlite::{params, OptionalExtension};

use super::{Catalog, KeyRow, Result};
use crate::time::now;

impl Catalog {
    pub fn keys(&self) -> Result<Vec<KeyRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT fingerprint, cert, userid, added_at FROM keys ORDER BY fingerprint")?;
        let mut keys = stmt
            .query_map([], |r| {
                Ok(KeyRow {
                    fingerprint: r.get(0)?,
                    cert: r.get(1)?,
                    userid: r.get(2)?,
                    added_at: r.get(3)?,
                    directories: Vec::new(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut dirs = self
            .conn
            .prepare("SELECT directory FROM key_dirs WHERE fingerprint = ? ORDER BY directory")?;
        for k in &mut keys {
            k.directories = dirs
                .query_map([&k.fingerprint], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
        }
        Ok(keys)
    }

    /// Inserts or replaces a cert (the caller has merged it with any stored one) and grants it
    /// `directory`, in one transaction.
    pub fn put_key(
        &mut self,
        fpr: &str,
        cert: &[u8],
        userid: Option<&str>,
        directory: &str,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO keys (fingerprint, cert, userid, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(fingerprint) DO UPDATE SET cert = excluded.cert, userid = excluded.userid",
            params![fpr, cert, userid, now()],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO key_dirs (fingerprint, directory) VALUES (?1, ?2)",
            params![fpr, directory],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn key_cert(&self, fpr: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT cert FROM keys WHERE fingerprint = ?", [fpr], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn remove_key(&mut self, fpr: &str) -> Result<bool> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM key_dirs WHERE fingerprint = ?", [fpr])?;
        let n = tx.execute("DELETE FROM keys WHERE fingerprint = ?", [fpr])?;
        tx.commit()?;
        Ok(n > 0)
    }
}
