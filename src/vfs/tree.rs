//! The read-only views as data: `dists/` and `pkgs/`, built from one catalog snapshot.
//!
//! A `Snapshot` holds what `lookup`, `stat` and `readdir` of dists/ and pkgs/ need (names,
//! sizes, times, versions), compactly: ~0.3 KB per package, so a mount of 100,000 stays far
//! below 100 MiB. Rows needed only to open a file (hashes, package metadata) and generated
//! files are read from the catalog when opened; entry lists are loaded per package
//! (`PkgTree`) when someone first looks inside it. Nothing here reads content: sizes, modes
//! and offsets all come from the catalog.

use crate::sync::lock;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroU64;
use std::sync::Mutex;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, FileRow, PackageRow};
use crate::version::{self, Scheme};

mod pkgtree;
pub use pkgtree::{PkgTree, TreeCache, TreeNode};

/// Files generated in every `dists/` directory that holds published files, and the apt and
/// pacman repository metadata (`pkgmeta`) of those that hold such packages, which is stored
/// in the catalog and served as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generated {
    Sha256Sums,
    Md5Sums,
    Index,
    AptPackages,
    AptPackagesXz,
    AptRelease,
    AptInRelease,
    AptReleaseGpg,
    PacmanDb,
    PacmanDbSig,
    PacmanFiles,
    PacmanFilesSig,
    /// `DIR/by-hash/SHA256/HASH`: an apt index of this or an earlier generation, by its
    /// sha256 (`Acquire-By-Hash`).
    ByHash([u8; 32]),
}

impl Generated {
    /// The files of every directory.
    pub const ALL: [Generated; 3] = [Generated::Sha256Sums, Generated::Md5Sums, Generated::Index];
    /// Every kind, in declaration order (a slot keeps the index).
    pub const EVERY: [Generated; 12] = [
        Generated::Sha256Sums,
        Generated::Md5Sums,
        Generated::Index,
        Generated::AptPackages,
        Generated::AptPackagesXz,
        Generated::AptRelease,
        Generated::AptInRelease,
        Generated::AptReleaseGpg,
        Generated::PacmanDb,
        Generated::PacmanDbSig,
        Generated::PacmanFiles,
        Generated::PacmanFilesSig,
    ];

    /// The name, or for pacman's files the suffix after the repository name (`DIR.db`).
    pub fn name(self) -> &'static str {
        match self {
            Generated::Sha256Sums => "SHA256SUMS",
            Generated::Md5Sums => "MD5SUMS",
            Generated::Index => "index.json",
            Generated::AptPackages => "Packages",
            Generated::AptPackagesXz => "Packages.xz",
            Generated::AptRelease => "Release",
            Generated::AptInRelease => "InRelease",
            Generated::AptReleaseGpg => "Release.gpg",
            Generated::PacmanDb => ".db",
            Generated::PacmanDbSig => ".db.sig",
            Generated::PacmanFiles => ".files",
            Generated::PacmanFilesSig => ".files.sig",
            Generated::ByHash(_) => "",
        }
    }

    /// Its place in `EVERY` (None for a by-hash file, which has a slot kind of its own).
    fn index(self) -> Option<u8> {
        Generated::EVERY
            .iter()
            .position(|g| *g == self)
            .map(|i| i as u8)
    }

    /// Whether its bytes are stored in the catalog (`dist_meta`) rather than rendered.
    pub fn stored(self) -> bool {
        !Generated::ALL.contains(&self)
    }

    /// Its file name in directory `dir` (for a by-hash file, the name of its catalog row).
    pub fn file_name(self, dir: &str) -> String {
        match self {
            Generated::ByHash(h) => format!("{BY_HASH}/{}", hex::encode(h)),
            Generated::PacmanDb
            | Generated::PacmanDbSig
            | Generated::PacmanFiles
            | Generated::PacmanFilesSig => {
                format!(
                    "{}{}",
                    crate::pkgmeta::pacman::repo_name(dir).unwrap_or_default(),
                    self.name()
                )
            }
            _ => self.name().to_string(),
        }
    }

    /// The stored kind named `name` in directory `dir`.
    pub fn of_stored(dir: &str, name: &str) -> Option<Generated> {
        Generated::EVERY
            .into_iter()
            .find(|g| g.stored() && g.file_name(dir) == name)
    }
}

/// Where by-hash files live below an apt directory (and their catalog rows' name prefix).
const BY_HASH: &str = "by-hash/SHA256";

/// The apt directory that holds by-hash directory `dir`, and whether it is one.
fn by_hash_base(dir: &str) -> Option<&str> {
    if dir == BY_HASH {
        return Some("");
    }
    dir.strip_suffix(BY_HASH)?.strip_suffix('/')
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistEntry {
    Dir,
    File(i64),
    Symlink(String),
    Generated(Generated),
    /// `FILE.torrent` beside published file FILE (by file id).
    Torrent(i64),
}

/// What the mount keeps of a published file: enough for `stat` and `ls -l`. Hashes and the
/// rest of the row are read from the catalog when the file is opened.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo {
    pub size: u64,
    pub published_at: i64,
    /// Length of its torrent's bencoded info dictionary (the .torrent's size follows);
    /// never 0 (the smallest dictionary is `de`), so the Option costs no space.
    pub torrent_info_len: Option<NonZeroU64>,
    /// Whether it is a live package (pkgs/ shows it).
    pub package: bool,
}

/// A dists/ directory's children, sorted by name (byte order, as `ls` got from a BTreeMap
/// before): one string arena and fixed-size slots, so 100,000 files cost no allocation each.
#[derive(Default)]
struct DistDir {
    names: String,
    slots: Vec<Slot>,
}

struct Slot {
    start: u32,
    len: u32,
    kind: SlotKind,
}

/// `DistEntry` without the symlink target inline (an index into `Snapshot::symlinks`). The
/// order is the precedence when two kinds claim one name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SlotKind {
    Dir,
    File(i64),
    Symlink(u32),
    Torrent(i64),
    Generated(u8),
    /// Index into `Snapshot::by_hash`.
    ByHash(u32),
}

impl DistDir {
    fn push(&mut self, name: &str, kind: SlotKind) {
        let start = self.names.len() as u32;
        self.names.push_str(name);
        self.slots.push(Slot {
            start,
            len: name.len() as u32,
            kind,
        });
    }

    fn name(&self, s: &Slot) -> &str {
        &self.names[s.start as usize..(s.start + s.len) as usize]
    }

    /// Sorts by name and keeps one slot per name, the kind first in `SlotKind` order.
    fn seal(&mut self) {
        let mut slots = std::mem::take(&mut self.slots);
        slots.sort_unstable_by(|a, b| self.name(a).cmp(self.name(b)).then(a.kind.cmp(&b.kind)));
        slots.dedup_by(|b, a| self.name(a) == self.name(b));
        slots.shrink_to_fit();
        self.slots = slots;
    }

    fn get(&self, name: &str) -> Option<SlotKind> {
        let i = self
            .slots
            .binary_search_by(|s| self.name(s).cmp(name))
            .ok()?;
        Some(self.slots[i].kind)
    }
}

/// A package name's (version, file id) list.
type Versions = Box<[(Box<str>, i64)]>;
/// A package name being collected: its name, version scheme and versions so far.
type Pending = (String, Scheme, Vec<(Box<str>, i64)>);

pub struct Snapshot {
    /// `PRAGMA data_version` when loaded: the cue to reload.
    pub version: i64,
    /// dists/ directories ("" is dists/ itself) and their children.
    dirs: HashMap<String, DistDir>,
    symlinks: Vec<String>,
    /// The hashes of the by-hash files (`SlotKind::ByHash`).
    by_hash: Vec<[u8; 32]>,
    /// Sorted by file id (binary search: a third of a HashMap's memory at 100,000 files).
    files: Vec<(i64, FileInfo)>,
    /// The trackers torrents name (as repofsd recorded them), and what they and the framing
    /// add to an info dictionary: a .torrent's size without reading it.
    pub trackers: Vec<String>,
    /// The endpoints (base URLs) that serve objects by hash: BEP 19 web seeds.
    pub web_seeds: Vec<String>,
    pub torrent_overhead: u64,
    /// A mirror's catalog (setting `upstream`, written by repofsd in mirror mode): it takes
    /// no uploads, so the mount shows no incoming/.
    pub mirror: bool,
    /// When the published view last changed (the newest generation's time, else the newest
    /// publication), unix seconds: the time of directories and generated files.
    pub changed: Option<i64>,
    /// A digest of what the views list (published files, symlinks, the generation), below
    /// 10^9: the nanoseconds of the views' directory times, so a directory's time changes
    /// whenever its listing may have, and the kernel drops the listing it cached.
    pub stamp: u32,
    /// Package names, sorted, each with its (version, file id) ascending in the package's
    /// ecosystem's order.
    versions: Vec<(Box<str>, Versions)>,
    /// Sizes of generated files already rendered; their bytes are rendered again on open.
    generated_len: Mutex<HashMap<(String, Generated), u64>>,
}

impl Snapshot {
    pub fn load(cat: &Catalog) -> Result<Snapshot, CatalogError> {
        let version = cat.data_version()?;
        let mut dirs: HashMap<String, DistDir> = HashMap::new();
        dirs.insert(String::new(), DistDir::default());
        let (mut files, newest) = published_files(cat, &mut dirs)?;
        let (generated_len, by_hash) = stored_meta(cat, &mut dirs)?;
        let symlinks = symlinks(cat, &mut dirs)?;
        list_subdirs(&mut dirs);
        for d in dirs.values_mut() {
            d.seal();
        }
        let list = |key: &str| -> Result<Vec<String>, CatalogError> {
            Ok(cat
                .setting(key)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default())
        };
        let (trackers, web_seeds) = (list("trackers")?, list("web_seeds")?);
        // Web seed URLs name a sha256: of one length for every object.
        let torrent_overhead =
            crate::torrent::torrent_file(&[], &trackers, &web_seeds, &"0".repeat(64))
                .map_or(0, |t| t.len() as u64);
        let versions = package_versions(cat, &mut files)?;
        let changed = cat.generation_time()?.or(newest);
        let stamp = stamp(&files, &symlinks, changed);
        Ok(Snapshot {
            version,
            dirs,
            symlinks,
            by_hash,
            files,
            trackers,
            web_seeds,
            torrent_overhead,
            mirror: cat.setting("upstream")?.is_some_and(|u| !u.is_empty()),
            changed,
            stamp,
            versions,
            generated_len: Mutex::new(generated_len),
        })
    }

    /// What the mount keeps of published file `id`.
    pub fn file(&self, id: i64) -> Option<&FileInfo> {
        let i = self.files.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        Some(&self.files[i].1)
    }

    /// Published file `id` if it is a live package.
    pub fn package(&self, id: i64) -> Option<&FileInfo> {
        self.file(id).filter(|f| f.package)
    }

    fn dist_entry_of(&self, kind: SlotKind) -> DistEntry {
        match kind {
            SlotKind::Dir => DistEntry::Dir,
            SlotKind::File(id) => DistEntry::File(id),
            SlotKind::Symlink(i) => {
                DistEntry::Symlink(self.symlinks.get(i as usize).cloned().unwrap_or_default())
            }
            SlotKind::Torrent(id) => DistEntry::Torrent(id),
            SlotKind::Generated(g) => DistEntry::Generated(Generated::EVERY[g as usize]),
            SlotKind::ByHash(i) => match self.by_hash.get(i as usize) {
                Some(h) => DistEntry::Generated(Generated::ByHash(*h)),
                None => DistEntry::Dir,
            },
        }
    }

    /// The entry at `path` below dists/ ("" is dists/ itself).
    pub fn dist_entry(&self, path: &str) -> Option<DistEntry> {
        if self.dirs.contains_key(path) {
            return Some(DistEntry::Dir);
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let kind = self.dirs.get(dir)?.get(name)?;
        Some(self.dist_entry_of(kind))
    }

    /// The children of a dists/ directory, sorted by name.
    pub fn dist_children(&self, path: &str) -> Option<impl Iterator<Item = (&str, DistEntry)>> {
        let d = self.dirs.get(path)?;
        Some(
            d.slots
                .iter()
                .map(move |s| (d.name(s), self.dist_entry_of(s.kind))),
        )
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.versions.iter().map(|(n, _)| &**n)
    }

    /// What pkgs/ lists: unscoped package names, and each npm scope (`@scope`) once.
    pub fn top_names(&self) -> impl Iterator<Item = &str> {
        let mut last_scope = None;
        self.names().filter_map(move |n| match n.split_once('/') {
            None => Some(n),
            Some((scope, _)) if last_scope != Some(scope) => {
                last_scope = Some(scope);
                Some(scope)
            }
            Some(_) => None,
        })
    }

    /// The names in an npm scope (`@types` -> `node`, ...), or None if there is no such scope.
    pub fn scoped(&self, scope: &str) -> Option<Vec<&str>> {
        let prefix = format!("{scope}/");
        let from = self
            .versions
            .partition_point(|(n, _)| &**n < prefix.as_str());
        let names: Vec<&str> = self.versions[from..]
            .iter()
            .map(|(n, _)| &**n)
            .take_while(|n| n.starts_with(&prefix))
            .map(|n| &n[prefix.len()..])
            .collect();
        (!names.is_empty()).then_some(names)
    }

    pub fn versions(&self, name: &str) -> Option<&[(Box<str>, i64)]> {
        let i = self
            .versions
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()?;
        Some(&self.versions[i].1)
    }

    pub fn version_file(&self, name: &str, version: &str) -> Option<i64> {
        self.versions(name)?
            .iter()
            .find(|(v, _)| &**v == version)
            .map(|(_, id)| *id)
    }

    /// `pkgs/NAME/latest` points here: the highest version in the ecosystem's order.
    pub fn latest(&self, name: &str) -> Option<&str> {
        self.versions(name)?.last().map(|(v, _)| &**v)
    }

    /// The size of a generated file. The first ask renders all three of `dir` from one
    /// read of its rows and keeps their sizes for this snapshot (an `ls -l` asks for all).
    pub fn generated_len(
        &self,
        cat: &Catalog,
        dir: &str,
        g: Generated,
    ) -> Result<u64, CatalogError> {
        if let Some(n) = lock(&self.generated_len).get(&(dir.to_string(), g)) {
            return Ok(*n);
        }
        if g.stored() {
            return Ok(0);
        }
        let (files, packages) = self.dir_rows(cat, dir, true)?;
        let mut cache = lock(&self.generated_len);
        for each in Generated::ALL {
            let n = render(dir, each, &files, &packages).len() as u64;
            cache.insert((dir.to_string(), each), n);
        }
        Ok(cache.get(&(dir.to_string(), g)).copied().unwrap_or(0))
    }

    /// The bytes of a generated file: this snapshot's files of `dir`, with their rows read
    /// from the catalog (held only while a handle is open, not per snapshot).
    pub fn generated(
        &self,
        cat: &Catalog,
        dir: &str,
        g: Generated,
    ) -> Result<Vec<u8>, CatalogError> {
        if g.stored() {
            // As stored: the bytes the signed Release / .sig vouch for.
            let base = match g {
                Generated::ByHash(_) => by_hash_base(dir).unwrap_or(dir),
                _ => dir,
            };
            return Ok(cat.dist_meta(base, &g.file_name(dir))?.unwrap_or_default());
        }
        let (files, packages) = self.dir_rows(cat, dir, g == Generated::Index)?;
        Ok(render(dir, g, &files, &packages))
    }

    /// The catalog rows of this snapshot's files in `dir`, in listing order, and (if asked)
    /// their packages' rows.
    fn dir_rows(
        &self,
        cat: &Catalog,
        dir: &str,
        with_packages: bool,
    ) -> Result<(Vec<FileRow>, HashMap<i64, PackageRow>), CatalogError> {
        let Some(d) = self.dirs.get(dir) else {
            return Ok((Vec::new(), HashMap::new()));
        };
        let mut rows: HashMap<i64, FileRow> = cat
            .published_files_in(dir)?
            .into_iter()
            .map(|f| (f.id, f))
            .collect();
        let packages = if with_packages {
            cat.packages_in(dir)?
                .into_iter()
                .map(|p| (p.file_id, p))
                .collect()
        } else {
            HashMap::new()
        };
        let files = d
            .slots
            .iter()
            .filter_map(|s| match s.kind {
                SlotKind::File(id) => rows.remove(&id),
                _ => None,
            })
            .collect();
        Ok((files, packages))
    }
}

// ---- `Snapshot::load`'s steps, in the order it takes them --------------------------------

/// Published files sorted by id, and the newest publication time (unix seconds).
type Published = (Vec<(i64, FileInfo)>, Option<i64>);

/// `Snapshot::stamp`. Every change to a listing adds or removes a published file (ids are
/// never reused) or a symlink, or makes a generation. A mirror's catalog has the same ids,
/// so its directories show the same times as its primary's.
fn stamp(files: &[(i64, FileInfo)], symlinks: &[String], changed: Option<i64>) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    files.len().hash(&mut h);
    for (id, _) in files {
        id.hash(&mut h);
    }
    symlinks.hash(&mut h);
    changed.hash(&mut h);
    (h.finish() % 1_000_000_000) as u32
}

/// Published files into their directories (with the three generated files of every directory
/// that holds one, and each file's `.torrent`).
fn published_files(
    cat: &Catalog,
    dirs: &mut HashMap<String, DistDir>,
) -> Result<Published, CatalogError> {
    let mut files: Vec<(i64, FileInfo)> = Vec::new();
    let mut newest = None;
    cat.for_each_published_file(|f| {
        let d = dir_entry(dirs, f.directory);
        d.push(f.filename, SlotKind::File(f.id));
        if d.slots.len() == 1 {
            for (i, g) in Generated::ALL.iter().enumerate() {
                d.push(g.name(), SlotKind::Generated(i as u8));
            }
        }
        if f.torrent_info_len.is_some() {
            // A published file or symlink of that name wins (slot order).
            let mut name = String::with_capacity(f.filename.len() + 8);
            name.push_str(f.filename);
            name.push_str(".torrent");
            d.push(&name, SlotKind::Torrent(f.id));
        }
        newest = newest.max(Some(f.published_at));
        files.push((
            f.id,
            FileInfo {
                size: f.size,
                published_at: f.published_at,
                torrent_info_len: f.torrent_info_len.and_then(NonZeroU64::new),
                package: false,
            },
        ));
    })?;
    files.sort_unstable_by_key(|(id, _)| *id);
    files.shrink_to_fit();
    Ok((files, newest))
}

/// Sizes of stored generated files by (directory, kind), and the hashes of the by-hash files.
type StoredMeta = (HashMap<(String, Generated), u64>, Vec<[u8; 32]>);

/// Repository metadata (`pkgmeta`): only where the catalog holds it, its sizes known.
fn stored_meta(
    cat: &Catalog,
    dirs: &mut HashMap<String, DistDir>,
) -> Result<StoredMeta, CatalogError> {
    let mut generated_len = HashMap::new();
    let mut by_hash = Vec::new();
    for (dir, name, len) in cat.dist_meta_names()? {
        if !dirs.contains_key(&dir) {
            continue;
        }
        if let Some(hex) = name.strip_prefix(BY_HASH).and_then(|n| n.strip_prefix('/')) {
            let Some(h) = unhex32(hex) else { continue };
            let sub = crate::paths::join(&dir, BY_HASH);
            dir_entry(dirs, &sub).push(hex, SlotKind::ByHash(by_hash.len() as u32));
            by_hash.push(h);
            generated_len.insert((sub, Generated::ByHash(h)), len);
        } else if let Some(g) = Generated::of_stored(&dir, &name) {
            if let (Some(i), Some(d)) = (g.index(), dirs.get_mut(&dir)) {
                d.push(&name, SlotKind::Generated(i));
                generated_len.insert((dir, g), len);
            }
        }
    }
    Ok((generated_len, by_hash))
}

/// Symlinks into their directories; their targets, indexed by `SlotKind::Symlink`.
fn symlinks(
    cat: &Catalog,
    dirs: &mut HashMap<String, DistDir>,
) -> Result<Vec<String>, CatalogError> {
    let mut symlinks = Vec::new();
    for s in cat.symlinks()? {
        // A published file of the same name wins; the catalog forbids that anyway.
        dir_entry(dirs, &s.directory).push(&s.name, SlotKind::Symlink(symlinks.len() as u32));
        symlinks.push(s.target);
    }
    Ok(symlinks)
}

/// Every directory's parents list it.
fn list_subdirs(dirs: &mut HashMap<String, DistDir>) {
    let paths: Vec<String> = dirs.keys().cloned().collect();
    for path in paths {
        let mut parent = "";
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dirs.entry(parent.to_string())
                .or_default()
                .push(part, SlotKind::Dir);
            let end = parent.len() + usize::from(!parent.is_empty()) + part.len();
            parent = &path[..end];
        }
    }
}

/// What pkgs/ shows: package names, sorted, each with its (version, file id) ascending in
/// its ecosystem's order; and marks each live package in `files`.
fn package_versions(
    cat: &Catalog,
    files: &mut [(i64, FileInfo)],
) -> Result<Vec<(Box<str>, Versions)>, CatalogError> {
    // Rows come sorted by name, so each name's versions arrive together.
    let mut versions: Vec<(Box<str>, Versions)> = Vec::new();
    let mut pending: Option<Pending> = None;
    let finish = |p: Pending, out: &mut Vec<(Box<str>, Versions)>| {
        let (name, scheme, mut list) = p;
        list.sort_by(|a, b| version::compare(scheme, &a.0, &b.0).then(a.1.cmp(&b.1)));
        out.push((name.into_boxed_str(), list.into_boxed_slice()));
    };
    cat.for_each_package_version(|id, name, v, meta_source| {
        if let Ok(i) = files.binary_search_by_key(&id, |(id, _)| *id) {
            files[i].1.package = true;
        }
        // Unversioned packages have no pkgs/NAME/VERSION to live in.
        let Some(v) = v else { return };
        if crate::paths::check_filename(v).is_err() || !package_name_ok(name) {
            return;
        }
        if pending.as_ref().is_some_and(|(n, _, _)| n != name) {
            if let Some(p) = pending.take() {
                finish(p, &mut versions);
            }
        }
        let (_, _, list) = pending.get_or_insert_with(|| {
            (
                name.to_string(),
                Scheme::for_meta_source(meta_source),
                Vec::new(),
            )
        });
        match list.iter_mut().find(|(have, _)| &**have == v) {
            // Two live files with the same name and version (say .tar.gz and .tar.xz):
            // the newest publication is shown.
            Some(slot) if slot.1 < id => slot.1 = id,
            Some(_) => {}
            None => list.push((v.into(), id)),
        }
    })?;
    if let Some(p) = pending.take() {
        finish(p, &mut versions);
    }
    // SQLite's order is byte order too; sorting again costs nothing and makes sure.
    versions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    versions.shrink_to_fit();
    Ok(versions)
}

/// The directory slot of `dir`, made on first use.
fn dir_entry<'a>(dirs: &'a mut HashMap<String, DistDir>, dir: &str) -> &'a mut DistDir {
    dirs.entry(dir.to_string()).or_default()
}

fn render(
    dir: &str,
    g: Generated,
    files: &[FileRow],
    packages: &HashMap<i64, PackageRow>,
) -> Vec<u8> {
    match g {
        // coreutils format: `sha256sum -c SHA256SUMS` checks the directory.
        Generated::Sha256Sums | Generated::Md5Sums => {
            let mut out = String::new();
            for f in files {
                let sum = if g == Generated::Sha256Sums {
                    &f.sha256
                } else {
                    &f.md5
                };
                let _ = writeln!(out, "{sum}  {}", f.filename);
            }
            out.into_bytes()
        }
        Generated::AptPackages
        | Generated::AptPackagesXz
        | Generated::AptRelease
        | Generated::AptInRelease
        | Generated::AptReleaseGpg
        | Generated::PacmanDb
        | Generated::PacmanDbSig
        | Generated::PacmanFiles
        | Generated::PacmanFilesSig
        | Generated::ByHash(_) => Vec::new(),
        Generated::Index => {
            let list: Vec<IndexItem<'_>> = files
                .iter()
                .map(|f| {
                    let p = packages.get(&f.id);
                    IndexItem {
                        filename: &f.filename,
                        kind: &f.kind,
                        size: f.size,
                        sha256: &f.sha256,
                        md5: &f.md5,
                        name: p.map(|p| p.name.as_str()).or(f.name.as_deref()),
                        version: p
                            .and_then(|p| p.version.as_deref())
                            .or(f.version.as_deref()),
                        arch: p.and_then(|p| p.arch.as_deref()),
                        description: p.and_then(|p| p.description.as_deref()),
                        depends: p.map(|p| p.depends.as_slice()),
                        format: p.map(|p| p.format.as_str()),
                        unpacked_size: p.map(|p| p.unpacked_size),
                        entry_count: p.map(|p| p.entry_count),
                        uploader: &f.uploader,
                        published_at: crate::time::rfc3339(f.published_at),
                    }
                })
                .collect();
            let index = Index {
                directory: dir,
                files: list,
            };
            let mut v = serde_json::to_vec_pretty(&index).unwrap_or_default();
            v.push(b'\n');
            v
        }
    }
}

#[derive(Serialize)]
struct Index<'a> {
    directory: &'a str,
    files: Vec<IndexItem<'a>>,
}

#[derive(Serialize)]
struct IndexItem<'a> {
    filename: &'a str,
    kind: &'a str,
    size: u64,
    sha256: &'a str,
    md5: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depends: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unpacked_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_count: Option<u64>,
    uploader: &'a str,
    published_at: String,
}

/// A package name pkgs/ can show: one path component, or an npm scoped name `@scope/name`
/// (shown as pkgs/@scope/name/VERSION, as node_modules lays them out).
fn package_name_ok(name: &str) -> bool {
    match name.split_once('/') {
        None => crate::paths::check_filename(name).is_ok(),
        Some((scope, rest)) => {
            scope.starts_with('@')
                && crate::paths::check_filename(scope).is_ok()
                && crate::paths::check_filename(rest).is_ok()
        }
    }
}
