//! `repofs deps` over packages made by each ecosystem's own tools (dpkg-deb, makepkg,
//! npm pack, tar for distpac and tpm), published through repofsd, and compared with the
//! ecosystems' own resolvers where they can answer the same question: `apt-get install
//! --simulate` over a flat apt repository of the same .debs, and `pacman -Sp` over a
//! `repo-add` database of the same packages, each in a private root.

pub mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{clients::*, keys::*, packages::*, process::*, repo::*};
use serde_json::Value;

const UID: &str = "deps@example.org";

/// A repository with one key allowed in `dirs`, and a work dir other users can enter
/// (makepkg runs unprivileged). Everything lives in the repository's temp dir.
struct Fx {
    repo: Repo,
    gpg: Gpg,
    work: PathBuf,
}

impl Fx {
    fn new(dirs: &[&str]) -> Fx {
        let repo = Repo::new();
        let gpg = Gpg::new();
        let work = repo.dir.path().join("work");
        fs::create_dir_all(&work).expect("work");
        for d in [repo.dir.path(), work.as_path()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        gpg.gen_key(&format!("Deps <{UID}>"), "ed25519", "sign", "1y");
        let key = gpg.export(UID, &work);
        for d in dirs {
            repo.add_key(d, &key);
        }
        Fx { repo, gpg, work }
    }

    /// Signs and uploads `files` as pairs into `dir`, runs repofsd, checks they published.
    fn publish(&self, dir: &str, files: &[PathBuf]) {
        for f in files {
            let sig = self.gpg.sign(UID, f, false, &[]);
            upload(&self.repo, dir, &[f, &sig]);
        }
        self.repo.once();
        for f in files {
            let name = f.file_name().expect("name").to_string_lossy();
            assert!(
                self.repo.published(dir, &name).is_some(),
                "{dir}/{name} not published: {:#?}",
                self.repo.status()
            );
        }
    }

    /// `repofs deps --json ARGS`, which must succeed: (name, version) in install order.
    fn closure(&self, args: &[&str]) -> Vec<Value> {
        let mut a = vec!["deps", "--json"];
        a.extend_from_slice(args);
        json_array(&self.repo.repofs(&a))
    }

    /// `repofs deps --json ARGS`, which must fail: (the JSON error, stderr).
    fn fails(&self, args: &[&str]) -> (Value, String) {
        let mut a = vec!["deps", "--json"];
        a.extend_from_slice(args);
        let out = self.repo.repofs_output(&a);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "deps {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        (v, stderr)
    }
}

fn labels(closure: &[Value]) -> Vec<String> {
    closure
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap_or("?"),
                p["version"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn pos(labels: &[String], name: &str) -> usize {
    labels
        .iter()
        .position(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in {labels:?}"))
}

// ---------------------------------------------------------------------------------------------
// Debian

/// `dpkg-deb -b` of a package with `extra` control lines (Depends, Provides, ...).
/// `check: false` builds with --nocheck, for control files dpkg-deb would refuse.
fn deb(work: &Path, name: &str, version: &str, extra: &str, check: bool) -> PathBuf {
    let src = work.join("debsrc").join(format!("{name}_{version}"));
    fs::create_dir_all(src.join("DEBIAN")).expect("mkdir");
    fs::create_dir_all(src.join("usr/share/doc").join(name)).expect("mkdir");
    fs::write(src.join("usr/share/doc").join(name).join("README"), name).expect("write");
    fs::write(
        src.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: T <t@example.org>\n{extra}Description: {name} for repofs deps\n"
        ),
    )
    .expect("control");
    let pool = work.join("pool");
    fs::create_dir_all(&pool).expect("pool");
    let out = pool.join(format!("{name}_{}_all.deb", version.replace(':', "%3a")));
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("--root-owner-group");
    if !check {
        cmd.arg("--nocheck");
    }
    run_bounded(cmd.arg("-b").arg(&src).arg(&out));
    out
}

/// What `apt-get install --simulate REQUESTS` installs from a flat repository of `debs`, in
/// a private apt root: `name version` per `Inst` line.
/// `status`: the dpkg status file of the simulated root (default: nothing installed).
fn apt_simulate(
    work: &Path,
    debs: &[PathBuf],
    requests: &[&str],
    status: Option<&Path>,
) -> Vec<String> {
    let flat = work.join("apt-flat");
    fs::create_dir_all(&flat).expect("flat");
    for d in debs {
        fs::copy(d, flat.join(d.file_name().expect("name"))).expect("copy");
    }
    let packages = run_bounded(
        Command::new("dpkg-scanpackages")
            .arg(".")
            .arg("/dev/null")
            .current_dir(&flat)
            .stderr(std::process::Stdio::null()),
    );
    fs::write(flat.join("Packages"), packages).expect("Packages");
    let release = run_bounded(
        Command::new("apt-ftparchive")
            .arg("release")
            .arg(".")
            .current_dir(&flat),
    );
    fs::write(flat.join("Release"), release).expect("Release");
    let apt = AptRoot::new(
        &work.join("apt-root"),
        &format!("file:{}", flat.display()),
        None,
    );
    if let Some(s) = status {
        fs::copy(s, apt.root.join("var/lib/dpkg/status")).expect("dpkg status");
    }
    let apt = |args: &[&str]| {
        let o = apt.apt_get(args);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "apt-get {args:?}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    apt(&["update"]);
    let mut args = vec!["install", "--simulate"];
    args.extend_from_slice(requests);
    apt(&args)
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| {
            // `Inst base (1.2 localhost [all])`
            let (name, rest) = l.split_once(" (").expect("Inst line");
            format!("{name} {}", rest.split(' ').next().unwrap_or(""))
        })
        .collect()
}

/// Against a root whose dpkg already has packages (this machine's own status database):
/// what is installed meets dependencies and is left out, as apt leaves it; too old an
/// installed version is named in the error.
#[test]
fn dependencies_the_roots_dpkg_meets_are_left_out_as_apt_does() {
    let host = Path::new("/var/lib/dpkg/status");
    let status = fs::read_to_string(host).expect("this machine's dpkg status");
    let libc = status
        .split("\n\n")
        .find(|p| p.starts_with("Package: libc6\n") && p.contains("\nStatus: install ok installed"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("Version: ")))
        .expect("libc6 installed here")
        .to_string();
    let fx = Fx::new(&["deb"]);
    let w = &fx.work;
    let debs = vec![
        deb(
            w,
            "sysapp",
            "1.0",
            "Depends: libc6 (>= 2.17), sysdep\n",
            true,
        ),
        deb(w, "sysdep", "1", "Depends: libc6, base-files\n", true),
    ];
    let toonew = deb(w, "toonew", "1", "Depends: libc6 (>= 999)\n", true);
    fx.publish("deb", &[debs.clone(), vec![toonew]].concat());
    let root = w.join("target-root");
    fs::create_dir_all(root.join("var/lib/dpkg")).expect("root");
    fs::copy(host, root.join("var/lib/dpkg/status")).expect("status");
    let into = root.to_str().expect("utf-8");

    let ours = labels(&fx.closure(&["--into", into, "sysapp"]));
    let apt = apt_simulate(w, &debs, &["sysapp"], Some(host));
    assert_eq!(ours, ["sysdep 1", "sysapp 1.0"]);
    assert_eq!(
        ours.iter().collect::<BTreeSet<_>>(),
        apt.iter().collect::<BTreeSet<_>>(),
        "repofs deps --into vs apt-get --simulate over the same dpkg status"
    );
    // Without the root, libc6 is not in the repository.
    let (v, _) = fx.fails(&["sysapp"]);
    assert_eq!(v["error"], "missing", "{v}");
    // Installed, but older than asked for.
    let (v, stderr) = fx.fails(&["--into", into, "toonew"]);
    assert_eq!(v["error"], "unsatisfiable", "{v}");
    assert!(
        stderr.contains(&format!("available: libc6 {libc} (installed)")),
        "{stderr}"
    );
}

#[test]
fn debian_closure_agrees_with_apt_and_errors_name_the_chain() {
    let fx = Fx::new(&["deb"]);
    let w = &fx.work;
    let apt_set = vec![
        deb(
            w,
            "app",
            "1.0",
            "Pre-Depends: base (>= 1)\nDepends: libfoo (>= 2) | libfoo-compat, mta\n",
            true,
        ),
        deb(w, "libfoo", "1.0", "", true),
        deb(w, "libfoo", "2.1", "Depends: libc-x (>= 2.30)\n", true),
        deb(w, "libfoo-compat", "1", "", true),
        deb(w, "postfix-x", "1", "Provides: mta\nConflicts: mta\n", true),
        deb(w, "base", "1.2", "", true),
        deb(w, "libc-x", "2.29-1", "", true),
        deb(w, "libc-x", "2.36-1", "", true),
    ];
    let more = vec![
        // Needs libfoo << 2: with app, only libfoo-compat + libfoo 1.0 work (backtracking).
        deb(w, "tool", "1", "Depends: libfoo (<< 2)\n", true),
        deb(w, "broken", "1", "Depends: missing-lib (>= 1)\n", true),
        deb(w, "clash", "1", "Depends: app\nConflicts: base\n", true),
        deb(w, "needs-new", "1", "Depends: base (>= 5)\n", true),
        deb(w, "badrel", "1", "Depends: libc-x (>= )\n", false),
    ];
    let all: Vec<PathBuf> = apt_set.iter().chain(&more).cloned().collect();
    fx.publish("deb", &all);

    // The closure and apt's own answer name the same packages at the same versions.
    let closure = fx.closure(&["app"]);
    let ours = labels(&closure);
    let apt = apt_simulate(w, &apt_set, &["app"], None);
    assert_eq!(
        ours.iter().collect::<BTreeSet<_>>(),
        apt.iter().collect::<BTreeSet<_>>(),
        "repofs deps vs apt-get --simulate"
    );
    assert_eq!(ours.len(), 5, "{ours:?}");
    // Install order: each after what it needs.
    for (before, after) in [
        ("base", "app"),
        ("libfoo", "app"),
        ("postfix-x", "app"),
        ("libc-x", "libfoo"),
    ] {
        assert!(
            pos(&ours, before) < pos(&ours, after),
            "{before} before {after}: {ours:?}"
        );
    }
    let app = &closure[pos(&ours, "app")];
    assert_eq!(app["path"], "dists/deb/app_1.0_all.deb");
    assert_eq!(app["ecosystem"], "deb");
    assert_eq!(app["format"], "deb");
    assert_eq!(app["why"]["requested"], "app");
    let libc = &closure[pos(&ours, "libc-x")];
    assert_eq!(libc["version"], "2.36-1");
    assert_eq!(libc["why"]["package"], "libfoo");
    assert_eq!(libc["why"]["requirement"], "libc-x (>= 2.30)");
    // The text form: the same order, one line per package with its file and why.
    let text = fx.repo.repofs(&["deps", "app"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), ours.len(), "{text}");
    for (line, label) in lines.iter().zip(&ours) {
        assert!(
            line.starts_with(&format!("{label}  dists/deb/")),
            "{line} / {label}"
        );
    }
    assert!(
        text.contains("libc-x 2.36-1  dists/deb/libc-x_2.36-1_all.deb  (for libfoo 2.1)"),
        "{text}"
    );
    assert!(
        text.ends_with("app 1.0  dists/deb/app_1.0_all.deb  (requested)\n"),
        "{text}"
    );
    // The lister's own view agrees on the file.
    let listed = fx.repo.published("deb", "app_1.0_all.deb").expect("listed");
    assert_eq!(listed["sha256"], app["sha256"]);

    // Backtracking where the newest libfoo cannot stay (apt gives up on this one).
    let both = labels(&fx.closure(&["app", "tool"]));
    assert!(both.contains(&"libfoo-compat 1".to_string()), "{both:?}");
    assert!(both.contains(&"libfoo 1.0".to_string()), "{both:?}");
    assert!(!both.contains(&"libc-x 2.36-1".to_string()), "{both:?}");
    // Pinned versions.
    assert_eq!(labels(&fx.closure(&["libc-x=2.29-1"])), ["libc-x 2.29-1"]);

    // Every error: code in JSON and on stderr, with the chain.
    for (args, code, message) in [
        (&["broken"][..], "missing", "broken 1 → missing-lib (>= 1): no package missing-lib"),
        (
            &["clash"][..],
            "conflict",
            "conflict: clash 1 → app 1.0 → base (>= 1): base 1.2 is excluded by clash 1 (conflicts with base), which came from clash 1",
        ),
        (
            &["needs-new"][..],
            "unsatisfiable",
            "needs-new 1 → base (>= 5): no version satisfies it (available: base 1.2)",
        ),
        (
            &["badrel"][..],
            "malformed-dependency",
            "badrel 1: malformed dependency \"libc-x (>= )\": a relation without a version",
        ),
        (&["app=9"][..], "unsatisfiable", "app=9: no version satisfies it (available: app 1.0)"),
        (&["nosuch"][..], "missing", "nosuch: no package nosuch"),
        (&["app="][..], "bad-request", "bad request \"app=\": expected NAME=VERSION with one version"),
    ] {
        let (json, stderr) = fx.fails(args);
        assert_eq!(json["error"], code, "{args:?}: {json:#}");
        assert_eq!(json["message"], message, "{args:?}");
        assert_eq!(stderr.trim(), format!("repofs deps: {code}: {message}"), "{args:?}");
    }

    // An archived file is no candidate: publish libc-x 2.40-1, then take it offline.
    let newer = deb(w, "libc-x", "2.40-1", "", true);
    fx.publish("deb", &[newer]);
    assert_eq!(labels(&fx.closure(&["libc-x"])), ["libc-x 2.40-1"]);
    let spool = fx.repo.spool().join("deb");
    directive(
        &fx.gpg,
        UID,
        &spool,
        "offline",
        "version: 1.2\ndirectory: deb\narchive: libc-x_2.40-1_all.deb\n",
    );
    fx.repo.once();
    assert!(
        fx.repo.published("deb", "libc-x_2.40-1_all.deb").is_none(),
        "{:#?}",
        fx.repo.status()
    );
    assert_eq!(labels(&fx.closure(&["libc-x"])), ["libc-x 2.36-1"]);
}

// ---------------------------------------------------------------------------------------------
// Arch

/// What `pacman -Sp` would install for `requests` from a `repo-add` database of `pkgs`, in a
/// private root: `name version` in pacman's order.
fn pacman_print(work: &Path, pkgs: &[PathBuf], requests: &[&str]) -> Vec<String> {
    let repo = work.join("pacman-repo");
    fs::create_dir_all(&repo).expect("repo");
    for p in pkgs {
        fs::copy(p, repo.join(p.file_name().expect("name"))).expect("copy");
    }
    let mut add = Command::new("repo-add");
    add.arg("-q").arg(repo.join("t.db.tar.gz"));
    for p in pkgs {
        add.arg(repo.join(p.file_name().expect("name")));
    }
    run_bounded(&mut add);
    let root = work.join("pacman-root");
    fs::create_dir_all(root.join("db")).expect("root");
    let conf = work.join("pacman.conf");
    fs::write(
        &conf,
        format!(
            "[options]\nArchitecture = auto\nSigLevel = Never\n[t]\nServer = file://{}\n",
            repo.display()
        ),
    )
    .expect("conf");
    let pacman = |args: &[&str]| {
        run_bounded(
            Command::new("pacman")
                .arg("--root")
                .arg(&root)
                .arg("--dbpath")
                .arg(root.join("db"))
                .arg("--cachedir")
                .arg(root.join("cache"))
                .arg("--config")
                .arg(&conf)
                .args(args),
        )
    };
    pacman(&["-Sy", "--noconfirm"]);
    let mut args = vec!["-Sp", "--print-format", "%n %v"];
    args.extend_from_slice(requests);
    pacman(&args).lines().map(str::to_string).collect()
}

#[test]
fn pacman_packages_agree_with_pacman() {
    let fx = Fx::new(&["arch"]);
    let w = &fx.work;
    let pkgs = vec![
        makepkg(w, "arch-app", "1.0", "depends=('shx>=5' 'arch-lib>=2.0')"),
        makepkg(w, "arch-lib", "1.5", ""),
        makepkg(w, "arch-lib", "2.0", ""),
        makepkg(w, "arch-bash", "5.2", "provides=('shx=5.2')"),
        makepkg(w, "arch-dash", "0.5", "provides=('shx')"),
    ];
    let zsh = makepkg(w, "arch-zsh", "5.9", "conflicts=('arch-bash<6')");
    let all: Vec<PathBuf> = pkgs.iter().chain([&zsh]).cloned().collect();
    fx.publish("arch", &all);
    let ours = labels(&fx.closure(&["arch-app"]));
    // arch-lib>=2.0 is met by 2.0-1 (no pkgrel: pacman compares pkgver only); the unversioned
    // `shx` of arch-dash cannot meet shx>=5.
    assert_eq!(
        ours,
        ["arch-bash 5.2-1", "arch-lib 2.0-1", "arch-app 1.0-1"]
    );
    let pacman = pacman_print(w, &pkgs, &["arch-app"]);
    assert_eq!(
        ours.iter().collect::<BTreeSet<_>>(),
        pacman.iter().collect::<BTreeSet<_>>(),
        "repofs deps vs pacman -Sp"
    );
    let (json, _) = fx.fails(&["arch-app", "arch-zsh"]);
    assert_eq!(json["error"], "conflict", "{json:#}");
}

// ---------------------------------------------------------------------------------------------
// npm

/// `npm pack` of a package.json with `deps` as its dependencies.
fn npm_pack(work: &Path, name: &str, version: &str, deps: Value) -> PathBuf {
    let manifest = serde_json::json!({
        "name": name, "version": version, "description": "repofs deps test",
        "license": "MIT", "dependencies": deps,
    });
    npm_pack_with(work, &manifest, &[("index.js", "module.exports = 1;\n")])
}

/// Where npm's own copy of node-semver is (Debian's npm package, or npm's bundled one).
const NODE_SEMVER: &[&str] = &[
    "/usr/share/nodejs/semver",
    "/usr/lib/node_modules/npm/node_modules/semver",
    "/usr/share/nodejs/npm/node_modules/semver",
];

/// node-semver (the copy npm itself runs) on `range`: the highest of `versions` it allows.
fn npm_max_satisfying(module: &str, versions: &[&str], range: &str) -> Option<String> {
    let script = format!(
        "const s = require({}); console.log(s.maxSatisfying({}, {}) || '')",
        serde_json::to_string(module).expect("json"),
        serde_json::to_string(versions).expect("json"),
        serde_json::to_string(range).expect("json")
    );
    let out = Command::new("node").arg("-e").arg(&script).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[test]
fn npm_packages_resolve_ranges_like_node_semver() {
    let fx = Fx::new(&["npm"]);
    let w = &fx.work;
    let j = |v: Value| v;
    let files = vec![
        npm_pack(
            w,
            "web",
            "1.0.0",
            j(serde_json::json!({"left": "^1.2.0", "right": "~2.0.0", "mid": "1.2.3 - 1.4"})),
        ),
        npm_pack(w, "left", "1.2.0", j(serde_json::json!({}))),
        npm_pack(w, "left", "1.3.1", j(serde_json::json!({}))),
        npm_pack(w, "left", "2.0.0", j(serde_json::json!({}))),
        npm_pack(w, "right", "2.0.4", j(serde_json::json!({"left": "1.2.x"}))),
        npm_pack(w, "right", "2.1.0", j(serde_json::json!({}))),
        npm_pack(
            w,
            "mid",
            "1.4.9",
            j(serde_json::json!({"left": ">=1.0.0 <1.3.0 || ^2"})),
        ),
        npm_pack(w, "mid", "1.5.0", j(serde_json::json!({}))),
        npm_pack(
            w,
            "giturl",
            "1.0.0",
            j(serde_json::json!({"x": "git+https://example.invalid/x.git"})),
        ),
    ];
    fx.publish("npm", &files);
    let ours = labels(&fx.closure(&["web"]));
    // left ^1.2.0 → 1.3.1; mid's `>=1.0.0 <1.3.0 || ^2` cannot use 1.3.1 and gets the newest
    // it allows (2.0.0) beside it, as npm nests it; right ~2.0.0 → 2.0.4, whose left 1.2.x
    // gets 1.2.0.
    let set: BTreeSet<&str> = ours.iter().map(String::as_str).collect();
    assert_eq!(
        set,
        BTreeSet::from([
            "web 1.0.0",
            "left 1.3.1",
            "left 2.0.0",
            "left 1.2.0",
            "right 2.0.4",
            "mid 1.4.9"
        ]),
        "{ours:?}"
    );
    assert_eq!(ours.last().map(String::as_str), Some("web 1.0.0"));
    // Each direct range's pick is what npm's own semver module picks from the same versions.
    let versions = |n: &str| -> Vec<&str> {
        match n {
            "left" => vec!["1.2.0", "1.3.1", "2.0.0"],
            "right" => vec!["2.0.4", "2.1.0"],
            _ => vec!["1.4.9", "1.5.0"],
        }
    };
    if let Some(semver) = NODE_SEMVER.iter().find(|p| Path::new(p).exists()) {
        for (dep, range) in [
            ("left", "^1.2.0"),
            ("right", "~2.0.0"),
            ("mid", "1.2.3 - 1.4"),
            ("left", "1.2.x"),
        ] {
            let theirs =
                npm_max_satisfying(semver, &versions(dep), range).expect("node-semver answers");
            assert!(
                set.contains(format!("{dep} {theirs}").as_str()),
                "{dep}@{range}: node-semver picks {theirs}; ours {ours:?}"
            );
        }
    } else {
        eprintln!("SKIPPED the node-semver comparison: npm's semver module not found");
    }
    let (json, stderr) = fx.fails(&["giturl"]);
    assert_eq!(json["error"], "unsupported-dependency", "{json:#}");
    assert!(
        stderr.contains(
            "giturl 1.0.0: unsupported dependency \"x@git+https://example.invalid/x.git\""
        ),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// distpac and tpm

#[test]
fn distpac_and_tpm_manifests() {
    let fx = Fx::new(&["dp", "tpm"]);
    let w = &fx.work;
    let distpac = |name: &str, version: &str, deps: &str| -> PathBuf {
        let d = w.join("dpsrc").join(format!("{name}-{version}"));
        sh(
            w,
            &format!(
                "mkdir -p {d}/assets {d}/scripts && echo a > {d}/assets/a && echo 'exit 0' > {d}/scripts/install.sh
                 printf 'name: {name}\\nversion: {version}\\n{deps}' > {d}/manifest.yaml
                 tar -C {d} -czf {name}-{version}.tar.gz manifest.yaml assets scripts",
                d = d.display()
            ),
        );
        w.join(format!("{name}-{version}.tar.gz"))
    };
    let tpm = |name: &str, version: &str, deps: &str| -> PathBuf {
        let d = w.join("tpmsrc").join(format!("{name}-{version}"));
        sh(
            w,
            &format!(
                "mkdir -p {d}/info {d}/data && echo x > {d}/data/x
                 printf '%s' '{{\"Name\":\"{name}\",\"Version\":\"{version}\",\"Type\":\"Binary\",\"Dependencies\":{deps}}}' > {d}/info/package.json
                 tar -C {d} -czf {name}-{version}.tar.gz info data",
                d = d.display()
            ),
        );
        w.join(format!("{name}-{version}.tar.gz"))
    };
    fx.publish(
        "dp",
        &[
            distpac(
                "site",
                "1.0.0",
                "dependencies:\\n  db: \">=1.2, <2\"\\n  log: \"*\"\\n",
            ),
            distpac("db", "1.1.0", ""),
            distpac("db", "1.4.2", "dependencies:\\n  - log ^0.3\\n"),
            distpac("db", "2.0.0", ""),
            distpac("log", "0.3.7", ""),
            distpac("log", "0.4.0", ""),
            distpac("bad", "1.0.0", "dependencies:\\n  db: \"=>1\"\\n"),
        ],
    );
    fx.publish(
        "tpm",
        &[
            tpm("tool", "3.1", "{\"rt\": \">= 1.10\", \"zlib\": \"\"}"),
            tpm("rt", "1.9", "[]"),
            tpm("rt", "1.10", "[]"),
            tpm("zlib", "1.3", "[]"),
        ],
    );
    // site needs db >=1.2,<2 (1.4.2) and any log; db 1.4.2 needs log ^0.3, so the newest log
    // (0.4.0) must give way to 0.3.7.
    let site = labels(&fx.closure(&["site"]));
    assert_eq!(
        site.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            &"site 1.0.0".into(),
            &"db 1.4.2".into(),
            &"log 0.3.7".into()
        ]),
        "{site:?}"
    );
    assert!(pos(&site, "log") < pos(&site, "db"), "{site:?}");
    let (json, _) = fx.fails(&["bad"]);
    assert_eq!(json["error"], "malformed-dependency", "{json:#}");
    let tool = labels(&fx.closure(&["tool"]));
    assert_eq!(
        tool.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"tool 3.1".into(), &"rt 1.10".into(), &"zlib 1.3".into()]),
        "{tool:?}"
    );
}
