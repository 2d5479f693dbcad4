//! Mirrors that follow the primary's signed index (`repofsd --upstream`): real repofsd
//! processes on loopback, real mounts, and a counting HTTP proxy between a mirror and its
//! upstream that can also serve tampered answers.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{
    clients::*, digest::*, keys::*, mirror::*, mount::*, net::*, process::*, repo::*, site::*,
    world::*,
};

mod from_empty;

/// A primary with `--listen`, and its exported repository key.
struct Primary {
    site: Site,
    port: u16,
    key: PathBuf,
}

impl Primary {
    fn start() -> Primary {
        let port = free_port();
        let site = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
        let key = site.w.work.join("repo-key.asc");
        fs::write(&key, site.w.repo.repofs(&["keys", "export-repo"])).unwrap();
        let p = Primary { site, port, key };
        p.wait_root_generation(1);
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The root body the primary last signed.
    fn root(&self) -> serde_json::Value {
        let body = fs::read(self.site.w.repo.root.join("index/root.json")).unwrap_or_default();
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    }

    fn wait_root_generation(&self, g: i64) {
        wait_for("the primary to sign the root", SYNC, || {
            (self.root()["generation"].as_i64() >= Some(g)).then_some(())
        });
    }

    /// Publishes NAME-VERSION.tar.gz into hello/ through the mount and waits for the root.
    fn publish(&self, name: &str, version: &str) {
        let before = self.root()["generation"].as_i64().unwrap_or(0);
        let files = self.site.w.triplet(ALICE, name, version, "hello", "");
        self.site.w.upload("", &files);
        self.site.daemon.wait_published(
            &self.site.w.repo,
            "hello",
            &format!("{name}-{version}.tar.gz"),
        );
        self.wait_root_generation(before + 1);
    }
}

impl Primary {
    /// Publishes NAME-VERSION.tar.xz (which gets a seekable twin, a derived object).
    fn publish_xz(&self, name: &str, version: &str) {
        let before = self.root()["generation"].as_i64().unwrap_or(0);
        let d = self.site.w.scratch(&format!("{name}-{version}-xz"));
        sh(
            &d,
            &format!(
                "mkdir -p {name}-{version}/src && head -c 3000000 /dev/urandom | base64 > \
                 {name}-{version}/src/data.txt && echo hi > {name}-{version}/README && \
                 tar cJf {name}-{version}.tar.xz {name}-{version}"
            ),
        );
        let file = format!("{name}-{version}.tar.xz");
        let tarball = d.join(&file);
        let sig = self.site.w.gpg.sign(ALICE, &tarball, true, &[]);
        let dir_file = directive(
            &self.site.w.gpg,
            ALICE,
            &d,
            &file,
            &format!("version: 1.2\ndirectory: hello\nfilename: {file}\n"),
        );
        self.site.w.upload("", &[tarball, sig, dir_file]);
        self.site
            .daemon
            .wait_published(&self.site.w.repo, "hello", &file);
        self.wait_root_generation(before + 1);
    }
}

/// Every seekable twin (derived object) the catalog of `repo` holds, by file id: file id,
/// sha256, size, infohash and info dictionary (hex; "NULL" before it has a torrent), and how
/// many frames it has.
fn derived_rows(repo: &Repo) -> Vec<Vec<String>> {
    let c = repo.catalog();
    let without_torrent: HashMap<i64, u64> = c
        .derived_without_torrent()
        .unwrap()
        .into_iter()
        .map(|(id, _, size)| (id, size))
        .collect();
    let mut ids: Vec<i64> = c.files(true).unwrap().iter().map(|f| f.id).collect();
    ids.sort();
    let mut rows = Vec::new();
    for id in ids {
        let Some(d) = c.derived(id).unwrap() else {
            continue;
        };
        let (size, info_hash, info) = match c.object_torrent(&d.sha256).unwrap() {
            Some((info_hash, info, size)) => (size, info_hash, hex(&info)),
            None => (without_torrent[&id], "NULL".into(), "NULL".into()),
        };
        rows.push(vec![
            id.to_string(),
            d.sha256,
            size.to_string(),
            info_hash,
            info,
            d.frames.len().to_string(),
        ]);
    }
    rows
}

/// A mirror: its own root, repofsd in mirror mode, and a mount.
/// Dropped mount first, repository (its temporary directory) last.
struct Mirror {
    mnt: Mount,
    daemon: Daemon,
    repo: Repo,
    upstream: String,
    key: PathBuf,
    listen: Option<u16>,
}

impl Mirror {
    fn start(upstream: &str, key: &Path, listen: Option<u16>) -> Mirror {
        let repo = Repo::new();
        let daemon = start_mirror_daemon(&repo, upstream, key, listen);
        let mnt = Mount::start(&repo);
        Mirror {
            repo,
            daemon,
            mnt,
            upstream: upstream.into(),
            key: key.into(),
            listen,
        }
    }

    fn setting(&self, key: &str) -> Option<String> {
        self.repo.catalog().setting(key).ok().flatten()
    }

    fn generation(&self) -> Option<i64> {
        self.setting("index_generation")
            .and_then(|g| g.parse().ok())
    }

    fn wait_generation(&self, g: i64) {
        wait_for_or(SYNC, || (self.generation() >= Some(g)).then_some(())).unwrap_or_else(|| {
            panic!(
                "mirror did not reach generation {g} (at {:?}, state {:?} {:?}); log:\n{}",
                self.generation(),
                self.setting("upstream_state"),
                self.setting("upstream_error"),
                self.daemon.log()
            )
        })
    }

    /// Waits until the mirror records a refusal with `code`.
    fn wait_refused(&self, code: &str) {
        wait_for_or(SYNC, || {
            let refused = self.setting("upstream_state").as_deref() == Some("refused");
            let error = self.setting("upstream_error").unwrap_or_default();
            (refused && error.starts_with(code)).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "mirror did not refuse with {code}: {:?} {:?}; log:\n{}",
                self.setting("upstream_state"),
                self.setting("upstream_error"),
                self.daemon.log()
            )
        })
    }
}

/// `ls -lR --time-style=full-iso` of `rel` below a mount.
fn ls_lr(mnt: &Path, rel: &str) -> String {
    let out = Command::new("ls")
        .args(["-lR", "--time-style=full-iso", rel])
        .current_dir(mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "ls -lR {rel}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Every generated file in dists/ (checksums, index.json, .torrent), by path, with its bytes.
fn generated_files(mnt: &Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![mnt.join("dists")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let t = e.file_type().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file()
                && (name.ends_with(".torrent") || name.ends_with("SUMS") || name.ends_with(".json"))
            {
                let rel = p.strip_prefix(mnt).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The mirror's views equal the primary's: listings of dists/ and pkgs/ (modes, sizes,
/// times, names) and every generated file byte for byte. A listing the kernel keeps may lag
/// a publication by the views' attribute time (a second): the listings get a few to agree.
fn assert_same_views(primary: &Mount, mirror: &Mount) {
    for rel in ["dists", "pkgs"] {
        let agree = wait_for_or(std::time::Duration::from_secs(5), || {
            (ls_lr(&primary.dir, rel) == ls_lr(&mirror.dir, rel)).then_some(())
        });
        if agree.is_none() {
            assert_eq!(
                ls_lr(&primary.dir, rel),
                ls_lr(&mirror.dir, rel),
                "{rel}/ differs"
            );
        }
    }
    let (p, m) = (generated_files(&primary.dir), generated_files(&mirror.dir));
    assert!(!p.is_empty());
    assert_eq!(
        p.keys().collect::<std::collections::BTreeSet<_>>(),
        m.keys().collect()
    );
    for (k, v) in &p {
        assert!(m[k] == *v, "{k} differs");
    }
}

/// Answers given instead of the upstream's, by request path: (status, body).
type Overrides = HashMap<String, (u16, Vec<u8>)>;

/// A loopback HTTP proxy in front of an upstream, one request per connection, that records
/// each request's path and response size and can answer a path with given bytes instead.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<(String, usize)>>>,
    overrides: Arc<Mutex<Overrides>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let overrides: Arc<Mutex<Overrides>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, o, s) = (log.clone(), overrides.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = Proxy::serve(c, upstream_port, &l, &o);
                }
            }
        });
        Proxy {
            port,
            log,
            overrides,
            stop,
            thread: Some(thread),
        }
    }

    fn serve(
        mut c: TcpStream,
        upstream_port: u16,
        log: &Mutex<Vec<(String, usize)>>,
        overrides: &Mutex<Overrides>,
    ) -> std::io::Result<()> {
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if c.read(&mut byte)? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let answer = match overrides.lock().unwrap().get(&path) {
            Some((status, body)) => {
                let mut a = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                a.extend_from_slice(body);
                a
            }
            None => {
                let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
                up.set_read_timeout(Some(Duration::from_secs(10)))?;
                write!(
                    up,
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{upstream_port}\r\nConnection: close\r\n\r\n"
                )?;
                let mut a = Vec::new();
                up.read_to_end(&mut a)?;
                a
            }
        };
        log.lock().unwrap().push((path, answer.len()));
        // The answer carries the upstream's own headers; we close after it.
        c.write_all(&answer)?;
        c.shutdown(std::net::Shutdown::Both)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn take_log(&self) -> Vec<(String, usize)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn set(&self, path: &str, body: Vec<u8>) {
        self.overrides
            .lock()
            .unwrap()
            .insert(path.into(), (200, body));
    }

    fn not_found(&self, path: &str) {
        self.overrides
            .lock()
            .unwrap()
            .insert(path.into(), (404, b"no".to_vec()));
    }

    fn clear(&self) {
        self.overrides.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Objects fetched, by hash, in a proxy log.
fn objects(log: &[(String, usize)]) -> Vec<(String, usize)> {
    log.iter()
        .filter_map(|(p, n)| {
            p.strip_prefix("/index/objects/")
                .map(|h| (h.to_string(), *n))
        })
        .collect()
}

#[test]
fn a_publication_reaches_two_mirrors_and_only_its_delta_travels() {
    let primary = Primary::start();
    let proxy = Proxy::start(primary.port);
    // Mirror 1 syncs from the primary (through the counting proxy) and serves the index
    // again; mirror 2 syncs from mirror 1.
    let m1_port = free_port();
    let m1 = Mirror::start(&proxy.url(), &primary.key, Some(m1_port));
    let m2 = Mirror::start(&format!("http://127.0.0.1:{m1_port}"), &primary.key, None);
    for m in [&m1, &m2] {
        m.wait_generation(1);
        assert!(!m.mnt.path("incoming").exists(), "a mirror shows incoming/");
        assert_eq!(m.setting("upstream_state").as_deref(), Some("ok"));
        assert_same_views(&primary.site.mnt, &m.mnt);
    }
    let first = objects(&proxy.take_log());
    let snapshot = primary.root()["snapshot"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        first.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        vec![snapshot.as_str()],
        "a mirror from empty fetches the snapshot only"
    );

    primary.publish("second", "2.0");
    let generation = primary.root()["generation"].as_i64().unwrap();
    for m in [&m1, &m2] {
        m.wait_generation(generation);
        assert!(m.mnt.path("dists/hello/second-2.0.tar.gz").exists());
        assert!(m.mnt.path("pkgs/second/2.0").is_dir());
        assert_same_views(&primary.site.mnt, &m.mnt);
    }
    // The incremental sync was one request for everything since generation 1, which carried
    // the new generation's delta and nothing else (polls of the small root aside).
    let log = proxy.take_log();
    let head = primary.root()["head"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let other: Vec<_> = log.iter().filter(|(p, _)| p != "/index/root.asc").collect();
    assert_eq!(
        other.iter().map(|o| o.0.as_str()).collect::<Vec<_>>(),
        vec!["/index/since/1"],
        "{log:?}"
    );
    assert!(m1.repo.root.join("index/objects").join(&head).is_file());
    let delta_bytes = other[0].1;
    let snapshot_bytes = first[0].1;
    let head_size = fs::metadata(primary.site.w.repo.root.join("index/objects").join(&head))
        .unwrap()
        .len() as usize;
    eprintln!("snapshot {snapshot_bytes} bytes, since/1 {delta_bytes} bytes, delta {head_size}");
    assert!(
        delta_bytes < head_size + 1024,
        "since/1 answered {delta_bytes} bytes for a {head_size}-byte delta"
    );
    assert!(
        head_size < 64 << 10,
        "delta of one package is {head_size} bytes"
    );

    // A package with a seekable twin: the twin (a derived object) and its frames replicate,
    // and the twin has a torrent a stock client verifies against the twin's bytes.
    primary.publish_xz("twin", "1.0");
    let generation = primary.root()["generation"].as_i64().unwrap();
    let want = derived_rows(&primary.site.w.repo);
    assert_eq!(want.len(), 1, "{want:?}");
    assert_ne!(want[0][3], "NULL", "the twin has no torrent");
    for m in [&m1, &m2] {
        m.wait_generation(generation);
        assert_same_views(&primary.site.mnt, &m.mnt);
        assert_eq!(derived_rows(&m.repo), want);
    }
    let (twin_sha, info_hash) = (&want[0][1], &want[0][3]);
    let d = primary.site.w.scratch("twin-torrent");
    let torrent = d.join("twin.torrent");
    let got = Command::new("curl")
        .args(["-sSf", "-m", "20", "-o"])
        .arg(&torrent)
        .arg(format!("{}/torrents/{info_hash}.torrent", primary.url()))
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    let data = d.join("data");
    fs::create_dir_all(&data).unwrap();
    let object = primary.site.w.repo.root.join("store/objects");
    fs::copy(
        object.join(&twin_sha[..2]).join(twin_sha),
        data.join(format!("{twin_sha}.tar.zst")),
    )
    .unwrap();
    assert!(aria2c_verifies(&torrent, &data));
}

#[test]
fn bad_roots_and_objects_are_refused_and_the_view_kept() {
    let primary = Primary::start();
    let proxy = Proxy::start(primary.port);
    let m = Mirror::start(&proxy.url(), &primary.key, None);
    m.wait_generation(1);
    let old_root = fs::read(primary.site.w.repo.root.join("index/root.asc")).unwrap();
    primary.publish("second", "2.0");
    m.wait_generation(2);
    let view = ls_lr(&m.mnt.dir, "dists");

    // A root of an older generation, properly signed.
    proxy.set("/index/root.asc", old_root.clone());
    m.wait_refused("rollback");
    assert_eq!(m.generation(), Some(2));

    // A tampered body: the signature no longer matches.
    let current = fs::read(primary.site.w.repo.root.join("index/root.asc")).unwrap();
    let tampered = String::from_utf8(current.clone()).unwrap().replacen(
        "\"generation\": 2",
        "\"generation\": 9",
        1,
    );
    assert!(tampered.as_bytes() != current.as_slice());
    proxy.set("/index/root.asc", tampered.into_bytes());
    m.wait_refused("bad-signature");

    // A well-formed root signed by another key (Alice's, trusted for uploads, not for the
    // index).
    let body = fs::read_to_string(primary.site.w.repo.root.join("index/root.json")).unwrap();
    let body = body.replace("\"generation\": 2", "\"generation\": 9");
    let forged = primary.site.w.work.join("forged.asc");
    primary.site.w.gpg.clearsign(ALICE, &body, &forged, &[]);
    proxy.set("/index/root.asc", fs::read(&forged).unwrap());
    m.wait_refused("wrong-key");
    assert_eq!(m.generation(), Some(2));
    assert_eq!(ls_lr(&m.mnt.dir, "dists"), view);

    // Signed by the repository key itself (imported into gpg from the primary's secret), but
    // past its expiry: a replayed root is refused too (freeze attacks).
    let gpg = &primary.site.w.gpg;
    let imported = gpg.run(&[
        "--batch",
        "--import",
        primary
            .site
            .w
            .repo
            .root
            .join("repo-key.pgp")
            .to_str()
            .unwrap(),
    ]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let root: serde_json::Value = serde_json::from_str(&body).unwrap();
    let past = root["created"].as_i64().unwrap() - 10;
    let stale = body.replace(
        &format!("\"expires\": {}", root["expires"]),
        &format!("\"expires\": {past}"),
    );
    assert_ne!(stale, body);
    let expired = primary.site.w.work.join("expired.asc");
    gpg.clearsign("repofs repository", &stale, &expired, &[]);
    proxy.set("/index/root.asc", fs::read(&expired).unwrap());
    m.wait_refused("expired");
    assert_eq!(m.generation(), Some(2));
    assert_eq!(ls_lr(&m.mnt.dir, "dists"), view);

    // A delta whose bytes do not match the hash the root names: in the one-request form,
    // then (that form gone) fetched by hash.
    proxy.clear();
    primary.publish("third", "3.0");
    let head = primary.root()["head"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let garbage = b"not the delta".to_vec();
    let mut framed = format!("{head} {}\n", garbage.len()).into_bytes();
    framed.extend_from_slice(&garbage);
    proxy.set("/index/since/2", framed);
    m.wait_refused("bad-hash");
    assert_eq!(m.generation(), Some(2));
    proxy.not_found("/index/since/2");
    proxy.set(&format!("/index/objects/{head}"), garbage);
    proxy.take_log();
    m.wait_refused("bad-hash");
    wait_for("a fetch by hash", SYNC, || {
        objects(&proxy.take_log())
            .iter()
            .any(|o| o.0 == head)
            .then_some(())
    });
    assert_eq!(m.generation(), Some(2));
    assert_eq!(ls_lr(&m.mnt.dir, "dists"), view);

    // The genuine index again: the mirror catches up.
    proxy.clear();
    m.wait_generation(3);
    assert_same_views(&primary.site.mnt, &m.mnt);
}

#[test]
fn a_mirror_keeps_its_index_when_the_upstream_goes_and_across_restarts() {
    let mut primary = Primary::start();
    let mut m = Mirror::start(&primary.url(), &primary.key, None);
    primary.publish("second", "2.0");
    m.wait_generation(2);
    let dists = ls_lr(&m.mnt.dir, "dists");
    let pkgs = ls_lr(&m.mnt.dir, "pkgs");

    assert!(primary.site.daemon.terminate().success());
    wait_for_or(SYNC, || {
        (m.setting("upstream_state").as_deref() == Some("unreachable")).then_some(())
    })
    .unwrap_or_else(|| panic!("no unreachable state; log:\n{}", m.daemon.log()));
    assert_eq!(ls_lr(&m.mnt.dir, "dists"), dists);

    // SIGTERM stops the mirror cleanly; restarted (upstream still gone) it keeps its index.
    let started = Instant::now();
    assert!(m.daemon.terminate().success(), "{}", m.daemon.log());
    assert!(started.elapsed() < Duration::from_secs(5));
    m.daemon = start_mirror_daemon(&m.repo, &m.upstream, &m.key, m.listen);
    assert!(m.mnt.terminate());
    m.mnt = Mount::start(&m.repo);
    assert_eq!(m.generation(), Some(2));
    assert_eq!(ls_lr(&m.mnt.dir, "dists"), dists);
    assert_eq!(ls_lr(&m.mnt.dir, "pkgs"), pkgs);
    assert!(!m.mnt.path("incoming").exists());
}

/// Several generations behind (the mirror was stopped during a burst of publications), a
/// mirror fetches each delta once and applies them together in one transaction.
#[test]
fn a_mirror_several_generations_behind_catches_up_in_one_sync() {
    let primary = Primary::start();
    let mut m = Mirror::start(&primary.url(), &primary.key, None);
    m.wait_generation(1);
    assert!(m.daemon.terminate().success());
    let mut files = Vec::new();
    for i in 0..6 {
        files.extend(
            primary
                .site
                .w
                .triplet(ALICE, &format!("burst{i}"), "1.0", "hello", ""),
        );
    }
    primary.site.w.upload("", &files);
    primary.wait_root_generation(7);
    m.daemon = start_mirror_daemon(&m.repo, &m.upstream, &m.key, None);
    m.wait_generation(7);
    assert!(
        m.daemon
            .log()
            .contains("index synced from=Some(1) generation=7 objects=6 "),
        "{}",
        m.daemon.log()
    );
    assert_same_views(&primary.site.mnt, &m.mnt);
    // `repofs status` and `list` read a mirror's catalog like any other.
    m.repo.repofs(&["status"]);
    assert_eq!(m.repo.list().len(), primary.site.w.repo.list().len());
}

/// The trackers a .torrent names can change at a primary's restart without a new generation;
/// they travel in the signed root, so a mirror's .torrent files follow.
#[test]
fn a_mirror_follows_the_trackers_its_primary_names() {
    let mut primary = Primary::start();
    let m = Mirror::start(&primary.url(), &primary.key, None);
    m.wait_generation(1);
    let torrent = "dists/hello/hello-1.0.tar.gz.torrent";
    assert_eq!(
        fs::read(primary.site.mnt.path(torrent)).unwrap(),
        fs::read(m.mnt.path(torrent)).unwrap()
    );
    assert!(primary.site.daemon.terminate().success());
    primary.site.w.repo.set_config(&format!(
        "{}[distribution]\nlisten = \"127.0.0.1:{}\"\ntrackers = [\"udp://127.0.0.1:9\"]\n",
        Repo::LIVE,
        primary.port
    ));
    primary.site.daemon = Daemon::start(&primary.site.w.repo, &[]);
    wait_for("the root to name the new tracker", SYNC, || {
        (primary.root()["trackers"] == serde_json::json!(["udp://127.0.0.1:9"])).then_some(())
    });
    let want = fs::read(primary.site.mnt.path(torrent)).unwrap();
    assert!(String::from_utf8_lossy(&want).contains("udp://127.0.0.1:9"));
    wait_for_or(SYNC, || {
        (fs::read(m.mnt.path(torrent)).ok()? == want).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the mirror's .torrent did not follow; log:\n{}",
            m.daemon.log()
        )
    });
    assert_eq!(m.generation(), Some(1));
}

/// A mirror's mount and HTTP endpoint run before its first sync (the upstream answers no root
/// yet); the sync from empty then puts the snapshot in the catalog's place (the path becomes
/// a symlink to the adopted file), and both show the tree without a restart.
#[test]
fn a_mount_and_http_running_before_the_first_sync_show_the_adopted_snapshot() {
    let primary = Primary::start();
    let proxy = Proxy::start(primary.port);
    proxy.not_found("/index/root.asc");
    let listen = free_port();
    let repo = Repo::new();
    let daemon = start_mirror_daemon(&repo, &proxy.url(), &primary.key, Some(listen));
    let mnt = Mount::start(&repo);
    let m = Mirror {
        repo,
        daemon,
        mnt,
        upstream: proxy.url(),
        key: primary.key.clone(),
        listen: Some(listen),
    };
    let listing = || {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{listen}/dists/hello/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file = primary.site.w.repo.list()[0]["filename"]
        .as_str()
        .unwrap()
        .to_string();
    // Both read the empty catalog (and hold connections to it).
    assert!(!m.mnt.path("dists/hello").exists());
    assert!(!listing().contains(&file));
    let catalog = m.repo.root.join("catalog.sqlite");
    assert!(!fs::symlink_metadata(&catalog).unwrap().is_symlink());

    proxy.clear();
    m.wait_generation(1);
    assert!(
        fs::symlink_metadata(&catalog).unwrap().is_symlink(),
        "the snapshot was not adopted; log:\n{}",
        m.daemon.log()
    );
    assert_same_views(&primary.site.mnt, &m.mnt);
    assert!(listing().contains(&file), "{}", listing());
    // It keeps following the upstream from there.
    primary.publish("second", "2.0");
    m.wait_generation(primary.root()["generation"].as_i64().unwrap());
    assert_same_views(&primary.site.mnt, &m.mnt);
    assert!(listing().contains("second-2.0.tar.gz"));
}

/// Killed (-9) while putting the snapshot in the catalog's place, just before the rename or
/// just after it, a mirror restarts on a usable catalog — the old empty one or the new one —
/// and reaches the upstream's tree; the mount running all along follows.
#[test]
fn a_mirror_killed_while_adopting_its_snapshot_restarts_on_a_usable_catalog() {
    let primary = Primary::start();
    for failpoint in ["adopt-before-rename", "adopt-after-rename"] {
        let repo = Repo::new();
        let mnt = Mount::start(&repo);
        let mut stopped = Daemon {
            child: repo
                .cmd(REPOFSD)
                .args(["--upstream", &primary.url(), "--poll", "1", "--repo-key"])
                .arg(&primary.key)
                .env("REPOFS_FAILPOINT", failpoint)
                .stdout(std::process::Stdio::null())
                .stderr(fs::File::create(repo.dir.path().join("stopped.log")).unwrap())
                .spawn()
                .unwrap(),
            log: repo.dir.path().join("stopped.log"),
        };
        stopped.wait_log(&format!("failpoint {failpoint} reached"), SYNC);
        stopped.kill9();
        let catalog = repo.root.join("catalog.sqlite");
        assert_eq!(
            fs::symlink_metadata(&catalog).unwrap().is_symlink(),
            failpoint == "adopt-after-rename"
        );
        // Usable as it is: the old empty catalog, or the whole new one.
        let held = repo.catalog().setting("index_generation").unwrap();
        assert_eq!(
            held.is_some(),
            failpoint == "adopt-after-rename",
            "{held:?}"
        );
        let daemon = start_mirror_daemon(&repo, &primary.url(), &primary.key, None);
        let m = Mirror {
            repo,
            daemon,
            mnt,
            upstream: primary.url(),
            key: primary.key.clone(),
            listen: None,
        };
        m.wait_generation(1);
        assert_same_views(&primary.site.mnt, &m.mnt);
        // No adopted file left over beside the catalog but the one it names.
        let adopted: Vec<_> = fs::read_dir(&m.repo.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with("catalog.") && n.ends_with(".sqlite") && n != "catalog.sqlite"
            })
            .collect();
        assert_eq!(adopted.len(), 1, "{adopted:?}");
    }
}
