//! What a node's attributes are: the read-only views' from the catalog snapshot (fixed
//! owners and modes, times from publication), a package entry's from its archive header, and
//! a spool file's from the file itself (`stat_attr`).

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use super::tree::{DistEntry, PkgTree, Snapshot, TreeNode};
use super::{catalog_eio, lock, Node, Result, Vfs, BLKSIZE, SPOOL_TTL};
use crate::archive::{Entry, EntryKind};

impl Vfs {
    fn attr(&self, ino: u64, kind: FileType, perm: u16, size: u64, mtime: SystemTime) -> FileAttr {
        plain_attr(ino, kind, perm, size, mtime)
    }

    pub(super) fn dir_attr(&self, ino: u64, perm: u16) -> FileAttr {
        self.attr(ino, FileType::Directory, perm, 0, self.view_time())
    }

    /// The time of directories and generated files: when the published view last changed,
    /// from the catalog, so a mirror shows the same times as its primary. Its nanoseconds
    /// are the snapshot's stamp: the kernel keeps a directory's listing while its time
    /// stands (there is no OPENDIR to take it again, `dirs`), so the time must move with
    /// every change, even two in one second.
    fn view_time(&self) -> SystemTime {
        let snap = crate::sync::read(&self.snapshot).clone();
        let secs = snap.changed.unwrap_or_else(|| {
            let since = self.started.duration_since(UNIX_EPOCH);
            since.map_or(0, |d| d.as_secs() as i64)
        });
        epoch(secs) + Duration::from_nanos(u64::from(snap.stamp))
    }

    /// incoming/ as `owner` sees it: what it lists changes with the owner's staging
    /// directory (repofsd moves uploads out behind the kernel's back) and with the
    /// repository's directories, so its time moves with either.
    fn spool_root_attr(&self, ino: u64, owner: u32) -> FileAttr {
        let mut a = self.dir_attr(ino, 0o1777);
        let base = std::fs::metadata(self.layout.user_spool(owner)).and_then(|m| m.modified());
        if let Ok(t) = base {
            let view = a.mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
            let own = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            let nanos = (view.subsec_nanos() + own.subsec_nanos()) % 1_000_000_000;
            let secs = view.as_secs().max(own.as_secs());
            a.mtime = UNIX_EPOCH + Duration::new(secs, nanos);
        }
        a
    }

    /// Attributes of `ino` as `uid` sees it, and how long they may be cached.
    pub fn getattr(&self, uid: u32, ino: u64) -> Result<(FileAttr, Duration)> {
        let node = self.node(ino)?;
        self.attr_of(uid, ino, &node)
    }

    pub(super) fn attr_of(&self, uid: u32, ino: u64, node: &Node) -> Result<(FileAttr, Duration)> {
        self.attr_in(uid, ino, node, &mut None)
    }

    /// `attr_of`, taking the catalog snapshot once into `snap` for a run of calls (a
    /// readdirplus batch asks for thousands of attributes; one `data_version` check serves).
    pub(super) fn attr_in(
        &self,
        uid: u32,
        ino: u64,
        node: &Node,
        snap: &mut Option<Arc<Snapshot>>,
    ) -> Result<(FileAttr, Duration)> {
        let mut snapshot = || -> Result<Arc<Snapshot>> {
            if let Some(s) = snap {
                return Ok(s.clone());
            }
            let s = self.snap()?;
            *snap = Some(s.clone());
            Ok(s)
        };
        let view = |a| Ok((a, node.ttl().attr));
        match node {
            Node::Root => {
                snapshot()?;
                view(self.dir_attr(ino, 0o755))
            }
            // Sticky and world-writable like /tmp; each uid only ever sees its own entries.
            Node::IncomingRoot(owner) => {
                snapshot()?;
                Ok((self.spool_root_attr(ino, *owner), SPOOL_TTL))
            }
            Node::Incoming { owner, rel } => {
                self.may_touch(uid, *owner)?;
                Ok((self.spool_attr(ino, *owner, rel)?, SPOOL_TTL))
            }
            Node::Dists(path) => {
                let snap = snapshot()?;
                match snap.dist_entry(path).ok_or(libc::ENOENT)? {
                    DistEntry::Dir => view(self.dir_attr(ino, 0o555)),
                    DistEntry::Symlink(t) => view(self.attr(
                        ino,
                        FileType::Symlink,
                        0o777,
                        t.len() as u64,
                        self.view_time(),
                    )),
                    DistEntry::Generated(g) => {
                        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                        let len = snap
                            .generated_len(&lock(&self.catalog), dir, g)
                            .map_err(catalog_eio)?;
                        view(self.attr(ino, FileType::RegularFile, 0o444, len, self.view_time()))
                    }
                    DistEntry::Torrent(id) => {
                        let f = snap.file(id).ok_or(libc::ENOENT)?;
                        let info_len = f.torrent_info_len.ok_or(libc::ENOENT)?;
                        let len = snap.torrent_overhead + info_len.get();
                        view(self.attr(
                            ino,
                            FileType::RegularFile,
                            0o444,
                            len,
                            epoch(f.published_at),
                        ))
                    }
                    DistEntry::File(_) => Err(libc::ENOENT),
                }
            }
            Node::DistsFile(id) => {
                let snap = snapshot()?;
                let f = snap.file(*id).ok_or(libc::ENOENT)?;
                view(self.attr(
                    ino,
                    FileType::RegularFile,
                    0o444,
                    f.size,
                    epoch(f.published_at),
                ))
            }
            Node::Pkgs => {
                snapshot()?;
                view(self.dir_attr(ino, 0o555))
            }
            Node::PkgScope(scope) => {
                snapshot()?.scoped(scope).ok_or(libc::ENOENT)?;
                view(self.dir_attr(ino, 0o555))
            }
            Node::PkgName(name) => {
                snapshot()?.versions(name).ok_or(libc::ENOENT)?;
                view(self.dir_attr(ino, 0o555))
            }
            Node::PkgLatest(name) => {
                let snap = snapshot()?;
                let v = snap.latest(name).ok_or(libc::ENOENT)?;
                view(self.attr(
                    ino,
                    FileType::Symlink,
                    0o777,
                    v.len() as u64,
                    self.view_time(),
                ))
            }
            Node::PkgEntry { file_id, path } => {
                let snap = snapshot()?;
                let pkg = snap.package(*file_id).ok_or(libc::ENOENT)?;
                view(self.pkg_entry_attr(ino, *file_id, path, epoch(pkg.published_at))?)
            }
            Node::Gone => Err(libc::ENOENT),
        }
    }

    /// When package `file_id` was published: the time of the directories its archive only
    /// implies.
    pub(super) fn pkg_time(&self, file_id: i64) -> Result<SystemTime> {
        let pkg = self.snap()?.package(file_id).map(|p| p.published_at);
        pkg.map(epoch).ok_or(libc::ENOENT)
    }

    /// Attributes of `path` inside package `file_id`, published at `pkg_time`: from its
    /// parsed tree when one is at hand, else from the catalog's point queries.
    fn pkg_entry_attr(
        &self,
        ino: u64,
        file_id: i64,
        path: &str,
        pkg_time: SystemTime,
    ) -> Result<FileAttr> {
        self.with_pkg_item(file_id, path, |i| {
            entry_attr(ino, i.is_dir, i.entry, i.data, pkg_time)
        })
    }

    /// Attributes of node `n` of a package's parsed tree.
    pub(super) fn tree_attr(
        &self,
        ino: u64,
        tree: &PkgTree,
        n: &TreeNode,
        pkg_time: SystemTime,
    ) -> FileAttr {
        let entry = tree.entry(n);
        let data = entry.and_then(|e| tree.data_of(e));
        entry_attr(ino, tree.is_dir(n), entry, data, pkg_time)
    }
}

/// A package entry's attributes from its archive header (`entry`; None for a directory the
/// archive only implies, which takes the publication's time) and the entry holding its
/// bytes (`data`: itself, or a hard link's target).
fn entry_attr(
    ino: u64,
    is_dir: bool,
    entry: Option<&Entry>,
    data: Option<&Entry>,
    pkg_time: SystemTime,
) -> FileAttr {
    let kind = if is_dir {
        FileType::Directory
    } else if entry.is_some_and(|e| e.kind == EntryKind::Symlink) {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    let size = match kind {
        FileType::Symlink => entry
            .and_then(|e| e.link_target.as_deref())
            .map_or(0, str::len) as u64,
        FileType::RegularFile => data.map_or(0, |d| d.size),
        _ => 0,
    };
    let (perm, mtime) = entry.map_or((0o755, pkg_time), |e| (perm_bits(e.mode), epoch(e.mtime)));
    let mut a = plain_attr(ino, kind, perm, size, mtime);
    if let Some(e) = entry {
        a.uid = e.uid as u32;
        a.gid = e.gid as u32;
    }
    a
}

/// Read-only attributes owned by root, every time `mtime`.
fn plain_attr(ino: u64, kind: FileType, perm: u16, size: u64, mtime: SystemTime) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn epoch(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Permission bits from an archive: no setuid/setgid through a repository view.
fn perm_bits(mode: u32) -> u16 {
    (mode & 0o1777) as u16
}

/// The spool holds directories, plain files and (refused later) symlinks; nothing else is
/// shown as anything but a file.
pub(super) fn file_kind(ft: std::fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

pub(super) fn stat_attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
    let t = |s: i64, ns: i64| epoch(s) + Duration::from_nanos(ns.clamp(0, 999_999_999) as u64);
    let kind = file_kind(m.file_type());
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: t(m.atime(), m.atime_nsec()),
        mtime: t(m.mtime(), m.mtime_nsec()),
        ctime: t(m.ctime(), m.ctime_nsec()),
        crtime: t(m.mtime(), m.mtime_nsec()),
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}
