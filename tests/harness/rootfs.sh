#!/usr/bin/env bash
# rootfs.sh - the Debian rootfs that dropfix's real-docker tests boot (harness.sh ROOTFS=...).
#
# Debian 12 minbase with systemd, dbus, iproute2, Debian's docker.io (dockerd, containerd, runc),
# iptables, openssh-server (the Ansible fleet tests reach each container over ssh) and
# busybox-static (the one binary of the local image: no registry is reachable). No Python.
# It also holds a tiny image tar at /usr/share/dropfix-test/busybox.tar for `docker import`.
#
#   rootfs.sh          print the rootfs directory, building it first when it is missing
#   rootfs.sh --check  print it if it is built; exit 1 if not
#
# Built once per machine (about 90 s: debootstrap plus apt inside it, from the machine's own
# Debian mirror, see debian-mirror.sh; DEBIAN_MIRROR overrides it) into $DROPFIX_TEST_CACHE
# (default /var/cache/dropfix-test) and reused: the harness boots it with --volatile=overlay,
# so containers never change it. A build under way elsewhere is waited for (flock). Bump
# RECIPE when the package list changes: the old tree is then left unused.
# Needs root; installs debootstrap when it is missing.
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/debian-mirror.sh"

CACHE=${DROPFIX_TEST_CACHE:-/var/cache/dropfix-test}
RECIPE=1
SUITE=bookworm
DIR=$CACHE/rootfs-$SUITE-docker-r$RECIPE
PACKAGES="docker.io iptables openssh-server busybox-static"

log() { printf '[%s] rootfs: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
built() { [ -e "$DIR/.dropfix-rootfs-complete" ]; }

if built; then echo "$DIR"; exit 0; fi
[ "${1:-}" = --check ] && exit 1
[ "$(id -u)" = 0 ] || die "building $DIR needs root"
mkdir -p "$CACHE"
exec 9>"$CACHE/.rootfs.lock"
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

t0=$(date +%s)
tmp=$DIR.tmp
if [ -d "$tmp" ]; then  # a crashed earlier build: its proc mount first, then the tree
  umount "$tmp/proc" 2>/dev/null || true
  rm -rf "$tmp"
fi
mirror=$(debian_mirror)
log "building $DIR (debootstrap $SUITE from ${mirror:-the default mirror of debootstrap}, then $PACKAGES); log: $tmp.log"
# shellcheck disable=SC2086
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2 "$SUITE" "$tmp" $mirror \
  >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "debootstrap failed"; }
log "debootstrap done after $(( $(date +%s) - t0 ))s"

cp /etc/resolv.conf "$tmp/etc/resolv.conf"
# No service may start inside the chroot; the image's own policy is restored below.
printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
mount -t proc proc "$tmp/proc"
trap 'umount "$tmp/proc" 2>/dev/null || true' EXIT
# shellcheck disable=SC2086
chroot "$tmp" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES && apt-get clean" \
  >>"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "installing $PACKAGES failed"; }
umount "$tmp/proc"
trap - EXIT
rm -f "$tmp/usr/sbin/policy-rc.d" "$tmp/etc/resolv.conf"
rm -rf "$tmp"/var/lib/apt/lists/*

[ -x "$tmp/usr/sbin/dockerd" ] || die "no dockerd in $tmp"
[ -x "$tmp/usr/sbin/sshd" ] || die "no sshd in $tmp"
if compgen -G "$tmp/usr/bin/python*" >/dev/null; then die "python crept into $tmp: $(ls "$tmp"/usr/bin/python*)"; fi

# The local image: busybox alone, with the applet links the tests run.
img=$(mktemp -d)
mkdir -p "$img/bin" "$tmp/usr/share/dropfix-test"
cp "$tmp/bin/busybox" "$img/bin/busybox"
for a in sh sleep ip cat ls; do ln -s busybox "$img/bin/$a"; done
tar -C "$img" --numeric-owner --owner=0 --group=0 -cf "$tmp/usr/share/dropfix-test/busybox.tar" .
rm -rf "$img"

touch "$tmp/.dropfix-rootfs-complete"
mv "$tmp" "$DIR"
mv "$tmp.log" "$DIR.log"
log "built $DIR in $(( $(date +%s) - t0 ))s ($(du -sh "$DIR" | cut -f1))"
echo "$DIR"
