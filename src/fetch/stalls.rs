//! Objects whose fetch just timed out, so one read(2) waits one deadline, not several.
//!
//! The kernel turns one read of a mounted file into several FUSE reads: its read-ahead (split
//! into chunks, some queued behind others), then, when that fails, a retry of the single page
//! the reader wanted. Each asked repofsd anew and waited the whole `read_timeout`, so a read
//! nobody could serve failed after two deadlines or more. A FUSE read cannot tell which
//! read(2) it belongs to, so the mount remembers, per object, that a fetch timed out: a read
//! of that object needing a fetch within `WINDOW` of it fails at once. Later, a retry (by the
//! user, or a reader arriving after the window) gets a fresh full try, and any fetch of the
//! object that succeeds forgets the timeout.
//!
//! Per object rather than per range: the swarm that failed to deliver one piece of an object
//! within the deadline is the same for its other pieces (the kernel's read-ahead chunks are
//! other ranges of the same read), and pieces already verified in the cache are still served,
//! since they need no fetch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after a timed-out fetch the object's reads fail at once: enough for the kernel's
/// follow-up reads of the same read(2), short enough that a person's retry tries again.
pub const WINDOW: Duration = Duration::from_secs(1);

/// A recent timeout: the range that was asked for, and when the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub from: u64,
    pub to: u64,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct Stalls {
    recent: HashMap<String, Stall>,
}

impl Stalls {
    /// Before a fetch of `object` at `now`: the timeout it would repeat (fail at once), or
    /// None (try, with the whole deadline).
    pub fn recent(&self, object: &str, now: Instant) -> Option<Stall> {
        self.recent
            .get(object)
            .filter(|s| now.saturating_duration_since(s.at) < WINDOW)
            .copied()
    }

    /// A fetch of `[from, to)` of `object` timed out at `now`.
    pub fn timed_out(&mut self, object: &str, from: u64, to: u64, now: Instant) {
        // Forget the expired ones, so the map holds only what may still fail a read.
        self.recent
            .retain(|_, s| now.saturating_duration_since(s.at) < WINDOW);
        self.recent
            .insert(object.to_string(), Stall { from, to, at: now });
    }

    /// A fetch of `object` succeeded: its swarm delivers again.
    pub fn delivered(&mut self, object: &str) {
        self.recent.remove(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The kernel's follow-up reads of the same read(2) (the retry of one page, other chunks
    /// of its read-ahead) fail at once; other objects are not affected.
    #[test]
    fn reads_right_after_a_timeout_fail_at_once() {
        let t0 = Instant::now();
        let mut s = Stalls::default();
        assert_eq!(s.recent("a", t0), None, "a first read tries");
        s.timed_out("a", 40 << 20, 41 << 20, t0 + ms(3000));
        let stall = s
            .recent("a", t0 + ms(3001))
            .expect("the retry fails at once");
        assert_eq!((stall.from, stall.to), (40 << 20, 41 << 20));
        // Another range of the same object: the same swarm, the same read-ahead.
        assert!(s.recent("a", t0 + ms(3000) + WINDOW - ms(1)).is_some());
        assert_eq!(s.recent("b", t0 + ms(3001)), None);
    }

    /// After the window, a retry gets a fresh full try; so does any read once a fetch of the
    /// object succeeded.
    #[test]
    fn a_later_retry_or_a_delivery_tries_again() {
        let t0 = Instant::now();
        let mut s = Stalls::default();
        s.timed_out("a", 0, 4096, t0);
        assert_eq!(s.recent("a", t0 + WINDOW), None);
        assert_eq!(s.recent("a", t0 + WINDOW * 5), None);

        s.timed_out("a", 0, 4096, t0 + ms(10));
        s.delivered("a");
        assert_eq!(s.recent("a", t0 + ms(11)), None);
    }

    /// Expired timeouts are dropped when a new one is recorded: the map stays small however
    /// many objects ever timed out.
    #[test]
    fn expired_timeouts_are_forgotten() {
        let t0 = Instant::now();
        let mut s = Stalls::default();
        for i in 0..100 {
            s.timed_out(&format!("o{i}"), 0, 1, t0);
        }
        s.timed_out("last", 0, 1, t0 + WINDOW * 2);
        assert_eq!(s.recent.len(), 1);
        assert!(s.recent("last", t0 + WINDOW * 2).is_some());
    }
}
