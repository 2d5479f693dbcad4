//! The service loop of `repofsd`: watch the spool, run passes, sleep until something is due.
//!
//! A `notify` watcher (its own thread), the control socket (the mount reporting closed files)
//! and the signal handler feed one channel; the loop only uses spool events as wake-ups and
//! always rescans, so an overflowed or missed event costs latency, never an upload. Between
//! events it sleeps until the earliest deadline a pass reported (settle or sweep times), and at
//! most `IDLE_RESCAN`, as a safety net.
//!
//! A new directory is the one place events are missed by design: `notify` hands us its event
//! first and watches the directory only afterwards, so files made in it in between (`mkdir -p
//! a/b && cp x y a/b/`) raise nothing. After a directory appears, the loop therefore rescans
//! every `NEW_DIR_RESCAN` for `NEW_DIR_WINDOW`, which bounds that latency to a second.

use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use tracing::{debug, error, info, warn};

use super::control::{ClosedRequest, Reply};
use super::{on_closed, pass_with, CloseVerdict, ClosedGroups};
use crate::control;
use crate::repo::Repo;

const IDLE_RESCAN: Duration = Duration::from_secs(60);
/// After a failing pass (e.g. the disk is full), back off this long.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// How often, and for how long after a directory appeared, the loop rescans unprompted.
const NEW_DIR_RESCAN: Duration = Duration::from_secs(1);
const NEW_DIR_WINDOW: Duration = Duration::from_secs(10);

enum Wake {
    Spool,
    /// A directory was made or moved in: its first files may raise no event.
    NewDir,
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
            Ok(ev) if new_dir(&ev.kind) => {
                let _ = spool_tx.send(Wake::NewDir);
            }
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
    let mut new_dir_until: Option<Instant> = None;
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
        let sleep = match new_dir_until {
            Some(t) if Instant::now() < t => sleep.min(NEW_DIR_RESCAN),
            _ => sleep,
        };
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
                Wake::NewDir => new_dir_until = Some(Instant::now() + NEW_DIR_WINDOW),
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

/// A directory made, or anything renamed (`notify` cannot always tell a directory's rename).
fn new_dir(kind: &notify::EventKind) -> bool {
    use notify::event::{CreateKind, ModifyKind};
    use notify::EventKind::{Create, Modify};
    matches!(
        kind,
        Create(CreateKind::Folder) | Modify(ModifyKind::Name(_))
    )
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
