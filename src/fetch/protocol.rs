//! A mirror's messages on the control socket (`crate::control` carries them): the mount asks
//! repofsd for a byte range of an object (`FetchRequest`) and waits for it to be verified in
//! the cache (`FetchReply`). `repofs fetch` asks the same way, in slices.

use std::io;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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

/// Asks repofsd to fetch a range, waiting at most `deadline`.
pub fn fetch(socket: &Path, req: &FetchRequest, deadline: Duration) -> io::Result<FetchReply> {
    crate::control::request(socket, req, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format is shared with mounts and daemons of other versions: it never changes.
    #[test]
    fn wire_format() {
        let req = FetchRequest {
            fetch: "ab".into(),
            size: 10,
            from: 2,
            to: 5,
            ahead: 7,
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"fetch":"ab","size":10,"from":2,"to":5,"ahead":7}"#
        );
        assert_eq!(serde_json::from_str::<FetchRequest>(&line).unwrap(), req);
        assert_eq!(
            serde_json::to_string(&FetchReply::default()).unwrap(),
            r#"{"reason":null,"error":null}"#
        );
        assert!(serde_json::from_str::<FetchRequest>(r#"{"fetch":"ab"}"#).is_err());
    }
}
