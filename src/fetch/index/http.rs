//! The index and torrents on the `--listen` endpoint: `/index/root.asc` (the signed root),
//! `/index/objects/SHA256` (deltas and snapshots, streamed from disk, immutable) and
//! `/torrents/INFOHASH.torrent`. A mirror serves the same routes from what it verified.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::IndexDir;
use crate::catalog::Catalog;

pub struct IndexState {
    pub dir: IndexDir,
    pub catalog: PathBuf,
}

pub fn routes(state: Arc<IndexState>) -> axum::Router {
    axum::Router::new()
        .route("/index/root.asc", axum::routing::get(root))
        .route("/index/objects/{sha256}", axum::routing::get(object))
        .route("/torrents/{name}", axum::routing::get(torrent))
        .with_state(state)
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

async fn root(State(s): State<Arc<IndexState>>) -> Response {
    match tokio::fs::read(s.dir.root_path()).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(_) => not_found("no index yet"),
    }
}

/// Streams the object from disk: a snapshot may be large, the endpoint holds one buffer.
async fn object(State(s): State<Arc<IndexState>>, Path(sha256): Path<String>) -> Response {
    let Some(path) = s.dir.object_path(&sha256) else {
        return not_found("not an object name");
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return not_found("no such object"),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    tracing::debug!(object = %sha256, len, "serving index object");
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            // Content-addressed: never changes.
            (
                header::CACHE_CONTROL,
                "public, max-age=31536000, immutable".to_string(),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response()
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
        let Some(info) = c.torrent_by_info_hash(&hash)? else {
            return Ok(None);
        };
        let trackers: Vec<String> = c
            .setting("trackers")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(Some(crate::fetch::torrent::torrent_file(&info, &trackers)?))
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
