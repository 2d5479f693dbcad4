#!/usr/bin/env bash
# A fleet of mirrors on one machine (issue 18), run on demand as root; not part of the tests.
# A primary and MIRRORS mirrors, each a host of its own: a network namespace with one veth whose
# other end sits on a bridge in a namespace this script makes (never the root namespace), an
# address of the script's own (NET.1 the primary, NET.(10+i) mirror i) and no other route, every
# link capped in both directions with `tc qdisc ... tbf` (egress of both ends of each veth).
# Each host runs repofsd (the primary with --listen; a mirror with --upstream and --listen) and,
# once that service is ready, a `repofs mount` of its own root, both inside its namespace.
# Hosts are entered with `nsenter --net`, not `ip netns exec`: the latter also unshares the mount
# namespace (a slave of the host's), so a FUSE mount made inside would be seen neither by the
# host nor by the next `ip netns exec` of the same namespace (the reader, the cleanup).
# Scenarios (4th argument or SCENARIOS, comma-separated; default alone,all), each on a fresh
# primary and fresh mirrors (empty roots), with a cold SIZE_MIB package of random bytes
# published on the primary by `cp` of the file and its gpg signature into incoming/:
#   alone         mirror 1 reads the package through its mount (sha256sum), against curl of
#                 the same file from the primary's /dists/ over the same capped link, from the
#                 same namespace
#   all           every mirror reads it at once
#   churn         every mirror reads it at once; half of them (seeded: SEED) get SIGKILL (service
#                 and mount) at random moments during the read, and every other killed one is
#                 restarted 1-3 s later (service, then mount) and reads again
#   primary-dies  every mirror reads it at once; the primary (service and mount) gets SIGKILL
#                 once it has sent KILL_AT packages' worth (default 1)
#   no-tracker    the torrents name a tracker (NET.1:6969) that every namespace drops packets
#                 to (nft); every mirror reads, and mirror 1 also curls the primary's HTTP
#   hold          mirrors with `[mirror] hold = ["*"]` and no reader, started before the package
#                 is published: the time from the publication's cp until each holds it (complete
#                 in its cache), first mirror 1 alone (a fresh primary), then all mirrors at once
#                 (another); the primary's bytes are those of the second round
# It reports per mirror: the read's result and wall time, the bytes it received (its eth0), the
# bytes from the primary and from other hosts (nft counters on its input), what it sent, its
# fetch status (ROOT/mirror/fetch-status.json: bytes into the cache from peers, uploaded, pieces
# verified, and its own count of bytes by source: origin over HTTP, primary, other mirrors) and
# its repofsd's CPU seconds (/proc/PID/stat); per scenario the bytes the primary
# sent (its eth0 tx_bytes) over the read; at the end a summary table. Counters are taken over
# the read phase only (from just before the reads start to just after the last one ends).
# Usage: bench/fleet.sh [MIRRORS=2 (1-32)] [RATE=100mbit] [SIZE_MIB=16] [SCENARIOS]
#   RATE: NUMBER{kbit,mbit,gbit}; BIN=dir prebuilt repofs/repofsd (else target/release, built);
#   SEED (churn), KILL_AT (primary-dies), READ_TIMEOUT and ORIGIN_AFTER (the mirrors' [mirror]
#   read_timeout and origin_after, default the product's), READ_DEADLINE (seconds a read may take before the script gives up),
#   FLEET_TIMEOUT (seconds for the whole run), BURST/LATENCY (tbf), NET (default 10.77.0),
#   FLEET_LOG (RUST_LOG of the services, default info), KEEP=1 keeps the work dir and its logs.
# Everything it starts runs under `timeout`; a trap stops it, unmounts and deletes the
# namespaces on any exit, and a watchdog ends the run after FLEET_TIMEOUT.
set -euo pipefail
cd "$(dirname "$0")/.."
nmirrors=${1:-2}
rate=${2:-100mbit}
size=${3:-16}
scenarios=${4:-${SCENARIOS:-alone,all}}
me=bench/fleet.sh
die() { echo "$me: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (it makes network namespaces and mounts)"
if ! [[ $nmirrors =~ ^[0-9]+$ ]] || ((nmirrors < 1 || nmirrors > 32)); then die "MIRRORS must be 1-32"; fi
if ! [[ $size =~ ^[0-9]+$ ]] || ((size < 1 || size > 4096)); then die "SIZE_MIB must be 1-4096"; fi
[[ $rate =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || die "RATE must be NUMBER{kbit,mbit,gbit}, e.g. 100mbit"
case ${BASH_REMATCH[2]} in
  kbit) rate_bps=$((BASH_REMATCH[1] * 1000)) ;;
  mbit) rate_bps=$((BASH_REMATCH[1] * 1000000)) ;;
  gbit) rate_bps=$((BASH_REMATCH[1] * 1000000000)) ;;
esac
((rate_bps > 0)) || die "RATE must be more than 0"
IFS=, read -r -a scen_list <<< "$scenarios"
for s in "${scen_list[@]}"; do
  case $s in alone | all | churn | primary-dies | no-tracker | hold) ;; *) die "unknown scenario '$s'" ;; esac
done
net=${NET:-10.77.0}
[[ $net =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "NET must be 10.X.Y (a /24 used only inside the namespaces)"
burst=${BURST:-256kb}
latency=${LATENCY:-100ms}
seed=${SEED:-1}
kill_at=${KILL_AT:-1}
port=8080
pip=$net.1
name=fleet-1.0.bin
size_bytes=$((size << 20))
# One mirror alone should take about est s; in lockstep N mirrors take about N times that.
est=$(echo "scale=2; $size_bytes * 8 / $rate_bps" | bc)
read_deadline=${READ_DEADLINE:-$(echo "d = 60 + 3 * $nmirrors * $est; if (d > 1800) d = 1800; scale=0; d / 1" | bc)}
fleet_timeout=${FLEET_TIMEOUT:-$(((120 + read_deadline) * (${#scen_list[@]} + 1)))}
started=$(date +%s)
ends=$((started + fleet_timeout))
left() { local l=$((ends - $(date +%s))); echo $((l > 5 ? l : 5)); }

# Tools: iproute2 (namespaces, veths, tbf), nftables (per-source counters, the dead tracker).
need=()
for t in ip:iproute2 tc:iproute2 nft:nftables nsenter:util-linux curl:curl bc:bc gpg:gnupg; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if ((${#need[@]})); then
  echo "$me: installing ${need[*]}" >&2
  apt-get install -y "${need[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi
[[ -n ${BIN:-} ]] || cargo build --release --quiet --bins
bin=${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release}
[[ -x $bin/repofsd && -x $bin/repofs ]] || die "no repofsd/repofs in $bin"
# shellcheck source=bench/lib.sh
source bench/lib.sh

# ---- cleanup: whatever happens, nothing this run started outlives it -------------------
pfx=fleet$$
bench_work # $work, GNUPGHOME, and bench_cleanup (which removes $work)
: > "$work/pids"      # every `timeout` started here (each stops its command when killed)
: > "$work/netns"     # every namespace made here
watchdog=
# Processes are remembered as "PID STARTTIME" (field 22 of /proc/PID/stat), so that a pid the
# machine has reused since for someone else's process is never signalled.
starttime() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }
remember() { echo "$2 $(starttime "$2")" >> "$1"; } # remember FILE PID
# Sends signal $1 to every process remembered in files ${@:2} that still runs; fails if none.
send() {
  local sig=$1 p st any=1; shift
  while read -r p st; do
    [[ -n $st && $(starttime "$p") == "$st" ]] && kill "-$sig" "$p" 2>/dev/null && any=0
  done < <(cat "$@" 2>/dev/null)
  return "$any"
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -n $watchdog ]] && kill "$watchdog" 2>/dev/null
  # Readers and churners (subshells), the commands (SIGTERM lets repofsd and the mounts stop
  # cleanly), then every timeout that ran one.
  send TERM "$work"/scn/*/readers
  send TERM "$work"/scn/*/*/pid.* "$work/pids"
  for _ in $(seq 30); do send 0 "$work/pids" || break; sleep 0.1; done
  send KILL "$work"/scn/*/*/pid.* "$work/pids"
  # Mounts left under the work dir (dead ones included), deepest first.
  awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m"; done
  local n
  while read -r n; do [[ -n $n ]] && ip netns del "$n" 2>/dev/null; done < "$work/netns"
  if [[ -n ${KEEP:-} ]]; then echo "$me: kept $work" >&2; fi
  bench_cleanup
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
(
  trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "$fleet_timeout" & s=$!
  wait "$s" && { echo "$me: over its deadline (${fleet_timeout} s), stopping" >&2; kill -TERM $$; }
) &
watchdog=$!

now_ms() { date +%s%3N; }
secs() { printf '%.2f' "$(echo "scale=3; $1 / 1000" | bc)"; } # ms -> s
mib() { printf '%.2f' "$(echo "scale=3; $1 / 1048576" | bc)"; }
ratio2() { printf '%.2f' "$(echo "scale=3; $1 / $2" | bc)"; }
# Waits up to $1 s for "${@:3}" to succeed; otherwise says what ($2) and fails.
wait_for() {
  local secs=$1 what=$2; shift 2
  local until=$((SECONDS + secs))
  until "$@" 2>/dev/null; do
    ((SECONDS < until)) || { echo "$me: timed out after ${secs} s waiting for $what" >&2; return 1; }
    sleep 0.1
  done
}
log_has() { grep -q -- "$2" "$1"; }
# Runs "${@:2}" under a deadline of $1 s, in the background so that a signal to this script is
# handled at once, and known to the cleanup; returns its status.
bounded() {
  local secs=$1; shift
  timeout "$secs" "$@" &
  local t=$!
  remember "$work/pids" "$t"
  wait "$t"
}
mounted_with() { mountpoint -q "$1" && [[ -e $1/$2 ]]; }

# ---- the network ------------------------------------------------------------------------
ns_of() { echo "$pfx-$1"; } # host: p, m1..mN, br (the bridge)
ip_of() { if [[ $1 == p ]]; then echo "$pip"; else echo "$net.$((10 + ${1#m}))"; fi; }
in_ns() { local h=$1; shift; nsenter --net="/run/netns/$(ns_of "$h")" -- "$@"; }
counter() { ip netns exec "$(ns_of "$1")" cat "/sys/class/net/eth0/statistics/$2_bytes"; }
add_ns() { ip netns add "$1"; echo "$1" >> "$work/netns"; ip -n "$1" link set lo up; }
tbf() { tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst "$burst" latency "$latency"; }

make_network() {
  local br; br=$(ns_of br)
  add_ns "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  local h ns
  for h in p $(seq -f 'm%g' 1 "$nmirrors"); do
    ns=$(ns_of "$h")
    add_ns "$ns"
    ip -n "$br" link add "v$h" type veth peer name eth0 netns "$ns"
    ip -n "$br" link set "v$h" master br0 up
    ip -n "$ns" addr add "$(ip_of "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
    tbf "$ns" eth0     # what the host sends
    tbf "$br" "v$h"    # what it receives
    # Where its bytes come from (IP bytes, headers included), and a chain for the dead tracker.
    ip netns exec "$ns" nft -f - <<EOF
table inet fleet {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr $pip counter accept
    ip saddr $net.0/24 counter accept
  }
  chain output {
    type filter hook output priority 0; policy accept;
  }
}
EOF
  done
  # Nothing here may reach anything else: only the /24 on eth0, no default route.
  if in_ns m1 ip route show default | grep -q .; then die "a default route in $(ns_of m1)"; fi
}
# "FROM_PRIMARY FROM_OTHERS" input bytes of a host (nft counters).
from_bytes() {
  ip netns exec "$(ns_of "$1")" nft list chain inet fleet input |
    awk -v p="$pip" '/counter/ { for (i = 1; i <= NF; i++) if ($i == "bytes") b = $(i + 1);
                                 if ($0 ~ "saddr " p " ") fp = b; else fo = b }
                     END { print fp + 0, fo + 0 }'
}

# ---- hosts ------------------------------------------------------------------------------
# Runs "${@:4}" on host $2 under timeout, logging to $3; its pid goes to file $1.
spawn() {
  local pidfile=$1 host=$2 log=$3 secs c='' t; shift 3
  secs=$(left) # not in the background command: its expansion's subshell would be a child too
  RUST_LOG=${FLEET_LOG:-info} timeout -k 5 "$secs" nsenter --net="/run/netns/$(ns_of "$host")" -- "$@" >> "$log" 2>&1 &
  t=$!
  remember "$work/pids" "$t"
  disown "$t" # no job report when a host is killed; the pid files are how it is stopped
  # timeout's child, once it has become the command (nsenter execs it; same pid throughout).
  local want; want=$(basename "$1"); want=${want:0:15}
  for _ in $(seq 200); do
    c=$(pgrep -P "$t" || true)
    [[ -n $c && $(cat "/proc/$c/comm" 2>/dev/null) == "$want" ]] && break
    c=
    sleep 0.02
  done
  [[ -n $c ]] || die "could not start $* on $host"
  : > "$pidfile"
  remember "$pidfile" "$c"
}
cpu() { # user+system seconds of the process remembered in file $1, 0 if it is gone
  local p st
  if ! [[ -e $1 ]] || ! read -r p st < "$1"; then echo 0; return; fi
  [[ -n $st && $(starttime "$p") == "$st" ]] || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$p/stat" 2>/dev/null || echo 0
}

# The scenario's primary: its service (--listen), then its mount, then the package published
# through the mount (a pair: the file and its detached signature).
primary_up() {
  primary_start "$@"
  publish_pkg
  sleep 2 # the seeder adds the torrent (a read of the object's pieces)
}
# The primary's service and mount, nothing published yet.
primary_start() {
  local d=$sd/p; mkdir -p "$d/root" "$d/mnt"
  printf '[ingest]\nsettle = "300ms"\npair_wait = "1500ms"\n' > "$d/config.toml"
  "$bin/repofs" --root "$d/root" keys add --dir / "$work/key.asc" > /dev/null
  spawn "$d/pid.d" p "$d/repofsd.log" "$bin/repofsd" --root "$d/root" --config "$d/config.toml" \
    --listen "$pip:$port" "$@"
  wait_for 60 "the primary's service" log_has "$d/repofsd.log" 'repofsd: ready'
  spawn "$d/pid.m" p "$d/mount.log" "$bin/repofs" --root "$d/root" --config "$d/config.toml" mount "$d/mnt"
  wait_for 30 "the primary's mount" mounted_with "$d/mnt" incoming
  "$bin/repofs" --root "$d/root" keys export-repo > "$sd/repo-key.asc"
}
# The package published through the primary's mount (cp of the file and its signature).
publish_pkg() {
  local d=$sd/p
  mkdir -p "$d/mnt/incoming/fleet"
  bounded 120 cp "$pkg" "$pkg.sig" "$d/mnt/incoming/fleet/"
  wait_for 60 "the publication" test -e "$d/mnt/dists/fleet/$name.torrent"
}
# Mirror $1's service (or its restart: the same root): `--upstream` with `--listen`.
mirror_service() {
  local h=m$1 d=$sd/m$1; mkdir -p "$d/root" "$d/mnt"
  local n; n=$(cat "$d/starts" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$d/starts"
  : > "$d/config.toml"
  [[ -z ${READ_TIMEOUT:-}${ORIGIN_AFTER:-} && -z ${mirror_hold:-} ]] || echo '[mirror]' > "$d/config.toml"
  [[ -z ${READ_TIMEOUT:-} ]] || printf 'read_timeout = "%s"\n' "$READ_TIMEOUT" >> "$d/config.toml"
  [[ -z ${ORIGIN_AFTER:-} ]] || printf 'origin_after = "%s"\n' "$ORIGIN_AFTER" >> "$d/config.toml"
  [[ -z ${mirror_hold:-} ]] || printf 'hold = ["%s"]\n' "$mirror_hold" >> "$d/config.toml"
  spawn "$d/pid.d" "$h" "$d/repofsd.$n.log" "$bin/repofsd" --root "$d/root" --config "$d/config.toml" \
    --upstream "http://$pip:$port/" --repo-key "$sd/repo-key.asc" --poll 1 --listen "$(ip_of "$h"):$port"
}
# Its mount, started only once the service is ready: a mount started before the service has
# recorded its upstream decides it is not a mirror's and answers ENOENT to every read (issue 18).
mirror_mount() {
  local h=m$1 d=$sd/m$1 n; n=$(cat "$sd/m$1/starts")
  wait_for 60 "$h's service" log_has "$d/repofsd.$n.log" 'repofsd: ready'
  spawn "$d/pid.m" "$h" "$d/mount.$n.log" "$bin/repofs" --root "$d/root" --config "$d/config.toml" mount "$d/mnt"
  wait_for 60 "$h's mount listing the package" mounted_with "$d/mnt" "dists/fleet/$name"
}
# Sends signal $1 to the process remembered in file $2; fails if there is none.
signal() { send "$@"; }
# Stops hosts ($2...; p or mN) with signal $1: service and mount, waited for (10 s, then
# SIGKILL), their mounts detached (a killed mount leaves a dead one).
stop_hosts() {
  local sig=$1 h f alive; shift
  for h in "$@"; do
    for f in "$sd/$h/pid.d" "$sd/$h/pid.m"; do signal "$sig" "$f" || true; done
  done
  for _ in $(seq 100); do
    alive=0
    for h in "$@"; do
      for f in "$sd/$h/pid.d" "$sd/$h/pid.m"; do signal 0 "$f" && alive=1; done
    done
    ((alive)) || break
    sleep 0.1
  done
  for h in "$@"; do
    for f in "$sd/$h/pid.d" "$sd/$h/pid.m"; do signal KILL "$f" || true; done
    rm -f "$sd/$h/pid.d" "$sd/$h/pid.m"
    if mountpoint -q "$sd/$h/mnt" 2>/dev/null || [[ ! -d $sd/$h/mnt/. ]]; then umount -l "$sd/$h/mnt" 2>/dev/null; fi
  done
  return 0
}
# SIGKILL of a host's service and mount; the CPU its repofsd used so far is kept in cpu.acc.
kill_host() {
  local d=$sd/$1
  if [[ -e $d/pid.d ]]; then
    echo "$(cat "$d/cpu.acc" 2>/dev/null || echo 0) + $(cpu "$d/pid.d")" | bc > "$d/cpu.acc.new"
    mv "$d/cpu.acc.new" "$d/cpu.acc"
  fi
  stop_hosts KILL "$1"
}
fleet_down() {
  local h hs=()
  for h in $(seq -f 'm%g' 1 "$nmirrors"); do [[ -d $sd/$h ]] && hs+=("$h"); done
  stop_hosts TERM "${hs[@]}"
  stop_hosts TERM p
}

# ---- reads and counters -----------------------------------------------------------------
# Reads the package through mirror $1's mount (attempt $2), in its namespace, under a deadline;
# writes "RC START_MS END_MS" to read.$2 and sha256sum's output or error beside it.
reader() {
  local d=$sd/m$1 t0 t1 rc=0
  t0=$(now_ms)
  bounded "$read_deadline" nsenter --net="/run/netns/$(ns_of "m$1")" -- \
    sha256sum "$d/mnt/dists/fleet/$name" > "$d/read.$2.out" 2>&1 || rc=$?
  t1=$(now_ms)
  echo "$rc $t0 $t1" > "$d/read.$2"
}
start_reader() { reader "$1" "$2" & remember "$sd/readers" $!; }
# Waits for every reader and churner (each bounded: their waits and reads have deadlines).
wait_readers() { local p _; while read -r p _; do wait "$p" 2>/dev/null || true; done < "$sd/readers"; }
# Counters of every host now, into $sd/counters.$1: HOST RX TX FROM_PRIMARY FROM_OTHERS CPU
snapshot() {
  local h
  for h in p $(seq -f 'm%g' 1 "$nmirrors"); do
    local c=0
    c=$(cpu "$sd/$h/pid.d")
    echo "$h $(counter "$h" rx) $(counter "$h" tx) $(from_bytes "$h") $c"
  done > "$sd/counters.$1"
}
# Field $2 (2 rx, 3 tx, 4 from primary, 5 from others, 6 cpu) of host $1, after minus before.
delta() {
  local a b
  a=$(awk -v h="$1" -v f="$2" '$1 == h { print $f }' "$sd/counters.after")
  b=$(awk -v h="$1" -v f="$2" '$1 == h { print $f }' "$sd/counters.before")
  echo "$a - $b" | bc
}
# CPU seconds of host $1's repofsd during the reads: every incarnation killed meanwhile too.
cpu_during() { printf "%.2f" "$(echo "$(delta "$1" 6) + $(cat "$sd/$1/cpu.acc" 2>/dev/null || echo 0)" | bc)"; }
# "DOWNLOADED UPLOADED VERIFIED/PIECES ORIGIN/PRIMARY/MIRRORS" of the package from mirror $1's
# fetch-status.json (the last: where the mirror itself says its bytes came from, MiB).
fetch_status() {
  python3 - "$sd/m$1/root/mirror/fetch-status.json" "$pkg_sha" << 'EOF' 2>/dev/null || echo "- - - -"
import json, sys
s = json.load(open(sys.argv[1]))
o = next((o for o in s.get("objects", []) if o["sha256"] == sys.argv[2]), None)
pieces = f'{o["verified_pieces"]}/{o["pieces"]}' if o else "0/?"
src = s.get("sources", {})
by = "/".join(str(round(src.get(k, 0) / 1048576, 2)) for k in ("origin", "primary", "mirrors"))
print(round(s["downloaded_bytes"] / 1048576, 2), round(s["uploaded_bytes"] / 1048576, 2), pieces, by)
EOF
}

# Prints the scenario's table and records its figures in $sd/summary.
report() {
  local t0=$1 h i
  sleep 2.5 # fetch-status.json is rewritten every ~2 s
  echo
  echo "### $scn: $nmirrors mirror(s) at $rate, ${size} MiB"
  echo
  echo "| host | result | wall s | received MiB | from primary MiB | from other mirrors MiB | sent MiB | fetched into cache / uploaded MiB (status) | pieces | origin / primary / mirrors MiB (status) | repofsd CPU s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  local slowest=0 ok=0 failed=0
  for i in $(seq 1 "$nmirrors"); do
    h=m$i
    [[ -e $sd/$h/read.1 ]] || continue
    local res="" wall=0 a
    for a in 1 2; do
      [[ -e $sd/$h/read.$a ]] || continue
      local rc s e
      read -r rc s e < "$sd/$h/read.$a"
      wall=$((e - t0))
      if [[ $rc == 0 ]] && [[ $(cut -d' ' -f1 "$sd/$h/read.$a.out") == "$pkg_sha" ]]; then
        res+="${res:+, then }ok"
      elif [[ $rc == 0 ]]; then
        res+="${res:+, then }WRONG BYTES"
      elif [[ $rc == 124 ]]; then
        res+="${res:+, then }no end in ${read_deadline} s"
      else
        res+="${res:+, then }$(sed -n 's/.*: //p' "$sd/$h/read.$a.out" | head -1 | tr -d '\r') at $(secs $((e - t0))) s"
      fi
    done
    case $res in *ok) ok=$((ok + 1)); ((wall > slowest)) && slowest=$wall ;; *) failed=$((failed + 1)) ;; esac
    if [[ -e $sd/$h/restarted ]]; then
      res+=" (SIGKILL at $(cat "$sd/$h/killed") s, restarted at $(cat "$sd/$h/restarted") s)"
    elif [[ -e $sd/$h/killed ]]; then
      res+=" (SIGKILL at $(cat "$sd/$h/killed") s)"
    fi
    local c; c=$(cpu_during "$h")
    # shellcheck disable=SC2046
    set -- $(fetch_status "$i")
    echo "| $h | $res | $(secs "$wall") | $(mib "$(delta "$h" 2)") | $(mib "$(delta "$h" 4)") | $(mib "$(delta "$h" 5)") | $(mib "$(delta "$h" 3)") | $1 / $2 | $3 | $4 | $c |"
  done
  local ptx; ptx=$(delta p 3)
  echo
  echo "primary: sent $(mib "$ptx") MiB = $(ratio2 "$ptx" "$size_bytes") packages (eth0 tx_bytes, frames); repofsd CPU $(cpu_during p) s$(extra_line)"
  echo "reads: $ok ok, $failed not$( ((ok == 0)) || echo "; slowest ok read $(secs "$slowest") s"); the link alone would carry the package in $(printf '%.2f' "$est") s"
  R[ran_$scn]=1
  R[slowest_$scn]=$(secs "$slowest")
  R[ok_$scn]=$ok
  R[failed_$scn]=$failed
  R[packages_$scn]=$(ratio2 "$ptx" "$size_bytes")
}
extra_line() { [[ -e $sd/extra ]] && echo "; $(awk 'NR > 1 { printf "; " } { printf "%s", $0 }' "$sd/extra")"; return 0; }

# ---- scenarios --------------------------------------------------------------------------
begin() {
  scn=$1; sd=$work/scn/$1; mkdir -p "$sd"; : > "$sd/readers"
  echo "$me: scenario $scn ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
}
mirrors_up() { # services first (in parallel), then each mount once its service is ready
  local i
  for i in $(seq 1 "$1"); do mirror_service "$i"; done
  for i in $(seq 1 "$1"); do mirror_mount "$i"; done
}
read_all() { # every mirror at once; returns when all reads ended
  local i
  snapshot before
  t0=$(now_ms)
  for i in $(seq 1 "$nmirrors"); do start_reader "$i" 1; done
}

scenario_alone() {
  begin alone
  primary_up
  mirrors_up 1
  local c0 c1 rc=0
  c0=$(now_ms)
  bounded "$read_deadline" nsenter --net="/run/netns/$(ns_of m1)" -- \
    curl -fsS -o /dev/null "http://$pip:$port/dists/fleet/$name" || rc=$?
  c1=$(now_ms)
  ((rc == 0)) || die "curl from m1 failed ($rc)"
  curl_s=$(secs $((c1 - c0)))
  sleep 1
  snapshot before
  t0=$(now_ms)
  start_reader 1 1
  wait_readers
  snapshot after
  local rc2 s e
  read -r rc2 s e < "$sd/m1/read.1"
  alone_s=$(secs $((e - s)))
  echo "curl of the same file from m1's namespace: ${curl_s} s; mirror 1 through its mount: ${alone_s} s (ratio $(ratio2 "$alone_s" "$curl_s"))" > "$sd/extra"
  [[ $rc2 == 0 ]] || alone_s=
  report "$t0"

  fleet_down
}

scenario_all() {
  begin all
  primary_up
  mirrors_up "$nmirrors"
  read_all
  wait_readers
  snapshot after
  report "$t0"
  fleet_down
}

scenario_churn() {
  begin churn
  primary_up
  mirrors_up "$nmirrors"
  local base=${alone_s:-$est} k=$(((nmirrors + 1) / 2)) i j
  RANDOM=$seed # drawn only in this shell: subshells reseed RANDOM
  # Which mirrors: k distinct ones, seeded; when: uniform in [0.1, 0.9] x one alone's read time
  # (every read takes at least that long, so each kill lands during a read).
  local -a pick=() order
  local draws=()
  for i in $(seq 1 "$nmirrors"); do draws+=("$RANDOM $i"); done
  mapfile -t order < <(printf '%s\n' "${draws[@]}" | sort -n | cut -d' ' -f2)
  pick=("${order[@]:0:k}")
  read_all
  for j in "${!pick[@]}"; do
    i=${pick[$j]}
    local pct=$((10 + RANDOM % 81)) at
    at=$(echo "scale=2; $base * $pct / 100" | bc)
    local back=""; ((j % 2 == 0)) && back=$((1 + RANDOM % 3))
    (
      sleep "$at"
      secs $(($(now_ms) - t0)) > "$sd/m$i/killed"
      kill_host "m$i"
      if [[ -n $back ]]; then
        sleep "$back"
        mirror_service "$i"
        mirror_mount "$i"
        secs $(($(now_ms) - t0)) > "$sd/m$i/restarted"
        reader "$i" 2
      fi
    ) > "$sd/churner.m$i.log" 2>&1 &
    remember "$sd/readers" $!
  done
  wait_readers
  snapshot after
  echo "killed: $(for i in "${pick[@]}"; do echo -n "m$i "; done)(seed $seed)" > "$sd/extra"
  report "$t0"
  fleet_down
}

scenario_primary_dies() {
  begin primary-dies
  primary_up
  mirrors_up "$nmirrors"
  read_all
  local tx0 limit dead=""
  tx0=$(counter p tx)
  limit=$(echo "$kill_at * $size_bytes / 1" | bc)
  local until=$((SECONDS + read_deadline))
  while ((SECONDS < until)); do
    send 0 "$sd/readers" || break # every read ended
    if (($(counter p tx) - tx0 >= limit)); then
      dead="SIGKILL at $(secs $(($(now_ms) - t0))) s, after $(mib $(($(counter p tx) - tx0))) MiB (KILL_AT=$kill_at packages)"
      kill_host p
      break
    fi
    sleep 0.1
  done
  wait_readers
  snapshot after
  echo "primary ${dead:-not killed: the reads ended before it had sent KILL_AT=$kill_at packages}" > "$sd/extra"
  report "$t0"
  fleet_down
}

scenario_no_tracker() {
  begin no-tracker
  local h
  # The only tracker the torrents name; every host drops what it sends there.
  for h in p $(seq -f 'm%g' 1 "$nmirrors"); do
    ip netns exec "$(ns_of "$h")" nft add rule inet fleet output ip daddr "$pip" tcp dport 6969 counter drop
  done
  primary_up --tracker "http://$pip:6969/announce"
  mirrors_up "$nmirrors"
  local c0 c1 rc=0
  c0=$(now_ms)
  bounded "$read_deadline" nsenter --net="/run/netns/$(ns_of m1)" -- \
    curl -fsS -o /dev/null "http://$pip:$port/dists/fleet/$name" || rc=$?
  c1=$(now_ms)
  read_all
  wait_readers
  snapshot after
  local drops=0
  for h in p $(seq -f 'm%g' 1 "$nmirrors"); do
    drops=$((drops + $(ip netns exec "$(ns_of "$h")" nft list chain inet fleet output |
      awk '/dport 6969/ { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i + 1) }')))
    ip netns exec "$(ns_of "$h")" nft flush chain inet fleet output
  done
  echo "curl of the same file from m1 meanwhile: $( ((rc == 0)) && echo "ok in $(secs $((c1 - c0))) s" || echo "failed ($rc)"); $drops packets to the tracker dropped" > "$sd/extra"
  report "$t0"
  fleet_down
}

# Mirrors 1..$1 with hold = ["*"] (services only: nothing reads), ready before the package is
# published; then the time from the publication's cp until each holds it. Writes read.1
# ("RC START_MS END_MS") and read.1.out per mirror as a reader does, so `report` tabulates it.
hold_round() {
  local n=$1 i
  primary_start
  mirror_hold='*'
  for i in $(seq 1 "$n"); do mirror_service "$i"; done
  mirror_hold=
  for i in $(seq 1 "$n"); do
    wait_for 60 "m$i's service" log_has "$sd/m$i/repofsd.1.log" 'repofsd: ready'
  done
  snapshot before
  t0=$(now_ms)
  publish_pkg
  echo "publication (cp into incoming/ until listed on the primary) took $(secs $(($(now_ms) - t0))) s" > "$sd/extra"
  for i in $(seq 1 "$n"); do
    (
      rc=0
      wait_for "$read_deadline" "m$i to hold the package" test -e "$sd/m$i/root/mirror/complete/$pkg_sha" || rc=124
      echo "$rc $t0 $(now_ms)" > "$sd/m$i/read.1"
      { sha256sum "$sd/m$i/root/mirror/complete/$pkg_sha" 2>&1 || true; } > "$sd/m$i/read.1.out"
    ) &
    remember "$sd/readers" $!
  done
  wait_readers
  snapshot after
}

scenario_hold() {
  begin hold
  local all=$nmirrors
  # One mirror alone first: the baseline the fleet is measured against.
  nmirrors=1
  hold_round 1
  report "$t0"
  fleet_down
  nmirrors=$all
  scn=hold-all; sd=$work/scn/hold-all; mkdir -p "$sd"; : > "$sd/readers"
  hold_round "$nmirrors"
  echo "times count from the cp into the primary's incoming/ until the object is complete in the mirror's cache; one mirror alone: ${R[slowest_hold]} s" >> "$sd/extra"
  report "$t0"
  fleet_down
}

# ---- the run ----------------------------------------------------------------------------
echo "$me: $nmirrors mirror(s), $rate per link (tbf burst $burst latency $latency), ${size} MiB;" \
  "scenarios: ${scen_list[*]}; read deadline ${read_deadline} s; whole run at most ${fleet_timeout} s" >&2
machine="$(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) at start"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
bench_key
mkdir -p "$work/files"
pkg=$work/files/$name
head -c "$size_bytes" /dev/urandom > "$pkg"
gpg -q --batch -b "$pkg"
pkg_sha=$(sha256sum "$pkg" | cut -d' ' -f1)
make_network
declare -A R=()
alone_s='' curl_s=''
for s in "${scen_list[@]}"; do "scenario_${s//-/_}"; done

echo
echo "## Summary: bench/fleet.sh $nmirrors $rate $size ${scenarios}"
echo
echo "machine: $machine, load $(cut -d' ' -f1-3 /proc/loadavg) at the end; commit $commit; binaries $bin; $(date -u '+%Y-%m-%d %H:%M') UTC"
echo
echo "| scenario | reads ok / not | slowest ok read s | vs one alone | primary sent (packages) |"
echo "|---|---|---|---|---|"
for s in "${scen_list[@]}"; do
  [[ -n ${R[ran_$s]:-} ]] || continue
  ok=${R[ok_$s]} slowest=${R[slowest_$s]} vs=-
  if [[ $s == alone ]]; then
    [[ -z $alone_s ]] || vs="1.00 (vs curl ${curl_s} s: $(ratio2 "$alone_s" "$curl_s"))"
  elif [[ $s == hold ]]; then
    echo "| hold: 1 mirror | ${R[ok_hold]} / ${R[failed_hold]} | ${R[slowest_hold]} | 1.00 | ${R[packages_hold]} |"
    ok=${R[ok_hold-all]:-0} slowest=${R[slowest_hold-all]:--}
    ((ok == 0)) || vs=$(ratio2 "$slowest" "${R[slowest_hold]}")
    echo "| hold: $nmirrors mirrors | $ok / ${R[failed_hold-all]:-?} | $slowest | $vs | ${R[packages_hold-all]:-} |"
    continue
  elif [[ -n $alone_s ]] && ((ok > 0)); then
    vs=$(ratio2 "$slowest" "$alone_s")
  fi
  ((ok > 0)) || slowest=-
  echo "| $s | $ok / ${R[failed_$s]} | $slowest | $vs | ${R[packages_$s]} |"
done
