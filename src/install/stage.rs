//! Putting a package's bytes down beside their targets: every file copied from the package
//! tree through the mount to a staged name in its target's directory (same filesystem, so the
//! commit is a rename), checked against the catalog's sha256 as it is copied, with the mode,
//! owner and mtime the package gives it. A few copies run at once, since each read waits on
//! the mount.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::db::FileKind;
use super::plan::Planned;
use super::{InstallError, Result};

pub(super) fn progress_bar(enabled: bool, total: u64) -> indicatif::ProgressBar {
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

/// `.repofs-WHAT.HASH` in `dir`: the staged copy (`new`) of `base`, or its backup (`old`).
pub(super) fn staged_name(dir: &Path, base: &str, what: &str) -> PathBuf {
    let h = Sha256::digest(base.as_bytes());
    dir.join(format!(".repofs-{what}.{}", &hex::encode(h)[..16]))
}

/// How many files are copied at once: reads through FUSE wait on the mount, so a few in
/// flight keep both it and the disk busy.
const COPY_WORKERS: usize = 4;
/// A copy's read size: the mount answers at most 128 KiB per read anyway.
const COPY_BUF: usize = 256 << 10;

/// Copies `jobs` (entry, staged path) from the package tree, checking each against the
/// catalog's sha256; returns the hashes by destination path.
pub(super) fn stage_files(
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
pub(super) fn set_owner_and_time(p: &Path, f: &Planned) {
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
