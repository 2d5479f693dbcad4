//! A repository in a temp dir driven through the real binaries: the `repofs` CLI (its `--json`
//! output read back), `repofsd --once`, or a live `repofsd` killed on drop; uploads copied
//! into its spool.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::digest::sha256_file;
use super::process::{output_bounded, wait_for_or};

pub const REPOFS: &str = env!("CARGO_BIN_EXE_repofs");
pub const REPOFSD: &str = env!("CARGO_BIN_EXE_repofsd");

/// A repository under a fresh temp dir, with a config that processes uploads without delay.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
}

#[allow(clippy::new_without_default)] // a fixture that makes a repository on disk, not a value
impl Repo {
    pub fn new() -> Repo {
        Repo::with_config("")
    }

    /// `extra` is appended TOML (e.g. `[limits]\nmax_unpacked_size = 1000`).
    pub fn with_config(extra: &str) -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("repofs-test")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        let config = dir.path().join("repofs.toml");
        let base = "[ingest]\nsettle = \"0s\"\npair_wait = \"0s\"\n";
        let text = if extra.contains("[ingest]") {
            extra.to_string()
        } else {
            format!("{base}{extra}")
        };
        fs::write(&config, text).expect("config");
        let repo = Repo { dir, root, config };
        repo.repofs(&["list"]); // creates the root
        repo
    }

    /// Settle times for a live daemon: files arrive one write at a time, so the daemon must
    /// wait for them to go quiet (`--once` tests write everything first and need no wait).
    pub const LIVE: &'static str = "[ingest]\nsettle = \"300ms\"\npair_wait = \"1500ms\"\n";

    /// Replaces the settings file (read by processes started afterwards).
    pub fn set_config(&self, text: &str) {
        fs::write(&self.config, text).expect("config");
    }

    /// The catalog, read through the library's API rather than its SQL schema.
    pub fn catalog(&self) -> repofs::catalog::Catalog {
        repofs::catalog::Catalog::open(&repofs::Layout::new(&self.root).catalog())
            .expect("open catalog")
    }

    /// The catalog id of the live file `dir/filename` (what the catalog's API is keyed by).
    pub fn file_id(&self, dir: &str, filename: &str) -> i64 {
        self.catalog()
            .files(false)
            .expect("catalog files")
            .into_iter()
            .find(|f| f.directory == dir && f.filename == filename)
            .unwrap_or_else(|| panic!("{dir}/{filename} is not published"))
            .id
    }

    pub fn spool(&self) -> PathBuf {
        self.root.join("incoming")
    }

    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.arg("--root")
            .arg(&self.root)
            .arg("--config")
            .arg(&self.config);
        c.env("RUST_LOG", "info");
        c
    }

    /// Runs `repofs ARGS`, asserting success, returning stdout.
    pub fn repofs(&self, args: &[&str]) -> String {
        let out = self.cmd(REPOFS).args(args).output().expect("run repofs");
        assert!(
            out.status.success(),
            "repofs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    pub fn repofs_output(&self, args: &[&str]) -> Output {
        output_bounded(self.cmd(REPOFS).args(args))
    }

    /// Runs `repofsd --once`, returning its log.
    pub fn once(&self) -> String {
        let out = output_bounded(self.cmd(REPOFSD).arg("--once"));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "repofsd --once failed: {log}");
        log
    }

    pub fn add_key(&self, dir: &str, keyfile: &Path) {
        self.repofs(&["keys", "add", "--dir", dir, keyfile.to_str().expect("path")]);
    }

    pub fn list(&self) -> Vec<Value> {
        json_array(&self.repofs(&["list", "--json"]))
    }

    pub fn list_all(&self) -> Vec<Value> {
        json_array(&self.repofs(&["list", "--json", "--all"]))
    }

    pub fn symlinks(&self) -> Vec<Value> {
        json_array(&self.repofs(&["list", "--json", "--symlinks"]))
    }

    pub fn status(&self) -> Vec<Value> {
        json_array(&self.repofs(&["status", "--json"]))
    }

    /// The live file `dir/filename`, if it is published.
    pub fn published(&self, dir: &str, filename: &str) -> Option<Value> {
        self.list()
            .into_iter()
            .find(|f| f["directory"] == dir && f["filename"] == filename)
    }

    /// Status entries in `state` (pending, accepted, rejected).
    pub fn verdicts(&self, state: &str) -> Vec<Value> {
        self.status()
            .into_iter()
            .filter(|e| e["state"] == state)
            .collect()
    }

    /// The newest verdict (accepted or rejected).
    pub fn last_verdict(&self) -> Value {
        self.status()
            .into_iter()
            .find(|e| e["state"] != "pending")
            .expect("a verdict")
    }

    /// Everything published: files (incl. archived), symlinks, and the store's objects with
    /// the hash of their bytes. Equal snapshots mean a byte-identical repository.
    pub fn snapshot(&self) -> String {
        let mut objects = Vec::new();
        let store = self.root.join("store/objects");
        if store.exists() {
            for prefix in fs::read_dir(&store).expect("store") {
                for obj in fs::read_dir(prefix.expect("entry").path()).expect("prefix") {
                    let p = obj.expect("obj").path();
                    objects.push(format!(
                        "{} {}",
                        p.file_name().unwrap().to_string_lossy(),
                        sha256_file(&p)
                    ));
                }
            }
        }
        objects.sort();
        format!(
            "{}\n{}\n{}",
            self.repofs(&["list", "--json", "--all"]),
            self.repofs(&["list", "--json", "--symlinks"]),
            objects.join("\n")
        )
    }

    /// Asserts the newest verdict is a rejection with `code`, the repository is as `before`,
    /// the files sit in quarantine with a verdict, and the uploader got a `.rejected` note.
    pub fn assert_rejected(&self, before: &str, code: &str, files: &[&str]) -> Value {
        let v = self.last_verdict();
        assert_eq!(v["state"], "rejected", "verdict: {v:#}");
        assert_eq!(v["reason"], code, "verdict: {v:#}");
        assert!(
            !v["message"].as_str().unwrap_or("").is_empty(),
            "rejection without a message"
        );
        assert_eq!(
            self.snapshot(),
            before,
            "a rejection ({code}) changed the published repository"
        );
        let q = PathBuf::from(v["quarantine"].as_str().expect("quarantine path"));
        let verdict: Value = serde_json::from_str(
            &fs::read_to_string(q.join("verdict.json")).expect("verdict.json"),
        )
        .expect("json");
        assert_eq!(verdict["reason"], code);
        for f in files {
            let name = Path::new(f).file_name().unwrap();
            assert!(
                q.join(name).exists(),
                "{f} not kept in quarantine {}",
                q.display()
            );
            assert!(!self.spool().join(f).exists(), "{f} still in the spool");
        }
        if let Some(first) = files.first() {
            let base = first
                .strip_suffix(".directive.asc")
                .or_else(|| first.strip_suffix(".sig"))
                .unwrap_or(first);
            let note = fs::read_to_string(self.spool().join(format!("{base}.rejected")))
                .expect("rejection note in spool");
            assert!(note.contains(&format!("reason: {code}")), "note: {note}");
        }
        v
    }
}

pub fn json_array(s: &str) -> Vec<Value> {
    match serde_json::from_str(s) {
        Ok(Value::Array(a)) => a,
        other => panic!("expected a JSON array, got {other:?} from {s}"),
    }
}

/// Copies `files` into the spool directory `sub` ("" = top level), like `cp` would.
pub fn upload(repo: &Repo, sub: &str, files: &[&Path]) {
    let dest = repo.spool().join(sub);
    fs::create_dir_all(&dest).expect("mkdir spool dir");
    for f in files {
        fs::copy(f, dest.join(f.file_name().unwrap())).expect("copy into spool");
    }
}

/// A running `repofsd`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(repo: &Repo, env: &[(&str, &str)]) -> Daemon {
        let log = repo.dir.path().join(format!(
            "repofsd-{}.log",
            std::process::id() as u64 + Instant::now().elapsed().as_nanos() as u64
        ));
        let logf = fs::File::create(&log).expect("log");
        let mut cmd = repo.cmd(REPOFSD);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn repofsd");
        let d = Daemon { child, log };
        d.wait_log("ready", Duration::from_secs(20));
        d
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics (with the log) after `deadline`.
    pub fn wait_log(&self, needle: &str, deadline: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < deadline,
                "timed out waiting for {needle:?} in repofsd log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to 20 s for `dir/filename` to be published; fails with the status and log.
    pub fn wait_published(&self, repo: &Repo, dir: &str, filename: &str) -> Value {
        wait_for_or(Duration::from_secs(20), || repo.published(dir, filename)).unwrap_or_else(
            || {
                panic!(
                    "{dir}/{filename} not published; status {:#?}\nlog:\n{}",
                    repo.status(),
                    self.log()
                )
            },
        )
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "repofsd ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
