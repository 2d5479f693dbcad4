//! `repofs mount` and `umount`, and `repofs` as mount(8)'s helper for `fuse.repofs`: the
//! helper's argument form and its `-o` options are translated here, into a plain
//! `repofs mount`.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::Common;
use crate::config::{Config, Layout};

/// `repofs mount`'s flags.
#[derive(clap::Args)]
pub struct MountArgs {
    /// Mount options, comma-separated: root=DIR and config=FILE, plus the generic ones
    /// mount(8) passes (rw, nosuid, allow_other, ...), which are accepted and ignored.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Detach once the mount is ready.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    pub mountpoint: PathBuf,
}

/// Serves the repository at the mount point until unmounted or signalled; with `--daemon`,
/// in a background child started with `args` (the command line as given) minus that flag.
pub fn mount(common: &Common, m: &MountArgs, args: &[OsString]) -> anyhow::Result<ExitCode> {
    let (root, config) = options(common, &m.options);
    if m.daemon {
        // The background child gets the same arguments without -d.
        let child: Vec<OsString> = args
            .iter()
            .skip(1)
            .filter(|a| *a != "-d" && *a != "--daemon")
            .cloned()
            .collect();
        crate::vfs::mount::daemonize(child)?;
        return Ok(ExitCode::SUCCESS);
    }
    let layout = Layout::new(root);
    let log = layout.root.join("mount.log");
    let config = Config::load(config.as_deref())?;
    let mounted = crate::vfs::mount::mount(layout, config, &m.mountpoint)?;
    crate::vfs::mount::report_ready(&log);
    crate::vfs::mount::serve_until_signal(mounted)?;
    Ok(ExitCode::SUCCESS)
}

/// The state directory and config file: `--root`/`--config`, overridden by `-o root=DIR` and
/// `-o config=FILE` (how fstab names them).
fn options(common: &Common, options: &[String]) -> (PathBuf, Option<PathBuf>) {
    let mut root = common.root.clone();
    let mut config = common.config.clone();
    for opt in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        match opt.split_once('=') {
            Some(("root", v)) => root = PathBuf::from(v),
            Some(("config", v)) => config = Some(PathBuf::from(v)),
            // What mount(8) and fstab add; the mount sets its own safe equivalents.
            _ if GENERIC_OPTIONS.contains(&opt) => {}
            _ => tracing::warn!(option = opt, "ignoring unknown mount option"),
        }
    }
    (root, config)
}

const GENERIC_OPTIONS: [&str; 22] = [
    "rw",
    "ro",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "allow_other",
    "default_permissions",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "_netdev",
    "nofail",
];

/// `repofs umount`'s flags.
#[derive(clap::Args)]
pub struct UmountArgs {
    /// Detach now, even if files are open (lazy unmount).
    #[arg(short = 'l', long)]
    pub lazy: bool,
    pub mountpoint: PathBuf,
}

pub fn umount(args: &UmountArgs) -> anyhow::Result<ExitCode> {
    crate::vfs::mount::umount(&args.mountpoint, args.lazy)
        .with_context(|| format!("unmounting {}", args.mountpoint.display()))?;
    Ok(ExitCode::SUCCESS)
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
pub fn helper_args(args: &[OsString]) -> Option<Vec<OsString>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn helper(a: &[&str]) -> Option<Vec<String>> {
        helper_args(&args(a)).map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
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
    fn root_and_config_options_override_the_flags() {
        let common = Common {
            root: PathBuf::from("/flag"),
            config: None,
        };
        let o = |a: &[&str]| {
            options(
                &common,
                &a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(o(&[]), (PathBuf::from("/flag"), None));
        assert_eq!(
            o(&["rw,nosuid,root=/r", "config=/c.toml,allow_other"]),
            (PathBuf::from("/r"), Some(PathBuf::from("/c.toml")))
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
