//! Where the bytes came from, and `/metrics`: a primary counts verdicts by reason code; a
//! mirror counts each byte it fetched by source (the origin over HTTP, the primary as a peer,
//! other mirrors), in its status and in `/metrics`, which the Prometheus project's own parser
//! reads. Real daemons, real mounts, a real swarm on loopback.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{
    clients::*, digest::*, mirror::*, net::*, process::*, repo::*, site::*, world::*,
};

const SOURCES: [&str; 3] = ["origin", "primary", "mirrors"];

fn status_json(m: &Mirror) -> Value {
    serde_json::from_str(&m.repo.repofs(&["status", "--json"])).expect("status --json")
}

fn fetch_counter(metrics: &BTreeMap<String, f64>, source: &str) -> f64 {
    let key = format!("repofs_fetch_bytes_total{{source=\"{source}\"}}");
    *metrics
        .get(&key)
        .unwrap_or_else(|| panic!("no {key} in {metrics:#?}"))
}

/// A scrape of the mirror's `/metrics` taken between two equal `repofs status --json`
/// reports (the fetch service rewrites its report every ~2 s), and that report: their fetch
/// counters, cache and peers agree.
fn scrape_matching_status(m: &Mirror) -> (Value, BTreeMap<String, f64>) {
    let port = m.listen.expect("the mirror serves HTTP");
    let (st, metrics) = wait_for("a scrape between two equal reports", SYNC, || {
        let before = status_json(m);
        let metrics =
            try_scrape_metrics(port).unwrap_or_else(|e| panic!("{e}\n{}", m.daemon.log()));
        let after = status_json(m);
        let same = |k: &str| before[k] == after[k];
        ["sources", "cache_bytes", "peers", "generation"]
            .into_iter()
            .all(same)
            .then_some((after, metrics))
    });
    for source in SOURCES {
        assert_eq!(
            Some(fetch_counter(&metrics, source)),
            st["sources"][source].as_f64(),
            "{source}: {metrics:#?}\n{st:#}"
        );
    }
    assert_eq!(
        Some(metrics["repofs_cache_bytes"]),
        st["cache_bytes"].as_f64()
    );
    assert_eq!(
        Some(metrics["repofs_cache_limit_bytes"]),
        st["cache_limit"].as_f64()
    );
    assert_eq!(Some(metrics["repofs_peers"]), st["peers"].as_f64());
    assert_eq!(
        Some(metrics["repofs_index_generation"]),
        st["generation"].as_f64()
    );
    // A mirror takes no uploads.
    assert!(
        !metrics.contains_key("repofs_uploads_total"),
        "{metrics:#?}"
    );
    (st, metrics)
}

fn object<'a>(st: &'a Value, sha256: &str) -> &'a Value {
    st["objects"]
        .as_array()
        .and_then(|v| v.iter().find(|o| o["sha256"] == sha256))
        .unwrap_or_else(|| panic!("no object {sha256} in {st:#}"))
}

/// A primary's `/metrics` counts an upload published and one rejected (by its reason code);
/// a mirror that reads a package from the swarm counts its bytes as the primary's, per object
/// and in total, and its `/metrics` says what `repofs status --json` says.
#[test]
fn metrics_count_verdicts_and_a_mirror_counts_the_primarys_bytes() {
    let (p, port) = primary();
    let blob = publish_random(&p, "swarm-1.0.bin", 8);
    let sha = sha256_file(&blob);
    // Tampered after signing: rejected as bad-signature when cp closes it.
    let d = p.w.scratch("bad");
    let bad = d.join("bad-1.0.bin");
    fs::write(&bad, b"as signed").unwrap();
    let sig = p.w.gpg.sign(ALICE, &bad, false, &[]);
    fs::write(&bad, b"tampered after signing").unwrap();
    let out = cp(&[&bad, &sig], &p.incoming().join("hello"));
    assert!(!out.status.success(), "the tampered upload was accepted");

    let m = scrape_metrics(port);
    let accepted = p.w.repo.verdicts("accepted").len() as f64;
    assert!(accepted >= 1.0);
    assert_eq!(
        m.get("repofs_publications_total"),
        Some(&accepted),
        "{m:#?}"
    );
    assert_eq!(
        m.get("repofs_rejections_total{reason=\"bad-signature\"}"),
        Some(&1.0),
        "{m:#?}"
    );
    assert_eq!(
        m.get("repofs_uploads_total"),
        Some(&(accepted + 1.0)),
        "{m:#?}"
    );
    assert!(m["repofs_index_generation"] >= 1.0, "{m:#?}");
    assert!(m.contains_key("repofs_index_age_seconds"), "{m:#?}");
    assert!(m.contains_key("repofs_peers"), "{m:#?}");
    // A primary has no cache: no fetch counters.
    assert!(!m.keys().any(|k| k.starts_with("repofs_fetch")), "{m:#?}");
    // Another one, after that scrape: the next one counts it too.
    let bad2 = d.join("bad-1.1.bin");
    fs::write(&bad2, b"as signed").unwrap();
    let sig2 = p.w.gpg.sign(ALICE, &bad2, false, &[]);
    fs::write(&bad2, b"tampered after signing").unwrap();
    let out = cp(&[&bad2, &sig2], &p.incoming().join("hello"));
    assert!(!out.status.success(), "the tampered upload was accepted");
    let m = scrape_metrics(port);
    assert_eq!(
        m.get("repofs_rejections_total{reason=\"bad-signature\"}"),
        Some(&2.0),
        "{m:#?}"
    );
    assert_eq!(
        m.get("repofs_uploads_total"),
        Some(&(accepted + 2.0)),
        "{m:#?}"
    );

    wait_seeding(&p);
    let mirror = Mirror::start_listening(&p, port, "", Some(free_port()));
    let got = fs::read(mirror.mnt.path("dists/hello/swarm-1.0.bin"))
        .unwrap_or_else(|e| panic!("read: {e}\n{}", mirror.daemon.log()));
    assert!(got == fs::read(&blob).unwrap(), "bytes differ");
    let size = 8u64 << 20;
    mirror.status_when("every byte counted by source", |s| {
        SOURCES
            .iter()
            .filter_map(|k| s["sources"][k].as_u64())
            .sum::<u64>()
            >= size
    });
    let (st, _) = scrape_matching_status(&mirror);
    // The primary's seeder is the only peer: what the swarm sent is the primary's.
    let (primary, mirrors) = (&st["sources"]["primary"], &st["sources"]["mirrors"]);
    assert!(primary.as_u64() > Some(0), "{st:#}");
    assert_eq!(mirrors.as_u64(), Some(0), "{st:#}");
    // Per object: the same split, and the object's bytes all came from somewhere.
    let o = object(&st, &sha);
    assert_eq!(&o["sources"], &st["sources"], "{st:#}");
    let text = mirror.repo.repofs(&["status"]);
    assert!(text.contains("bytes from origin"), "{text}");
}

/// Bytes from the origin over HTTP (the tracker is down) are counted as the origin's, and the
/// totals and the cached object's record survive a restart of the mirror.
#[test]
fn origin_bytes_are_counted_and_survive_a_restart() {
    let (dead, port) = (free_port(), free_port());
    let p = Site::with_config(&format!(
        "[distribution]\ntrackers = [\"http://127.0.0.1:{dead}/announce\"]\n\
         listen = \"127.0.0.1:{port}\"\n"
    ));
    let blob = publish_random(&p, "far-1.0.bin", 6);
    let sha = sha256_file(&blob);
    let size = 6u64 << 20;
    let mut m = Mirror::start_listening(
        &p,
        port,
        "[mirror]\nread_timeout = \"10s\"\n",
        Some(free_port()),
    );
    let got = fs::read(m.mnt.path("dists/hello/far-1.0.bin"))
        .unwrap_or_else(|e| panic!("read: {e}\n{}", m.daemon.log()));
    assert!(got == fs::read(&blob).unwrap(), "bytes differ");
    m.status_when("the origin's bytes by source", |s| {
        s["sources"]["origin"].as_u64() >= Some(size)
    });
    let (before, _) = scrape_matching_status(&m);
    assert_eq!(before["sources"]["primary"], 0, "{before:#}");
    assert_eq!(before["sources"]["mirrors"], 0, "{before:#}");
    assert_eq!(
        object(&before, &sha)["sources"]["origin"],
        size,
        "{before:#}"
    );

    let restarted = SystemTime::now();
    m.restart();
    let report = m.repo.root.join("mirror/fetch-status.json");
    // The new process's own report, with the object seeded again from the cache.
    wait_for("a report of the restarted mirror", SYNC, || {
        let t = fs::metadata(&report).and_then(|md| md.modified()).ok()?;
        let st = m.status()?;
        (t > restarted && st["objects"].as_array().is_some_and(|o| !o.is_empty())).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let (after, _) = scrape_matching_status(&m);
    assert_eq!(after["sources"], before["sources"], "{after:#}");
    assert_eq!(
        object(&after, &sha)["sources"],
        object(&before, &sha)["sources"],
        "{after:#}"
    );
}

/// With the primary gone, a mirror reads a package from another mirror (through Debian's
/// opentracker): its bytes are the mirrors', none the primary's; the first mirror's were the
/// primary's. The torrents also name the primary's own tracker, whose announce makes the
/// torrent live at the seeder (an external tracker hears of the seeder only then).
#[test]
fn bytes_from_another_mirror_are_counted_as_the_mirrors() {
    let (ot_port, port) = (free_port(), free_port());
    let mut p = Site::with_config(&format!(
        "[distribution]\ntrackers = [\"http://127.0.0.1:{ot_port}/announce\", \
         \"http://127.0.0.1:{port}/announce\"]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let blob = publish_random(&p, "passed-1.0.bin", 4);
    let sha = sha256_file(&blob);
    let d = p.w.scratch("tracker");
    let _ot = opentracker(&d, ot_port, &[&info_hash(&p.w.repo, "passed-1.0.bin")]);
    // Announce afresh now that the tracker is up.
    p.daemon.terminate();
    p.daemon = Daemon::start(&p.w.repo, &[]);
    p.daemon.wait_log("serving /announce", SYNC);
    let m1 = Mirror::start_listening(&p, port, "", Some(free_port()));
    let m2 = Mirror::start_listening(&p, port, "", Some(free_port()));
    let want = fs::read(&blob).unwrap();
    let got = fs::read(m1.mnt.path("dists/hello/passed-1.0.bin"))
        .unwrap_or_else(|e| panic!("mirror 1: {e}\n{}", m1.daemon.log()));
    assert!(got == want, "mirror 1 read other bytes");
    let size = 4u64 << 20;
    m1.status_when("mirror 1's bytes by source", |s| {
        s["sources"]["primary"].as_u64() >= Some(size)
    });

    // The primary goes (its seeder, and its HTTP endpoint: no origin either).
    p.daemon.terminate();
    let got = fs::read(m2.mnt.path("dists/hello/passed-1.0.bin")).unwrap_or_else(|e| {
        panic!(
            "mirror 2 with the primary gone: {e}\nmirror 1:\n{}\nmirror 2:\n{}",
            m1.daemon.log(),
            m2.daemon.log()
        )
    });
    assert!(got == want, "mirror 2 read other bytes");
    m2.status_when("mirror 2's bytes by source", |s| {
        s["sources"]["mirrors"].as_u64() >= Some(size)
    });
    let (st, _) = scrape_matching_status(&m2);
    assert_eq!(st["sources"]["primary"], 0, "{st:#}");
    assert_eq!(st["sources"]["origin"], 0, "{st:#}");
    assert_eq!(&object(&st, &sha)["sources"], &st["sources"], "{st:#}");
    let (st1, _) = scrape_matching_status(&m1);
    assert_eq!(st1["sources"]["mirrors"], 0, "{st1:#}");
}
