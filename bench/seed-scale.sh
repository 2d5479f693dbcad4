#!/usr/bin/env bash
# A primary seeding COUNT distinct published files: what it costs as the count grows.
# Per start of repofsd (--listen, torrents naming one external tracker):
#   - seconds from exec until a peer's handshake for a random file is answered with a piece
#     (start to seeding), and the log's seeding start line;
#   - RSS after start, after the probes and after the idle minute (VmRSS, VmHWM);
#   - first-piece latency for PROBES random files: a raw BitTorrent peer connects to the
#     seeder, handshakes, says interested and requests the first block of the piece the
#     seeder offers; seconds from connect to the block (the torrent was not live before);
#   - CPU over IDLE seconds with no peer (/proc/PID/stat utime+stime; % of one core) and
#     which threads spent it (by thread name, /proc/PID/task/*/stat);
#   - announces to the external tracker (a counting HTTP listener here): total and per
#     second, over the whole start and over the idle minute.
# The store holds COUNT files of 4 KiB random bytes, each with its .sig (2 x COUNT objects
# and torrents), published through the spool with `repofsd --once` in batches of 500,
# 1000 per directory. Publication is setup, not measured: it runs under eatmydata when
# installed (no fsync), 2 signers at once.
# Usage: bench/seed-scale.sh [COUNT=1000]   (run on demand; ROOT=dir publishes there and keeps
#   it, or reuses it; BIN=dir prebuilt repofs/repofsd; BASE_BIN=dir a second build measured
#   on the same store in the same run, e.g. one that seeds every torrent at start; PROBES=20;
#   IDLE=60; SEED_WAIT=120 gives up waiting for the first piece; SKIP_INDEX=1 skips the unmeasured first start that lets the index catch up)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
probes=${PROBES:-20}
idle=${IDLE:-60}
[[ -n ${BIN:-} ]] || cargo build --release --quiet
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
# shellcheck source=bench/lib.sh
source bench/lib.sh
work=$(mktemp -d /var/tmp/repofs-seedscale.XXXXXX)
mnt=$work/mnt
export GNUPGHOME=${ROOT:+$ROOT.gnupg}
export GNUPGHOME=${GNUPGHOME:-$work/gnupg}
pids=()
trap bench_cleanup EXIT
root=${ROOT:-$work/root}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=127.0.0.1:$(port)
tracker_port=$(port)
nodata=$(command -v eatmydata || true)

# ---- publish ------------------------------------------------------------------------------
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$work/publish.toml"
t0=$(now)
if [[ ! -e $root/catalog.sqlite ]]; then
  bench_key
  "$bin/repofs" --root "$root" keys add --dir / "$work/key.asc" >/dev/null
  for ((i = 1; i <= count; i += 500)); do
    spool=$root/incoming/b$((i / 1000))
    mkdir -p "$spool"
    for ((j = i; j < i + 500 && j <= count; j++)); do
      head -c 4096 /dev/urandom > "$spool/f-$j.bin"
    done
    (cd "$spool" && ls | grep -v '\.sig$' | xargs -r -n 100 -P2 sh -c 'for f; do gpg -q --batch -b "$f"; done' _)
    RUST_LOG=warn $nodata "$bin/repofsd" --root "$root" --config "$work/publish.toml" --once
  done
fi
published=$(sqlite3 -readonly "$root/catalog.sqlite" \
  "SELECT count(*) FROM files WHERE state = 'published' AND filename LIKE 'f-%.bin'")
objects=$(sqlite3 -readonly "$root/catalog.sqlite" "SELECT count(*) FROM torrents")
echo "published: $published files, $objects torrents (setup: $(echo "$(now) - $t0" | bc | xargs printf %.0f) s)"

# ---- the external tracker: counts announces, names no peer -------------------------------
python3 - "$tracker_port" "$work/announces" <<'EOF' &
import http.server, sys, time
log = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write(f"{time.time():.3f} {self.path.split('?')[0]}\n")
        body = b"d8:intervali1800e5:peers0:e"  # a constant answer: no peers, come back in 30 min
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
pids+=($!)
: > "$work/announces"
config() {
  printf '[distribution]\nlisten = "%s"\ntrackers = ["http://127.0.0.1:%s/announce"]\n' \
    "$listen" "$tracker_port" > "$work/cfg.toml"
}
config

# ---- a raw peer: first block of a random file's torrent ---------------------------------
# probe.py SEEDER_PORT HASH... -> per hash: seconds from connect to the first block, or "fail".
cat > "$work/probe.py" <<'EOF'
import socket, struct, sys, time
port = int(sys.argv[1])
def recv(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b
def probe(h):
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"\x13BitTorrent protocol" + bytes(8) + h + b"-PB0001-seedscale-01")
    if recv(s, 68)[28:48] != h:
        raise ValueError("other infohash")
    s.sendall(struct.pack(">IB", 1, 2))  # interested
    unchoked, piece = False, None
    while True:
        n = struct.unpack(">I", recv(s, 4))[0]
        if n == 0:
            continue
        m = recv(s, n)
        if m[0] == 1:
            unchoked = True
        elif m[0] == 4 and piece is None:
            piece = struct.unpack(">I", m[1:5])[0]
        elif m[0] == 5 and piece is None:
            piece = next(i * 8 + b for i, x in enumerate(m[1:]) for b in range(8) if x & (0x80 >> b))
        elif m[0] == 7:
            s.close()
            return time.time() - t0
        if unchoked and piece is not None:
            s.sendall(struct.pack(">IBIII", 13, 6, piece, 0, 4096))  # the files are 4 KiB
            unchoked = False
for hexhash in sys.argv[2:]:
    try:
        print(f"{probe(bytes.fromhex(hexhash)):.4f}", flush=True)
    except Exception as e:
        print(f"fail {e!r}", flush=True)
EOF
random_hashes() {
  sqlite3 -readonly "$root/catalog.sqlite" "SELECT t.info_hash FROM torrents t JOIN files f
    ON f.id = t.file_id WHERE f.filename LIKE 'f-%.bin' ORDER BY random() LIMIT $1"
}

rss() { awk -v k="$2:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }  # MiB
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# CPU ticks per thread name (seeder, http, index-publish, ...), "name=ticks ...".
thread_ticks() {
  for t in /proc/"$1"/task/*/stat; do
    sed -E 's/^[0-9]+ \(([^)]*)\) (.*)$/\1 \2/' "$t" 2>/dev/null | awk '{ print $1, $13 + $14 }'
  done | awk '{ sub(/[-:][0-9]+$/, "", $1); s[$1] += $2 } END { for (k in s) printf "%s=%d ", k, s[k] }'
}
announces() { wc -l < "$work/announces"; }

# Starts repofsd from $2 (mode $1), measures, prints one row.
start() {
  local mode=$1 b=$2 log=$work/repofsd-$1.log
  local a0; a0=$(announces)
  local t0; t0=$(now)
  RUST_LOG=info "$b/repofsd" --root "$root" --config "$work/cfg.toml" 2>"$log" &
  local pid=$!
  pids+=("$pid")
  local seeder=""
  for _ in $(seq 6000); do
    seeder=$(grep -oE 'seeding.*addr=Some\(127\.0\.0\.1:[0-9]+\)' "$log" | grep -oE '[0-9]+\)$' | tr -d ')' | head -1 || true)
    [[ -n $seeder ]] && break
    sleep 0.01
  done
  [[ -n $seeder ]] || { echo "$mode: no seeder after 60 s" >&2; tail "$log" >&2; exit 1; }
  local t_line; t_line=$(echo "$(now) - $t0" | bc)
  # Start to seeding: until a random file's first block arrives (retried while not yet).
  local h; h=$(random_hashes 1)
  local r=fail
  local give_up; give_up=$(echo "$(now) + ${SEED_WAIT:-120}" | bc)
  while (($(echo "$(now) < $give_up" | bc))); do
    r=$(python3 "$work/probe.py" "$seeder" "$h")
    [[ $r != fail* ]] && break
    sleep 0.1
  done
  [[ $r != fail* ]] || echo "$mode: no piece of $h within ${SEED_WAIT:-120} s" >&2
  local t_seed; t_seed=$(echo "$(now) - $t0" | bc)
  local rss_start; rss_start=$(rss "$pid" VmRSS)
  # First-piece latency of PROBES random files, one after another.
  # shellcheck disable=SC2046
  python3 "$work/probe.py" "$seeder" $(random_hashes "$probes") > "$work/probe-$mode"
  local fails; fails=$(grep -c fail "$work/probe-$mode" || true)
  local lat; lat=$(grep -v fail "$work/probe-$mode" | sort -n |
    awk '{ a[NR] = $1 } END { if (NR) printf "%.3f/%.3f/%.3f", a[1], a[int((NR + 1) / 2)], a[NR]; else print "-" }')
  local rss_probed; rss_probed=$(rss "$pid" VmRSS)
  # Idle: no peer for IDLE seconds (after a pause for the probes' connections to close).
  sleep 5
  local c0 a1 th0; c0=$(ticks "$pid"); a1=$(announces); th0=$(thread_ticks "$pid")
  sleep "$idle"
  local c1 a2 th1; c1=$(ticks "$pid"); a2=$(announces); th1=$(thread_ticks "$pid")
  local cpu; cpu=$(echo "($c1 - $c0) / $idle" | bc -l)  # ticks/s at USER_HZ 100 = % of a core
  # The seeder's threads alone (seeder, seed-follow, http, repofsd): what is left when the
  # index publisher works off a backlog of deltas `--once` left (SKIP_INDEX=1). Threads that
  # exited during the minute are not counted here (they are in idle_cpu).
  local cpu_seed; cpu_seed=$(echo "$th0
$th1" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] ~ /^(seeder|seed-follow|http|repofsd)$/) d[kv[1]] = (NR == 1 ? -kv[2] : d[kv[1]] + kv[2]) } }
    END { for (k in d) t += d[k]; printf "%.2f", t / '"$idle"' }')
  local rss_idle hwm; rss_idle=$(rss "$pid" VmRSS); hwm=$(rss "$pid" VmHWM)
  local threads; threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/$pid/status")
  local run; run=$(echo "$(now) - $t0" | bc)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-10s %7.2f %7.2f %9s %5s %6s %6s %6s %6s %7.2f%% %7.2f%% %7s %9.3f %8.3f %5s\n' "$mode" "$t_line" \
    "$t_seed" "$lat" "$fails" "$rss_start" "$rss_probed" "$rss_idle" "$hwm" "$cpu" "$cpu_seed" "$threads" \
    "$(echo "($a2 - $a0) / $run" | bc -l)" "$(echo "($a2 - $a1) / $idle" | bc -l)" "$((a2 - a0))"
  echo "  idle CPU ticks by thread, $mode: before [$th0] after [$th1]" >&2
}

# A first start, not measured (SKIP_INDEX=1: none): the index publisher makes the deltas `repofsd --once` left to
# it (one per publication), which would otherwise count as the idle primary's CPU.
if [[ -z ${SKIP_INDEX:-} ]]; then
RUST_LOG=info "$bin/repofsd" --root "$root" --config "$work/cfg.toml" 2>"$work/repofsd-first.log" &
first=$!
pids+=("$first")
deltas=-1
for _ in $(seq 2400); do
  sleep 3
  n=$(grep -c "index delta" "$work/repofsd-first.log" || true)
  [[ $n -eq $deltas ]] && grep -q "index root\|signed" "$work/repofsd-first.log" && break
  [[ $n -eq $deltas && $n -eq 0 ]] && break
  deltas=$n
done
sleep 2
kill "$first"; wait "$first" 2>/dev/null || true
fi

echo "seed-scale: $published files ($objects torrents) of 4 KiB; kernel $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %7s %7s %9s %5s %6s %6s %6s %6s %8s %8s %7s %9s %8s %5s\n' mode line_s seed_s \
  'piece_s min/med/max' fails rss0 rss1 rss2 hwm idle_cpu seeder threads 'ann/s run' 'ann/s idle' ann
start on-demand "$bin"
[[ -z ${BASE_BIN:-} ]] || start base "$BASE_BIN"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
