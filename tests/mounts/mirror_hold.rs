//! Mirrors that hold what they are told to (`[mirror] hold`, `repofsd --hold`): a held file is
//! fetched whole as soon as it is published, with no reader; lazy reads never evict it; a
//! hold that cannot fit the cache is refused at start. Real daemons, real mounts, loopback.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{digest::*, mirror::*, net::*, process::*, repo::*, site::*};

/// How long a held 16 MiB object may take to arrive on loopback.
const HELD: Duration = Duration::from_secs(60);

/// `repofs status --json`'s `hold` section.
fn hold_status(m: &Mirror) -> Value {
    let v: Value =
        serde_json::from_str(&m.repo.repofs(&["status", "--json"])).expect("status JSON");
    v["hold"].clone()
}

/// hold = ["*"]: a package published after the mirror started is fetched whole with no reader
/// (status: held == total; the cache holds the primary's bytes), and is read through the mount
/// with the primary gone.
#[test]
fn a_held_package_arrives_with_no_reader() {
    let (p, port) = primary();
    let mport = free_port();
    let m = Mirror::start_listening(&p, port, "[mirror]\nhold = [\"*\"]\n", Some(mport));
    let blob = publish_random(&p, "held-1.0.bin", 16);
    let sha = sha256_file(&blob);

    let h = wait_for_or(HELD, || {
        let h = hold_status(&m);
        let total = h["total_bytes"].as_u64()?;
        let whole = h["held_bytes"].as_u64() == Some(total) && h["held_objects"] == h["objects"];
        (total >= 16 << 20 && whole).then_some(h)
    })
    .unwrap_or_else(|| {
        panic!(
            "the mirror did not hold the new package: {}\nmirror:\n{}\nprimary:\n{}",
            hold_status(&m),
            m.daemon.log(),
            p.daemon.log()
        )
    });
    eprintln!("hold status: {h}");
    assert_eq!(h["patterns"], serde_json::json!(["*"]));
    assert!(h["error"].is_null(), "{h}");
    let cached = m.repo.root.join("mirror/complete").join(&sha);
    assert_eq!(sha256_file(&cached), sha, "the cache holds other bytes");
    // Nobody read it: the mirror's log has no reader's fetch of it.
    assert!(
        !m.daemon.log().contains(&format!("fetched object={sha}")),
        "a reader fetched it:\n{}",
        m.daemon.log()
    );
    let text = m.repo.repofs(&["status"]);
    assert!(text.contains("hold *") && text.contains("held"), "{text}");
    // The same section on the mirror's /status.json.
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{mport}/status.json"))
        .output()
        .expect("curl");
    let j: Value = serde_json::from_slice(&out.stdout).expect("/status.json");
    assert_eq!(j["hold"]["total_bytes"], h["total_bytes"], "{j}");

    // The primary gone, the mount still reads it whole.
    let mut p = p;
    p.daemon.terminate();
    let path = m.mnt.path("dists/hello/held-1.0.bin");
    assert_eq!(tool_hash("sha256sum", &path), sha);
}

/// Under a cache limit that cannot keep everything, lazily read objects are evicted and the
/// held one never is.
#[test]
fn lazy_reads_never_evict_a_held_object() {
    let (p, port) = primary();
    let keep = publish_random(&p, "keep-1.0.bin", 8);
    let a = publish_random(&p, "lazy-a-1.0.bin", 8);
    let b = publish_random(&p, "lazy-b-1.0.bin", 8);
    let keep_sha = sha256_file(&keep);
    // 20 MiB: the held 8 MiB and one lazy object fit, not two.
    let m = Mirror::start(
        &p,
        port,
        &format!(
            "[mirror]\nhold = [\"hello/keep-*\"]\ncache_size = {}\n",
            20 << 20
        ),
    );
    let cached = m.repo.root.join("mirror/complete").join(&keep_sha);
    wait_for("the held object", HELD, || cached.exists().then_some(()));

    for f in [&a, &b] {
        let name = f.file_name().unwrap().to_str().unwrap();
        let path = m.mnt.path(&format!("dists/hello/{name}"));
        assert_eq!(tool_hash("sha256sum", &path), sha256_file(f), "{name}");
    }
    // Eviction ran (the first lazy object went) and spared the held one, though it was the
    // least recently touched.
    let evicted = |sha: &str| {
        m.daemon
            .log()
            .lines()
            .any(|l| l.contains("evicted from the cache") && l.contains(sha))
    };
    let a_sha = sha256_file(&a);
    wait_for("a lazy object evicted", Duration::from_secs(20), || {
        evicted(&a_sha).then_some(())
    });
    assert!(
        !evicted(&keep_sha),
        "the held object was evicted:\n{}",
        m.daemon.log()
    );
    assert_eq!(sha256_file(&cached), keep_sha);
    let h = hold_status(&m);
    assert_eq!(h["held_bytes"], h["total_bytes"], "{h}");
}

/// A hold larger than the cache limit: repofsd refuses to start, with the reason code, and
/// the mirror's cache is left as it was.
#[test]
fn a_hold_larger_than_the_cache_fails_at_start() {
    let (p, port) = primary();
    publish_random(&p, "big-1.0.bin", 4);
    let mut m = Mirror::start(&p, port, "");
    assert!(m.daemon.terminate().success());
    let before = fs::read_dir(m.repo.root.join("mirror/complete"))
        .unwrap()
        .count();
    let mut cmd = m.repo.cmd(REPOFSD);
    cmd.args(["--upstream", &m.upstream, "--repo-key"])
        .arg(&m.key)
        .args(["--hold", "*", "--cache-size", &(1u64 << 20).to_string()]);
    let log = m.repo.dir.path().join("repofsd-hold.log");
    cmd.stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    let mut child = KillOnDrop(cmd.spawn().expect("spawn repofsd"));
    let status = wait_for_or(Duration::from_secs(30), || {
        child.0.try_wait().ok().flatten()
    });
    let err = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "repofsd did not refuse to start ({status:?}):\n{err}"
    );
    assert!(err.contains("hold-exceeds-cache"), "{err}");
    let after = fs::read_dir(m.repo.root.join("mirror/complete"))
        .unwrap()
        .count();
    assert_eq!(before, after);
}

/// With the tracker down (no peer to be found) a held package still arrives, from the origin
/// over HTTP, each piece checked; the status says so.
#[test]
fn with_the_tracker_down_a_held_package_comes_from_the_origin() {
    let (p, port) = primary_with_dead_tracker("");
    let m = Mirror::start(&p, port, "[mirror]\nhold = [\"*\"]\n");
    let blob = publish_random(&p, "far-1.0.bin", 8);
    let sha = sha256_file(&blob);
    let cached = m.repo.root.join("mirror/complete").join(&sha);
    wait_for("the held package from the origin", HELD, || {
        cached.exists().then_some(())
    });
    assert_eq!(sha256_file(&cached), sha);
    let st = m.status_when("the origin's bytes in the status", |s| {
        s["origin"]["bytes"].as_u64() >= Some(8 << 20)
    });
    assert_eq!(st["peers"], 0, "{st}");
    assert_eq!(st["origin"]["corrupt_pieces"], 0, "{st}");
}
