//! A pacman repository as `repo-add --sign` makes it: `DIR.db` (a gzip tar of `NAME-VER/desc`
//! for the newest version of each package name), `DIR.files` (the same plus
//! `NAME-VER/files`), and binary detached signatures of both by the repository key. Each desc
//! carries `%PGPSIG%`, the repository key's signature of the package (made at publication).
//!
//! Bytes are deterministic: entries sorted by name, ustar headers with the generation's time
//! as mtime, owner 0/0 (`root`), modes 0755/0644, and a gzip header without name or time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::MetaError;
use crate::catalog::{DistPackage, PublishTx};
use crate::version::{self, Scheme};

/// The repository name of `dir`: its last path component (dists/ itself has none).
pub fn repo_name(dir: &str) -> Option<&str> {
    dir.rsplit('/').next().filter(|n| !n.is_empty())
}

fn values(m: &Map<String, Value>, k: &str) -> Vec<String> {
    match m.get(k) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// One package's `desc`, in repo-add's section order; empty sections are left out.
pub fn desc(p: &DistPackage) -> String {
    let m: Map<String, Value> = serde_json::from_str(&p.metadata).unwrap_or_default();
    let one = |k: &str| values(&m, k).into_iter().next().unwrap_or_default();
    let sig = p
        .repo_sig
        .as_deref()
        .map(|s| base64::engine::general_purpose::STANDARD.encode(s))
        .unwrap_or_default();
    let sections: Vec<(&str, Vec<String>)> = vec![
        ("FILENAME", vec![p.file.filename.clone()]),
        ("NAME", vec![one("pkgname")]),
        ("BASE", vec![one("pkgbase")]),
        ("VERSION", vec![one("pkgver")]),
        ("DESC", vec![one("pkgdesc")]),
        ("GROUPS", values(&m, "group")),
        ("CSIZE", vec![p.file.size.to_string()]),
        ("ISIZE", vec![one("size")]),
        ("MD5SUM", vec![p.file.md5.clone()]),
        ("SHA256SUM", vec![p.file.sha256.clone()]),
        ("PGPSIG", vec![sig]),
        ("URL", vec![one("url")]),
        ("LICENSE", values(&m, "license")),
        ("ARCH", vec![one("arch")]),
        ("BUILDDATE", vec![one("builddate")]),
        ("PACKAGER", vec![one("packager")]),
        ("REPLACES", values(&m, "replaces")),
        ("CONFLICTS", values(&m, "conflict")),
        ("PROVIDES", values(&m, "provides")),
        ("DEPENDS", values(&m, "depend")),
        ("OPTDEPENDS", values(&m, "optdepend")),
        ("MAKEDEPENDS", values(&m, "makedepend")),
        ("CHECKDEPENDS", values(&m, "checkdepend")),
    ];
    let mut out = String::new();
    for (k, v) in sections {
        let v: Vec<String> = v.into_iter().filter(|s| !s.is_empty()).collect();
        if v.is_empty() {
            continue;
        }
        let _ = writeln!(out, "%{k}%");
        for s in v {
            let _ = writeln!(out, "{s}");
        }
        out.push('\n');
    }
    out
}

/// `%FILES%`: every path but the metadata files at the root, directories with a slash,
/// sorted bytewise (repo-add: `bsdtar --exclude='^.*' -tf PKG | LC_ALL=C sort -u`).
pub fn files(paths: &[(String, bool)]) -> String {
    let mut list: Vec<String> = paths
        .iter()
        .filter(|(p, _)| !p.starts_with('.'))
        .map(|(p, dir)| if *dir { format!("{p}/") } else { p.clone() })
        .collect();
    list.sort();
    list.dedup();
    let mut out = String::from("%FILES%\n");
    for p in list {
        out.push_str(&p);
        out.push('\n');
    }
    out
}

/// `DIR.db`, `DIR.files` and their signatures.
pub fn render(
    tx: &PublishTx<'_>,
    name: &str,
    pkgs: &[DistPackage],
    time: i64,
    repo_key: &Path,
) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
    let (db, full) = databases(tx, pkgs, time)?;
    let sign = |b: &[u8]| {
        crate::keys::sign_detached_with_repo_key(repo_key, &mut &b[..], false)
            .map_err(MetaError::Sign)
    };
    Ok(vec![
        (format!("{name}.db.sig"), sign(&db)?),
        (format!("{name}.files.sig"), sign(&full)?),
        (format!("{name}.db"), db),
        (format!("{name}.files"), full),
    ])
}

/// `DIR.db` and `DIR.files`: the files of the repository that need no key (a mirror makes
/// them itself, `super::unsigned`).
pub fn databases(
    tx: &PublishTx<'_>,
    pkgs: &[DistPackage],
    time: i64,
) -> Result<(Vec<u8>, Vec<u8>), MetaError> {
    // repo-add keeps one entry per package name: the newest version wins (then the newest
    // publication).
    let mut newest: BTreeMap<String, (String, &DistPackage)> = BTreeMap::new();
    for p in pkgs {
        let m: Map<String, Value> = serde_json::from_str(&p.metadata).unwrap_or_default();
        let (Some(n), Some(v)) = (
            values(&m, "pkgname").into_iter().next(),
            values(&m, "pkgver").into_iter().next(),
        ) else {
            continue;
        };
        match newest.get(&n) {
            Some((have, q))
                if version::compare(Scheme::Alpm, have, &v)
                    .then(q.file.id.cmp(&p.file.id))
                    .is_ge() => {}
            _ => {
                newest.insert(n, (v, p));
            }
        }
    }
    let mut db = Tarball::new(time);
    let mut full = Tarball::new(time);
    for (n, (v, p)) in &newest {
        let dir = format!("{n}-{v}");
        let d = desc(p);
        db.dir(&dir)?;
        db.file(&format!("{dir}/desc"), d.as_bytes())?;
        full.dir(&dir)?;
        full.file(&format!("{dir}/desc"), d.as_bytes())?;
        full.file(
            &format!("{dir}/files"),
            files(&tx.package_paths(p.file.id)?).as_bytes(),
        )?;
    }
    Ok((db.finish()?, full.finish()?))
}

/// A gzip tar with fixed headers.
struct Tarball {
    tar: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    time: i64,
}

impl Tarball {
    fn new(time: i64) -> Tarball {
        let gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        Tarball { tar, time }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> std::io::Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.time.max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        Ok(h)
    }

    fn dir(&mut self, path: &str) -> std::io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0o755, 0)?;
        self.tar
            .append_data(&mut h, format!("{path}/"), std::io::empty())
    }

    fn file(&mut self, path: &str, data: &[u8]) -> std::io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, 0o644, data.len() as u64)?;
        self.tar.append_data(&mut h, path, data)
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        let mut gz = self.tar.into_inner()?;
        gz.flush()?;
        gz.finish()
    }
}
