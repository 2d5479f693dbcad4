//! `/by-sha256/SHA256`: an object by its hash, the URL `.torrent` files name as their BEP 19
//! web seed (`torrent::web_seed`) and where a mirror's reads go when the swarm cannot serve
//! them (`fetch::origin`). Only objects the catalog has a torrent for (published files and
//! their derived twins); ranges and conditionals as in dists/. Content-addressed: cacheable
//! forever. On a mirror a range fetches only its pieces, like any read.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::files::{serve, Content, Source};
use super::{catalog_error, refuse, Dists, Refusal};

pub(super) async fn by_sha256(
    State(d): State<Arc<Dists>>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    // The catalog and, on a mirror, the swarm block.
    let answered = tokio::task::spawn_blocking(move || {
        d.by_hash(&name, method == Method::HEAD, &headers)
            .unwrap_or_else(IntoResponse::into_response)
    })
    .await;
    answered.unwrap_or_else(|e| catalog_error(e).into_response())
}

impl Dists {
    fn by_hash(&self, sha256: &str, head: bool, headers: &HeaderMap) -> Result<Response, Refusal> {
        if !(sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "bad-path",
                "expected /by-sha256/ and a sha256 in lower-case hex",
            ));
        }
        let size = {
            let cat = self.catalog()?;
            let found = cat.object_torrent(sha256).map_err(catalog_error)?;
            let (_, _, size) = found
                .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "not-found", "no such object"))?;
            size
        };
        let sha = sha256.to_string();
        let open = move || {
            self.objects.open(&sha, size).map_err(|e| {
                warn!(error = %e, object = %sha, "HTTP: cannot open an object");
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "open-failed",
                    "the object cannot be opened now",
                )
            })
        };
        Ok(serve(
            Content {
                body: Source::Object(Box::new(open)),
                size,
                etag: format!("\"{sha256}\""),
                modified: UNIX_EPOCH,
                content_type: "application/octet-stream",
            },
            head,
            headers,
        ))
    }
}
