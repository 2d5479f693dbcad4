//! A mirror's side of the repository metadata a delta names by hash (`catalog::MetaRef`):
//! Packages, Packages.xz, their by-hash copies, DIR.db and DIR.files. Their bytes are made
//! here, cheapest first, inside the transaction that applies the delta:
//! 1. bytes this mirror already holds with that hash (the Packages.xz of the generation before
//!    is the by-hash copy this one keeps);
//! 2. what it renders itself from the rows it has just applied (`pkgmeta::unsigned`: the same
//!    code and rows as the primary's, so the same bytes when the compressor build is too);
//! 3. the upstream's copy (`/index/meta/SHA256`), checked against the hash.
//!
//! A file whose bytes cannot be had with the primary's hash fails the sync (the catalog
//! stays as it was): a mirror never serves metadata that differs from the primary's.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use super::{refused, Mirror, SyncError, Synced, OBJECT_DEADLINE};
use crate::catalog::{MetaRef, PublishTx};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Whether `name` is one of apt's files (else pacman's).
fn is_apt(name: &str) -> bool {
    name == "Packages" || name == "Packages.xz" || name.starts_with("by-hash/")
}

impl Mirror {
    /// The bytes of `refs`, in order (`Catalog::apply_replica`'s resolver).
    pub(super) fn resolve_meta(
        &self,
        tx: &PublishTx<'_>,
        refs: &[MetaRef],
        stats: &mut Synced,
    ) -> Result<Vec<Vec<u8>>, SyncError> {
        let mut dirs: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, m) in refs.iter().enumerate() {
            dirs.entry(&m.directory).or_default().push(i);
        }
        let mut out: Vec<Option<Vec<u8>>> = vec![None; refs.len()];
        for (dir, wanted) in dirs {
            let mut have: HashMap<String, Vec<u8>> = tx
                .dist_meta_files(dir)?
                .into_iter()
                .map(|(_, data)| (sha256_hex(&data), data))
                .collect();
            let missing: Vec<&MetaRef> = wanted
                .iter()
                .map(|&i| &refs[i])
                .filter(|m| !have.contains_key(&m.sha256))
                .collect();
            if let Some(newest) = missing.iter().max_by_key(|m| m.made) {
                let apt = missing.iter().any(|m| is_apt(&m.name));
                let pacman = missing.iter().any(|m| !is_apt(&m.name));
                let t0 = std::time::Instant::now();
                match crate::pkgmeta::unsigned(tx, dir, newest.time, apt, pacman) {
                    Ok(files) => {
                        stats.meta_rendered += files.len();
                        for (_, data) in files {
                            have.insert(sha256_hex(&data), data);
                        }
                    }
                    // Then the upstream's copies.
                    Err(e) => tracing::warn!(dir, error = %e, "could not render metadata"),
                }
                tracing::debug!(
                    dir,
                    ms = t0.elapsed().as_millis() as u64,
                    "metadata rendered"
                );
            }
            for i in wanted {
                let m = &refs[i];
                out[i] = Some(match have.get(&m.sha256) {
                    Some(b) => b.clone(),
                    None => {
                        let b = self.fetch_meta(m, stats)?;
                        have.insert(m.sha256.clone(), b.clone());
                        b
                    }
                });
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The upstream's copy of `m`, checked against its hash and size.
    fn fetch_meta(&self, m: &MetaRef, stats: &mut Synced) -> Result<Vec<u8>, SyncError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/index/meta/{}", self.upstream.url, m.sha256),
            &[("dir", m.directory.as_str()), ("name", m.name.as_str())],
        )
        .map_err(|e| SyncError::Local(e.into()))?;
        let url = url.as_str();
        tracing::info!(dir = %m.directory, name = %m.name, size = m.size,
            "metadata rendered here differs from the primary's: fetching it");
        let body = self.rt.block_on(async {
            let unreachable = |e: reqwest::Error| SyncError::Unreachable(format!("{url}: {e}"));
            // Gone: the upstream moved on since its root; the next sync gets the newer one.
            let Some(mut resp) = self.get(url, OBJECT_DEADLINE).await? else {
                return Err(SyncError::Unreachable(format!(
                    "{url}: the upstream no longer holds dists/{}/{} at that hash",
                    m.directory, m.name
                )));
            };
            let mut body = Vec::with_capacity(m.size as usize);
            while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
                if self.stop.load(Ordering::Relaxed) {
                    return Err(SyncError::Local(anyhow::anyhow!("stopping")));
                }
                body.extend_from_slice(&chunk);
                if body.len() as u64 > m.size {
                    break;
                }
            }
            Ok(body)
        })?;
        let actual = sha256_hex(&body);
        if actual != m.sha256 {
            return Err(refused(
                "bad-hash",
                format!(
                    "dists/{}/{} arrived with sha256 {actual}, the index names {}",
                    m.directory, m.name, m.sha256
                ),
            ));
        }
        stats.meta_fetched += 1;
        stats.bytes += body.len() as u64;
        Ok(body)
    }
}
