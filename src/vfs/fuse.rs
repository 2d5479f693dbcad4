//! `fuser` glue: each callback counts itself (`stats`), converts its arguments, calls `Vfs`,
//! and replies. No logic.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::debug;

use super::stats::{Op, Stats};
use super::{Opened, Vfs};

/// The filesystem as `fuser` sees it: a shared `Vfs`, the count of requests it served, the
/// way back to the kernel (set once the session exists), and whether the kernel can do
/// without OPENDIR (set at init).
pub struct Fuse(
    pub Arc<Vfs>,
    pub Arc<Stats>,
    pub Arc<OnceLock<Notifier>>,
    pub bool,
);

const GEN: Generation = Generation(0);

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn name(n: &OsStr) -> Result<&str, Errno> {
    n.to_str().ok_or(err(libc::EINVAL))
}

fn time(t: Option<TimeOrNow>) -> (Option<SystemTime>, bool) {
    match t {
        Some(TimeOrNow::SpecificTime(t)) => (Some(t), false),
        Some(TimeOrNow::Now) => (None, true),
        None => (None, false),
    }
}

fn open_flags(o: &Opened) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if o.immutable {
        f |= FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH;
    }
    f
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Published files are served by the kernel from the store (passthrough) when it can.
        if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() {
            let _ = config.set_max_stack_depth(1);
        }
        // `ls -l` after readdir: entries come with their attributes, not one lookup each.
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        // Writers in incoming/ use direct I/O; this keeps shared writable mmap working there.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        // Directories need no handle (`dirs`): the first OPENDIR's ENOSYS spares every later
        // OPENDIR and RELEASEDIR. The kernel then keeps each directory's listing until the
        // directory's time moves (`attrs::view_time`); AUTO_INVAL_DATA has it look at the
        // time at every rewind, not only when a lookup of the path refreshes it.
        self.3 = config
            .add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT | InitFlags::FUSE_AUTO_INVAL_DATA)
            .is_ok();
        // The kernel offers at most its default readahead (128 KiB) here; the mount raises it
        // through sysfs once mounted (`mount::raise_readahead`).
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        self.1.count(Op::Lookup);
        match name(n).and_then(|n| self.0.lookup(req.uid(), parent.0, n).map_err(err)) {
            Ok((attr, ttl)) => reply.entry_with_ttls(&ttl.attr, &ttl.entry, &attr, GEN),
            Err(e) => reply.error(e),
        }
    }

    // fuser's default batch_forget calls this for each inode (it cannot be overridden: its
    // argument type is private), so `forget` counts inodes; the kernel sends them in batches
    // and waits for no reply.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.1.count(Op::Forget);
        self.0.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.1.count(Op::Getattr);
        match self.0.getattr(req.uid(), ino.0) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.1.count(Op::Setattr);
        let (a, a_now) = time(atime);
        let (m, m_now) = time(mtime);
        match self.0.setattr(
            req.uid(),
            ino.0,
            fh.map(|f| f.0),
            mode,
            (uid, gid),
            size,
            (a, m, a_now, m_now),
        ) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.1.count(Op::Readlink);
        match self.0.readlink(req.uid(), ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.1.count(Op::Mkdir);
        match name(n).and_then(|n| {
            self.0
                .mkdir(req.uid(), req.gid(), parent.0, n, mode)
                .map_err(err)
        }) {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, GEN),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.1.count(Op::Unlink);
        match name(n).and_then(|n| self.0.unlink(req.uid(), parent.0, n).map_err(err)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        self.1.count(Op::Rmdir);
        match name(n).and_then(|n| self.0.rmdir(req.uid(), parent.0, n).map_err(err)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _n: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        self.1.count(Op::Symlink);
        // An upload is plain files; the spool would refuse a symlink as unsafe anyway.
        reply.error(err(libc::EPERM));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Rename);
        let r = name(n).and_then(|n| {
            name(newname).and_then(|nn| {
                self.0
                    .rename(req.uid(), parent.0, n, newparent.0, nn, flags.bits())
                    .map_err(err)
            })
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.1.count(Op::Open);
        match self.0.open(req.uid(), req.gid(), ino.0, flags.0) {
            Ok(mut o) => {
                let fh = FileHandle(o.fh);
                if let Some(file) = o.passthrough.take() {
                    match reply.open_backing(&file) {
                        Ok(id) => {
                            // The kernel refuses passthrough beside any flag but DIRECT_IO,
                            // PARALLEL_DIRECT_WRITES and NOFLUSH (its page cache is unused).
                            let flags = open_flags(&o) - FopenFlags::FOPEN_KEEP_CACHE;
                            reply.opened_passthrough(fh, flags, &id);
                            self.0.attach_backing(o.fh, id);
                            return;
                        }
                        Err(e) => debug!(error = %e, "passthrough unavailable; serving reads"),
                    }
                }
                if let Some(bytes) = o.prefill.take() {
                    let stored = self.2.get().map(|n| n.store(ino, 0, &bytes));
                    match stored {
                        Some(Ok(())) => self.1.stored(bytes.len()),
                        Some(Err(e)) => debug!(error = %e, "kernel refused the prefill"),
                        None => {}
                    }
                    self.0.prefilled(ino.0);
                }
                reply.opened(fh, open_flags(&o))
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.1.count(Op::Read);
        let mut reply = Some(reply);
        let read = self.0.read(fh.0, offset, size, |d| {
            self.1.read_bytes(d.len());
            if let Some(r) = reply.take() {
                r.data(d);
            }
        });
        if let (Err(e), Some(r)) = (read, reply) {
            r.error(err(e));
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wflags: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.1.count(Op::Write);
        match self.0.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Flush);
        match self.0.flush(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Release);
        self.0.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Fsync);
        match self.0.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.1.count(Op::Opendir);
        if self.3 {
            return reply.error(err(libc::ENOSYS));
        }
        match self.0.opendir(req.uid(), ino.0) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.1.count(Op::Readdir);
        match self.0.readdir(req.uid(), ino.0, offset, |e, next| {
            reply.add(INodeNo(e.ino), next, e.kind, &e.name)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.1.count(Op::Readdirplus);
        match self
            .0
            .readdirplus(req.uid(), ino.0, offset, |e, next, attr, ttl| {
                reply.add(INodeNo(e.ino), next, &e.name, &ttl, attr, GEN)
            }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Releasedir);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Fsyncdir);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.1.count(Op::Statfs);
        match self.0.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.1.count(Op::Setxattr);
        // `cp -a` and rsync -X shrug this off; uploads carry no extended attributes.
        reply.error(err(libc::EOPNOTSUPP));
    }

    // ENOSYS, not ENODATA: the kernel then stops asking for the rest of the mount's life.
    // `ls -l` asks two xattrs per file (security.selinux, system.posix_acl_access); answering
    // each would double the cost of `ls -lR` on a package tree. Nothing here has xattrs.
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _n: &OsStr, _size: u32, reply: ReplyXattr) {
        self.1.count(Op::Getxattr);
        reply.error(err(libc::ENOSYS));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        self.1.count(Op::Listxattr);
        reply.error(err(libc::ENOSYS));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.1.count(Op::Removexattr);
        reply.error(err(libc::EOPNOTSUPP));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        self.1.count(Op::Access);
        // With default_permissions the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.1.count(Op::Create);
        match name(n).and_then(|n| {
            self.0
                .create(req.uid(), req.gid(), parent.0, n, mode, flags)
                .map_err(err)
        }) {
            Ok((attr, ttl, o)) => reply.created(&ttl, &attr, GEN, FileHandle(o.fh), open_flags(&o)),
            Err(e) => reply.error(e),
        }
    }
}
