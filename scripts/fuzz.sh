#!/usr/bin/env bash
# Fuzz dropfix's parser and planner with cargo-fuzz (libFuzzer), seeded from systemd's own
# unit-file fuzz corpus, the real unit corpus and the example root. Not run in CI.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 900 (15 min) per target
#
# Prints the executions and findings of each target. A crash input lands in
# fuzz/artifacts/<target>/; copy it to tests/fuzz_inputs/ so the hardening tests replay it.
# Needs a nightly toolchain (rustup toolchain install nightly) and cargo-fuzz
# (cargo install cargo-fuzz); on stable only, RUSTC_BOOTSTRAP=1 stands in for nightly.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-900}
shared=../shared/corpus

if rustup toolchain list 2>/dev/null | grep -q nightly; then tc=(+nightly); else tc=(); export RUSTC_BOOTSTRAP=1; fi
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo install cargo-fuzz" >&2; exit 1; }

seed() { # target dir, prefix bytes (hex, for the planner's selector header)
  local t=$1 prefix=$2 f i=0 out
  out=fuzz/corpus/$t
  mkdir -p "$out"
  for f in "$shared"/systemd-fuzz/* "$shared"/units/* examples/coreos-1192/usr/lib/systemd/system/*.service tests/fuzz_inputs/*; do
    [ -f "$f" ] || continue
    case $f in *.md) continue ;; esac
    i=$((i + 1))
    { printf "$prefix"; head -c 65536 "$f"; } > "$out/seed-$i"
  done
}
seed parse ''
seed plan '\x00\x00\x00'
# A few planner seeds with vendor drop-ins that set MountFlags again (0xFE starts a drop-in).
printf '\x00\x00\x00[Service]\nMountFlags=slave\n\xfe\x59[Service]\nMountFlags=slave\n' > fuzz/corpus/plan/dropin-slave
printf '\x03\x00\x00[Service]\nMountFlags=slave\n\xfe\x5e[Service]\nMountFlags=shared\n' > fuzz/corpus/plan/dropin-late
printf '\x05\x01\x01[Service]\nMountFlags=slave\n\xfe\x06[Service]\nMountFlags=private\n' > fuzz/corpus/plan/etc-fragment

cargo "${tc[@]}" fuzz build -O >/dev/null
for t in parse plan; do
  mkdir -p "fuzz/artifacts/$t"
  log=fuzz/$t.log
  echo "== $t: $secs s" >&2
  set +e
  cargo "${tc[@]}" fuzz run -O "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=1100000 \
    -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '#[0-9]+.*cov:' "$log" | tail -1 | sed -E 's/.*cov: ([0-9]+).*/\1/')
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  printf '%s: %s executions in %s s, coverage %s edges, exit %s, %s crash inputs in fuzz/artifacts/%s\n' \
    "$t" "${execs:-?}" "$secs" "${cov:-?}" "$rc" "$crashes" "$t"
done
