//! `repofs image`: the closure installed into a staging root and packed. Two builds must be
//! byte-identical, and the archive must list exactly the union of the packages' trees as the
//! mount shows them (`find` in pkgs/), for tar, tar.gz, tar.zst and iso (through xorriso).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::{mirror::*, mount::*, process::*, repo::*, site::*};

/// Every path below `dir`, relative, as `find` prints it.
fn find(dir: &Path) -> BTreeSet<String> {
    let out = Command::new("find")
        .arg(".")
        .arg("-mindepth")
        .arg("1")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

fn image(s: &Site, out: &Path, extra: &[&str], pkgs: &[&str]) {
    image_from(&s.w.repo, &s.mnt, out, extra, pkgs)
}

fn image_from(repo: &Repo, mnt: &Mount, out: &Path, extra: &[&str], pkgs: &[&str]) {
    let mut cmd = repo.cmd(REPOFS);
    cmd.args([
        "image",
        "-o",
        out.to_str().unwrap(),
        "--mount",
        mnt.dir.to_str().unwrap(),
    ])
    .args(extra)
    .args(pkgs)
    .env("SOURCE_DATE_EPOCH", "1700000000");
    let o = output_bounded(&mut cmd);
    assert!(o.status.success(), "repofs image: {}", stderr(&o));
}

fn cmp(a: &Path, b: &Path) {
    let st = Command::new("cmp").arg(a).arg(b).status().unwrap();
    assert!(st.success(), "{} and {} differ", a.display(), b.display());
}

fn tar_list(file: &Path) -> BTreeSet<String> {
    let out = Command::new("tar").arg("-tf").arg(file).output().unwrap();
    assert!(out.status.success(), "tar -tf: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn two_images_are_identical_and_hold_the_union_of_the_trees() {
    let s = Site::new();
    let d = s.w.scratch("pkgs");
    publish_pacman(
        &s,
        &d,
        "tool",
        "1.0-1",
        &[
            ("usr/bin/tool", "t\n"),
            ("usr/share/doc/tool/README", "r\n"),
        ],
        "",
    );
    let other = d.join("other");
    sh(&d, "mkdir -p other/other-2/usr/share/doc/o && echo o > other/other-2/usr/share/doc/o/x && ln -s x other/other-2/usr/share/doc/o/y");
    sh(&other, "tar -cJf ../other-2.tar.xz other-2");
    publish(&s, "hello", &d.join("other-2.tar.xz"));
    // The closure, named in full: the baseline hello tarball too.
    let pkgs = ["hello", "tool", "other"];

    // The union of the trees as the mount shows them (pacman metadata is not installed).
    let mut want = BTreeSet::new();
    for dir in ["pkgs/hello/1.0", "pkgs/tool/1.0-1", "pkgs/other/2"] {
        for p in find(&s.mnt.path(dir)) {
            if ![".PKGINFO", ".INSTALL"].contains(&p.as_str()) {
                want.insert(p);
            }
        }
    }
    let out = s.w.scratch("out");
    for ext in ["tar", "tar.gz", "tar.zst"] {
        let a = out.join(format!("a.{ext}"));
        let b = out.join(format!("b.{ext}"));
        image(&s, &a, &[], &pkgs);
        image(&s, &b, &["--format", ext], &pkgs);
        cmp(&a, &b);
        assert_eq!(tar_list(&a), want, "{ext}");
    }
    // Owners 0 with empty names, mtimes clamped.
    let v = Command::new("tar")
        .args(["--full-time", "-tvzf"])
        .arg(out.join("a.tar.gz"))
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&v.stdout).lines() {
        assert!(line.contains(" 0/0 "), "{line}");
        let date = line.split_whitespace().nth(3).unwrap();
        assert!(date <= "2023-11-14", "{line}");
    }

    let a = out.join("a.iso");
    let b = out.join("b.iso");
    image(&s, &a, &[], &pkgs);
    image(&s, &b, &["--format", "iso"], &pkgs);
    cmp(&a, &b);
    let l = Command::new("xorriso")
        .args(["-indev"])
        .arg(&a)
        .args(["-find", "/", "-exec", "lsdl"])
        .output()
        .unwrap();
    assert!(l.status.success(), "xorriso -indev: {}", stderr(&l));
    // Lines end in '/path' or '/path' -> 'target'.
    let listed: BTreeSet<String> = String::from_utf8_lossy(&l.stdout)
        .lines()
        .filter_map(|line| line.split('\'').nth(1))
        .map(|p| p.trim_start_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(listed, want, "iso");
    // Nothing left behind beside the outputs.
    let left: Vec<String> = find(&out)
        .into_iter()
        .filter(|p| p.starts_with(".repofs"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_mirror_builds_the_same_image_from_packages_it_has_not_fetched() {
    let (p, port) = primary();
    let d = p.w.scratch("pkgs");
    publish_pacman(&p, &d, "tool", "1.0-1", &[("usr/bin/tool", "t\n")], "");
    sh(&d, "mkdir -p o/other-2/share && head -c 3000000 /dev/urandom > o/other-2/share/blob && tar -C o -cJf other-2.tar.xz other-2");
    publish(&p, "hello", &d.join("other-2.tar.xz"));
    let m = Mirror::start(&p, port, "");
    let cached = |repo: &Repo| find_or_empty(&repo.root.join("mirror/complete"));
    assert!(
        cached(&m.repo).is_empty(),
        "the mirror fetched before the image"
    );

    let out = p.w.scratch("out");
    let pkgs = ["hello", "tool", "other"];
    image_from(&m.repo, &m.mnt, &out.join("mirror.tar.gz"), &[], &pkgs);
    image(&p, &out.join("primary.tar.gz"), &[], &pkgs);
    cmp(&out.join("mirror.tar.gz"), &out.join("primary.tar.gz"));
}

fn find_or_empty(dir: &Path) -> BTreeSet<String> {
    if dir.is_dir() {
        find(dir)
    } else {
        BTreeSet::new()
    }
}
