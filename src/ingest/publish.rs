//! Making a verified upload visible: one catalog transaction.
//!
//! Every check that can still refuse the upload (name taken, symlink over a file, missing
//! target of `rmsymlink`) runs inside the transaction *before* any object enters the store, so
//! a refusal leaves catalog and store exactly as they were. Only then are the staged objects
//! renamed into the store and the transaction committed (see `store` for why this order is
//! crash-safe).
//!
//! A payload that cannot be read at an offset (zstd, xz, bzip2, lzip) gets a seekable twin
//! first, outside the transaction: its tar stream recompressed as independent zstd frames
//! (`FRAME` bytes each), staged like any object and committed with the file, its frame index
//! recorded in the same transaction. It is made from the store copy, never from the spool.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::directive::Action;
use super::IngestError;
use crate::archive::{Compression, Inspection};
use crate::catalog::{Catalog, Derived, Frame, NewFile, NewUpload, PublishTx};
use crate::paths;
use crate::pkgmeta;
use crate::reason::{reject, Reason, Rejection};
use crate::store::{Staged, Store};
use crate::torrent;

/// One file to publish.
pub struct Incoming {
    pub filename: String,
    pub kind: &'static str,
    pub staged: Staged,
    pub name: Option<String>,
    pub version: Option<String>,
    pub inspection: Option<Inspection>,
}

/// Everything a verified upload asks for.
pub struct Plan {
    pub directory: String,
    pub uploader: String,
    /// The data file first, then its signature.
    pub files: Vec<Incoming>,
    pub replace: bool,
    pub actions: Vec<Action>,
    /// The directive's signature digest, remembered against replays.
    pub signature: Option<Vec<u8>>,
    pub upload: NewUpload,
}

/// What publishing changed.
#[derive(Debug)]
pub struct Published {
    pub upload_id: i64,
    pub message: String,
}

/// `repo_key`: the repository's secret key, which signs the apt and pacman metadata of the
/// directories this publication changes (`pkgmeta`), made in the same transaction.
pub fn publish(
    catalog: &mut Catalog,
    store: &Store,
    repo_key: &Path,
    mut plan: Plan,
) -> Result<Result<Published, Rejection>, IngestError> {
    // Before the transaction: recompressing takes seconds for a large package, and the
    // catalog's write lock must not be held that long.
    let mut seekable = Vec::new();
    for f in &plan.files {
        seekable.push(match (&f.inspection, f.staged.path()) {
            (Some(insp), Some(path)) => seekable_twin(store, path, insp)?,
            _ => None,
        });
    }
    // pacman's SigLevel = Required checks each package against the repository key too: sign
    // the store copy now, outside the transaction like the twin.
    let mut repo_sigs = Vec::new();
    for f in &plan.files {
        repo_sigs.push(match (&f.inspection, f.staged.path()) {
            (Some(insp), Some(path)) if pkgmeta::wants_package_sig(insp.meta.source.as_str()) => {
                Some(pkgmeta::sign_package(repo_key, path).map_err(io::Error::other)?)
            }
            _ => None,
        });
    }
    let tx = catalog.transaction()?;
    let mut summary = Vec::new();
    let upload_id = tx.insert_upload(&plan.upload)?;

    // Identical bytes already published under this name: the upload is a no-op for the file
    // and its signature (the published signature verifies the same bytes).
    let identical = match plan.files.first() {
        Some(first) => tx
            .live_file(&plan.directory, &first.filename)?
            .is_some_and(|old| old.sha256 == first.staged.hashes.sha256),
        None => false,
    };
    let mut to_commit = Vec::new();
    if identical {
        summary.push(format!(
            "{} is identical to the published file; nothing changed",
            plan.files[0].filename
        ));
    } else {
        for ((f, twin), sig) in plan
            .files
            .iter_mut()
            .zip(seekable.iter_mut())
            .zip(&repo_sigs)
        {
            if let Err(r) = place(
                &tx,
                &plan.directory,
                f,
                twin.as_ref().map(|(staged, d)| (d, &staged.hashes)),
                sig.as_deref(),
                plan.replace,
                &plan.uploader,
                upload_id,
            )? {
                return Ok(Err(r));
            }
            summary.push(format!(
                "published {}",
                paths::join(&plan.directory, &f.filename)
            ));
            to_commit.push(&mut f.staged);
            if let Some((staged, _)) = twin {
                to_commit.push(staged);
            }
        }
    }
    for action in &plan.actions {
        match run_action(&tx, &plan.directory, action, upload_id)? {
            Ok(done) => summary.push(done),
            Err(r) => return Ok(Err(r)),
        }
    }
    if let Some(digest) = &plan.signature {
        tx.use_signature(digest, upload_id)?;
    }
    // The repository metadata of every directory whose files changed, in this transaction:
    // readers see the new files and the index naming them at the same commit.
    if tx.changed() {
        let mut dirs = std::collections::BTreeSet::from([plan.directory.clone()]);
        for action in &plan.actions {
            if let Action::Archive { file } = action {
                dirs.insert(split(&plan.directory, file).0);
            }
        }
        for dir in dirs {
            pkgmeta::refresh(&tx, &dir, repo_key).map_err(io::Error::other)?;
        }
    }
    let message = summary.join("; ");
    tx.set_upload_message(upload_id, &message)?;
    crate::failpoint::hit("before-store-commit");
    for staged in to_commit {
        store.commit(staged)?;
    }
    crate::failpoint::hit("before-catalog-commit");
    tx.commit()?;
    Ok(Ok(Published { upload_id, message }))
}

/// Inserts one file, archiving the one it replaces when allowed.
#[allow(clippy::too_many_arguments)]
fn place(
    tx: &PublishTx<'_>,
    dir: &str,
    f: &Incoming,
    seekable: Option<(&Derived, &crate::store::Hashes)>,
    repo_sig: Option<&[u8]>,
    replace: bool,
    uploader: &str,
    upload_id: i64,
) -> Result<Result<(), Rejection>, IngestError> {
    let full = paths::join(dir, &f.filename);
    if tx.symlink(dir, &f.filename)?.is_some() || tx.is_directory(&full)? {
        return Ok(reject(
            Reason::Exists,
            format!("{full} exists as a symlink or directory"),
        ));
    }
    if let Some(old) = tx.live_file(dir, &f.filename)? {
        if old.sha256 != f.staged.hashes.sha256 {
            if !replace {
                return Ok(reject(
                    Reason::Exists,
                    format!("{full} is already published (say 'replace: true' to replace it)"),
                ));
            }
            tx.archive_file(old.id)?;
        } else {
            // Same bytes under the same name (e.g. the .sig of an identical re-upload).
            return Ok(Ok(()));
        }
    }
    let h = &f.staged.hashes;
    let id = tx.insert_file(&NewFile {
        directory: dir,
        filename: &f.filename,
        kind: f.kind,
        sha256: &h.sha256,
        md5: &h.md5,
        size: h.size,
        name: f.name.as_deref(),
        version: f.version.as_deref(),
        uploader,
        upload_id,
    })?;
    if let Some(insp) = &f.inspection {
        tx.insert_package(id, insp)?;
        if let Some(sig) = repo_sig {
            tx.put_repo_sig(id, sig)?;
        }
        if let Some((d, hashes)) = seekable {
            let size = d.frames.last().map_or(0, |f| f.inp + f.in_len);
            tx.insert_derived(id, size, d)?;
            // The twin is shared by BitTorrent too (a mirror fetches its frames lazily); its
            // pieces were hashed while it was staged.
            let name = format!("{}.tar.zst", d.sha256);
            if let Some(t) =
                torrent::info(&name, hashes.size, &hashes.pieces).map_err(io::Error::other)?
            {
                tx.set_derived_torrent(id, &t.info_hash, &t.bytes)?;
            }
        }
    }
    let torrent = torrent::info(&f.filename, h.size, &h.pieces).map_err(io::Error::other)?;
    if let Some(t) = torrent {
        tx.insert_torrent(id, &t.info_hash, &t.bytes)?;
    }
    Ok(Ok(()))
}

/// Uncompressed bytes per frame of a seekable twin: a first read decompresses at most this
/// (~2 ms). On the Linux tree at level 3, 1 MiB frames cost 2.3% of size against 2 MiB
/// ones and 512 KiB frames 5.8%; a 2 MiB frame took ~10 ms to decompress on a loaded
/// 2-core machine.
pub const FRAME: usize = 1 << 20;
/// Fast, and still smaller than gzip -6 on source trees.
const FRAME_LEVEL: i32 = 3;

/// The seekable twin of a zstd, xz, bzip2 or lzip payload, staged, and its frame index; None
/// for payloads
/// that are already seekable (plain, gzip with seek points).
fn seekable_twin(
    store: &Store,
    object: &std::path::Path,
    insp: &Inspection,
) -> io::Result<Option<(Staged, Derived)>> {
    let p = insp.payload;
    match p.compression {
        Compression::None | Compression::Gzip => return Ok(None),
        Compression::Zstd | Compression::Xz | Compression::Bzip2 | Compression::Lzip => {}
    }
    let mut src = File::open(object)?;
    src.seek(SeekFrom::Start(p.offset))?;
    let mut tar = p
        .compression
        .reader(io::BufReader::with_capacity(1 << 20, src.take(p.size)))?;
    let mut out = store.stage()?;
    let mut z = zstd::bulk::Compressor::new(FRAME_LEVEL)?;
    let mut frames = Vec::new();
    let mut buf = vec![0u8; FRAME];
    let (mut at_out, mut at_in) = (0u64, 0u64);
    loop {
        let n = read_full(&mut tar, &mut buf)?;
        if n == 0 {
            break;
        }
        let packed = z.compress(&buf[..n])?;
        out.write_all(&packed)?;
        frames.push(Frame {
            out: at_out,
            out_len: n as u64,
            inp: at_in,
            in_len: packed.len() as u64,
        });
        at_out += n as u64;
        at_in += packed.len() as u64;
    }
    let staged = out.finish()?;
    let sha256 = staged.hashes.sha256.clone();
    Ok(Some((staged, Derived { sha256, frames })))
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn run_action(
    tx: &PublishTx<'_>,
    dir: &str,
    action: &Action,
    upload_id: i64,
) -> Result<Result<String, Rejection>, IngestError> {
    Ok(match action {
        Action::Symlink { target, link } => {
            let (ldir, lname) = split(dir, link);
            let full = paths::join(&ldir, &lname);
            if tx.live_file(&ldir, &lname)?.is_some() || tx.is_directory(&full)? {
                reject(
                    Reason::Exists,
                    format!("symlink {full} would replace a file or directory"),
                )
            } else {
                tx.set_symlink(&ldir, &lname, target, upload_id)?;
                Ok(format!("symlink {full} -> {target}"))
            }
        }
        Action::RmSymlink { link } => {
            let (ldir, lname) = split(dir, link);
            if tx.remove_symlink(&ldir, &lname)? {
                Ok(format!("removed symlink {}", paths::join(&ldir, &lname)))
            } else {
                reject(
                    Reason::NotFound,
                    format!("rmsymlink: no symlink {}", paths::join(&ldir, &lname)),
                )
            }
        }
        Action::Archive { file } => {
            let (fdir, fname) = split(dir, file);
            match tx.live_file(&fdir, &fname)? {
                None => reject(
                    Reason::NotFound,
                    format!("archive: no published file {}", paths::join(&fdir, &fname)),
                ),
                Some(f) => {
                    tx.archive_file(f.id)?;
                    // The file's signature goes offline with it.
                    if let Some(sig) = tx.live_file(&fdir, &format!("{fname}.sig"))? {
                        tx.archive_file(sig.id)?;
                    }
                    Ok(format!("archived {}", paths::join(&fdir, &fname)))
                }
            }
        }
    })
}

/// `LINK` may contain subdirectories: split `dir/LINK` into its directory and last name.
fn split(dir: &str, rel: &str) -> (String, String) {
    let full = paths::join(dir, rel);
    let (d, n) = full.rsplit_once('/').unwrap_or(("", &full));
    (d.to_string(), n.to_string())
}
