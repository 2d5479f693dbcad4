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
