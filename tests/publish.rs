//! Uploads that must be accepted, driven through the real binaries with gpg-made keys.

pub mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{clients::*, digest::*, keys::*, packages::*, process::*, repo::*, world::*};
use serde_json::Value;

fn find<'a>(list: &'a [Value], dir: &str, file: &str) -> &'a Value {
    list.iter()
        .find(|f| f["directory"] == dir && f["filename"] == file)
        .unwrap_or_else(|| panic!("{dir}/{file} not listed in {list:#?}"))
}

#[test]
fn pair_is_published_with_hashes_matching_coreutils() {
    let w = World::new();
    let list = w.repo.list();
    let f = find(&list, "hello", "hello-1.0.tar.gz");
    let src = w.work.join("hello-1.0.tar.gz");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &src));
    assert_eq!(f["md5"], tool_hash("md5sum", &src));
    assert_eq!(f["size"], fs::metadata(&src).unwrap().len());
    assert_eq!(f["name"], "hello");
    assert_eq!(f["version"], "1.0");
    assert_eq!(f["uploader"], w.alice);
    assert!(f["published_at"].as_str().unwrap().ends_with('Z'));
    let sig = find(&list, "hello", "hello-1.0.tar.gz.sig");
    assert_eq!(sig["kind"], "signature");
    // The store holds exactly the uploaded bytes, and the spool is empty again.
    let sha = f["sha256"].as_str().unwrap();
    let obj = w.repo.root.join("store/objects").join(&sha[..2]).join(sha);
    assert_eq!(fs::read(obj).unwrap(), fs::read(&src).unwrap());
    assert!(
        fs::read_dir(w.repo.spool().join("hello"))
            .unwrap()
            .next()
            .is_none(),
        "spool not cleaned"
    );
    assert_eq!(w.repo.last_verdict()["state"], "accepted");
}

#[test]
fn rsa_key_with_signing_subkey_and_top_level_pair() {
    let repo = Repo::new();
    let gpg = Gpg::new();
    let fpr = gpg.gen_key_with_subkey("Rob <rob@example.org>", "rsa2048");
    let work = repo.dir.path().join("w");
    fs::create_dir_all(&work).unwrap();
    repo.add_key("/", &gpg.export("rob@example.org", &work));
    let tgz = make_tarball(&work, "gizmo", "3.1");
    let sig = gpg.sign("rob@example.org", &tgz, true, &[]);
    // At the spool's top level, a pair goes into the package's own name.
    upload(&repo, "", &[&tgz, &sig]);
    repo.once();
    let list = repo.list();
    let f = find(&list, "gizmo", "gizmo-3.1.tar.gz");
    assert_eq!(
        f["uploader"], fpr,
        "uploader must be the primary key, not the subkey"
    );
}

#[test]
fn gnupload_into_the_spool_with_a_running_daemon() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[]);
    let d = w.scratch("gnu");
    let tgz = make_tarball(&d, "hello", "2.0");
    // The real gnupload script, unchanged, with the `--to LOCALDIR:DIRECTORY` form.
    let out = Command::new("/usr/share/gnulib/build-aux/gnupload")
        .current_dir(&d)
        .env("GNUPGHOME", w.gpg.home.path())
        .args([
            "--to",
            &format!("{}:hello", w.repo.spool().display()),
            "--symlink-regex",
            "--user",
            ALICE,
        ])
        .arg(tgz.file_name().unwrap())
        .output()
        .expect("run gnupload");
    assert!(
        out.status.success(),
        "gnupload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.wait_published(&w.repo, "hello", "hello-2.0.tar.gz");
    let links = w.repo.symlinks();
    assert!(
        links
            .iter()
            .any(|l| l["name"] == "hello-latest.tar.gz" && l["target"] == "hello-2.0.tar.gz"),
        "{links:#?}"
    );
    assert!(links.iter().any(|l| l["name"] == "hello-latest.tar.gz.sig"));
    // Standalone directive from gnupload: remove the symlink again.
    let out = Command::new("/usr/share/gnulib/build-aux/gnupload")
        .current_dir(&d)
        .env("GNUPGHOME", w.gpg.home.path())
        .args([
            "--to",
            &format!("{}:hello", w.repo.spool().display()),
            "--user",
            ALICE,
            "--rmsymlink",
            "hello-latest.tar.gz.sig",
        ])
        .output()
        .expect("run gnupload");
    assert!(
        out.status.success(),
        "gnupload --rmsymlink: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the rmsymlink directive", Duration::from_secs(20), || {
        (!w.repo
            .symlinks()
            .iter()
            .any(|l| l["name"] == "hello-latest.tar.gz.sig"))
        .then_some(())
    });
    assert!(
        daemon.terminate().success(),
        "repofsd did not exit cleanly on SIGTERM"
    );
}

#[test]
fn standalone_directives_symlink_then_archive() {
    let w = World::new();
    let d = w.scratch("standalone");
    directive(
        &w.gpg,
        ALICE,
        &d,
        "host-1",
        "version: 1.2\ndirectory: hello\nsymlink: hello-1.0.tar.gz latest.tar.gz\n",
    );
    w.upload("", &[d.join("host-1.directive.asc")]);
    w.repo.once();
    assert!(w
        .repo
        .symlinks()
        .iter()
        .any(|l| l["name"] == "latest.tar.gz" && l["directory"] == "hello"));

    directive(
        &w.gpg,
        ALICE,
        &d,
        "host-2",
        "version: 1.2\ndirectory: hello\narchive: hello-1.0.tar.gz\n",
    );
    w.upload("", &[d.join("host-2.directive.asc")]);
    w.repo.once();
    assert!(
        w.repo.list().is_empty(),
        "archive: must take the file and its .sig offline"
    );
    let all = w.repo.list_all();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|f| f["state"] == "archived"));
    // Archived, not destroyed: the bytes are still in the store.
    let sha = all[0]["sha256"].as_str().unwrap();
    assert!(w
        .repo
        .root
        .join("store/objects")
        .join(&sha[..2])
        .join(sha)
        .exists());
}

/// Uploads a different `hello/hello-1.0.tar.gz` with a directive of `version_lines`, returns it.
fn reupload_changed_hello(w: &World, scratch: &str, version_lines: &str) -> PathBuf {
    let d = w.scratch(scratch);
    let tgz = make_tarball_with(&d, "hello", "1.0", Some(scratch));
    let sig = w.gpg.sign(ALICE, &tgz, false, &[]);
    let body = format!("{version_lines}directory: hello\nfilename: hello-1.0.tar.gz\n");
    let dirv = directive(&w.gpg, ALICE, &d, "hello-1.0.tar.gz", &body);
    w.upload("", &[tgz.clone(), sig, dirv]);
    w.repo.once();
    assert_eq!(
        w.repo.last_verdict()["state"],
        "accepted",
        "{:#?}",
        w.repo.status()
    );
    let list = w.repo.list();
    assert_eq!(
        find(&list, "hello", "hello-1.0.tar.gz")["sha256"],
        tool_hash("sha256sum", &tgz)
    );
    tgz
}

#[test]
fn replace_archives_the_old_file() {
    let w = World::new();
    let old_sha = find(&w.repo.list(), "hello", "hello-1.0.tar.gz")["sha256"].clone();
    reupload_changed_hello(&w, "replace", "version: 1.2\nreplace: true\n");
    let archived: Vec<_> = w
        .repo
        .list_all()
        .into_iter()
        .filter(|f| f["state"] == "archived")
        .collect();
    assert!(
        archived.iter().any(|f| f["sha256"] == old_sha),
        "old file not archived: {archived:#?}"
    );
}

#[test]
fn directive_version_1_1_replaces_silently() {
    let w = World::new();
    reupload_changed_hello(&w, "v11", "version: 1.1\n");
}

#[test]
fn identical_reupload_is_a_no_op() {
    let w = World::new();
    let before = w.repo.snapshot();
    let src = w.work.join("hello-1.0.tar.gz");
    let sig = w.gpg.sign(ALICE, &src, true, &[]); // a new signature over the same bytes
    w.upload("hello", &[src, sig]);
    w.repo.once();
    let v = w.repo.last_verdict();
    assert_eq!(v["state"], "accepted", "{v:#}");
    assert!(
        v["message"].as_str().unwrap().contains("identical"),
        "{v:#}"
    );
    assert_eq!(w.repo.snapshot(), before);
}

/// Package metadata of every supported format, and the entry list, without the mount.
#[test]
fn archive_formats_and_metadata() {
    let w = World::new();
    let d = w.scratch("formats");
    let sh = |script: &str| sh(&d, script);
    // Arch: .PKGINFO at the root, zstd-compressed.
    sh("mkdir -p arch/usr/bin && echo '#!/bin/sh' > arch/usr/bin/tool && chmod 755 arch/usr/bin/tool
        printf 'pkgname = tool\\npkgver = 2.1-3\\narch = x86_64\\npkgdesc = A tool\\ndepend = glibc\\ndepend = bash>=5\\n' > arch/.PKGINFO
        tar -C arch -cf - .PKGINFO usr | zstd -q -o tool-2.1-3-x86_64.pkg.tar.zst");
    // Debian, built by dpkg-deb.
    sh("mkdir -p deb/DEBIAN deb/usr/share/doc/hi && echo doc > deb/usr/share/doc/hi/README
        printf 'Package: hi\\nVersion: 1.0-2\\nArchitecture: all\\nMaintainer: A <a@b>\\nDepends: libc6 (>= 2.34), bash\\nDescription: says hi\\n more\\n' > deb/DEBIAN/control
        dpkg-deb -Zxz --root-owner-group --build deb hi_1.0-2_all.deb >/dev/null");
    // tpm: info/package.json, gzip.
    sh("mkdir -p tpm/info tpm/data && echo x > tpm/data/x
        printf '{\"Version\":\"0.9\",\"Maintainer\":\"m\",\"Description\":\"d\",\"Dependencies\":[\"zlib\"],\"Type\":\"Binary\"}' > tpm/info/package.json
        tar -C tpm -czf tpmpkg-0.9.tar.gz info data");
    // distpac: manifest.yaml, xz.
    sh("mkdir -p dp/assets dp/scripts && echo a > dp/assets/a && echo 'exit 0' > dp/scripts/install.sh
        printf 'name: webapp\\nversion: 1.2.3\\ndependencies:\\n  - db\\n' > dp/manifest.yaml
        tar -C dp -cJf webapp-1.2.3.tar.xz manifest.yaml assets scripts");
    // Plain tar, and a file that is no archive.
    sh("mkdir -p plain/p-4 && echo p > plain/p-4/f && tar -C plain -cf p-4.tar p-4 && echo notes > NOTES-1.txt");
    let files = [
        "tool-2.1-3-x86_64.pkg.tar.zst",
        "hi_1.0-2_all.deb",
        "tpmpkg-0.9.tar.gz",
        "webapp-1.2.3.tar.xz",
        "p-4.tar",
        "NOTES-1.txt",
    ];
    w.repo.add_key("pkgs", &w.work.join("alice.asc"));
    for f in files {
        let p = d.join(f);
        let sig = w.gpg.sign(ALICE, &p, false, &[]);
        w.upload("pkgs", &[p, sig]);
    }
    w.repo.once();
    let list = w.repo.list();
    for (file, name, version) in [
        ("tool-2.1-3-x86_64.pkg.tar.zst", "tool", "2.1-3"),
        ("hi_1.0-2_all.deb", "hi", "1.0-2"),
        ("tpmpkg-0.9.tar.gz", "tpmpkg", "0.9"),
        ("webapp-1.2.3.tar.xz", "webapp", "1.2.3"),
        ("p-4.tar", "p", "4"),
        ("NOTES-1.txt", "NOTES", "1.txt"),
    ] {
        let f = find(&list, "pkgs", file);
        assert_eq!(
            (f["name"].as_str(), f["version"].as_str()),
            (Some(name), Some(version)),
            "{file}"
        );
    }
    assert_eq!(find(&list, "pkgs", "NOTES-1.txt")["kind"], "plain");

    // The catalog holds metadata and every entry, matching what `tar -t` sees.
    let db = w.repo.catalog();
    let file_id = |file: &str| w.repo.file_id("pkgs", file);
    let meta = |file: &str| -> repofs::catalog::PackageRow {
        db.package(file_id(file))
            .unwrap()
            .unwrap_or_else(|| panic!("{file} is not a live package"))
    };
    let p = meta("tool-2.1-3-x86_64.pkg.tar.zst");
    assert_eq!(
        (p.meta_source.as_str(), p.arch.as_deref(), p.depends),
        (
            "pkginfo",
            Some("x86_64"),
            vec!["glibc".into(), "bash>=5".into()]
        )
    );
    let p = meta("hi_1.0-2_all.deb");
    assert_eq!(
        (p.meta_source.as_str(), p.depends),
        ("deb", vec!["libc6 (>= 2.34)".into(), "bash".into()])
    );
    assert_eq!(meta("tpmpkg-0.9.tar.gz").meta_source, "tpm");
    assert_eq!(meta("webapp-1.2.3.tar.xz").meta_source, "distpac");
    assert_eq!(meta("p-4.tar").meta_source, "filename");

    let entries = |file: &str| -> Vec<String> {
        let mut paths: Vec<String> = db
            .entries(file_id(file))
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        paths.sort();
        paths
    };
    let tar_t = |args: &[&str]| -> Vec<String> {
        let out = Command::new("tar")
            .args(args)
            .current_dir(&d)
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty() && l != ".")
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(
        entries("webapp-1.2.3.tar.xz"),
        tar_t(&["-tJf", "webapp-1.2.3.tar.xz"])
    );
    assert_eq!(entries("p-4.tar"), tar_t(&["-tf", "p-4.tar"]));
    assert_eq!(
        entries("tool-2.1-3-x86_64.pkg.tar.zst"),
        tar_t(&["--zstd", "-tf", "tool-2.1-3-x86_64.pkg.tar.zst"])
    );
    let deb_data = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile hi_1.0-2_all.deb | tar -t")
        .current_dir(&d)
        .output()
        .unwrap();
    let mut want: Vec<String> = String::from_utf8_lossy(&deb_data.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    want.sort();
    assert_eq!(entries("hi_1.0-2_all.deb"), want);

    // For a .deb, the recorded payload is exactly the data.tar member: what xz inflates from
    // those bytes is what dpkg-deb extracts.
    let p = meta("hi_1.0-2_all.deb");
    let (off, size) = (p.payload_offset, p.payload_size);
    assert_eq!(p.compression, "xz");
    let deb = fs::read(d.join("hi_1.0-2_all.deb")).unwrap();
    fs::write(
        d.join("payload.xz"),
        &deb[off as usize..(off + size) as usize],
    )
    .unwrap();
    let ours = Command::new("xz")
        .args(["-dc", "payload.xz"])
        .current_dir(&d)
        .output()
        .unwrap();
    let theirs = Command::new("dpkg-deb")
        .args(["--fsys-tarfile", "hi_1.0-2_all.deb"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(ours.status.success() && !ours.stdout.is_empty());
    assert_eq!(
        ours.stdout, theirs.stdout,
        "payload offset/size do not delimit data.tar"
    );

    // In a compressed payload, data offsets are positions in the inflated tar stream.
    let e = db
        .entry(file_id("webapp-1.2.3.tar.xz"), "manifest.yaml")
        .unwrap()
        .expect("manifest.yaml entry");
    let (off, size) = (e.data_offset, e.size);
    let tar = Command::new("xz")
        .args(["-dc", "webapp-1.2.3.tar.xz"])
        .current_dir(&d)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        &tar[off as usize..(off + size) as usize],
        fs::read(d.join("dp/manifest.yaml")).unwrap().as_slice()
    );

    // For plain tar, data offsets point straight at the bytes in the published file.
    let e = db
        .entry(file_id("p-4.tar"), "p-4/f")
        .unwrap()
        .expect("p-4/f entry");
    let (off, size) = (e.data_offset, e.size);
    let bytes = fs::read(d.join("p-4.tar")).unwrap();
    assert_eq!(&bytes[off as usize..(off + size) as usize], b"p\n");
}

#[test]
fn daemon_catches_up_on_uploads_made_while_it_was_down() {
    let w = World::new();
    let [a, b, c] = w.triplet(ALICE, "hello", "3.0", "hello", "");
    w.upload("", &[a, b, c]);
    w.repo.set_config(Repo::LIVE);
    std::thread::sleep(Duration::from_millis(400)); // the catch-up pass must see them settled
    let mut daemon = Daemon::start(&w.repo, &[]);
    // "ready" is logged only after the first pass, so the catch-up has happened by now.
    assert!(
        w.repo
            .list()
            .iter()
            .any(|f| f["filename"] == "hello-3.0.tar.gz"),
        "{}",
        daemon.log()
    );
    // And new uploads are picked up from events.
    let [a, b, c] = w.triplet(ALICE, "hello", "3.1", "hello/sub", "");
    w.upload("", &[a, b, c]);
    daemon.wait_published(&w.repo, "hello/sub", "hello-3.1.tar.gz");
    // Pairs into spool subdirectories made after the watch started, each written the moment
    // its directory exists: `notify` watches a new directory only after reporting it, so these
    // files raise no event of their own and only the daemon's rescans find them.
    let pairs: Vec<_> = (2..6)
        .map(|minor| {
            let d = w.scratch(&format!("deep{minor}"));
            let tgz = make_tarball(&d, "hello", &format!("3.{minor}"));
            let sig = w.gpg.sign(ALICE, &tgz, false, &[]);
            (format!("hello/deep{minor}/a/b"), tgz, sig)
        })
        .collect();
    for (dir, tgz, sig) in &pairs {
        upload(&w.repo, dir, &[tgz, sig]);
    }
    for (dir, tgz, _) in &pairs {
        let name = tgz.file_name().unwrap().to_str().unwrap();
        daemon.wait_published(&w.repo, dir, name);
    }
    assert!(daemon.terminate().success());
}

#[test]
fn pending_uploads_are_reported() {
    let w = World::new();
    let d = w.scratch("pending");
    let tgz = make_tarball(&d, "hello", "9.9");
    w.upload("hello", &[tgz]);
    w.repo.once();
    let pending = w.repo.verdicts("pending");
    let p = pending.first().expect("pending entry");
    assert_eq!(p["files"][0], "hello/hello-9.9.tar.gz");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("hello-9.9.tar.gz.sig"),
        "{p:#}"
    );
    assert!(Path::new(&w.repo.spool().join("hello/hello-9.9.tar.gz")).exists());
}

#[test]
fn keys_list_and_remove() {
    let w = World::new();
    let keys: Value = serde_json::from_str(&w.repo.repofs(&["keys", "list", "--json"])).unwrap();
    assert_eq!(keys[0]["fingerprint"], w.alice);
    assert_eq!(keys[0]["directories"][0], "hello");
    assert_eq!(keys[0]["revoked"], false);
    w.repo.repofs(&["keys", "remove", &w.alice.to_lowercase()]);
    let keys: Value = serde_json::from_str(&w.repo.repofs(&["keys", "list", "--json"])).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 0);
    assert!(!w
        .repo
        .repofs_output(&["keys", "remove", &w.alice])
        .status
        .success());
}

#[test]
fn once_with_default_settings_waits_out_the_quiet_time() {
    // An `[ingest]` section with nothing in it: the shipped defaults (settle 2s, pair_wait 5s).
    let repo = Repo::with_config("[ingest]\n");
    let gpg = Gpg::new();
    gpg.gen_key(&format!("Alice <{ALICE}>"), "ed25519", "sign", "1y");
    let work = repo.dir.path().join("w");
    fs::create_dir_all(&work).unwrap();
    repo.add_key("/", &gpg.export(ALICE, &work));
    let tgz = make_tarball(&work, "quick", "1.0");
    let sig = gpg.sign(ALICE, &tgz, false, &[]);
    let lone = make_tarball(&work.join("lone"), "lone", "1.0");
    upload(&repo, "quick", &[&tgz, &sig]);
    upload(&repo, "lone", &[&lone]);
    let start = std::time::Instant::now();
    repo.once();
    assert!(
        repo.list()
            .iter()
            .any(|f| f["filename"] == "quick-1.0.tar.gz"),
        "{:#?}",
        repo.status()
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    let pending = repo.verdicts("pending");
    assert_eq!(
        pending.len(),
        1,
        "the lone file stays pending: {pending:#?}"
    );
}

/// Regression: `repofs list | grep -q x` made repofs panic on EPIPE.
#[test]
fn list_into_a_closed_pipe_is_not_an_error() {
    let w = World::new();
    let mut child = w
        .repo
        .cmd(REPOFS)
        .args(["list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before repofs writes
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{:?}: {stderr}",
        out.status
    );
}

/// rsync --partial renames an interrupted transfer to the final name: that file must wait
/// for its signature (not be judged), and the resumed --append-verify upload is accepted.
#[test]
fn rsync_interrupted_then_resumed_with_append_verify() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[]);
    let big = rsync_payload(&w.scratch("rsync"), "big-1.0.bin");
    let sig = w.gpg.sign(ALICE, &big, false, &[]);
    let dest = w.repo.spool().join("hello");
    fs::create_dir_all(&dest).unwrap();
    interrupted_rsync(&big, &dest);
    std::thread::sleep(Duration::from_millis(800)); // longer than settle: the daemon looks at it
    assert!(
        dest.join("big-1.0.bin").exists(),
        "a partial upload without signature must wait in the spool"
    );
    assert!(w
        .repo
        .status()
        .iter()
        .all(|e| e["state"] != "rejected" || e["files"][0] != "hello/big-1.0.bin"));

    // Resume, then send the signature: now it is complete.
    let resumed = rsync_partial(&["--append-verify"], &big, &dest).status();
    assert!(resumed.unwrap().success());
    assert!(rsync_partial(&[], &sig, &dest).status().unwrap().success());
    let f = daemon.wait_published(&w.repo, "hello", "big-1.0.bin");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &big));
    assert!(daemon.terminate().success());
}

#[test]
fn keys_add_keeps_only_public_key_material() {
    use sequoia_openpgp::{parse::Parse, Cert};
    let w = World::new();
    let secret = w.work.join("alice-secret.asc");
    let out = w.gpg.run(&["--armor", "--export-secret-keys", ALICE]);
    fs::write(&secret, out.stdout).unwrap();
    w.repo.add_key("more", &secret);
    let blob = w
        .repo
        .catalog()
        .key_cert(&w.alice)
        .unwrap()
        .expect("alice's cert");
    let cert = Cert::from_bytes(&blob).unwrap();
    assert!(
        !cert.is_tsk(),
        "secret key material was stored in the catalog"
    );
    let keys: Value = serde_json::from_str(&w.repo.repofs(&["keys", "list", "--json"])).unwrap();
    assert_eq!(keys[0]["directories"], serde_json::json!(["hello", "more"]));
}

/// Regression: `git archive` tarballs start with a pax global header, which was refused.
#[test]
fn git_archive_tarball_is_accepted() {
    let w = World::new();
    let d = w.scratch("git");
    let sh = |script: &str| sh(&d, script);
    sh(
        "git init -q src && cd src && echo hi > README && git add README \
        && git -c user.name=t -c user.email=t@example.org commit -qm init \
        && git archive --format=tar.gz --prefix=gitpkg-1.0/ -o ../gitpkg-1.0.tar.gz HEAD",
    );
    let f = d.join("gitpkg-1.0.tar.gz");
    let sig = w.gpg.sign(ALICE, &f, false, &[]);
    w.upload("hello", &[f, sig]);
    w.repo.once();
    let v = w.repo.last_verdict();
    assert_eq!(v["state"], "accepted", "{v:#}");
    let file_id = w.repo.file_id("hello", "gitpkg-1.0.tar.gz");
    // (file id, path) is the entries' primary key: there is one such entry or none.
    assert!(w
        .repo
        .catalog()
        .entry(file_id, "gitpkg-1.0/README")
        .unwrap()
        .is_some());
}

/// Many uploaders at once, triplets and pairs, file by file in parallel: every upload is
/// published, none is judged half-written.
#[test]
fn concurrent_uploaders_all_published() {
    let w = World::new();
    w.repo.add_key("/", &w.work.join("alice.asc"));
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[]);
    let mut uploads = Vec::new();
    for i in 0..12 {
        let name = format!("pkg{i}");
        if i % 2 == 0 {
            let files = w.triplet(ALICE, &name, "1.0", &format!("proj{i}"), "");
            uploads.push((String::new(), files.to_vec(), format!("proj{i}"), name));
        } else {
            let d = w.scratch(&format!("pair{i}"));
            let tgz = make_tarball(&d, &name, "1.0");
            let sig = w.gpg.sign(ALICE, &tgz, false, &[]);
            uploads.push((format!("proj{i}"), vec![tgz, sig], format!("proj{i}"), name));
        }
    }
    std::thread::scope(|s| {
        for (sub, files, _, _) in &uploads {
            let dest = w.repo.spool().join(sub);
            s.spawn(move || {
                fs::create_dir_all(&dest).unwrap();
                for f in files {
                    // Copy in small writes so uploads interleave with the daemon's passes.
                    let data = fs::read(f).unwrap();
                    let mut out = fs::File::create(dest.join(f.file_name().unwrap())).unwrap();
                    for chunk in data.chunks(512) {
                        std::io::Write::write_all(&mut out, chunk).unwrap();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            });
        }
    });
    let all_there = || {
        let list = w.repo.list();
        uploads.iter().all(|(_, _, dir, name)| {
            list.iter()
                .any(|f| f["directory"] == *dir && f["filename"] == format!("{name}-1.0.tar.gz"))
        })
    };
    let _ = wait_for_or(Duration::from_secs(30), || all_there().then_some(()));
    let rejected = w.repo.verdicts("rejected");
    assert!(rejected.is_empty(), "false rejections: {rejected:#?}");
    assert!(
        all_there(),
        "not all published: {:#?}\n{}",
        w.repo.status(),
        daemon.log()
    );
    assert!(daemon.terminate().success());
}

/// The mount records the hashes it computed as a file streamed in (`trusted.repofs.*`
/// xattrs, settable by root only), and the daemon borrows that md5 only when its own sha256
/// of the bytes matches the one recorded with it. A record that describes other bytes (left
/// from an earlier write, or planted by root) must not reach the catalog.
#[test]
fn recorded_hashes_of_other_bytes_are_not_borrowed() {
    let w = World::new();
    let d = w.scratch("stale");
    let tgz = make_tarball(&d, "hello", "3.0");
    let sig = w.gpg.sign(ALICE, &tgz, true, &[]);
    w.upload("hello", &[tgz.clone(), sig]);
    let spooled = w.repo.spool().join("hello/hello-3.0.tar.gz");
    for (name, value) in [
        (
            "trusted.repofs.md5",
            "0123456789abcdef0123456789abcdef".to_string(),
        ),
        ("trusted.repofs.sha256", "ab".repeat(32)),
    ] {
        let out = Command::new("setfattr")
            .args(["-n", name, "-v", &value])
            .arg(&spooled)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setfattr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w.repo.once();
    let list = w.repo.list();
    let f = find(&list, "hello", "hello-3.0.tar.gz");
    assert_eq!(f["md5"], tool_hash("md5sum", &tgz));
    assert_eq!(f["sha256"], tool_hash("sha256sum", &tgz));
}

/// repofsd makes the repository's own key at its first start and keeps it; `repofs keys
/// export-repo` gives its public part only, which gpg reads.
#[test]
fn repository_key_is_made_once_and_exported_public_only() {
    let fresh = Repo::new();
    let out = fresh.repofs_output(&["keys", "export-repo"]);
    assert!(!out.status.success(), "no key before repofsd has started");
    let w = World::new(); // its baseline publication started repofsd once
    let key = w.repo.root.join("repo-key.pgp");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first = w.repo.repofs(&["keys", "export-repo"]);
    assert!(
        first.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{first}"
    );
    w.repo.once();
    assert_eq!(
        w.repo.repofs(&["keys", "export-repo"]),
        first,
        "the key is kept"
    );
    let exported = w.scratch("repo-key").join("repo.asc");
    fs::write(&exported, &first).unwrap();
    let gpg = Gpg::new();
    let out = gpg.run(&["--import", exported.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = gpg.run(&["--list-keys", "--with-colons"]);
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(keys.contains("repofs repository"), "{keys}");
    let secret = gpg.run(&["--list-secret-keys", "--with-colons"]);
    assert!(
        !String::from_utf8_lossy(&secret.stdout).contains("sec:"),
        "the export carries no secret"
    );
}
