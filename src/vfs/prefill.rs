//! Small files inside packages go into the kernel's page cache as they are opened.
//!
//! A read through FUSE is a round trip, and after it the kernel marks the inode's atime stale,
//! so the `fstat` that `tar` (and others) make after reading costs a second round trip
//! (GETATTR). Handing the kernel a small file's bytes with FUSE_NOTIFY_STORE before the open
//! returns saves both: the reads are served from the page cache, which the open keeps
//! (FOPEN_KEEP_CACHE; a package's bytes never change), and no READ ever marks atime stale.
//! The bytes would be made for the first READ anyway; only an open that reads nothing pays.
//!
//! Once per inode and mount: later opens find the pages cached, or, if the kernel dropped
//! them, read as usual. An open of an inode whose fill is under way waits for it (briefly),
//! so that its reader cannot lock the pages the fill is writing while every FUSE thread waits.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::sync::lock;

/// The largest file filled at open: what one READ could carry (the mount's max_pages).
pub const PREFILL_MAX: u64 = 1 << 20;
/// Inodes remembered as filled; past this, the record starts over (a file filled again
/// costs only a copy into pages the kernel already has).
const KEPT: usize = 1 << 20;
/// How long an open waits for another open's fill of the same inode.
const WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Prefills {
    /// Inode -> whether its fill is done (false: under way).
    state: Mutex<HashMap<u64, bool>>,
    done: Condvar,
}

impl Prefills {
    /// Whether this open of `ino` (`size` bytes) fills the cache. True once per inode; the
    /// caller then calls `finish` whatever happens.
    pub fn claim(&self, ino: u64, size: u64) -> bool {
        if size == 0 || size > PREFILL_MAX {
            return false;
        }
        let mut st = lock(&self.state);
        match st.get(&ino) {
            Some(true) => false,
            Some(false) => {
                let _ = self
                    .done
                    .wait_timeout_while(st, WAIT, |s| s.get(&ino) == Some(&false));
                false
            }
            None => {
                if st.len() >= KEPT {
                    st.retain(|_, done| !*done);
                }
                st.insert(ino, false);
                true
            }
        }
    }

    /// The fill of `ino` is done (or failed: later opens read as usual).
    pub fn finish(&self, ino: u64) {
        lock(&self.state).insert(ino, true);
        self.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_small_file_is_filled_once() {
        let p = Prefills::default();
        assert!(p.claim(5, 100));
        p.finish(5);
        assert!(!p.claim(5, 100));
        assert!(p.claim(6, PREFILL_MAX));
    }

    #[test]
    fn empty_and_large_files_are_read_as_usual() {
        let p = Prefills::default();
        assert!(!p.claim(5, 0));
        assert!(!p.claim(6, PREFILL_MAX + 1));
    }

    #[test]
    fn a_second_open_waits_for_the_fill_under_way() {
        let p = Arc::new(Prefills::default());
        assert!(p.claim(5, 100));
        let q = p.clone();
        let t0 = Instant::now();
        let waiter = std::thread::spawn(move || (q.claim(5, 100), t0.elapsed()));
        std::thread::sleep(Duration::from_millis(100));
        p.finish(5);
        let (claimed, waited) = waiter.join().unwrap();
        assert!(!claimed);
        assert!(
            waited >= Duration::from_millis(100) && waited < WAIT,
            "{waited:?}"
        );
    }
}
