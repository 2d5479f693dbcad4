//! Packages made by each ecosystem's own tools: tarballs by `tar`, pacman packages by
//! `makepkg`, npm tarballs by `npm pack`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::process::{run_bounded, sh, test_user};

/// A small tar.gz with a top directory, a file and a symlink, built by the real `tar`.
pub fn make_tarball(dir: &Path, name: &str, version: &str) -> PathBuf {
    make_tarball_with(dir, name, version, None)
}

/// Like `make_tarball`, plus a file `EXTRA` with `extra` in it: same name, other bytes.
pub fn make_tarball_with(dir: &Path, name: &str, version: &str, extra: Option<&str>) -> PathBuf {
    let top = format!("{name}-{version}");
    let src = dir.join("src").join(&top);
    fs::create_dir_all(src.join("doc")).expect("mkdir");
    fs::write(src.join("README"), format!("{name} {version}\n")).expect("write");
    fs::write(src.join("doc/manual.txt"), "read me\n".repeat(100)).expect("write");
    std::os::unix::fs::symlink("README", src.join("README.link")).expect("symlink");
    if let Some(text) = extra {
        fs::write(src.join("EXTRA"), text).expect("write");
    }
    let out = dir.join(format!("{top}.tar.gz"));
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir.join("src"))
        .arg("-czf")
        .arg(&out)
        .arg(&top)
        .status()
        .expect("tar");
    assert!(st.success());
    out
}

/// The unprivileged user makepkg runs as (it refuses root).
pub const MAKEPKG_USER: &str = "repofs-makepkg";

/// What a PKGBUILD says beyond name and version: extra lines (`depends=`, `provides=`, ...),
/// the body of `package()`, and an optional `install=` scriptlet file's text.
#[derive(Default)]
pub struct PkgBuild<'a> {
    pub lines: &'a str,
    pub package: &'a str,
    pub install: Option<&'a str>,
}

/// makepkg of `NAME-VERSION-1-any.pkg.tar.zst` under `work/arch/` (`work` must be enterable
/// by other users). An empty `package` body installs one empty file.
pub fn makepkg_with(work: &Path, name: &str, version: &str, b: &PkgBuild) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    test_user(MAKEPKG_USER);
    let d = work.join("arch").join(format!("{name}-{version}"));
    fs::create_dir_all(&d).expect("mkdir");
    fs::set_permissions(work.join("arch"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let body = if b.package.is_empty() {
        format!("install -Dm644 /dev/null \"$pkgdir/usr/share/{name}/x\"")
    } else {
        b.package.to_string()
    };
    let mut lines = b.lines.to_string();
    if let Some(text) = b.install {
        fs::write(d.join(format!("{name}.install")), text).expect("install file");
        lines += &format!("\ninstall={name}.install");
    }
    fs::write(
        d.join("PKGBUILD"),
        format!(
            "pkgname={name}\npkgver={version}\npkgrel=1\npkgdesc='repofs test'\narch=(any)\n\
             license=(MIT)\noptions=(!strip !debug)\n{lines}\npackage() {{\n{body}\n}}\n"
        ),
    )
    .expect("PKGBUILD");
    run_bounded(Command::new("chown").arg("-R").arg(MAKEPKG_USER).arg(&d));
    run_bounded(
        Command::new("runuser")
            .args(["-u", MAKEPKG_USER, "--", "env"])
            .arg(format!("HOME={}", d.display()))
            .arg("PKGEXT=.pkg.tar.zst")
            .arg("SOURCE_DATE_EPOCH=1700000000")
            .arg(format!("PKGDEST={}", d.display()))
            .args(["makepkg", "--nodeps", "--noconfirm", "--noprogressbar"])
            .current_dir(&d),
    );
    d.join(format!("{name}-{version}-1-any.pkg.tar.zst"))
}

/// makepkg of a package that holds one empty file and `lines` in its PKGBUILD.
pub fn makepkg(work: &Path, name: &str, version: &str, lines: &str) -> PathBuf {
    makepkg_with(
        work,
        name,
        version,
        &PkgBuild {
            lines,
            ..Default::default()
        },
    )
}

/// `npm pack` of a directory holding `manifest` as package.json and `files` (path, text).
pub fn npm_pack_with(work: &Path, manifest: &Value, files: &[(&str, &str)]) -> PathBuf {
    let name = manifest["name"].as_str().expect("name");
    let version = manifest["version"].as_str().expect("version");
    let d = work.join("npm").join(format!("{name}-{version}"));
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("package.json"), manifest.to_string()).expect("package.json");
    for (p, text) in files {
        let full = d.join(p);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(full, text).expect("file");
    }
    let out = run_bounded(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(work)
            .current_dir(&d)
            .env("npm_config_cache", work.join("npm-cache"))
            .env("npm_config_update_notifier", "false"),
    );
    work.join(out.trim())
}

/// What every install scriptlet appends: its name, then `chroot=yes` if it ran inside the root.
const LOG: &str = r#"[ -f /repofs-test-marker ] && c=yes || c=no; echo "$0 $c" >> /install.log"#;

pub fn log_line(what: &str) -> String {
    LOG.replace("$0", what)
}

/// A pacman package `NAME-VER-x86_64.pkg.tar.zst` with `.PKGINFO`, an `.INSTALL` whose
/// functions log, and `files` (path, content) under the root.
pub fn pacman_pkg(
    dir: &Path,
    name: &str,
    ver: &str,
    files: &[(&str, &str)],
    post_install: &str,
) -> PathBuf {
    pacman_pkg_depending(dir, name, ver, files, post_install, &[])
}

/// The functions an `install=` scriptlet of makepkg may define, in the order pacman knows them.
pub const PACMAN_SCRIPTLET_FUNCTIONS: [&str; 6] = [
    "pre_install",
    "post_install",
    "pre_upgrade",
    "post_upgrade",
    "pre_remove",
    "post_remove",
];

/// `pacman_pkg` with `depend = …` lines in its .PKGINFO.
pub fn pacman_pkg_depending(
    dir: &Path,
    name: &str,
    ver: &str,
    files: &[(&str, &str)],
    post_install: &str,
    depends: &[&str],
) -> PathBuf {
    let d = dir.join(format!("pacman-{name}-{ver}"));
    fs::create_dir_all(&d).unwrap();
    let mut pkginfo = format!("pkgname = {name}\npkgbase = {name}\npkgver = {ver}\narch = x86_64\nbuilddate = 1700000000\n");
    for dep in depends {
        pkginfo += &format!("depend = {dep}\n");
    }
    fs::write(d.join(".PKGINFO"), pkginfo).unwrap();
    let mut install = String::new();
    for f in PACMAN_SCRIPTLET_FUNCTIONS {
        let extra = if f == "post_install" {
            post_install
        } else {
            ""
        };
        install += &format!(
            "{f}() {{\n  {}\n  {extra}\n}}\n",
            log_line(&format!("{name} {f} $1"))
        );
    }
    fs::write(d.join(".INSTALL"), install).unwrap();
    let mut top = vec![".PKGINFO".to_string(), ".INSTALL".to_string()];
    for (p, text) in files {
        let full = d.join(p);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, text).unwrap();
        let t = p.split('/').next().unwrap().to_string();
        if !top.contains(&t) {
            top.push(t);
        }
    }
    let out = dir.join(format!("{name}-{ver}-x86_64.pkg.tar.zst"));
    sh(
        &d,
        &format!("tar --zstd -cf {} {}", out.display(), top.join(" ")),
    );
    out
}
