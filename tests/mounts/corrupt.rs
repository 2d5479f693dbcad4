//! Bytes changed on disk behind repofs's back: a mirror's cached piece that no longer matches
//! its SHA-1 is never served, and is fetched again (`fetch::lazy::repair`). The primary's side
//! (a store object refused from seeding) is `torrents::a_restarted_primary_…`.

use std::fs;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use serde_json::Value;

use crate::common::{clients::*, digest::*, mirror::*, net::*, process::*, site::*};

/// Where the mirror's session takes peers, from its start line in the daemon's log.
fn mirror_peer_addr(log: &str) -> std::net::SocketAddr {
    let line = log
        .lines()
        .rfind(|l| l.contains("mirror fetch service"))
        .expect("the fetch service started");
    let at = line.find("addr=Some(").expect("addr in the start line") + "addr=Some(".len();
    line[at..].split(')').next().unwrap().parse().unwrap()
}

/// A piece of an object in a mirror's cache changed on disk while the mirror was stopped (bit
/// rot, a stray write). The restarted mirror vouches for its cache without reading it; the
/// first read of that piece for a peer finds it bad: the peer never gets those bytes, the
/// mirror fetches the piece again and seeds it, a read through the mount returns the
/// published bytes, and the log and `repofs status` (text, `--json`, `/status.json`) and
/// `/metrics` say so. Then the same for a piece changed while the mirror runs.
#[test]
fn a_corrupt_cached_piece_is_never_served_and_is_fetched_again() {
    let (p, port) = primary();
    let blob = publish_random(&p, "rot-1.0.bin", 2);
    let sha = sha256_file(&blob);
    wait_seeding(&p);
    let mport = free_port();
    let mut m = Mirror::start_listening(&p, port, "", Some(mport));
    // Into the cache without the mount reading it (its page cache stays empty).
    m.repo.repofs(&["fetch", "dists/hello/rot-1.0.bin"]);
    let complete = m.repo.root.join("mirror/complete").join(&sha);
    wait_for(
        "the object complete in the cache",
        Duration::from_secs(30),
        || complete.exists().then_some(()),
    );

    m.daemon.terminate();
    let good = fs::read(&blob).unwrap();
    let at = PIECE + 1000; // piece 1, in its first block
    flip(&complete, at);
    m.daemon = start_mirror_daemon(&m.repo, &m.upstream, &m.key, m.listen);
    m.daemon
        .wait_log("Initial check results", Duration::from_secs(15));

    // A peer asks the mirror for piece 1: refused.
    let hash: [u8; 20] = hex::decode(info_hash(&m.repo, "rot-1.0.bin"))
        .unwrap()
        .try_into()
        .unwrap();
    let peer = mirror_peer_addr(&m.daemon.log());
    let got = ask_for_block(peer, &hash, 1, Duration::from_secs(10));
    assert!(
        got.as_deref()
            != Some(
                &{
                    let mut bad = good[PIECE..PIECE + 16384].to_vec();
                    bad[at - PIECE] ^= 0xff;
                    bad
                }[..]
            ),
        "the mirror served the changed bytes"
    );
    m.daemon.wait_log(
        "corrupt cached piece fetched again",
        Duration::from_secs(30),
    );
    let log = m.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("corrupt-cache") && l.contains("no longer served"))
        .expect("the corrupt piece logged");
    assert!(line.contains(&sha) && line.contains("piece=1"), "{line}");

    // The mount reads the published bytes; the cache holds them again, whole.
    let read = fs::read(m.mnt.path("dists/hello/rot-1.0.bin")).unwrap();
    assert!(read == good, "the mount read other bytes");
    wait_for("the object complete again", Duration::from_secs(30), || {
        complete.exists().then_some(())
    });
    assert_eq!(sha256_file(&complete), sha);

    assert_repair_reported(&m, mport, &sha);

    // And it seeds the piece again: a peer gets the published bytes.
    let peer = mirror_peer_addr(&m.daemon.log());
    assert_eq!(
        ask_for_block(peer, &hash, 1, Duration::from_secs(20)).as_deref(),
        Some(&good[PIECE..PIECE + 16384]),
        "the mirror does not serve the piece fetched again"
    );

    // While it runs: a piece it vouched for (the torrent was added again over the cache) and
    // has not read since changes; the first peer to ask finds it, and it is fetched again.
    flip(&complete, 5 * PIECE + 10);
    let got = ask_for_block(peer, &hash, 5, Duration::from_secs(10));
    let mut changed = good[5 * PIECE..5 * PIECE + 16384].to_vec();
    changed[10] ^= 0xff;
    assert!(got != Some(changed), "the mirror served the changed bytes");
    m.status_when("the second repair in the status", |s| {
        s["corrupt"]["refetched"] == 2
    });
    let peer = mirror_peer_addr(&m.daemon.log());
    assert_eq!(
        ask_for_block(peer, &hash, 5, Duration::from_secs(20)).as_deref(),
        Some(&good[5 * PIECE..5 * PIECE + 16384]),
        "the mirror does not serve the piece fetched again"
    );
    wait_for("the object complete again", Duration::from_secs(30), || {
        complete.exists().then_some(())
    });
    assert_eq!(sha256_file(&complete), sha);
    // The bytes by source count both pieces fetched again.
    let want = (good.len() + 2 * PIECE) as u64;
    m.status_when("the pieces fetched again counted by source", |s| {
        let n = |k: &str| s["sources"][k].as_u64().unwrap_or(0);
        n("origin") + n("primary") + n("mirrors") >= want
    });
}

/// The status says the mirror found piece 1 of object `sha` corrupt and fetched it again, in
/// each form: the report, `repofs status` (`--json` and text), `/status.json` and `/metrics`.
fn assert_repair_reported(m: &Mirror, mport: u16, sha: &str) {
    let st = m.status_when("the repair in the status", |s| {
        s["corrupt"]["refetched"] == 1
    });
    let c = &st["corrupt"];
    assert_eq!(c["found"], 1, "{c}");
    assert_eq!(c["recent"][0]["sha256"], sha, "{c}");
    assert_eq!(c["recent"][0]["piece"], 1, "{c}");
    assert_eq!(c["recent"][0]["state"], "refetched", "{c}");
    let j: Value = serde_json::from_str(&m.repo.repofs(&["status", "--json"])).unwrap();
    assert_eq!(j["corrupt"]["refetched"], 1, "{j}");
    let text = m.repo.repofs(&["status"]);
    assert!(
        text.contains("corrupt pieces 1 found, 1 fetched again")
            && text.contains("dists/hello/rot-1.0.bin piece 1"),
        "{text}"
    );
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{mport}/status.json"))
        .output()
        .unwrap();
    let j: Value = serde_json::from_slice(&out.stdout).expect("/status.json");
    assert_eq!(j["corrupt"]["recent"][0]["piece"], 1, "{j}");
    let metrics = scrape_metrics(mport);
    assert_eq!(metrics.get("repofs_cache_corrupt_pieces_total"), Some(&1.0));
    assert_eq!(
        metrics.get("repofs_cache_refetched_pieces_total"),
        Some(&1.0)
    );
}

const PIECE: usize = 262_144;

/// Flips the byte at `at` of `file` on disk, as bit rot or a stray write would.
fn flip(file: &std::path::Path, at: usize) {
    let f = fs::File::options()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at as u64).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], at as u64).unwrap();
    f.sync_all().unwrap();
}
