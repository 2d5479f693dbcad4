//! librqbit -> librqbit on loopback with no repofs code in the path: the ceiling the mirror's
//! sequential read can reach (bench/bt-ceiling.sh runs it; not a test).
//!
//!   bt-ceiling seed TORRENT DIR PORT READY  seeds TORRENT's file from DIR until killed; writes
//!                                           READY once it serves
//!   bt-ceiling get TORRENT PEER OUT_DIR     downloads it from PEER only (`-`: from the peers
//!                                           the torrent's trackers name); prints the seconds taken
//!
//! Both use librqbit's default file storage and the same session options as the mirror (no
//! DHT, no trackers, no local discovery). Every wait has a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use librqbit::{
    AddTorrent, AddTorrentOptions, AddTorrentResponse, ListenerOptions, Session, SessionOptions,
};

const DEADLINE: Duration = Duration::from_secs(600);

fn opts(listen: Option<SocketAddr>, trackers: bool) -> SessionOptions {
    SessionOptions {
        dht: None,
        disable_trackers: !trackers,
        disable_local_service_discovery: true,
        persistence: None,
        listen: listen.map(|a| ListenerOptions {
            listen_addr: a,
            announce_port: Some(a.port()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn seed(torrent: &Path, dir: &Path, port: u16, ready: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(torrent)?;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let session =
        Session::new_with_opts(dir.join(".bt-ceiling-seed"), opts(Some(listen), false)).await?;
    complete(
        &session,
        bytes,
        AddTorrentOptions {
            overwrite: true,
            output_folder: Some(dir.to_string_lossy().into_owned()),
            disable_trackers: true,
            ..Default::default()
        },
        "seeder's initial check",
    )
    .await?;
    std::fs::write(ready, b"")?;
    eprintln!("seeding from {} on {listen}", dir.display());
    tokio::time::sleep(DEADLINE).await;
    Ok(())
}

/// Adds the torrent and waits, within the deadline, until it is complete (a seeder: its
/// initial check; a leecher: its download).
async fn complete(
    session: &std::sync::Arc<Session>,
    bytes: Vec<u8>,
    options: AddTorrentOptions,
    what: &str,
) -> anyhow::Result<std::sync::Arc<librqbit::ManagedTorrent>> {
    let added = session
        .add_torrent(AddTorrent::from_bytes(bytes), Some(options))
        .await?;
    let AddTorrentResponse::Added(_, handle) = added else {
        bail!("torrent not added")
    };
    tokio::time::timeout(DEADLINE, handle.wait_until_completed())
        .await
        .with_context(|| format!("{what} timed out"))??;
    Ok(handle)
}

async fn get(torrent: &Path, peer: Option<SocketAddr>, out: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(torrent)?;
    let session =
        Session::new_with_opts(out.join(".bt-ceiling-get"), opts(None, peer.is_none())).await?;
    let t0 = Instant::now();
    let handle = complete(
        &session,
        bytes,
        AddTorrentOptions {
            overwrite: true,
            output_folder: Some(out.to_string_lossy().into_owned()),
            disable_trackers: peer.is_some(),
            initial_peers: peer.map(|p| vec![p]),
            ..Default::default()
        },
        "download",
    )
    .await?;
    let secs = t0.elapsed().as_secs_f64();
    let total = handle.stats().total_bytes;
    eprintln!(
        "downloaded {total} bytes in {secs:.3} s ({:.0} MB/s)",
        total as f64 / secs / 1e6
    );
    println!("{secs:.3}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match a.get(1).map(String::as_str) {
        Some("seed") if a.len() == 6 => rt.block_on(seed(
            Path::new(&a[2]),
            Path::new(&a[3]),
            a[4].parse()?,
            Path::new(&a[5]),
        )),
        Some("get") if a.len() == 5 => {
            let peer = match a[3].as_str() {
                "-" => None,
                p => Some(p.parse()?),
            };
            rt.block_on(get(Path::new(&a[2]), peer, Path::new(&a[4])))
        }
        _ => bail!("usage: bt-ceiling seed TORRENT DIR PORT READY | get TORRENT PEER OUT_DIR"),
    }
}
