"""One uploader of the load test, run as its own uid: writes each upload (FILE, then
FILE.sig) into the mount's incoming/load/, timing every close(2); half-way through each
file, while it is in flight, it looks for other uids' in-flight files (it must see none).

Usage: uploader.py INCOMING TAG NEIGHBOUR SRC_DIR COUNT   -> one JSON line on stdout"""

import json
import os
import sys
import time

incoming, tag, neighbour, src, count = sys.argv[1:6]
count = int(count)
dest = os.path.join(incoming, "load")
out = {"tag": tag, "closes": [], "errors": [], "leaks": [], "bytes": 0}
try:
    os.makedirs(dest, exist_ok=True)
except OSError as e:
    out["errors"].append(f"mkdir: {e}")


def look():
    """Everything this uid can see in incoming/ must be its own."""
    seen = []
    for dp, dn, fn in os.walk(incoming):
        seen += [n for n in fn if not n.startswith(tag + "-")]
    for k in range(count):
        for d in ("load", ""):
            p = os.path.join(incoming, d, f"{neighbour}-{k}-1.0.bin")
            try:
                os.stat(p)
                seen.append(p)
            except FileNotFoundError:
                pass
            except OSError as e:
                seen.append(f"{p}: {e}")
    return seen


def put(srcpath, name, chunk=256 << 10, peek=False):
    fd = os.open(os.path.join(dest, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with open(srcpath, "rb") as f:
            data = f.read()
        half = len(data) // 2
        off = 0
        while off < len(data):
            n = os.write(fd, data[off:off + chunk])
            off += n
            if peek and off >= half:
                peek = False
                out["leaks"] += look()
        out["bytes"] += len(data)
    except OSError as e:
        out["errors"].append(f"write {name}: {e}")
    t0 = time.monotonic()
    try:
        os.close(fd)
        ok = True
    except OSError as e:
        ok = False
        out["errors"].append(f"close {name}: {e}")
    out["closes"].append([name, time.monotonic() - t0, ok])


for k in range(count):
    name = f"{tag}-{k}-1.0.bin"
    put(os.path.join(src, name), name, peek=True)
    put(os.path.join(src, name + ".sig"), name + ".sig")
print(json.dumps(out))
