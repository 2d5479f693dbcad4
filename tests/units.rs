//! The shipped systemd units pass `systemd-analyze verify` with no warnings.

use std::fs;
use std::process::Command;

#[test]
fn units_verify_cleanly() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-analyze is missing: scripts/test installs systemd");
    }
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd")).unwrap() {
        let path = entry.unwrap().path();
        // Point ExecStart at the binaries under test (verify checks that they exist).
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/repofsd", env!("CARGO_BIN_EXE_repofsd"))
            .replace("/usr/local/bin/repofs", env!("CARGO_BIN_EXE_repofs"));
        let copy = dir.path().join(path.file_name().unwrap());
        fs::write(&copy, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // verify exits 0 on settings it ignores, so any output at all is a failure.
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&*copy.to_string_lossy()))
            .collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "{}: {stderr}",
            path.display()
        );
    }
}
