//! The control socket (`ROOT/repofsd.sock`) between the mount and the daemon.
//!
//! The mount knows what a spool on disk cannot: when the last writer of a file closed it. It
//! sends one JSON line per close and reads one JSON line back: the verdict, if the close
//! completed an upload. The socket is root-only (0600); uploaders never speak to it, and the
//! uid in a request is the one the kernel reported to the mount.
//!
//! Every wait has a deadline. If the daemon is down or slow, the mount's close succeeds
//! (the upload is safe in the spool) and the verdict comes the usual way.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::CloseVerdict;
use crate::reason::Reason;

/// "Every writer of `path` has closed it; `open` are other spool files still open for writing."
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClosedRequest {
    pub path: String,
    #[serde(default)]
    pub open: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Accepted,
    Rejected,
    Pending,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub state: State,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: String,
}

impl Reply {
    pub fn from_verdict(v: &CloseVerdict) -> Reply {
        match v {
            CloseVerdict::Accepted(m) => Reply {
                state: State::Accepted,
                reason: None,
                message: m.clone(),
            },
            CloseVerdict::Rejected(r) => Reply {
                state: State::Rejected,
                reason: Some(r.reason.code().to_string()),
                message: r.message.clone(),
            },
            CloseVerdict::Pending(m) => Reply {
                state: State::Pending,
                reason: None,
                message: m.clone(),
            },
        }
    }

    /// The errno `close(2)` returns: EACCES when who signed (or may upload) was refused,
    /// EIO when the content was; 0 otherwise.
    pub fn errno(&self) -> i32 {
        match (
            &self.state,
            self.reason.as_deref().and_then(Reason::from_code),
        ) {
            (State::Rejected, Some(r)) if r.is_authentication() => libc::EACCES,
            (State::Rejected, _) => libc::EIO,
            _ => 0,
        }
    }
}

/// On a mirror: "make bytes `[from, to)` of object `fetch` (`size` bytes) verified in the
/// cache; you may read on to `ahead`". The reply comes when they are, or with an error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FetchRequest {
    pub fetch: String,
    pub size: u64,
    pub from: u64,
    pub to: u64,
    #[serde(default)]
    pub ahead: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FetchReply {
    /// A stable code when it failed (`not-mirror`, `unknown-object`, `timeout`, `bad-piece`,
    /// `fetch-failed`).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Any request on the socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Request {
    Fetch(FetchRequest),
    Closed(ClosedRequest),
}

/// Sends one request and waits at most `deadline` for the reply.
pub fn request(socket: &Path, req: &ClosedRequest, deadline: Duration) -> io::Result<Reply> {
    exchange(socket, req, deadline)
}

/// Asks repofsd to fetch a range, waiting at most `deadline`.
pub fn fetch(socket: &Path, req: &FetchRequest, deadline: Duration) -> io::Result<FetchReply> {
    exchange(socket, req, deadline)
}

fn exchange<Q: Serialize, R: serde::de::DeserializeOwned>(
    socket: &Path,
    req: &Q,
    deadline: Duration,
) -> io::Result<R> {
    let start = Instant::now();
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let left = deadline
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    let mut reply = String::new();
    BufReader::new(s.take_limited()).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

trait TakeLimited {
    fn take_limited(self) -> io::Take<UnixStream>;
}
impl TakeLimited for UnixStream {
    /// A reply is one short line; never buffer an unbounded one.
    fn take_limited(self) -> io::Take<UnixStream> {
        io::Read::take(self, 64 << 10)
    }
}

/// Binds the socket, replacing a stale one (the writer lock guarantees we are the only daemon).
pub fn bind(socket: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Reads one request from a connection (bounded in size and time).
pub fn read_request(s: &UnixStream) -> io::Result<Request> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(s, 64 << 10)).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn write_reply<R: Serialize>(mut s: &UnixStream, reply: &R) -> io::Result<()> {
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}
