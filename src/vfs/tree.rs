//! The read-only views as data: `dists/` and `pkgs/`, built from one catalog snapshot.
//!
//! A `Snapshot` is everything the catalog says about the published tree except entry lists,
//! which are loaded per package (`PkgTree`) when someone first looks inside it. Neither ever
//! reads content: sizes, modes and offsets all come from the catalog.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::archive::{Entry, EntryKind};
use crate::catalog::{Catalog, CatalogError, FileRow, PackageRow};
use crate::version::{self, Scheme};

/// Files generated in every `dists/` directory that holds published files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generated {
    Sha256Sums,
    Md5Sums,
    Index,
}

impl Generated {
    pub const ALL: [Generated; 3] = [Generated::Sha256Sums, Generated::Md5Sums, Generated::Index];

    pub fn name(self) -> &'static str {
        match self {
            Generated::Sha256Sums => "SHA256SUMS",
            Generated::Md5Sums => "MD5SUMS",
            Generated::Index => "index.json",
        }
    }
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

type Bytes = Arc<Vec<u8>>;

pub struct Snapshot {
    /// `PRAGMA data_version` when loaded: the cue to reload.
    pub version: i64,
    /// dists/ directories ("" is dists/ itself) and their children.
    dirs: HashMap<String, BTreeMap<String, DistEntry>>,
    pub files: HashMap<i64, FileRow>,
    pub packages: HashMap<i64, PackageRow>,
    /// File id -> (infohash, length of its bencoded info dictionary).
    pub torrents: HashMap<i64, (String, u64)>,
    /// The trackers torrents name (as repofsd recorded them), and what they and the framing
    /// add to an info dictionary: a .torrent's size without reading it.
    pub trackers: Vec<String>,
    pub torrent_overhead: u64,
    /// A mirror's catalog (setting `upstream`, written by repofsd in mirror mode): it takes
    /// no uploads, so the mount shows no incoming/.
    pub mirror: bool,
    /// When the published view last changed (the newest generation's time, else the newest
    /// publication), unix seconds: the time of directories and generated files.
    pub changed: Option<i64>,
    /// Package name -> (version, file id), ascending in the package's ecosystem's order.
    versions: BTreeMap<String, Vec<(String, i64)>>,
    generated: Mutex<HashMap<(String, Generated), Bytes>>,
}

impl Snapshot {
    pub fn load(cat: &Catalog) -> Result<Snapshot, CatalogError> {
        let version = cat.data_version()?;
        let mut dirs: HashMap<String, BTreeMap<String, DistEntry>> = HashMap::new();
        dirs.insert(String::new(), BTreeMap::new());
        let files: HashMap<i64, FileRow> =
            cat.files(false)?.into_iter().map(|f| (f.id, f)).collect();
        let mut with_files = Vec::new();
        for f in files.values() {
            add_dir(&mut dirs, &f.directory);
            if let Some(d) = dirs.get_mut(&f.directory) {
                d.insert(f.filename.clone(), DistEntry::File(f.id));
            }
            with_files.push(f.directory.clone());
        }
        for s in cat.symlinks()? {
            add_dir(&mut dirs, &s.directory);
            if let Some(d) = dirs.get_mut(&s.directory) {
                // A published file of the same name wins; the catalog forbids that anyway.
                d.entry(s.name.clone())
                    .or_insert(DistEntry::Symlink(s.target.clone()));
            }
        }
        let torrents = cat.torrents()?;
        let trackers: Vec<String> = cat
            .setting("trackers")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let torrent_overhead =
            crate::fetch::torrent::torrent_file(&[], &trackers).map_or(0, |t| t.len() as u64);
        for id in torrents.keys() {
            if let Some(f) = files.get(id) {
                if let Some(d) = dirs.get_mut(&f.directory) {
                    // A published file or symlink of that name wins.
                    d.entry(format!("{}.torrent", f.filename))
                        .or_insert(DistEntry::Torrent(*id));
                }
            }
        }
        for dir in with_files {
            if let Some(d) = dirs.get_mut(&dir) {
                for g in Generated::ALL {
                    d.entry(g.name().to_string())
                        .or_insert(DistEntry::Generated(g));
                }
            }
        }
        let packages: HashMap<i64, PackageRow> = cat
            .packages()?
            .into_iter()
            .map(|p| (p.file_id, p))
            .collect();
        let mut versions: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for p in packages.values() {
            // Unversioned packages have no pkgs/NAME/VERSION to live in.
            let Some(v) = &p.version else { continue };
            if crate::paths::check_filename(v).is_err() || !package_name_ok(&p.name) {
                continue;
            }
            let list = versions.entry(p.name.clone()).or_default();
            match list.iter_mut().find(|(have, _)| have == v) {
                // Two live files with the same name and version (say .tar.gz and .tar.xz):
                // the newest publication is shown.
                Some(slot) if slot.1 < p.file_id => slot.1 = p.file_id,
                Some(_) => {}
                None => list.push((v.clone(), p.file_id)),
            }
        }
        for (name, list) in versions.iter_mut() {
            let scheme = list
                .first()
                .and_then(|(_, id)| packages.get(id))
                .map_or(Scheme::Generic, |p| Scheme::for_meta_source(&p.meta_source));
            list.sort_by(|a, b| version::compare(scheme, &a.0, &b.0).then(a.1.cmp(&b.1)));
            let _ = name;
        }
        let changed = cat
            .generation_time()?
            .or_else(|| files.values().map(|f| f.published_at).max());
        Ok(Snapshot {
            version,
            dirs,
            files,
            packages,
            torrents,
            trackers,
            torrent_overhead,
            mirror: cat.setting("upstream")?.is_some_and(|u| !u.is_empty()),
            changed,
            versions,
            generated: Mutex::new(HashMap::new()),
        })
    }

    /// The entry at `path` below dists/ ("" is dists/ itself).
    pub fn dist_entry(&self, path: &str) -> Option<DistEntry> {
        if self.dirs.contains_key(path) {
            return Some(DistEntry::Dir);
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.dirs.get(dir)?.get(name).cloned()
    }

    pub fn dist_children(&self, path: &str) -> Option<&BTreeMap<String, DistEntry>> {
        self.dirs.get(path)
    }

    /// What pkgs/ lists: unscoped package names, and each npm scope (`@scope`) once.
    pub fn top_names(&self) -> impl Iterator<Item = &str> {
        let mut last_scope = None;
        self.versions
            .keys()
            .filter_map(move |n| match n.split_once('/') {
                None => Some(n.as_str()),
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
        let names: Vec<&str> = self
            .versions
            .range(prefix.clone()..)
            .map(|(n, _)| n.as_str())
            .take_while(|n| n.starts_with(&prefix))
            .map(|n| &n[prefix.len()..])
            .collect();
        (!names.is_empty()).then_some(names)
    }

    pub fn versions(&self, name: &str) -> Option<&[(String, i64)]> {
        self.versions.get(name).map(Vec::as_slice)
    }

    pub fn version_file(&self, name: &str, version: &str) -> Option<i64> {
        self.versions(name)?
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, id)| *id)
    }

    /// `pkgs/NAME/latest` points here: the highest version in the ecosystem's order.
    pub fn latest(&self, name: &str) -> Option<&str> {
        self.versions(name)?.last().map(|(v, _)| v.as_str())
    }

    /// The bytes of a generated file (built once per snapshot).
    pub fn generated(&self, dir: &str, g: Generated) -> Arc<Vec<u8>> {
        let key = (dir.to_string(), g);
        let mut cache = self.generated.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(&key) {
            return b.clone();
        }
        let bytes = Arc::new(self.render(dir, g));
        cache.insert(key, bytes.clone());
        bytes
    }

    fn render(&self, dir: &str, g: Generated) -> Vec<u8> {
        let files: Vec<&FileRow> = self
            .dirs
            .get(dir)
            .into_iter()
            .flat_map(|d| d.values())
            .filter_map(|e| match e {
                DistEntry::File(id) => self.files.get(id),
                _ => None,
            })
            .collect();
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
            Generated::Index => {
                let list: Vec<IndexItem<'_>> = files
                    .into_iter()
                    .map(|f| {
                        let p = self.packages.get(&f.id);
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

fn add_dir(dirs: &mut HashMap<String, BTreeMap<String, DistEntry>>, dir: &str) {
    let mut parent = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        let path = crate::paths::join(&parent, part);
        dirs.entry(parent.clone())
            .or_default()
            .insert(part.to_string(), DistEntry::Dir);
        dirs.entry(path.clone()).or_default();
        parent = path;
    }
}

/// One package's unpacked tree, from its catalog entry list. Directories that the archive
/// implies but does not list (tar allows that) are synthesized.
pub struct PkgTree {
    pub entries: Vec<Entry>,
    nodes: Vec<TreeNode>,
    by_path: HashMap<String, usize>,
}

pub struct TreeNode {
    /// Index into `entries`, or None for a synthesized directory (and the root).
    pub entry: Option<usize>,
    pub children: BTreeMap<String, usize>,
}

impl PkgTree {
    pub fn build(entries: Vec<Entry>) -> PkgTree {
        let mut t = PkgTree {
            entries: Vec::new(),
            nodes: vec![TreeNode {
                entry: None,
                children: BTreeMap::new(),
            }],
            by_path: HashMap::from([(String::new(), 0)]),
        };
        for (i, e) in entries.iter().enumerate() {
            let node = t.node_for(&e.path);
            t.nodes[node].entry = Some(i);
        }
        t.entries = entries;
        t
    }

    fn node_for(&mut self, path: &str) -> usize {
        if let Some(&n) = self.by_path.get(path) {
            return n;
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let p = self.node_for(parent);
        let n = self.nodes.len();
        self.nodes.push(TreeNode {
            entry: None,
            children: BTreeMap::new(),
        });
        self.nodes[p].children.insert(name.to_string(), n);
        self.by_path.insert(path.to_string(), n);
        n
    }

    pub fn node(&self, path: &str) -> Option<&TreeNode> {
        self.by_path.get(path).map(|&n| &self.nodes[n])
    }

    pub fn entry(&self, node: &TreeNode) -> Option<&Entry> {
        node.entry.map(|i| &self.entries[i])
    }

    /// Whether a node is a directory: listed as one, synthesized, or a parent of others.
    pub fn is_dir(&self, node: &TreeNode) -> bool {
        !node.children.is_empty() || self.entry(node).is_none_or(|e| e.kind == EntryKind::Dir)
    }

    /// The entry holding the bytes of `e`: itself, or the target of a hard link.
    pub fn data_of<'a>(&'a self, e: &'a Entry) -> Option<&'a Entry> {
        match e.kind {
            EntryKind::File => Some(e),
            EntryKind::Hardlink => {
                let target = self.node(e.link_target.as_deref()?)?;
                self.entry(target).filter(|t| t.kind == EntryKind::File)
            }
            _ => None,
        }
    }
}

/// Parsed entry lists of the packages used last, within a budget counted in entries, not
/// packages: one package may hold a million files. The tree just used always stays.
pub struct TreeCache {
    budget: usize,
    /// Least recently used first.
    trees: Vec<(i64, Arc<PkgTree>)>,
}

impl TreeCache {
    pub fn new(budget: usize) -> TreeCache {
        TreeCache {
            budget,
            trees: Vec::new(),
        }
    }

    pub fn get(&mut self, file_id: i64) -> Option<Arc<PkgTree>> {
        let i = self.trees.iter().position(|(id, _)| *id == file_id)?;
        let hit = self.trees.remove(i);
        let t = hit.1.clone();
        self.trees.push(hit);
        Some(t)
    }

    /// Keeps `t`, or returns the tree another thread put there meanwhile.
    pub fn insert(&mut self, file_id: i64, t: Arc<PkgTree>) -> Arc<PkgTree> {
        if let Some(other) = self.get(file_id) {
            return other;
        }
        self.trees.push((file_id, t.clone()));
        let mut kept: usize = self.trees.iter().map(|(_, t)| t.entries.len()).sum();
        while kept > self.budget && self.trees.len() > 1 {
            kept -= self.trees.remove(0).1.entries.len();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Entry, EntryKind};

    fn tree(files: usize) -> Arc<PkgTree> {
        let entries = (0..files)
            .map(|i| Entry {
                path: format!("f{i}"),
                kind: EntryKind::File,
                mode: 0o644,
                size: 0,
                mtime: 0,
                uid: 0,
                gid: 0,
                link_target: None,
                data_offset: 0,
                sha256: None,
                layout: Default::default(),
            })
            .collect();
        Arc::new(PkgTree::build(entries))
    }

    #[test]
    fn tree_cache_keeps_the_most_recently_used_within_its_entry_budget() {
        let mut c = TreeCache::new(10);
        c.insert(1, tree(4));
        c.insert(2, tree(4));
        assert!(c.get(1).is_some()); // 1 is now the most recently used
        c.insert(3, tree(4)); // 12 entries: 2 goes
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some());
        // A tree over the whole budget is still kept while it is the one in use.
        c.insert(4, tree(25));
        assert!(c.get(4).is_some());
        assert!(c.get(1).is_none() && c.get(3).is_none());
        // Two threads building the same tree: the first one in is the one kept.
        let first = c.insert(5, tree(1));
        assert!(Arc::ptr_eq(&c.insert(5, tree(1)), &first));
    }
}
