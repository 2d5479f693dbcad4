//! Serving one file's bytes: GET and HEAD with HTTP's conditional and range rules (strong
//! ETags, Last-Modified, If-None-Match / If-Modified-Since → 304, If-Range, one `bytes=` range
//! → 206, unsatisfiable → 416), the body streamed from a blocking reader. Apart from `mod.rs`
//! because these rules hold for any resource, whatever dists/ path resolved to it.

use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::{refuse, Refusal};
use crate::store::{read_exact_at, ReadAt};

/// Bytes per read of a published file (one BitTorrent piece; on a mirror a read maps to pieces).
const CHUNK: usize = 256 << 10;
/// Chunks in flight between the reader thread and the connection.
const IN_FLIGHT: usize = 4;
/// Bodies up to this size are read whole before the answer (on the caller's blocking thread):
/// no reader thread or channel per request, and head and body leave in one write.
pub(super) const WHOLE: u64 = 64 << 10;

/// A resolved file: its bytes (or where to read them) and what HTTP says about them.
pub(super) struct Content<'a> {
    pub(super) body: Source<'a>,
    pub(super) size: u64,
    pub(super) etag: String,
    pub(super) modified: SystemTime,
    pub(super) content_type: &'static str,
}

pub(super) enum Source<'a> {
    Bytes(Bytes),
    /// Opened only for a body: a 304, a HEAD or a 416 never opens the object.
    Object(Opener<'a>),
}

pub(super) type Opener<'a> = Box<dyn FnOnce() -> Result<Arc<dyn ReadAt>, Refusal> + 'a>;

/// HTTP's conditional and range rules (RFC 9110 §13.2.2 order) over one resource. A small
/// body is read here: call it on a blocking thread, or for a primary's local store.
pub(super) fn serve(c: Content<'_>, head: bool, req: &HeaderMap) -> Response {
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
            Source::Object(open) => match open().and_then(|o| object_body(o, from, len)) {
                Ok(body) => body,
                Err(refusal) => return refusal.into_response(),
            },
        }
    };
    (status, headers, body).into_response()
}

/// `len` bytes of `o` from `from`: read here if small, else streamed.
fn object_body(o: Arc<dyn ReadAt>, from: u64, len: u64) -> Result<Body, Refusal> {
    if len > WHOLE {
        return Ok(stream(o, from, len));
    }
    let mut buf = vec![0u8; len as usize];
    if let Err(e) = read_exact_at(o.as_ref(), &mut buf, from) {
        warn!(error = %e, offset = from, "HTTP: read failed");
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "read-failed",
            "the file's content cannot be read now",
        ));
    }
    Ok(Body::from(buf))
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
            if let Err(e) = read_exact_at(o.as_ref(), &mut buf, at) {
                warn!(error = %e, offset = at, "HTTP: read failed mid-body; aborting the response");
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

/// By name only: every `DistEntry` kind is served the same way.
pub(super) fn content_type(name: &str, generated: bool) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

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
