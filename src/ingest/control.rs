//! The mount's close reports on the control socket (`crate::control` carries them), and the
//! daemon's verdicts.
//!
//! The mount knows what a spool on disk cannot: when the last writer of a file closed it. It
//! sends one report per close and reads back the verdict, if the close completed an upload.
//! If the daemon is down or slow, the mount's close succeeds (the upload is safe in the spool)
//! and the verdict comes the usual way.

use std::io;
use std::path::Path;
use std::time::Duration;

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

/// Sends one close report and waits at most `deadline` for the verdict.
pub fn request(socket: &Path, req: &ClosedRequest, deadline: Duration) -> io::Result<Reply> {
    crate::control::request(socket, req, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format is shared with mounts and daemons of other versions: it never changes.
    #[test]
    fn wire_format() {
        let req = ClosedRequest {
            path: ".users/1000/a.deb".into(),
            open: vec!["b.deb".into()],
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(line, r#"{"path":".users/1000/a.deb","open":["b.deb"]}"#);
        assert_eq!(serde_json::from_str::<ClosedRequest>(&line).unwrap(), req);
        let reply = Reply {
            state: State::Rejected,
            reason: Some("bad-signature".into()),
            message: "no".into(),
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"state":"rejected","reason":"bad-signature","message":"no"}"#
        );
        assert_eq!(reply.errno(), libc::EACCES);
        let fetch = r#"{"fetch":"ab","size":10,"from":2,"to":5,"ahead":7}"#;
        assert!(serde_json::from_str::<ClosedRequest>(fetch).is_err());
        let refusal = crate::control::Refusal {
            reason: Some("not-mirror".into()),
            error: Some("this repository is not a mirror".into()),
        };
        assert_eq!(
            serde_json::to_string(&refusal).unwrap(),
            r#"{"reason":"not-mirror","error":"this repository is not a mirror"}"#
        );
    }
}
