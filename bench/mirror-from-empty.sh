#!/usr/bin/env bash
# A mirror's sync from empty, again, against a primary kept by
# `KEEP=1 FROM_EMPTY_ONLY=1 bench/mirror-index.sh N 0`, with the binaries in BIN: for interleaved
# before/after runs of one catalog (building and cloning the primary is the slow part).
# Prints the baseline (curl | zstd -d of the snapshot, wall and CPU s) and the mirror's time
# to index_generation readable, its CPU s, peak RSS and bytes written (/proc/PID/io
# write_bytes: what it sent towards the disk, page cache included) at that moment.
# Usage: bench/mirror-from-empty.sh WORK BIN
set -euo pipefail
work=$1 bin=$2
conf=$work/repofs.toml
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$bin/repofsd" --root "$work/primary" --config "$conf" --listen "127.0.0.1:$port" \
  2>>"$work/primary-again.log" &
ppid=$!
mirror=$(mktemp -d "$work/m.XXXX")
trap 'kill $ppid ${mpid:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$mirror" "$work/snap-again"' EXIT
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/index/root.asc" >/dev/null && break; sleep 0.1; done
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }
snap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"]["sha256"])' \
  "$work/primary/index/root.json")
sync; t0=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$work/base.cpu" bash -c \
  "curl -sSf 'http://127.0.0.1:$port/index/objects/$snap' | zstd -dq > '$work/snap-again'"
t1=$(date +%s.%N)
# The baseline leaves its file in the page cache; the mirror's catalog is durable. What the
# baseline's fsync would add, for a ratio against a durable baseline too.
sync "$work/snap-again"
echo "baseline curl+unzstd: $(echo "$t1 - $t0" | bc) s, $(awk '{print $1 + $2}' "$work/base.cpu") CPU s," \
  "$(stat -c %s "$work/snap-again") bytes written; its fsync after: $(echo "$(date +%s.%N) - $t1" | bc) s"
rm -f "$work/snap-again"
"$bin/repofs" --root "$mirror" list >/dev/null
setting() { sqlite3 "$mirror/catalog.sqlite" "SELECT value FROM settings WHERE key = '$1'" 2>/dev/null || true; }
sync; t0=$EPOCHREALTIME
RUST_LOG=${MIRROR_LOG:-info} "$bin/repofsd" --root "$mirror" --config "$conf" --upstream "http://127.0.0.1:$port" \
  --repo-key "$work/repo-key.asc" --poll 1 2>>"$mirror.log" &
mpid=$!
# Ready when the catalog reads generation 2. A sync from empty swaps a symlink in for the
# catalog (catalog::adopt): a builtin test sees it within 5 ms, without a process per look;
# sqlite3 then confirms. Any other way to get there is seen by sqlite3 every 50 ms.
exec {tick}<> <(:) # a pipe nobody writes: `read -t` on it sleeps without a fork
t1=
for i in $(seq 60000); do
  if [[ -L $mirror/catalog.sqlite ]] || ((i % 10 == 0)); then
    [[ $(setting index_generation) == 2 ]] && { t1=$EPOCHREALTIME; break; }
  fi
  read -r -t 0.005 -u "$tick" || true
done
[[ -n $t1 ]] || { echo "the mirror did not sync in 300 s" >&2; exit 1; }
echo "from empty: $(echo "$t1 - $t0" | bc) s, $(cpu $mpid) CPU s, peak RSS" \
  "$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$mpid/status") MiB," \
  "$(awk '/^write_bytes/ {print $2}' "/proc/$mpid/io") bytes written," \
  "$(awk '/^read_bytes/ {print $2}' "/proc/$mpid/io") read from disk"
# With MIRROR_LOG (e.g. info,repofs::fetch::index=debug,repofs::catalog=debug): the mirror's
# log lines as seconds since its start, to take the sync apart phase by phase.
[[ -z ${MIRROR_LOG:-} ]] || python3 - "$mirror.log" "$t0" "$t1" <<'PY'
import sys, datetime
log, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
for line in open(log):
    stamp, _, rest = line.partition(" ")
    try:
        t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        continue
    if t <= t1 + 0.01:
        print(f"  {t - t0:7.3f}  {' '.join(rest.split()[1:])[:110]}")
print(f"  {t1 - t0:7.3f}  seen by the bench")
PY
