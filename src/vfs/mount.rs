//! Mounting, unmounting and staying mounted.
//!
//! - A dead mount left by a SIGKILLed `repofs mount` (every access fails with ENOTCONN) is
//!   detached before mounting again on the same path; a live one is refused.
//! - We mount (mount(2), type `fuse.repofs`) and fuser only serves the descriptor, so the
//!   one unmount is ours (`mount_fuse`).
//! - SIGTERM/SIGINT/SIGHUP unmount cleanly. An unmount waits a bounded time for the session
//!   to end, then aborts the FUSE connection, so shutdown never hangs on a stuck client.
//! - The count of requests served (`stats`) is written as JSON to `ROOT/mount-stats.json` on
//!   SIGUSR1 and when the mount ends.
//! - `-d`/`--daemon` (and the mount helper, which `mount -t fuse.repofs` runs and waits for)
//!   re-executes itself in the background and returns once the mount is ready.

use std::ffi::CString;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::{bail, Context};
use fuser::{BackgroundSession, INodeNo, Notifier, SessionACL};
use tracing::{debug, info, warn};

use super::fuse::Fuse;
use super::stats::Stats;
use super::Vfs;
use crate::config::{Config, Layout};

/// How long an unmount waits for the session to end before aborting the connection.
const UNMOUNT_WAIT: Duration = Duration::from_secs(10);
/// How long `--daemon` waits for the background mount to report ready.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Set in the environment of the background child: it prints `ready` on stdout when mounted.
pub const READY_ENV: &str = "REPOFS_MOUNT_READY";
/// Where the request counts go, in the repository root.
const STATS_FILE: &str = "mount-stats.json";

pub struct Mounted {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    /// Device number of the mount: names its connection in /sys/fs/fuse/connections.
    dev: u64,
    stats: Arc<Stats>,
    stats_path: PathBuf,
    /// SIGUSR1 writes the request counts, for as long as the mount lives, in whichever
    /// process holds it (`repofs mount` or `repofsd --mount`): without a handler the signal
    /// would kill the process and leave a dead mount.
    usr1: Option<StatsOnUsr1>,
}

/// How far the kernel reads ahead in a file: one READ's worth (`raise_readahead`).
const READ_AHEAD_KB: &str = "1024";

/// How often the mount looks for a new catalog generation to tell the kernel about.
const VIEWS_POLL: Duration = Duration::from_millis(100);

/// FUSE threads on a mirror, at least.
const MIRROR_THREADS: usize = 16;

/// Mounts the repository at `mountpoint` and serves it on background threads.
pub fn mount(layout: Layout, config: Config, mountpoint: &Path) -> anyhow::Result<Mounted> {
    if let Err(e) = std::fs::create_dir_all(mountpoint) {
        // A stale mount answers ENOTCONN here too; it is detached below.
        if e.raw_os_error() != Some(libc::ENOTCONN) && e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e).with_context(|| format!("creating {}", mountpoint.display()));
        }
    }
    let mountpoint = mountpoint
        .canonicalize()
        .or_else(|e| match e.raw_os_error() {
            // A stale mount cannot be canonicalized; its path as given is what to detach.
            Some(libc::ENOTCONN) => Ok(mountpoint.to_path_buf()),
            _ => Err(e),
        })
        .with_context(|| format!("mount point {}", mountpoint.display()))?;
    recover_stale(&mountpoint)?;
    let stats_path = layout.root.join(STATS_FILE);
    let vfs = Arc::new(Vfs::new(layout, config.clone())?);
    // On a mirror a read may wait for the swarm (up to [mirror] read_timeout) on a FUSE
    // thread: keep enough threads that a few waiting reads do not stall every view.
    // A mount whose config names an upstream is a mirror's even if its service has not yet
    // recorded it in the catalog (the mount then follows the catalog; threads are fixed now).
    let mirror = vfs.is_mirror() || config.mirror.upstream.is_some();
    let threads = match mirror {
        true => config.mount.threads.max(MIRROR_THREADS),
        false => config.mount.threads.max(1),
    };
    let stats = Arc::new(Stats::default());
    // Before the mount is visible: a SIGUSR1 sent once it is (`kill -USR1`, as README says)
    // would otherwise find no handler, and its default action ends the process.
    let usr1 = StatsOnUsr1::start(stats.clone(), stats_path.clone())?;
    let fd = mount_fuse(&mountpoint)?;
    let mut cfg = fuser::Config::default();
    cfg.n_threads = Some(threads);
    cfg.clone_fd = true;
    let notifier = Arc::new(OnceLock::new());
    let views = Arc::downgrade(&vfs);
    let fuse = Fuse(vfs, stats.clone(), notifier.clone(), false);
    let session = fuser::Session::from_fd(fuse, fd, SessionACL::All, cfg)
        .and_then(|s| {
            let _ = notifier.set(s.notifier());
            s.spawn()
        })
        .inspect_err(|_| {
            let _ = umount(&mountpoint, true);
        })
        .with_context(|| format!("serving the mount on {}", mountpoint.display()))?;
    if let Some(n) = notifier.get() {
        follow_views(views, n.clone())?;
    }
    let dev = std::fs::metadata(&mountpoint).map(|m| m.dev()).unwrap_or(0);
    raise_readahead(dev);
    info!(mountpoint = %mountpoint.display(), "mounted");
    Ok(Mounted {
        session: Some(session),
        mountpoint,
        dev,
        stats,
        stats_path,
        usr1: Some(usr1),
    })
}

/// Tells the kernel when the published views change, from a thread of its own (never from a
/// request's, which the kernel may be waiting on): it keeps their listings and attributes
/// (`VIEW_ATTR_TTL`) and would otherwise show a publication only once they expire. Ends
/// with the session, which holds the only other reference to the views.
fn follow_views(vfs: Weak<Vfs>, notifier: Notifier) -> io::Result<()> {
    std::thread::Builder::new()
        .name("mount-views".into())
        .spawn(move || {
            let mut seen = None;
            while let Some(vfs) = vfs.upgrade() {
                for ino in vfs.views_moved(&mut seen) {
                    // ENOENT: the kernel let the inode go since we last looked.
                    if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
                        if e.raw_os_error() != Some(libc::ENOENT) {
                            debug!(ino, error = %e, "the kernel took no notice of a view change");
                        }
                    }
                }
                drop(vfs);
                std::thread::sleep(VIEWS_POLL);
            }
        })?;
    Ok(())
}

/// A thread that writes the request counts to `path` at each SIGUSR1, until dropped.
struct StatsOnUsr1 {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatsOnUsr1 {
    fn start(stats: Arc<Stats>, path: PathBuf) -> io::Result<StatsOnUsr1> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("mount-stats".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if let Err(e) = stats.write(&path) {
                        warn!(path = %path.display(), error = %e, "cannot write the request counts");
                    }
                }
            })?;
        Ok(StatsOnUsr1 {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for StatsOnUsr1 {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Mounted {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the session ended by itself (someone ran `umount`).
    pub fn ended(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.guard.is_finished())
    }

    pub fn unmount(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    /// Writes the request counts so far to `ROOT/mount-stats.json`.
    pub fn write_stats(&self) {
        if let Err(e) = self.stats.write(&self.stats_path) {
            warn!(path = %self.stats_path.display(), error = %e, "cannot write the request counts");
        }
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if !session.guard.is_finished() {
            if let Err(e) = umount(&self.mountpoint, false) {
                warn!(error = %e, "unmount busy; detaching lazily");
                umount(&self.mountpoint, true)?;
            }
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(session.join());
        });
        let joined = match rx.recv_timeout(UNMOUNT_WAIT) {
            Ok(r) => r,
            Err(_) => {
                warn!("session did not end; aborting the FUSE connection");
                abort_connection(self.dev);
                rx.recv_timeout(UNMOUNT_WAIT)
                    .unwrap_or_else(|_| Err(io::Error::other("session still running")))
            }
        };
        info!(mountpoint = %self.mountpoint.display(), "unmounted");
        drop(self.usr1.take());
        self.write_stats();
        joined.context("FUSE session")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            warn!(error = %e, "unmount failed");
        }
    }
}

/// Serves until SIGTERM/SIGINT/SIGHUP or an external unmount, then unmounts. (SIGUSR1, the
/// request counts, is the mount's own: see `Mounted`.)
pub fn serve_until_signal(mounted: Mounted) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let handle = signals.handle();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = tx.send(sig);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(sig) => {
                info!(signal = sig, "unmounting");
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if mounted.ended() => {
                info!("unmounted from outside");
                break;
            }
            Err(_) => {}
        }
    }
    handle.close();
    let _ = waiter.join();
    mounted.unmount()
}

/// `repofs umount`: unmounts (lazily if asked, or if busy and `lazy`).
pub fn umount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let p = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `p` is a valid NUL-terminated path; umount2 only reads it.
    if unsafe { libc::umount2(p.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches a dead FUSE mount (its server was killed); refuses to stack on a live one.
/// Liveness is asked of the server (a directory read): cached attributes answer a stat even
/// for a dead mount.
fn recover_stale(mountpoint: &Path) -> anyhow::Result<()> {
    let dead = |e: &io::Error| e.raw_os_error() == Some(libc::ENOTCONN);
    match std::fs::metadata(mountpoint) {
        Err(e) if dead(&e) => {}
        Err(e) => return Err(e).with_context(|| format!("mount point {}", mountpoint.display())),
        Ok(_) if is_fuse_mount(mountpoint) => match std::fs::read_dir(mountpoint) {
            Err(e) if dead(&e) => {}
            _ => bail!("{} is already mounted", mountpoint.display()),
        },
        Ok(m) if !m.is_dir() => bail!("{} is not a directory", mountpoint.display()),
        Ok(_) => return Ok(()),
    }
    warn!(mountpoint = %mountpoint.display(), "recovering a stale mount left by a killed server");
    umount(mountpoint, true).context("detaching the stale mount")
}

/// Whether a FUSE filesystem is mounted exactly at `path` (from /proc/self/mountinfo).
pub fn is_fuse_mount(path: &Path) -> bool {
    crate::mountinfo::read().is_ok_and(|mounts| crate::mountinfo::mounted_at(&mounts, path, "fuse"))
}

/// Mounts a FUSE filesystem at `mountpoint` and returns its /dev/fuse descriptor.
///
/// fuser's own mount would also work, but it unmounts again when its session ends, after we
/// already did (`shutdown` unmounts itself, to fall back to a lazy unmount and to bound the
/// wait): every clean stop logged "Unmount failed: Invalid argument". A session made with
/// `Session::from_fd` owns no mount, so ours is the only unmount. Mounting here also records
/// the type as `fuse.repofs` (fuser's direct mount drops the subtype), as mount(8) would.
fn mount_fuse(mountpoint: &Path) -> anyhow::Result<OwnedFd> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .context("opening /dev/fuse")?;
    // Started with a standard descriptor closed, /dev/fuse could land on it, and the
    // background mount's report_ready would dup2 the log over the connection.
    let dev = if dev.as_raw_fd() <= libc::STDERR_FILENO {
        std::os::fd::AsFd::as_fd(&dev)
            .try_clone_to_owned()
            .context("moving /dev/fuse off a standard descriptor")?
            .into()
    } else {
        dev
    };
    let root_mode = std::fs::metadata(mountpoint)
        .with_context(|| format!("mount point {}", mountpoint.display()))?
        .mode();
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // The kernel enforces modes (default_permissions): incoming/ is 1777, the views are
    // read-only; allow_other lets every local user in.
    let data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid},default_permissions,allow_other",
        dev.as_raw_fd()
    );
    let target = CString::new(mountpoint.as_os_str().as_bytes())?;
    let data = CString::new(data)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            c"repofs".as_ptr(),
            target.as_ptr(),
            c"fuse.repofs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("mounting on {}", mountpoint.display()));
    }
    Ok(dev.into())
}

/// Lets the kernel read ahead as far as one request carries (max_pages: the 1 MiB max_write).
/// A FUSE mount starts with the default 128 KiB, and the INIT reply can only lower it, so a
/// file of a few MiB took a READ per 128 KiB. Only root may raise it; elsewhere it stays.
fn raise_readahead(dev: u64) {
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, READ_AHEAD_KB) {
        debug!(path, error = %e, "readahead stays at the kernel's default");
    }
}

/// Aborts a FUSE connection: every pending and future request fails, so nothing waits on us.
fn abort_connection(dev: u64) {
    let minor = libc::minor(dev);
    let path = format!("/sys/fs/fuse/connections/{minor}/abort");
    if let Err(e) = std::fs::write(&path, b"1") {
        warn!(path, error = %e, "could not abort the FUSE connection");
    }
}

/// `--daemon`: runs `args` (this program, without `--daemon`) in the background, and returns
/// once it reports the mount ready, or fails with what it said.
pub fn daemonize(args: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .env(READY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Its log goes where ours goes (the journal, under a mount unit).
        .stderr(Stdio::inherit())
        // Its own process group: a Ctrl-C in the shell that mounted it does not unmount.
        .process_group(0)
        .spawn()
        .context("starting the background mount")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(READY_WAIT) {
        Ok(line) if line.trim() == "ready" => Ok(()),
        Ok(_) => {
            let status = child.wait()?;
            bail!("the background mount failed ({status})")
        }
        Err(_) => {
            let _ = child.kill();
            bail!("the background mount was not ready within {READY_WAIT:?}")
        }
    }
}

/// In the background child: tells the waiting parent that the mount is up, then lets go of
/// the parent's output: stdout to /dev/null, and stderr (our log) to `log` unless it is the
/// journal. Whoever ran `mount` may be waiting for EOF on those pipes.
pub fn report_ready(log: &Path) {
    if std::env::var_os(READY_ENV).is_none() {
        return;
    }
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut out = io::stdout();
    let _ = out.write_all(b"ready\n");
    let _ = out.flush();
    let redirect = |file: &std::fs::File, fd: i32| {
        // SAFETY: both descriptors are valid; dup2 atomically replaces `fd`.
        unsafe { libc::dup2(file.as_raw_fd(), fd) };
    };
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        redirect(&null, libc::STDOUT_FILENO);
    }
    if std::env::var_os("JOURNAL_STREAM").is_none() {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            Ok(f) => redirect(&f, libc::STDERR_FILENO),
            Err(e) => warn!(log = %log.display(), error = %e, "cannot open the mount log"),
        }
    }
}
