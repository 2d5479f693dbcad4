//! A mirror: `repofsd --upstream` pinning the primary's repository key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::mount::Mount;
use super::process::{wait_for, wait_for_or};
use super::repo::{Daemon, Repo, REPOFSD};
use super::site::Site;

/// How long a mirror may take to sync the index it is shown.
pub const SYNC: Duration = Duration::from_secs(30);

/// The repository key of `repo` (a primary), exported for mirrors to pin.
pub fn export_repo_key(repo: &Repo, dir: &Path) -> PathBuf {
    let key = dir.join("repo-key.asc");
    fs::write(&key, repo.repofs(&["keys", "export-repo"])).expect("export-repo");
    key
}

/// repofsd as a mirror of `upstream` (pinning `key`, polling every second; `listen` re-serves
/// the index), once it is ready: synced, or its last good index kept.
pub fn start_mirror_daemon(repo: &Repo, upstream: &str, key: &Path, listen: Option<u16>) -> Daemon {
    let log = repo.dir.path().join(format!(
        "repofsd-mirror-{}.log",
        fs::read_dir(repo.dir.path())
            .map(|r| r.count())
            .unwrap_or(0)
    ));
    let mut cmd = repo.cmd(REPOFSD);
    cmd.args(["--upstream", upstream, "--poll", "1", "--repo-key"])
        .arg(key);
    if let Some(p) = listen {
        cmd.args(["--listen", &format!("127.0.0.1:{p}")]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn mirror");
    let d = Daemon { child, log };
    d.wait_log("ready", SYNC);
    d
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

/// The infohash of the torrent of published file `hello/FILENAME`.
pub fn info_hash(repo: &Repo, filename: &str) -> String {
    let id = repo.file_id("hello", filename);
    let (info_hash, _) = repo
        .catalog()
        .torrents()
        .unwrap()
        .remove(&id)
        .expect("a torrent");
    info_hash
}

/// The entry for object `sha256` in a mirror's status.
pub fn object_status<'a>(status: &'a Value, sha256: &str) -> Option<&'a Value> {
    status["objects"]
        .as_array()?
        .iter()
        .find(|o| o["sha256"] == sha256)
}

/// Waits until the primary seeds `name` (its seeder added the torrent), so a mirror's first
/// announce finds it: a cold read is then the swarm's, not the origin's (which serves when the
/// swarm knows no peer).
pub fn wait_seeding(primary: &Site, name: &str) {
    primary
        .daemon
        .wait_log(&format!("added torrent name=\"{name}\""), SYNC);
}
