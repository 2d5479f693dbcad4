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
    repo.recover()?;
    if args.once {
        let report = repofs::ingest::drain(&mut repo)?;
        info!(
            accepted = report.accepted.len(),
            rejected = report.rejected.len(),
            "spool processed"
        );
        return Ok(());
    }
    info!(root = %repo.layout.root.display(), "watching {}", repo.layout.spool().display());
    repofs::ingest::watch::serve(&mut repo, || {
        info!("ready");
        // Type=notify: the unit becomes active only now, with the catalog open and the spool
        // caught up. Outside systemd there is no socket and this does nothing.
        if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    })
}
