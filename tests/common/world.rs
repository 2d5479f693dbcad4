//! The usual starting point: a repository, an uploader (alice) and one published tarball.

use std::fs;
use std::path::{Path, PathBuf};

use super::keys::{directive, Gpg};
use super::packages::make_tarball;
use super::repo::{upload, Repo};

/// A repository with alice (gpg, ed25519) allowed in `hello`, and `hello/hello-1.0.tar.gz`
/// already published, so "unchanged" checks compare against real content.
pub struct World {
    pub repo: Repo,
    pub gpg: Gpg,
    /// Scratch space for building uploads outside the spool.
    pub work: PathBuf,
    pub alice: String,
}

pub const ALICE: &str = "alice@example.org";

#[allow(clippy::new_without_default)] // a fixture that publishes, not a value
impl World {
    pub fn new() -> World {
        World::with_config("")
    }

    pub fn with_config(extra: &str) -> World {
        let repo = Repo::with_config(extra);
        let gpg = Gpg::new();
        let work = repo.dir.path().join("work");
        fs::create_dir_all(&work).expect("work dir");
        let alice = gpg.gen_key(&format!("Alice <{ALICE}>"), "ed25519", "sign", "1y");
        repo.add_key("hello", &gpg.export(ALICE, &work));
        let w = World {
            repo,
            gpg,
            work,
            alice,
        };
        let tgz = make_tarball(&w.work, "hello", "1.0");
        let sig = w.gpg.sign(ALICE, &tgz, false, &[]);
        upload(&w.repo, "hello", &[&tgz, &sig]);
        w.repo.once();
        assert_eq!(
            w.repo.list().len(),
            2,
            "baseline publication failed: {:#?}",
            w.repo.status()
        );
        w
    }

    /// A fresh build dir for one upload.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let d = self.work.join(name);
        fs::create_dir_all(&d).expect("scratch");
        d
    }

    /// Builds `NAME-VERSION.tar.gz`, signs it as `uid` and writes a 1.2 directive for `dir`
    /// with `extra` lines. Returns the three paths (not yet in the spool).
    pub fn triplet(
        &self,
        uid: &str,
        name: &str,
        version: &str,
        dir: &str,
        extra: &str,
    ) -> [PathBuf; 3] {
        let d = self.scratch(&format!(
            "{name}-{version}-{}",
            fs::read_dir(&self.work).map(|r| r.count()).unwrap_or(0)
        ));
        let tgz = make_tarball(&d, name, version);
        let sig = self.gpg.sign(uid, &tgz, true, &[]);
        let file = tgz.file_name().unwrap().to_string_lossy().into_owned();
        let dir_file = directive(
            &self.gpg,
            uid,
            &d,
            &file,
            &format!("version: 1.2\ndirectory: {dir}\nfilename: {file}\n{extra}"),
        );
        [tgz, sig, dir_file]
    }

    pub fn upload(&self, sub: &str, files: &[PathBuf]) {
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        upload(&self.repo, sub, &refs);
    }
}
