//! Real gpg keyrings in private GNUPGHOMEs: keys, detached signatures, clear-signed directives.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A private gpg home. Keys are made without passphrase; the agent is killed on drop.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

#[allow(clippy::new_without_default)] // a fixture that makes a keyring on disk, not a value
impl Gpg {
    pub fn new() -> Gpg {
        // Short path: gpg-agent's socket path must fit in sun_path.
        let home = tempfile::Builder::new()
            .prefix("g")
            .tempdir_in("/tmp")
            .expect("gnupghome");
        fs::write(
            home.path().join("gpg.conf"),
            "use-agent\npinentry-mode loopback\n",
        )
        .expect("gpg.conf");
        fs::write(
            home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .expect("agent conf");
        Gpg { home }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--quiet",
            "--passphrase",
            "",
        ]);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `gpg --quick-gen-key UID ALGO USAGE EXPIRE`; returns the primary fingerprint.
    pub fn gen_key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.run(&["--quick-gen-key", uid, algo, usage, expire]);
        self.fingerprint(uid)
    }

    /// A certification-only primary key with a separate signing subkey.
    pub fn gen_key_with_subkey(&self, uid: &str, algo: &str) -> String {
        let fpr = self.gen_key(uid, algo, "cert", "1y");
        self.run(&["--quick-add-key", &fpr, algo, "sign", "1y"]);
        fpr
    }

    pub fn fingerprint(&self, uid: &str) -> String {
        let out = self.run(&["--with-colons", "--list-keys", uid]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_string()
    }

    /// Writes the armored public key to `dir/NAME.asc`.
    pub fn export(&self, uid: &str, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}.asc", uid.split('@').next().unwrap_or("key")));
        let out = self.run(&["--armor", "--export", uid]);
        fs::write(&p, out.stdout).expect("export");
        p
    }

    /// `gpg -b` (binary, or armored with `armor`) → `FILE.sig`.
    pub fn sign(&self, uid: &str, file: &Path, armor: bool, extra: &[&str]) -> PathBuf {
        let sig = PathBuf::from(format!("{}.sig", file.display()));
        let mut args = vec![
            "--local-user",
            uid,
            "--detach-sign",
            "--output",
            sig.to_str().unwrap(),
        ];
        if armor {
            args.push("--armor");
        }
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        self.run(&args);
        sig
    }

    /// Clear-signs `body` into `path`.
    pub fn clearsign(&self, uid: &str, body: &str, path: &Path, extra: &[&str]) {
        let plain = path.with_extension("plain");
        fs::write(&plain, body).expect("directive body");
        let mut args = vec![
            "--local-user",
            uid,
            "--clearsign",
            "--output",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(plain.to_str().unwrap());
        self.run(&args);
        fs::remove_file(plain).ok();
    }

    /// Revokes the key (the revocation certificate gpg made at generation).
    pub fn revoke(&self, fpr: &str) {
        let rev = self
            .home
            .path()
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev"));
        let text = fs::read_to_string(&rev)
            .expect("revocation cert")
            .replace(":-----BEGIN", "-----BEGIN");
        let armored = self.home.path().join("revoke.asc");
        fs::write(&armored, text).expect("write rev");
        self.run(&["--import", armored.to_str().unwrap()]);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// Writes a triplet's directive for `file` into the spool directory `dir`.
pub fn directive(gpg: &Gpg, uid: &str, spool_dir: &Path, file: &str, body: &str) -> PathBuf {
    let p = spool_dir.join(format!("{file}.directive.asc"));
    gpg.clearsign(uid, body, &p, &[]);
    p
}
