//! Whether the catalog may have changed since a reader last asked, cheaply enough to ask at
//! every FUSE request. `PRAGMA data_version` is a read transaction (with its WAL locks, two
//! fcntl calls) and following a replaced file is a `stat`: together 11% of the mount's CPU in
//! a `tar -c` of a package tree, where nothing changes.
//!
//! Every change comes with an inotify event on the catalog's directory: a commit writes the
//! WAL (or, outside WAL mode, the database), and a mirror's first snapshot is renamed into
//! place. The kernel queues the event inside the writer's own `write(2)` or `rename(2)`, so a
//! request that arrives after a commit returned always finds it: the events decide exactly
//! when the catalog must be asked, with no window in which a new publication is missed.
//! Events for the directory's other files (logs, request counts) are read and ignored.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use inotify::{EventMask, Inotify, WatchMask};

pub struct Watch {
    /// None where inotify is unavailable (out of instances): then every ask says yes.
    inotify: Option<Inotify>,
    /// The database's file name; its `-wal`, `-shm` and `-journal` share it as a prefix.
    name: OsString,
}

impl Watch {
    /// Watches the directory of the catalog at `path`.
    pub fn new(path: &Path) -> io::Result<Watch> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
        let inotify = Inotify::init()?;
        inotify.watches().add(
            dir,
            WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO,
        )?;
        Ok(Watch {
            inotify: Some(inotify),
            name,
        })
    }

    /// A watch that always says the catalog may have changed.
    pub fn none() -> Watch {
        Watch {
            inotify: None,
            name: OsString::new(),
        }
    }

    /// Whether anything happened to the catalog's files since the last call. Reads every
    /// queued event without waiting; says yes when it cannot tell (a lost queue, an error).
    pub fn moved(&mut self) -> bool {
        let Some(inotify) = self.inotify.as_mut() else {
            return true;
        };
        let mut buf = [0u8; 4096];
        let mut moved = false;
        loop {
            match inotify.read_events(&mut buf) {
                Ok(events) => {
                    for e in events {
                        moved |= e.mask.contains(EventMask::Q_OVERFLOW)
                            || e.mask.contains(EventMask::IGNORED)
                            || e.name
                                .is_none_or(|n| n.as_bytes().starts_with(self.name.as_bytes()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return moved,
                Err(_) => return true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_seen_at_once_and_other_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let mut writer = crate::catalog::Catalog::open(&path).unwrap();
        let mut watch = Watch::new(&path).unwrap();
        assert!(!watch.moved(), "nothing happened yet");
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
        assert!(!watch.moved(), "and seen once");
        std::fs::write(dir.path().join("new.sqlite"), b"").unwrap();
        std::fs::rename(dir.path().join("new.sqlite"), &path).unwrap();
        assert!(
            watch.moved(),
            "a file renamed into the catalog's place is a change"
        );
    }
}
