//! Opening and reading files, in every view but the spool's writes: a published file is
//! read from its object (passed through to the kernel when local), a generated dists/ file is
//! rendered whole at open, and a file inside a package is read through `content` from its
//! package's payload. Also a symlink's target, and `render_dist`, which the HTTP view shares.

use std::io;
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};

use super::content::{self, EntryReader, Seekable};
use super::tree::{DistEntry, Snapshot};
use super::{catalog_eio, errno, lock, Handle, Node, Opened, Result, Vfs};
use crate::archive::EntryKind;
use crate::catalog::Catalog;
use crate::store::ReadAt;
use crate::torrent;

impl Vfs {
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
            .map_err(catalog_eio)?
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
        let data = self.with_pkg_item(file_id, path, |i| match (i.is_dir, i.entry, i.data) {
            (true, _, _) => Err(libc::EISDIR),
            (false, None, _) => Err(libc::ENOENT),
            (false, Some(_), None) => Err(libc::EINVAL),
            (false, Some(_), Some(d)) => Ok(d.clone()),
        })??;
        let source = self.package_source(snap, file_id)?;
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

    /// How the files of package `file_id` are read: kept from an earlier open while the
    /// catalog generation lasts (`content::Sources`), on a primary, whose store objects never
    /// change. A mirror opens each time: its cache evicts and its opens mark recent use.
    fn package_source(&self, snap: &Snapshot, file_id: i64) -> Result<content::Source> {
        let keep = !self.objects.is_mirror();
        if keep {
            if let Some(s) = lock(&self.sources).get(snap.version, file_id) {
                return Ok(s);
            }
        }
        let pkg = lock(&self.catalog)
            .package(file_id)
            .map_err(catalog_eio)?
            .ok_or(libc::ENOENT)?;
        let size = snap.file(file_id).ok_or(libc::ENOENT)?.size;
        let seekable = self.seekable(&pkg)?;
        // Opened only if read: a payload with a seekable twin is read from the twin alone,
        // and a cold open(2) of a store object costs milliseconds of metadata reads.
        let mut open_failed = None;
        let object = || {
            self.objects.open(&pkg.sha256, size).inspect_err(|e| {
                warn!(package = %pkg.name, error = %e, "cannot open package");
                open_failed = Some(errno(e));
            })
        };
        let source = content::source(
            &pkg,
            object,
            seekable,
            &self.objects,
            &self.spans,
            &self.catalog,
            &self.cache,
        );
        let source = source.map_err(|e| {
            open_failed.unwrap_or_else(|| {
                warn!(package = %pkg.name, error = %e, "cannot read package content");
                libc::EIO
            })
        })?;
        if keep {
            lock(&self.sources).keep(snap.version, file_id, &source);
        }
        Ok(source)
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

    /// Reads up to `size` bytes at `offset` of open file `fh` and hands them to `reply`.
    pub fn read(&self, fh: u64, offset: u64, size: u32, reply: impl FnOnce(&[u8])) -> Result<()> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Spool(s) => in_read_buffer(size, reply, |buf| {
                fill(buf, offset, |b, at| ReadAt::read_at(&s.file, b, at)).map_err(|e| errno(&e))
            }),
            Handle::Object { file, .. } => in_read_buffer(size, reply, |buf| {
                fill(buf, offset, |b, at| file.read_at(b, at)).map_err(|e| {
                    warn!(error = %e, "read of a published file failed");
                    libc::EIO
                })
            }),
            Handle::Bytes(b) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(size as usize).min(b.len());
                reply(&b[start..end]);
                Ok(())
            }
            Handle::Entry(r) => {
                let bytes = r.read(offset, size).map_err(|e| {
                    warn!(error = %e, "read inside a package failed");
                    libc::EIO
                })?;
                reply(&bytes);
                Ok(())
            }
        }
    }

    pub fn release(&self, fh: u64) {
        let h = lock(&self.handles).remove(&fh);
        if let Some(Handle::Spool(s)) = h.as_deref() {
            self.release_spool(s);
        }
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

    /// The target of a symlink in any view.
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
            Node::PkgEntry { file_id, path } => self.with_pkg_item(file_id, &path, |i| match i
                .entry
                .map(|e| (&e.kind, &e.link_target))
            {
                Some((EntryKind::Symlink, Some(t))) => Ok(t.as_bytes().to_vec()),
                _ => Err(libc::EINVAL),
            })?,
            _ => Err(libc::EINVAL),
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
        DistEntry::Torrent(id) => match (cat.torrent_info(*id)?, cat.published_file(*id)?) {
            (Some(info), Some(file)) => Ok(Some(torrent::torrent_file(
                &info,
                &snap.trackers,
                &snap.web_seeds,
                &file.sha256,
            )?)),
            _ => Ok(None),
        },
        DistEntry::Dir | DistEntry::File(_) | DistEntry::Symlink(_) => Ok(None),
    }
}

thread_local! {
    /// Each FUSE thread's buffer for reads of files: a read of a MiB allocates and zeroes
    /// nothing after the thread's first (a fresh zeroed MiB per read was ~7 % of a mirror's
    /// CPU on a cold sequential read). At most the largest read, 1 MiB, per thread.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `read` on `size` bytes of this thread's read buffer and hands `reply` what it filled.
fn in_read_buffer(
    size: u32,
    reply: impl FnOnce(&[u8]),
    read: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Result<()> {
    READ_BUFFER.with_borrow_mut(|buf| {
        let size = size as usize;
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let n = read(&mut buf[..size])?;
        reply(&buf[..n]);
        Ok(())
    })
}

/// Fills `buf` from `offset` with `read_at` until it is full or the file ends; the bytes read.
fn fill(
    buf: &mut [u8],
    offset: u64,
    read_at: impl Fn(&mut [u8], u64) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A seekable twin's size: where its last frame ends.
fn twin_size(frames: &[crate::catalog::Frame]) -> u64 {
    frames.last().map_or(0, |f| f.inp + f.in_len)
}
