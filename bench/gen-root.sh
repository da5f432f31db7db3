#!/usr/bin/env bash
# Generate a host-like root with N service units, each with a drop-in, for dropfix's scale
# benchmarks: bench/gen-root.sh DIR N
#
# /usr/lib/systemd/system/svc-NNNNN.service (every 100th with MountFlags=slave, every 10th
# with PrivateTmp=yes), /etc/systemd/system/svc-NNNNN.service.d/10-env.conf for each,
# a vendor drop-in for every 50th, docker.service with MountFlags=slave, /lib -> usr/lib,
# and libsystemd-shared-252.so so the systemd version comes from the files.
set -euo pipefail
dir=${1:?usage: gen-root.sh DIR N}
n=${2:?usage: gen-root.sh DIR N}
rm -rf "$dir"
mkdir -p "$dir/usr/lib/systemd/system" "$dir/etc/systemd/system/multi-user.target.wants" "$dir/var/lib"
ln -s usr/lib "$dir/lib"
: > "$dir/usr/lib/systemd/libsystemd-shared-252.so"
cp "$(dirname "$0")/../examples/coreos-1192/usr/lib/systemd/system/docker.service" "$dir/usr/lib/systemd/system/"
units=$dir/usr/lib/systemd/system
etc=$dir/etc/systemd/system
for ((i = 0; i < n; i++)); do
  u=$(printf 'svc-%05d.service' "$i")
  {
    printf '[Unit]\nDescription=Generated service %d\nAfter=network.target\n\n[Service]\nType=simple\nExecStart=/usr/bin/svc --id %d\n' "$i" "$i"
    ((i % 100 == 0)) && printf 'MountFlags=slave\n'
    ((i % 10 == 0)) && printf 'PrivateTmp=yes\n'
    printf '\n[Install]\nWantedBy=multi-user.target\n'
  } > "$units/$u"
  mkdir "$etc/$u.d"
  printf '[Service]\nEnvironment=SVC_ID=%d\n' "$i" > "$etc/$u.d/10-env.conf"
  if ((i % 50 == 0)); then
    mkdir -p "$units/$u.d"
    printf '[Service]\nLimitNOFILE=65536\n' > "$units/$u.d/50-vendor.conf"
  fi
  ln -s "/usr/lib/systemd/system/$u" "$etc/multi-user.target.wants/$u"
done
echo "$dir: $n units" >&2
