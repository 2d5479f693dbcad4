//! The signed index: how a mirror learns everything the mount shows, at a cost in proportion
//! to what changed.
//!
//! Every publication transaction that changes the published view gets the next generation and
//! logs its changes (`catalog`, tables `generations`/`changes`). After commit, `publish`
//! materializes each generation as a *delta*: a small SQLite database with the catalog's own
//! schema holding the full rows of what changed (files, package metadata, entries, seek points,
//! torrents, derived objects and frames, symlinks; a touched directory's large apt/pacman
//! metadata only by hash, made again on the mirror: `mirror::meta`) and naming the previous
//! delta's hash, stored
//! zstd-compressed and content-addressed in `ROOT/index/objects/SHA256`. Now and then (and at
//! first) it also writes a full *snapshot*, so a mirror starting from empty does not replay
//! every delta. One small *root* (`ROOT/index/root.asc`), clear-signed with the repository key,
//! names the generation, its time and expiry, the head delta and the newest snapshot by hash;
//! everything else is fetched by hash and checked (CVMFS's manifest, apt's InRelease+by-hash).
//!
//! A mirror (`mirror`) verifies the root against the pinned key, refuses rollbacks, walks the
//! delta chain back to its own generation, and applies everything in one transaction.
//! The objects and root it verified are kept in its own `ROOT/index/`, so it serves the same
//! index to mirrors below it (`http`).

pub mod http;
pub mod mirror;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, ReplicaMeta};

/// A snapshot is written when the newest one is this many generations old: a mirror never
/// replays more deltas than this.
pub const SNAPSHOT_EVERY: i64 = 1000;
/// How long a signed root is valid: a mirror refuses an older one (freeze attacks).
pub const ROOT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The root is signed again when it is this old, even without a new generation.
pub const ROOT_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Largest root a mirror reads: it is a few hundred bytes.
pub const MAX_ROOT: u64 = 64 << 10;
/// Format of the root body.
pub const ROOT_FORMAT: u32 = 1;

/// The body of the signed root (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    pub format: u32,
    pub generation: i64,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    /// The delta of `generation` (None while nothing was ever published).
    pub head: Option<ObjectRef>,
    pub snapshot: ObjectRef,
    /// The trackers the primary's .torrent files name (setting `trackers`): they can change
    /// at a restart without a new generation, and a mirror's .torrent files must match.
    #[serde(default)]
    pub trackers: Vec<String>,
    /// The endpoints that serve objects by hash (setting `web_seeds`): the .torrent files'
    /// BEP 19 web seeds, and where a mirror's reads go when the swarm cannot serve them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web_seeds: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub generation: i64,
    pub sha256: String,
}

/// `ROOT/index`: the signed root and the content-addressed objects, as served over HTTP.
#[derive(Debug, Clone)]
pub struct IndexDir {
    pub dir: PathBuf,
}

pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl IndexDir {
    pub fn new(root: &Path) -> IndexDir {
        IndexDir {
            dir: root.join("index"),
        }
    }

    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(self.dir.join("objects"))?;
        fs::create_dir_all(self.tmp())
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.join("root.asc")
    }

    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Where object `sha256` lives; None for anything that is not a sha256 in hex (so a
    /// request path can never name another file).
    pub fn object_path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256_hex(sha256).then(|| self.dir.join("objects").join(sha256))
    }

    /// A fresh temporary path in `tmp/` (removed by the caller or at the next start).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        self.tmp().join(format!(
            "{what}.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Compresses a replica database into an object; returns its hash.
    pub fn put_replica(&self, db: &Path) -> anyhow::Result<String> {
        let tmp = self.temp_path("object");
        let mut out = HashingWriter {
            inner: fs::File::create(&tmp)?,
            hash: Sha256::new(),
        };
        zstd::stream::copy_encode(fs::File::open(db)?, &mut out, 3)?;
        out.inner.sync_all()?;
        let sha = hex::encode(out.hash.finalize());
        let dest = self
            .object_path(&sha)
            .ok_or_else(|| anyhow::anyhow!("bad object hash"))?;
        fs::rename(&tmp, &dest)?;
        Ok(sha)
    }

    /// Writes the signed root atomically (readers of the HTTP endpoint see old or new).
    pub fn put_root(&self, signed: &[u8]) -> io::Result<()> {
        let tmp = self.temp_path("root");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(signed)?;
        f.sync_all()?;
        fs::rename(&tmp, self.root_path())
    }

    /// Removes leftovers of an interrupted run.
    pub fn clean_tmp(&self) -> io::Result<()> {
        for e in fs::read_dir(self.tmp())? {
            let _ = fs::remove_file(e?.path());
        }
        Ok(())
    }
}

struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Removes a temporary database and whatever SQLite kept beside it.
pub fn remove_db(path: &Path) {
    let _ = fs::remove_file(path);
    for side in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(side);
        let _ = fs::remove_file(PathBuf::from(p));
    }
}

/// What a download unpacked while it streams may grow to before its hash has checked: far
/// above what a catalog compresses by (about 48:1 at 100,000 packages). Beyond it, bytes that
/// are no snapshot could fill the disk before their hash refuses them, so the streaming
/// unpack stops and the object is unpacked once it has checked.
const STREAMED_RATIO: u64 = 256;
const STREAMED_SLACK: u64 = 64 << 20;

/// Unpacks a download's chunks into `dest` as they arrive (`replica`), stopping once the
/// output outgrows what a snapshot of the bytes received so far could unpack to.
pub fn unpack_streamed(
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    dest: &Path,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let received = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut unpacked = zstd::stream::read::Decoder::new(Chunks::new(rx, received.clone()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(dest)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = unpacked.read(&mut buf)?;
        if n == 0 {
            return out.flush();
        }
        written += n as u64;
        if written > STREAMED_SLACK + STREAMED_RATIO * received.get() {
            return Err(std::io::Error::other(
                "unpacks to more than a snapshot would",
            ));
        }
        out.write_all(&buf[..n])?;
    }
}

/// The chunks of a download as one stream, for the unpacker's thread; counts the bytes
/// received into `received`.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
    received: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Chunks {
    fn new(
        rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
        received: std::rc::Rc<std::cell::Cell<u64>>,
    ) -> Chunks {
        Chunks {
            rx,
            chunk: Vec::new(),
            at: 0,
            received,
        }
    }
}

impl std::io::Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    self.received.set(self.received.get() + c.len() as u64);
                    (self.chunk, self.at) = (c, 0);
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Decompresses a replica object (its bytes from `src`) into a database file at `dest`: a
/// scratch copy (the object is what is kept), not synced here — at 100,000 packages that was
/// a flush of ~500 MB before the apply could start; a snapshot that becomes the catalog is
/// synced by `catalog::adopt`, while its keys are checked. Written in large blocks.
pub fn unpack_replica(src: impl io::Read, dest: &Path) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, fs::File::create(dest)?);
    zstd::stream::copy_decode(src, &mut out)?;
    out.flush()
}

/// The primary's side: materializes the deltas of new generations (oldest first, each naming
/// the one before), a snapshot when due, and signs a new root when anything changed or the
/// current one is getting old. Returns the root's generation when it signed a new root.
/// Catching up on many generations checks `stop` between deltas: a SIGTERM does not wait for
/// the whole backlog (it took minutes for 10,000), which the next start takes up where it was.
pub fn publish(
    catalog: &mut Catalog,
    dir: &IndexDir,
    repo_key: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<Option<i64>> {
    for g in catalog.generations_without_delta()? {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let prev = match g {
            1 => None,
            _ => Some(
                catalog
                    .delta_of(g - 1)?
                    .with_context(|| format!("generation {} has no delta", g - 1))?,
            ),
        };
        let meta = ReplicaMeta {
            from: g - 1,
            to: g,
            prev,
            snapshot: false,
        };
        let sha = materialize(catalog, dir, &meta)?;
        catalog.set_delta(g, &sha)?;
        tracing::info!(generation = g, delta = %sha, "index delta");
    }
    let head = catalog.head_delta()?;
    let head_gen = head.as_ref().map_or(0, |h| h.0);
    let snapshot = match catalog.latest_snapshot()? {
        Some((s, sha)) if head_gen - s < SNAPSHOT_EVERY => (s, sha),
        _ => {
            // Rows published after `head_gen` may slip in; applying their delta again later
            // is harmless (replicas only add what is missing).
            let meta = ReplicaMeta {
                from: 0,
                to: head_gen,
                prev: None,
                snapshot: true,
            };
            let sha = materialize(catalog, dir, &meta)?;
            catalog.set_snapshot(head_gen, &sha)?;
            tracing::info!(generation = head_gen, snapshot = %sha, "index snapshot");
            // Only the newest snapshot is named by a root; the one before stays for a mirror
            // that fetched the previous root a moment ago. Older ones are dead weight.
            for (_, old) in catalog.snapshots()?.iter().skip(2) {
                if let Some(p) = dir.object_path(old) {
                    match fs::remove_file(&p) {
                        Ok(()) => tracing::info!(snapshot = %old, "old index snapshot removed"),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            (head_gen, sha)
        }
    };
    let now = crate::time::now();
    let wanted_head = head.map(|(generation, sha256)| ObjectRef { generation, sha256 });
    let wanted_snapshot = ObjectRef {
        generation: snapshot.0,
        sha256: snapshot.1,
    };
    let list = |key: &str| -> anyhow::Result<Vec<String>> {
        Ok(catalog
            .setting(key)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    };
    let (trackers, web_seeds) = (list("trackers")?, list("web_seeds")?);
    if let Some(current) = current_root(dir) {
        if current.generation == head_gen
            && current.head == wanted_head
            && current.snapshot == wanted_snapshot
            && current.trackers == trackers
            && current.web_seeds == web_seeds
            && now - current.created < ROOT_REFRESH.as_secs() as i64
        {
            return Ok(None);
        }
    }
    let root = Root {
        format: ROOT_FORMAT,
        generation: head_gen,
        created: now,
        expires: now + ROOT_VALIDITY.as_secs() as i64,
        head: wanted_head,
        snapshot: wanted_snapshot,
        trackers,
        web_seeds,
    };
    let mut body = serde_json::to_vec_pretty(&root)?;
    body.push(b'\n');
    let signed = crate::keys::sign_with_repo_key(repo_key, &body)?;
    dir.put_root(&signed)?;
    fs::write(dir.dir.join("root.json"), &body)?;
    tracing::info!(generation = head_gen, "index root signed");
    Ok(Some(head_gen))
}

/// The root this repository last signed (its unsigned copy; only the primary reads it).
fn current_root(dir: &IndexDir) -> Option<Root> {
    let body = fs::read(dir.dir.join("root.json")).ok()?;
    serde_json::from_slice(&body).ok()
}

fn materialize(catalog: &Catalog, dir: &IndexDir, meta: &ReplicaMeta) -> anyhow::Result<String> {
    let db = dir.temp_path("replica");
    let result = catalog
        .export_replica(&db, meta)
        .map_err(anyhow::Error::from)
        .and_then(|()| dir.put_replica(&db));
    remove_db(&db);
    result
}

/// The publisher thread of a primary: follows the catalog (its data version) and keeps the
/// index current until `stop`.
pub fn follow(
    catalog_path: &Path,
    dir: &IndexDir,
    repo_key: &Path,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let mut catalog = Catalog::open(catalog_path)?;
    dir.create()?;
    dir.clean_tmp()?;
    let mut seen = None;
    let mut last_publish = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let version = catalog.data_version()?;
        let refresh_due = last_publish.elapsed() > Duration::from_secs(600);
        if seen != Some(version) || refresh_due {
            match publish(&mut catalog, dir, repo_key, stop) {
                Ok(_) => {
                    // The version from before: publications committed while this one ran
                    // change it again (our own writes never do), so they are not missed.
                    seen = Some(version);
                    last_publish = std::time::Instant::now();
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "could not publish the index");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(bytes: Vec<u8>, dest: &Path) -> io::Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let feeder = std::thread::spawn(move || {
            for c in bytes.chunks(64 << 10) {
                if tx.blocking_send(c.to_vec()).is_err() {
                    return;
                }
            }
        });
        let r = unpack_streamed(rx, dest);
        feeder.join().unwrap();
        r
    }

    #[test]
    fn a_streamed_unpack_stops_where_no_snapshot_would_grow() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("db");
        // 1 GiB of zeros packs into a few KiB: far past any catalog's ratio.
        let bomb = zstd::bulk::compress(&vec![0u8; 1 << 30], 19).unwrap();
        let bound = STREAMED_SLACK + STREAMED_RATIO * bomb.len() as u64 + (1 << 20);
        let err = streamed(bomb, &dest).unwrap_err();
        assert!(err.to_string().contains("more than a snapshot"), "{err}");
        let size = fs::metadata(&dest).unwrap().len();
        assert!(size <= bound && size < 1 << 30, "{size} > {bound}");

        // What a catalog looks like to zstd: compressible, within the ratio.
        let text: Vec<u8> = (0..2_000_000u32)
            .flat_map(|i| format!("pkg-{i}|1.0|{}\n", i % 977).into_bytes())
            .collect();
        let packed = zstd::bulk::compress(&text, 3).unwrap();
        streamed(packed, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), text);
    }
}
