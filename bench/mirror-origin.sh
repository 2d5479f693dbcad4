#!/usr/bin/env bash
# A mirror's cold sequential read served by the origin over HTTP (fetch::origin), as ratios
# against curl of the same bytes from the same endpoint, measured in the same run (run on
# demand as root; not part of the tests). The primary's torrents name a tracker nobody runs
# (the tracker is down), so no peer is ever found and every byte comes over HTTP
# (`/by-sha256/SHA256`), each piece checked against its SHA-1 and the object's sha256 at
# promotion. No caps: [mirror] origin_rate = 0.
#  1. curl of the file from the primary's endpoint (dists/ URL) into /dev/null: the baseline;
#     1d. the same into a file on the disk the mirror's cache is on, then sync (the mirror
#     writes what it fetches durably: a piece counts once synced).
#  2. cold mirror (empty cache, mounted), `cat` of the whole file: default origin_after (a
#     read waits up to 2 s for peers before the object's first read goes to the origin).
#  3. the same with origin_after = "0s" (the origin at once).
#  n. `repofs fetch` of the object on a cold mirror: the origin path without FUSE.
#  n+1. librqbit without repofs (bench/bt_ceiling.rs) from the primary's seeder into /dev/shm:
#     librqbit's own CPU-seconds per GiB beside the mirror's.
# CPU-seconds: the mirror's repofsd (fetch service and mount, one process) from the cat's start
# until the object is complete in the cache (its sha256 may be checked after the read ends), and
# the primary's. Bytes by source from the mirror's fetch-status.json.
# Usage: bench/mirror-origin.sh [SIZE_MIB=1024] [RUNS=2]   (BIN=dir: prebuilt binaries,
#   AFTERS="5s 0s" the origin_after values of steps 2.., PERF=FILE where the mirror spends it,
#   OTHERS=0 skips step 4)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
runs=${2:-2}
[[ $(id -u) -eq 0 ]] || { echo "bench/mirror-origin.sh: run as root (it mounts)" >&2; exit 1; }
[[ -n ${BIN:-} ]] || cargo build --release --quiet
cargo build --release --quiet --example bt-ceiling
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
bench_work
mpid=
cleanup() {
  if [[ -n $mpid ]]; then kill "$mpid" 2>/dev/null || true; fi
  if mountpoint -q "$work/mmnt" 2>/dev/null; then umount -l "$work/mmnt" || true; fi
  bench_cleanup
}
trap cleanup EXIT INT TERM
bench_key
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
timed() { local t0; t0=$(now); "$@" > /dev/null; echo "$(now) - $t0" | bc; }
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; } # user+system seconds, all threads

file=$work/files/bench-1.0.bin
mkdir -p "$work/files"
head -c $((size << 20)) /dev/urandom > "$file"
sha=$(sha256sum "$file" | cut -d' ' -f1)
gpg -q --batch -b "$file"

# ---- the primary: its torrents name a dead tracker -------------------------------------
p=$work/primary; pm=$mnt; mkdir -p "$pm"
"$bin/repofs" --root "$p" keys add --dir / "$work/key.asc" >/dev/null
listen=127.0.0.1:$(port)
printf '[distribution]\ntrackers = ["http://127.0.0.1:%s/announce"]\n' "$(port)" > "$work/primary.toml"
RUST_LOG=warn,repofs::fetch::seed=info "$bin/repofsd" --root "$p" --config "$work/primary.toml" \
  --listen "$listen" --mount "$pm" 2>>"$work/primary.log" &
prim=$!; pids+=("$prim")
for _ in $(seq 100); do [[ -d $pm/incoming ]] && mountpoint -q "$pm" && break; sleep 0.1; done
mkdir -p "$pm/incoming/bench" && cp "$file" "$file.sig" "$pm/incoming/bench/"
until [[ -e $pm/dists/bench/bench-1.0.bin.torrent ]]; do sleep 0.1; done
"$bin/repofs" --root "$p" keys export-repo > "$work/repo-key.asc"
cp "$pm/dists/bench/bench-1.0.bin.torrent" "$work/bench.torrent"
sleep 3 # the seeder adds the torrent
url=http://$listen/dists/bench/bench-1.0.bin

mirror_up() { # $1: origin_after
  m=$work/mirror; mm=$work/mmnt
  rm -rf "$m"; mkdir -p "$m" "$mm"
  printf '[mirror]\norigin_rate = 0\norigin_after = "%s"\n' "$1" > "$work/mirror.toml"
  RUST_LOG=${MIRROR_LOG:-warn} "$bin/repofsd" --root "$m" --config "$work/mirror.toml" --upstream "http://$listen" \
    --repo-key "$work/repo-key.asc" --poll 1 --mount "$mm" 2>>"$work/mirror.log" &
  mpid=$!
  for _ in $(seq 300); do [[ -e $mm/dists/bench/bench-1.0.bin ]] && break; sleep 0.1; done
  [[ -e $mm/dists/bench/bench-1.0.bin ]] || { echo "the mirror never synced" >&2; tail "$work/mirror.log" >&2; exit 1; }
}
mirror_down() {
  kill "$mpid"; wait "$mpid" 2>/dev/null || true; mpid=
  mountpoint -q "$mm" && umount -l "$mm" || true
}
sources() { # bytes from peers and from the origin (the status file is rewritten every ~2 s)
  sleep 2.5
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("peers", s["downloaded_bytes"], "origin", s["origin"]["bytes"], "corrupt", s["origin"]["corrupt_pieces"])' "$m/mirror/fetch-status.json"
}

# 1. curl
for _ in $(seq "$runs"); do drop; p0=$(cpu "$prim"); timed curl -fs "$url" >> "$work/b1"; echo "$(cpu "$prim") - $p0" | bc >> "$work/c1p"; done
b1=$(best < "$work/b1")
echo "1. curl of ${size} MiB from the primary's endpoint: ${b1}s; primary CPU-s $(echo $(cat "$work/c1p"))"
# The mirror writes what it fetches into its cache, durably: curl into a file, then sync.
for _ in $(seq "$runs"); do
  drop; timed sh -c "curl -fs -o '$work/curl.out' '$url' && sync '$work/curl.out'" >> "$work/b1d"; rm -f "$work/curl.out"
done
b1d=$(best < "$work/b1d")
echo "1d. curl of ${size} MiB into a file on the cache's disk, then sync: ${b1d}s"

# 2, 3. cold mirror, cat
n=2
for after in ${AFTERS:-5s 0s}; do
  : > "$work/r$n"; : > "$work/c$n"; : > "$work/p$n"
  for _ in $(seq "$runs"); do
    mirror_up "$after"; drop
    c0=$(cpu "$mpid"); p0=$(cpu "$prim")
    if [[ -n ${PERF:-} ]]; then
      perf record -q -F 999 -g -p "$mpid" -o "$work/perf.data" 2>/dev/null & perfpid=$!
    fi
    timed cat "$mm/dists/bench/bench-1.0.bin" >> "$work/r$n"
    for _ in $(seq 600); do [[ -e $m/mirror/complete/$sha ]] && break; sleep 0.05; done
    if [[ -n ${PERF:-} ]]; then
      kill -INT "$perfpid"; wait "$perfpid" || true
      perf report -i "$work/perf.data" --stdio --no-children -g none --percent-limit 0.7 --sort comm,dso,sym > "$PERF" 2>/dev/null || true
    fi
    echo "$(cpu "$mpid") - $c0" | bc >> "$work/c$n"; echo "$(cpu "$prim") - $p0" | bc >> "$work/p$n"
    sources >> "$work/s$n"
    cmp -s "$mm/dists/bench/bench-1.0.bin" "$file" || echo "   BYTES DIFFER" >> "$work/s$n"
    mirror_down
  done
  r=$(best < "$work/r$n")
  echo "$n. cat ${size} MiB, cold mirror, tracker down, origin_after=$after: ${r}s, throughput ratio vs curl $(ratio "$b1" "$r"), vs curl to disk $(ratio "$b1d" "$r")"
  echo "   CPU-s per run: mirror repofsd $(echo $(cat "$work/c$n")), primary $(echo $(cat "$work/p$n")); bytes by source: $(tail -1 "$work/s$n")"
  n=$((n + 1))
done

# n. the origin path without a reader: `repofs fetch` asks for the object in 16 MiB slices
: > "$work/rf"; : > "$work/cf"
for _ in $(seq "$runs"); do
  mirror_up 0s; drop
  c0=$(cpu "$mpid")
  timed "$bin/repofs" --root "$m" fetch dists/bench/bench-1.0.bin >> "$work/rf"
  echo "$(cpu "$mpid") - $c0" | bc >> "$work/cf"
  mirror_down
done
rf=$(best < "$work/rf")
echo "$n. repofs fetch of ${size} MiB (no FUSE reader), cold mirror, tracker down: ${rf}s, throughput ratio vs curl $(ratio "$b1" "$rf"), vs curl to disk $(ratio "$b1d" "$rf"); mirror CPU-s $(echo $(cat "$work/cf"))"

[[ ${OTHERS:-1} != 0 ]] || exit 0
# 4. librqbit's own CPU for the same bytes (from the primary's seeder, address from its log)
seeder=$(grep 'seeding: every published object' "$work/primary.log" | grep -o 'addr=Some([0-9.:]*)' | head -1 | sed 's/.*Some(\(.*\))/\1/')
ex=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/bt-ceiling
shm=$(mktemp -d /dev/shm/mirror-origin.XXXXXX)
: > "$work/r4"
for _ in $(seq "$runs"); do
  rm -rf "$shm/out"; mkdir -p "$shm/out"; drop
  /usr/bin/time -a -o "$work/c4" -f '%U + %S' timeout 300 "$ex" get "$work/bench.torrent" "${seeder:--}" "$shm/out" 2>>"$work/get.log" >> "$work/r4" || true
done
rm -rf "$shm"
r4=$(best < "$work/r4")
echo "$((n + 1)). librqbit (no repofs) from the primary's seeder into /dev/shm: ${r4}s, throughput ratio vs curl $(ratio "$b1" "$r4"); its CPU-s $(echo $(bc < "$work/c4"))"
