#!/usr/bin/env bash
# Index sync at scale: a primary with 100,000 packages, a mirror syncing from empty, then an
# incremental sync after 100 new publications; stat latency on the mirror's mount; RSS.
# Run on demand, as root (it mounts); not part of the tests.
#
# The 100,000 packages are cheap on purpose: one real package is published (gpg-signed,
# --once), then its catalog rows (file, package metadata, entries, seek points, torrent) are
# cloned in SQL under 100,000 names in 100 directories, logged as one generation. The 100
# new ones are real signed uploads processed by the live primary (100 generations).
# Baselines in the same run: curl + zstd -d of the snapshot object (what the from-empty sync
# must at least do), and stat(2) of a native tree of the same shape.
# Usage: bench/mirror-index.sh [PACKAGES=100000] [NEW=100]
# FROM_EMPTY_ONLY=1 stops after the from-empty sync; PERF=FILE records it (perf record -g).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
new=${2:-100}
[[ $(id -u) -eq 0 ]] || { echo "bench/mirror-index.sh: run as root (it mounts)" >&2; exit 1; }
profile=${PROFILE:-release}
if [[ $profile == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${CARGO_TARGET_DIR:-$PWD/target}/$profile
bench_work
primary=$work/primary mirror=$work/mirror
mkdir -p "$mnt"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf=$work/repofs.toml
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$conf"
bench_key
"$bin/repofs" --root "$primary" --config "$conf" keys add --dir / "$work/key.asc" >/dev/null

# One real package: a small source tree (a few dozen entries), gzip.
mkpkg() { # NAME VERSION DIR
  local d=$work/src/$1-$2; mkdir -p "$d/src/lib" "$d/doc"
  for i in $(seq 30); do echo "$1 $2 file $i" > "$d/src/lib/f$i.c"; done
  echo "# $1" > "$d/README"
  tar -C "$work/src" -czf "$3/$1-$2.tar.gz" "$1-$2"
  gpg -q --batch -b "$3/$1-$2.tar.gz"
}
mkdir -p "$primary/incoming/d0"
mkpkg template 1.0 "$primary/incoming/d0"
"$bin/repofsd" --root "$primary" --config "$conf" --once 2>>"$work/primary.log"

# Clone it under $n names, as one generation.
t0=$(now)
sqlite3 "$primary/catalog.sqlite" <<SQL
PRAGMA foreign_keys = ON;
BEGIN;
CREATE TEMP TABLE t AS SELECT f.id AS id FROM files f WHERE f.filename = 'template-1.0.tar.gz';
CREATE TEMP TABLE n(i INTEGER PRIMARY KEY);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $n) INSERT INTO n SELECT i FROM c;
INSERT INTO generations (generation, created_at)
  SELECT COALESCE(MAX(generation), 0) + 1, strftime('%s','now') FROM generations;
INSERT INTO files (id, directory, filename, kind, sha256, md5, size, name, version, uploader,
                   upload_id, published_at, state)
  SELECT 100000000 + n.i, 'd' || (n.i % 100), 'pkg' || n.i || '-1.0.tar.gz', f.kind, f.sha256,
         f.md5, f.size, 'pkg' || n.i, '1.0', f.uploader, f.upload_id, f.published_at, 'published'
  FROM n, files f WHERE f.id = (SELECT id FROM t);
INSERT INTO packages SELECT 100000000 + n.i, p.format, p.meta_source, 'pkg' || n.i, p.version,
         p.arch, p.description, p.depends, p.metadata, p.payload_offset, p.payload_size,
         p.payload_compression, p.unpacked_size, p.entry_count
  FROM n, packages p WHERE p.file_id = (SELECT id FROM t);
INSERT INTO entries SELECT 100000000 + n.i, e.path, e.kind, e.mode, e.size, e.mtime, e.uid, e.gid,
         e.link_target, e.data_offset, e.sha256, e.layout
  FROM n, entries e WHERE e.file_id = (SELECT id FROM t);
INSERT INTO seek_points SELECT 100000000 + n.i, s.uncompressed_offset, s.compressed_offset,
         s.bits, s.window FROM n, seek_points s WHERE s.file_id = (SELECT id FROM t);
INSERT INTO torrents SELECT 100000000 + n.i, t2.info_hash, t2.info
  FROM n, torrents t2 WHERE t2.file_id = (SELECT id FROM t);
INSERT INTO changes (generation, kind, file_id)
  SELECT (SELECT MAX(generation) FROM generations), 'file', 100000000 + n.i FROM n;
COMMIT;
SQL
echo "cloned $n packages in $(echo "$(now) - $t0" | bc) s; catalog $(du -m "$primary/catalog.sqlite" | cut -f1) MiB"

RUST_LOG=info "$bin/repofsd" --root "$primary" --config "$conf" --listen "127.0.0.1:$port" \
  2>>"$work/primary.log" &
pids+=($!); ppid=$!
t0=$(now)
until [[ -s $primary/index/root.json ]] && grep -q '"generation": 2' "$primary/index/root.json"; do sleep 0.2; done
echo "primary: materialized the delta and the snapshot in $(echo "$(now) - $t0" | bc) s"
"$bin/repofs" --root "$primary" keys export-repo > "$work/repo-key.asc"
snap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"]["sha256"])' "$primary/index/root.json")
snap_bytes=$(stat -c %s "$primary/index/objects/$snap")

# Baseline: fetch and unpack the snapshot, nothing else (best of 3; CPU of curl + zstd).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }
base_sync=
for _ in 1 2 3; do
  rm -f "$work/snap.sqlite"; sync
  t0=$(now)
  /usr/bin/time -f "%U %S" -o "$work/base.cpu" bash -c \
    "curl -sSf 'http://127.0.0.1:$port/index/objects/$snap' | zstd -dq > '$work/snap.sqlite'"
  t=$(echo "$(now) - $t0" | bc)
  if [[ -z $base_sync ]] || (( $(echo "$t < $base_sync" | bc) )); then
    base_sync=$t; base_cpu=$(awk '{print $1 + $2}' "$work/base.cpu")
  fi
done

# From empty.
setting() { sqlite3 "$mirror/catalog.sqlite" "SELECT value FROM settings WHERE key = '$1'" 2>/dev/null || true; }
"$bin/repofs" --root "$mirror" list >/dev/null
t0=$(now)
RUST_LOG=info "$bin/repofsd" --root "$mirror" --config "$conf" --upstream "http://127.0.0.1:$port" \
  --repo-key "$work/repo-key.asc" --poll 1 2>>"$work/mirror.log" &
pids+=($!); mpid=$!
if [[ -n ${PERF:-} ]]; then perf record -g -o "$PERF" -p "$mpid" 2>/dev/null & perfpid=$!; fi
until [[ $(setting index_generation) == 2 ]]; do sleep 0.1; done
full_sync=$(echo "$(now) - $t0" | bc)
full_cpu=$(cpu "$mpid")
[[ -z ${perfpid:-} ]] || { kill -INT "$perfpid"; wait "$perfpid" || true; }
echo "from empty: $full_sync s, mirror repofsd $full_cpu CPU s (snapshot $snap_bytes bytes, unpacked $(stat -c %s "$work/snap.sqlite"); mirror catalog $(du -m "$mirror/catalog.sqlite" | cut -f1) MiB + WAL $(du -m "$mirror/catalog.sqlite-wal" 2>/dev/null | cut -f1) MiB); baseline curl+unzstd $base_sync s, $base_cpu CPU s; ratio $(ratio "$full_sync" "$base_sync")"
grep -h "index synced" "$work/mirror.log" | head -1 || true
[[ -z ${FROM_EMPTY_ONLY:-} ]] || exit 0

# 100 real publications on the live primary.
mkdir -p "$work/new"
for i in $(seq "$new"); do mkpkg "new$i" 1.0 "$work/new"; done
mkdir -p "$primary/incoming/d1"
t0=$(now)
cp "$work"/new/* "$primary/incoming/d1/"
want=$((2 + new))
until grep -q "\"generation\": $want" "$primary/index/root.json" 2>/dev/null; do sleep 0.2; done
published=$(echo "$(now) - $t0" | bc)
t1=$(now)
until [[ $(setting index_generation) == "$want" ]]; do sleep 0.1; done
inc=$(echo "$(now) - $t1" | bc)
# Every sync after the first, as the mirror logged them (it polls during the publications).
read -r syncs objs bytes < <(grep "index synced from=Some" "$work/mirror.log" |
  sed -E 's/.*objects=([0-9]+) bytes=([0-9]+).*/\1 \2/' |
  awk '{n++; o+=$1; b+=$2} END {print n+0, o+0, b+0}')
echo "incremental after $new: mirror caught up $inc s after the root (publishing took $published s); $syncs syncs fetched $objs objects, $bytes bytes (snapshot: $snap_bytes bytes)"

# stat on the mirror's mount, first time for each path (kernel caches empty for them).
RUST_LOG=warn "$bin/repofs" --root "$mirror" --config "$conf" mount "$mnt" 2>>"$work/mount.log" &
pids+=($!); mntpid=$!
for _ in $(seq 200); do mountpoint -q "$mnt" && [[ -d $mnt/dists ]] && break; sleep 0.1; done
native=$work/native; mkdir -p "$native"
python3 - "$native" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(100):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
for i in range(1, n + 1):
    open(f"{root}/d{i % 100}/pkg{i}-1.0.tar.gz", "w").close()
PY
sync; echo 3 > /proc/sys/vm/drop_caches
statbench() { python3 - "$@" <<'PY'
import os, random, sys, time
root, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(7)
ids = random.sample(range(1, n + 1), min(n, 10000))
lat = []
for i in ids:
    p = f"{root}/dists/d{i % 100}/pkg{i}-1.0.tar.gz" if kind == "mirror" else f"{root}/d{i % 100}/pkg{i}-1.0.tar.gz"
    t = time.perf_counter(); os.stat(p); lat.append(time.perf_counter() - t)
    if kind == "mirror":
        q = f"{root}/pkgs/pkg{i}/1.0/template-1.0/README"
        t = time.perf_counter(); os.stat(q); lat.append(time.perf_counter() - t)
lat.sort()
print(f"{lat[len(lat)//2]*1e3:.3f} {lat[int(len(lat)*0.99)]*1e3:.3f}")
PY
}
read -r m50 m99 < <(statbench "$mnt" mirror "$n")
read -r n50 n99 < <(statbench "$native" native "$n")
echo "stat (first time per path): mirror mount p50 $m50 ms p99 $m99 ms; native p50 $n50 ms p99 $n99 ms; p99 ratio $(ratio "$m99" "$n99")"
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }
echo "peak RSS: mirror repofsd $(hwm $mpid) MiB, mount $(hwm $mntpid) MiB, primary repofsd $(hwm $ppid) MiB"
