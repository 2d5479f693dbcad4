//! Lazy fetch on a mirror: a repofsd whose catalog names an upstream fetches the pieces a
//! read needs from the swarm (the primary seeding through its own tracker), verifies them
//! into its cache, and the mount serves them. Real daemons, real mounts, loopback.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{digest::*, mirror::*, net::*, process::*, repo::*, site::*, world::*};

fn pread(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// 1 MiB read at the middle of a 64 MiB file on a cold mirror fetches a few pieces, not the
/// file; the bytes are the primary's. Then a whole read matches byte for byte, and the object
/// is promoted to complete in the cache.
#[test]
fn a_middle_read_fetches_only_its_pieces() {
    let (p, port) = primary();
    let blob = publish_random(&p, "big-1.0.bin", 64);
    wait_seeding(&p, "big-1.0.bin");
    let sha = sha256_file(&blob);
    let m = Mirror::start(&p, port, "");
    let path = m.mnt.path("dists/hello/big-1.0.bin");
    assert_eq!(fs::metadata(&path).unwrap().len(), 64 << 20);

    let started = Instant::now();
    let got = pread(&path, 32 << 20, 1 << 20)
        .unwrap_or_else(|e| panic!("middle read: {e}\n{}", m.daemon.log()));
    let first = started.elapsed();
    assert!(
        got == pread(&blob, 32 << 20, 1 << 20).unwrap(),
        "bytes differ"
    );
    let st = m.status_when("the object in the status", |s| {
        object_status(s, &sha).is_some_and(|o| o["verified_pieces"].as_u64() >= Some(4))
    });
    let o = object_status(&st, &sha).unwrap();
    let down = o["downloaded_bytes"].as_u64().unwrap();
    eprintln!("1 MiB middle read: {first:?}, {down} bytes fetched, status {o}");
    assert!(
        (1 << 20..=12 << 20).contains(&down),
        "a 1 MiB read fetched {down} bytes"
    );
    assert!(!m.repo.root.join("mirror/complete").join(&sha).exists());

    // The whole file, sequentially: the primary's bytes; then complete in the cache.
    let whole = Instant::now();
    assert_eq!(tool_hash("sha256sum", &path), sha, "whole read differs");
    eprintln!("64 MiB sequential read: {:?}", whole.elapsed());
    // A sequential reader switches the object to one stream to its end (lazy::sequential).
    assert!(
        m.daemon.log().contains("sequential fetch done"),
        "no sequential stream:\n{}",
        m.daemon.log()
    );

    wait_for("promotion to complete", Duration::from_secs(20), || {
        m.repo
            .root
            .join("mirror/complete")
            .join(&sha)
            .exists()
            .then_some(())
    });
    assert_eq!(
        sha256_file(&m.repo.root.join("mirror/complete").join(&sha)),
        sha
    );
}

/// A mount started before its mirror service first ran (the catalog naming no upstream yet)
/// becomes a mirror's mount once the service records its upstream: a file it lists reads
/// byte for byte through the cache, never ENOENT.
#[test]
fn a_mount_started_before_its_mirror_service_follows_it() {
    let (p, port) = primary();
    let blob = publish_random(&p, "early-1.0.bin", 4);
    let repo = Repo::with_config(Repo::LIVE);
    let key = export_repo_key(&p.w.repo, repo.dir.path());
    let mnt = crate::common::mount::Mount::start(&repo);
    let daemon = start_mirror_daemon(&repo, &format!("http://127.0.0.1:{port}"), &key, None);
    let path = mnt.path("dists/hello/early-1.0.bin");
    wait_for("the mount lists the file", SYNC, || {
        fs::metadata(&path).ok().filter(|m| m.len() == 4 << 20)
    });
    let got = fs::read(&path).unwrap_or_else(|e| panic!("read: {e}\n{}", daemon.log()));
    assert!(got == fs::read(&blob).unwrap(), "bytes differ");
    drop(mnt);
}

/// With no seeder left, a read of a piece nobody has fails with EIO within the read
/// deadline, and the mount stays usable.
#[test]
fn a_dead_swarm_gives_eio_within_the_deadline() {
    let (mut p, port) = primary();
    // Larger than librqbit's 32 MiB stream lookahead, so the far end is never fetched.
    let blob = publish_random(&p, "lonely-1.0.bin", 48);
    for i in 0..6 {
        publish_random(&p, &format!("unread{i}-1.0.bin"), 1);
    }
    let m = Mirror::start(&p, port, "[mirror]\nread_timeout = \"3s\"\n");
    // One read while the primary seeds, so the mirror holds the torrent and its first pieces.
    let path = m.mnt.path("dists/hello/lonely-1.0.bin");
    assert_eq!(
        pread(&path, 0, 4096).unwrap(),
        pread(&blob, 0, 4096).unwrap()
    );
    p.daemon.terminate();
    let started = Instant::now();
    let err = pread(&path, 44 << 20, 4096).expect_err("a read with no seeder must fail");
    let took = started.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(took < Duration::from_secs(10), "EIO after {took:?}");
    // What was fetched before is still served.
    assert_eq!(
        pread(&path, 0, 4096).unwrap(),
        pread(&blob, 0, 4096).unwrap()
    );
    // Reads waiting for the swarm (more than the default FUSE threads) leave the views
    // answering.
    let waiting: Vec<_> = (0..6)
        .map(|i| {
            let path = m.mnt.path(&format!("dists/hello/unread{i}-1.0.bin"));
            std::thread::spawn(move || pread(&path, 0, 4096).is_err())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let names = fs::read_dir(m.mnt.path("dists/hello")).unwrap().count();
    let listed = started.elapsed();
    assert!(
        names >= 2 && listed < Duration::from_secs(1),
        "ls took {listed:?}"
    );
    for w in waiting {
        assert!(w.join().unwrap(), "a read with no seeder succeeded");
    }
}

/// Runs `cmd` (a reader of the mount), expecting it to fail with EIO; returns how long it took.
fn fails_with_eio(cmd: &mut std::process::Command) -> Duration {
    let started = Instant::now();
    let out = output_bounded(cmd);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{cmd:?} succeeded with no seeder");
    assert!(err.contains("Input/output error"), "{cmd:?}: {err}");
    took
}

/// One read(2) becomes several FUSE reads (the kernel's read-ahead, then its retry of the
/// single page): they share one deadline, so a read nobody can serve fails within
/// `read_timeout` plus a small margin whatever its size, not once per FUSE read (issue 21:
/// `dd bs=1M` failed after twice the deadline).
#[test]
fn an_unservable_read_fails_within_one_deadline() {
    let (mut p, port) = primary();
    // Larger than librqbit's 32 MiB stream lookahead, so the far end is never fetched.
    publish_random(&p, "lonely-1.0.bin", 48);
    publish_random(&p, "unread-1.0.bin", 4);
    let m = Mirror::start(&p, port, "[mirror]\nread_timeout = \"3s\"\n");
    let lonely = m.mnt.path("dists/hello/lonely-1.0.bin");
    // One read while the primary seeds, so the mirror holds the torrent.
    pread(&lonely, 0, 4096).unwrap_or_else(|e| panic!("{e}\n{}", m.daemon.log()));
    p.daemon.terminate();

    let bound = Duration::from_secs(5);
    let dd = fails_with_eio(
        std::process::Command::new("dd")
            .arg(format!("if={}", lonely.display()))
            .args(["of=/dev/null", "bs=1M", "skip=40", "count=1"]),
    );
    let cat = fails_with_eio(
        std::process::Command::new("cat").arg(m.mnt.path("dists/hello/unread-1.0.bin")),
    );
    eprintln!("EIO after: dd bs=1M {dd:?}, cat {cat:?} (read_timeout 3 s)");
    assert!(dd < bound, "dd bs=1M failed after {dd:?}");
    assert!(cat < bound, "cat failed after {cat:?}");
    // A later try (after the failure is forgotten) waits the whole deadline again.
    std::thread::sleep(Duration::from_secs(2));
    let again = Instant::now();
    assert!(pread(&lonely, 40 << 20, 4096).is_err());
    assert!(
        again.elapsed() >= Duration::from_millis(2500),
        "a later retry failed at once ({:?}): it deserves a fresh try",
        again.elapsed()
    );
}

/// The cache keeps to its bound (least recently read out), and what it holds survives a
/// restart of the mirror's repofsd, which does not read it back to seed it: read again with
/// the primary gone, it is still served.
#[test]
fn the_cache_keeps_its_bound_and_survives_a_restart() {
    let (mut p, port) = primary();
    let a = publish_random(&p, "a-1.0.bin", 8);
    let b = publish_random(&p, "b-1.0.bin", 8);
    let limit: u64 = 10 << 20;
    let mut m = Mirror::start(&p, port, &format!("[mirror]\ncache_size = {limit}\n"));
    let (pa, pb) = (
        m.mnt.path("dists/hello/a-1.0.bin"),
        m.mnt.path("dists/hello/b-1.0.bin"),
    );
    assert_eq!(tool_hash("sha256sum", &pa), sha256_file(&a));
    // a's sequential fetch holds it busy (never evicted) until its last sync and promotion,
    // which on a loaded machine can outlast the whole read of b: only then is "a read first,
    // b read last" the order eviction sees.
    let complete_a = m.repo.root.join("mirror/complete").join(sha256_file(&a));
    wait_for("a complete in the cache", Duration::from_secs(30), || {
        complete_a.exists().then_some(())
    });
    assert_eq!(tool_hash("sha256sum", &pb), sha256_file(&b));
    // The status is rewritten every 2 s: one written before b's bytes arrived (a alone, 8 MiB)
    // would satisfy the bound too. Wait for one that has b complete.
    let sha_b = sha256_file(&b);
    let st = m.status_when("cache use within the bound, b complete", |s| {
        object_status(s, &sha_b).is_some_and(|o| o["complete"] == true)
            && s["cache_bytes"]
                .as_u64()
                .is_some_and(|c| c > 0 && c <= limit)
    });
    eprintln!(
        "cache after 16 MiB read with a 10 MiB bound: {}",
        st["cache_bytes"]
    );
    // a (read first) went; b (read last) stayed.
    assert!(!m
        .repo
        .root
        .join("mirror/complete")
        .join(sha256_file(&a))
        .exists());
    assert!(m
        .repo
        .root
        .join("mirror/complete")
        .join(sha256_file(&b))
        .exists());

    // The restarted repofsd seeds b again from the piece states the cache records: it does
    // not read b back.
    uncache(&m.repo.root.join("mirror/complete").join(&sha_b));
    m.restart();
    m.daemon
        .wait_log("Initial check results", Duration::from_secs(15));
    let read = read_bytes(m.daemon.child.id());
    assert!(read < 1 << 20, "the restarted mirror read {read} bytes");
    p.daemon.terminate();
    assert_eq!(
        pread(&pb, 5 << 20, 1 << 20).unwrap(),
        pread(&b, 5 << 20, 1 << 20).unwrap(),
        "the cache must survive a restart"
    );
}

/// 16 readers of 16 different files at once (more than librqbit's stream slots): all finish,
/// byte-identical.
#[test]
fn many_concurrent_readers_do_not_stall() {
    let (p, port) = primary();
    let blobs: Vec<PathBuf> = (0..16)
        .map(|i| publish_random(&p, &format!("c{i}-1.0.bin"), 2))
        .collect();
    let m = Mirror::start(&p, port, "");
    let started = Instant::now();
    let readers: Vec<_> = blobs
        .iter()
        .map(|b| {
            let path = m.mnt.path(&format!(
                "dists/hello/{}",
                b.file_name().unwrap().to_str().unwrap()
            ));
            std::thread::spawn(move || {
                std::process::Command::new("timeout")
                    .args(["60", "dd", "bs=1M", "status=none"])
                    .arg(format!("if={}", path.display()))
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for (r, b) in readers.into_iter().zip(&blobs) {
        let out = r.join().unwrap();
        assert!(
            out.status.success(),
            "dd: {}\nmirror log:\n{}",
            stderr(&out),
            m.daemon.log()
        );
        assert!(out.stdout == fs::read(b).unwrap(), "bytes of {b:?} differ");
    }
    eprintln!("16 concurrent 2 MiB reads: {:?}", started.elapsed());
}

/// One file deep inside a 64 MiB .tar.gz read through pkgs/ on a cold mirror fetches the
/// compressed span from its seek point, not the archive; the bytes are the file's.
#[test]
fn a_file_inside_a_tar_gz_fetches_only_its_span() {
    let (p, port) = primary();
    let d = p.w.scratch("deep");
    // Incompressible members, so the compressed archive is as large as the tree.
    sh(
        &d,
        "mkdir -p deep-1.0/a/b && for i in $(seq 0 31); do \
           head -c 2097152 /dev/urandom > deep-1.0/a/b/f$i.bin; done && \
         tar --sort=name --format=gnu -czf deep-1.0.tar.gz deep-1.0",
    );
    p.w.repo.add_key("deep", &p.w.gpg.export(ALICE, &p.w.work));
    publish(&p, "deep", &d.join("deep-1.0.tar.gz"));
    wait_seeding(&p, "deep-1.0.tar.gz");
    let tgz = d.join("deep-1.0.tar.gz");
    let tgz_sha = sha256_file(&tgz);
    let m = Mirror::start(&p, port, "");
    let inside = m.mnt.path("pkgs/deep/1.0/deep-1.0/a/b/f20.bin");
    let started = Instant::now();
    let got = fs::read(&inside).expect("read inside the package");
    eprintln!(
        "2 MiB member at ~40 MiB of a 64 MiB .tar.gz: {:?}",
        started.elapsed()
    );
    assert!(
        got == fs::read(d.join("deep-1.0/a/b/f20.bin")).unwrap(),
        "bytes differ"
    );
    let st = m.status_when("the package in the status", |s| {
        object_status(s, &tgz_sha).is_some_and(|o| o["downloaded_bytes"].as_u64() > Some(0))
    });
    let down = object_status(&st, &tgz_sha).unwrap()["downloaded_bytes"]
        .as_u64()
        .unwrap();
    eprintln!(
        "fetched {down} bytes of a {} byte archive",
        fs::metadata(&tgz).unwrap().len()
    );
    assert!(
        down <= 24 << 20,
        "reading a 2 MiB member fetched {down} bytes of a 64 MiB archive"
    );
    // A pkgs/ path names its package's object for `repofs fetch`.
    let out = m.repo.repofs(&["fetch", "pkgs/deep/1.0/deep-1.0/a"]);
    assert!(out.contains("deep/deep-1.0.tar.gz"), "{out}");
    assert_eq!(
        sha256_file(&m.repo.root.join("mirror/complete").join(&tgz_sha)),
        tgz_sha
    );
}

/// `repofs fetch` makes an object complete in the cache, byte-identical; then reads are
/// served with the primary gone.
#[test]
fn repofs_fetch_makes_an_object_complete() {
    let (mut p, port) = primary();
    let blob = publish_random(&p, "whole-1.0.bin", 24);
    let sha = sha256_file(&blob);
    let m = Mirror::start(&p, port, "");
    // On a terminal, as an operator runs it: a progress bar, then the summary.
    let mut cmd = m.repo.cmd(REPOFS);
    cmd.args([
        "fetch",
        m.mnt.path("dists/hello/whole-1.0.bin").to_str().unwrap(),
    ]);
    let (status, out) = on_a_terminal(&cmd);
    assert!(status.success(), "{out}");
    assert!(out.contains("hello/whole-1.0.bin: 25165824 bytes"), "{out}");
    assert!(
        out.contains("whole-1.0.bin [") && out.contains("/24.00 MiB"),
        "no progress bar on the terminal: {out:?}"
    );
    let complete = m.repo.root.join("mirror/complete").join(&sha);
    assert_eq!(sha256_file(&complete), sha);
    p.daemon.terminate();
    assert_eq!(
        tool_hash("sha256sum", &m.mnt.path("dists/hello/whole-1.0.bin")),
        sha
    );
    // On a primary there is nothing to fetch.
    let o =
        p.w.repo
            .repofs_output(&["fetch", "dists/hello/whole-1.0.bin"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a mirror"), "{}", stderr(&o));
}

/// The only peer seeds a corrupt copy (aria2c, told not to verify it) through Debian's
/// opentracker: the mirror talks to it, yet reads fail with EIO, never with its bytes. Once
/// the primary seeds too, the same read returns the primary's bytes.
#[test]
fn a_bad_peer_never_gets_bytes_into_a_read() {
    let ot_port = free_port();
    let trackers =
        format!("[distribution]\ntrackers = [\"http://127.0.0.1:{ot_port}/announce\"]\n");
    // The primary serves the index; its seeding stops once the mirror has synced.
    let port = free_port();
    let primary_config = format!("{trackers}listen = \"127.0.0.1:{port}\"\n");
    let mut p = Site::with_config(&primary_config);
    let blob = publish_random(&p, "bait-1.0.bin", 4);
    let torrent = p.mnt.path("dists/hello/bait-1.0.bin.torrent");
    wait_for("the torrent", Duration::from_secs(10), || {
        torrent.exists().then_some(())
    });
    let hash = info_hash(&p.w.repo, "bait-1.0.bin");
    let d = p.w.scratch("badpeer");
    let _ot = opentracker(&d, ot_port, &[&hash]);
    // One changed byte in every piece.
    let mut bytes = fs::read(&blob).unwrap();
    for i in (100..bytes.len()).step_by(256 << 10) {
        bytes[i] ^= 0xff;
    }
    fs::create_dir_all(d.join("seed")).unwrap();
    fs::write(d.join("seed/bait-1.0.bin"), &bytes).unwrap();
    fs::copy(&torrent, d.join("bait.torrent")).unwrap();
    let aria = std::process::Command::new("aria2c")
        .args(["--enable-dht=false", "--bt-enable-lpd=false"])
        .args(["--enable-peer-exchange=false", "--bt-seed-unverified=true"])
        .args([
            "--check-integrity=false",
            "--seed-ratio=0.0",
            "--seed-time=30",
        ])
        .arg(format!("--listen-port={}", free_port()))
        .args(["--summary-interval=0", "--console-log-level=warn", "-d"])
        .arg(d.join("seed"))
        .arg(d.join("bait.torrent"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _aria = KillOnDrop(aria);
    std::thread::sleep(Duration::from_secs(2)); // aria2c announces

    let mut m = Mirror::start(&p, port, "[mirror]\nread_timeout = \"4s\"\n");
    p.daemon.terminate();
    let path = m.mnt.path("dists/hello/bait-1.0.bin");
    for off in [0u64, 1 << 20, 3 << 20] {
        match pread(&path, off, 4096) {
            Ok(got) => panic!(
                "read at {off} returned bytes with only a bad peer (corrupt: {})",
                got == bytes[off as usize..off as usize + 4096]
            ),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        }
    }
    assert!(
        m.daemon.log().contains("did not validate"),
        "the mirror never got a piece from the bad peer:\n{}",
        m.daemon.log()
    );
    assert!(!m
        .repo
        .root
        .join("mirror/complete")
        .join(sha256_file(&blob))
        .exists());

    // The primary seeds (announcing to opentracker); the restarted mirror announces again.
    p.daemon = Daemon::start(&p.w.repo, &[]);
    p.daemon
        .wait_log("serving /announce", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2)); // the seeder announces
    m.restart();
    let got = wait_for_or(Duration::from_secs(30), || {
        pread(&path, 1 << 20, 1 << 20).ok()
    })
    .expect("a read once the primary seeds");
    assert!(
        got == fs::read(&blob).unwrap()[1 << 20..2 << 20],
        "bytes differ"
    );
}

/// Mirrors fetch from each other: mirror 1 reads a range while the primary seeds; with the
/// primary gone, mirror 2 gets the same range from mirror 1 through Debian's opentracker.
#[test]
fn a_mirror_fetches_from_another_mirror_when_the_primary_is_gone() {
    let ot_port = free_port();
    let port = free_port();
    let mut p = Site::with_config(&format!(
        "[distribution]\ntrackers = [\"http://127.0.0.1:{ot_port}/announce\"]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let blob = publish_random(&p, "shared-1.0.bin", 16);
    let d = p.w.scratch("tracker");
    let _ot = opentracker(&d, ot_port, &[&info_hash(&p.w.repo, "shared-1.0.bin")]);
    // Announce afresh now that the tracker is up.
    p.daemon.terminate();
    p.daemon = Daemon::start(&p.w.repo, &[]);
    p.daemon
        .wait_log("serving /announce", Duration::from_secs(20));
    let m1 = Mirror::start(&p, port, "");
    let m2 = Mirror::start(&p, port, "");
    let range = (8u64 << 20, 1usize << 20);
    let want = pread(&blob, range.0, range.1).unwrap();
    let path1 = m1.mnt.path("dists/hello/shared-1.0.bin");
    let got = pread(&path1, range.0, range.1)
        .unwrap_or_else(|e| panic!("mirror 1: {e}\n{}", m1.daemon.log()));
    assert!(got == want, "mirror 1 read other bytes");

    p.daemon.terminate();
    let path2 = m2.mnt.path("dists/hello/shared-1.0.bin");
    let got = pread(&path2, range.0, range.1).unwrap_or_else(|e| {
        panic!(
            "mirror 2 with the primary gone: {e}\nmirror 1:\n{}\nmirror 2:\n{}",
            m1.daemon.log(),
            m2.daemon.log()
        )
    });
    assert!(got == want, "mirror 2 read other bytes");
    let sha = sha256_file(&blob);
    let st = m1.status_when("mirror 1 to have seeded", |s| {
        object_status(s, &sha).is_some_and(|o| o["uploaded_bytes"].as_u64() >= Some(1 << 20))
    });
    eprintln!("mirror 1 uploaded: {}", object_status(&st, &sha).unwrap());
}

/// A `.tar.xz` package on a mirror: a file inside it is read from the frames of its seekable
/// twin, fetched through the twin's own torrent, and `repofs status` shows the index and the
/// objects fetched, by path.
#[test]
fn a_file_inside_a_tar_xz_comes_from_its_twin_and_status_shows_it() {
    let (p, port) = primary();
    let d = p.w.scratch("xz");
    sh(
        &d,
        "mkdir -p xzp-1.0/docs && for i in $(seq 0 7); do \
           head -c 1048576 /dev/urandom > xzp-1.0/docs/part$i.bin; done && \
         tar --sort=name -cJf xzp-1.0.tar.xz xzp-1.0",
    );
    p.w.repo.add_key("xz", &p.w.gpg.export(ALICE, &p.w.work));
    publish(&p, "xz", &d.join("xzp-1.0.tar.xz"));
    // Its twin's torrent is named after the twin's sha256: SHA256.tar.zst.
    p.daemon.wait_log(".tar.zst\"", SYNC);
    let m = Mirror::start(&p, port, "");
    let got = fs::read(m.mnt.path("pkgs/xzp/1.0/xzp-1.0/docs/part5.bin"))
        .unwrap_or_else(|e| panic!("read inside the .tar.xz: {e}\n{}", m.daemon.log()));
    assert!(
        got == fs::read(d.join("xzp-1.0/docs/part5.bin")).unwrap(),
        "bytes differ"
    );
    // The .tar.xz itself was never fetched: only its twin.
    let xz_sha = sha256_file(&d.join("xzp-1.0.tar.xz"));
    let st = m.status_when("the twin in the status", |s| {
        s["objects"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["downloaded_bytes"].as_u64() > Some(0)))
    });
    assert!(object_status(&st, &xz_sha).is_none(), "{st}");
    let text = m.repo.repofs(&["status"]);
    assert!(
        text.contains("dists/xz/xzp-1.0.tar.xz (seekable twin, for pkgs/)"),
        "{text}"
    );

    let status: Value = serde_json::from_str(&m.repo.repofs(&["status", "--json"])).unwrap();
    assert_eq!(status["upstream"], format!("http://127.0.0.1:{port}"));
    assert_eq!(status["upstream_state"], "ok");
    assert!(status["generation"].as_u64() >= Some(1), "{status}");
    assert!(status["synced_age_secs"].as_u64() < Some(60), "{status}");
    assert!(
        status["generation_age_secs"].as_u64() < Some(600),
        "{status}"
    );
    assert!(status["cache_limit"].as_u64() > Some(0), "{status}");
    assert!(
        status["objects"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["verified_pieces"].as_u64() > Some(0))),
        "{status}"
    );
    let text = m.repo.repofs(&["status"]);
    assert!(
        text.starts_with(&format!("mirror of http://127.0.0.1:{port}  upstream ok")),
        "{text}"
    );
    // The published file on a mirror, read through: named by its path.
    let whole = m.mnt.path("dists/xz/xzp-1.0.tar.xz");
    assert_eq!(tool_hash("sha256sum", &whole), xz_sha);
    let status = wait_for("the package in the status", Duration::from_secs(15), || {
        let s: Value = serde_json::from_str(&m.repo.repofs(&["status", "--json"])).ok()?;
        s["objects"]
            .as_array()?
            .iter()
            .any(|o| o["paths"][0] == "dists/xz/xzp-1.0.tar.xz")
            .then_some(s)
    });
    eprintln!("status: {status}");
}
