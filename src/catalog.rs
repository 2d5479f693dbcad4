//! The catalog: the only module that speaks SQL.
//!
//! One SQLite database (WAL, `synchronous=FULL`) records keys, uploads and their verdicts,
//! published files, symlinks, and for every package its metadata and full entry list, so that
//! every view (dists/, pkgs/, mirrors, installs) is answered without touching content.
//! A publication is one transaction (`Catalog::transaction`), which is what makes it atomic:
//! content lands in the store first, and becomes visible only when that transaction commits.
//!
//! Schema changes are migrations keyed on `PRAGMA user_version`; a database newer than this
//! code is refused rather than misread.

use crate::time::now;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;

use crate::archive::gzindex::SeekPoint;
use crate::archive::{Entry, EntryKind, Inspection, Layout};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("catalog schema version {found} is newer than this repofs understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("catalog: corrupt row: {0}")]
    Corrupt(String),
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

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
];

/// One independent zstd frame of a derived seekable payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Where its bytes sit in the uncompressed tar stream.
    pub out: u64,
    pub out_len: u64,
    /// Where the frame sits in the derived object.
    pub inp: u64,
    pub in_len: u64,
}

/// The seekable form of a package's payload.
#[derive(Debug, Clone)]
pub struct Derived {
    pub sha256: String,
    pub frames: Vec<Frame>,
}

pub struct Catalog {
    conn: Connection,
}

/// A published (or archived) file as `repofs list` reports it (its `--json` is this, serialized:
/// times as RFC 3339, without the row id).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileRow {
    #[serde(skip)]
    pub id: i64,
    pub directory: String,
    pub filename: String,
    pub kind: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub uploader: String,
    pub upload_id: i64,
    #[serde(serialize_with = "rfc3339")]
    pub published_at: i64,
    pub state: String,
    #[serde(serialize_with = "rfc3339_opt")]
    pub archived_at: Option<i64>,
}

fn rfc3339<S: serde::Serializer>(t: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::rfc3339(*t))
}

fn rfc3339_opt<S: serde::Serializer>(
    t: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// What the mount keeps of a published file (`Catalog::for_each_published_file`).
pub struct FileBrief<'a> {
    pub id: i64,
    pub directory: &'a str,
    pub filename: &'a str,
    pub size: u64,
    pub published_at: i64,
    /// Length of its torrent's bencoded info dictionary, if it has one.
    pub torrent_info_len: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SymlinkRow {
    pub directory: String,
    pub name: String,
    pub target: String,
    pub upload_id: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadRow {
    pub id: i64,
    pub state: String,
    pub reason: Option<String>,
    pub message: String,
    pub files: Vec<String>,
    pub directory: Option<String>,
    pub uploader: Option<String>,
    pub quarantine: Option<String>,
    pub created_at: i64,
}

/// A live package, as the views need it.
#[derive(Debug, Clone)]
pub struct PackageRow {
    pub file_id: i64,
    pub format: String,
    pub meta_source: String,
    pub name: String,
    pub version: Option<String>,
    pub arch: Option<String>,
    pub description: Option<String>,
    pub depends: Vec<String>,
    pub payload_offset: u64,
    pub payload_size: u64,
    /// none | gzip | zstd | xz
    pub compression: String,
    pub unpacked_size: u64,
    pub entry_count: u64,
    pub sha256: String,
    pub published_at: i64,
}

/// A live package as `Catalog::packages_for_deps` gives it: the row, its file in `dists/`, and
/// the metadata JSON object (everything the metadata file said).
#[derive(Debug, Clone)]
pub struct PackageListing {
    pub package: PackageRow,
    pub directory: String,
    pub filename: String,
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub fingerprint: String,
    pub cert: Vec<u8>,
    pub userid: Option<String>,
    pub added_at: i64,
    pub directories: Vec<String>,
}

/// What an upload's verdict record holds (accepted or rejected).
#[derive(Debug, Clone, Default)]
pub struct NewUpload {
    pub accepted: bool,
    pub reason: Option<String>,
    pub message: String,
    pub files: Vec<String>,
    pub directory: Option<String>,
    pub uploader: Option<String>,
    pub directive: Option<String>,
    pub quarantine: Option<String>,
    pub spool_ids: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub directory: &'a str,
    pub filename: &'a str,
    pub kind: &'a str,
    pub sha256: &'a str,
    pub md5: &'a str,
    pub size: u64,
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
    pub uploader: &'a str,
    pub upload_id: i64,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Catalog> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Catalog { conn })
    }

    // ---- keys -------------------------------------------------------------------------

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

    // ---- reading the published tree ----------------------------------------------------

    pub fn files(&self, include_archived: bool) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files {} ORDER BY directory, filename, id",
            if include_archived {
                ""
            } else {
                "WHERE state = 'published'"
            }
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn symlinks(&self) -> Result<Vec<SymlinkRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT directory, name, target, upload_id, created_at FROM symlinks
             ORDER BY directory, name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SymlinkRow {
                    directory: r.get(0)?,
                    name: r.get(1)?,
                    target: r.get(2)?,
                    upload_id: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every content hash the catalog refers to, published or archived: what the store must keep.
    pub fn referenced_objects(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sha256 FROM files UNION SELECT sha256 FROM derived")?;
        let set = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<HashSet<String>, _>>()?;
        Ok(set)
    }

    /// Live packages with their payload location (what `pkgs/` lists).
    pub fn packages(&self) -> Result<Vec<PackageRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.state = 'published' ORDER BY p.name, p.file_id"
        ))?;
        let rows = stmt
            .query_map([], package_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One live package by file id: what the mount reads on open instead of holding every
    /// package row.
    pub fn package(&self, file_id: i64) -> Result<Option<PackageRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages p JOIN files f ON f.id = p.file_id
             WHERE p.file_id = ? AND f.state = 'published'"
        ))?;
        Ok(stmt.query_row([file_id], package_row).optional()?)
    }

    /// The live packages of files in `directory` (for its index.json).
    pub fn packages_in(&self, directory: &str) -> Result<Vec<PackageRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.directory = ? AND f.state = 'published'"
        ))?;
        let rows = stmt
            .query_map([directory], package_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every stored repository metadata file: (directory, name, size), for the mount's view.
    pub fn dist_meta_names(&self) -> Result<Vec<(String, String, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT directory, name, length(data) FROM dist_meta")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The bytes of one repository metadata file.
    pub fn dist_meta(&self, directory: &str, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT data FROM dist_meta WHERE directory = ?1 AND name = ?2")?
            .query_row([directory, name], |r| r.get(0))
            .optional()?)
    }

    /// Directories that hold live packages of `meta_source` `deb` or `pkginfo` but have no
    /// repository metadata yet (published before `pkgmeta` existed): repofsd backfills them.
    pub fn dirs_without_dist_meta(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT f.directory FROM files f JOIN packages p ON p.file_id = f.id
             WHERE f.state = 'published' AND p.meta_source IN ('deb', 'pkginfo')
               AND f.directory NOT IN (SELECT directory FROM dist_meta)
             ORDER BY f.directory",
        )?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// Live pacman packages that have no repository-key signature yet (backfill).
    pub fn pacman_packages_without_sig(&self) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE state = 'published' AND id IN
               (SELECT file_id FROM packages WHERE meta_source = 'pkginfo')
             AND id NOT IN (SELECT file_id FROM repo_sigs)"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt
            .query_map([], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every live package with where its file is and the full metadata JSON, for the
    /// dependency resolver (`deps`), which needs Provides/Conflicts and the raw fields.
    pub fn packages_for_deps(&self) -> Result<Vec<PackageListing>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {PACKAGE_COLUMNS}, f.directory, f.filename, p.metadata
             FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.state = 'published' ORDER BY p.name, p.file_id"
        ))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PackageListing {
                    package: package_row(r)?,
                    directory: r.get(15)?,
                    filename: r.get(16)?,
                    metadata: r.get(17)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One published file by id (the mount opens files by it).
    pub fn published_file(&self, id: i64) -> Result<Option<FileRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE id = ? AND state = 'published'"
        ))?;
        Ok(stmt.query_row([id], file_row).optional()?)
    }

    /// The published files in `directory` (for its generated files).
    pub fn published_files_in(&self, directory: &str) -> Result<Vec<FileRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE directory = ? AND state = 'published'"
        ))?;
        let rows = stmt
            .query_map([directory], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The published files in `directory` named `first` ..= `last` (byte order, as the views
    /// sort): one page of an HTTP listing in one query on the `files_live` index.
    pub fn published_files_between(
        &self,
        directory: &str,
        first: &str,
        last: &str,
    ) -> Result<Vec<FileRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE directory = ?1 AND state = 'published'
             AND filename >= ?2 AND filename <= ?3"
        ))?;
        let rows = stmt
            .query_map([directory, first, last], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Streams what the mount keeps of each published file, row by row, so that loading
    /// 100,000 files never holds them all as full rows.
    pub fn for_each_published_file(&self, mut f: impl FnMut(FileBrief<'_>)) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT f.id, f.directory, f.filename, f.size, f.published_at, length(t.info)
             FROM files f LEFT JOIN torrents t ON t.file_id = f.id
             WHERE f.state = 'published'",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let directory = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let filename = r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
            f(FileBrief {
                id: r.get(0)?,
                directory,
                filename,
                size: r.get::<_, i64>(3)? as u64,
                published_at: r.get(4)?,
                torrent_info_len: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
            });
        }
        Ok(())
    }

    /// Streams (file id, name, version, meta_source) of each live package: what `pkgs/`
    /// lists.
    pub fn for_each_package_version(
        &self,
        mut f: impl FnMut(i64, &str, Option<&str>, &str),
    ) -> Result<()> {
        let mut stmt = self.conn.prepare(
            "SELECT p.file_id, p.name, p.version, p.meta_source
             FROM packages p JOIN files f ON f.id = p.file_id
             WHERE f.state = 'published' ORDER BY p.name, p.file_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let version = r
                .get_ref(2)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
            let meta_source = r.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?;
            f(r.get(0)?, name, version, meta_source);
        }
        Ok(())
    }

    /// A package's entry list, in archive order.
    pub fn entries(&self, file_id: i64) -> Result<Vec<Entry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, kind, mode, size, mtime, uid, gid, link_target, data_offset, sha256,
                    layout
             FROM entries WHERE file_id = ? ORDER BY data_offset, path",
        )?;
        let rows = stmt
            .query_map([file_id], entry_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One entry of a package by path: a primary-key lookup, so serving one path never
    /// loads the whole list.
    pub fn entry(&self, file_id: i64, path: &str) -> Result<Option<Entry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, kind, mode, size, mtime, uid, gid, link_target, data_offset, sha256,
                    layout
             FROM entries WHERE file_id = ? AND path = ?",
        )?;
        Ok(stmt
            .query_row(params![file_id, path], entry_row)
            .optional()?)
    }

    /// Whether any entry lies below directory `dir` ("" is the package root): how a
    /// directory the archive implies but does not list is recognised, by a range query on
    /// the primary key (`'0'` is the byte after `'/'`).
    pub fn has_entries_below(&self, file_id: i64, dir: &str) -> Result<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 1 FROM entries WHERE file_id = ?1 AND path > ?2 AND path < ?3 LIMIT 1",
        )?;
        let (lo, hi) = if dir.is_empty() {
            (String::new(), "\u{10ffff}".to_string())
        } else {
            (format!("{dir}/"), format!("{dir}0"))
        };
        Ok(stmt
            .query_row(params![file_id, lo, hi], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The span of a gzip payload holding uncompressed `offset`: from the last seek point at
    /// or before it (0 if none) to the next one (None: to the end). Two primary-key range
    /// queries, so a first read does not load every point of a large package.
    pub fn seek_span(&self, file_id: i64, offset: u64) -> Result<(u64, Option<u64>)> {
        let start: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT uncompressed_offset FROM seek_points WHERE file_id = ?1
                 AND uncompressed_offset <= ?2 ORDER BY uncompressed_offset DESC LIMIT 1",
            )?
            .query_row(params![file_id, offset as i64], |r| r.get(0))
            .optional()?;
        let end: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT uncompressed_offset FROM seek_points WHERE file_id = ?1
                 AND uncompressed_offset > ?2 ORDER BY uncompressed_offset LIMIT 1",
            )?
            .query_row(params![file_id, offset as i64], |r| r.get(0))
            .optional()?;
        Ok((start.map_or(0, |s| s as u64), end.map(|e| e as u64)))
    }

    /// One seek point, window included, by its uncompressed offset.
    pub fn seek_point(&self, file_id: i64, out: u64) -> Result<Option<SeekPoint>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT compressed_offset, bits, window FROM seek_points
             WHERE file_id = ? AND uncompressed_offset = ?",
        )?;
        let row = stmt
            .query_row(params![file_id, out as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u8,
                    r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                ))
            })
            .optional()?;
        row.map(|(inp, bits, packed)| seek_point(file_id, out, inp, bits, &packed))
            .transpose()
    }

    /// The seekable twins of published packages: twin sha256 → the package's file id.
    pub fn published_twins(&self) -> Result<HashMap<String, i64>> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT d.sha256, d.file_id FROM derived d
                 JOIN files f ON f.id = d.file_id WHERE f.state = 'published'",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(rows)
    }

    /// The seekable form of a package's payload, if the publication made one.
    pub fn derived(&self, file_id: i64) -> Result<Option<Derived>> {
        let sha256: Option<String> = self
            .conn
            .prepare_cached("SELECT sha256 FROM derived WHERE file_id = ?")?
            .query_row([file_id], |r| r.get(0))
            .optional()?;
        let Some(sha256) = sha256 else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT uncompressed_offset, uncompressed_size, compressed_offset, compressed_size
             FROM frames WHERE file_id = ? ORDER BY uncompressed_offset",
        )?;
        let frames = stmt
            .query_map([file_id], |r| {
                Ok(Frame {
                    out: r.get::<_, i64>(0)? as u64,
                    out_len: r.get::<_, i64>(1)? as u64,
                    inp: r.get::<_, i64>(2)? as u64,
                    in_len: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Derived { sha256, frames }))
    }

    /// Seek points of a gzip payload, by uncompressed offset (windows stored deflated).
    pub fn seek_points(&self, file_id: i64) -> Result<Vec<SeekPoint>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT uncompressed_offset, compressed_offset, bits, window FROM seek_points
             WHERE file_id = ? ORDER BY uncompressed_offset",
        )?;
        let rows = stmt
            .query_map([file_id], |r| {
                let window: Vec<u8> = r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default();
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u8,
                    window,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(out, inp, bits, packed)| seek_point(file_id, out, inp, bits, &packed))
            .collect()
    }

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

    /// Infohash and info-dictionary length of every published file's torrent: what dists/
    /// lists (the .torrent's size follows from it) without loading the pieces.
    pub fn torrents(&self) -> Result<HashMap<i64, (String, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.file_id, t.info_hash, length(t.info) FROM torrents t
             JOIN files f ON f.id = t.file_id WHERE f.state = 'published'",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get::<_, i64>(2)? as u64)))
            })?
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(rows)
    }

    /// Every object a primary seeds: (sha256, infohash) of each published file with a
    /// torrent and of each published package's seekable twin.
    pub fn seedable_objects(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.sha256, t.info_hash FROM torrents t
             JOIN files f ON f.id = t.file_id WHERE f.state = 'published'
             UNION
             SELECT d.sha256, d.info_hash FROM derived d
             JOIN files f ON f.id = d.file_id
             WHERE f.state = 'published' AND d.info IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The bencoded info dictionary of a file's torrent.
    pub fn torrent_info(&self, file_id: i64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT info FROM torrents WHERE file_id = ?")?
            .query_row([file_id], |r| r.get(0))
            .optional()?)
    }

    /// Published, non-empty files without a torrent (published before torrents existed).
    pub fn files_without_torrent(&self) -> Result<Vec<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files
             WHERE state = 'published' AND size > 0
               AND NOT EXISTS (SELECT 1 FROM torrents t WHERE t.file_id = files.id)
             ORDER BY id"
        );
        let rows = self
            .conn
            .prepare(&sql)?
            .query_map([], file_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn put_torrent(&mut self, file_id: i64, info_hash: &str, info: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO torrents (file_id, info_hash, info) VALUES (?1, ?2, ?3)",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    /// Changes whenever another connection commits: the views' cue to reload.
    pub fn data_version(&self) -> Result<i64> {
        // Asked on every view operation: keep the statement prepared.
        Ok(self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?)
    }

    // ---- uploads -----------------------------------------------------------------------

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

    pub fn transaction(&mut self) -> Result<PublishTx<'_>> {
        Ok(PublishTx {
            tx: self.conn.transaction()?,
            generation: std::cell::Cell::new(None),
        })
    }
}

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
    // ---- generations and replicas (the signed index, `fetch::index`) ---------------------

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
        tx.execute(
            "INSERT INTO r.dist_meta SELECT * FROM main.dist_meta
             WHERE directory IN (SELECT directory FROM main.files
                                 WHERE id IN (SELECT id FROM temp.sel))",
            [],
        )?;
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
        let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != MIGRATIONS.len() as i64 {
            return Err(CatalogError::Corrupt(format!(
                "replica has schema version {version}, this repofs has {}",
                MIGRATIONS.len()
            )));
        }
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
    /// file row that would clash with a live one is an error, never silently dropped.
    pub fn apply_replica(
        &mut self,
        src: &Path,
        snapshot: bool,
        settings: &[(&str, String)],
    ) -> Result<()> {
        let c = Connection::open_with_flags(src, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        drop(c);
        if version != MIGRATIONS.len() as i64 {
            return Err(CatalogError::Corrupt(format!(
                "replica has schema version {version}, this repofs has {}",
                MIGRATIONS.len()
            )));
        }
        let src_str = src
            .to_str()
            .ok_or_else(|| CatalogError::Corrupt(format!("path {src:?} is not UTF-8")))?;
        self.conn.execute("ATTACH DATABASE ?1 AS r", [src_str])?;
        let done = self.apply_attached(snapshot, settings);
        let detached = self.conn.execute("DETACH DATABASE r", []);
        done?;
        detached?;
        Ok(())
    }

    fn apply_attached(&mut self, snapshot: bool, settings: &[(&str, String)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
        // Repository metadata: the directories the replica speaks of get its rows, whole.
        if snapshot {
            tx.execute("DELETE FROM main.dist_meta", [])?;
        } else {
            tx.execute(
                "DELETE FROM main.dist_meta WHERE directory IN (SELECT directory FROM r.files)",
                [],
            )?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO main.dist_meta SELECT * FROM r.dist_meta",
            [],
        )?;
        tx.execute_batch(
            "DELETE FROM main.symlinks WHERE EXISTS (SELECT 1 FROM r.changes c
                 WHERE c.kind = 'symlink' AND c.directory = symlinks.directory
                   AND c.name = symlinks.name);
             INSERT OR REPLACE INTO main.symlinks SELECT * FROM r.symlinks;
             INSERT INTO main.settings SELECT key, value FROM r.settings
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
        tx.commit()?;
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

    /// The torrent of a content object by its sha256: a published (else archived) file's, or a
    /// derived object's. Returns (infohash, bencoded info dictionary, object size).
    pub fn object_torrent(&self, sha256: &str) -> Result<Option<(String, Vec<u8>, u64)>> {
        let row = |r: &Row<'_>| -> rusqlite::Result<(String, Vec<u8>, u64)> {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        };
        let file = self
            .conn
            .prepare_cached(
                "SELECT t.info_hash, t.info, f.size FROM torrents t JOIN files f ON f.id = t.file_id
                 WHERE f.sha256 = ? ORDER BY f.state = 'published' DESC, f.id DESC LIMIT 1",
            )?
            .query_row([sha256], row)
            .optional()?;
        if file.is_some() {
            return Ok(file);
        }
        Ok(self
            .conn
            .prepare_cached(
                "SELECT info_hash, info, size FROM derived
                 WHERE sha256 = ? AND info IS NOT NULL LIMIT 1",
            )?
            .query_row([sha256], row)
            .optional()?)
    }

    /// Derived objects made before they had torrents: (file id, sha256, size).
    pub fn derived_without_torrent(&self) -> Result<Vec<(i64, String, u64)>> {
        let rows = self
            .conn
            .prepare(
                "SELECT file_id, sha256, size FROM derived WHERE info IS NULL ORDER BY file_id",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn put_derived_torrent(
        &mut self,
        file_id: i64,
        info_hash: &str,
        info: &[u8],
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE derived SET info_hash = ?2, info = ?3 WHERE file_id = ?1",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    /// The bencoded info dictionary with this infohash (hex): a published file's or its
    /// derived object's.
    pub fn torrent_by_info_hash(&self, info_hash: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT t.info FROM torrents t JOIN files f ON f.id = t.file_id
                 WHERE t.info_hash = ?1 AND f.state = 'published'
                 UNION ALL
                 SELECT d.info FROM derived d JOIN files f ON f.id = d.file_id
                 WHERE d.info_hash = ?1 AND f.state = 'published'
                 LIMIT 1",
            )?
            .query_row([info_hash], |r| r.get(0))
            .optional()?)
    }
}

const FILE_COLUMNS: &str = "id, directory, filename, kind, name, version, size, sha256, md5, \
                            uploader, upload_id, published_at, state, archived_at";

/// Maps `SELECT path, kind, mode, size, mtime, uid, gid, link_target, data_offset, sha256,
/// layout`.
fn entry_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    let kind: String = r.get(1)?;
    Ok(Entry {
        path: r.get(0)?,
        kind: match kind.as_str() {
            "dir" => EntryKind::Dir,
            "symlink" => EntryKind::Symlink,
            "hardlink" => EntryKind::Hardlink,
            _ => EntryKind::File,
        },
        mode: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        mtime: r.get(4)?,
        uid: r.get::<_, i64>(5)? as u64,
        gid: r.get::<_, i64>(6)? as u64,
        link_target: r.get(7)?,
        data_offset: r.get::<_, i64>(8)? as u64,
        sha256: r.get(9)?,
        layout: match r.get::<_, Option<String>>(10)? {
            None => Layout::Contiguous,
            Some(j) => serde_json::from_str(&j).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    10,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        },
    })
}

const PACKAGE_COLUMNS: &str = "p.file_id, p.format, p.meta_source, p.name, p.version, p.arch, \
    p.description, p.depends, p.payload_offset, p.payload_size, p.payload_compression, \
    p.unpacked_size, p.entry_count, f.sha256, f.published_at";

/// Maps `SELECT {PACKAGE_COLUMNS}`.
fn package_row(r: &Row<'_>) -> rusqlite::Result<PackageRow> {
    let depends: String = r.get(7)?;
    Ok(PackageRow {
        file_id: r.get(0)?,
        format: r.get(1)?,
        meta_source: r.get(2)?,
        name: r.get(3)?,
        version: r.get(4)?,
        arch: r.get(5)?,
        description: r.get(6)?,
        depends: serde_json::from_str(&depends).unwrap_or_default(),
        payload_offset: r.get::<_, i64>(8)? as u64,
        payload_size: r.get::<_, i64>(9)? as u64,
        compression: r.get(10)?,
        unpacked_size: r.get::<_, i64>(11)? as u64,
        entry_count: r.get::<_, i64>(12)? as u64,
        sha256: r.get(13)?,
        published_at: r.get(14)?,
    })
}

fn file_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        directory: r.get(1)?,
        filename: r.get(2)?,
        kind: r.get(3)?,
        name: r.get(4)?,
        version: r.get(5)?,
        size: r.get::<_, i64>(6)? as u64,
        sha256: r.get(7)?,
        md5: r.get(8)?,
        uploader: r.get(9)?,
        upload_id: r.get(10)?,
        published_at: r.get(11)?,
        state: r.get(12)?,
        archived_at: r.get(13)?,
    })
}

fn insert_upload(tx: &Transaction<'_>, u: &NewUpload) -> Result<i64> {
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

/// One publication in progress. Dropping it without `commit` rolls everything back, so an
/// upload rejected half-way (say, its third directive line fails) changes nothing.
pub struct PublishTx<'c> {
    tx: Transaction<'c>,
    /// The generation this transaction's changes belong to, allocated at the first change.
    generation: std::cell::Cell<Option<i64>>,
}

impl PublishTx<'_> {
    /// Logs one change of the published view under this transaction's generation.
    fn log_change(
        &self,
        kind: &str,
        file_id: Option<i64>,
        symlink: Option<(&str, &str)>,
    ) -> Result<()> {
        let generation = match self.generation.get() {
            Some(g) => g,
            None => {
                let g: i64 = self.tx.query_row(
                    "SELECT COALESCE(MAX(generation), 0) + 1 FROM generations",
                    [],
                    |r| r.get(0),
                )?;
                self.tx.execute(
                    "INSERT INTO generations (generation, created_at) VALUES (?1, ?2)",
                    params![g, now()],
                )?;
                self.generation.set(Some(g));
                g
            }
        };
        self.tx.execute(
            "INSERT INTO changes (generation, kind, file_id, directory, name)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                generation,
                kind,
                file_id,
                symlink.map(|s| s.0),
                symlink.map(|s| s.1)
            ],
        )?;
        Ok(())
    }

    pub fn insert_upload(&self, u: &NewUpload) -> Result<i64> {
        insert_upload(&self.tx, u)
    }

    pub fn set_upload_message(&self, id: i64, message: &str) -> Result<()> {
        self.tx.execute(
            "UPDATE uploads SET message = ?2 WHERE id = ?1",
            params![id, message],
        )?;
        Ok(())
    }

    pub fn live_file(&self, directory: &str, filename: &str) -> Result<Option<FileRow>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files
             WHERE directory = ? AND filename = ? AND state = 'published'"
        );
        Ok(self
            .tx
            .query_row(&sql, [directory, filename], file_row)
            .optional()?)
    }

    /// Whether anything is published below `path` (i.e. `path` is a directory in dists/).
    pub fn is_directory(&self, path: &str) -> Result<bool> {
        let like = format!(
            "{}/%",
            path.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let n: i64 = self.tx.query_row(
            "SELECT (SELECT COUNT(*) FROM files WHERE state = 'published'
                       AND (directory = ?1 OR directory LIKE ?2 ESCAPE '\\'))
                  + (SELECT COUNT(*) FROM symlinks WHERE directory = ?1 OR directory LIKE ?2 ESCAPE '\\')",
            params![path, like],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn insert_file(&self, f: &NewFile<'_>) -> Result<i64> {
        self.tx.execute(
            "INSERT INTO files (directory, filename, kind, sha256, md5, size, name, version,
                                uploader, upload_id, published_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'published')",
            params![
                f.directory,
                f.filename,
                f.kind,
                f.sha256,
                f.md5,
                f.size as i64,
                f.name,
                f.version,
                f.uploader,
                f.upload_id,
                now()
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        self.log_change("file", Some(id), None)?;
        Ok(id)
    }

    pub fn insert_package(&self, file_id: i64, p: &Inspection) -> Result<()> {
        self.tx.execute(
            "INSERT INTO packages (file_id, format, meta_source, name, version, arch, description,
                                   depends, metadata, payload_offset, payload_size,
                                   payload_compression, unpacked_size, entry_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                file_id,
                p.format.as_str(),
                p.meta.source.as_str(),
                p.meta.name,
                p.meta.version,
                p.meta.arch,
                p.meta.description,
                json(&p.meta.depends),
                json(&p.meta.fields),
                p.payload.offset as i64,
                p.payload.size as i64,
                p.payload.compression.as_str(),
                p.unpacked_size as i64,
                p.entries.len() as i64
            ],
        )?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO entries (file_id, path, kind, mode, size, mtime, uid, gid,
                                             link_target, data_offset, sha256, layout)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for e in &p.entries {
            stmt.execute(params![
                file_id,
                e.path,
                match e.kind {
                    EntryKind::File => "file",
                    EntryKind::Dir => "dir",
                    EntryKind::Symlink => "symlink",
                    EntryKind::Hardlink => "hardlink",
                },
                e.mode,
                e.size as i64,
                e.mtime,
                e.uid as i64,
                e.gid as i64,
                e.link_target,
                e.data_offset as i64,
                e.sha256,
                (e.layout != Layout::Contiguous).then(|| json(&e.layout))
            ])?;
        }
        self.insert_seek_points(file_id, &p.seek_points)
    }

    pub fn insert_torrent(&self, file_id: i64, info_hash: &str, info: &[u8]) -> Result<()> {
        self.tx.execute(
            "INSERT INTO torrents (file_id, info_hash, info) VALUES (?1, ?2, ?3)",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    pub fn insert_seek_points(&self, file_id: i64, points: &[SeekPoint]) -> Result<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO seek_points
                 (file_id, uncompressed_offset, compressed_offset, bits, window)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for p in points {
            stmt.execute(params![
                file_id,
                p.out as i64,
                p.inp as i64,
                p.bits as i64,
                deflate(&p.window)
            ])?;
        }
        Ok(())
    }

    /// Records the seekable form of package `file_id`'s payload (object staged by the caller).
    pub fn insert_derived(&self, file_id: i64, size: u64, d: &Derived) -> Result<()> {
        self.tx.execute(
            "INSERT INTO derived (file_id, kind, sha256, size) VALUES (?1, 'zstd-frames', ?2, ?3)",
            params![file_id, d.sha256, size as i64],
        )?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO frames (file_id, uncompressed_offset, uncompressed_size,
                                 compressed_offset, compressed_size)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for f in &d.frames {
            stmt.execute(params![
                file_id,
                f.out as i64,
                f.out_len as i64,
                f.inp as i64,
                f.in_len as i64
            ])?;
        }
        Ok(())
    }

    /// The torrent of package `file_id`'s derived object (inserted just before).
    pub fn set_derived_torrent(&self, file_id: i64, info_hash: &str, info: &[u8]) -> Result<()> {
        self.tx.execute(
            "UPDATE derived SET info_hash = ?2, info = ?3 WHERE file_id = ?1",
            params![file_id, info_hash, info],
        )?;
        Ok(())
    }

    /// Takes a file offline; its row and content stay (archived, never destroyed).
    pub fn archive_file(&self, id: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE files SET state = 'archived', archived_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        self.log_change("archive", Some(id), None)
    }

    pub fn symlink(&self, directory: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT target FROM symlinks WHERE directory = ? AND name = ?",
                [directory, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_symlink(
        &self,
        directory: &str,
        name: &str,
        target: &str,
        upload_id: i64,
    ) -> Result<()> {
        self.tx.execute(
            "INSERT OR REPLACE INTO symlinks (directory, name, target, upload_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![directory, name, target, upload_id, now()],
        )?;
        self.log_change("symlink", None, Some((directory, name)))
    }

    pub fn remove_symlink(&self, directory: &str, name: &str) -> Result<bool> {
        let removed = self.tx.execute(
            "DELETE FROM symlinks WHERE directory = ? AND name = ?",
            [directory, name],
        )? > 0;
        if removed {
            self.log_change("symlink", None, Some((directory, name)))?;
        }
        Ok(removed)
    }

    pub fn use_signature(&self, digest: &[u8], upload_id: i64) -> Result<()> {
        self.tx.execute(
            "INSERT INTO used_signatures (digest, upload_id, used_at) VALUES (?1, ?2, ?3)",
            params![digest, upload_id, now()],
        )?;
        Ok(())
    }

    /// Whether this transaction changed the published view (it has a generation).
    pub fn changed(&self) -> bool {
        self.generation.get().is_some()
    }

    /// When this transaction's generation was made, if it has one.
    pub fn generation_time(&self) -> Result<Option<i64>> {
        let Some(g) = self.generation.get() else {
            return Ok(None);
        };
        Ok(self
            .tx
            .query_row(
                "SELECT created_at FROM generations WHERE generation = ?",
                [g],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Logs file `id` as changed again (its rows are immutable, so a mirror applying it twice
    /// changes nothing): a delta then carries rows added to it later, such as a backfilled
    /// repository signature.
    pub fn touch_file(&self, id: i64) -> Result<()> {
        self.log_change("file", Some(id), None)
    }

    /// Logs a change for directory `dir` without changing a file: the backfill of its
    /// repository metadata must reach mirrors, and a delta carries the metadata of the
    /// directories of the files it names. Logs the directory's first live file again (its
    /// rows are immutable, so applying it twice changes nothing). False if it has none.
    pub fn touch_directory(&self, dir: &str) -> Result<bool> {
        let id: Option<i64> = self
            .tx
            .query_row(
                "SELECT MIN(id) FROM files WHERE directory = ? AND state = 'published'",
                [dir],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match id {
            Some(id) => {
                self.log_change("file", Some(id), None)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The live packages of `dir` whose metadata source is `meta_source`, with their file
    /// rows and the metadata fields as JSON (text), in file-id order.
    pub fn dist_packages(&self, dir: &str, meta_source: &str) -> Result<Vec<DistPackage>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS},
                    (SELECT metadata FROM packages p WHERE p.file_id = files.id),
                    (SELECT unpacked_size FROM packages p WHERE p.file_id = files.id),
                    (SELECT sig FROM repo_sigs s WHERE s.file_id = files.id)
             FROM files
             WHERE directory = ?1 AND state = 'published'
               AND id IN (SELECT file_id FROM packages WHERE meta_source = ?2)
             ORDER BY id"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([dir, meta_source], |r| {
                Ok(DistPackage {
                    file: file_row(r)?,
                    metadata: r.get(14)?,
                    unpacked_size: r.get::<_, i64>(15)? as u64,
                    repo_sig: r.get(16)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The paths a package holds and whether each is a directory, sorted by path.
    pub fn package_paths(&self, file_id: i64) -> Result<Vec<(String, bool)>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT path, kind = 'dir' FROM entries WHERE file_id = ? ORDER BY path",
        )?;
        let rows = stmt
            .query_map([file_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The repository key's signature of package `file_id` (made from the store copy).
    pub fn put_repo_sig(&self, file_id: i64, sig: &[u8]) -> Result<()> {
        self.tx.execute(
            "INSERT OR REPLACE INTO repo_sigs (file_id, sig) VALUES (?1, ?2)",
            params![file_id, sig],
        )?;
        Ok(())
    }

    /// Replaces the repository metadata of `dir` (none: the directory has none now). Files
    /// named `by-hash/...` are kept from the `keep_by_hash` newest generations that made any,
    /// so a client that read the previous Release can still fetch the index it names.
    pub fn set_dist_meta(
        &self,
        dir: &str,
        files: &[(String, Vec<u8>)],
        keep_by_hash: usize,
    ) -> Result<()> {
        let made = self.generation.get().unwrap_or(0);
        if files.is_empty() {
            self.tx
                .execute("DELETE FROM dist_meta WHERE directory = ?", [dir])?;
            return Ok(());
        }
        self.tx.execute(
            "DELETE FROM dist_meta WHERE directory = ? AND name NOT LIKE 'by-hash/%'",
            [dir],
        )?;
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO dist_meta (directory, name, data, made)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (name, data) in files {
            stmt.execute(params![dir, name, data, made])?;
        }
        self.tx.execute(
            "DELETE FROM dist_meta WHERE directory = ?1 AND name LIKE 'by-hash/%'
               AND made NOT IN (SELECT DISTINCT made FROM dist_meta
                                WHERE directory = ?1 AND name LIKE 'by-hash/%'
                                ORDER BY made DESC LIMIT ?2)",
            params![dir, keep_by_hash as i64],
        )?;
        Ok(())
    }

    pub fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}

/// A live package as the repository metadata needs it (`PublishTx::dist_packages`).
#[derive(Debug, Clone)]
pub struct DistPackage {
    pub file: FileRow,
    /// The metadata file's fields, JSON object text (`packages.metadata`).
    pub metadata: String,
    pub unpacked_size: u64,
    pub repo_sig: Option<Vec<u8>>,
}

/// Windows are 32 KiB of mostly text: deflated they take a fraction of that in the database.
fn deflate(window: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(window);
    e.finish().unwrap_or_default()
}

/// A seek point as stored: its window is kept deflated.
fn seek_point(file_id: i64, out: u64, inp: u64, bits: u8, packed: &[u8]) -> Result<SeekPoint> {
    Ok(SeekPoint {
        out,
        inp,
        bits,
        window: inflate(packed).map_err(|e| {
            CatalogError::Corrupt(format!("seek point window of file {file_id}: {e}"))
        })?,
    })
}

fn inflate(packed: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(32 << 10);
    flate2::read::DeflateDecoder::new(packed)
        .take(64 << 10)
        .read_to_end(&mut out)?;
    Ok(out)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
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
        m.apply_replica(&delta(&p, dir.path(), 0, 1, false), false, &[])
            .unwrap();
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
                .apply_replica(&delta(&p, dir.path(), g - 1, g, false), false, &[])
                .unwrap();
        }
        drop(staging);
        m.apply_replica(
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
        old.apply_replica(&delta(&p, dir.path(), 0, 1, false), false, &[])
            .unwrap();
        old.apply_replica(&delta(&p, dir.path(), 0, 5, true), true, &[])
            .unwrap();
        assert_eq!(view(&old), view(&p));
        assert_eq!(old.generation_time().unwrap(), p.generation_time().unwrap());
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
        assert!(m.apply_replica(&r, true, &[]).is_err());
        assert!(Catalog::replica_meta(&r).is_err());
    }

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

    #[test]
    fn reopening_keeps_data_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let mut c = Catalog::open(&path).unwrap();
        c.put_key("ABCD", b"cert", Some("a"), "dir").unwrap();
        drop(c);
        let c = Catalog::open(&path).unwrap();
        assert_eq!(c.keys().unwrap()[0].directories, vec!["dir".to_string()]);
    }
}
