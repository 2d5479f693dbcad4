//! Tests that really mount: `repofs mount` as a FUSE filesystem, driven by real clients
//! (cp, rsync, dd, tar, sha256sum, gnupload, scp/sftp over a loopback sshd) as root and as
//! unprivileged users. CI runs them as root with /dev/fuse.

#[path = "../common/mod.rs"]
mod common;

mod corpus;
mod http_dists;
mod image;
mod incoming;
mod install;
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
use serde_json::Value;
use std::time::Duration;

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

/// Publishes `file` into `dir` through the mount (signed by alice, copied with cp) and
/// waits until the catalog lists it.
pub fn publish(s: &Site, dir: &str, file: &Path) {
    let sig = s.w.gpg.sign(ALICE, file, false, &[]);
    std::fs::create_dir_all(s.incoming().join(dir)).unwrap();
    let out = cp(&[file, &sig], &s.incoming().join(dir));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    let name = file.file_name().unwrap().to_str().unwrap();
    wait_for_or(std::time::Duration::from_secs(120), || {
        s.w.repo.published(dir, name)
    })
    .unwrap_or_else(|| panic!("{name} not published:\n{}", s.daemon.log()));
}

/// A primary seeding with its own tracker on a fresh loopback port.
pub fn primary() -> (Site, u16) {
    let port = free_port();
    let s = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    (s, port)
}

/// A mirror of the primary (`repofsd --upstream`, pinning its repository key) with its daemon
/// and mount (dropped in reverse order).
pub struct Mirror {
    pub mnt: Mount,
    pub daemon: Daemon,
    pub repo: Repo,
    pub upstream: String,
    pub key: PathBuf,
    /// The mirror's own `--listen` port, if it serves HTTP.
    pub listen: Option<u16>,
}

impl Mirror {
    /// Starts once the mirror lists every file the primary has published.
    pub fn start(primary: &Site, port: u16, extra: &str) -> Mirror {
        Mirror::start_listening(primary, port, extra, None)
    }

    /// `start`, with the mirror serving HTTP (`--listen`) on `listen`.
    pub fn start_listening(primary: &Site, port: u16, extra: &str, listen: Option<u16>) -> Mirror {
        let repo = Repo::with_config(&format!("{}{extra}", Repo::LIVE));
        let key = export_repo_key(&primary.w.repo, repo.dir.path());
        let upstream = format!("http://127.0.0.1:{port}");
        let daemon = start_mirror_daemon(&repo, &upstream, &key, listen);
        let want = primary.w.repo.list().len();
        wait_for_or(SYNC, || (repo.list().len() == want).then_some(()))
            .unwrap_or_else(|| panic!("the mirror never listed {want} files:\n{}", daemon.log()));
        let mnt = Mount::start(&repo);
        Mirror {
            mnt,
            daemon,
            repo,
            upstream,
            key,
            listen,
        }
    }

    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.repo.root.join("mirror/fetch-status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits for a status that satisfies `ok` (the file is rewritten every ~2 s).
    pub fn status_when(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_secs(15), || {
            self.status().filter(|s| ok(s))
        })
    }

    pub fn restart(&mut self) {
        self.daemon.terminate();
        self.daemon = start_mirror_daemon(&self.repo, &self.upstream, &self.key, self.listen);
    }
}
