//! Judging one complete upload, from `complete` to its verdict (see the lifecycle in
//! `ingest`): one read of the file feeds the signature check, the hashes and the store copy;
//! then the directive, the archive inspection and who may upload where. An accepted upload is
//! published in one transaction and leaves the spool; a rejected one goes to quarantine.
//! A completed pair's file may be read earlier, when the mount reports it closed (`prestage`).

use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use tracing::info;

use super::directive::{self, Directive};
use super::publish::{self, Incoming, Plan, Published};
use super::spool::{self, Group, Shape, SpoolFile};
use super::{cleanup, refuse_as, ClosedGroups, IngestError, Prestaged};
use crate::archive::{self, ArchiveError};
use crate::catalog::NewUpload;
use crate::config::Limits;
use crate::keys::Keyring;
use crate::paths;
use crate::reason::{Reason, Rejection};
use crate::repo::Repo;
use crate::store::Staged;
use crate::verify::{Signer, Verifier, VerifyError};

/// Why an attempt stopped: a verdict on the upload, or our own trouble.
enum Fail {
    Reject(Rejection),
    Internal(IngestError),
}

impl From<Rejection> for Fail {
    fn from(r: Rejection) -> Self {
        Fail::Reject(r)
    }
}
impl<E: Into<IngestError>> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail::Internal(e.into())
    }
}

/// Reads a completed pair's file once, now: checks its signature (who signed and whether
/// the key is good do not depend on a directive that may still follow), so a bad one fails
/// the close at once, and stages the copy its publication will commit.
pub(super) fn prestage(
    repo: &Repo,
    g: &Group,
) -> Result<Result<Option<Prestaged>, Rejection>, IngestError> {
    let (Some(data), Some(sig)) = (&g.data, &g.sig) else {
        return Ok(Ok(None));
    };
    let limits = &repo.config.limits;
    let Some(sig_bytes) = spool::read_limited(&sig.path, limits.max_signature_size)? else {
        return Ok(Ok(None)); // refused with its reason when processed
    };
    if let Some(r) = too_large(data, limits.max_file_size) {
        return Ok(Err(r));
    }
    let keyring = Keyring::load(&repo.catalog)?;
    let verifier = Verifier::new(&keyring, &repo.config.ingest);
    let (verdict, staged) = read_once(repo, data, Some(&sig_bytes), &verifier)?;
    match verdict {
        Some(Ok(signer)) => Ok(Ok(staged.ok().map(|staged| Prestaged {
            data: data.identity(),
            sig_bytes,
            signer,
            staged,
            at: SystemTime::now(),
        }))),
        Some(Err(VerifyError::Rejected(r))) if !g.files().any(SpoolFile::changed) => Ok(Err(r)),
        Some(Err(VerifyError::Io(e))) => Err(e.into()),
        Some(Err(VerifyError::Rejected(_))) | None => Ok(Ok(None)),
    }
}

fn too_large(data: &SpoolFile, limit: u64) -> Option<Rejection> {
    (data.size > limit).then(|| {
        Rejection::new(
            Reason::TooLarge,
            format!("{} is {} bytes; the limit is {limit}", data.rel, data.size),
        )
    })
}

/// Who signed (if a signature was given), and the staged copy of the bytes checked.
type ReadOnce = (Option<Result<Signer, VerifyError>>, io::Result<Staged>);

/// One read of an upload's file feeds the signature check, both hashes and the store copy.
fn read_once(
    repo: &Repo,
    data: &SpoolFile,
    sig_bytes: Option<&Vec<u8>>,
    verifier: &Verifier<'_>,
) -> io::Result<ReadOnce> {
    let file = spool::open_nofollow(&data.path)?;
    let received = crate::store::Received::read(&file);
    let reader = BufReader::with_capacity(1 << 20, file);
    let (verdict, staged) = repo.store.stage_while(
        reader,
        repo.config.limits.max_file_size,
        received.as_ref(),
        |r| sig_bytes.map(|s| verifier.detached(s, r)),
    )?;
    // When the store copy fails (say its disk is full), the verifier only sees its reader
    // stop ("store writer stopped"): the internal error to report and retry on is the store's.
    let verdict = match (verdict, &staged) {
        (Some(Err(VerifyError::Io(_))), Err(e)) => Some(Err(VerifyError::Io(io::Error::new(
            e.kind(),
            format!("store: {e}"),
        )))),
        (v, _) => v,
    };
    Ok((verdict, staged))
}

/// Processes one complete upload. `Ok(None)`: its files changed under us; look again later.
pub(super) fn process(
    repo: &mut Repo,
    g: &Group,
    shape: Shape,
    closed: &mut ClosedGroups,
) -> Result<Option<Result<Published, Rejection>>, IngestError> {
    let ids = g.identity();
    // A crash after the catalog commit but before the spool cleanup leaves the very same
    // files (same inodes) behind: finish the cleanup instead of judging them again.
    if let Some(id) = repo.catalog.accepted_upload_by_spool_ids(&ids)? {
        info!(upload = %g.label(), id, "already published before a restart; cleaning the spool");
        cleanup(g, id)?;
        return Ok(Some(Ok(Published {
            upload_id: id,
            message: "already published".into(),
        })));
    }
    // The verdict record, filled in by `attempt` as it learns who uploaded and where.
    let mut upload = NewUpload {
        accepted: true,
        files: g.files().map(|f| f.rel.clone()).collect(),
        spool_ids: Some(ids),
        ..Default::default()
    };
    match attempt(repo, g, shape, &mut upload, closed) {
        Ok(p) => {
            crate::failpoint::hit("before-spool-cleanup");
            cleanup(g, p.upload_id)?;
            info!(upload = %g.label(), id = p.upload_id, "accepted: {}", p.message);
            Ok(Some(Ok(p)))
        }
        Err(Fail::Internal(e)) => Err(e),
        Err(Fail::Reject(r)) => {
            // A file that changed while we worked was not finished: no verdict yet.
            if g.files().any(SpoolFile::changed) {
                info!(upload = %g.label(), "files changed during verification; will look again");
                return Ok(None);
            }
            refuse_as(
                repo,
                &g.files().collect::<Vec<_>>(),
                &g.dir,
                &g.base,
                &r,
                upload,
            )?;
            Ok(Some(Err(r)))
        }
    }
}

/// Verifies and publishes one upload, recording in `upload` who and where as soon as known.
fn attempt(
    repo: &mut Repo,
    g: &Group,
    shape: Shape,
    upload: &mut NewUpload,
    closed: &mut ClosedGroups,
) -> Result<Published, Fail> {
    let limits = repo.config.limits.clone();
    let keyring = Keyring::load(&repo.catalog)?;
    let verifier = Verifier::new(&keyring, &repo.config.ingest);
    let directive = match &g.directive {
        Some(df) => Some(check_directive(
            repo, &verifier, &keyring, g, shape, df, upload,
        )?),
        None => None,
    };

    let mut files = Vec::new();
    let mut uploader = directive.as_ref().map(|(_, s)| s.fingerprint.clone());
    let mut directory = directive.as_ref().map(|(d, _)| d.directory.clone());
    if let Some(data) = &g.data {
        let sig = signature_file(g, shape)?;
        let sig_bytes = read_signature(sig, &limits)?;
        if let Some(r) = too_large(data, limits.max_file_size) {
            return Err(r.into());
        }
        let (signer, staged) = vouched_copy(repo, g, data, sig_bytes.as_ref(), &verifier, closed)?;
        // Who vouches for the bytes: the key that signed them, or the trusted local uid.
        let who = match &signer {
            Some(s) => s.fingerprint.clone(),
            None => format!("uid:{}", g.owner().unwrap_or(0)),
        };
        upload.uploader.get_or_insert_with(|| who.clone());
        if let (Some((_, dsigner)), Some(signer), Some(sig)) = (&directive, &signer, sig) {
            same_signer(sig, signer, dsigner)?;
        }
        let staged_path = staged.path().map(PathBuf::from).unwrap_or_default();
        let inspection =
            archive::inspect(&staged_path, &g.base, &limits).map_err(archive_rejection)?;
        let meta = inspection
            .as_ref()
            .map(|i| i.meta.clone())
            .unwrap_or_else(|| archive::meta::from_filename(&g.base));
        let dir = match &directory {
            Some(d) => d.clone(),
            None => pair_destination(repo, g, &keyring, &meta.name, signer.as_ref(), &who)?,
        };
        files = incoming(repo, g, staged, inspection, meta, sig_bytes.as_deref())?;
        uploader = Some(who);
        directory = Some(dir);
    }

    let (Some(directory), Some(uploader)) = (directory, uploader) else {
        return Err(Rejection::new(Reason::Incomplete, "nothing to publish").into());
    };
    publish_verified(repo, upload, directory, uploader, files, directive)
}

/// Hands a verified upload to `publish`: recorded, with who and where, in one transaction.
fn publish_verified(
    repo: &mut Repo,
    upload: &mut NewUpload,
    directory: String,
    uploader: String,
    files: Vec<Incoming>,
    directive: Option<(Directive, Signer)>,
) -> Result<Published, Fail> {
    upload.directory = Some(directory.clone());
    upload.uploader = Some(uploader.clone());
    let (replace, actions, signature) = match directive {
        Some((d, s)) => (d.replace, d.actions, Some(s.digest)),
        None => (false, Vec::new(), None),
    };
    let plan = Plan {
        directory,
        uploader,
        files,
        replace,
        actions,
        signature,
        upload: upload.clone(),
    };
    match publish::publish(
        &mut repo.catalog,
        &repo.store,
        &repo.layout.repo_key(),
        plan,
    )? {
        Ok(p) => Ok(p),
        Err(r) => Err(r.into()),
    }
}

/// The upload's signature file; a file needs one unless its shape is a trusted unsigned one.
fn signature_file(g: &Group, shape: Shape) -> Result<Option<&SpoolFile>, Fail> {
    match (&g.data, &g.sig, shape) {
        (_, Some(sig), _) => Ok(Some(sig)),
        (None, None, _) | (Some(_), None, Shape::Unsigned) => Ok(None),
        (Some(_), None, _) => {
            Err(Rejection::new(Reason::Incomplete, "the file has no signature").into())
        }
    }
}

/// The signature's bytes, refused when over the limit.
fn read_signature(sig: Option<&SpoolFile>, limits: &Limits) -> Result<Option<Vec<u8>>, Fail> {
    let Some(sig) = sig else { return Ok(None) };
    let bytes = spool::read_limited(&sig.path, limits.max_signature_size)?.ok_or_else(|| {
        Rejection::new(
            Reason::TooLarge,
            format!("{} exceeds {} bytes", sig.rel, limits.max_signature_size),
        )
    })?;
    Ok(Some(bytes))
}

/// The staged copy of the data file with who signed exactly those bytes (`None` unsigned):
/// the copy read when the pair completed if it is still the same, else a read now.
fn vouched_copy(
    repo: &Repo,
    g: &Group,
    data: &SpoolFile,
    sig_bytes: Option<&Vec<u8>>,
    verifier: &Verifier<'_>,
    closed: &mut ClosedGroups,
) -> Result<(Option<Signer>, Staged), Fail> {
    let (verdict, staged) = match closed.take_prestaged(g, sig_bytes) {
        Some(p) => (Some(Ok(p.signer)), Ok(p.staged)),
        None => read_once(repo, data, sig_bytes, verifier)?,
    };
    let signer = match verdict {
        Some(v) => Some(v.map_err(|e| match e {
            VerifyError::Rejected(r) => Fail::Reject(r),
            VerifyError::Io(e) => Fail::Internal(e.into()),
        })?),
        None => None,
    };
    Ok((signer, staged?))
}

/// A file and its directive must be signed by the same key.
fn same_signer(sig: &SpoolFile, signer: &Signer, dsigner: &Signer) -> Result<(), Rejection> {
    if dsigner.fingerprint != signer.fingerprint {
        return Err(Rejection::new(
            Reason::SignerMismatch,
            format!(
                "{} is signed by {} but the directive by {}",
                sig.rel, signer.fingerprint, dsigner.fingerprint
            ),
        ));
    }
    Ok(())
}

/// Where an upload without a directive goes: where it was spooled, or at the top level into
/// the package's own name (`name`) — if `who` may upload there.
fn pair_destination(
    repo: &Repo,
    g: &Group,
    keyring: &Keyring,
    name: &str,
    signer: Option<&Signer>,
    who: &str,
) -> Result<String, Fail> {
    let d = if g.target_dir().is_empty() {
        name.to_string()
    } else {
        g.target_dir().to_string()
    };
    paths::check_relative(&d)
        .map_err(|why| Rejection::new(Reason::UnsafePath, format!("directory {d:?}: {why}")))?;
    let allowed = match signer {
        Some(s) => keyring.is_authorized(&s.fingerprint, &d),
        None => g.owner().is_some_and(|u| super::is_trusted(repo, u, &d)),
    };
    if !allowed {
        return Err(not_authorized(who, &d).into());
    }
    Ok(d)
}

/// The files to publish: the data file (a package when it inspected as one) and, if signed,
/// its signature, staged too.
fn incoming(
    repo: &Repo,
    g: &Group,
    staged: Staged,
    inspection: Option<archive::Inspection>,
    meta: archive::meta::PackageMeta,
    sig_bytes: Option<&[u8]>,
) -> Result<Vec<Incoming>, Fail> {
    let mut files = vec![Incoming {
        filename: g.base.clone(),
        kind: if inspection.is_some() {
            "package"
        } else {
            "plain"
        },
        staged,
        name: Some(meta.name.clone()),
        version: meta.version.clone(),
        inspection,
    }];
    if let Some(sig_bytes) = sig_bytes {
        let mut sig_staging = repo.store.stage()?;
        sig_staging.write_all(sig_bytes)?;
        files.push(Incoming {
            filename: format!("{}{}", g.base, spool::SIG_SUFFIX),
            kind: "signature",
            staged: sig_staging.finish()?,
            name: Some(meta.name),
            version: meta.version,
            inspection: None,
        });
    }
    Ok(files)
}

/// Verifies and parses the directive, and checks who may use it where.
fn check_directive(
    repo: &Repo,
    verifier: &Verifier<'_>,
    keyring: &Keyring,
    g: &Group,
    shape: Shape,
    df: &SpoolFile,
    upload: &mut NewUpload,
) -> Result<(Directive, crate::verify::Signer), Fail> {
    let max = repo.config.limits.max_directive_size;
    let raw = spool::read_limited(&df.path, max)?.ok_or_else(|| {
        Rejection::new(Reason::TooLarge, format!("{} exceeds {max} bytes", df.rel))
    })?;
    let (body, signer) = verifier.clearsigned(&raw, max)?;
    upload.uploader = Some(signer.fingerprint.clone());
    let d = directive::parse(&body)?;
    upload.directory = Some(d.directory.clone());
    match (&d.filename, shape) {
        (Some(f), Shape::Triplet) if *f == g.base => {}
        (Some(f), Shape::Triplet) => {
            return Err(Rejection::new(
                Reason::BadDirective,
                format!("directive names {f:?} but was uploaded for {:?}", g.base),
            )
            .into())
        }
        (None, Shape::Triplet) => {
            return Err(Rejection::new(
                Reason::BadDirective,
                format!("directive for {:?} has no 'filename:'", g.base),
            )
            .into())
        }
        (Some(f), _) => {
            return Err(Rejection::new(
                Reason::BadDirective,
                format!("directive names {f:?}, which was not uploaded"),
            )
            .into())
        }
        (None, _) => {}
    }
    if !keyring.is_authorized(&signer.fingerprint, &d.directory) {
        return Err(not_authorized(&signer.fingerprint, &d.directory).into());
    }
    if let Some(id) = repo.catalog.signature_use(&signer.digest)? {
        return Err(Rejection::new(
            Reason::Replay,
            format!("this directive signature was already used by upload #{id}"),
        )
        .into());
    }
    upload.directive = Some(body);
    Ok((d, signer))
}

fn not_authorized(who: &str, dir: &str) -> Rejection {
    let who = if who.starts_with("uid:") {
        who.to_string()
    } else {
        format!("key {who}")
    };
    Rejection::new(
        Reason::NotAuthorized,
        format!("{who} may not upload to {dir:?}"),
    )
}

fn archive_rejection(e: ArchiveError) -> Fail {
    match e {
        ArchiveError::Unsafe(m) => Rejection::new(Reason::UnsafePath, m).into(),
        ArchiveError::Corrupt(m) => Rejection::new(Reason::BadArchive, m).into(),
        ArchiveError::TooLarge(m) => Rejection::new(Reason::TooLarge, m).into(),
        ArchiveError::Io(e) => Fail::Internal(e.into()),
    }
}
