//! Store objects found changed on disk since publication (`corrupt_objects`): the seeder
//! records each when a first read fails its piece's SHA-1 and refuses it from then on, across
//! restarts, until the object's bytes match its sha256 again (checked at start) and the row
//! goes. `repofs status` lists them.

use rusqlite::params;

use super::{Catalog, CorruptObject, Result};
use crate::time::now;

impl Catalog {
    /// Every object recorded corrupt, oldest first.
    pub fn corrupt_objects(&self) -> Result<Vec<CorruptObject>> {
        let mut stmt = self.conn.prepare(
            "SELECT sha256, piece, why, found_at FROM corrupt_objects ORDER BY found_at, sha256",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CorruptObject {
                    sha256: r.get(0)?,
                    piece: r.get::<_, i64>(1)? as u64,
                    why: r.get(2)?,
                    found_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records object `sha256` corrupt (the first report stands); false if it already was.
    pub fn record_corrupt(&mut self, sha256: &str, piece: u64, why: &str) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO corrupt_objects (sha256, piece, why, found_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![sha256, piece as i64, why, now()],
        )?;
        Ok(n > 0)
    }

    /// Forgets object `sha256` as corrupt (its bytes are right again); false if it was not.
    pub fn clear_corrupt(&mut self, sha256: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM corrupt_objects WHERE sha256 = ?1", [sha256])?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;

    #[test]
    fn a_corrupt_object_is_recorded_once_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        assert!(c.corrupt_objects().unwrap().is_empty());
        assert!(c.record_corrupt("ab", 1, "piece 1 does not match").unwrap());
        assert!(
            !c.record_corrupt("ab", 2, "again").unwrap(),
            "the first stands"
        );
        let rows = c.corrupt_objects().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].piece, rows[0].why.as_str()),
            (1, "piece 1 does not match")
        );
        // Survives a reopen (a restart).
        drop(c);
        let mut c = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        assert_eq!(c.corrupt_objects().unwrap().len(), 1);
        assert!(c.clear_corrupt("ab").unwrap());
        assert!(!c.clear_corrupt("ab").unwrap());
        assert!(c.corrupt_objects().unwrap().is_empty());
    }
}
