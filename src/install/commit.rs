//! One package's commit: stage → rename → receipt, each step journaled before it is taken,
//! and its undo.
//!
//! The journal (`db`) is written before anything else, so a command killed at any point is
//! finished by the next one on that root (`recover`): while `Staging`, by removing what was
//! staged; from `Commit` on, by completing the renames and the receipt. The renames keep what
//! they replace as backups until the package is done, so a failing post-install script can
//! put everything back (`rollback_committed`). `remove_files` is the reverse of a receipt,
//! for `remove`, for what an upgrade no longer ships, and for an interrupted removal.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::conflicts::{rel_of, resolve, same_content, Resolver};
use super::db::{self, Db, FileKind, FileRecord, Item, Journal, Phase, Receipt};
use super::plan::{pkg_dir, PkgPlan, Planned};
use super::scripts::{run_scripts, save_scripts, Runner, When};
use super::stage::{set_owner_and_time, stage_files, staged_name};
use super::{InstallError, Options, Result};
use crate::store::file_sha256;

/// What every package of one `install` shares.
pub(super) struct Installer<'a> {
    pub(super) db: &'a Db,
    pub(super) runner: &'a Runner,
    pub(super) opts: &'a Options,
    pub(super) bar: &'a indicatif::ProgressBar,
}

/// One package's install as its journal records it: the receipt it will have, the one it
/// replaces, the files it puts down and the directories it makes.
struct Pending {
    receipt: Receipt,
    old: Option<Receipt>,
    items: Vec<Item>,
    created_dirs: Vec<String>,
}

impl Pending {
    fn journal(&self, phase: Phase) -> Journal {
        Journal::Install {
            phase,
            receipt: self.receipt.clone(),
            old: self.old.clone(),
            items: self.items.clone(),
            created_dirs: self.created_dirs.clone(),
        }
    }
}

impl Installer<'_> {
    /// Installs one planned package, with its scripts around it; when it fails the root is
    /// as it was before. Returns the edited config files it kept, for the report.
    pub(super) fn package(&self, p: &PkgPlan) -> Result<Vec<String>> {
        let db = self.db;
        let old = db.receipt(&p.row.name)?;
        let edits = edited_configs(&db.root, p, old.as_ref());
        let kept: Vec<String> = edits
            .iter()
            .map(|(path, e)| match e {
                Edited::Same => path.clone(),
                Edited::NewBeside => format!("{path} (new text in {path}.repofs-new)"),
            })
            .collect();
        let mut at = Resolver::new(&db.root);
        let mut pending = lay_out(&mut at, p, &edits, old, self.opts.installed_at);
        db.write_journal(&pending.journal(Phase::Staging))?;
        crate::failpoint::hit("install-journaled");

        if let Err(e) = self.stage(&mut at, p, &edits, &mut pending) {
            rollback_staging(db, &pending.items, &pending.created_dirs, &p.row.name);
            let _ = db.clear_journal();
            return Err(e);
        }
        crate::failpoint::hit("install-staged");
        db.write_journal(&pending.journal(Phase::Commit))?;
        commit(db, &pending.receipt, &pending.items, self.opts.overwrite)?;
        db.write_journal(&pending.journal(Phase::Scripts))?;
        if self.opts.run_scripts {
            if let Err(e) = run_scripts(
                db,
                self.runner,
                &p.row.meta_source,
                &p.row.name,
                When::PostInstall,
                &p.version,
                pending.old.as_ref(),
            ) {
                let Pending {
                    receipt,
                    old,
                    items,
                    created_dirs,
                } = &pending;
                rollback_committed(db, receipt, old.as_ref(), items, created_dirs);
                let _ = db.clear_journal();
                return Err(e);
            }
        }
        finish(db, &pending.receipt, pending.old.as_ref(), &pending.items)?;
        db.clear_journal()?;
        Ok(kept)
    }

    /// Saves the package's scripts and runs its pre-install one, makes its new directories
    /// and stages its files beside their targets (`pending.items`, in order). Files the
    /// catalog had no hash for get the one computed while copying, in the receipt.
    fn stage(
        &self,
        at: &mut Resolver,
        p: &PkgPlan,
        edits: &HashMap<String, Edited>,
        pending: &mut Pending,
    ) -> Result<()> {
        let db = self.db;
        let root = &db.root;
        let pkg = pkg_dir(&self.opts.mount, &p.row);
        save_scripts(db, &p.row, &pkg)?;
        if self.opts.run_scripts {
            run_scripts(
                db,
                self.runner,
                &p.row.meta_source,
                &p.row.name,
                When::PreInstall,
                &p.version,
                pending.old.as_ref(),
            )?;
        }
        let mut item = pending.items.iter();
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
        let hashes = stage_files(&pkg, &p.row.name, &jobs, self.bar)?;
        for r in &mut pending.receipt.files {
            if r.kind == FileKind::File && r.sha256.is_none() {
                r.sha256 = hashes.get(&r.path).cloned();
            }
        }
        Ok(())
    }
}

/// What installing `p` will do, before anything is written: a receipt record per path, a
/// staged and a backup name per file put down (an edited config file left as it is gets
/// none; one with new text gets it beside, as `FILE.repofs-new`), and which of its
/// directories do not exist yet.
fn lay_out(
    at: &mut Resolver,
    p: &PkgPlan,
    edits: &HashMap<String, Edited>,
    old: Option<Receipt>,
    installed_at: Option<i64>,
) -> Pending {
    let root = at.root;
    let mut records = Vec::new();
    let mut items = Vec::new();
    let mut created_dirs = Vec::new();
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
    let receipt = Receipt {
        name: p.row.name.clone(),
        version: p.version.clone(),
        format: p.row.format.clone(),
        meta_source: p.row.meta_source.clone(),
        source_sha256: p.row.sha256.clone(),
        installed_at: installed_at.unwrap_or_else(crate::time::now),
        files: records,
    };
    Pending {
        receipt,
        old,
        items,
        created_dirs,
    }
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
        let Some(now) = is_file.then(|| file_sha256(&full).ok()).flatten() else {
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
pub(super) fn recover(db: &Db) -> Result<Option<String>> {
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
pub(super) fn remove_files(db: &Db, receipt: &Receipt, saved: &mut Vec<String>) -> Result<()> {
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
