# Shared by the benchmarks (source it; `baseline` wants $work and $file set).

# A work dir under /var/tmp ($work, with $mnt and GNUPGHOME in it) and, on exit, stopping what
# the run started ($pids), unmounting $mnt and $work/rat, and removing it all (KEEP=1 keeps it).
bench_work() {
  work=$(mktemp -d /var/tmp/repofs-bench.XXXXXX)
  mnt=$work/mnt
  export GNUPGHOME=$work/gnupg
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  for m in "$mnt" "$work/rat"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  # A mount writes its request counts into the root as it goes: wait (10 s at most) so the
  # root is removed after that, not before.
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  gpgconf --kill all 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
now() { date +%s.%N; }

# An uploader key in $GNUPGHOME (Bench <bench@example.org>), exported to $work/key.asc.
bench_key() {
  mkdir -p -m700 "$GNUPGHOME"
  gpg -q --batch --passphrase '' --quick-gen-key 'Bench <bench@example.org>' ed25519 sign 1y 2>/dev/null
  gpg -q --armor --export bench@example.org > "$work/key.asc"
}

# A primary at ROOT ($1) that takes the bench key's uploads anywhere, serving the mount at
# $mnt (repofsd from $bin; log in $work/repofsd.log), waited for.
bench_mounted_primary() {
  "$bin/repofs" --root "$1" keys add --dir / "$work/key.asc" >/dev/null
  RUST_LOG=warn "$bin/repofsd" --root "$1" --mount "$mnt" 2>>"$work/repofsd.log" &
  pids+=($!)
  for _ in $(seq 100); do [[ -d $mnt/incoming ]] && mountpoint -q "$mnt" && break; sleep 0.1; done
}
best() { sort -n | head -1; }
ratio() { echo "scale=2; $1 / $2" | bc; }

# What a sysadmin would run to take in a signed file by hand, timed:
# cp; md5sum; sha256sum; gpg --verify; mv.
baseline() {
  local d=$work/base; rm -rf "$d"; mkdir -p "$d/in" "$d/out"
  local name; name=$(basename "$file")
  sync; local t0; t0=$(now)
  cp "$file" "$file.sig" "$d/in/"
  md5sum "$d/in/$name" >/dev/null
  sha256sum "$d/in/$name" >/dev/null
  gpg -q --batch --verify "$d/in/$name.sig" "$d/in/$name" 2>/dev/null
  mv "$d/in/$name" "$d/in/$name.sig" "$d/out/"
  sync; echo "$(now) - $t0" | bc
}
