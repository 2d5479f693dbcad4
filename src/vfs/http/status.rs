//! The status pages: `/status` (HTML, or JSON when the client asks for it) and `/status.json`,
//! from `fetch::status`: a mirror's cache and swarm, a primary's store objects refused from
//! seeding. Apart from `mod.rs` because they show state, not dists/.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{catalog_error, encode_path, escape, html_page, human, refuse, Dists, STYLE};
use crate::catalog::Catalog;

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

pub(super) async fn status(State(d): State<Arc<Dists>>, headers: HeaderMap) -> Response {
    let mut r = status_page(d, wants_json(&headers)).await;
    // One URL, two representations: caches must key on Accept.
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    r
}

pub(super) async fn status_json(State(d): State<Arc<Dists>>) -> Response {
    status_page(d, true).await
}

async fn status_page(d: Arc<Dists>, json: bool) -> Response {
    if !d.mirror {
        return primary_page(d, json).await;
    }
    let made = tokio::task::spawn_blocking(move || {
        // Its own connection, as a listing: file requests never wait behind it.
        let cat = Catalog::open(&d.layout.catalog())?;
        crate::fetch::status::mirror_status(&d.layout, &cat)
    })
    .await;
    let s = match made {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            return refuse(
                StatusCode::NOT_FOUND,
                "not-a-mirror",
                "no upstream recorded",
            )
            .into_response()
        }
        Ok(Err(e)) => return catalog_error(format!("{e:#}")).into_response(),
        Err(e) => return catalog_error(e).into_response(),
    };
    if json {
        return json_page(&s);
    }
    let ago = |a: Option<u64>| a.map_or("never".to_string(), |a| format!("{a} s ago"));
    let opt = |o: &Option<String>| escape(o.as_deref().unwrap_or("-"));
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Mirror status</title><style>{STYLE}</style></head><body>\n\
         <h1>Mirror status</h1>\n<dl>\
         <dt>Upstream</dt><dd>{}</dd>\
         <dt>Upstream state</dt><dd>{}{}</dd>\
         <dt>Generation</dt><dd>{} (signed {}, {})</dd>\
         <dt>Synced</dt><dd>{} ({})</dd>\
         <dt>Cache</dt><dd>{} of {}</dd>\
         <dt>Peers</dt><dd>{}</dd>\
         <dt>Rates</dt><dd>down {:.1} MiB/s, up {:.1} MiB/s</dd>\
         <dt>Transferred</dt><dd>fetched {}, seeded {}</dd>\
         <dt>Origin (HTTP)</dt><dd>{} verified, {} failures, {} corrupt pieces</dd>\
         <dt>Bytes from</dt><dd>origin {}, primary {}, mirrors {} (since the cache was made)</dd>\
         <dt>Corrupt cached pieces</dt><dd>{} found, {} fetched again</dd>\
         </dl>\n<h2>Objects held</h2>\n<table><thead><tr><th>File</th><th class=\"n\">Pieces</th>\
         <th class=\"n\">Peers</th><th>State</th></tr></thead><tbody>\n",
        escape(&s.upstream),
        opt(&s.upstream_state),
        s.upstream_error
            .as_deref()
            .map(|e| format!(" — {}", escape(e)))
            .unwrap_or_default(),
        s.generation.map_or("none".into(), |g| g.to_string()),
        opt(&s.generation_created),
        ago(s.generation_age_secs),
        opt(&s.synced),
        ago(s.synced_age_secs),
        human(s.cache_bytes),
        human(s.cache_limit),
        s.peers,
        s.down_mbps,
        s.up_mbps,
        human(s.downloaded_bytes),
        human(s.uploaded_bytes),
        human(s.origin.bytes),
        s.origin.failures,
        s.origin.corrupt_pieces,
        human(s.sources.origin),
        human(s.sources.primary),
        human(s.sources.mirrors),
        s.corrupt.found,
        s.corrupt.refetched,
    );
    for o in &s.objects {
        let f = &o.fetch;
        let name = match (o.paths.first(), &o.twin_of) {
            (Some(p), _) => format!("<a href=\"/{}\">{}</a>", encode_path(p), escape(p)),
            (None, Some(pkg)) => format!("{} (seekable twin)", escape(pkg)),
            (None, None) => format!("<code>{}</code>", escape(&f.sha256)),
        };
        let _ = writeln!(
            h,
            "<tr><td>{name}</td><td class=\"n\">{}/{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            f.verified_pieces,
            f.pieces,
            f.peers,
            if f.complete { "complete" } else { "partial" }
        );
    }
    if s.objects.is_empty() {
        h.push_str("<tr><td colspan=\"4\">nothing fetched yet</td></tr>\n");
    }
    h.push_str(FOOTER);
    html_page(h)
}

/// A status as JSON, never cached.
fn json_page(s: &impl serde::Serialize) -> Response {
    match serde_json::to_vec_pretty(s) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(e) => catalog_error(e).into_response(),
    }
}

const FOOTER: &str = "</tbody></table>\n<footer><a href=\"/dists/\">dists/</a> · \
     <a href=\"/status.json\">JSON</a></footer>\n</body></html>\n";

/// A primary's status: the store objects refused from seeding (`fetch::status::primary_status`).
async fn primary_page(d: Arc<Dists>, json: bool) -> Response {
    let made = tokio::task::spawn_blocking(move || {
        let cat = Catalog::open(&d.layout.catalog())?;
        crate::fetch::status::primary_status(&cat)
    })
    .await;
    let s = match made {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return catalog_error(format!("{e:#}")).into_response(),
        Err(e) => return catalog_error(e).into_response(),
    };
    if json {
        return json_page(&s);
    }
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Primary status</title><style>{STYLE}</style></head><body>\n\
         <h1>Primary status</h1>\n<h2>Store objects refused from seeding (changed on disk)</h2>\n\
         <table><thead><tr><th>File</th><th>Object</th><th class=\"n\">Piece</th><th>Found</th>\
         <th>Why</th></tr></thead><tbody>\n"
    );
    for c in &s.corrupt_objects {
        let names: Vec<String> = c
            .paths
            .iter()
            .map(|p| format!("<a href=\"/{}\">{}</a>", encode_path(p), escape(p)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            names.join("<br>"),
            escape(&c.row.sha256),
            c.row.piece,
            escape(&c.found),
            escape(&c.row.why)
        );
    }
    if s.corrupt_objects.is_empty() {
        h.push_str("<tr><td colspan=\"5\">none</td></tr>\n");
    }
    h.push_str(FOOTER);
    html_page(h)
}
