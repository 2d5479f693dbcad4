//! Stock clients as the tests drive them: rsync interrupted part-way, apt-get in a private root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::process::{output_bounded, wait_for, KillOnDrop};

/// `rsync -a --partial EXTRA SRC DEST/`.
pub fn rsync_partial(extra: &[&str], src: &Path, dest: &Path) -> Command {
    let mut c = Command::new("rsync");
    c.args(["-a", "--partial"])
        .args(extra)
        .arg(src)
        .arg(format!("{}/", dest.display()));
    c
}

/// Writes a 6 MB file into `dir` (too big for rsync at `--bwlimit=1500` to send in a blink).
pub fn rsync_payload(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&path, &data).expect("write payload");
    path
}

/// Starts `rsync --partial` of `src` into `dest`, slowed down, interrupts it with SIGINT
/// part-way, and returns the size of what it kept under the final name (asserted partial).
pub fn interrupted_rsync(src: &Path, dest: &Path) -> u64 {
    let first = KillOnDrop(
        rsync_partial(&["--bwlimit=1500"], src, dest)
            .spawn()
            .expect("rsync"),
    );
    wait_for("rsync to write something", Duration::from_secs(20), || {
        fs::read_dir(dest)
            .ok()?
            .filter_map(Result::ok)
            .any(|e| fs::metadata(e.path()).is_ok_and(|m| m.len() > 500_000))
            .then_some(())
    });
    // SAFETY: signalling our own child, which KillOnDrop has not reaped yet.
    unsafe { libc::kill(first.0.id() as i32, libc::SIGINT) };
    drop(first);
    let partial = dest.join(src.file_name().expect("file name"));
    let size = wait_for(
        "rsync --partial to keep the partial file",
        Duration::from_secs(10),
        || fs::metadata(&partial).ok().map(|m| m.len()),
    );
    let full = fs::metadata(src).expect("source").len();
    assert!(
        size > 0 && size < full,
        "expected a partial file, got {size} of {full} bytes"
    );
    size
}

/// A private apt root: its own config, lists, cache and dpkg database; one source line
/// `deb [signed-by=KEY] URL ./` (without a key, `trusted=yes`: only for apt as an oracle over
/// an unsigned apt-ftparchive repository); nothing of the host's apt configuration or keys.
pub struct AptRoot {
    pub root: PathBuf,
    conf: PathBuf,
}

impl AptRoot {
    pub fn new(parent: &Path, url: &str, key: Option<&Path>) -> AptRoot {
        let root = parent.to_path_buf();
        for d in [
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/log/apt",
        ] {
            fs::create_dir_all(root.join(d)).expect("apt root");
        }
        fs::write(root.join("var/lib/dpkg/status"), "").expect("dpkg status");
        let trust = match key {
            Some(k) => format!("signed-by={}", k.display()),
            None => "trusted=yes".to_string(),
        };
        fs::write(
            root.join("etc/apt/sources.list"),
            format!("deb [{trust}] {url} ./\n"),
        )
        .expect("sources.list");
        let r = root.display();
        let conf = root.join("apt.conf");
        fs::write(
            &conf,
            format!(
                "Dir::Etc \"{r}/etc/apt\";\nDir::State \"{r}/var/lib/apt\";\n\
                 Dir::State::status \"{r}/var/lib/dpkg/status\";\nDir::Cache \"{r}/var/cache/apt\";\n\
                 Dir::Log \"{r}/var/log/apt\";\nDebug::NoLocking \"true\";\n\
                 APT::Sandbox::User \"root\";\nAcquire::Languages \"none\";\n\
                 APT::Install-Recommends \"false\";\nDpkg::Use-Pty \"false\";\n\
                 DPkg::Options {{ \"--root={r}\"; \"--admindir={r}/var/lib/dpkg\"; \"--force-script-chrootless\"; }};\n"
            ),
        )
        .expect("apt.conf");
        AptRoot { root, conf }
    }

    /// `apt-get ARGS` in this root, bounded.
    pub fn apt_get(&self, args: &[&str]) -> Output {
        output_bounded(
            Command::new("apt-get")
                .args(args)
                .env("APT_CONFIG", &self.conf)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    }
}

/// aria2c checks `dir/NAME` against the torrent's piece hashes and stops at once: success
/// only if every piece verifies (there are no peers to fetch a bad one from).
pub fn aria2c_verifies(torrent: &std::path::Path, dir: &std::path::Path) -> bool {
    let out = Command::new("timeout")
        .args(["60", "aria2c", "--check-integrity=true", "--seed-time=0"])
        .args([
            "--enable-dht=false",
            "--bt-enable-lpd=false",
            "--bt-stop-timeout=2",
        ])
        .args(["--summary-interval=0", "--console-log-level=warn"])
        .arg("-d")
        .arg(dir)
        .arg(torrent)
        .output()
        .unwrap();
    out.status.success()
}

/// GET `http://127.0.0.1:PORT/metrics`, parsed by the Prometheus project's own Python client:
/// its OpenMetrics parser (the format served) and its classic text parser must both accept it.
/// Each sample as `name{label="value",…}` → value. Debian's python3 (the package's), not
/// whichever python3 is first on PATH.
pub fn scrape_metrics(port: u16) -> std::collections::BTreeMap<String, f64> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET /metrics failed: {out:?}");
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
list(classic(text))
out = {}
for fam in openmetrics(text):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        out[s.name + ("{%s}" % labels if labels else "")] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("timeout")
        .args(["30", "/usr/bin/python3", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&out.stdout).expect("write the metrics");
    }
    let parsed = child.wait_with_output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        parsed.status.success(),
        "/metrics does not parse: {}\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    serde_json::from_slice(&parsed.stdout).unwrap_or_else(|e| panic!("parser output: {e}\n{text}"))
}
