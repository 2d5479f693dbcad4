#!/usr/bin/env bash
# Ingest speed, as a ratio against the shell pipeline a sysadmin would use, measured in the
# same run on the same bytes:  cp; md5sum; sha256sum; gpg --verify; mv.
# repofs side: cp FILE and FILE.sig into the spool, then `repofsd --once` until published
# (hashing, signature check, store copy and catalog commit included).
# Usage: bench/ingest.sh [SIZE_MIB=1024] [RUNS=3]     (run on demand; not part of the tests)
#   BIN=dir prebuilt repofs/repofsd to measure instead of building (e.g. another commit's, to
#   compare two builds on the same machine)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}
runs=${2:-3}
[[ -n ${BIN:-} ]] || cargo build --release --quiet
# shellcheck source=bench/lib.sh
source bench/lib.sh
bin=${BIN:-$PWD/target/release}
work=$(mktemp -d /var/tmp/repofs-bench.XXXXXX)
export GNUPGHOME=$work/gnupg
cleanup() { gpgconf --kill all 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
bench_key

file=$work/bench-1.0.bin
head -c $((size << 20)) /dev/urandom > "$file"
gpg -q --batch -b "$file"
printf '[ingest]\nsettle = "0s"\npair_wait = "0s"\n' > "$work/cfg.toml"



repofs() {
  local r=$work/root; rm -rf "$r"
  "$bin/repofs" --root "$r" keys add --dir / "$work/key.asc" >/dev/null
  mkdir -p "$r/incoming/bench"
  sync; local t0; t0=$(now)
  cp "$file" "$file.sig" "$r/incoming/bench/"
  RUST_LOG=warn "$bin/repofsd" --root "$r" --config "$work/cfg.toml" --once
  sync; local t; t=$(echo "$(now) - $t0" | bc)
  "$bin/repofs" --root "$r" list | grep -q bench-1.0.bin || { echo "not published" >&2; exit 1; }
  echo "$t"
}

for _ in $(seq "$runs"); do baseline; done | best > "$work/b"
for _ in $(seq "$runs"); do repofs; done | best > "$work/r"
# Peak memory: repofsd must stream (flat RSS whatever the file size); gpg --verify, which
# also streams, is the same-run reference.
r2=$work/rss; rm -rf "$r2"
"$bin/repofs" --root "$r2" keys add --dir / "$work/key.asc" >/dev/null
mkdir -p "$r2/incoming/bench"; cp "$file" "$file.sig" "$r2/incoming/bench/"
rss_repofs=$(RUST_LOG=warn /usr/bin/time -f %M "$bin/repofsd" --root "$r2" --config "$work/cfg.toml" --once 2>&1 >/dev/null | tail -1)
rss_gpg=$(/usr/bin/time -f %M gpg -q --batch --verify "$file.sig" "$file" 2>&1 >/dev/null | tail -1)
b=$(cat "$work/b"); r=$(cat "$work/r")
echo "file: ${size} MiB, best of $runs"
echo "baseline (cp; md5sum; sha256sum; gpg --verify; mv): ${b}s"
echo "repofs   (cp into spool; repofsd --once):           ${r}s"
echo "ratio repofs/baseline: $(echo "scale=2; $r / $b" | bc)  (target <= 0.8)"
echo "peak RSS: repofsd ${rss_repofs} KiB, gpg --verify ${rss_gpg} KiB, file $((size << 10)) KiB"
