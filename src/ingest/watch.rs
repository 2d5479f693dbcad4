//! The service loop of `repofsd`: watch the spool, run passes, sleep until something is due.
//!
//! A `notify` watcher (its own thread) and the signal handler feed one channel; the loop only
//! uses events as wake-ups and always rescans, so an overflowed or missed event costs latency,
//! never an upload. Between events it sleeps until the earliest deadline a pass reported
//! (settle or sweep times), and at most `IDLE_RESCAN`, as a safety net.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tracing::{debug, error, info, warn};

use super::pass;
use crate::repo::Repo;

const IDLE_RESCAN: Duration = Duration::from_secs(60);
/// After a failing pass (e.g. the disk is full), back off this long.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);

enum Wake {
    Spool,
    Shutdown,
}

/// Runs until SIGTERM/SIGINT. `ready` is called once the catalog is open and the spool has
/// been caught up (the systemd notification point).
pub fn serve(repo: &mut Repo, ready: impl FnOnce()) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel();
    let spool_tx = tx.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev)
                if ev.kind.is_access()
                    && !matches!(
                        ev.kind,
                        notify::EventKind::Access(notify::event::AccessKind::Close(_))
                    ) => {}
            Ok(_) => {
                let _ = spool_tx.send(Wake::Spool);
            }
            Err(e) => {
                warn!(error = %e, "spool watcher error; rescanning");
                let _ = spool_tx.send(Wake::Spool);
            }
        })?;
    watcher.watch(&repo.layout.spool(), RecursiveMode::Recursive)?;

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    let handle = signals.handle();
    let sig_thread = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            info!(signal = sig, "shutting down");
            let _ = tx.send(Wake::Shutdown);
        }
    });

    let mut ready = Some(ready);
    loop {
        let sleep = match pass(repo) {
            Ok(report) => {
                debug!(
                    accepted = report.accepted.len(),
                    rejected = report.rejected.len(),
                    "pass done"
                );
                report
                    .next_wake
                    .map(|t| {
                        t.duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(IDLE_RESCAN)
                    .min(IDLE_RESCAN)
            }
            Err(e) => {
                error!(error = %e, "spool pass failed");
                ERROR_BACKOFF
            }
        };
        if let Some(r) = ready.take() {
            r();
        }
        match rx.recv_timeout(sleep) {
            Ok(Wake::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
                break;
            }
            Ok(Wake::Spool) | Err(RecvTimeoutError::Timeout) => {}
        }
        // Coalesce a burst of events (a large upload produces thousands) into one pass.
        loop {
            match rx.try_recv() {
                Ok(Wake::Shutdown) => {
                    handle.close();
                    let _ = sig_thread.join();
                    return Ok(());
                }
                Ok(Wake::Spool) => {}
                Err(_) => break,
            }
        }
    }
    handle.close();
    let _ = sig_thread.join();
    Ok(())
}
