//! `repofs install` / `remove` / `installed` through a real mount: packages made the way each
//! format ships them (a pacman package with `.INSTALL`, an npm tarball with lifecycle scripts,
//! tpm and distpac layouts), installed into a root that holds a static busybox as /bin/sh so
//! the scripts really run chrooted. Each script appends to /install.log inside the root and
//! says whether it saw the marker file that exists only there, so order and chroot are
//! checked from the log.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{digest::*, packages::*, process::*, repo::*, site::*};

/// An npm tarball (`package/` prefix, as npm pack writes it) with every lifecycle script.
pub fn npm_pkg(dir: &Path, name: &str, ver: &str) -> PathBuf {
    let d = dir.join(format!("npm-{name}"));
    fs::create_dir_all(d.join("package/lib")).unwrap();
    let mut scripts = serde_json::Map::new();
    for ev in [
        "preinstall",
        "install",
        "postinstall",
        "preuninstall",
        "postuninstall",
    ] {
        // `pwd` is where npm runs it: the package's own directory.
        scripts.insert(ev.into(), log_line(&format!("{name} {ev} $(pwd)")).into());
    }
    let pj = serde_json::json!({"name": name, "version": ver, "scripts": scripts});
    fs::write(d.join("package/package.json"), pj.to_string()).unwrap();
    fs::write(d.join("package/lib/index.js"), "module.exports = 42;\n").unwrap();
    let out = dir.join(format!("{name}-{ver}.tgz"));
    sh(&d, &format!("tar -czf {} package", out.display()));
    out
}

/// tpm: `info/package.json` and scripts, payload under `data/`.
fn tpm_pkg(dir: &Path) -> PathBuf {
    let d = dir.join("tpm");
    fs::create_dir_all(d.join("info")).unwrap();
    fs::create_dir_all(d.join("data/opt/tpmpkg")).unwrap();
    fs::write(
        d.join("info/package.json"),
        r#"{"Version":"0.9","Maintainer":"m","Description":"d","Type":"Binary"}"#,
    )
    .unwrap();
    for s in ["postinstall", "preremove"] {
        fs::write(d.join("info").join(s), log_line(&format!("tpmpkg {s}"))).unwrap();
    }
    fs::write(d.join("data/opt/tpmpkg/file"), "tpm payload\n").unwrap();
    let out = dir.join("tpmpkg-0.9.tar.gz");
    sh(&d, &format!("tar -czf {} info data", out.display()));
    out
}

/// distpac: `manifest.yaml`, `assets/`, `scripts/install.sh` and `uninstall.sh`.
fn distpac_pkg(dir: &Path) -> PathBuf {
    let d = dir.join("dp");
    fs::create_dir_all(d.join("assets")).unwrap();
    fs::create_dir_all(d.join("scripts")).unwrap();
    fs::write(d.join("manifest.yaml"), "name: webapp\nversion: 1.2.3\n").unwrap();
    fs::write(d.join("assets/app.css"), "body {}\n").unwrap();
    fs::write(d.join("scripts/install.sh"), log_line("webapp install.sh")).unwrap();
    fs::write(
        d.join("scripts/uninstall.sh"),
        log_line("webapp uninstall.sh"),
    )
    .unwrap();
    let out = dir.join("webapp-1.2.3.tar.xz");
    sh(
        &d,
        &format!("tar -cJf {} manifest.yaml assets scripts", out.display()),
    );
    out
}

/// A fresh install root with a static busybox as /bin/sh and the chroot marker.
pub fn new_root(s: &Site, name: &str) -> PathBuf {
    let root = s.w.scratch(name);
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/sh"))
        .expect("busybox-static (scripts/test installs it)");
    let ldd = Command::new("ldd")
        .arg(root.join("bin/sh"))
        .output()
        .unwrap();
    assert!(
        !ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("not a dynamic"),
        "/bin/busybox must be static (Debian busybox-static)"
    );
    fs::write(root.join("repofs-test-marker"), "").unwrap();
    // Where the receipts go; a root without it gains these directories on the first install.
    fs::create_dir_all(root.join("var/lib/repofs")).unwrap();
    root
}

/// Every path below `root` (except repofs's own database) → kind, mode and content.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let path = rel.join(e.file_name());
            if path.starts_with("var/lib/repofs/installed") {
                continue;
            }
            let full = root.join(&path);
            let m = fs::symlink_metadata(&full).unwrap();
            let what = if m.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&full).unwrap().display())
            } else {
                sha256_file(&full)
            };
            out.insert(
                path.to_string_lossy().into_owned(),
                format!("{:o} {what}", m.mode() & 0o7777),
            );
        }
    }
    out
}

/// What stock `npm install --offline` of the tarball `pkg` puts in a fresh prefix's
/// node_modules (its own lock file aside), as `snapshot` sees it.
fn npm_installed(s: &Site, scratch: &str, pkg: &Path, extra: &[&str]) -> BTreeMap<String, String> {
    let prefix = s.w.scratch(scratch);
    run_bounded(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--offline"])
            .args(extra)
            .arg("--prefix")
            .arg(&prefix)
            .arg(pkg)
            .env("npm_config_cache", s.w.scratch("npm-cache"))
            .env("npm_config_update_notifier", "false"),
    );
    let mut tree = snapshot(&prefix.join("node_modules"));
    tree.remove(".package-lock.json");
    tree
}

fn repofs_in(s: &Site, args: &[&str]) -> Output {
    s.w.repo.repofs_output(args)
}

/// `repofs install --into ROOT --mount MNT PKG...` through the repository.
pub fn install(s: &Site, root: &Path, extra: &[&str], pkgs: &[&str]) -> Output {
    let mut args = vec![
        "install",
        "--into",
        root.to_str().unwrap(),
        "--mount",
        s.mnt.dir.to_str().unwrap(),
    ];
    args.extend(extra);
    args.extend(pkgs);
    repofs_in(s, &args)
}

fn remove(root: &Path, pkgs: &[&str]) -> Output {
    output_bounded(
        Command::new(REPOFS)
            .args(["remove", "--into", root.to_str().unwrap()])
            .args(pkgs),
    )
}

fn installed(root: &Path) -> Vec<String> {
    let out = output_bounded(Command::new(REPOFS).args([
        "installed",
        "--json",
        "--into",
        root.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "installed: {}", stderr(&out));
    json_array(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|r| {
            format!(
                "{}={}",
                r["name"].as_str().unwrap(),
                r["version"].as_str().unwrap()
            )
        })
        .collect()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "failed: {}", stderr(o));
}

fn log_of(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join("install.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The target root is `--into` in install, remove and installed; `--root` is the state
/// directory everywhere, so `installed --root DIR` (once the target root) is refused, naming
/// `--into`, rather than listing "/". Needs no mount.
#[test]
fn installed_takes_the_target_root_as_into_not_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let old = output_bounded(Command::new(REPOFS).args(["installed", "--root", root]));
    assert!(!old.status.success());
    assert!(stderr(&old).contains("--into"), "{}", stderr(&old));
    assert!(old.stdout.is_empty());

    for args in [
        &["installed", "--json", "--into", root][..],
        &["--root", root, "installed", "--json", "--into", root],
    ] {
        let out = output_bounded(Command::new(REPOFS).args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(json_array(&String::from_utf8_lossy(&out.stdout)).is_empty());
    }
    // `remove --from` is still understood (not a usage error): nothing there to remove.
    let out = output_bounded(Command::new(REPOFS).args(["remove", "--from", root, "k"]));
    assert!(stderr(&out).contains("not-installed"), "{}", stderr(&out));
}

#[test]
fn install_then_remove_leaves_the_root_as_it_was() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    let tool = pacman_pkg(
        &d,
        "tool",
        "1.0-1",
        &[
            ("usr/bin/tool", "#!/bin/sh\necho tool\n"),
            ("etc/tool.conf", "a = 1\n"),
        ],
        "",
    );
    for f in [
        tool,
        npm_pkg(&d, "jsmod", "2.0.0"),
        tpm_pkg(&d),
        distpac_pkg(&d),
    ] {
        publish(&s, "hello", &f);
    }
    let root = new_root(&s, "root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/keep"), "mine\n").unwrap();
    let before = snapshot(&root);

    ok(&install(
        &s,
        &root,
        &[],
        &["tool", "jsmod", "tpmpkg", "webapp"],
    ));
    for p in [
        "usr/bin/tool",
        "etc/tool.conf",
        "node_modules/jsmod/package.json",
        "node_modules/jsmod/lib/index.js",
        "opt/tpmpkg/file",
        "assets/app.css",
    ] {
        assert!(root.join(p).is_file(), "{p} not installed");
    }
    for p in [
        ".PKGINFO",
        ".INSTALL",
        "package",
        "info",
        "data",
        "manifest.yaml",
        "scripts",
    ] {
        assert!(!root.join(p).exists(), "metadata {p} was installed");
    }
    assert_eq!(
        fs::read(root.join("usr/bin/tool")).unwrap(),
        fs::read(s.mnt.path("pkgs/tool/1.0-1/usr/bin/tool")).unwrap()
    );
    assert_eq!(
        log_of(&root),
        [
            "tool pre_install 1.0-1 yes",
            "tool post_install 1.0-1 yes",
            "jsmod preinstall /node_modules/jsmod yes",
            "jsmod install /node_modules/jsmod yes",
            "jsmod postinstall /node_modules/jsmod yes",
            "tpmpkg postinstall yes",
            "webapp install.sh yes",
        ]
    );
    assert_eq!(
        installed(&root),
        ["jsmod=2.0.0", "tool=1.0-1", "tpmpkg=0.9", "webapp=1.2.3"]
    );
    // Installing again changes nothing.
    let again = install(&s, &root, &[], &["tool"]);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already installed tool=1.0-1"));

    // The user edits a config file; removal keeps it aside.
    fs::write(root.join("etc/tool.conf"), "a = 2\n").unwrap();
    let out = remove(&root, &["tool", "jsmod", "tpmpkg", "webapp"]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("etc/tool.conf.repofs-save"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        log_of(&root)[7..],
        [
            "tool pre_remove 1.0-1 yes",
            "tool post_remove 1.0-1 yes",
            "jsmod preuninstall /node_modules/jsmod yes",
            // Its directory is gone by then: it runs from /.
            "jsmod postuninstall / yes",
            "tpmpkg preremove yes",
            "webapp uninstall.sh yes",
        ]
    );
    assert!(installed(&root).is_empty());
    let mut after = snapshot(&root);
    assert_eq!(
        after
            .remove("etc/tool.conf.repofs-save")
            .map(|v| v.ends_with(&sha256_file(&root.join("etc/tool.conf.repofs-save")))),
        Some(true)
    );
    after.remove("install.log");
    assert_eq!(before, after);
}

#[test]
fn a_file_conflict_is_refused_with_nothing_changed() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    publish_pacman(&s, &d, "tool", "1.0-1", &[("usr/bin/tool", "tool\n")], "");
    publish_pacman(
        &s,
        &d,
        "rival",
        "2-1",
        &[("usr/bin/tool", "rival\n"), ("usr/bin/r", "r\n")],
        "",
    );

    // Owned by another package.
    let root = new_root(&s, "root");
    ok(&install(&s, &root, &[], &["tool"]));
    let before = snapshot(&root);
    let out = install(&s, &root, &[], &["rival"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("file-conflict") && err.contains("usr/bin/tool: owned by tool"),
        "{err}"
    );
    assert_eq!(snapshot(&root), before);
    assert_eq!(installed(&root), ["tool=1.0-1"]);

    // An unowned file with other content.
    let root2 = new_root(&s, "root2");
    fs::create_dir_all(root2.join("usr/bin")).unwrap();
    fs::write(root2.join("usr/bin/tool"), "handmade\n").unwrap();
    let before2 = snapshot(&root2);
    let out = install(&s, &root2, &[], &["tool"]);
    assert!(stderr(&out).contains("file-conflict"), "{}", stderr(&out));
    assert_eq!(snapshot(&root2), before2);

    // --overwrite takes the file over, and its ownership with it.
    ok(&install(&s, &root, &["--overwrite"], &["rival"]));
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
        "rival\n"
    );
    ok(&remove(&root, &["tool"]));
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/tool")).unwrap(),
        "rival\n"
    );
    ok(&remove(&root, &["rival"]));
    assert!(!root.join("usr").exists());
}

#[test]
fn a_failing_script_rolls_its_package_back() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    publish_pacman(&s, &d, "good", "1-1", &[("usr/share/good", "g\n")], "");
    publish_pacman(
        &s,
        &d,
        "bad",
        "1-1",
        &[("usr/share/bad", "b\n"), ("etc/x", "x\n")],
        "echo the reason >&2; exit 3",
    );
    let root = new_root(&s, "root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/x"), "x\n").unwrap(); // same content: adopted, must come back
    let out = install(&s, &root, &[], &["good", "bad"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("script-failed") && err.contains("the reason"),
        "{err}"
    );
    // The package before it stays installed; the failing one left nothing.
    assert_eq!(installed(&root), ["good=1-1"]);
    assert!(!root.join("usr/share/bad").exists());
    assert_eq!(fs::read_to_string(root.join("etc/x")).unwrap(), "x\n");
    let leftovers: Vec<String> = snapshot(&root)
        .into_keys()
        .filter(|p| p.contains(".repofs-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A script that never ends is killed at its deadline, and its package rolled back.
    publish_pacman(
        &s,
        &d,
        "hang",
        "1-1",
        &[("usr/share/hang", "h\n")],
        "while :; do :; done",
    );
    let start = std::time::Instant::now();
    let out = install(&s, &root, &["--script-timeout", "1s"], &["hang"]);
    assert!(stderr(&out).contains("script-timeout"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(!root.join("usr/share/hang").exists());
    assert_eq!(installed(&root), ["good=1-1"]);
}

/// Runs `repofs install` with a failpoint, SIGKILLs it there, and returns.
fn install_killed_at(s: &Site, root: &Path, failpoint: &str, pkgs: &[&str]) {
    let mut cmd = s.w.repo.cmd(REPOFS);
    cmd.args([
        "install",
        "--into",
        root.to_str().unwrap(),
        "--mount",
        s.mnt.dir.to_str().unwrap(),
    ])
    .args(pkgs);
    killed_at(cmd, failpoint);
}

fn killed_at(mut cmd: Command, failpoint: &str) {
    let child = cmd
        .env("REPOFS_FAILPOINT", failpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let err = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let want = format!("failpoint {failpoint} reached");
    let start = std::time::Instant::now();
    loop {
        let left = Duration::from_secs(60).saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(&want) => break,
            Ok(_) => {}
            Err(_) => panic!("{want} never came"),
        }
    }
    let _ = child.0.kill();
    let _ = child.0.wait();
}

#[test]
fn a_killed_install_or_remove_is_rolled_back_or_completed() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    let files: Vec<(String, String)> = (0..6)
        .map(|i| (format!("usr/share/k/f{i}"), format!("{i}\n")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    publish_pacman(&s, &d, "k", "1-1", &refs, "");
    let root = new_root(&s, "root");
    fs::create_dir_all(root.join("usr/share/k")).unwrap();
    fs::write(root.join("usr/share/k/f0"), "0\n").unwrap(); // replaced in place
    let before = snapshot(&root);

    // Killed while staging: the next command rolls it back.
    install_killed_at(&s, &root, "install-staged", &["k"]);
    assert!(installed(&root).is_empty());
    let mut after = snapshot(&root);
    assert!(after.remove("install.log").is_some(), "pre_install ran");
    assert_eq!(after, before);

    // Killed halfway through the renames: the next command completes it.
    install_killed_at(&s, &root, "install-commit", &["k"]);
    assert_eq!(installed(&root), ["k=1-1"]);
    for (p, text) in &files {
        assert_eq!(&fs::read_to_string(root.join(p)).unwrap(), text);
    }
    assert!(snapshot(&root).keys().all(|p| !p.contains(".repofs-")));

    // Killed in the middle of a removal: the next command completes it.
    let mut cmd = Command::new(REPOFS);
    cmd.args(["remove", "--into", root.to_str().unwrap(), "k"]);
    killed_at(cmd, "remove-journaled");
    assert!(installed(&root).is_empty());
    after = snapshot(&root);
    after.remove("install.log");
    // f0 existed before with the same bytes; the package adopted it, so it goes with it.
    let mut want = before.clone();
    want.remove("usr/share/k/f0");
    assert_eq!(after, want);
}

#[test]
fn a_newer_version_upgrades_in_place() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    let old = d.join("old");
    let new = d.join("new");
    fs::create_dir_all(&old).unwrap();
    fs::create_dir_all(&new).unwrap();
    publish_pacman(
        &s,
        &old,
        "up",
        "1.0-1",
        &[("usr/bin/up", "1\n"), ("usr/share/up/gone", "g\n")],
        "",
    );
    publish_pacman(
        &s,
        &new,
        "up",
        "1.1-1",
        &[("usr/bin/up", "2\n"), ("usr/share/up/new", "n\n")],
        "",
    );
    let root = new_root(&s, "root");
    ok(&install(&s, &root, &[], &["up=1.0-1"]));
    assert_eq!(installed(&root), ["up=1.0-1"]);
    // No version: the highest in pacman's order; no --mount: found in /proc/self/mountinfo.
    ok(&s
        .w
        .repo
        .repofs_output(&["install", "--into", root.to_str().unwrap(), "up"]));
    assert_eq!(installed(&root), ["up=1.1-1"]);
    assert_eq!(fs::read_to_string(root.join("usr/bin/up")).unwrap(), "2\n");
    assert!(root.join("usr/share/up/new").is_file());
    assert!(!root.join("usr/share/up/gone").exists());
    assert_eq!(
        log_of(&root)[2..],
        ["up pre_upgrade 1.1-1 yes", "up post_upgrade 1.1-1 yes"]
    );
    let out = install(&s, &root, &[], &["up=9"]);
    assert!(stderr(&out).contains("unsatisfiable"), "{}", stderr(&out));
}

/// `repofs install NAME` installs NAME's dependency closure (`deps::resolve`), each dependency
/// before what needs it; an unmet dependency is refused before anything is written.
#[test]
fn install_brings_the_dependency_closure_in_order() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    let lib_old = pacman_pkg(&d, "lib", "0.9-1", &[("usr/lib/libx", "0.9\n")], "");
    let lib = pacman_pkg(&d, "lib", "1.2-1", &[("usr/lib/libx", "1.2\n")], "");
    let app = pacman_pkg_depending(
        &d,
        "app",
        "1.0-1",
        &[("usr/bin/app", "app\n")],
        "",
        &["lib>=1.0"],
    );
    let orphan = pacman_pkg_depending(
        &d,
        "orphan",
        "1.0-1",
        &[("usr/bin/o", "o\n")],
        "",
        &["nowhere"],
    );
    for f in [&lib_old, &lib, &app, &orphan] {
        publish(&s, "hello", f);
    }
    let root = new_root(&s, "root");
    ok(&install(&s, &root, &[], &["app"]));
    let mut got = installed(&root);
    got.sort();
    assert_eq!(got, ["app=1.0-1", "lib=1.2-1"]);
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/libx")).unwrap(),
        "1.2\n"
    );
    let log = log_of(&root);
    let at = |w: &str| {
        log.iter()
            .position(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{w} not in {log:?}"))
    };
    assert!(at("lib post_install") < at("app pre_install"), "{log:?}");

    let before = snapshot(&root);
    let out = install(&s, &root, &[], &["orphan"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("missing") && stderr(&out).contains("nowhere"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        snapshot(&root),
        before,
        "a refused install changed the root"
    );

    // Once the root's own pacman has installed `nowhere` (not in the repository), it meets
    // the dependency: only orphan is installed, as `pacman -S` would leave it.
    let nowhere = pacman_pkg(&d, "nowhere", "1-1", &[("usr/share/nowhere", "n\n")], "");
    pacman_on(
        &root,
        &s.w.scratch("pacman-conf"),
        &["-U", "--noconfirm", nowhere.to_str().unwrap()],
    );
    ok(&install(&s, &root, &[], &["orphan"]));
    let mut got = installed(&root);
    got.sort();
    assert_eq!(got, ["app=1.0-1", "lib=1.2-1", "orphan=1.0-1"]);
}

/// An `install=` scriptlet whose every function logs `NAME FUNCTION $1`.
fn scriptlet(name: &str) -> String {
    PACMAN_SCRIPTLET_FUNCTIONS
        .iter()
        .map(|f| format!("{f}() {{\n  {}\n}}\n", log_line(&format!("{name} {f} $1"))))
        .collect()
}

/// `pacman ARGS` on a private root: its own db, cache, log, no hooks, no host config.
fn pacman_on(root: &Path, conf_dir: &Path, args: &[&str]) -> String {
    let conf = conf_dir.join("pacman.conf");
    fs::write(
        &conf,
        "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("var/lib/pacman")).unwrap();
    fs::create_dir_all(conf_dir.join("hooks")).unwrap();
    run_bounded(
        Command::new("pacman")
            .arg("--root")
            .arg(root)
            .arg("--dbpath")
            .arg(root.join("var/lib/pacman"))
            .arg("--cachedir")
            .arg(conf_dir.join("cache"))
            .arg("--logfile")
            .arg(conf_dir.join("pacman.log"))
            .arg("--hookdir")
            .arg(conf_dir.join("hooks"))
            .arg("--gpgdir")
            .arg(conf_dir.join("gnupg"))
            .arg("--config")
            .arg(&conf)
            .args(args),
    )
}

/// A snapshot without pacman's own database and the /tmp (1777) that pacman creates to run
/// scriptlets from, which only pacman's root has.
fn without_pacman_db(mut snap: BTreeMap<String, String>) -> BTreeMap<String, String> {
    snap.retain(|k, _| !k.starts_with("var/lib/pacman") && k != "tmp");
    snap
}

/// Packages made by makepkg and npm pack, not by this test: `repofs install` puts the
/// same files with the same modes and content where `pacman -U` puts them in another root,
/// runs the same scriptlets in the same order inside the root, and removes like `pacman -R`.
#[test]
fn makepkg_and_npm_pack_packages_install_like_pacman_and_npm() {
    let s = Site::new();
    // makepkg runs unprivileged: its build dir must be reachable by its user.
    let build = tempfile::Builder::new()
        .prefix("repofs-install-makepkg")
        .tempdir_in("/tmp")
        .unwrap();
    sh(build.path(), "chmod 755 .");
    let lib_install = scriptlet("rp-lib");
    let lib = makepkg_with(
        build.path(),
        "rp-lib",
        "1.0",
        &PkgBuild {
            lines: "",
            package: "install -Dm644 /dev/stdin \"$pkgdir/usr/share/rp-lib/lib.txt\" <<<'lib'\n\
                      install -Dm755 /dev/stdin \"$pkgdir/usr/lib/rp-lib/helper\" <<<'#!/bin/sh'",
            install: Some(&lib_install),
        },
    );
    let app_install = scriptlet("rp-app");
    let app = makepkg_with(
        build.path(),
        "rp-app",
        "2.1",
        &PkgBuild {
            lines: "depends=('rp-lib>=1.0')\nbackup=('etc/rp-app.conf')",
            package: "install -Dm755 /dev/stdin \"$pkgdir/usr/bin/rp-app\" <<<'#!/bin/sh'\n\
                      install -Dm644 /dev/stdin \"$pkgdir/etc/rp-app.conf\" <<<'a = 1'\n\
                      install -d -m700 \"$pkgdir/var/lib/rp-app\"\n\
                      install -d \"$pkgdir/usr/share\"
                      ln -s ../bin/rp-app \"$pkgdir/usr/share/rp-app\"",
            install: Some(&app_install),
        },
    );
    for f in [&lib, &app] {
        publish(&s, "hello", f);
    }

    let root = new_root(&s, "root");
    let before = snapshot(&root);
    ok(&install(&s, &root, &[], &["rp-app"]));
    let mut got = installed(&root);
    got.sort();
    assert_eq!(got, ["rp-app=2.1-1", "rp-lib=1.0-1"]);
    // The dependency first, each scriptlet inside the root, called as pacman calls it.
    assert_eq!(
        log_of(&root),
        [
            "rp-lib pre_install 1.0-1 yes",
            "rp-lib post_install 1.0-1 yes",
            "rp-app pre_install 2.1-1 yes",
            "rp-app post_install 2.1-1 yes",
        ]
    );

    // What the package itself lists (bsdtar), minus the metadata pacman keeps to itself.
    for pkg in [&lib, &app] {
        let listed = run_bounded(Command::new("bsdtar").arg("-tf").arg(pkg));
        for p in listed.lines().filter(|p| !p.starts_with('.')) {
            let p = p.trim_end_matches('/');
            assert!(
                fs::symlink_metadata(root.join(p)).is_ok(),
                "{p} of {} not installed",
                pkg.display()
            );
        }
        for meta in [".PKGINFO", ".INSTALL", ".MTREE", ".BUILDINFO"] {
            assert!(!root.join(meta).exists(), "{meta} installed");
        }
    }

    // pacman itself, on another root made the same way.
    let r2 = new_root(&s, "pacman-root");
    let pconf = s.w.scratch("pacman-conf");
    pacman_on(
        &r2,
        &pconf,
        &[
            "-U",
            "--noconfirm",
            lib.to_str().unwrap(),
            app.to_str().unwrap(),
        ],
    );
    let ours = snapshot(&root);
    let theirs = without_pacman_db(snapshot(&r2));
    assert_eq!(ours, theirs, "repofs install vs pacman -U");
    // pacman's own file list names exactly what is there.
    let qlq = pacman_on(&r2, &pconf, &["-Qlq", "rp-lib", "rp-app"]);
    for p in qlq.lines() {
        let rel = p.trim_start_matches(r2.to_str().unwrap()).trim_matches('/');
        assert!(
            ours.contains_key(rel),
            "pacman -Qlq lists {rel}, repofs has not"
        );
    }

    // Removal runs the remove scriptlets and leaves the root as pacman -R leaves its own.
    ok(&remove(&root, &["rp-app", "rp-lib"]));
    pacman_on(&r2, &pconf, &["-R", "--noconfirm", "rp-app", "rp-lib"]);
    assert_eq!(
        log_of(&root)[4..],
        [
            "rp-app pre_remove 2.1-1 yes",
            "rp-app post_remove 2.1-1 yes",
            "rp-lib pre_remove 1.0-1 yes",
            "rp-lib post_remove 1.0-1 yes",
        ]
    );
    let mut after = snapshot(&root);
    assert_eq!(
        after,
        without_pacman_db(snapshot(&r2)),
        "remove vs pacman -R"
    );
    after.remove("install.log");
    assert_eq!(after, before);
    assert!(installed(&root).is_empty());

    // npm pack's tarball: placed under node_modules/NAME as npm itself places it.
    let mut scripts = serde_json::Map::new();
    for ev in ["preinstall", "postinstall"] {
        scripts.insert(ev.into(), log_line(&format!("rp-js {ev} $(pwd)")).into());
    }
    let js = npm_pack_with(
        build.path(),
        &serde_json::json!({
            "name": "rp-js", "version": "3.0.0", "license": "MIT",
            "main": "lib/index.js", "scripts": scripts,
            // The one-string form: a command named after the package.
            "bin": "./lib/index.js",
        }),
        &[
            ("lib/index.js", "module.exports = 42;\n"),
            ("README.md", "# rp-js\n"),
        ],
    );
    publish(&s, "hello", &js);
    ok(&install(&s, &root, &[], &["rp-js"]));
    assert_eq!(
        log_of(&root)[8..],
        [
            "rp-js preinstall /node_modules/rp-js yes",
            "rp-js postinstall /node_modules/rp-js yes",
        ]
    );
    // npm runs scripts on the host, not in a root: the placement is compared without them.
    let npm_tree = npm_installed(&s, "npm-root", &js, &["--ignore-scripts"]);
    assert!(npm_tree.contains_key(".bin/rp-js"), "{npm_tree:?}");
    assert_eq!(
        snapshot(&root.join("node_modules")),
        npm_tree,
        "repofs install vs npm install"
    );
    ok(&remove(&root, &["rp-js"]));

    // A scoped package with a `bin`: npm links it into node_modules/.bin and makes its
    // target executable.
    let cli = npm_pack_with(
        build.path(),
        &serde_json::json!({
            "name": "@rp/cli", "version": "1.0.0", "license": "MIT",
            "bin": {"rp-cli": "bin/cli.js"},
        }),
        &[("bin/cli.js", "#!/usr/bin/env node\nconsole.log(1);\n")],
    );
    publish(&s, "hello", &cli);
    ok(&install(&s, &root, &[], &["@rp/cli"]));
    let npm_tree = npm_installed(&s, "npm-root-cli", &cli, &[]);
    assert_eq!(
        snapshot(&root.join("node_modules")),
        npm_tree,
        "repofs install vs npm install of a scoped package with a bin"
    );
    ok(&remove(&root, &["@rp/cli"]));
    let mut after = snapshot(&root);
    after.remove("install.log");
    assert_eq!(after, before);
}

/// An upgrade between two makepkg versions, beside `pacman -U` of the same two: a file the
/// new version drops is removed, the scriptlets get pacman's arguments, and a `backup=`
/// config the user edited keeps the user's text (pacman writes the new one beside it).
#[test]
fn a_makepkg_upgrade_matches_pacman() {
    let s = Site::new();
    let build = tempfile::Builder::new()
        .prefix("repofs-install-upgrade")
        .tempdir_in("/tmp")
        .unwrap();
    sh(build.path(), "chmod 755 .");
    let script = scriptlet("rp-up");
    let mk = |dir: &str, ver: &str, package: &str| {
        let w = build.path().join(dir);
        fs::create_dir_all(&w).unwrap();
        sh(&w, "chmod 755 .");
        makepkg_with(
            &w,
            "rp-up",
            ver,
            &PkgBuild {
                lines: "backup=('etc/rp-up.conf')",
                package,
                install: Some(&script),
            },
        )
    };
    let v1 = mk(
        "v1",
        "1.0",
        "install -Dm644 /dev/stdin \"$pkgdir/etc/rp-up.conf\" <<<'v = 1'\n\
         install -Dm644 /dev/stdin \"$pkgdir/usr/share/rp-up/gone\" <<<'gone'",
    );
    let v2 = mk(
        "v2",
        "2.0",
        "install -Dm644 /dev/stdin \"$pkgdir/etc/rp-up.conf\" <<<'v = 2'\n\
         install -Dm644 /dev/stdin \"$pkgdir/usr/share/rp-up/new\" <<<'new'",
    );
    for f in [&v1, &v2] {
        publish(&s, "hello", f);
    }
    let root = new_root(&s, "root");
    let r2 = new_root(&s, "pacman-root");
    let pconf = s.w.scratch("pacman-conf");
    ok(&install(&s, &root, &[], &["rp-up=1.0-1"]));
    pacman_on(&r2, &pconf, &["-U", "--noconfirm", v1.to_str().unwrap()]);
    for r in [&root, &r2] {
        fs::write(r.join("etc/rp-up.conf"), "mine\n").unwrap();
    }
    let up = install(&s, &root, &[], &["rp-up=2.0-1"]);
    ok(&up);
    assert!(
        String::from_utf8_lossy(&up.stdout)
            .contains("kept edited config etc/rp-up.conf (new text in etc/rp-up.conf.repofs-new)"),
        "{}",
        String::from_utf8_lossy(&up.stdout)
    );
    pacman_on(&r2, &pconf, &["-U", "--noconfirm", v2.to_str().unwrap()]);
    assert_eq!(installed(&root), ["rp-up=2.0-1"]);
    assert_eq!(
        fs::read_to_string(root.join("etc/rp-up.conf")).unwrap(),
        "mine\n",
        "the user's edit was lost"
    );
    let mut theirs = without_pacman_db(snapshot(&r2));
    let pacnew = theirs.remove("etc/rp-up.conf.pacnew");
    let mut ours = snapshot(&root);
    assert_eq!(ours.remove("etc/rp-up.conf.repofs-new"), pacnew);
    assert_eq!(ours, theirs, "repofs upgrade vs pacman -U");
}

/// A long install draws a progress bar (package name, bytes of the total) on a terminal, and
/// nothing of it into a pipe.
#[test]
fn an_install_shows_progress_on_a_terminal_only() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    let big = "0123456789abcdef\n".repeat(1 << 19); // 8.5 MiB a file
    let pkg = pacman_pkg(
        &d,
        "bulky",
        "1.0-1",
        &[("usr/share/bulky/a", &big), ("usr/share/bulky/b", &big)],
        "",
    );
    publish(&s, "hello", &pkg);
    let root = new_root(&s, "tty-root");
    let mut cmd = s.w.repo.cmd(REPOFS);
    cmd.args(["install", "--into", root.to_str().unwrap(), "--mount"])
        .arg(&s.mnt.dir)
        .arg("bulky");
    let (status, screen) = on_a_terminal(&cmd);
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("bulky") && screen.contains("MiB/17.00 MiB"),
        "no progress bar on the terminal: {screen:?}"
    );
    assert!(screen.contains("installed bulky=1.0-1"), "{screen:?}");
    // Into a pipe: the report only.
    let root2 = new_root(&s, "pipe-root");
    let out = install(&s, &root2, &[], &["bulky"]);
    ok(&out);
    assert!(!stderr(&out).contains("MiB/"), "{}", stderr(&out));
}
