//! `repofs install`, `remove`, `installed`: packages from the mount's `pkgs/` trees installed
//! into a root directory, the way pacman does it.
//!
//! A command works on a plan (`&[PackageRow]`, in install order), one package at a time,
//! each atomically: conflicts are checked for the whole plan before anything is written;
//! then a package's files are staged beside their targets (same filesystem), renamed into
//! place, and its receipt written, all under a journal (`db`), so a command killed at any
//! point is rolled back (still staging) or completed (renames begun) by the next command
//! on that root. Entry lists and hashes come from the catalog; bytes come through the mount,
//! so a mirror fetches what an install reads, and every byte is checked against the
//! catalog's per-entry sha256 as it is copied.
//!
//! What gets installed per format (`dest_of`): a pacman package's tree without its
//! metadata files (`.PKGINFO`, `.INSTALL`, `.MTREE`, `.BUILDINFO`, `.CHANGELOG`); a .deb's
//! data tree (its maintainer scripts live in control.tar, which `pkgs/` does not show, so
//! they do not run); an npm tarball under `node_modules/NAME/` with its top directory
//! stripped, as npm does, with its `bin` commands linked from `node_modules/.bin/`; tpm's
//! `data/` (its `info/` holds metadata and scripts); distpac's tree without `manifest.yaml`
//! and `scripts/`; anything else as `pkgs/` shows it.
//!
//! A pacman `backup =` file the user edited survives an upgrade as pacman's does: the new
//! text goes beside it as `FILE.repofs-new` (unowned, like `.pacnew`, so `remove` leaves it).

pub mod db;
pub mod image;
pub mod scripts;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::EntryKind;
use crate::catalog::{Catalog, CatalogError, PackageRow};
use db::{Db, FileKind, FileRecord, Item, Journal, Phase, Receipt};
use scripts::{quote, Runner, Script, When};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no repofs mount of this repository shows {0}; mount it or pass --mount DIR")]
    NoMount(String),
    #[error("file conflicts; nothing was changed (--overwrite takes the files over):\n{}", .0.join("\n"))]
    Conflict(Vec<String>),
    #[error("{script} failed ({status}); the package was rolled back. Its output:\n{output}")]
    ScriptFailed {
        script: String,
        status: String,
        output: String,
    },
    #[error("{script} ran past its {secs} s deadline and was killed; the package was rolled back")]
    ScriptTimeout { script: String, secs: u64 },
    #[error("{path}: the mount gave bytes whose sha256 is {got}, the catalog says {expected}")]
    Mismatch {
        path: String,
        expected: String,
        got: String,
    },
    #[error("{0} is not installed")]
    NotInstalled(String),
    #[error("another repofs command is working on {0} (its lock is held)")]
    Locked(PathBuf),
    #[error("unsafe path in a package: {0:?}")]
    BadPath(String),
    #[error("installed-package database: {0}")]
    CorruptDb(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("image: {0}")]
    Image(String),
}

impl InstallError {
    pub fn io(path: &Path, source: std::io::Error) -> InstallError {
        InstallError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// The stable reason code (printed by the CLI, matched by scripts and tests).
    pub fn code(&self) -> &'static str {
        match self {
            InstallError::NoMount(_) => "no-mount",
            InstallError::Conflict(_) => "file-conflict",
            InstallError::ScriptFailed { .. } => "script-failed",
            InstallError::ScriptTimeout { .. } => "script-timeout",
            InstallError::Mismatch { .. } => "content-mismatch",
            InstallError::NotInstalled(_) => "not-installed",
            InstallError::Locked(_) => "locked",
            InstallError::BadPath(_) => "bad-path",
            InstallError::CorruptDb(_) => "corrupt-db",
            InstallError::Io { .. } => "io",
            InstallError::Catalog(_) => "catalog",
            InstallError::Image(_) => "image",
        }
    }
}

type Result<T, E = InstallError> = std::result::Result<T, E>;

/// Finds the mount that shows this repository: a `fuse.repofs` mount (from
/// `/proc/self/mountinfo`) whose `dists/` holds the plan's first published file, at its size,
/// and whose `pkgs/` holds every package of the plan.
pub fn find_mount(cat: &Catalog, plan: &[PackageRow]) -> Result<PathBuf> {
    let want = plan
        .first()
        .map(|p| format!("{}={}", p.name, p.version.as_deref().unwrap_or("")))
        .unwrap_or_default();
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| InstallError::io(Path::new("/proc/self/mountinfo"), e))?;
    let first = match plan.first() {
        Some(p) => cat.published_file(p.file_id)?,
        None => None,
    };
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.split(' ').next() != Some("fuse.repofs") {
            continue;
        }
        let Some(dir) = pre.split(' ').nth(4) else {
            continue;
        };
        let dir = PathBuf::from(unescape_mountinfo(dir));
        let dists_ok = first.as_ref().is_none_or(|f| {
            fs::metadata(dir.join("dists").join(&f.directory).join(&f.filename))
                .is_ok_and(|m| m.len() == f.size)
        });
        if dists_ok && plan.iter().all(|p| pkg_dir(&dir, p).is_dir()) {
            return Ok(dir);
        }
    }
    Err(InstallError::NoMount(want))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && b.len() >= i + 4 {
            if let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `MOUNT/pkgs/NAME/VERSION` (npm scopes are directories already: `@scope/name`).
pub fn pkg_dir(mount: &Path, p: &PackageRow) -> PathBuf {
    mount
        .join("pkgs")
        .join(&p.name)
        .join(p.version.as_deref().unwrap_or(""))
}

const PACMAN_META: &[&str] = &[".PKGINFO", ".INSTALL", ".MTREE", ".BUILDINFO", ".CHANGELOG"];

/// Where entry `path` of a package goes, relative to the root; None for metadata that is not
/// installed. `path` is already normalized (no `./`, no trailing `/`).
pub fn dest_of(p: &PackageRow, path: &str) -> Option<String> {
    let (top, rest) = match path.split_once('/') {
        Some((t, r)) => (t, Some(r)),
        None => (path, None),
    };
    match p.meta_source.as_str() {
        "pkginfo" if rest.is_none() && PACMAN_META.contains(&top) => None,
        "npm" => Some(match rest {
            Some(r) => format!("node_modules/{}/{r}", p.name),
            None => format!("node_modules/{}", p.name),
        }),
        "tpm" => match (top, rest) {
            ("data", Some(r)) => Some(r.to_string()),
            _ => None,
        },
        "distpac" if top == "manifest.yaml" || top == "scripts" => None,
        _ => Some(path.to_string()),
    }
}

fn normalize(path: &str) -> Result<String> {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    let p = p.trim_end_matches('/');
    if p.split('/')
        .any(|c| c == ".." || c.is_empty() && !p.is_empty())
    {
        return Err(InstallError::BadPath(path.to_string()));
    }
    Ok(p.split('/')
        .filter(|c| *c != ".")
        .collect::<Vec<_>>()
        .join("/"))
}

/// `rel` inside `root`, with every directory component resolved as a chroot would (an
/// absolute symlink such as `bin -> /usr/bin` points inside the root, `..` stops at it); the
/// last component is not followed.
pub fn resolve(root: &Path, rel: &str) -> PathBuf {
    let (parent, last) = rel.rsplit_once('/').unwrap_or(("", rel));
    resolve_dir(root, parent).join(last)
}

/// [`resolve`] with the directories remembered: a package's files share a few parents, and
/// walking each one's components with lstat per file was a third of an install's CPU. Valid
/// while no symlink in the root changes, so one lives for one pass (a check, a staging).
struct Resolver<'a> {
    root: &'a Path,
    dirs: HashMap<String, PathBuf>,
}

impl<'a> Resolver<'a> {
    fn new(root: &'a Path) -> Self {
        Resolver {
            root,
            dirs: HashMap::new(),
        }
    }

    fn resolve(&mut self, rel: &str) -> PathBuf {
        let (parent, last) = rel.rsplit_once('/').unwrap_or(("", rel));
        if let Some(d) = self.dirs.get(parent) {
            return d.join(last);
        }
        let d = resolve_dir(self.root, parent);
        let full = d.join(last);
        self.dirs.insert(parent.to_string(), d);
        full
    }
}

fn resolve_dir(root: &Path, rel: &str) -> PathBuf {
    let mut cur = root.to_path_buf();
    let mut todo: VecDeque<String> = rel.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            if cur != root {
                cur.pop();
            }
            continue;
        }
        let next = cur.join(&c);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && hops < 40 => {
                hops += 1;
                match fs::read_link(&next) {
                    Ok(t) => {
                        let t = t.to_string_lossy().into_owned();
                        if t.starts_with('/') {
                            cur = root.to_path_buf();
                        }
                        for part in t.split('/').rev() {
                            todo.push_front(part.to_string());
                        }
                    }
                    Err(_) => cur = next,
                }
            }
            _ => cur = next,
        }
    }
    cur
}

fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

// ---------------------------------------------------------------------------------------

pub struct Options {
    pub root: PathBuf,
    pub mount: PathBuf,
    pub overwrite: bool,
    pub script_timeout: Duration,
    /// Run the packages' scripts (images may not want them).
    pub run_scripts: bool,
    /// A progress bar on stderr (drawn only on a terminal).
    pub progress: bool,
    /// The receipts' install time (images pin it); None = now.
    pub installed_at: Option<i64>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub installed: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    /// Files the user changed, kept as `FILE.repofs-save`.
    pub saved: Vec<String>,
    /// Edited config files an upgrade left alone; the package's new text is `FILE.repofs-new`
    /// (listed here) when it changed.
    pub kept: Vec<String>,
    /// What the first command found unfinished and rolled back or completed.
    pub recovered: Option<String>,
}

/// One path a package will own.
#[derive(Debug, Clone)]
struct Planned {
    dest: String,
    kind: FileKind,
    mode: u32,
    size: u64,
    sha256: Option<String>,
    target: Option<String>,
    mtime: i64,
    uid: u64,
    gid: u64,
    /// The entry's path inside the package tree (files).
    src: String,
    /// A config file (pacman's `backup =`): an upgrade keeps the user's edit of it.
    config: bool,
}

struct PkgPlan {
    row: PackageRow,
    version: String,
    files: Vec<Planned>,
}

fn plan_files(cat: &Catalog, p: &PackageRow, mount: &Path) -> Result<PkgPlan> {
    let version = p.version.clone().unwrap_or_default();
    let entries = cat.entries(p.file_id)?;
    let by_path: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| normalize(&e.path).ok().map(|n| (n, i)))
        .collect();
    let mut files: Vec<Planned> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for e in &entries {
        let src = normalize(&e.path)?;
        if src.is_empty() {
            continue;
        }
        let Some(dest) = dest_of(p, &src) else {
            continue;
        };
        let dest = normalize(&dest)?;
        if dest.is_empty() || !seen.insert(dest.clone()) {
            continue;
        }
        let (kind, sha, target, size) = match e.kind {
            EntryKind::Dir => (FileKind::Dir, None, None, 0),
            EntryKind::Symlink => (FileKind::Symlink, None, e.link_target.clone(), 0),
            EntryKind::File => (FileKind::File, e.sha256.clone(), None, e.size),
            // A hard link installs as a copy of what it links to (the mount shows it so).
            EntryKind::Hardlink => {
                let to = e
                    .link_target
                    .as_deref()
                    .and_then(|t| normalize(t).ok())
                    .and_then(|t| by_path.get(&t))
                    .map(|&i| &entries[i]);
                (
                    FileKind::File,
                    to.and_then(|t| t.sha256.clone()),
                    None,
                    to.map_or(e.size, |t| t.size),
                )
            }
        };
        files.push(Planned {
            dest,
            kind,
            mode: e.mode & 0o7777,
            size,
            sha256: sha,
            target,
            mtime: e.mtime,
            uid: e.uid,
            gid: e.gid,
            src,
            config: false,
        });
    }
    if p.meta_source == "npm" {
        npm_bins(p, &pkg_dir(mount, p), &mut files, &mut seen)?;
    }
    if p.meta_source == "pkginfo" {
        // `backup =` is not in the catalog: read it from .PKGINFO through the mount.
        let info = pkg_dir(mount, p).join(".PKGINFO");
        let text = fs::read_to_string(&info).map_err(|e| InstallError::io(&info, e))?;
        let backup: HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("backup = "))
            .map(str::trim)
            .collect();
        for f in files.iter_mut().filter(|f| f.kind == FileKind::File) {
            f.config = backup.contains(f.dest.as_str());
        }
    }
    // Directories the entries imply but the archive does not list.
    let mut implied = Vec::new();
    for f in &files {
        let mut d = f.dest.as_str();
        while let Some((parent, _)) = d.rsplit_once('/') {
            if seen.insert(parent.to_string()) {
                implied.push(Planned {
                    dest: parent.to_string(),
                    kind: FileKind::Dir,
                    mode: 0o755,
                    size: 0,
                    sha256: None,
                    target: None,
                    mtime: 0,
                    uid: 0,
                    gid: 0,
                    src: String::new(),
                    config: false,
                });
            }
            d = parent;
        }
    }
    files.extend(implied);
    files.sort_by(|a, b| a.dest.cmp(&b.dest));
    Ok(PkgPlan {
        row: p.clone(),
        version,
        files,
    })
}

/// What npm's bin-links does for package.json's `bin`: each target becomes executable and
/// gets a `node_modules/.bin/CMD -> ../NAME/PATH` link. The manifest is read through the
/// mount (the catalog does not keep `bin`); a command name that is not one plain path
/// component, or a target the package does not ship, is skipped as npm skips it.
fn npm_bins(
    p: &PackageRow,
    pkg: &Path,
    files: &mut Vec<Planned>,
    seen: &mut HashSet<String>,
) -> Result<()> {
    let Some((manifest, _)) = script_sources(p, pkg).into_iter().next() else {
        return Ok(());
    };
    let bytes = fs::read(&manifest).map_err(|e| InstallError::io(&manifest, e))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    // `"bin": "path"` is one command named after the package (its scope dropped).
    let plain = p.name.rsplit('/').next().unwrap_or(&p.name).to_string();
    let bins: Vec<(String, String)> = match &json["bin"] {
        serde_json::Value::String(t) => vec![(plain, t.clone())],
        serde_json::Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    for (cmd, target) in bins {
        let Ok(target) = normalize(&target) else {
            continue;
        };
        let ok_cmd = !cmd.is_empty() && !cmd.contains('/') && cmd != "." && cmd != "..";
        let dest = format!("node_modules/{}/{target}", p.name);
        let Some(f) = files
            .iter_mut()
            .find(|f| f.dest == dest && f.kind == FileKind::File)
        else {
            continue;
        };
        if !ok_cmd {
            continue;
        }
        f.mode |= 0o111;
        let link = format!("node_modules/.bin/{cmd}");
        if seen.insert(link.clone()) {
            files.push(Planned {
                dest: link,
                kind: FileKind::Symlink,
                mode: 0o777,
                size: 0,
                sha256: None,
                target: Some(format!("../{}/{target}", p.name)),
                mtime: 0,
                uid: 0,
                gid: 0,
                src: String::new(),
                config: false,
            });
        }
    }
    Ok(())
}

/// Owners of every installed non-directory path (resolved, relative to the root).
fn owners(at: &mut Resolver, receipts: &[Receipt]) -> HashMap<String, String> {
    let root = at.root;
    let mut m = HashMap::new();
    for r in receipts {
        for f in r.files.iter().filter(|f| f.kind != FileKind::Dir) {
            m.insert(rel_of(root, &at.resolve(&f.path)), r.name.clone());
        }
    }
    m
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Whether what is at `p` is exactly what `f` describes.
fn same_content(
    p: &Path,
    kind: FileKind,
    size: u64,
    sha: Option<&str>,
    target: Option<&str>,
) -> bool {
    let Ok(m) = fs::symlink_metadata(p) else {
        return false;
    };
    match kind {
        FileKind::Symlink => {
            m.file_type().is_symlink()
                && fs::read_link(p)
                    .is_ok_and(|t| Some(t.as_os_str().as_bytes()) == target.map(str::as_bytes))
        }
        FileKind::File => {
            m.file_type().is_file()
                && m.len() == size
                && match sha {
                    Some(s) => sha256_file(p).is_ok_and(|h| h == s),
                    None => true,
                }
        }
        FileKind::Dir => m.is_dir(),
    }
}

/// Checks the whole plan against the root before anything is written.
fn conflicts(root: &Path, plans: &[PkgPlan], receipts: &[Receipt], overwrite: bool) -> Vec<String> {
    let mut at = Resolver::new(root);
    let owned = owners(&mut at, receipts);
    let mut out = Vec::new();
    let mut claimed: HashMap<String, &str> = HashMap::new();
    for p in plans {
        for f in &p.files {
            let full = at.resolve(&f.dest);
            let rel = rel_of(root, &full);
            let meta = fs::symlink_metadata(&full);
            if f.kind == FileKind::Dir {
                // A symlink to a directory (bin -> usr/bin) is a directory here.
                if meta.is_ok() && !fs::metadata(&full).is_ok_and(|m| m.is_dir()) {
                    out.push(format!("{}: is not a directory ({})", f.dest, p.row.name));
                }
                continue;
            }
            if let Some(other) = claimed.insert(rel.clone(), &p.row.name) {
                if !overwrite {
                    out.push(format!("{}: in both {other} and {}", f.dest, p.row.name));
                }
                continue;
            }
            match owned.get(&rel) {
                Some(owner) if owner != &p.row.name => {
                    if !overwrite {
                        out.push(format!("{}: owned by {owner} ({})", f.dest, p.row.name));
                    }
                    continue;
                }
                Some(_) => continue, // an upgrade or reinstall of its owner
                None => {}
            }
            match meta {
                Ok(m) if m.is_dir() => out.push(format!(
                    "{}: a directory is in the way ({})",
                    f.dest, p.row.name
                )),
                Ok(_)
                    if !overwrite
                        && !same_content(
                            &full,
                            f.kind,
                            f.size,
                            f.sha256.as_deref(),
                            f.target.as_deref(),
                        ) =>
                {
                    out.push(format!(
                        "{}: exists with other content ({})",
                        f.dest, p.row.name
                    ))
                }
                _ => {}
            }
        }
    }
    out
}

fn progress_bar(enabled: bool, total: u64) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    // Drawn only on a terminal (indicatif hides itself otherwise).
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Installs `plan` (install order) into `opts.root`.
pub fn install(cat: &Catalog, plan: &[PackageRow], opts: &Options) -> Result<Report> {
    fs::create_dir_all(&opts.root).map_err(|e| InstallError::io(&opts.root, e))?;
    let root = fs::canonicalize(&opts.root).map_err(|e| InstallError::io(&opts.root, e))?;
    let db = Db::open(&root)?;
    let mut report = Report {
        recovered: recover(&db)?,
        ..Report::default()
    };
    let receipts = db.receipts()?;
    let mut plans = Vec::new();
    for p in plan {
        let installed = receipts.iter().find(|r| r.name == p.name);
        let version = p.version.clone().unwrap_or_default();
        if installed.is_some_and(|r| r.version == version && r.source_sha256 == p.sha256) {
            report.unchanged.push(format!("{}={version}", p.name));
            continue;
        }
        plans.push(plan_files(cat, p, &opts.mount)?);
    }
    let found = conflicts(&root, &plans, &receipts, opts.overwrite);
    if !found.is_empty() {
        return Err(InstallError::Conflict(found));
    }
    let total = plans.iter().flat_map(|p| &p.files).map(|f| f.size).sum();
    let bar = progress_bar(opts.progress, total);
    let runner = Runner::new(&root, opts.script_timeout);
    for p in &plans {
        bar.set_message(p.row.name.clone());
        let kept = install_one(&db, &runner, p, opts, &bar)?;
        report.kept.extend(kept);
        report
            .installed
            .push(format!("{}={}", p.row.name, p.version));
    }
    bar.finish_and_clear();
    Ok(report)
}

fn staged_name(dir: &Path, base: &str, what: &str) -> PathBuf {
    let h = Sha256::digest(base.as_bytes());
    dir.join(format!(".repofs-{what}.{}", &hex::encode(h)[..16]))
}

fn install_one(
    db: &Db,
    runner: &Runner,
    p: &PkgPlan,
    opts: &Options,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<String>> {
    let root = &db.root;
    let name = &p.row.name;
    let old = db.receipt(name)?;
    let edits = edited_configs(root, p, old.as_ref());
    let kept: Vec<String> = edits
        .iter()
        .map(|(path, e)| match e {
            Edited::Same => path.clone(),
            Edited::NewBeside => format!("{path} (new text in {path}.repofs-new)"),
        })
        .collect();
    let mut records = Vec::new();
    let mut items = Vec::new();
    let mut created_dirs = Vec::new();
    let mut at = Resolver::new(root);
    for f in &p.files {
        let mut full = at.resolve(&f.dest);
        match f.kind {
            FileKind::Dir => {
                let created = fs::symlink_metadata(&full).is_err();
                if created {
                    created_dirs.push(rel_of(root, &full));
                }
                records.push(FileRecord {
                    path: f.dest.clone(),
                    kind: FileKind::Dir,
                    mode: f.mode,
                    size: 0,
                    sha256: None,
                    target: None,
                    created,
                });
            }
            _ => {
                match edits.get(&f.dest) {
                    Some(Edited::Same) => {
                        records.push(record_of(f));
                        continue;
                    }
                    Some(Edited::NewBeside) => {
                        let mut beside = full.clone().into_os_string();
                        beside.push(".repofs-new");
                        full = PathBuf::from(beside);
                    }
                    None => {}
                }
                let dir = full.parent().unwrap_or(root);
                let base = full
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_default();
                items.push(Item {
                    target: rel_of(root, &full),
                    staged: rel_of(root, &staged_name(dir, &base, "new")),
                    backup: rel_of(root, &staged_name(dir, &base, "old")),
                });
                records.push(record_of(f));
            }
        }
    }
    let mut receipt = Receipt {
        name: name.clone(),
        version: p.version.clone(),
        format: p.row.format.clone(),
        meta_source: p.row.meta_source.clone(),
        source_sha256: p.row.sha256.clone(),
        installed_at: opts.installed_at.unwrap_or_else(crate::time::now),
        files: records,
    };
    let mut journal = Journal::Install {
        phase: Phase::Staging,
        receipt: receipt.clone(),
        old: old.clone(),
        items: items.clone(),
        created_dirs: created_dirs.clone(),
    };
    db.write_journal(&journal)?;
    crate::failpoint::hit("install-journaled");

    let staged = (|| -> Result<()> {
        let pkg = pkg_dir(&opts.mount, &p.row);
        save_scripts(db, &p.row, &pkg)?;
        if opts.run_scripts {
            run_scripts(
                db,
                runner,
                &p.row.meta_source,
                name,
                When::PreInstall,
                &p.version,
                old.as_ref(),
            )?;
        }
        let mut item = items.iter();
        let mut jobs: Vec<(&Planned, PathBuf)> = Vec::new();
        for f in &p.files {
            let full = at.resolve(&f.dest);
            if f.kind == FileKind::Dir {
                if fs::symlink_metadata(&full).is_err() {
                    fs::create_dir(&full).map_err(|e| InstallError::io(&full, e))?;
                    let _ = fs::set_permissions(&full, fs::Permissions::from_mode(f.mode));
                }
                continue;
            }
            if matches!(edits.get(&f.dest), Some(Edited::Same)) {
                continue;
            }
            let Some(it) = item.next() else { break };
            let staged = root.join(&it.staged);
            let _ = fs::remove_file(&staged);
            if f.kind == FileKind::Symlink {
                let t = f.target.as_deref().unwrap_or("");
                std::os::unix::fs::symlink(t, &staged).map_err(|e| InstallError::io(&staged, e))?;
                set_owner_and_time(&staged, f);
            } else {
                jobs.push((f, staged));
            }
        }
        let hashes = stage_files(&pkg, &p.row.name, &jobs, bar)?;
        for r in &mut receipt.files {
            if r.kind == FileKind::File && r.sha256.is_none() {
                r.sha256 = hashes.get(&r.path).cloned();
            }
        }
        Ok(())
    })();
    if let Err(e) = staged {
        rollback_staging(db, &items, &created_dirs, name);
        let _ = db.clear_journal();
        return Err(e);
    }
    crate::failpoint::hit("install-staged");
    journal = Journal::Install {
        phase: Phase::Commit,
        receipt: receipt.clone(),
        old: old.clone(),
        items: items.clone(),
        created_dirs: created_dirs.clone(),
    };
    db.write_journal(&journal)?;
    commit(db, &receipt, &items, opts.overwrite)?;
    if let Journal::Install { phase, .. } = &mut journal {
        *phase = Phase::Scripts;
    }
    db.write_journal(&journal)?;
    if opts.run_scripts {
        if let Err(e) = run_scripts(
            db,
            runner,
            &p.row.meta_source,
            name,
            When::PostInstall,
            &p.version,
            old.as_ref(),
        ) {
            rollback_committed(db, &receipt, old.as_ref(), &items, &created_dirs);
            let _ = db.clear_journal();
            return Err(e);
        }
    }
    finish(db, &receipt, old.as_ref(), &items)?;
    db.clear_journal()?;
    Ok(kept)
}

/// What an upgrade does with a config file the user edited.
enum Edited {
    /// The package ships the text it shipped before: leave the user's file alone.
    Same,
    /// The package changed it too: leave the user's file, put the new one beside it.
    NewBeside,
}

/// pacman's rule for `backup` files on upgrade: a file whose text on disk is neither what
/// the old version installed nor what the new one ships was edited, and stays.
fn edited_configs(root: &Path, p: &PkgPlan, old: Option<&Receipt>) -> HashMap<String, Edited> {
    let mut out = HashMap::new();
    let Some(old) = old else { return out };
    for f in p.files.iter().filter(|f| f.config) {
        let Some(was) = old
            .files
            .iter()
            .find(|r| r.path == f.dest && r.kind == FileKind::File)
            .and_then(|r| r.sha256.as_deref())
        else {
            continue;
        };
        let full = resolve(root, &f.dest);
        let is_file = fs::symlink_metadata(&full).is_ok_and(|m| m.is_file());
        let Some(now) = is_file.then(|| sha256_file(&full).ok()).flatten() else {
            continue;
        };
        if now == was || Some(now.as_str()) == f.sha256.as_deref() {
            continue;
        }
        let e = if f.sha256.as_deref() == Some(was) {
            Edited::Same
        } else {
            Edited::NewBeside
        };
        out.insert(f.dest.clone(), e);
    }
    out
}

fn record_of(f: &Planned) -> FileRecord {
    FileRecord {
        path: f.dest.clone(),
        kind: f.kind,
        mode: f.mode,
        size: f.size,
        sha256: f.sha256.clone(),
        target: f.target.clone(),
        created: false,
    }
}

/// How many files are copied at once: reads through FUSE wait on the mount, so a few in
/// flight keep both it and the disk busy.
const COPY_WORKERS: usize = 4;
/// A copy's read size: the mount answers at most 128 KiB per read anyway.
const COPY_BUF: usize = 256 << 10;

/// Copies `jobs` (entry, staged path) from the package tree, checking each against the
/// catalog's sha256; returns the hashes by destination path.
fn stage_files(
    pkg: &Path,
    name: &str,
    jobs: &[(&Planned, PathBuf)],
    bar: &indicatif::ProgressBar,
) -> Result<HashMap<String, String>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let out = std::sync::Mutex::new((HashMap::new(), None::<InstallError>));
    let one = |f: &Planned, staged: &Path, buf: &mut [u8]| -> Result<String> {
        let got = copy_in(&pkg.join(&f.src), staged, buf, bar)?;
        if let Some(want) = &f.sha256 {
            if *want != got {
                return Err(InstallError::Mismatch {
                    path: format!("{name}/{}", f.src),
                    expected: want.clone(),
                    got,
                });
            }
        }
        fs::set_permissions(staged, fs::Permissions::from_mode(f.mode))
            .map_err(|e| InstallError::io(staged, e))?;
        set_owner_and_time(staged, f);
        Ok(got)
    };
    std::thread::scope(|sc| {
        for _ in 0..COPY_WORKERS.min(jobs.len()) {
            sc.spawn(|| {
                // One buffer per worker, not per file: most files are small, and zeroing a
                // fresh buffer for each showed in the 200-package bench.
                let mut buf = vec![0u8; COPY_BUF];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let (f, staged) = &jobs[i];
                    let r = one(f, staged, &mut buf);
                    let mut o = crate::sync::lock(&out);
                    match r {
                        Ok(h) => {
                            o.0.insert(f.dest.clone(), h);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            o.1.get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let (hashes, err) = crate::sync::into_inner(out);
    match err {
        Some(e) => Err(e),
        None => Ok(hashes),
    }
}

/// Copies `src` (through the mount) to a new file `dst`, returning its sha256.
fn copy_in(src: &Path, dst: &Path, buf: &mut [u8], bar: &indicatif::ProgressBar) -> Result<String> {
    let mut from = File::open(src).map_err(|e| InstallError::io(src, e))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| InstallError::io(dst, e))?;
    let mut h = Sha256::new();
    loop {
        let n = from.read(buf).map_err(|e| InstallError::io(src, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        to.write_all(&buf[..n])
            .map_err(|e| InstallError::io(dst, e))?;
        bar.inc(n as u64);
    }
    Ok(hex::encode(h.finalize()))
}

/// Owner (as root) and mtime from the package, as `tar -x` does; failures only lose
/// metadata, so they are ignored.
fn set_owner_and_time(p: &Path, f: &Planned) {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: valid C string; lchown/utimensat touch only the named file.
    unsafe {
        if libc::geteuid() == 0 {
            libc::lchown(c.as_ptr(), f.uid as libc::uid_t, f.gid as libc::gid_t);
            if f.kind == FileKind::File {
                // chown clears set-id bits; put the mode back.
                libc::chmod(c.as_ptr(), f.mode as libc::mode_t);
            }
        }
        let t = libc::timespec {
            tv_sec: f.mtime as libc::time_t,
            tv_nsec: 0,
        };
        let times = [t, t];
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

/// Renames staged files into place (keeping what they replace as backups), installs the
/// saved scripts and writes the receipt. Idempotent: recovery runs it again.
/// `overwrote`: files may have been taken from other packages (`--overwrite`); without it the
/// conflict check has refused any, and reading every other receipt per package is skipped.
fn commit(db: &Db, receipt: &Receipt, items: &[Item], overwrote: bool) -> Result<()> {
    let root = &db.root;
    for (i, it) in items.iter().enumerate() {
        let staged = root.join(&it.staged);
        if fs::symlink_metadata(&staged).is_err() {
            continue; // renamed before a crash
        }
        let target = root.join(&it.target);
        let backup = root.join(&it.backup);
        if fs::symlink_metadata(&target).is_ok() && fs::symlink_metadata(&backup).is_err() {
            fs::rename(&target, &backup).map_err(|e| InstallError::io(&target, e))?;
        }
        fs::rename(&staged, &target).map_err(|e| InstallError::io(&target, e))?;
        if i == items.len() / 2 {
            crate::failpoint::hit("install-commit");
        }
    }
    let new = db.scripts_dir(&format!(".new-{}", receipt.name));
    if new.exists() {
        let dir = db.scripts_dir(&receipt.name);
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&new, &dir).map_err(|e| InstallError::io(&dir, e))?;
    }
    db.write_receipt(receipt)?;
    if overwrote {
        disown(db, receipt)?;
    }
    Ok(())
}

/// With --overwrite, files move to their new owner: drop them from other receipts.
fn disown(db: &Db, receipt: &Receipt) -> Result<()> {
    let root = &db.root;
    let mut at = Resolver::new(root);
    let mine: HashSet<String> = receipt
        .files
        .iter()
        .filter(|f| f.kind != FileKind::Dir)
        .map(|f| rel_of(root, &at.resolve(&f.path)))
        .collect();
    for mut r in db.receipts()? {
        if r.name == receipt.name {
            continue;
        }
        let before = r.files.len();
        r.files.retain(|f| {
            f.kind == FileKind::Dir || !mine.contains(&rel_of(root, &at.resolve(&f.path)))
        });
        if r.files.len() != before {
            db.write_receipt(&r)?;
        }
    }
    Ok(())
}

/// After a successful install: the old version's files the new one lacks go, and the
/// backups of replaced files too.
fn finish(db: &Db, receipt: &Receipt, old: Option<&Receipt>, items: &[Item]) -> Result<()> {
    let root = &db.root;
    if let Some(old) = old {
        let keep: HashSet<&str> = receipt.files.iter().map(|f| f.path.as_str()).collect();
        let gone = Receipt {
            files: old
                .files
                .iter()
                .filter(|f| !keep.contains(f.path.as_str()))
                .cloned()
                .collect(),
            ..old.clone()
        };
        remove_files(db, &gone, &mut Vec::new())?;
    }
    for it in items {
        let b = root.join(&it.backup);
        if fs::symlink_metadata(&b).is_ok() {
            db::remove_if_exists(&b)?;
        }
    }
    Ok(())
}

fn rollback_staging(db: &Db, items: &[Item], created_dirs: &[String], name: &str) {
    for it in items {
        let _ = fs::remove_file(db.root.join(&it.staged));
    }
    for d in created_dirs.iter().rev() {
        let _ = fs::remove_dir(db.root.join(d));
    }
    let _ = fs::remove_dir_all(db.scripts_dir(&format!(".new-{name}")));
}

/// A post-install script failed: put everything back as it was before this package.
fn rollback_committed(
    db: &Db,
    receipt: &Receipt,
    old: Option<&Receipt>,
    items: &[Item],
    created_dirs: &[String],
) {
    let root = &db.root;
    for it in items.iter().rev() {
        let target = root.join(&it.target);
        let backup = root.join(&it.backup);
        let _ = fs::remove_file(&target);
        if fs::symlink_metadata(&backup).is_ok() {
            let _ = fs::rename(&backup, &target);
        }
    }
    for d in created_dirs.iter().rev() {
        let _ = fs::remove_dir(root.join(d));
    }
    match old {
        Some(o) => {
            let _ = db.write_receipt(o);
        }
        None => {
            let _ = db.delete_receipt(&receipt.name);
            let _ = fs::remove_dir_all(db.scripts_dir(&receipt.name));
        }
    }
}

/// Finishes or undoes what a killed command left, by its journal. Returns what it did.
fn recover(db: &Db) -> Result<Option<String>> {
    let Some(j) = db.journal()? else {
        return Ok(None);
    };
    let what = match j {
        Journal::Install {
            phase: Phase::Staging,
            receipt,
            items,
            created_dirs,
            ..
        } => {
            rollback_staging(db, &items, &created_dirs, &receipt.name);
            format!("rolled back the interrupted install of {}", receipt.name)
        }
        Journal::Install {
            phase,
            receipt,
            old,
            items,
            ..
        } => {
            if phase == Phase::Commit {
                // Whether that install overwrote is not journaled: disown to be sure.
                commit(db, &receipt, &items, true)?;
            }
            finish(db, &receipt, old.as_ref(), &items)?;
            format!(
                "completed the interrupted install of {}={}",
                receipt.name, receipt.version
            )
        }
        Journal::Remove { receipt } => {
            remove_files(db, &receipt, &mut Vec::new())?;
            db.delete_receipt(&receipt.name)?;
            let _ = fs::remove_dir_all(db.scripts_dir(&receipt.name));
            format!("completed the interrupted removal of {}", receipt.name)
        }
    };
    db.clear_journal()?;
    eprintln!("repofs: {what}");
    Ok(Some(what))
}

/// Deletes what `receipt` owns and is unchanged; changed files are kept as
/// `FILE.repofs-save`. Directories go when empty, made by this package and owned by no other.
fn remove_files(db: &Db, receipt: &Receipt, saved: &mut Vec<String>) -> Result<()> {
    let root = &db.root;
    let mut others: Vec<Receipt> = db
        .receipts()?
        .into_iter()
        .filter(|r| r.name != receipt.name)
        .collect();
    let taken: HashSet<&str> = others
        .iter()
        .flat_map(|r| r.files.iter().map(|f| f.path.as_str()))
        .collect();
    for f in receipt.files.iter().filter(|f| f.kind != FileKind::Dir) {
        if taken.contains(f.path.as_str()) {
            continue; // taken over by another package (--overwrite)
        }
        let full = resolve(root, &f.path);
        if fs::symlink_metadata(&full).is_err() {
            continue;
        }
        if same_content(
            &full,
            f.kind,
            f.size,
            f.sha256.as_deref(),
            f.target.as_deref(),
        ) {
            db::remove_if_exists(&full)?;
        } else {
            let mut save = full.clone().into_os_string();
            save.push(".repofs-save");
            fs::rename(&full, &save).map_err(|e| InstallError::io(&full, e))?;
            saved.push(format!("{}.repofs-save", f.path));
        }
    }
    let mut dirs: Vec<&FileRecord> = receipt
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Dir && f.created)
        .collect();
    dirs.sort_by(|a, b| b.path.cmp(&a.path)); // children first
    let mut handed_over = HashSet::new();
    for d in dirs {
        // A directory this package made that others still use: the last of them to go
        // takes it away.
        let mut shared = false;
        for r in &mut others {
            for f in r.files.iter_mut() {
                if f.kind == FileKind::Dir && f.path == d.path {
                    shared = true;
                    if !f.created {
                        f.created = true;
                        handed_over.insert(r.name.clone());
                    }
                }
            }
        }
        if !shared {
            let _ = fs::remove_dir(resolve(root, &d.path));
        }
    }
    for r in others.iter().filter(|r| handed_over.contains(&r.name)) {
        db.write_receipt(r)?;
    }
    Ok(())
}

/// Removes the named packages from `root`.
pub fn remove(root: &Path, names: &[String], script_timeout: Duration) -> Result<Report> {
    let root = fs::canonicalize(root).map_err(|e| InstallError::io(root, e))?;
    let db = Db::open(&root)?;
    let mut report = Report {
        recovered: recover(&db)?,
        ..Report::default()
    };
    let mut receipts = Vec::new();
    for n in names {
        let name = n.split_once('=').map_or(n.as_str(), |(n, _)| n);
        receipts.push(
            db.receipt(name)?
                .ok_or_else(|| InstallError::NotInstalled(n.clone()))?,
        );
    }
    let runner = Runner::new(&root, script_timeout);
    for r in receipts {
        db.write_journal(&Journal::Remove { receipt: r.clone() })?;
        if let Err(e) = run_scripts(
            &db,
            &runner,
            &r.meta_source,
            &r.name,
            When::PreRemove,
            &r.version,
            None,
        ) {
            db.clear_journal()?;
            return Err(e);
        }
        crate::failpoint::hit("remove-journaled");
        remove_files(&db, &r, &mut report.saved)?;
        // The package is gone whatever its post-remove script says; pacman only warns too.
        if let Err(e) = run_scripts(
            &db,
            &runner,
            &r.meta_source,
            &r.name,
            When::PostRemove,
            &r.version,
            None,
        ) {
            eprintln!("repofs: warning: {e}");
        }
        db.delete_receipt(&r.name)?;
        let _ = fs::remove_dir_all(db.scripts_dir(&r.name));
        db.clear_journal()?;
        report.removed.push(format!("{}={}", r.name, r.version));
    }
    Ok(report)
}

/// The receipts in `root` (after finishing whatever a killed command left).
pub fn installed(root: &Path) -> Result<(Vec<Receipt>, Option<String>)> {
    let root = fs::canonicalize(root).map_err(|e| InstallError::io(root, e))?;
    if !Db::exists(&root) {
        return Ok((Vec::new(), None));
    }
    let db = Db::open(&root)?;
    let recovered = recover(&db)?;
    Ok((db.receipts()?, recovered))
}

// ---------------------------------------------------------------------------------------
// Scripts

/// The script files each format keeps, by their path in the package tree; saved under
/// `var/lib/repofs/scripts/NAME/` with the same base name.
fn script_sources(p: &PackageRow, pkg: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut add = |rel: &str| {
        let src = pkg.join(rel);
        if src.is_file() {
            let base = rel.rsplit('/').next().unwrap_or(rel).to_string();
            out.push((src, base));
        }
    };
    match p.meta_source.as_str() {
        "pkginfo" => add(".INSTALL"),
        "npm" => {
            // npm strips whatever the top directory is called; `package/` in practice.
            if let Ok(rd) = fs::read_dir(pkg) {
                for e in rd.flatten() {
                    if e.path().join("package.json").is_file() {
                        let top = e.file_name().to_string_lossy().into_owned();
                        add(&format!("{top}/package.json"));
                        break;
                    }
                }
            }
        }
        "tpm" => {
            for s in TPM_SCRIPTS {
                add(&format!("info/{s}"));
                add(&format!("info/{s}.sh"));
            }
        }
        "distpac" => {
            add("scripts/install.sh");
            add("scripts/uninstall.sh");
        }
        _ => {}
    }
    out
}

const TPM_SCRIPTS: [&str; 4] = ["preinstall", "postinstall", "preremove", "postremove"];

fn save_scripts(db: &Db, p: &PackageRow, pkg: &Path) -> Result<()> {
    let dir = db.scripts_dir(&format!(".new-{}", p.name));
    let _ = fs::remove_dir_all(&dir);
    let sources = script_sources(p, pkg);
    if sources.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(&dir).map_err(|e| InstallError::io(&dir, e))?;
    for (src, base) in sources {
        let dst = dir.join(base);
        fs::copy(&src, &dst).map_err(|e| InstallError::io(&src, e))?;
    }
    Ok(())
}

/// Runs the package's scripts for `when`, from its saved copies (the `.new-` ones before
/// the commit).
fn run_scripts(
    db: &Db,
    runner: &Runner,
    meta_source: &str,
    name: &str,
    when: When,
    version: &str,
    old: Option<&Receipt>,
) -> Result<()> {
    let saved_as = if when == When::PreInstall {
        format!(".new-{name}")
    } else {
        name.to_string()
    };
    let host = db.scripts_dir(&saved_as);
    if !host.is_dir() {
        return Ok(());
    }
    let inside = db.scripts_dir_in_root(&saved_as);
    let mut list = Vec::new();
    let label = |s: &str| format!("{name}: {s}");
    match meta_source {
        "pkginfo" if host.join(".INSTALL").is_file() => {
            let (func, args) = match (when, old) {
                (When::PreInstall, Some(o)) => ("pre_upgrade", vec![version, o.version.as_str()]),
                (When::PostInstall, Some(o)) => ("post_upgrade", vec![version, o.version.as_str()]),
                (When::PreInstall, None) => ("pre_install", vec![version]),
                (When::PostInstall, None) => ("post_install", vec![version]),
                (When::PreRemove, _) => ("pre_remove", vec![version]),
                (When::PostRemove, _) => ("post_remove", vec![version]),
            };
            let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
            list.push(Script {
                label: label(&format!(".INSTALL {func}")),
                command: format!(
                    // No /dev/null in a bare root: compare what `command -v` prints.
                    ". {}/.INSTALL\nif [ \"$(command -v {func})\" = {func} ]; then {func} {}; fi",
                    quote(&inside),
                    args.join(" ")
                ),
                cwd: "/".into(),
                env: vec![],
            });
        }
        "npm" => {
            let events: &[&str] = match when {
                When::PreInstall => &[],
                When::PostInstall => &["preinstall", "install", "postinstall"],
                When::PreRemove => &["preuninstall"],
                When::PostRemove => &["postuninstall"],
            };
            let json: serde_json::Value = fs::read(host.join("package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            for ev in events {
                // After removal the package's directory is gone: run from the root then.
                let dir = format!("node_modules/{name}");
                let cwd = if resolve(&db.root, &dir).is_dir() {
                    format!("/{dir}")
                } else {
                    "/".to_string()
                };
                if let Some(cmd) = json["scripts"][*ev].as_str() {
                    list.push(Script {
                        label: label(&format!("npm {ev}")),
                        command: cmd.to_string(),
                        cwd: cwd.clone(),
                        env: vec![
                            ("npm_lifecycle_event".into(), ev.to_string()),
                            ("npm_package_name".into(), name.to_string()),
                            ("npm_package_version".into(), version.to_string()),
                        ],
                    });
                }
            }
        }
        "tpm" => {
            let s = match when {
                When::PreInstall => "preinstall",
                When::PostInstall => "postinstall",
                When::PreRemove => "preremove",
                When::PostRemove => "postremove",
            };
            for f in [s.to_string(), format!("{s}.sh")] {
                if host.join(&f).is_file() {
                    list.push(Script {
                        label: label(&format!("info/{f}")),
                        command: format!("sh {}/{f} {}", quote(&inside), quote(version)),
                        cwd: "/".into(),
                        env: vec![],
                    });
                }
            }
        }
        "distpac" => {
            let f = match when {
                When::PostInstall => "install.sh",
                When::PreRemove => "uninstall.sh",
                _ => "",
            };
            if !f.is_empty() && host.join(f).is_file() {
                list.push(Script {
                    label: label(&format!("scripts/{f}")),
                    command: format!("sh {}/{f} {}", quote(&inside), quote(version)),
                    cwd: "/".into(),
                    env: vec![],
                });
            }
        }
        _ => {}
    }
    for s in &list {
        runner.run(s)?;
    }
    Ok(())
}

/// How many non-directory paths a receipt owns.
pub fn file_count(r: &Receipt) -> usize {
    r.files.iter().filter(|f| f.kind != FileKind::Dir).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_keeps_absolute_links_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", d.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("usr/bin/up")).unwrap();
        assert_eq!(resolve(d.path(), "bin/sh"), d.path().join("usr/bin/sh"));
        assert_eq!(resolve(d.path(), "usr/bin/up/x/y"), d.path().join("x/y"));
    }

    #[test]
    fn normalize_refuses_dotdot() {
        assert!(normalize("a/../../etc").is_err());
        assert_eq!(normalize("./usr/bin/").unwrap(), "usr/bin");
    }
}
