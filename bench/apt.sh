#!/usr/bin/env bash
# `apt-get update` against a flat repository of N (default 10,000) packages: ours (dists/DIR
# through the mount, file:) against metadata that apt-ftparchive made for the same .deb files
# (file: of a plain directory, and HTTP from `python3 -m http.server`), as ratios measured in
# the same run. Also times one render-and-sign of the directory's metadata (what every
# publication into that directory costs), from repofsd's start-up backfill.
# The .deb files are real ar/tar archives made by python (bench/fake-debs.py: N dpkg-deb runs
# take minutes); their catalog rows are written directly, as publication writes them, and the
# store holds the bytes (N signed uploads would take far longer; apt-get update reads only
# the index).
# Until the HTTP serving of dists/ is merged, ours is measured over file: only.
# Target: ours / apt-ftparchive (file:) <= 1.5.
# Usage: bench/apt.sh [N=10000] [RUNS=3]   (as root; debug build unless BIN=dir is set)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
runs=${2:-3}
[[ $(id -u) -eq 0 ]] || { echo "bench/apt.sh: run as root (it mounts)" >&2; exit 1; }
command -v apt-ftparchive >/dev/null || { echo "bench/apt.sh: needs apt-utils" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
  cargo build --quiet
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_work
root=$work/root conf=$work/repofs.toml debs=$work/debs
: > "$conf"
mkdir -p "$debs" "$mnt"
"$BIN/repofsd" --root "$root" --config "$conf" --once 2>/dev/null   # catalog and repository key

python3 bench/fake-debs.py "$n" "$debs" "$root"
[[ -d $root/store ]] || { echo "bench/apt.sh: no store at $root/store" >&2; exit 1; }

# One render-and-sign of the N-package directory: the backfill at start.
t0=$(now)
"$BIN/repofsd" --root "$root" --config "$conf" --once 2>"$work/backfill.log"
refresh=$(echo "$(now) - $t0" | bc)
grep -q "apt/pacman metadata" "$work/backfill.log" || { cat "$work/backfill.log" >&2; exit 1; }
# The same start also makes the files' torrents first: the metadata alone is the time between
# the two log lines.
stamp() { date -d "$(grep -m1 "$1" "$work/backfill.log" | sed 's/\x1b\[[0-9;]*m//g' | cut -d' ' -f1)" +%s.%N; }
meta_only=$(echo "$(stamp 'apt/pacman metadata') - $(stamp 'made torrents')" | bc)
"$BIN/repofs" --root "$root" --config "$conf" mount "$mnt" 2>"$work/mount.log" &
pids+=($!)
for _ in $(seq 100); do [[ -f $mnt/dists/bench/apt/InRelease ]] && break; sleep 0.1; done
"$BIN/repofs" --root "$root" --config "$conf" keys export-repo > "$work/key.asc"

# The baseline: apt-ftparchive over the same files, signed with the same key.
base=$work/base
mkdir -p "$base"
cp "$debs"/*.deb "$base/"
t0=$(now)
(cd "$base" && apt-ftparchive packages . > Packages && xz -0 -k Packages \
  && apt-ftparchive release . > Release)
ftparchive=$(echo "$(now) - $t0" | bc)
mkdir -p -m700 "$GNUPGHOME"
gpg -q --batch --passphrase '' --quick-gen-key 'Bench <bench@example.org>' ed25519 sign 1y 2>/dev/null
gpg -q --batch --clearsign -o "$base/InRelease" "$base/Release"
gpg -q --armor --export bench@example.org > "$work/base-key.asc"
port=$((20000 + RANDOM % 10000))
python3 -m http.server --bind 127.0.0.1 --directory "$base" "$port" >/dev/null 2>&1 &
pids+=($!)
sleep 1

update() { # URL KEY: seconds of one apt-get update into a fresh private root
  local r; r=$(mktemp -d "$work/apt.XXXXXX")
  mkdir -p "$r"/etc/apt/{apt.conf.d,preferences.d,sources.list.d} "$r"/var/lib/apt/lists/partial \
    "$r"/var/cache/apt/archives/partial "$r"/var/lib/dpkg
  : > "$r/var/lib/dpkg/status"
  echo "deb [signed-by=$2] $1 ./" > "$r/etc/apt/sources.list"
  printf 'Dir::Etc "%s/etc/apt";\nDir::State "%s/var/lib/apt";\nDir::State::status "%s/var/lib/dpkg/status";\nDir::Cache "%s/var/cache/apt";\nDebug::NoLocking "true";\nAPT::Sandbox::User "root";\nAcquire::Languages "none";\n' \
    "$r" "$r" "$r" "$r" > "$r/apt.conf"
  local t0; t0=$(now)
  APT_CONFIG=$r/apt.conf apt-get -qq update >"$r/log" 2>&1 || { cat "$r/log" >&2; exit 1; }
  grep -q '^W:' "$r/log" && { cat "$r/log" >&2; exit 1; }
  echo "$(now) - $t0" | bc
  [[ $(grep -c '^Package:' "$r"/var/lib/apt/lists/*Packages) -eq $n ]] || { echo "not $n packages" >&2; exit 1; }
  rm -rf "$r"
}
ours=() theirs=() theirs_http=()
for _ in $(seq "$runs"); do
  ours+=("$(update "file:$mnt/dists/bench/apt" "$work/key.asc")")
  theirs+=("$(update "file:$base" "$work/base-key.asc")")
  theirs_http+=("$(update "http://127.0.0.1:$port" "$work/base-key.asc")")
done
o=$(printf '%s\n' "${ours[@]}" | best)
t=$(printf '%s\n' "${theirs[@]}" | best)
h=$(printf '%s\n' "${theirs_http[@]}" | best)
echo "packages: $n   runs: $runs (best of each)"
echo "repofsd start with backfill (torrents, then metadata): ${refresh} s"
echo "render+sign one ${n}-package directory (the backfill's metadata part): ${meta_only} s"
echo "apt-ftparchive packages+release of the same files: ${ftparchive} s"
echo "apt-get update, ours (mount, file:):            ${o} s"
echo "apt-get update, apt-ftparchive (file:):          ${t} s"
echo "apt-get update, apt-ftparchive (http.server):    ${h} s"
echo "ratio ours/ftparchive file: $(ratio "$o" "$t")   ours/ftparchive http: $(ratio "$o" "$h")"
