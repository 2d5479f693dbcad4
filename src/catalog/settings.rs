//! The `settings` table: what the service decided at start that readers must agree with (the
//! trackers), and the mirror's sync state. Writes skip unchanged values, so that a commit
//! writing nothing leaves `data_version` alone and the mount does not reload for it.

use rusqlite::{params, OptionalExtension};

use super::{Catalog, Result};

impl Catalog {
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    /// Written by the single writer at start-up only.
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value != excluded.value",
            [key, value],
        )?;
        Ok(())
    }
    /// Removes a setting (a no-op, writing nothing, if it is absent).
    pub fn remove_setting(&mut self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM settings WHERE key = ?", [key])?;
        Ok(())
    }

    /// Several settings in one transaction (the mirror's sync state). Values that did not
    /// change are not written: a commit that writes nothing leaves `data_version` alone, so
    /// the mount does not reload its views for it.
    pub fn set_settings(&mut self, settings: &[(&str, String)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (k, v) in settings {
            tx.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 WHERE value != excluded.value",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_settings_do_not_change_the_data_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let mut writer = Catalog::open(&path).unwrap();
        let reader = Catalog::open(&path).unwrap();
        writer.set_settings(&[("a", "1".into())]).unwrap();
        let v = reader.data_version().unwrap();
        writer.set_settings(&[("a", "1".into())]).unwrap();
        assert_eq!(reader.data_version().unwrap(), v);
        writer.set_settings(&[("a", "2".into())]).unwrap();
        assert_ne!(reader.data_version().unwrap(), v);
    }
}
