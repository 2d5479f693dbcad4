"""Load: USERS uploaders as distinct uids (each `uploader.py` under runuser), readers of
dists/ and pkgs/ beside them. Checks every upload is published, no uid saw another's
in-flight files, and nothing waited past its deadline; reports throughput and close(2)
latency percentiles.

Usage: load.py WORK USERS PER_USER SIZE_KIB   (env: SOAK_BIN, SOAK_KEY_UID, SOAK_USERS_FILE)
Prints one JSON object (results) as its last line."""

import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from soaksite import Site, sha256, wait_until  # noqa: E402

work, n_users, per_user, size_kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
BIN, UID = os.environ["SOAK_BIN"], os.environ["SOAK_KEY_UID"]
CLOSE_WAIT = 30.0  # [mount] close_wait below: a close must answer within it
READ_DEADLINE = 10.0  # a view read or listing must answer within this
PY = "/usr/bin/python3"
here = os.path.dirname(os.path.abspath(__file__))


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


base = os.path.join(work, "load")
src = os.path.join(base, "src")
os.makedirs(src, exist_ok=True)
cfg = os.path.join(base, "repofs.toml")
with open(cfg, "w") as f:
    f.write(f'[ingest]\nsettle = "2s"\npair_wait = "5s"\n[mount]\nclose_wait = "{int(CLOSE_WAIT)}s"\n')
site = Site(BIN, os.path.join(base, "root"), os.path.join(base, "mnt"), cfg, os.path.join(base, "log"))
site.repofs("keys", "add", "--dir", "/", os.path.join(work, "key.asc"))

# Users (created by soak.sh, listed one a line: name).
users = [l.strip() for l in open(os.environ["SOAK_USERS_FILE"]) if l.strip()][:n_users]
rng = random.Random(7)
names = []
for u in users:
    for k in range(per_user):
        name = f"{u}-{k}-1.0.bin"
        p = os.path.join(src, name)
        with open(p, "wb") as f:
            f.write(rng.randbytes(size_kib << 10))
        names.append(name)
# Sign in parallel batches (gpg is the slow part of preparing).
procs = []
for name in names:
    procs.append(subprocess.Popen(["gpg", "-q", "--batch", "--yes", "-u", UID, "-b",
                                   os.path.join(src, name)]))
    if len(procs) >= 8:
        for p in procs:
            p.wait()
        procs = []
for p in procs:
    p.wait()
subprocess.run(["chmod", "-R", "a+rX", base], check=True)
sums = {n: sha256(os.path.join(src, n)) for n in names}

site.start_daemon()
site.start_mount()
# Something in pkgs/ and dists/ for the readers: a package with a tree.
tree = os.path.join(base, "tree", "reader-1.0")
os.makedirs(os.path.join(tree, "doc"), exist_ok=True)
for i in range(50):
    with open(os.path.join(tree, "doc", f"f{i}.txt"), "w") as f:
        f.write(f"file {i}\n" * (i * 40 + 1))
tgz = os.path.join(base, "reader-1.0.tar.gz")
subprocess.run(["tar", "-C", os.path.dirname(tree), "-czf", tgz, "reader-1.0"], check=True)
subprocess.run(["gpg", "-q", "--batch", "--yes", "-u", UID, "-b", tgz], check=True)
subprocess.run(["cp", tgz, tgz + ".sig", os.path.join(site.mnt, "incoming")], check=True)
wait_until("the readers' package", 30,
           lambda: os.path.isdir(os.path.join(site.mnt, "pkgs", "reader", "1.0")), 0.2)

# ---- readers --------------------------------------------------------------------------
stop = threading.Event()
reads = {"ops": 0, "max_s": 0.0, "errors": [], "late": 0}
rlock = threading.Lock()


def timed(f):
    t0 = time.monotonic()
    try:
        f()
        err = None
    except OSError as e:
        err = str(e)
    dt = time.monotonic() - t0
    with rlock:
        reads["ops"] += 1
        reads["max_s"] = max(reads["max_s"], dt)
        if dt > READ_DEADLINE:
            reads["late"] += 1
        if err and len(reads["errors"]) < 10:
            reads["errors"].append(err)


def reader(which):
    m = site.mnt
    while not stop.is_set():
        if which % 2 == 0:
            def walk_dists():
                for dp, dn, fn in os.walk(os.path.join(m, "dists")):
                    for n in fn:
                        os.lstat(os.path.join(dp, n))
            timed(walk_dists)
            d = os.path.join(m, "dists", "load")
            try:
                pick = random.choice(os.listdir(d))
                timed(lambda: open(os.path.join(d, pick), "rb").read())
            except (OSError, IndexError):
                pass
        else:
            pkg = os.path.join(m, "pkgs", "reader", "1.0", "reader-1.0", "doc")
            timed(lambda: [open(os.path.join(pkg, f"f{random.randrange(50)}.txt"), "rb").read()
                           for _ in range(5)])
            timed(lambda: os.listdir(os.path.join(m, "pkgs")))
        time.sleep(0.02)


readers = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
for r in readers:
    r.start()

# ---- uploaders --------------------------------------------------------------------------
incoming = os.path.join(site.mnt, "incoming")
t0 = time.monotonic()
procs = []
for i, u in enumerate(users):
    neighbour = users[(i + 1) % len(users)]
    procs.append(subprocess.Popen(
        ["runuser", "-u", u, "--", PY, os.path.join(here, "uploader.py"), incoming, u, neighbour,
         src, str(per_user)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/"))
results = []
for p in procs:
    try:
        o, e = p.communicate(timeout=600)
        results.append(json.loads(o.decode().strip().splitlines()[-1]))
    except Exception as ex:  # a dead or hung uploader is itself a failure
        p.kill()
        results.append({"tag": "?", "closes": [], "errors": [f"uploader: {ex}"], "leaks": [],
                        "bytes": 0})
t_written = time.monotonic() - t0


def published_names():
    return {f["filename"] for f in site.files(all_=False) if f["directory"] == "load"}


try:
    wait_until("every load upload to be published", 120,
                lambda: set(names) <= published_names(), 0.5)
except TimeoutError as e:
    log(e)
t_published = time.monotonic() - t0
stop.set()
for r in readers:
    r.join()

files = {f["filename"]: f for f in site.files(all_=False) if f["directory"] == "load"}
missing = [n for n in names if n not in files]
wrong = [n for n in names if n in files and files[n]["sha256"] != sums[n]]
closes = sorted(c[1] for r in results for c in r["closes"])
sig_closes = sorted(c[1] for r in results for c in r["closes"] if c[0].endswith(".sig"))


def pct(xs, p):
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 4) if xs else None


mount_log = open(site.mount_log(), errors="replace").read()
no_verdict = mount_log.count("no verdict from repofsd")
errors = [e for r in results for e in r["errors"]]
leaks = [(r["tag"], l) for r in results for l in r["leaks"]]
total_bytes = sum(r["bytes"] for r in results)
integrity = site.integrity()
rejected = site.rejected()
stopped = site.stop()
result = {
    "users": len(users), "uploads": len(names), "size_kib": size_kib,
    "written_s": round(t_written, 2), "published_s": round(t_published, 2),
    "uploads_per_s": round(len(names) / t_published, 2),
    "mib_per_s": round(total_bytes / (1 << 20) / t_published, 2),
    "close_p50_s": pct(closes, 0.50), "close_p99_s": pct(closes, 0.99), "close_max_s": pct(closes, 1.0),
    "sig_close_p50_s": pct(sig_closes, 0.50), "sig_close_p99_s": pct(sig_closes, 0.99),
    "closes": len(closes), "late_closes": sum(1 for c in closes if c > CLOSE_WAIT),
    "upload_errors": errors[:10], "n_upload_errors": len(errors),
    "leaks": leaks[:10], "n_leaks": len(leaks),
    "missing": missing[:10], "n_missing": len(missing), "wrong_bytes": wrong[:10],
    "rejected": [(e.get("files"), e.get("reason"), e.get("message")) for e in rejected][:10],
    "no_verdict_in_time": no_verdict,
    "reads": reads, "integrity": integrity, "clean_stop": stopped,
}
print(json.dumps(result))
