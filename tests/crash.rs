//! Crash safety: SIGKILL `repofsd` at each step of a publication, restart, and check that the
//! upload is published exactly once, nothing is lost, and the store holds no orphans.

pub mod common;

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use common::{clients::*, digest::*, packages::*, process::*, repo::*, world::*};

fn store_objects(repo: &Repo) -> BTreeSet<String> {
    let store = repofs::store::Store::open(&repo.root.join("store")).expect("store");
    store.objects().expect("list store").into_iter().collect()
}

/// Every store object is one the catalog refers to, and every one it refers to is stored.
fn assert_store_matches_catalog(repo: &Repo, after: &str) {
    let referenced: BTreeSet<String> = repo
        .list_all()
        .iter()
        .map(|f| f["sha256"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        store_objects(repo),
        referenced,
        "store and catalog disagree after {after}"
    );
}

fn kill_at(failpoint: &str, committed: bool) {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[("REPOFS_FAILPOINT", failpoint)]);
    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    w.upload("", &files);
    daemon.wait_log(
        &format!("failpoint {failpoint} reached"),
        Duration::from_secs(20),
    );
    daemon.kill9();

    let published = |w: &World| {
        w.repo
            .list()
            .iter()
            .filter(|f| f["filename"] == "hello-2.0.tar.gz")
            .count()
    };
    assert_eq!(
        published(&w),
        usize::from(committed),
        "visibility right after the kill at {failpoint}"
    );
    // The upload is still in the spool: nothing in flight was lost.
    for f in &files {
        assert!(
            w.repo.spool().join(f.file_name().unwrap()).exists(),
            "{} lost at {failpoint}",
            f.display()
        );
    }

    // Restart (the cron-mode entry point runs the same recovery as the service).
    w.repo.once();
    assert_eq!(
        published(&w),
        1,
        "not published exactly once after recovery from {failpoint}: {:#?}",
        w.repo.status()
    );
    let rejected = w.repo.verdicts("rejected");
    assert!(
        rejected.is_empty(),
        "recovery from {failpoint} rejected something: {rejected:#?}"
    );
    assert_store_matches_catalog(&w.repo, failpoint);
    assert_eq!(
        fs::read_dir(w.repo.root.join("store/tmp")).unwrap().count(),
        0,
        "temporaries left"
    );
    let left: Vec<_> = fs::read_dir(w.repo.spool())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| n.to_string_lossy() == "hello"),
        "spool not cleaned: {left:?}"
    );
    // The bytes served are the bytes uploaded.
    let f = w
        .repo
        .list()
        .into_iter()
        .find(|f| f["filename"] == "hello-2.0.tar.gz")
        .unwrap();
    assert_eq!(f["sha256"], tool_hash("sha256sum", &files[0]));
}

#[test]
fn sigkill_before_store_commit() {
    kill_at("before-store-commit", false);
}

#[test]
fn sigkill_between_store_and_catalog_commit() {
    kill_at("before-catalog-commit", false);
}

#[test]
fn sigkill_after_catalog_commit_before_spool_cleanup() {
    kill_at("before-spool-cleanup", true);
}

#[test]
fn sigterm_stops_cleanly_and_restart_catches_up() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[]);
    assert!(daemon.terminate().success());
    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    w.upload("", &files);
    std::thread::sleep(Duration::from_millis(400));
    let _daemon = Daemon::start(&w.repo, &[]);
    assert!(w
        .repo
        .list()
        .iter()
        .any(|f| f["filename"] == "hello-2.0.tar.gz"));
}

/// Two writers on one root would judge uploads twice and race the store GC: the second
/// repofsd (here cron mode next to the service) must refuse to start, changing nothing.
#[test]
fn a_second_writer_is_refused() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let _daemon = Daemon::start(&w.repo, &[]);
    let before = w.repo.snapshot();
    let out = w.repo.cmd(REPOFSD).arg("--once").output().unwrap();
    assert!(!out.status.success(), "a second repofsd started");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another repofsd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.repo.snapshot(), before);
}

/// A SIGKILL part-way through the spool cleanup of a published upload leaves some of its
/// files behind (the signature, without its file). The restart must know them as published
/// and finish the cleanup, not keep them waiting for a file that is gone (to be swept as
/// `incomplete` a day later, a verdict on an upload that was published).
#[test]
fn sigkill_mid_spool_cleanup_leaves_no_waiting_leftovers() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[("REPOFS_FAILPOINT", "mid-spool-cleanup")]);
    let files = w.triplet(ALICE, "hello", "2.0", "hello", "");
    w.upload("", &files);
    daemon.wait_log(
        "failpoint mid-spool-cleanup reached",
        Duration::from_secs(20),
    );
    daemon.kill9();
    let left: Vec<_> = files
        .iter()
        .filter(|f| w.repo.spool().join(f.file_name().unwrap()).exists())
        .collect();
    assert!(
        !left.is_empty() && left.len() < files.len(),
        "the kill should leave part of the upload: {left:?}"
    );

    w.repo.once();
    let published = w
        .repo
        .list()
        .iter()
        .filter(|f| f["filename"] == "hello-2.0.tar.gz")
        .count();
    assert_eq!(published, 1);
    let st = w.repo.status();
    assert!(
        st.iter().all(|e| e["state"] != "pending"),
        "leftovers still pending: {st:#?}"
    );
    assert!(w.repo.verdicts("rejected").is_empty());
    let left: Vec<_> = fs::read_dir(w.repo.spool())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy() != "hello")
        .collect();
    assert!(left.is_empty(), "spool not cleaned: {left:?}");
}

/// A store disk too full for the copy is an internal error: the upload waits in the spool, no
/// verdict is recorded, and the log says why (the disk), not just that a reader stopped.
#[test]
fn a_full_store_makes_the_upload_wait_and_says_why() {
    let w = World::new();
    let store = w.repo.root.join("store");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    sh(
        w.repo.dir.path(),
        &format!("mount -t tmpfs -o size=1m repofs-test {}", store.display()),
    );
    let _guard = Unmount(store.clone());
    let big = rsync_payload(&w.scratch("big"), "hello-3.0.bin");
    let sig = w.gpg.sign(ALICE, &big, false, &[]);
    upload(&w.repo, "hello", &[&big, &sig]);
    let log = w.repo.once();
    assert!(
        log.contains("No space left on device"),
        "the log does not say the store is full:\n{log}"
    );
    assert!(w.repo.published("hello", "hello-3.0.bin").is_none());
    assert!(w.repo.verdicts("rejected").is_empty());
    assert!(w.repo.spool().join("hello/hello-3.0.bin").exists());
}

/// What a writer killed between create and write leaves (cp of a triplet when the mount is
/// SIGKILLed): an empty directive, or an empty signature. That upload is unfinished, not bad:
/// it waits in the spool, and completes when the file is written again.
#[test]
fn an_empty_signature_or_directive_left_by_a_killed_writer_waits() {
    let w = World::new();
    let before = w.repo.snapshot();
    let [tgz, sig, dir] = w.triplet(ALICE, "hello", "2.0", "hello", "");
    let dir_name = dir.file_name().unwrap();
    upload(&w.repo, "", &[&tgz, &sig]);
    fs::write(w.repo.spool().join(dir_name), b"").unwrap();
    let tgz2 = make_tarball(&w.scratch("pair"), "hello", "2.1");
    let sig2 = w.gpg.sign(ALICE, &tgz2, false, &[]);
    upload(&w.repo, "hello", &[&tgz2]);
    fs::write(w.repo.spool().join("hello/hello-2.1.tar.gz.sig"), b"").unwrap();
    w.repo.once();
    assert!(
        w.repo.verdicts("rejected").is_empty(),
        "an unfinished upload was judged: {:#?}",
        w.repo.status()
    );
    assert_eq!(w.repo.snapshot(), before);
    assert_eq!(
        w.repo.verdicts("pending").len(),
        2,
        "{:#?}",
        w.repo.status()
    );
    // Written again, both complete.
    upload(&w.repo, "", &[&dir]);
    upload(&w.repo, "hello", &[&sig2]);
    w.repo.once();
    assert!(w.repo.published("hello", "hello-2.0.tar.gz").is_some());
    assert!(w.repo.published("hello", "hello-2.1.tar.gz").is_some());
}

/// Starts repofsd at once after another was SIGKILLed (a supervisor, a shell, a test harness):
/// it must not refuse because the killed one is still on its way out. Returns once it is
/// ready; panics with its log if it exits first.
fn start_right_after_a_kill(repo: &Repo) -> Daemon {
    let log = repo.dir.path().join(format!(
        "repofsd-restart-{}.log",
        fs::read_dir(repo.dir.path()).map_or(0, |r| r.count())
    ));
    let child = repo
        .cmd(REPOFSD)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn repofsd");
    let mut d = Daemon { child, log };
    wait_for(
        "the restarted repofsd to be ready",
        Duration::from_secs(30),
        || {
            if d.log().lines().any(|l| l.ends_with(" ready")) {
                return Some(());
            }
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("the restarted repofsd exited ({st}):\n{}", d.log());
            }
            None
        },
    );
    d
}

/// Whether the store is staging an upload's bytes now (a temporary growing in store/tmp).
fn staging(repo: &Repo) -> bool {
    fs::read_dir(repo.root.join("store/tmp"))
        .is_ok_and(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 0)))
}

/// Issue 21: SIGKILL repofsd in the middle of publishing a 64 MiB upload and start the next
/// one at once, ten times: the restart never refuses (it waits, bounded, for a lock whose
/// holder is exiting), and every upload is published exactly once. A second repofsd beside a
/// live one is still refused at once.
#[test]
fn restart_right_after_sigkill_mid_publication() {
    let w = World::new();
    w.repo.set_config(Repo::LIVE);
    let mut daemon = Daemon::start(&w.repo, &[]);
    let mut waited = 0;
    let mut names = Vec::new();
    for i in 0..10 {
        let name = format!("big-1.{i}.bin");
        let d = w.scratch(&name);
        sh(&d, &format!("head -c {} /dev/urandom > {name}", 64 << 20));
        let big = d.join(&name);
        let sig = w.gpg.sign(ALICE, &big, false, &[]);
        upload(&w.repo, "hello", &[&big, &sig]);
        wait_for_or(Duration::from_secs(15), || staging(&w.repo).then_some(()))
            .unwrap_or_else(|| panic!("{name} never started publishing:\n{}", daemon.log()));
        // Killed, not reaped: the next one starts while this one may still be exiting.
        unsafe { libc::kill(daemon.child.id() as i32, libc::SIGKILL) };
        let next = start_right_after_a_kill(&w.repo);
        let _ = daemon.child.wait();
        if next.log().contains("waiting for the previous repofsd") {
            waited += 1;
        }
        daemon = next;
        daemon.wait_published(&w.repo, "hello", &name);
        names.push(name);
    }
    eprintln!("the restart waited for an exiting holder in {waited} of 10 tries");

    let list = w.repo.list();
    for name in &names {
        let n = list.iter().filter(|f| f["filename"] == *name).count();
        assert_eq!(n, 1, "{name} published {n} times");
    }
    assert!(w.repo.verdicts("rejected").is_empty());
    assert_store_matches_catalog(&w.repo, "ten restarts");

    // Beside a live repofsd, a second one still refuses at once, as before.
    let started = std::time::Instant::now();
    let out = w.repo.cmd(REPOFSD).arg("--once").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second repofsd started: {stderr}");
    assert!(
        stderr.contains("another repofsd is already working on"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused only after {:?}",
        started.elapsed()
    );
}
