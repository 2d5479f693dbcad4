//! The origin as a verified source: each `.torrent` names the primary's `/by-sha256/` URL as a
//! BEP 19 web seed, and a mirror fetches over HTTP from its upstream when the swarm cannot
//! serve a read, checking every piece as it checks peers' (`fetch::origin`). Real daemons,
//! real mounts, a real BitTorrent client (aria2c), loopback.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{digest::*, mirror::*, net::*, process::*, site::*};

fn pread(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// With the tracker down (no peer can be found) a cold read on a mirror is served from the
/// origin over HTTP, byte for byte, and the object completes with its sha256 checked; with
/// the primary gone as well, a read fails with EIO within the deadline.
#[test]
fn with_the_tracker_down_a_cold_read_comes_from_the_origin() {
    let (mut p, port) = primary_with_dead_tracker("");
    let blob = publish_random(&p, "far-1.0.bin", 24);
    publish_random(&p, "later-1.0.bin", 2);
    let sha = sha256_file(&blob);
    let m = Mirror::start(&p, port, "[mirror]\nread_timeout = \"5s\"\n");
    let path = m.mnt.path("dists/hello/far-1.0.bin");

    let started = Instant::now();
    let got = fs::read(&path).unwrap_or_else(|e| panic!("read: {e}\n{}", m.daemon.log()));
    eprintln!(
        "24 MiB cold read with the tracker down: {:?}",
        started.elapsed()
    );
    assert!(got == fs::read(&blob).unwrap(), "bytes differ");
    let st = m.status_when("the origin's bytes in the status", |s| {
        s["origin"]["bytes"].as_u64() >= Some(24 << 20)
    });
    assert_eq!(st["origin"]["corrupt_pieces"], 0, "{st}");
    assert_eq!(st["peers"], 0, "{st}");
    // The swarm session was told: it offers those pieces to peers.
    m.status_when("the origin's pieces offered to peers", |s| {
        object_status(s, &sha).is_some_and(|o| o["offered_bytes"].as_u64() == Some(24 << 20))
    });
    wait_for("promotion to complete", Duration::from_secs(30), || {
        let c = m.repo.root.join("mirror/complete").join(&sha);
        c.exists().then_some(())
    });
    assert!(m.repo.repofs(&["status"]).contains("over HTTP"));

    // Both gone: EIO within the deadline, as before.
    p.daemon.terminate();
    let later = m.mnt.path("dists/hello/later-1.0.bin");
    let started = Instant::now();
    let err = pread(&later, 0, 4096).expect_err("a read with no origin and no peer");
    let took = started.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(took < Duration::from_secs(12), "EIO after {took:?}");
}

/// An origin that flips a byte of every range it serves never gets a byte into a read: the
/// mirror checks each piece, says so in its status, backs off that origin and reads from the
/// swarm (the primary seeds through its own tracker).
#[test]
fn a_corrupting_origin_never_gets_a_byte_into_a_read() {
    let (port, proxy_port) = (free_port(), free_port());
    // Every origin the mirror knows is the proxy: its upstream and the primary's web seed.
    let p = Site::with_config(&format!(
        "[distribution]\nlisten = \"127.0.0.1:{port}\"\n\
         public_url = \"http://127.0.0.1:{proxy_port}\"\n"
    ));
    let blob = publish_random(&p, "twisted-1.0.bin", 8);
    let d = p.w.scratch("proxy");
    let _proxy = corrupting_proxy(&d, proxy_port, &format!("http://127.0.0.1:{port}"));
    // The origin is asked at once, beside the swarm.
    let m = Mirror::start(
        &p,
        proxy_port,
        "[mirror]\norigin_after = \"0s\"\nread_timeout = \"20s\"\n",
    );
    let path = m.mnt.path("dists/hello/twisted-1.0.bin");
    let got = fs::read(&path).unwrap_or_else(|e| panic!("read: {e}\n{}", m.daemon.log()));
    assert!(got == fs::read(&blob).unwrap(), "bytes differ");

    let flipped: u64 = fs::read_to_string(d.join("flipped"))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        flipped >= 1,
        "the proxy corrupted nothing:\n{}",
        m.daemon.log()
    );
    let st = m.status_when(
        "the corrupt origin and the swarm's bytes in the status",
        |s| {
            s["origin"]["corrupt_pieces"].as_u64() >= Some(1)
                && s["downloaded_bytes"].as_u64() >= Some(8 << 20)
        },
    );
    assert_eq!(st["origin"]["bytes"], 0, "{st}");
    assert!(st["downloaded_bytes"].as_u64() >= Some(8 << 20), "{st}");
    assert!(
        m.daemon.log().contains("origin-corrupt"),
        "{}",
        m.daemon.log()
    );
    let text = m.repo.repofs(&["status"]);
    assert!(
        text.contains("corrupt pieces") && text.contains("origin-corrupt"),
        "{text}"
    );
}

/// A stock client, aria2c, downloads a package with only the web seed the `.torrent` names
/// (its tracker is down, no DHT): byte-identical.
#[test]
fn aria2c_downloads_from_the_web_seed_alone() {
    let (p, port) = primary_with_dead_tracker("");
    let blob = publish_random(&p, "seeded-1.0.bin", 6);
    let torrent = p.mnt.path("dists/hello/seeded-1.0.bin.torrent");
    let bytes = wait_for("the torrent", Duration::from_secs(10), || {
        fs::read(&torrent).ok()
    });
    let seed = format!("127.0.0.1:{port}/by-sha256/{}", sha256_file(&blob));
    assert!(
        String::from_utf8_lossy(&bytes).contains(&seed),
        "no web seed in the torrent"
    );
    let d = p.w.scratch("aria");
    fs::write(d.join("seeded.torrent"), &bytes).unwrap();
    let mut aria = std::process::Command::new("timeout");
    aria.args(["60", "aria2c", "--enable-dht=false", "--enable-dht6=false"])
        .args(["--bt-enable-lpd=false", "--enable-peer-exchange=false"])
        .args([
            "--seed-time=0",
            "--summary-interval=0",
            "--console-log-level=warn",
        ])
        .arg(format!("--listen-port={}", free_port()))
        .arg("-d")
        .arg(d.join("out"))
        .arg(d.join("seeded.torrent"));
    let out = aria.output().expect("aria2c");
    assert!(
        out.status.success(),
        "aria2c: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256_file(&d.join("out/seeded-1.0.bin")),
        sha256_file(&blob)
    );
}

/// A piece is readable as soon as it is checked (bit 2) and recorded once its bytes are
/// durable (bit 1, `fetch::cache::record`). After a SIGKILL the page cache still holds the
/// bytes, so the 2s of the same boot count; after a crash of the machine they may not: a
/// cache from another boot has its 2s dropped before anything reads them, and those pieces
/// are fetched again. Here the test plays the crash: it marks pieces 2, wipes their bytes
/// and names another boot.
#[test]
fn a_piece_not_yet_durable_never_outlives_its_boot() {
    let (p, port) = primary_with_dead_tracker("");
    let blob = publish_random(&p, "slow-1.0.bin", 16);
    let want = fs::read(&blob).unwrap();
    let sha = sha256_file(&blob);
    // 4 MiB/s from the origin: the object is still partial when the mirror is killed.
    let config = "[mirror]\nread_timeout = \"5s\"\norigin_rate = 4194304\n";
    let mut m = Mirror::start(&p, port, config);
    let path = m.mnt.path("dists/hello/slow-1.0.bin");
    assert!(pread(&path, 0, 1 << 20).unwrap() == want[..1 << 20]);
    m.daemon.kill9();
    let root = m.repo.root.join("mirror");
    let bits_path = root.join("partial").join(format!("{sha}.bits"));
    let bits = fs::read(&bits_path).unwrap();
    assert!(bits[..4].iter().all(|&b| b == 1 || b == 2), "{bits:?}");
    assert!(bits.contains(&0), "still partial: {bits:?}");

    // Same boot (a SIGKILL): the 2s count, and are recorded once repofsd opens the object.
    fs::write(&bits_path, [&[2u8; 4][..], &bits[4..]].concat()).unwrap();
    m.restart();
    assert!(pread(&path, 0, 1 << 20).unwrap() == want[..1 << 20]);
    wait_for("the 2s recorded", Duration::from_secs(10), || {
        (fs::read(&bits_path).ok()?[..4] == [1u8; 4]).then_some(())
    });
    m.daemon.kill9();

    // Another boot: the first MiB's bytes are gone and its bits say 2 (not yet durable).
    let data = fs::OpenOptions::new()
        .write(true)
        .open(root.join("partial").join(&sha))
        .unwrap();
    data.write_all_at(&[0u8; 1 << 20], 0).unwrap();
    data.sync_all().unwrap();
    let bits = fs::read(&bits_path).unwrap();
    fs::write(&bits_path, [&[2u8; 4][..], &bits[4..]].concat()).unwrap();
    fs::write(root.join("boot_id"), "an earlier boot\n").unwrap();
    // The mount trusts no 2 of another boot: it asks repofsd, which is down. (The kernel's
    // copy of what was read before is dropped first, or the read would not reach the mount.)
    let f = fs::File::open(&path).unwrap();
    let dropped = unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(dropped, 0);
    let err = pread(&path, 0, 4096).map(|b| b == want[..4096]);
    let err = err.expect_err("a 2 of another boot read as verified (true: the old bytes)");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    m.restart();
    assert_eq!(
        &fs::read(&bits_path).unwrap()[..4],
        &[0u8; 4],
        "2s cleared at start"
    );
    let got = fs::read(&path).unwrap_or_else(|e| panic!("read: {e}\n{}", m.daemon.log()));
    assert!(got == want, "bytes differ after another boot");
}
