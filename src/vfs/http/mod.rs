//! `dists/` over HTTP on the `--listen` endpoint, read-only, primary and mirror alike: the
//! same `tree::Snapshot` the mount shows (reloaded when `PRAGMA data_version` changes, minus
//! `incoming/`), URLs `/dists/<path as in the mount>`, content read only through
//! `Objects::open` (so on a mirror a range fetches only its pieces). Like `vfs::fuse` it only
//! translates: resolving a path, rendering a listing and HTTP's conditional and range rules.
//!
//! - GET and HEAD; `Range: bytes=` with one range → 206 (several ranges → the whole body,
//!   200: clients that ask for several cope with that); unsatisfiable → 416.
//! - Strong ETags: a published file's sha256, a generated file's (or `.torrent`'s) bytes'
//!   sha256; Last-Modified from publication (generated files: when the view last changed);
//!   If-None-Match / If-Modified-Since → 304, If-Range.
//! - A small body (up to `files::WHOLE`) is read before the answer, with its head, so the
//!   response goes out in one write; a read that fails then is a 503 `read-failed`. Larger
//!   bodies stream from a blocking reader through a bounded channel (a few chunks in flight);
//!   a read that fails mid-body (a mirror's dead swarm: EIO after `read_timeout`) aborts the
//!   response, so the client sees a short transfer, never a hang or wrong bytes.
//! - Symlinks redirect to their target, directories without a trailing slash to the slash form.
//! - HTML listings (no JavaScript), paged at `PAGE_ROWS` rows, built from one catalog query per
//!   directory; `/status` (HTML) and `/status.json`, from `fetch::status` (a mirror's cache and
//!   swarm; a primary's store objects refused from seeding).
//!
//! Errors carry a stable reason code in `X-Repofs-Reason` and the body's first word:
//! `bad-path`, `not-found`, `unsatisfiable-range`, `catalog-unreadable`, `open-failed`,
//! `read-failed`, `not-a-mirror`.
//!
//! `/by-sha256/SHA256` (`by_hash`) serves an object by its hash: the torrents' web seed.
//!
//! Here: the routes, resolving a URL to a plan, the errors and what the pages share;
//! `files` serves a file's bytes (conditionals, ranges, streaming), `listing` renders the
//! directory pages, `status` the status pages.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::tree::{DistEntry, Snapshot};
use crate::catalog::Catalog;
use crate::config::{Config, Layout};
use crate::fetch::objects::Objects;

mod by_hash;
mod files;
mod listing;
pub mod metrics;
mod status;

use files::{content_type, serve, Content, Source};
pub use listing::PAGE_ROWS;

/// Everything but unreserved characters is percent-encoded in links (names are user input;
/// `:` would otherwise start a scheme in a relative link).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub struct Dists {
    layout: Layout,
    /// Idle catalog connections: a request takes one (or opens one) and puts it back, so
    /// concurrent requests never wait for each other's queries.
    catalogs: Mutex<Vec<Idle>>,
    /// The newest snapshot and its load number (loads are numbered as they start).
    snapshot: RwLock<(Arc<Snapshot>, u64)>,
    loads: std::sync::atomic::AtomicU64,
    objects: Objects,
    mirror: bool,
    started: SystemTime,
}

/// The `/dists/…` routes (and `/status` on a mirror), to merge into the endpoint's router.
/// Call after the catalog says whether this is a mirror (repofsd sets `upstream` first).
pub fn routes(layout: &Layout, config: &Config) -> anyhow::Result<axum::Router> {
    let catalog = Catalog::open(&layout.catalog())?;
    let snapshot = Snapshot::load(&catalog)?;
    let mirror = catalog.setting("upstream")?.is_some_and(|u| !u.is_empty());
    let state = Arc::new(Dists {
        layout: layout.clone(),
        objects: Objects::new(layout, config, mirror)?,
        catalogs: Mutex::new(vec![Idle {
            seen: Some(snapshot.version),
            cat: catalog,
        }]),
        snapshot: RwLock::new((Arc::new(snapshot), 0)),
        loads: std::sync::atomic::AtomicU64::new(1),
        mirror,
        started: SystemTime::now(),
    });
    use axum::routing::get;
    Ok(axum::Router::new()
        .route("/", get(|| async { redirect("/dists/") }))
        .route("/dists", get(|| async { redirect("/dists/") }))
        .route("/dists/", get(dists))
        .route("/dists/{*path}", get(dists))
        .route("/by-sha256/{sha256}", get(by_hash::by_sha256))
        .route("/status", get(status::status))
        .route("/status.json", get(status::status_json))
        .with_state(state))
}

// ---- errors ------------------------------------------------------------------------------

/// An answer other than the resource: a status, a stable reason code and a message.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

fn refuse(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason,
        message: message.into(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            format!("{}: {}\n", self.reason, self.message),
        )
            .into_response();
        r.headers_mut()
            .insert("x-repofs-reason", HeaderValue::from_static(self.reason));
        r
    }
}

fn catalog_error(e: impl std::fmt::Display) -> Refusal {
    warn!(error = %e, "HTTP: catalog unreadable");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "catalog-unreadable",
        "the catalog could not be read",
    )
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

// ---- resolving -----------------------------------------------------------------------------

/// What a request resolved to, before conditionals and ranges.
enum Plan<'a> {
    /// 301 (a directory's slash form) or 302 (a symlink, which may change).
    Redirect(StatusCode, String),
    Listing(String),
    Content(Content<'a>),
}

/// Connections kept idle (each caches pages): more than the endpoint's threads rarely help.
const IDLE_CATALOGS: usize = 8;

/// An idle connection, and its `PRAGMA data_version` when it last found the stored snapshot
/// current. That pragma counts other connections' commits as one connection sees them, so
/// its values are comparable only within a connection: compared with a version another
/// connection read, an equal number could hide a publication (a just-published file 404ed).
struct Idle {
    cat: Catalog,
    seen: Option<i64>,
}

/// A catalog connection from the pool, back to it on drop.
struct Pooled<'a> {
    pool: &'a Mutex<Vec<Idle>>,
    idle: Option<Idle>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        &self
            .idle
            .as_ref()
            .expect("a pooled connection until drop")
            .cat
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut idle = crate::sync::lock(self.pool);
        if idle.len() < IDLE_CATALOGS {
            idle.extend(self.idle.take());
        }
    }
}

impl Dists {
    fn catalog(&self) -> Result<Pooled<'_>, Refusal> {
        let idle = crate::sync::lock(&self.catalogs).pop();
        let idle = match idle {
            Some(i) => i,
            None => Idle {
                cat: Catalog::open(&self.layout.catalog()).map_err(catalog_error)?,
                seen: None,
            },
        };
        Ok(Pooled {
            pool: &self.catalogs,
            idle: Some(idle),
        })
    }

    /// The current snapshot, reloaded if the catalog changed since this connection last
    /// found it current (as the mount does with its one connection). Nothing committed since
    /// then, and a stored snapshot is only ever replaced by one whose load started later, so
    /// the stored one is at least as new as the catalog this connection sees.
    fn snap(&self, cat: &mut Pooled<'_>) -> Result<Arc<Snapshot>, Refusal> {
        use std::sync::atomic::Ordering;
        let idle = cat.idle.as_mut().expect("a pooled connection until drop");
        // A mirror's first snapshot replaces the catalog's file: read the new one.
        idle.cat.follow().map_err(catalog_error)?;
        let version = idle.cat.data_version().map_err(catalog_error)?;
        if idle.seen == Some(version) {
            return Ok(crate::sync::read(&self.snapshot).0.clone());
        }
        let load = self.loads.fetch_add(1, Ordering::Relaxed);
        let fresh = Arc::new(Snapshot::load(&idle.cat).map_err(catalog_error)?);
        idle.seen = Some(version);
        let mut stored = crate::sync::write(&self.snapshot);
        if load > stored.1 {
            *stored = (fresh.clone(), load);
        }
        Ok(fresh)
    }

    fn view_time(&self, snap: &Snapshot) -> SystemTime {
        snap.changed.map_or(self.started, epoch)
    }

    /// Resolves `raw` (the URL path after `/dists`, still percent-encoded).
    fn resolve(&self, raw: &str, query: Option<&str>) -> Result<Plan<'_>, Refusal> {
        let path = decode_path(raw)?;
        let slash = raw.ends_with('/');
        let mut cat = self.catalog()?;
        let snap = self.snap(&mut cat)?;
        let missing = || refuse(StatusCode::NOT_FOUND, "not-found", "no such path in dists/");
        let entry = snap.dist_entry(&path).ok_or_else(missing)?;
        if slash && !path.is_empty() && entry != DistEntry::Dir {
            return Err(missing());
        }
        let name = path.rsplit('/').next().unwrap_or("");
        match entry {
            DistEntry::Dir if !slash => Ok(Plan::Redirect(
                StatusCode::MOVED_PERMANENTLY,
                format!("/dists{raw}/"),
            )),
            DistEntry::Dir => {
                let page = query
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("page=")))
                    .and_then(|p| p.parse::<usize>().ok())
                    .unwrap_or(1)
                    .max(1);
                Ok(Plan::Listing(self.listing(&cat, &snap, &path, page)?))
            }
            DistEntry::Symlink(target) => {
                let dir = parent(&path);
                let to = resolve_link(dir, &target).ok_or_else(missing)?;
                Ok(Plan::Redirect(
                    StatusCode::FOUND,
                    format!("/dists/{}", encode_path(&to)),
                ))
            }
            DistEntry::File(id) => Ok(Plan::Content(self.published(&cat, &snap, id, &path)?)),
            e @ (DistEntry::Generated(_) | DistEntry::Torrent(_)) => {
                let bytes = super::render_dist(&cat, &snap, &path, &e)
                    .map_err(catalog_error)?
                    .ok_or_else(missing)?;
                let modified = match e {
                    DistEntry::Torrent(id) => snap
                        .file(id)
                        .map_or(self.view_time(&snap), |f| epoch(f.published_at)),
                    _ => self.view_time(&snap),
                };
                Ok(Plan::Content(Content {
                    size: bytes.len() as u64,
                    etag: format!("\"{}\"", hex::encode(Sha256::digest(&bytes))),
                    body: Source::Bytes(Bytes::from(bytes)),
                    modified,
                    content_type: content_type(name, true),
                }))
            }
        }
    }
}

impl Dists {
    /// A published file: what HTTP says about it, and how to open its bytes.
    fn published<'a>(
        &'a self,
        cat: &Catalog,
        snap: &Snapshot,
        id: i64,
        path: &str,
    ) -> Result<Content<'a>, Refusal> {
        let missing = || refuse(StatusCode::NOT_FOUND, "not-found", "no such path in dists/");
        let info = snap.file(id).ok_or_else(missing)?;
        let row = cat
            .published_file(id)
            .map_err(catalog_error)?
            .ok_or_else(missing)?;
        let name = path.rsplit('/').next().unwrap_or("");
        let etag = format!("\"{}\"", row.sha256);
        let path = path.to_string();
        let open = move || {
            self.objects.open(&row.sha256, row.size).map_err(|e| {
                warn!(error = %e, path = %path, "HTTP: cannot open a published file");
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "open-failed",
                    "the file's content cannot be opened now",
                )
            })
        };
        Ok(Content {
            body: Source::Object(Box::new(open)),
            size: info.size,
            etag,
            modified: epoch(info.published_at),
            content_type: content_type(name, false),
        })
    }

    /// The common request answered on the async worker, without a hop to a blocking thread
    /// (which cost more than the answer: bench/RESULTS.md, "many clients"): a primary's
    /// published file. A primary's store is local, so opening and a small read are a
    /// page-cache lookup, as in any static file server. The snapshot may be older than the
    /// catalog (the reload is a blocking thread's): what it names is still served only if the
    /// catalog says that file id is published, and a path it does not know goes on to
    /// `answer`. None: anything else (a mirror's read may wait on the swarm; listings,
    /// generated files and a snapshot reload take a while), which `answer` does on a
    /// blocking thread.
    fn answer_now(&self, raw: &str, method: &Method, headers: &HeaderMap) -> Option<Response> {
        if self.mirror || raw.ends_with('/') {
            return None;
        }
        let cat = self.catalog().ok()?;
        let snap = crate::sync::read(&self.snapshot).0.clone();
        let path = decode_path(raw).ok()?;
        let DistEntry::File(id) = snap.dist_entry(&path)? else {
            return None;
        };
        let content = self.published(&cat, &snap, id, &path).ok()?;
        drop(cat);
        Some(serve(content, method == Method::HEAD, headers))
    }
}

// ---- paths -------------------------------------------------------------------------------

/// Decodes the URL path below `/dists` into a snapshot path ("" is dists/ itself). `.` and
/// empty components are dropped, as RFC 3986 dot-segment removal and nginx's slash merging do
/// (apt asks flat repositories for `DIR/./InRelease`); `..`, NUL and non-UTF-8 are refused.
fn decode_path(raw: &str) -> Result<String, Refusal> {
    let bad = |m: &str| refuse(StatusCode::BAD_REQUEST, "bad-path", m.to_string());
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad("the path is not UTF-8"))?;
    let mut parts = Vec::new();
    for part in decoded.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad("'..' path components are not served")),
            p if p.contains('\0') => return Err(bad("NUL in the path")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|p| utf8_percent_encode(p, COMPONENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// A symlink's target as a dists/ path, the way the kernel resolves it in the mount; None if
/// it leaves dists/ (the catalog refuses such links anyway).
fn resolve_link(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn epoch(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

// ---- serving -------------------------------------------------------------------------------

async fn dists(
    State(d): State<Arc<Dists>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let raw = uri.path().strip_prefix("/dists").unwrap_or("").to_string();
    if let Some(r) = d.answer_now(&raw, &method, &headers) {
        return r;
    }
    let query = uri.query().map(str::to_string);
    // Resolving and the answer's head, and a small body's read, on one blocking thread: the
    // catalog and the store (on a mirror, the swarm) block.
    let answered =
        tokio::task::spawn_blocking(move || d.answer(&raw, query.as_deref(), method, &headers))
            .await;
    answered.unwrap_or_else(|e| catalog_error(e).into_response())
}

impl Dists {
    fn answer(
        &self,
        raw: &str,
        query: Option<&str>,
        method: Method,
        headers: &HeaderMap,
    ) -> Response {
        let plan = match self.resolve(raw, query) {
            Ok(p) => p,
            Err(refusal) => return refusal.into_response(),
        };
        match plan {
            Plan::Redirect(status, to) => {
                let mut r = status.into_response();
                if let Ok(v) = HeaderValue::from_str(&to) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Plan::Listing(html) => html_page(html),
            Plan::Content(c) => serve(c, method == Method::HEAD, headers),
        }
    }
}

// ---- what the HTML pages share --------------------------------------------------------

/// The pages' one stylesheet, inline: the Content-Security-Policy loads nothing else.
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em 2em;color:#222}\
h1{font-size:1.3em;font-weight:600}h2{font-size:1.1em;font-weight:600;margin-top:1.5em}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.25em .8em .25em 0;vertical-align:top;border-bottom:1px solid #eee}\
th{border-bottom:2px solid #ccc;font-weight:600}td.n,th.n{text-align:right;white-space:nowrap}\
code,.fpr{font:11.5px ui-monospace,monospace;color:#555;white-space:nowrap}td.t{white-space:nowrap}\
tbody tr:hover{background:#f6f8fa}\
a{color:#0645ad;text-decoration:none}a:hover{text-decoration:underline}\
tr.d td:first-child a{font-weight:600}tr.g td{color:#666}\
footer{margin-top:1em;color:#666;font-size:.9em}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}\
dt{font-weight:600}";

/// Our HTML pages: no scripts, styles inline, nothing loaded from elsewhere (names on them
/// are user input, escaped; the policy is the second fence).
fn html_page(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}

/// `s` as HTML text or attribute value (names are user input).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A size for people: bytes, else KiB … TiB to one decimal.
fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_refuse_escapes_and_decode_names() {
        assert_eq!(decode_path("/").ok().as_deref(), Some(""));
        assert_eq!(
            decode_path("/a%20b/%3Cx%3E%25").ok().as_deref(),
            Some("a b/<x>%")
        );
        for bad in ["/../x", "/a/%2e%2e/b", "/%ff", "/a%00"] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
        // Dot segments and doubled slashes collapse (apt asks for `DIR/./InRelease`).
        for same in ["/a//b", "/a/./b", "/./a/b/.", "/a/%2e/b"] {
            assert_eq!(decode_path(same).ok().as_deref(), Some("a/b"), "{same}");
        }
        assert_eq!(resolve_link("a/b", "../c/d").as_deref(), Some("a/c/d"));
        assert_eq!(resolve_link("", "../x"), None);
        assert_eq!(encode_path("a b/ü<"), "a%20b/%C3%BC%3C");
    }
}
