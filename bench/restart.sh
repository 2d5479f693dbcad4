#!/usr/bin/env bash
# A primary's restart: time until it seeds its whole store again, and what it reads to get
# there, against the old full read ([distribution] recheck_store = true: librqbit reads and
# hashes every object as it adds its torrent) measured in the same run on the same store.
# The store holds FILES published random files of SIZE_KIB each (real content, published
# through the spool and `repofsd --once` in batches, so every object's sha256 and pieces are
# what publication computed). Before each start the repository's files (store, catalog) are
# dropped from the page cache (posix_fadvise DONTNEED, this root only), as after a reboot.
# Per start: seconds from exec to the log's "seeding: every published object", the process's
# /proc/PID/io read_bytes (disk) and rchar (read calls), CPU seconds and threads then; the
# seconds an aria2c peer then takes to download one file; and threads 15 s later (idle).
# Usage: bench/restart.sh [FILES=10000] [SIZE_KIB=512]   (run on demand; needs FILES*SIZE_KIB
#   of disk; BIN=dir prebuilt repofs/repofsd; MODES="trusted recheck" picks the starts;
#   ROOT=dir publishes there and keeps it, or reuses what an earlier run published there)
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-10000}
size_kib=${2:-512}
[[ -n ${BIN:-} ]] || cargo build --release --quiet
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
# bench_work's, under a name of its own: a sweep of repofs-bench.* by another run removed
# this one's store mid-publication once.
work=$(mktemp -d /var/tmp/repofs-restart.XXXXXX)
mnt=$work/mnt
export GNUPGHOME=$work/gnupg
pids=()
trap bench_cleanup EXIT
root=${ROOT:-$work/root}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=127.0.0.1:$(port)
config() {
  printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n[distribution]\nlisten = "%s"\nrecheck_store = %s\n' \
    "$listen" "$1" > "$work/cfg.toml"
}
config false

# ---- publish: batches of 500 through the spool (unless ROOT holds them already) -------------
t0=$(now)
if [[ ! -e $root/catalog.sqlite ]]; then
  bench_key
  "$bin/repofs" --root "$root" keys add --dir / "$work/key.asc" >/dev/null
  spool=$root/incoming/bench
  for ((i = 1; i <= files; i += 500)); do
    mkdir -p "$spool"
    for ((j = i; j < i + 500 && j <= files; j++)); do
      head -c $((size_kib << 10)) /dev/urandom > "$spool/f-$j.bin"
      gpg -q --batch -b "$spool/f-$j.bin"
    done
    RUST_LOG=warn "$bin/repofsd" --root "$root" --config "$work/cfg.toml" --once
  done
fi
published=$("$bin/repofs" --root "$root" list | grep -c ' bench/f-[0-9]*\.bin$' || true)
store=$(du -sb "$root/store/objects" | cut -f1)
echo "published $published files ($(echo "$store / 1073741824" | bc -l | xargs printf %.2f) GiB in the store) in $(echo "$(now) - $t0" | bc | xargs printf %.0f) s"
[[ $published -eq $files ]] || { echo "bench/restart.sh: only $published of $files published" >&2; exit 1; }

# ---- starts -------------------------------------------------------------------------------
uncache() {
  python3 - "$root" <<'EOF'
import os, sys
for d, _, names in os.walk(sys.argv[1]):
    for n in names:
        try:
            fd = os.open(os.path.join(d, n), os.O_RDONLY)
        except OSError:
            continue
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
EOF
}
io() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/io"; }
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }  # USER_HZ = 100
threads() { awk '$1 == "Threads:" { print $2 }' "/proc/$1/status"; }

# Starts repofsd (recheck_store = $2), prints one result row for mode $1.
start() {
  config "$2"
  uncache
  cat "$bin/repofsd" >/dev/null  # its page faults count in read_bytes too; it is not the store
  local log=$work/repofsd-$1.log
  local t0; t0=$(now)
  RUST_LOG=info "$bin/repofsd" --root "$root" --config "$work/cfg.toml" 2>"$log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 12000); do grep -q "seeding: every published object" "$log" && break; sleep 0.05; done
  grep -q "seeding: every published object" "$log" || { echo "$1: not seeding after 600 s" >&2; exit 1; }
  local t; t=$(echo "$(now) - $t0" | bc)
  local rb rc c th
  rb=$(io "$pid" read_bytes); rc=$(io "$pid" rchar); c=$(cpu "$pid"); th=$(threads "$pid")
  # A peer right after: one file the restart did not read, over the primary's own tracker.
  local n=$((RANDOM % files + 1)) d=$work/peer-$1
  mkdir -p "$d"
  curl -sSf -o "$d/t.torrent" "http://$listen/dists/bench/f-$n.bin.torrent"
  local p0 pt=failed sha; p0=$(now)
  if timeout 60 aria2c --seed-time=0 --enable-dht=false --bt-enable-lpd=false \
    --enable-peer-exchange=false --summary-interval=0 --console-log-level=error \
    -d "$d" "$d/t.torrent" >/dev/null; then
    pt=$(echo "$(now) - $p0" | bc | xargs printf %.2f)
    sha=$(sha256sum "$d/f-$n.bin" | cut -d' ' -f1)
    cmp -s "$d/f-$n.bin" "$root/store/objects/${sha:0:2}/$sha" \
      || { echo "$1: the peer's copy is not a store object" >&2; exit 1; }
  fi
  sleep 15  # idle: what stays after the start (tokio lets idle blocking threads go after 10 s)
  local idle; idle=$(threads "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-8s %9.2f %14s %14s %7.2f %6.2f%% %7s %8s %7s\n' "$1" "$t" "$rb" "$rc" "$c" \
    "$(echo "100 * $rb / $store" | bc -l)" "$th" "$pt" "$idle"
}

# A first start, not measured: the index publisher makes the deltas `repofsd --once` left
# to it (minutes for 10,000 generations, and SIGTERM waits for them), so the measured starts
# are restarts of a primary that was running.
config false
"$bin/repofsd" --root "$root" --config "$work/cfg.toml" 2>"$work/repofsd-first.log" &
first=$!
pids+=("$first")
deltas=-1
for _ in $(seq 1200); do
  sleep 3
  now_deltas=$(grep -c "index delta" "$work/repofsd-first.log" || true)
  grep -q "seeding: every published object" "$work/repofsd-first.log" && [[ $now_deltas -eq $deltas ]] && break
  deltas=$now_deltas
done
kill "$first"; wait "$first" 2>/dev/null || true

echo "store: $files files of $size_kib KiB, $store bytes; kernel $(uname -r), $(nproc) cores"
printf '%-8s %9s %14s %14s %7s %7s %7s %8s %7s\n' mode seeding_s read_bytes rchar cpu_s of_store threads peer_s idle_th
for m in ${MODES:-trusted recheck}; do
  case $m in
    trusted) start trusted false ;;
    recheck) start recheck true ;;
  esac
done
