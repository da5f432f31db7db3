#!/usr/bin/env bash
# Binary size of the release build (lto, one codegen unit, stripped, panic=abort), dynamic and
# static (packaging/build-static.sh: glibc linked in with crt-static), and what each loads.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
machine
dyn=$(release_bin)
static=$("$REPO/packaging/build-static.sh" 2>/dev/null)
printf '\n%-44s %12s %10s  %s\n' "build" "bytes" "MiB" "ldd"
for b in "release (dynamic):$dyn" "release static (crt-static):$static"; do
  label=${b%%:*} path=${b#*:}
  size=$(stat -c %s "$path")
  deps=$(ldd "$path" 2>&1 | awk '{print $1}' | tr '\n' ' ')
  printf '%-44s %12s %10.2f  %s\n' "$label" "$size" "$(awk -v s="$size" 'BEGIN{print s/1048576}')" "$deps"
done
