//! An open repository: the state directory with its catalog and store, as every command and
//! the service use it.

use std::path::Path;

use anyhow::Context;
use tracing::info;

use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::store::{GcReport, Store};

/// How long a new repofsd waits for a killed one that is still on its way out.
const EXITING_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How often a lock found held, but with no holder left to see, is tried again.
const VANISHED_RETRIES: u32 = 5;

/// Held by the one process allowed to publish; released when dropped (or the process dies).
pub struct WriterLock {
    _file: std::fs::File,
}

pub struct Repo {
    pub layout: Layout,
    pub config: Config,
    pub catalog: Catalog,
    pub store: Store,
}

impl Repo {
    /// Opens (creating if missing) the repository at `root`.
    pub fn open(root: &Path, config: Config) -> anyhow::Result<Repo> {
        let layout = Layout::new(root);
        layout
            .create()
            .with_context(|| format!("creating {}", root.display()))?;
        let catalog = Catalog::open(&layout.catalog())
            .with_context(|| format!("opening {}", layout.catalog().display()))?;
        let store = Store::open(&layout.store())
            .with_context(|| format!("opening {}", layout.store().display()))?;
        Ok(Repo {
            layout,
            config,
            catalog,
            store,
        })
    }

    /// Takes the single-writer lock for as long as the returned guard lives. Two writers
    /// would judge the same upload twice (the second calling it a replay), and one's start-up
    /// store GC could delete an object the other is about to commit.
    ///
    /// A live holder is refused at once. A holder that is exiting — killed, but still in an
    /// uninterruptible write or unmapping its memory, as a repofsd SIGKILLed mid-publication
    /// is for a moment — is waited for, up to `EXITING_HOLDER_WAIT`, so that a supervisor, a
    /// shell or a container runtime restarting it at once does not fail.
    pub fn lock_writer(&self) -> anyhow::Result<WriterLock> {
        let path = self.layout.root.join("repofsd.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let started = std::time::Instant::now();
        let mut told = false;
        let mut vanished = 0;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    if told {
                        info!(waited = ?started.elapsed(), "the previous repofsd has exited; lock taken");
                    }
                    return Ok(WriterLock { _file: file });
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
            let holder = lock_holder(&file).map(|pid| (pid, holder::is_exiting(pid)));
            match holder {
                Some((pid, Some(true))) if started.elapsed() < EXITING_HOLDER_WAIT => {
                    if !told {
                        info!(
                            pid,
                            up_to = ?EXITING_HOLDER_WAIT,
                            "waiting for the previous repofsd, which is exiting, to release {}",
                            path.display()
                        );
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Some((pid, Some(true))) => anyhow::bail!(
                    "the previous repofsd (pid {pid}) on {} is exiting but still holds {} after {:?}",
                    self.layout.root.display(),
                    path.display(),
                    EXITING_HOLDER_WAIT
                ),
                // No holder in /proc/locks, or it is gone: it let go between our try and our
                // look (a killed one finishing its exit). Try again, a few times only, so an
                // unreadable /proc still refuses at once.
                None | Some((_, None)) if vanished < VANISHED_RETRIES => {
                    vanished += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => anyhow::bail!(
                    "another repofsd is already working on {} (lock {} is held)",
                    self.layout.root.display(),
                    path.display()
                ),
            }
        }
    }

    /// Start-up recovery of the single writer: drops store objects that no committed catalog
    /// row refers to (left by a crash between store and catalog commits) and temporaries.
    pub fn recover(&mut self) -> anyhow::Result<GcReport> {
        let referenced = self.catalog.referenced_objects()?;
        let report = self.store.gc(&referenced)?;
        if report != GcReport::default() {
            info!(
                orphans = report.orphans,
                temporaries = report.temporaries,
                "store recovered after an interrupted publication"
            );
        }
        Ok(report)
    }

    /// Makes the torrents of files published before torrents existed (one read of each
    /// stored object). Run by the single writer at start-up; a failure is logged and retried
    /// at the next start, as it only delays distribution.
    pub fn backfill_torrents(&mut self) -> anyhow::Result<usize> {
        let files = self.catalog.files_without_torrent()?;
        for f in &files {
            let mut pieces = crate::torrent::PieceHasher::default();
            let mut file = std::fs::File::open(self.store.object_path(&f.sha256))?;
            std::io::copy(&mut file, &mut pieces)?;
            if let Some(t) = crate::torrent::info(&f.filename, f.size, &pieces.finish())? {
                self.catalog.put_torrent(f.id, &t.info_hash, &t.bytes)?;
            }
        }
        let derived = self.catalog.derived_without_torrent()?;
        for (file_id, sha256, size) in &derived {
            let mut pieces = crate::torrent::PieceHasher::default();
            let mut file = std::fs::File::open(self.store.object_path(sha256))?;
            std::io::copy(&mut file, &mut pieces)?;
            let name = format!("{sha256}.tar.zst");
            if let Some(t) = crate::torrent::info(&name, *size, &pieces.finish())? {
                self.catalog
                    .put_derived_torrent(*file_id, &t.info_hash, &t.bytes)?;
            }
        }
        if !files.is_empty() || !derived.is_empty() {
            info!(
                files = files.len(),
                derived = derived.len(),
                "made torrents for files published before torrents"
            );
        }
        Ok(files.len() + derived.len())
    }
}

/// The pid holding the flock on `file`, from /proc/locks (matched by device and inode).
fn lock_holder(file: &std::fs::File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder::in_proc_locks(&locks, meta.dev(), meta.ino())
}

/// Reading /proc: who holds a lock, and whether a process is on its way out.
mod holder {
    /// The pid of the FLOCK holder of `(dev, ino)` in /proc/locks' text (`1: FLOCK  ADVISORY
    /// WRITE 1234 fd:01:5678 0 EOF`; waiters' `->` lines are not holders).
    pub fn in_proc_locks(text: &str, dev: u64, ino: u64) -> Option<u32> {
        let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
        text.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(1) != Some(&"FLOCK") {
                return None;
            }
            let mut id = f.get(5)?.split(':');
            let ma = u64::from_str_radix(id.next()?, 16).ok()?;
            let mi = u64::from_str_radix(id.next()?, 16).ok()?;
            let i: u64 = id.next()?.parse().ok()?;
            ((ma, mi, i) == (major, minor, ino)).then(|| f.get(4)?.parse().ok())?
        })
    }

    /// Whether `pid` is exiting: a zombie, flagged PF_EXITING, or with SIGKILL pending (a
    /// process killed inside an uninterruptible write has not started to exit yet). None:
    /// there is no such process (any more).
    pub fn is_exiting(pid: u32) -> Option<bool> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Some(exiting(&stat, &status))
    }

    const PF_EXITING: u64 = 0x4;
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

    pub fn exiting(stat: &str, status: &str) -> bool {
        // Fields after the parenthesised command: state is the first, flags the seventh.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let f: Vec<&str> = after.split_whitespace().collect();
        let state = f.first().copied().unwrap_or("");
        let flags: u64 = f.get(6).and_then(|v| v.parse().ok()).unwrap_or(0);
        let kill_pending = status.lines().any(|l| {
            let Some((k, v)) = l.split_once(':') else {
                return false;
            };
            matches!(k, "SigPnd" | "ShdPnd")
                && u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & SIGKILL_BIT != 0)
        });
        matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0 || kill_pending
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_holder_is_found_by_device_and_inode() {
            let text = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:123456 0 EOF\n\
                        1: -> FLOCK  ADVISORY  WRITE 777 fd:01:123456 0 EOF\n\
                        2: POSIX  ADVISORY  WRITE 99 fd:01:555 0 EOF\n\
                        3: FLOCK  ADVISORY  WRITE 31 08:02:123456 0 EOF\n";
            let dev = libc::makedev(0xfd, 0x01);
            assert_eq!(in_proc_locks(text, dev, 123456), Some(4242));
            assert_eq!(in_proc_locks(text, libc::makedev(8, 2), 123456), Some(31));
            assert_eq!(
                in_proc_locks(text, dev, 555),
                None,
                "POSIX locks are not ours"
            );
            assert_eq!(in_proc_locks(text, dev, 1), None);
        }

        #[test]
        fn exiting_is_read_from_state_flags_and_pending_sigkill() {
            let stat = |state: &str, flags: u64| {
                format!("123 (repo fsd) {state} 1 123 123 0 -1 {flags} 0 0 0 0 1 2 0 0 20 0")
            };
            let status =
                |pnd: &str| format!("Name:\trepofsd\nSigPnd:\t{pnd}\nShdPnd:\t0000000000000000\n");
            let quiet = status("0000000000000000");
            assert!(!exiting(&stat("S", 0x400100), &quiet), "a live sleeper");
            assert!(!exiting(&stat("D", 0x400100), &quiet), "a live writer");
            assert!(exiting(&stat("Z", 0), &quiet));
            assert!(exiting(&stat("D", 0x400104), &quiet), "PF_EXITING");
            assert!(
                exiting(&stat("D", 0x400100), &status("0000000000000100")),
                "SIGKILL pending"
            );
            assert!(
                !exiting(&stat("S", 0x400100), &status("0000000000004000")),
                "SIGTERM pending is not an exit"
            );
            assert!(!exiting("", ""));
        }

        #[test]
        fn this_process_is_not_exiting() {
            assert_eq!(is_exiting(std::process::id()), Some(false));
            assert_eq!(is_exiting(u32::MAX), None, "no such process");
        }
    }
}
