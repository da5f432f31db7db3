#!/usr/bin/env bash
# Scale: `dropfix scan --root` and `dropfix fix --dry-run --root` on generated roots of 1,000
# and 10,000 units, each with a drop-in (bench/gen-root.sh), median of RUNS runs (default 7).
# Time should grow linearly; target: 10,000 units in under 150 ms.
# Roots are cached in $ROOTS (default /var/tmp/dropfix-bench-roots); delete it to regenerate.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${RUNS:-7}
roots=${ROOTS:-/var/tmp/dropfix-bench-roots}
need_time
bin=$(release_bin)
machine
for n in 1000 10000; do
  [ -e "$roots/$n/.done" ] || { "$BENCH_DIR/gen-root.sh" "$roots/$n" "$n" && touch "$roots/$n/.done"; }
done
has_scan=0
"$bin" scan --help >/dev/null 2>&1 && has_scan=1
printf '\n%-44s %10s %10s %12s %12s\n' "command (median of $runs, warm cache)" "units" "wall ms" "us per unit" "peak RSS MB"
for n in 1000 10000; do
  cmds=("fix --dry-run")
  [ "$has_scan" = 1 ] && cmds=("scan" "scan --format json" "fix --dry-run")
  for args in "${cmds[@]}"; do
    # shellcheck disable=SC2086
    "$bin" --root "$roots/$n" $args >/dev/null 2>&1 || true   # warm the page cache
    # shellcheck disable=SC2086
    wall=$(for _ in $(seq "$runs"); do wall_ms "$bin" --root "$roots/$n" $args; done | median)
    # shellcheck disable=SC2086
    rss=$(peak_kib "$bin" --root "$roots/$n" $args)
    printf '%-44s %10s %10s %12.1f %12.1f\n' "dropfix --root <$n units> $args" "$n" "$wall" \
      "$(awk -v w="$wall" -v n="$n" 'BEGIN{print w*1000/n}')" "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
  done
done
