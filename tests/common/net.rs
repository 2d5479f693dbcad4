//! Loopback services the tests talk to: free ports, an sshd for scp/sftp, a BitTorrent tracker.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::process::{wait_for, KillOnDrop};

/// A free TCP port on loopback (bound and released; the window for a clash is tiny).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An sshd on 127.0.0.1 with its own host key, accepting one client key for root; killed
/// on drop. For driving real scp/sftp clients.
pub struct Sshd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("sshd")
            .tempdir()
            .expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        for key in ["host", "client"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(p(key))
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
        }
        fs::copy(p("client.pub"), p("authorized_keys")).expect("authorized_keys");
        // sshd reads authorized_keys as the user logging in (the test users too).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::set_permissions(p("authorized_keys"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        fs::create_dir_all("/run/sshd").expect("privilege separation dir");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            p("host").display(),
            p("sshd.pid").display(),
            p("authorized_keys").display()
        );
        fs::write(p("sshd_config"), config).expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(p("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd (openssh-server)");
        let sshd = Sshd { child, port, dir };
        wait_for("sshd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        sshd
    }

    fn client_opts(&self, cmd: &mut Command) {
        cmd.arg("-i").arg(self.dir.path().join("client"));
        for o in [
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "BatchMode=yes",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
        ] {
            cmd.arg("-o").arg(o);
        }
    }

    /// `scp -O` (the legacy protocol: open, write, ftruncate, fchmod, close) into `remote_dir`.
    pub fn scp(&self, files: &[PathBuf], remote_dir: &Path) {
        self.scp_as("root", files, remote_dir)
    }

    pub fn scp_as(&self, user: &str, files: &[PathBuf], remote_dir: &Path) {
        let mut cmd = Command::new("scp");
        cmd.arg("-O").arg("-P").arg(self.port.to_string());
        self.client_opts(&mut cmd);
        cmd.args(files)
            .arg(format!("{user}@127.0.0.1:{}/", remote_dir.display()));
        let out = cmd.output().expect("scp");
        assert!(
            out.status.success(),
            "scp as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs an `sftp -b` batch.
    pub fn sftp(&self, batch: &str) {
        self.sftp_as("root", batch)
    }

    pub fn sftp_as(&self, user: &str, batch: &str) {
        let path = self.dir.path().join("batch");
        fs::write(&path, batch).expect("batch");
        let mut cmd = Command::new("sftp");
        cmd.arg("-b")
            .arg(&path)
            .arg("-P")
            .arg(self.port.to_string());
        self.client_opts(&mut cmd);
        let out = cmd.arg(format!("{user}@127.0.0.1")).output().expect("sftp");
        assert!(
            out.status.success(),
            "sftp as {user} {batch}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's opentracker on 127.0.0.1:`port`, serving the whitelisted `infohashes` (hex);
/// configured in `dir`, killed on drop.
pub fn opentracker(dir: &Path, port: u16, infohashes: &[&str]) -> KillOnDrop {
    let child = opentracker_cmd(dir, "127.0.0.1", port, infohashes)
        .spawn()
        .expect("spawn opentracker");
    let guard = KillOnDrop(child);
    wait_for("opentracker to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    guard
}

/// opentracker listening on `ip`:`port` for the whitelisted `infohashes` (hex), configured in
/// `dir` (Debian builds it with a whitelist: without one it refuses every announce).
pub fn opentracker_cmd(dir: &Path, ip: &str, port: u16, infohashes: &[&str]) -> Command {
    let list = dir.join("whitelist");
    fs::write(&list, infohashes.join("\n") + "\n").expect("whitelist");
    let conf = dir.join("ot.conf");
    fs::write(
        &conf,
        format!(
            "listen.tcp_udp {ip}:{port}\naccess.whitelist {}\n",
            list.display()
        ),
    )
    .expect("opentracker config");
    let mut c = Command::new("opentracker");
    c.arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// An HTTP proxy on 127.0.0.1:`port` in front of `upstream` (`http://HOST:PORT`) that flips one
/// byte of every `/by-sha256/` body it passes on (the origin of a mirror's HTTP fallback) and
/// counts them in `dir/flipped`; everything else (the signed index) passes intact. Python's
/// http.server, killed on drop.
pub fn corrupting_proxy(dir: &Path, port: u16, upstream: &str) -> KillOnDrop {
    const SCRIPT: &str = r#"
import http.client, http.server, sys, urllib.parse
port, upstream, counter = int(sys.argv[1]), urllib.parse.urlsplit(sys.argv[2]), sys.argv[3]
flipped = 0
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global flipped
        c = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("range", "if-none-match")}
        c.request("GET", self.path, headers=headers)
        r = c.getresponse()
        body = bytearray(r.read())
        if self.path.startswith("/by-sha256/") and r.status in (200, 206) and len(body) > 100:
            body[100] ^= 0xFF
            flipped += 1
            with open(counter, "w") as f:
                f.write(str(flipped))
        self.send_response(r.status)
        for k in ("Content-Type", "Content-Range", "ETag", "Accept-Ranges"):
            if r.getheader(k):
                self.send_header(k, r.getheader(k))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
"#;
    let child = Command::new("python3")
        .args(["-c", SCRIPT, &port.to_string(), upstream])
        .arg(dir.join("flipped"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3");
    let guard = KillOnDrop(child);
    wait_for("the proxy to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    guard
}

/// A leecher of one block: handshakes with the BitTorrent peer at `peer` for `info_hash`, says
/// it is interested and, once unchoked, asks for the first 16 KiB of `piece`. The block's bytes
/// if the peer sent them within `wait`, None if it did not (hung up, or never answered).
pub fn ask_for_block(
    peer: std::net::SocketAddr,
    info_hash: &[u8; 20],
    piece: u32,
    wait: Duration,
) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + wait;
    let mut s = std::net::TcpStream::connect_timeout(&peer, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut hello = b"\x13BitTorrent protocol".to_vec();
    hello.extend([0u8; 8]);
    hello.extend(info_hash);
    hello.extend(b"-XX0001-one-block-01");
    s.write_all(&hello).ok()?;
    s.write_all(&[0, 0, 0, 1, 2]).ok()?; // interested
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut answered = false;
    while std::time::Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return None,
        }
        if !answered {
            if buf.len() < 68 {
                continue;
            }
            buf.drain(..68);
            answered = true;
        }
        // Whole messages: 4-byte length, id, payload.
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let msg: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            match msg.first() {
                Some(1) => {
                    // unchoke: request(piece, 0, 16 KiB)
                    let mut req = vec![0, 0, 0, 13, 6];
                    req.extend(piece.to_be_bytes());
                    req.extend(0u32.to_be_bytes());
                    req.extend(16384u32.to_be_bytes());
                    s.write_all(&req).ok()?;
                }
                Some(7) if msg.len() > 9 => return Some(msg[9..].to_vec()),
                _ => {}
            }
        }
    }
    None
}
