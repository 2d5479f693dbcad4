//! What to install: the packages of a plan that are not already installed as they are, each
//! as the list of paths it will own (`Planned`), and where a package's entries go per format
//! (`dest_of`). Entry lists and hashes come from the catalog; the few things the catalog does
//! not keep (pacman's `backup =`, npm's `bin`) are read through the mount, which `find_mount`
//! finds.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::archive::EntryKind;
use crate::catalog::{Catalog, PackageRow};
use crate::mountinfo;

use super::db::{FileKind, Receipt};
use super::scripts::script_sources;
use super::{InstallError, Result};

/// Finds the mount that shows this repository: a `fuse.repofs` mount (from
/// `/proc/self/mountinfo`) whose `dists/` holds the plan's first published file, at its size,
/// and whose `pkgs/` holds every package of the plan.
pub fn find_mount(cat: &Catalog, plan: &[PackageRow]) -> Result<PathBuf> {
    let want = plan
        .first()
        .map(|p| format!("{}={}", p.name, p.version.as_deref().unwrap_or("")))
        .unwrap_or_default();
    let mounts = mountinfo::read().map_err(|e| InstallError::io(Path::new(mountinfo::PATH), e))?;
    let first = match plan.first() {
        Some(p) => cat.published_file(p.file_id)?,
        None => None,
    };
    for m in mounts.into_iter().filter(|m| m.fs_type == "fuse.repofs") {
        let dir = m.mount_point;
        let dists_ok = first.as_ref().is_none_or(|f| {
            fs::metadata(dir.join("dists").join(&f.directory).join(&f.filename))
                .is_ok_and(|m| m.len() == f.size)
        });
        if dists_ok && plan.iter().all(|p| pkg_dir(&dir, p).is_dir()) {
            return Ok(dir);
        }
    }
    Err(InstallError::NoMount(want))
}

/// `MOUNT/pkgs/NAME/VERSION` (npm scopes are directories already: `@scope/name`).
pub fn pkg_dir(mount: &Path, p: &PackageRow) -> PathBuf {
    mount
        .join("pkgs")
        .join(&p.name)
        .join(p.version.as_deref().unwrap_or(""))
}

const PACMAN_META: &[&str] = &[".PKGINFO", ".INSTALL", ".MTREE", ".BUILDINFO", ".CHANGELOG"];

/// Where entry `path` of a package goes, relative to the root; None for metadata that is not
/// installed. `path` is already normalized (no `./`, no trailing `/`).
pub fn dest_of(p: &PackageRow, path: &str) -> Option<String> {
    let (top, rest) = match path.split_once('/') {
        Some((t, r)) => (t, Some(r)),
        None => (path, None),
    };
    match p.meta_source.as_str() {
        "pkginfo" if rest.is_none() && PACMAN_META.contains(&top) => None,
        "npm" => Some(match rest {
            Some(r) => format!("node_modules/{}/{r}", p.name),
            None => format!("node_modules/{}", p.name),
        }),
        "tpm" => match (top, rest) {
            ("data", Some(r)) => Some(r.to_string()),
            _ => None,
        },
        "distpac" if top == "manifest.yaml" || top == "scripts" => None,
        _ => Some(path.to_string()),
    }
}

pub(super) fn normalize(path: &str) -> Result<String> {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    let p = p.trim_end_matches('/');
    if p.split('/')
        .any(|c| c == ".." || c.is_empty() && !p.is_empty())
    {
        return Err(InstallError::BadPath(path.to_string()));
    }
    Ok(p.split('/')
        .filter(|c| *c != ".")
        .collect::<Vec<_>>()
        .join("/"))
}

/// One path a package will own.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) dest: String,
    pub(super) kind: FileKind,
    pub(super) mode: u32,
    pub(super) size: u64,
    pub(super) sha256: Option<String>,
    pub(super) target: Option<String>,
    pub(super) mtime: i64,
    pub(super) uid: u64,
    pub(super) gid: u64,
    /// The entry's path inside the package tree (files).
    pub(super) src: String,
    /// A config file (pacman's `backup =`): an upgrade keeps the user's edit of it.
    pub(super) config: bool,
}

pub(super) struct PkgPlan {
    pub(super) row: PackageRow,
    pub(super) version: String,
    pub(super) files: Vec<Planned>,
}

/// The packages of `plan` (install order) that need installing, planned; the others (this
/// version from these very bytes already installed) are listed as `NAME=VERSION` in the second.
pub(super) fn plan(
    cat: &Catalog,
    plan: &[PackageRow],
    receipts: &[Receipt],
    mount: &Path,
) -> Result<(Vec<PkgPlan>, Vec<String>)> {
    let mut plans = Vec::new();
    let mut unchanged = Vec::new();
    for p in plan {
        let installed = receipts.iter().find(|r| r.name == p.name);
        let version = p.version.clone().unwrap_or_default();
        if installed.is_some_and(|r| r.version == version && r.source_sha256 == p.sha256) {
            unchanged.push(format!("{}={version}", p.name));
            continue;
        }
        plans.push(plan_files(cat, p, mount)?);
    }
    Ok((plans, unchanged))
}

fn plan_files(cat: &Catalog, p: &PackageRow, mount: &Path) -> Result<PkgPlan> {
    let version = p.version.clone().unwrap_or_default();
    let entries = cat.entries(p.file_id)?;
    let by_path: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| normalize(&e.path).ok().map(|n| (n, i)))
        .collect();
    let mut files: Vec<Planned> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for e in &entries {
        let src = normalize(&e.path)?;
        if src.is_empty() {
            continue;
        }
        let Some(dest) = dest_of(p, &src) else {
            continue;
        };
        let dest = normalize(&dest)?;
        if dest.is_empty() || !seen.insert(dest.clone()) {
            continue;
        }
        let (kind, sha, target, size) = match e.kind {
            EntryKind::Dir => (FileKind::Dir, None, None, 0),
            EntryKind::Symlink => (FileKind::Symlink, None, e.link_target.clone(), 0),
            EntryKind::File => (FileKind::File, e.sha256.clone(), None, e.size),
            // A hard link installs as a copy of what it links to (the mount shows it so).
            EntryKind::Hardlink => {
                let to = e
                    .link_target
                    .as_deref()
                    .and_then(|t| normalize(t).ok())
                    .and_then(|t| by_path.get(&t))
                    .map(|&i| &entries[i]);
                (
                    FileKind::File,
                    to.and_then(|t| t.sha256.clone()),
                    None,
                    to.map_or(e.size, |t| t.size),
                )
            }
        };
        files.push(Planned {
            dest,
            kind,
            mode: e.mode & 0o7777,
            size,
            sha256: sha,
            target,
            mtime: e.mtime,
            uid: e.uid,
            gid: e.gid,
            src,
            config: false,
        });
    }
    if p.meta_source == "npm" {
        npm_bins(p, &pkg_dir(mount, p), &mut files, &mut seen)?;
    }
    if p.meta_source == "pkginfo" {
        // `backup =` is not in the catalog: read it from .PKGINFO through the mount.
        let info = pkg_dir(mount, p).join(".PKGINFO");
        let text = fs::read_to_string(&info).map_err(|e| InstallError::io(&info, e))?;
        let backup: HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("backup = "))
            .map(str::trim)
            .collect();
        for f in files.iter_mut().filter(|f| f.kind == FileKind::File) {
            f.config = backup.contains(f.dest.as_str());
        }
    }
    // Directories the entries imply but the archive does not list.
    let mut implied = Vec::new();
    for f in &files {
        let mut d = f.dest.as_str();
        while let Some((parent, _)) = d.rsplit_once('/') {
            if seen.insert(parent.to_string()) {
                implied.push(Planned {
                    dest: parent.to_string(),
                    kind: FileKind::Dir,
                    mode: 0o755,
                    size: 0,
                    sha256: None,
                    target: None,
                    mtime: 0,
                    uid: 0,
                    gid: 0,
                    src: String::new(),
                    config: false,
                });
            }
            d = parent;
        }
    }
    files.extend(implied);
    files.sort_by(|a, b| a.dest.cmp(&b.dest));
    Ok(PkgPlan {
        row: p.clone(),
        version,
        files,
    })
}

/// What npm's bin-links does for package.json's `bin`: each target becomes executable and
/// gets a `node_modules/.bin/CMD -> ../NAME/PATH` link. The manifest is read through the
/// mount (the catalog does not keep `bin`); a command name that is not one plain path
/// component, or a target the package does not ship, is skipped as npm skips it.
fn npm_bins(
    p: &PackageRow,
    pkg: &Path,
    files: &mut Vec<Planned>,
    seen: &mut HashSet<String>,
) -> Result<()> {
    let Some((manifest, _)) = script_sources(p, pkg).into_iter().next() else {
        return Ok(());
    };
    let bytes = fs::read(&manifest).map_err(|e| InstallError::io(&manifest, e))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    // `"bin": "path"` is one command named after the package (its scope dropped).
    let plain = p.name.rsplit('/').next().unwrap_or(&p.name).to_string();
    let bins: Vec<(String, String)> = match &json["bin"] {
        serde_json::Value::String(t) => vec![(plain, t.clone())],
        serde_json::Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    for (cmd, target) in bins {
        let Ok(target) = normalize(&target) else {
            continue;
        };
        let ok_cmd = !cmd.is_empty() && !cmd.contains('/') && cmd != "." && cmd != "..";
        let dest = format!("node_modules/{}/{target}", p.name);
        let Some(f) = files
            .iter_mut()
            .find(|f| f.dest == dest && f.kind == FileKind::File)
        else {
            continue;
        };
        if !ok_cmd {
            continue;
        }
        f.mode |= 0o111;
        let link = format!("node_modules/.bin/{cmd}");
        if seen.insert(link.clone()) {
            files.push(Planned {
                dest: link,
                kind: FileKind::Symlink,
                mode: 0o777,
                size: 0,
                sha256: None,
                target: Some(format!("../{}/{target}", p.name)),
                mtime: 0,
                uid: 0,
                gid: 0,
                src: String::new(),
                config: false,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_dotdot() {
        assert!(normalize("a/../../etc").is_err());
        assert_eq!(normalize("./usr/bin/").unwrap(), "usr/bin");
    }
}
