//! Local uids trusted to publish a lone unsigned file through the mount (`trusted_uids`):
//! the grants `repofs trust` makes, read by repofsd at each decision beside the config's
//! `[[trusted]]` blocks. Directories are stored normalized ("" = everywhere).

use rusqlite::params;

use super::{Catalog, Result, TrustRow};
use crate::time::now;

impl Catalog {
    /// Every grant, by uid then directory.
    pub fn trusted_uids(&self) -> Result<Vec<TrustRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT uid, directory, added_at FROM trusted_uids ORDER BY uid, directory")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TrustRow {
                    uid: r.get(0)?,
                    directory: r.get(1)?,
                    added_at: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Whether a grant covers `uid` publishing to `dir`.
    pub fn is_uid_trusted(&self, uid: u32, dir: &str) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT directory FROM trusted_uids WHERE uid = ?")?;
        let granted = stmt
            .query_map([uid], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(granted.iter().any(|g| crate::paths::is_within(dir, g)))
    }

    /// Trusts `uid` for `directory` and below; false if it already was.
    pub fn trust_uid(&mut self, uid: u32, directory: &str) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO trusted_uids (uid, directory, added_at) VALUES (?1, ?2, ?3)",
            params![uid, directory, now()],
        )?;
        Ok(n > 0)
    }

    /// Withdraws the grant of `uid` for `directory`; false if there was none.
    pub fn untrust_uid(&mut self, uid: u32, directory: &str) -> Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM trusted_uids WHERE uid = ?1 AND directory = ?2",
            params![uid, directory],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;

    #[test]
    fn grants_cover_their_directory_and_below_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        assert!(!c.is_uid_trusted(1000, "hello").unwrap());
        assert!(c.trust_uid(1000, "hello").unwrap());
        assert!(!c.trust_uid(1000, "hello").unwrap(), "granted twice");
        assert!(c.is_uid_trusted(1000, "hello").unwrap());
        assert!(c.is_uid_trusted(1000, "hello/sub").unwrap());
        assert!(!c.is_uid_trusted(1000, "hellothere").unwrap());
        assert!(!c.is_uid_trusted(1001, "hello").unwrap());
        assert!(c.trust_uid(1001, "").unwrap());
        assert!(c.is_uid_trusted(1001, "anything/at/all").unwrap());
        let rows: Vec<_> = c
            .trusted_uids()
            .unwrap()
            .into_iter()
            .map(|r| (r.uid, r.directory))
            .collect();
        assert_eq!(rows, [(1000, "hello".into()), (1001, String::new())]);
        assert!(c.untrust_uid(1000, "hello").unwrap());
        assert!(!c.untrust_uid(1000, "hello").unwrap());
        assert!(!c.is_uid_trusted(1000, "hello").unwrap());
    }
}
