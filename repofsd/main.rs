//! `repofsd`: the watcher service. Verifies and publishes uploads arriving in the spool.

use std::process::ExitCode;

use clap::Parser;
use repofs::cli::{self, Common};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "repofsd",
    version,
    about = "repofs watcher service: verify and publish uploads"
)]
struct Args {
    #[command(flatten)]
    common: Common,
    /// Process what is in the spool now, then exit (cron mode).
    #[arg(long)]
    once: bool,
    /// Also serve the filesystem at this mount point (one-host setup).
    #[arg(long, value_name = "MOUNTPOINT", conflicts_with = "once")]
    mount: Option<std::path::PathBuf>,
    /// Serve the HTTP endpoint (BitTorrent tracker at /announce) here, and seed every
    /// published file (also `[distribution] listen` in the config).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "once")]
    listen: Option<std::net::SocketAddr>,
    /// A tracker every torrent names (repeatable; also `[distribution] trackers`).
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// On a mirror: bound on the cache of fetched objects, in bytes (also `[mirror]
    /// cache_size`).
    #[arg(long, value_name = "BYTES")]
    cache_size: Option<u64>,
}

fn main() -> ExitCode {
    cli::init_logging();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let mut repo = args.common.open()?;
    let _writer = repo.lock_writer()?;
    let dist = &mut repo.config.distribution;
    dist.listen = args.listen.or(dist.listen);
    dist.trackers.extend(args.trackers.iter().cloned());
    if let Some(n) = args.cache_size {
        repo.config.mirror.cache_size = n;
    }
    // A mirror's catalog names its upstream; its content comes from the swarm.
    let mirror = repo.catalog.setting("upstream")?.is_some();
    repo.recover()?;
    let key = repofs::keys::ensure_repo_key(&repo.layout.repo_key())?;
    info!(fingerprint = %key, "repository key");
    // The mount (another process) puts .torrent files together: it reads the trackers here.
    // A mirror keeps its upstream's (its torrents are the upstream's).
    if !mirror {
        let trackers = repofs::fetch::trackers(&repo.config.distribution);
        repo.catalog
            .set_setting("trackers", &serde_json::to_string(&trackers)?)?;
        if let Err(e) = repo.backfill_torrents() {
            tracing::warn!(error = %format!("{e:#}"), "could not make the torrents of older files");
        }
    }
    if args.once {
        let report = repofs::ingest::drain(&mut repo)?;
        info!(
            accepted = report.accepted.len(),
            rejected = report.rejected.len(),
            "spool processed"
        );
        return Ok(());
    }
    let mounted = match &args.mount {
        Some(mp) => Some(repofs::vfs::mount::mount(
            repo.layout.clone(),
            repo.config.clone(),
            mp,
        )?),
        None => None,
    };
    let distribution = match repo.config.distribution.listen {
        Some(_) => Some(repofs::fetch::Distribution::start(
            &repo.layout,
            &repo.config.distribution,
        )?),
        None => None,
    };
    let fetcher = match mirror {
        true => {
            let peers = repo
                .config
                .distribution
                .peer_listen
                .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
            Some(repofs::fetch::lazy::Fetcher::start(
                &repo.layout,
                &repo.config,
                peers,
            )?)
        }
        false => None,
    };
    let handler = fetcher.clone().map(|f| {
        std::sync::Arc::new(move |r: &repofs::ingest::control::FetchRequest| f.handle(r))
            as repofs::ingest::watch::FetchHandler
    });
    info!(root = %repo.layout.root.display(), "watching {}", repo.layout.spool().display());
    let served = repofs::ingest::watch::serve_with(&mut repo, handler, || {
        info!("ready");
        // Type=notify: the unit becomes active only now, with the catalog open and the spool
        // caught up. Outside systemd there is no socket and this does nothing.
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    });
    if let Some(d) = distribution {
        d.stop();
    }
    if let Some(f) = fetcher {
        f.stop();
    }
    if let Some(m) = mounted {
        m.unmount()?;
    }
    served
}
