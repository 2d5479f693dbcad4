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
//! - Bodies stream from a blocking reader through a bounded channel (a few chunks in flight);
//!   a read that fails mid-body (a mirror's dead swarm: EIO after `read_timeout`) aborts the
//!   response, so the client sees a short transfer, never a hang or wrong bytes.
//! - Symlinks redirect to their target, directories without a trailing slash to the slash form.
//! - HTML listings (no JavaScript), paged at `PAGE_ROWS` rows, built from one catalog query per
//!   directory; `/status` (HTML) and `/status.json` on a mirror, from `fetch::status`.
//!
//! Errors carry a stable reason code in `X-Repofs-Reason` and the body's first word:
//! `bad-path`, `not-found`, `unsatisfiable-range`, `catalog-unreadable`, `open-failed`,
//! `not-a-mirror`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
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
use crate::store::ReadAt;

/// Rows per listing page: a directory of 100,000 files stays a fast page.
pub const PAGE_ROWS: usize = 1000;
/// Bytes per read of a published file (one BitTorrent piece; on a mirror a read maps to pieces).
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the reader thread and the connection.
const IN_FLIGHT: usize = 4;

/// Everything but unreserved characters is percent-encoded in links (names are user input;
/// `:` would otherwise start a scheme in a relative link).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub struct Dists {
    layout: Layout,
    catalog: Mutex<Catalog>,
    snapshot: RwLock<Arc<Snapshot>>,
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
        catalog: Mutex::new(catalog),
        snapshot: RwLock::new(Arc::new(snapshot)),
        mirror,
        started: SystemTime::now(),
    });
    use axum::routing::get;
    Ok(axum::Router::new()
        .route("/", get(|| async { redirect("/dists/") }))
        .route("/dists", get(|| async { redirect("/dists/") }))
        .route("/dists/", get(dists))
        .route("/dists/{*path}", get(dists))
        .route("/status", get(status))
        .route("/status.json", get(status_json))
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
enum Plan {
    /// 301 (a directory's slash form) or 302 (a symlink, which may change).
    Redirect(StatusCode, String),
    Listing(String),
    Content(Content),
}

struct Content {
    body: Source,
    size: u64,
    etag: String,
    modified: SystemTime,
    content_type: &'static str,
}

enum Source {
    Bytes(Bytes),
    Object(Arc<dyn ReadAt>),
}

impl Dists {
    /// The current snapshot, reloaded if the catalog changed since (as the mount does).
    fn snap(&self, cat: &Catalog) -> Result<Arc<Snapshot>, Refusal> {
        let current = crate::sync::read(&self.snapshot).clone();
        let version = cat.data_version().map_err(catalog_error)?;
        if version == current.version {
            return Ok(current);
        }
        let fresh = Arc::new(Snapshot::load(cat).map_err(catalog_error)?);
        *crate::sync::write(&self.snapshot) = fresh.clone();
        Ok(fresh)
    }

    fn view_time(&self, snap: &Snapshot) -> SystemTime {
        snap.changed.map_or(self.started, epoch)
    }

    /// Resolves `raw` (the URL path after `/dists`, still percent-encoded).
    fn resolve(&self, raw: &str, query: Option<&str>) -> Result<Plan, Refusal> {
        let path = decode_path(raw)?;
        let slash = raw.ends_with('/');
        let cat = super::lock(&self.catalog);
        let snap = self.snap(&cat)?;
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
                // A connection of its own: rendering a large directory's generated sizes takes
                // a while, and file requests must not wait behind it.
                drop(cat);
                let own = Catalog::open(&self.layout.catalog()).map_err(catalog_error)?;
                Ok(Plan::Listing(self.listing(&own, &snap, &path, page)?))
            }
            DistEntry::Symlink(target) => {
                let dir = parent(&path);
                let to = resolve_link(dir, &target).ok_or_else(missing)?;
                Ok(Plan::Redirect(
                    StatusCode::FOUND,
                    format!("/dists/{}", encode_path(&to)),
                ))
            }
            DistEntry::File(id) => {
                let info = snap.file(id).ok_or_else(missing)?;
                let row = cat
                    .published_file(id)
                    .map_err(catalog_error)?
                    .ok_or_else(missing)?;
                let object = self.objects.open(&row.sha256, row.size).map_err(|e| {
                    warn!(error = %e, path = %path, "HTTP: cannot open a published file");
                    refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "open-failed",
                        "the file's content cannot be opened now",
                    )
                })?;
                Ok(Plan::Content(Content {
                    body: Source::Object(object),
                    size: info.size,
                    etag: format!("\"{}\"", row.sha256),
                    modified: epoch(info.published_at),
                    content_type: content_type(name, false),
                }))
            }
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

    /// The HTML listing of dists/`path` (page `page`, 1-based).
    fn listing(
        &self,
        cat: &Catalog,
        snap: &Snapshot,
        path: &str,
        page: usize,
    ) -> Result<String, Refusal> {
        let children = || {
            snap.dist_children(path)
                .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "not-found", "no such directory"))
        };
        // What else is in the directory, by binary search in the snapshot (no catalog).
        let sibling = |name: &str| snap.dist_entry(&crate::paths::join(path, name));
        // A file's .torrent is a link in the file's row, not a row of its own (the snapshot
        // makes `X.torrent` only beside file X, so every Torrent entry has its row).
        // Directories first, then everything else, each in the snapshot's (byte) order.
        let mut rows: Vec<(&str, DistEntry)> =
            children()?.filter(|(_, e)| *e == DistEntry::Dir).collect();
        rows.extend(
            children()?.filter(|(_, e)| !matches!(e, DistEntry::Dir | DistEntry::Torrent(_))),
        );
        let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
        let page = page.min(pages);
        let shown = &rows[(page - 1) * PAGE_ROWS..(page * PAGE_ROWS).min(rows.len())];

        // One query for the page's files (they are a name range) and one for the keys.
        let mut file_names = shown.iter().filter_map(|(n, e)| match e {
            DistEntry::File(_) => Some(*n),
            _ => None,
        });
        let files: HashMap<i64, crate::catalog::FileRow> = match file_names.next() {
            None => HashMap::new(),
            Some(first) => {
                let last = file_names.next_back().unwrap_or(first);
                cat.published_files_between(path, first, last)
                    .map_err(catalog_error)?
                    .into_iter()
                    .map(|f| (f.id, f))
                    .collect()
            }
        };
        let userids: HashMap<String, String> = cat
            .keys()
            .map_err(catalog_error)?
            .into_iter()
            .filter_map(|k| Some((k.fingerprint, k.userid?)))
            .collect();
        let dir_time = fmt_time(self.view_time(snap));
        let title = format!("/dists/{path}{}", if path.is_empty() { "" } else { "/" });
        let mut h = String::with_capacity(512 + shown.len() * 400);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Index of {t}</title><style>{STYLE}</style></head><body>\n\
             <h1>Index of {t}</h1>\n<table>\n<thead><tr><th>Name</th><th class=\"n\">Size</th>\
             <th>Modified (UTC)</th><th>SHA-256</th><th>Signer</th><th>Also</th></tr></thead>\n<tbody>\n",
            t = escape(&title)
        );
        if !path.is_empty() {
            let _ = writeln!(
                h,
                "<tr><td><a href=\"../\">../</a></td><td></td><td></td><td></td><td></td><td></td></tr>"
            );
        }
        for (name, e) in shown {
            let href = utf8_percent_encode(name, COMPONENT).to_string();
            let esc = escape(name);
            match e {
                DistEntry::Dir => {
                    let _ = writeln!(
                        h,
                        "<tr class=\"d\"><td><a href=\"{href}/\">{esc}/</a></td><td class=\"n\">-</td>\
                         <td class=\"t\">{dir_time}</td><td></td><td></td><td></td></tr>"
                    );
                }
                DistEntry::Symlink(target) => {
                    let _ = writeln!(
                        h,
                        "<tr><td><a href=\"{href}\">{esc}</a> → {}</td><td class=\"n\">-</td>\
                         <td class=\"t\">{dir_time}</td><td></td><td></td><td></td></tr>",
                        escape(target)
                    );
                }
                DistEntry::File(id) => {
                    let (size, time) = snap.file(*id).map_or((0, 0), |f| (f.size, f.published_at));
                    let row = files.get(id);
                    let sha = row.map_or("", |r| r.sha256.as_str());
                    let signer = row.map_or(String::new(), |r| {
                        let who = escape(&r.uploader);
                        match userids.get(&r.uploader) {
                            Some(uid) => {
                                format!("{}<br><span class=\"fpr\">{who}</span>", escape(uid))
                            }
                            None => format!("<span class=\"fpr\">{who}</span>"),
                        }
                    });
                    let mut also = String::new();
                    if matches!(sibling(&format!("{name}.sig")), Some(DistEntry::File(_))) {
                        let _ = write!(also, "<a href=\"{href}.sig\">sig</a> ");
                    }
                    if matches!(sibling(&format!("{name}.torrent")), Some(DistEntry::Torrent(t)) if t == *id)
                    {
                        let _ = write!(also, "<a href=\"{href}.torrent\">torrent</a>");
                    }
                    let _ = writeln!(
                        h,
                        "<tr><td><a href=\"{href}\">{esc}</a></td><td class=\"n\" title=\"{size} bytes\">{}</td>\
                         <td class=\"t\">{}</td><td><code>{sha}</code></td><td>{signer}</td><td class=\"t\">{also}</td></tr>",
                        human(size),
                        fmt_time(epoch(time)),
                    );
                }
                DistEntry::Generated(g) => {
                    let size = snap.generated_len(cat, path, *g).map_err(catalog_error)?;
                    let _ = writeln!(
                        h,
                        "<tr class=\"g\"><td><a href=\"{href}\">{esc}</a></td><td class=\"n\" title=\"{size} bytes\">{}</td>\
                         <td class=\"t\">{dir_time}</td><td></td><td>generated</td><td></td></tr>",
                        human(size)
                    );
                }
                DistEntry::Torrent(id) => {
                    let size = snap.file(*id).map_or(0, |f| {
                        f.torrent_info_len.map_or(0, |l| l.get()) + snap.torrent_overhead
                    });
                    let _ = writeln!(
                        h,
                        "<tr class=\"g\"><td><a href=\"{href}\">{esc}</a></td><td class=\"n\">{}</td>\
                         <td class=\"t\">{dir_time}</td><td></td><td>generated</td><td></td></tr>",
                        human(size)
                    );
                }
            }
        }
        h.push_str("</tbody></table>\n<footer>");
        if pages > 1 {
            if page > 1 {
                let _ = write!(h, "<a href=\"?page={}\">← previous</a> · ", page - 1);
            }
            let _ = write!(h, "page {page} of {pages}");
            if page < pages {
                let _ = write!(h, " · <a href=\"?page={}\">next →</a>", page + 1);
            }
            h.push_str("<br>");
        }
        let _ = write!(
            h,
            "{} entries · repofs{}</footer>\n</body></html>\n",
            rows.len(),
            if self.mirror {
                " mirror · <a href=\"/status\">status</a>"
            } else {
                ""
            }
        );
        Ok(h)
    }
}

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

/// By name only: every `DistEntry` kind is served the same way.
fn content_type(name: &str, generated: bool) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("torrent") => "application/x-bittorrent",
        Some("json") => "application/json",
        Some("sig") | Some("asc") => "application/pgp-signature",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        Some("html") | Some("htm") => "text/plain; charset=utf-8", // never rendered as ours
        Some("gz") | Some("tgz") => "application/gzip",
        Some("xz") => "application/x-xz",
        Some("zst") => "application/zstd",
        Some("zip") | Some("whl") | Some("jar") => "application/zip",
        Some("deb") => "application/vnd.debian.binary-package",
        _ if generated => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

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

fn fmt_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.replace('T', " ").trim_end_matches('Z').to_string()
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
    let query = uri.query().map(str::to_string);
    let resolver = d.clone();
    let plan = tokio::task::spawn_blocking(move || resolver.resolve(&raw, query.as_deref())).await;
    let plan = match plan {
        Ok(Ok(p)) => p,
        Ok(Err(refusal)) => return refusal.into_response(),
        Err(e) => return catalog_error(e).into_response(),
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
        Plan::Content(c) => serve(c, method == Method::HEAD, &headers),
    }
}

/// HTTP's conditional and range rules (RFC 9110 §13.2.2 order) over one resource.
fn serve(c: Content, head: bool, req: &HeaderMap) -> Response {
    let text = |n: header::HeaderName| req.get(n).and_then(|v| v.to_str().ok());
    let modified = httpdate::fmt_http_date(c.modified);
    // Seconds only: HTTP dates have no fractions.
    let mod_secs = c
        .modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let not_modified = match text(header::IF_NONE_MATCH) {
        Some(inm) => etag_matches(inm, &c.etag, true),
        None => text(header::IF_MODIFIED_SINCE)
            .and_then(|s| httpdate::parse_http_date(s).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|since| mod_secs <= since.as_secs()),
    };
    let mut headers = HeaderMap::new();
    let mut put = |k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(k, v);
        }
    };
    put(header::ETAG, &c.etag);
    put(header::LAST_MODIFIED, &modified);
    put(header::ACCEPT_RANGES, "bytes");
    put(header::CACHE_CONTROL, "no-cache");
    // Uploaded bytes are never sniffed into HTML on this origin.
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    put(header::CONTENT_TYPE, c.content_type);
    // If-Range: the range applies only to the representation the client already holds.
    let range_applies = match text(header::IF_RANGE) {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => etag_matches(v, &c.etag, false),
        Some(v) => httpdate::parse_http_date(v)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|t| t.as_secs() == mod_secs),
    };
    let range = match text(header::RANGE).filter(|_| range_applies) {
        None => None,
        Some(r) => match single_range(r, c.size) {
            RangeAnswer::Whole => None,
            RangeAnswer::Part(from, to) => Some((from, to)),
            RangeAnswer::Unsatisfiable => {
                put(header::CONTENT_RANGE, &format!("bytes */{}", c.size));
                let mut r = refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "unsatisfiable-range",
                    format!("the file has {} bytes", c.size),
                )
                .into_response();
                r.headers_mut().extend(headers);
                return r;
            }
        },
    };
    let (status, from, len) = match range {
        Some((from, to)) => {
            put(
                header::CONTENT_RANGE,
                &format!("bytes {from}-{to}/{}", c.size),
            );
            (StatusCode::PARTIAL_CONTENT, from, to - from + 1)
        }
        None => (StatusCode::OK, 0, c.size),
    };
    put(header::CONTENT_LENGTH, &len.to_string());
    let body = if head {
        Body::empty()
    } else {
        match c.body {
            Source::Bytes(b) => Body::from(b.slice(from as usize..(from + len) as usize)),
            Source::Object(o) => stream(o, from, len),
        }
    };
    (status, headers, body).into_response()
}

enum RangeAnswer {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range, inclusive, within `size`. A malformed header is ignored (the whole
/// body, as RFC 9110 allows), and so is a request for several ranges (our choice: no multipart).
fn single_range(value: &str, size: u64) -> RangeAnswer {
    let Ok(mut parsed) = http_range_header::parse_range_header(value) else {
        return RangeAnswer::Whole;
    };
    if parsed.ranges.len() != 1 {
        return RangeAnswer::Whole;
    }
    // A suffix longer than the file means the whole file (RFC 9110 §14.1.3).
    for r in &mut parsed.ranges {
        if let http_range_header::StartPosition::FromLast(n) = r.start {
            if n > size && size > 0 {
                r.start = http_range_header::StartPosition::FromLast(size);
            }
        }
    }
    if size == 0 {
        return RangeAnswer::Unsatisfiable;
    }
    match parsed.validate(size) {
        Ok(v) => match v.first() {
            Some(r) if r.start() <= r.end() && *r.start() < size => {
                RangeAnswer::Part(*r.start(), *r.end())
            }
            _ => RangeAnswer::Unsatisfiable,
        },
        Err(_) => RangeAnswer::Unsatisfiable,
    }
}

/// Whether an If-None-Match / If-Range list names `etag` (weak comparison for the first,
/// strong for If-Range, where a weak tag never matches).
fn etag_matches(list: &str, etag: &str, weak_ok: bool) -> bool {
    list.split(',').map(str::trim).any(|t| {
        if t == "*" {
            return weak_ok;
        }
        match t.strip_prefix("W/") {
            Some(w) => weak_ok && w == etag,
            None => t == etag,
        }
    })
}

/// `len` bytes of `o` from `from`, read on a blocking thread in `CHUNK`s through a bounded
/// channel. A failed read (a mirror's EIO after its deadline) ends the body with an error,
/// which aborts the connection: the client sees a short transfer.
fn stream(o: Arc<dyn ReadAt>, from: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut at = from;
        let end = from + len;
        while at < end {
            let want = (end - at).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            let mut got = 0;
            let failed = loop {
                if got == want {
                    break None;
                }
                match o.read_at(&mut buf[got..], at + got as u64) {
                    Ok(0) => break Some(io::Error::from(io::ErrorKind::UnexpectedEof)),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(e),
                }
            };
            if let Some(e) = failed {
                warn!(error = %e, offset = at + got as u64, "HTTP: read failed mid-body; aborting the response");
                let _ = tx.blocking_send(Err(e));
                return;
            }
            at += want as u64;
            // The client went away: stop reading.
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

// ---- mirror status ---------------------------------------------------------------------------

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

async fn status(State(d): State<Arc<Dists>>, headers: HeaderMap) -> Response {
    let mut r = status_page(d, wants_json(&headers)).await;
    // One URL, two representations: caches must key on Accept.
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    r
}

async fn status_json(State(d): State<Arc<Dists>>) -> Response {
    status_page(d, true).await
}

async fn status_page(d: Arc<Dists>, json: bool) -> Response {
    if !d.mirror {
        return refuse(
            StatusCode::NOT_FOUND,
            "not-a-mirror",
            "this repository is a primary: /status is a mirror's page",
        )
        .into_response();
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
    let no_cache = (header::CACHE_CONTROL, "no-cache");
    if json {
        return match serde_json::to_vec_pretty(&s) {
            Ok(body) => {
                ([(header::CONTENT_TYPE, "application/json"), no_cache], body).into_response()
            }
            Err(e) => catalog_error(e).into_response(),
        };
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
    h.push_str(
        "</tbody></table>\n<footer><a href=\"/dists/\">dists/</a> · \
         <a href=\"/status.json\">JSON</a></footer>\n</body></html>\n",
    );
    html_page(h)
}

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

    #[test]
    fn ranges_follow_rfc_9110() {
        let part = |v: &str, size| match single_range(v, size) {
            RangeAnswer::Part(a, b) => Some((a, b)),
            RangeAnswer::Whole => None,
            RangeAnswer::Unsatisfiable => Some((u64::MAX, u64::MAX)),
        };
        assert_eq!(part("bytes=100-199", 1000), Some((100, 199)));
        assert_eq!(part("bytes=-500", 1000), Some((500, 999)));
        assert_eq!(part("bytes=-5000", 1000), Some((0, 999)));
        assert_eq!(part("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(part("bytes=900-5000", 1000), Some((900, 999)));
        assert_eq!(part("bytes=1000-", 1000), Some((u64::MAX, u64::MAX)));
        assert_eq!(part("bytes=0-1,5-6", 1000), None);
        assert_eq!(part("pages=1-2", 1000), None);
        assert!(etag_matches("\"x\", W/\"y\"", "\"y\"", true));
        assert!(!etag_matches("W/\"y\"", "\"y\"", false));
    }
}
