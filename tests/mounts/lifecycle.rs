//! Mounting, unmounting, crashes and restarts; many users at once.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    digest::*, mount::*, net::*, packages::*, process::*, repo::*, site::*, world::*,
};

/// The mount keeps serving while repofsd restarts; an upload made meanwhile is safe in the
/// spool (its close succeeds) and is published when the daemon is back.
#[test]
fn mount_serves_reads_while_repofsd_restarts() {
    let mut s = Site::new();
    assert!(s.daemon.terminate().success());
    let f = s.mnt.path("dists/hello/hello-1.0.tar.gz");
    let published = s.w.repo.published("hello", "hello-1.0.tar.gz").unwrap();
    assert_eq!(tool_hash("sha256sum", &f), published["sha256"]);
    assert!(s.mnt.path("pkgs/hello/1.0/hello-1.0/README").is_file());
    let d = s.w.scratch("down");
    let tgz = make_tarball(&d, "hello", "4.0");
    let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
    let out = cp(&[&tgz, &sig], &s.incoming());
    assert!(
        out.status.success(),
        "cp while repofsd is down: {}",
        stderr(&out)
    );
    assert!(s.w.repo.published("hello", "hello-4.0.tar.gz").is_none());
    let daemon = Daemon::start(&s.w.repo, &[]);
    daemon.wait_published(&s.w.repo, "hello", "hello-4.0.tar.gz");
    wait_for("dists to show it", Duration::from_secs(5), || {
        s.mnt
            .path("dists/hello/hello-4.0.tar.gz")
            .exists()
            .then_some(())
    });
}

/// SIGKILL leaves a dead mount (ENOTCONN); `repofs mount` on the same path recovers it, and
/// an upload half-written before the crash is still there with its bytes.
#[test]
fn sigkill_of_the_mount_then_recovery() {
    let mut s = Site::new();
    let partial = s.incoming().join("half.bin");
    fs::write(&partial, vec![7u8; 300_000]).unwrap();
    s.mnt.kill9();
    let e = fs::metadata(s.mnt.path("incoming")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
    let dir = s.mnt.dir.clone();
    let again = Mount::start_at(&s.w.repo, &dir);
    assert!(again.log().contains("stale mount"), "{}", again.log());
    assert_eq!(
        fs::metadata(again.path("incoming/half.bin")).unwrap().len(),
        300_000
    );
    assert!(again.path("dists/hello/hello-1.0.tar.gz").is_file());
}

/// SIGTERM unmounts cleanly; a second mount on a live one is refused.
#[test]
fn sigterm_unmounts_and_double_mount_is_refused() {
    let mut s = Site::new();
    let out =
        s.w.repo
            .cmd(REPOFS)
            .arg("mount")
            .arg(&s.mnt.dir)
            .output()
            .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already mounted"), "{}", stderr(&out));
    assert!(s.mnt.terminate(), "clean exit on SIGTERM:\n{}", s.mnt.log());
    assert!(!is_mounted(&s.mnt.dir));
    // One unmount, ours: fuser used to try again and log "Unmount failed: Invalid argument".
    let log = s.mnt.log();
    assert!(log.contains("unmounted"), "{log}");
    assert!(
        !log.contains("WARN") && !log.contains("Unmount failed"),
        "a clean stop warns about nothing:\n{log}"
    );
}

/// Unmounts lazily on drop if something is still mounted there (a test that failed half-way).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Issue 11: `repofs lsit pkgs` (a typo for `list`, in a directory holding pkgs/) mounted the
/// repository over ./pkgs and exited 0. It is clap's error, exit code 2, and no mount.
#[test]
fn issue_11_mistyped_command_is_an_error_not_a_mount() {
    let w = World::new();
    let cwd = w.scratch("typo");
    let pkgs = cwd.join("pkgs");
    fs::create_dir_all(&pkgs).unwrap();
    let _guard = Unmount(pkgs.clone());
    for args in [
        &["lsit", "pkgs"][..],
        &["moutn", "pkgs"],
        &["lsit", "pkgs", "--json"],
    ] {
        let out = Command::new(REPOFS)
            .args(args)
            .current_dir(&cwd)
            .env("REPOFS_ROOT", &w.repo.root)
            .env("REPOFS_CONFIG", &w.repo.config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("unrecognized subcommand"),
            "{args:?}: {}",
            stderr(&out)
        );
        // Give a wrongly started background mount time to show.
        std::thread::sleep(Duration::from_millis(300));
        assert!(!is_mounted(&pkgs), "{args:?} mounted over ./pkgs");
    }
    let out = Command::new(REPOFS)
        .args(["lsit", "pkgs"])
        .current_dir(&cwd)
        .env("REPOFS_ROOT", &w.repo.root)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("a similar subcommand exists: 'list'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(&pkgs).unwrap().count(), 0, "pkgs/ untouched");
}

/// Runs `script` with sh in a private mount namespace, so that it can lay a staged install
/// over /usr/sbin or /usr/local/bin (overlayfs) without touching the machine's. Returns the
/// output; the script's own trap unmounts what it mounted.
fn in_private_namespace(script: &str, env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("unshare (util-linux)")
}

/// `mount -t fuse.repofs` with what scripts/install put in place, both ways mount(8) finds it:
/// mount.fuse3 running `repofs` from mount(8)'s fixed PATH (the default prefix, /usr/local),
/// and `/sbin/mount.fuse.repofs` run directly (any prefix, /usr/local/bin not involved).
#[test]
fn installed_helper_mounts_through_mount8() {
    let w = World::new();
    let tmp = w.repo.dir.path();
    let bins = std::path::Path::new(REPOFS).parent().unwrap().to_path_buf();
    let install = |prefix: &str, env: &[(&str, &std::path::Path)]| {
        let mut cmd = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install"));
        cmd.arg("--bin-dir").arg(&bins).arg(prefix);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "scripts/install: {}", stderr(&out));
    };
    // 1. The default prefix, staged: only /usr/local/bin/repofs, no /sbin helper.
    let stage = tmp.join("stage");
    install("/usr/local", &[("DESTDIR", &stage)]);
    fs::remove_file(stage.join("sbin/mount.fuse.repofs")).unwrap();
    // 2. Another prefix with its /sbin helper link.
    let prefix = tmp.join("prefix");
    let sbin = tmp.join("sbin");
    install(
        prefix.to_str().unwrap(),
        &[("SBINDIR", &sbin), ("SYSTEMD_UNIT_DIR", &tmp.join("units"))],
    );
    let mnt = tmp.join("mount8-mnt");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    let script = r#"
        set -eu
        trap 'umount -l "$MNT" 2>/dev/null || true' EXIT
        check() {
            test -f "$MNT/dists/hello/hello-1.0.tar.gz"
            grep -F " $MNT " /proc/self/mountinfo
            umount "$MNT"
        }
        mount -t overlay overlay -o "lowerdir=$STAGE/usr/local/bin:/usr/local/bin" /usr/local/bin
        mount -t fuse.repofs repofs "$MNT" -o "root=$ROOT,config=$CONFIG"
        echo "via mount.fuse3: $(check)"
        umount -l /usr/local/bin  # lazily: the first mount's server may still be exiting
        ! command -v repofs
        mount -t overlay overlay -o "lowerdir=$SBIN:/usr/sbin" /usr/sbin
        mount -t fuse.repofs repofs "$MNT" -o "root=$ROOT,config=$CONFIG,nosuid,nodev"
        echo "via /sbin/mount.fuse.repofs: $(check)"
    "#;
    let out = in_private_namespace(
        script,
        &[
            ("MNT", &mnt),
            ("STAGE", &stage),
            ("SBIN", &sbin),
            ("ROOT", &w.repo.root),
            ("CONFIG", &w.repo.config),
            (
                "PATH",
                std::path::Path::new("/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", stderr(&out));
    for how in ["via mount.fuse3", "via /sbin/mount.fuse.repofs"] {
        let line = stdout.lines().find(|l| l.starts_with(how)).unwrap_or("");
        assert!(line.contains(" fuse.repofs repofs "), "{how}: {stdout}");
    }
    // Both background mounts stopped cleanly when unmounted (their log is ROOT/mount.log).
    let log = w.repo.root.join("mount.log");
    wait_for(
        "both mounts to log their end",
        Duration::from_secs(10),
        || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            (text.matches("unmounted from outside").count() == 2).then_some(())
        },
    );
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("WARN"), "{text}");
}

/// mount(8) with Debian's mount.fuse3 helper, which runs `repofs SOURCE DIR -o OPTS` and
/// waits for it; then `repofs umount`. (`-t fuse` with `PROGRAM#SOURCE` runs this build's
/// binary; `-t fuse.repofs` is tested with an install in `installed_helper_mounts_through_mount8`.)
#[test]
fn mount_helper_and_umount() {
    let w = World::new();
    let mnt = w.repo.dir.path().join("helper-mnt");
    fs::create_dir_all(&mnt).unwrap();
    let out = Command::new("mount")
        .args(["-t", "fuse"])
        .arg(format!("{REPOFS}#repofs"))
        .arg(&mnt)
        .arg("-o")
        .arg(format!(
            "root={},config={},nosuid,nodev,allow_other",
            w.repo.root.display(),
            w.repo.config.display()
        ))
        .output()
        .unwrap();
    let _guard = Unmount(mnt.clone());
    assert!(out.status.success(), "mount: {}", stderr(&out));
    // mount(8) returned: the mount is ready.
    assert!(mnt.join("dists/hello/hello-1.0.tar.gz").is_file());
    let out = Command::new(REPOFS)
        .arg("umount")
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "repofs umount: {}", stderr(&out));
    wait_for("the helper's mount to go", Duration::from_secs(10), || {
        (!is_mounted(&mnt)).then_some(())
    });
}

/// scp and sftp as two unprivileged users through a loopback sshd: each sees only its own
/// in-flight files, both get published.
#[test]
fn scp_and_sftp_as_two_users_each_see_only_their_own() {
    let s = Site::new();
    s.open_to_all();
    let sshd = Sshd::start();
    let users = ["repofs-ann", "repofs-bob"];
    for u in users {
        test_user(u);
    }
    let d = s.w.scratch("ssh");
    let ann_file = make_tarball(&s.w.scratch("ann"), "hello", "5.0");
    let bob_file = make_tarball(&s.w.scratch("bob"), "hello", "5.1");
    s.open_to_all();
    // Each starts with the file only: in flight, waiting for its signature.
    sshd.scp_as(users[0], std::slice::from_ref(&ann_file), &s.incoming());
    sshd.sftp_as(
        users[1],
        &format!("put {} {}/\n", bob_file.display(), s.incoming().display()),
    );
    let ls = |u: &str| {
        let o = sh_as(u, &d, &format!("ls -A {}", s.incoming().display()));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The repository's directory, and each one's own file.
    assert_eq!(ls(users[0]).trim(), "hello\nhello-5.0.tar.gz");
    assert_eq!(ls(users[1]).trim(), "hello\nhello-5.1.tar.gz");
    let o = sh_as(
        users[1],
        &d,
        &format!("cat {}/hello-5.0.tar.gz", s.incoming().display()),
    );
    assert!(!o.status.success(), "bob must not reach ann's file");
    // root sees everything.
    let all = String::from_utf8_lossy(
        &Command::new("find")
            .arg(s.incoming())
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        all.contains("hello-5.0.tar.gz") && all.contains("hello-5.1.tar.gz"),
        "{all}"
    );
    // The signatures complete both uploads.
    let ann_sig = s.w.gpg.sign(ALICE, &ann_file, false, &[]);
    let bob_sig = s.w.gpg.sign(ALICE, &bob_file, false, &[]);
    s.open_to_all();
    sshd.scp_as(users[0], &[ann_sig], &s.incoming());
    sshd.sftp_as(
        users[1],
        &format!("put {} {}/\n", bob_sig.display(), s.incoming().display()),
    );
    s.daemon
        .wait_published(&s.w.repo, "hello", "hello-5.0.tar.gz");
    s.daemon
        .wait_published(&s.w.repo, "hello", "hello-5.1.tar.gz");
}

/// An sftp upload cut off half-way, as an unprivileged user: `reput` appends the rest through
/// the mount, and the signature completes it.
#[test]
fn sftp_reput_resumes_a_cut_off_upload() {
    let s = Site::new();
    let sshd = Sshd::start();
    let user = "repofs-bob";
    test_user(user);
    let d = s.w.scratch("reput");
    let big = d.join("hello-5.2.bin");
    let data: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    fs::write(&big, &data).unwrap();
    let half = d.join("half");
    fs::write(&half, &data[..data.len() / 2]).unwrap();
    let sig = s.w.gpg.sign(ALICE, &big, false, &[]);
    s.open_to_all();
    let inc = s.incoming();
    sshd.sftp_as(
        user,
        &format!("put {} {}/hello-5.2.bin\n", half.display(), inc.display()),
    );
    std::thread::sleep(std::time::Duration::from_millis(800));
    let o = sh_as(
        user,
        &d,
        &format!("stat -c %s {}/hello-5.2.bin", inc.display()),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        (data.len() / 2).to_string(),
        "the partial upload waits, with its bytes: {}",
        stderr(&o)
    );
    sshd.sftp_as(
        user,
        &format!(
            "reput {} {}/hello-5.2.bin\nput {} {}/\n",
            big.display(),
            inc.display(),
            sig.display(),
            inc.display()
        ),
    );
    let f = s.daemon.wait_published(&s.w.repo, "hello", "hello-5.2.bin");
    assert_eq!(f["sha256"], tool_hash("sha256sum", &big));
    assert_eq!(f["md5"], tool_hash("md5sum", &big));
}

/// Uploaders and readers at once, on a multi-threaded session.
#[test]
fn concurrent_uploaders_and_readers() {
    let s = Site::new();
    let n = 8;
    let mut files = Vec::new();
    for i in 0..n {
        let d = s.w.scratch(&format!("c{i}"));
        let tgz = make_tarball(&d, "hello", &format!("6.{i}"));
        let sig = s.w.gpg.sign(ALICE, &tgz, false, &[]);
        files.push((tgz, sig));
    }
    std::thread::scope(|scope| {
        for (tgz, sig) in &files {
            let dest = s.incoming();
            scope.spawn(move || {
                let out = cp(&[tgz, sig], &dest);
                assert!(out.status.success(), "cp: {}", stderr(&out));
            });
        }
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20 {
                    let data =
                        fs::read(s.mnt.path("pkgs/hello/1.0/hello-1.0/doc/manual.txt")).unwrap();
                    assert_eq!(data.len(), 800);
                    let _ = fs::read_dir(s.mnt.path("dists/hello")).unwrap().count();
                }
            });
        }
    });
    for i in 0..n {
        s.daemon
            .wait_published(&s.w.repo, "hello", &format!("hello-6.{i}.tar.gz"));
    }
}

/// `repofsd --mount` stopped on drop: SIGTERM (it unmounts), then, if a test failed before,
/// a lazy unmount of whatever is left, so no dead mount outlives the test.
struct ServiceWithMount {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for ServiceWithMount {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = wait_for_or(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// SIGUSR1 asks a mount for its FUSE request counts (`ROOT/mount-stats.json`), whichever
/// process holds it: `repofs mount`, and `repofsd --mount`, which the signal used to kill,
/// leaving a dead mount behind. Both keep serving after it.
#[test]
fn sigusr1_writes_the_request_counts_and_kills_nothing() {
    let s = Site::new();
    let stats = s.w.repo.root.join("mount-stats.json");
    let _ = fs::remove_file(&stats);
    assert!(fs::read_dir(s.mnt.path("pkgs")).unwrap().count() > 0);
    unsafe { libc::kill(s.mnt.child.id() as i32, libc::SIGUSR1) };
    let counts = wait_for("repofs mount's counts", Duration::from_secs(10), || {
        fs::read_to_string(&stats).ok()
    });
    assert!(counts.contains("\"opendir\""), "{counts}");
    assert!(s.mnt.path("pkgs/hello/1.0/hello-1.0/README").is_file());
    drop(s);

    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let dir = w.repo.dir.path().join("service-mnt");
    fs::create_dir_all(&dir).unwrap();
    let child = w
        .repo
        .cmd(REPOFSD)
        .arg("--mount")
        .arg(&dir)
        .spawn()
        .unwrap();
    let mut svc = ServiceWithMount { child, dir };
    wait_for("repofsd's mount", Duration::from_secs(30), || {
        (is_mounted(&svc.dir) && svc.dir.join("incoming").is_dir()).then_some(())
    });
    let stats = w.repo.root.join("mount-stats.json");
    let _ = fs::remove_file(&stats);
    unsafe { libc::kill(svc.child.id() as i32, libc::SIGUSR1) };
    let counts = wait_for("repofsd's counts", Duration::from_secs(10), || {
        fs::read_to_string(&stats).ok()
    });
    assert!(counts.contains("\"lookup\""), "{counts}");
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "SIGUSR1 killed repofsd"
    );
    assert!(svc.dir.join("pkgs").is_dir(), "the mount still serves");
}
