//! OpenPGP verification of uploads: detached signatures over files (streamed, so a file is
//! verified in the same pass that hashes and stores it) and clear-signed directives.
//!
//! sequoia checks the signature and that the key was valid when it signed. On top of that,
//! this module enforces what a repository needs and sequoia leaves to its caller: the key must
//! also be valid *now* (not expired, not revoked), broken hashes are refused with their own
//! code, and signature times must fall inside a freshness window.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::packet::Signature;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, GoodChecksum, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper, VerifierBuilder,
};
use openpgp::parse::Parse;
use openpgp::policy::{Policy, StandardPolicy};
use openpgp::serialize::MarshalInto;
use openpgp::types::{HashAlgorithm, RevocationStatus};
use openpgp::KeyHandle;
use sha2::{Digest, Sha256};

use crate::config::IngestConfig;
use crate::keys::Keyring;
use crate::reason::{Reason, Rejection};
use crate::store::TooLarge;

/// Who signed, and when.
#[derive(Debug, Clone)]
pub struct Signer {
    /// Primary key fingerprint of the signing cert (uppercase hex): the uploader's identity.
    pub fingerprint: String,
    pub created: SystemTime,
    /// SHA-256 of the signature packet: what replay detection remembers.
    pub digest: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Reading the signed data failed: not a verdict on the upload; try again later.
    #[error("reading signed data: {0}")]
    Io(io::Error),
}

pub struct Verifier<'a> {
    keyring: &'a Keyring,
    config: &'a IngestConfig,
    policy: StandardPolicy<'static>,
}

impl<'a> Verifier<'a> {
    pub fn new(keyring: &'a Keyring, config: &'a IngestConfig) -> Self {
        Verifier {
            keyring,
            config,
            policy: StandardPolicy::new(),
        }
    }

    /// Verifies a detached signature (binary or armored) over everything `data` yields.
    /// `data` is read to its end even if sequoia stops early, so a staging reader behind it
    /// sees it all.
    pub fn detached(
        &self,
        sig: &[u8],
        mut data: impl Read + Send + Sync,
    ) -> Result<Signer, VerifyError> {
        let helper = Helper::new(self);
        let builder = DetachedVerifierBuilder::from_bytes(sig)
            .map_err(|e| reject(Reason::BadSignature, format!("unreadable signature: {e}")))?;
        let mut v = match builder.with_policy(&self.policy, None, helper) {
            Ok(v) => v,
            Err(e) => {
                return Err(
                    reject(Reason::BadSignature, format!("unreadable signature: {e}")).into(),
                )
            }
        };
        let res = v.verify_reader(&mut data);
        // Drain whatever sequoia did not read, so hashes and the stored copy are complete.
        io::copy(&mut data, &mut io::sink()).map_err(classify_io)?;
        if let Err(e) = res {
            if let Some(ioe) = find_io(&e) {
                return Err(classify_io(ioe));
            }
            if v.helper_ref().outcome.is_none() {
                return Err(reject(Reason::BadSignature, format!("{e}")).into());
            }
        }
        v.into_helper().finish()
    }

    /// Verifies a clear-signed message and returns its body with the signer.
    pub fn clearsigned(&self, msg: &[u8], max_body: u64) -> Result<(String, Signer), Rejection> {
        let start = msg
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        if !msg[start..].starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
            return Err(reject(
                Reason::BadDirective,
                "directive is not a clear-signed message (gpg --clearsign)",
            ));
        }
        let helper = Helper::new(self);
        let builder = VerifierBuilder::from_bytes(msg).map_err(|e| {
            reject(
                Reason::BadDirective,
                format!("unreadable clear-signed message: {e}"),
            )
        })?;
        let mut v = match builder.with_policy(&self.policy, None, helper) {
            Ok(v) => v,
            // The whole message fitted in sequoia's buffer and failed its check already.
            Err(e) => {
                return Err(match e.downcast::<Rejection>() {
                    Ok(r) => r,
                    Err(e) => reject(Reason::BadSignature, format!("{e}")),
                })
            }
        };
        let mut body = Vec::new();
        let read = (&mut v).take(max_body + 1).read_to_end(&mut body);
        if let Err(e) = read {
            if let Some(r) = v.helper_ref().outcome.clone().and_then(|o| o.err()) {
                return Err(r);
            }
            return Err(reject(Reason::BadSignature, format!("{e}")));
        }
        if body.len() as u64 > max_body {
            return Err(reject(
                Reason::TooLarge,
                format!("directive body exceeds {max_body} bytes"),
            ));
        }
        let signer = v.into_helper().finish().map_err(|e| match e {
            VerifyError::Rejected(r) => r,
            VerifyError::Io(e) => reject(Reason::BadSignature, e.to_string()),
        })?;
        let body = String::from_utf8(body)
            .map_err(|_| reject(Reason::BadDirective, "directive is not UTF-8"))?;
        Ok((body, signer))
    }

    /// Judges one signature result; the first good signature wins.
    fn judge(
        &self,
        result: Result<GoodChecksum<'_>, VerificationError<'_>>,
    ) -> Result<Signer, Rejection> {
        refuse_weak_hash(signature_of(&result)?)?;
        let good = result.map_err(|e| self.failed(e))?;
        self.check_key_now(&good)?;
        self.check_time(good.sig)?;
        signer_of(&good)
    }

    /// Why a signature that sequoia did not accept is refused, with its reason code.
    fn failed(&self, error: VerificationError<'_>) -> Rejection {
        match error {
            VerificationError::MissingKey { sig } => {
                let issuers: Vec<String> = sig.get_issuers().iter().map(|h| h.to_hex()).collect();
                reject(
                    Reason::UnknownKey,
                    format!(
                        "signed by {} which is not in the keyring",
                        issuers.join(", ")
                    ),
                )
            }
            VerificationError::UnboundKey { cert, error, .. } => key_state(cert, &self.policy)
                .unwrap_or_else(|| {
                    reject(
                        Reason::BadSignature,
                        format!(
                            "key {} was not valid at signing time: {error}",
                            cert.fingerprint()
                        ),
                    )
                }),
            VerificationError::BadKey { ka, error, .. } => key_state(ka.cert(), &self.policy)
                .unwrap_or_else(|| {
                    if ka.alive().is_err() || ka.valid_cert().alive().is_err() {
                        reject(
                            Reason::ExpiredKey,
                            format!("key {} was expired when it signed", ka.cert().fingerprint()),
                        )
                    } else {
                        reject(
                            Reason::BadSignature,
                            format!("key {} unusable: {error}", ka.cert().fingerprint()),
                        )
                    }
                }),
            VerificationError::BadSignature { sig, error, .. } => {
                self.check_time(sig).err().unwrap_or_else(|| {
                    reject(
                        Reason::BadSignature,
                        format!("signature does not match the data: {error}"),
                    )
                })
            }
            VerificationError::MalformedSignature { error, .. } => reject(
                Reason::BadSignature,
                format!("malformed signature: {error}"),
            ),
            _ => reject(Reason::BadSignature, "unsupported signature"),
        }
    }

    /// A good signature still needs its cert, and the signing (sub)key itself, alive and
    /// unrevoked now.
    fn check_key_now(&self, good: &GoodChecksum<'_>) -> Result<(), Rejection> {
        let cert = good.ka.cert();
        if let Some(r) = key_state(cert, &self.policy) {
            return Err(r);
        }
        let signing = good.ka.key().fingerprint();
        let vc = cert.with_policy(&self.policy, None).map_err(|e| {
            reject(
                Reason::BadSignature,
                format!("key {} is not valid now: {e}", cert.fingerprint()),
            )
        })?;
        let now_ok = vc
            .keys()
            .key_handle(signing.clone())
            .for_signing()
            .revoked(false)
            .alive()
            .next()
            .is_some();
        if now_ok {
            return Ok(());
        }
        let revoked = vc
            .keys()
            .key_handle(signing.clone())
            .any(|k| matches!(k.revocation_status(), RevocationStatus::Revoked(_)));
        Err(if revoked {
            reject(
                Reason::RevokedKey,
                format!("signing key {signing} is revoked"),
            )
        } else {
            reject(
                Reason::ExpiredKey,
                format!("signing key {signing} is expired or no longer a signing key"),
            )
        })
    }

    /// The freshness window: not from the future, not older than `max_signature_age`.
    fn check_time(&self, sig: &Signature) -> Result<(), Rejection> {
        let now = SystemTime::now();
        let Some(created) = sig.signature_creation_time() else {
            return Err(reject(
                Reason::BadSignature,
                "signature has no creation time",
            ));
        };
        if created > now + self.config.max_clock_skew {
            return Err(reject(
                Reason::BadSignature,
                format!("signature is dated in the future ({})", rfc3339(created)),
            ));
        }
        if now.duration_since(created).unwrap_or(Duration::ZERO) > self.config.max_signature_age {
            return Err(reject(
                Reason::Replay,
                format!(
                    "signature made {} is older than the {} window: refused as a possible replay",
                    rfc3339(created),
                    humantime::format_duration(self.config.max_signature_age)
                ),
            ));
        }
        Ok(())
    }
}

/// A cert that is revoked or expired *now* is refused whatever it signed earlier.
fn key_state(cert: &Cert, policy: &dyn Policy) -> Option<Rejection> {
    if let RevocationStatus::Revoked(_) = cert.revocation_status(policy, None) {
        return Some(reject(
            Reason::RevokedKey,
            format!("key {} is revoked", cert.fingerprint()),
        ));
    }
    match cert.with_policy(policy, None) {
        Ok(vc) if vc.alive().is_err() => Some(reject(
            Reason::ExpiredKey,
            format!("key {} is expired", cert.fingerprint()),
        )),
        Ok(_) => None,
        Err(e) => Some(reject(
            Reason::BadSignature,
            format!("key {} is not valid: {e}", cert.fingerprint()),
        )),
    }
}

/// The signature packet behind a result, for the checks every signature gets first; packets
/// sequoia could not even parse are refused here.
fn signature_of<'a>(
    result: &Result<GoodChecksum<'a>, VerificationError<'a>>,
) -> Result<&'a Signature, Rejection> {
    match result {
        Ok(g) => Ok(g.sig),
        Err(VerificationError::MissingKey { sig })
        | Err(VerificationError::UnboundKey { sig, .. })
        | Err(VerificationError::BadKey { sig, .. })
        | Err(VerificationError::BadSignature { sig, .. })
        | Err(VerificationError::MalformedSignature { sig, .. }) => Ok(*sig),
        Err(VerificationError::UnknownSignature { .. }) => Err(reject(
            Reason::BadSignature,
            "unknown signature packet version",
        )),
        Err(_) => Err(reject(Reason::BadSignature, "unsupported signature")),
    }
}

/// Broken hashes get their own code, whatever else is wrong with the signature.
fn refuse_weak_hash(sig: &Signature) -> Result<(), Rejection> {
    let algo = sig.hash_algo();
    if matches!(
        algo,
        HashAlgorithm::MD5 | HashAlgorithm::SHA1 | HashAlgorithm::RipeMD
    ) {
        return Err(reject(
            Reason::WeakHash,
            format!("signature uses the broken hash {algo}; sign with SHA-256 or better"),
        ));
    }
    Ok(())
}

/// What an accepted signature records: the signer's identity, its time, and the packet's digest.
fn signer_of(good: &GoodChecksum<'_>) -> Result<Signer, Rejection> {
    let digest = Sha256::digest(
        good.sig
            .to_vec()
            .map_err(|e| reject(Reason::BadSignature, e.to_string()))?,
    )
    .to_vec();
    Ok(Signer {
        fingerprint: good.ka.cert().fingerprint().to_hex(),
        created: good
            .sig
            .signature_creation_time()
            .unwrap_or(SystemTime::UNIX_EPOCH),
        digest,
    })
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn reject(reason: Reason, message: impl Into<String>) -> Rejection {
    Rejection::new(reason, message)
}

fn classify_io(e: io::Error) -> VerifyError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TooLarge>())
    {
        Some(t) => VerifyError::Rejected(reject(Reason::TooLarge, t.to_string())),
        None => VerifyError::Io(e),
    }
}

fn find_io(e: &anyhow::Error) -> Option<io::Error> {
    e.chain()
        .find_map(|c| c.downcast_ref::<io::Error>())
        .map(
            |ioe| match ioe.get_ref().and_then(|i| i.downcast_ref::<TooLarge>()) {
                Some(t) => io::Error::other(TooLarge(t.0)),
                None => io::Error::new(ioe.kind(), ioe.to_string()),
            },
        )
}

/// sequoia's callback object: hands it the keyring and records our verdict.
struct Helper<'v, 'a> {
    verifier: &'v Verifier<'a>,
    outcome: Option<Result<Signer, Rejection>>,
}

impl<'v, 'a> Helper<'v, 'a> {
    fn new(verifier: &'v Verifier<'a>) -> Self {
        Helper {
            verifier,
            outcome: None,
        }
    }

    fn finish(self) -> Result<Signer, VerifyError> {
        match self.outcome {
            Some(Ok(s)) => Ok(s),
            Some(Err(r)) => Err(r.into()),
            None => Err(reject(Reason::BadSignature, "no signature found").into()),
        }
    }
}

impl VerificationHelper for Helper<'_, '_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self
            .verifier
            .keyring
            .certs()
            .filter(|c| {
                c.keys()
                    .any(|k| ids.iter().any(|id| id.aliases(k.key().key_handle())))
            })
            .cloned()
            .collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut first_error = None;
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                first_error.get_or_insert(reject(
                    Reason::BadSignature,
                    "unexpected compression or encryption layer",
                ));
                continue;
            };
            for result in results {
                match self.verifier.judge(result) {
                    Ok(signer) => {
                        self.outcome = Some(Ok(signer));
                        return Ok(());
                    }
                    Err(r) => {
                        first_error.get_or_insert(r);
                    }
                }
            }
        }
        let r = first_error.unwrap_or_else(|| reject(Reason::BadSignature, "no signature found"));
        self.outcome = Some(Err(r.clone()));
        Err(anyhow::Error::new(r))
    }
}

/// Why a signed index root was refused; `code` is stable (it is what `repofs status` shows).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RootRefused {
    pub code: &'static str,
    pub message: String,
}

/// Checks a clear-signed index root against the pinned repository key (armored or binary) and
/// returns its body. A signature by any other key is `wrong-key`; a bad one `bad-signature`.
pub fn index_root(pinned: &[u8], msg: &[u8], max_body: u64) -> Result<Vec<u8>, RootRefused> {
    let refuse = |code, message: String| RootRefused { code, message };
    let cert = Cert::from_bytes(pinned)
        .map_err(|e| refuse("bad-repo-key", format!("pinned repository key: {e}")))?;
    let policy = StandardPolicy::new();
    let helper = RootHelper {
        cert,
        outcome: None,
    };
    let mut v = VerifierBuilder::from_bytes(msg)
        .map_err(|e| refuse("bad-signature", format!("unreadable signed root: {e}")))?
        .with_policy(&policy, None, helper)
        .map_err(|e| root_error(&e))?;
    let mut body = Vec::new();
    (&mut v)
        .take(max_body + 1)
        .read_to_end(&mut body)
        .map_err(|e| refuse("bad-signature", e.to_string()))?;
    if body.len() as u64 > max_body {
        return Err(refuse(
            "too-large",
            format!("root exceeds {max_body} bytes"),
        ));
    }
    match v.into_helper().outcome {
        Some(Ok(())) => Ok(body),
        Some(Err(r)) => Err(r),
        None => Err(refuse("bad-signature", "no signature checked".into())),
    }
}

fn root_error(e: &anyhow::Error) -> RootRefused {
    match e.downcast_ref::<RootRefused>() {
        Some(r) => r.clone(),
        None => RootRefused {
            code: "bad-signature",
            message: e.to_string(),
        },
    }
}

struct RootHelper {
    cert: Cert,
    outcome: Option<Result<(), RootRefused>>,
}

impl VerificationHelper for RootHelper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.cert.clone()])
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut refusal = None;
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                match result {
                    Ok(_) => {
                        self.outcome = Some(Ok(()));
                        return Ok(());
                    }
                    Err(VerificationError::MissingKey { .. }) => {
                        refusal.get_or_insert(RootRefused {
                            code: "wrong-key",
                            message: "signed by a key other than the pinned repository key".into(),
                        });
                    }
                    Err(e) => {
                        refusal.get_or_insert(RootRefused {
                            code: "bad-signature",
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        let r = refusal.unwrap_or(RootRefused {
            code: "bad-signature",
            message: "no signature found".into(),
        });
        self.outcome = Some(Err(r.clone()));
        Err(anyhow::Error::new(r))
    }
}
