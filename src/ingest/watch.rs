//! The service loop of `repofsd`: watch the spool, run passes, sleep until something is due.
//!
//! A `notify` watcher (its own thread), the control socket (the mount reporting closed files)
//! and the signal handler feed one channel; the loop only uses spool events as wake-ups and
//! always rescans, so an overflowed or missed event costs latency, never an upload. Between
//! events it sleeps until the earliest deadline a pass reported (settle or sweep times), and at
//! most `IDLE_RESCAN`, as a safety net.

use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tracing::{debug, error, info, warn};

use super::control::{ClosedRequest, Reply};
use super::{on_closed, pass_with, CloseVerdict, ClosedGroups};
use crate::control;
use crate::repo::Repo;

const IDLE_RESCAN: Duration = Duration::from_secs(60);
/// After a failing pass (e.g. the disk is full), back off this long.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);

enum Wake {
    Spool,
    Closed(ClosedRequest, Sender<Reply>),
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

    let listener = control::bind(&repo.layout.control_socket())?;
    let control_tx = tx.clone();
    let close_wait = repo.config.mount.close_wait;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(s) => {
                    let tx = control_tx.clone();
                    std::thread::spawn(move || serve_control(s, tx, close_wait));
                }
                Err(e) => warn!(error = %e, "control socket accept failed"),
            }
        }
    });

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

    let mut closed = ClosedGroups::new();
    let mut ready = Some(ready);
    'serve: loop {
        let sleep = match pass_with(repo, &mut closed) {
            Ok(report) => {
                debug!(
                    accepted = report.accepted.len(),
                    rejected = report.rejected.len(),
                    "pass done"
                );
                for label in report
                    .accepted
                    .iter()
                    .chain(report.rejected.iter().map(|r| &r.0))
                {
                    closed.remove(label);
                }
                let horizon = SystemTime::now() - repo.config.ingest.sweep_after;
                closed.expire(horizon);
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
        let mut wake = match rx.recv_timeout(sleep) {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Wake::Shutdown),
        };
        // Handle a burst (a large upload produces thousands of events) before the next pass.
        while let Some(w) = wake.take().or_else(|| rx.try_recv().ok()) {
            match w {
                Wake::Shutdown => break 'serve,
                Wake::Spool => {}
                Wake::Closed(req, reply) => {
                    let verdict = on_closed(repo, &mut closed, &req.path, &req.open)
                        .unwrap_or_else(|e| {
                            warn!(path = %req.path, error = %e, "processing a closed upload failed; will retry");
                            CloseVerdict::Pending(format!("internal error, will retry: {e}"))
                        });
                    let _ = reply.send(Reply::from_verdict(&verdict));
                }
            }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    handle.close();
    let _ = sig_thread.join();
    Ok(())
}

/// One connection from the mount: one request, one reply, each bounded in time.
fn serve_control(s: UnixStream, tx: Sender<Wake>, wait: Duration) {
    let req = match control::read_request::<ClosedRequest>(&s, "fetch") {
        Ok(control::Incoming::Ours(r)) => r,
        // Fetches are a mirror's (`fetch::lazy::serve_requests`); a primary holds everything.
        Ok(control::Incoming::Theirs) => {
            let reply = control::Refusal {
                reason: Some("not-mirror".into()),
                error: Some("this repository is not a mirror".into()),
            };
            if let Err(e) = control::write_reply(&s, &reply) {
                debug!(error = %e, "mount went away before the fetch finished");
            }
            return;
        }
        Err(e) => {
            warn!(error = %e, "bad control request");
            return;
        }
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    if tx.send(Wake::Closed(req, reply_tx)).is_err() {
        return;
    }
    if let Ok(reply) = reply_rx.recv_timeout(wait) {
        if let Err(e) = control::write_reply(&s, &reply) {
            debug!(error = %e, "mount went away before the verdict");
        }
    }
}
