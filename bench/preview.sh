#!/usr/bin/env bash
# Preview cost: wall time and peak memory of `dropfix fix --dry-run --root ROOT`, median of
# RUNS runs (default 21), on two roots: a host-like root (this machine's own systemd units,
# /lib -> usr/lib, docker.service with MountFlags=slave) and the bundled CoreOS 1192 example.
# Target: a few milliseconds and under 10 MB.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${RUNS:-21}
need_time
bin=$(release_bin)
machine
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
host=$work/host
mkdir -p "$host/usr/lib/systemd" "$host/etc/systemd/system" "$host/var/lib"
cp -a /usr/lib/systemd/system "$host/usr/lib/systemd/"
cp /usr/lib/systemd/libsystemd-shared-*.so "$host/usr/lib/systemd/" 2>/dev/null ||
  cp /usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-*.so "$host/usr/lib/systemd/" 2>/dev/null || true
cp -a /etc/systemd/system/. "$host/etc/systemd/system/" 2>/dev/null || true
ln -s usr/lib "$host/lib"
cp "$REPO/examples/coreos-1192/usr/lib/systemd/system/docker.service" "$host/usr/lib/systemd/system/"
units=$(find "$host/usr/lib/systemd/system" -maxdepth 1 -name '*.service' | wc -l)

printf '\n%-72s %12s %12s\n' "command (median of $runs)" "wall ms" "peak RSS MB"
for spec in "host:$host:host-like root ($units vendor services)" "coreos:$REPO/examples/coreos-1192:examples/coreos-1192"; do
  IFS=: read -r _ root label <<<"$spec"
  for args in "fix --dry-run" "fix --dry-run --format json" "scan"; do
    # shellcheck disable=SC2086
    wall=$(for _ in $(seq "$runs"); do wall_ms "$bin" --root "$root" $args; done | median)
    # shellcheck disable=SC2086
    rss=$(for _ in $(seq 5); do peak_kib "$bin" --root "$root" $args; done | median)
    printf '%-72s %12s %12.1f\n' "dropfix --root <$label> $args" "$wall" "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
  done
done
printf '%-72s %12s\n' "(for scale: /bin/true)" "$(for _ in $(seq "$runs"); do wall_ms /bin/true; done | median)"
