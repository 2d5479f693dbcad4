//! Running programs: shell scripts, commands bounded by `timeout`, a pseudo-terminal, a test
//! user; children killed on drop; polling until something happens; and what a process read
//! from disk (with `uncache` to make it read the disk).

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Runs a shell script in `dir`, asserting success.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` until it returns Some, or gives up (None) after `deadline`.
pub fn wait_for_or<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// Polls `f` until it returns Some, or panics after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child process killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` under coreutils `timeout`: no client, packaging tool or repofs command may hang
/// a test. Five minutes, then TERM, then KILL; a timed-out command exits 124.
pub fn output_bounded(cmd: &mut Command) -> Output {
    let mut t = Command::new("timeout");
    t.args(["--kill-after=10", "300"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        t.current_dir(d);
    }
    t.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// [`output_bounded`], asserting success; returns stdout.
pub fn run_bounded(cmd: &mut Command) -> String {
    let out = output_bounded(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with a pseudo-terminal as its stdin, stdout and stderr (util-linux `script`),
/// bounded like [`output_bounded`]; returns everything it wrote to the terminal.
pub fn on_a_terminal(cmd: &Command) -> (std::process::ExitStatus, String) {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect();
    let mut t = Command::new("script");
    t.args(["-q", "-e", "-c", &line.join(" "), "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let out = output_bounded(t.env("TERM", "xterm"));
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Creates (once, race-safely) a local unprivileged user for tests and returns its uid.
pub fn test_user(name: &str) -> u32 {
    let lookup = || {
        Command::new("id")
            .arg("-u")
            .arg(name)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    for _ in 0..50 {
        if let Some(uid) = lookup() {
            return uid;
        }
        // Parallel tests may race on /etc/passwd's lock: try again.
        let _ = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .output();
        // No password, but not locked: sshd (without PAM) refuses locked accounts.
        let _ = Command::new("usermod").args(["-p", "*", name]).output();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("could not create test user {name}");
}

/// Runs `script` with sh as `user`, in `dir`; returns its output.
pub fn sh_as(user: &str, dir: &Path, script: &str) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .current_dir(dir)
        .output()
        .expect("runuser")
}

/// `read_bytes` of process `pid` (/proc/PID/io): what it made the disks read.
pub fn read_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|n| n.parse().ok())
        .expect("read_bytes in /proc/PID/io")
}

/// Drops the page cache's copy of `file`, so reading it again reads the disk.
pub fn uncache(file: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(file).unwrap();
    f.sync_all().unwrap();
    assert_eq!(
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) },
        0
    );
}
