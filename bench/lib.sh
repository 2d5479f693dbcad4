# Shared by the benchmarks (source it after setting $work and $file).
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
