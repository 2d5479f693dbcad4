//! Generations and replicas: the rows of the signed index (`fetch::index`). A primary
//! materializes each generation's changes as a delta replica (and now and then a snapshot),
//! each a self-contained SQLite file with this schema; a mirror applies them in one
//! transaction. Replicas carry immutable rows only, except file state and symlinks, which
//! `apply_replica` treats apart.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::metarefs::MetaRef;
use super::schema::VERSION;
use super::{Catalog, CatalogError, PublishTx, Result};
use crate::time::now;

/// What a replica object (delta or snapshot of the published view) says about itself: the
/// generations it covers (`from` exclusive, `to` inclusive), the delta before it, and whether
/// it is a full snapshot (everything published at `to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaMeta {
    pub from: i64,
    pub to: i64,
    pub prev: Option<String>,
    pub snapshot: bool,
}

/// Tables a replica carries, parents first (foreign keys), all immutable once written except
/// `files.state`/`archived_at` and `symlinks`, which `apply_replica` treats apart.
const REPLICA_IMMUTABLE: &[(&str, &str)] = &[
    ("packages", "file_id"),
    ("entries", "file_id"),
    ("seek_points", "file_id"),
    ("torrents", "file_id"),
    ("derived", "file_id"),
    ("frames", "file_id"),
    ("repo_sigs", "file_id"),
];

impl Catalog {
    /// The newest generation (0 before the first logged change).
    pub fn generation(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(generation), 0) FROM generations",
            [],
            |r| r.get(0),
        )?)
    }

    /// When the newest generation was made (unix seconds).
    pub fn generation_time(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT created_at FROM generations ORDER BY generation DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    /// Generations whose delta object is not made yet, oldest first.
    pub fn generations_without_delta(&self) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare(
            "SELECT generation FROM generations WHERE delta IS NULL ORDER BY generation",
        )?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        Ok(rows)
    }

    /// The newest generation whose delta is made, with that delta's hash.
    pub fn head_delta(&self) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT generation, delta FROM generations WHERE delta IS NOT NULL
                 ORDER BY generation DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The delta object of generation `g`, if made.
    pub fn delta_of(&self, g: i64) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT delta FROM generations WHERE generation = ?",
                [g],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// The delta objects of the generations after `g`, oldest first, up to the first not made
    /// yet (a root names only made ones); None when there are more than `limit` (such a
    /// mirror starts again from the snapshot).
    pub fn deltas_after(&self, g: i64, limit: usize) -> Result<Option<Vec<String>>> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT delta FROM generations WHERE generation > ?1 ORDER BY generation LIMIT ?2",
            )?
            .query_map(params![g, limit as i64 + 1], |r| {
                r.get::<_, Option<String>>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if rows.len() > limit {
            return Ok(None);
        }
        Ok(Some(rows.into_iter().map_while(|d| d).collect()))
    }

    pub fn set_delta(&mut self, g: i64, sha256: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE generations SET delta = ?2 WHERE generation = ?1",
            params![g, sha256],
        )?;
        Ok(())
    }

    /// The newest snapshot (generation, object hash). Generation 0 has no row of its own in
    /// `generations`, so its snapshot is kept in `settings`.
    pub fn latest_snapshot(&self) -> Result<Option<(i64, String)>> {
        let logged: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT generation, snapshot FROM generations WHERE snapshot IS NOT NULL
                 ORDER BY generation DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match logged {
            Some(s) => Ok(Some(s)),
            None => Ok(self.setting("index_snapshot_0")?.map(|h| (0, h))),
        }
    }

    /// Every snapshot ever made, newest first (generation, object hash).
    pub fn snapshots(&self) -> Result<Vec<(i64, String)>> {
        let mut rows = self
            .conn
            .prepare(
                "SELECT generation, snapshot FROM generations WHERE snapshot IS NOT NULL
                 ORDER BY generation DESC",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<(i64, String)>, _>>()?;
        if let Some(h) = self.setting("index_snapshot_0")? {
            rows.push((0, h));
        }
        Ok(rows)
    }

    pub fn set_snapshot(&mut self, g: i64, sha256: &str) -> Result<()> {
        if g == 0 {
            return self.set_setting("index_snapshot_0", sha256);
        }
        self.conn.execute(
            "UPDATE generations SET snapshot = ?2 WHERE generation = ?1",
            params![g, sha256],
        )?;
        Ok(())
    }

    /// Writes a replica into `dest` (a new database with this schema): for a delta, the full
    /// rows of the files and symlinks changed in generations `from < g <= to`; for a snapshot,
    /// everything published now (`to` must be the current generation). Uploads are carried
    /// only as far as the file rows need them (no directives, messages or spool identities).
    pub fn export_replica(&self, dest: &Path, meta: &ReplicaMeta) -> Result<()> {
        if dest.exists() {
            return Err(CatalogError::Corrupt(format!(
                "replica {} exists already",
                dest.display()
            )));
        }
        drop(Catalog::open(dest)?);
        // Plain rollback journal: an attached WAL database is not atomic with `main`, and the
        // object must be one self-contained file anyway.
        Connection::open(dest)?.pragma_update(None, "journal_mode", "DELETE")?;
        let dest_str = dest
            .to_str()
            .ok_or_else(|| CatalogError::Corrupt(format!("path {dest:?} is not UTF-8")))?;
        self.conn.execute("ATTACH DATABASE ?1 AS r", [dest_str])?;
        let done = self.export_attached(meta);
        let detached = self.conn.execute("DETACH DATABASE r", []);
        done?;
        detached?;
        // One self-contained file: no WAL beside it, no free pages.
        let c = Connection::open(dest)?;
        c.pragma_update(None, "journal_mode", "DELETE")?;
        c.execute_batch("VACUUM")?;
        Ok(())
    }

    fn export_attached(&self, meta: &ReplicaMeta) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS sel (id INTEGER PRIMARY KEY);
             DELETE FROM temp.sel;",
        )?;
        if meta.snapshot {
            tx.execute(
                "INSERT INTO temp.sel SELECT id FROM main.files WHERE state = 'published'",
                [],
            )?;
            // Its generation's row (not its changes): the view's time comes from it.
            tx.execute(
                "INSERT INTO r.generations (generation, created_at)
                 SELECT generation, created_at FROM main.generations WHERE generation = ?1",
                [meta.to],
            )?;
        } else {
            tx.execute(
                "INSERT INTO r.generations (generation, created_at)
                 SELECT generation, created_at FROM main.generations
                 WHERE generation > ?1 AND generation <= ?2",
                params![meta.from, meta.to],
            )?;
            tx.execute(
                "INSERT INTO r.changes SELECT * FROM main.changes
                 WHERE generation > ?1 AND generation <= ?2",
                params![meta.from, meta.to],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO temp.sel SELECT file_id FROM r.changes
                 WHERE file_id IS NOT NULL",
                [],
            )?;
        }
        let symlinks = if meta.snapshot {
            "SELECT * FROM main.symlinks"
        } else {
            "SELECT s.* FROM main.symlinks s WHERE EXISTS (SELECT 1 FROM r.changes c
                 WHERE c.kind = 'symlink' AND c.directory = s.directory AND c.name = s.name)"
        };
        tx.execute(
            &format!(
                "INSERT INTO r.uploads (id, state, message, files, directory, uploader, created_at)
                 SELECT id, state, '', '[]', directory, uploader, created_at FROM main.uploads
                 WHERE id IN (SELECT upload_id FROM main.files WHERE id IN (SELECT id FROM temp.sel)
                              UNION SELECT upload_id FROM ({symlinks}))"
            ),
            [],
        )?;
        tx.execute(
            "INSERT INTO r.files SELECT * FROM main.files WHERE id IN (SELECT id FROM temp.sel)",
            [],
        )?;
        for (table, key) in REPLICA_IMMUTABLE {
            tx.execute(
                &format!(
                    "INSERT INTO r.{table} SELECT * FROM main.{table}
                     WHERE {key} IN (SELECT id FROM temp.sel)"
                ),
                [],
            )?;
        }
        tx.execute(&format!("INSERT INTO r.symlinks {symlinks}"), [])?;
        // The repository metadata of every directory whose files changed, as it is now (like
        // the file rows): `apply_replica` replaces those directories' metadata whole.
        super::metarefs::export(&tx, meta.snapshot)?;
        let mut put = tx.prepare("INSERT INTO r.settings (key, value) VALUES (?1, ?2)")?;
        put.execute(["replica_from", &meta.from.to_string()])?;
        put.execute(["replica_to", &meta.to.to_string()])?;
        put.execute(["replica_snapshot", if meta.snapshot { "1" } else { "0" }])?;
        if let Some(prev) = &meta.prev {
            put.execute(["replica_prev", prev])?;
        }
        drop(put);
        // The trackers the primary's .torrent files name: a mirror's must name the same.
        tx.execute(
            "INSERT INTO r.settings SELECT key, value FROM main.settings WHERE key = 'trackers'",
            [],
        )?;
        tx.execute_batch("DELETE FROM temp.sel")?;
        tx.commit()?;
        Ok(())
    }

    /// What a replica file says about itself; refuses one made by another schema version
    /// (its rows would not line up with ours).
    pub fn replica_meta(path: &Path) -> Result<ReplicaMeta> {
        let c = open_replica(path)?;
        let get = |k: &str| -> Result<Option<String>> {
            Ok(
                c.query_row("SELECT value FROM settings WHERE key = ?", [k], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        };
        let num = |k: &str| -> Result<i64> {
            get(k)?
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| CatalogError::Corrupt(format!("replica without {k}")))
        };
        Ok(ReplicaMeta {
            from: num("replica_from")?,
            to: num("replica_to")?,
            prev: get("replica_prev")?,
            snapshot: get("replica_snapshot")?.as_deref() == Some("1"),
        })
    }

    /// Applies a replica to this catalog in ONE transaction, with `settings` written in the
    /// same one: readers (the mount) see either none of it or all of it. A snapshot also takes
    /// offline what it does not list. Rows already present are kept (they are immutable); a
    /// file row that would clash with a live one is an error, never silently dropped. The
    /// metadata files the replica names by hash get their bytes from `resolve`, called inside
    /// the transaction once the rows are in (it renders them from those rows, or fetches
    /// them); bytes whose sha256 is not the one named fail the whole apply.
    pub fn apply_replica<E: From<CatalogError>>(
        &mut self,
        src: &Path,
        snapshot: bool,
        settings: &[(&str, String)],
        resolve: Resolver<'_, E>,
    ) -> std::result::Result<(), E> {
        self.attached(src, |c| c.apply_attached(snapshot, settings, Some(resolve)))
    }

    /// Adds a replica to a staging replica (several deltas become one, applied in one
    /// transaction): like `apply_replica`, but what it names by hash stays named by hash.
    pub fn merge_replica(&mut self, src: &Path, snapshot: bool) -> Result<()> {
        self.attached(src, |c| {
            c.apply_attached::<CatalogError>(snapshot, &[], None)
        })
    }

    fn attached<E: From<CatalogError>>(
        &mut self,
        src: &Path,
        f: impl FnOnce(&mut Catalog) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        drop(open_replica(src)?);
        let src_str = src
            .to_str()
            .ok_or_else(|| CatalogError::Corrupt(format!("path {src:?} is not UTF-8")))?;
        self.conn
            .execute("ATTACH DATABASE ?1 AS r", [src_str])
            .map_err(CatalogError::from)?;
        let done = f(self);
        let detached = self.conn.execute("DETACH DATABASE r", []);
        done?;
        detached.map_err(CatalogError::from)?;
        Ok(())
    }

    fn apply_attached<E: From<CatalogError>>(
        &mut self,
        snapshot: bool,
        settings: &[(&str, String)],
        resolve: Option<Resolver<'_, E>>,
    ) -> std::result::Result<(), E> {
        // A snapshot onto a catalog that replicated nothing yet (a mirror starting from empty)
        // is copied table for table; SQLite's transfer of whole records into an empty table is
        // refused while foreign keys are enforced, which can only be switched outside a
        // transaction. The replica's own keys are checked instead. Its commit is not waited
        // on to reach the disk (synchronous NORMAL: the checkpoint right after syncs it): a
        // crash before then leaves a catalog that never held it, and the sync starts again.
        let bulk = snapshot && nothing_replicated(&self.conn)?;
        let pragmas = |c: &Connection, on: bool| {
            c.execute_batch(if on {
                "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;"
            } else {
                "PRAGMA foreign_keys = OFF; PRAGMA synchronous = NORMAL;"
            })
            .map_err(CatalogError::from)
        };
        if bulk {
            pragmas(&self.conn, false)?;
        }
        let done = self.apply_tx(snapshot, bulk, settings, resolve);
        if bulk {
            pragmas(&self.conn, true)?;
        }
        done
    }

    fn apply_tx<E: From<CatalogError>>(
        &mut self,
        snapshot: bool,
        bulk: bool,
        settings: &[(&str, String)],
        resolve: Option<Resolver<'_, E>>,
    ) -> std::result::Result<(), E> {
        let tx = PublishTx::wrap(
            self.conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(CatalogError::from)?,
        );
        if bulk {
            bulk_rows(tx.sql())?;
        } else {
            apply_rows(tx.sql(), snapshot)?;
        }
        super::metarefs::apply(&tx, snapshot, resolve)?;
        apply_settings(tx.sql(), settings)?;
        tx.commit()?;
        Ok(())
    }
}

/// Whether this catalog holds no replicated rows: no generation, file or upload.
pub(super) fn nothing_replicated(c: &Connection) -> Result<bool> {
    Ok(c.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM main.generations)
            AND NOT EXISTS (SELECT 1 FROM main.files)
            AND NOT EXISTS (SELECT 1 FROM main.uploads)",
        [],
        |r| r.get(0),
    )?)
}

/// Refuses a snapshot (database `schema` of `conn`) with a row naming one it does not hold,
/// as enforced foreign keys would have on insert.
pub(super) fn check_keys(conn: &Connection, schema: &str) -> Result<()> {
    let bad: Option<(String, String)> = conn
        .query_row(&format!("PRAGMA {schema}.foreign_key_check"), [], |r| {
            Ok((r.get(0)?, r.get(2)?))
        })
        .optional()?;
    match bad {
        Some((table, parent)) => Err(CatalogError::Corrupt(format!(
            "snapshot: a row of {table} names a row of {parent} the snapshot does not hold"
        ))),
        None => Ok(()),
    }
}

/// `apply_rows` of a snapshot onto a catalog that holds none of its rows (`nothing_replicated`,
/// foreign keys off), as `INSERT INTO t SELECT * FROM r.t`: SQLite then copies records and
/// index entries as they are stored, in order, instead of inserting row by row. At 100,000
/// packages (3.5M entries) this is what a mirror's sync from empty spends its time on.
fn bulk_rows(tx: &Connection) -> Result<()> {
    // What enforcing the keys on insert would have refused.
    check_keys(tx, "r")?;
    tx.execute_batch(
        "INSERT INTO main.generations (generation, created_at)
             SELECT generation, created_at FROM r.generations;
         INSERT INTO main.changes SELECT * FROM r.changes;
         INSERT INTO main.uploads SELECT * FROM r.uploads;
         INSERT INTO main.files SELECT * FROM r.files;",
    )?;
    for (table, _) in REPLICA_IMMUTABLE {
        tx.execute(
            &format!("INSERT INTO main.{table} SELECT * FROM r.{table}"),
            [],
        )?;
    }
    tx.execute("INSERT INTO main.symlinks SELECT * FROM r.symlinks", [])?;
    Ok(())
}

/// How `apply_replica` gets the bytes of the metadata files a replica names by hash: called
/// with the transaction (the replica's rows already in) and those files, it returns their
/// bytes in the same order.
pub type Resolver<'r, E> =
    &'r mut dyn FnMut(&PublishTx<'_>, &[MetaRef]) -> std::result::Result<Vec<Vec<u8>>, E>;

/// Every row of the attached replica `r` but the repository metadata and the settings.
fn apply_rows(tx: &Connection, snapshot: bool) -> Result<()> {
    if snapshot {
        tx.execute(
            "UPDATE main.files SET state = 'archived', archived_at = ?1
             WHERE state = 'published'
               AND id NOT IN (SELECT id FROM r.files WHERE state = 'published')",
            [now()],
        )?;
        tx.execute(
            "DELETE FROM main.symlinks WHERE NOT EXISTS (SELECT 1 FROM r.symlinks s
                 WHERE s.directory = symlinks.directory AND s.name = symlinks.name)",
            [],
        )?;
    }
    tx.execute_batch(
        "INSERT OR IGNORE INTO main.generations (generation, created_at)
             SELECT generation, created_at FROM r.generations;
         INSERT INTO main.changes SELECT * FROM r.changes;
         INSERT OR IGNORE INTO main.uploads SELECT * FROM r.uploads;
         UPDATE main.files SET state = 'archived',
                archived_at = (SELECT x.archived_at FROM r.files x WHERE x.id = files.id)
         WHERE state = 'published'
           AND id IN (SELECT id FROM r.files WHERE state = 'archived');
         INSERT INTO main.files SELECT * FROM r.files
         WHERE id NOT IN (SELECT id FROM main.files);",
    )?;
    for (table, _) in REPLICA_IMMUTABLE {
        tx.execute(
            &format!("INSERT OR IGNORE INTO main.{table} SELECT * FROM r.{table}"),
            [],
        )?;
    }
    tx.execute_batch(
        "DELETE FROM main.symlinks WHERE EXISTS (SELECT 1 FROM r.changes c
             WHERE c.kind = 'symlink' AND c.directory = symlinks.directory
               AND c.name = symlinks.name);
         INSERT OR REPLACE INTO main.symlinks SELECT * FROM r.symlinks;",
    )?;
    Ok(())
}

/// The replica's `trackers`, then `settings`.
fn apply_settings(tx: &Connection, settings: &[(&str, String)]) -> Result<()> {
    tx.execute_batch(
        "INSERT INTO main.settings SELECT key, value FROM r.settings
         WHERE key = 'trackers' AND true
         ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
    )?;
    for (k, v) in settings {
        tx.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![k, v],
        )?;
    }
    Ok(())
}

/// The oldest schema version whose replicas this code applies: every table a replica carries
/// has had the same columns since (v9 added a table replicas do not carry; v10 the
/// `dist_meta_refs` a replica of v8 or v9 lacks, which then carries its metadata whole), so
/// the deltas an upstream made before an upgrade still apply after it.
const REPLICA_SINCE: i64 = 8;

/// Opens a replica file read-only, refusing one made by a schema version whose rows would not
/// line up with ours (they are copied column for column).
fn open_replica(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if !(REPLICA_SINCE..=VERSION).contains(&version) {
        return Err(CatalogError::Corrupt(format!(
            "replica has schema version {version}, this repofs reads {REPLICA_SINCE} to {VERSION}"
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests;
