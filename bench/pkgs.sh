#!/usr/bin/env bash
# pkgs/ on real data: the Linux source from Debian's linux-source-* package, published as
# .tar.gz and as .tar.zst, read through a fresh `repofs mount` from cold caches, against
# native reads of the unpacked tree and against ratarmount (pip) on the same .tar.gz.
# Run on demand, as root (it mounts and drops caches); not part of the tests.
#  1. tar -c of the whole tree out of pkgs/ (.tar.gz): target <= 1.5x native.
#  2. first read of one small file deep in the tree, fresh mount: target <= 50 ms (.tar.gz),
#     <= 100 ms (.tar.zst).
#  3. ls -lR of the whole tree: target <= 1.5x native.
# The data is prepared once and cached in $REPOFS_BENCH_DATA (outside the repository).
# Usage: bench/pkgs.sh [RUNS=3] [DEBIAN_PACKAGE=linux-source-6.1]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
debpkg=${2:-linux-source-6.1}
data=${REPOFS_BENCH_DATA:-/var/tmp/repofs-bench-data}
[[ $(id -u) -eq 0 ]] || { echo "bench/pkgs.sh: run as root (it mounts)" >&2; exit 1; }
cargo build --release --quiet
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=$PWD/target/release
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# ---- the data, once ---------------------------------------------------------------------
mkdir -p "$data"
src=$data/$debpkg          # .tar, .tar.gz, .tar.zst and the unpacked tree/ share this stem
if [[ ! -e $src.prepared ]]; then
  (cd "$data" && apt-get download "$debpkg")
  deb=$(ls -t "$data/${debpkg}"_*.deb | head -1 || true)
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$debpkg.tar.xz" | xz -dc > "$src.tar"
  gzip -6 -c "$src.tar" > "$src.tar.gz"
  zstd -q -9 -f "$src.tar" -o "$src.tar.zst"
  rm -rf "$src.tree" && mkdir -p "$src.tree" && tar -C "$src.tree" -xf "$src.tar"
  touch "$src.prepared"
fi
top=$(tar -tf "$src.tar" | head -1 || true); top=${top%%/*}
native=$src.tree/$top
nfiles=$(find "$native" | wc -l)
# A small file deep in the tree (fixed, so runs compare).
deep=$top/drivers/net/ethernet/intel/e1000/e1000_param.c
[[ -f $src.tree/$deep ]] || deep=$(cd "$src.tree" && find "$top" -type f -size -16k | sort | sed -n '40000p')

bench_work
root=$work/root
mkdir -p "$mnt"
bench_key

# ---- publish both forms (names differ so both show in pkgs/) -----------------------------
bench_mounted_primary "$root"
mkdir -p "$mnt/incoming/linux"
for f in gz zst; do
  ln -s "$src.tar.$f" "$work/linux$f-6.1.tar.$f"
  gpg -q --batch -b "$work/linux$f-6.1.tar.$f"
  t0=$(now)
  cp "$work/linux$f-6.1.tar.$f" "$work/linux$f-6.1.tar.$f.sig" "$mnt/incoming/linux/"
  until [[ -d $mnt/pkgs/linux$f/6.1 ]]; do sleep 0.1; done
  echo "publish .tar.$f: $(echo "$(now) - $t0" | bc)s"
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
for _ in $(seq 50); do mountpoint -q "$mnt" || break; sleep 0.1; done

# A fresh mount (no daemon needed to read), then cold caches.
fresh() { fresh_ >/dev/null 2>&1 </dev/null; }
# The previous mount's process must be gone before the next mount: on its way out it
# unmounts its mount point, which would take the fresh mount down with it.
fresh_() {
  local mount_pid; mount_pid=$(cat "$work/mount.pid" 2>/dev/null || true)
  for _ in $(seq 100); do
    mountpoint -q "$mnt" || break
    "$bin/repofs" umount "$mnt" || sleep 0.1
  done
  for _ in $(seq 100); do
    [[ -n $mount_pid ]] && kill -0 "$mount_pid" 2>/dev/null || break
    sleep 0.05
  done
  RUST_LOG=warn "$bin/repofs" --root "$root" mount --daemon "$mnt"
  for _ in $(seq 100); do mountpoint -q "$mnt" && [[ -d $mnt/pkgs ]] && break; sleep 0.05; done
  pgrep -nf "$bin/repofs --root $root mount" > "$work/mount.pid" || true
  drop
}
rat_fresh() {
  mountpoint -q "$work/rat" && umount "$work/rat"
  ratarmount "$src.tar.gz" "$work/rat" >/dev/null 2>&1
  drop
}
timed() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc; }
tarc() { tar -C "$1" -cf - "$top" | wc -c; }
lslr() { ls -lR "$1/$top"; }
catf() { cat "$1/$deep"; }
have_rat=false
if command -v ratarmount >/dev/null || pip install -q ratarmount >/dev/null 2>&1; then
  have_rat=true; mkdir -p "$work/rat"
  # ratarmount's index is built on its first mount (not timed), as ours is at publication.
  ratarmount "$src.tar.gz" "$work/rat" >/dev/null 2>&1 && umount "$work/rat"
fi
best_of() { local f=$1; shift; for _ in $(seq "$runs"); do $f; timed "$@"; done | best; }
gz=$mnt/pkgs/linuxgz/6.1
zst=$mnt/pkgs/linuxzst/6.1
fresh
for p in "$gz" "$zst"; do
  [[ -f $p/$deep ]] || { echo "bench/pkgs.sh: $p/$deep missing; mount log:" >&2; tail "$root/mount.log" >&2; exit 1; }
done
echo "data: $debpkg, $nfiles entries, $(du -h "$src.tar" | cut -f1) tar, $(du -h "$src.tar.gz" | cut -f1) .tar.gz, $(du -h "$src.tar.zst" | cut -f1) .tar.zst; best of $runs, cold caches"

# ---- 1. tar -c ------------------------------------------------------------------------
b1=$(best_of drop tarc "$src.tree")
r1=$(best_of fresh tarc "$gz")
hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$(cat "$work/mount.pid")/status" 2>/dev/null || echo "?")
echo "1. tar -c whole tree: native ${b1}s, pkgs/ .tar.gz ${r1}s, ratio $(ratio "$r1" "$b1") (target <= 1.5); mount peak RSS ${hwm} MiB"
if $have_rat; then
  x1=$(best_of rat_fresh tarc "$work/rat")
  echo "   ratarmount ${x1}s, ratio to native $(ratio "$x1" "$b1")"
fi

# ---- 2. first read of one small file ----------------------------------------------------
b2=$(best_of drop catf "$src.tree")
r2=$(best_of fresh catf "$gz")
z2=$(best_of fresh catf "$zst")
echo "2. first read of $deep: native ${b2}s, pkgs/ .tar.gz ${r2}s (target <= 0.050), .tar.zst ${z2}s (target <= 0.100)"
if $have_rat; then
  x2=$(best_of rat_fresh catf "$work/rat")
  echo "   ratarmount (index built) ${x2}s"
fi

# ---- 3. ls -lR ------------------------------------------------------------------------
b3=$(best_of drop lslr "$src.tree")
r3=$(best_of fresh lslr "$gz")
echo "3. ls -lR: native ${b3}s, pkgs/ ${r3}s, ratio $(ratio "$r3" "$b3") (target <= 1.5)"
if $have_rat; then
  x3=$(best_of rat_fresh lslr "$work/rat")
  echo "   ratarmount ${x3}s, ratio to native $(ratio "$x3" "$b3")"
fi

# ---- zstd tar -c (uses whatever the zstd path prepares) ----------------------------------
r4=$(best_of fresh tarc "$zst")
echo "4. tar -c whole tree, pkgs/ .tar.zst: ${r4}s, ratio $(ratio "$r4" "$b1")"
