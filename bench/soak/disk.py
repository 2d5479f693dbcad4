"""Disk full: the spool, the store and the catalog each on a small tmpfs of their own.
  1. spool full: a writer gets ENOSPC; an upload already in flight keeps its bytes; after
     space is freed the cut-off upload resumes (rsync --append-verify) and is published.
  2. store full, 3. catalog full: the upload waits (internal error, retried), no rejection
     is recorded and nothing is quarantined; once space is freed it is published.

Usage: disk.py WORK   (env: SOAK_BIN, SOAK_KEY_UID, SOAK_MOUNTS: file listing mounts made)
Prints one JSON object (results) as its last line."""

import errno
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from soaksite import Site, sha256, wait_until  # noqa: E402

work = sys.argv[1]
BIN, UID = os.environ["SOAK_BIN"], os.environ["SOAK_KEY_UID"]
WAIT = 8  # seconds a blocked upload is watched (the daemon retries every 5 s)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "soak", path], check=True)
    with open(os.environ["SOAK_MOUNTS"], "a") as f:
        f.write(path + "\n")


def free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """A filler file that leaves `leave` bytes free on path's filesystem (0: fill it up)."""
    f = os.path.join(path, ".soak-fill")
    n = max(0, free(path) - leave)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while n > 0:
            n -= os.write(fd, b"\0" * min(n, 1 << 20))
        while leave == 0:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return f


base = os.path.join(work, "disk")
src = os.path.join(base, "src")
os.makedirs(src, exist_ok=True)
root = os.path.join(base, "root")
tmpfs(root, "24m")  # the catalog's disk (and quarantine's)
cfg = os.path.join(base, "repofs.toml")
with open(cfg, "w") as f:
    f.write('[ingest]\nsettle = "300ms"\npair_wait = "1500ms"\nclosed_pair_wait = "300ms"\n'
            '[mount]\nclose_wait = "30s"\n')
site = Site(BIN, root, os.path.join(base, "mnt"), cfg, os.path.join(base, "log"))
site.repofs("keys", "add", "--dir", "/", os.path.join(work, "key.asc"))
tmpfs(os.path.join(root, "store"), "32m")
os.chmod(os.path.join(root, "store"), 0o700)
tmpfs(os.path.join(root, "incoming"), "16m")
site.start_daemon()
site.start_mount()
inc = os.path.join(site.mnt, "incoming")
rng = random.Random(11)


def make(name, size):
    p = os.path.join(src, name)
    with open(p, "wb") as f:
        f.write(rng.randbytes(size))
    subprocess.run(["gpg", "-q", "--batch", "--yes", "-u", UID, "-b", p], check=True)
    return p


def published(name):
    return any(f["filename"] == name for f in site.files(all_=False))


def blocked_check(name):
    """Watches an upload that cannot be committed: it must wait, never be judged."""
    time.sleep(WAIT)
    return {"published_while_full": published(name), "rejected": len(site.rejected()),
            "quarantined": len(site.quarantined()),
            "still_in_spool": os.path.exists(os.path.join(root, "incoming", name))}


res = {}
# A published file whose bytes must survive everything below.
early = make("early-1.0.bin", 300_000)
subprocess.run(["cp", early, early + ".sig", inc], check=True)
wait_until("the first upload", 30, lambda: published("early-1.0.bin"))

# ---- 1. spool full ----------------------------------------------------------------------
a = make("inflight-1.0.bin", 6 << 20)
b = make("cutoff-1.0.bin", 8 << 20)
with open(a, "rb") as f:
    a_head = f.read(3 << 20)
with open(os.path.join(inc, "inflight-1.0.bin"), "wb") as f:  # in flight: half written
    f.write(a_head)
filler = fill(os.path.join(root, "incoming"), 2 << 20)
got = None
try:
    with open(os.path.join(inc, "cutoff-1.0.bin"), "wb") as f, open(b, "rb") as s:
        while True:
            chunk = s.read(1 << 20)
            if not chunk:
                break
            f.write(chunk)
            f.flush()
except OSError as e:
    got = e.errno
res["spool_full_errno"] = errno.errorcode.get(got, str(got))
res["inflight_intact"] = sha256(os.path.join(inc, "inflight-1.0.bin")) == \
    __import__("hashlib").sha256(a_head).hexdigest()
res["cutoff_kept_bytes"] = os.path.getsize(os.path.join(inc, "cutoff-1.0.bin"))
prefix_ok = sha256(os.path.join(inc, "cutoff-1.0.bin")) == sha256(b, res["cutoff_kept_bytes"])
res["cutoff_prefix_intact"] = prefix_ok
res["published_intact"] = sha256(os.path.join(site.mnt, "dists/early/early-1.0.bin")) == sha256(early)
os.unlink(filler)
for p in (b, a):
    r = subprocess.run(["rsync", "-a", "--partial", "--append-verify", p, inc + "/"],
                       capture_output=True, timeout=120)
    r2 = subprocess.run(["cp", p + ".sig", inc + "/"], capture_output=True, timeout=120)
    res[f"resume_{os.path.basename(p)}"] = [r.returncode, r2.returncode]
try:
    wait_until("resumed uploads", 60,
               lambda: published("cutoff-1.0.bin") and published("inflight-1.0.bin"), 0.3)
except TimeoutError as e:
    log(e)
res["resumed_published"] = {n: [f["sha256"] for f in site.files(all_=False) if f["filename"] == n]
                            == [sha256(os.path.join(src, n))]
                            for n in ("cutoff-1.0.bin", "inflight-1.0.bin")}

# ---- 2. store full ----------------------------------------------------------------------
c = make("storefull-1.0.bin", 4 << 20)
filler = fill(os.path.join(root, "store"), 1 << 20)
r = subprocess.run(["cp", c, c + ".sig", inc + "/"], capture_output=True, timeout=120)
res["store_full_cp_rc"] = r.returncode
res["store_full"] = blocked_check("storefull-1.0.bin")
os.unlink(filler)
try:
    wait_until("the store-full upload", 30, lambda: published("storefull-1.0.bin"), 0.3)
    res["store_full"]["published_after_free"] = True
except TimeoutError:
    res["store_full"]["published_after_free"] = False

# ---- 3. catalog full --------------------------------------------------------------------
# A package with a long entry list: its transaction cannot fit in what the WAL already has.
tree = os.path.join(base, "tree", "catfull-1.0")
os.makedirs(tree, exist_ok=True)
for i in range(3000):
    with open(os.path.join(tree, f"entry-with-a-longish-name-{i:05d}.txt"), "w") as f:
        f.write(str(i))
d = os.path.join(src, "catfull-1.0.tar.gz")
subprocess.run(["tar", "-C", os.path.dirname(tree), "-czf", d, "catfull-1.0"], check=True)
subprocess.run(["gpg", "-q", "--batch", "--yes", "-u", UID, "-b", d], check=True)
ck = subprocess.run(["sqlite3", os.path.join(root, "catalog.sqlite"), "PRAGMA wal_checkpoint(TRUNCATE)"],
                    capture_output=True, timeout=60)
res["checkpoint"] = ck.stdout.decode().strip()
filler = fill(root, 0)
res["catalog_disk_free"] = free(root)
r = subprocess.run(["cp", d, d + ".sig", inc + "/"], capture_output=True, timeout=120)
res["catalog_full_cp_rc"] = r.returncode
res["catalog_full"] = blocked_check("catfull-1.0.tar.gz")
os.unlink(filler)
try:
    wait_until("the catalog-full upload", 30, lambda: published("catfull-1.0.tar.gz"), 0.3)
    res["catalog_full"]["published_after_free"] = True
except TimeoutError:
    res["catalog_full"]["published_after_free"] = False
res["pkgs_listed"] = os.path.isdir(os.path.join(site.mnt, "pkgs/catfull/1.0/catfull-1.0"))

dlog = open(site.daemon_log(), errors="replace").read()
res["retries_logged"] = dlog.count("will retry")
res["daemon_alive"] = site.alive("daemon")
res["rejected"] = [(e.get("files"), e.get("reason"), e.get("message")) for e in site.rejected()][:5]
res["integrity"] = site.integrity()
res["clean_stop"] = site.stop()
rc, _ = site.once()
objs, ref = site.store_objects(), site.referenced()
res["orphans_after_gc"] = sorted(set(objs) - ref)[:5]
res["missing_objects"] = sorted(ref - set(objs))[:5]
print(json.dumps(res))
