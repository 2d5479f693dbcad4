//! The index and torrents on the `--listen` endpoint: `/index/root.asc` (the signed root),
//! `/index/objects/SHA256` (deltas and snapshots, streamed from disk, immutable),
//! `/index/since/G` (every delta after generation G in one response: `SHA256 LEN\n` then the
//! object, repeated; a mirror still checks each against the chain its signed root names),
//! `/index/meta/SHA256?dir=DIR&name=NAME` (a metadata file a delta names by hash, for a
//! mirror whose own render differs) and `/torrents/INFOHASH.torrent`. The root and the
//! objects carry an ETag (the bytes' sha256, which is an object's name) and answer
//! `If-None-Match` with 304. A mirror serves the same routes from what it verified (its
//! `/index/since` answers nothing: it does not record delta hashes, so mirrors below fetch by
//! hash).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::Digest as _;

use super::IndexDir;
use crate::catalog::Catalog;
use crate::config::Layout;

struct IndexState {
    dir: IndexDir,
    catalog: PathBuf,
}

/// The index and torrent routes of the repository at `layout` (a primary's index, or the one
/// a mirror verified), for the composition root to merge into the endpoint's router.
pub fn routes(layout: &Layout) -> axum::Router {
    let state = Arc::new(IndexState {
        dir: IndexDir::new(&layout.root),
        catalog: layout.catalog(),
    });
    axum::Router::new()
        .route("/index/root.asc", axum::routing::get(root))
        .route("/index/objects/{sha256}", axum::routing::get(object))
        .route("/index/since/{generation}", axum::routing::get(since))
        .route("/index/meta/{sha256}", axum::routing::get(meta))
        .route("/torrents/{name}", axum::routing::get(torrent))
        .with_state(state)
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

/// Whether the request's `If-None-Match` names `etag` (or `*`): the client holds these bytes.
fn holds(req: &HeaderMap, etag: &str) -> bool {
    req.get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        })
}

async fn root(State(s): State<Arc<IndexState>>, req: HeaderMap) -> Response {
    use sha2::Digest;
    let Ok(body) = tokio::fs::read(s.dir.root_path()).await else {
        return not_found("no index yet");
    };
    let etag = format!("\"{}\"", hex::encode(sha2::Sha256::digest(&body)));
    let head = [
        (header::CONTENT_TYPE, "text/plain".to_string()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag.clone()),
    ];
    if holds(&req, &etag) {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    (head, body).into_response()
}

/// Objects up to this size are read whole: one write with the head, no reader task.
const WHOLE: u64 = 64 << 10;

/// A small object is read whole, on the worker (the index is a local directory, on a mirror
/// too: a page-cache read costs less than a hop to a blocking thread); a large one (a
/// snapshot) streams from disk, the endpoint holding one buffer.
async fn object(
    State(s): State<Arc<IndexState>>,
    Path(sha256): Path<String>,
    req: HeaderMap,
) -> Response {
    use std::io::Read;
    let Some(path) = s.dir.object_path(&sha256) else {
        return not_found("not an object name");
    };
    let etag = format!("\"{sha256}\"");
    let head = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        // Content-addressed: never changes.
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_string(),
        ),
        (header::ETAG, etag.clone()),
    ];
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => return not_found("no such object"),
    };
    if holds(&req, &etag) {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    tracing::debug!(object = %sha256, len, "serving index object");
    let body = if len <= WHOLE {
        let mut buf = Vec::with_capacity(len as usize);
        if file.read_to_end(&mut buf).is_err() || buf.len() as u64 != len {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Body::from(buf)
    } else {
        let file = tokio::fs::File::from_std(file);
        Body::from_stream(tokio_util::io::ReaderStream::new(file))
    };
    (head, [(header::CONTENT_LENGTH, len.to_string())], body).into_response()
}

/// Every delta after generation `g`, oldest first, streamed through a 64 KiB pipe.
async fn since(State(s): State<Arc<IndexState>>, Path(g): Path<i64>) -> Response {
    use tokio::io::AsyncWriteExt;
    let catalog = s.catalog.clone();
    let listed = tokio::task::spawn_blocking(move || {
        Catalog::open(&catalog)?.deltas_after(g, super::SNAPSHOT_EVERY as usize)
    })
    .await;
    let shas = match listed {
        Ok(Ok(Some(shas))) => shas,
        Ok(Ok(None)) => return not_found("too far behind or not made yet: use the snapshot"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "listing deltas");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut files = Vec::with_capacity(shas.len());
    for sha in shas {
        let Some(path) = s.dir.object_path(&sha) else {
            return not_found("not an object name");
        };
        match tokio::fs::File::open(&path).await {
            Ok(f) => files.push((sha, f)),
            // Not here (a pruned index, or a mirror's): the client fetches by hash.
            Err(_) => return not_found("a delta is missing here"),
        }
    }
    let (mut w, r) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        for (sha, mut f) in files {
            let Ok(meta) = f.metadata().await else { return };
            let head = format!("{sha} {}\n", meta.len());
            if w.write_all(head.as_bytes()).await.is_err()
                || tokio::io::copy(&mut f, &mut w).await.is_err()
            {
                // The client went away (or the disk failed): it sees a short response.
                return;
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(tokio_util::io::ReaderStream::new(r)),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct MetaQuery {
    dir: String,
    name: String,
}

/// `dists/DIR/NAME` as this repository holds it, if its sha256 is the one asked for: a
/// mirror whose own render of a file a delta names by hash differs fetches it here. Another
/// hash means the upstream moved on (404; the mirror syncs again).
async fn meta(
    State(s): State<Arc<IndexState>>,
    Path(sha256): Path<String>,
    axum::extract::Query(q): axum::extract::Query<MetaQuery>,
) -> Response {
    if !super::is_sha256_hex(&sha256) {
        return not_found("not a sha256");
    }
    let catalog = s.catalog.clone();
    let got =
        tokio::task::spawn_blocking(move || Catalog::open(&catalog)?.dist_meta(&q.dir, &q.name))
            .await;
    match got {
        Ok(Ok(Some(data))) if hex::encode(sha2::Sha256::digest(&data)) == sha256 => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            data,
        )
            .into_response(),
        Ok(Ok(_)) => not_found("no such file with that hash"),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "serving repository metadata");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn torrent(State(s): State<Arc<IndexState>>, Path(name): Path<String>) -> Response {
    let Some(hash) = name
        .strip_suffix(".torrent")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
    else {
        return not_found("expected /torrents/INFOHASH.torrent");
    };
    let catalog = s.catalog.clone();
    let made = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Vec<u8>>> {
        let c = Catalog::open(&catalog)?;
        let Some((info, sha256)) = c.torrent_by_info_hash(&hash)? else {
            return Ok(None);
        };
        let list = |key: &str| -> anyhow::Result<Vec<String>> {
            Ok(c.setting(key)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default())
        };
        let (trackers, web_seeds) = (list("trackers")?, list("web_seeds")?);
        Ok(Some(crate::torrent::torrent_file(
            &info, &trackers, &web_seeds, &sha256,
        )?))
    })
    .await;
    match made {
        Ok(Ok(Some(bytes))) => {
            ([(header::CONTENT_TYPE, "application/x-bittorrent")], bytes).into_response()
        }
        Ok(Ok(None)) => not_found("no such torrent"),
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "serving a torrent");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
