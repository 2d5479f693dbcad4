//! Packages' own install and remove scripts: which files each format keeps as scripts, saving
//! them at install (`var/lib/repofs/installed/scripts/NAME/`, so `remove` runs the installed
//! version's), the command line each format's step becomes, and running it as pacman does:
//! inside the install root (`chroot ROOT /bin/sh -c …` when ROOT is not `/`), each run with a
//! deadline, its output kept for the error when it fails. A root without `/bin/sh` cannot run
//! scripts: they are skipped with a warning, like pacman.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::catalog::PackageRow;

use super::conflicts::resolve;
use super::db::{Db, Receipt};
use super::{InstallError, Result};

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
        let sh = resolve(&self.root, "bin/sh");
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

/// The script files each format keeps, by their path in the package tree; saved under
/// `var/lib/repofs/scripts/NAME/` with the same base name.
pub(super) fn script_sources(p: &PackageRow, pkg: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut add = |rel: &str| {
        let src = pkg.join(rel);
        if src.is_file() {
            let base = rel.rsplit('/').next().unwrap_or(rel).to_string();
            out.push((src, base));
        }
    };
    match p.meta_source.as_str() {
        "pkginfo" => add(".INSTALL"),
        "npm" => {
            // npm strips whatever the top directory is called; `package/` in practice.
            if let Ok(rd) = fs::read_dir(pkg) {
                for e in rd.flatten() {
                    if e.path().join("package.json").is_file() {
                        let top = e.file_name().to_string_lossy().into_owned();
                        add(&format!("{top}/package.json"));
                        break;
                    }
                }
            }
        }
        "tpm" => {
            for s in TPM_SCRIPTS {
                add(&format!("info/{s}"));
                add(&format!("info/{s}.sh"));
            }
        }
        "distpac" => {
            add("scripts/install.sh");
            add("scripts/uninstall.sh");
        }
        _ => {}
    }
    out
}

const TPM_SCRIPTS: [&str; 4] = ["preinstall", "postinstall", "preremove", "postremove"];

pub(super) fn save_scripts(db: &Db, p: &PackageRow, pkg: &Path) -> Result<()> {
    let dir = db.scripts_dir(&format!(".new-{}", p.name));
    let _ = fs::remove_dir_all(&dir);
    let sources = script_sources(p, pkg);
    if sources.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(&dir).map_err(|e| InstallError::io(&dir, e))?;
    for (src, base) in sources {
        let dst = dir.join(base);
        fs::copy(&src, &dst).map_err(|e| InstallError::io(&src, e))?;
    }
    Ok(())
}

/// Runs the package's scripts for `when`, from its saved copies (the `.new-` ones before
/// the commit).
pub(super) fn run_scripts(
    db: &Db,
    runner: &Runner,
    meta_source: &str,
    name: &str,
    when: When,
    version: &str,
    old: Option<&Receipt>,
) -> Result<()> {
    let saved_as = if when == When::PreInstall {
        format!(".new-{name}")
    } else {
        name.to_string()
    };
    let host = db.scripts_dir(&saved_as);
    if !host.is_dir() {
        return Ok(());
    }
    let inside = db.scripts_dir_in_root(&saved_as);
    let list = match meta_source {
        "pkginfo" if host.join(".INSTALL").is_file() => {
            vec![pacman_script(name, &inside, when, version, old)]
        }
        "npm" => npm_scripts(&db.root, &host, name, when, version),
        "tpm" => tpm_scripts(&host, &inside, name, when, version),
        "distpac" => distpac_scripts(&host, &inside, name, when, version),
        _ => Vec::new(),
    };
    for s in &list {
        runner.run(s)?;
    }
    Ok(())
}

/// `NAME: WHAT`, how a script is named in messages.
fn label(name: &str, what: &str) -> String {
    format!("{name}: {what}")
}

/// pacman's `.INSTALL`: sourced, and the function for `when` called if it defines it.
fn pacman_script(
    name: &str,
    inside: &str,
    when: When,
    version: &str,
    old: Option<&Receipt>,
) -> Script {
    let (func, args) = match (when, old) {
        (When::PreInstall, Some(o)) => ("pre_upgrade", vec![version, o.version.as_str()]),
        (When::PostInstall, Some(o)) => ("post_upgrade", vec![version, o.version.as_str()]),
        (When::PreInstall, None) => ("pre_install", vec![version]),
        (When::PostInstall, None) => ("post_install", vec![version]),
        (When::PreRemove, _) => ("pre_remove", vec![version]),
        (When::PostRemove, _) => ("post_remove", vec![version]),
    };
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    Script {
        label: label(name, &format!(".INSTALL {func}")),
        command: format!(
            // No /dev/null in a bare root: compare what `command -v` prints.
            ". {}/.INSTALL\nif [ \"$(command -v {func})\" = {func} ]; then {func} {}; fi",
            quote(inside),
            args.join(" ")
        ),
        cwd: "/".into(),
        env: vec![],
    }
}

/// npm's lifecycle scripts from the saved package.json, run in the package's directory.
fn npm_scripts(root: &Path, host: &Path, name: &str, when: When, version: &str) -> Vec<Script> {
    let events: &[&str] = match when {
        When::PreInstall => &[],
        When::PostInstall => &["preinstall", "install", "postinstall"],
        When::PreRemove => &["preuninstall"],
        When::PostRemove => &["postuninstall"],
    };
    let json: serde_json::Value = fs::read(host.join("package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut list = Vec::new();
    for ev in events {
        // After removal the package's directory is gone: run from the root then.
        let dir = format!("node_modules/{name}");
        let cwd = if resolve(root, &dir).is_dir() {
            format!("/{dir}")
        } else {
            "/".to_string()
        };
        if let Some(cmd) = json["scripts"][*ev].as_str() {
            list.push(Script {
                label: label(name, &format!("npm {ev}")),
                command: cmd.to_string(),
                cwd: cwd.clone(),
                env: vec![
                    ("npm_lifecycle_event".into(), ev.to_string()),
                    ("npm_package_name".into(), name.to_string()),
                    ("npm_package_version".into(), version.to_string()),
                ],
            });
        }
    }
    list
}

/// tpm's `info/STEP` and `info/STEP.sh`, each run with `sh` and the version.
fn tpm_scripts(host: &Path, inside: &str, name: &str, when: When, version: &str) -> Vec<Script> {
    let s = match when {
        When::PreInstall => "preinstall",
        When::PostInstall => "postinstall",
        When::PreRemove => "preremove",
        When::PostRemove => "postremove",
    };
    [s.to_string(), format!("{s}.sh")]
        .into_iter()
        .filter(|f| host.join(f).is_file())
        .map(|f| sh_script(name, &format!("info/{f}"), inside, &f, version))
        .collect()
}

/// distpac's `scripts/install.sh` after install and `scripts/uninstall.sh` before removal.
fn distpac_scripts(
    host: &Path,
    inside: &str,
    name: &str,
    when: When,
    version: &str,
) -> Vec<Script> {
    let f = match when {
        When::PostInstall => "install.sh",
        When::PreRemove => "uninstall.sh",
        _ => "",
    };
    let mut list = Vec::new();
    if !f.is_empty() && host.join(f).is_file() {
        list.push(sh_script(name, &format!("scripts/{f}"), inside, f, version));
    }
    list
}

/// `sh SAVED/FILE VERSION` from `/`, as tpm and distpac run a script; `shown` is its path in
/// the package, for messages.
fn sh_script(name: &str, shown: &str, inside: &str, file: &str, version: &str) -> Script {
    Script {
        label: label(name, shown),
        command: format!("sh {}/{file} {}", quote(inside), quote(version)),
        cwd: "/".into(),
        env: vec![],
    }
}
