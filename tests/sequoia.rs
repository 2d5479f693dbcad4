//! Keys and signatures made by sequoia (not gpg), including backdated ones: validity is judged
//! both when the key signed and now, and gpg agrees with what sequoia made.

pub mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{packages::*, world::*};
use sequoia_openpgp as openpgp;

use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::serialize::SerializeInto;

const DAY: Duration = Duration::from_secs(86400);

fn ago(d: Duration) -> SystemTime {
    SystemTime::now() - d
}

/// A cert with a signing subkey, created `created`, valid for `validity` (None: forever).
fn make_cert(uid: &str, created: SystemTime, validity: Option<Duration>) -> Cert {
    CertBuilder::new()
        .add_userid(uid)
        .add_signing_subkey()
        .set_creation_time(created)
        .set_validity_period(validity)
        .generate()
        .expect("generate cert")
        .0
}

fn export(cert: &Cert, dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.asc"));
    fs::write(&p, cert.armored().to_vec().expect("armor")).expect("write cert");
    p
}

fn signer_at<'a>(cert: &Cert, t: SystemTime, sink: Message<'a>) -> Signer<'a> {
    let p = StandardPolicy::new();
    let key = cert
        .keys()
        .with_policy(&p, Some(t))
        .secret()
        .for_signing()
        .next()
        .expect("signing key at t");
    let pair = key.key().clone().into_keypair().expect("keypair");
    Signer::new(sink, pair).expect("signer").creation_time(t)
}

/// Armored detached signature over `data`, dated `t`.
fn sign_detached(cert: &Cert, t: SystemTime, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let msg = Armorer::new(Message::new(&mut out))
        .kind(armor::Kind::Signature)
        .build()
        .expect("armorer");
    let mut s = signer_at(cert, t, msg).detached().build().expect("build");
    s.write_all(data).expect("sign");
    s.finalize().expect("finalize");
    out
}

/// Clear-signed `body`, dated `t`.
fn clearsign(cert: &Cert, t: SystemTime, body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = signer_at(cert, t, Message::new(&mut out))
        .cleartext()
        .build()
        .expect("build");
    s.write_all(body.as_bytes()).expect("sign");
    s.finalize().expect("finalize");
    out
}

/// Writes FILE, FILE.sig and FILE.directive.asc for `hello-2.0.tar.gz` into the spool.
fn upload_triplet(w: &World, cert: &Cert, t: SystemTime) -> Vec<String> {
    let d = w.scratch("seq");
    let tgz = make_tarball(&d, "hello", "2.0");
    let data = fs::read(&tgz).unwrap();
    let spool = w.repo.spool();
    fs::write(spool.join("hello-2.0.tar.gz"), &data).unwrap();
    fs::write(
        spool.join("hello-2.0.tar.gz.sig"),
        sign_detached(cert, t, &data),
    )
    .unwrap();
    let body =
        "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\ncomment: made with sequoia\n";
    fs::write(
        spool.join("hello-2.0.tar.gz.directive.asc"),
        clearsign(cert, t, body),
    )
    .unwrap();
    vec![
        "hello-2.0.tar.gz".into(),
        "hello-2.0.tar.gz.sig".into(),
        "hello-2.0.tar.gz.directive.asc".into(),
    ]
}

#[test]
fn sequoia_key_and_signatures_are_accepted_and_gpg_agrees() {
    let w = World::new();
    let cert = make_cert("Seq <seq@example.org>", ago(DAY), None);
    w.repo.add_key("hello", &export(&cert, &w.work, "seq"));
    let d = w.scratch("interop");
    let tgz = make_tarball(&d, "hello", "2.0");
    let data = fs::read(&tgz).unwrap();
    let sig = d.join("hello-2.0.tar.gz.sig");
    fs::write(&sig, sign_detached(&cert, SystemTime::now(), &data)).unwrap();
    // gpg verifies what sequoia signed.
    w.gpg
        .run(&["--import", w.work.join("seq.asc").to_str().unwrap()]);
    let v = Command::new("gpg")
        .env("GNUPGHOME", w.gpg.home.path())
        .args(["--batch", "--verify"])
        .arg(&sig)
        .arg(&tgz)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "gpg rejects sequoia's signature: {}",
        String::from_utf8_lossy(&v.stderr)
    );

    upload_triplet(&w, &cert, SystemTime::now());
    w.repo.once();
    let v = w.repo.last_verdict();
    assert_eq!(v["state"], "accepted", "{v:#}");
    assert_eq!(v["uploader"], cert.fingerprint().to_hex());
}

#[test]
fn key_expired_at_signing_time() {
    let w = World::with_config(
        "[ingest]\nsettle = \"0s\"\npair_wait = \"0s\"\nmax_signature_age = \"30days\"\n",
    );
    // Valid for 5 days from 20 days ago; the signature is dated 10 days ago.
    let cert = make_cert("Late <late@example.org>", ago(20 * DAY), Some(5 * DAY));
    w.repo.add_key("hello", &export(&cert, &w.work, "late"));
    // The signer must use the key while it was valid to be able to sign at all; sign with
    // the subkey as of 16 days ago but stamp the signature 10 days ago.
    let p = StandardPolicy::new();
    let key = cert
        .keys()
        .with_policy(&p, Some(ago(16 * DAY)))
        .secret()
        .for_signing()
        .next()
        .unwrap();
    let data = b"late data".to_vec();
    let mut out = Vec::new();
    {
        let msg = Armorer::new(Message::new(&mut out))
            .kind(armor::Kind::Signature)
            .build()
            .unwrap();
        let mut s = Signer::new(msg, key.key().clone().into_keypair().unwrap())
            .unwrap()
            .creation_time(ago(10 * DAY))
            .detached()
            .build()
            .unwrap();
        s.write_all(&data).unwrap();
        s.finalize().unwrap();
    }
    let before = w.repo.snapshot();
    fs::create_dir_all(w.repo.spool().join("hello")).unwrap();
    fs::write(w.repo.spool().join("hello/late-1.0.bin"), &data).unwrap();
    fs::write(w.repo.spool().join("hello/late-1.0.bin.sig"), out).unwrap();
    w.repo.once();
    w.repo.assert_rejected(
        &before,
        "expired-key",
        &["hello/late-1.0.bin", "hello/late-1.0.bin.sig"],
    );
}

#[test]
fn key_valid_at_signing_time_but_expired_now() {
    let w = World::with_config(
        "[ingest]\nsettle = \"0s\"\npair_wait = \"0s\"\nmax_signature_age = \"30days\"\n",
    );
    let cert = make_cert("Gone <gone@example.org>", ago(20 * DAY), Some(15 * DAY));
    w.repo.add_key("hello", &export(&cert, &w.work, "gone"));
    let before = w.repo.snapshot();
    let files = upload_triplet(&w, &cert, ago(10 * DAY));
    w.repo.once();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    w.repo.assert_rejected(&before, "expired-key", &refs);
}

#[test]
fn signature_older_than_the_window_with_a_good_key() {
    let w = World::new();
    let cert = make_cert("Slow <slow@example.org>", ago(20 * DAY), None);
    w.repo.add_key("hello", &export(&cert, &w.work, "slow"));
    let before = w.repo.snapshot();
    let files = upload_triplet(&w, &cert, ago(8 * DAY)); // default window: 7 days
    w.repo.once();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    w.repo.assert_rejected(&before, "replay", &refs);
}

#[test]
fn same_window_accepts_a_recent_backdated_signature() {
    let w = World::new();
    let cert = make_cert("Recent <recent@example.org>", ago(20 * DAY), None);
    w.repo.add_key("hello", &export(&cert, &w.work, "recent"));
    upload_triplet(&w, &cert, ago(6 * DAY));
    w.repo.once();
    assert_eq!(
        w.repo.last_verdict()["state"],
        "accepted",
        "{:#?}",
        w.repo.status()
    );
}
