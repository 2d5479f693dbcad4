//! One stored object as its readers see it: where it lives (`object_path`), positioned reads
//! of it (`ReadAt`, which the views, the archive index and the mirror's partial objects all
//! implement or use), and the hashes the mount recorded on an upload while it streamed in
//! (`Received`), which staging may borrow. They live with the store, below everything that
//! reads or fills it, so no reader has to reach into the layer that fetches or ingests.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where object `sha256` lives below a store's `root`: `objects/ab/abcdef…`.
pub fn object_path(root: &Path, sha256: &str) -> PathBuf {
    let prefix = sha256.get(..2).unwrap_or("00");
    root.join("objects").join(prefix).join(sha256)
}

/// Positioned reads of one immutable object.
pub trait ReadAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; 0 only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// The whole object as a local file, for FUSE passthrough; None while it is incomplete.
    fn local_file(&self) -> Option<&File> {
        None
    }
}

/// Fills `buf` from `o` at `at`; the object ending first is an error (UnexpectedEof).
pub fn read_exact_at(o: &(impl ReadAt + ?Sized), buf: &mut [u8], at: u64) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match o.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shorter than its size",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn local_file(&self) -> Option<&File> {
        Some(self)
    }
}

/// Hashes the mount computed while a file streamed in, kept on the spool file as `trusted.*`
/// xattrs. Only root can set those, so an uploader who writes the spool directly (or with
/// `rsync -X`) cannot plant them; and the daemon borrows the md5 only when its own sha256 of
/// the bytes agrees with the one recorded beside it (`store::Store::stage_while`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub md5: String,
    pub sha256: String,
}

const XATTR_MD5: &str = "trusted.repofs.md5";
const XATTR_SHA256: &str = "trusted.repofs.sha256";

impl Received {
    pub fn record(&self, f: &File) -> io::Result<()> {
        set_xattr(f, XATTR_MD5, &self.md5)?;
        set_xattr(f, XATTR_SHA256, &self.sha256)
    }

    /// What was recorded on `f`, if anything (or nothing, where xattrs are unsupported).
    pub fn read(f: &File) -> Option<Received> {
        Some(Received {
            md5: get_xattr(f, XATTR_MD5)?,
            sha256: get_xattr(f, XATTR_SHA256)?,
        })
    }

    /// Forgets what was recorded: the file is being written again.
    pub fn clear(f: &File) {
        for name in [XATTR_MD5, XATTR_SHA256] {
            let Ok(n) = CString::new(name) else { continue };
            // SAFETY: valid fd and NUL-terminated name. ENODATA (nothing recorded) is fine.
            unsafe { libc::fremovexattr(f.as_raw_fd(), n.as_ptr()) };
        }
    }
}

/// Sets extended attribute `name` of `f` (also the spool's published mark).
pub(crate) fn set_xattr(f: &File, name: &str, value: &str) -> io::Result<()> {
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: valid fd, NUL-terminated name, and a value buffer of the given length.
    let rc = unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Extended attribute `name` of `f`, if set and short UTF-8.
pub(crate) fn get_xattr(f: &File, name: &str) -> Option<String> {
    let n = CString::new(name).ok()?;
    let mut buf = [0u8; 128];
    // SAFETY: valid fd, NUL-terminated name; `buf` is writable for its length.
    let rc = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = usize::try_from(rc).ok()?;
    String::from_utf8(buf.get(..len)?.to_vec()).ok()
}
