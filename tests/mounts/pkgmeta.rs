//! apt and pacman repository metadata (`pkgmeta`): stock `apt-get` and stock `pacman`, each
//! in a private root with only the repository key trusted, update from and install out of a
//! real mount's dists/DIR, on the primary and on a mirror; a tampered `Packages` or `.db` is
//! refused; and our files agree field by field with what `apt-ftparchive` and `repo-add`
//! make for the same packages. The repository URL is a parameter (`file:` of a mount here).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{
    clients::*, digest::*, keys::*, mirror::*, mount::*, net::*, old_catalog::*, packages::*,
    process::*, repo::*, site::*, world::*,
};

const APT_DIR: &str = "hello/apt";
const PAC_DIR: &str = "hello/pmrepo";
const PAC_REPO: &str = "pmrepo";

fn out_text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Signs `file` as Alice, writes its directive for `dir`, uploads the triplet, waits.
fn publish(site: &Site, file: &Path, dir: &str) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let sig = site.w.gpg.sign(ALICE, file, false, &[]);
    let d = file.parent().unwrap();
    let directive = directive(
        &site.w.gpg,
        ALICE,
        d,
        &name,
        &format!("version: 1.2\ndirectory: {dir}\nfilename: {name}\n"),
    );
    site.w.upload("", &[file.to_path_buf(), sig, directive]);
    site.daemon.wait_published(&site.w.repo, dir, &name);
}

/// Two real .deb made by dpkg-deb: `pmeta-app` depends on `pmeta-lib`.
fn make_debs(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (name, depends) in [
        ("pmeta-lib", ""),
        ("pmeta-app", "Depends: pmeta-lib (>= 1.0)\n"),
    ] {
        let root = d.join(name);
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
        fs::write(
            root.join(format!("usr/share/{name}/{name}.txt")),
            format!("{name} installed\n"),
        )
        .unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: 1.0-1\nArchitecture: all\n\
                 Maintainer: Repofs Tests <tests@example.org>\nInstalled-Size: 4\n\
                 Section: misc\nPriority: optional\n{depends}\
                 Description: repofs pkgmeta test package {name}\n A longer description,\n \
                 .\n over two paragraphs.\n"
            ),
        )
        .unwrap();
        let deb = d.join(format!("{name}_1.0-1_all.deb"));
        let o = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "-b"])
            .arg(&root)
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(o.status.success(), "dpkg-deb: {}", out_text(&o));
        out.push(deb);
    }
    out
}

/// Two real pacman packages made by makepkg (as an unprivileged user, which makepkg
/// insists on): `pmeta-alpm-app` depends on `pmeta-alpm-lib`. The build dir is removed when
/// the returned guard drops.
fn make_pacman_pkgs() -> (tempfile::TempDir, Vec<PathBuf>) {
    let build = tempfile::Builder::new()
        .prefix("repofs-pkgmeta-makepkg")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(build.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let mut out = Vec::new();
    for (name, depends) in [
        ("pmeta-alpm-lib", ""),
        ("pmeta-alpm-app", "depends=('pmeta-alpm-lib>=1.0')"),
    ] {
        let lines = format!("url='https://example.org/{name}'\n{depends}");
        let package = format!(
            "install -Dm644 /dev/stdin \"$pkgdir/usr/share/{name}/{name}.txt\" <<<'{name} installed'"
        );
        out.push(makepkg_with(
            build.path(),
            name,
            "1.0",
            &PkgBuild {
                lines: &lines,
                package: &package,
                install: None,
            },
        ));
    }
    (build, out)
}

/// A private pacman: root, database, cache, config and keyring (holding only the repository
/// key, locally signed), `SigLevel = Required`.
struct PacRoot {
    root: PathBuf,
    conf: PathBuf,
    gpgdir: PathBuf,
}

impl PacRoot {
    fn new(parent: &Path, url: &str, key: &Path) -> PacRoot {
        let root = parent.join("root");
        let gpgdir = parent.join("gnupg");
        for d in [
            "var/lib/pacman",
            "var/cache/pacman/pkg",
            "var/log",
            "etc/pacman.d/hooks",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let conf = parent.join("pacman.conf");
        fs::write(
            &conf,
            format!(
                "[options]\nArchitecture = x86_64\nSigLevel = Required\n\
                 LocalFileSigLevel = Required\nHookDir = {}/etc/pacman.d/hooks/\n\
                 LogFile = {}/var/log/pacman.log\n\n[{PAC_REPO}]\nServer = {url}\n",
                root.display(),
                root.display()
            ),
        )
        .unwrap();
        let key_cmd = |args: &[&str]| {
            let o = Command::new("pacman-key")
                .arg("--gpgdir")
                .arg(&gpgdir)
                .args(args)
                .output()
                .expect("pacman-key");
            assert!(o.status.success(), "pacman-key {args:?}: {}", out_text(&o));
        };
        key_cmd(&["--init"]);
        key_cmd(&["--add", &key.to_string_lossy()]);
        key_cmd(&["--lsign-key", &key_fingerprint(key)]);
        PacRoot { root, conf, gpgdir }
    }

    fn pacman(&self, args: &[&str]) -> Output {
        output_bounded(
            Command::new("pacman")
                .arg("--root")
                .arg(&self.root)
                .arg("--dbpath")
                .arg(self.root.join("var/lib/pacman"))
                .arg("--cachedir")
                .arg(self.root.join("var/cache/pacman/pkg"))
                .arg("--config")
                .arg(&self.conf)
                .arg("--gpgdir")
                .arg(&self.gpgdir)
                .args(["--noconfirm", "--noprogressbar"])
                .args(args),
        )
    }
}

/// The primary fingerprint of an armored key file, as gpg reads it.
fn key_fingerprint(key: &Path) -> String {
    let home = tempfile::tempdir().unwrap();
    let o = Command::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(key)
        .output()
        .expect("gpg");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no fingerprint in {}", out_text(&o)))
}

/// `apt-get update` then `apt-get install pmeta-app` from `url` into a fresh private root
/// under `scratch`: both packages' files must land in that root.
fn apt_installs(scratch: &Path, url: &str, key: &Path) {
    let apt = AptRoot::new(scratch, url, Some(key));
    let o = apt.apt_get(&["update"]);
    assert!(
        o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("W:"),
        "apt-get update from {url}: {}",
        out_text(&o)
    );
    let o = apt.apt_get(&["install", "-y", "pmeta-app"]);
    assert!(o.status.success(), "apt-get install: {}", out_text(&o));
    for name in ["pmeta-lib", "pmeta-app"] {
        let f = apt.root.join(format!("usr/share/{name}/{name}.txt"));
        assert_eq!(
            fs::read_to_string(&f).unwrap_or_default(),
            format!("{name} installed\n"),
            "{} not installed",
            f.display()
        );
    }
}

/// `pacman -Sy` then `pacman -S pmeta-alpm-app` from `url`: both packages land in the root.
fn pacman_installs(scratch: &Path, url: &str, key: &Path) {
    let pac = PacRoot::new(scratch, url, key);
    let o = pac.pacman(&["-Sy"]);
    assert!(
        o.status.success(),
        "pacman -Sy from {url}: {}",
        out_text(&o)
    );
    let o = pac.pacman(&["-S", "pmeta-alpm-app"]);
    assert!(o.status.success(), "pacman -S: {}", out_text(&o));
    for name in ["pmeta-alpm-lib", "pmeta-alpm-app"] {
        let f = pac.root.join(format!("usr/share/{name}/{name}.txt"));
        assert_eq!(
            fs::read_to_string(&f).unwrap_or_default(),
            format!("{name} installed\n"),
            "{} not installed",
            f.display()
        );
    }
}

/// deb822 stanzas by Package: field -> value (continuation lines joined with '\n').
fn stanzas(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last = String::new();
        for line in para.lines() {
            if let Some(cont) = line.strip_prefix(' ') {
                if let Some(v) = fields.get_mut(&last) {
                    v.push('\n');
                    v.push_str(cont);
                }
            } else if let Some((k, v)) = line.split_once(':') {
                last = k.to_string();
                fields.insert(k.to_string(), v.trim().to_string());
            }
        }
        out.insert(fields.get("Package").cloned().unwrap_or_default(), fields);
    }
    out
}

/// Copies dists/DIR (only its regular files) into a fresh directory.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn flip_byte(file: &Path, at: usize) {
    let mut b = fs::read(file).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x20;
    fs::write(file, b).unwrap();
}

fn publish_all(site: &Site) -> tempfile::TempDir {
    let d = site.w.scratch("debs");
    for deb in make_debs(&d) {
        publish(site, &deb, APT_DIR);
    }
    let (build, pkgs) = make_pacman_pkgs();
    for p in &pkgs {
        // The upload is built outside the world's scratch dir (makepkg's user cannot reach
        // it); copy it in to sign and upload like any other.
        let to = site.w.scratch("pacman").join(p.file_name().unwrap());
        fs::copy(p, &to).unwrap();
        publish(site, &to, PAC_DIR);
    }
    build
}

/// A copy of the apt repository `apt_dir` with its `what` changed by `tamper`: apt's update
/// fails saying `why`, and nothing installs from it.
fn apt_refuses_tampered(
    site: &Site,
    apt_dir: &Path,
    key: &Path,
    what: &str,
    why: &str,
    tamper: impl FnOnce(&Path),
) {
    let bad = site.w.scratch(&format!("apt-tampered-{what}"));
    let repo = bad.join("repo");
    copy_dir(apt_dir, &repo);
    tamper(&repo);
    let apt = AptRoot::new(
        &bad.join("root"),
        &format!("file:{}", repo.display()),
        Some(key),
    );
    let o = apt.apt_get(&["update"]);
    let all = out_text(&o);
    assert!(
        !o.status.success() && all.contains(why),
        "apt accepted a tampered {what}: {all}"
    );
    let o = apt.apt_get(&["install", "-y", "pmeta-app"]);
    assert!(
        !o.status.success(),
        "installed from a tampered {what}: {}",
        out_text(&o)
    );
}

#[test]
fn stock_apt_and_pacman_install_from_the_mount_and_refuse_tampered_indexes() {
    let site = Site::new();
    let _build = publish_all(&site);
    let key = export_repo_key(&site.w.repo, &site.w.work);
    let apt_dir = site.mnt.path(&format!("dists/{APT_DIR}"));
    let pac_dir = site.mnt.path(&format!("dists/{PAC_DIR}"));
    for f in [
        "Packages",
        "Packages.xz",
        "Release",
        "InRelease",
        "Release.gpg",
    ] {
        assert!(apt_dir.join(f).is_file(), "no dists/{APT_DIR}/{f}");
        assert!(
            !pac_dir.join(f).exists(),
            "apt metadata in a pacman-only dir"
        );
    }
    for f in ["db", "db.sig", "files", "files.sig"] {
        assert!(pac_dir.join(format!("{PAC_REPO}.{f}")).is_file());
    }
    // Directories without such packages get none.
    assert!(!site.mnt.path("dists/hello/Packages").exists());

    apt_installs(
        &site.w.scratch("apt-mount"),
        &format!("file:{}", apt_dir.display()),
        &key,
    );
    pacman_installs(
        &site.w.scratch("pacman-mount"),
        &format!("file://{}", pac_dir.display()),
        &key,
    );

    // Tampered Packages (and Packages.xz made from it, so whichever apt picks is wrong):
    // the signed Release's hashes refuse it and nothing gets listed.
    apt_refuses_tampered(
        &site,
        &apt_dir,
        &key,
        "Packages",
        "Hash Sum mismatch",
        |repo| {
            let packages = repo.join("Packages");
            let text = fs::read_to_string(&packages).unwrap();
            flip_byte(&packages, text.find("longer").unwrap());
            sh(repo, "xz -kfc Packages > Packages.xz");
        },
    );
    // A tampered InRelease: the signature fails.
    apt_refuses_tampered(&site, &apt_dir, &key, "InRelease", "BADSIG", |repo| {
        let inrel = repo.join("InRelease");
        let text = fs::read_to_string(&inrel).unwrap();
        flip_byte(&inrel, text.find("Label").unwrap());
        fs::remove_file(repo.join("Release.gpg")).unwrap();
    });

    // A tampered .db: its signature fails and pacman refuses the database.
    let bad = site.w.scratch("pacman-tampered");
    copy_dir(&pac_dir, &bad.join("repo"));
    let db = bad.join(format!("repo/{PAC_REPO}.db"));
    let len = fs::metadata(&db).unwrap().len() as usize;
    flip_byte(&db, len / 2);
    let pac = PacRoot::new(
        &bad.join("client"),
        &format!("file://{}", bad.join("repo").display()),
        &key,
    );
    let o = pac.pacman(&["-Sy"]);
    assert!(
        !o.status.success()
            && out_text(&o).contains("invalid or corrupted database (PGP signature)"),
        "pacman accepted a tampered db: {}",
        out_text(&o)
    );
    let o = pac.pacman(&["-S", "pmeta-alpm-app"]);
    assert!(
        !o.status.success(),
        "pacman installed from a tampered db: {}",
        out_text(&o)
    );
    assert!(!pac.root.join("usr/share/pmeta-alpm-app").exists());
}

#[test]
fn metadata_matches_apt_ftparchive_and_repo_add_field_by_field() {
    let site = Site::new();
    let _build = publish_all(&site);
    let apt_dir = site.mnt.path(&format!("dists/{APT_DIR}"));
    let pac_dir = site.mnt.path(&format!("dists/{PAC_DIR}"));

    // apt-ftparchive over the same .deb files.
    let ref_dir = site.w.scratch("ftparchive");
    for e in fs::read_dir(&apt_dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".deb") {
            fs::copy(e.path(), ref_dir.join(e.file_name())).unwrap();
        }
    }
    let o = Command::new("apt-ftparchive")
        .args(["packages", "."])
        .current_dir(&ref_dir)
        .output()
        .expect("apt-ftparchive (apt-utils)");
    assert!(o.status.success(), "{}", out_text(&o));
    let theirs = stanzas(&String::from_utf8_lossy(&o.stdout));
    let ours = stanzas(&fs::read_to_string(apt_dir.join("Packages")).unwrap());
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (pkg, t) in &theirs {
        let o = &ours[pkg];
        // SHA1 and SHA512 we do not record; apt needs neither.
        let t: BTreeMap<_, _> = t
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "SHA1" | "SHA512"))
            .collect();
        let o: BTreeMap<_, _> = o.iter().collect();
        assert_eq!(o, t, "Packages stanza of {pkg}");
    }
    // Release: apt-ftparchive's hashes of our served Packages and Packages.xz are ours.
    let served = site.w.scratch("served");
    copy_dir(&apt_dir, &served);
    fs::remove_file(served.join("Release")).unwrap();
    for e in fs::read_dir(&served).unwrap() {
        let p = e.unwrap().path();
        if !p.ends_with("Packages") && !p.ends_with("Packages.xz") {
            fs::remove_file(p).unwrap();
        }
    }
    let o = Command::new("apt-ftparchive")
        .args(["release", "."])
        .current_dir(&served)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let their_release = String::from_utf8_lossy(&o.stdout).into_owned();
    let our_release = fs::read_to_string(apt_dir.join("Release")).unwrap();
    let sums = |text: &str, section: &str| -> BTreeMap<String, (String, String)> {
        let mut in_section = false;
        let mut out = BTreeMap::new();
        for l in text.lines() {
            if !l.starts_with(' ') {
                in_section = l.trim_end() == format!("{section}:");
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            if in_section && f.len() == 3 {
                out.insert(f[2].to_string(), (f[0].to_string(), f[1].to_string()));
            }
        }
        out
    };
    for section in ["MD5Sum", "SHA256"] {
        assert_eq!(
            sums(&our_release, section),
            sums(&their_release, section),
            "Release {section}:\nours:\n{our_release}\ntheirs:\n{their_release}"
        );
    }
    assert!(our_release.contains("\nDate: "), "{our_release}");
    // InRelease is Release, clear-signed.
    assert!(fs::read_to_string(apt_dir.join("InRelease"))
        .unwrap()
        .contains(&our_release));

    // repo-add over the same packages, each with our %PGPSIG% as its .sig beside it.
    let ref_dir = site.w.scratch("repo-add");
    let unpacked = site.w.scratch("ours-db");
    sh(
        &unpacked,
        &format!("bsdtar -xf {}/{PAC_REPO}.files", pac_dir.display()),
    );
    let mut pkgs = Vec::new();
    for e in fs::read_dir(&pac_dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".pkg.tar.zst") {
            fs::copy(e.path(), ref_dir.join(&name)).unwrap();
            pkgs.push(name);
        }
    }
    assert_eq!(pkgs.len(), 2);
    for entry in fs::read_dir(&unpacked).unwrap() {
        let desc = fs::read_to_string(entry.unwrap().path().join("desc")).unwrap();
        let field = |k: &str| {
            desc.split(&format!("%{k}%\n"))
                .nth(1)
                .and_then(|r| r.lines().next())
                .unwrap_or_default()
                .to_string()
        };
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(field("PGPSIG"))
            .expect("PGPSIG is base64");
        fs::write(ref_dir.join(format!("{}.sig", field("FILENAME"))), sig).unwrap();
    }
    let o = Command::new("repo-add")
        .arg("-q")
        .arg(format!("{PAC_REPO}.db.tar.gz"))
        .args(&pkgs)
        .current_dir(&ref_dir)
        .output()
        .expect("repo-add");
    assert!(o.status.success(), "{}", out_text(&o));
    let theirs = site.w.scratch("theirs-db");
    sh(
        &theirs,
        &format!("bsdtar -xf {}/{PAC_REPO}.files.tar.gz", ref_dir.display()),
    );
    let listing = |d: &Path| -> BTreeMap<String, (String, String)> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    (
                        fs::read_to_string(p.join("desc")).unwrap(),
                        fs::read_to_string(p.join("files")).unwrap(),
                    ),
                )
            })
            .collect()
    };
    let (ours, theirs) = (listing(&unpacked), listing(&theirs));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (k, (od, of)) in &ours {
        let (td, tf) = &theirs[k];
        let sections = |t: &str| -> BTreeMap<String, String> {
            t.split("\n\n")
                .filter(|s| !s.trim().is_empty())
                .filter_map(|s| s.split_once('\n'))
                .map(|(a, b)| (a.to_string(), b.trim_end().to_string()))
                .collect()
        };
        assert_eq!(sections(od), sections(td), "desc of {k}");
        assert_eq!(od, td, "desc of {k}, byte by byte");
        assert_eq!(of, tf, "files of {k}");
    }
    // Our db is the .files without the file lists.
    let db_only = site.w.scratch("ours-db-only");
    sh(
        &db_only,
        &format!(
            "bsdtar -xf {}/{PAC_REPO}.db && find . -type f | sort > ../list",
            pac_dir.display()
        ),
    );
    let list = fs::read_to_string(site.w.work.join("list")).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(list.lines().all(|l| l.ends_with("/desc")), "{list}");
}

#[test]
fn a_mirror_serves_the_same_metadata_and_clients_install_from_it() {
    let port = free_port();
    let site = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    let _build = publish_all(&site);
    let key = export_repo_key(&site.w.repo, &site.w.work);
    let mirror_repo = Repo::new();
    // The mirror also serves dists/ over HTTP (`--listen`), the other way clients reach it.
    let mport = free_port();
    let mirror_daemon = start_mirror_daemon(
        &mirror_repo,
        &format!("http://127.0.0.1:{port}"),
        &key,
        Some(mport),
    );
    let mirror_mnt = Mount::start(&mirror_repo);
    let names = [
        format!("{APT_DIR}/Packages"),
        format!("{APT_DIR}/Packages.xz"),
        format!("{APT_DIR}/Release"),
        format!("{APT_DIR}/InRelease"),
        format!("{APT_DIR}/Release.gpg"),
        format!("{PAC_DIR}/{PAC_REPO}.db"),
        format!("{PAC_DIR}/{PAC_REPO}.db.sig"),
        format!("{PAC_DIR}/{PAC_REPO}.files"),
        format!("{PAC_DIR}/{PAC_REPO}.files.sig"),
    ];
    wait_for_or(SYNC, || {
        names
            .iter()
            .all(|n| {
                let p = fs::read(site.mnt.path(&format!("dists/{n}"))).ok();
                p.is_some() && p == fs::read(mirror_mnt.path(&format!("dists/{n}"))).ok()
            })
            .then_some(())
    })
    .unwrap_or_else(|| panic!("mirror metadata differs; log:\n{}", mirror_daemon.log()));
    let apt_dir = mirror_mnt.path(&format!("dists/{APT_DIR}"));
    let pac_dir = mirror_mnt.path(&format!("dists/{PAC_DIR}"));
    apt_installs(
        &site.w.scratch("apt-mirror"),
        &format!("file:{}", apt_dir.display()),
        &key,
    );
    pacman_installs(
        &site.w.scratch("pacman-mirror"),
        &format!("file://{}", pac_dir.display()),
        &key,
    );
    // The same over the mirror's HTTP endpoint (its bytes come from the lazy fetch).
    apt_installs(
        &site.w.scratch("apt-mirror-http"),
        &format!("http://127.0.0.1:{mport}/dists/{APT_DIR}"),
        &key,
    );
    pacman_installs(
        &site.w.scratch("pacman-mirror-http"),
        &format!("http://127.0.0.1:{mport}/dists/{PAC_DIR}"),
        &key,
    );
    // Taking a package offline changes the metadata on both in one step.
    let before = fs::read(site.mnt.path(&format!("dists/{APT_DIR}/Packages"))).unwrap();
    let old_release =
        fs::read_to_string(site.mnt.path(&format!("dists/{APT_DIR}/Release"))).unwrap();
    let d = site.w.scratch("archive");
    let file = "retire-app.directive.asc";
    site.w.gpg.clearsign(
        ALICE,
        &format!("version: 1.2\ndirectory: {APT_DIR}\narchive: pmeta-app_1.0-1_all.deb\n"),
        &d.join(file),
        &[],
    );
    site.w.upload("", &[d.join(file)]);
    let packages = site.mnt.path(&format!("dists/{APT_DIR}/Packages"));
    let after = wait_for("Packages to drop the archived .deb", SYNC, || {
        fs::read(&packages).ok().filter(|b| *b != before)
    });
    let text = String::from_utf8_lossy(&after).into_owned();
    assert!(
        !text.contains("pmeta-app") && text.contains("pmeta-lib"),
        "{text}"
    );
    wait_for("the mirror's Packages to follow", SYNC, || {
        (fs::read(mirror_mnt.path(&format!("dists/{APT_DIR}/Packages"))).ok()
            == Some(after.clone()))
        .then_some(())
    });
    // A client that read the old Release still finds the Packages.xz it names, by hash, on
    // both (Acquire-By-Hash), and the new Release's too.
    let new_release =
        fs::read_to_string(site.mnt.path(&format!("dists/{APT_DIR}/Release"))).unwrap();
    assert!(
        new_release.contains("Acquire-By-Hash: yes"),
        "{new_release}"
    );
    for release in [&old_release, &new_release] {
        let sha = xz_sha256(release);
        for mnt in [&site.mnt, &mirror_mnt] {
            let p = mnt.path(&format!("dists/{APT_DIR}/by-hash/SHA256/{sha}"));
            let got = wait_for("the by-hash Packages.xz", SYNC, || fs::read(&p).ok());
            assert_eq!(sha256_hex(&got), sha, "{}", p.display());
        }
    }
    apt_installs_lib(
        &site.w.scratch("apt-mirror-after"),
        &format!("file:{}", apt_dir.display()),
        &key,
    );
    drop(mirror_mnt);
    drop(mirror_daemon);
}

/// The SHA256 of Packages.xz that a Release lists.
fn xz_sha256(release: &str) -> String {
    release
        .split("SHA256:")
        .nth(1)
        .and_then(|s| {
            s.lines()
                .find(|l| l.trim_end().ends_with(" Packages.xz"))
                .and_then(|l| l.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no Packages.xz in {release}"))
        .to_string()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(b))
}

/// After pmeta-app went offline: update, and install pmeta-lib alone.
fn apt_installs_lib(scratch: &Path, url: &str, key: &Path) {
    let apt = AptRoot::new(scratch, url, Some(key));
    let o = apt.apt_get(&["update"]);
    assert!(o.status.success(), "apt-get update: {}", out_text(&o));
    assert!(!apt
        .apt_get(&["install", "-y", "pmeta-app"])
        .status
        .success());
    let o = apt.apt_get(&["install", "-y", "pmeta-lib"]);
    assert!(o.status.success(), "apt-get install: {}", out_text(&o));
    assert!(apt.root.join("usr/share/pmeta-lib/pmeta-lib.txt").is_file());
}

#[test]
fn directories_published_before_pkgmeta_get_their_metadata_at_start() {
    let port = free_port();
    let mut site = Site::with_config(&format!("[distribution]\nlisten = \"127.0.0.1:{port}\"\n"));
    let _build = publish_all(&site);
    // A mirror that synced the old metadata must receive the backfilled one as a delta.
    let key = export_repo_key(&site.w.repo, &site.w.work);
    let mirror_repo = Repo::new();
    let mirror_daemon = start_mirror_daemon(
        &mirror_repo,
        &format!("http://127.0.0.1:{port}"),
        &key,
        None,
    );
    let mirror_mnt = Mount::start(&mirror_repo);
    let same_on_mirror = |rel: &str| {
        let p = fs::read(site.mnt.path(&format!("dists/{rel}"))).ok();
        (p.is_some() && p == fs::read(mirror_mnt.path(&format!("dists/{rel}"))).ok()).then_some(())
    };
    let inrelease = format!("{APT_DIR}/InRelease");
    wait_for_or(SYNC, || same_on_mirror(&inrelease))
        .unwrap_or_else(|| panic!("mirror did not sync; log:\n{}", mirror_daemon.log()));
    let packages = site.mnt.path(&format!("dists/{APT_DIR}/Packages"));
    let db = site.mnt.path(&format!("dists/{PAC_DIR}/{PAC_REPO}.db"));
    let (apt_before, db_before) = (fs::read(&packages).unwrap(), fs::read(&db).unwrap());
    site.daemon.terminate();
    // A catalog as an older repofsd left it: the same packages, no metadata, no signatures.
    forget_dist_meta(&site.w.repo);
    wait_for("the mount to drop the metadata", SYNC, || {
        (!packages.exists()).then_some(())
    });
    site.daemon = Daemon::start(&site.w.repo, &[]);
    let apt_after = wait_for("Packages to come back", SYNC, || fs::read(&packages).ok());
    // Rendered from the same catalog rows: the same bytes.
    assert_eq!(apt_after, apt_before);
    // The packages are signed again (pacman checks them against the key when it installs).
    let db_after = wait_for("the pacman db to come back", SYNC, || fs::read(&db).ok());
    assert_ne!(db_after, db_before, "a new generation's mtime");
    let o = Command::new("bsdtar")
        .arg("-xOf")
        .arg(&db)
        .output()
        .unwrap();
    let descs = String::from_utf8_lossy(&o.stdout);
    assert_eq!(descs.matches("%PGPSIG%").count(), 2, "{descs}");
    for rel in [inrelease, format!("{PAC_DIR}/{PAC_REPO}.db")] {
        wait_for_or(SYNC, || same_on_mirror(&rel)).unwrap_or_else(|| {
            panic!(
                "mirror lacks the backfilled {rel}; log:\n{}",
                mirror_daemon.log()
            )
        });
    }
    drop(mirror_mnt);
    drop(mirror_daemon);
    apt_installs(
        &site.w.scratch("apt-backfill"),
        &format!(
            "file:{}",
            site.mnt.path(&format!("dists/{APT_DIR}")).display()
        ),
        &key,
    );
    pacman_installs(
        &site.w.scratch("pacman-backfill"),
        &format!(
            "file://{}",
            site.mnt.path(&format!("dists/{PAC_DIR}")).display()
        ),
        &key,
    );
}
