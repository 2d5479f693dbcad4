#!/usr/bin/env bash
# The mount, as ratios against baselines measured in the same run on the same bytes
# (run on demand as root; not part of the tests):
#  1. ingest: `cp FILE FILE.sig /mnt/incoming/` until listed in dists/, against the pipeline
#     a sysadmin would use (cp; md5sum; sha256sum; gpg --verify; mv). Target <= 0.8.
#  2. dists/ read: `cat` of a published file through the mount against `cat` of the same bytes
#     on disk, both from a cold page cache. Target >= 0.9 (as throughput).
#  3. pkgs/ on a large .tar.gz (TREE_FILES small files, default 80000, like a kernel tree):
#     first read of one small file deep inside, against ratarmount if it can be installed
#     (pip), and `ls -lR` of the tree against native `ls -lR` of the unpacked tree. Targets:
#     faster than ratarmount; within 2x native.
# Usage: bench/mount.sh [SIZE_MIB=1024] [RUNS=3] [TREE_FILES=80000]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
runs=${2:-3}
nfiles=${3:-80000}
[[ $(id -u) -eq 0 ]] || { echo "bench/mount.sh: run as root (it mounts)" >&2; exit 1; }
cargo build --release --quiet
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=$PWD/target/release
bench_work
bench_key
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

file=$work/bench-1.0.bin
head -c $((size << 20)) /dev/urandom > "$file"
gpg -q --batch -b "$file"

# ---- 1. ingest through the mount --------------------------------------------------------
start_site() {
  local r=$work/root; rm -rf "$r"; mkdir -p "$mnt"
  "$bin/repofs" --root "$r" keys add --dir / "$work/key.asc" >/dev/null
  RUST_LOG=warn "$bin/repofsd" --root "$r" --mount "$mnt" 2>>"$work/repofsd.log" &
  pids+=($!)
  for _ in $(seq 100); do [[ -d $mnt/incoming ]] && mountpoint -q "$mnt" && break; sleep 0.1; done
}
stop_site() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }
repofs_ingest() {
  start_site
  mkdir -p "$mnt/incoming/bench"
  sync; local t0; t0=$(now)
  cp "$file" "$file.sig" "$mnt/incoming/bench/"
  until [[ -e $mnt/dists/bench/bench-1.0.bin ]]; do sleep 0.01; done
  sync; echo "$(now) - $t0" | bc
  stop_site
}
for _ in $(seq "$runs"); do baseline; done | best > "$work/b1"
for _ in $(seq "$runs"); do repofs_ingest; done | best > "$work/r1"
b1=$(cat "$work/b1"); r1=$(cat "$work/r1")
echo "1. ingest ${size} MiB: baseline ${b1}s, through the mount ${r1}s, ratio $(ratio "$r1" "$b1") (target <= 0.8)"

# ---- 2. reading dists/ --------------------------------------------------------------
start_site
mkdir -p "$mnt/incoming/bench" && cp "$file" "$file.sig" "$mnt/incoming/bench/"
until [[ -e $mnt/dists/bench/bench-1.0.bin ]]; do sleep 0.01; done
sha=$(sha256sum "$file" | cut -d' ' -f1)
obj=$work/root/store/objects/${sha:0:2}/$sha
read_time() { drop; local t0; t0=$(now); cat "$1" > /dev/null; echo "$(now) - $t0" | bc; }
for _ in $(seq "$runs"); do read_time "$obj"; done | best > "$work/b2"
for _ in $(seq "$runs"); do read_time "$mnt/dists/bench/bench-1.0.bin"; done | best > "$work/r2"
b2=$(cat "$work/b2"); r2=$(cat "$work/r2")
echo "2. cat ${size} MiB cold: native ${b2}s, through dists/ ${r2}s, throughput ratio $(ratio "$b2" "$r2") (target >= 0.9)"

# ---- 3. a large .tar.gz in pkgs/ ------------------------------------------------------
tree=$work/tree/big-1.0
mkdir -p "$tree"
python3 - "$tree" "$nfiles" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
words = [b"static int", b"return 0;", b"#include <linux/kernel.h>", b"struct file *f;", b"EXPORT_SYMBOL"]
for i in range(n):
    d = os.path.join(root, f"d{i % 40}", f"s{(i // 40) % 50}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.c"), "wb") as f:
        f.write(b"\n".join(random.choice(words) for _ in range(random.randint(20, 600))))
PY
tar -C "$work/tree" -czf "$work/big-1.0.tar.gz" big-1.0
gpg -q --batch -b "$work/big-1.0.tar.gz"
mkdir -p "$mnt/incoming/big"
cp "$work/big-1.0.tar.gz" "$work/big-1.0.tar.gz.sig" "$mnt/incoming/big/"
until [[ -d $mnt/pkgs/big/1.0 ]]; do sleep 0.1; done
deep="big-1.0/d39/s49/f$(( (nfiles / 2000) * 2000 - 1 )).c"
[[ -e $tree/../$deep ]] || deep=$(cd "$work/tree" && find big-1.0 -name '*.c' | sort | tail -1)
first_read() { drop; local t0; t0=$(now); cat "$1" > /dev/null; echo "$(now) - $t0" | bc; }
# Once: a repeat would find the package's entry list and seek points cached by the mount.
r3=$(first_read "$mnt/pkgs/big/1.0/$deep")
lslr() { drop; local t0; t0=$(now); ls -lR "$1" > /dev/null; echo "$(now) - $t0" | bc; }
b4=$(for _ in $(seq "$runs"); do lslr "$work/tree/big-1.0"; done | best)
r4=$(for _ in $(seq "$runs"); do lslr "$mnt/pkgs/big/1.0/big-1.0"; done | best)
echo "3a. first read of $deep (${nfiles} files, $(du -h "$work/big-1.0.tar.gz" | cut -f1) tar.gz): repofs ${r3}s"
echo "3b. ls -lR: native ${b4}s, pkgs/ ${r4}s, ratio $(ratio "$r4" "$b4") (target <= 2)"
if command -v ratarmount >/dev/null || pip install -q ratarmount >/dev/null 2>&1; then
  mkdir -p "$work/rat"
  rat=$(for _ in $(seq "$runs"); do
    rm -f "$work/big-1.0.tar.gz.index.sqlite" ~/.ratarmount/*big-1.0* 2>/dev/null
    drop; t0=$(now)
    ratarmount "$work/big-1.0.tar.gz" "$work/rat" >/dev/null 2>&1
    cat "$work/rat/$deep" > /dev/null
    echo "$(now) - $t0" | bc
    umount "$work/rat" 2>/dev/null || fusermount -u "$work/rat"
  done | best)
  echo "3c. ratarmount, mount + first read (it indexes at mount): ${rat}s; repofs/ratarmount $(echo "scale=4; $r3 / $rat" | bc) (target < 1)"
else
  echo "3c. ratarmount could not be installed here: comparison skipped"
fi
