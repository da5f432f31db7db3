# Shared by the bench/ scripts (sourced): the machine, a median, timing with $EPOCHREALTIME.
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

machine() {
  local model mem
  model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  mem=$(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  echo "machine: $(nproc) CPUs ($model), $mem RAM, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "toolchain: $(rustc --version)"
}

# The release binary (built once).
release_bin() {
  (cd "$REPO" && cargo build --release --locked -q) >&2
  echo "$REPO/target/release/dropfix"
}

# median of numbers on stdin
median() {
  sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}

# now in microseconds, without a fork
now_us() {
  local t=${EPOCHREALTIME/./}
  echo "$t"
}

# Run "$@" once; print the wall time in ms (stdout and stderr of the command discarded).
wall_ms() {
  local t0 t1
  t0=${EPOCHREALTIME/./}
  "$@" >/dev/null 2>&1
  t1=${EPOCHREALTIME/./}
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f\n", (b-a)/1000}'
}

# Peak RSS in KiB of one run of "$@" (GNU time).
peak_kib() {
  local f
  f=$(mktemp)
  /usr/bin/time -f %M -o "$f" "$@" >/dev/null 2>&1 || true
  tail -1 "$f"
  rm -f "$f"
}

need_time() {
  [ -x /usr/bin/time ] && return 0
  echo "bench: installing GNU time for peak memory" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null
}
