//! incoming/: real clients writing through the mount, and the verdict coming back.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    clients::*, digest::*, keys::*, mount::*, net::*, packages::*, process::*, repo::*, site::*,
    world::*,
};

#[test]
fn cp_of_a_pair_is_published_and_leaves_incoming() {
    let s = Site::new();
    let d = s.w.scratch("cp");
    let tgz = make_tarball(&d, "hello", "1.2");
    let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
    let out = cp(&[&tgz, &sig], &s.incoming());
    assert!(out.status.success(), "cp: {}", stderr(&out));
    let f = s
        .daemon
        .wait_published(&s.w.repo, "hello", "hello-1.2.tar.gz");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &tgz));
    assert_eq!(f["md5"], tool_hash("md5sum", &tgz));
    wait_for(
        "the upload to leave incoming/",
        Duration::from_secs(5),
        || {
            let left = fs::read_dir(s.incoming())
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("hello-1.2"));
            (!left).then_some(())
        },
    );
    // The hashes taken while the bytes streamed in are in the log.
    assert!(
        s.mnt.log().contains(&tool_hash("md5sum", &tgz)),
        "{}",
        s.mnt.log()
    );
}

/// A bad signature fails the close of the file that completed the upload: cp reports it.
#[test]
fn bad_signature_fails_close_and_leaves_a_note() {
    let s = Site::new();
    let before = s.w.repo.snapshot();
    let d = s.w.scratch("bad");
    let tgz = make_tarball(&d, "hello", "1.3");
    let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
    fs::write(&tgz, b"tampered after signing").unwrap();
    let out = cp(&[&tgz, &sig], &s.incoming());
    assert!(!out.status.success(), "cp must fail");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let note = fs::read_to_string(s.incoming().join("hello-1.3.tar.gz.rejected")).unwrap();
    assert!(note.contains("reason: bad-signature"), "{note}");
    s.w.repo
        .assert_rejected(&before, "bad-signature", &["hello-1.3.tar.gz"]);
    // The uploader can remove the note.
    fs::remove_file(s.incoming().join("hello-1.3.tar.gz.rejected")).unwrap();
}

/// A pair over the size limit is refused when it completes (EIO), before any of it is read.
#[test]
fn too_large_pair_fails_close() {
    let s = Site::with_config("[limits]\nmax_file_size = 1000\n");
    let before = s.w.repo.snapshot();
    let d = s.w.scratch("big");
    let big = d.join("hello-1.5.bin");
    fs::write(&big, vec![7u8; 5000]).unwrap();
    let sig = s.w.gpg.sign(ALICE, &big, false, &[]);
    let out = cp(&[&big, &sig], &s.incoming());
    assert!(!out.status.success(), "cp must fail");
    assert!(
        stderr(&out).contains("Input/output error"),
        "{}",
        stderr(&out)
    );
    s.w.repo
        .assert_rejected(&before, "too-large", &["hello-1.5.bin"]);
}

/// An unknown key is refused at close too (EACCES), and a corrupt archive with a good
/// signature with EIO, when the directive completes a triplet.
#[test]
fn triplet_verdicts_come_back_through_close() {
    let s = Site::new();
    let before = s.w.repo.snapshot();
    // Good signature over a file that is not the archive its name says: integrity, EIO.
    let d = s.w.scratch("eio");
    let bogus = d.join("hello-1.4.tar.gz");
    fs::write(&bogus, b"this is not gzip").unwrap();
    let sig = s.w.gpg.sign(ALICE, &bogus, false, &[]);
    let dir = directive(
        &s.w.gpg,
        ALICE,
        &d,
        "hello-1.4.tar.gz",
        "version: 1.2\ndirectory: hello\nfilename: hello-1.4.tar.gz\n",
    );
    let out = cp(&[&bogus, &sig, &dir], &s.incoming());
    assert!(
        !out.status.success(),
        "repofsd:\n{}\nmount:\n{}",
        s.daemon.log(),
        s.mnt.log()
    );
    assert!(
        stderr(&out).contains("Input/output error"),
        "{}",
        stderr(&out)
    );
    s.w.repo
        .assert_rejected(&before, "bad-archive", &["hello-1.4.tar.gz"]);
    // Accepted: cp succeeds and the file is published by the time cp returns.
    let [tgz, sig, dir] = s.w.triplet(ALICE, "hello", "1.5", "hello", "");
    let out = cp(&[&tgz, &sig, &dir], &s.incoming());
    assert!(out.status.success(), "cp: {}", stderr(&out));
    assert!(
        s.w.repo.published("hello", "hello-1.5.tar.gz").is_some(),
        "published when close returned\nrepofsd:\n{}\nmount:\n{}",
        s.daemon.log(),
        s.mnt.log()
    );
    assert!(s.mnt.path("dists/hello/hello-1.5.tar.gz").exists());
}

#[test]
fn gnupload_into_the_mount_good_and_bad() {
    let s = Site::new();
    let gnupload = |d: &std::path::Path, user: &str, file: &str| {
        Command::new("/usr/share/gnulib/build-aux/gnupload")
            .current_dir(d)
            .env("GNUPGHOME", s.w.gpg.home.path())
            .args([
                "--to",
                &format!("{}:hello", s.incoming().display()),
                "--user",
                user,
            ])
            .arg(file)
            .output()
            .expect("gnupload")
    };
    let d = s.w.scratch("gnu");
    make_tarball(&d, "hello", "2.0");
    let out = gnupload(&d, ALICE, "hello-2.0.tar.gz");
    assert!(
        out.status.success(),
        "gnupload: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(
        s.w.repo.published("hello", "hello-2.0.tar.gz").is_some(),
        "published when gnupload returned"
    );

    // Mallory's key is not in the repository: the close of the directive fails and so does
    // gnupload, and nothing published changes.
    let before = s.w.repo.snapshot();
    s.w.gpg
        .gen_key("Mallory <mallory@example.org>", "ed25519", "sign", "1y");
    let d = s.w.scratch("gnu-bad");
    make_tarball(&d, "hello", "2.1");
    let out = gnupload(&d, "mallory@example.org", "hello-2.1.tar.gz");
    assert!(!out.status.success(), "gnupload must fail");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    s.w.repo
        .assert_rejected(&before, "unknown-key", &["hello-2.1.tar.gz"]);
}

/// rsync writes a temporary file and renames it; --partial keeps an interrupted one under
/// the final name, which must wait, and --append-verify resumes it.
#[test]
fn rsync_interrupted_then_resumed_with_append_verify() {
    let s = Site::new();
    let big = rsync_payload(&s.w.scratch("rsync"), "big-1.0.bin");
    let sig = s.w.gpg.sign(ALICE, &big, false, &[]);
    let dest = s.incoming().join("hello");
    fs::create_dir_all(&dest).unwrap();
    let size = interrupted_rsync(&big, &dest);
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        dest.join("big-1.0.bin").exists(),
        "a partial upload without signature waits"
    );
    // The bytes and the size survive a remount.
    drop(s.mnt);
    let mnt = Mount::start(&s.w.repo);
    let dest = mnt.path("incoming/hello");
    assert_eq!(fs::metadata(dest.join("big-1.0.bin")).unwrap().len(), size);
    let resumed = rsync_partial(&["--append-verify"], &big, &dest).status();
    assert!(resumed.unwrap().success());
    assert!(rsync_partial(&[], &sig, &dest).status().unwrap().success());
    let f = s.daemon.wait_published(&s.w.repo, "hello", "big-1.0.bin");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &big));
}

/// dd conv=notrunc rewrites a block in place; appends and ftruncate work like on a disk.
#[test]
fn dd_notrunc_append_and_truncate_behave_like_a_disk() {
    let s = Site::new();
    let f = s.incoming().join("scratch.bin");
    sh(&s.w.work, &format!("head -c 100000 /dev/zero > {0} && printf ABC | dd of={0} bs=1 seek=10 conv=notrunc status=none && printf XYZ >> {0}", f.display()));
    let data = fs::read(&f).unwrap();
    assert_eq!(data.len(), 100003);
    assert_eq!(&data[10..13], b"ABC");
    assert_eq!(&data[100000..], b"XYZ");
    sh(
        &s.w.work,
        &format!(
            "truncate -s 5 {0} && chmod 600 {0} && touch -d @0 {0}",
            f.display()
        ),
    );
    let m = fs::metadata(&f).unwrap();
    assert_eq!(m.len(), 5);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(m.mtime(), 0);
    // O_EXCL on an existing name fails; rename over and unlink work.
    let r = fs::OpenOptions::new().write(true).create_new(true).open(&f);
    assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EEXIST));
    fs::write(s.incoming().join(".tmp"), b"new").unwrap();
    fs::rename(s.incoming().join(".tmp"), &f).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"new");
    fs::remove_file(&f).unwrap();
    assert!(!f.exists());
    // Writers use direct I/O; a shared writable mapping still works (python's mmap).
    let m = s.incoming().join("mapped");
    sh(
        &s.w.work,
        &format!(
            "python3 -c 'import mmap,os; fd=os.open(\"{}\", os.O_RDWR|os.O_CREAT, 0o644); \
             os.ftruncate(fd, 8192); m=mmap.mmap(fd, 8192); m[4096:4101]=b\"hello\"; \
             m.flush(); m.close(); os.close(fd)'",
            m.display()
        ),
    );
    let bytes = fs::read(&m).unwrap();
    assert_eq!((bytes.len(), &bytes[4096..4101]), (8192, &b"hello"[..]));
}

/// A local uid trusted for a directory uploads a lone unsigned file; an untrusted one's
/// lone file waits for its signature.
#[test]
fn trusted_local_uid_uploads_unsigned() {
    let trusted = test_user("repofs-trusted");
    let other = test_user("repofs-other");
    let s = Site::with_config(&format!(
        "[[trusted]]\nuid = {trusted}\ndirectories = [\"hello\"]\n"
    ));
    let _ = other;
    let d = s.w.scratch("trusted");
    let tgz = make_tarball(&d, "hello", "3.0");
    s.open_to_all();
    let out = sh_as(
        "repofs-trusted",
        &d,
        &format!("cp {} {}/", tgz.display(), s.incoming().display()),
    );
    assert!(out.status.success(), "cp as trusted: {}", stderr(&out));
    let f = s
        .daemon
        .wait_published(&s.w.repo, "hello", "hello-3.0.tar.gz");
    assert_eq!(f["uploader"], format!("uid:{trusted}"));
    let tgz2 = make_tarball(&s.w.scratch("untrusted"), "hello", "3.1");
    s.open_to_all();
    let out = sh_as(
        "repofs-other",
        &d,
        &format!("cp {} {}/", tgz2.display(), s.incoming().display()),
    );
    assert!(out.status.success(), "cp as other: {}", stderr(&out));
    std::thread::sleep(Duration::from_secs(3));
    assert!(s.w.repo.published("hello", "hello-3.1.tar.gz").is_none());
    let st = s.w.repo.status();
    assert!(
        st.iter().any(
            |e| e["state"] == "pending" && e["message"].as_str().unwrap_or("").contains(".sig")
        ),
        "{st:#?}"
    );
}

/// `repofs trust` does what a `[[trusted]]` block does, with no config edit and no restart of
/// repofsd; withdrawn, the uid's next unsigned upload waits again, and its pending message
/// names both ways forward: sign it, or trust the uid (issue 21).
#[test]
fn repofs_trust_grants_and_withdraws_a_local_uid() {
    let uid = test_user("repofs-trustcmd");
    let s = Site::new();
    s.w.repo
        .repofs(&["trust", "add", "--dir", "hello", &uid.to_string()]);
    let listed = json_array(&s.w.repo.repofs(&["trust", "list", "--json"]));
    assert!(
        listed
            .iter()
            .any(|t| t["uid"] == uid && t["directory"] == "hello"),
        "{listed:#?}"
    );
    let d = s.w.scratch("trustcmd");
    let tgz = make_tarball(&d, "hello", "3.0");
    s.open_to_all();
    let cp_as = |file: &std::path::Path| {
        let out = sh_as(
            "repofs-trustcmd",
            &d,
            &format!("cp {} {}/", file.display(), s.incoming().display()),
        );
        assert!(out.status.success(), "cp as uid {uid}: {}", stderr(&out));
    };
    cp_as(&tgz);
    let f = s
        .daemon
        .wait_published(&s.w.repo, "hello", "hello-3.0.tar.gz");
    assert_eq!(f["uploader"], format!("uid:{uid}"));

    s.w.repo
        .repofs(&["trust", "remove", "--dir", "hello", &uid.to_string()]);
    let tgz2 = make_tarball(&d.join("next"), "hello", "3.1");
    s.open_to_all();
    cp_as(&tgz2);
    std::thread::sleep(Duration::from_secs(3));
    assert!(s.w.repo.published("hello", "hello-3.1.tar.gz").is_none());
    let st = s.w.repo.status();
    let pending = st
        .iter()
        .find(|e| e["state"] == "pending")
        .unwrap_or_else(|| panic!("the unsigned upload does not wait: {st:#?}"));
    let message = pending["message"].as_str().unwrap_or("");
    for way in [
        "gpg -b hello-3.1.tar.gz".to_string(),
        format!("repofs trust add --dir hello {uid}"),
    ] {
        assert!(message.contains(&way), "{way:?} not in {message:?}");
    }
}

/// Each uid's incoming/ shows the repository's directories (hello/ from the baseline
/// publication, hello/sub/ from a triplet) before it has written anything, so
/// `scp f f.sig host:MNT/incoming/hello/` and sftp work without a mkdir, as on an upload
/// server. In-flight files stay private; a directory enters a uid's spool, owned by that uid,
/// only when something is written inside it.
#[test]
fn repository_directories_are_in_every_uids_incoming() {
    let s = Site::new();
    let [tgz, sig, dir] = s.w.triplet(ALICE, "hello", "7.2", "hello/sub", "");
    let out = cp(&[&tgz, &sig, &dir], &s.incoming());
    assert!(out.status.success(), "cp: {}", stderr(&out));
    let sshd = Sshd::start();
    let users = ["repofs-ann", "repofs-bob"];
    let uids: Vec<u32> = users.iter().map(|u| test_user(u)).collect();
    let d = s.w.scratch("repo-dirs");
    let ann_tgz = make_tarball(&s.w.scratch("ann-dirs"), "hello", "7.0");
    let ann_sig = s.w.gpg.sign(ALICE, &ann_tgz, false, &[]);
    let bob_tgz = make_tarball(&s.w.scratch("bob-dirs"), "hello", "7.1");
    let bob_sig = s.w.gpg.sign(ALICE, &bob_tgz, false, &[]);
    s.open_to_all();
    let inc = s.incoming();
    let run = |user: &str, script: &str| -> String {
        let o = sh_as(user, &d, script);
        assert!(o.status.success(), "{user}: {script}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let ls = |user: &str, rel: &str| run(user, &format!("ls -A {}/{rel}", inc.display()));
    let spool_dir = |uid: u32, rel: &str| s.w.repo.spool().join(format!(".users/{uid}/{rel}"));
    for user in users {
        assert_eq!(ls(user, ""), "hello");
        assert_eq!(ls(user, "hello"), "sub");
        assert_eq!(ls(user, "hello/sub"), "");
        assert_eq!(
            run(
                user,
                &format!("stat -c '%F %U' {}/hello/sub", inc.display())
            ),
            format!("directory {user}")
        );
    }
    for &uid in &uids {
        assert!(!spool_dir(uid, "hello").exists(), "nothing written yet");
    }
    // bob: the file alone first (in flight), over sftp.
    sshd.sftp_as(
        users[1],
        &format!("put {} {}/hello/\n", bob_tgz.display(), inc.display()),
    );
    assert_eq!(ls(users[1], "hello"), "hello-7.1.tar.gz\nsub");
    assert_eq!(ls(users[0], "hello"), "sub", "bob's upload is his alone");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(spool_dir(uids[1], "hello")).unwrap().uid(),
        uids[1]
    );
    // ann: the command, both files in one scp.
    sshd.scp_as(users[0], &[ann_tgz.clone(), ann_sig], &inc.join("hello"));
    s.daemon
        .wait_published(&s.w.repo, "hello", "hello-7.0.tar.gz");
    sshd.sftp_as(
        users[1],
        &format!("put {} {}/hello/\n", bob_sig.display(), inc.display()),
    );
    let f = s
        .daemon
        .wait_published(&s.w.repo, "hello", "hello-7.1.tar.gz");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &bob_tgz));
    // A mkdir two catalog-only levels down materializes both, as ann's.
    assert!(!spool_dir(uids[0], "hello/sub").exists());
    run(users[0], &format!("mkdir {}/hello/sub/new", inc.display()));
    for rel in ["hello/sub", "hello/sub/new"] {
        assert_eq!(
            fs::metadata(spool_dir(uids[0], rel)).unwrap().uid(),
            uids[0]
        );
    }
    assert_eq!(
        ls(users[1], "hello/sub"),
        "",
        "ann's directory is hers alone"
    );
    // Setting a catalog-only directory's times (touch, rsync -a) materializes it too.
    assert!(!spool_dir(uids[1], "hello/sub").exists());
    run(
        users[1],
        &format!("touch -d @0 {}/hello/sub", inc.display()),
    );
    let m = fs::metadata(spool_dir(uids[1], "hello/sub")).unwrap();
    assert_eq!((m.uid(), m.mtime()), (uids[1], 0));
    // A directory the repository does not have is still the uploader's to make.
    let o = sh_as(users[0], &d, &format!("touch {}/nodir/x", inc.display()));
    assert!(!o.status.success(), "only repository directories appear");
}
