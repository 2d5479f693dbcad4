//! Stock BitTorrent clients holding only `dists/DIR/FILE.torrent` (issue 19): libtorrent-rasterbar
//! (Debian's `python3-libtorrent`), transmission-cli and btfs, from the primary and from a
//! mirror. aria2c and Transmission from the primary are in torrents.rs.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    clients::*, digest::*, mirror::*, mount::*, net::*, netns::*, process::*, repo::*, site::*,
    world::*,
};

/// A primary on loopback whose torrents name a web seed nobody answers (port 9): what a client
/// gets, it got from the primary's seeder.
fn swarm_only_primary() -> Site {
    let port = free_port();
    Site::with_config(&format!(
        "[distribution]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:9\"\n"
    ))
}

/// `dists/hello/NAME.torrent` in `site`'s mount, once the seeder runs (it makes NAME live
/// when a client asks).
fn seeded_torrent(s: &Site, name: &str) -> std::path::PathBuf {
    wait_seeding(s);
    s.mnt.path(&format!("dists/hello/{name}.torrent"))
}

/// `sha256sum FILE` under a deadline: the digest, or what went wrong.
fn sha256_within(file: &Path, secs: u32) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["--kill-after=5", &secs.to_string(), "sha256sum"])
        .arg(file)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(sum) if out.status.success() => Ok(sum.to_string()),
        _ => Err(format!("{} {}", out.status, stderr(&out))),
    }
}

#[test]
fn libtorrent_downloads_from_the_primary() {
    let s = swarm_only_primary();
    let name = "lt-1.0.bin";
    let blob = publish_random(&s, name, 4);
    let torrent = seeded_torrent(&s, name);
    let dir = s.w.scratch("lt-got");
    let listen = format!("127.0.0.1:{}", free_port());
    let out = output_bounded(&mut libtorrent_get(&torrent, &dir, &listen, 30));
    assert!(
        out.status.success(),
        "libtorrent: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out),
        s.daemon.log()
    );
    assert_eq!(sha256_file(&dir.join(name)), sha256_file(&blob));
    eprintln!(
        "libtorrent from the primary: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

/// btfs mounts the .torrent and a reader of its file gets the published bytes, fetched from
/// the primary's seeder on demand.
#[test]
fn btfs_reads_a_file_from_the_primary() {
    let s = swarm_only_primary();
    let name = "btfs-1.0.bin";
    let blob = publish_random(&s, name, 4);
    let torrent = seeded_torrent(&s, name);
    let d = s.w.scratch("btfs");
    let port = Some(free_port());
    let b = Btfs::mount(&torrent, &d.join("mnt"), &d.join("data"), port, None);
    let started = std::time::Instant::now();
    let got = sha256_within(&b.mnt.join(name), 60);
    eprintln!("btfs read in {:?}", started.elapsed());
    assert_eq!(
        got.as_deref(),
        Ok(sha256_file(&blob).as_str()),
        "btfs read\n{}",
        s.daemon.log()
    );
}

/// btfs as a user runs it (its five default ports, local discovery on), on a host of its own:
/// it finds the primary's seeder through the primary's tracker and reads the file.
#[test]
fn btfs_with_its_defaults_reads_from_a_primary_on_another_host() {
    let mut net = Net::new("1gbit");
    let (ph, ch) = (net.host(1), net.host(2));
    let w = World::new();
    w.repo.set_config(&format!(
        "{}[distribution]\nlisten = \"{ip}:{PORT}\"\npublic_url = \"http://{ip}:9\"\n",
        Repo::LIVE,
        ip = ph.ip
    ));
    let daemon = daemon_in(&ph, &w.repo, &[]);
    let mnt = Mount::start(&w.repo);
    let s = Site { mnt, daemon, w };
    let name = "btfs-2.0.bin";
    let blob = publish_random(&s, name, 4);
    let torrent = seeded_torrent(&s, name);
    let d = s.w.scratch("btfs");
    let b = Btfs::mount(&torrent, &d.join("mnt"), &d.join("data"), None, Some(&ch));
    let started = std::time::Instant::now();
    let got = sha256_within(&b.mnt.join(name), 60);
    eprintln!(
        "btfs (default ports, own host) read in {:?}",
        started.elapsed()
    );
    assert_eq!(
        got.as_deref(),
        Ok(sha256_file(&blob).as_str()),
        "btfs read\n{}",
        s.daemon.log()
    );
}

/// The infohash (hex) transmission-show reads from a .torrent.
fn info_hash(torrent: &Path) -> String {
    let out = Command::new("transmission-show")
        .arg(torrent)
        .output()
        .expect("transmission-show");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Hash: ").map(str::to_string))
        .expect("an infohash")
}

const PORT: u16 = 8080;
const TRACKER_PORT: u16 = 6969;

/// Hosts in network namespaces, as on a LAN (Transmission drops tracker peers on 127.0.0.0/8):
/// a primary whose torrents name opentracker (on the primary's host), a mirror that read the
/// file through its mount, and a client. Then the primary stops, seeder, web seed and index
/// alike: libtorrent and Transmission, holding the mirror's `.torrent` (byte-identical to the
/// primary's), download the file byte-identical from the mirror, Transmission within 30 s, and
/// the mirror counts what it sent them.
#[test]
fn stock_clients_download_from_a_mirror_when_the_primary_is_gone() {
    // Dropped last: every process below is gone before the namespaces are.
    let mut net = Net::new("1gbit");
    let (ph, mh, ch) = (net.host(1), net.host(2), net.host(3));
    let w = World::new();
    w.repo.set_config(&format!(
        "{}[distribution]\nlisten = \"{ip}:{PORT}\"\ntrackers = [\"http://{ip}:{TRACKER_PORT}/announce\"]\n",
        Repo::LIVE,
        ip = ph.ip
    ));
    let daemon = daemon_in(&ph, &w.repo, &[]);
    let mnt = Mount::start(&w.repo);
    let mut p = Site { mnt, daemon, w };
    let name = "mirrored-1.0.bin";
    let size = 4u64 << 20;
    let blob = publish_random(&p, name, 4);
    let want = sha256_file(&blob);
    let torrent = fs::read(p.mnt.path(&format!("dists/hello/{name}.torrent"))).expect("torrent");
    let d = p.w.scratch("client");
    fs::write(d.join("primary.torrent"), &torrent).expect("copy");
    let hash = info_hash(&d.join("primary.torrent"));
    let ot = opentracker_cmd(&p.w.scratch("opentracker"), &ph.ip, TRACKER_PORT, &[&hash]);
    let _ot = KillOnDrop(ph.cmd(&ot).spawn().expect("opentracker"));
    wait_listening(&ph, &ph.ip, TRACKER_PORT);

    let repo = Repo::with_config(Repo::LIVE);
    let key = export_repo_key(&p.w.repo, repo.dir.path());
    let upstream = format!("http://{}:{PORT}", ph.ip);
    let key_arg = key.to_str().expect("utf-8 path");
    let args = [
        "--upstream",
        &upstream,
        "--poll",
        "1",
        "--repo-key",
        key_arg,
    ];
    let daemon = daemon_in(&mh, &repo, &args);
    let listed = p.w.repo.list().len();
    wait_for_or(SYNC, || (repo.list().len() == listed).then_some(()))
        .unwrap_or_else(|| panic!("the mirror never listed the file:\n{}", daemon.log()));
    let mnt = Mount::start(&repo);
    let m = Mirror {
        mnt,
        daemon,
        repo,
        upstream,
        key,
        listen: None,
    };
    // The mirror holds the file: a reader of its mount fetched it.
    let read = sha256_within(&m.mnt.path(&format!("dists/hello/{name}")), 60);
    assert_eq!(read.as_deref(), Ok(want.as_str()), "{}", m.daemon.log());
    let mirrored = fs::read(m.mnt.path(&format!("dists/hello/{name}.torrent"))).expect("torrent");
    assert_eq!(mirrored, torrent, "the mirror's .torrent is the primary's");
    let t = d.join(format!("{name}.torrent"));
    fs::write(&t, &mirrored).expect("copy");

    p.daemon.terminate();

    let lt_dir = d.join("lt");
    let listen = format!("{}:6881", ch.ip);
    let out = output_bounded(&mut ch.cmd(&libtorrent_get(&t, &lt_dir, &listen, 30)));
    assert!(
        out.status.success(),
        "libtorrent from the mirror: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out),
        m.daemon.log()
    );
    assert_eq!(sha256_file(&lt_dir.join(name)), want);
    eprintln!(
        "libtorrent from the mirror: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );

    let tr_dir = d.join("tr");
    let tr = transmission_get(&d.join("tr-conf"), &tr_dir, &t, 51413);
    // Its progress lines say whether it found the mirror at all, should this ever fail.
    let tr_log = d.join("transmission.log");
    let out = fs::File::create(&tr_log).expect("transmission's log");
    let err = out.try_clone().expect("transmission's log");
    let _tr = KillOnDrop(
        ch.cmd(&tr)
            // libtransmission's own trace (announces, handshakes) into the same log.
            .env("TR_DEBUG_FD", "2")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("transmission-cli"),
    );
    let got = tr_dir.join(name);
    let started = std::time::Instant::now();
    wait_for_or(Duration::from_secs(30), || {
        (got.is_file() && sha256_file(&got) == want).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "transmission-cli had no byte-identical file from the mirror in 30 s; its trace of \
             trackers and peers:\n{}\nits output's end:\n{}\nthe mirror:\n{}",
            about_peers(&fs::read_to_string(&tr_log).unwrap_or_default()),
            tail(&fs::read_to_string(&tr_log).unwrap_or_default(), 20),
            m.daemon.log()
        )
    });
    eprintln!(
        "transmission-cli from the mirror: done in {:?}",
        started.elapsed()
    );

    // Sent by the mirror: the primary is gone, and the mirror counts a copy for each client.
    m.status_when("the mirror to count what it sent", |s| {
        s["uploaded_bytes"].as_u64().unwrap_or(0) >= 2 * size
    });
}

/// Transmission's trace about trackers, peers and handshakes (not its bandwidth rounds, which
/// name peers twice a second): its first 40 lines and its last 80.
fn about_peers(text: &str) -> String {
    let about = [
        "announce",
        "tracker",
        "handshake",
        "peer",
        "Peer",
        "Tracker",
        "connect",
    ];
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .filter(|l| !l.starts_with("Progress:") && !l.contains("round-robin"))
        .filter(|l| about.iter().any(|a| l.contains(a)))
        .collect();
    if lines.len() <= 120 {
        return lines.join("\n");
    }
    format!(
        "{}\n…\n{}",
        lines[..40].join("\n"),
        lines[lines.len() - 80..].join("\n")
    )
}

/// The last `n` lines of `text`, a progress line (`\r`) counting as one.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.split(['\n', '\r']).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
