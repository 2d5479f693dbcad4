//! How many requests of each kind the kernel sent the mount.
//!
//! A time measured through a FUSE mount is mostly round trips between the kernel and this
//! process: on a loaded or paravirtualised machine each costs a context switch or two, so the
//! same walk can take twice as long on one machine as on another. The count of requests does
//! not depend on the machine, only on the kernel and on what the mount tells it (TTLs, open
//! flags, readahead), which makes it the figure to compare. One relaxed atomic add per
//! request; the glue (`fuse`) counts, nothing else does.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of FUSE request, as the kernel names it (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lookup,
    /// Per inode forgotten: the kernel batches them and waits for no reply.
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
}

impl Op {
    pub const ALL: [Op; 28] = [
        Op::Lookup,
        Op::Forget,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Symlink,
        Op::Rename,
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Flush,
        Op::Release,
        Op::Fsync,
        Op::Opendir,
        Op::Readdir,
        Op::Readdirplus,
        Op::Releasedir,
        Op::Fsyncdir,
        Op::Statfs,
        Op::Setxattr,
        Op::Getxattr,
        Op::Listxattr,
        Op::Removexattr,
        Op::Access,
        Op::Create,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Forget => "forget",
            Op::Getattr => "getattr",
            Op::Setattr => "setattr",
            Op::Readlink => "readlink",
            Op::Mkdir => "mkdir",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Symlink => "symlink",
            Op::Rename => "rename",
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Release => "release",
            Op::Fsync => "fsync",
            Op::Opendir => "opendir",
            Op::Readdir => "readdir",
            Op::Readdirplus => "readdirplus",
            Op::Releasedir => "releasedir",
            Op::Fsyncdir => "fsyncdir",
            Op::Statfs => "statfs",
            Op::Setxattr => "setxattr",
            Op::Getxattr => "getxattr",
            Op::Listxattr => "listxattr",
            Op::Removexattr => "removexattr",
            Op::Access => "access",
            Op::Create => "create",
        }
    }
}

/// Requests counted since the mount started.
#[derive(Default)]
pub struct Stats {
    counts: [AtomicU64; Op::ALL.len()],
    /// Bytes returned by `read` (passthrough reads never reach us).
    read_bytes: AtomicU64,
    /// Files handed to the page cache at open (`prefill`), and their bytes: notifications, not
    /// requests.
    stored_files: AtomicU64,
    stored_bytes: AtomicU64,
}

impl Stats {
    pub fn count(&self, op: Op) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn read_bytes(&self, n: usize) {
        self.read_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn stored(&self, n: usize) {
        self.stored_files.fetch_add(1, Ordering::Relaxed);
        self.stored_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(&self, op: Op) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// `{"requests": {"lookup": N, ...}, "total": N, "read_bytes": N, "stored_files": N,
    /// "stored_bytes": N}`, every kind listed.
    pub fn to_json(&self) -> serde_json::Value {
        let requests: serde_json::Map<String, serde_json::Value> = Op::ALL
            .iter()
            .map(|&op| (op.name().to_string(), self.get(op).into()))
            .collect();
        let total: u64 = Op::ALL.iter().map(|&op| self.get(op)).sum();
        serde_json::json!({
            "requests": requests,
            "total": total,
            "read_bytes": self.read_bytes.load(Ordering::Relaxed),
            "stored_files": self.stored_files.load(Ordering::Relaxed),
            "stored_bytes": self.stored_bytes.load(Ordering::Relaxed),
        })
    }

    /// Writes `to_json` to `path` whole (through a temporary file and a rename), so a reader
    /// never sees half of it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let mut text = serde_json::to_string_pretty(&self.to_json())?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_slot_and_name() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} out of order in Op::ALL");
        }
        let names: std::collections::HashSet<_> = Op::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Op::ALL.len());
    }

    #[test]
    fn counts_show_in_the_json_with_their_total() {
        let s = Stats::default();
        s.count(Op::Open);
        s.count(Op::Read);
        s.count(Op::Read);
        s.read_bytes(4096);
        let j = s.to_json();
        assert_eq!(j["requests"]["read"], 2);
        assert_eq!(j["requests"]["open"], 1);
        assert_eq!(j["requests"]["lookup"], 0);
        assert_eq!(j["total"], 3);
        assert_eq!(j["read_bytes"], 4096);
    }

    #[test]
    fn write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json");
        let s = Stats::default();
        s.count(Op::Lookup);
        s.write(&path).unwrap();
        s.count(Op::Lookup);
        s.write(&path).unwrap();
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(j["requests"]["lookup"], 2);
        assert!(!dir.path().join("stats.json.tmp").exists());
    }
}
