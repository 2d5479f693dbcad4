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
//!
//! One `Catalog` (one connection) with its methods spread over files by what they serve:
//! - `mod.rs` (here): opening the database, the row types the rest of the crate sees, and
//!   the functions that map SQL rows to them (shared by every file below).
//! - `schema.rs`: the schema as a list of migrations, and `migrate`.
//! - `keys.rs`: uploader keys and their directory grants.
//! - `uploads.rs`: upload verdicts and used directive signatures.
//! - `publish.rs`: `PublishTx`, the publication transaction (every write to the published view).
//! - `views.rs`: what the views and the CLI read: files, symlinks, packages, listings, deps.
//! - `entries.rs`: inside a package: entries, gzip seek points, zstd frames of derived twins.
//! - `torrents.rs`: torrent rows of files and twins.
//! - `settings.rs`: the `settings` key/value table.
//! - `replica.rs`: generations and the replicas of the signed index (export and apply);
//!   `adopt.rs`: a mirror's first snapshot put in the catalog's place whole;
//!   `metarefs.rs`: the repository metadata in them (large files named by hash in a delta).
//! - `watch.rs`: whether the catalog may have changed, without asking SQLite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Row};
use serde::Serialize;

use crate::archive::{Entry, EntryKind, Layout};

mod adopt;
mod corrupt;
mod entries;
mod keys;
mod metarefs;
mod publish;
mod replica;
mod schema;
mod settings;
mod torrents;
mod trust;
mod uploads;
mod views;
mod watch;

pub use metarefs::{MetaRef, INLINE_MAX};
pub use publish::PublishTx;
pub use replica::{ReplicaMeta, Resolver};
pub use uploads::UploadCounts;
pub use watch::Watch;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("catalog schema version {found} is newer than this repofs understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("catalog: corrupt row: {0}")]
    Corrupt(String),
    #[error("catalog file: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

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
    /// The path it was opened by, and the file (device, inode) that path named then: a
    /// mirror's first snapshot replaces the file (`adopt_replica`), and `follow` reopens.
    path: PathBuf,
    file: Option<(u64, u64)>,
    /// How many times this handle reopened (`follow`): part of `data_version`.
    epoch: i64,
}

/// A published (or archived) file as `repofs list` reports it. It serializes as `repofs list
/// --json` prints it: without the catalog's row id, times as RFC 3339 text.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileRow {
    #[serde(skip_serializing)]
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
    #[serde(serialize_with = "rfc3339_or_null")]
    pub archived_at: Option<i64>,
}

fn rfc3339<S: serde::Serializer>(t: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::time::rfc3339(*t))
}

fn rfc3339_or_null<S: serde::Serializer>(
    t: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&crate::time::rfc3339(*t)),
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

/// A store object refused from seeding: a first read found `piece` changed (`why`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CorruptObject {
    pub sha256: String,
    pub piece: u64,
    pub why: String,
    pub found_at: i64,
}

/// A local uid trusted for a directory and below ("" = everywhere), by `repofs trust`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRow {
    pub uid: u32,
    pub directory: String,
    pub added_at: i64,
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
        // The file the connection reads is the one the path named both before and after
        // opening (it is replaced at most once, by `adopt_replica`).
        let mut tries = 0;
        loop {
            let before = file_id(path);
            let mut conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(30))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            schema::migrate(&mut conn)?;
            let file = file_id(path);
            tries += 1;
            if before == file || tries == 3 {
                return Ok(Catalog {
                    conn,
                    path: path.to_path_buf(),
                    file,
                    epoch: 0,
                });
            }
        }
    }

    /// Reopens the catalog if its path names another file than this connection reads (a
    /// mirror's first snapshot was put in its place); true if it did. Readers that keep a
    /// connection call it before `data_version`, which then changes too.
    pub fn follow(&mut self) -> Result<bool> {
        let now = file_id(&self.path);
        if now.is_none() || now == self.file {
            return Ok(false);
        }
        let mut fresh = Catalog::open(&self.path)?;
        fresh.epoch = self.epoch + 1;
        *self = fresh;
        Ok(true)
    }

    /// Changes whenever another connection commits, or this handle reopened (`follow`): the
    /// views' cue to reload.
    pub fn data_version(&self) -> Result<i64> {
        // Asked on every view operation: keep the statement prepared.
        let v: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        // SQLite's counter is 32 bits.
        Ok((self.epoch << 32) + v)
    }
}

/// The (device, inode) of the file `path` names, symlinks followed (as SQLite does).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `repofs list --json` prints file rows: no id, times as RFC 3339, fields in this order.
    #[test]
    fn a_file_row_serializes_as_repofs_list_prints_it() {
        let mut row = FileRow {
            id: 7,
            directory: "d".into(),
            filename: "f".into(),
            kind: "plain".into(),
            name: None,
            version: Some("1".into()),
            size: 3,
            sha256: "s".into(),
            md5: "m".into(),
            uploader: "u".into(),
            upload_id: 2,
            published_at: 86400,
            state: "published".into(),
            archived_at: None,
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"directory":"d","filename":"f","kind":"plain","name":null,"version":"1","size":3,"sha256":"s","md5":"m","uploader":"u","upload_id":2,"published_at":"1970-01-02T00:00:00Z","state":"published","archived_at":null}"#
        );
        row.archived_at = Some(0);
        assert!(serde_json::to_string(&row)
            .unwrap()
            .ends_with(r#""archived_at":"1970-01-01T00:00:00Z"}"#));
    }
}
