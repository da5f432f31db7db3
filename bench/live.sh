#!/usr/bin/env bash
# Live fix cost on a real systemd (tests/harness container, the stand-in docker.service with
# MountFlags=slave): `dropfix fix --yes` against
#   floor   the bare minimum the job needs: a shell writes the same drop-in, then busctl calls
#           Reload and RestartUnit and polls until the restart job is gone;
#   manual  the procedure people follow: copy the unit, edit it, systemctl daemon-reload,
#           systemctl restart.
# Each procedure runs inside the container (bash, timed with $EPOCHREALTIME), from the same
# state each time (docker running with MountFlags=slave), ROUNDS rounds interleaved (default 9);
# medians side by side. Target: dropfix within 10% of the floor. Needs root and
# systemd-container (as tests/run does).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
rounds=${ROUNDS:-9}
[ "$(id -u)" = 0 ] || { echo "bench/live.sh: needs root (containers)" >&2; exit 1; }
bin=$(release_bin)
machine
export NAME=dropfix-bench-$$
stage=$(mktemp -d)
harness=$REPO/tests/harness/harness.sh
cleanup() { "$harness" down >/dev/null 2>&1 || true; rm -rf "$stage"; }
trap cleanup EXIT
mkdir -p "$stage/usr/lib/systemd/system/multi-user.target.wants" "$stage/usr/local/sbin" "$stage/usr/local/bin" "$stage/etc"
cp "$REPO/tests/harness/docker.service" "$stage/usr/lib/systemd/system/"
ln -s ../docker.service "$stage/usr/lib/systemd/system/multi-user.target.wants/docker.service"
install -m 0755 "$REPO/tests/harness/fake-dockerd" "$stage/usr/local/sbin/fake-dockerd"
install -m 0755 "$bin" "$stage/usr/local/bin/dropfix"
env=$(USR_EXTRA=$stage/usr ETC_EXTRA=$stage/etc "$harness" up 2>/dev/null)
leader=$(sed -n 's/^LEADER=//p' <<<"$env")
in_c() { nsenter -t "$leader" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash -c "$1"; }
echo "container: $NAME (systemd $(in_c 'systemctl --version | head -1 | cut -d" " -f2'))"

# The drop-in dropfix writes, byte for byte, so the floor writes the same file.
in_c 'dropfix fix --yes >/dev/null'
dropin_b64=$(in_c 'base64 -w0 /etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf')

reset='rm -rf /etc/systemd/system/docker.service.d /etc/systemd/system/docker.service /var/lib/dropfix
systemctl daemon-reload && systemctl restart docker.service
[ "$(systemctl show -p MountFlags --value docker.service)" = slave ] || { echo reset failed >&2; exit 1; }'
timed() { # the procedure, timed inside the container; prints ms
  in_c "$reset" >/dev/null
  in_c "t0=\${EPOCHREALTIME/./}
$1
t1=\${EPOCHREALTIME/./}
[ \"\$(systemctl show -p MountFlags --value docker.service)\" = '' ] || { echo 'not fixed' >&2; exit 1; }
[ \"\$(systemctl show -p ActiveState --value docker.service)\" = active ] || { echo 'not active' >&2; exit 1; }
echo \$(( t1 - t0 ))" | awk '{printf "%.2f\n", $1/1000}'
}
mgr='org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager'
dropfix_cmd='dropfix fix --yes >/dev/null'
floor_cmd="mkdir -p /etc/systemd/system/docker.service.d
echo $dropin_b64 | base64 -d > /etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf
busctl call $mgr Reload
job=\$(busctl call $mgr RestartUnit ss docker.service replace | cut -d'\"' -f2)
while busctl get-property org.freedesktop.systemd1 \"\$job\" org.freedesktop.systemd1.Job State >/dev/null 2>&1; do :; done"
manual_cmd='cp /usr/lib/systemd/system/docker.service /etc/systemd/system/docker.service
sed -i "/^MountFlags=/d" /etc/systemd/system/docker.service
systemctl daemon-reload
systemctl restart docker.service'

declare -A t
for r in $(seq "$rounds"); do
  t[dropfix]+="$(timed "$dropfix_cmd") "
  t[floor]+="$(timed "$floor_cmd") "
  t[manual]+="$(timed "$manual_cmd") "
done
med() { tr ' ' '\n' <<<"${t[$1]}" | grep . | median; }
d=$(med dropfix) f=$(med floor) m=$(med manual)
printf '\n%-66s %12s %10s\n' "procedure (median of $rounds, inside the container)" "wall ms" "vs floor"
printf '%-66s %12s %10s\n' "floor: shell write + busctl Reload + RestartUnit, poll job" "$f" "1.00"
printf '%-66s %12s %10s\n' "dropfix fix --yes (plan, fsync'd write, reload, restart, verify)" "$d" "$(awk -v a="$d" -v b="$f" 'BEGIN{printf "%.2f", a/b}')"
printf '%-66s %12s %10s\n' "manual: cp, sed, systemctl daemon-reload, systemctl restart" "$m" "$(awk -v a="$m" -v b="$f" 'BEGIN{printf "%.2f", a/b}')"
echo "all runs (ms): dropfix ${t[dropfix]}| floor ${t[floor]}| manual ${t[manual]}"
