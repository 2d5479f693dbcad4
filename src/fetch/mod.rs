//! Distribution: seeding, the swarm, and the `--listen` endpoint's own routes.
//!
//! `seed` serves every published file from the store with librqbit (the torrents themselves
//! are `crate::torrent`'s), and `tracker` answers announces at `/announce` for repositories
//! that name no tracker of their own. `index` keeps the signed index mirrors sync (and syncs
//! it, on a mirror). On a mirror, `objects` reads content through the cache and `lazy` fetches
//! what is missing, asked over the control socket (`protocol`); `stalls` keeps the kernel's
//! follow-up reads of a timed-out read from waiting the deadline again. Each part exports its routes;
//! repofsd composes the endpoint's router, with the views' `dists/`, and hands it to `serve`.

pub mod cache;
pub mod client;
pub mod index;
pub mod lazy;
pub mod objects;
pub mod origin;
pub mod protocol;
pub mod seed;
mod stalls;
pub mod status;
mod swarm;
pub mod tracker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tracing::info;

use crate::catalog::Catalog;
use crate::config::{DistributionConfig, Layout};
use crate::store::Store;

/// The trackers torrents name: the configured ones, or else this repository's own endpoint.
pub fn trackers(config: &DistributionConfig) -> Vec<String> {
    match (&config.trackers[..], config.listen) {
        ([], Some(addr)) => vec![format!("http://{addr}/announce")],
        (t, _) => t.to_vec(),
    }
}

/// The endpoints torrents name as web seeds (BEP 19): the configured public URL, or else
/// this repository's own endpoint at `listen`.
pub fn web_seeds(config: &DistributionConfig) -> Vec<String> {
    match (&config.public_url, config.listen) {
        (Some(url), _) => vec![url.trim_end_matches('/').to_string()],
        (None, Some(addr)) => vec![format!("http://{addr}")],
        (None, None) => Vec::new(),
    }
}

/// The `--listen` endpoint, served on a runtime of its own until `stop` (or drop): the
/// seeder's and a mirror's sync work run on theirs, so neither's tasks wait behind the other's.
pub struct Endpoint {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Takes the `--listen` address first, before the seeder or the fetcher bind their peer
/// ports: one picked by the kernel could otherwise be the very port asked for.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `app` on `listener` (from `bind`; peers' addresses reach the handlers).
pub fn serve_http(listener: std::net::TcpListener, app: axum::Router) -> anyhow::Result<Endpoint> {
    use axum::serve::ListenerExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("http")
        .build()?;
    let listener = {
        let _in = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let bound = listener.local_addr()?;
    // No Nagle: hyper writes a response's head and its body in separate writes, and a small
    // body then waited for the client's delayed ACK of the head, ~40 ms per request on a
    // keep-alive connection (bench/RESULTS.md, "many clients").
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP endpoint failed");
        }
    });
    Ok(Endpoint {
        addr: bound,
        stop: Some(tx),
        runtime: Some(runtime),
    })
}

impl Endpoint {
    /// Stops accepting, lets answers in progress finish for a moment, and returns.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Seeding, the index publisher and the HTTP endpoint, running until `stop`.
pub struct Distribution {
    seeder: Arc<seed::Seeder>,
    tracker: Arc<tracker::Tracker>,
    stop: Arc<AtomicBool>,
    follower: Option<std::thread::JoinHandle<()>>,
    publisher: Option<std::thread::JoinHandle<()>>,
    http: Option<Endpoint>,
    pub http_addr: Option<SocketAddr>,
}

impl Distribution {
    /// Starts seeding and the index publisher. The HTTP endpoint is served by `serve`, with a
    /// router the caller composes (repofsd: this tracker's, the index's and the views' routes).
    pub fn start(layout: &Layout, config: &DistributionConfig) -> anyhow::Result<Distribution> {
        let peer_listen = config
            .peer_listen
            .or_else(|| config.listen.map(|a| SocketAddr::new(a.ip(), 0)))
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let seeder = Arc::new(seed::Seeder::start(
            &layout.root.join("seeder"),
            peer_listen,
            config.recheck_store,
            config.trackers.clone(),
            config.live_idle,
            Catalog::open(&layout.catalog())?,
            Store::open(&layout.store())?,
        )?);
        let tracker = Arc::new(
            tracker::Tracker::new(config.announce_interval)
                .with_catalog(Catalog::open(&layout.catalog())?),
        );
        *crate::sync::write(&tracker.seeder) = seeder.addr();
        // Weak: `stop` takes the seeder back out of its Arc.
        let weak = Arc::downgrade(&seeder);
        tracker.on_leecher(Box::new(move |hash, peer| {
            if let Some(s) = weak.upgrade() {
                s.add_peer(hash, peer);
            }
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let stop = stop.clone();
            let (catalog, key) = (layout.catalog(), layout.repo_key());
            let dir = index::IndexDir::new(&layout.root);
            std::thread::Builder::new()
                .name("index-publish".into())
                .spawn(move || {
                    if let Err(e) = index::follow(&catalog, &dir, &key, &stop) {
                        tracing::error!(error = %format!("{e:#}"), "index publisher stopped");
                    }
                })?
        };
        let follower = {
            let (seeder, stop, tracker) = (seeder.clone(), stop.clone(), tracker.clone());
            std::thread::Builder::new()
                .name("seed-follow".into())
                .spawn(move || seeder.follow(&tracker, &stop))?
        };
        Ok(Distribution {
            seeder,
            tracker,
            stop,
            follower: Some(follower),
            publisher: Some(publisher),
            http: None,
            http_addr: None,
        })
    }

    /// The seeder's connected peers, as a gauge the endpoint reads (`/metrics`).
    pub fn peer_gauge(&self) -> Arc<dyn Fn() -> u64 + Send + Sync> {
        let weak = Arc::downgrade(&self.seeder);
        Arc::new(move || weak.upgrade().map_or(0, |s| s.peers()))
    }

    /// The tracker the seeder reports to, for its routes (`tracker::routes`).
    pub fn tracker(&self) -> Arc<tracker::Tracker> {
        self.tracker.clone()
    }

    /// Serves `app`, the endpoint's whole router, on `listener` (`bind`) until `stop`.
    pub fn serve(
        &mut self,
        listener: std::net::TcpListener,
        app: axum::Router,
    ) -> anyhow::Result<SocketAddr> {
        let endpoint = serve_http(listener, app)?;
        let addr = endpoint.addr;
        self.http_addr = Some(addr);
        self.http = Some(endpoint);
        info!(addr = ?self.http_addr, "serving /announce, /scrape, the index and dists/");
        Ok(addr)
    }

    /// Stops the endpoint, then seeding; returns once both have.
    pub fn stop(mut self) {
        if let Some(endpoint) = self.http.take() {
            endpoint.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
        if let Some(p) = self.publisher.take() {
            let _ = p.join();
        }
        match Arc::try_unwrap(self.seeder) {
            Ok(seeder) => seeder.stop(),
            Err(_) => tracing::warn!("seeder still shared at stop"),
        }
    }
}
