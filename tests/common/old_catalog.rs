//! Catalogs as an older repofsd left them, for the tests of what repofsd backfills at start.
//! No API makes these states (the library only ever adds what they lack), so this is the one
//! place the tests write the catalog's SQL; everything else reads it through
//! `repofs::catalog::Catalog` ([`Repo::catalog`]).

use super::repo::Repo;

fn open(repo: &Repo) -> rusqlite::Connection {
    rusqlite::Connection::open(repofs::Layout::new(&repo.root).catalog()).expect("open catalog")
}

/// Deletes every torrent, as in a catalog made before torrents existed; returns how many.
pub fn forget_torrents(repo: &Repo) -> usize {
    open(repo)
        .execute("DELETE FROM torrents", [])
        .expect("delete torrents")
}

/// Deletes the repository metadata (apt, pacman) and the packages' repository-key signatures,
/// as in a catalog made before `pkgmeta` existed.
pub fn forget_dist_meta(repo: &Repo) {
    open(repo)
        .execute_batch("DELETE FROM dist_meta; DELETE FROM repo_sigs;")
        .expect("delete repository metadata");
}

/// What `clone_packages` clones: the metadata fields that name a package and describe it,
/// and the file name pattern (`%s`: the new package name).
pub struct CloneAs {
    pub name_field: &'static str,
    pub description_field: &'static str,
    pub filename: &'static str,
}

pub const DEB: CloneAs = CloneAs {
    name_field: "Package",
    description_field: "Description",
    filename: "%s_1.0-1_all.deb",
};

pub const PACMAN: CloneAs = CloneAs {
    name_field: "pkgname",
    description_field: "pkgdesc",
    filename: "%s-1.0-1-x86_64.pkg.tar.zst",
};

/// Clones the published package `template` (a file id) `n` times into its directory, named
/// `clone00001`..., each with the template's bytes and its own name and description (32
/// random bytes in hex: the entropy of a real stanza's hashes), logged as one generation,
/// and deletes the directory's repository metadata: a large directory published before
/// `pkgmeta`, which repofsd renders once at its next start (thousands of real uploads would
/// each re-render the whole directory). Run it while no repofsd writes the catalog.
pub fn clone_packages(repo: &Repo, template: i64, n: usize, how: &CloneAs) {
    let c = open(repo);
    let base = 1_000_000;
    let CloneAs {
        name_field,
        description_field,
        filename,
    } = how;
    c.execute_batch(&format!(
        "BEGIN;
         CREATE TEMP TABLE n (i INTEGER PRIMARY KEY, name TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n})
           INSERT INTO n SELECT i, printf('clone%05d', i) FROM c;
         INSERT INTO generations (generation, created_at)
           SELECT COALESCE(MAX(generation), 0) + 1, strftime('%s', 'now') FROM generations;
         INSERT INTO files (id, directory, filename, kind, sha256, md5, size, name, version,
                            uploader, upload_id, published_at, state)
           SELECT {base} + i, f.directory, printf('{filename}', n.name), f.kind,
                  f.sha256, f.md5, f.size, n.name, f.version, f.uploader,
                  f.upload_id, f.published_at, 'published'
           FROM n, files f WHERE f.id = {template};
         INSERT INTO packages
           SELECT {base} + i, p.format, p.meta_source, n.name, p.version, p.arch,
                  p.description, p.depends,
                  json_set(p.metadata, '$.{name_field}', n.name, '$.{description_field}',
                           printf('clone %d %s', i, hex(randomblob(32)))),
                  p.payload_offset, p.payload_size, p.payload_compression, p.unpacked_size,
                  p.entry_count
           FROM n, packages p WHERE p.file_id = {template};
         INSERT INTO entries SELECT {base} + i, e.path, e.kind, e.mode, e.size, e.mtime, e.uid,
                  e.gid, e.link_target, e.data_offset, e.sha256, e.layout
           FROM n, entries e WHERE e.file_id = {template};
         INSERT INTO seek_points SELECT {base} + i, s.uncompressed_offset, s.compressed_offset,
                  s.bits, s.window FROM n, seek_points s WHERE s.file_id = {template};
         INSERT INTO torrents SELECT {base} + i, t.info_hash, t.info
           FROM n, torrents t WHERE t.file_id = {template};
         INSERT INTO derived SELECT {base} + i, d.kind, d.sha256, d.size, d.info_hash, d.info
           FROM n, derived d WHERE d.file_id = {template};
         INSERT INTO frames SELECT {base} + i, x.uncompressed_offset, x.uncompressed_size,
                  x.compressed_offset, x.compressed_size
           FROM n, frames x WHERE x.file_id = {template};
         INSERT INTO repo_sigs SELECT {base} + i, s.sig
           FROM n, repo_sigs s WHERE s.file_id = {template};
         INSERT INTO changes (generation, kind, file_id)
           SELECT (SELECT MAX(generation) FROM generations), 'file', {base} + i FROM n;
         DELETE FROM dist_meta
           WHERE directory = (SELECT directory FROM files WHERE id = {template});
         COMMIT;"
    ))
    .expect("clone package rows");
}

/// Rewrites the `Description` of package `filename` in this (mirror's) catalog: its own
/// render of the directory's indexes then differs from the primary's.
pub fn alter_description(repo: &Repo, filename: &str) {
    let changed = open(repo)
        .execute(
            "UPDATE packages SET metadata = json_set(metadata, '$.Description', 'altered here')
             WHERE file_id = (SELECT id FROM files WHERE filename = ?1 AND state = 'published')",
            [filename],
        )
        .expect("alter a description");
    assert_eq!(changed, 1, "{filename}");
}
