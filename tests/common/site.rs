//! A site: a repository with a live daemon and a mount over it, and publishing through that
//! mount as an uploader would (signed by alice, copied with cp).

use std::path::{Path, PathBuf};
use std::process::Output;

use super::mount::Mount;
use super::net::free_port;
use super::packages::pacman_pkg;
use super::process::{sh, wait_for_or};
use super::repo::{Daemon, Repo};
use super::world::{World, ALICE};

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

/// A primary whose torrents name a tracker nobody runs (it is down), serving its endpoint on
/// `port`.
pub fn primary_with_dead_tracker(extra: &str) -> (Site, u16) {
    let (dead, port) = (free_port(), free_port());
    let s = Site::with_config(&format!(
        "[distribution]\ntrackers = [\"http://127.0.0.1:{dead}/announce\"]\n\
         listen = \"127.0.0.1:{port}\"\n{extra}"
    ));
    (s, port)
}

/// Publishes `mib` MiB of random bytes as dists/hello/NAME; returns the original.
pub fn publish_random(s: &Site, name: &str, mib: u64) -> PathBuf {
    let d = s.w.scratch(name);
    sh(&d, &format!("head -c {} /dev/urandom > {name}", mib << 20));
    publish(s, "hello", &d.join(name));
    d.join(name)
}

/// [`pacman_pkg`] in `dir`, published into dists/hello.
pub fn publish_pacman(
    s: &Site,
    dir: &Path,
    name: &str,
    ver: &str,
    files: &[(&str, &str)],
    post_install: &str,
) {
    publish(s, "hello", &pacman_pkg(dir, name, ver, files, post_install));
}
