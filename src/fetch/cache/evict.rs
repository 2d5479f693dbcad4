//! Which objects leave the cache when it is over its limit: the least recently touched first
//! (the mount touches the data file of what it opens), never one with a fetch in flight. The
//! choice (`victims`) is apart from the directory listing (`entries`) so that it can be tested
//! on made-up entries.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::SystemTime;

use super::CacheDir;

/// One file in `complete/` or `partial/`.
pub(super) struct Entry {
    /// The object it belongs to.
    pub sha256: String,
    /// Bytes allocated on disk.
    pub bytes: u64,
    pub touched: SystemTime,
    /// The data file (not a `.bits` file): its mtime is the object's.
    pub data: bool,
}

/// Every file of the cache directory.
pub(super) fn entries(dir: &CacheDir) -> Vec<Entry> {
    let mut out = Vec::new();
    for sub in ["complete", "partial"] {
        let Ok(rd) = fs::read_dir(dir.root().join(sub)) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(m) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            let sha = name.trim_end_matches(".bits").to_string();
            out.push(Entry {
                sha256: sha,
                bytes: m.blocks() * 512,
                touched: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                data: !name.ends_with(".bits"),
            });
        }
    }
    out
}

/// The objects to drop so that `entries` fit in `limit` bytes: least recently touched first
/// (an object without a data file counts as touched never), never one in `busy`. Each object
/// frees all its files' bytes. Fewer than needed when only busy objects are left.
pub(super) fn victims(entries: Vec<Entry>, limit: u64, busy: &HashSet<String>) -> Vec<String> {
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    if total <= limit {
        return Vec::new();
    }
    let mut per: HashMap<String, (SystemTime, u64)> = HashMap::new();
    for e in entries {
        let slot = per.entry(e.sha256).or_insert((SystemTime::UNIX_EPOCH, 0));
        if e.data {
            slot.0 = e.touched;
        }
        slot.1 += e.bytes;
    }
    let mut order: Vec<_> = per.into_iter().filter(|(s, _)| !busy.contains(s)).collect();
    order.sort_by_key(|(_, (t, _))| *t);
    let mut out = Vec::new();
    for (sha, (_, bytes)) in order {
        if total <= limit {
            break;
        }
        total = total.saturating_sub(bytes);
        out.push(sha);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An object's data file of `bytes`, touched `secs` after the epoch.
    fn data(sha: &str, bytes: u64, secs: u64) -> Entry {
        Entry {
            sha256: sha.into(),
            bytes,
            touched: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            data: true,
        }
    }

    /// A partial object's `.bits` file, touched `secs` after the epoch.
    fn bits(sha: &str, bytes: u64, secs: u64) -> Entry {
        Entry {
            data: false,
            ..data(sha, bytes, secs)
        }
    }

    fn none_busy() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn nothing_goes_while_the_cache_fits() {
        let e = vec![data("a", 50, 1), data("b", 50, 2)];
        assert!(victims(e, 100, &none_busy()).is_empty());
        assert!(victims(Vec::new(), 0, &none_busy()).is_empty());
    }

    #[test]
    fn the_least_recently_touched_go_first_until_the_cache_fits() {
        let e = || {
            vec![
                data("new", 40, 30),
                data("old", 40, 10),
                data("mid", 40, 20),
            ]
        };
        // 120 bytes: one object brings it to 80.
        assert_eq!(victims(e(), 80, &none_busy()), vec!["old"]);
        assert_eq!(victims(e(), 79, &none_busy()), vec!["old", "mid"]);
        assert_eq!(victims(e(), 0, &none_busy()), vec!["old", "mid", "new"]);
    }

    #[test]
    fn a_busy_object_never_goes() {
        let e = || {
            vec![
                data("old", 40, 10),
                data("mid", 40, 20),
                data("new", 40, 30),
            ]
        };
        let busy = HashSet::from(["old".to_string()]);
        assert_eq!(victims(e(), 80, &busy), vec!["mid"]);
        // Only busy objects left: the cache stays over its limit.
        let all: HashSet<String> = ["old", "mid", "new"].map(String::from).into();
        assert!(victims(e(), 0, &all).is_empty());
    }

    #[test]
    fn an_object_frees_its_bits_too_and_is_as_old_as_its_data() {
        // `a`'s bits were written late, but its data was read first: `a` goes, and its 60
        // bytes (data and bits) are enough.
        let e = vec![data("a", 50, 10), bits("a", 10, 99), data("b", 50, 20)];
        assert_eq!(victims(e, 50, &none_busy()), vec!["a"]);
    }

    #[test]
    fn bits_without_data_count_as_never_touched() {
        // A torn partial object (its data file gone) goes before any whole one.
        let e = vec![data("a", 50, 1), bits("torn", 10, 99)];
        assert_eq!(victims(e, 55, &none_busy()), vec!["torn"]);
    }
}
