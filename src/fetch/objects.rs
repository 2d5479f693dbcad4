//! The one way the views read content: `Objects::open(sha256, size)`.
//!
//! On a primary every object is a file in the store. On a mirror (catalog setting `upstream`)
//! an object is in the mirror's cache: complete (a plain file, served like a store object) or
//! partial, read piece by piece — verified pieces straight from the cache file, missing ones
//! fetched by repofsd on request over the control socket. The views never know which.
//!
//! A mount may start before its mirror service first ran (the catalog naming no upstream yet):
//! `follow` turns it into a mirror's mount once the catalog does, so a file the mount lists is
//! never looked for in an empty store. It never turns back: a mirror promoted to a primary
//! keeps reading through the cache until the mount restarts.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The mirror's cache and repofsd, used once `mirror` is set.
    side: Arc<MirrorSide>,
    /// Set when the catalog names an upstream (at start or by `follow`), never cleared: one
    /// atomic load per open, no SQL.
    mirror: AtomicBool,
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
            side: Arc::new(MirrorSide {
                cache: CacheDir::new(layout.mirror()),
                socket: layout.control_socket(),
                read_timeout: config.mirror.read_timeout,
                readahead: config.mirror.readahead,
                stalls: Mutex::new(Stalls::default()),
            }),
            mirror: AtomicBool::new(mirror),
        })
    }

    pub fn is_mirror(&self) -> bool {
        self.mirror.load(Ordering::Acquire)
    }

    /// The catalog (re-read) names an upstream or not: objects come through the cache from now
    /// on if it does. Never back to the store. True if this call made it a mirror.
    pub fn follow(&self, upstream_named: bool) -> bool {
        upstream_named && !self.mirror.swap(true, Ordering::AcqRel)
    }

    /// Opens object `sha256` of `size` bytes for reading.
    pub fn open(&self, sha256: &str, size: u64) -> io::Result<Arc<dyn ReadAt>> {
        if !self.is_mirror() {
            return Ok(Arc::new(File::open(self.store.object_path(sha256))?));
        }
        let m = &self.side;
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

/// A reader that has read this much of an object in order from its first byte reads all of
/// it (a copy, a checksum, a package manager): it asks for the whole read-ahead at once, which
/// has repofsd stream the rest (`plan::is_sequential`). Such readers on many mirrors at once
/// then fetch whatever the swarm offers them, which is how they come to hold different pieces
/// and trade them, instead of each waiting for its own read-ahead window.
const WHOLE_AFTER: u64 = 1 << 20;

/// How far to read ahead of `[offset, end)` of a `size`-byte object, `run` bytes into a
/// sequential run: as far as the run is long (a single read, which the kernel splits into
/// several, fetches little beyond itself), at most `readahead`; the full read-ahead past `end`,
/// even past the object's end, for a reader reading from the start (`WHOLE_AFTER`).
fn ahead_of(offset: u64, end: u64, run: u64, size: u64, readahead: u64) -> u64 {
    if run == end && run >= WHOLE_AFTER {
        return end.saturating_add(readahead);
    }
    end.saturating_add(run.saturating_sub(end - offset).min(readahead))
        .min(size)
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
                let ahead = ahead_of(offset, end, run, self.size, self.mirror.readahead);
                self.fetch(offset, end, ahead)?;
            }
        }
        Err(io::Error::other(
            "repofsd reported the range fetched but the cache lacks it",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ab";

    /// A repository root whose object `SHA` is in the mirror's cache only (complete).
    fn cached_only() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let complete = CacheDir::new(layout.mirror()).complete_path(SHA);
        std::fs::create_dir_all(complete.parent().unwrap()).unwrap();
        std::fs::write(&complete, b"bytes").unwrap();
        (dir, layout)
    }

    fn read(o: &Objects) -> io::Result<Vec<u8>> {
        let r = o.open(SHA, 5)?;
        let mut buf = vec![0; 5];
        r.read_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// A mount started before the catalog named an upstream reads from the store until it
    /// does, then through the cache.
    #[test]
    fn read_ahead_grows_with_the_run_and_is_whole_for_a_reader_from_the_start() {
        const MIB: u64 = 1 << 20;
        let (size, readahead) = (64 * MIB, 8 * MIB);
        // A single read of 128 KiB at the middle: nothing beyond it.
        assert_eq!(
            ahead_of(32 * MIB, 32 * MIB + 131072, 131072, size, readahead),
            32 * MIB + 131072
        );
        // 2 MiB into a run that started at 10 MiB: 2 MiB less the read, beyond it.
        assert_eq!(
            ahead_of(12 * MIB - 4096, 12 * MIB, 2 * MIB, size, readahead),
            14 * MIB - 4096
        );
        // Never past the object's end, never more than `readahead`.
        assert_eq!(
            ahead_of(60 * MIB, 61 * MIB, 40 * MIB, size, readahead),
            size
        );
        // Under 1 MiB from the start: still as long as the run.
        assert_eq!(ahead_of(131072, 262144, 262144, size, readahead), 393216);
        // 1 MiB read in order from byte 0: the whole read-ahead at once (what makes repofsd
        // stream the rest), whatever the object's size.
        assert_eq!(
            ahead_of(MIB - 4096, MIB, MIB, 2 * MIB, readahead),
            MIB + readahead
        );
    }

    #[test]
    fn a_primary_follows_the_catalog_to_mirror() {
        let (_dir, layout) = cached_only();
        let o = Objects::new(&layout, &Config::default(), false).unwrap();
        assert!(!o.follow(false));
        assert!(!o.is_mirror());
        let e = read(&o).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(o.follow(true), "the first upstream seen switches");
        assert!(o.is_mirror());
        assert!(!o.follow(true), "already a mirror");
        assert_eq!(read(&o).unwrap(), b"bytes");
    }

    /// The catalog naming no upstream later (a promoted mirror) does not switch back.
    #[test]
    fn a_mirror_never_switches_back() {
        let (_dir, layout) = cached_only();
        let o = Objects::new(&layout, &Config::default(), true).unwrap();
        assert!(!o.follow(false));
        assert!(o.is_mirror());
        assert_eq!(read(&o).unwrap(), b"bytes");
    }
}
