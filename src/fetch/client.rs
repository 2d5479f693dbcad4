//! `repofs fetch PATH…`: on a mirror, fetch whole objects into the cache through repofsd.
//!
//! A path names a published file (`dists/DIR/FILE`) or a package (`pkgs/NAME/VERSION/…`,
//! `pkgs/@SCOPE/NAME/VERSION/…`), relative or inside a mount (everything up to `dists/` or
//! `pkgs/` is ignored). The object is asked for in slices, so progress shows and each request
//! has its own deadline; then it waits for repofsd to check the whole object's sha256 and make
//! it complete (in the background: readers do not wait for it).

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::fetch::cache::CacheDir;
use crate::fetch::protocol::{self, FetchRequest};

/// Bytes asked for per request.
const SLICE: u64 = 16 << 20;

/// Whether object `sha256` is (or becomes, within `deadline`) complete in the cache.
fn complete_within(cache: &CacheDir, sha256: &str, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while !cache.complete_path(sha256).exists() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The object (sha256, size, name) a repository path names.
pub fn resolve(catalog: &Catalog, path: &str) -> anyhow::Result<(String, u64, String)> {
    let rel = ["dists/", "pkgs/"]
        .iter()
        .filter_map(|k| {
            path.find(k)
                .filter(|&i| i == 0 || path.as_bytes()[i - 1] == b'/')
                .map(|i| &path[i..])
        })
        .min_by_key(|r| std::cmp::Reverse(r.len()))
        .with_context(|| format!("{path}: not a dists/ or pkgs/ path"))?;
    let rel = rel.trim_end_matches('/');
    if let Some(file) = rel.strip_prefix("dists/") {
        let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
        let f = catalog
            .files(false)?
            .into_iter()
            .find(|f| f.directory == dir && f.filename == name)
            .with_context(|| format!("{path}: no such published file"))?;
        return Ok((
            f.sha256,
            f.size,
            crate::paths::join(&f.directory, &f.filename),
        ));
    }
    let parts: Vec<&str> = rel.trim_start_matches("pkgs/").split('/').collect();
    let (name, version) = match parts.as_slice() {
        [scope, name, version, ..] if scope.starts_with('@') => {
            (format!("{scope}/{name}"), *version)
        }
        [name, version, ..] => (name.to_string(), *version),
        _ => anyhow::bail!("{path}: name a package version (pkgs/NAME/VERSION)"),
    };
    let pkg = catalog
        .packages()?
        .into_iter()
        .find(|p| p.name == name && p.version.as_deref() == Some(version))
        .with_context(|| format!("{path}: no package {name} {version}"))?;
    let files = catalog.files(false)?;
    let f = files
        .into_iter()
        .find(|f| f.id == pkg.file_id)
        .with_context(|| format!("{path}: the package's file is not published"))?;
    Ok((
        f.sha256,
        f.size,
        crate::paths::join(&f.directory, &f.filename),
    ))
}

/// Fetches every object `paths` name, whole; progress on stderr when it is a terminal.
pub fn fetch(layout: &Layout, config: &Config, paths: &[String]) -> anyhow::Result<()> {
    let catalog = Catalog::open(&layout.catalog())?;
    anyhow::ensure!(
        catalog.setting("upstream")?.is_some(),
        "this repository is not a mirror: every object is already here"
    );
    for p in paths {
        let (sha256, size, name) = resolve(&catalog, p)?;
        let started = Instant::now();
        // Drawn only on a terminal (indicatif hides itself otherwise).
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .map_err(anyhow::Error::msg)?
            .progress_chars("=> "),
        );
        bar.set_message(name.clone());
        let mut from = 0;
        while from < size {
            let to = (from + SLICE).min(size);
            let req = FetchRequest {
                fetch: sha256.clone(),
                size,
                from,
                to,
                ahead: to,
            };
            // repofsd gives up after its read timeout; wait a little longer than it.
            let reply = protocol::fetch(
                &layout.control_socket(),
                &req,
                config.mirror.read_timeout + Duration::from_secs(5),
            )
            .with_context(|| format!("asking repofsd for {name}"))?;
            if let Some(e) = reply.error {
                bar.abandon();
                anyhow::bail!(
                    "{name}: {} ({})",
                    e,
                    reply.reason.as_deref().unwrap_or("fetch-failed")
                );
            }
            from = to;
            bar.set_position(from);
        }
        // The sha256 runs at ~1 GB/s: a second per 128 MiB on top of the usual deadline.
        let deadline = config.mirror.read_timeout + Duration::from_secs(5 + (size >> 27));
        if !complete_within(&CacheDir::new(layout.mirror()), &sha256, deadline) {
            bar.abandon();
            anyhow::bail!("{name}: every piece is here, yet it did not complete within {deadline:?} (its sha256: see repofsd's log)");
        }
        bar.finish_and_clear();
        println!("{name}: {size} bytes in {:.1?}", started.elapsed());
    }
    Ok(())
}
