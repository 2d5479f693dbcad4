//! The repository metadata (`dist_meta`) in replicas. A snapshot carries every file whole. A
//! delta carries a touched directory's small files whole (Release, InRelease, the
//! signatures: only the primary can make them) and names the large ones by hash
//! (`dist_meta_refs`: Packages, Packages.xz, by-hash copies, DIR.db, DIR.files), which a
//! mirror makes again from the rows it replicates (`apply_replica`'s resolver) and keeps
//! only if the hash matches. So a delta costs in proportion to the change, not the directory.

use rusqlite::{params, Connection};
use sha2::Digest as _;

use super::replica::Resolver;
use super::{CatalogError, PublishTx, Result};

/// Files of at most this many bytes travel whole in a delta: the signed ones are a few
/// hundred bytes to a few KiB, and a small directory's indexes cost no more whole than named.
pub const INLINE_MAX: usize = 16 << 10;

/// A metadata file a replica names by hash instead of carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRef {
    pub directory: String,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// The generation that made it, and that generation's time (pacman's tar mtimes).
    pub made: i64,
    pub time: i64,
}

/// Copies into the attached replica `r` the metadata of the directories of the files in
/// `temp.sel`: whole for a snapshot, else large files by hash.
pub(super) fn export(tx: &Connection, snapshot: bool) -> Result<()> {
    let mut rows = tx.prepare(
        "SELECT m.directory, m.name, m.data, m.made,
                COALESCE((SELECT created_at FROM main.generations g
                          WHERE g.generation = m.made), 0)
         FROM main.dist_meta m
         WHERE m.directory IN (SELECT directory FROM main.files
                               WHERE id IN (SELECT id FROM temp.sel))",
    )?;
    let mut whole = tx
        .prepare("INSERT INTO r.dist_meta (directory, name, data, made) VALUES (?1, ?2, ?3, ?4)")?;
    let mut named = tx.prepare(
        "INSERT INTO r.dist_meta_refs (directory, name, sha256, size, made, time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut it = rows.query([])?;
    while let Some(r) = it.next()? {
        let (dir, name, made, time): (String, String, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?);
        let data: Vec<u8> = r.get(2)?;
        if snapshot || data.len() <= INLINE_MAX {
            whole.execute(params![dir, name, data, made])?;
        } else {
            let sha = hex::encode(sha2::Sha256::digest(&data));
            named.execute(params![dir, name, sha, data.len() as i64, made, time])?;
        }
    }
    Ok(())
}

/// Replaces the metadata of the directories the attached replica `r` speaks of (all of
/// them for a snapshot) with its rows: those it names by hash get the bytes `resolve`
/// returns (checked here against the hash), or stay named (no resolver: a staging replica).
pub(super) fn apply<E: From<CatalogError>>(
    tx: &PublishTx<'_>,
    snapshot: bool,
    resolve: Option<Resolver<'_, E>>,
) -> std::result::Result<(), E> {
    let sql = tx.sql();
    let refs = refs(sql)?;
    // Before the directory's rows are replaced: the resolver reuses bytes held there.
    let resolved = match resolve {
        Some(f) if !refs.is_empty() => {
            let got = f(tx, &refs)?;
            check(&refs, &got)?;
            Some(got)
        }
        _ => None,
    };
    replace(sql, snapshot)?;
    if let Some(got) = resolved {
        put(sql, &refs, got)?;
    } else if !refs.is_empty() {
        sql.execute(
            "INSERT OR REPLACE INTO main.dist_meta_refs SELECT * FROM r.dist_meta_refs",
            [],
        )
        .map_err(CatalogError::from)?;
    }
    Ok(())
}

/// A replica that is itself becoming the catalog (`adopt`): the files it names by hash get
/// the bytes `resolve` returns (checked against the hash), and are named no more.
pub(super) fn resolve_in_place<E: From<CatalogError>>(
    tx: &PublishTx<'_>,
    resolve: Resolver<'_, E>,
) -> std::result::Result<(), E> {
    let sql = tx.sql();
    let refs = refs_in(sql, "main")?;
    if refs.is_empty() {
        return Ok(());
    }
    let got = resolve(tx, &refs)?;
    check(&refs, &got)?;
    put(sql, &refs, got)?;
    sql.execute("DELETE FROM main.dist_meta_refs", [])
        .map_err(CatalogError::from)?;
    Ok(())
}

/// The checked bytes `got` of the files `refs` name, into the catalog's metadata.
fn put(sql: &Connection, refs: &[MetaRef], got: Vec<Vec<u8>>) -> Result<()> {
    let mut put = sql.prepare(
        "INSERT OR REPLACE INTO main.dist_meta (directory, name, data, made)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (m, data) in refs.iter().zip(got) {
        put.execute(params![m.directory, m.name, data, m.made])?;
    }
    Ok(())
}

/// What `r` names by hash (nothing in a replica older than the table).
fn refs(sql: &Connection) -> Result<Vec<MetaRef>> {
    refs_in(sql, "r")
}

/// What the database `schema` of the connection names by hash.
fn refs_in(sql: &Connection, schema: &str) -> Result<Vec<MetaRef>> {
    let has: bool = sql.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.sqlite_master WHERE name = 'dist_meta_refs')"
        ),
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(Vec::new());
    }
    let mut stmt = sql.prepare(&format!(
        "SELECT directory, name, sha256, size, made, time FROM {schema}.dist_meta_refs
         ORDER BY directory, name"
    ))?;
    let rows = stmt
        .query_map([], |r| {
            Ok(MetaRef {
                directory: r.get(0)?,
                name: r.get(1)?,
                sha256: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                made: r.get(4)?,
                time: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn check(refs: &[MetaRef], got: &[Vec<u8>]) -> Result<()> {
    if refs.len() != got.len() {
        return Err(CatalogError::Corrupt(format!(
            "{} metadata files named, {} resolved",
            refs.len(),
            got.len()
        )));
    }
    for (m, data) in refs.iter().zip(got) {
        let sha = hex::encode(sha2::Sha256::digest(data));
        if sha != m.sha256 || data.len() as u64 != m.size {
            return Err(CatalogError::Corrupt(format!(
                "dists/{}/{}: resolved to sha256 {sha} ({} bytes), the replica names {} ({} bytes)",
                m.directory,
                m.name,
                data.len(),
                m.sha256,
                m.size
            )));
        }
    }
    Ok(())
}

/// Deletes the metadata of the directories `r` speaks of and puts its whole rows in.
fn replace(sql: &Connection, snapshot: bool) -> Result<()> {
    let which = if snapshot {
        ""
    } else {
        "WHERE directory IN (SELECT directory FROM r.files)"
    };
    sql.execute(&format!("DELETE FROM main.dist_meta {which}"), [])?;
    sql.execute(&format!("DELETE FROM main.dist_meta_refs {which}"), [])?;
    sql.execute(
        "INSERT OR REPLACE INTO main.dist_meta SELECT * FROM r.dist_meta",
        [],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::catalog::{Catalog, NewFile, NewUpload, ReplicaMeta};

    /// Publishes `d/NAME` with metadata `Packages` = `big` and a small `Release`.
    fn publish(c: &mut Catalog, name: &str, big: &[u8]) {
        let tx = c.transaction().unwrap();
        let up = tx
            .insert_upload(&NewUpload {
                accepted: true,
                message: "m".into(),
                ..NewUpload::default()
            })
            .unwrap();
        tx.insert_file(&NewFile {
            directory: "d",
            filename: name,
            kind: "plain",
            sha256: name,
            md5: "m",
            size: 1,
            name: None,
            version: None,
            uploader: "u",
            upload_id: up,
        })
        .unwrap();
        let files = [
            ("Packages".to_string(), big.to_vec()),
            ("Release".to_string(), format!("names {name}").into_bytes()),
        ];
        tx.set_dist_meta("d", &files, 2).unwrap();
        tx.commit().unwrap();
    }

    fn export(c: &Catalog, dir: &Path, from: i64, to: i64, snapshot: bool) -> PathBuf {
        let p = dir.join(format!("r-{from}-{to}-{snapshot}.sqlite"));
        let meta = ReplicaMeta {
            from,
            to,
            prev: None,
            snapshot,
        };
        c.export_replica(&p, &meta).unwrap();
        p
    }

    fn big(b: u8) -> Vec<u8> {
        vec![b; INLINE_MAX + 1]
    }

    type Resolved = std::result::Result<Vec<Vec<u8>>, CatalogError>;

    #[test]
    fn a_delta_names_large_metadata_by_hash_and_only_the_named_bytes_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
        let mut m = Catalog::open(&dir.path().join("m.sqlite")).unwrap();
        publish(&mut p, "a", &big(1));
        let d1 = export(&p, dir.path(), 0, 1, false);
        // Wrong bytes fail the whole apply: nothing of the delta is visible.
        let wrong = m.apply_replica(&d1, false, &[], &mut |_, refs| -> Resolved {
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].name, "Packages");
            assert_eq!(refs[0].sha256, hex::encode(sha2::Sha256::digest(big(1))));
            assert_eq!(refs[0].made, 1);
            Ok(vec![big(2)])
        });
        assert!(wrong.is_err());
        assert_eq!(m.generation().unwrap(), 0);
        assert_eq!(m.dist_meta("d", "Release").unwrap(), None);
        m.apply_replica(&d1, false, &[], &mut |_, _| -> Resolved {
            Ok(vec![big(1)])
        })
        .unwrap();
        assert_eq!(m.dist_meta("d", "Packages").unwrap(), Some(big(1)));
        assert_eq!(
            m.dist_meta("d", "Release").unwrap(),
            Some(b"names a".to_vec())
        );

        // Two deltas merged into a staging replica stay named by hash; the later one wins.
        publish(&mut p, "b", &big(2));
        publish(&mut p, "c", &big(3));
        let staging = dir.path().join("staging.sqlite");
        let mut s = Catalog::open(&staging).unwrap();
        s.merge_replica(&export(&p, dir.path(), 1, 2, false), false)
            .unwrap();
        s.merge_replica(&export(&p, dir.path(), 2, 3, false), false)
            .unwrap();
        drop(s);
        m.apply_replica(&staging, false, &[], &mut |tx, refs| -> Resolved {
            // The resolver sees the rows just applied and the metadata held before.
            assert_eq!(tx.dist_packages("d", "deb").unwrap().len(), 0);
            assert_eq!(tx.dist_meta_files("d").unwrap().len(), 2);
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].sha256, hex::encode(sha2::Sha256::digest(big(3))));
            Ok(vec![big(3)])
        })
        .unwrap();
        assert_eq!(m.dist_meta("d", "Packages").unwrap(), Some(big(3)));
        assert_eq!(
            m.dist_meta("d", "Release").unwrap(),
            Some(b"names c".to_vec())
        );

        // A snapshot carries everything whole.
        let snap = export(&p, dir.path(), 0, 4, true);
        let mut fresh = Catalog::open(&dir.path().join("f.sqlite")).unwrap();
        fresh
            .apply_replica(&snap, true, &[], &mut |_, _| -> Resolved {
                panic!("a snapshot names nothing by hash")
            })
            .unwrap();
        assert_eq!(fresh.dist_meta("d", "Packages").unwrap(), Some(big(3)));
    }

    /// From empty, a snapshot with a delta merged into it becomes the catalog with what the
    /// delta names by hash resolved; wrong bytes adopt nothing.
    #[test]
    fn an_adopted_snapshot_gets_the_metadata_its_merged_deltas_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
        publish(&mut p, "a", &big(1));
        let snap = export(&p, dir.path(), 0, 1, true);
        publish(&mut p, "b", &big(2));
        let mut s = Catalog::open(&snap).unwrap();
        s.merge_replica(&export(&p, dir.path(), 1, 2, false), false)
            .unwrap();
        drop(s);
        let mut m = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
        let wrong = m.adopt_replica(&snap, &[], &mut |_, refs| -> Resolved {
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].sha256, hex::encode(sha2::Sha256::digest(big(2))));
            Ok(vec![big(9)])
        });
        assert!(wrong.is_err());
        assert!(snap.exists());
        assert_eq!(m.generation().unwrap(), 0);
        let adopted = m
            .adopt_replica(&snap, &[], &mut |_, _| -> Resolved { Ok(vec![big(2)]) })
            .unwrap();
        assert!(adopted);
        assert_eq!(m.generation().unwrap(), 2);
        assert_eq!(m.dist_meta("d", "Packages").unwrap(), Some(big(2)));
        assert_eq!(
            m.dist_meta("d", "Release").unwrap(),
            Some(b"names b".to_vec())
        );
        let named: i64 = m
            .conn
            .query_row("SELECT COUNT(*) FROM dist_meta_refs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(named, 0);
    }

    #[test]
    fn replicas_of_v8_and_v9_apply_whole_and_older_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
        publish(&mut p, "a", &big(1));
        let snap = export(&p, dir.path(), 0, 1, true);
        let old = dir.path().join("v9.sqlite");
        std::fs::copy(&snap, &old).unwrap();
        let c = Connection::open(&old).unwrap();
        c.execute_batch("DROP TABLE dist_meta_refs; DROP TABLE trusted_uids;")
            .unwrap();
        c.pragma_update(None, "user_version", 8).unwrap();
        drop(c);
        let mut m = Catalog::open(&dir.path().join("m.sqlite")).unwrap();
        m.apply_replica(&old, true, &[], &mut |_, _| -> Resolved {
            panic!("nothing named")
        })
        .unwrap();
        assert_eq!(m.dist_meta("d", "Packages").unwrap(), Some(big(1)));
        Connection::open(&old)
            .unwrap()
            .pragma_update(None, "user_version", 7)
            .unwrap();
        assert!(Catalog::replica_meta(&old).is_err());
    }
}
