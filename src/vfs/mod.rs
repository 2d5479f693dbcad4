//! FUSE views over the repository: `incoming/` (the spool, per uploader), `dists/` (published
//! files and generated indexes) and `pkgs/` (unpacked package trees).
//!
//! Layers, in the order a request flows:
//! - `fuse` translates `fuser` callbacks into calls on `Vfs` and replies; nothing else.
//! - `Vfs` (this module) maps inode numbers to `Node`s, resolves read-only nodes against a
//!   catalog `tree::Snapshot`, and keeps open handles.
//! - `incoming` does the writable part: files land in the spool as they are written, hashed
//!   inline, and the last close asks the daemon for the verdict.
//! - `content` reads files inside packages without inflating archives from their start.
//! - `mount` mounts, unmounts, recovers stale mounts and handles signals.
//! - `stats` counts the requests the kernel sent, by kind.
//! - `prefill` hands small files to the kernel's page cache as they are opened.
//!
//! Inode numbers are interned `Node`s (`inodes`), never reused, and held only while the kernel
//! holds them (FORGET prunes them), so the table is as large as the kernel's inode cache.

pub mod content;
mod fuse;
pub mod http;
pub mod incoming;
mod inodes;
pub mod mount;
mod prefill;
mod stats;
pub mod tree;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use tracing::{debug, warn};

use crate::archive::EntryKind;
use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::fetch::objects::Objects;
use crate::store::ReadAt;
use crate::torrent;
use content::{Cache, EntryReader, Seekable, Spans};
use incoming::SpoolHandle;
use inodes::Inodes;
use prefill::Prefills;
use tree::{DistEntry, PkgTree, Snapshot, TreeCache};

/// Errors are errno values: what the kernel passes back to the caller.
pub type Errno = i32;
pub type Result<T> = std::result::Result<T, Errno>;

pub fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// How long the kernel may cache what the read-only views say about what a publication can
/// change. Short, so that publications show at once; new names show immediately anyway
/// (negative lookups are not cached).
const VIEW_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may cache what never changes: names and attributes inside a package (a
/// file id is never reused, and a package is never changed in place), and a published file's
/// attributes (a replacement is a new inode). In practice, until it needs the memory: a walk
/// of a package tree then costs no lookup and no getattr beyond the first.
const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// incoming/ is per uid: the kernel must ask every time, or one user's cached entry would be
/// offered to another.
const SPOOL_TTL: Duration = Duration::ZERO;
/// The I/O size `cp` and friends pick from st_blksize: one request per MiB, not per 4 KiB
/// page or 128 KiB, for writes into incoming/ and reads from pkgs/.
const BLKSIZE: u32 = 1 << 20;
/// Catalog entries kept parsed as package trees (a few hundred bytes each), across packages.
const TREE_ENTRIES_KEPT: usize = 1_000_000;

const INCOMING: &str = "incoming";
const DISTS: &str = "dists";
const PKGS: &str = "pkgs";
const LATEST: &str = "latest";

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    /// incoming/ itself: one inode, whose contents depend on who asks.
    IncomingRoot,
    /// A file or directory in uid `owner`'s part of the spool.
    Incoming {
        owner: u32,
        rel: String,
    },
    /// A directory, symlink or generated file below dists/ ("" is dists/).
    Dists(String),
    /// A published file; a replacement is a new inode, so no cache serves old bytes.
    DistsFile(i64),
    Pkgs,
    /// An npm scope below pkgs/ (`@types`): its packages are `@types/NAME`.
    PkgScope(String),
    PkgName(String),
    PkgLatest(String),
    /// A path inside a package ("" is pkgs/NAME/VERSION itself).
    PkgEntry {
        file_id: i64,
        path: String,
    },
    /// Renamed over or removed while the kernel still knew it.
    Gone,
}

/// How long the kernel may keep a name's binding to a node (`entry`) and the node's
/// attributes (`attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub entry: Duration,
    pub attr: Duration,
}

impl Node {
    /// What the kernel may cache about this node, and for how long.
    fn ttl(&self) -> Ttl {
        let both = |t| Ttl { entry: t, attr: t };
        match self {
            Node::IncomingRoot | Node::Incoming { .. } | Node::Gone => both(SPOOL_TTL),
            Node::PkgEntry { path, .. } if !path.is_empty() => both(IMMUTABLE_TTL),
            // Immutable nodes under names a publication can rebind or remove:
            // pkgs/NAME/VERSION and a file's name in dists/.
            Node::PkgEntry { .. } | Node::DistsFile(_) => Ttl {
                entry: VIEW_TTL,
                attr: IMMUTABLE_TTL,
            },
            Node::Root
            | Node::Dists(_)
            | Node::Pkgs
            | Node::PkgScope(_)
            | Node::PkgName(_)
            | Node::PkgLatest(_) => both(VIEW_TTL),
        }
    }
}

/// An open file or directory.
pub enum Handle {
    Dir(Vec<DirEntry>),
    Spool(SpoolHandle),
    /// A published file (from the store, or a mirror's cache). `backing` keeps the kernel's
    /// passthrough id alive.
    Object {
        file: Arc<dyn ReadAt>,
        backing: Mutex<Option<fuser::BackingId>>,
    },
    Bytes(Arc<Vec<u8>>),
    Entry(Box<EntryReader>),
}

/// One path inside a package, as the views need it.
struct PkgItem {
    /// The catalog's entry; None for a directory the archive only implies.
    entry: Option<crate::archive::Entry>,
    is_dir: bool,
    /// The entry holding the bytes: itself, or its hard link's target.
    data: Option<crate::archive::Entry>,
}

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

pub struct DirEntry {
    pub ino: u64,
    pub kind: FileType,
    pub name: OsString,
}

/// What `open` decided.
pub struct Opened {
    pub fh: u64,
    /// Serve reads from this file through the kernel (FUSE passthrough) if it can.
    pub passthrough: Option<File>,
    /// Bypass the page cache (generated files change size between snapshots).
    pub direct_io: bool,
    /// The bytes never change (a published file, a file inside a package): the kernel keeps
    /// the page cache across opens, and a close needs no flush.
    pub immutable: bool,
    /// The whole file, for the kernel's page cache before the open returns (`prefill`);
    /// `prefilled` must follow.
    pub prefill: Option<Vec<u8>>,
}

pub struct Vfs {
    layout: Layout,
    /// Where content bytes come from (store, or a mirror's cache and repofsd).
    objects: Objects,
    config: Config,
    /// Shared with gzip readers, which fetch seek-point windows span by span.
    catalog: Arc<Mutex<Catalog>>,
    snapshot: RwLock<Arc<Snapshot>>,
    trees: Mutex<TreeCache>,
    /// How each package's payload is read at an offset (gzip seek points without windows,
    /// or a seekable twin's frames).
    seekable: Mutex<HashMap<i64, Seekable>>,
    spans: Arc<Spans>,
    cache: Cache,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// Open write handles per spool inode: the last close is the one that counts.
    writers: Mutex<HashMap<u64, usize>>,
    prefills: Prefills,
    started: SystemTime,
}

impl Vfs {
    pub fn new(layout: Layout, config: Config) -> anyhow::Result<Vfs> {
        layout.create()?;
        let catalog = Catalog::open(&layout.catalog())?;
        let snapshot = Snapshot::load(&catalog)?;
        let cache = Cache::new(layout.cache(), config.mount.cache_size);
        let spans = Arc::new(Spans::new(config.mount.span_cache));
        // gzip spans are 4+ MiB buffers that come and go by the hundred in a tree walk.
        // glibc raises its mmap threshold after such frees and then keeps them in per-thread
        // heaps: peak RSS in a Linux-tree `tar -c` was 268 MiB with a 64 MiB span cache, 150
        // MiB with the threshold pinned, which returns each span on free. Pinned above the
        // 2 MiB zstd frames: mmapped, their page faults tripled the CPU of a .tar.zst walk.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator tuning; no memory is touched.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 3 << 20);
        }
        Ok(Vfs {
            cache,
            objects: Objects::new(&layout, &config, catalog.setting("upstream")?.is_some())?,
            layout,
            config,
            catalog: Arc::new(Mutex::new(catalog)),
            snapshot: RwLock::new(Arc::new(snapshot)),
            trees: Mutex::new(TreeCache::new(TREE_ENTRIES_KEPT)),
            seekable: Mutex::new(HashMap::new()),
            spans,
            inodes: Mutex::new(Inodes::new()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            writers: Mutex::new(HashMap::new()),
            prefills: Prefills::default(),
            started: SystemTime::now(),
        })
    }

    /// Whether content comes from an upstream's swarm (catalog setting `upstream`).
    pub fn is_mirror(&self) -> bool {
        self.objects.is_mirror()
    }

    // ---- inodes and handles -------------------------------------------------------------

    fn intern(&self, n: Node) -> u64 {
        lock(&self.inodes).intern(n)
    }

    /// `intern`, counting the reference the kernel is about to be handed (give it back with
    /// `forget` if the reply turns into an error instead).
    fn intern_for_kernel(&self, n: Node) -> u64 {
        let mut t = lock(&self.inodes);
        let ino = t.intern(n);
        t.remember(ino);
        ino
    }

    /// FORGET: the kernel evicted `ino` and gives back `n` references.
    pub fn forget(&self, ino: u64, n: u64) {
        lock(&self.inodes).forget(ino, n);
    }

    fn node(&self, ino: u64) -> Result<Node> {
        match lock(&self.inodes).get(ino) {
            Some(Node::Gone) | None => Err(libc::ENOENT),
            Some(n) => Ok(n.clone()),
        }
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(h));
        fh
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        lock(&self.handles).get(&fh).cloned().ok_or(libc::EBADF)
    }

    /// Keeps the passthrough id of an open published file until it is released.
    pub fn attach_backing(&self, fh: u64, id: fuser::BackingId) {
        if let Ok(h) = self.handle(fh) {
            if let Handle::Object { backing, .. } = &*h {
                *lock(backing) = Some(id);
            }
        }
    }

    // ---- catalog snapshot ---------------------------------------------------------------

    /// The current snapshot, reloaded if the daemon committed since it was taken.
    fn snap(&self) -> Result<Arc<Snapshot>> {
        let current = crate::sync::read(&self.snapshot).clone();
        let cat = lock(&self.catalog);
        let version = cat.data_version().map_err(|e| {
            warn!(error = %e, "catalog unreadable");
            libc::EIO
        })?;
        if version == current.version {
            return Ok(current);
        }
        let fresh = Arc::new(Snapshot::load(&cat).map_err(|e| {
            warn!(error = %e, "catalog unreadable");
            libc::EIO
        })?);
        *crate::sync::write(&self.snapshot) = fresh.clone();
        Ok(fresh)
    }

    /// The parsed entry list of package `file_id`.
    fn tree(&self, file_id: i64) -> Result<Arc<PkgTree>> {
        if let Some(t) = lock(&self.trees).get(file_id) {
            return Ok(t);
        }
        let entries = lock(&self.catalog).entries(file_id).map_err(|e| {
            warn!(error = %e, file_id, "entry list unreadable");
            libc::EIO
        })?;
        let t = Arc::new(PkgTree::build(entries));
        Ok(lock(&self.trees).insert(file_id, t))
    }

    /// How package `pkg`'s payload is read at an offset (loaded once per package).
    fn seekable(&self, pkg: &crate::catalog::PackageRow) -> Result<Seekable> {
        let file_id = pkg.file_id;
        if let Some(s) = lock(&self.seekable).get(&file_id) {
            return Ok(s.clone());
        }
        let fail = |e: crate::catalog::CatalogError| {
            warn!(error = %e, file_id, "payload index unreadable");
            libc::EIO
        };
        let s = match pkg.compression.as_str() {
            "none" => Seekable::Nothing,
            "gzip" => Seekable::Gzip(Arc::default()),
            _ => match lock(&self.catalog).derived(file_id).map_err(fail)? {
                Some(d) => Seekable::Frames {
                    size: twin_size(&d.frames),
                    sha256: d.sha256,
                    frames: d.frames.into(),
                },
                None => Seekable::Nothing,
            },
        };
        lock(&self.seekable).insert(file_id, s.clone());
        Ok(s)
    }

    /// What `path` inside package `file_id` is. From the parsed tree when it is at hand
    /// (a listing loaded it); otherwise from point queries, so that reaching one file deep in
    /// a fresh mount never loads the package's whole entry list.
    fn pkg_item(&self, file_id: i64, path: &str) -> Result<PkgItem> {
        if let Some(tree) = lock(&self.trees).get(file_id) {
            let n = tree.node(path).ok_or(libc::ENOENT)?;
            let entry = tree.entry(n).cloned();
            let data = entry.as_ref().and_then(|e| tree.data_of(e)).cloned();
            return Ok(PkgItem {
                is_dir: tree.is_dir(n),
                entry,
                data,
            });
        }
        let cat = lock(&self.catalog);
        let fail = |e: crate::catalog::CatalogError| {
            warn!(error = %e, file_id, "entry unreadable");
            libc::EIO
        };
        let entry = cat.entry(file_id, path).map_err(fail)?;
        // As `PkgTree::is_dir`: listed as a directory, or the parent of anything.
        let is_dir = path.is_empty()
            || entry.as_ref().is_some_and(|e| e.kind == EntryKind::Dir)
            || cat.has_entries_below(file_id, path).map_err(fail)?;
        if entry.is_none() && !is_dir {
            return Err(libc::ENOENT);
        }
        let data = match entry.as_ref() {
            Some(e) if e.kind == EntryKind::File => Some(e.clone()),
            Some(e) if e.kind == EntryKind::Hardlink => match e.link_target.as_deref() {
                Some(t) => cat
                    .entry(file_id, t)
                    .map_err(fail)?
                    .filter(|t| t.kind == EntryKind::File),
                None => None,
            },
            _ => None,
        };
        Ok(PkgItem {
            entry,
            is_dir,
            data,
        })
    }

    // ---- attributes ---------------------------------------------------------------------

    fn attr(&self, ino: u64, kind: FileType, perm: u16, size: u64, mtime: SystemTime) -> FileAttr {
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

    fn dir_attr(&self, ino: u64, perm: u16) -> FileAttr {
        self.attr(ino, FileType::Directory, perm, 0, self.view_time())
    }

    /// The time of directories and generated files: when the published view last changed,
    /// from the catalog, so a mirror shows the same times as its primary.
    fn view_time(&self) -> SystemTime {
        let snap = crate::sync::read(&self.snapshot).clone();
        snap.changed.map_or(self.started, epoch)
    }

    /// Attributes of `ino` as `uid` sees it, and how long they may be cached.
    pub fn getattr(&self, uid: u32, ino: u64) -> Result<(FileAttr, Duration)> {
        let node = self.node(ino)?;
        self.attr_of(uid, ino, &node)
    }

    fn attr_of(&self, uid: u32, ino: u64, node: &Node) -> Result<(FileAttr, Duration)> {
        self.attr_in(uid, ino, node, &mut None)
    }

    /// `attr_of`, taking the catalog snapshot once into `snap` for a run of calls (a
    /// readdirplus batch asks for thousands of attributes; one `data_version` check serves).
    fn attr_in(
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
            Node::Root => view(self.dir_attr(ino, 0o755)),
            // Sticky and world-writable like /tmp; each uid only ever sees its own entries.
            Node::IncomingRoot => Ok((self.dir_attr(ino, 0o1777), SPOOL_TTL)),
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
                        let len =
                            snap.generated_len(&lock(&self.catalog), dir, g)
                                .map_err(|e| {
                                    warn!(error = %e, "catalog unreadable");
                                    libc::EIO
                                })?;
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
            Node::Pkgs => view(self.dir_attr(ino, 0o555)),
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

    /// Attributes of `path` inside package `file_id`, published at `pkg_time`.
    fn pkg_entry_attr(
        &self,
        ino: u64,
        file_id: i64,
        path: &str,
        pkg_time: SystemTime,
    ) -> Result<FileAttr> {
        let item = self.pkg_item(file_id, path)?;
        let mut a = match &item.entry {
            _ if item.is_dir => {
                let mut a = self.dir_attr(ino, 0o755);
                a.mtime = item.entry.as_ref().map_or(pkg_time, |e| epoch(e.mtime));
                if let Some(e) = &item.entry {
                    a.perm = perm_bits(e.mode);
                }
                a
            }
            Some(e) => {
                let (kind, size) = match e.kind {
                    EntryKind::Symlink => (
                        FileType::Symlink,
                        e.link_target.as_deref().map_or(0, str::len) as u64,
                    ),
                    _ => (
                        FileType::RegularFile,
                        item.data.as_ref().map_or(0, |d| d.size),
                    ),
                };
                self.attr(ino, kind, perm_bits(e.mode), size, epoch(e.mtime))
            }
            None => self.dir_attr(ino, 0o755),
        };
        if let Some(e) = &item.entry {
            a.uid = e.uid as u32;
            a.gid = e.gid as u32;
        }
        a.ctime = a.mtime;
        a.atime = a.mtime;
        Ok(a)
    }

    // ---- lookup and listing -------------------------------------------------------------

    /// The child `name` of `parent`, as `uid` sees it.
    pub fn lookup(&self, uid: u32, parent: u64, name: &str) -> Result<(FileAttr, Ttl)> {
        let node = self.child(uid, &self.node(parent)?, name)?;
        let ino = self.intern_for_kernel(node.clone());
        let (attr, _) = self
            .attr_of(uid, ino, &node)
            .inspect_err(|_| self.forget(ino, 1))?;
        Ok((attr, node.ttl()))
    }

    fn child(&self, uid: u32, parent: &Node, name: &str) -> Result<Node> {
        if name.contains('/') || name == "." || name == ".." {
            return Err(libc::ENOENT);
        }
        Ok(match parent {
            Node::Root => match name {
                INCOMING if self.snap()?.mirror => return Err(libc::ENOENT),
                INCOMING => Node::IncomingRoot,
                DISTS => Node::Dists(String::new()),
                PKGS => Node::Pkgs,
                _ => return Err(libc::ENOENT),
            },
            Node::IncomingRoot => Node::Incoming {
                owner: uid,
                rel: name.to_string(),
            },
            Node::Incoming { owner, rel } => {
                self.may_touch(uid, *owner)?;
                Node::Incoming {
                    owner: *owner,
                    rel: crate::paths::join(rel, name),
                }
            }
            Node::Dists(dir) => {
                let path = crate::paths::join(dir, name);
                match self.snap()?.dist_entry(&path).ok_or(libc::ENOENT)? {
                    DistEntry::File(id) => Node::DistsFile(id),
                    _ => Node::Dists(path),
                }
            }
            Node::Pkgs => {
                let snap = self.snap()?;
                if name.starts_with('@') && snap.scoped(name).is_some() {
                    Node::PkgScope(name.to_string())
                } else {
                    snap.versions(name).ok_or(libc::ENOENT)?;
                    Node::PkgName(name.to_string())
                }
            }
            Node::PkgScope(scope) => {
                let full = format!("{scope}/{name}");
                self.snap()?.versions(&full).ok_or(libc::ENOENT)?;
                Node::PkgName(full)
            }
            Node::PkgName(pkg) if name == LATEST => Node::PkgLatest(pkg.clone()),
            Node::PkgName(pkg) => {
                let id = self.snap()?.version_file(pkg, name).ok_or(libc::ENOENT)?;
                Node::PkgEntry {
                    file_id: id,
                    path: String::new(),
                }
            }
            Node::PkgEntry { file_id, path } => Node::PkgEntry {
                file_id: *file_id,
                path: crate::paths::join(path, name),
            },
            _ => return Err(libc::ENOTDIR),
        })
    }

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

    pub fn readlink(&self, uid: u32, ino: u64) -> Result<Vec<u8>> {
        match self.node(ino)? {
            Node::Incoming { owner, rel } => {
                self.may_touch(uid, owner)?;
                let t = std::fs::read_link(self.spool_path(owner, &rel)).map_err(|e| errno(&e))?;
                Ok(t.into_os_string().into_encoded_bytes())
            }
            Node::Dists(path) => match self.snap()?.dist_entry(&path) {
                Some(DistEntry::Symlink(t)) => Ok(t.into_bytes()),
                _ => Err(libc::EINVAL),
            },
            Node::PkgLatest(name) => Ok(self
                .snap()?
                .latest(&name)
                .ok_or(libc::ENOENT)?
                .as_bytes()
                .to_vec()),
            Node::PkgEntry { file_id, path } => {
                let e = self.pkg_item(file_id, &path)?.entry.ok_or(libc::EINVAL)?;
                match (&e.kind, &e.link_target) {
                    (EntryKind::Symlink, Some(t)) => Ok(t.as_bytes().to_vec()),
                    _ => Err(libc::EINVAL),
                }
            }
            _ => Err(libc::EINVAL),
        }
    }

    // ---- reading ------------------------------------------------------------------------

    pub fn open(&self, uid: u32, gid: u32, ino: u64, flags: i32) -> Result<Opened> {
        let node = self.node(ino)?;
        if let Node::Incoming { owner, rel } = &node {
            return self.open_spool(uid, gid, ino, *owner, rel, flags);
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(libc::EROFS);
        }
        let snap = self.snap()?;
        match node {
            Node::DistsFile(id) => self.open_published(&snap, id),
            Node::Dists(path) => self.open_dist(&snap, &path),
            Node::PkgEntry { file_id, path } => self.open_in_package(&snap, ino, file_id, &path),
            _ => Err(libc::EISDIR),
        }
    }

    /// A published file in dists/: its object, through the kernel (passthrough) if it is a
    /// local file.
    fn open_published(&self, snap: &Snapshot, id: i64) -> Result<Opened> {
        snap.file(id).ok_or(libc::ENOENT)?;
        let f = lock(&self.catalog)
            .published_file(id)
            .map_err(|e| {
                warn!(error = %e, "catalog unreadable");
                libc::EIO
            })?
            .ok_or(libc::ENOENT)?;
        let file = self
            .objects
            .open(&f.sha256, f.size)
            .map_err(|e| errno(&e))?;
        let passthrough = file.local_file().and_then(|f| f.try_clone().ok());
        let fh = self.add_handle(Handle::Object {
            file,
            backing: Mutex::new(None),
        });
        Ok(Opened {
            fh,
            passthrough,
            direct_io: false,
            immutable: true,
            prefill: None,
        })
    }

    /// Any other file in dists/: a generated index or a `.torrent`, rendered now.
    fn open_dist(&self, snap: &Snapshot, path: &str) -> Result<Opened> {
        match snap.dist_entry(path).ok_or(libc::ENOENT)? {
            e @ (DistEntry::Generated(_) | DistEntry::Torrent(_)) => {
                let bytes = render_dist(&lock(&self.catalog), snap, path, &e)
                    .map_err(|e| {
                        warn!(error = %format!("{e:#}"), "cannot render a dists/ file");
                        libc::EIO
                    })?
                    .ok_or(libc::ENOENT)?;
                let fh = self.add_handle(Handle::Bytes(Arc::new(bytes)));
                Ok(Opened {
                    fh,
                    passthrough: None,
                    direct_io: true,
                    immutable: false,
                    prefill: None,
                })
            }
            DistEntry::Dir => Err(libc::EISDIR),
            _ => Err(libc::EINVAL),
        }
    }

    /// A file inside a package: a reader over the package's payload at the entry's offset.
    fn open_in_package(
        &self,
        snap: &Snapshot,
        ino: u64,
        file_id: i64,
        path: &str,
    ) -> Result<Opened> {
        snap.package(file_id).ok_or(libc::ENOENT)?;
        let pkg = lock(&self.catalog)
            .package(file_id)
            .map_err(|e| {
                warn!(error = %e, "catalog unreadable");
                libc::EIO
            })?
            .ok_or(libc::ENOENT)?;
        let item = self.pkg_item(file_id, path)?;
        if item.is_dir {
            return Err(libc::EISDIR);
        }
        let data = match (&item.entry, item.data) {
            (None, _) => return Err(libc::ENOENT),
            (Some(_), None) => return Err(libc::EINVAL),
            (Some(_), Some(d)) => d,
        };
        let size = snap.file(file_id).ok_or(libc::ENOENT)?.size;
        let object = self.objects.open(&pkg.sha256, size).map_err(|e| {
            warn!(package = %pkg.name, error = %e, "cannot open package");
            errno(&e)
        })?;
        let seekable = self.seekable(&pkg)?;
        let source = content::source(
            &pkg,
            object,
            seekable,
            &self.objects,
            &self.spans,
            &self.catalog,
            &self.cache,
        )
        .map_err(|e| {
            warn!(package = %pkg.name, error = %e, "cannot read package content");
            libc::EIO
        })?;
        let reader = EntryReader::new(source, &data);
        let prefill = self.fill(ino, &reader, data.size);
        let fh = self.add_handle(Handle::Entry(Box::new(reader)));
        Ok(Opened {
            fh,
            passthrough: None,
            direct_io: false,
            immutable: true,
            prefill,
        })
    }

    /// The whole of a small file inside a package on its first open (`prefill`).
    fn fill(&self, ino: u64, reader: &EntryReader, size: u64) -> Option<Vec<u8>> {
        if !self.prefills.claim(ino, size) {
            return None;
        }
        match reader.read(0, size as u32) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                debug!(error = %e, "no prefill; reads will say why");
                self.prefills.finish(ino);
                None
            }
        }
    }

    /// The kernel has the bytes `open` gave it in `Opened::prefill` (or refused them).
    pub fn prefilled(&self, ino: u64) {
        self.prefills.finish(ino);
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Spool(s) => read_file(&s.file, offset, size),
            Handle::Object { file, .. } => read_object(&**file, offset, size),
            Handle::Bytes(b) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(size as usize).min(b.len());
                Ok(b[start..end].to_vec())
            }
            Handle::Entry(r) => r.read(offset, size).map_err(|e| {
                warn!(error = %e, "read inside a package failed");
                libc::EIO
            }),
            Handle::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn release(&self, fh: u64) {
        let h = lock(&self.handles).remove(&fh);
        match h.as_deref() {
            Some(Handle::Spool(s)) => self.release_spool(s),
            // Entries listed but never looked up are not the kernel's: let them go.
            Some(Handle::Dir(list)) => {
                let mut t = lock(&self.inodes);
                for e in list {
                    t.drop_if_unreferenced(e.ino);
                }
            }
            _ => {}
        }
    }

    pub fn statfs(&self) -> Result<libc::statvfs> {
        let path =
            std::ffi::CString::new(self.layout.spool().into_os_string().into_encoded_bytes())
                .map_err(|_| libc::EINVAL)?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `path` is a valid NUL-terminated string and `st` points to writable memory
        // of the right type; statvfs fills it in on success.
        let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(errno(&io::Error::last_os_error()));
        }
        // SAFETY: statvfs returned 0, so it initialized the struct.
        Ok(unsafe { st.assume_init() })
    }

    /// Read-only views refuse every change with EROFS; incoming/ checks ownership.
    fn writable(&self, uid: u32, node: &Node) -> Result<(u32, String)> {
        match node {
            // A mirror takes no uploads (an inode from before it became one stays read-only).
            Node::IncomingRoot | Node::Incoming { .. } if self.snap()?.mirror => Err(libc::EROFS),
            Node::IncomingRoot => Ok((uid, String::new())),
            Node::Incoming { owner, rel } => {
                self.may_touch(uid, *owner)?;
                Ok((*owner, rel.clone()))
            }
            Node::Root | Node::Gone => Err(libc::EACCES),
            _ => Err(libc::EROFS),
        }
    }

    /// Each uid touches only its own part of the spool; root touches all of it.
    fn may_touch(&self, uid: u32, owner: u32) -> Result<()> {
        if uid == owner || uid == 0 {
            Ok(())
        } else {
            Err(libc::ENOENT)
        }
    }
}

/// The bytes of a dists/ entry made when it is opened (generated files, `FILE.torrent`), for
/// the mount and the HTTP view alike; None for other kinds, or a torrent the catalog lacks.
pub fn render_dist(
    cat: &Catalog,
    snap: &Snapshot,
    path: &str,
    e: &DistEntry,
) -> anyhow::Result<Option<Vec<u8>>> {
    match e {
        DistEntry::Generated(g) => {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            Ok(Some(snap.generated(cat, dir, *g)?))
        }
        DistEntry::Torrent(id) => match cat.torrent_info(*id)? {
            Some(info) => Ok(Some(torrent::torrent_file(&info, &snap.trackers)?)),
            None => Ok(None),
        },
        DistEntry::Dir | DistEntry::File(_) | DistEntry::Symlink(_) => Ok(None),
    }
}

fn read_object(f: &dyn ReadAt, offset: u64, size: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                warn!(error = %e, "read of a published file failed");
                return Err(libc::EIO);
            }
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// A seekable twin's size: where its last frame ends.
fn twin_size(frames: &[crate::catalog::Frame]) -> u64 {
    frames.last().map_or(0, |f| f.inp + f.in_len)
}

fn read_file(f: &File, offset: u64, size: u32) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; size as usize];
    let mut done = 0;
    while done < buf.len() {
        match FileExt::read_at(f, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(errno(&e)),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

pub(crate) use crate::sync::lock;

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
fn file_kind(ft: std::fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

fn stat_attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Node {
        Node::PkgEntry {
            file_id: 7,
            path: path.to_string(),
        }
    }

    #[test]
    fn inside_a_package_names_and_attributes_are_kept_long() {
        let t = entry("src/main.c").ttl();
        assert_eq!(t.entry, IMMUTABLE_TTL);
        assert_eq!(t.attr, IMMUTABLE_TTL);
    }

    #[test]
    fn names_a_publication_can_rebind_stay_short() {
        // pkgs/NAME/VERSION (a version can go), a dists/ file name (a replacement is a new
        // inode under the same name): the node's attributes never change, its name can.
        for n in [entry(""), Node::DistsFile(3)] {
            let t = n.ttl();
            assert_eq!(t.entry, VIEW_TTL, "{n:?}");
            assert_eq!(t.attr, IMMUTABLE_TTL, "{n:?}");
        }
        for n in [
            Node::Root,
            Node::Pkgs,
            Node::PkgScope("@types".into()),
            Node::PkgName("hello".into()),
            Node::PkgLatest("hello".into()),
            Node::Dists(String::new()),
            Node::Dists("main/Packages".into()),
        ] {
            let t = n.ttl();
            assert_eq!((t.entry, t.attr), (VIEW_TTL, VIEW_TTL), "{n:?}");
        }
    }

    #[test]
    fn incoming_is_never_cached() {
        for n in [
            Node::IncomingRoot,
            Node::Incoming {
                owner: 1000,
                rel: "hello/a.tar.gz".into(),
            },
            Node::Gone,
        ] {
            let t = n.ttl();
            assert_eq!((t.entry, t.attr), (SPOOL_TTL, SPOOL_TTL), "{n:?}");
        }
    }
}
