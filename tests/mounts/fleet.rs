//! A fleet (issue 18): a primary and four mirrors, each a host in a network namespace of its
//! own on a 50 Mbit/s link (tbf both ways, as in bench/fleet.sh), every mirror reading the same
//! new package through its mount at once. Without sharing the primary sends one copy per
//! mirror; with it the mirrors trade pieces. Correctness and byte counts only: how long it
//! takes is bench/fleet.sh's business.

use std::process::Command;
use std::time::Instant;

use crate::common::{
    digest::*, mirror::*, mount::*, netns::*, process::*, repo::*, site::*, world::*,
};

const MIRRORS: u8 = 4;
const SIZE_MIB: u64 = 16;
const PORT: u16 = 8080;
/// A read of the package, each mirror's: four copies over one 50 Mbit/s link take 11 s.
const READ_DEADLINE: &str = "180";

#[test]
fn a_fleet_reading_a_new_package_at_once_costs_the_primary_under_two_copies() {
    // Dropped last: every process below is gone before the namespaces are.
    let mut net = Net::new("50mbit");
    let ph = net.host(1);
    // The primary's service (seeder, tracker, index) in its namespace; its mount, which only
    // talks to the service over the control socket, is where the upload is copied to.
    let w = World::new();
    w.repo.set_config(&format!(
        "{}[distribution]\nlisten = \"{}:{PORT}\"\n",
        Repo::LIVE,
        ph.ip
    ));
    let daemon = daemon_in(&ph, &w.repo, &[]);
    let mnt = Mount::start(&w.repo);
    let p = Site { mnt, daemon, w };
    let name = "fleet-1.0.bin";
    let blob = publish_random(&p, name, SIZE_MIB);
    let want_sha = sha256_file(&blob);
    let size = SIZE_MIB << 20;

    let upstream = format!("http://{}:{PORT}", ph.ip);
    let listed = p.w.repo.list().len();
    let mirrors: Vec<Mirror> = (0..MIRRORS)
        .map(|i| {
            let h = net.host(11 + i);
            let repo = Repo::with_config(Repo::LIVE);
            let key = export_repo_key(&p.w.repo, repo.dir.path());
            let daemon = daemon_in(
                &h,
                &repo,
                &["--upstream", &upstream, "--poll", "1", "--repo-key"]
                    .into_iter()
                    .chain([key.to_str().expect("utf-8 path")])
                    .collect::<Vec<_>>(),
            );
            wait_for_or(SYNC, || (repo.list().len() == listed).then_some(())).unwrap_or_else(
                || panic!("mirror {i} never listed the package:\n{}", daemon.log()),
            );
            let mnt = Mount::start(&repo);
            Mirror {
                mnt,
                daemon,
                repo,
                upstream: upstream.clone(),
                key,
                listen: None,
            }
        })
        .collect();

    // Every mirror reads the whole package at once, each under a deadline.
    let sent_before = ph.tx_bytes();
    let started = Instant::now();
    let reads: Vec<_> = mirrors
        .iter()
        .map(|m| {
            let path = m.mnt.path(&format!("dists/hello/{name}"));
            std::thread::spawn(move || {
                let out = Command::new("timeout")
                    .args(["--kill-after=10", READ_DEADLINE, "sha256sum"])
                    .arg(&path)
                    .output()
                    .expect("sha256sum");
                (out, started.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = reads
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let sent = ph.tx_bytes() - sent_before;

    for (i, (out, took)) in results.iter().enumerate() {
        let status = mirrors[i].status();
        eprintln!(
            "mirror {i}: {} in {took:?}; fetched {} uploaded {}",
            out.status,
            status
                .as_ref()
                .map_or(0, |s| s["downloaded_bytes"].as_u64().unwrap_or(0)),
            status
                .as_ref()
                .map_or(0, |s| s["uploaded_bytes"].as_u64().unwrap_or(0)),
        );
        let got = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && got.split_whitespace().next() == Some(want_sha.as_str()),
            "mirror {i} read {got:?} ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            mirrors[i].daemon.log()
        );
    }
    let copies = sent as f64 / size as f64;
    eprintln!("the primary sent {sent} bytes: {copies:.2} copies of the package");
    // Each mirror's own count of where its bytes came from (`sources`) agrees with the
    // network's: what the mirrors say the primary sent them is what left its interface (frames,
    // headers included, and its index and tracker answers: a little more).
    let counted: Vec<serde_json::Value> = mirrors
        .iter()
        .map(|m| {
            m.status_when("every byte of the package counted by source", |s| {
                ["origin", "primary", "mirrors"]
                    .iter()
                    .filter_map(|k| s["sources"][k].as_u64())
                    .sum::<u64>()
                    >= size
            })["sources"]
                .clone()
        })
        .collect();
    let from_primary: u64 = counted.iter().filter_map(|s| s["primary"].as_u64()).sum();
    eprintln!("the mirrors counted {from_primary} bytes from the primary: {counted:?}");
    assert!(
        from_primary <= sent && from_primary as f64 >= 0.8 * sent as f64,
        "the mirrors counted {from_primary} bytes from the primary, which sent {sent}: {counted:?}"
    );
    assert!(
        sent < 2 * size,
        "the primary sent {copies:.2} copies to {MIRRORS} mirrors: they did not share\n{}\n{}",
        p.daemon.log(),
        mirrors[0].daemon.log()
    );
}
