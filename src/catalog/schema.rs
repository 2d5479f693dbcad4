//! The schema, and the migrations that bring an older database up to it.
//!
//! Migrations are keyed on `PRAGMA user_version`: entry `i` of `MIGRATIONS` upgrades version
//! `i` to `i + 1`, all pending ones in one exclusive transaction. A database newer than this
//! code is refused rather than misread, and a replica (`replica.rs`) must have exactly this
//! version, since its rows are copied column for column.

use rusqlite::Connection;

use super::{CatalogError, Result};

/// Each entry upgrades the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: the foundation.
    r#"
    CREATE TABLE keys (
        fingerprint TEXT PRIMARY KEY,
        cert        BLOB NOT NULL,      -- OpenPGP cert, binary, public parts only
        userid      TEXT,
        added_at    INTEGER NOT NULL
    );
    CREATE TABLE key_dirs (
        fingerprint TEXT NOT NULL REFERENCES keys(fingerprint) ON DELETE CASCADE,
        directory   TEXT NOT NULL,      -- '' means everywhere
        PRIMARY KEY (fingerprint, directory)
    );
    CREATE TABLE uploads (
        id          INTEGER PRIMARY KEY,
        state       TEXT NOT NULL CHECK (state IN ('accepted', 'rejected')),
        reason      TEXT,
        message     TEXT NOT NULL,
        files       TEXT NOT NULL,      -- JSON array of spool-relative paths
        directory   TEXT,
        uploader    TEXT,               -- primary key fingerprint
        directive   TEXT,               -- the verified directive body
        quarantine  TEXT,
        spool_ids   TEXT,               -- identities of the spool files (crash recovery)
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX uploads_spool_ids ON uploads(spool_ids);
    CREATE TABLE used_signatures (
        digest      BLOB PRIMARY KEY,   -- sha256 of the directive's signature packet
        upload_id   INTEGER NOT NULL REFERENCES uploads(id),
        used_at     INTEGER NOT NULL
    );
    CREATE TABLE files (
        id           INTEGER PRIMARY KEY,
        directory    TEXT NOT NULL,
        filename     TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('package', 'signature', 'plain')),
        sha256       TEXT NOT NULL,     -- also the content store key
        md5          TEXT NOT NULL,
        size         INTEGER NOT NULL,
        name         TEXT,
        version      TEXT,
        uploader     TEXT NOT NULL,
        upload_id    INTEGER NOT NULL REFERENCES uploads(id),
        published_at INTEGER NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('published', 'archived')),
        archived_at  INTEGER
    );
    CREATE UNIQUE INDEX files_live ON files(directory, filename) WHERE state = 'published';
    CREATE INDEX files_sha256 ON files(sha256);
    CREATE TABLE symlinks (
        directory   TEXT NOT NULL,
        name        TEXT NOT NULL,
        target      TEXT NOT NULL,
        upload_id   INTEGER NOT NULL REFERENCES uploads(id),
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (directory, name)
    );
    CREATE TABLE packages (
        file_id       INTEGER PRIMARY KEY REFERENCES files(id),
        format        TEXT NOT NULL,    -- tar | tar.gz | tar.zst | tar.xz | deb
        meta_source   TEXT NOT NULL,    -- pkginfo | tpm | distpac | deb | filename
        name          TEXT NOT NULL,
        version       TEXT,
        arch          TEXT,
        description   TEXT,
        depends       TEXT NOT NULL,    -- JSON array of dependency strings as written
        metadata      TEXT NOT NULL,    -- JSON object: everything the metadata file said
        payload_offset INTEGER NOT NULL, -- where the (compressed) tar stream starts in the file
        payload_size  INTEGER NOT NULL,
        payload_compression TEXT NOT NULL, -- none | gzip | zstd | xz
        unpacked_size INTEGER NOT NULL,
        entry_count   INTEGER NOT NULL
    );
    CREATE INDEX packages_name ON packages(name, version);
    CREATE TABLE entries (
        file_id     INTEGER NOT NULL REFERENCES packages(file_id),
        path        TEXT NOT NULL,      -- normalized, relative, no trailing slash
        kind        TEXT NOT NULL,      -- file | dir | symlink | hardlink
        mode        INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        mtime       INTEGER NOT NULL,
        uid         INTEGER NOT NULL,
        gid         INTEGER NOT NULL,
        link_target TEXT,
        data_offset INTEGER NOT NULL,   -- offset of the data in the uncompressed tar stream
        sha256      TEXT,               -- of the entry's content, for regular files
        PRIMARY KEY (file_id, path)
    ) WITHOUT ROWID;
    -- Random-access points into compressed payloads (zran-style), so one file inside a
    -- .tar.gz can be read without inflating from the start. Filled at publish time by the
    -- indexer that serves pkgs/; empty for uncompressed payloads.
    CREATE TABLE seek_points (
        file_id           INTEGER NOT NULL REFERENCES packages(file_id),
        uncompressed_offset INTEGER NOT NULL,
        compressed_offset INTEGER NOT NULL,
        bits              INTEGER NOT NULL,
        window            BLOB,
        PRIMARY KEY (file_id, uncompressed_offset)
    ) WITHOUT ROWID;
    "#,
    // v2: entries whose bytes are not one run of the tar stream: sparse files (their data
    // runs) and deflated zip members (their compressed size). JSON; NULL means contiguous.
    // New values elsewhere need no DDL: format tar.bz2 | tar.lz | zip, payload_compression
    // bzip2 | lzip, meta_source cargo | npm | python.
    r#"
    ALTER TABLE entries ADD COLUMN layout TEXT;
    "#,
    // v3: one BitTorrent v1 torrent per published file: its bencoded info dictionary (what
    // the infohash is the SHA-1 of). Trackers are not part of it; the .torrent is put together
    // when read. Empty files have none.
    r#"
    CREATE TABLE torrents (
        file_id   INTEGER PRIMARY KEY REFERENCES files(id),
        info_hash TEXT NOT NULL,
        info      BLOB NOT NULL
    );
    CREATE INDEX torrents_info_hash ON torrents(info_hash);
    "#,
    // v4: what the service decided at start that readers (the mount) must agree with, such
    // as the trackers torrents name (`trackers`, a JSON array).
    r#"
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // v5: seekable forms of payloads that cannot be read at an offset (zstd, xz, bzip2,
    // lzip). At publication the payload is recompressed as independent zstd frames, stored
    // as a derived object in the content store (kept by GC through this table), so one file
    // inside is read by decompressing one frame instead of unpacking the whole payload.
    r#"
    CREATE TABLE derived (
        file_id     INTEGER PRIMARY KEY REFERENCES packages(file_id),
        kind        TEXT NOT NULL CHECK (kind IN ('zstd-frames')),
        sha256      TEXT NOT NULL,      -- the derived object in the content store
        size        INTEGER NOT NULL
    );
    CREATE INDEX derived_sha256 ON derived(sha256);
    CREATE TABLE frames (
        file_id           INTEGER NOT NULL REFERENCES derived(file_id),
        uncompressed_offset INTEGER NOT NULL, -- in the payload's tar stream
        uncompressed_size INTEGER NOT NULL,
        compressed_offset INTEGER NOT NULL,   -- in the derived object
        compressed_size   INTEGER NOT NULL,
        PRIMARY KEY (file_id, uncompressed_offset)
    ) WITHOUT ROWID;
    "#,
    // v6: generations for the signed index (`fetch::index`). Every publication transaction
    // that changes the published view gets the next generation and logs what it changed, so a
    // mirror at generation G is sent the rows of the changes after G only. After commit
    // repofsd materializes each generation as a content-addressed delta object (`delta`) and,
    // now and then, a full snapshot (`snapshot`) for mirrors starting from empty.
    r#"
    CREATE TABLE generations (
        generation  INTEGER PRIMARY KEY,
        created_at  INTEGER NOT NULL,
        delta       TEXT,               -- sha256 of the delta object, once materialized
        snapshot    TEXT                -- sha256 of a full snapshot at this generation
    );
    CREATE TABLE changes (
        generation  INTEGER NOT NULL REFERENCES generations(generation),
        kind        TEXT NOT NULL CHECK (kind IN ('file', 'archive', 'symlink')),
        file_id     INTEGER,            -- file and archive
        directory   TEXT,               -- symlink
        name        TEXT
    );
    CREATE INDEX changes_generation ON changes(generation);
    "#,
    // v7: derived objects (seekable twins) are shared over BitTorrent too, so a mirror can
    // fetch a twin's frames lazily: their info dictionary and infohash, as for files.
    r#"
    ALTER TABLE derived ADD COLUMN info_hash TEXT;
    ALTER TABLE derived ADD COLUMN info BLOB;
    CREATE INDEX derived_info_hash ON derived(info_hash);
    "#,
    // v8: apt and pacman repository metadata of each dists/ directory holding .deb or pacman
    // packages (`pkgmeta`), made on the primary in the publication transaction that changed
    // the directory and served as stored (a mirror gets the same bytes through the index), and
    // the repository key's detached signature of each pacman package (`%PGPSIG%`), made from
    // the store copy at publication.
    r#"
    CREATE TABLE dist_meta (
        directory TEXT NOT NULL,
        name      TEXT NOT NULL,        -- Packages, InRelease, DIR.db, by-hash/SHA256/HASH
        data      BLOB NOT NULL,
        made      INTEGER NOT NULL,     -- generation that made it (by-hash keeps older ones)
        PRIMARY KEY (directory, name)
    ) WITHOUT ROWID;
    CREATE TABLE repo_sigs (
        file_id INTEGER PRIMARY KEY REFERENCES files(id),
        sig     BLOB NOT NULL           -- binary OpenPGP detached signature
    );
    "#,
    // v9: local uids trusted to publish a lone unsigned file through the mount, granted by
    // `repofs trust` (beside the config's `[[trusted]]` blocks, with the same effect).
    r#"
    CREATE TABLE trusted_uids (
        uid       INTEGER NOT NULL,
        directory TEXT NOT NULL,        -- '' means everywhere
        added_at  INTEGER NOT NULL,
        PRIMARY KEY (uid, directory)
    ) WITHOUT ROWID;
    "#,
    // v10: the large derived repository metadata files (`Packages`, `Packages.xz`, by-hash
    // copies, `DIR.db`, `DIR.files`) that a delta names by hash instead of carrying: a mirror
    // renders them itself from the rows it replicates, reuses bytes it holds, or fetches
    // them, and keeps them only if the hash matches (`fetch::index::mirror`). Only replicas
    // hold rows here; a catalog's stays empty.
    r#"
    CREATE TABLE dist_meta_refs (
        directory TEXT NOT NULL,
        name      TEXT NOT NULL,
        sha256    TEXT NOT NULL,
        size      INTEGER NOT NULL,
        made      INTEGER NOT NULL,     -- generation that made it, as in dist_meta
        time      INTEGER NOT NULL,     -- that generation's time (pacman's tar mtimes)
        PRIMARY KEY (directory, name)
    ) WITHOUT ROWID;
    "#,
    // v11: store objects a first read for a peer found changed since publication (`fetch::seed`):
    // refused from seeding across restarts, until the bytes match their sha256 again. Local
    // to this repository: no replica carries it.
    r#"
    CREATE TABLE corrupt_objects (
        sha256   TEXT PRIMARY KEY,
        piece    INTEGER NOT NULL,      -- the first piece found bad
        why      TEXT NOT NULL,
        found_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // v12: seek points as a rowid table. WITHOUT ROWID kept each row, its deflated window
    // included (8.6 KiB on average in the Linux .tar.gz), in the key b-tree, so finding one
    // point read whole windows (their overflow pages) at every cell the search compared:
    // ~100 pages for a first read of one member of that package. Now the primary key's index
    // holds only the two keys, and a window is read once, when it is used. Same columns, so
    // replicas copy as before.
    r#"
    CREATE TABLE seek_points_v12 (
        file_id           INTEGER NOT NULL REFERENCES packages(file_id),
        uncompressed_offset INTEGER NOT NULL,
        compressed_offset INTEGER NOT NULL,
        bits              INTEGER NOT NULL,
        window            BLOB,
        PRIMARY KEY (file_id, uncompressed_offset)
    );
    INSERT INTO seek_points_v12 (file_id, uncompressed_offset, compressed_offset, bits, window)
        SELECT file_id, uncompressed_offset, compressed_offset, bits, window FROM seek_points
        WHERE file_id IN (SELECT file_id FROM packages) -- an orphan would fail the copy
        ORDER BY file_id, uncompressed_offset;
    DROP TABLE seek_points;
    ALTER TABLE seek_points_v12 RENAME TO seek_points;
    "#,
];

/// The schema version this code writes and reads.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let known = VERSION;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(CatalogError::TooNew { found, known });
    }
    if found == known {
        return Ok(());
    }
    // One writer upgrades; a concurrent opener waits on the lock and then sees the new version.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn refuses_a_schema_newer_than_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        Catalog::open(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        match Catalog::open(&path) {
            Err(CatalogError::TooNew { found: 99, known }) => {
                assert_eq!(known, MIGRATIONS.len() as i64)
            }
            other => panic!("expected TooNew, got {:?}", other.err()),
        }
    }

    #[test]
    fn v12_keeps_the_seek_points_and_takes_them_out_of_the_key_btree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        let tx = conn.transaction().unwrap();
        for (v, sql) in MIGRATIONS[..11].iter().enumerate() {
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", v as i64 + 1)
                .unwrap();
        }
        // With foreign keys off a package needs no file row; file 8's point, with no
        // package, is an orphan the migration drops.
        tx.execute_batch(
            "INSERT INTO packages VALUES
                 (7, 'tar.gz', 'filename', 'p', '1', NULL, NULL, '[]', '{}', 0, 0, 'gzip', 0, 0);
             INSERT INTO seek_points VALUES (7, 0, 10, 0, NULL);
             INSERT INTO seek_points VALUES (7, 1048576, 4096, 3, x'0102');
             INSERT INTO seek_points VALUES (8, 0, 10, 0, NULL);",
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.seek_span(7, 2 << 20).unwrap(), (1048576, None));
        assert_eq!(cat.seek_span(7, 5).unwrap(), (0, Some(1048576)));
        let conn = Connection::open(&path).unwrap();
        let (window, sql): (Vec<u8>, String) = conn
            .query_row(
                "SELECT window, (SELECT sql FROM sqlite_schema WHERE name = 'seek_points')
                 FROM seek_points WHERE uncompressed_offset = 1048576",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(window, [1, 2]);
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        let orphans: i64 = conn
            .query_row(
                "SELECT count(*) FROM seek_points WHERE file_id = 8",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
    }
}
