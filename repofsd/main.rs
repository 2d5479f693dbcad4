//! `repofsd`: the watcher service. Verifies and publishes uploads arriving in the spool.

use std::process::ExitCode;
use std::sync::Arc;

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
    /// Mirror mode: follow this upstream's signed index (its `--listen` endpoint, e.g.
    /// http://HOST:PORT) and take no uploads (also `[mirror] upstream`).
    #[arg(long, value_name = "URL", conflicts_with = "once")]
    upstream: Option<String>,
    /// The upstream repository's public key, pinned (`repofs keys export-repo`; also
    /// `[mirror] repo_key`).
    #[arg(long, value_name = "FILE.asc")]
    repo_key: Option<std::path::PathBuf>,
    /// Seconds between index syncs (default 30; also `[mirror] poll`).
    #[arg(long, value_name = "SECS")]
    poll: Option<u64>,
    /// On a mirror: bound on the cache of fetched objects, in bytes (also `[mirror]
    /// cache_size`).
    #[arg(long, value_name = "BYTES")]
    cache_size: Option<u64>,
    /// On a mirror: fetch what matches this glob below dists/ as soon as it is published and
    /// never evict it (repeatable; `*` for everything; added to `[mirror] hold`).
    #[arg(long = "hold", value_name = "PATTERN")]
    hold: Vec<String>,
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
    let mirror = &mut repo.config.mirror;
    mirror.upstream = args.upstream.clone().or(mirror.upstream.take());
    mirror.repo_key = args.repo_key.clone().or(mirror.repo_key.take());
    if let Some(secs) = args.poll {
        mirror.poll = std::time::Duration::from_secs(secs.max(1));
    }
    if let Some(n) = args.cache_size {
        mirror.cache_size = n;
    }
    mirror.hold.extend(args.hold.iter().cloned());
    if repo.config.mirror.upstream.is_some() {
        return run_mirror(args, repo);
    }
    let dist = &mut repo.config.distribution;
    dist.listen = args.listen.or(dist.listen);
    dist.trackers.extend(args.trackers.iter().cloned());
    repo.recover()?;
    // A primary (perhaps a mirror promoted): the mount must show incoming/ again.
    repo.catalog.remove_setting("upstream")?;
    let key = repofs::keys::ensure_repo_key(&repo.layout.repo_key())?;
    info!(fingerprint = %key, "repository key");
    // The mount (another process) puts .torrent files together: it reads the trackers here.
    let trackers = repofs::fetch::trackers(&repo.config.distribution);
    repo.catalog
        .set_setting("trackers", &serde_json::to_string(&trackers)?)?;
    let web_seeds = repofs::fetch::web_seeds(&repo.config.distribution);
    repo.catalog
        .set_setting("web_seeds", &serde_json::to_string(&web_seeds)?)?;
    if let Err(e) = repo.backfill_torrents() {
        tracing::warn!(error = %format!("{e:#}"), "could not make the torrents of older files");
    }
    if let Err(e) = repofs::pkgmeta::backfill(&mut repo) {
        tracing::warn!(error = %format!("{e:#}"), "could not make the apt/pacman metadata of older directories");
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
    let mounted = mount_if_asked(args, &repo)?;
    let listener = repo.config.distribution.listen.map(repofs::fetch::bind);
    let distribution = match listener.transpose()? {
        Some(listener) => {
            let mut d =
                repofs::fetch::Distribution::start(&repo.layout, &repo.config.distribution)?;
            d.serve(
                listener,
                http_routes(
                    &repo.layout,
                    &repo.config,
                    Some(d.tracker()),
                    Some(d.peer_gauge()),
                )?,
            )?;
            Some(d)
        }
        None => None,
    };
    info!(root = %repo.layout.root.display(), "watching {}", repo.layout.spool().display());
    let served = repofs::ingest::watch::serve(&mut repo, || {
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
    if let Some(m) = mounted {
        m.unmount()?;
    }
    served
}

/// Mirror mode: no spool, no ingest, no signing; the catalog follows the upstream's index.
fn run_mirror(args: &Args, mut repo: repofs::repo::Repo) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = repo.config.mirror.clone();
    let url = config.upstream.unwrap_or_default();
    let key_path = config
        .repo_key
        .context("a mirror needs the upstream's repository key: --repo-key FILE.asc")?;
    let repo_key =
        std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let listen = args.listen.or(repo.config.distribution.listen);
    // Before the mount opens the catalog: that is how it knows to read through the cache.
    repo.catalog.set_setting("upstream", &url)?;
    let listener = listen.map(repofs::fetch::bind).transpose()?;
    // Content comes from the swarm into the cache, on the mount's request.
    let peers = repo
        .config
        .distribution
        .peer_listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let fetcher = repofs::fetch::lazy::Fetcher::start(&repo.layout, &repo.config, peers)?;
    fetcher.serve_requests(&repo.layout.control_socket())?;
    let mounted = mount_if_asked(args, &repo)?;
    info!(root = %repo.layout.root.display(), upstream = %url, "mirroring");
    let upstream = repofs::fetch::index::mirror::Upstream {
        url,
        repo_key,
        poll: config.poll,
    };
    let layout = repo.layout.clone();
    let http = match listener {
        Some(l) => Some((l, http_routes(&layout, &repo.config, None, None)?)),
        None => None,
    };
    let served =
        repofs::fetch::index::mirror::serve(&layout, &mut repo.catalog, upstream, http, || {
            info!("ready");
            if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
                tracing::warn!(error = %e, "could not notify systemd");
            }
        });
    fetcher.stop();
    if let Some(m) = mounted {
        m.unmount()?;
    }
    served
}

/// The filesystem as well, in this process, when `--mount` asks for it (one-host setup).
fn mount_if_asked(
    args: &Args,
    repo: &repofs::repo::Repo,
) -> anyhow::Result<Option<repofs::vfs::mount::Mounted>> {
    args.mount
        .as_ref()
        .map(|mp| repofs::vfs::mount::mount(repo.layout.clone(), repo.config.clone(), mp))
        .transpose()
}

/// The `--listen` endpoint's one router, composed here because its parts live in different
/// layers: the index and torrents and a primary's tracker (fetch), and `dists/`, `/status` and
/// `/metrics` (the views; `peers`, a primary's seeder).
fn http_routes(
    layout: &repofs::Layout,
    config: &repofs::Config,
    tracker: Option<Arc<repofs::fetch::tracker::Tracker>>,
    peers: Option<repofs::vfs::http::metrics::PeerGauge>,
) -> anyhow::Result<axum::Router> {
    let mut app = repofs::fetch::index::http::routes(layout)
        .merge(repofs::vfs::http::routes(layout, config)?)
        .merge(repofs::vfs::http::metrics::routes(layout, peers));
    if let Some(t) = tracker {
        app = app.merge(repofs::fetch::tracker::routes(t));
    }
    Ok(app)
}
