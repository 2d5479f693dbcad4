//! A mirror's first snapshot becomes its catalog. Copying a snapshot's rows into a WAL catalog
//! writes them three times (the unpacked replica, the WAL, the checkpoint); instead the
//! unpacked, key-checked snapshot gets the catalog's few local rows (settings, keys) carried
//! over and is put in the catalog's place.
//!
//! It never takes the live database's name: readers in other processes (the mount, the HTTP
//! pool) hold connections to that file, and SQLite names `-wal` and `-shm` after the database
//! file, so a new file under the old name would share them with the old one, and a checkpoint
//! or recovery of one could use the other's pages (SQLite's "How To Corrupt An SQLite Database
//! File": a database renamed while open and a new file created with the old name). The adopted
//! file keeps a name of its own beside the catalog (`catalog.N.sqlite`, rollback journal while
//! written, WAL when closed, so nothing stays beside it) and the catalog's path becomes a
//! symlink to it, swapped by one rename(2); SQLite resolves symlinks, so its WAL is named after
//! the file it reads. Readers see the path name another file (`Catalog::follow`) and reopen.
//! A crash before the rename leaves the old catalog (the stray file goes at the next adopt),
//! after it the new one, synced whole before the rename.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::replica::{check_keys, nothing_replicated, Resolver};
use super::{metarefs, schema, Catalog, CatalogError, PublishTx, Result};

impl Catalog {
    /// Puts the snapshot replica `src` (unpacked, on the catalog's filesystem) in this empty
    /// catalog's place, with the catalog's local rows and `settings`, as `apply_replica` of
    /// that snapshot would leave it; the metadata files it names by hash (deltas merged into
    /// it) get their bytes from `resolve`, as in `apply_replica`. False when this does not fit
    /// (the catalog replicated something, or holds rows of a table the snapshot fills, or
    /// another filesystem): the caller applies `src` the usual way (which ignores the local
    /// rows it may hold by then). On success `src` is gone and this handle reads the new one.
    pub fn adopt_replica<E: From<CatalogError>>(
        &mut self,
        src: &Path,
        settings: &[(&str, String)],
        resolve: Resolver<'_, E>,
    ) -> std::result::Result<bool, E> {
        if !nothing_replicated(&self.conn)? {
            return Ok(false);
        }
        // The disk takes the unpacked snapshot on a thread of its own while its keys are
        // checked (reads, from the page cache): the sync in `place` then finds it done.
        let unpacked = fs::File::open(src).map_err(CatalogError::from)?;
        std::thread::scope(|s| {
            s.spawn(move || unpacked.sync_data());
            let mut conn = open_src(src)?;
            tracing::debug!("adopt: snapshot opened");
            if !prepare(&mut conn, &self.path, settings, resolve)? {
                return Ok(false);
            }
            tracing::debug!("adopt: local rows carried");
            Ok(self.place(conn, src)?)
        })
    }

    /// Puts the prepared snapshot in this catalog's place (see the module's comment).
    fn place(&mut self, conn: Connection, src: &Path) -> Result<bool> {
        let dir = match self.path.parent() {
            Some(d) if d.as_os_str().is_empty() => Path::new("."),
            Some(d) => d,
            None => return Ok(false),
        };
        // Written as WAL: closing the only connection checkpoints and removes the WAL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        drop(conn);
        if sidecar(src, "-wal").exists() {
            return Err(CatalogError::Corrupt(format!(
                "{} kept a WAL",
                src.display()
            )));
        }
        tracing::debug!("adopt: closed as WAL");
        fs::File::open(src).and_then(|f| f.sync_all())?;
        tracing::debug!("adopt: synced");
        remove_strays(dir, &self.path);
        let name = format!("catalog.{}.sqlite", unique());
        let placed = dir.join(&name);
        match fs::rename(src, &placed) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let link = sidecar(&self.path, ".new");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&name, &link)?;
        crate::failpoint::hit("adopt-before-rename");
        fs::rename(&link, &self.path)?;
        fs::File::open(dir).and_then(|d| d.sync_all())?;
        tracing::debug!("adopt: in place");
        // The old file's WAL and index keep their names, which nothing opens any more: the
        // connections still on the old file hold them open, and a file put back under the
        // catalog's name (a restored backup) must not find them there.
        for side in ["-wal", "-shm"] {
            let _ = fs::remove_file(sidecar(&self.path, side));
        }
        crate::failpoint::hit("adopt-after-rename");
        let epoch = self.epoch;
        *self = Catalog::open(&self.path)?;
        self.epoch = epoch + 1;
        Ok(true)
    }
}

/// The snapshot opened to be written: rollback journal (one file to rename), our schema.
/// No syncs while it is made ready: nothing reads it before `place` syncs it whole, and a
/// crash before that leaves a stray file the next adopt removes. (Each commit's sync would
/// wait for the disk to take all of the unpacked snapshot, where the key check could run.)
fn open_src(src: &Path) -> Result<Connection> {
    let mut conn = Connection::open(src)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Makes the snapshot the catalog it will replace, in one transaction: its keys checked,
/// the catalog's local rows and `settings` in. False (nothing written) if it does not fit.
fn prepare<E: From<CatalogError>>(
    conn: &mut Connection,
    catalog: &Path,
    settings: &[(&str, String)],
    resolve: Resolver<'_, E>,
) -> std::result::Result<bool, E> {
    check_keys(conn, "main")?;
    tracing::debug!("adopt: keys checked");
    let path = catalog
        .to_str()
        .ok_or_else(|| CatalogError::Corrupt(format!("path {catalog:?} is not UTF-8")))?;
    conn.execute("ATTACH DATABASE ?1 AS l", [path])
        .map_err(CatalogError::from)?;
    let done = carry(conn, settings, resolve);
    let detached = conn.execute("DETACH DATABASE l", []);
    let done = done?;
    detached.map_err(CatalogError::from)?;
    Ok(done)
}

/// The local rows of the attached catalog `l` into the snapshot, and the metadata files it
/// names by hash resolved, in one transaction. False (nothing written) if they do not fit.
/// The rows: every table the snapshot
/// leaves empty whole, in the order they were created (parents first, for the keys);
/// `settings` merged (the snapshot's trackers win, then `settings`).
fn carry<E: From<CatalogError>>(
    conn: &mut Connection,
    settings: &[(&str, String)],
    resolve: Resolver<'_, E>,
) -> std::result::Result<bool, E> {
    let tx = PublishTx::wrap(conn.transaction().map_err(CatalogError::from)?);
    if !carry_rows(tx.sql(), settings)? {
        return Ok(false);
    }
    metarefs::resolve_in_place(&tx, resolve)?;
    tx.commit()?;
    Ok(true)
}

fn carry_rows(tx: &Connection, settings: &[(&str, String)]) -> Result<bool> {
    let tables = tx
        .prepare(
            "SELECT name FROM l.sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'settings'
             ORDER BY rowid",
        )?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<String>, _>>()?;
    for t in &tables {
        let (theirs, ours): (bool, bool) = tx.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM l.\"{t}\"), EXISTS (SELECT 1 FROM main.\"{t}\")"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        match (theirs, ours) {
            (false, _) => {}
            (true, true) => return Ok(false),
            (true, false) => {
                tx.execute(
                    &format!("INSERT INTO main.\"{t}\" SELECT * FROM l.\"{t}\""),
                    [],
                )?;
            }
        }
    }
    tx.execute_batch(
        "DELETE FROM main.settings WHERE key != 'trackers';
         INSERT INTO main.settings SELECT key, value FROM l.settings WHERE true
         ON CONFLICT (key) DO NOTHING;",
    )?;
    for (k, v) in settings {
        tx.execute(
            "INSERT INTO main.settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![k, v],
        )?;
    }
    Ok(true)
}

/// Removes what an adopt that crashed before its rename left beside the catalog: files named
/// like an adopted catalog that the catalog's path does not name.
fn remove_strays(dir: &Path, catalog: &Path) {
    let current = fs::read_link(catalog).ok();
    let Ok(list) = fs::read_dir(dir) else { return };
    for e in list.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        let middle = n
            .strip_prefix("catalog.")
            .and_then(|m| m.strip_suffix(".sqlite"))
            .unwrap_or("");
        let adopted = !middle.is_empty() && middle.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if adopted && current.as_deref() != Some(Path::new(n)) {
            for side in ["", "-wal", "-shm", "-journal"] {
                let _ = fs::remove_file(dir.join(format!("{n}{side}")));
            }
        }
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}{:09}.{}",
        t.as_secs(),
        t.subsec_nanos(),
        std::process::id()
    )
}
