//! Ingest: spool -> verify -> publish (or quarantine).
//!
//! The lifecycle of an upload, and the only legal transitions:
//!
//! ```text
//! receiving --(signature material present, files quiet)--> complete
//! receiving --(sweep time passed)--------------------------> rejected (incomplete)
//! complete  --(signatures, keys, directive, archive ok)---> verified --(one txn)--> published
//! complete  --(any check fails)----------------------------> rejected (reason code)
//! ```
//! `receiving` and `complete` exist only as files in the spool (see `spool`); `published` and
//! `rejected` are catalog rows. A rejected upload's files move to quarantine with the verdict
//! beside them and a `NAME.rejected` note is left in the spool for the uploader.
//!
//! Internal failures (disk, database) are not verdicts: the upload stays in the spool and is
//! tried again on the next pass.
//!
//! This module drives the passes over the spool and the mount's close reports, and carries
//! out verdicts on the spool's files (cleanup, quarantine); `process` judges one upload.

pub mod control;
pub mod directive;
mod process;
pub mod publish;
pub mod spool;
pub mod watch;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::{info, warn};

use crate::archive;
use crate::catalog::{CatalogError, NewUpload};
use crate::keys::KeyError;
use crate::paths;
use crate::reason::{Reason, Rejection};
use crate::repo::Repo;
use crate::store::Staged;
use crate::verify::Signer;
use process::{prestage, process};
use spool::{Closed, Group, Readiness, SpoolFile};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// What one pass over the spool did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub accepted: Vec<String>,
    pub rejected: Vec<(String, Rejection)>,
    /// When something in the spool will next change state by itself (settling, sweeping).
    pub next_wake: Option<SystemTime>,
    /// When the earliest complete-but-settling upload becomes ready.
    pub next_settled: Option<SystemTime>,
    /// Passes `drain` made after the first.
    pub rounds: u32,
}

impl PassReport {
    /// Something becomes due at `t`: wake no later than that.
    fn wake_at(&mut self, t: SystemTime) {
        self.next_wake = Some(earliest(self.next_wake, t));
    }
}

fn earliest(current: Option<SystemTime>, t: SystemTime) -> SystemTime {
    current.map_or(t, |c| c.min(t))
}

/// What the daemon remembers, between events, of uploads the mount reported closed.
#[derive(Default)]
pub struct ClosedGroups {
    /// Groups every writer had closed, by label.
    vouched: HashMap<String, Closed>,
    /// Pairs read when they completed, by label: reused by the publication that follows
    /// `closed_pair_wait` later (or by the triplet, if a directive came), so the file is
    /// read and verified once.
    prestaged: HashMap<String, Prestaged>,
}

/// How long a prestaged copy waits for its publication (normally `closed_pair_wait`).
const PRESTAGED_FOR: Duration = Duration::from_secs(600);

/// A completed pair's file, already read once: who signed it and the staged copy of exactly
/// the bytes verified.
struct Prestaged {
    data: String,
    sig_bytes: Vec<u8>,
    signer: Signer,
    staged: Staged,
    at: SystemTime,
}

impl ClosedGroups {
    pub fn new() -> ClosedGroups {
        ClosedGroups::default()
    }

    /// Forgets an upload that got its verdict.
    pub fn remove(&mut self, label: &str) {
        self.vouched.remove(label);
        self.prestaged.remove(label);
    }

    /// Forgets vouches older than `horizon`, and staged copies no publication took within
    /// `PRESTAGED_FOR` (the files changed or went away; a copy is removed with it).
    pub fn expire(&mut self, horizon: SystemTime) {
        self.vouched.retain(|_, c| c.at > horizon);
        let now = SystemTime::now();
        self.prestaged.retain(|_, p| p.at + PRESTAGED_FOR > now);
    }

    /// The staged read of `g`'s data file, if it is still the very file and signature read.
    fn take_prestaged(&mut self, g: &Group, sig_bytes: Option<&Vec<u8>>) -> Option<Prestaged> {
        let p = self.prestaged.remove(&g.label())?;
        let same = g.data.as_ref().map(SpoolFile::identity).as_ref() == Some(&p.data)
            && sig_bytes == Some(&p.sig_bytes);
        same.then_some(p)
    }
}

/// Scans the spool once and acts on everything that is due.
pub fn pass(repo: &mut Repo) -> Result<PassReport, IngestError> {
    pass_with(repo, &mut ClosedGroups::new())
}

/// `pass`, knowing which groups the mount saw closed by every writer.
pub fn pass_with(repo: &mut Repo, closed: &mut ClosedGroups) -> Result<PassReport, IngestError> {
    let scan = spool::scan(&repo.layout.spool())?;
    let now = SystemTime::now();
    let cfg = repo.config.ingest.clone();
    let mut report = PassReport::default();

    for g in &scan.groups {
        match readiness(repo, g, closed, now) {
            Readiness::Ready(shape) => match process(repo, g, shape, closed) {
                Ok(Some(Ok(_))) => report.accepted.push(g.label()),
                Ok(Some(Err(r))) => report.rejected.push((g.label(), r)),
                Ok(None) => report.wake_at(now + cfg.settle),
                Err(e) => {
                    warn!(upload = %g.label(), error = %e, "processing failed; will retry");
                    report.wake_at(now + Duration::from_secs(5));
                }
            },
            Readiness::Settling(t) => {
                report.wake_at(t);
                report.next_settled = Some(earliest(report.next_settled, t));
            }
            // What a crash during an accepted upload's cleanup left behind: finish the cleanup.
            Readiness::Wait(..) | Readiness::Expired(_) if g.leftover_of().is_some() => {
                let id = g.leftover_of().unwrap_or_default();
                info!(upload = %g.label(), id, "already published before a restart; cleaning the spool");
                if let Err(e) = cleanup(g, id) {
                    warn!(upload = %g.label(), error = %e, "could not clean the spool; will retry");
                    report.wake_at(now + Duration::from_secs(5));
                }
            }
            Readiness::Wait(t, _) => report.wake_at(t),
            Readiness::Expired(why) => {
                let r = Rejection::new(Reason::Incomplete, why);
                let files: Vec<_> = g.files().collect();
                sweep(repo, &files, &g.dir, &g.base, r, &mut report);
            }
        }
    }
    for f in &scan.strays {
        let sweep_at = f.ctime + cfg.sweep_after;
        if now >= sweep_at {
            let r = Rejection::new(
                Reason::Incomplete,
                format!("temporary file {} abandoned", f.rel),
            );
            sweep(repo, &[f], paths::parent(&f.rel), f.name(), r, &mut report);
        } else {
            report.wake_at(sweep_at);
        }
    }
    for f in &scan.irregular {
        let r = Rejection::new(
            Reason::UnsafePath,
            format!(
                "{} is not a plain file (symlink, device, FIFO or hard link)",
                f.rel
            ),
        );
        sweep(repo, &[f], paths::parent(&f.rel), f.name(), r, &mut report);
    }
    for f in &scan.statuses {
        if now >= f.ctime + cfg.sweep_after {
            remove_quietly(&f.path);
        }
    }
    Ok(report)
}

fn readiness(repo: &Repo, g: &Group, closed: &ClosedGroups, now: SystemTime) -> Readiness {
    let cfg = &repo.config.ingest;
    let max = repo.config.limits.max_directive_size;
    closed
        .vouched
        .get(&g.label())
        .and_then(|c| g.readiness_closed(c, now, cfg, max, is_trusted_lone_file(repo, g)))
        .unwrap_or_else(|| g.readiness(now, cfg, max))
}

/// A lone file in the staging area of a uid trusted for the directory it would go to.
fn is_trusted_lone_file(repo: &Repo, g: &Group) -> bool {
    let Some(uid) = g.owner() else { return false };
    is_trusted(repo, uid, &lone_file_dir(g))
}

/// The repository directory a lone file would go to: where it was spooled, or at the top
/// level the package's own name.
fn lone_file_dir(g: &Group) -> String {
    match g.target_dir() {
        "" => archive::meta::from_filename(&g.base).name,
        d => d.to_string(),
    }
}

/// Whether `uid` may publish an unsigned file to `dir`: a `[[trusted]]` block of the config,
/// or a grant of `repofs trust` in the catalog (read now, so a grant needs no restart). An
/// unreadable catalog trusts no one more than the config does, and says so.
fn is_trusted(repo: &Repo, uid: u32, dir: &str) -> bool {
    repo.config.is_trusted(uid, dir)
        || repo.catalog.is_uid_trusted(uid, dir).unwrap_or_else(|e| {
            warn!(uid, directory = dir, error = %e, "cannot read the trusted uids");
            false
        })
}

/// What a pending upload's message says it waits for. A lone file waiting for its signature
/// names both ways forward: sign it, or trust the uid that uploaded it through the mount.
fn waiting_for(g: &Group, what: &str) -> String {
    if !(g.data.is_some() && g.sig.is_none() && g.directive.is_none()) {
        return format!("waiting for {what}");
    }
    let sign = format!("sign it (gpg -b {}, then copy {what} beside it)", g.base);
    let dir = lone_file_dir(g);
    match g.owner() {
        Some(uid) => format!(
            "waiting for {what}: {sign}, or trust uid {uid} for {dir} \
             (repofs trust add --dir {dir} {uid})"
        ),
        // Written to the spool directly: only an upload through the mount has a uid to trust.
        None => format!(
            "waiting for {what}: {sign}, or upload it through the mount as a trusted uid \
             (repofs trust add --dir {dir} UID)"
        ),
    }
}

/// The answer to the mount when the last writer of a spool file closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseVerdict {
    Accepted(String),
    Rejected(Rejection),
    /// Not complete yet, or complete but waiting for a directive that may follow.
    Pending(String),
}

/// The mount reports that every writer closed `path` (spool-relative), while `open` are still
/// open for writing. Records the vouch in `closed` and processes the upload now if complete.
/// A pair is not final until `closed_pair_wait` passes (a directive may follow), but its
/// signature is checked now, so a bad one fails the close of the file that completed it.
pub fn on_closed(
    repo: &mut Repo,
    closed: &mut ClosedGroups,
    path: &str,
    open: &[String],
) -> Result<CloseVerdict, IngestError> {
    let scan = spool::scan(&repo.layout.spool())?;
    let Some(g) = scan
        .groups
        .iter()
        .find(|g| g.files().any(|f| f.rel == path))
    else {
        return Ok(CloseVerdict::Pending(format!(
            "{path} is not part of an upload"
        )));
    };
    if g.files().any(|f| open.contains(&f.rel)) {
        return Ok(CloseVerdict::Pending(
            "other files of the upload are still open".into(),
        ));
    }
    let now = SystemTime::now();
    closed.vouched.insert(
        g.label(),
        Closed {
            at: now,
            identity: g.identity(),
        },
    );
    match readiness(repo, g, closed, now) {
        Readiness::Ready(shape) => Ok(match process(repo, g, shape, closed)? {
            Some(Ok(p)) => {
                closed.remove(&g.label());
                CloseVerdict::Accepted(p.message)
            }
            Some(Err(r)) => {
                closed.remove(&g.label());
                CloseVerdict::Rejected(r)
            }
            None => CloseVerdict::Pending("files changed during verification".into()),
        }),
        Readiness::Settling(_) if g.sig.is_some() && g.directive.is_none() => {
            match prestage(repo, g)? {
                Err(r) => {
                    let files: Vec<_> = g.files().collect();
                    refuse(repo, &files, &g.dir, &g.base, &r)?;
                    closed.remove(&g.label());
                    Ok(CloseVerdict::Rejected(r))
                }
                Ok(p) => {
                    if let Some(p) = p {
                        closed.prestaged.insert(g.label(), p);
                    }
                    Ok(CloseVerdict::Pending(
                        "signature good; waiting briefly for a directive".into(),
                    ))
                }
            }
        }
        Readiness::Wait(_, what) => Ok(CloseVerdict::Pending(waiting_for(g, &what))),
        _ => Ok(CloseVerdict::Pending("complete; processing shortly".into())),
    }
}

/// Refuses something found lying in the spool. A failure here (say, quarantine is full)
/// is logged and retried on a later pass; it must not hold up the other uploads.
fn sweep(
    repo: &mut Repo,
    files: &[&SpoolFile],
    dir: &str,
    base: &str,
    r: Rejection,
    report: &mut PassReport,
) {
    match refuse(repo, files, dir, base, &r) {
        Ok(()) => report.rejected.push((paths::join(dir, base), r)),
        Err(e) => {
            warn!(upload = %paths::join(dir, base), error = %e, "could not quarantine; will retry");
            report.wake_at(SystemTime::now() + Duration::from_secs(5));
        }
    }
}

/// Cron mode (`repofsd --once`): processes every complete upload, waiting out the quiet time
/// of those written to moments ago (bounded by `settle`/`pair_wait`), and leaves incomplete
/// ones pending for the next run.
pub fn drain(repo: &mut Repo) -> Result<PassReport, IngestError> {
    let mut total = PassReport::default();
    loop {
        let report = pass(repo)?;
        total.accepted.extend(report.accepted);
        total.rejected.extend(report.rejected);
        let Some(t) = report.next_settled else { break };
        // A file that keeps changing keeps settling; a writer that never stops is an upload
        // in flight, left for the next run rather than waited on forever.
        let bound =
            repo.config.ingest.settle.max(repo.config.ingest.pair_wait) + Duration::from_secs(1);
        std::thread::sleep(
            t.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(bound),
        );
        if total.rounds >= MAX_DRAIN_ROUNDS {
            break;
        }
        total.rounds += 1;
    }
    Ok(total)
}

const MAX_DRAIN_ROUNDS: u32 = 10;

/// After acceptance (upload `id`): the upload leaves the spool (it is in the store now).
/// Each file is marked first, so that what a crash part-way through leaves behind (say the
/// signature alone, which would otherwise wait for its file and be swept as `incomplete`) is
/// still known as published (`Group::leftover_of`).
fn cleanup(g: &Group, id: i64) -> io::Result<()> {
    for f in g.files() {
        if let Err(e) = f.mark_published(id) {
            if e.kind() == io::ErrorKind::NotFound {
                continue;
            }
            warn!(path = %f.path.display(), error = %e, "could not mark a published spool file");
        }
    }
    for (n, f) in g.files().enumerate() {
        if n == 1 {
            crate::failpoint::hit("mid-spool-cleanup");
        }
        match fs::remove_file(&f.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if let Some(f) = g.files().next() {
        let dir = f.path.parent().unwrap_or(std::path::Path::new("."));
        remove_quietly(&dir.join(format!("{}{}", g.base, spool::REJECTED_SUFFIX)));
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn remove_quietly(p: &std::path::Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(path = %p.display(), error = %e, "could not remove");
        }
    }
}

/// The verdict written beside quarantined files.
#[derive(Serialize)]
struct VerdictFile<'a> {
    reason: &'a str,
    message: &'a str,
    files: Vec<&'a str>,
    rejected_at: String,
}

/// Rejects: files to quarantine (kept for inspection), a note for the uploader in the spool,
/// the verdict in the catalog and the log. Nothing published changes.
fn refuse(
    repo: &mut Repo,
    files: &[&SpoolFile],
    dir: &str,
    base: &str,
    r: &Rejection,
) -> Result<(), IngestError> {
    refuse_as(repo, files, dir, base, r, NewUpload::default())
}

/// `refuse`, keeping what was learned about the upload (uploader, directory) in its record.
fn refuse_as(
    repo: &mut Repo,
    files: &[&SpoolFile],
    dir: &str,
    base: &str,
    r: &Rejection,
    learned: NewUpload,
) -> Result<(), IngestError> {
    let qroot = repo.layout.quarantine();
    let stamp = crate::time::now();
    let mut qdir = qroot.join(format!("{stamp}-{}", sanitize(base)));
    let mut n = 1;
    while qdir.exists() {
        n += 1;
        qdir = qroot.join(format!("{stamp}-{}-{n}", sanitize(base)));
    }
    fs::DirBuilder::new().mode(0o700).create(&qdir)?;
    let verdict = VerdictFile {
        reason: r.reason.code(),
        message: &r.message,
        files: files.iter().map(|f| f.rel.as_str()).collect(),
        rejected_at: crate::time::rfc3339(stamp),
    };
    let json = serde_json::to_vec_pretty(&verdict).map_err(io::Error::other)?;
    write_durably(&qdir.join("verdict.json"), &json, 0o600)?;
    for f in files {
        match fs::rename(&f.path, qdir.join(f.name())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    File::open(&qdir)?.sync_all()?;
    let note = format!(
        "reason: {}\nmessage: {}\nquarantine: {}\n",
        r.reason.code(),
        r.message,
        qdir.display()
    );
    let note_path = repo
        .layout
        .spool()
        .join(dir)
        .join(format!("{base}{}", spool::REJECTED_SUFFIX));
    if let Err(e) = write_durably(&note_path, note.as_bytes(), 0o644) {
        warn!(path = %note_path.display(), error = %e, "could not leave the rejection note");
    }
    repo.catalog.record_upload(&NewUpload {
        accepted: false,
        reason: Some(r.reason.code().to_string()),
        message: r.message.clone(),
        files: files.iter().map(|f| f.rel.clone()).collect(),
        quarantine: Some(qdir.display().to_string()),
        directory: learned.directory,
        uploader: learned.uploader,
        ..Default::default()
    })?;
    warn!(upload = %paths::join(dir, base), reason = r.reason.code(), quarantine = %qdir.display(), "rejected: {}", r.message);
    Ok(())
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_durably(path: &std::path::Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp~");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path)
}

/// One line of `repofs status`.
#[derive(Debug, Serialize)]
pub struct StatusEntry {
    pub id: Option<i64>,
    pub state: &'static str,
    pub files: Vec<String>,
    pub reason: Option<String>,
    pub message: String,
    pub directory: Option<String>,
    pub uploader: Option<String>,
    pub quarantine: Option<String>,
    pub time: String,
}

/// Pending uploads (from the spool, as they are now), then verdicts, most recent first.
pub fn status(repo: &Repo, limit: usize) -> Result<Vec<StatusEntry>, IngestError> {
    let scan = spool::scan(&repo.layout.spool())?;
    let now = SystemTime::now();
    let mut out: Vec<(SystemTime, StatusEntry)> = Vec::new();
    for g in &scan.groups {
        let message = match g.readiness(
            now,
            &repo.config.ingest,
            repo.config.limits.max_directive_size,
        ) {
            Readiness::Ready(_) => "complete; waiting to be processed".to_string(),
            Readiness::Settling(_) => "complete; settling".to_string(),
            Readiness::Wait(_, what) => waiting_for(g, &what),
            Readiness::Expired(why) => format!("{why}; will be swept"),
        };
        out.push((
            g.last_change(),
            pending(
                g.files().map(|f| f.rel.clone()).collect(),
                message,
                g.last_change(),
            ),
        ));
    }
    for f in &scan.strays {
        out.push((
            f.ctime,
            pending(
                vec![f.rel.clone()],
                "temporary file in flight".into(),
                f.ctime,
            ),
        ));
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut entries: Vec<StatusEntry> = out.into_iter().map(|(_, e)| e).collect();
    for u in repo.catalog.uploads(limit)? {
        entries.push(StatusEntry {
            id: Some(u.id),
            state: if u.state == "accepted" {
                "accepted"
            } else {
                "rejected"
            },
            files: u.files,
            reason: u.reason,
            message: u.message,
            directory: u.directory,
            uploader: u.uploader,
            quarantine: u.quarantine,
            time: crate::time::rfc3339(u.created_at),
        });
    }
    Ok(entries)
}

fn pending(files: Vec<String>, message: String, t: SystemTime) -> StatusEntry {
    StatusEntry {
        id: None,
        state: "pending",
        files,
        reason: None,
        message,
        directory: None,
        uploader: None,
        quarantine: None,
        time: humantime::format_rfc3339_seconds(t).to_string(),
    }
}
