//! The real-world corpus: packages made by each ecosystem's own tools (`scripts/corpus` makes or
//! downloads them into a cache dir), published through the repository with real gpg signatures,
//! then checked through a real mount against each ecosystem's own reading of the package:
//! name and version as its tool says, and the `pkgs/NAME/VERSION/` tree entry by entry (type,
//! mode, size, link target, bytes) against its own unpacker. Hand-crafted tar headers check the
//! numeric fields against GNU tar, and corrupt ones must be rejected with the repository
//! byte-identical. Each case is judged on its own; the test prints a table of every case and
//! fails if any failed, so one run shows everything that remains.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{keys::*, mount::*, repo::*};

/// How the ecosystem names and unpacks a package.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Deb,
    Crate,
    Npm,
    Sdist,
    Wheel,
    Arch,
    /// GNU-style `NAME-VERSION.tar.*` (or `.zip`, `.jar`): name and version from the file name.
    Release,
    /// A hand-crafted tar: as Release, and owners and mtimes must read as GNU tar reads them.
    Edge,
}

struct Case {
    /// The corpus subdirectory, also the repository directory it is published into.
    dir: &'static str,
    file: PathBuf,
    kind: Kind,
}

impl Case {
    fn filename(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

const DIRS: &[(&str, Kind)] = &[
    ("deb", Kind::Deb),
    ("crates", Kind::Crate),
    ("npm", Kind::Npm),
    ("pypi", Kind::Sdist), // .whl files are told apart below
    ("arch", Kind::Arch),
    ("tar", Kind::Release),
    ("edge", Kind::Edge),
];

/// Makes (or finds cached) the corpus; a failure here fails the test, never skips it.
fn corpus() -> PathBuf {
    let dir = std::env::var_os("REPOFS_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/repofs-corpus")
        });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/corpus");
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .expect("run scripts/corpus");
    assert!(
        out.status.success(),
        "scripts/corpus failed (scripts/test installs what it needs):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn cases(corpus: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    for &(dir, kind) in DIRS {
        let mut files: Vec<PathBuf> = fs::read_dir(corpus.join(dir))
            .unwrap_or_else(|e| panic!("corpus dir {dir}: {e}"))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus dir {dir} is empty");
        for file in files {
            let kind = if file.extension().is_some_and(|e| e == "whl") {
                Kind::Wheel
            } else {
                kind
            };
            cases.push(Case { dir, file, kind });
        }
    }
    cases
}

/// Runs a tool, returning stdout or a one-line reason.
fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn text(b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|_| "tool output is not UTF-8".to_string())
}

/// `Name:`/`Version:` from RFC 822 style metadata (PKG-INFO, METADATA): header lines only.
fn rfc822(s: &str) -> Result<(String, String), String> {
    let field = |k: &str| {
        s.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .ok_or_else(|| format!("metadata has no {k}"))
    };
    Ok((field("Name:")?, field("Version:")?))
}

/// GNU style: the version starts after the last '-' that a digit follows.
fn from_filename(file: &str) -> Result<(String, String), String> {
    let stem = [
        ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tar.lz", ".tar", ".zip", ".jar",
    ]
    .iter()
    .find_map(|e| file.strip_suffix(e))
    .ok_or_else(|| format!("{file}: not a release archive name"))?;
    let i = stem
        .char_indices()
        .rev()
        .find(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i)
        .ok_or_else(|| format!("{file}: no version in the name"))?;
    Ok((stem[..i].to_string(), stem[i + 1..].to_string()))
}

/// Name and version as the ecosystem's own tool (or its metadata file, as written) says.
fn expected_meta(c: &Case) -> Result<(String, String), String> {
    let f = &c.file;
    match c.kind {
        Kind::Deb => {
            let out = text(run(Command::new("dpkg-deb")
                .arg("-f")
                .arg(f)
                .args(["Package", "Version"]))?)?;
            let get = |k: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                    .ok_or_else(|| format!("dpkg-deb -f: no {k}"))
            };
            Ok((get("Package:")?, get("Version:")?))
        }
        Kind::Crate => {
            let toml_text = text(run(Command::new("tar").args(["-xzOf"]).arg(f).args([
                "--wildcards",
                "--no-wildcards-match-slash",
                "*/Cargo.toml",
            ]))?)?;
            let t: toml::Table = toml_text.parse().map_err(|e| format!("Cargo.toml: {e}"))?;
            let get = |k: &str| {
                t.get("package")
                    .and_then(|p| p.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("Cargo.toml has no package.{k}"))
            };
            Ok((get("name")?, get("version")?))
        }
        Kind::Npm => {
            let json = run(Command::new("tar")
                .arg("-xzOf")
                .arg(f)
                .arg("package/package.json"))?;
            let v: Value =
                serde_json::from_slice(&json).map_err(|e| format!("package.json: {e}"))?;
            let get = |k: &str| {
                v[k].as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("package.json has no {k}"))
            };
            Ok((get("name")?, get("version")?))
        }
        Kind::Sdist => rfc822(&text(run(Command::new("tar")
            .arg("-xzOf")
            .arg(f)
            .args(["--wildcards", "--no-wildcards-match-slash", "*/PKG-INFO"]))?)?),
        Kind::Wheel => rfc822(&text(run(Command::new("unzip")
            .arg("-p")
            .arg(f)
            .arg("*.dist-info/METADATA"))?)?),
        Kind::Arch => {
            let out = text(run(Command::new("bsdtar")
                .arg("-xOf")
                .arg(f)
                .arg(".PKGINFO"))?)?;
            let get = |k: &str| {
                out.lines()
                    .find_map(|l| {
                        let (key, v) = l.split_once('=')?;
                        (key.trim() == k).then(|| v.trim().to_string())
                    })
                    .ok_or_else(|| format!(".PKGINFO has no {k}"))
            };
            Ok((get("pkgname")?, get("pkgver")?))
        }
        Kind::Release | Kind::Edge => from_filename(&c.filename()),
    }
}

/// Unpacks the package with the ecosystem's own unpacker into `dest`.
fn unpack(c: &Case, dest: &Path) -> Result<(), String> {
    fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let f = &c.file;
    let is_zip =
        c.kind == Kind::Wheel || [".zip", ".jar"].iter().any(|e| c.filename().ends_with(e));
    let mut cmd = match c.kind {
        Kind::Deb => {
            let mut cmd = Command::new("dpkg-deb");
            cmd.arg("-x").arg(f).arg(dest);
            cmd
        }
        Kind::Arch => {
            let mut cmd = Command::new("bsdtar");
            cmd.arg("-xpf").arg(f).arg("-C").arg(dest);
            cmd
        }
        _ if is_zip => {
            let mut cmd = Command::new("unzip");
            cmd.arg("-q").arg(f).arg("-d").arg(dest);
            cmd
        }
        // GNU tar as root keeps modes and (numeric) owners; it detects the compression itself.
        _ => {
            let mut cmd = Command::new("tar");
            cmd.arg("--numeric-owner")
                .arg("-xf")
                .arg(f)
                .arg("-C")
                .arg(dest);
            cmd
        }
    };
    run(&mut cmd).map(drop)
}

#[derive(Debug, PartialEq)]
struct Node {
    /// 'd', 'f', 'l' or '?' for anything else.
    kind: char,
    mode: u32,
    size: u64,
    target: Option<PathBuf>,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Every entry below `root` (relative path → what lstat says), not following symlinks.
fn walk(root: &Path) -> Result<BTreeMap<PathBuf, Node>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).map_err(|e| format!("readdir {}: {e}", dir.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("readdir {}: {e}", dir.display()))?;
            let path = rel.join(e.file_name());
            let full = root.join(&path);
            let m = fs::symlink_metadata(&full)
                .map_err(|e| format!("lstat {}: {e}", full.display()))?;
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(path.clone());
                'd'
            } else if ft.is_file() {
                'f'
            } else if ft.is_symlink() {
                'l'
            } else {
                '?'
            };
            let target = if kind == 'l' {
                Some(
                    fs::read_link(&full)
                        .map_err(|e| format!("readlink {}: {e}", full.display()))?,
                )
            } else {
                None
            };
            out.insert(
                path,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    size: if kind == 'f' { m.len() } else { 0 },
                    target,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: m.mtime(),
                },
            );
        }
    }
    Ok(out)
}

/// Compares the mounted tree with the reference unpacking, entry by entry; with `owners`, also
/// uid, gid and mtime of everything but directories (which unpackers create as they go).
fn compare_trees(mounted: &Path, reference: &Path, owners: bool) -> Result<usize, String> {
    let got = walk(mounted)?;
    let want = walk(reference)?;
    let mut diffs = Vec::new();
    for p in want.keys().filter(|p| !got.contains_key(*p)) {
        diffs.push(format!("{}: missing from the mount", p.display()));
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("{}: not in the unpacked package", p.display()));
    }
    for (p, w) in &want {
        let Some(g) = got.get(p) else { continue };
        let d = p.display();
        if g.kind != w.kind {
            diffs.push(format!("{d}: type {} (unpacker: {})", g.kind, w.kind));
            continue;
        }
        if w.kind != 'l' && g.mode != w.mode {
            diffs.push(format!("{d}: mode {:o} (unpacker: {:o})", g.mode, w.mode));
        }
        if g.size != w.size {
            diffs.push(format!("{d}: size {} (unpacker: {})", g.size, w.size));
        }
        if g.target != w.target {
            diffs.push(format!(
                "{d}: link target {:?} (unpacker: {:?})",
                g.target, w.target
            ));
        }
        if owners && w.kind != 'd' {
            if (g.uid, g.gid) != (w.uid, w.gid) {
                diffs.push(format!(
                    "{d}: owner {}:{} (GNU tar: {}:{})",
                    g.uid, g.gid, w.uid, w.gid
                ));
            }
            if w.kind != 'l' && g.mtime != w.mtime {
                diffs.push(format!("{d}: mtime {} (GNU tar: {})", g.mtime, w.mtime));
            }
        }
        if w.kind == 'f' && g.size == w.size {
            match (fs::read(mounted.join(p)), fs::read(reference.join(p))) {
                (Ok(a), Ok(b)) if a == b => {}
                (Ok(_), Ok(_)) => diffs.push(format!("{d}: bytes differ")),
                (Err(e), _) => diffs.push(format!("{d}: read through the mount: {e}")),
                (_, Err(e)) => diffs.push(format!("{d}: read unpacked: {e}")),
            }
        }
    }
    if diffs.is_empty() {
        return Ok(want.len());
    }
    let n = diffs.len();
    diffs.truncate(4);
    Err(format!(
        "{n} differences from the unpacker: {}",
        diffs.join("; ")
    ))
}

/// Why `file` is not published, from `repofs status`.
fn why_not(repo: &Repo, file: &str) -> String {
    let status = repo.status();
    let hit = status.iter().find(|e| {
        e["files"].as_array().is_some_and(|fs| {
            fs.iter()
                .any(|f| f.as_str().is_some_and(|f| f.ends_with(file)))
        })
    });
    match hit {
        Some(e) => format!(
            "{}: {} — {}",
            e["state"].as_str().unwrap_or("?"),
            e["reason"].as_str().unwrap_or("-"),
            e["message"].as_str().unwrap_or("")
        ),
        None => "not published, and no verdict".into(),
    }
}

fn check(
    c: &Case,
    repo: &Repo,
    list: &[Value],
    mnt: &Mount,
    scratch: &Path,
) -> Result<String, String> {
    let file = c.filename();
    let (name, version) = expected_meta(c).map_err(|e| format!("reading with its tool: {e}"))?;
    let Some(entry) = list
        .iter()
        .find(|f| f["directory"] == c.dir && f["filename"] == file.as_str())
    else {
        return Err(why_not(repo, &file));
    };
    if entry["name"] != name.as_str() || entry["version"] != version.as_str() {
        return Err(format!(
            "catalog says {} {}, the tool says {name} {version}",
            entry["name"], entry["version"]
        ));
    }
    let tree = mnt.path(&format!("pkgs/{name}/{version}"));
    if !tree.is_dir() {
        return Err(format!("pkgs/{name}/{version} is not in the mount"));
    }
    let reference = scratch.join(&file);
    unpack(c, &reference).map_err(|e| format!("unpacking with its tool: {e}"))?;
    let n = compare_trees(&tree, &reference, c.kind == Kind::Edge)?;
    Ok(format!("{name} {version}, {n} entries"))
}

/// A corrupt archive: rejected as bad-archive, the repository unchanged, the files kept.
fn check_rejected(w: &Uploader, file: &Path) -> Result<String, String> {
    let before = w.repo.snapshot();
    w.upload("reject", file);
    w.repo.once();
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let v = w
        .repo
        .status()
        .into_iter()
        .find(|e| e["state"] != "pending")
        .ok_or("no verdict")?;
    let files = v["files"].to_string();
    if !files.contains(name.as_ref()) {
        return Err(format!("newest verdict is about {files}, not {name}"));
    }
    if v["state"] != "rejected" || v["reason"] != "bad-archive" {
        return Err(format!(
            "{}: {} (want rejected: bad-archive)",
            v["state"], v["reason"]
        ));
    }
    if w.repo.snapshot() != before {
        return Err("the rejection changed the published repository".into());
    }
    let q = PathBuf::from(v["quarantine"].as_str().unwrap_or(""));
    if !q.join(name.as_ref()).is_file() {
        return Err(format!("{name} not kept in quarantine {}", q.display()));
    }
    Ok(format!(
        "bad-archive: {}",
        v["message"].as_str().unwrap_or("")
    ))
}

/// A repository with one gpg key allowed in every corpus directory.
struct Uploader {
    repo: Repo,
    gpg: Gpg,
    sigs: PathBuf,
}

const UPLOADER: &str = "corpus@example.org";

impl Uploader {
    fn new() -> Uploader {
        let repo = Repo::new();
        let gpg = Gpg::new();
        let sigs = repo.dir.path().join("sigs");
        fs::create_dir_all(&sigs).expect("sigs dir");
        gpg.gen_key(&format!("Corpus <{UPLOADER}>"), "ed25519", "sign", "1y");
        let key = gpg.export(UPLOADER, &sigs);
        for (dir, _) in DIRS.iter().chain(&[("reject", Kind::Edge)]) {
            repo.add_key(dir, &key);
        }
        Uploader { repo, gpg, sigs }
    }

    /// A pair (FILE, FILE.sig made by gpg -b) into the spool directory `dir`.
    fn upload(&self, dir: &str, file: &Path) {
        let copy = self.sigs.join(file.file_name().expect("file name"));
        fs::copy(file, &copy).expect("copy");
        let sig = self.gpg.sign(UPLOADER, &copy, false, &[]);
        upload(&self.repo, dir, &[file, &sig]);
    }
}

#[test]
fn corpus_packages_publish_and_unpack_like_their_own_tools() {
    let corpus = corpus();
    let cases = cases(&corpus);
    let w = Uploader::new();
    for c in &cases {
        w.upload(c.dir, &c.file);
    }
    w.repo.once();
    let mnt = Mount::start(&w.repo);
    let list = w.repo.list();
    let scratch = w.repo.dir.path().join("unpacked");
    let mut rows: Vec<(String, Result<String, String>)> = cases
        .iter()
        .map(|c| {
            let label = format!("{}/{}", c.dir, c.filename());
            (label, check(c, &w.repo, &list, &mnt, &scratch))
        })
        .collect();
    drop(mnt);
    let mut rejects: Vec<PathBuf> = fs::read_dir(corpus.join("reject"))
        .expect("corpus reject dir")
        .map(|e| e.expect("entry").path())
        .collect();
    rejects.sort();
    assert!(!rejects.is_empty(), "no reject cases in the corpus");
    for f in &rejects {
        let label = format!(
            "reject/{}",
            f.file_name().unwrap_or_default().to_string_lossy()
        );
        rows.push((label, check_rejected(&w, f)));
    }
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut table = String::new();
    let failed = rows.iter().filter(|(_, r)| r.is_err()).count();
    for (label, r) in &rows {
        let (mark, why) = match r {
            Ok(s) => ("ok  ", s),
            Err(s) => ("FAIL", s),
        };
        table.push_str(&format!("{mark} {label:width$}  {why}\n"));
    }
    eprintln!("corpus ({} cases, {failed} failed):\n{table}", rows.len());
    assert_eq!(
        failed,
        0,
        "{failed} of {} corpus cases failed (table above)",
        rows.len()
    );
}
