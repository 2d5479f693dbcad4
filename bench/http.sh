#!/usr/bin/env bash
# dists/ over HTTP (`repofsd --listen`, src/vfs/http.rs), as ratios against baselines measured
# in the same run on the same bytes (run on demand; not part of the tests; no root needed):
#  1. GET of a SIZE_MIB published file from our endpoint against `python3 -m http.server`
#     serving the same store object (warm page cache, best of RUNS, curl to /dev/null).
#     Ratio = our time / baseline time; target <= 1.
#  2. The HTML listing of one directory of FILES published files (catalog rows cloned in SQL from
#     one real publication, as bench/mirror-index.sh does): the first page (1000 rows), cold
#     (first request after the catalog changed) and warm, and all pages one after another,
#     against python3's listing of a native directory of FILES empty files (one page).
# Usage: bench/http.sh [SIZE_MIB=1024] [FILES=100000] [RUNS=3]; PROFILE=debug uses the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
n=${2:-100000}
runs=${3:-3}
profile=${PROFILE:-release}
if [[ $profile == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${CARGO_TARGET_DIR:-$PWD/target}/$profile
bench_work
root=$work/root
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) pyport=$(free_port)
conf=$work/repofs.toml
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$conf"
bench_key
"$bin/repofs" --root "$root" --config "$conf" keys add --dir / "$work/key.asc" >/dev/null

# One large file and one small template, published for real (--once); the source is removed
# at once, so the store holds the only copy.
mkdir -p "$root/incoming/bench" "$root/incoming/big"
head -c $((size << 20)) /dev/urandom > "$root/incoming/bench/large-1.0.bin"
gpg -q --batch -b "$root/incoming/bench/large-1.0.bin"
echo template > "$root/incoming/big/template.bin"
gpg -q --batch -b "$root/incoming/big/template.bin"
"$bin/repofsd" --root "$root" --config "$conf" --once 2>>"$work/repofsd.log"
sha=$("$bin/repofs" --root "$root" list --json |
  python3 -c 'import json,sys; print([f["sha256"] for f in json.load(sys.stdin) if f["filename"]=="large-1.0.bin"][0])')
object=$root/store/objects/${sha:0:2}/$sha
[[ -f $object ]] || { echo "no store object $object" >&2; exit 1; }

t0=$(now)
sqlite3 "$root/catalog.sqlite" <<SQL
BEGIN;
CREATE TEMP TABLE n(i INTEGER PRIMARY KEY);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $n) INSERT INTO n SELECT i FROM c;
INSERT INTO files (id, directory, filename, kind, sha256, md5, size, name, version, uploader,
                   upload_id, published_at, state)
  SELECT 100000000 + n.i, 'big', 'file' || n.i || '.bin', f.kind, f.sha256, f.md5, f.size,
         NULL, NULL, f.uploader, f.upload_id, f.published_at, 'published'
  FROM n, files f WHERE f.directory = 'big' AND f.filename = 'template.bin';
INSERT INTO torrents SELECT 100000000 + n.i, t.info_hash, t.info
  FROM n, torrents t JOIN files f ON f.id = t.file_id
  WHERE f.directory = 'big' AND f.filename = 'template.bin';
COMMIT;
SQL
echo "cloned $n files into dists/big/ in $(echo "$(now) - $t0" | bc) s"

RUST_LOG=warn "$bin/repofsd" --root "$root" --config "$conf" --listen "127.0.0.1:$port" \
  2>>"$work/repofsd.log" &
pids+=($!)
python3 -m http.server -b 127.0.0.1 -d "$(dirname "$object")" "$pyport" >/dev/null 2>&1 &
pids+=($!)
for p in "$port" "$pyport"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

get() { curl -sSf -o /dev/null -w '%{time_total}\n' "$1"; }
cat "$object" > /dev/null
ours=$(for _ in $(seq "$runs"); do get "http://127.0.0.1:$port/dists/bench/large-1.0.bin"; done | best)
base=$(for _ in $(seq "$runs"); do get "http://127.0.0.1:$pyport/$sha"; done | best)
mbs() { echo "scale=0; $size / $1" | bc; }
echo "GET $size MiB: ours $ours s ($(mbs "$ours") MiB/s), python3 http.server $base s ($(mbs "$base") MiB/s); ratio $(ratio "$ours" "$base")"
# Same bytes?
[[ $(curl -sSf "http://127.0.0.1:$port/dists/bench/large-1.0.bin" | sha256sum | cut -d' ' -f1) == "$sha" ]] ||
  { echo "GET returned other bytes" >&2; exit 1; }

cold=$(get "http://127.0.0.1:$port/dists/big/")
warm=$(for _ in $(seq "$runs"); do get "http://127.0.0.1:$port/dists/big/?page=50"; done | best)
pages=$(curl -sSf "http://127.0.0.1:$port/dists/big/" | sed -nE 's/.*page 1 of ([0-9]+).*/\1/p')
t0=$(now)
for p in $(seq "${pages:-1}"); do curl -sSf -o /dev/null "http://127.0.0.1:$port/dists/big/?page=$p"; done
all=$(echo "$(now) - $t0" | bc)
native=$work/native/big; mkdir -p "$native"
python3 - "$native" "$n" <<'PY'
import sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    open(f"{root}/file{i}.bin", "w").close()
PY
pyport2=$(free_port)
python3 -m http.server -b 127.0.0.1 -d "$work/native" "$pyport2" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$pyport2/" && break; sleep 0.1; done
pylist=$(for _ in $(seq "$runs"); do get "http://127.0.0.1:$pyport2/big/"; done | best)
echo "listing of $n files: first page cold $cold s, a page warm $warm s, all ${pages:-1} pages $all s; python3 http.server's one-page listing $pylist s; ratio (all pages) $(ratio "$all" "$pylist")"
