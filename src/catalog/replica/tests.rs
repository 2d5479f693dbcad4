//! Replicas: export and apply, row by row and from empty in bulk.

use super::*;
use crate::catalog::{NewFile, NewUpload};

type View = (
    Vec<(i64, String, String, String)>,
    Vec<(String, String, String)>,
);

/// The published view: live files (id, directory, name, sha256) and symlinks.
fn view(c: &Catalog) -> View {
    let files = c
        .files(false)
        .unwrap()
        .into_iter()
        .map(|f| (f.id, f.directory, f.filename, f.sha256))
        .collect();
    let links = c
        .symlinks()
        .unwrap()
        .into_iter()
        .map(|s| (s.directory, s.name, s.target))
        .collect();
    (files, links)
}

fn publish_plain(c: &mut Catalog, name: &str, sha: &str, replaces: Option<i64>) -> i64 {
    let tx = c.transaction().unwrap();
    let up = tx
        .insert_upload(&NewUpload {
            accepted: true,
            message: "m".into(),
            ..NewUpload::default()
        })
        .unwrap();
    if let Some(old) = replaces {
        tx.archive_file(old).unwrap();
    }
    let id = tx
        .insert_file(&NewFile {
            directory: "d",
            filename: name,
            kind: "plain",
            sha256: sha,
            md5: "m",
            size: 1,
            name: None,
            version: None,
            uploader: "u",
            upload_id: up,
        })
        .unwrap();
    tx.commit().unwrap();
    id
}

/// `apply_replica` of a replica that names no metadata by hash.
fn apply(c: &mut Catalog, src: &Path, snapshot: bool, settings: &[(&str, String)]) -> Result<()> {
    c.apply_replica(src, snapshot, settings, &mut |_,
                                                   _|
     -> Result<Vec<Vec<u8>>> {
        panic!("no metadata is named by hash here")
    })
}

/// `adopt_replica` of a replica that names no metadata by hash.
fn adopt(c: &mut Catalog, src: &Path, settings: &[(&str, String)]) -> bool {
    c.adopt_replica(src, settings, &mut |_, _| -> Result<Vec<Vec<u8>>> {
        panic!("no metadata is named by hash here")
    })
    .unwrap()
}

fn delta(c: &Catalog, dir: &Path, from: i64, to: i64, snapshot: bool) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("r-{from}-{to}-{snapshot}-{k}.sqlite"));
    c.export_replica(
        &p,
        &ReplicaMeta {
            from,
            to,
            prev: None,
            snapshot,
        },
    )
    .unwrap();
    p
}

#[test]
fn replicas_carry_replacements_symlinks_and_archives_in_one_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
    let mut m = Catalog::open(&dir.path().join("m.sqlite")).unwrap();
    let a = publish_plain(&mut p, "x", "aa", None);
    assert_eq!(p.generation().unwrap(), 1);
    apply(&mut m, &delta(&p, dir.path(), 0, 1, false), false, &[]).unwrap();
    assert_eq!(view(&m), view(&p));

    // Generation 2 replaces x (archive + insert of the same name in one transaction) and
    // adds a symlink; generation 3 removes the symlink and archives the new x.
    let b = publish_plain(&mut p, "x", "bb", Some(a));
    {
        let tx = p.transaction().unwrap();
        tx.set_symlink("d", "latest", "x", 1).unwrap();
        tx.commit().unwrap();
    }
    {
        let tx = p.transaction().unwrap();
        assert!(tx.remove_symlink("d", "latest").unwrap());
        tx.set_symlink("d", "other", "x", 1).unwrap();
        tx.archive_file(b).unwrap();
        tx.commit().unwrap();
    }
    let c = publish_plain(&mut p, "y", "cc", None);
    assert_eq!(p.generation().unwrap(), 5);
    // Deltas 2..5 merged into one staging replica, applied in one transaction.
    let mut staging = Catalog::open(&dir.path().join("s.sqlite")).unwrap();
    for g in 2..=5 {
        staging
            .merge_replica(&delta(&p, dir.path(), g - 1, g, false), false)
            .unwrap();
    }
    drop(staging);
    apply(
        &mut m,
        &dir.path().join("s.sqlite"),
        false,
        &[("index_generation", "5".into())],
    )
    .unwrap();
    assert_eq!(view(&m), view(&p));
    assert_eq!(view(&m).0, vec![(c, "d".into(), "y".into(), "cc".into())]);
    assert_eq!(m.setting("index_generation").unwrap().as_deref(), Some("5"));

    // A snapshot onto a mirror left at generation 1 takes offline what it does not list.
    let mut old = Catalog::open(&dir.path().join("old.sqlite")).unwrap();
    apply(&mut old, &delta(&p, dir.path(), 0, 1, false), false, &[]).unwrap();
    apply(&mut old, &delta(&p, dir.path(), 0, 5, true), true, &[]).unwrap();
    assert_eq!(view(&old), view(&p));
    assert_eq!(old.generation_time().unwrap(), p.generation_time().unwrap());
}

/// Every row of the tables a replica fills, as text, table by table (`where_published`:
/// only the published files and what hangs off them).
fn dump(c: &Catalog, where_published: bool) -> Vec<(String, Vec<String>)> {
    let live = if where_published {
        "WHERE file_id IN (SELECT id FROM files WHERE state = 'published')"
    } else {
        ""
    };
    let mut sql = vec![
        (
            "files",
            format!(
                "SELECT * FROM files {} ORDER BY id",
                if where_published {
                    "WHERE state = 'published'"
                } else {
                    ""
                }
            ),
        ),
        ("symlinks", "SELECT * FROM symlinks ORDER BY 1, 2".into()),
        ("dist_meta", "SELECT * FROM dist_meta ORDER BY 1, 2".into()),
    ];
    for (t, _) in REPLICA_IMMUTABLE {
        sql.push((t, format!("SELECT * FROM {t} {live} ORDER BY 1, 2")));
    }
    if !where_published {
        sql.push(("generations", "SELECT * FROM generations ORDER BY 1".into()));
        sql.push(("changes", "SELECT * FROM changes ORDER BY 1, 2, 3".into()));
    }
    sql.into_iter()
        .map(|(t, q)| {
            let mut stmt = c.conn.prepare(&q).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map(|v| v.join("|"))
                })
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            (t.to_string(), rows)
        })
        .collect()
}

/// A primary with a replaced file, a package with entries and a torrent, symlinks and
/// metadata; returns its generation.
fn primary(p: &mut Catalog) -> i64 {
    let a = publish_plain(p, "x", "aa", None);
    let b = publish_plain(p, "z", "zz", None);
    for id in [a, b] {
        p.conn
            .execute_batch(&format!(
                "INSERT INTO packages VALUES ({id}, 'tar', 'filename', 'p{id}', '1', NULL,
                    NULL, '[]', '{{}}', 0, 1, 'none', 1, 2);
                 INSERT INTO entries VALUES
                    ({id}, 'a', 'file', 420, 1, 0, 0, 0, NULL, 0, 'e{id}', NULL),
                    ({id}, 'b', 'dir', 493, 0, 0, 0, 0, NULL, 0, NULL, NULL);
                 INSERT INTO seek_points VALUES ({id}, 0, 0, 0, x'01');
                 INSERT INTO torrents VALUES ({id}, 'ih{id}', x'00');"
            ))
            .unwrap();
    }
    publish_plain(p, "x", "bb", Some(a));
    let tx = p.transaction().unwrap();
    tx.set_symlink("d", "latest", "z", 1).unwrap();
    tx.set_dist_meta("d", &[("Release".into(), b"r".to_vec())], 3)
        .unwrap();
    tx.commit().unwrap();
    publish_plain(p, "y", "cc", None);
    p.generation().unwrap()
}

#[test]
fn a_snapshot_onto_an_empty_catalog_is_copied_whole_as_the_row_path_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
    let g = primary(&mut p);
    let snap = delta(&p, dir.path(), 0, g, true);

    let mut bulk = Catalog::open(&dir.path().join("bulk.sqlite")).unwrap();
    assert!(nothing_replicated(&bulk.conn).unwrap());
    apply(
        &mut bulk,
        &snap,
        true,
        &[("index_generation", g.to_string())],
    )
    .unwrap();
    // Foreign keys are enforced again afterwards, and commits wait for the disk again.
    let pragma = |p: &str| -> i64 {
        bulk.conn
            .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!((pragma("foreign_keys"), pragma("synchronous")), (1, 2));
    assert_eq!(
        bulk.setting("index_generation").unwrap(),
        Some(g.to_string())
    );

    // The same snapshot row by row: onto a catalog holding one unrelated upload.
    let mut rows = Catalog::open(&dir.path().join("rows.sqlite")).unwrap();
    rows.conn
        .execute(
            "INSERT INTO uploads (id, state, message, files, created_at)
             VALUES (999, 'rejected', '', '[]', 0)",
            [],
        )
        .unwrap();
    assert!(!nothing_replicated(&rows.conn).unwrap());
    apply(&mut rows, &snap, true, &[]).unwrap();
    assert_eq!(dump(&bulk, false), dump(&rows, false));
    // And the published view is the one every delta applied in turn gives.
    let mut deltas = Catalog::open(&dir.path().join("deltas.sqlite")).unwrap();
    for k in 1..=g {
        apply(
            &mut deltas,
            &delta(&p, dir.path(), k - 1, k, false),
            false,
            &[],
        )
        .unwrap();
    }
    let view = dump(&bulk, true);
    assert_eq!(view, dump(&deltas, true));
    assert_eq!(view, dump(&p, true));
    assert!(
        view.iter()
            .all(|(t, r)| !r.is_empty() || t == "derived" || t == "frames" || t == "repo_sigs"),
        "{view:?}"
    );
}

#[test]
fn a_snapshot_with_a_dangling_row_is_refused_and_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
    let g = primary(&mut p);
    let snap = delta(&p, dir.path(), 0, g, true);
    // Entries whose package row is gone: enforced keys would refuse them on insert.
    Connection::open(&snap)
        .unwrap()
        .execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM packages;")
        .unwrap();
    let mut m = Catalog::open(&dir.path().join("m.sqlite")).unwrap();
    let err = apply(&mut m, &snap, true, &[("index_generation", g.to_string())]);
    let err = format!("{:?}", err.unwrap_err());
    assert!(
        err.contains("of packages the snapshot does not hold"),
        "{err}"
    );
    assert!(nothing_replicated(&m.conn).unwrap());
    assert_eq!(m.setting("index_generation").unwrap(), None);
    let fk: i64 = m
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn a_replica_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
    let r = delta(&p, dir.path(), 0, 0, true);
    Connection::open(&r)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let mut m = Catalog::open(&dir.path().join("m.sqlite")).unwrap();
    assert!(apply(&mut m, &r, true, &[]).is_err());
    assert!(Catalog::replica_meta(&r).is_err());
}

/// From empty, the snapshot itself becomes the catalog (`adopt_replica`): the rows the bulk
/// copy would make, the catalog's local rows carried over, the path swapped to a file of its
/// own with its own WAL, and a reader holding the old file reopens when it asks.
#[test]
fn a_snapshot_adopted_from_empty_is_what_the_bulk_copy_makes_and_readers_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
    let g = primary(&mut p);
    let snap = delta(&p, dir.path(), 0, g, true);
    let settings = [("index_generation", g.to_string())];
    let mut bulk = Catalog::open(&dir.path().join("bulk.sqlite")).unwrap();
    apply(&mut bulk, &snap, true, &settings).unwrap();

    let path = dir.path().join("catalog.sqlite");
    let mut m = Catalog::open(&path).unwrap();
    m.set_setting("upstream", "http://up").unwrap();
    m.put_key("ABCD", b"cert", Some("a"), "dir").unwrap();
    let mut reader = Catalog::open(&path).unwrap();
    let before = reader.data_version().unwrap();
    assert_eq!(view(&reader), (vec![], vec![]));

    let src = dir.path().join("unpacked.sqlite");
    std::fs::copy(&snap, &src).unwrap();
    assert!(adopt(&mut m, &src, &settings));
    assert!(!src.exists());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(dump(&m, false), dump(&bulk, false));
    assert_eq!(m.setting("upstream").unwrap().as_deref(), Some("http://up"));
    assert_eq!(m.keys().unwrap()[0].directories, vec!["dir".to_string()]);
    assert_eq!(m.setting("replica_to").unwrap(), None);
    assert_eq!(m.setting("index_generation").unwrap(), Some(g.to_string()));
    // Its WAL is named after the adopted file, not after the path the old file had.
    m.set_setting("probe", "1").unwrap();
    let target = dir.path().join(std::fs::read_link(&path).unwrap());
    let mut wal = target.clone().into_os_string();
    wal.push("-wal");
    assert!(std::path::Path::new(&wal).exists());

    // The reader still reads the old file (its WAL no longer named) until it follows; then it
    // sees a new version.
    for side in ["-wal", "-shm"] {
        let mut old = path.clone().into_os_string();
        old.push(side);
        assert!(!std::path::Path::new(&old).exists(), "{old:?}");
    }
    assert_eq!(view(&reader), (vec![], vec![]));
    m.set_setting("probe", "2").unwrap();
    assert_eq!(view(&reader), (vec![], vec![]));
    assert!(reader.follow().unwrap());
    assert_ne!(reader.data_version().unwrap(), before);
    assert_eq!(view(&reader), view(&bulk));
    assert!(!reader.follow().unwrap());

    // A catalog that replicated something takes the usual path.
    let again = dir.path().join("again.sqlite");
    std::fs::copy(&snap, &again).unwrap();
    assert!(!adopt(&mut m, &again, &settings));
    assert!(again.exists());
}

/// A catalog with local rows in a table the snapshot fills is not adopted (they would be lost).
#[test]
fn a_catalog_with_rows_the_snapshot_also_has_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Catalog::open(&dir.path().join("p.sqlite")).unwrap();
    let g = primary(&mut p);
    let snap = delta(&p, dir.path(), 0, g, true);
    Connection::open(&snap)
        .unwrap()
        .execute("INSERT INTO keys VALUES ('P', x'00', 'p', 0)", [])
        .unwrap();
    let path = dir.path().join("catalog.sqlite");
    let mut m = Catalog::open(&path).unwrap();
    m.put_key("ABCD", b"cert", Some("a"), "dir").unwrap();
    assert!(!adopt(&mut m, &snap, &[]));
    assert!(snap.exists());
    assert!(!std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(m.keys().unwrap().len(), 1);
}
