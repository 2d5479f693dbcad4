#!/usr/bin/env bash
# The BitTorrent ceiling on this machine, without repofs: how fast one peer gets a SIZE_MIB file
# from one seeder on loopback, against `curl` of the same file from a loopback HTTP server in
# the same run (run on demand as root; not part of the tests). It tells whether a mirror's
# sequential read (bench/mirror-fetch.sh) can reach a given fraction of curl at all.
#  1. curl from python3 -m http.server (to /dev/null), page cache dropped before each run.
#  2. librqbit -> librqbit (bench/bt_ceiling.rs: default file storage both sides), into tmpfs
#     (/dev/shm) and into a disk directory.
#  3. aria2c -> aria2c through opentracker (into the disk directory).
#  4. aria2c seeding -> librqbit, to tell seeder from leecher costs.
# Usage: bench/bt-ceiling.sh [SIZE_MIB=1024] [RUNS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
runs=${2:-2}
[[ $(id -u) -eq 0 ]] || { echo "bench/bt-ceiling.sh: run as root (drops caches)" >&2; exit 1; }
for c in aria2c opentracker curl transmission-create; do
  command -v $c >/dev/null || { echo "bench/bt-ceiling.sh: needs $c" >&2; exit 1; }
done
cargo build --release --quiet --example bt-ceiling
# shellcheck source=bench/lib.sh
source bench/lib.sh
ex=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/bt-ceiling
bench_work
shm=$(mktemp -d /dev/shm/bt-ceiling.XXXXXX)
# opentracker drops to user nobody before it reads its whitelist: a readable dir of its own.
ot=$(mktemp -d /tmp/bt-ceiling-ot.XXXXXX); chmod 755 "$ot"
trap 'bench_cleanup; rm -rf "$shm" "$ot"' EXIT INT TERM
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
timed() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc; }
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; } # user+system seconds of a process
# cputimed OUT PID CMD...: CMD's wall seconds to stdout; "CMD's CPU s + PID's CPU s" to OUT
cputimed() {
  local out=$1 pid=$2 c0 t; shift 2; c0=$(cpu "$pid")
  t=$(/usr/bin/time -o "$out.t" -f '%U + %S' "$@" | tail -1)
  echo "$(bc < "$out.t") $(echo "$(cpu "$pid") - $c0" | bc)" >> "$out"; echo "$t"
}
mbps() { echo "scale=0; $size * 1048576 / $1 / 1000000" | bc; }
waitfor() { # waitfor FILE SECONDS: a deadline on every wait
  for _ in $(seq $(($2 * 10))); do [[ -e $1 ]] && return 0; sleep 0.1; done
  echo "bench/bt-ceiling.sh: $1 did not appear in $2 s" >&2; exit 1
}

mkdir -p "$work/files"
file=$work/files/bench.bin
head -c $((size << 20)) /dev/urandom > "$file"
# 256 KiB pieces, as repofs makes them (librqbit's own create_torrent made one aria2c refused:
# "Too few/many piece hash").
transmission-create -s 256 -o "$work/bench.torrent" "$file" >/dev/null

# 1. curl
hport=$(port)
(cd "$work/files" && exec python3 -m http.server -b 127.0.0.1 "$hport" >/dev/null 2>&1) &
hpid=$!; pids+=("$hpid")
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$hport/" && break; sleep 0.1; done
for _ in $(seq "$runs"); do
  drop; cputimed "$work/cpu1" "$hpid" bash -c "t0=\$(date +%s.%N); curl -fs -o /dev/null http://127.0.0.1:$hport/bench.bin; echo \"\$(date +%s.%N) - \$t0\" | bc"
done | best > "$work/curl"
c=$(cat "$work/curl")
echo "1. curl ${size} MiB from loopback HTTP: ${c}s ($(mbps "$c") MB/s); CPU s (client server) per run: $(paste -sd, "$work/cpu1")"

# 2. librqbit -> librqbit
sport=$(port)
"$ex" seed "$work/bench.torrent" "$work/files" "$sport" "$work/seeding" 2>>"$work/seed.log" &
spid=$!; pids+=("$spid")
waitfor "$work/seeding" 120
for dest in "$shm" "$work/get"; do
  : > "$work/r"
  for _ in $(seq "$runs"); do
    rm -rf "$dest/out"; mkdir -p "$dest/out"; drop
    cputimed "$work/cpu2" "$spid" timeout 600 "$ex" get "$work/bench.torrent" "127.0.0.1:$sport" "$dest/out" 2>>"$work/get.log" >> "$work/r"
  done
  r=$(best < "$work/r"); rm -rf "$dest/out"
  echo "2. librqbit -> librqbit into ${dest%%/get}: ${r}s ($(mbps "$r") MB/s), throughput ratio vs curl $(ratio "$c" "$r"); CPU s (leecher seeder): $(paste -sd, "$work/cpu2")"
  : > "$work/cpu2"
done
kill "$spid"; wait "$spid" 2>/dev/null || true

# 3. aria2c -> aria2c through opentracker (its whitelist holds our infohash)
ih=$(aria2c -S "$work/bench.torrent" | awk '/^Info Hash:/ {print $3}')
tport=$(port)
echo "$ih" > "$ot/whitelist"
printf 'listen.tcp_udp 127.0.0.1:%s\naccess.whitelist %s\n' "$tport" "$ot/whitelist" > "$ot/ot.conf"
chmod 644 "$ot/whitelist" "$ot/ot.conf"
opentracker -f "$ot/ot.conf" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
tracker=http://127.0.0.1:$tport/announce
aport=$(port)
aria2c -q --enable-dht=false --bt-enable-lpd=false --enable-peer-exchange=false -V --seed-ratio=0.0 \
  --bt-tracker="$tracker" --listen-port="$aport" --bt-seed-unverified=false -d "$work/files" \
  --stop=900 "$work/bench.torrent" >/dev/null 2>&1 &
apid=$!; pids+=("$apid")
sleep 8 # aria2c checks the seeded file (-V) before it announces
: > "$work/r"
for _ in $(seq "$runs"); do
  rm -rf "$work/aria"; mkdir -p "$work/aria"; drop
  timed timeout 300 aria2c -q --enable-dht=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --seed-time=0 --file-allocation=none --bt-tracker="$tracker" -d "$work/aria" "$work/bench.torrent" >> "$work/r"
done
r=$(best < "$work/r"); rm -rf "$work/aria"
echo "3. aria2c -> aria2c into $work: ${r}s ($(mbps "$r") MB/s), throughput ratio vs curl $(ratio "$c" "$r")"

# 4. aria2c seeding -> librqbit
: > "$work/r"
for _ in $(seq "$runs"); do
  rm -rf "$shm/out"; mkdir -p "$shm/out"; drop
  timeout 600 "$ex" get "$work/bench.torrent" "127.0.0.1:$aport" "$shm/out" 2>>"$work/get.log" >> "$work/r"
done
r=$(best < "$work/r"); rm -rf "$shm/out"
echo "4. aria2c -> librqbit into /dev/shm: ${r}s ($(mbps "$r") MB/s), throughput ratio vs curl $(ratio "$c" "$r")"
