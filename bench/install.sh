#!/usr/bin/env bash
# repofs install and repofs image on a 200-package closure from a local mount (issue 10):
#  1. `repofs install` of all 200 packages: target <= 1.5x `tar -xzf` of the same 200
#     published .tar.gz files (read from the mount's dists/) into an empty directory.
#  2. `repofs image -o X.tar.gz` of the closure: target <= 1.2x `tar -czf` of the root that
#     `repofs install` made.
# Best of RUNS, warm caches. Run on demand, as root (it mounts); not part of the tests.
# Usage: bench/install.sh [RUNS=3] [PACKAGES=200] [FILES_PER_PACKAGE=20]
# Binaries: REPOFS_BIN_DIR (default: a release build, as the other benches).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
npkg=${2:-200}
nfiles=${3:-20}
[[ $(id -u) -eq 0 ]] || { echo "bench/install.sh: run as root (it mounts)" >&2; exit 1; }
if [[ -z ${REPOFS_BIN_DIR:-} ]]; then
  cargo build --release --quiet
  REPOFS_BIN_DIR=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
bin=$REPOFS_BIN_DIR
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_work
root=$work/repo
mkdir -p "$mnt"
bench_key
bench_mounted_primary "$root"

# ---- 200 packages: NAME-1.0/usr/share/NAME/fK, sizes 1..64 KiB (text-like, compressible) --
src=$work/src
mkdir -p "$src" "$mnt/incoming/bench"
names=()
for i in $(seq "$npkg"); do
  n=bpkg$i; names+=("$n")
  d=$src/t/$n-1.0/usr/share/$n
  mkdir -p "$d"
  for k in $(seq "$nfiles"); do
    size=$(( (RANDOM % 64 + 1) * 1024 ))
    base64 -w 76 < <(head -c $((size * 3 / 4)) /dev/urandom) > "$d/f$k"
  done
  tar -C "$src/t" -czf "$src/$n-1.0.tar.gz" "$n-1.0"
  gpg -q --batch -b "$src/$n-1.0.tar.gz"
done
rm -rf "$src/t"
cp "$src"/*.tar.gz "$src"/*.tar.gz.sig "$mnt/incoming/bench/"
for _ in $(seq 1200); do
  published=$(find "$mnt/pkgs" -mindepth 1 -maxdepth 1 -name 'bpkg*' | wc -l)
  [[ $published -ge $npkg ]] && break; sleep 0.25
done
[[ $published -ge $npkg ]] || { echo "only $published of $npkg published" >&2; exit 1; }
bytes=$(du -sb "$src" | cut -f1)
echo "closure: $npkg packages x $nfiles files, $(( bytes >> 20 )) MiB compressed"

# ---- 1. install vs tar -x --------------------------------------------------------------
t_tar=(); t_inst=()
for _ in $(seq "$runs"); do
  rm -rf "$work/x" && mkdir "$work/x"; t0=$(now)
  for n in "${names[@]}"; do tar -C "$work/x" -xzf "$mnt/dists/bench/$n-1.0.tar.gz"; done
  t_tar+=("$(echo "$(now) - $t0" | bc)")
  rm -rf "$work/inst"; t0=$(now)
  "$bin/repofs" --root "$root" install --into "$work/inst" --mount "$mnt" "${names[@]}" >/dev/null
  t_inst+=("$(echo "$(now) - $t0" | bc)")
done
a=$(printf '%s\n' "${t_tar[@]}" | best); b=$(printf '%s\n' "${t_inst[@]}" | best)
echo "install: tar -xzf ${a}s, repofs install ${b}s, ratio $(ratio "$b" "$a") (target <= 1.5)"

# ---- 2. image .tar.gz vs tar -czf of the installed root --------------------------------
t_tar=(); t_img=()
for _ in $(seq "$runs"); do
  t0=$(now); tar -C "$work/inst" -czf "$work/base.tar.gz" .; t_tar+=("$(echo "$(now) - $t0" | bc)")
  t0=$(now)
  "$bin/repofs" --root "$root" image -o "$work/img.tar.gz" --mount "$mnt" "${names[@]}" >/dev/null
  t_img+=("$(echo "$(now) - $t0" | bc)")
done
a=$(printf '%s\n' "${t_tar[@]}" | best); b=$(printf '%s\n' "${t_img[@]}" | best)
echo "image: tar -czf ${a}s, repofs image ${b}s, ratio $(ratio "$b" "$a") (target <= 1.2)"
