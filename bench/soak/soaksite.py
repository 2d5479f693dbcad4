"""A repofs site for the soak: repofsd and `repofs mount` as separate processes that can be
SIGKILLed and restarted, plus helpers that read the catalog through the real `repofs` CLI.

Every process started here is recorded in $SOAK_PIDS (one file per pid) so that the
EXIT trap of bench/soak.sh can stop it even if this driver dies."""

import hashlib
import json
import os
import signal
import subprocess
import time


def sha256(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while True:
            n = 1 << 20 if left is None else min(1 << 20, left)
            if n == 0:
                break
            b = f.read(n)
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h.hexdigest()


def is_mounted(path):
    want = os.path.realpath(path).replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(l.split(" ")[4] == want for l in f)


def wait_until(what, deadline, f, step=0.1):
    """Polls f until it returns something true; raises after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(step)


class Site:
    def __init__(self, bindir, root, mnt, config, logdir):
        self.bindir, self.root, self.mnt = bindir, root, mnt
        self.config, self.logdir = config, logdir
        self.daemon = None
        self.mount = None
        self.starts = {"daemon": 0, "mount": 0}
        os.makedirs(mnt, exist_ok=True)
        os.makedirs(logdir, exist_ok=True)

    # ---- processes -------------------------------------------------------------------
    def _cmd(self, binary):
        return [os.path.join(self.bindir, binary), "--root", self.root, "--config", self.config]

    def _spawn(self, argv, log):
        env = dict(os.environ, RUST_LOG=os.environ.get("SOAK_RUST_LOG", "info"))
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(log, "ab"), env=env, start_new_session=True)
        pids = os.environ.get("SOAK_PIDS")
        if pids:
            open(os.path.join(pids, str(p.pid)), "w").close()
        return p

    def _forget(self, p):
        pids = os.environ.get("SOAK_PIDS")
        if pids:
            try:
                os.unlink(os.path.join(pids, str(p.pid)))
            except FileNotFoundError:
                pass

    def daemon_log(self):
        return os.path.join(self.logdir, "repofsd.log")

    def mount_log(self):
        return os.path.join(self.logdir, "mount.log")

    def start_daemon(self, env=None):
        log = self.daemon_log()
        start = os.path.getsize(log) if os.path.exists(log) else 0
        self.daemon = self._spawn(self._cmd("repofsd"), log)
        self.starts["daemon"] += 1

        def ready():
            if self.daemon.poll() is not None:
                raise RuntimeError(f"repofsd exited with {self.daemon.returncode}: see {log}")
            with open(log, "rb") as f:
                f.seek(start)
                return b"ready" in f.read()

        wait_until("repofsd to be ready", 60, ready, 0.05)

    def start_mount(self):
        self.mount = self._spawn(self._cmd("repofs") + ["mount", self.mnt], self.mount_log())
        self.starts["mount"] += 1

        def up():
            if self.mount.poll() is not None:
                raise RuntimeError(f"repofs mount exited with {self.mount.returncode}")
            return is_mounted(self.mnt) and os.path.isdir(os.path.join(self.mnt, "incoming"))

        wait_until("the mount to come up", 30, up, 0.05)

    def kill9(self, which):
        p = self.daemon if which == "daemon" else self.mount
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            self._forget(p)

    def terminate(self, which, deadline=30):
        p = self.daemon if which == "daemon" else self.mount
        if p is None or p.poll() is not None:
            return True
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(deadline)
            self._forget(p)
            return p.returncode == 0
        except subprocess.TimeoutExpired:
            self.kill9(which)
            return False

    def stop(self):
        ok = self.terminate("mount") & self.terminate("daemon")
        if is_mounted(self.mnt):
            subprocess.run(["umount", "-l", self.mnt])
        return ok

    def alive(self, which):
        p = self.daemon if which == "daemon" else self.mount
        return p is not None and p.poll() is None

    # ---- the catalog, through the CLI ---------------------------------------------------
    def repofs(self, *args, timeout=60):
        out = subprocess.run(self._cmd("repofs") + list(args), capture_output=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"repofs {args}: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode()

    def files(self, all_=True):
        return json.loads(self.repofs("list", "--json", *(["--all"] if all_ else [])))

    def status(self):
        return json.loads(self.repofs("status", "--json"))

    def rejected(self):
        return [e for e in self.status() if e["state"] == "rejected"]

    def published(self, directory, filename):
        return [f for f in self.files() if f["directory"] == directory and f["filename"] == filename]

    def once(self):
        out = subprocess.run(self._cmd("repofsd") + ["--once"], capture_output=True, timeout=300,
                             env=dict(os.environ, RUST_LOG="info"))
        return out.returncode, out.stderr.decode(errors="replace")

    # ---- consistency ----------------------------------------------------------------
    def store_objects(self):
        objs = {}
        base = os.path.join(self.root, "store", "objects")
        for prefix in os.listdir(base):
            d = os.path.join(base, prefix)
            if os.path.isdir(d):
                for name in os.listdir(d):
                    objs[name] = os.path.join(d, name)
        return objs

    def store_tmp(self):
        return os.listdir(os.path.join(self.root, "store", "tmp"))

    def referenced(self):
        """What the catalog refers to (the same query `Catalog::referenced_objects` runs)."""
        out = subprocess.run(["sqlite3", "-readonly", os.path.join(self.root, "catalog.sqlite"),
                              "SELECT sha256 FROM files UNION SELECT sha256 FROM derived"],
                             capture_output=True, timeout=60)
        return set(out.stdout.decode().split())

    def integrity(self):
        out = subprocess.run(["sqlite3", os.path.join(self.root, "catalog.sqlite"),
                              "PRAGMA integrity_check"], capture_output=True, timeout=120)
        return out.stdout.decode().strip() + out.stderr.decode().strip()

    def quarantined(self):
        q = os.path.join(self.root, "quarantine")
        return sorted(os.listdir(q)) if os.path.isdir(q) else []
