//! The spool (`ROOT/incoming/`): what is there, grouped into uploads, and which are ready.
//!
//! A scan is stateless: it reads the directory tree and derives everything from it, so the
//! daemon's live events, its catch-up at start-up, `--once`, and `repofs status` all share one
//! code path and nothing depends on having seen an event.
//!
//! Completeness is decided by the signature material, never by a close or a rename (rsync
//! `--partial` renames an interrupted file to its final name). A group is processed once its
//! material is present and its files have been quiet for a settle time; "quiet" is judged by
//! ctime, which uploaders cannot set (rsync and scp set mtime, even to 0).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::directive;
use crate::config::{IngestConfig, USERS_DIR};
use crate::store::object::{get_xattr, set_xattr};

pub const DIRECTIVE_SUFFIX: &str = ".directive.asc";
pub const SIG_SUFFIX: &str = ".sig";
/// Verdict files the daemon leaves for uploaders; never part of an upload.
pub const REJECTED_SUFFIX: &str = ".rejected";
/// Set on each file of an accepted upload just before the spool cleanup removes them: a crash
/// part-way through the cleanup leaves files that no longer form the group the catalog
/// recorded (`spool_ids`), and this is how a restart still knows them as published.
const XATTR_PUBLISHED: &str = "trusted.repofs.published";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    /// Path relative to the spool root, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    pub ctime: SystemTime,
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
}

impl SpoolFile {
    fn from_meta(rel: String, path: PathBuf, m: &fs::Metadata) -> SpoolFile {
        let ctime = UNIX_EPOCH
            + Duration::new(
                m.ctime().max(0) as u64,
                m.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        SpoolFile {
            rel,
            path,
            size: m.len(),
            ctime,
            dev: m.dev(),
            ino: m.ino(),
            uid: m.uid(),
        }
    }

    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }

    /// Whether the file on disk is no longer the one scanned (rewritten, grown, replaced, gone).
    pub fn changed(&self) -> bool {
        match fs::symlink_metadata(&self.path) {
            Ok(m) => SpoolFile::from_meta(self.rel.clone(), self.path.clone(), &m) != *self,
            Err(_) => true,
        }
    }

    /// Marks the file as part of accepted upload `id`, which is about to remove it. The mark
    /// names the file as it is (inode, size, mtime; not ctime, which the mark itself changes),
    /// so a file written again under the same name no longer matches it.
    pub fn mark_published(&self, id: i64) -> io::Result<()> {
        let f = open_nofollow(&self.path)?;
        let m = f.metadata()?;
        set_xattr(&f, XATTR_PUBLISHED, &format!("{id} {}", published_key(&m)))
    }

    /// The accepted upload this file was left over from (a crash during its cleanup), if it is
    /// still exactly the file marked.
    pub fn published_as(&self) -> Option<i64> {
        let f = open_nofollow(&self.path).ok()?;
        let mark = get_xattr(&f, XATTR_PUBLISHED)?;
        let (id, key) = mark.split_once(' ')?;
        let m = f.metadata().ok()?;
        (m.is_file() && key == published_key(&m)).then(|| id.parse().ok())?
    }

    /// Identity that survives a restart but not a re-upload: a replayed copy is a new inode.
    pub fn identity(&self) -> String {
        let ct = self.ctime.duration_since(UNIX_EPOCH).unwrap_or_default();
        format!(
            "{}:{}:{}:{}.{:09}:{}",
            self.dev,
            self.ino,
            self.size,
            ct.as_secs(),
            ct.subsec_nanos(),
            self.rel
        )
    }
}

/// Opens a spool file without following a symlink swapped in after the scan.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

fn published_key(m: &fs::Metadata) -> String {
    format!(
        "{}:{}:{}:{}.{:09}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    )
}

/// Files sharing a base name in one spool directory: `BASE`, `BASE.sig`, `BASE.directive.asc`.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// Spool subdirectory, relative ("" at the top level).
    pub dir: String,
    pub base: String,
    pub data: Option<SpoolFile>,
    pub sig: Option<SpoolFile>,
    pub directive: Option<SpoolFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `FILE`, `FILE.sig`, `FILE.directive.asc`
    Triplet,
    /// `FILE`, `FILE.sig`
    Pair,
    /// A directive with no `filename:` and no file
    Standalone,
    /// A lone file from a local uid trusted for its directory, closed through the mount
    Unsigned,
}

/// What the mount vouched for a group: every writer had closed it at `at`. It holds while the
/// group's files are exactly those seen then (`identity`): ctimes alone cannot tell, since
/// files written within one clock tick share a ctime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub at: SystemTime,
    pub identity: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready(Shape),
    /// Complete, but written to too recently; ready at this time unless it changes again.
    Settling(SystemTime),
    /// Material is missing (the string says what); swept at this time if it never comes.
    Wait(SystemTime, String),
    /// Incomplete for longer than the sweep time.
    Expired(String),
}

impl Group {
    pub fn files(&self) -> impl Iterator<Item = &SpoolFile> {
        [&self.data, &self.sig, &self.directive]
            .into_iter()
            .flatten()
    }

    pub fn last_change(&self) -> SystemTime {
        self.files().map(|f| f.ctime).max().unwrap_or(UNIX_EPOCH)
    }

    /// The spool-relative name of the upload's main file (for messages and status files).
    pub fn label(&self) -> String {
        crate::paths::join(&self.dir, &self.base)
    }

    /// The identities of all its files, in a fixed order.
    pub fn identity(&self) -> String {
        self.files()
            .map(SpoolFile::identity)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The accepted upload whose spool cleanup a crash interrupted, if every file left of
    /// the group was marked by it (`SpoolFile::mark_published`).
    pub fn leftover_of(&self) -> Option<i64> {
        let mut ids = self.files().map(SpoolFile::published_as);
        let first = ids.next()??;
        ids.all(|id| id == Some(first)).then_some(first)
    }

    /// The uid whose staging area holds this group (None: written to the spool directly).
    pub fn owner(&self) -> Option<u32> {
        split_owner(&self.dir).0
    }

    /// The repository directory the spool location names ("" at the top level).
    pub fn target_dir(&self) -> &str {
        split_owner(&self.dir).1
    }

    /// Readiness when the mount has vouched that all writers closed the group: no quiet time
    /// is needed. A pair still waits `closed_pair_wait` for a directive that may follow (gnupload
    /// copies it last), and so does a lone file from a trusted uid for a signature.
    pub fn readiness_closed(
        &self,
        closed: &Closed,
        now: SystemTime,
        cfg: &IngestConfig,
        max_directive: u64,
        trusted: bool,
    ) -> Option<Readiness> {
        if self.identity() != closed.identity {
            return None; // a file came or changed after the close: the vouch is void
        }
        let after_wait = |shape| {
            let t = closed.at + cfg.closed_pair_wait;
            Some(if now >= t {
                Readiness::Ready(shape)
            } else {
                Readiness::Settling(t)
            })
        };
        match (&self.data, &self.sig, &self.directive) {
            (Some(_), Some(_), Some(_)) => Some(Readiness::Ready(Shape::Triplet)),
            (None, None, Some(d)) if !self.directive_names_file(d, max_directive) => {
                Some(Readiness::Ready(Shape::Standalone))
            }
            (Some(_), Some(_), None) => after_wait(Shape::Pair),
            (Some(_), None, None) if trusted => after_wait(Shape::Unsigned),
            _ => None,
        }
    }

    pub fn readiness(&self, now: SystemTime, cfg: &IngestConfig, max_directive: u64) -> Readiness {
        let last = self.last_change();
        let quiet_until = |d: Duration| last + d;
        let sweep_at = last + cfg.sweep_after;
        let waiting = |what: String| {
            if now >= sweep_at {
                Readiness::Expired(format!(
                    "{what} did not arrive within {}",
                    humantime::format_duration(cfg.sweep_after)
                ))
            } else {
                Readiness::Wait(sweep_at, what)
            }
        };
        let settled = |shape: Shape, d: Duration| {
            if now >= quiet_until(d) {
                Readiness::Ready(shape)
            } else {
                Readiness::Settling(quiet_until(d))
            }
        };
        let name = |suffix: &str| format!("{}{suffix}", self.base);
        // An empty signature or directive is not material yet: a writer killed between create
        // and write leaves one (cp of a triplet when the mount dies), and judging it would
        // refuse an upload that can still be completed.
        if let Some(f) = [&self.sig, &self.directive]
            .into_iter()
            .flatten()
            .find(|f| f.size == 0)
        {
            return waiting(format!("{} (empty so far)", f.name()));
        }
        match (&self.data, &self.sig, &self.directive) {
            (Some(_), Some(_), Some(_)) => settled(Shape::Triplet, cfg.settle),
            (None, None, Some(d)) if !self.directive_names_file(d, max_directive) => {
                settled(Shape::Standalone, cfg.settle)
            }
            (Some(_), Some(_), None) => settled(Shape::Pair, cfg.pair_wait),
            (None, _, _) => waiting(self.base.clone()),
            (Some(_), None, _) => waiting(name(SIG_SUFFIX)),
        }
    }

    fn directive_names_file(&self, d: &SpoolFile, max: u64) -> bool {
        match read_limited(&d.path, max) {
            Ok(Some(raw)) => directive::peek_has_filename(&raw),
            // Too large or unreadable: treat as standalone so it is processed (and refused).
            _ => false,
        }
    }
}

/// Everything a scan finds.
#[derive(Debug, Default)]
pub struct Scan {
    pub groups: Vec<Group>,
    /// Hidden files (rsync temporaries in flight) and non-regular files.
    pub strays: Vec<SpoolFile>,
    /// Verdict files (`NAME.rejected`) left for uploaders.
    pub statuses: Vec<SpoolFile>,
    /// Entries that are not plain files or directories (symlinks, FIFOs, hard links...).
    pub irregular: Vec<SpoolFile>,
}

pub fn scan(spool: &Path) -> io::Result<Scan> {
    let mut out = Scan::default();
    scan_dir(spool, "", &mut out)?;
    out.groups.sort_by_key(Group::label);
    Ok(out)
}

fn scan_dir(dir: &Path, rel_dir: &str, out: &mut Scan) -> io::Result<()> {
    let mut groups: std::collections::BTreeMap<String, Group> = Default::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // Removed while we looked: nothing there any more.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = crate::paths::join(rel_dir, &name);
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            scan_dir(&path, &rel, out)?;
            continue;
        }
        let file = SpoolFile::from_meta(rel, path, &meta);
        // Hard links too: an upload never needs one, and it could alias a file outside the
        // spool that the daemon would then read and move.
        if !meta.is_file() || meta.nlink() > 1 {
            out.irregular.push(file);
        } else if name.ends_with(REJECTED_SUFFIX) {
            out.statuses.push(file);
        } else if name.starts_with('.') {
            out.strays.push(file);
        } else if let Some(base) = name.strip_suffix(DIRECTIVE_SUFFIX) {
            group(&mut groups, rel_dir, base).directive = Some(file);
        } else if let Some(base) = name.strip_suffix(SIG_SUFFIX) {
            group(&mut groups, rel_dir, base).sig = Some(file);
        } else {
            group(&mut groups, rel_dir, &name).data = Some(file);
        }
    }
    out.groups.extend(groups.into_values());
    Ok(())
}

/// Splits `.users/<uid>/rest` into the uid and `rest`.
pub fn split_owner(dir: &str) -> (Option<u32>, &str) {
    let Some(rest) = dir
        .strip_prefix(USERS_DIR)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return (None, dir);
    };
    let (uid, rest) = rest.split_once('/').unwrap_or((rest, ""));
    match uid.parse() {
        Ok(uid) => (Some(uid), rest),
        Err(_) => (None, dir),
    }
}

fn group<'g>(
    groups: &'g mut std::collections::BTreeMap<String, Group>,
    dir: &str,
    base: &str,
) -> &'g mut Group {
    groups.entry(base.to_string()).or_insert_with(|| Group {
        dir: dir.to_string(),
        base: base.to_string(),
        ..Default::default()
    })
}

/// Reads a small file, refusing (Ok(None)) one larger than `max` without reading it all.
pub fn read_limited(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    fs::File::open(path)?.take(max + 1).read_to_end(&mut buf)?;
    Ok(if buf.len() as u64 > max {
        None
    } else {
        Some(buf)
    })
}
