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

/// scripts/install into a temporary prefix: the binaries, the mount helper link and the units
/// land where asked, the installed units name the installed binaries and pass
/// `systemd-analyze verify`, and a second run changes nothing.
#[test]
fn install_into_a_prefix_then_verify_the_installed_units() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let sbin = dir.path().join("sbin");
    let units = dir.path().join("units");
    let bins = std::path::Path::new(env!("CARGO_BIN_EXE_repofs"))
        .parent()
        .unwrap()
        .to_path_buf();
    let install = || {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install"))
            .arg(&prefix)
            .env("REPOFS_BIN_DIR", &bins)
            .env("SBINDIR", &sbin)
            .env("SYSTEMD_UNIT_DIR", &units)
            .env_remove("DESTDIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    install();
    let listing = |root: &std::path::Path| {
        let out = Command::new("find")
            .arg(root)
            .args(["-printf", "%p %m %l %s\n"])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    let first = listing(dir.path());
    for b in ["repofs", "repofsd"] {
        assert_eq!(
            fs::read(prefix.join("bin").join(b)).unwrap(),
            fs::read(bins.join(b)).unwrap()
        );
    }
    assert_eq!(
        fs::read_link(sbin.join("mount.fuse.repofs")).unwrap(),
        prefix.join("bin/repofs")
    );
    let service = fs::read_to_string(units.join("repofsd.service")).unwrap();
    assert!(
        service.contains(&format!("ExecStart={}/bin/repofsd ", prefix.display())),
        "{service}"
    );
    assert!(!service.contains("/usr/local"), "{service}");
    assert!(prefix.join("share/doc/repofs/README.md").is_file());
    for unit in ["repofsd.service", "mnt-repo.mount"] {
        let path = units.join(unit);
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains(unit),
            "{unit}: {stderr}"
        );
    }
    install();
    assert_eq!(
        listing(dir.path()),
        first,
        "a second install changes nothing"
    );
}
