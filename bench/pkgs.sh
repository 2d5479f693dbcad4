#!/usr/bin/env bash
# pkgs/ on real data: the Linux source from Debian's linux-source-* package, published as
# .tar.gz and as .tar.zst, read through a fresh `repofs mount` from cold caches, against
# native reads of the unpacked tree and against ratarmount (pip) on the same .tar.gz.
# Run on demand, as root (it mounts and drops caches); not part of the tests.
#  1. tar -c of the whole tree out of pkgs/: target <= 1.2x native (.tar.gz), <= 1.0x (.tar.zst).
#  2. first read of one small file deep in the tree, fresh mount: target <= 20 ms (.tar.gz),
#     <= 10 ms (.tar.zst).
#  3. ls -lR of the whole tree: target <= 1.2x native.
# Beside each time through the mount: the FUSE requests the run caused, by kind and per entry
# of the tree (from ROOT/mount-stats.json, written on SIGUSR1), and the mount's CPU-seconds.
# Times depend on the machine (a round trip costs more on a loaded or virtualised one); the
# request counts depend only on the kernel, so compare those across machines.
# The data is prepared once and cached in $REPOFS_BENCH_DATA (outside the repository).
# Usage: bench/pkgs.sh [RUNS=3] [DEBIAN_PACKAGE=linux-source-6.1] [MEASURES="1 2 3 4"]
# (MEASURES picks among the numbered measures below; 1 is the native tar -c that 4 uses.)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
debpkg=${2:-linux-source-6.1}
measures=" ${3:-1 2 3 4} "
want() { [[ $measures == *" $1 "* ]]; }
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
# The mount's request counts (JSON, into $1) and CPU-seconds so far (printed).
mount_now() {
  local pid stats=$root/mount-stats.json; pid=$(cat "$work/mount.pid")
  rm -f "$stats"; kill -USR1 "$pid"
  for _ in $(seq 200); do [[ -s $stats ]] && break; sleep 0.01; done
  cp "$stats" "$1"
  # CPU time of every thread in ns (schedstat), not ticks: a first read takes milliseconds.
  cat /proc/"$pid"/task/*/schedstat | awk '{ ns += $1 } END { printf "%.4f\n", ns / 1e9 }'
}
# One timed run through the mount: "SECONDS<TAB>what the mount did meanwhile".
mounted_run() {
  local c0 c1 t; c0=$(mount_now "$work/s0.json")
  t=$(timed "$@")
  c1=$(mount_now "$work/s1.json")
  jq -rn --slurpfile a "$work/s0.json" --slurpfile b "$work/s1.json" \
    --arg t "$t" --arg cpu "$(echo "$c1 - $c0" | bc)" --argjson n "$nfiles" '
    ($a[0]) as $a | ($b[0]) as $b | ($b.total - $a.total) as $tot
    | [$b.requests | to_entries[] | select(.value > $a.requests[.key])
       | "\(.key) \(.value - $a.requests[.key])"] as $kinds
    | "\($t)\t\($tot) requests (\($tot / $n * 100 | round / 100) per entry): \($kinds | join(", "));"
      + " read \(($b.read_bytes - $a.read_bytes) / 1048576 | round) MiB; mount CPU \($cpu)s"'
}
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
# best_of through the mount: prints the best time; its run's requests go to $work/last.
mount_best_of() {
  for _ in $(seq "$runs"); do fresh; mounted_run "$@"; done | sort -n | head -1 > "$work/best"
  cut -f2 "$work/best" > "$work/last"
  cut -f1 "$work/best"
}
said() { echo "   mount: $(cat "$work/last")"; }
gz=$mnt/pkgs/linuxgz/6.1
zst=$mnt/pkgs/linuxzst/6.1
fresh
for p in "$gz" "$zst"; do
  [[ -f $p/$deep ]] || { echo "bench/pkgs.sh: $p/$deep missing; mount log:" >&2; tail "$root/mount.log" >&2; exit 1; }
done
echo "machine: kernel $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $debpkg, $nfiles entries, $(du -h "$src.tar" | cut -f1) tar, $(du -h "$src.tar.gz" | cut -f1) .tar.gz, $(du -h "$src.tar.zst" | cut -f1) .tar.zst; best of $runs, cold caches"

# ---- 1. tar -c ------------------------------------------------------------------------
if want 1; then
b1=$(best_of drop tarc "$src.tree")
mount_best_of tarc "$gz" > "$work/r"; r1=$(cat "$work/r")
hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$(cat "$work/mount.pid")/status" 2>/dev/null || echo "?")
echo "1. tar -c whole tree: native ${b1}s, pkgs/ .tar.gz ${r1}s, ratio $(ratio "$r1" "$b1") (target <= 1.2); mount peak RSS ${hwm} MiB"
said
if $have_rat; then
  x1=$(best_of rat_fresh tarc "$work/rat")
  echo "   ratarmount ${x1}s, ratio to native $(ratio "$x1" "$b1")"
fi
fi

# ---- 2. first read of one small file ----------------------------------------------------
if want 2; then
b2=$(best_of drop catf "$src.tree")
mount_best_of catf "$gz" > "$work/r"; r2=$(cat "$work/r"); cp "$work/last" "$work/last2"
mount_best_of catf "$zst" > "$work/r"; z2=$(cat "$work/r")
echo "2. first read of $deep: native ${b2}s, pkgs/ .tar.gz ${r2}s (target <= 0.020), .tar.zst ${z2}s (target <= 0.010)"
echo "   mount, .tar.gz: $(cat "$work/last2")"
echo "   mount, .tar.zst: $(cat "$work/last")"
if $have_rat; then
  x2=$(best_of rat_fresh catf "$work/rat")
  echo "   ratarmount (index built) ${x2}s"
fi
fi

# ---- 3. ls -lR ------------------------------------------------------------------------
if want 3; then
b3=$(best_of drop lslr "$src.tree")
mount_best_of lslr "$gz" > "$work/r"; r3=$(cat "$work/r")
echo "3. ls -lR: native ${b3}s, pkgs/ ${r3}s, ratio $(ratio "$r3" "$b3") (target <= 1.2)"
said
if $have_rat; then
  x3=$(best_of rat_fresh lslr "$work/rat")
  echo "   ratarmount ${x3}s, ratio to native $(ratio "$x3" "$b3")"
fi
fi

# ---- zstd tar -c (uses whatever the zstd path prepares) ----------------------------------
if want 4; then
[[ -n ${b1:-} ]] || b1=$(best_of drop tarc "$src.tree")
mount_best_of tarc "$zst" > "$work/r"; r4=$(cat "$work/r")
echo "4. tar -c whole tree, pkgs/ .tar.zst: ${r4}s, ratio $(ratio "$r4" "$b1") (target <= 1.0)"
said
fi
echo "machine at the end: load $(cut -d' ' -f1-3 /proc/loadavg)"
