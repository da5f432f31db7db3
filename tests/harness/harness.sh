#!/usr/bin/env bash
# harness.sh - throwaway containers with a real systemd as PID 1, for dropfix's live tests.
#
# systemd-nspawn boots the host's own /usr (--directory=/ --volatile=yes): /etc and /var start
# empty, so none of the host's services run. The container's system bus socket is bound to a
# host directory, so tools on the host talk to the container's systemd over D-Bus.
#
#   harness.sh up          boot; prints (and writes $WORK/env) LEADER, ROOT, BUS, WORK
#   harness.sh down        graceful stop, remove cgroups + work dir; exit 1 if anything leaked
#   harness.sh down-all    `down` every container under $BASE (after a crashed test run)
#   harness.sh sh CMD...   run CMD inside all namespaces of the container's PID 1
#
# Environment:
#   NAME               container name, [A-Za-z0-9_-]{1,60}; unique per concurrent container
#   USR_EXTRA          directory overlaid read-only on the container's /usr (vendor units,
#                      binaries); copied at `up`, so the caller may delete it afterwards
#   ETC_EXTRA          directory merged into the container's initial /etc (admin drop-ins, markers)
#   EXTRA_NSPAWN_ARGS  extra systemd-nspawn arguments (word-split)
#   ROOTFS             boot this root directory (e.g. from tests/harness/rootfs.sh) instead of the
#                      host's /usr; nspawn --volatile=overlay keeps it pristine, and USR_EXTRA and
#                      ETC_EXTRA are overlaid on its own /usr and /etc
#   USR_RW=1           with ROOTFS: /usr writable (changes go to a scratch upper layer and vanish
#                      with the container), for installing packages with dpkg
#   DOCKER=1           what a real dockerd needs inside: a pure cgroup-v2 container (the v1
#                      controllers would be read-only), all capabilities, the keyring and bpf
#                      system calls, and /var/lib/docker on a host directory (overlay2 cannot sit
#                      on the overlayfs root)
#   PERSIST            a host directory that keeps the container's /etc changes (the overlay's
#                      upper layer) and its /var/lib across `down` and the next `up` with the same
#                      PERSIST: a reboot, with /usr (USR_EXTRA) free to change in between, as an
#                      OS update does
#   BOOT_TIMEOUT       seconds to wait for SystemState running|degraded (default 30)
#   BASE               parent of the work dirs (default /tmp/dropfix-harness)
#
# After `up` ($WORK/env, also printed on stdout):
#   LEADER=<host pid of the container's PID 1>
#   ROOT=/proc/$LEADER/root            paths below it resolve through PID 1's mount namespace
#   BUS=unix:path=$WORK/run-dbus/system_bus_socket   the container's system bus
#   WORK=$BASE/$NAME
#
# Requires root, systemd-nspawn (package systemd-container), busctl, nsenter.
set -euo pipefail

SELF=$(readlink -f "$0")
BASE=${BASE:-/tmp/dropfix-harness}
NAME=${NAME:-}
WORK=$BASE/$NAME
BOOT_TIMEOUT=${BOOT_TIMEOUT:-30}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
MGR="org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager"
CG=dropfix-harness-$NAME   # the container's own cgroup sub-tree, in every writable hierarchy

log() { printf '[%s] %s: %s\n' "$(date +%T.%3N)" "${NAME:-harness}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
alive() { # a pid that exists and is not a zombie
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
check_name() {
  [[ $NAME =~ ^[A-Za-z0-9_-]{1,60}$ ]] || die "NAME must match [A-Za-z0-9_-]{1,60} (got '${NAME}')"
}

# Hybrid hosts (name=systemd v1 + cgroup2 at /sys/fs/cgroup/unified) need a sub-tree in both;
# a pure cgroup2 host has one. Without its own sub-tree, nspawn (--keep-unit, no host systemd)
# creates payload/ and supervisor/ in its current cgroup, which collides between containers.
cg_roots() {
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then echo /sys/fs/cgroup; return; fi
  local h; for h in systemd unified; do [ -d "/sys/fs/cgroup/$h" ] && echo "/sys/fs/cgroup/$h"; done
  return 0
}
cg_enter() {
  local r; for r in $(cg_roots); do mkdir -p "$r/$CG"; echo "$BASHPID" > "$r/$CG/cgroup.procs"; done
}
cg_procs() { local r; for r in $(cg_roots); do [ -d "$r/$CG" ] && find "$r/$CG" -name cgroup.procs -exec cat {} +; done; return 0; }
cg_cleanup() {
  local r i
  for r in $(cg_roots); do
    [ -d "$r/$CG" ] || continue
    for i in $(seq 1 50); do   # exiting tasks keep a cgroup busy for a moment
      find "$r/$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$r/$CG" ] || break
      sleep 0.1
    done
    [ -d "$r/$CG" ] && { log "LEAK: cannot remove cgroup $r/$CG"; return 1; }
  done
  return 0
}

# ---------------------------------------------------------------- launcher (detached by setsid)
_nspawn() {
  cg_enter
  echo "$BASHPID" > "$WORK/launcher.pid"          # stays systemd-nspawn's pid after exec
  local args=(-M "$NAME" --register=no --keep-unit --console=passive --link-journal=no
    --private-network --bind="$WORK/run-dbus:/run/dbus")
  # a seeded machine-id means "not a first boot": no firstboot prompt, and systemd does not
  # preset-enable every unit of the host's /usr. An overlay, not a bind: a bind-mounted
  # machine-id makes systemd-machine-id-commit.service fail.
  local upper=$WORK/etc-upper
  if [ -n "${PERSIST:-}" ]; then
    upper=$PERSIST/etc-upper
    args+=(--bind="$PERSIST/var-lib:/var/lib")
  fi
  if [ -z "${ROOTFS:-}" ]; then
    args+=(--directory=/ --volatile=yes
      --overlay="$WORK/etc-seed:$upper:/etc"
      --overlay-ro="/usr:$WORK/usr-extra:/usr")
  else
    args+=(--directory="$ROOTFS" --volatile=overlay
      --overlay="$ROOTFS/etc:$WORK/etc-seed:$upper:/etc")
    if [ "${USR_RW:-0}" = 1 ]; then
      mkdir -p "$WORK/usr-upper"
      args+=(--overlay="$ROOTFS/usr:$WORK/usr-extra:$WORK/usr-upper:/usr")
    else
      args+=(--overlay-ro="$ROOTFS/usr:$WORK/usr-extra:/usr")
    fi
  fi
  if [ "${DOCKER:-0}" = 1 ]; then
    export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
    args+=(--capability=all "--system-call-filter=@keyring bpf"
      --bind="$WORK/docker-lib:/var/lib/docker")
  fi
  # shellcheck disable=SC2206
  args+=(${EXTRA_NSPAWN_ARGS:-})
  # show_status=no: with hundreds of units PID 1 can block writing boot status to the console
  exec systemd-nspawn "${args[@]}" --boot systemd.firstboot=no systemd.show_status=no
}

# nspawn's first child (the "outer child") exits; PID 1 is the child whose NSpid ends in 1.
find_leader() {
  local lp=$1 c i
  for i in $(seq 1 400); do
    for c in $(cat /proc/"$lp"/task/*/children 2>/dev/null); do
      [ "$(awk '/^NSpid/{print NF-1 ":" $NF}' /proc/"$c"/status 2>/dev/null)" = "2:1" ] && { echo "$c"; return 0; }
    done
    alive "$lp" || return 1
    sleep 0.025
  done
  return 1
}

boot_failed() {
  log "ERROR: $1; console log follows"
  sed 's/^/  console: /' "$WORK/console.log" >&2 || true
  FORCE=1 down || true
  exit 1
}

up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  check_name
  command -v systemd-nspawn >/dev/null || die "systemd-nspawn not found (apt-get install systemd-container)"
  [ -e "$WORK/env" ] && die "$WORK/env exists: container $NAME is already up (NAME=$NAME $0 down)"
  [ -z "${USR_EXTRA:-}" ] || [ -d "$USR_EXTRA" ] || die "USR_EXTRA=$USR_EXTRA is not a directory"
  [ -z "${ETC_EXTRA:-}" ] || [ -d "$ETC_EXTRA" ] || die "ETC_EXTRA=$ETC_EXTRA is not a directory"
  if [ -n "${PERSIST:-}" ]; then
    PERSIST=$(readlink -f "$PERSIST")
    mkdir -p "$PERSIST/etc-upper" "$PERSIST/var-lib"
  fi
  if [ -n "${ROOTFS:-}" ]; then
    ROOTFS=$(readlink -f "$ROOTFS")
    [ -x "$ROOTFS/usr/lib/systemd/systemd" ] || die "ROOTFS=$ROOTFS has no systemd"
  fi
  rm -rf "$WORK"
  mkdir -p "$WORK/run-dbus" "$WORK/etc-seed" "$WORK/etc-upper" "$WORK/usr-extra"
  [ "${DOCKER:-0}" = 1 ] && mkdir -p "$WORK/docker-lib"
  [ -n "${USR_EXTRA:-}" ] && cp -a "$USR_EXTRA/." "$WORK/usr-extra/"
  [ -n "${ETC_EXTRA:-}" ] && cp -a "$ETC_EXTRA/." "$WORK/etc-seed/"
  tr -d '-' < /proc/sys/kernel/random/uuid > "$WORK/etc-seed/machine-id"
  : > "$WORK/console.log"
  local t0 lp leader st i
  t0=$(now)
  export NAME BASE EXTRA_NSPAWN_ARGS ROOTFS DOCKER PERSIST USR_RW
  setsid "$SELF" _nspawn </dev/null >>"$WORK/console.log" 2>&1 &
  disown
  for i in $(seq 1 200); do [ -s "$WORK/launcher.pid" ] && break; sleep 0.01; done
  lp=$(cat "$WORK/launcher.pid" 2>/dev/null) || boot_failed "launcher did not start"
  printf 'NAME=%s\nWORK=%s\nLAUNCHER_PID=%s\nLEADER=\n' "$NAME" "$WORK" "$lp" > "$WORK/env"   # lets `down` reap a failed boot
  leader=$(find_leader "$lp") || boot_failed "container PID 1 did not appear"
  BUS=unix:path=$WORK/run-dbus/system_bus_socket
  cat > "$WORK/env" <<EOF
NAME=$NAME
WORK=$WORK
LAUNCHER_PID=$lp
LEADER=$leader
ROOT=/proc/$leader/root
BUS=$BUS
EOF
  st=
  for i in $(seq 1 $((BOOT_TIMEOUT * 20))); do
    st=$(busctl --timeout=5 --address="$BUS" get-property $MGR SystemState 2>/dev/null || true)
    case $st in *running*|*degraded*) break ;; esac
    alive "$lp" || boot_failed "container exited during boot"
    sleep 0.05
  done
  case $st in *running*|*degraded*) ;; *) boot_failed "boot timed out after ${BOOT_TIMEOUT}s (SystemState: ${st:-no bus})" ;; esac
  log "booted leader=$leader state=${st#s } in $(since "$t0")s"
  [[ $st == *degraded* ]] && csh systemctl --failed --no-pager >&2
  cat "$WORK/env"
}

load_env() { [ -e "$WORK/env" ] || die "no $WORK/env: container $NAME is not up"; . "$WORK/env"; }
csh() { load_env; [ -n "$LEADER" ] || die "container $NAME has no PID 1"; nsenter -t "$LEADER" -a -- "$@"; }

down() {
  check_name
  local t0 i left=0 m
  t0=$(now)
  if [ -e "$WORK/env" ]; then
    load_env
    # SIGTERM makes nspawn ask PID 1 for an orderly halt (SIGRTMIN+3). A systemd that is still
    # booting may not handle that signal yet, so a failed boot is killed outright.
    [ "${FORCE:-0}" = 1 ] || kill -TERM "$LAUNCHER_PID" 2>/dev/null || true
    for i in $(seq 1 $((STOP_TIMEOUT * 20))); do [ "${FORCE:-0}" = 1 ] && break; alive "$LAUNCHER_PID" || break; sleep 0.05; done
    if alive "$LAUNCHER_PID"; then
      [ "${FORCE:-0}" = 1 ] || log "WARNING: orderly stop timed out after ${STOP_TIMEOUT}s, killing"
      [ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null   # the pid namespace dies with its init
      kill -KILL "$LAUNCHER_PID" 2>/dev/null || true
      for i in $(seq 1 100); do alive "$LAUNCHER_PID" || break; sleep 0.05; done
    fi
    [ -n "$LEADER" ] && alive "$LEADER" && { log "LEAK: container PID 1 ($LEADER) still alive"; left=1; }
    log "stopped in $(since "$t0")s"
  fi
  # anything still in our cgroups survived the container: kill it, but report the leak
  if [ -n "$(cg_procs)" ]; then
    log "LEAK: processes left in cgroup $CG: $(cg_procs | tr '\n' ' ')"; left=1
    for i in $(cg_procs); do kill -KILL "$i" 2>/dev/null || true; done
    sleep 0.2
  fi
  cg_cleanup || left=1
  if m=$(grep -F " $WORK/" /proc/self/mountinfo); then
    log "LEAK: host mounts under $WORK:"; printf '%s\n' "$m" >&2; left=1
  fi
  rmdir "/run/systemd/nspawn/propagate/$NAME" 2>/dev/null || true
  [ "$left" = 0 ] || return 1
  rm -rf "$WORK"
  log "clean: no leftover processes, mounts or cgroups"
}

down_all() {
  local d rc=0 r c
  for d in "$BASE"/*/; do
    [ -d "$d" ] || continue
    NAME=$(basename "$d"); WORK=$BASE/$NAME; CG=dropfix-harness-$NAME
    ( down ) || rc=1
  done
  # cgroups of containers whose work dir is already gone
  for r in $(cg_roots); do
    for c in "$r"/dropfix-harness-*/; do
      [ -d "$c" ] || continue
      NAME=$(basename "$c"); NAME=${NAME#dropfix-harness-}; WORK=$BASE/$NAME; CG=dropfix-harness-$NAME
      ( down ) || rc=1
    done
  done
  rmdir "$BASE" 2>/dev/null || true
  return $rc
}

cmd=${1:-}; shift || true
case $cmd in
  up)       up ;;
  down)     down ;;
  down-all) down_all ;;
  sh)       [ $# -gt 0 ] || die "usage: NAME=... $0 sh CMD..."; csh "$@" ;;
  _nspawn)  _nspawn ;;
  *)        sed -n '2,35p' "$SELF" >&2; exit 2 ;;
esac
