//! Why an upload was refused: stable codes for scripts, human words for people.

use std::fmt;

/// A rejection reason. The `code()` strings are a public contract (`repofs status --json`,
/// `FILE.rejected`, logs): never rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The signature does not match the data, or is malformed, or is dated in the future.
    BadSignature,
    /// No certificate in the keyring made the signature.
    UnknownKey,
    /// The signer's key is not authorized for the target directory.
    NotAuthorized,
    /// The signing key is expired now or was at signing time.
    ExpiredKey,
    /// The signing key is revoked.
    RevokedKey,
    /// The signature uses a broken hash (MD5, SHA-1, RIPEMD-160).
    WeakHash,
    /// The file's signature and the directive's were made by different keys.
    SignerMismatch,
    /// The directive's signature was used before, or the signature is older than allowed.
    Replay,
    /// The target name is already published (and `replace: true` was not given), or a
    /// symlink would replace a file or directory.
    Exists,
    /// A directive names a file or symlink that is not there.
    NotFound,
    /// The directive is not a valid clear-signed directive of a supported version.
    BadDirective,
    /// A path in the directive or the archive escapes its tree, or names a device.
    UnsafePath,
    /// The archive is corrupt or not what its name says.
    BadArchive,
    /// A file, archive or directive exceeds a configured limit.
    TooLarge,
    /// The upload was not completed within the sweep time.
    Incomplete,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::NotAuthorized,
        Reason::ExpiredKey,
        Reason::RevokedKey,
        Reason::WeakHash,
        Reason::SignerMismatch,
        Reason::Replay,
        Reason::Exists,
        Reason::NotFound,
        Reason::BadDirective,
        Reason::UnsafePath,
        Reason::BadArchive,
        Reason::TooLarge,
        Reason::Incomplete,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::BadSignature => "bad-signature",
            Reason::UnknownKey => "unknown-key",
            Reason::NotAuthorized => "not-authorized",
            Reason::ExpiredKey => "expired-key",
            Reason::RevokedKey => "revoked-key",
            Reason::WeakHash => "weak-hash",
            Reason::SignerMismatch => "signer-mismatch",
            Reason::Replay => "replay",
            Reason::Exists => "exists",
            Reason::NotFound => "not-found",
            Reason::BadDirective => "bad-directive",
            Reason::UnsafePath => "unsafe-path",
            Reason::BadArchive => "bad-archive",
            Reason::TooLarge => "too-large",
            Reason::Incomplete => "incomplete",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Whether the refusal concerns who signed (as opposed to what was sent). The mount maps
    /// these to EACCES and the others to EIO.
    pub fn is_authentication(self) -> bool {
        matches!(
            self,
            Reason::BadSignature
                | Reason::UnknownKey
                | Reason::NotAuthorized
                | Reason::ExpiredKey
                | Reason::RevokedKey
                | Reason::WeakHash
                | Reason::SignerMismatch
                | Reason::Replay
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: the code plus a message saying exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Shorthand for building a rejection in `?`-heavy code.
pub fn reject<T>(reason: Reason, message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(reason, message))
}
