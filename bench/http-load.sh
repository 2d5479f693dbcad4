#!/usr/bin/env bash
# The `--listen` endpoint under many clients, against nginx serving the same bytes in the same
# run (run on demand; not part of the tests; needs wrk and nginx: apt-get install wrk nginx-light).
# A primary publishes FILES distinct 4 KiB files (each signed, so dists/bench/ holds 2×FILES);
# nginx serves copies of the same files and of the index objects from a plain directory.
#  1. GET of the FILES small files round-robin, CONNS keep-alive connections, DURATION each.
#  2. The same requests with `If-Modified-Since: now` (every answer a 304).
#  3. GET of the index objects (`/index/objects/SHA256`) round-robin.
#  4. GET of one LARGE_MIB file, best of 5 (curl to /dev/null, warm page cache).
# Figures: requests/s, p50/p99 latency (wrk --latency), ratio ours/nginx (target ≥ 0.5 for
# 1–3, ≥ 1 for 4 as throughput), and the CPU seconds each server used in each step.
# Usage: bench/http-load.sh [FILES=200] [CONNS=32] [DURATION=10s] [LARGE_MIB=64]
# BIN=DIR takes repofs/repofsd from DIR (e.g. another build, for a before/after in one run).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
conns=${2:-32}
dur=${3:-10s}
large=${4:-64}
if [[ -z ${BIN:-} ]]; then cargo build --release --quiet --bin repofs --bin repofsd; fi
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_work
root=$work/root
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) nport=$(free_port)
conf=$work/repofs.toml
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$conf"
bench_key
"$bin/repofs" --root "$root" --config "$conf" keys add --dir / "$work/key.asc" >/dev/null

native=$work/nginx/dists/bench
mkdir -p "$root/incoming/bench" "$native"
for i in $(seq "$n"); do head -c 4096 /dev/urandom > "$root/incoming/bench/small-$i.bin"; done
head -c $((large << 20)) /dev/urandom > "$root/incoming/bench/large.bin"
cp "$root/incoming/bench/"*.bin "$native/"
for f in "$root/incoming/bench/"*.bin; do gpg -q --batch -b "$f"; done
"$bin/repofsd" --root "$root" --config "$conf" --once 2>>"$work/repofsd.log"

RUST_LOG=warn "$bin/repofsd" --root "$root" --config "$conf" --listen "127.0.0.1:$port" \
  2>>"$work/repofsd.log" &
ours_pid=$!
pids+=("$ours_pid")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/dists/" && break; sleep 0.1; done
# Give the seeder its start-up (adding every torrent) before measuring.
sleep 3
mkdir -p "$work/nginx/index"
cp -r "$root/index/objects" "$work/nginx/index/"
cat > "$work/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  if_modified_since before;
  client_body_temp_path $work/nginx-tmp;
  proxy_temp_path $work/nginx-tmp; fastcgi_temp_path $work/nginx-tmp;
  uwsgi_temp_path $work/nginx-tmp; scgi_temp_path $work/nginx-tmp;
  server { listen 127.0.0.1:$nport; root $work/nginx; }
}
EOF
nginx -c "$work/nginx.conf" 2>>"$work/nginx-error.log" &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$nport/" && break; sleep 0.1; done

# Same bytes on both sides?
for i in 1 "$n"; do
  cmp <(curl -sSf "http://127.0.0.1:$port/dists/bench/small-$i.bin") \
    <(curl -sSf "http://127.0.0.1:$nport/dists/bench/small-$i.bin") ||
    { echo "small-$i.bin differs" >&2; exit 1; }
done
seq "$n" | sed 's|^|/dists/bench/small-|; s|$|.bin|' > "$work/small.paths"
find "$work/nginx/index/objects" -type f -printf '/index/objects/%f\n' > "$work/index.paths"
cat > "$work/rr.lua" <<'EOF'
-- Round-robin over the paths in the file named by the first script argument.
local paths, i = {}, 0
function init(args)
  for l in io.lines(args[1]) do paths[#paths + 1] = l end
  i = math.random(#paths)
end
function request()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
EOF

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# nginx: the master (its pid file) and its workers.
nginx_cpu() {
  local m t=0; m=$(cat "$work/nginx.pid")
  for p in "$m" $(pgrep -P "$m"); do t=$((t + $(cpu "$p"))); done; echo $t
}
tck=$(getconf CLK_TCK)
# run NAME PORT PATHS [wrk args...]: prints "req/s p50 p99 cpu-s"
run() {
  local port=$1 paths=$2 out c0 c1
  shift 2
  c0=$( [[ $port == "$nport" ]] && nginx_cpu || cpu "$ours_pid")
  out=$(wrk -t2 -c"$conns" -d"$dur" --latency -s "$work/rr.lua" "$@" "http://127.0.0.1:$port" -- "$paths")
  c1=$( [[ $port == "$nport" ]] && nginx_cpu || cpu "$ours_pid")
  if grep -q 'Non-2xx' <<<"$out" && [[ " $* " != *If-Modified-Since* ]]; then
    echo "errors from $port:" >&2; echo "$out" >&2; exit 1
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  echo "$rps $p50 $p99 $(echo "scale=2; ($c1 - $c0) / $tck" | bc)"
}
row() {
  local what=$1 paths=$2
  shift 2
  local o g
  read -r -a o <<<"$(run "$port" "$paths" "$@")"
  read -r -a g <<<"$(run "$nport" "$paths" "$@")"
  printf '| %s | %s req/s, p50 %s, p99 %s, %s CPU-s | %s req/s, p50 %s, p99 %s, %s CPU-s | %s |\n' \
    "$what" "${o[@]}" "${g[@]}" "$(ratio "${o[0]}" "${g[0]}")"
}
echo "$n small files of 4 KiB, $conns connections, $dur per step, wrk -t2; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| | ours | nginx | ratio (req/s) |"
echo "|---|---|---|---|"
row "GET 4 KiB" "$work/small.paths"
row "304 (If-Modified-Since)" "$work/small.paths" -H "If-Modified-Since: $(date -u -R | sed 's/+0000/GMT/')"
row "index objects ($(wc -l < "$work/index.paths"))" "$work/index.paths"

get() { curl -sSf -o /dev/null -w '%{time_total}\n' "$1"; }
ours=$(for _ in 1 2 3 4 5; do get "http://127.0.0.1:$port/dists/bench/large.bin"; done | best)
base=$(for _ in 1 2 3 4 5; do get "http://127.0.0.1:$nport/dists/bench/large.bin"; done | best)
echo "GET $large MiB, best of 5: ours $ours s, nginx $base s; speed ratio (ours/nginx) $(ratio "$base" "$ours")"
