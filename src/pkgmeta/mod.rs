//! apt and pacman repository metadata for the dists/ directories that hold such packages.
//!
//! A directory holding `.deb` packages gets a flat apt repository (`Packages`, `Packages.xz`,
//! `Release`, `InRelease`, `Release.gpg`); one holding pacman packages gets `DIR.db`,
//! `DIR.files` and their `.sig`s as `repo-add --sign` makes them (DIR: the directory's last
//! path component, the `[DIR]` section of pacman.conf).
//!
//! Why stored, not rendered on open: the signed parts can only be made where the secret key
//! is (the primary), and their hashes pin the bytes of `Packages.xz`, `.db` and `.files`. So
//! `refresh` renders everything in the publication transaction that changes the directory
//! (`ingest::publish`: an upload, a replacement, an `archive:`) and stores it in the catalog
//! (`dist_meta`); the mount and HTTP serve those bytes as they are. Because metadata and files
//! change in one transaction, no reader ever sees an index naming a file it cannot fetch, nor
//! a file missing from the index. Rendering and signing 10,000 packages took 1.0 s in a debug
//! build (bench/apt.sh).
//!
//! How a mirror gets them, at a cost in proportion to the change: a delta carries the small
//! signed files whole (Release, InRelease, Release.gpg, `.sig`s) and names the large unsigned
//! ones (Packages, Packages.xz and its by-hash copies, DIR.db, DIR.files) by sha256 and size
//! (`catalog::MetaRef`). The mirror makes those inside the transaction that applies the
//! delta (`fetch::index::mirror`): bytes it already holds with that hash (the previous
//! Packages.xz is the by-hash copy kept now), else `unsigned`, this module's own code over
//! the rows it has just replicated with the generation's time, else the upstream's copy,
//! checked. A file is kept only if its hash is the primary's, so a mirror whose compressor
//! build differs stays byte-identical and only pays the bytes. One new `.deb` among 2,000:
//! a 5.4 KB delta instead of 199 KB (tests/mounts/meta_deltas.rs; 60,000: bench/RESULTS.md).
//! Passed over: apt's pdiffs (a client-side scheme; the primary still re-makes Packages.xz
//! and the Release still pins it), a Packages.xz of independent xz blocks (apt reads only the
//! first of concatenated xz streams, and a single stream of blocks would still resend the
//! changed blocks and its index), and CVMFS-style nested catalogs (the rows already travel
//! one by one; only the files derived from them did not).
//!
//! Nothing here reads package content: every field comes from the catalog (control fields,
//! .PKGINFO fields, sizes, hashes, entry lists), except the repository key's signature of a
//! pacman package (`%PGPSIG%`; `SigLevel = Required` checks packages too), which
//! `sign_package` makes from the store copy at publication, before the transaction.

pub mod apt;
pub mod pacman;

use std::path::Path;

use crate::catalog::{CatalogError, PublishTx};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("signing repository metadata: {0:#}")]
    Sign(anyhow::Error),
    #[error("rendering repository metadata: {0}")]
    Io(#[from] std::io::Error),
}

/// Renders, signs and stores the metadata of `dir` from the catalog rows as this transaction
/// sees them (replacing what was there; a directory with no such packages keeps none).
/// `time` is the generation's time, the `Date:` of Release and the mtime in the pacman db.
pub fn refresh(tx: &PublishTx<'_>, dir: &str, repo_key: &Path) -> Result<(), MetaError> {
    let time = tx.generation_time()?.unwrap_or_else(crate::time::now);
    let mut files = Vec::new();
    let debs = tx.dist_packages(dir, "deb")?;
    if !debs.is_empty() {
        files.extend(apt::render(dir, &debs, time, repo_key)?);
    }
    let pkgs = tx.dist_packages(dir, "pkginfo")?;
    if let (false, Some(name)) = (pkgs.is_empty(), pacman::repo_name(dir)) {
        files.extend(pacman::render(tx, name, &pkgs, time, repo_key)?);
    }
    tx.set_dist_meta(dir, &files, apt::BY_HASH_GENERATIONS)?;
    Ok(())
}

/// What a mirror makes itself of `dir`'s metadata (`fetch::index::mirror`): the files
/// `refresh` renders that need no key (`Packages`, `Packages.xz` and its by-hash name for
/// `.deb`s if `apt`; `DIR.db`, `DIR.files` for pacman packages if `pacman`), from the rows as
/// this transaction sees them, with `time` as the generation's time. The same code and rows
/// as on the primary give the same bytes, unless the compressor build differs: the caller
/// keeps a file only if its hash is the primary's.
pub fn unsigned(
    tx: &PublishTx<'_>,
    dir: &str,
    time: i64,
    apt: bool,
    pacman: bool,
) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
    let mut files = Vec::new();
    if apt {
        let debs = tx.dist_packages(dir, "deb")?;
        if !debs.is_empty() {
            let ix = apt::indexes(&debs)?;
            files.push((apt::by_hash(&ix.packages_xz), ix.packages_xz.clone()));
            files.push(("Packages".into(), ix.packages));
            files.push(("Packages.xz".into(), ix.packages_xz));
        }
    }
    let pkgs = if pacman {
        tx.dist_packages(dir, "pkginfo")?
    } else {
        Vec::new()
    };
    if let (false, Some(name)) = (pkgs.is_empty(), pacman::repo_name(dir)) {
        let (db, full) = pacman::databases(tx, &pkgs, time)?;
        files.push((format!("{name}.db"), db));
        files.push((format!("{name}.files"), full));
    }
    Ok(files)
}

/// The repository key's binary detached signature of a package file (its store copy).
pub fn sign_package(repo_key: &Path, object: &Path) -> Result<Vec<u8>, MetaError> {
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(object)?);
    crate::keys::sign_detached_with_repo_key(repo_key, &mut f, false).map_err(MetaError::Sign)
}

/// Whether a file kind of this metadata source gets a repository signature at publication.
pub fn wants_package_sig(meta_source: &str) -> bool {
    meta_source == "pkginfo"
}

/// Start-up on the primary: directories published before this code (or whose metadata is
/// missing) get their metadata, and pacman packages their repository signature, in one
/// transaction that logs the directories as changed, so mirrors receive them too.
pub fn backfill(repo: &mut crate::Repo) -> anyhow::Result<usize> {
    let key = repo.layout.repo_key();
    let unsigned = repo.catalog.pacman_packages_without_sig()?;
    let mut dirs: std::collections::BTreeSet<String> =
        repo.catalog.dirs_without_dist_meta()?.into_iter().collect();
    let mut sigs = Vec::new();
    for f in &unsigned {
        sigs.push((
            f.id,
            sign_package(&key, &repo.store.object_path(&f.sha256))?,
        ));
        dirs.insert(f.directory.clone());
    }
    if dirs.is_empty() {
        return Ok(0);
    }
    let tx = repo.catalog.transaction()?;
    for (id, sig) in &sigs {
        tx.put_repo_sig(*id, sig)?;
        tx.touch_file(*id)?;
    }
    for dir in &dirs {
        if tx.touch_directory(dir)? {
            refresh(&tx, dir, &key)?;
        }
    }
    tx.commit()?;
    tracing::info!(
        directories = dirs.len(),
        signed = sigs.len(),
        "made the apt/pacman metadata of directories published before it"
    );
    Ok(dirs.len())
}
