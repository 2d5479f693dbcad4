//! `repofs`: the command-line tool (keys, listings, status, installs) and the FUSE filesystem
//! process (`repofs mount`, also run by `mount -t fuse.repofs` as its mount helper). This file
//! only parses arguments; each command lives in the library's `cli` module.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use repofs::cli::{self, fetch, files, install, keys, mount, trust, Common};

#[derive(Parser)]
#[command(
    name = "repofs",
    version,
    about = "A package repository that lives as a mounted filesystem"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the OpenPGP keys allowed to upload.
    Keys {
        #[command(subcommand)]
        action: keys::KeysCmd,
    },
    /// Manage the local uids allowed to upload unsigned files through the mount.
    Trust {
        #[command(subcommand)]
        action: trust::TrustCmd,
    },
    /// List published files.
    List(files::ListArgs),
    /// Serve the repository as a filesystem at MOUNTPOINT (in the foreground unless -d).
    Mount(mount::MountArgs),
    /// Unmount a repofs mount.
    Umount(mount::UmountArgs),
    /// On a mirror: fetch the objects behind these paths (dists/DIR/FILE, pkgs/NAME/VERSION)
    /// whole into the cache, through repofsd.
    Fetch(fetch::FetchArgs),
    /// The dependency closure of NAME[=VERSION]..., in install order (each package after
    /// what it needs), with the highest versions that satisfy everything.
    Deps(install::DepsArgs),
    /// Uploads pending, accepted and rejected, most recent first; on a mirror, the index
    /// generation and its age, the upstream's state, the cache, fetch progress, peers, rates.
    Status(files::StatusArgs),
    /// Install packages from the mount's pkgs/ trees into ROOT, each one atomically, with
    /// receipts in ROOT/var/lib/repofs/ and the packages' own scripts run inside ROOT.
    Install(install::InstallArgs),
    /// Remove installed packages from ROOT: run their remove scripts, delete the files their
    /// receipts own (files changed since are kept as FILE.repofs-save).
    Remove(install::RemoveArgs),
    /// List the packages installed in the root given by --into (default "/").
    Installed(install::InstalledArgs),
    /// Install packages into a staging root and pack it reproducibly as tar, tar.gz,
    /// tar.zst or iso (through xorriso).
    Image(install::ImageArgs),
}

fn main() -> ExitCode {
    cli::init_logging();
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if let Some(helper) = mount::helper_args(&args) {
        args = helper;
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches_from(&args);
    let parsed = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // `installed` refuses the old `--root ROOT` spelling of its target root.
    let root_given = matches.subcommand().is_some_and(|(_, m)| {
        m.value_source("root") == Some(clap::parser::ValueSource::CommandLine)
    });
    let common = &parsed.common;
    cli::exit_code(match parsed.command {
        Command::Keys { action } => keys::run(common, action),
        Command::Trust { action } => trust::run(common, action),
        Command::List(a) => files::list(common, &a),
        Command::Mount(a) => mount::mount(common, &a, &args),
        Command::Umount(a) => mount::umount(&a),
        Command::Fetch(a) => fetch::fetch(common, &a),
        Command::Deps(a) => install::deps(common, a),
        Command::Status(a) => files::status(common, &a),
        Command::Install(a) => install::install(common, a),
        Command::Remove(a) => install::remove(&a),
        Command::Installed(a) => install::installed(&a, root_given),
        Command::Image(a) => install::image(common, a),
    })
}
