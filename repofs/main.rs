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
    match run(Cli::parse_from(&args), &args) {
        Ok(code) => code,
        // `repofs list | head`: the reader has gone, which ends our output, not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("repofs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, args: &[OsString]) -> anyhow::Result<ExitCode> {
    match &cli.command {
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
        Command::Deps {
            json,
            arch,
            requests,
        } => {
            drop(o);
            let options = repofs::deps::Options {
                arch,
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
