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
//!
//! The pieces, in the order an install uses them:
//! - `plan`: what to install (the packages not already installed as they are, each as the
//!   paths it will own, by `dest_of`), and `find_mount`, the mount those bytes come from;
//! - `conflicts`: paths in the root resolved as a chroot would (`resolve`, `Resolver`), and
//!   the whole-plan conflict check against the root and the receipts;
//! - `commit`: one package at a time, stage → rename → receipt, each step journaled before it
//!   is taken (`stage` copies and checks the bytes), its rollback, `recover` for what a killed
//!   command left, and `remove_files`, the reverse of a receipt;
//! - `scripts`: the packages' own scripts, saved and run inside the root;
//! - `db`: receipts, journal and lock under `ROOT/var/lib/repofs/installed/`;
//! - `image`: a closure installed into a staging root and packed.

mod commit;
mod conflicts;
pub mod db;
pub mod image;
mod plan;
pub mod scripts;
mod stage;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, PackageRow};
use commit::{recover, remove_files, Installer};
use db::{Db, FileKind, Journal, Receipt};
use scripts::{run_scripts, Runner, When};

pub use conflicts::resolve;
pub use plan::{dest_of, find_mount, pkg_dir};

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
    let (plans, unchanged) = plan::plan(cat, plan, &receipts, &opts.mount)?;
    report.unchanged = unchanged;
    let found = conflicts::conflicts(&root, &plans, &receipts, opts.overwrite);
    if !found.is_empty() {
        return Err(InstallError::Conflict(found));
    }
    let total = plans.iter().flat_map(|p| &p.files).map(|f| f.size).sum();
    let bar = stage::progress_bar(opts.progress, total);
    let runner = Runner::new(&root, opts.script_timeout);
    let installer = Installer {
        db: &db,
        runner: &runner,
        opts,
        bar: &bar,
    };
    for p in &plans {
        bar.set_message(p.row.name.clone());
        let kept = installer.package(p)?;
        report.kept.extend(kept);
        report
            .installed
            .push(format!("{}={}", p.row.name, p.version));
    }
    bar.finish_and_clear();
    Ok(report)
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

/// How many non-directory paths a receipt owns.
pub fn file_count(r: &Receipt) -> usize {
    r.files.iter().filter(|f| f.kind != FileKind::Dir).count()
}
