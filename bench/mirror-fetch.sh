#!/usr/bin/env bash
# Lazy fetch on a mirror, as ratios against baselines measured in the same run on the same
# bytes (run on demand as root; not part of the tests). A primary publishes a SIZE_MIB random
# file and seeds it (repofsd --listen, its own tracker); each run starts a real mirror
# (repofsd --upstream, pinning the primary's repository key, as tests/common
# start_mirror_daemon does) with an empty cache and mounts it.
#  1. cold mirror, 1 MiB read at the middle: time to the bytes and bytes fetched from the
#     swarm (the mirror's fetch-status.json), against `curl` of the same 1 MiB (as a file of
#     its own: python3 -m http.server ignores Range) from a loopback HTTP server.
#  2. cold mirror, `cat` of the whole file through the mount against `curl` of the whole file
#     from the same HTTP server (throughput ratio; both into /dev/null).
#  2b. librqbit with its default storage and no FUSE (bench/bt_ceiling.rs) downloading the
#     same torrent from the same seeder into /dev/shm: what this seeder gives one librqbit peer.
#  2c. the same librqbit peer from a librqbit seeder with its default storage (same torrent,
#     same file): 2b against 2c is our seeder's cost, 2 against 2b the mirror's.
#  3. the same `cat` through btfs (Debian `btfs`, libtorrent) mounting the primary's .torrent
#     against the same seeding primary, and aria2c downloading it (to disk): other BitTorrent
#     clients against the same seeder, for what the seeder and loopback allow.
# Usage: bench/mirror-fetch.sh [SIZE_MIB=1024] [RUNS=3]   (READAHEAD=bytes sets [mirror] readahead,
#   BTFS_TIMEOUT=s the deadline of the btfs read, MIRROR_LOG=info the mirror's log level,
#   BIN=dir prebuilt repofs/repofsd to measure instead of building (e.g. a copy of main's),
#   OTHERS=0 skips steps 3-4)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
runs=${2:-3}
[[ $(id -u) -eq 0 ]] || { echo "bench/mirror-fetch.sh: run as root (it mounts)" >&2; exit 1; }
[[ -n ${BIN:-} ]] || cargo build --release --quiet
cargo build --release --quiet --example bt-ceiling
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
bench_work
mpid=
# Also the mirror and btfs, whatever step failed.
cleanup() {
  if [[ -n $mpid ]]; then kill "$mpid" 2>/dev/null || true; fi
  if [[ -n ${btpid:-} ]]; then kill -KILL "$btpid" 2>/dev/null || true; fi
  for d in "$work/mmnt" "$work/btfs"; do
    if mountpoint -q "$d" 2>/dev/null; then umount -l "$d" || true; fi
  done
  bench_cleanup
}
trap cleanup EXIT INT TERM
bench_key
command -v btfs >/dev/null || { echo "bench/mirror-fetch.sh: needs btfs (apt-get install btfs)" >&2; exit 1; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

file=$work/files/bench-1.0.bin
mkdir -p "$work/files"
head -c $((size << 20)) /dev/urandom > "$file"
gpg -q --batch -b "$file"
mid=$(( (size << 20) / 2 ))
dd if="$file" of="$work/files/middle.bin" bs=1M skip=$((mid >> 20)) count=1 status=none

# ---- the primary, seeding -------------------------------------------------------------
p=$work/primary; pm=$mnt; mkdir -p "$pm" # bench_cleanup unmounts $mnt
"$bin/repofs" --root "$p" keys add --dir / "$work/key.asc" >/dev/null
listen=127.0.0.1:$(port)
RUST_LOG=warn,repofs::fetch::seed=info "$bin/repofsd" --root "$p" --listen "$listen" --mount "$pm" 2>>"$work/primary.log" &
prim=$!; pids+=("$prim")
for _ in $(seq 100); do [[ -d $pm/incoming ]] && mountpoint -q "$pm" && break; sleep 0.1; done
mkdir -p "$pm/incoming/bench" && cp "$file" "$file.sig" "$pm/incoming/bench/"
until [[ -e $pm/dists/bench/bench-1.0.bin.torrent ]]; do sleep 0.1; done
"$bin/repofs" --root "$p" keys export-repo > "$work/repo-key.asc"
cp "$pm/dists/bench/bench-1.0.bin.torrent" "$work/bench.torrent"
sleep 3 # the seeder adds the torrent (it checks the object's pieces once)

# ---- HTTP baseline --------------------------------------------------------------------
hport=$(port)
(cd "$work/files" && exec python3 -m http.server -b 127.0.0.1 "$hport" >/dev/null 2>&1) &
pids+=($!)
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$hport/" && break; sleep 0.1; done
url=http://127.0.0.1:$hport/bench-1.0.bin

# ---- a cold mirror per run ------------------------------------------------------------
mirror_up() {
  m=$work/mirror; mm=$work/mmnt
  rm -rf "$m"; mkdir -p "$m" "$mm"
  local conf=$work/mirror.toml
  printf '[mirror]\nreadahead = %s\n' "${READAHEAD:-8388608}" > "$conf"
  RUST_LOG=${MIRROR_LOG:-warn} "$bin/repofsd" --root "$m" --config "$conf" --upstream "http://$listen" \
    --repo-key "$work/repo-key.asc" --poll 1 --mount "$mm" 2>>"$work/mirror.log" &
  mpid=$!
  for _ in $(seq 300); do [[ -e $mm/dists/bench/bench-1.0.bin ]] && break; sleep 0.1; done
  [[ -e $mm/dists/bench/bench-1.0.bin ]] || { echo "the mirror never synced" >&2; tail "$work/mirror.log" >&2; exit 1; }
}
mirror_down() {
  kill "$mpid"; wait "$mpid" 2>/dev/null || true
  mountpoint -q "$mm" && umount -l "$mm" || true
}
fetched() { # bytes fetched from peers, from the status file (rewritten every ~2 s)
  sleep 2.5
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["downloaded_bytes"])' "$m/mirror/fetch-status.json"
}

timed() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc; }
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; } # user+system seconds of a process

# 1. middle read
for _ in $(seq "$runs"); do drop; timed curl -fs "http://127.0.0.1:$hport/middle.bin"; done | best > "$work/b1"
: > "$work/r1"; : > "$work/f1"
for _ in $(seq "$runs"); do
  mirror_up; drop
  timed dd if="$mm/dists/bench/bench-1.0.bin" bs=1M count=1 skip=$((mid >> 20)) status=none >> "$work/r1"
  fetched >> "$work/f1"
  mirror_down
done
b1=$(cat "$work/b1"); r1=$(best < "$work/r1"); f1=$(sort -n "$work/f1" | tail -1)
echo "1. 1 MiB at the middle of ${size} MiB, cold: curl of those bytes ${b1}s, mirror ${r1}s (ratio $(ratio "$r1" "$b1")), fetched at most ${f1} bytes ($(ratio "$f1" 1048576) x the read)"

# 2. whole file
for _ in $(seq "$runs"); do drop; timed curl -fs "$url"; done | best > "$work/b2"
: > "$work/r2"
for _ in $(seq "$runs"); do
  mirror_up; drop
  if [[ -n ${PERF:-} ]]; then # PERF=FILE: where the mirror's repofsd spends the cat (perf report)
    # System-wide: per-process sampling missed threads started after it attached.
    perf record -q -F 999 -g -a -o "$work/perf.data" 2>/dev/null & perfpid=$!
  fi
  c0=$(cpu "$mpid"); p0=$(cpu "$prim")
  timed cat "$mm/dists/bench/bench-1.0.bin" >> "$work/r2"
  echo "$(cpu "$mpid") - $c0" | bc >> "$work/c2m"; echo "$(cpu "$prim") - $p0" | bc >> "$work/c2p"
  if [[ -n ${PERF:-} ]]; then
    kill -INT "$perfpid"; wait "$perfpid" || true
    { perf report -i "$work/perf.data" --stdio --no-children -g none --percent-limit 0.5 --sort comm,pid
      perf report -i "$work/perf.data" --stdio --no-children -g none --percent-limit 0.3 --pid "$mpid" --sort comm,dso,sym
    } > "$PERF" 2>/dev/null || true
  fi
  mirror_down
done
b2=$(cat "$work/b2"); r2=$(best < "$work/r2")
echo "2. cat ${size} MiB, cold mirror: curl ${b2}s, mirror ${r2}s, throughput ratio $(ratio "$b2" "$r2")"
echo "   CPU seconds during each cat: mirror repofsd (fetch + mount) $(echo $(cat "$work/c2m")), primary $(echo $(cat "$work/c2p"))"

# 2b. a librqbit peer without repofs, same seeder (its address from the primary's log, as 2c
# gets it: no tracker round trip in the time)
seeder=$(grep -o 'seeding addr=Some([0-9.:]*)' "$work/primary.log" | head -1 | sed 's/.*Some(\(.*\))/\1/')
ex=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/bt-ceiling
shm=$(mktemp -d /dev/shm/mirror-fetch.XXXXXX)
: > "$work/r2b"
for _ in $(seq "$runs"); do
  rm -rf "$shm/out"; mkdir -p "$shm/out"; drop
  p0=$(cpu "$prim")
  /usr/bin/time -a -o "$work/c2b" -f '%U + %S' timeout 300 "$ex" get "$work/bench.torrent" "${seeder:--}" "$shm/out" 2>>"$work/get.log" >> "$work/r2b" || true
  echo "$(cpu "$prim") - $p0" | bc >> "$work/c2bp"
done
r2b=$(best < "$work/r2b")
echo "2b. librqbit (no repofs) from the same seeder (${seeder:-via tracker}) into /dev/shm: ${r2b}s, throughput ratio vs curl $(ratio "$b2" "$r2b"), vs the mirror $(ratio "$r2" "$r2b")"
echo "   CPU seconds: the librqbit peer $(echo $(bc < "$work/c2b")), primary $(echo $(cat "$work/c2bp"))"
# 2c. the same from librqbit's own seeder
sport=$(port)
"$ex" seed "$work/bench.torrent" "$work/files" "$sport" "$work/seeding" 2>>"$work/seed.log" &
spid=$!; pids+=("$spid")
for _ in $(seq 1200); do [[ -e $work/seeding ]] && break; sleep 0.1; done
: > "$work/r2c"
for _ in $(seq "$runs"); do
  rm -rf "$shm/out"; mkdir -p "$shm/out"; drop
  timeout 300 "$ex" get "$work/bench.torrent" "127.0.0.1:$sport" "$shm/out" 2>>"$work/get.log" >> "$work/r2c" || true
done
kill "$spid"; rm -rf "$shm"
r2c=$(best < "$work/r2c")
echo "2c. librqbit from a librqbit seeder (default storage) into /dev/shm: ${r2c}s, throughput ratio vs curl $(ratio "$b2" "$r2c")"

[[ ${OTHERS:-1} != 0 ]] || exit 0
# 3. other BitTorrent clients against the same seeder
bt=$work/btfs; : > "$work/r3"
for _ in $(seq "$runs"); do
  rm -rf "$bt" "$work/btdata"; mkdir -p "$bt" "$work/btdata"
  # One listen port: with btfs's default five, on one host, it finds itself by local discovery
  # and, every peer being 127.0.0.1, drops the seeder's connection (RESULTS.md, "btfs").
  btport=$(port)
  btfs -f --min-port="$btport" --max-port="$btport" --data-directory="$work/btdata" \
    "$work/bench.torrent" "$bt" 2>>"$work/btfs.log" &
  btpid=$!; pids+=("$btpid")
  for _ in $(seq 100); do [[ -e $bt/bench-1.0.bin ]] && break; sleep 0.1; done
  drop
  # a read no peer serves blocks btfs forever: a deadline, not a hang
  timed timeout "${BTFS_TIMEOUT:-120}" cat "$bt/bench-1.0.bin" >> "$work/r3" || true
  umount -l "$bt"; kill -KILL "$btpid" 2>/dev/null || true # it outlives SIGTERM when stuck
done
r3=$(best < "$work/r3")
if (( $(echo "$r3 >= ${BTFS_TIMEOUT:-120}" | bc) )); then
  echo "3. cat ${size} MiB through btfs, same seeder: not done within ${BTFS_TIMEOUT:-120} s ($(du -sb "$work/btdata" | cut -f1) bytes in its data dir)"
else
  echo "3. cat ${size} MiB through btfs, same seeder: ${r3}s, throughput ratio vs curl $(ratio "$b2" "$r3"), vs the mirror $(ratio "$r2" "$r3")"
fi
: > "$work/r4"
for _ in $(seq "$runs"); do
  rm -rf "$work/aria"; mkdir -p "$work/aria"; drop
  timed timeout 300 aria2c -q --enable-dht=false --bt-enable-lpd=false --enable-peer-exchange=false --seed-time=0 \
    --file-allocation=none -d "$work/aria" "$work/bench.torrent" >> "$work/r4"
done
r4=$(best < "$work/r4")
echo "4. aria2c download of ${size} MiB from the same seeder (to disk): ${r4}s, throughput ratio vs curl $(ratio "$b2" "$r4")"
