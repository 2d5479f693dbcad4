//! Tests that really mount: `repofs mount` as a FUSE filesystem, driven by real clients
//! (cp, rsync, dd, tar, sha256sum, gnupload, scp/sftp over a loopback sshd) as root and as
//! unprivileged users. CI runs them as root with /dev/fuse.

#[path = "../common/mod.rs"]
mod common;

mod corpus;
mod incoming;
mod lifecycle;
mod mirror_fetch;
mod mirror_index;
mod pkgmeta;
mod pkgs;
mod torrents;
mod views;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// A world with a live daemon and a mount over it.
/// Fields drop in order: the mount first, then the daemon, and the world (its temporary
/// directory) last, so nothing is removed under a live mount and nothing is left behind.
pub struct Site {
    pub mnt: Mount,
    pub daemon: Daemon,
    pub w: World,
}

#[allow(clippy::new_without_default)] // a fixture that mounts, not a value
impl Site {
    pub fn new() -> Site {
        Site::with_config("")
    }

    pub fn with_config(extra: &str) -> Site {
        let w = World::new();
        w.repo.set_config(&format!("{}{extra}", Repo::LIVE));
        let daemon = Daemon::start(&w.repo, &[]);
        let mnt = Mount::start(&w.repo);
        Site { w, daemon, mnt }
    }

    /// Lets unprivileged test users reach the mount point and the scratch files.
    pub fn open_to_all(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            self.w.repo.dir.path(),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod test dir");
        sh(&self.w.work, "chmod -R a+rX .");
        sh(self.w.repo.dir.path(), "chmod a+rx work");
    }

    pub fn incoming(&self) -> PathBuf {
        self.mnt.path("incoming")
    }
}

/// `cp FILES DEST` as the real coreutils cp.
pub fn cp(files: &[&Path], dest: &Path) -> Output {
    std::process::Command::new("cp")
        .args(files)
        .arg(dest)
        .output()
        .expect("cp")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
