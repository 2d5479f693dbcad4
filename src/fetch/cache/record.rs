//! Verified is not yet recorded. A piece whose bytes matched their SHA-1 is readable at once
//! (its bytes are in the page cache, which every reader shares); its byte in the `.bits` file
//! says how far it got:
//!
//! - `READABLE` (2): verified in this boot; its bytes may not be on disk yet;
//! - `RECORDED` (1): verified and durable: the data file was synced before the byte was written.
//!
//! A thread per object (`Recorder`, while there is work) syncs the data file once for whatever
//! pieces are pending and then writes their 1s, so neither a reader nor a fetch waits on a
//! sync. A crash of the process keeps the page cache, so its 2s stay true; a crash of the
//! machine does not. So a 2 counts only in the boot that wrote it: `boot_id` in the cache
//! root names that boot, and repofsd opening a cache written in another boot clears its 2s
//! before naming the running one (`adopt`). The mount takes a 2 as verified only while the
//! cache names the running boot (`fresh`); repofsd takes it as verified and records it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tracing::warn;

use super::{CacheDir, CacheObject};
use crate::sync::lock;

pub const RECORDED: u8 = 1;
pub const READABLE: u8 = 2;
/// A fetch hands its readable pieces to the recorder this many bytes at a time (the recorder
/// syncs once for all it finds pending): few syncs, and at most this much to fetch again
/// after a crash of the machine.
pub const RECORD_EVERY: u64 = 32 << 20;

/// Pieces sealed and not yet recorded, and whether a thread records them.
#[derive(Default)]
pub(super) struct Recorder {
    state: Mutex<(Vec<u64>, bool)>,
    idle: Condvar,
}

/// The running boot (None where the kernel does not say: then no 2 is ever trusted).
fn this_boot() -> Option<&'static str> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
    })
    .as_deref()
}

fn boot_path(root: &Path) -> std::path::PathBuf {
    root.join("boot_id")
}

/// Whether the cache at `root` names the running boot: its 2s are true.
pub fn fresh(root: &Path) -> bool {
    let named = fs::read_to_string(boot_path(root)).ok();
    this_boot().is_some_and(|b| named.as_deref().map(str::trim) == Some(b))
}

/// Makes the cache at `dir` the running boot's: a cache last written in another boot has its
/// 2s cleared (durably) before the boot is named, so no 2 from before a machine crash counts.
pub(super) fn adopt(dir: &CacheDir) -> io::Result<()> {
    if fresh(dir.root()) {
        return Ok(());
    }
    if let Ok(rd) = fs::read_dir(dir.root().join("partial")) {
        for e in rd.filter_map(Result::ok) {
            if !e.file_name().to_string_lossy().ends_with(".bits") {
                continue;
            }
            let mut bits = fs::read(e.path())?;
            if bits.contains(&READABLE) {
                bits.iter_mut()
                    .filter(|b| **b == READABLE)
                    .for_each(|b| *b = 0);
                let f = fs::OpenOptions::new().write(true).open(e.path())?;
                f.write_all_at(&bits, 0)?;
                f.sync_data()?;
            }
        }
    }
    let Some(boot) = this_boot() else {
        return Ok(());
    };
    let tmp = dir.root().join("boot_id.tmp");
    fs::write(&tmp, boot)?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, boot_path(dir.root()))?;
    File::open(dir.root())?.sync_all()
}

impl CacheObject {
    /// Makes `pieces`, whose bytes were written and matched their SHA-1, readable now (a 2 in
    /// the bits file, readers woken); `record_later` makes them durable.
    pub fn readable(&self, pieces: &[u64]) -> io::Result<()> {
        if pieces.is_empty() {
            return Ok(());
        }
        {
            let mut v = lock(&self.verified);
            if let Some(bits) = &*lock(&self.bits) {
                for &p in pieces {
                    bits.write_all_at(&[READABLE], p)?;
                }
            }
            for &p in pieces {
                if let Some(b) = v.get_mut(p as usize) {
                    *b = true;
                }
            }
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// `readable`, then `record_later`.
    pub fn seal(self: &Arc<Self>, pieces: &[u64]) -> io::Result<()> {
        self.readable(pieces)?;
        self.record_later(pieces);
        Ok(())
    }

    /// Has readable `pieces` recorded (sync, then 1s) by the object's recorder thread: one
    /// sync for all that are pending when it gets to them.
    pub fn record_later(self: &Arc<Self>, pieces: &[u64]) {
        if pieces.is_empty() {
            return;
        }
        let mut s = lock(&self.recorder.state);
        s.0.extend_from_slice(pieces);
        if s.1 {
            return;
        }
        s.1 = true;
        drop(s);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("cache-record".into())
            .spawn(move || me.record_pending());
        if let Err(e) = spawned {
            warn!(error = %e, "no thread to record pieces; recording them here");
            self.record_pending();
        }
    }

    fn record_pending(&self) {
        loop {
            let todo = {
                let mut s = lock(&self.recorder.state);
                if s.0.is_empty() {
                    s.1 = false;
                    self.recorder.idle.notify_all();
                    return;
                }
                std::mem::take(&mut s.0)
            };
            if let Err(e) = self.record(&todo) {
                // They stay readable in this process; a restart fetches them again.
                warn!(object = %self.sha256, error = %e, "could not record verified pieces");
            }
        }
    }

    /// Syncs the data file, then writes a 1 for each of `pieces` still verified (a piece
    /// unverified meanwhile, or an object dropped, keeps what it has).
    fn record(&self, pieces: &[u64]) -> io::Result<()> {
        self.data.sync_data()?;
        let v = lock(&self.verified);
        if let Some(bits) = &*lock(&self.bits) {
            for &p in pieces {
                if v.get(p as usize) == Some(&true) {
                    bits.write_all_at(&[RECORDED], p)?;
                }
            }
        }
        Ok(())
    }

    /// Waits until every sealed piece is recorded.
    pub fn flush(&self) {
        let mut s = lock(&self.recorder.state);
        while s.1 || !s.0.is_empty() {
            s = self
                .recorder
                .idle
                .wait(s)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::object;
    use super::super::{Cache, PIECE};
    use super::*;

    fn bits(cache: &Cache, sha: &str) -> Vec<u8> {
        fs::read(cache.dir.bits_path(sha)).unwrap()
    }

    /// A sealed piece is readable at once and recorded (1) only after the sync; a 2 counts in
    /// its own boot (a restarted repofsd, the mount) and is cleared when the cache is opened
    /// in another boot, so a machine crash never leaves a piece counted over lost bytes.
    #[test]
    fn a_readable_piece_is_recorded_later_and_a_2_counts_only_in_its_boot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let (data, sha, hashes) = object(PIECE as usize * 3);
        let cache = Cache::new(CacheDir::new(root.clone()), 1 << 30).unwrap();
        assert!(fresh(&root), "a cache opened by repofsd names this boot");
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        o.put_piece(0, &data[..PIECE as usize]).unwrap();
        o.put_piece(1, &data[PIECE as usize..2 * PIECE as usize])
            .unwrap();
        o.readable(&[0, 1]).unwrap();
        assert!(o.has(0, 2 * PIECE), "readable before any sync");
        assert_eq!(bits(&cache, &sha), [READABLE, READABLE, 0]);
        let view = cache.dir.open_view(&sha, data.len() as u64).unwrap();
        assert!(
            view.unwrap().has(0, 2 * PIECE).unwrap(),
            "the mount reads it"
        );
        o.record_later(&[0]);
        o.flush();
        assert_eq!(bits(&cache, &sha), [RECORDED, READABLE, 0]);

        // repofsd restarted in the same boot: the 2 is verified, and recorded.
        drop((o, cache));
        let cache = Cache::new(CacheDir::new(root.clone()), 1 << 30).unwrap();
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        assert_eq!(o.verified_count(), 2);
        o.flush();
        assert_eq!(bits(&cache, &sha), [RECORDED, RECORDED, 0]);

        // Another boot (the machine crashed): the mount trusts no 2, repofsd clears them.
        o.put_piece(2, &data[2 * PIECE as usize..]).unwrap();
        o.readable(&[2]).unwrap();
        drop((o, cache));
        fs::write(root.join("boot_id"), "an earlier boot").unwrap();
        let view = CacheDir::new(root.clone())
            .open_view(&sha, data.len() as u64)
            .unwrap()
            .unwrap();
        assert!(view.has(0, 2 * PIECE).unwrap());
        assert!(
            !view.has(2 * PIECE, 3 * PIECE).unwrap(),
            "a 2 of another boot"
        );
        let cache = Cache::new(CacheDir::new(root.clone()), 1 << 30).unwrap();
        assert_eq!(bits(&cache, &sha), [RECORDED, RECORDED, 0]);
        let o = cache.object(&sha, data.len() as u64, &hashes).unwrap();
        assert_eq!(o.verified_count(), 2);
        assert!(fresh(&root));
    }
}
