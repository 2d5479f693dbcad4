//! Whether the catalog may have changed since a reader last asked, cheaply enough to ask at
//! every FUSE request. `PRAGMA data_version` is a read transaction (with its WAL locks, two
//! fcntl calls) and following a replaced file is a `stat`: together 11% of the mount's CPU in
//! a `tar -c` of a package tree, where nothing changes.
//!
//! Every change comes with inotify events on the catalog's directory: a commit writes the WAL
//! (or, outside WAL mode, the database), and a mirror's first snapshot is renamed into place.
//! The kernel queues an event inside the writer's own `write(2)`, before the call returns.
//! But a WAL commit becomes visible only after its last write, once the WAL is synced and the
//! index in `-shm` (mapped memory, no event) is updated; a reader that asked in between would
//! see the events and no change yet. So the events open a window rather than ask once: the
//! catalog is asked at every request until its files have been quiet for `quiet`, far longer
//! than a commit's sync takes. Events for the directory's other files (logs, request counts)
//! are read and ignored.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};

pub struct Watch {
    /// None where inotify is unavailable (out of instances): then every ask says yes.
    inotify: Option<Inotify>,
    /// What the names of the catalog's files start with: `catalog.` for `catalog.sqlite`,
    /// its `-wal`, `-shm` and `-journal`, and the adopted `catalog.N.sqlite` that a mirror's
    /// catalog path links to (`adopt.rs`), with its own.
    name: OsString,
    /// How long after the last event the catalog is still asked at every request.
    quiet: Duration,
    /// When the catalog's files were last seen to change.
    last: Option<Instant>,
}

impl Watch {
    /// Watches the directory of the catalog at `path`.
    pub fn new(path: &Path, quiet: Duration) -> io::Result<Watch> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = path.file_name().unwrap_or(OsStr::new("")).as_bytes();
        let stem = file
            .iter()
            .position(|&b| b == b'.')
            .map_or(file, |i| &file[..=i]);
        let name = OsStr::from_bytes(stem).to_os_string();
        let inotify = Inotify::init()?;
        inotify.watches().add(
            dir,
            WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO,
        )?;
        Ok(Watch {
            inotify: Some(inotify),
            name,
            quiet,
            last: None,
        })
    }

    /// A watch that always says the catalog may have changed.
    pub fn none() -> Watch {
        Watch {
            inotify: None,
            name: OsString::new(),
            quiet: Duration::ZERO,
            last: None,
        }
    }

    /// Whether the catalog's files changed within `quiet` of now. Reads every queued event
    /// without waiting; says yes when it cannot tell (a lost queue, an error).
    pub fn moved(&mut self) -> bool {
        match self.drain() {
            Some(true) => self.last = Some(Instant::now()),
            Some(false) => {}
            None => return true,
        }
        self.last.is_some_and(|t| t.elapsed() < self.quiet)
    }

    /// Forgets what happened so far: a reader's own open of the catalog (which creates its WAL
    /// and index) is no change. Call it before the reader loads what it will keep.
    pub fn settle(&mut self) {
        self.drain();
        self.last = None;
    }

    /// Whether any queued event was one of the catalog's files; None if unsure.
    fn drain(&mut self) -> Option<bool> {
        let inotify = self.inotify.as_mut()?;
        let mut buf = [0u8; 4096];
        let mut seen = false;
        loop {
            match inotify.read_events(&mut buf) {
                Ok(events) => {
                    for e in events {
                        if e.mask.contains(EventMask::Q_OVERFLOW) {
                            return None;
                        }
                        // The index (-shm) is written through mapped memory; its write(2)s
                        // only size it, when a connection opens it or it grows.
                        seen |= e.mask.contains(EventMask::IGNORED)
                            || e.name.is_none_or(|n| {
                                let n = n.as_bytes();
                                n.starts_with(self.name.as_bytes()) && !n.ends_with(b"-shm")
                            });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(seen),
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_opens_a_window_that_quiet_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let mut writer = crate::catalog::Catalog::open(&path).unwrap();
        let quiet = Duration::from_millis(200);
        let mut watch = Watch::new(&path, quiet).unwrap();
        let _reader = crate::catalog::Catalog::open(&path).unwrap();
        watch.settle();
        assert!(!watch.moved(), "nothing happened since the reader opened");
        std::fs::write(dir.path().join("mount.log"), b"a line\n").unwrap();
        assert!(
            !watch.moved(),
            "another file of the directory is not the catalog"
        );
        writer.set_setting("watch-test", "1").unwrap();
        assert!(
            watch.moved(),
            "a commit returned before the ask must be seen"
        );
        assert!(watch.moved(), "and asked again until the files are quiet");
        std::thread::sleep(quiet + Duration::from_millis(50));
        assert!(!watch.moved(), "quiet again");
        std::fs::write(dir.path().join("new.sqlite"), b"").unwrap();
        std::fs::rename(dir.path().join("new.sqlite"), &path).unwrap();
        assert!(
            watch.moved(),
            "a file renamed into the catalog's place is a change"
        );
        std::thread::sleep(quiet + Duration::from_millis(50));
        assert!(!watch.moved());
        std::fs::write(dir.path().join("catalog.7.sqlite-wal"), b"frames").unwrap();
        assert!(
            watch.moved(),
            "the adopted file the catalog's path links to is the catalog"
        );
    }
}
