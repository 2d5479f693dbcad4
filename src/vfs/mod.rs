//! FUSE views over the repository: `incoming/` (the spool, per uploader), `dists/` (published
//! files and generated indexes) and `pkgs/` (unpacked package trees).
//!
//! Layers, in the order a request flows:
//! - `fuse` translates `fuser` callbacks into calls on `Vfs` and replies; nothing else.
//! - `Vfs` (this module) maps inode numbers to `Node`s, resolves names to nodes (`lookup`)
//!   against a catalog `tree::Snapshot`, and keeps open handles. Its answers for the read-only
//!   views are split by kind of request: `attrs` (what a node's attributes are), `dirs` (what
//!   a directory lists), `files` (opening and reading a file, and a symlink's target).
//! - `incoming` does the writable part: files land in the spool as they are written, hashed
//!   inline, and the last close asks the daemon for the verdict.
//! - `content` reads files inside packages without inflating archives from their start.
//! - `mount` mounts, unmounts, recovers stale mounts and handles signals.
//! - `stats` counts the requests the kernel sent, by kind.
//! - `prefill` hands small files to the kernel's page cache as they are opened.
//!
//! Inode numbers are interned `Node`s (`inodes`), never reused, and held only while the kernel
//! holds them (FORGET prunes them), so the table is as large as the kernel's inode cache.

mod attrs;
pub mod content;
mod dirs;
mod files;
mod fuse;
pub mod http;
pub mod incoming;
mod inodes;
pub mod mount;
mod prefill;
pub mod spans;
mod stats;
pub mod tree;
mod unpacked;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use fuser::{FileAttr, FileType};
use tracing::{debug, info, warn};

use crate::archive::EntryKind;
use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::fetch::objects::Objects;
use crate::store::ReadAt;
use attrs::stat_attr;
use content::{EntryReader, Seekable};
pub use files::render_dist;
use incoming::SpoolHandle;
use inodes::Inodes;
use prefill::Prefills;
use spans::Spans;
use tree::{DistEntry, PkgTree, Snapshot, TreeCache};
use unpacked::Cache;

/// Errors are errno values: what the kernel passes back to the caller.
pub type Errno = i32;
pub type Result<T> = std::result::Result<T, Errno>;

/// A catalog read failed under a view: logged, and EIO to the reader.
pub(crate) fn catalog_eio(e: impl std::fmt::Display) -> i32 {
    warn!(error = %e, "catalog unreadable");
    libc::EIO
}

pub fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// How long the kernel may keep a name in the read-only views, which a publication can
/// rebind or remove. Short, so that a change shows at once; new names show immediately anyway
/// (negative lookups are not cached).
const VIEW_TTL: Duration = Duration::from_secs(1);
/// How long the kernel may keep the attributes (and so the listing) of a node that follows
/// the views: long, because the mount tells the kernel itself when a new catalog generation
/// changes them (`views_moved`); the bound only limits a notice the kernel failed to take.
const VIEW_ATTR_TTL: Duration = Duration::from_secs(60);
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
    /// incoming/ as uid N sees it (each uid lists only its own uploads). One inode per uid,
    /// not one for all: the kernel keeps a directory's listing per inode (`dirs`), so a
    /// listing shared by every uid would show one uid's uploads to another.
    IncomingRoot(u32),
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
            Node::IncomingRoot(_) | Node::Incoming { .. } | Node::Gone => both(SPOOL_TTL),
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
            | Node::PkgLatest(_) => Ttl {
                entry: VIEW_TTL,
                attr: VIEW_ATTR_TTL,
            },
        }
    }

    /// Whether what this node lists, or its attributes, change with the catalog's generation
    /// (the mount then tells the kernel: `Vfs::views_moved`).
    fn follows_views(&self) -> bool {
        self.ttl().attr == VIEW_ATTR_TTL
    }
}

/// An open file or directory.
pub enum Handle {
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

/// One path inside a package, as the views need it, borrowed for the length of a call
/// (`Vfs::with_pkg_item`).
struct PkgItem<'a> {
    /// The catalog's entry; None for a directory the archive only implies.
    entry: Option<&'a crate::archive::Entry>,
    is_dir: bool,
    /// The entry holding the bytes: itself, or its hard link's target.
    data: Option<&'a crate::archive::Entry>,
}

pub struct DirEntry {
    pub ino: u64,
    pub kind: FileType,
    pub name: OsString,
    /// Attributes and their TTL, where the listing knew them already (a package's entries:
    /// immutable, and at hand in its tree), so READDIRPLUS needs no lookup per entry.
    pub plus: Option<(FileAttr, Duration)>,
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

/// How long the catalog is asked at every request after its files last changed
/// (`catalog::Watch`): a commit is visible once its WAL is synced, within milliseconds.
const CATALOG_QUIET: Duration = Duration::from_secs(5);

pub struct Vfs {
    layout: Layout,
    /// Where content bytes come from (store, or a mirror's cache and repofsd).
    objects: Objects,
    config: Config,
    /// Shared with gzip readers, which fetch seek-point windows span by span.
    catalog: Arc<Mutex<Catalog>>,
    /// Whether the catalog may have changed (`snap`); locked inside the catalog's lock.
    watch: Mutex<crate::catalog::Watch>,
    snapshot: RwLock<Arc<Snapshot>>,
    trees: Mutex<TreeCache>,
    /// How each package's payload is read at an offset (gzip seek points without windows,
    /// or a seekable twin's frames).
    seekable: Mutex<HashMap<i64, Seekable>>,
    sources: Mutex<content::Sources>,
    spans: Arc<Spans>,
    cache: Cache,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    listings: Mutex<dirs::Listings>,
    next_fh: AtomicU64,
    /// Open write handles per spool inode: the last close is the one that counts.
    writers: Mutex<HashMap<u64, usize>>,
    prefills: Prefills,
    started: SystemTime,
}

impl Vfs {
    pub fn new(layout: Layout, config: Config) -> anyhow::Result<Vfs> {
        layout.create()?;
        // Watching before the snapshot is loaded, so a change after the load is seen; our
        // own open (which creates the WAL and its index) is not one. (A commit written before
        // the settle that became visible only after the load is left to `views_moved`.)
        let mut watch = crate::catalog::Watch::new(&layout.catalog(), CATALOG_QUIET)
            .unwrap_or_else(|e| {
                warn!(error = %e, "no inotify watch on the catalog; asking it at every request");
                crate::catalog::Watch::none()
            });
        let catalog = Catalog::open(&layout.catalog())?;
        watch.settle();
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
            objects: Objects::new(&layout, &config, snapshot.mirror)?,
            layout,
            config,
            catalog: Arc::new(Mutex::new(catalog)),
            watch: Mutex::new(watch),
            snapshot: RwLock::new(Arc::new(snapshot)),
            trees: Mutex::new(TreeCache::new(TREE_ENTRIES_KEPT)),
            seekable: Mutex::new(HashMap::new()),
            sources: Mutex::default(),
            spans,
            inodes: Mutex::new(Inodes::new()),
            handles: Mutex::new(HashMap::new()),
            listings: Mutex::default(),
            next_fh: AtomicU64::new(1),
            writers: Mutex::new(HashMap::new()),
            prefills: Prefills::default(),
            started: SystemTime::now(),
        })
    }

    /// Whether content comes from an upstream's swarm (catalog setting `upstream`, as the
    /// latest snapshot saw it; once a mirror, always, until the mount restarts).
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
        self.snap_checked(false)
    }

    /// The snapshot of the catalog's current generation. The catalog is asked only when its
    /// watch saw its files change (`catalog::Watch`), or when `always`.
    fn snap_checked(&self, always: bool) -> Result<Arc<Snapshot>> {
        // The catalog's lock before the snapshot's: whoever consumed a change's events holds
        // it until the fresh snapshot is in place, so no request sees the events gone and
        // the old snapshot still there.
        let mut cat = lock(&self.catalog);
        let current = crate::sync::read(&self.snapshot).clone();
        let moved = lock(&self.watch).moved();
        if !moved && !always {
            return Ok(current);
        }
        // A mirror's first snapshot replaces the catalog's file: read the new one.
        cat.follow().map_err(catalog_eio)?;
        let version = cat.data_version().map_err(catalog_eio)?;
        if version == current.version {
            return Ok(current);
        }
        if !moved {
            debug!(
                version,
                was = current.version,
                "the catalog moved with no event on its files"
            );
        }
        let fresh = Arc::new(Snapshot::load(&cat).map_err(catalog_eio)?);
        // Before any reader sees the files of a mirror's catalog, objects come from its cache.
        self.follow_upstream(&current, &fresh);
        *crate::sync::write(&self.snapshot) = fresh.clone();
        Ok(fresh)
    }

    /// The inodes the kernel holds whose listing or attributes follow the views, if the
    /// catalog has moved since `seen` (its data_version; None at first, with nothing to tell).
    /// It asks the catalog whatever its watch says: the watch is the fast path, this the
    /// backstop.
    pub fn views_moved(&self, seen: &mut Option<i64>) -> Vec<u64> {
        let Ok(snap) = self.snap_checked(true) else {
            return Vec::new();
        };
        match seen.replace(snap.version) {
            Some(v) if v != snap.version => lock(&self.inodes).following_views(),
            _ => Vec::new(),
        }
    }

    /// A mount started before its mirror service first ran becomes a mirror's mount once the
    /// catalog names an upstream; it does not turn back (a promoted mirror's content is in
    /// the cache, not the store) but says so.
    fn follow_upstream(&self, current: &Snapshot, fresh: &Snapshot) {
        if self.objects.follow(fresh.mirror) {
            info!("the catalog names an upstream: reading content through the mirror's cache");
        } else if current.mirror && !fresh.mirror && self.objects.is_mirror() {
            warn!("the catalog names no upstream any more; content comes through the cache until the mount restarts");
        }
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

    /// What `path` inside package `file_id` is. From the parsed tree when it is at hand
    /// (a listing loaded it); otherwise from point queries, so that reaching one file deep in
    /// a fresh mount never loads the package's whole entry list.
    fn with_pkg_item<R>(
        &self,
        file_id: i64,
        path: &str,
        f: impl FnOnce(PkgItem<'_>) -> R,
    ) -> Result<R> {
        let tree = lock(&self.trees).get(file_id);
        if let Some(tree) = tree {
            let n = tree.node(path).ok_or(libc::ENOENT)?;
            let entry = tree.entry(n);
            return Ok(f(PkgItem {
                is_dir: tree.is_dir(n),
                entry,
                data: entry.and_then(|e| tree.data_of(e)),
            }));
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
        drop(cat);
        Ok(f(PkgItem {
            entry: entry.as_ref(),
            is_dir,
            data: data.as_ref(),
        }))
    }

    // ---- lookup -------------------------------------------------------------------------

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
                INCOMING => Node::IncomingRoot(uid),
                DISTS => Node::Dists(String::new()),
                PKGS => Node::Pkgs,
                _ => return Err(libc::ENOENT),
            },
            Node::IncomingRoot(owner) => {
                self.may_touch(uid, *owner)?;
                Node::Incoming {
                    owner: *owner,
                    rel: name.to_string(),
                }
            }
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

    // ---- filesystem and permissions -----------------------------------------------------

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
            Node::IncomingRoot(_) | Node::Incoming { .. } if self.snap()?.mirror => {
                Err(libc::EROFS)
            }
            Node::IncomingRoot(owner) => {
                self.may_touch(uid, *owner)?;
                Ok((*owner, String::new()))
            }
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

pub(crate) use crate::sync::lock;

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
            // Their attributes follow the views: kept long, the mount invalidates them.
            let t = n.ttl();
            assert_eq!((t.entry, t.attr), (VIEW_TTL, VIEW_ATTR_TTL), "{n:?}");
            assert!(n.follows_views(), "{n:?}");
        }
        for n in [
            entry(""),
            entry("a/b"),
            Node::DistsFile(3),
            Node::IncomingRoot(0),
        ] {
            assert!(!n.follows_views(), "{n:?}");
        }
    }

    #[test]
    fn incoming_is_never_cached() {
        for n in [
            Node::IncomingRoot(1000),
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
