//! Shared test harness: a repository in a temp dir driven through the real binaries, real
//! gpg keyrings in private GNUPGHOMEs, and guards that clean up even when an assertion fails.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const REPOFS: &str = env!("CARGO_BIN_EXE_repofs");
pub const REPOFSD: &str = env!("CARGO_BIN_EXE_repofsd");

/// A repository under a fresh temp dir, with a config that processes uploads without delay.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub config: PathBuf,
}

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

pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    crate::common::hex(&Sha256::digest(fs::read(p).expect("read")))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Output of an external tool's first field (`sha256sum FILE` → the hash).
pub fn tool_hash(tool: &str, p: &Path) -> String {
    let out = Command::new(tool).arg(p).output().expect(tool);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// A private gpg home. Keys are made without passphrase; the agent is killed on drop.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn new() -> Gpg {
        // Short path: gpg-agent's socket path must fit in sun_path.
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .expect("gnupghome");
        fs::write(
            home.path().join("gpg.conf"),
            "use-agent\npinentry-mode loopback\n",
        )
        .expect("gpg.conf");
        fs::write(
            home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .expect("agent conf");
        Gpg { home }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--quiet",
            "--passphrase",
            "",
        ]);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `gpg --quick-gen-key UID ALGO USAGE EXPIRE`; returns the primary fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.run(&["--quick-gen-key", uid, algo, usage, expire]);
        self.fingerprint(uid)
    }

    /// A certification-only primary key with a separate signing subkey.
    pub fn gen_key_with_subkey(&self, uid: &str, algo: &str) -> String {
        let fpr = self.gen_key(uid, algo, "cert", "1y");
        self.run(&["--quick-add-key", &fpr, algo, "sign", "1y"]);
        fpr
    }

    pub fn fingerprint(&self, uid: &str) -> String {
        let out = self.run(&["--with-colons", "--list-keys", uid]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_string()
    }

    /// Writes the armored public key to `dir/NAME.asc`.
    pub fn export(&self, uid: &str, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}.asc", uid.split('@').next().unwrap_or("key")));
        let out = self.run(&["--armor", "--export", uid]);
        fs::write(&p, out.stdout).expect("export");
        p
    }

    /// `gpg -b` (binary, or armored with `armor`) → `FILE.sig`.
    pub fn sign(&self, uid: &str, file: &Path, armor: bool, extra: &[&str]) -> PathBuf {
        let sig = PathBuf::from(format!("{}.sig", file.display()));
        let mut args = vec![
            "--local-user",
            uid,
            "--detach-sign",
            "--output",
            sig.to_str().unwrap(),
        ];
        if armor {
            args.push("--armor");
        }
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        self.run(&args);
        sig
    }

    /// Clear-signs `body` into `path`.
    pub fn clearsign(&self, uid: &str, body: &str, path: &Path, extra: &[&str]) {
        let plain = path.with_extension("plain");
        fs::write(&plain, body).expect("directive body");
        let mut args = vec![
            "--local-user",
            uid,
            "--clearsign",
            "--output",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(plain.to_str().unwrap());
        self.run(&args);
        fs::remove_file(plain).ok();
    }

    /// Revokes the key (the revocation certificate gpg made at generation).
    pub fn revoke(&self, fpr: &str) {
        let rev = self
            .home
            .path()
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev"));
        let text = fs::read_to_string(&rev)
            .expect("revocation cert")
            .replace(":-----BEGIN", "-----BEGIN");
        let armored = self.home.path().join("revoke.asc");
        fs::write(&armored, text).expect("write rev");
        self.run(&["--import", armored.to_str().unwrap()]);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// Writes a triplet's directive for `file` into the spool directory `dir`.
pub fn directive(gpg: &Gpg, uid: &str, spool_dir: &Path, file: &str, body: &str) -> PathBuf {
    let p = spool_dir.join(format!("{file}.directive.asc"));
    gpg.clearsign(uid, body, &p, &[]);
    p
}

/// A small tar.gz with a top directory, a file and a symlink, built by the real `tar`.
pub fn make_tarball(dir: &Path, name: &str, version: &str) -> PathBuf {
    make_tarball_with(dir, name, version, None)
}

/// Like `make_tarball`, plus a file `EXTRA` with `extra` in it: same name, other bytes.
pub fn make_tarball_with(dir: &Path, name: &str, version: &str, extra: Option<&str>) -> PathBuf {
    let top = format!("{name}-{version}");
    let src = dir.join("src").join(&top);
    fs::create_dir_all(src.join("doc")).expect("mkdir");
    fs::write(src.join("README"), format!("{name} {version}\n")).expect("write");
    fs::write(src.join("doc/manual.txt"), "read me\n".repeat(100)).expect("write");
    std::os::unix::fs::symlink("README", src.join("README.link")).expect("symlink");
    if let Some(text) = extra {
        fs::write(src.join("EXTRA"), text).expect("write");
    }
    let out = dir.join(format!("{top}.tar.gz"));
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir.join("src"))
        .arg("-czf")
        .arg(&out)
        .arg(&top)
        .status()
        .expect("tar");
    assert!(st.success());
    out
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

/// Runs a shell script in `dir`, asserting success.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` until it returns Some, or gives up (None) after `deadline`.
pub fn wait_for_or<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// Polls `f` until it returns Some, or panics after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A repository with alice (gpg, ed25519) allowed in `hello`, and `hello/hello-1.0.tar.gz`
/// already published, so "unchanged" checks compare against real content.
pub struct World {
    pub repo: Repo,
    pub gpg: Gpg,
    /// Scratch space for building uploads outside the spool.
    pub work: PathBuf,
    pub alice: String,
}

pub const ALICE: &str = "alice@example.org";

impl World {
    pub fn new() -> World {
        World::with_config("")
    }

    pub fn with_config(extra: &str) -> World {
        let repo = Repo::with_config(extra);
        let gpg = Gpg::new();
        let work = repo.dir.path().join("work");
        fs::create_dir_all(&work).expect("work dir");
        let alice = gpg.gen_key(&format!("Alice <{ALICE}>"), "ed25519", "sign", "1y");
        repo.add_key("hello", &gpg.export(ALICE, &work));
        let w = World {
            repo,
            gpg,
            work,
            alice,
        };
        let tgz = make_tarball(&w.work, "hello", "1.0");
        let sig = w.gpg.sign(ALICE, &tgz, false, &[]);
        upload(&w.repo, "hello", &[&tgz, &sig]);
        w.repo.once();
        assert_eq!(
            w.repo.list().len(),
            2,
            "baseline publication failed: {:#?}",
            w.repo.status()
        );
        w
    }

    /// A fresh build dir for one upload.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let d = self.work.join(name);
        fs::create_dir_all(&d).expect("scratch");
        d
    }

    /// Builds `NAME-VERSION.tar.gz`, signs it as `uid` and writes a 1.2 directive for `dir`
    /// with `extra` lines. Returns the three paths (not yet in the spool).
    pub fn triplet(
        &self,
        uid: &str,
        name: &str,
        version: &str,
        dir: &str,
        extra: &str,
    ) -> [PathBuf; 3] {
        let d = self.scratch(&format!(
            "{name}-{version}-{}",
            fs::read_dir(&self.work).map(|r| r.count()).unwrap_or(0)
        ));
        let tgz = make_tarball(&d, name, version);
        let sig = self.gpg.sign(uid, &tgz, true, &[]);
        let file = tgz.file_name().unwrap().to_string_lossy().into_owned();
        let dir_file = directive(
            &self.gpg,
            uid,
            &d,
            &file,
            &format!("version: 1.2\ndirectory: {dir}\nfilename: {file}\n{extra}"),
        );
        [tgz, sig, dir_file]
    }

    pub fn upload(&self, sub: &str, files: &[PathBuf]) {
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        upload(&self.repo, sub, &refs);
    }
}

/// A free TCP port on loopback (bound and released; the window for a clash is tiny).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An sshd on 127.0.0.1 with its own host key, accepting one client key for root; killed
/// on drop. For driving real scp/sftp clients.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("sshd")
            .tempdir()
            .expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        for key in ["host", "client"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(p(key))
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
        }
        fs::copy(p("client.pub"), p("authorized_keys")).expect("authorized_keys");
        // sshd reads authorized_keys as the user logging in (the test users too).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(p("authorized_keys"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        fs::create_dir_all("/run/sshd").expect("privilege separation dir");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            p("host").display(),
            p("sshd.pid").display(),
            p("authorized_keys").display()
        );
        fs::write(p("sshd_config"), config).expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(p("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (openssh-server)");
        let sshd = Sshd { child, port, dir };
        wait_for("sshd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        sshd
    }

    fn client_opts(&self, cmd: &mut Command) {
        cmd.arg("-i").arg(self.dir.path().join("client"));
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
        ] {
            cmd.arg("-o").arg(o);
        }
    }

    /// `scp -O` (the legacy protocol: open, write, ftruncate, fchmod, close) into `remote_dir`.
    pub fn scp(&self, files: &[PathBuf], remote_dir: &Path) {
        self.scp_as("root", files, remote_dir)
    }

    pub fn scp_as(&self, user: &str, files: &[PathBuf], remote_dir: &Path) {
        let mut cmd = Command::new("scp");
        cmd.arg("-O").arg("-P").arg(self.port.to_string());
        self.client_opts(&mut cmd);
        cmd.args(files)
            .arg(format!("{user}@127.0.0.1:{}/", remote_dir.display()));
        let out = cmd.output().expect("scp");
        assert!(
            out.status.success(),
            "scp as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs an `sftp -b` batch.
    pub fn sftp(&self, batch: &str) {
        self.sftp_as("root", batch)
    }

    pub fn sftp_as(&self, user: &str, batch: &str) {
        let path = self.dir.path().join("batch");
        fs::write(&path, batch).expect("batch");
        let mut cmd = Command::new("sftp");
        cmd.arg("-b")
            .arg(&path)
            .arg("-P")
            .arg(self.port.to_string());
        self.client_opts(&mut cmd);
        let out = cmd.arg(format!("{user}@127.0.0.1")).output().expect("sftp");
        assert!(
            out.status.success(),
            "sftp as {user} {batch}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `repofs mount` in the foreground on a fresh mount point; on drop it is sent SIGTERM,
/// and if it does not unmount in time it is killed and the mount detached.
pub struct Mount {
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    pub fn start(repo: &Repo) -> Mount {
        let dir = repo.dir.path().join(format!(
            "mnt-{}",
            fs::read_dir(repo.dir.path())
                .map(|r| r.count())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&dir).expect("mount point");
        Mount::start_at(repo, &dir)
    }

    pub fn start_at(repo: &Repo, dir: &Path) -> Mount {
        let log = dir.with_extension("log");
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = repo
            .cmd(REPOFS)
            .arg("mount")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn repofs mount");
        let m = Mount {
            child,
            dir: dir.to_path_buf(),
            log,
        };
        m.wait_mounted();
        m
    }

    fn wait_mounted(&self) {
        let start = Instant::now();
        // incoming/ is never cached by the kernel, so a dead mount fails its stat; a mirror's
        // mount has none, and listing the root reaches the daemon as well.
        let up = || {
            is_mounted(&self.dir)
                && (fs::metadata(self.dir.join("incoming")).is_ok()
                    || fs::read_dir(&self.dir)
                        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name() == "dists"))))
        };
        while !up() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mount did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns whether it exited cleanly within 15 s.
    pub fn terminate(&mut self) -> bool {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && !self.terminate() {
            self.kill9();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Whether something is mounted exactly at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Creates (once, race-safely) a local unprivileged user for tests and returns its uid.
pub fn test_user(name: &str) -> u32 {
    let lookup = || {
        Command::new("id")
            .arg("-u")
            .arg(name)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    for _ in 0..50 {
        if let Some(uid) = lookup() {
            return uid;
        }
        // Parallel tests may race on /etc/passwd's lock: try again.
        let _ = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .output();
        // No password, but not locked: sshd (without PAM) refuses locked accounts.
        let _ = Command::new("usermod").args(["-p", "*", name]).output();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("could not create test user {name}");
}

/// Runs `script` with sh as `user`, in `dir`; returns its output.
pub fn sh_as(user: &str, dir: &Path, script: &str) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .current_dir(dir)
        .output()
        .expect("runuser")
}

/// `rsync -a --partial EXTRA SRC DEST/`.
pub fn rsync_partial(extra: &[&str], src: &Path, dest: &Path) -> Command {
    let mut c = Command::new("rsync");
    c.args(["-a", "--partial"])
        .args(extra)
        .arg(src)
        .arg(format!("{}/", dest.display()));
    c
}

/// Writes a 6 MB file into `dir` (too big for rsync at `--bwlimit=1500` to send in a blink).
pub fn rsync_payload(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&path, &data).expect("write payload");
    path
}

/// Starts `rsync --partial` of `src` into `dest`, slowed down, interrupts it with SIGINT
/// part-way, and returns the size of what it kept under the final name (asserted partial).
pub fn interrupted_rsync(src: &Path, dest: &Path) -> u64 {
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let first = KillOnDrop(
        rsync_partial(&["--bwlimit=1500"], src, dest)
            .spawn()
            .expect("rsync"),
    );
    wait_for("rsync to write something", Duration::from_secs(20), || {
        fs::read_dir(dest)
            .ok()?
            .filter_map(Result::ok)
            .any(|e| fs::metadata(e.path()).is_ok_and(|m| m.len() > 500_000))
            .then_some(())
    });
    // SAFETY: signalling our own child, which KillOnDrop has not reaped yet.
    unsafe { libc::kill(first.0.id() as i32, libc::SIGINT) };
    drop(first);
    let partial = dest.join(src.file_name().expect("file name"));
    let size = wait_for(
        "rsync --partial to keep the partial file",
        Duration::from_secs(10),
        || fs::metadata(&partial).ok().map(|m| m.len()),
    );
    let full = fs::metadata(src).expect("source").len();
    assert!(
        size > 0 && size < full,
        "expected a partial file, got {size} of {full} bytes"
    );
    size
}

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

/// A child process killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's opentracker on 127.0.0.1:`port`, serving the whitelisted `infohashes` (hex);
/// configured in `dir`, killed on drop.
pub fn opentracker(dir: &Path, port: u16, infohashes: &[&str]) -> KillOnDrop {
    let list = dir.join("whitelist");
    fs::write(&list, infohashes.join("\n") + "\n").expect("whitelist");
    let conf = dir.join("ot.conf");
    fs::write(
        &conf,
        format!(
            "listen.tcp_udp 127.0.0.1:{port}\naccess.whitelist {}\n",
            list.display()
        ),
    )
    .expect("opentracker config");
    let child = Command::new("opentracker")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn opentracker");
    let guard = KillOnDrop(child);
    wait_for("opentracker to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    guard
}

/// Runs `cmd` under coreutils `timeout`: no client, packaging tool or repofs command may hang
/// a test. Five minutes, then TERM, then KILL; a timed-out command exits 124.
pub fn output_bounded(cmd: &mut Command) -> Output {
    let mut t = Command::new("timeout");
    t.args(["--kill-after=10", "300"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        t.current_dir(d);
    }
    t.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// [`output_bounded`], asserting success; returns stdout.
pub fn run_bounded(cmd: &mut Command) -> String {
    let out = output_bounded(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with a pseudo-terminal as its stdin, stdout and stderr (util-linux `script`),
/// bounded like [`output_bounded`]; returns everything it wrote to the terminal.
pub fn on_a_terminal(cmd: &Command) -> (std::process::ExitStatus, String) {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect();
    let mut t = Command::new("script");
    t.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let out = output_bounded(t.env("TERM", "xterm"));
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A private apt root: its own config, lists, cache and dpkg database; one source line
/// `deb [signed-by=KEY] URL ./` (without a key, `trusted=yes`: only for apt as an oracle over
/// an unsigned apt-ftparchive repository); nothing of the host's apt configuration or keys.
pub struct AptRoot {
    pub root: PathBuf,
    conf: PathBuf,
}

impl AptRoot {
    pub fn new(parent: &Path, url: &str, key: Option<&Path>) -> AptRoot {
        let root = parent.to_path_buf();
        for d in [
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/log/apt",
        ] {
            fs::create_dir_all(root.join(d)).expect("apt root");
        }
        fs::write(root.join("var/lib/dpkg/status"), "").expect("dpkg status");
        let trust = match key {
            Some(k) => format!("signed-by={}", k.display()),
            None => "trusted=yes".to_string(),
        };
        fs::write(
            root.join("etc/apt/sources.list"),
            format!("deb [{trust}] {url} ./\n"),
        )
        .expect("sources.list");
        let r = root.display();
        let conf = root.join("apt.conf");
        fs::write(
            &conf,
            format!(
                "Dir::Etc \"{r}/etc/apt\";\nDir::State \"{r}/var/lib/apt\";\n\
                 Dir::State::status \"{r}/var/lib/dpkg/status\";\nDir::Cache \"{r}/var/cache/apt\";\n\
                 Dir::Log \"{r}/var/log/apt\";\nDebug::NoLocking \"true\";\n\
                 APT::Sandbox::User \"root\";\nAcquire::Languages \"none\";\n\
                 APT::Install-Recommends \"false\";\nDpkg::Use-Pty \"false\";\n\
                 DPkg::Options {{ \"--root={r}\"; \"--admindir={r}/var/lib/dpkg\"; \"--force-script-chrootless\"; }};\n"
            ),
        )
        .expect("apt.conf");
        AptRoot { root, conf }
    }

    /// `apt-get ARGS` in this root, bounded.
    pub fn apt_get(&self, args: &[&str]) -> Output {
        output_bounded(
            Command::new("apt-get")
                .args(args)
                .env("APT_CONFIG", &self.conf)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    }
}

/// The unprivileged user makepkg runs as (it refuses root).
pub const MAKEPKG_USER: &str = "repofs-makepkg";

/// What a PKGBUILD says beyond name and version: extra lines (`depends=`, `provides=`, ...),
/// the body of `package()`, and an optional `install=` scriptlet file's text.
#[derive(Default)]
pub struct PkgBuild<'a> {
    pub lines: &'a str,
    pub package: &'a str,
    pub install: Option<&'a str>,
}

/// makepkg of `NAME-VERSION-1-any.pkg.tar.zst` under `work/arch/` (`work` must be enterable
/// by other users). An empty `package` body installs one empty file.
pub fn makepkg_with(work: &Path, name: &str, version: &str, b: &PkgBuild) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    test_user(MAKEPKG_USER);
    let d = work.join("arch").join(format!("{name}-{version}"));
    fs::create_dir_all(&d).expect("mkdir");
    fs::set_permissions(work.join("arch"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let body = if b.package.is_empty() {
        format!("install -Dm644 /dev/null \"$pkgdir/usr/share/{name}/x\"")
    } else {
        b.package.to_string()
    };
    let mut lines = b.lines.to_string();
    if let Some(text) = b.install {
        fs::write(d.join(format!("{name}.install")), text).expect("install file");
        lines += &format!("\ninstall={name}.install");
    }
    fs::write(
        d.join("PKGBUILD"),
        format!(
            "pkgname={name}\npkgver={version}\npkgrel=1\npkgdesc='repofs test'\narch=(any)\n\
             license=(MIT)\noptions=(!strip !debug)\n{lines}\npackage() {{\n{body}\n}}\n"
        ),
    )
    .expect("PKGBUILD");
    run_bounded(Command::new("chown").arg("-R").arg(MAKEPKG_USER).arg(&d));
    run_bounded(
        Command::new("runuser")
            .args(["-u", MAKEPKG_USER, "--", "env"])
            .arg(format!("HOME={}", d.display()))
            .arg("PKGEXT=.pkg.tar.zst")
            .arg("SOURCE_DATE_EPOCH=1700000000")
            .arg(format!("PKGDEST={}", d.display()))
            .args(["makepkg", "--nodeps", "--noconfirm", "--noprogressbar"])
            .current_dir(&d),
    );
    d.join(format!("{name}-{version}-1-any.pkg.tar.zst"))
}

/// makepkg of a package that holds one empty file and `lines` in its PKGBUILD.
pub fn makepkg(work: &Path, name: &str, version: &str, lines: &str) -> PathBuf {
    makepkg_with(
        work,
        name,
        version,
        &PkgBuild {
            lines,
            ..Default::default()
        },
    )
}

/// `npm pack` of a directory holding `manifest` as package.json and `files` (path, text).
pub fn npm_pack_with(work: &Path, manifest: &Value, files: &[(&str, &str)]) -> PathBuf {
    let name = manifest["name"].as_str().expect("name");
    let version = manifest["version"].as_str().expect("version");
    let d = work.join("npm").join(format!("{name}-{version}"));
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("package.json"), manifest.to_string()).expect("package.json");
    for (p, text) in files {
        let full = d.join(p);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(full, text).expect("file");
    }
    let out = run_bounded(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(work)
            .current_dir(&d)
            .env("npm_config_cache", work.join("npm-cache"))
            .env("npm_config_update_notifier", "false"),
    );
    work.join(out.trim())
}
