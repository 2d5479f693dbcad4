//! What the binaries share: the common `--root`/`--config` options, logging set-up, and the
//! output of the read-only commands. Argument parsing stays in the binaries.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::FileRow;
use crate::config::{Config, DEFAULT_ROOT};
use crate::repo::Repo;

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// State directory: catalog, content store, keyrings, spool, quarantine.
    #[arg(long, env = "REPOFS_ROOT", default_value = DEFAULT_ROOT, global = true)]
    pub root: PathBuf,
    /// TOML settings file; every setting has an embedded default.
    #[arg(long, env = "REPOFS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

impl Common {
    pub fn open(&self) -> anyhow::Result<Repo> {
        Repo::open(&self.root, Config::load(self.config.as_deref())?)
    }
}

/// The subcommands of `repofs`: a first argument among these is never a mount helper's source.
pub const COMMANDS: [&str; 7] = [
    "keys", "list", "mount", "umount", "status", "help", "version",
];

/// Recognizes how mount(8) runs us as a filesystem helper, and rewrites it as
/// `repofs mount --daemon -o OPTIONS DIR` (mount(8) waits for the helper to exit). Anything
/// else is left to clap, so that a mistyped command is an error and never a mount.
///
/// Measured on Debian 12 (util-linux 2.38, fuse3 3.14), with a helper that logs its argv:
/// - `mount -t fuse.repofs SRC DIR [-o O]` and fstab lines go through `/sbin/mount.fuse3`,
///   which runs `/bin/sh -c "repofs SRC DIR -o O2"`: `repofs` is found on the PATH mount(8)
///   sets (`/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`), `DIR` is absolute,
///   and `-o` is always there (mount.fuse3 adds `dev`/`suid` or keeps `nodev`/`nosuid`).
/// - If `/sbin/mount.fuse.repofs` exists (scripts/install links it to `repofs`), mount(8)
///   runs it directly: `mount.fuse.repofs SRC DIR [-n] [-v] ... -o O`.
///
/// So the helper form is `SRC DIR`, then only mount(8)'s helper flags, with `-o OPTIONS`
/// among them (optional only when invoked as `mount.fuse.*`).
pub fn mount_helper_args(args: &[OsString]) -> Option<Vec<OsString>> {
    let as_helper = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(OsStr::to_str)
        .is_some_and(|n| n.starts_with("mount.fuse"));
    let (source, dir) = (args.get(1)?.to_str()?, args.get(2)?);
    if source.is_empty()
        || source.starts_with('-')
        || COMMANDS.contains(&source)
        || dir.as_encoded_bytes().first().is_none_or(|&b| b == b'-')
    {
        return None;
    }
    let mut options: Option<OsString> = None;
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        match a.to_str()? {
            // no mtab, verbose, sloppy: nothing for us to do differently.
            "-n" | "-v" | "-s" => {}
            // mount.fuse.TYPE is told its own type; we know it.
            "-t" => {
                rest.next()?;
            }
            "-o" => {
                let o = rest.next()?;
                options = Some(match options {
                    Some(mut have) => {
                        have.push(",");
                        have.push(o);
                        have
                    }
                    None => o.clone(),
                });
            }
            // -f (fake), -N (namespace) or anything else: not a mount we know how to do.
            _ => return None,
        }
    }
    if options.is_none() && !as_helper {
        return None;
    }
    let mut out = vec![OsString::from("repofs"), "mount".into(), "--daemon".into()];
    if let Some(o) = options {
        out.push("-o".into());
        out.push(o);
    }
    out.push("--".into());
    out.push(dir.clone());
    Some(out)
}

/// Logs to stderr; `RUST_LOG` overrides the level.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour only for people: logs redirected to files and journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A published file as `repofs list --json` prints it.
#[derive(Debug, Serialize)]
pub struct ListedFile {
    pub directory: String,
    pub filename: String,
    pub kind: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub uploader: String,
    pub upload_id: i64,
    pub published_at: String,
    pub state: String,
    pub archived_at: Option<String>,
}

impl From<FileRow> for ListedFile {
    fn from(f: FileRow) -> Self {
        ListedFile {
            directory: f.directory,
            filename: f.filename,
            kind: f.kind,
            name: f.name,
            version: f.version,
            size: f.size,
            sha256: f.sha256,
            md5: f.md5,
            uploader: f.uploader,
            upload_id: f.upload_id,
            published_at: crate::time::rfc3339(f.published_at),
            state: f.state,
            archived_at: f.archived_at.map(crate::time::rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn helper(a: &[&str]) -> Option<Vec<String>> {
        mount_helper_args(&args(a))
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn mount_fuse3_and_the_direct_helper_are_recognized() {
        // Exactly what mount.fuse3 passed for `mount -t fuse.repofs repofs /mnt -o root=/x`.
        assert_eq!(
            helper(&["repofs", "repofs", "/mnt", "-o", "rw,root=/x,dev,suid"]).unwrap(),
            [
                "repofs",
                "mount",
                "--daemon",
                "-o",
                "rw,root=/x,dev,suid",
                "--",
                "/mnt"
            ]
        );
        // mount(8) running /sbin/mount.fuse.repofs itself, with `mount -n -v`.
        assert_eq!(
            helper(&[
                "/sbin/mount.fuse.repofs",
                "repofs",
                "/mnt",
                "-n",
                "-v",
                "-o",
                "rw"
            ])
            .unwrap(),
            ["repofs", "mount", "--daemon", "-o", "rw", "--", "/mnt"]
        );
        assert_eq!(
            helper(&["/sbin/mount.fuse.repofs", "repofs", "/mnt"]).unwrap(),
            ["repofs", "mount", "--daemon", "--", "/mnt"]
        );
    }

    #[test]
    fn typos_and_commands_are_not_the_helper_form() {
        for a in [
            &["repofs", "lsit", "pkgs"][..],
            &["repofs", "lsit", "pkgs", "--json"],
            &["repofs", "moutn", "/mnt"],
            &["repofs", "list", "/mnt", "-o", "x"],
            &["repofs", "--root", "/r", "list"],
            &["repofs", "repofs", "/mnt", "-o"],
            &["repofs", "repofs", "/mnt", "-f", "-o", "rw"],
            &["repofs", "repofs", "-o", "rw"],
            &["repofs", "repofs"],
        ] {
            assert_eq!(helper(a), None, "{a:?}");
        }
    }
}
