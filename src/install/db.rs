//! The installed-package database inside an install root: `ROOT/var/lib/repofs/installed/`
//! (a subdirectory, because `/var/lib/repofs` is also the repository's default state
//! directory, and installing into `/` must not mix the two).
//!
//! `receipts/NAME.json` is one receipt per package (which files it owns, with hashes);
//! `scripts/NAME/` keeps the package's install scripts, so remove scripts still run after the
//! repository or its mount is gone; `journal.json` describes the one transaction in
//! progress, so a command killed at any point is rolled back or completed by the next one.
//! Every file here is written to a temporary name and renamed, so a reader never sees half
//! of one. `lock` is held (flock) for the whole of a command.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::InstallError;

/// Where the database lives, relative to the install root.
pub const DB_DIR: &str = "var/lib/repofs/installed";

/// How long a command waits for another one working on the same root.
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// One path a package owns, as installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    /// Relative to the install root, no leading slash.
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Directories only: the install made it (so the removal may take it away again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What `repofs install` left for one package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub name: String,
    pub version: String,
    /// The archive format and metadata source as the catalog has them (`tar.zst`, `pkginfo`).
    pub format: String,
    pub meta_source: String,
    /// sha256 of the published package file it came from.
    pub source_sha256: String,
    /// Unix seconds.
    pub installed_at: i64,
    pub files: Vec<FileRecord>,
}

/// One file of a package being installed: where it is staged, and where the file it
/// replaces (if any) is kept until the package is through. Paths relative to the root,
/// already resolved inside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub target: String,
    pub staged: String,
    pub backup: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Files are being written beside their targets; nothing visible changed yet: roll back.
    Staging,
    /// Staged files are being renamed into place: roll forward.
    Commit,
    /// Everything is in place and the receipt written; post-install scripts are running.
    Scripts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
// Written once or twice per package, never held in bulk: the size difference is harmless.
#[allow(clippy::large_enum_variant)]
pub enum Journal {
    Install {
        phase: Phase,
        receipt: Receipt,
        /// The receipt of the version this one replaces (an upgrade).
        old: Option<Receipt>,
        items: Vec<Item>,
        /// Directories made for this package, parents first (resolved, relative).
        created_dirs: Vec<String>,
    },
    Remove {
        receipt: Receipt,
    },
}

/// An open database with its lock held.
pub struct Db {
    pub root: PathBuf,
    dir: PathBuf,
    _lock: File,
}

impl Db {
    /// Opens (creating) the database of `root` and takes its lock, waiting at most
    /// `LOCK_WAIT` for another command to finish.
    pub fn open(root: &Path) -> Result<Db, InstallError> {
        let dir = root.join(DB_DIR);
        for sub in ["receipts", "scripts"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| InstallError::io(&dir, e))?;
        }
        let path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| InstallError::io(&path, e))?;
        let start = Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(InstallError::Locked(root.to_path_buf()))
                }
                Err(fs::TryLockError::Error(e)) => return Err(InstallError::io(&path, e)),
            }
        }
        Ok(Db {
            root: root.to_path_buf(),
            dir,
            _lock: lock,
        })
    }

    fn receipt_path(&self, name: &str) -> PathBuf {
        // npm scoped names hold a '/'; '+' never appears in a package name.
        self.dir
            .join("receipts")
            .join(format!("{}.json", name.replace('/', "+")))
    }

    pub fn scripts_dir(&self, name: &str) -> PathBuf {
        self.dir.join("scripts").join(name.replace('/', "+"))
    }

    /// The scripts directory as seen from inside the root (for chrooted runs).
    pub fn scripts_dir_in_root(&self, name: &str) -> String {
        format!("/{DB_DIR}/scripts/{}", name.replace('/', "+"))
    }

    pub fn receipts(&self) -> Result<Vec<Receipt>, InstallError> {
        let dir = self.dir.join("receipts");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| InstallError::io(&dir, e))? {
            let e = e.map_err(|e| InstallError::io(&dir, e))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push(read_json(&p)?);
            }
        }
        out.sort_by(|a: &Receipt, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Whether `root` has a database at all (listing a root never creates one).
    pub fn exists(root: &Path) -> bool {
        root.join(DB_DIR).is_dir()
    }

    pub fn receipt(&self, name: &str) -> Result<Option<Receipt>, InstallError> {
        let p = self.receipt_path(name);
        if !p.exists() {
            return Ok(None);
        }
        read_json(&p).map(Some)
    }

    pub fn write_receipt(&self, r: &Receipt) -> Result<(), InstallError> {
        write_json(&self.receipt_path(&r.name), r)
    }

    pub fn delete_receipt(&self, name: &str) -> Result<(), InstallError> {
        remove_if_exists(&self.receipt_path(name))
    }

    pub fn journal(&self) -> Result<Option<Journal>, InstallError> {
        let p = self.dir.join("journal.json");
        if !p.exists() {
            return Ok(None);
        }
        read_json(&p).map(Some)
    }

    pub fn write_journal(&self, j: &Journal) -> Result<(), InstallError> {
        write_json(&self.dir.join("journal.json"), j)
    }

    pub fn clear_journal(&self) -> Result<(), InstallError> {
        remove_if_exists(&self.dir.join("journal.json"))
    }
}

pub fn remove_if_exists(p: &Path) -> Result<(), InstallError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(InstallError::io(p, e)),
        _ => Ok(()),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T, InstallError> {
    let text = fs::read(p).map_err(|e| InstallError::io(p, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| InstallError::CorruptDb(format!("{}: {e}", p.display())))
}

/// Temporary name, then rename: the journal must be whole whenever it exists. No fsync:
/// like the installed files themselves (which `tar -x` and pacman do not fsync either), this
/// survives a killed process, not a power cut; 3 fsyncs per package cost more than copying.
fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<(), InstallError> {
    let tmp = p.with_extension("json.tmp");
    let text = serde_json::to_vec(v)
        .map_err(|e| InstallError::CorruptDb(format!("{}: {e}", p.display())))?;
    let mut f = File::create(&tmp).map_err(|e| InstallError::io(&tmp, e))?;
    f.write_all(&text).map_err(|e| InstallError::io(&tmp, e))?;
    fs::rename(&tmp, p).map_err(|e| InstallError::io(p, e))
}
