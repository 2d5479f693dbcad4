//! The one way the views read content: `Objects::open(sha256, size)`.
//!
//! On a primary every object is a file in the store. On a mirror (catalog setting `upstream`)
//! an object is in the mirror's cache: complete (a plain file, served like a store object) or
//! partial, read piece by piece — verified pieces straight from the cache file, missing ones
//! fetched by repofsd on request over the control socket. The views never know which.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::cache::{CacheDir, PartialView};
use super::protocol::{self, FetchRequest};
use super::stalls::Stalls;
use crate::config::{Config, Layout};
use crate::store::{ReadAt, Store};

/// Where content comes from: the store, or a mirror's cache and repofsd.
pub struct Objects {
    store: Store,
    mirror: Option<Arc<MirrorSide>>,
}

struct MirrorSide {
    cache: CacheDir,
    socket: PathBuf,
    read_timeout: Duration,
    readahead: u64,
    /// Objects whose fetch just timed out: the kernel's follow-up reads fail at once.
    stalls: Mutex<Stalls>,
}

impl Objects {
    /// `mirror`: the catalog names an upstream, so objects come through the cache.
    pub fn new(layout: &Layout, config: &Config, mirror: bool) -> io::Result<Objects> {
        Ok(Objects {
            store: Store::open(&layout.store()).map_err(io::Error::other)?,
            mirror: mirror.then(|| {
                Arc::new(MirrorSide {
                    cache: CacheDir::new(layout.mirror()),
                    socket: layout.control_socket(),
                    read_timeout: config.mirror.read_timeout,
                    readahead: config.mirror.readahead,
                    stalls: Mutex::new(Stalls::default()),
                })
            }),
        })
    }

    pub fn is_mirror(&self) -> bool {
        self.mirror.is_some()
    }

    /// Opens object `sha256` of `size` bytes for reading.
    pub fn open(&self, sha256: &str, size: u64) -> io::Result<Arc<dyn ReadAt>> {
        let Some(m) = &self.mirror else {
            return Ok(Arc::new(File::open(self.store.object_path(sha256))?));
        };
        if let Ok(f) = File::open(m.cache.complete_path(sha256)) {
            // Recently used: the daemon evicts least recently touched first.
            let _ = f.set_modified(SystemTime::now());
            return Ok(Arc::new(f));
        }
        Ok(Arc::new(Lazy {
            sha256: sha256.to_string(),
            size,
            mirror: m.clone(),
            view: Mutex::new(None),
            next: AtomicU64::new(u64::MAX),
            run: AtomicU64::new(0),
        }))
    }
}

/// An object on a mirror not (yet) complete in the cache.
struct Lazy {
    sha256: String,
    size: u64,
    mirror: Arc<MirrorSide>,
    /// The cache files as last opened (reopened after each fetch).
    view: Mutex<Option<Arc<PartialView>>>,
    /// Where the last read ended: a read starting there is sequential and reads ahead.
    next: AtomicU64,
    /// Where the current sequential run started: read-ahead grows with the run, so a single
    /// read (which the kernel splits into several sequential ones) fetches little beyond it.
    run: AtomicU64,
}

impl Lazy {
    fn view(&self, reopen: bool) -> io::Result<Option<Arc<PartialView>>> {
        let mut slot = crate::sync::lock(&self.view);
        if reopen || slot.is_none() {
            *slot = self
                .mirror
                .cache
                .open_view(&self.sha256, self.size)?
                .map(Arc::new);
        }
        Ok(slot.clone())
    }

    /// Asks repofsd for `[from, to)`, reading ahead to `ahead`; Ok once those bytes are verified.
    /// Fails at once if a fetch of this object timed out a moment ago (`stalls`): one read(2)
    /// waits one `read_timeout`, however many FUSE reads the kernel makes of it.
    fn fetch(&self, from: u64, to: u64, ahead: u64) -> io::Result<()> {
        let stalls = &self.mirror.stalls;
        if let Some(s) = crate::sync::lock(stalls).recent(&self.sha256, Instant::now()) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timeout: a fetch of this object (bytes {}..{}) timed out {:?} ago; \
                     not waiting again so soon",
                    s.from,
                    s.to,
                    s.at.elapsed()
                ),
            ));
        }
        let req = FetchRequest {
            fetch: self.sha256.clone(),
            size: self.size,
            from,
            to,
            ahead,
        };
        let reply = protocol::fetch(&self.mirror.socket, &req, self.mirror.read_timeout);
        let timed_out = match &reply {
            Ok(r) => r.reason.as_deref() == Some("timeout"),
            // The socket's read deadline passed before repofsd answered.
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        let mut s = crate::sync::lock(stalls);
        if timed_out {
            s.timed_out(&self.sha256, from, to, Instant::now());
        } else if reply.as_ref().is_ok_and(|r| r.error.is_none()) {
            s.delivered(&self.sha256);
        }
        drop(s);
        let reply = reply?;
        match reply.error {
            None => Ok(()),
            Some(e) => Err(io::Error::other(format!(
                "{}: {}",
                reply.reason.as_deref().unwrap_or("fetch-failed"),
                e
            ))),
        }
    }
}

impl ReadAt for Lazy {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let len = (buf.len() as u64).min(self.size - offset);
        let buf = &mut buf[..len as usize];
        let end = offset + len;
        if self.next.swap(end, Ordering::Relaxed) != offset {
            self.run.store(offset, Ordering::Relaxed);
        }
        let run = end - self.run.load(Ordering::Relaxed).min(offset);
        for attempt in 0..2 {
            if let Some(v) = self.view(attempt > 0)? {
                if v.has(offset, end)? {
                    v.data().read_exact_at(buf, offset)?;
                    return Ok(buf.len());
                }
            }
            if attempt == 0 {
                let ahead = end
                    .saturating_add(run.saturating_sub(len).min(self.mirror.readahead))
                    .min(self.size);
                self.fetch(offset, end, ahead)?;
            }
        }
        Err(io::Error::other(
            "repofsd reported the range fetched but the cache lacks it",
        ))
    }
}
