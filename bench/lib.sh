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
  gpgconf --kill all 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
now() { date +%s.%N; }
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
