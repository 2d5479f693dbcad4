//! The control socket (`ROOT/repofsd.sock`) between the mount and the daemon: the transport.
//!
//! One connection carries one request and one reply, each a single JSON line. Two families of
//! messages share the socket — the mount's close reports, answered with an upload's verdict by
//! a primary (`ingest::control`), and the mount's fetch requests, served by a mirror
//! (`fetch::protocol`) — and this module knows neither: it moves serde types, bounded in size
//! and time. The socket is root-only (0600); uploaders never speak to it, and the uid in a
//! request is the one the kernel reported to the mount.
//!
//! Every wait has a deadline. If the daemon is down or slow, the caller gets an error in time
//! and falls back (a close succeeds: the upload is safe in the spool).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A request or a reply is one short line; never buffer an unbounded one.
const MAX_LINE: u64 = 64 << 10;

/// Sends one request and waits at most `deadline` for the reply.
pub fn request<Q: Serialize, R: DeserializeOwned>(
    socket: &Path,
    req: &Q,
    deadline: Duration,
) -> io::Result<R> {
    let start = Instant::now();
    let s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write_line(&s, req)?;
    let left = deadline
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    read_line(&s)
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

/// A request as one side of the socket reads it: one of its own messages, or one of the other
/// family's, told apart by the key only that family's messages carry (a close report has
/// `path`, a fetch has `fetch`). Each side parses only its own messages and answers the
/// other's with a `Refusal` or not at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<Q> {
    Ours(Q),
    Theirs,
}

/// Reads one request from a connection (bounded in size and time); `theirs` is the key that
/// marks the other family's messages.
pub fn read_request<Q: DeserializeOwned>(s: &UnixStream, theirs: &str) -> io::Result<Incoming<Q>> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let line: serde_json::Value = read_line(s)?;
    classify(line, theirs)
}

fn classify<Q: DeserializeOwned>(line: serde_json::Value, theirs: &str) -> io::Result<Incoming<Q>> {
    let other = line.get(theirs).is_some();
    match serde_json::from_value(line) {
        Ok(q) => Ok(Incoming::Ours(q)),
        Err(_) if other => Ok(Incoming::Theirs),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// The answer to a request this side does not serve (a fetch sent to a primary): a stable
/// code and a message, in the shape every reply's caller reads errors from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Option<String>,
    pub error: Option<String>,
}

/// Writes the one reply of a connection.
pub fn write_reply<R: Serialize>(s: &UnixStream, reply: &R) -> io::Result<()> {
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write_line(s, reply)
}

fn write_line<T: Serialize>(mut s: &UnixStream, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

fn read_line<T: DeserializeOwned>(s: &UnixStream) -> io::Result<T> {
    let mut line = String::new();
    BufReader::new(io::Read::take(s, MAX_LINE)).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Eq)]
    struct Close {
        path: String,
    }

    #[test]
    fn each_side_reads_its_own_messages_and_knows_the_others() {
        let read = |line: &str| classify::<Close>(serde_json::from_str(line).unwrap(), "fetch");
        assert_eq!(
            read(r#"{"path":"a"}"#).unwrap(),
            Incoming::Ours(Close { path: "a".into() })
        );
        assert_eq!(
            read(r#"{"fetch":"ab","size":1,"from":0,"to":1}"#).unwrap(),
            Incoming::Theirs
        );
        assert!(
            read(r#"{"other":1}"#).is_err(),
            "neither family: a bad request"
        );
        assert_eq!(
            serde_json::to_string(&Refusal {
                reason: Some("not-mirror".into()),
                error: None
            })
            .unwrap(),
            r#"{"reason":"not-mirror","error":null}"#
        );
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Ping {
        n: u32,
    }

    #[test]
    fn one_line_each_way() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let listener = bind(&socket).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let daemon = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let Ok(Incoming::Ours(Ping { n })) = read_request(&s, "other") else {
                panic!("not a ping");
            };
            write_reply(&s, &Ping { n: n + 1 }).unwrap();
        });
        let reply: Ping = request(&socket, &Ping { n: 41 }, Duration::from_secs(5)).unwrap();
        assert_eq!(reply, Ping { n: 42 });
        daemon.join().unwrap();
        // Binding again replaces the stale socket.
        bind(&socket).unwrap();
    }

    #[test]
    fn a_silent_daemon_is_a_timeout_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let _listener = bind(&socket).unwrap();
        let started = Instant::now();
        let r: io::Result<Ping> = request(&socket, &Ping { n: 1 }, Duration::from_millis(100));
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
