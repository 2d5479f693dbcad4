//! Content hashes, ours and the ones external tools print.

use std::fs;
use std::path::Path;
use std::process::Command;

pub fn sha256_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(fs::read(p).expect("read")))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Output of an external tool's first field (`sha256sum FILE` → the hash).
pub fn tool_hash(tool: &str, p: &Path) -> String {
    let out = Command::new(tool).arg(p).output().expect(tool);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}
