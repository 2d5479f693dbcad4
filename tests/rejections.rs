//! Every rejection path, one test per reason code (plus variants). Each asserts the stable
//! code, a human message, the files kept in quarantine with a verdict, the uploader's note in
//! the spool, and a published repository byte-identical to before.

pub mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{keys::*, packages::*, world::*};

fn names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Uploads `files` at the spool top level, runs a pass, asserts the rejection.
fn expect_rejected(w: &World, files: &[PathBuf], code: &str) -> serde_json::Value {
    let before = w.repo.snapshot();
    w.upload("", files);
    w.repo.once();
    let n = names(files);
    let refs: Vec<&str> = n.iter().map(String::as_str).collect();
    w.repo.assert_rejected(&before, code, &refs)
}

/// A python-built tar.gz (python's tarfile writes names and types `tar` refuses to create).
fn evil_tarball(dir: &Path, name: &str, body: &str) -> PathBuf {
    let out = dir.join(name);
    let script = format!(
        "import tarfile, io, sys\nt = tarfile.open(sys.argv[1], 'w:gz')\ndef add(name, data=b'x', **kw):\n    i = tarfile.TarInfo(name)\n    for k, v in kw.items(): setattr(i, k, v)\n    i.size = len(data) if i.type == tarfile.REGTYPE else 0\n    t.addfile(i, io.BytesIO(data) if i.type == tarfile.REGTYPE else None)\nadd('pkg/ok')\n{body}\nt.close()\n"
    );
    let st = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .status()
        .expect("python3");
    assert!(st.success());
    out
}

fn signed_triplet(w: &World, dir: &Path, file: &Path, directory: &str) -> Vec<PathBuf> {
    let sig = w.gpg.sign(ALICE, file, false, &[]);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let d = directive(
        &w.gpg,
        ALICE,
        dir,
        &name,
        &format!("version: 1.2\ndirectory: {directory}\nfilename: {name}\n"),
    );
    vec![file.to_path_buf(), sig, d]
}

#[test]
fn bad_signature_when_the_file_was_altered() {
    let w = World::new();
    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    fs::write(&files[0], b"tampered").unwrap();
    let v = expect_rejected(&w, &files, "bad-signature");
    assert!(
        v["message"].as_str().unwrap().contains("does not match"),
        "{v:#}"
    );
}

#[test]
fn bad_signature_when_the_directive_was_altered() {
    let w = World::new();
    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    let text = fs::read_to_string(&files[2])
        .unwrap()
        .replace("directory: hello", "directory: hellp");
    fs::write(&files[2], text).unwrap();
    expect_rejected(&w, &files, "bad-signature");
}

#[test]
fn bad_signature_dated_in_the_future() {
    let w = World::new();
    let d = w.scratch("future");
    let f = make_tarball(&d, "hello", "2.0");
    let future = (SystemTime::now() + Duration::from_secs(3 * 3600))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = w.gpg.sign(
        ALICE,
        &f,
        false,
        &[
            "--faked-system-time",
            &future.to_string(),
            "--ignore-time-conflict",
        ],
    );
    let v = expect_rejected(&w, &[f, sig], "bad-signature");
    assert!(v["message"].as_str().unwrap().contains("future"), "{v:#}");
}

#[test]
fn unknown_key() {
    let w = World::new();
    w.gpg
        .gen_key("Mallory <mallory@example.org>", "ed25519", "sign", "1y");
    let d = w.scratch("unknown");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign("mallory@example.org", &f, false, &[]);
    expect_rejected(&w, &[f, sig], "unknown-key");
}

#[test]
fn unknown_key_on_a_directive() {
    // The directive is judged first; its code must survive sequoia's error wrapping.
    let w = World::new();
    w.gpg
        .gen_key("Mallory <mallory@example.org>", "ed25519", "sign", "1y");
    let files = w.triplet("mallory@example.org", "hello", "2.0", "hello", "");
    expect_rejected(&w, &files, "unknown-key");
}

#[test]
fn not_authorized_for_the_directory() {
    let w = World::new();
    let files = w.triplet(ALICE, "other", "1.0", "other", "");
    let v = expect_rejected(&w, &files, "not-authorized");
    assert!(v["message"].as_str().unwrap().contains("other"));
    // The record says who tried, and where.
    assert_eq!(v["uploader"], w.alice);
    assert_eq!(v["directory"], "other");
}

#[test]
fn not_authorized_for_a_sibling_with_a_common_prefix() {
    let w = World::new();
    let files = w.triplet(ALICE, "hello", "1.0", "hellothere", "");
    expect_rejected(&w, &files, "not-authorized");
}

#[test]
fn expired_key_now_although_valid_when_signing() {
    let w = World::new();
    w.gpg
        .gen_key("Eve <eve@example.org>", "ed25519", "sign", "seconds=3");
    w.repo
        .add_key("hello", &w.gpg.export("eve@example.org", &w.work));
    let d = w.scratch("expired");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign("eve@example.org", &f, false, &[]);
    std::thread::sleep(Duration::from_secs(4));
    expect_rejected(&w, &[f, sig], "expired-key");
}

#[test]
fn revoked_key() {
    let w = World::new();
    let d = w.scratch("revoked");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign(ALICE, &f, false, &[]); // signed while still good
    w.gpg.revoke(&w.alice);
    w.repo.add_key("hello", &w.gpg.export(ALICE, &w.work)); // the updated cert merges in
    let keys: serde_json::Value =
        serde_json::from_str(&w.repo.repofs(&["keys", "list", "--json"])).unwrap();
    assert_eq!(keys[0]["revoked"], true);
    expect_rejected(&w, &[f, sig], "revoked-key");
}

#[test]
fn weak_hash_sha1() {
    let w = World::new();
    w.gpg
        .gen_key("Old <old@example.org>", "rsa2048", "sign", "1y");
    w.repo
        .add_key("hello", &w.gpg.export("old@example.org", &w.work));
    let d = w.scratch("sha1");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w
        .gpg
        .sign("old@example.org", &f, false, &["--digest-algo", "SHA1"]);
    let v = expect_rejected(&w, &[f, sig], "weak-hash");
    assert!(v["message"].as_str().unwrap().contains("SHA1"), "{v:#}");
}

#[test]
fn weak_hash_sha1_on_a_directive() {
    let w = World::new();
    w.gpg
        .gen_key("Old <old@example.org>", "rsa2048", "sign", "1y");
    w.repo
        .add_key("hello", &w.gpg.export("old@example.org", &w.work));
    let d = w.scratch("sha1dir");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign("old@example.org", &f, false, &[]);
    let dirv = d.join("hello-2.0.tar.gz.directive.asc");
    let body = "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\n";
    w.gpg
        .clearsign("old@example.org", body, &dirv, &["--digest-algo", "SHA1"]);
    expect_rejected(&w, &[f, sig, dirv], "weak-hash");
}

#[test]
fn signer_mismatch_between_file_and_directive() {
    let w = World::new();
    w.gpg
        .gen_key("Bob <bob@example.org>", "ed25519", "sign", "1y");
    w.repo
        .add_key("hello", &w.gpg.export("bob@example.org", &w.work));
    let d = w.scratch("mismatch");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign("bob@example.org", &f, false, &[]);
    let dirv = directive(
        &w.gpg,
        ALICE,
        &d,
        "hello-2.0.tar.gz",
        "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\n",
    );
    expect_rejected(&w, &[f, sig, dirv], "signer-mismatch");
}

#[test]
fn replay_of_a_used_directive() {
    let w = World::new();
    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    w.upload("", &files);
    w.repo.once();
    assert_eq!(w.repo.last_verdict()["state"], "accepted");
    // The very same signed triplet again (say, captured and resent).
    let v = expect_rejected(&w, &files, "replay");
    assert!(
        v["message"].as_str().unwrap().contains("already used"),
        "{v:#}"
    );
}

#[test]
fn replay_of_an_old_signature() {
    let w = World::new();
    let month_ago = (SystemTime::now() - Duration::from_secs(30 * 86400))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ten_days_ago = (SystemTime::now() - Duration::from_secs(10 * 86400))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    w.gpg.run(&[
        "--faked-system-time",
        &month_ago.to_string(),
        "--quick-gen-key",
        "Old Timer <ot@example.org>",
        "ed25519",
        "sign",
        "never",
    ]);
    w.repo
        .add_key("hello", &w.gpg.export("ot@example.org", &w.work));
    let d = w.scratch("stale");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign(
        "ot@example.org",
        &f,
        false,
        &["--faked-system-time", &ten_days_ago.to_string()],
    );
    let v = expect_rejected(&w, &[f, sig], "replay");
    assert!(
        v["message"].as_str().unwrap().contains("older than"),
        "{v:#}"
    );
}

#[test]
fn exists_without_replace() {
    let w = World::new();
    let d = w.scratch("exists");
    let f = make_tarball_with(&d, "hello", "1.0", Some("different bytes\n"));
    let files = signed_triplet(&w, &d, &f, "hello");
    expect_rejected(&w, &files, "exists");
}

#[test]
fn exists_for_a_pair_too() {
    let w = World::new();
    let d = w.scratch("exists-pair");
    let f = make_tarball_with(&d, "hello", "1.0", Some("different bytes\n"));
    let sig = w.gpg.sign(ALICE, &f, false, &[]);
    let before = w.repo.snapshot();
    w.upload("hello", &[f, sig]);
    w.repo.once();
    w.repo.assert_rejected(
        &before,
        "exists",
        &["hello/hello-1.0.tar.gz", "hello/hello-1.0.tar.gz.sig"],
    );
}

#[test]
fn exists_when_a_symlink_would_replace_a_file() {
    let w = World::new();
    let d = w.scratch("ln");
    let dirv = directive(
        &w.gpg,
        ALICE,
        &d,
        "h-1",
        "version: 1.2\ndirectory: hello\nsymlink: x hello-1.0.tar.gz\n",
    );
    expect_rejected(&w, &[dirv], "exists");
}

#[test]
fn not_found_for_rmsymlink_and_archive() {
    let w = World::new();
    let d = w.scratch("nf");
    let dirv = directive(
        &w.gpg,
        ALICE,
        &d,
        "h-1",
        "version: 1.2\ndirectory: hello\nrmsymlink: nothing-here\n",
    );
    expect_rejected(&w, &[dirv], "not-found");
    let dirv = directive(
        &w.gpg,
        ALICE,
        &d,
        "h-2",
        "version: 1.2\ndirectory: hello\narchive: hello-0.1.tar.gz\n",
    );
    expect_rejected(&w, &[dirv], "not-found");
}

#[test]
fn standalone_directive_is_atomic() {
    // The first line would succeed, the second fails: nothing at all may change.
    let w = World::new();
    let d = w.scratch("atomic");
    let dirv = directive(
        &w.gpg,
        ALICE,
        &d,
        "h-1",
        "version: 1.2\ndirectory: hello\nsymlink: hello-1.0.tar.gz latest\nrmsymlink: missing\n",
    );
    expect_rejected(&w, &[dirv], "not-found");
    assert!(w.repo.symlinks().is_empty());
}

#[test]
fn bad_directive_variants() {
    let w = World::new();
    for (i, body) in [
        "directory: hello\nfilename: hello-2.0.tar.gz\n", // no version
        "version: 1.2\ndirectory: hello\nfilename: hello-9.9.tar.gz\n", // names another file
        "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\nfrob: 1\n", // unknown key
        "version: 1.0\ndirectory: hello\nfilename: hello-2.0.tar.gz\n", // unsupported version
        "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\nreplace: maybe\n",
    ]
    .iter()
    .enumerate()
    {
        let d = w.scratch(&format!("bd{i}"));
        let f = make_tarball(&d, "hello", "2.0");
        let sig = w.gpg.sign(ALICE, &f, false, &[]);
        let dirv = directive(&w.gpg, ALICE, &d, "hello-2.0.tar.gz", body);
        expect_rejected(&w, &[f, sig, dirv], "bad-directive");
    }
}

#[test]
fn bad_directive_not_clear_signed() {
    let w = World::new();
    let d = w.scratch("notclear");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign(ALICE, &f, false, &[]);
    let plain = d.join("hello-2.0.tar.gz.directive");
    fs::write(
        &plain,
        "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\n",
    )
    .unwrap();
    // An inline-signed (not clear-signed) message is refused too.
    let asc = d.join("hello-2.0.tar.gz.directive.asc");
    w.gpg.run(&[
        "--local-user",
        ALICE,
        "--armor",
        "--sign",
        "--output",
        asc.to_str().unwrap(),
        plain.to_str().unwrap(),
    ]);
    expect_rejected(&w, &[f, sig, asc], "bad-directive");
}

#[test]
fn unsafe_path_in_the_directive() {
    let w = World::new();
    w.repo.add_key("/", &w.work.join("alice.asc"));
    let d = w.scratch("unsafe-dir");
    let f = make_tarball(&d, "hello", "2.0");
    let files = signed_triplet(&w, &d, &f, "../etc");
    expect_rejected(&w, &files, "unsafe-path");
}

#[test]
fn unsafe_path_symlink_target_out_of_the_repository() {
    let w = World::new();
    let d = w.scratch("unsafe-ln");
    let dirv = directive(
        &w.gpg,
        ALICE,
        &d,
        "h-1",
        "version: 1.2\ndirectory: hello\nsymlink: ../../etc/passwd pw\n",
    );
    expect_rejected(&w, &[dirv], "unsafe-path");
}

#[test]
fn unsafe_path_in_the_archive() {
    let w = World::new();
    for (i, body) in [
        "add('../../evil')",
        "add('/etc/cron.d/evil')",
        "add('pkg/ln', type=tarfile.SYMTYPE, linkname='../../../etc/passwd')",
        "add('pkg/ln', type=tarfile.SYMTYPE, linkname='/etc/passwd')",
        "add('pkg/hl', type=tarfile.LNKTYPE, linkname='../outside')",
        "add('pkg/dev', type=tarfile.CHRTYPE, devmajor=1, devminor=3)",
        "add('pkg/fifo', type=tarfile.FIFOTYPE)",
    ]
    .iter()
    .enumerate()
    {
        let d = w.scratch(&format!("evil{i}"));
        let f = evil_tarball(&d, "hello-2.0.tar.gz", body);
        let files = signed_triplet(&w, &d, &f, "hello");
        expect_rejected(&w, &files, "unsafe-path");
    }
}

#[test]
fn unsafe_path_for_a_symlink_in_the_spool() {
    let w = World::new();
    let before = w.repo.snapshot();
    std::os::unix::fs::symlink("/etc/shadow", w.repo.spool().join("shadow.tar.gz")).unwrap();
    w.repo.once();
    w.repo
        .assert_rejected(&before, "unsafe-path", &["shadow.tar.gz"]);
}

#[test]
fn unsafe_path_for_a_hard_link_in_the_spool() {
    let w = World::new();
    let d = w.scratch("hardlink");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign(ALICE, &f, false, &[]);
    let before = w.repo.snapshot();
    fs::create_dir_all(w.repo.spool().join("hello")).unwrap();
    fs::hard_link(&f, w.repo.spool().join("hello/hello-2.0.tar.gz")).unwrap();
    fs::copy(&sig, w.repo.spool().join("hello/hello-2.0.tar.gz.sig")).unwrap();
    w.repo.once();
    let v = w.repo.status();
    assert!(
        v.iter()
            .any(|e| e["reason"] == "unsafe-path" && e["files"][0] == "hello/hello-2.0.tar.gz"),
        "{v:#?}"
    );
    assert_eq!(w.repo.snapshot(), before);
    assert!(f.exists(), "the original file must be untouched");
}

#[test]
fn bad_archive_when_corrupt() {
    let w = World::new();
    let d = w.scratch("corrupt");
    let f = make_tarball(&d, "hello", "2.0");
    let bytes = fs::read(&f).unwrap();
    fs::write(&f, &bytes[..bytes.len() / 2]).unwrap(); // truncated, then signed as is
    let files = signed_triplet(&w, &d, &f, "hello");
    expect_rejected(&w, &files, "bad-archive");
}

#[test]
fn bad_archive_when_not_what_the_name_says() {
    let w = World::new();
    let d = w.scratch("notdeb");
    let f = d.join("fake_1.0_all.deb");
    fs::write(&f, b"!<arch>\nnot really\n").unwrap();
    let files = signed_triplet(&w, &d, &f, "hello");
    expect_rejected(&w, &files, "bad-archive");
}

#[test]
fn too_large_decompression_bomb() {
    let w = World::with_config("[limits]\nmax_unpacked_size = 1048576\n");
    let d = w.scratch("bomb");
    let f = evil_tarball(
        &d,
        "hello-2.0.tar.gz",
        "add('pkg/zeros', data=bytes(8 * 1024 * 1024))",
    );
    assert!(
        fs::metadata(&f).unwrap().len() < 100_000,
        "the bomb should compress well"
    );
    let files = signed_triplet(&w, &d, &f, "hello");
    expect_rejected(&w, &files, "too-large");
}

#[test]
fn too_large_pax_header_is_not_read_into_memory() {
    let w = World::new();
    let d = w.scratch("pax");
    // 4 MiB of pax record that gzip shrinks to a few KiB.
    let f = evil_tarball(&d, "hello-2.0.tar.gz", "i = tarfile.TarInfo('pkg/x'); i.pax_headers = {'comment': 'x' * (4 << 20)}; t.addfile(i, io.BytesIO(b''))");
    assert!(fs::metadata(&f).unwrap().len() < 100_000);
    let files = signed_triplet(&w, &d, &f, "hello");
    let v = expect_rejected(&w, &files, "too-large");
    assert!(v["message"].as_str().unwrap().contains("headers"), "{v:#}");
}

#[test]
fn too_large_file_and_directive() {
    let w = World::with_config("[limits]\nmax_file_size = 100000\nmax_directive_size = 2000\n");
    let d = w.scratch("big");
    let f = d.join("blob-1.0.bin");
    fs::write(&f, vec![7u8; 200_000]).unwrap();
    let files = signed_triplet(&w, &d, &f, "hello");
    expect_rejected(&w, &files, "too-large");

    let d = w.scratch("bigdir");
    let f = make_tarball(&d, "hello", "2.0");
    let sig = w.gpg.sign(ALICE, &f, false, &[]);
    let body = format!(
        "version: 1.2\ndirectory: hello\nfilename: hello-2.0.tar.gz\ncomment: {}\n",
        "x".repeat(5000)
    );
    let dirv = directive(&w.gpg, ALICE, &d, "hello-2.0.tar.gz", &body);
    expect_rejected(&w, &[f, sig, dirv], "too-large");
}

#[test]
fn incomplete_after_the_sweep_time() {
    let w =
        World::with_config("[ingest]\nsettle = \"0s\"\npair_wait = \"0s\"\nsweep_after = \"1s\"\n");
    let d = w.scratch("incomplete");
    let f = make_tarball(&d, "hello", "2.0");
    let before = w.repo.snapshot();
    w.upload("hello", &[f]);
    fs::write(
        w.repo.spool().join("hello/.hello-2.0.tar.gz.XXXXXX"),
        b"rsync temp",
    )
    .unwrap();
    w.repo.once();
    assert_eq!(
        w.repo.status()[0]["state"],
        "pending",
        "must wait before the sweep time"
    );
    std::thread::sleep(Duration::from_millis(1200));
    w.repo.once();
    w.repo
        .assert_rejected(&before, "incomplete", &["hello/.hello-2.0.tar.gz.XXXXXX"]);
    let all = w.repo.status();
    assert!(
        all.iter()
            .any(|e| e["reason"] == "incomplete" && e["files"][0] == "hello/hello-2.0.tar.gz"),
        "{all:#?}"
    );
}

/// Every code the product defines has a test above (this list must follow `Reason::ALL`).
#[test]
fn every_reason_code_is_covered() {
    let this = include_str!("rejections.rs");
    for r in repofs::Reason::ALL {
        // Each code must appear as the expected code of an asserted rejection.
        let asserted = format!("\"{}\")", r.code());
        assert!(
            this.contains(&asserted),
            "no rejection test for {}",
            r.code()
        );
    }
}
