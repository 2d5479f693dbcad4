#!/usr/bin/env bash
# One large package through the index: the Linux source (.tar.gz, ~83k entries, ~200 gzip
# seek points with 32 KiB windows) published on a live primary, and a mirror that holds the
# generation before it syncing it: delta size, time to materialize, time to apply.
# Uses the data bench/pkgs.sh prepares in $REPOFS_BENCH_DATA. Run on demand, as root.
# Usage: bench/mirror-linux.sh [DEBIAN_PACKAGE=linux-source-6.1]
set -euo pipefail
cd "$(dirname "$0")/.."
debpkg=${1:-linux-source-6.1}
data=${REPOFS_BENCH_DATA:-/var/tmp/repofs-bench-data}
tgz=$data/$debpkg.tar.gz
[[ -f $tgz ]] || { echo "run bench/pkgs.sh first (it prepares $tgz)" >&2; exit 1; }
cargo build --release --quiet
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
bench_work
primary=$work/primary mirror=$work/mirror
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf=$work/repofs.toml
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$conf"
bench_key
"$bin/repofs" --root "$primary" --config "$conf" keys add --dir / "$work/key.asc" >/dev/null
mkdir -p "$primary/incoming/hello" "$work/src/hello-1.0"
echo hi > "$work/src/hello-1.0/README"
tar -C "$work/src" -czf "$primary/incoming/hello/hello-1.0.tar.gz" hello-1.0
gpg -q --batch -b "$primary/incoming/hello/hello-1.0.tar.gz"
"$bin/repofsd" --root "$primary" --config "$conf" --once 2>>"$work/primary.log"
RUST_LOG=info "$bin/repofsd" --root "$primary" --config "$conf" --listen "127.0.0.1:$port" \
  2>>"$work/primary.log" &
pids+=($!)
until grep -qs '"generation": 1' "$primary/index/root.json"; do sleep 0.2; done
"$bin/repofs" --root "$primary" keys export-repo > "$work/repo-key.asc"
"$bin/repofs" --root "$mirror" list >/dev/null
RUST_LOG=info "$bin/repofsd" --root "$mirror" --config "$conf" --upstream "http://127.0.0.1:$port" \
  --repo-key "$work/repo-key.asc" --poll 1 2>>"$work/mirror.log" &
pids+=($!)
setting() { sqlite3 "$mirror/catalog.sqlite" "SELECT value FROM settings WHERE key = '$1'" 2>/dev/null || true; }
until [[ $(setting index_generation) == 1 ]]; do sleep 0.1; done

mkdir -p "$work/up"
ln -s "$tgz" "$work/up/linux-6.1.tar.gz"
gpg -q --batch -b "$work/up/linux-6.1.tar.gz"
mkdir -p "$primary/incoming/linux"
t0=$(now)
cp "$work/up/linux-6.1.tar.gz" "$work/up/linux-6.1.tar.gz.sig" "$primary/incoming/linux/"
until sqlite3 "$primary/catalog.sqlite" "SELECT 1 FROM generations WHERE generation = 2" 2>/dev/null | grep -q 1; do sleep 0.2; done
t1=$(now)
until grep -qs '"generation": 2' "$primary/index/root.json"; do sleep 0.1; done
t2=$(now)
until [[ $(setting index_generation) == 2 ]]; do sleep 0.1; done
t3=$(now)
head=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["head"]["sha256"])' "$primary/index/root.json")
entries=$(sqlite3 "$primary/catalog.sqlite" "SELECT COUNT(*) FROM entries e JOIN files f ON f.id = e.file_id WHERE f.filename = 'linux-6.1.tar.gz'")
points=$(sqlite3 "$primary/catalog.sqlite" "SELECT COUNT(*) FROM seek_points s JOIN files f ON f.id = s.file_id WHERE f.filename = 'linux-6.1.tar.gz'")
echo "published in $(echo "$t1 - $t0" | bc) s ($entries entries, $points seek points)"
echo "delta $(stat -c %s "$primary/index/objects/$head") bytes, materialized and signed in $(echo "$t2 - $t1" | bc) s"
echo "mirror at generation 2 $(echo "$t3 - $t2" | bc) s after the root (1 s poll): $(grep 'index synced from=Some(1)' "$work/mirror.log" | tail -1 | sed 's/.*index synced //')"
echo "catalog: primary $(du -m "$primary/catalog.sqlite" | cut -f1) MiB, mirror $(du -m "$mirror/catalog.sqlite" | cut -f1) MiB"

# ---- ls -lR of the whole tree on the cold mirror, against native, with no content fetched ----
# (issue 9: within 1.5x native `ls -lR` of the unpacked tree, zero content bytes fetched)
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc; }
runs=${RUNS:-3}
mkdir -p "$work/native"
tar -C "$work/native" -xf "$data/$debpkg.tar"
top=$(ls "$work/native" | head -1)
mkdir -p "$mnt"
RUST_LOG=warn "$bin/repofs" --root "$mirror" --config "$conf" mount --daemon "$mnt"
until [[ -d $mnt/pkgs/linux/6.1/$top ]]; do sleep 0.1; done
n=0; native=(); mirrored=()
for _ in $(seq "$runs"); do
  drop; native+=("$(timed ls -lR "$work/native/$top")")
  drop; mirrored+=("$(timed ls -lR "$mnt/pkgs/linux/6.1/$top")")
done
b=$(printf '%s\n' "${native[@]}" | best); m=$(printf '%s\n' "${mirrored[@]}" | best)
lines_native=$(ls -lR "$work/native/$top" | wc -l); lines_mirror=$(ls -lR "$mnt/pkgs/linux/6.1/$top" | wc -l)
sleep 3 # the fetch service rewrites its status every ~2 s
fetched=$(python3 -c 'import json,sys
try: s=json.load(open(sys.argv[1]))
except FileNotFoundError: print(0); sys.exit()
print(sum(o["downloaded_bytes"] for o in s["objects"]))' "$mirror/mirror/fetch-status.json")
echo "ls -lR cold, best of $runs: native ${b}s ($lines_native lines), mirror pkgs/ ${m}s ($lines_mirror lines), ratio $(ratio "$m" "$b") (target <= 1.5); content fetched: $fetched bytes"
"$bin/repofs" umount "$mnt" || umount -l "$mnt"
