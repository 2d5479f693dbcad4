//! What a directory lists. There is no OPENDIR (the mount answers it with ENOSYS, so the
//! kernel sends neither it nor RELEASEDIR: half the requests of an `ls -lR`): the first
//! READDIR of a directory, at offset 0, takes its whole listing, one step per kind of
//! directory, and keeps it in `Listings` so that later pages are consistent; the page that
//! finds nothing left lets it go.
//!
//! The kernel, for its part, keeps every directory's listing across opens, and takes it
//! again only when the directory's time has moved (FUSE_AUTO_INVAL_DATA) or it changed the
//! directory itself. So a listing must be a function of its inode, and the inode's time
//! must move whenever the listing may: the views' directories carry the catalog's stamp
//! (`attrs::view_time`), each uid has an incoming/ of its own (`Node::IncomingRoot`),
//! whose time follows its staging directory, and a directory below it lists what is on
//! disk (its own time). One gap: a repository directory that appears below another is
//! listed in incoming/DIR/ once that directory's time moves; it can be entered at once.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fuser::{FileAttr, FileType};

use super::attrs::file_kind;
use super::tree::DistEntry;
use super::{errno, lock, DirEntry, Node, Result, Vfs, DISTS, INCOMING, LATEST, PKGS};

/// A listing being taken: each entry's node is interned as it is added.
struct Listing<'a> {
    vfs: &'a Vfs,
    out: Vec<DirEntry>,
}

impl Listing<'_> {
    fn push(&mut self, n: Node, kind: FileType, name: &str) {
        let ino = self.vfs.intern(n);
        self.out.push(DirEntry {
            ino,
            kind,
            name: name.into(),
            plus: None,
        });
    }
}

/// Listings being paged through, by directory and uid (an `incoming/` listing depends on
/// who asks). Without OPENDIR nothing says when a reader stops early, so at most `KEPT` are
/// kept, the oldest dropped first.
#[derive(Default)]
pub struct Listings(VecDeque<(ListingKey, Arc<Vec<DirEntry>>)>);

/// A directory's inode and the uid listing it.
type ListingKey = (u64, u32);

impl Listings {
    const KEPT: usize = 64;

    fn get(&self, key: ListingKey) -> Option<Arc<Vec<DirEntry>>> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| l.clone())
    }

    fn take(&mut self, key: ListingKey) -> Option<Arc<Vec<DirEntry>>> {
        let i = self.0.iter().position(|(k, _)| *k == key)?;
        self.0.remove(i).map(|(_, l)| l)
    }

    /// Keeps `list` for `key`; returns the listing it displaced, if any.
    fn put(&mut self, key: ListingKey, list: Arc<Vec<DirEntry>>) -> Vec<Arc<Vec<DirEntry>>> {
        let mut gone: Vec<_> = self.take(key).into_iter().collect();
        self.0.push_back((key, list));
        while self.0.len() > Self::KEPT {
            gone.extend(self.0.pop_front().map(|(_, l)| l));
        }
        gone
    }
}

impl Vfs {
    /// Whether `ino` is a directory `uid` may list (what OPENDIR would have checked, for a
    /// kernel that still sends it).
    pub fn opendir(&self, uid: u32, ino: u64) -> Result<()> {
        match self.node(ino)? {
            Node::Incoming { owner, .. } | Node::IncomingRoot(owner) => self.may_touch(uid, owner),
            Node::Root
            | Node::Dists(_)
            | Node::Pkgs
            | Node::PkgScope(_)
            | Node::PkgName(_)
            | Node::PkgEntry { .. } => Ok(()),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// The listing a page at `offset` comes from: a new one at offset 0, else the one that
    /// page took (taken again if it was dropped).
    fn listing(&self, uid: u32, ino: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        let key = (ino, uid);
        if offset > 0 {
            if let Some(l) = lock(&self.listings).get(key) {
                return Ok(l);
            }
        }
        let list = Arc::new(self.list(uid, ino)?);
        let gone = lock(&self.listings).put(key, list.clone());
        self.let_go(&gone);
        Ok(list)
    }

    /// The page at `offset` found nothing left: the listing is done with.
    fn listed(&self, uid: u32, ino: u64) {
        let gone = lock(&self.listings).take((ino, uid));
        self.let_go(&gone.into_iter().collect::<Vec<_>>());
    }

    /// Entries listed but never looked up are not the kernel's: let them go.
    fn let_go(&self, lists: &[Arc<Vec<DirEntry>>]) {
        if lists.is_empty() {
            return;
        }
        let mut t = lock(&self.inodes);
        for e in lists.iter().flat_map(|l| l.iter()) {
            t.drop_if_unreferenced(e.ino);
        }
    }

    /// The whole listing of a directory.
    fn list(&self, uid: u32, ino: u64) -> Result<Vec<DirEntry>> {
        let node = self.node(ino)?;
        let mut list = Listing {
            vfs: self,
            out: vec![
                DirEntry {
                    ino,
                    kind: FileType::Directory,
                    name: ".".into(),
                    plus: None,
                },
                DirEntry {
                    ino: 1,
                    kind: FileType::Directory,
                    name: "..".into(),
                    plus: None,
                },
            ],
        };
        match &node {
            Node::Root => self.list_root(&mut list, uid)?,
            Node::IncomingRoot(owner) => {
                self.may_touch(uid, *owner)?;
                self.list_spool(&mut list, *owner, "")?
            }
            Node::Incoming { owner, rel } => {
                self.may_touch(uid, *owner)?;
                self.list_spool(&mut list, *owner, rel)?
            }
            Node::Dists(dir) => self.list_dists(&mut list, dir)?,
            Node::Pkgs => self.list_pkgs(&mut list)?,
            Node::PkgScope(scope) => self.list_scope(&mut list, scope)?,
            Node::PkgName(pkg) => self.list_versions(&mut list, pkg)?,
            Node::PkgEntry { file_id, path } => self.list_in_package(&mut list, *file_id, path)?,
            _ => return Err(libc::ENOTDIR),
        }
        Ok(list.out)
    }

    /// The mount's root: the three views (a mirror takes no uploads, so has no incoming/).
    fn list_root(&self, list: &mut Listing, uid: u32) -> Result<()> {
        if !self.snap()?.mirror {
            list.push(Node::IncomingRoot(uid), FileType::Directory, INCOMING);
        }
        list.push(Node::Dists(String::new()), FileType::Directory, DISTS);
        list.push(Node::Pkgs, FileType::Directory, PKGS);
        Ok(())
    }

    /// A directory of `owner`'s part of the spool ("" is incoming/ itself): what is on disk,
    /// and the repository's directories, which every uid may upload into.
    fn list_spool(&self, list: &mut Listing, owner: u32, rel: &str) -> Result<()> {
        let dir = self.spool_path(owner, rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => Some(e),
            // A uid's staging area exists from its first upload on, and a repository
            // directory from the first write inside it.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && (rel.is_empty() || self.repo_dir(rel)) =>
            {
                None
            }
            Err(e) => return Err(errno(&e)),
        };
        let mut listed = HashSet::new();
        for e in entries.into_iter().flatten().flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let Ok(ft) = e.file_type() else { continue };
            let kind = file_kind(ft);
            list.push(
                Node::Incoming {
                    owner,
                    rel: crate::paths::join(rel, &name),
                },
                kind,
                &name,
            );
            listed.insert(name);
        }
        for name in self.repo_subdirs(rel) {
            if !listed.contains(&name) {
                let child = crate::paths::join(rel, &name);
                list.push(
                    Node::Incoming { owner, rel: child },
                    FileType::Directory,
                    &name,
                );
            }
        }
        Ok(())
    }

    /// A directory below dists/ ("" is dists/ itself); a published file is its own node.
    fn list_dists(&self, list: &mut Listing, dir: &str) -> Result<()> {
        let snap = self.snap()?;
        for (name, e) in snap.dist_children(dir).ok_or(libc::ENOENT)? {
            let path = crate::paths::join(dir, name);
            match e {
                DistEntry::Dir => list.push(Node::Dists(path), FileType::Directory, name),
                DistEntry::Symlink(_) => list.push(Node::Dists(path), FileType::Symlink, name),
                DistEntry::Generated(_) | DistEntry::Torrent(_) => {
                    list.push(Node::Dists(path), FileType::RegularFile, name)
                }
                DistEntry::File(id) => list.push(Node::DistsFile(id), FileType::RegularFile, name),
            }
        }
        Ok(())
    }

    /// pkgs/: a directory per package name, or per npm scope.
    fn list_pkgs(&self, list: &mut Listing) -> Result<()> {
        let snap = self.snap()?;
        for name in snap.top_names() {
            let node = if name.starts_with('@') && snap.scoped(name).is_some() {
                Node::PkgScope(name.to_string())
            } else {
                Node::PkgName(name.to_string())
            };
            list.push(node, FileType::Directory, name);
        }
        Ok(())
    }

    /// pkgs/@SCOPE: the scope's packages.
    fn list_scope(&self, list: &mut Listing, scope: &str) -> Result<()> {
        let snap = self.snap()?;
        for name in snap.scoped(scope).ok_or(libc::ENOENT)? {
            list.push(
                Node::PkgName(format!("{scope}/{name}")),
                FileType::Directory,
                name,
            );
        }
        Ok(())
    }

    /// pkgs/NAME: a directory per version, and `latest`.
    fn list_versions(&self, list: &mut Listing, pkg: &str) -> Result<()> {
        let snap = self.snap()?;
        for (v, id) in snap.versions(pkg).ok_or(libc::ENOENT)? {
            list.push(
                Node::PkgEntry {
                    file_id: *id,
                    path: String::new(),
                },
                FileType::Directory,
                v,
            );
        }
        list.push(Node::PkgLatest(pkg.to_string()), FileType::Symlink, LATEST);
        Ok(())
    }

    /// A directory inside a package ("" is pkgs/NAME/VERSION itself), from its parsed tree.
    /// Each entry's attributes are taken here, from the node at hand: they never change.
    fn list_in_package(&self, list: &mut Listing, file_id: i64, path: &str) -> Result<()> {
        let tree = self.tree(file_id)?;
        let n = tree.node(path).ok_or(libc::ENOENT)?;
        if !tree.is_dir(n) {
            return Err(libc::ENOTDIR);
        }
        let pkg_time = self.pkg_time(file_id)?;
        for (name, cn) in tree.children(n) {
            let node = Node::PkgEntry {
                file_id,
                path: crate::paths::join(path, name),
            };
            let ttl = node.ttl().entry;
            let ino = self.intern(node);
            let attr = self.tree_attr(ino, &tree, cn, pkg_time);
            list.out.push(DirEntry {
                ino,
                kind: attr.kind,
                name: name.into(),
                plus: Some((attr, ttl)),
            });
        }
        Ok(())
    }

    /// Entries from `offset` on (offsets are positions in the listing, plus one).
    pub fn readdir(
        &self,
        uid: u32,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, u64) -> bool,
    ) -> Result<()> {
        let list = self.listing(uid, ino, offset)?;
        if offset as usize >= list.len() {
            self.listed(uid, ino);
        }
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            if add(e, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    /// Like `readdir`, with each entry's attributes, so the kernel skips a lookup per entry.
    /// An entry gone since the listing was taken is left out, as a fresh listing would. One
    /// TTL serves both the name and the attributes here: the name's, the shorter.
    pub fn readdirplus(
        &self,
        uid: u32,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, u64, &FileAttr, Duration) -> bool,
    ) -> Result<()> {
        let list = self.listing(uid, ino, offset)?;
        if offset as usize >= list.len() {
            self.listed(uid, ino);
        }
        let mut snap = None;
        let mut handed = Vec::new();
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            let (attr, ttl) = match e.plus {
                Some(plus) => plus,
                None => {
                    let Ok(node) = self.node(e.ino) else { continue };
                    let Ok((attr, _)) = self.attr_in(uid, e.ino, &node, &mut snap) else {
                        continue;
                    };
                    (attr, node.ttl().entry)
                }
            };
            if add(e, i as u64 + 1, &attr, ttl) {
                break;
            }
            // The kernel counts every entry but the dot ones as a lookup.
            if e.name != "." && e.name != ".." {
                handed.push(e.ino);
            }
        }
        let mut t = lock(&self.inodes);
        for ino in handed {
            t.remember(ino);
        }
        Ok(())
    }
}
