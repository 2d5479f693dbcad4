#!/usr/bin/env bash
# Faults and load (issue 8), run on demand as root; not part of the tests. Three parts, each on
# its own repository, with repofsd and `repofs mount` as separate processes:
#  crash  SIGKILL repofsd and the mount at random moments (seeded) during UPLOADS uploads made
#         with cp, rsync --partial then --append-verify, sftp put then reput, and gnupload;
#         restart, resume what was cut off; every upload published exactly once, nothing half
#         published, no verdict, no store orphans, catalog integrity_check ok.
#  load   USERS uploaders as distinct uids (useradd) writing PER_USER pairs of SIZE_KIB each,
#         with readers of dists/ and pkgs/ beside them: all published, no uid sees another's
#         in-flight files, nothing waits past its deadline; throughput and close(2) p99.
#  disk   spool, store and catalog each on a small tmpfs: ENOSPC for the writer, nothing lost,
#         resume after freeing space; a full store or catalog makes the upload wait, no verdict.
# Prints PASS/FAIL per property and the numbers; exits non-zero on any FAIL.
# Usage: bench/soak.sh [SEED=random] [UPLOADS=100] [USERS=50] [PER_USER=4] [SIZE_KIB=1024]
#        PARTS="crash load disk" selects parts; SOAK_BIN=DIR uses prebuilt binaries;
#        SOAK_KEEP_LOGS=DIR keeps the logs (the work dir is always removed).
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-$((RANDOM * 32768 + RANDOM))}
uploads=${2:-100}
nusers=${3:-50}
per_user=${4:-4}
size_kib=${5:-1024}
parts=${PARTS:-crash load disk}
[[ $(id -u) -eq 0 ]] || { echo "bench/soak.sh: run as root (it mounts and adds users)" >&2; exit 1; }
for t in rsync sftp /usr/sbin/sshd sqlite3 gpg runuser useradd /usr/bin/python3 \
  /usr/share/gnulib/build-aux/gnupload; do
  command -v "$t" >/dev/null || { echo "bench/soak.sh: missing $t (scripts/test installs it)" >&2; exit 1; }
done
if [[ -z ${SOAK_BIN:-} ]]; then
  cargo build --release --quiet --bins
  SOAK_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
fi
export SOAK_BIN
echo "bench/soak.sh: seed $seed; parts: $parts; binaries: $SOAK_BIN"

work=$(mktemp -d /var/tmp/repofs-soak.XXXXXX)
chmod 755 "$work"   # the load test's uids reach the mount point and their files through it
export SOAK_PIDS=$work/pids SOAK_MOUNTS=$work/mounts SOAK_USERS_FILE=$work/users
mkdir "$SOAK_PIDS"; : > "$SOAK_MOUNTS"; : > "$SOAK_USERS_FILE"; : > "$work/users-added"
sshd_pid=
cleanup() {
  set +e
  for f in "$SOAK_PIDS"/*; do [[ -e $f ]] && kill -TERM "$(basename "$f")" 2>/dev/null; done
  sleep 1
  for f in "$SOAK_PIDS"/*; do [[ -e $f ]] && kill -KILL "$(basename "$f")" 2>/dev/null; done
  [[ -n $sshd_pid ]] && kill "$sshd_pid" 2>/dev/null
  # Everything mounted below $work (FUSE mounts and tmpfs), deepest first.
  awk -v w="$work" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m"; done
  while read -r u; do [[ -n $u ]] && userdel "$u" 2>/dev/null; done < "$work/users-added"
  GNUPGHOME=$work/gnupg gpgconf --kill all 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One signing key, authorized everywhere; gpg.conf as gnupload wants it.
export GNUPGHOME=$work/gnupg SOAK_KEY_UID=soak@example.org
mkdir -m700 "$GNUPGHOME"
printf 'use-agent\npinentry-mode loopback\nbatch\nyes\n' > "$GNUPGHOME/gpg.conf"
echo allow-loopback-pinentry > "$GNUPGHOME/gpg-agent.conf"
gpg -q --passphrase '' --quick-gen-key "Soak <$SOAK_KEY_UID>" ed25519 sign 1y 2>/dev/null
gpg -q --armor --export "$SOAK_KEY_UID" > "$work/key.asc"

if [[ $parts == *crash* ]]; then
  # A loopback sshd for sftp (root, key only).
  mkdir -p /run/sshd "$work/ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/host"
  ssh-keygen -q -t ed25519 -N '' -f "$work/ssh/client"
  cp "$work/ssh/client.pub" "$work/ssh/authorized_keys"
  export SSH_PORT=$((20000 + RANDOM % 10000)) SSH_KEY=$work/ssh/client
  cat > "$work/ssh/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $work/ssh/host
PidFile $work/ssh/sshd.pid
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
CONF
  /usr/sbin/sshd -D -e -f "$work/ssh/sshd_config" 2>"$work/ssh/log" &
  sshd_pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$SSH_PORT") 2>/dev/null && break; sleep 0.1; done
fi
if [[ $parts == *load* ]]; then
  for i in $(seq -w 0 $((nusers - 1))); do
    u=repofs-soak-$i
    if ! id -u "$u" >/dev/null 2>&1; then
      useradd -M -N -s /bin/sh "$u"
      echo "$u" >> "$work/users-added"
    fi
    echo "$u" >> "$SOAK_USERS_FILE"
  done
fi

start=$(date +%s)
for part in $parts; do
  t0=$(date +%s)
  echo "--- $part"
  case $part in
    crash) args=("$seed" "$uploads"); part_limit=360 ;;
    load) args=("$nusers" "$per_user" "$size_kib"); part_limit=360 ;;
    disk) args=(); part_limit=180 ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
  # Bounded (the three together < 15 min): a part that hangs is killed and counts as a FAIL.
  timeout -k 10 "$part_limit" /usr/bin/python3 "bench/soak/$part.py" "$work" "${args[@]}" \
    > "$work/$part.out" 2> "$work/$part.log" || echo "$part: driver exited with $?"
  tail -1 "$work/$part.out" > "$work/$part.json" || true
  { grep -v '^{' "$work/$part.log" || true; } | tail -5 | sed 's/^/  | /'
  echo "  ($part took $(( $(date +%s) - t0 ))s)"
  if [[ -n ${SOAK_KEEP_LOGS:-} ]]; then  # the driver's and the daemons' logs, for diagnosis
    mkdir -p "$SOAK_KEEP_LOGS"
    cp "$work/$part.log" "$work/$part.json" "$SOAK_KEEP_LOGS/" 2>/dev/null || true
    for f in "$work/$part"/log/*; do [[ -e $f ]] && cp -r "$f" "$SOAK_KEEP_LOGS/$part-$(basename "$f")"; done
  fi
done
echo "=== summary (seed $seed, $(( $(date +%s) - start ))s)"
# shellcheck disable=SC2086
/usr/bin/python3 bench/soak/summary.py "$work" $parts
