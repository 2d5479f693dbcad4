//! Running packages' own install and remove scripts, as pacman does: inside the install root
//! (`chroot ROOT /bin/sh -c …` when ROOT is not `/`), each run with a deadline, its output
//! kept for the error when it fails. A root without `/bin/sh` cannot run scripts: they are
//! skipped with a warning, like pacman.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::InstallError;

/// When a scripted step of a package runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    PreInstall,
    PostInstall,
    PreRemove,
    PostRemove,
}

/// One script to run: a shell command line, the directory (inside the root) it runs in,
/// and extra environment.
#[derive(Debug, Clone)]
pub struct Script {
    pub label: String,
    pub command: String,
    pub cwd: String,
    pub env: Vec<(String, String)>,
}

pub struct Runner {
    pub root: PathBuf,
    pub timeout: Duration,
    /// Set once a missing shell has been reported, so it is said once per command.
    warned: std::cell::Cell<bool>,
}

/// `'…'` quoting for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Runner {
    pub fn new(root: &Path, timeout: Duration) -> Runner {
        Runner {
            root: root.to_path_buf(),
            timeout,
            warned: std::cell::Cell::new(false),
        }
    }

    fn chrooted(&self) -> bool {
        self.root != Path::new("/")
    }

    /// Runs `s`; Ok(false) when skipped for lack of a shell in the root.
    pub fn run(&self, s: &Script) -> Result<bool, InstallError> {
        let sh = super::resolve(&self.root, "bin/sh");
        if self.chrooted() && !sh.exists() {
            if !self.warned.replace(true) {
                eprintln!(
                    "repofs: warning: {} has no /bin/sh; skipping package scripts",
                    self.root.display()
                );
            }
            tracing::warn!(root = %self.root.display(), script = s.label, "no /bin/sh: script skipped");
            return Ok(false);
        }
        let mut log =
            tempfile::tempfile().map_err(|e| InstallError::io(Path::new("tmpfile"), e))?;
        let out = log
            .try_clone()
            .map_err(|e| InstallError::io(Path::new("tmpfile"), e))?;
        let err = log
            .try_clone()
            .map_err(|e| InstallError::io(Path::new("tmpfile"), e))?;
        let line = format!("cd {} && {{\n{}\n}}", quote(&s.cwd), s.command);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&line)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/")
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so a deadline kills what it started too.
            .process_group(0);
        if self.chrooted() {
            let root = std::ffi::CString::new(self.root.as_os_str().as_bytes())
                .map_err(|_| InstallError::BadPath(self.root.display().to_string()))?;
            // SAFETY: chroot and chdir are async-signal-safe; `root` outlives the spawn.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| InstallError::io(Path::new("/bin/sh"), e))?;
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() >= self.timeout => {
                    // SAFETY: signals our own child's process group.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                    let _ = child.wait();
                    return Err(InstallError::ScriptTimeout {
                        script: s.label.clone(),
                        secs: self.timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(InstallError::io(Path::new("/bin/sh"), e)),
            }
        };
        if !status.success() {
            let mut text = String::new();
            if log.seek(SeekFrom::Start(0)).is_ok() {
                let _ = log.take(64 << 10).read_to_string(&mut text);
            }
            return Err(InstallError::ScriptFailed {
                script: s.label.clone(),
                status: status.to_string(),
                output: text,
            });
        }
        Ok(true)
    }
}
