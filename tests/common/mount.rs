//! `repofs mount` in the foreground, unmounted (or killed and detached) on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo::{Repo, REPOFS};

/// A `repofs mount` in the foreground on a fresh mount point; on drop it is sent SIGTERM,
/// and if it does not unmount in time it is killed and the mount detached.
pub struct Mount {
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    pub fn start(repo: &Repo) -> Mount {
        let dir = repo.dir.path().join(format!(
            "mnt-{}",
            fs::read_dir(repo.dir.path())
                .map(|r| r.count())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&dir).expect("mount point");
        Mount::start_at(repo, &dir)
    }

    pub fn start_at(repo: &Repo, dir: &Path) -> Mount {
        let log = dir.with_extension("log");
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = repo
            .cmd(REPOFS)
            .arg("mount")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn repofs mount");
        let m = Mount {
            child,
            dir: dir.to_path_buf(),
            log,
        };
        m.wait_mounted();
        m
    }

    fn wait_mounted(&self) {
        let start = Instant::now();
        // incoming/ is never cached by the kernel, so a dead mount fails its stat; a mirror's
        // mount has none, and listing the root reaches the daemon as well.
        let up = || {
            is_mounted(&self.dir)
                && (fs::metadata(self.dir.join("incoming")).is_ok()
                    || fs::read_dir(&self.dir)
                        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name() == "dists"))))
        };
        while !up() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mount did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; returns whether it exited cleanly within 15 s.
    pub fn terminate(&mut self) -> bool {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() && !self.terminate() {
            self.kill9();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Whether something is mounted exactly at `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}
