//! `repofs`: the command-line tool (keys, listings, status) and the FUSE filesystem process
//! (`repofs mount`, also run by `mount -t fuse.repofs` as its mount helper).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use repofs::cli::{self, Common, ListedFile};

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
        action: KeysCmd,
    },
    /// List published files.
    List {
        #[arg(long)]
        json: bool,
        /// Include archived (replaced or taken offline) files.
        #[arg(long)]
        all: bool,
        /// List directive-made symlinks instead of files.
        #[arg(long)]
        symlinks: bool,
    },
    /// Serve the repository as a filesystem at MOUNTPOINT (in the foreground unless -d).
    Mount {
        /// Mount options, comma-separated: root=DIR and config=FILE, plus the generic ones
        /// mount(8) passes (rw, nosuid, allow_other, ...), which are accepted and ignored.
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// Detach once the mount is ready.
        #[arg(short = 'd', long)]
        daemon: bool,
        mountpoint: PathBuf,
    },
    /// Unmount a repofs mount.
    Umount {
        /// Detach now, even if files are open (lazy unmount).
        #[arg(short = 'l', long)]
        lazy: bool,
        mountpoint: PathBuf,
    },
    /// On a mirror: fetch the objects behind these paths (dists/DIR/FILE, pkgs/NAME/VERSION)
    /// whole into the cache, through repofsd.
    Fetch {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// The dependency closure of NAME[=VERSION]..., in install order (each package after
    /// what it needs), with the highest versions that satisfy everything.
    Deps {
        #[arg(long)]
        json: bool,
        /// Resolve for this machine (amd64/x86_64, arm64/aarch64, ...): Debian and Arch
        /// packages built for others are left out. Default: this machine.
        #[arg(long)]
        arch: Option<String>,
        /// Resolve as an install into ROOT would: what ROOT's dpkg or pacman database says
        /// is installed meets dependencies and is left out.
        #[arg(long, value_name = "ROOT")]
        into: Option<PathBuf>,
        /// NAME or NAME=VERSION; prefix the ecosystem when a name is in several (deb:NAME).
        #[arg(required = true, value_name = "NAME[=VERSION]")]
        requests: Vec<String>,
    },
    /// Uploads pending, accepted and rejected, most recent first; on a mirror, the index
    /// generation and its age, the upstream's state, the cache, fetch progress, peers, rates.
    Status {
        #[arg(long)]
        json: bool,
        /// How many verdicts to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Install packages from the mount's pkgs/ trees into ROOT, each one atomically, with
    /// receipts in ROOT/var/lib/repofs/ and the packages' own scripts run inside ROOT.
    Install {
        /// The root to install into ("/" for this system).
        #[arg(long, value_name = "ROOT")]
        into: PathBuf,
        /// Take over files that another package owns or that exist with other content.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        from: InstallFrom,
        /// NAME or NAME=VERSION.
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
    /// Remove installed packages from ROOT: run their remove scripts, delete the files their
    /// receipts own (files changed since are kept as FILE.repofs-save).
    Remove {
        #[arg(long, value_name = "ROOT")]
        from: PathBuf,
        /// Deadline for each package script.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        script_timeout: std::time::Duration,
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
    /// List the packages installed in the root given by --root (default "/").
    Installed {
        #[arg(long)]
        json: bool,
    },
    /// Install packages into a staging root and pack it reproducibly as tar, tar.gz,
    /// tar.zst or iso (through xorriso).
    Image {
        /// Default: from the output name (.tar.gz, .tar.zst, .iso; else tar).
        #[arg(long, value_enum)]
        format: Option<repofs::install::image::Format>,
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        from: InstallFrom,
        #[arg(required = true, value_name = "PKG")]
        packages: Vec<String>,
    },
}

/// Where install and image read packages from, and how long scripts may run.
#[derive(clap::Args)]
struct InstallFrom {
    /// The repofs mount to read from (default: the fuse.repofs mount that shows them).
    #[arg(long, value_name = "DIR")]
    mount: Option<PathBuf>,
    /// Deadline for each package script.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    script_timeout: std::time::Duration,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Authorize the certs in armored (gpg --export --armor) or binary files for DIRECTORY and
    /// below; `--dir /` means everywhere.
    Add {
        #[arg(long)]
        dir: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show keys and their directories.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a key (all its grants).
    Remove { fingerprint: String },
    /// Print the repository's own public key (armored), for mirrors and clients to pin.
    ExportRepo,
}

/// `writeln!` to the command's output; errors (a closed pipe) propagate to `main`.
macro_rules! out {
    ($o:expr, $($arg:tt)*) => { writeln!($o, $($arg)*)? };
}

fn main() -> ExitCode {
    cli::init_logging();
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if let Some(helper) = cli::mount_helper_args(&args) {
        args = helper;
    }
    let matches = <Cli as clap::CommandFactory>::command().get_matches_from(&args);
    let parsed = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // `repofs installed --root ROOT`: --root is the install root there, and only when given.
    let root_given = matches.subcommand().is_some_and(|(_, m)| {
        m.value_source("root") == Some(clap::parser::ValueSource::CommandLine)
    });
    match run(parsed, &args, root_given) {
        Ok(code) => code,
        // `repofs list | head`: the reader has gone, which ends our output, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(ie) = e.downcast_ref::<repofs::install::InstallError>() {
                eprintln!("repofs: {}: {ie}", ie.code());
            } else if let Some(de) = e.downcast_ref::<repofs::deps::DepsError>() {
                eprintln!("repofs: {}: {de}", de.code());
            } else {
                eprintln!("repofs: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, args: &[OsString], root_given: bool) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Remove { .. } | Command::Installed { .. } => {
            return installs(&cli, root_given);
        }
        Command::Mount {
            options,
            daemon,
            mountpoint,
        } => return mount(&cli.common, options, *daemon, mountpoint, args),
        Command::Umount { lazy, mountpoint } => {
            repofs::vfs::mount::umount(mountpoint, *lazy)
                .with_context(|| format!("unmounting {}", mountpoint.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let mut repo = cli.common.open()?;
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Keys {
            action: KeysCmd::Add { dir, files },
        } => {
            for fpr in repofs::keys::add(&mut repo.catalog, &dir, &files)? {
                out!(
                    o,
                    "{fpr} may upload to {}",
                    if dir.trim_matches('/').is_empty() {
                        "/"
                    } else {
                        &dir
                    }
                );
            }
        }
        Command::Keys {
            action: KeysCmd::List { json },
        } => {
            let keys = repofs::keys::list(&repo.catalog)?;
            if json {
                out!(o, "{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    let flags = if k.revoked { " [revoked]" } else { "" };
                    out!(
                        o,
                        "{}{flags}  {}  dirs: {}",
                        k.fingerprint,
                        k.userids.first().map_or("", |s| s),
                        k.directories.join(", ")
                    );
                }
            }
        }
        Command::Keys {
            action: KeysCmd::ExportRepo,
        } => {
            o.write_all(&repofs::keys::export_repo(&repo.layout.repo_key())?)?;
        }
        Command::Keys {
            action: KeysCmd::Remove { fingerprint },
        } => {
            if !repofs::keys::remove(&mut repo.catalog, &fingerprint)? {
                eprintln!("repofs: no key {fingerprint}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::List {
            json,
            all,
            symlinks: true,
        } => {
            let _ = all;
            let links = repo.catalog.symlinks()?;
            if json {
                out!(o, "{}", serde_json::to_string_pretty(&links)?);
            } else {
                for l in links {
                    out!(
                        o,
                        "{} -> {}",
                        repofs::paths::join(&l.directory, &l.name),
                        l.target
                    );
                }
            }
        }
        Command::List {
            json,
            all,
            symlinks: false,
        } => {
            let files: Vec<ListedFile> = repo
                .catalog
                .files(all)?
                .into_iter()
                .map(ListedFile::from)
                .collect();
            if json {
                out!(o, "{}", serde_json::to_string_pretty(&files)?);
            } else {
                for f in files {
                    let archived = if f.state == "archived" {
                        "  [archived]"
                    } else {
                        ""
                    };
                    out!(
                        o,
                        "{}  {:>12}  {}{archived}",
                        f.sha256,
                        f.size,
                        repofs::paths::join(&f.directory, &f.filename)
                    );
                }
            }
        }
        Command::Mount { .. } | Command::Umount { .. } => unreachable!("handled above"),
        Command::Remove { .. } | Command::Installed { .. } => unreachable!("handled above"),
        Command::Install {
            into,
            overwrite,
            from,
            packages,
        } => {
            let system = repofs::deps::system::read(&into)?;
            let (plan, mount) = plan_and_mount(&repo.catalog, &packages, from.mount, system)?;
            let report = repofs::install::install(
                &repo.catalog,
                &plan,
                &repofs::install::Options {
                    root: into,
                    mount,
                    overwrite,
                    script_timeout: from.script_timeout,
                    run_scripts: true,
                    progress: true,
                    installed_at: None,
                },
            )?;
            for p in report.installed {
                out!(o, "installed {p}");
            }
            for p in report.unchanged {
                out!(o, "already installed {p}");
            }
            for f in report.kept {
                out!(o, "kept edited config {f}");
            }
        }
        Command::Image {
            format,
            output,
            from,
            packages,
        } => {
            let (plan, mount) = plan_and_mount(&repo.catalog, &packages, from.mount, Vec::new())?;
            let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
                Ok(v) => Some(v.trim().parse::<i64>().with_context(|| {
                    format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
                })?),
                Err(_) => None,
            };
            let report = repofs::install::image::build(
                &repo.catalog,
                &plan,
                &repofs::install::image::ImageOptions {
                    format: format
                        .unwrap_or_else(|| repofs::install::image::Format::from_name(&output)),
                    output,
                    mount,
                    source_date_epoch: epoch,
                    script_timeout: from.script_timeout,
                    progress: true,
                },
            )?;
            out!(
                o,
                "{}: {} entries from {} packages, mtimes clamped to {}",
                report.output.display(),
                report.entries,
                report.install.installed.len(),
                report.clamp
            );
        }
        Command::Deps {
            json,
            arch,
            into,
            requests,
        } => {
            drop(o);
            let system = match &into {
                Some(root) => repofs::deps::system::read(root)?,
                None => Vec::new(),
            };
            let options = repofs::deps::Options {
                arch,
                system,
                ..Default::default()
            };
            return deps(&repo.catalog, json, &options, &requests);
        }
        Command::Fetch { paths } => {
            repofs::fetch::client::fetch(&repo.layout, &repo.config, &paths)?;
        }
        Command::Status { json, limit } => {
            if let Some(m) = repofs::fetch::status::mirror_status(&repo.layout, &repo.catalog)? {
                if json {
                    out!(o, "{}", serde_json::to_string_pretty(&m)?);
                } else {
                    write!(o, "{}", repofs::fetch::status::render(&m))?;
                }
                o.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            let entries = repofs::ingest::status(&repo, limit)?;
            if json {
                out!(o, "{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in entries {
                    let reason = e
                        .reason
                        .as_deref()
                        .map(|r| format!(" {r}"))
                        .unwrap_or_default();
                    out!(
                        o,
                        "{:<8}{reason}  {}  {}",
                        e.state,
                        e.files.join(" "),
                        e.message
                    );
                }
            }
        }
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `repofs deps`: the closure on stdout; when unresolvable, the reason code and the chain on
/// stderr (and as a JSON object on stdout with --json) and exit status 1.
fn deps(
    catalog: &repofs::catalog::Catalog,
    json: bool,
    options: &repofs::deps::Options,
    requests: &[String],
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    let result = requests
        .iter()
        .map(|r| r.parse::<repofs::deps::Request>())
        .collect::<Result<Vec<_>, _>>()
        .and_then(|reqs| repofs::deps::resolve_with(catalog, &reqs, options));
    match result {
        Ok(closure) => {
            if json {
                let items: Vec<_> = closure.iter().map(|r| r.json()).collect();
                out!(o, "{}", serde_json::to_string_pretty(&items)?);
            } else {
                for r in &closure {
                    let why = match &r.why {
                        repofs::deps::Why::Requested { .. } => "requested".to_string(),
                        repofs::deps::Why::Pulled {
                            package, version, ..
                        } => format!("for {package} {version}"),
                    };
                    out!(
                        o,
                        "{} {}  {}  ({why})",
                        r.package.name,
                        r.package.version.as_deref().unwrap_or("-"),
                        r.path()
                    );
                }
            }
            o.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                let v = serde_json::json!({
                    "error": e.code(),
                    "message": e.to_string(),
                    "chain": e.chain(),
                });
                out!(o, "{}", serde_json::to_string_pretty(&v)?);
                o.flush()?;
            }
            eprintln!("repofs deps: {}: {e}", e.code());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn mount(
    common: &Common,
    options: &[String],
    daemon: bool,
    mountpoint: &std::path::Path,
    args: &[OsString],
) -> anyhow::Result<ExitCode> {
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
    if daemon {
        // The background child gets the same arguments without -d.
        let child: Vec<OsString> = args
            .iter()
            .skip(1)
            .filter(|a| *a != "-d" && *a != "--daemon")
            .cloned()
            .collect();
        repofs::vfs::mount::daemonize(child)?;
        return Ok(ExitCode::SUCCESS);
    }
    let layout = repofs::config::Layout::new(root);
    let log = layout.root.join("mount.log");
    let config = repofs::config::Config::load(config.as_deref())?;
    let mounted = repofs::vfs::mount::mount(layout, config, mountpoint)?;
    repofs::vfs::mount::report_ready(&log);
    repofs::vfs::mount::serve_until_signal(mounted)?;
    Ok(ExitCode::SUCCESS)
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

/// PKG arguments (`NAME[=VERSION]`) -> the dependency closure in install order (every
/// package after the packages it depends on), and the mount to read it from: `--mount`, or
/// the repofs mount of this repository that shows the plan. `system`: what the target root's
/// dpkg or pacman already installed, which meets dependencies as it is.
fn plan_and_mount(
    cat: &repofs::catalog::Catalog,
    packages: &[String],
    mount: Option<PathBuf>,
    system: Vec<repofs::deps::system::SystemPkg>,
) -> anyhow::Result<(Vec<repofs::catalog::PackageRow>, PathBuf)> {
    let requests = packages
        .iter()
        .map(|p| p.parse::<repofs::deps::Request>())
        .collect::<Result<Vec<_>, _>>()?;
    let options = repofs::deps::Options {
        system,
        ..Default::default()
    };
    let plan: Vec<_> = repofs::deps::resolve_with(cat, &requests, &options)?
        .into_iter()
        .map(|r| r.package)
        .collect();
    let mount = match mount {
        Some(m) => m,
        None => repofs::install::find_mount(cat, &plan)?,
    };
    Ok((plan, mount))
}

/// `remove` and `installed` work on an install root only: no repository is opened.
fn installs(cli: &Cli, root_given: bool) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    match &cli.command {
        Command::Remove {
            from,
            script_timeout,
            packages,
        } => {
            let report = repofs::install::remove(from, packages, *script_timeout)?;
            for p in &report.removed {
                out!(o, "removed {p}");
            }
            for f in &report.saved {
                out!(o, "kept changed file as {f}");
            }
        }
        Command::Installed { json } => {
            let root = if root_given {
                cli.common.root.clone()
            } else {
                PathBuf::from("/")
            };
            let (receipts, _) = repofs::install::installed(&root)?;
            if *json {
                out!(o, "{}", serde_json::to_string_pretty(&receipts)?);
            } else {
                for r in receipts {
                    out!(
                        o,
                        "{} {}  {}  {} files",
                        r.name,
                        r.version,
                        r.format,
                        repofs::install::file_count(&r)
                    );
                }
            }
        }
        _ => unreachable!("only remove and installed come here"),
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
