//! Timestamps: the catalog stores Unix seconds; people and JSON get RFC 3339.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn rfc3339(unix_secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Now, in Unix seconds (the catalog's clock).
pub fn now() -> i64 {
    unix(SystemTime::now())
}

pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
