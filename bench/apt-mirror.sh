#!/usr/bin/env bash
# What one new .deb in a directory of N (default 60,000) costs a mirror (issue 19, item 5):
# a primary (`repofsd --listen`) whose dists/bench/apt holds N .deb (bench/fake-debs.py, rows
# written directly, metadata rendered at start), a mirror synced from it, then ONE real signed
# upload (dpkg-deb) into that directory. Reports the generation's delta object, what the
# mirror fetched for it (bytes, metadata files rendered here and fetched whole), the time from
# the primary's root to the mirror's apply, and checks that the primary and the mirror serve
# byte-identical InRelease, Release, Release.gpg, Packages, Packages.xz over HTTP.
# Baseline in the same run: what the metadata of that directory weighs when it travels whole
# (the rows the delta carried before, zstd -3 like a delta), and the snapshot.
# Target: delta <= 64 KiB.
# Usage: bench/apt-mirror.sh [N=60000]   (as root; release build unless PROFILE=debug)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-60000}
profile=${PROFILE:-release}
if [[ $profile == release ]]; then cargo build --release --quiet; else cargo build --quiet; fi
bin=${CARGO_TARGET_DIR:-$PWD/target}/$profile
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_work
primary=$work/primary mirror=$work/mirror debs=$work/debs conf=$work/repofs.toml
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$conf"
mkdir -p "$debs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port) mport=$(free_port)
bench_key
"$bin/repofsd" --root "$primary" --config "$conf" --once 2>/dev/null   # catalog and repository key
"$bin/repofs" --root "$primary" --config "$conf" keys add --dir / "$work/key.asc" >/dev/null
t0=$(now)
python3 bench/fake-debs.py "$n" "$debs" "$primary"
echo "made $n .deb and their rows in $(echo "$(now) - $t0" | bc) s"
# Their torrents and the directory's metadata (the backfill). Then their store objects go:
# the seeder holds one descriptor per object it seeds, and 60,000 exceed the 20,000 this
# machine allows (the primary then fails to serve even its root); this bench reads no package.
"$bin/repofsd" --root "$primary" --config "$conf" --once 2>>"$work/primary.log"
find "$primary/store/objects" -type f -delete

RUST_LOG=info "$bin/repofsd" --root "$primary" --config "$conf" --listen "127.0.0.1:$port" \
  2>>"$work/primary.log" &
pids+=($!)
gen() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generation"])' "$primary/index/root.json" 2>/dev/null || echo 0; }
until [[ $(gen) -ge 1 ]]; do sleep 0.5; done
"$bin/repofs" --root "$primary" keys export-repo > "$work/repo-key.asc"
setting() { sqlite3 "$mirror/catalog.sqlite" "SELECT value FROM settings WHERE key = '$1'" 2>/dev/null || true; }
"$bin/repofs" --root "$mirror" --config "$conf" list >/dev/null
RUST_LOG=info,repofs::fetch::index::mirror::meta=debug "$bin/repofsd" --root "$mirror" \
  --config "$conf" --upstream "http://127.0.0.1:$port" --repo-key "$work/repo-key.asc" \
  --poll 1 --listen "127.0.0.1:$mport" 2>>"$work/mirror.log" &
pids+=($!)
t0=$(now)
until [[ $(setting index_generation) == "$(gen)" ]]; do sleep 0.2; done
echo "mirror from empty: $(echo "$(now) - $t0" | bc) s"

# One real signed upload into the directory.
d=$work/newcomer
mkdir -p "$d/DEBIAN"
printf 'Package: newcomer\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Bench <bench@example.org>\nDescription: one more\n' > "$d/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -b "$d" "$work/newcomer_1.0-1_all.deb" >/dev/null
gpg -q --batch -b "$work/newcomer_1.0-1_all.deb"
before=$(gen)
mkdir -p "$primary/incoming/bench/apt"
t_up=$(now)
cp "$work/newcomer_1.0-1_all.deb" "$work/newcomer_1.0-1_all.deb.sig" "$primary/incoming/bench/apt/"
until [[ $(gen) -gt $before ]]; do sleep 0.1; done
t_root=$(now)
want=$(gen)
until [[ $(setting index_generation) == "$want" ]]; do sleep 0.1; done
t_mirror=$(now)

head=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["head"]["sha256"])' "$primary/index/root.json")
snap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot"]["sha256"])' "$primary/index/root.json")
delta=$(stat -c %s "$primary/index/objects/$head")
snap_bytes=$(stat -c %s "$primary/index/objects/$snap")
whole=$(sqlite3 "$primary/catalog.sqlite" "SELECT writefile('$work/meta.bin', (SELECT group_concat(data, x'') FROM dist_meta WHERE directory = 'bench/apt'))" >/dev/null
  zstd -3 -q -c "$work/meta.bin" | wc -c)
xz=$(curl -sf "http://127.0.0.1:$port/dists/bench/apt/Packages.xz" | wc -c)
plain=$(curl -sf "http://127.0.0.1:$port/dists/bench/apt/Packages" | wc -c)
synced=$(grep "index synced" "$work/mirror.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | grep -oE '(objects|bytes|meta_rendered|meta_fetched)=[0-9]+' | tr '\n' ' ')
for f in InRelease Release Release.gpg Packages Packages.xz; do
  cmp <(curl -sf "http://127.0.0.1:$port/dists/bench/apt/$f") \
      <(curl -sf "http://127.0.0.1:$mport/dists/bench/apt/$f") \
    || { echo "bench/apt-mirror.sh: $f differs between primary and mirror" >&2; exit 1; }
done
echo "packages: $n; Packages $plain bytes, Packages.xz $xz bytes; snapshot $snap_bytes bytes"
echo "one new .deb: delta $delta bytes (target <= 65536); the directory's metadata whole, zstd -3: $whole bytes ($(ratio "$whole" "$delta") times the delta)"
echo "the mirror's sync of it: $synced"
echo "upload to signed root: $(echo "$t_root - $t_up" | bc) s; root to the mirror's apply: $(echo "$t_mirror - $t_root" | bc) s"
echo "InRelease, Release, Release.gpg, Packages, Packages.xz: byte-identical on primary and mirror (HTTP)"
