//! `repofs deps`, `install`, `remove`, `installed` and `image`: dependency closures, and
//! putting them into a target root (`--into ROOT`, never `--root`, which is the repository's
//! state directory in every command).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{json, stdout, Common};
use crate::catalog::{Catalog, PackageRow};
use crate::deps::system::SystemPkg;
use crate::deps::{Request, Why};
use crate::install::image::{Format, ImageOptions};

/// `repofs deps`'s flags.
#[derive(clap::Args)]
pub struct DepsArgs {
    #[arg(long)]
    pub json: bool,
    /// Resolve for this machine (amd64/x86_64, arm64/aarch64, ...): Debian and Arch
    /// packages built for others are left out. Default: this machine.
    #[arg(long)]
    pub arch: Option<String>,
    /// Resolve as an install into ROOT would: what ROOT's dpkg or pacman database says
    /// is installed meets dependencies and is left out.
    #[arg(long, value_name = "ROOT")]
    pub into: Option<PathBuf>,
    /// NAME or NAME=VERSION; prefix the ecosystem when a name is in several (deb:NAME).
    #[arg(required = true, value_name = "NAME[=VERSION]")]
    pub requests: Vec<String>,
}

/// `repofs deps`: the closure on stdout; when unresolvable, the reason code and the chain on
/// stderr (and as a JSON object on stdout with --json) and exit status 1.
pub fn deps(common: &Common, args: DepsArgs) -> anyhow::Result<ExitCode> {
    let repo = common.open()?;
    let system = match &args.into {
        Some(root) => crate::deps::system::read(root)?,
        None => Vec::new(),
    };
    let options = crate::deps::Options {
        arch: args.arch,
        system,
        ..Default::default()
    };
    let mut o = stdout();
    let result = args
        .requests
        .iter()
        .map(|r| r.parse::<Request>())
        .collect::<Result<Vec<_>, _>>()
        .and_then(|reqs| crate::deps::resolve_with(&repo.catalog, &reqs, &options));
    let closure = match result {
        Ok(closure) => closure,
        Err(e) => {
            if args.json {
                let v = serde_json::json!({
                    "error": e.code(),
                    "message": e.to_string(),
                    "chain": e.chain(),
                });
                json(&mut o, &v)?;
                o.flush()?;
            }
            eprintln!("repofs deps: {}: {e}", e.code());
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        let items: Vec<_> = closure.iter().map(|r| r.json()).collect();
        json(&mut o, &items)?;
    } else {
        for r in &closure {
            let why = match &r.why {
                Why::Requested { .. } => "requested".to_string(),
                Why::Pulled {
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

/// Where install and image read packages from, and how long scripts may run.
#[derive(clap::Args)]
pub struct InstallFrom {
    /// The repofs mount to read from (default: the fuse.repofs mount that shows them).
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// Deadline for each package script.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub script_timeout: Duration,
}

/// `repofs install`'s flags.
#[derive(clap::Args)]
pub struct InstallArgs {
    /// The root to install into ("/" for this system).
    #[arg(long, value_name = "ROOT")]
    pub into: PathBuf,
    /// Take over files that another package owns or that exist with other content.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub from: InstallFrom,
    /// NAME or NAME=VERSION.
    #[arg(required = true, value_name = "PKG")]
    pub packages: Vec<String>,
}

pub fn install(common: &Common, args: InstallArgs) -> anyhow::Result<ExitCode> {
    let repo = common.open()?;
    let mut o = stdout();
    let system = crate::deps::system::read(&args.into)?;
    let (plan, mount) = plan_and_mount(&repo.catalog, &args.packages, args.from.mount, system)?;
    let report = crate::install::install(
        &repo.catalog,
        &plan,
        &crate::install::Options {
            root: args.into,
            mount,
            overwrite: args.overwrite,
            script_timeout: args.from.script_timeout,
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
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `repofs image`'s flags.
#[derive(clap::Args)]
pub struct ImageArgs {
    /// Default: from the output name (.tar.gz, .tar.zst, .iso; else tar).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub from: InstallFrom,
    #[arg(required = true, value_name = "PKG")]
    pub packages: Vec<String>,
}

pub fn image(common: &Common, args: ImageArgs) -> anyhow::Result<ExitCode> {
    let repo = common.open()?;
    let mut o = stdout();
    let (plan, mount) = plan_and_mount(&repo.catalog, &args.packages, args.from.mount, Vec::new())?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(
            v.trim()
                .parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        Err(_) => None,
    };
    let report = crate::install::image::build(
        &repo.catalog,
        &plan,
        &ImageOptions {
            format: args
                .format
                .unwrap_or_else(|| Format::from_name(&args.output)),
            output: args.output,
            mount,
            source_date_epoch: epoch,
            script_timeout: args.from.script_timeout,
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
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// PKG arguments (`NAME[=VERSION]`) -> the dependency closure in install order (every
/// package after the packages it depends on), and the mount to read it from: `--mount`, or
/// the repofs mount of this repository that shows the plan. `system`: what the target root's
/// dpkg or pacman already installed, which meets dependencies as it is.
fn plan_and_mount(
    cat: &Catalog,
    packages: &[String],
    mount: Option<PathBuf>,
    system: Vec<SystemPkg>,
) -> anyhow::Result<(Vec<PackageRow>, PathBuf)> {
    let requests = packages
        .iter()
        .map(|p| p.parse::<Request>())
        .collect::<Result<Vec<_>, _>>()?;
    let options = crate::deps::Options {
        system,
        ..Default::default()
    };
    let plan: Vec<_> = crate::deps::resolve_with(cat, &requests, &options)?
        .into_iter()
        .map(|r| r.package)
        .collect();
    let mount = match mount {
        Some(m) => m,
        None => crate::install::find_mount(cat, &plan)?,
    };
    Ok((plan, mount))
}

/// `repofs remove`'s flags.
#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The root to remove from (`--from` is an older spelling).
    #[arg(long, alias = "from", value_name = "ROOT")]
    pub into: PathBuf,
    /// Deadline for each package script.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub script_timeout: Duration,
    #[arg(required = true, value_name = "PKG")]
    pub packages: Vec<String>,
}

/// `remove` works on the target root only: no repository is opened.
pub fn remove(args: &RemoveArgs) -> anyhow::Result<ExitCode> {
    let mut o = stdout();
    let report = crate::install::remove(&args.into, &args.packages, args.script_timeout)?;
    for p in &report.removed {
        out!(o, "removed {p}");
    }
    for f in &report.saved {
        out!(o, "kept changed file as {f}");
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `repofs installed`'s flags.
#[derive(clap::Args)]
pub struct InstalledArgs {
    #[arg(long)]
    pub json: bool,
    /// The root to list (default "/").
    #[arg(long, value_name = "ROOT")]
    pub into: Option<PathBuf>,
}

/// The receipts in the target root. `state_root_given`: `--root` was on the command line,
/// which once named the target root here; it is the state directory now, so that spelling
/// without `--into` is refused rather than silently listing "/".
pub fn installed(args: &InstalledArgs, state_root_given: bool) -> anyhow::Result<ExitCode> {
    let root = match &args.into {
        Some(root) => root.clone(),
        None if state_root_given => anyhow::bail!(
            "`repofs installed` takes the target root as --into ROOT \
             (--root is the repository's state directory)"
        ),
        None => PathBuf::from("/"),
    };
    let mut o = stdout();
    let (receipts, _) = crate::install::installed(&root)?;
    if args.json {
        json(&mut o, &receipts)?;
    } else {
        for r in receipts {
            out!(
                o,
                "{} {}  {}  {} files",
                r.name,
                r.version,
                r.format,
                crate::install::file_count(&r)
            );
        }
    }
    o.flush()?;
    Ok(ExitCode::SUCCESS)
}
