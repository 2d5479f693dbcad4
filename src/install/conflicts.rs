//! What is already in the root, seen as a chroot would see it, and the check of a whole plan
//! against it before anything is written.
//!
//! Paths in the root resolve their directories inside it (`resolve`, and the caching
//! `Resolver`: an absolute symlink `bin -> /usr/bin` means `ROOT/usr/bin`), so ownership and
//! conflicts are decided by the file a path really lands on. `same_content` tells whether
//! what is on disk is exactly what a package or receipt says, for the check and for removal.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::store::file_sha256;

use super::db::{FileKind, Receipt};
use super::plan::PkgPlan;

/// `rel` inside `root`, with every directory component resolved as a chroot would (an
/// absolute symlink such as `bin -> /usr/bin` points inside the root, `..` stops at it); the
/// last component is not followed.
pub fn resolve(root: &Path, rel: &str) -> PathBuf {
    let (parent, last) = rel.rsplit_once('/').unwrap_or(("", rel));
    resolve_dir(root, parent).join(last)
}

/// [`resolve`] with the directories remembered: a package's files share a few parents, and
/// walking each one's components with lstat per file was a third of an install's CPU. Valid
/// while no symlink in the root changes, so one lives for one pass (a check, a staging).
pub(super) struct Resolver<'a> {
    pub(super) root: &'a Path,
    dirs: HashMap<String, PathBuf>,
}

impl<'a> Resolver<'a> {
    pub(super) fn new(root: &'a Path) -> Self {
        Resolver {
            root,
            dirs: HashMap::new(),
        }
    }

    pub(super) fn resolve(&mut self, rel: &str) -> PathBuf {
        let (parent, last) = rel.rsplit_once('/').unwrap_or(("", rel));
        if let Some(d) = self.dirs.get(parent) {
            return d.join(last);
        }
        let d = resolve_dir(self.root, parent);
        let full = d.join(last);
        self.dirs.insert(parent.to_string(), d);
        full
    }
}

fn resolve_dir(root: &Path, rel: &str) -> PathBuf {
    let mut cur = root.to_path_buf();
    let mut todo: VecDeque<String> = rel.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            if cur != root {
                cur.pop();
            }
            continue;
        }
        let next = cur.join(&c);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && hops < 40 => {
                hops += 1;
                match fs::read_link(&next) {
                    Ok(t) => {
                        let t = t.to_string_lossy().into_owned();
                        if t.starts_with('/') {
                            cur = root.to_path_buf();
                        }
                        for part in t.split('/').rev() {
                            todo.push_front(part.to_string());
                        }
                    }
                    Err(_) => cur = next,
                }
            }
            _ => cur = next,
        }
    }
    cur
}

pub(super) fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Owners of every installed non-directory path (resolved, relative to the root).
fn owners(at: &mut Resolver, receipts: &[Receipt]) -> HashMap<String, String> {
    let root = at.root;
    let mut m = HashMap::new();
    for r in receipts {
        for f in r.files.iter().filter(|f| f.kind != FileKind::Dir) {
            m.insert(rel_of(root, &at.resolve(&f.path)), r.name.clone());
        }
    }
    m
}

/// Whether what is at `p` is exactly what `f` describes.
pub(super) fn same_content(
    p: &Path,
    kind: FileKind,
    size: u64,
    sha: Option<&str>,
    target: Option<&str>,
) -> bool {
    let Ok(m) = fs::symlink_metadata(p) else {
        return false;
    };
    match kind {
        FileKind::Symlink => {
            m.file_type().is_symlink()
                && fs::read_link(p)
                    .is_ok_and(|t| Some(t.as_os_str().as_bytes()) == target.map(str::as_bytes))
        }
        FileKind::File => {
            m.file_type().is_file()
                && m.len() == size
                && match sha {
                    Some(s) => file_sha256(p).is_ok_and(|h| h == s),
                    None => true,
                }
        }
        FileKind::Dir => m.is_dir(),
    }
}

/// Checks the whole plan against the root before anything is written.
pub(super) fn conflicts(
    root: &Path,
    plans: &[PkgPlan],
    receipts: &[Receipt],
    overwrite: bool,
) -> Vec<String> {
    let mut at = Resolver::new(root);
    let owned = owners(&mut at, receipts);
    let mut out = Vec::new();
    let mut claimed: HashMap<String, &str> = HashMap::new();
    for p in plans {
        for f in &p.files {
            let full = at.resolve(&f.dest);
            let rel = rel_of(root, &full);
            let meta = fs::symlink_metadata(&full);
            if f.kind == FileKind::Dir {
                // A symlink to a directory (bin -> usr/bin) is a directory here.
                if meta.is_ok() && !fs::metadata(&full).is_ok_and(|m| m.is_dir()) {
                    out.push(format!("{}: is not a directory ({})", f.dest, p.row.name));
                }
                continue;
            }
            if let Some(other) = claimed.insert(rel.clone(), &p.row.name) {
                if !overwrite {
                    out.push(format!("{}: in both {other} and {}", f.dest, p.row.name));
                }
                continue;
            }
            match owned.get(&rel) {
                Some(owner) if owner != &p.row.name => {
                    if !overwrite {
                        out.push(format!("{}: owned by {owner} ({})", f.dest, p.row.name));
                    }
                    continue;
                }
                Some(_) => continue, // an upgrade or reinstall of its owner
                None => {}
            }
            match meta {
                Ok(m) if m.is_dir() => out.push(format!(
                    "{}: a directory is in the way ({})",
                    f.dest, p.row.name
                )),
                Ok(_)
                    if !overwrite
                        && !same_content(
                            &full,
                            f.kind,
                            f.size,
                            f.sha256.as_deref(),
                            f.target.as_deref(),
                        ) =>
                {
                    out.push(format!(
                        "{}: exists with other content ({})",
                        f.dest, p.row.name
                    ))
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_keeps_absolute_links_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", d.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("usr/bin/up")).unwrap();
        assert_eq!(resolve(d.path(), "bin/sh"), d.path().join("usr/bin/sh"));
        assert_eq!(resolve(d.path(), "usr/bin/up/x/y"), d.path().join("x/y"));
    }
}
