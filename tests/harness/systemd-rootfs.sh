#!/usr/bin/env bash
# systemd-rootfs.sh - a minimal Debian rootfs per systemd version, for the oracle tests
# (tests/oracle.rs boots each with harness.sh ROOTFS=... and compares systemd with dropfix).
#
#   systemd-rootfs.sh SUITE           print the rootfs directory, building it first when missing
#   systemd-rootfs.sh SUITE --check   print it if it is built; exit 1 if not
#
# SUITE is bullseye (systemd 247), bookworm (252) or trixie (257). Debian minbase plus systemd,
# systemd-sysv and dbus, nothing else: PID 1 only loads the generated units, it never runs them.
# Built once per machine and suite (one to two minutes: debootstrap from the machine's own
# Debian mirror, see debian-mirror.sh; DEBIAN_MIRROR overrides it) into $DROPFIX_TEST_CACHE
# (default /var/cache/dropfix-test) and reused: the harness boots it with --volatile=overlay,
# so containers never change it. A build of the same suite under way elsewhere is waited for
# (flock). Bump RECIPE when the package list changes: the old tree is then left unused.
# Needs root; installs debootstrap when it is missing.
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/debian-mirror.sh"

CACHE=${DROPFIX_TEST_CACHE:-/var/cache/dropfix-test}
RECIPE=1
SUITE=${1:-}
case $SUITE in
  bullseye|bookworm|trixie) ;;
  *) echo "usage: $0 bullseye|bookworm|trixie [--check]" >&2; exit 2 ;;
esac
DIR=$CACHE/rootfs-$SUITE-systemd-r$RECIPE

log() { printf '[%s] systemd-rootfs %s: %s\n' "$(date +%T)" "$SUITE" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
built() { [ -e "$DIR/.dropfix-rootfs-complete" ]; }

if built; then echo "$DIR"; exit 0; fi
[ "${2:-}" = --check ] && exit 1
[ "$(id -u)" = 0 ] || die "building $DIR needs root"
mkdir -p "$CACHE"
exec 9>"$CACHE/.rootfs-$SUITE-systemd.lock"
flock 9
if built; then echo "$DIR"; exit 0; fi

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends debootstrap >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends debootstrap >/dev/null
  } || die "cannot install debootstrap"
fi
# An older debootstrap may not know a newer suite by name; Debian's scripts for them are all
# the "sid" script (bookworm's debootstrap already links trixie to it).
scripts=/usr/share/debootstrap/scripts
[ -e "$scripts/$SUITE" ] || [ ! -e "$scripts/sid" ] || ln -s sid "$scripts/$SUITE"

mirror=$(debian_mirror)
t0=$(date +%s)
tmp=$DIR.tmp
rm -rf "$tmp"
log "building $DIR (debootstrap $SUITE from ${mirror:-the default mirror of debootstrap}); log: $tmp.log"
# the archive keys come from debian-archive-keyring, which debootstrap uses by default
# shellcheck disable=SC2086
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$SUITE" "$tmp" $mirror \
  >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "debootstrap failed"; }
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
[ -x "$tmp/usr/lib/systemd/systemd" ] || [ -x "$tmp/lib/systemd/systemd" ] || die "no systemd in $tmp"

touch "$tmp/.dropfix-rootfs-complete"
mv "$tmp" "$DIR"
mv "$tmp.log" "$DIR.log"
log "built $DIR in $(( $(date +%s) - t0 ))s ($(du -sh "$DIR" | cut -f1))"
echo "$DIR"
