//! What a directory lists. `opendir` takes the whole listing at once, one step per kind of
//! directory, so that readdir pages are consistent; `readdir` and `readdirplus` page through
//! it.

use std::collections::HashSet;
use std::io;
use std::time::Duration;

use fuser::{FileAttr, FileType};

use super::attrs::file_kind;
use super::tree::DistEntry;
use super::{errno, lock, DirEntry, Handle, Node, Result, Vfs, DISTS, INCOMING, LATEST, PKGS};
use crate::archive::EntryKind;

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
        });
    }
}

impl Vfs {
    /// The whole listing of a directory, taken at opendir so readdir pages are consistent.
    pub fn opendir(&self, uid: u32, ino: u64) -> Result<u64> {
        let node = self.node(ino)?;
        let mut list = Listing {
            vfs: self,
            out: vec![
                DirEntry {
                    ino,
                    kind: FileType::Directory,
                    name: ".".into(),
                },
                DirEntry {
                    ino: 1,
                    kind: FileType::Directory,
                    name: "..".into(),
                },
            ],
        };
        match &node {
            Node::Root => self.list_root(&mut list)?,
            Node::IncomingRoot => self.list_spool(&mut list, uid, "")?,
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
        Ok(self.add_handle(Handle::Dir(list.out)))
    }

    /// The mount's root: the three views (a mirror takes no uploads, so has no incoming/).
    fn list_root(&self, list: &mut Listing) -> Result<()> {
        if !self.snap()?.mirror {
            list.push(Node::IncomingRoot, FileType::Directory, INCOMING);
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
    fn list_in_package(&self, list: &mut Listing, file_id: i64, path: &str) -> Result<()> {
        let tree = self.tree(file_id)?;
        let n = tree.node(path).ok_or(libc::ENOENT)?;
        if !tree.is_dir(n) {
            return Err(libc::ENOTDIR);
        }
        for name in n.children.keys() {
            let cpath = crate::paths::join(path, name);
            let cn = tree.node(&cpath).ok_or(libc::EIO)?;
            let kind = if tree.is_dir(cn) {
                FileType::Directory
            } else if tree.entry(cn).is_some_and(|e| e.kind == EntryKind::Symlink) {
                FileType::Symlink
            } else {
                FileType::RegularFile
            };
            list.push(
                Node::PkgEntry {
                    file_id,
                    path: cpath,
                },
                kind,
                name,
            );
        }
        Ok(())
    }

    /// Entries from `offset` on (offsets are positions in the listing, plus one).
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, u64) -> bool,
    ) -> Result<()> {
        let h = self.handle(fh)?;
        let Handle::Dir(list) = &*h else {
            return Err(libc::EBADF);
        };
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            if add(e, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    /// Like `readdir`, with each entry's attributes, so the kernel skips a lookup per entry.
    /// An entry gone since opendir is left out, as a fresh listing would. One TTL serves both
    /// the name and the attributes here: the name's, the shorter.
    pub fn readdirplus(
        &self,
        uid: u32,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirEntry, u64, &FileAttr, Duration) -> bool,
    ) -> Result<()> {
        let h = self.handle(fh)?;
        let Handle::Dir(list) = &*h else {
            return Err(libc::EBADF);
        };
        let mut snap = None;
        for (i, e) in list.iter().enumerate().skip(offset as usize) {
            let Ok(node) = self.node(e.ino) else { continue };
            let Ok((attr, _)) = self.attr_in(uid, e.ino, &node, &mut snap) else {
                continue;
            };
            if add(e, i as u64 + 1, &attr, node.ttl().entry) {
                break;
            }
            // The kernel counts every entry but the dot ones as a lookup.
            if e.name != "." && e.name != ".." {
                lock(&self.inodes).remember(e.ino);
            }
        }
        Ok(())
    }
}
