//! One BitTorrent v1 torrent per published file, as `dists/DIR/FILE.torrent`, checked by
//! stock clients (transmission-show reads it, aria2c verifies the file's pieces against it).

use std::fs;
use std::process::Command;

use crate::common::{
    clients::*, digest::*, net::*, old_catalog::*, process::*, repo::*, site::*, world::*,
};

const TRACKERS: &str =
    "[distribution]\ntrackers = [\"http://127.0.0.1:9/announce\", \"udp://127.0.0.1:9\"]\n";

/// transmission-show's report of a .torrent.
fn show(torrent: &std::path::Path) -> String {
    let out = Command::new("transmission-show")
        .arg(torrent)
        .output()
        .unwrap();
    assert!(out.status.success(), "transmission-show: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_published_file_has_a_torrent_that_stock_clients_verify() {
    let s = Site::with_config(TRACKERS);
    let dir = s.mnt.path("dists/hello");
    let torrent = dir.join("hello-1.0.tar.gz.torrent");
    let report = show(&torrent);
    assert!(report.contains("Name: hello-1.0.tar.gz"), "{report}");
    assert!(report.contains("Piece Size: 256.0 KiB"), "{report}");
    assert!(report.contains("http://127.0.0.1:9/announce"), "{report}");
    assert!(report.contains("udp://127.0.0.1:9"), "{report}");
    // The size stat reports is the size read.
    assert_eq!(
        fs::metadata(&torrent).unwrap().len(),
        fs::read(&torrent).unwrap().len() as u64
    );
    assert!(dir.join("hello-1.0.tar.gz.sig.torrent").is_file());

    // A multi-piece file: the published bytes verify, a copy with one byte changed does not.
    let d = s.w.scratch("torrent");
    sh(&d, "head -c 1500000 /dev/urandom > blob-1.0.bin");
    let blob = d.join("blob-1.0.bin");
    let sig = s.w.gpg.sign(ALICE, &blob, false, &[]);
    fs::create_dir_all(s.incoming().join("hello")).unwrap();
    let out = cp(&[&blob, &sig], &s.incoming().join("hello"));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    s.daemon.wait_published(&s.w.repo, "hello", "blob-1.0.bin");
    let torrent = wait_for(
        "the torrent to show",
        std::time::Duration::from_secs(5),
        || {
            let t = dir.join("blob-1.0.bin.torrent");
            t.exists().then_some(t)
        },
    );
    assert!(show(&torrent).contains("Piece Count: 6"));
    let good = d.join("good");
    fs::create_dir_all(&good).unwrap();
    fs::copy(&blob, good.join("blob-1.0.bin")).unwrap();
    assert!(
        aria2c_verifies(&torrent, &good),
        "the published bytes must verify"
    );
    let bad = d.join("bad");
    fs::create_dir_all(&bad).unwrap();
    let mut bytes = fs::read(&blob).unwrap();
    bytes[1_000_000] ^= 0xff;
    fs::write(bad.join("blob-1.0.bin"), bytes).unwrap();
    assert!(
        !aria2c_verifies(&torrent, &bad),
        "a changed byte must fail its piece"
    );
}

/// Files published before torrents existed get theirs when repofsd next starts, the same
/// torrent as publication would have made.
#[test]
fn older_files_get_their_torrents_at_start() {
    let mut s = Site::new();
    let torrent = s.mnt.path("dists/hello/hello-1.0.tar.gz.torrent");
    let made = fs::read(&torrent).unwrap();
    s.daemon.terminate();
    assert_eq!(forget_torrents(&s.w.repo), 2);
    wait_for(
        "the torrent to go",
        std::time::Duration::from_secs(5),
        || (!torrent.exists()).then_some(()),
    );
    s.daemon = Daemon::start(&s.w.repo, &[]);
    s.daemon
        .wait_log("made torrents", std::time::Duration::from_secs(20));
    let again = wait_for(
        "the torrent to return",
        std::time::Duration::from_secs(5),
        || fs::read(&torrent).ok(),
    );
    assert_eq!(again, made);
}

/// Publishes a multi-piece file into dists/hello and returns it with its .torrent in the mount.
fn publish_blob(s: &Site, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let d = s.w.scratch(name);
    sh(&d, &format!("head -c 2000000 /dev/urandom > {name}"));
    let blob = d.join(name);
    let sig = s.w.gpg.sign(ALICE, &blob, false, &[]);
    fs::create_dir_all(s.incoming().join("hello")).unwrap();
    let out = cp(&[&blob, &sig], &s.incoming().join("hello"));
    assert!(out.status.success(), "cp: {}", stderr(&out));
    s.daemon.wait_published(&s.w.repo, "hello", name);
    let torrent = s.mnt.path(&format!("dists/hello/{name}.torrent"));
    wait_for(
        "the torrent to show",
        std::time::Duration::from_secs(5),
        || torrent.exists().then_some(()),
    );
    (blob, torrent)
}

/// aria2c fetches the torrent's file from the swarm into the empty `dir`: the bytes of `blob`.
fn assert_downloads(dir: std::path::PathBuf, torrent: &std::path::Path, blob: &std::path::Path) {
    let name = blob.file_name().unwrap().to_str().unwrap();
    assert_downloads_as(&dir, torrent, name, blob);
}

/// aria2c fetches the torrent's file `name` into the empty `dir`: the bytes of `expected`.
fn assert_downloads_as(
    dir: &std::path::Path,
    torrent: &std::path::Path,
    name: &str,
    expected: &std::path::Path,
) {
    let out = aria2c_downloads(torrent, dir);
    assert!(
        out.status.success(),
        "aria2c: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(sha256_file(&dir.join(name)), sha256_file(expected));
}

fn aria2c_downloads(torrent: &std::path::Path, dir: &std::path::Path) -> std::process::Output {
    fs::create_dir_all(dir).unwrap();
    Command::new("timeout")
        .args(["60", "aria2c", "--seed-time=0", "--enable-dht=false"])
        .args(["--bt-enable-lpd=false", "--enable-peer-exchange=false"])
        .args(["--summary-interval=0", "--console-log-level=warn"])
        .arg("-d")
        .arg(dir)
        .arg(torrent)
        .output()
        .unwrap()
}

/// With no tracker configured, `--listen` answers announces itself and names the primary's
/// seeder, which serves the file straight from the store: a stock client holding only the
/// .torrent downloads it byte-identical, and the store object is untouched.
#[test]
fn a_stock_client_downloads_from_the_primary_through_its_own_tracker() {
    let port = free_port();
    let s = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    let (blob, torrent) = publish_blob(&s, "swarm-1.0.bin");
    let report = show(&torrent);
    assert!(
        report.contains(&format!("http://127.0.0.1:{port}/announce")),
        "{report}"
    );
    let object =
        s.w.repo
            .root
            .join("store/objects")
            .join(&sha256_file(&blob)[..2])
            .join(sha256_file(&blob));
    assert_downloads(s.w.scratch("got"), &torrent, &blob);
    // Seeding never opened the object for writing: still read-only, same bytes.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&object).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(sha256_file(&object), sha256_file(&blob));
}

/// Debian's opentracker as the external tracker: a stock client downloads while the
/// primary's torrent is not live (from the torrent's web seed: opentracker lists no one), and
/// once a peer's handshake makes the torrent live the primary announces to opentracker,
/// which then names it.
#[test]
fn a_stock_client_downloads_through_opentracker() {
    let ot_port = free_port();
    let trackers =
        format!("[distribution]\ntrackers = [\"http://127.0.0.1:{ot_port}/announce\"]\n");
    let mut s = Site::with_config(&trackers);
    let (blob, torrent) = publish_blob(&s, "ot-1.0.bin");
    let report = show(&torrent);
    let hash = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Hash: "))
        .expect("infohash")
        .to_string();
    // opentracker (as Debian builds it) serves whitelisted infohashes only.
    let d = s.w.scratch("opentracker");
    fs::write(d.join("whitelist"), format!("{hash}\n")).unwrap();
    fs::write(
        d.join("ot.conf"),
        format!(
            "listen.tcp_udp 127.0.0.1:{ot_port}\naccess.whitelist {}\n",
            d.join("whitelist").display()
        ),
    )
    .unwrap();
    let ot = Command::new("opentracker")
        .arg("-f")
        .arg(d.join("ot.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ot = KillOnDrop(ot);
    wait_for(
        "opentracker to listen",
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", ot_port)).ok(),
    );
    // Now seed: the primary announces to opentracker when a peer makes the torrent live.
    s.daemon.terminate();
    let http = free_port();
    s.w.repo.set_config(&format!(
        "{}{trackers}listen = \"127.0.0.1:{http}\"\n",
        Repo::LIVE
    ));
    s.daemon = Daemon::start(&s.w.repo, &[]);
    s.daemon
        .wait_log("serving /announce", std::time::Duration::from_secs(20));
    assert_downloads(s.w.scratch("got"), &torrent, &blob);
    let seeder = seeder_addr(&s.daemon);
    let raw: [u8; 20] = hex::decode(&hash).unwrap().try_into().unwrap();
    assert_eq!(handshake(seeder, &raw), Some(raw.to_vec()));
    let mut listed = vec![127, 0, 0, 1];
    listed.extend(seeder.port().to_be_bytes());
    wait_for(
        "opentracker to name the seeder",
        std::time::Duration::from_secs(20),
        || {
            let a = tracker_get("127.0.0.1", ot_port, "announce", &hash, "&port=7005&left=5");
            contains(&a, &listed).then_some(())
        },
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One announce (or scrape) with curl from `from` (`127.0.0.1` or `::1`) to the endpoint on
/// `port`, for infohash `hash` (40 hex digits); the raw bencoded answer.
fn tracker_get(from: &str, port: u16, path: &str, hash: &str, query: &str) -> Vec<u8> {
    let escaped: String = hash
        .as_bytes()
        .chunks(2)
        .map(|h| format!("%{}", std::str::from_utf8(h).unwrap()))
        .collect();
    let host = if from.contains(':') {
        format!("[{from}]")
    } else {
        from.to_string()
    };
    let url = format!("http://{host}:{port}/{path}?info_hash={escaped}{query}");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--interface", from])
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {}", stderr(&out));
    out.stdout
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The built-in tracker serves this repository only: an infohash it does not publish gets a
/// failure reason; peers see each other across IPv4 and IPv6 (`peers6`, BEP 7); a peer that
/// stops announcing expires after two intervals; `/scrape` (BEP 48) counts them.
#[test]
fn the_tracker_serves_published_infohashes_only_and_forgets_silent_peers() {
    let port = free_port();
    let s = Site::with_config(&format!(
        "[distribution]\nlisten = \"[::]:{port}\"\nannounce_interval = \"1s\"\n"
    ));
    let (_blob, torrent) = publish_blob(&s, "tracked-1.0.bin");
    let hash = show(&torrent)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Hash: ").map(str::to_string))
        .expect("infohash");

    let unknown = tracker_get(
        "127.0.0.1",
        port,
        "announce",
        &"ab".repeat(20),
        "&port=7001",
    );
    assert!(
        contains(&unknown, b"failure reason") && contains(&unknown, b"unregistered torrent"),
        "{}",
        String::from_utf8_lossy(&unknown)
    );

    // An IPv6 leecher, then an IPv4 one: the second is told of the first in peers6.
    let first = tracker_get("::1", port, "announce", &hash, "&port=7002&left=5");
    assert!(!contains(&first, b"failure reason"), "{first:?}");
    let second = tracker_get("127.0.0.1", port, "announce", &hash, "&port=7003&left=5");
    let mut v6 = "::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets()
        .to_vec();
    v6.extend_from_slice(&7002u16.to_be_bytes());
    assert!(contains(&second, b"6:peers618:"), "{second:?}");
    assert!(
        contains(&second, &v6),
        "the IPv6 peer is returned: {second:?}"
    );
    let scrape = tracker_get("127.0.0.1", port, "scrape", &hash, "");
    assert!(contains(&scrape, b"10:incompletei2e"), "{scrape:?}");

    // The IPv6 peer falls silent for more than two intervals (2 s); the IPv4 one announces.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let later = tracker_get("127.0.0.1", port, "announce", &hash, "&port=7003&left=5");
    assert!(!contains(&later, &v6), "a silent peer expired: {later:?}");
    assert!(contains(&later, b"10:incompletei1e"), "{later:?}");
}

/// Transmission 3.00 drops tracker peers on 127.0.0.0/8 (libtransmission's `isMartianAddr`),
/// so on loopback it never dials the seeder; the primary's tracker hands its seeder each new
/// leecher, and the seeder dials it. With every other way to find peers off (DHT, LPD, PEX,
/// uTP, port mapping), transmission-cli holding only the .torrent has the file byte-identical
/// within 30 s (a deadline: Transmission itself waits up to its 10 s rechoke before asking).
#[test]
fn transmission_downloads_from_the_primary_on_loopback() {
    let port = free_port();
    let s = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    let (blob, torrent) = publish_blob(&s, "tr-1.0.bin");
    let got_dir = s.w.scratch("tr-got");
    let conf = s.w.scratch("transmission");
    let mut tr = transmission_get(&conf, &got_dir, &torrent, free_port());
    let _client = KillOnDrop(tr.spawn().expect("transmission-cli"));
    let want = sha256_file(&blob);
    let got = got_dir.join("tr-1.0.bin");
    wait_for_or(std::time::Duration::from_secs(30), || {
        (got.is_file() && sha256_file(&got) == want).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "transmission-cli had no byte-identical file in 30 s:\n{}",
            s.daemon.log()
        )
    });
}

/// Objects in the restart test, and each one's size: three pieces, the last of one byte.
const MANY: usize = 64;
const MANY_SIZE: usize = (512 << 10) + 1;

/// Publishes `MANY` random files into dists/hello with `repofsd --once`; returns their names
/// and the store objects' paths, by name.
fn publish_many(w: &World) -> Vec<(String, std::path::PathBuf)> {
    let d = w.scratch("many");
    sh(
        &d,
        &format!("for i in $(seq {MANY}); do head -c {MANY_SIZE} /dev/urandom > many-$i.bin; done"),
    );
    let mut files = Vec::new();
    for i in 1..=MANY {
        let f = d.join(format!("many-{i}.bin"));
        let sig = w.gpg.sign(ALICE, &f, false, &[]);
        files.extend([f, sig]);
    }
    w.upload("hello", &files);
    w.repo.once();
    (1..=MANY)
        .map(|i| {
            let name = format!("many-{i}.bin");
            let sha = sha256_file(&d.join(&name));
            let object = w.repo.root.join("store/objects").join(&sha[..2]).join(&sha);
            assert!(
                object.is_file(),
                "{name} not published: {:#?}",
                w.repo.status()
            );
            (name, object)
        })
        .collect()
}

/// The .torrent of dists/hello/NAME, over the primary's HTTP endpoint, saved in `dir`.
fn fetch_torrent(port: u16, name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let t = dir.join(format!("{name}.torrent"));
    let url = format!("http://127.0.0.1:{port}/dists/hello/{name}.torrent");
    let out = Command::new("curl")
        .args(["-sSf", "--max-time", "10", "-o"])
        .arg(&t)
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {}", stderr(&out));
    t
}

/// A primary restarted over a store of many published objects seeds them again without
/// reading them back (their sha256 was checked at publication; the store never changes an
/// object), and a stock client downloads at once. A file changed behind the store's back is
/// never served: its first read for a peer fails its piece's SHA-1, the object leaves
/// seeding and the tracker with a logged reason, and the other objects are still served.
#[test]
fn a_restarted_primary_seeds_without_reading_the_store_and_never_serves_a_changed_object() {
    let port = free_port();
    let w = World::with_config(&format!(
        "[distribution]\nlisten = \"127.0.0.1:{port}\"\nannounce_interval = \"1s\"\n"
    ));
    let objects = publish_many(&w);
    let store_bytes = (MANY * MANY_SIZE) as u64;
    for (_, o) in &objects {
        uncache(o);
    }
    // The 350 MB debug binary's page faults count in read_bytes too: a machine short of
    // memory may have evicted it since it was built.
    let mut bin = fs::File::open(REPOFSD).unwrap();
    std::io::copy(&mut bin, &mut std::io::sink()).unwrap();
    let daemon = Daemon::start(&w.repo, &[]);
    daemon.wait_log(
        "seeding: every published object",
        std::time::Duration::from_secs(30),
    );
    let read = read_bytes(daemon.child.id());
    eprintln!("the restarted primary read {read} bytes of a {store_bytes}-byte store");
    assert!(
        read < store_bytes / 16,
        "the restarted primary read {read} bytes of a {store_bytes}-byte store"
    );

    // A peer downloads from it at once, byte-identical.
    let d = w.scratch("peer");
    let (name, object) = &objects[0];
    assert_downloads_as(&d.join("got"), &fetch_torrent(port, name, &d), name, object);

    // One object's middle piece changes behind the store's back.
    let (bad_name, bad) = &objects[1];
    let sha = bad.file_name().unwrap().to_str().unwrap().to_string();
    let hash = w.repo.catalog().object_torrent(&sha).unwrap().unwrap().0;
    let mut bytes = fs::read(bad).unwrap();
    bytes[300_000] ^= 0xff;
    fs::write(bad, &bytes).unwrap();
    let torrent = fetch_torrent(port, bad_name, &d);
    let out = Command::new("timeout")
        .args(["20", "aria2c", "--seed-time=0", "--enable-dht=false"])
        .args(["--bt-enable-lpd=false", "--enable-peer-exchange=false"])
        .args(["--bt-stop-timeout=5", "--summary-interval=0"])
        .arg("-d")
        .arg(d.join("bad"))
        .arg(&torrent)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a changed object was downloaded");
    daemon.wait_log("corrupt-object", std::time::Duration::from_secs(10));
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("corrupt-object")).unwrap();
    assert!(line.contains(&sha) && line.contains("piece=1"), "{line}");
    // Out of seeding: the tracker still knows the infohash but no longer names the seeder.
    wait_for(
        "the tracker to drop the seeder",
        std::time::Duration::from_secs(5),
        || {
            let a = tracker_get("127.0.0.1", port, "announce", &hash, "&port=7004&left=5");
            contains(&a, b"8:completei0e").then_some(())
        },
    );

    // The other objects are still served.
    let (name, object) = &objects[2];
    assert_downloads_as(
        &d.join("got2"),
        &fetch_torrent(port, name, &d),
        name,
        object,
    );

    // `repofs status` says so, as text and JSON.
    let path = format!("dists/hello/{bad_name}");
    assert_corrupt_listed(&w, port, &sha, &path, true);

    // A restart vouches for every piece again, but the catalog remembers the object: refused
    // (the tracker names no seeder) before any peer reads it.
    let mut daemon = daemon;
    daemon.terminate();
    let mut daemon = Daemon::start(&w.repo, &[]);
    let s = std::time::Duration::from_secs;
    daemon.wait_log("seeding: every published object", s(30));
    wait_for("the restarted tracker to refuse the object", s(5), || {
        let a = tracker_get("127.0.0.1", port, "announce", &hash, "&port=7004&left=5");
        contains(&a, b"8:completei0e").then_some(())
    });
    daemon.wait_log("still corrupt", s(5));
    assert_corrupt_listed(&w, port, &sha, &path, true);

    // The operator restores the object: the next start checks it, seeds it again, and a peer
    // downloads it.
    bytes[300_000] ^= 0xff;
    fs::write(bad, &bytes).unwrap();
    daemon.terminate();
    let daemon = Daemon::start(&w.repo, &[]);
    daemon.wait_log("matches its sha256 again", s(30));
    assert_corrupt_listed(&w, port, &sha, &path, false);
    assert_downloads_as(
        &d.join("restored"),
        &fetch_torrent(port, bad_name, &d),
        bad_name,
        bad,
    );
}

/// Whether `repofs status` (text and `--json`), `/status.json` and `/metrics` on `port` list
/// store object `sha` (published as `path`) as corrupt: asserts it is `listed`, or not.
fn assert_corrupt_listed(w: &World, port: u16, sha: &str, path: &str, listed: bool) {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}/status.json"))
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("/status.json");
    let objects = j["corrupt_objects"].as_array().expect("corrupt_objects");
    assert_eq!(objects.len(), usize::from(listed), "{j}");
    if listed {
        assert_eq!(objects[0]["sha256"], sha, "{j}");
        assert_eq!(objects[0]["paths"][0], path, "{j}");
        assert_eq!(objects[0]["piece"], 1, "{j}");
    }
    let m = scrape_metrics(port);
    assert_eq!(
        m.get("repofs_corrupt_objects"),
        Some(&f64::from(u8::from(listed)))
    );

    let text = w.repo.repofs(&["status"]);
    let line = text.lines().find(|l| l.starts_with("corrupt"));
    assert_eq!(line.is_some(), listed, "{text}");
    if let Some(line) = line {
        assert!(
            line.contains("corrupt-object") && line.contains(path) && line.contains(sha),
            "{line}"
        );
    }
    let j: serde_json::Value =
        serde_json::from_str(&w.repo.repofs(&["status", "--json"])).expect("status JSON");
    let entry = j
        .as_array()
        .expect("a primary's status is a list")
        .iter()
        .find(|e| e["state"] == "corrupt");
    assert_eq!(entry.is_some(), listed, "{j}");
    if let Some(e) = entry {
        assert_eq!(e["reason"], "corrupt-object", "{e}");
        assert_eq!(e["files"][0], path, "{e}");
    }
}

/// The seeder's peer address, from its start line in the daemon's log.
fn seeder_addr(daemon: &Daemon) -> std::net::SocketAddr {
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("seeding: every published object"))
        .expect("seeder started");
    let at = line.find("addr=Some(").expect("addr in the start line") + "addr=Some(".len();
    line[at..].split(')').next().unwrap().parse().unwrap()
}

/// Sends a BitTorrent handshake for `info_hash` to `seeder`: its answer's infohash, or None
/// if it hung up without answering.
fn handshake(seeder: std::net::SocketAddr, info_hash: &[u8; 20]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&seeder, std::time::Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut hello = b"\x13BitTorrent protocol".to_vec();
    hello.extend([0u8; 8]);
    hello.extend(info_hash);
    hello.extend(b"-XX0001-handshake-01");
    s.write_all(&hello).unwrap();
    let mut answer = [0u8; 68];
    s.read_exact(&mut answer).ok()?;
    Some(answer[28..48].to_vec())
}

/// Torrents (hex) the log says were made live on demand.
fn made_live(daemon: &Daemon) -> Vec<String> {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains("seeding: live on demand"))
        .filter_map(|l| l.split("torrent=").nth(1))
        .map(|t| t.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// A primary of many published objects keeps none live at start: a peer's handshake naming
/// a published infohash makes its torrent live before it is answered, a stock client
/// downloads a file no one asked for before byte-identical, an infohash the repository does
/// not publish is refused, and torrents with no peer stop again (`live_idle`).
#[test]
fn the_primary_makes_torrents_live_on_demand_and_stops_idle_ones() {
    let port = free_port();
    let w = World::with_config(&format!(
        "[distribution]\nlisten = \"127.0.0.1:{port}\"\nannounce_interval = \"1s\"\nlive_idle = \"2s\"\n"
    ));
    let objects = publish_many(&w);
    let daemon = Daemon::start(&w.repo, &[]);
    let s = std::time::Duration::from_secs;
    daemon.wait_log("seeding: every published object", s(30));
    let seeder = seeder_addr(&daemon);
    std::thread::sleep(s(1));
    assert_eq!(
        made_live(&daemon),
        Vec::<String>::new(),
        "nothing live at start"
    );

    // An unknown infohash: the handshake is refused, nothing made live.
    assert_eq!(
        handshake(seeder, &[7u8; 20]),
        None,
        "unknown infohash answered"
    );

    // A published one, never live: answered with its own infohash, made live for it.
    let sha = |o: &std::path::Path| o.file_name().unwrap().to_str().unwrap().to_string();
    let hash_of =
        |o: &std::path::Path| w.repo.catalog().object_torrent(&sha(o)).unwrap().unwrap().0;
    let first = hash_of(&objects[5].1);
    let raw: [u8; 20] = hex::decode(&first).unwrap().try_into().unwrap();
    assert_eq!(handshake(seeder, &raw), Some(raw.to_vec()));
    assert_eq!(made_live(&daemon), std::slice::from_ref(&first));

    // A stock client holding only the .torrent downloads another, byte-identical.
    let d = w.scratch("peer");
    let (name, object) = &objects[9];
    assert_downloads_as(&d.join("got"), &fetch_torrent(port, name, &d), name, object);
    let mut live = made_live(&daemon);
    live.sort();
    live.dedup();
    let mut want = vec![first, hash_of(object)];
    want.sort();
    assert_eq!(
        live, want,
        "only the torrents peers asked for were made live"
    );

    // With no peers left, both stop; a new handshake makes one live again.
    wait_for("the idle torrents to stop", s(20), || {
        let log = daemon.log();
        let last = log.lines().rfind(|l| l.contains("idle torrents stopped"))?;
        last.contains("live=0").then_some(())
    });
    assert_eq!(handshake(seeder, &raw), Some(raw.to_vec()));
}
