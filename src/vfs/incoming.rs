//! incoming/: the spool as each uploader sees it.
//!
//! uid U's files live in `ROOT/incoming/.users/U/` (root's directly in `ROOT/incoming/`), a
//! root-only directory, so uploaders reach their in-flight files only through the mount, where
//! the kernel-reported uid decides what they see. Bytes go straight to the spool file (so an
//! interrupted upload keeps them across disconnects and restarts), and sequential writes are
//! hashed as they stream in (md5 and sha256, recorded as `trusted.repofs.*` xattrs on the
//! spool file, which any later write removes; the daemon borrows the md5, see `Received`).
//!
//! When the last writer of a file closes it, the daemon is told; if that completed an upload,
//! the close waits (bounded) for the verdict and fails with EACCES or EIO if it was refused.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use fuser::FileAttr;
use md5::{Digest, Md5};
use sha2::Sha256;
use tracing::{info, warn};

use super::tree::DistEntry;
use super::{errno, lock, stat_attr, Handle, Node, Opened, Result, Vfs, SPOOL_TTL};
use crate::config::USERS_DIR;
use crate::ingest::control::{self, ClosedRequest, State};
use crate::store::Received;

pub struct SpoolHandle {
    pub file: File,
    pub ino: u64,
    pub owner: u32,
    writable: bool,
    state: Mutex<Box<WriteState>>,
}

#[derive(Default)]
struct WriteState {
    /// Written to since the last flush.
    dirty: bool,
    /// The recorded hashes were removed (they no longer describe the file).
    cleared: bool,
    /// Hashes of bytes 0..next, while writes are sequential from the start.
    hash: Option<InlineHash>,
}

/// md5 and sha256 of bytes 0..next of a file written sequentially from its start. Each hash
/// runs on a thread of its own, started by the first write, so the FUSE thread only hands the
/// bytes on (hashed in the write handler, md5 alone held uploads to ~250 MB/s).
struct InlineHash {
    next: u64,
    hashers: Option<(Hasher<Md5>, Hasher<Sha256>)>,
}

/// Writes a hasher thread may lag behind before the writer waits for it.
const HASH_BACKLOG: usize = 16;

impl InlineHash {
    fn new() -> InlineHash {
        InlineHash {
            next: 0,
            hashers: None,
        }
    }

    /// Hashes `data` written at `offset`; false if that does not continue the file (or a
    /// hasher is gone), which voids the hashes.
    fn feed(&mut self, offset: u64, data: &[u8]) -> bool {
        if offset != self.next {
            return false;
        }
        if self.hashers.is_none() {
            match (Hasher::spawn(), Hasher::spawn()) {
                (Ok(m), Ok(s)) => self.hashers = Some((m, s)),
                _ => return false,
            }
        }
        let Some((md5, sha256)) = &self.hashers else {
            return false;
        };
        let chunk: Arc<[u8]> = data.into();
        self.next += data.len() as u64;
        md5.feed(chunk.clone()) && sha256.feed(chunk)
    }

    fn finish(self) -> Option<Received> {
        let (md5, sha256) = match self.hashers {
            Some((m, s)) => (m.finish()?, s.finish()?),
            None => (
                hex::encode(Md5::digest(b"")),
                hex::encode(Sha256::digest(b"")),
            ),
        };
        Some(Received { md5, sha256 })
    }
}

struct Hasher<D> {
    tx: SyncSender<Arc<[u8]>>,
    thread: JoinHandle<D>,
}

impl<D: Digest + Send + 'static> Hasher<D> {
    fn spawn() -> io::Result<Hasher<D>> {
        let (tx, rx) = sync_channel::<Arc<[u8]>>(HASH_BACKLOG);
        let thread = std::thread::Builder::new()
            .name("repofs-hash".into())
            .spawn(move || {
                let mut d = D::new();
                for chunk in rx {
                    d.update(&chunk);
                }
                d
            })?;
        Ok(Hasher { tx, thread })
    }

    fn feed(&self, chunk: Arc<[u8]>) -> bool {
        self.tx.send(chunk).is_ok()
    }

    fn finish(self) -> Option<String> {
        drop(self.tx);
        self.thread.join().ok().map(|d| hex::encode(d.finalize()))
    }
}

impl Vfs {
    /// Where uid `owner`'s relative path lives in the spool.
    pub(super) fn spool_path(&self, owner: u32, rel: &str) -> PathBuf {
        let base = self.layout.user_spool(owner);
        if rel.is_empty() {
            base
        } else {
            base.join(rel)
        }
    }

    fn spool_rel(&self, owner: u32, rel: &str) -> String {
        if owner == 0 {
            rel.to_string()
        } else {
            format!("{USERS_DIR}/{owner}/{rel}")
        }
    }

    /// Creates uid `owner`'s staging directory on first use.
    fn ensure_base(&self, owner: u32) -> Result<()> {
        if owner == 0 {
            return Ok(());
        }
        let users = self.layout.spool().join(USERS_DIR);
        for (dir, mode) in [(users, 0o711), (self.layout.user_spool(owner), 0o700)] {
            match fs::DirBuilder::new().mode(mode).create(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(errno(&e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `rel` is one of the repository's directories (from the catalog: those that hold
    /// published files or symlinks, and their parents). Every uid's incoming/ shows them, so
    /// `scp f f.sig host:/mnt/repo/incoming/hello/` works without a mkdir, as on an upload
    /// server; they enter a uid's spool only when something is written inside them.
    pub(super) fn repo_dir(&self, rel: &str) -> bool {
        !rel.is_empty()
            && self
                .snap()
                .is_ok_and(|s| s.dist_entry(rel) == Some(DistEntry::Dir))
    }

    /// The repository's subdirectories of `rel` ("" is the top).
    pub(super) fn repo_subdirs(&self, rel: &str) -> Vec<String> {
        let Ok(snap) = self.snap() else {
            return Vec::new();
        };
        snap.dist_children(rel)
            .into_iter()
            .flatten()
            .filter(|(_, e)| *e == DistEntry::Dir)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Attributes of `rel` in uid `owner`'s spool; a repository directory not (yet) there is
    /// a directory of the owner's, so the kernel lets them write into it.
    pub(super) fn spool_attr(&self, ino: u64, owner: u32, rel: &str) -> Result<FileAttr> {
        match fs::symlink_metadata(self.spool_path(owner, rel)) {
            Ok(m) => Ok(stat_attr(ino, &m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.repo_dir(rel) => {
                let mut a = self.dir_attr(ino, 0o755);
                a.uid = owner;
                Ok(a)
            }
            Err(e) => Err(errno(&e)),
        }
    }

    /// Creates the directories of `rel` missing from `owner`'s spool, if each is a repository
    /// directory (anything else missing stays ENOENT). They belong to the owner.
    fn materialize(&self, owner: u32, rel: &str, gid: Option<u32>) -> Result<()> {
        let mut path = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path = crate::paths::join(&path, part);
            let dir = self.spool_path(owner, &path);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => return Err(libc::ENOTDIR),
                Err(e) if e.kind() == io::ErrorKind::NotFound && self.repo_dir(&path) => {}
                Err(e) => return Err(errno(&e)),
            }
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => lchown(&dir, Some(owner), gid)?,
                // Another writer of the same uid materialized it first.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(errno(&e)),
            }
        }
        Ok(())
    }

    fn parent_of(&self, uid: u32, parent: u64, name: &str) -> Result<(u32, String)> {
        if name.contains('/') || name == "." || name == ".." || name.is_empty() {
            return Err(libc::EINVAL);
        }
        let (owner, rel) = self.writable(uid, &self.node(parent)?)?;
        Ok((owner, crate::paths::join(&rel, name)))
    }

    pub fn create(
        &self,
        uid: u32,
        gid: u32,
        parent: u64,
        name: &str,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, Duration, Opened)> {
        let (owner, rel) = self.parent_of(uid, parent, name)?;
        self.ensure_base(owner)?;
        self.materialize(owner, parent_dir(&rel), (uid == owner).then_some(gid))?;
        let path = self.spool_path(owner, &rel);
        let mut o = OpenOptions::new();
        o.read(true)
            .write(true)
            .mode(mode & 0o777)
            .custom_flags(flags & (libc::O_EXCL | libc::O_APPEND) | libc::O_NOFOLLOW);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        } else {
            o.create(true);
        }
        if flags & libc::O_TRUNC != 0 {
            o.truncate(true);
        }
        let file = o.open(&path).map_err(|e| errno(&e))?;
        chown(&path, uid, gid)?;
        let m = file.metadata().map_err(|e| errno(&e))?;
        let ino = self.intern_for_kernel(Node::Incoming { owner, rel });
        let fh = self.spool_handle(file, ino, owner, true, m.len(), true);
        // See `open_spool` on direct I/O.
        Ok((
            stat_attr(ino, &m),
            SPOOL_TTL,
            Opened {
                fh,
                passthrough: None,
                direct_io: true,
                immutable: false,
                prefill: None,
            },
        ))
    }

    pub(super) fn open_spool(
        &self,
        uid: u32,
        _gid: u32,
        ino: u64,
        owner: u32,
        rel: &str,
        flags: i32,
    ) -> Result<Opened> {
        self.may_touch(uid, owner)?;
        let path = self.spool_path(owner, rel);
        let acc = flags & libc::O_ACCMODE;
        let writable = acc != libc::O_RDONLY;
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .truncate(writable && flags & libc::O_TRUNC != 0)
            .custom_flags(flags & libc::O_APPEND | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| errno(&e))?;
        let len = file.metadata().map_err(|e| errno(&e))?.len();
        let dirty = writable && flags & libc::O_TRUNC != 0;
        let fh = self.spool_handle(file, ino, owner, writable, len, dirty);
        // Writers bypass the mount's page cache: the bytes go from the uploader's buffer
        // straight to the spool file's, instead of being copied into a second cache first.
        Ok(Opened {
            fh,
            passthrough: None,
            direct_io: writable,
            immutable: false,
            prefill: None,
        })
    }

    /// `dirty`: created or truncated, so an upload of this file is in progress from now on.
    fn spool_handle(
        &self,
        file: File,
        ino: u64,
        owner: u32,
        writable: bool,
        len: u64,
        dirty: bool,
    ) -> u64 {
        if dirty {
            *lock(&self.writers).entry(ino).or_default() += 1;
        }
        let hash = (len == 0).then(InlineHash::new);
        self.add_handle(Handle::Spool(SpoolHandle {
            file,
            ino,
            owner,
            writable,
            state: Mutex::new(Box::new(WriteState {
                hash,
                dirty,
                ..Default::default()
            })),
        }))
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        let h = self.handle(fh)?;
        let Handle::Spool(s) = &*h else {
            return Err(libc::EROFS);
        };
        if !s.writable {
            return Err(libc::EBADF);
        }
        {
            let mut st = lock(&s.state);
            if !st.cleared {
                Received::clear(&s.file);
                st.cleared = true;
            }
            self.mark_dirty(s.ino, &mut st);
            // A rewrite or a gap: these hashes cannot describe the file any more.
            if !st.hash.as_mut().is_some_and(|h| h.feed(offset, data)) {
                st.hash = None;
            }
        }
        s.file.write_all_at(data, offset).map_err(|e| errno(&e))?;
        Ok(data.len() as u32)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<()> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Spool(s) if datasync => s.file.sync_data(),
            Handle::Spool(s) => s.file.sync_all(),
            _ => Ok(()),
        }
        .map_err(|e| errno(&e))
    }

    /// close(2): if this was the last writer of a file that completes an upload, waits for
    /// the verdict.
    pub fn flush(&self, fh: u64) -> Result<()> {
        let h = self.handle(fh)?;
        let Handle::Spool(s) = &*h else { return Ok(()) };
        let finished = {
            let mut st = lock(&s.state);
            if !std::mem::take(&mut st.dirty) {
                return Ok(());
            }
            st.hash.take()
        };
        let others = {
            let mut w = lock(&self.writers);
            let n = w.get(&s.ino).copied().unwrap_or(1).saturating_sub(1);
            if n == 0 {
                w.remove(&s.ino);
            } else {
                w.insert(s.ino, n);
            }
            n
        };
        if others > 0 {
            return Ok(());
        }
        let Ok(Node::Incoming { owner, rel }) = self.node(s.ino) else {
            return Ok(()); // renamed over or removed meanwhile
        };
        let len = s.file.metadata().map(|m| m.len()).unwrap_or(0);
        if let Some(r) = finished
            .filter(|h| h.next == len)
            .and_then(InlineHash::finish)
        {
            if let Err(e) = r.record(&s.file) {
                warn!(error = %e, "could not record hashes on the spool file");
            }
            info!(file = %self.spool_rel(owner, &rel), bytes = len, md5 = %r.md5, sha256 = %r.sha256, "received");
        }
        self.report_closed(owner, &rel, s.ino)
    }

    /// Tells the daemon that every writer closed `rel`, and turns its verdict into an errno.
    fn report_closed(&self, owner: u32, rel: &str, ino: u64) -> Result<()> {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name.starts_with('.') || name.ends_with(crate::ingest::spool::REJECTED_SUFFIX) {
            return Ok(()); // temporary files (rsync) and notes complete nothing
        }
        let open = self.open_for_writing(ino);
        let req = ClosedRequest {
            path: self.spool_rel(owner, rel),
            open,
        };
        match control::request(
            &self.layout.control_socket(),
            &req,
            self.config.mount.close_wait,
        ) {
            Ok(reply) => {
                if reply.state == State::Rejected {
                    info!(file = %req.path, reason = ?reply.reason, "upload refused: {}", reply.message);
                }
                match reply.errno() {
                    0 => Ok(()),
                    e => Err(e),
                }
            }
            // The daemon is down or slow: the upload is safe in the spool and will be judged
            // when it is back; the verdict then comes as NAME.rejected or in `repofs status`.
            Err(e) => {
                warn!(file = %req.path, error = %e, "no verdict from repofsd; upload left pending");
                Ok(())
            }
        }
    }

    /// Spool paths (as the daemon names them) that some handle still has open for writing.
    fn open_for_writing(&self, except: u64) -> Vec<String> {
        let inos: Vec<u64> = lock(&self.writers)
            .iter()
            .filter(|(&ino, &n)| ino != except && n > 0)
            .map(|(&ino, _)| ino)
            .collect();
        inos.into_iter()
            .filter_map(|ino| match self.node(ino) {
                Ok(Node::Incoming { owner, rel }) => Some(self.spool_rel(owner, &rel)),
                _ => None,
            })
            .collect()
    }

    /// A handle that writes is an upload in progress until it is flushed: `writers` counts
    /// those per inode. Counting flushed handles instead would race: the kernel sends RELEASE
    /// after close(2) has returned, when cp may already be closing the upload's next file.
    fn mark_dirty(&self, ino: u64, st: &mut WriteState) {
        if !st.dirty {
            st.dirty = true;
            *lock(&self.writers).entry(ino).or_default() += 1;
        }
    }

    pub(super) fn release_spool(&self, s: &SpoolHandle) {
        if std::mem::take(&mut lock(&s.state).dirty) {
            let mut w = lock(&self.writers);
            if let Some(n) = w.get_mut(&s.ino) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    w.remove(&s.ino);
                }
            }
        }
    }

    pub fn mkdir(
        &self,
        uid: u32,
        gid: u32,
        parent: u64,
        name: &str,
        mode: u32,
    ) -> Result<(FileAttr, Duration)> {
        let (owner, rel) = self.parent_of(uid, parent, name)?;
        self.ensure_base(owner)?;
        self.materialize(owner, parent_dir(&rel), (uid == owner).then_some(gid))?;
        let path = self.spool_path(owner, &rel);
        fs::DirBuilder::new()
            .mode(mode & 0o777)
            .create(&path)
            .map_err(|e| errno(&e))?;
        chown(&path, uid, gid)?;
        let m = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
        let ino = self.intern_for_kernel(Node::Incoming { owner, rel });
        Ok((stat_attr(ino, &m), SPOOL_TTL))
    }

    pub fn unlink(&self, uid: u32, parent: u64, name: &str) -> Result<()> {
        let (owner, rel) = self.parent_of(uid, parent, name)?;
        fs::remove_file(self.spool_path(owner, &rel)).map_err(|e| errno(&e))?;
        self.forget_path(owner, &rel);
        Ok(())
    }

    pub fn rmdir(&self, uid: u32, parent: u64, name: &str) -> Result<()> {
        let (owner, rel) = self.parent_of(uid, parent, name)?;
        fs::remove_dir(self.spool_path(owner, &rel)).map_err(|e| errno(&e))?;
        self.forget_path(owner, &rel);
        Ok(())
    }

    pub fn rename(
        &self,
        uid: u32,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        flags: u32,
    ) -> Result<()> {
        let (owner, rel) = self.parent_of(uid, parent, name)?;
        let (new_owner, new_rel) = self.parent_of(uid, newparent, newname)?;
        if owner != new_owner {
            return Err(libc::EXDEV);
        }
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(libc::EINVAL);
        }
        self.materialize(owner, parent_dir(&new_rel), None)?;
        let from = cstring(&self.spool_path(owner, &rel))?;
        let to = cstring(&self.spool_path(owner, &new_rel))?;
        // SAFETY: both paths are valid NUL-terminated strings; renameat2 only reads them.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                flags,
            )
        };
        if rc != 0 {
            return Err(errno(&io::Error::last_os_error()));
        }
        lock(&self.inodes).rename_spool(owner, &rel, &new_rel);
        // rsync renames its finished temporary file into place: that can complete an upload.
        // The daemon is told, but a rename does not wait for the verdict.
        let ino = self.intern(Node::Incoming {
            owner,
            rel: new_rel.clone(),
        });
        if lock(&self.writers).get(&ino).copied().unwrap_or(0) == 0 {
            let socket = self.layout.control_socket();
            let req = ClosedRequest {
                path: self.spool_rel(owner, &new_rel),
                open: self.open_for_writing(ino),
            };
            let wait = self.config.mount.close_wait;
            std::thread::spawn(move || {
                if let Err(e) = control::request(&socket, &req, wait) {
                    warn!(file = %req.path, error = %e, "could not report a rename to repofsd");
                }
            });
        }
        Ok(())
    }

    fn forget_path(&self, owner: u32, rel: &str) {
        lock(&self.inodes).unlink(&Node::Incoming {
            owner,
            rel: rel.to_string(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub fn setattr(
        &self,
        uid: u32,
        ino: u64,
        fh: Option<u64>,
        mode: Option<u32>,
        owner_ids: (Option<u32>, Option<u32>),
        size: Option<u64>,
        times: (Option<SystemTime>, Option<SystemTime>, bool, bool),
    ) -> Result<(FileAttr, Duration)> {
        let node = self.node(ino)?;
        let (owner, rel) = match &node {
            Node::Incoming { owner, rel } => {
                self.may_touch(uid, *owner)?;
                (*owner, rel.clone())
            }
            Node::IncomingRoot(_) | Node::Root | Node::Gone => return Err(libc::EPERM),
            _ => return Err(libc::EROFS),
        };
        let path = self.spool_path(owner, &rel);
        // A repository directory not in the spool yet (`touch incoming/hello`, or rsync -a
        // setting a directory's times): it is materialized as on a write inside it.
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            self.ensure_base(owner)?;
            self.materialize(owner, &rel, None)?;
        }
        if let Some(len) = size {
            let h = fh.and_then(|fh| self.handle(fh).ok());
            match h.as_deref() {
                Some(Handle::Spool(s)) => {
                    let mut st = lock(&s.state);
                    // scp truncates to the size it just wrote: the hashes still hold.
                    if st.hash.as_ref().is_some_and(|h| h.next != len) {
                        st.hash = None;
                    }
                    self.mark_dirty(s.ino, &mut st);
                    s.file.set_len(len)
                }
                _ => OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .and_then(|f| {
                        Received::clear(&f);
                        f.set_len(len)
                    }),
            }
            .map_err(|e| errno(&e))?;
        }
        if let Some(m) = mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(m & 0o777))
                .map_err(|e| errno(&e))?;
        }
        if let (None, None) = owner_ids {
        } else {
            // The kernel (default_permissions) already allowed this change for this caller.
            lchown(&path, owner_ids.0, owner_ids.1)?;
        }
        let (atime, mtime, atime_now, mtime_now) = times;
        if atime.is_some() || mtime.is_some() || atime_now || mtime_now {
            set_times(&path, atime, mtime, atime_now, mtime_now)?;
        }
        let m = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
        Ok((stat_attr(ino, &m), SPOOL_TTL))
    }
}

/// The directory part of a spool-relative path ("" at the top).
fn parent_dir(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(d, _)| d)
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    lchown(path, Some(uid), Some(gid))
}

fn lchown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    std::os::unix::fs::lchown(path, uid, gid).map_err(|e| errno(&e))
}

fn set_times(
    path: &Path,
    atime: Option<SystemTime>,
    mtime: Option<SystemTime>,
    atime_now: bool,
    mtime_now: bool,
) -> Result<()> {
    let ts = |t: Option<SystemTime>, now: bool| -> libc::timespec {
        if now {
            return libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            };
        }
        match t {
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            Some(t) => {
                let (sec, nsec) = match t.duration_since(SystemTime::UNIX_EPOCH) {
                    Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                    Err(e) => {
                        let d = e.duration();
                        let (mut s, mut n) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i64));
                        if n < 0 {
                            s -= 1;
                            n += 1_000_000_000;
                        }
                        (s, n)
                    }
                };
                libc::timespec {
                    tv_sec: sec,
                    tv_nsec: nsec,
                }
            }
        }
    };
    let times = [ts(atime, atime_now), ts(mtime, mtime_now)];
    let p = cstring(path)?;
    // SAFETY: `p` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(errno(&io::Error::last_os_error()));
    }
    Ok(())
}
