//! Settings and the layout of the state directory (`--root`).
//!
//! Every setting has an embedded default, so `repofsd --root DIR` works with no file at all; a
//! TOML file given with `--config` overrides any subset of them.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default state directory when neither `--root` nor `REPOFS_ROOT` is given.
pub const DEFAULT_ROOT: &str = "/var/lib/repofs";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub ingest: IngestConfig,
    pub limits: Limits,
    pub mount: MountConfig,
    pub distribution: DistributionConfig,
    /// Mirror mode: the upstream, its pinned key, polling, the cache and lazy fetches.
    pub mirror: MirrorConfig,
    /// Local uids that may upload a lone unsigned file through the mount (`[[trusted]]`).
    pub trusted: Vec<Trusted>,
}

#[allow(clippy::derivable_impls)] // explicit: the defaults are documented on each field's type
impl Default for Config {
    fn default() -> Self {
        Config {
            ingest: IngestConfig::default(),
            limits: Limits::default(),
            mount: MountConfig::default(),
            distribution: DistributionConfig::default(),
            mirror: MirrorConfig::default(),
            trusted: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// A complete upload is processed only once its files have not changed for this long, so a
    /// signature that lands while its file is still being written does not cause a false reject.
    /// Uploads over SSH can stall for a moment mid-file: keep this above such pauses.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// A file with its `.sig` but no directive waits this long after its last change for a
    /// directive that may still be on its way (gnupload sends the directive last).
    #[serde(with = "humantime_serde")]
    pub pair_wait: Duration,
    /// Uploads still incomplete this long after their last change are rejected as `incomplete`
    /// (GNU's upload server uses 24 hours).
    #[serde(with = "humantime_serde")]
    pub sweep_after: Duration,
    /// Signatures older than this are refused as possible replays of an old upload.
    #[serde(with = "humantime_serde")]
    pub max_signature_age: Duration,
    /// Signatures dated further than this in the future are refused.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Through the mount, a file with its `.sig` (or a trusted lone file) is processed this long
    /// after its last writer closed it, unless a directive (or signature) follows.
    #[serde(with = "humantime_serde")]
    pub closed_pair_wait: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            settle: Duration::from_secs(2),
            pair_wait: Duration::from_secs(5),
            sweep_after: Duration::from_secs(24 * 3600),
            max_signature_age: Duration::from_secs(7 * 24 * 3600),
            max_clock_skew: Duration::from_secs(300),
            closed_pair_wait: Duration::from_secs(1),
        }
    }
}

/// How published files are shared with mirrors and BitTorrent clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributionConfig {
    /// Trackers every `.torrent` names (announce URLs), in order of preference. With none,
    /// torrents name this repository's own `/announce` at `listen`.
    pub trackers: Vec<String>,
    /// The HTTP endpoint (`repofsd --listen`): off when absent. Seeding runs with it.
    pub listen: Option<std::net::SocketAddr>,
    /// Where the seeder accepts peers; by default `listen`'s address on a port of the
    /// system's choosing.
    pub peer_listen: Option<std::net::SocketAddr>,
    /// The endpoint's URL as clients reach it (`http://HOST:PORT`): `.torrent` files name
    /// `PUBLIC_URL/by-sha256/SHA256` as a BEP 19 web seed. By default `http://LISTEN`; none
    /// without `listen`.
    pub public_url: Option<String>,
    /// How often clients of the built-in tracker announce; peers silent for twice as long are
    /// forgotten.
    #[serde(with = "humantime_serde")]
    pub announce_interval: Duration,
    /// Read every store object back and check its pieces as seeding starts (librqbit's
    /// initial check). Off: the store's objects, checked when published and never changed,
    /// are seeded at once and each piece is checked when first read for a peer.
    pub recheck_store: bool,
    /// A seeded torrent is live (in librqbit's session) from a peer's first handshake or
    /// announce until it has had no peer for this long.
    #[serde(with = "humantime_serde")]
    pub live_idle: Duration,
}

impl Default for DistributionConfig {
    fn default() -> Self {
        DistributionConfig {
            trackers: Vec::new(),
            listen: None,
            peer_listen: None,
            public_url: None,
            announce_interval: Duration::from_secs(60),
            recheck_store: false,
            live_idle: Duration::from_secs(120),
        }
    }
}

/// Mirror mode (`repofsd --upstream`): the catalog follows an upstream's signed index.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// The upstream's `--listen` endpoint (`http://HOST:PORT`); mirror mode when set.
    pub upstream: Option<String>,
    /// The upstream repository's public key (`repofs keys export-repo`), pinned.
    pub repo_key: Option<std::path::PathBuf>,
    /// How often the index is synced.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// Bound on the cache of fetched objects (`ROOT/mirror`, bytes; `repofsd --cache-size`).
    /// Least recently read objects go first.
    pub cache_size: u64,
    /// How long a read on the mount waits for missing pieces before failing with EIO.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// How far past a sequential reader's request repofsd fetches ahead (bytes).
    pub readahead: u64,
    /// Bytes per second this mirror may fetch over HTTP from its origins (the upstream and the
    /// primary's web seeds) when the swarm cannot serve a read: a fleet of N mirrors asks at
    /// most N times this of its primary. 0: no limit.
    pub origin_rate: u64,
    /// How long a read waits on a swarm that has peers before the origin serves it too (with
    /// no peer, at most 2 s after the object's first read). "0s": the origin at once.
    #[serde(with = "humantime_serde")]
    pub origin_after: Duration,
    /// What this mirror fetches as soon as it is published, without a reader: globs over
    /// paths below dists/ (`hello/*`, `*.deb`; `*` crosses `/`, so `*` is everything).
    /// Held objects are never evicted; their total must fit `cache_size`.
    pub hold: Vec<String>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            upstream: None,
            repo_key: None,
            poll: Duration::from_secs(30),
            cache_size: 16 << 30,
            read_timeout: Duration::from_secs(20),
            readahead: 8 << 20,
            origin_rate: 64 << 20,
            origin_after: Duration::from_secs(5),
            hold: Vec::new(),
        }
    }
}

/// Bounds on untrusted input. Anything beyond them is rejected as `too-large`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest single uploaded file.
    pub max_file_size: u64,
    /// Largest total unpacked size of one archive (decompression-bomb guard).
    pub max_unpacked_size: u64,
    /// Most entries in one archive.
    pub max_entries: u64,
    /// Largest directive file; they are a few lines long.
    pub max_directive_size: u64,
    /// Largest signature file.
    pub max_signature_size: u64,
    /// Largest package metadata file read from an archive (.PKGINFO, control, ...).
    pub max_metadata_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 16 << 30,
            max_unpacked_size: 64 << 30,
            max_entries: 1_000_000,
            max_directive_size: 64 << 10,
            max_signature_size: 64 << 10,
            max_metadata_size: 1 << 20,
        }
    }
}

/// The FUSE mount (`repofs mount`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MountConfig {
    /// How long `close(2)` of the file that completes an upload waits for the verdict. Past it,
    /// close succeeds (the upload is safe in the spool) and the verdict arrives as usual.
    #[serde(with = "humantime_serde")]
    pub close_wait: Duration,
    /// Bound on unpacked payloads kept for packages without seek points (zstd, xz).
    pub cache_size: u64,
    /// Bound on inflated gzip spans kept in memory, shared by all packages (bytes).
    pub span_cache: u64,
    /// FUSE worker threads.
    pub threads: usize,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            close_wait: Duration::from_secs(120),
            cache_size: 4 << 30,
            span_cache: 64 << 20,
            threads: 4,
        }
    }
}

/// A local account whose kernel-reported uid is its credential, as tupkg's accounts were.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trusted {
    pub uid: u32,
    /// Directories it may publish to ("" = everywhere).
    pub directories: Vec<String>,
}

impl Config {
    /// Whether `uid` may publish an unsigned file to `dir`.
    pub fn is_trusted(&self, uid: u32, dir: &str) -> bool {
        self.trusted.iter().any(|t| {
            t.uid == uid
                && t.directories
                    .iter()
                    .any(|g| crate::paths::is_within(dir, g))
        })
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading config {}: {e}", p.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("parsing config {}: {e}", p.display()))
            }
        }
    }
}

/// Per-uploader staging written by the mount: `.users/<uid>/[DIR/]FILE`. The uid is the
/// kernel-reported credential of whoever wrote the files, and the rest is the same as the top
/// level of the spool. Uploaders cannot reach it on disk (root-only directory).
pub const USERS_DIR: &str = ".users";

/// Where everything lives below the state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    /// The repository's own signing key (secret; made by repofsd at its first start).
    pub fn repo_key(&self) -> PathBuf {
        self.root.join("repo-key.pgp")
    }

    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.sqlite")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn spool(&self) -> PathBuf {
        self.root.join("incoming")
    }
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// Where the mount stages uid `uid`'s uploads (uid 0 writes to the spool itself).
    pub fn user_spool(&self, uid: u32) -> PathBuf {
        if uid == 0 {
            self.spool()
        } else {
            self.spool().join(USERS_DIR).join(uid.to_string())
        }
    }
    /// The daemon's control socket: the mount reports closed uploads there.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("repofsd.sock")
    }
    /// Unpacked payloads of packages that cannot be read at random (zstd, xz).
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// A mirror's cache of fetched objects and its status file.
    pub fn mirror(&self) -> PathBuf {
        self.root.join("mirror")
    }

    /// Creates the state directory and its parts if missing. State is private to the service
    /// (0700); the spool is where uploaders write, and its mode is left to the administrator
    /// once created (0755 by default: sftp/rsync accounts are granted access explicitly).
    pub fn create(&self) -> std::io::Result<()> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o755);
        b.create(&self.root)?;
        b.create(self.spool())?;
        for private in [self.store(), self.quarantine()] {
            if !private.exists() {
                b.create(&private)?;
                fs::set_permissions(&private, fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(())
    }
}
