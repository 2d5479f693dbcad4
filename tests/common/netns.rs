//! Hosts in network namespaces (as bench/fleet.sh makes them): each host a namespace of its
//! own with one `eth0`, a veth whose other end sits on a bridge in a namespace of the test's
//! own (never the root namespace), every link capped both ways with `tc tbf`. Addresses are
//! the test's own (the namespaces of two tests never meet, so tests may share them); the
//! namespaces go when the `Net` is dropped, even after a failed assertion.
//!
//! Only programs that use the network run inside (`Host::cmd`, through `nsenter --net`, which
//! keeps the mount namespace: a FUSE mount started from the test is seen by everyone).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::mirror::SYNC;
use super::process::wait_for;
use super::repo::{Daemon, Repo, REPOFSD};

/// The /24 every test's hosts live in, inside its own namespaces.
pub const NET: &str = "10.77.0";

/// A namespace-based network: a bridge and the hosts on it; all removed on drop.
pub struct Net {
    prefix: String,
    rate: String,
    names: Vec<String>,
}

/// A host on a `Net`: its namespace and address.
pub struct Host {
    pub ns: String,
    pub ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tc(ns: &str, dev: &str, rate: &str) {
    let out = Command::new("tc")
        .args([
            "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
        ])
        .args(["burst", "256kb", "latency", "100ms"])
        .output()
        .expect("tc (iproute2)");
    assert!(
        out.status.success(),
        "tc on {ns}/{dev}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// An empty bridge; every link added later is capped at `rate` (tc's syntax: "50mbit").
    pub fn new(rate: &str) -> Net {
        static N: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "rfs{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            prefix,
            rate: rate.into(),
            names: Vec::new(),
        };
        let br = net.add_ns("br");
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        net
    }

    fn add_ns(&mut self, host: &str) -> String {
        let name = format!("{}-{host}", self.prefix);
        ip(&["netns", "add", &name]);
        self.names.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Host number `n` (1-200): address NET.n, its link capped both ways.
    pub fn host(&mut self, n: u8) -> Host {
        let ns = self.add_ns(&format!("h{n}"));
        let br = format!("{}-br", self.prefix);
        let veth = format!("v{n}");
        ip(&[
            "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &br, "link", "set", &veth, "master", "br0", "up"]);
        let addr = format!("{NET}.{n}");
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        tc(&ns, "eth0", &self.rate); // what the host sends
        tc(&br, &veth, &self.rate); // what it receives
        Host { ns, ip: addr }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

impl Host {
    /// `cmd` (program, arguments, environment, directory) run inside this host's namespace.
    pub fn cmd(&self, cmd: &Command) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    }

    /// Bytes this host has sent on its link (frames, headers included).
    pub fn tx_bytes(&self) -> u64 {
        let out = Command::new("ip")
            .args(["-n", &self.ns, "-j", "-s", "link", "show", "dev", "eth0"])
            .output()
            .expect("ip link");
        let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        v[0]["stats64"]["tx"]["bytes"]
            .as_u64()
            .expect("tx bytes of eth0")
    }
}

/// `repofsd ARGS` for `repo` inside `host`'s namespace, once it says it is ready (its log
/// level from FLEET_LOG if set, e.g. `info,librqbit::torrent_state::live=debug`).
pub fn daemon_in(host: &Host, repo: &Repo, args: &[&str]) -> Daemon {
    let log = repo.dir.path().join(format!("repofsd-{}.log", host.ip));
    let mut cmd = repo.cmd(REPOFSD);
    cmd.args(args);
    if let Ok(l) = std::env::var("FLEET_LOG") {
        cmd.env("RUST_LOG", l);
    }
    let child = host
        .cmd(&cmd)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn repofsd in a namespace");
    let d = Daemon { child, log };
    d.wait_log("ready", SYNC);
    d
}

/// Waits until something in `host` accepts TCP on `ip:port` (bash's /dev/tcp, from inside).
pub fn wait_listening(host: &Host, ip: &str, port: u16) {
    let mut probe = Command::new("bash");
    probe.arg("-c").arg(format!("echo > /dev/tcp/{ip}/{port}"));
    wait_for(
        &format!("{ip}:{port} to listen"),
        Duration::from_secs(10),
        || {
            host.cmd(&probe)
                .stderr(Stdio::null())
                .status()
                .ok()?
                .success()
                .then_some(())
        },
    );
}
