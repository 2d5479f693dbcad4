//! What one new package in a large apt directory costs a mirror (issue 19, item 5): the
//! delta names the directory's `Packages`, `Packages.xz` and by-hash copies by hash, the
//! mirror makes them itself, and stock `apt-get update` fetches the same bytes from the
//! mirror as from the primary; the same for pacman's databases; a mirror whose own render
//! differs fetches the primary's bytes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{clients::*, mirror::*, net::*, old_catalog::*, process::*, repo::*, site::*};

const DIR: &str = "hello/big";

/// A real one-file `.deb` made by dpkg-deb (gzip members).
fn make_deb(d: &Path, name: &str) -> PathBuf {
    let root = d.join(name);
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
    fs::write(root.join(format!("usr/share/{name}/README")), "hi\n").unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0-1\nArchitecture: all\n\
             Maintainer: Repofs Tests <tests@example.org>\nInstalled-Size: 4\n\
             Section: misc\nPriority: optional\nDescription: repofs test package {name}\n"
        ),
    )
    .unwrap();
    let deb = d.join(format!("{name}_1.0-1_all.deb"));
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    assert!(o.status.success(), "dpkg-deb: {o:?}");
    deb
}

/// The generation of the root the primary last signed.
fn root_generation(repo: &Repo) -> i64 {
    let body = fs::read(repo.root.join("index/root.json")).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|r| r["generation"].as_i64())
        .unwrap_or(0)
}

/// The size of the head delta object the primary's root names.
fn head_delta_size(repo: &Repo) -> u64 {
    let body = fs::read(repo.root.join("index/root.json")).expect("root.json");
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sha = root["head"]["sha256"].as_str().expect("a head delta");
    fs::metadata(repo.root.join("index/objects").join(sha))
        .expect("the head delta object")
        .len()
}

fn mirror_generation(m: &Mirror) -> i64 {
    m.repo
        .catalog()
        .setting("index_generation")
        .ok()
        .flatten()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// A primary (with `--listen` on the returned port) whose `dists/big/apt` holds `n` .deb
/// with their apt metadata: one real upload, cloned (`clone_packages`), rendered at restart.
fn primary_with_debs(n: usize) -> (Site, u16) {
    let port = free_port();
    let mut site = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    let d = site.w.scratch("debs");
    publish(&site, DIR, &make_deb(&d, "template"));
    let id = site.w.repo.file_id(DIR, "template_1.0-1_all.deb");
    site.daemon.terminate();
    clone_packages(&site.w.repo, id, n - 1, &DEB);
    site.daemon = Daemon::start(&site.w.repo, &[]);
    let want = site.w.repo.catalog().generation().unwrap();
    wait_for("the primary's root after the backfill", SYNC, || {
        (root_generation(&site.w.repo) == want).then_some(())
    });
    let packages = fs::read_to_string(site.mnt.path(&format!("dists/{DIR}/Packages"))).unwrap();
    assert_eq!(packages.matches("Package: ").count(), n);
    (site, port)
}

/// Publishes one more .deb on the primary and waits until `mirror` applied its generation.
fn publish_one(site: &Site, mirror: &Mirror, name: &str) {
    publish(site, DIR, &make_deb(&site.w.scratch(name), name));
    let want = site.w.repo.catalog().generation().unwrap();
    wait_for("the primary's root", SYNC, || {
        (root_generation(&site.w.repo) == want).then_some(())
    });
    wait_for("the mirror to apply it", SYNC, || {
        (mirror_generation(mirror) == want).then_some(())
    });
}

/// Every metadata file of dists/DIR, with by-hash copies, through a mount: name → bytes.
fn dists_files(mnt: &crate::common::mount::Mount) -> BTreeMap<String, Vec<u8>> {
    let dir = mnt.path(&format!("dists/{DIR}"));
    let mut names: Vec<String> = [
        "Release",
        "InRelease",
        "Release.gpg",
        "Packages",
        "Packages.xz",
    ]
    .map(String::from)
    .to_vec();
    for e in fs::read_dir(dir.join("by-hash/SHA256")).expect("by-hash") {
        names.push(format!(
            "by-hash/SHA256/{}",
            e.unwrap().file_name().to_string_lossy()
        ));
    }
    names
        .into_iter()
        .map(|n| {
            let b = fs::read(dir.join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, b)
        })
        .collect()
}

/// `apt-get update` against `url` in a fresh root: the files it stored in lists/, by the part
/// of their name after the URL.
fn apt_lists(scratch: &Path, url: &str, key: &Path) -> BTreeMap<String, Vec<u8>> {
    let apt = AptRoot::new(scratch, url, Some(key));
    let o = apt.apt_get(&["update"]);
    assert!(o.status.success(), "apt-get update {url}: {o:?}");
    let mut out = BTreeMap::new();
    for e in fs::read_dir(apt.root.join("var/lib/apt/lists")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((_, rest)) = name.split_once("_dists_") {
            out.insert(rest.to_string(), fs::read(e.path()).unwrap());
        }
    }
    assert!(
        out.keys().any(|k| k.ends_with("InRelease")),
        "{:?}",
        out.keys()
    );
    assert!(
        out.keys().any(|k| k.ends_with("Packages")),
        "{:?}",
        out.keys()
    );
    out
}

#[test]
fn one_new_deb_in_a_directory_of_2000_costs_a_mirror_a_small_delta_and_apt_sees_the_same() {
    let (site, port) = primary_with_debs(2000);
    let mport = free_port();
    let mirror = Mirror::start_listening(&site, port, "", Some(mport));
    wait_for("the mirror to catch up", SYNC, || {
        (mirror_generation(&mirror) == root_generation(&site.w.repo)).then_some(())
    });
    publish_one(&site, &mirror, "newcomer");
    // Before: every change re-sent the directory's Packages, Packages.xz and by-hash copies
    // (about 500 KB here). Now the delta holds the new package's rows and Release, InRelease
    // and Release.gpg, and names the rest by hash.
    let delta = head_delta_size(&site.w.repo);
    assert!(
        delta <= 32 << 10,
        "the delta of one new .deb is {delta} bytes"
    );
    let primary = dists_files(&site.mnt);
    eprintln!(
        "delta {delta} bytes; Packages {} bytes, Packages.xz {} bytes",
        primary["Packages"].len(),
        primary["Packages.xz"].len()
    );
    assert!(primary["Packages.xz"].len() > 64 << 10);
    assert_eq!(dists_files(&mirror.mnt), primary);
    let log = mirror.daemon.log();
    assert!(
        !log.contains("fetching it"),
        "the mirror fetched metadata:\n{log}"
    );
    // Stock apt, over HTTP from each, stores the same files.
    let key = export_repo_key(&site.w.repo, &site.w.work);
    let from_primary = apt_lists(
        &site.w.scratch("apt-primary"),
        &format!("http://127.0.0.1:{port}/dists/{DIR}"),
        &key,
    );
    let from_mirror = apt_lists(
        &site.w.scratch("apt-mirror"),
        &format!("http://127.0.0.1:{mport}/dists/{DIR}"),
        &key,
    );
    assert_eq!(
        from_primary.keys().collect::<Vec<_>>(),
        from_mirror.keys().collect::<Vec<_>>()
    );
    assert!(from_primary == from_mirror, "apt stored different files");
}

#[test]
fn a_mirror_whose_render_differs_fetches_and_serves_the_primarys_bytes() {
    let (site, port) = primary_with_debs(300);
    let mirror = Mirror::start(&site, port, "");
    wait_for("the mirror to catch up", SYNC, || {
        (mirror_generation(&mirror) == root_generation(&site.w.repo)).then_some(())
    });
    // The mirror's rows of one package differ: its own Packages cannot match the primary's.
    alter_description(&mirror.repo, "clone00007_1.0-1_all.deb");
    publish_one(&site, &mirror, "newcomer");
    let primary = dists_files(&site.mnt);
    assert_eq!(dists_files(&mirror.mnt), primary);
    let log = mirror.daemon.log();
    assert!(
        log.contains("differs from the primary's: fetching it") && log.contains("name=Packages"),
        "{log}"
    );
    assert!(!String::from_utf8_lossy(&primary["Packages"]).contains("altered here"));
}

#[test]
fn a_mirror_renders_the_pacman_databases_of_600_packages_itself() {
    let port = free_port();
    let mut site = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    let d = site.w.scratch("pkgs");
    let files = [("usr/share/template/README", "hi\n")];
    publish_pacman(&site, &d, "template", "1.0", &files, "");
    let id = site
        .w
        .repo
        .catalog()
        .files(false)
        .unwrap()
        .into_iter()
        .find(|f| f.filename.starts_with("template-"))
        .expect("the template")
        .id;
    site.daemon.terminate();
    clone_packages(&site.w.repo, id, 599, &PACMAN);
    site.daemon = Daemon::start(&site.w.repo, &[]);
    let mirror = Mirror::start(&site, port, "");
    wait_for("the mirror to catch up", SYNC, || {
        let g = root_generation(&site.w.repo);
        (g > 1 && mirror_generation(&mirror) == g).then_some(())
    });
    let names = ["hello.db", "hello.db.sig", "hello.files", "hello.files.sig"];
    let read = |mnt: &crate::common::mount::Mount| -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|n| fs::read(mnt.path(&format!("dists/hello/{n}"))).unwrap())
            .collect()
    };
    publish_pacman(
        &site,
        &d,
        "newcomer",
        "1.0",
        &[("usr/share/newcomer/README", "hi\n")],
        "",
    );
    let want = site.w.repo.catalog().generation().unwrap();
    wait_for("the mirror to apply it", SYNC, || {
        (root_generation(&site.w.repo) == want && mirror_generation(&mirror) == want).then_some(())
    });
    let primary = read(&site.mnt);
    // Large enough to be named by hash, not carried.
    assert!(
        primary[0].len() > 16 << 10,
        "hello.db is {} bytes",
        primary[0].len()
    );
    assert_eq!(read(&mirror.mnt), primary);
    let delta = head_delta_size(&site.w.repo);
    assert!(
        delta <= 32 << 10,
        "the delta of one new package is {delta} bytes"
    );
    let log = mirror.daemon.log();
    assert!(
        !log.contains("fetching it"),
        "the mirror fetched metadata:\n{log}"
    );
}

/// A mirror starting from empty after a publication past the primary's snapshot gets the
/// snapshot and a delta that names the directory's large files by hash: the snapshot, with
/// the delta merged, becomes its catalog, and it renders what the delta names itself.
#[test]
fn a_mirror_from_empty_past_the_snapshot_adopts_it_and_renders_what_the_delta_names() {
    let (site, port) = primary_with_debs(300);
    publish(&site, DIR, &make_deb(&site.w.scratch("late"), "late"));
    let want = site.w.repo.catalog().generation().unwrap();
    wait_for("the primary's root", SYNC, || {
        (root_generation(&site.w.repo) == want).then_some(())
    });
    let mirror = Mirror::start(&site, port, "");
    wait_for("the mirror to sync", SYNC, || {
        (mirror_generation(&mirror) == want).then_some(())
    });
    let log = mirror.daemon.log();
    assert!(
        log.contains("index synced from=None") && !log.contains("objects=1 "),
        "not the snapshot and deltas:\n{log}"
    );
    assert!(!log.contains("meta_rendered=0 "), "{log}");
    assert!(
        fs::symlink_metadata(mirror.repo.root.join("catalog.sqlite"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(dists_files(&mirror.mnt), dists_files(&site.mnt));
}
