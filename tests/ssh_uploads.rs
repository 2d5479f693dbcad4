//! Real transfer clients writing into the spool over a loopback sshd: scp's legacy protocol
//! and sftp's resumable `reput`, against a live daemon.

pub mod common;

use std::fs;
use std::time::Duration;

use common::{digest::*, net::*, repo::*, world::*};

#[test]
fn scp_triplet_and_sftp_reput_into_the_spool() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[]);
    let sshd = Sshd::start();

    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    sshd.scp(&files, &w.repo.spool());
    let f = daemon.wait_published(&w.repo, "hello", "hello-2.0.tar.gz");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &files[0]));

    // An sftp upload cut off half-way: the partial file waits for its signature...
    let d = w.scratch("sftp");
    let big = d.join("big-2.0.bin");
    let data: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    fs::write(&big, &data).unwrap();
    let sig = w.gpg.sign(ALICE, &big, false, &[]);
    let remote = w.repo.spool().join("hello");
    fs::create_dir_all(&remote).unwrap();
    fs::write(remote.join("big-2.0.bin"), &data[..data.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        remote.join("big-2.0.bin").exists(),
        "a partial upload without signature must wait"
    );
    // ...and `reput` appends the rest from where it stopped, then the signature follows.
    sshd.sftp(&format!(
        "reput {} {}\nput {} {}/\n",
        big.display(),
        remote.join("big-2.0.bin").display(),
        sig.display(),
        remote.display()
    ));
    let f = daemon.wait_published(&w.repo, "hello", "big-2.0.bin");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &big));
    assert!(
        w.repo.verdicts("rejected").is_empty(),
        "{:#?}",
        w.repo.status()
    );
    assert!(daemon.terminate().success());
}
