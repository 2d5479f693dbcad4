//! Keyrings: which OpenPGP certs may upload into which directories.
//!
//! Certs live in the catalog (public parts only). A grant of directory `D` covers `D` and
//! everything below it; the empty directory (given as `/` on the command line) covers all.

use std::path::Path;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::RevocationStatus;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::paths;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("{path}: {error}")]
    Parse { path: String, error: anyhow::Error },
    #[error("{0}: no OpenPGP certificate found")]
    Empty(String),
    #[error("invalid directory {0:?}: {1}")]
    Directory(String, String),
    #[error("stored certificate {0} is unreadable: {1}")]
    Stored(String, anyhow::Error),
}

/// The certs allowed to upload, with their directory grants.
pub struct Keyring {
    entries: Vec<(Cert, Vec<String>)>,
}

/// A key as `repofs keys list --json` shows it.
#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub fingerprint: String,
    pub userids: Vec<String>,
    pub directories: Vec<String>,
    pub added_at: String,
    pub expires: Option<String>,
    pub revoked: bool,
}

impl Keyring {
    pub fn load(catalog: &Catalog) -> Result<Keyring, KeyError> {
        let mut entries = Vec::new();
        for row in catalog.keys()? {
            let cert = Cert::from_bytes(&row.cert)
                .map_err(|e| KeyError::Stored(row.fingerprint.clone(), e))?;
            entries.push((cert, row.directories));
        }
        Ok(Keyring { entries })
    }

    pub fn certs(&self) -> impl Iterator<Item = &Cert> {
        self.entries.iter().map(|(c, _)| c)
    }

    /// Whether the cert with primary fingerprint `fpr` may upload into `directory`.
    pub fn is_authorized(&self, fpr: &str, directory: &str) -> bool {
        self.entries
            .iter()
            .filter(|(c, _)| c.fingerprint().to_hex() == fpr)
            .flat_map(|(_, dirs)| dirs)
            .any(|granted| paths::is_within(directory, granted))
    }
}

/// `repofs keys add`: imports every cert in the given armored or binary files and grants each
/// `directory`. A cert already present is merged (so re-adding an updated export brings in new
/// revocations and expiry changes). Returns the fingerprints imported.
pub fn add(
    catalog: &mut Catalog,
    directory: &str,
    files: &[impl AsRef<Path>],
) -> Result<Vec<String>, KeyError> {
    let directory =
        paths::grant(directory).map_err(|why| KeyError::Directory(directory.to_string(), why))?;
    let mut certs = Vec::new();
    for file in files {
        let path = file.as_ref();
        let shown = path.display().to_string();
        let parser = CertParser::from_file(path).map_err(|error| KeyError::Parse {
            path: shown.clone(),
            error,
        })?;
        let before = certs.len();
        for cert in parser {
            let cert = cert.map_err(|error| KeyError::Parse {
                path: shown.clone(),
                error,
            })?;
            certs.push(cert.strip_secret_key_material());
        }
        if certs.len() == before {
            return Err(KeyError::Empty(shown));
        }
    }
    // Parse everything first: a bad file in the list imports nothing.
    let mut added = Vec::new();
    for cert in certs {
        let fpr = cert.fingerprint().to_hex();
        let merged = match catalog.key_cert(&fpr)? {
            Some(old) => Cert::from_bytes(&old)
                .and_then(|old| old.merge_public(cert))
                .map_err(|e| KeyError::Stored(fpr.clone(), e))?,
            None => cert,
        };
        let bytes = merged
            .to_vec()
            .map_err(|e| KeyError::Stored(fpr.clone(), e))?;
        let userid = merged
            .userids()
            .next()
            .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned());
        catalog.put_key(&fpr, &bytes, userid.as_deref(), &directory)?;
        added.push(fpr);
    }
    Ok(added)
}

/// `repofs keys remove`: accepts the fingerprint in any case, with or without spaces.
pub fn remove(catalog: &mut Catalog, fingerprint: &str) -> Result<bool, KeyError> {
    let fpr: String = fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    Ok(catalog.remove_key(&fpr)?)
}

pub fn list(catalog: &Catalog) -> Result<Vec<KeyInfo>, KeyError> {
    let policy = StandardPolicy::new();
    let mut out = Vec::new();
    for row in catalog.keys()? {
        let cert = Cert::from_bytes(&row.cert)
            .map_err(|e| KeyError::Stored(row.fingerprint.clone(), e))?;
        let valid = cert.with_policy(&policy, None).ok();
        let expires = valid
            .as_ref()
            .and_then(|vc| vc.primary_key().key_expiration_time())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string());
        let revoked = matches!(
            cert.revocation_status(&policy, None),
            RevocationStatus::Revoked(_)
        );
        out.push(KeyInfo {
            fingerprint: row.fingerprint,
            userids: cert
                .userids()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                .collect(),
            directories: row
                .directories
                .iter()
                .map(|d| if d.is_empty() { "/".into() } else { d.clone() })
                .collect(),
            added_at: crate::time::rfc3339(row.added_at),
            expires,
            revoked,
        });
    }
    Ok(out)
}

/// The repository's own signing key, which signs what the repository says about itself (the
/// index mirrors sync, apt and pacman metadata). repofsd makes it at its first start; the
/// secret stays in `path` (0600, owner only) and never leaves it. `create` is false for
/// readers: they only ever see the public part (`export_repo`).
fn repo_key(path: &Path, create: bool) -> anyhow::Result<Cert> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(bytes) => return Cert::from_bytes(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} does not exist yet: repofsd makes the repository key when it first starts",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    }
    let (cert, _revocation) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .add_userid("repofs repository")
        .add_signing_subkey()
        .generate()?;
    // Written whole under another name, then linked into place: a crash never leaves half a
    // key, and an existing key is never replaced.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&cert.as_tsk().to_vec()?)?;
    f.sync_all()?;
    std::fs::hard_link(&tmp, path).or_else(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Ok(()),
        _ => Err(e),
    })?;
    std::fs::remove_file(&tmp)?;
    Cert::from_bytes(&std::fs::read(path)?)
}

/// Makes the repository key if there is none yet; returns its fingerprint.
pub fn ensure_repo_key(path: &Path) -> anyhow::Result<String> {
    Ok(repo_key(path, true)?.fingerprint().to_hex())
}

/// The public part of the repository key, armored, for mirrors and clients to pin.
pub fn export_repo(path: &Path) -> anyhow::Result<Vec<u8>> {
    repo_key(path, false)?.armored().to_vec()
}

/// The signing key pair of the repository key.
fn repo_keypair(path: &Path) -> anyhow::Result<openpgp::crypto::KeyPair> {
    let cert = repo_key(path, false)?;
    let policy = StandardPolicy::new();
    cert.keys()
        .secret()
        .with_policy(&policy, None)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the repository key has no usable signing key"))?
        .key()
        .clone()
        .into_keypair()
}

/// Clear-signs `body` with the repository key: the signed root of the index
/// (`fetch::index`), apt's InRelease. Mirrors check it against the exported public key
/// (`verify::index_root`).
pub fn sign_with_repo_key(path: &Path, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    use openpgp::serialize::stream::{Message, Signer};
    use std::io::Write;
    let keypair = repo_keypair(path)?;
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let mut signer = Signer::new(message, keypair)?.cleartext().build()?;
        signer.write_all(body)?;
        signer.finalize()?;
    }
    Ok(out)
}

/// A detached signature by the repository key over everything `body` yields: armored for
/// apt's Release.gpg, binary for pacman (`.db.sig`, a package's `%PGPSIG%`).
pub fn sign_detached_with_repo_key(
    path: &Path,
    body: &mut dyn std::io::Read,
    armored: bool,
) -> anyhow::Result<Vec<u8>> {
    use openpgp::armor;
    use openpgp::serialize::stream::{Armorer, Message, Signer};
    let keypair = repo_keypair(path)?;
    let mut out = Vec::new();
    {
        let mut message = Message::new(&mut out);
        if armored {
            message = Armorer::new(message).kind(armor::Kind::Signature).build()?;
        }
        let mut signer = Signer::new(message, keypair)?.detached().build()?;
        std::io::copy(body, &mut signer)?;
        signer.finalize()?;
    }
    Ok(out)
}
