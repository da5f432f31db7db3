#!/usr/bin/env bash
# Every benchmark in one run, on this machine: binary size, preview cost, scale, live cost.
# The live part needs root and systemd-nspawn (as tests/run); SKIP_LIVE=1 leaves it out.
set -euo pipefail
cd "$(dirname "$0")"
./size.sh
echo; ./preview.sh | tail -n +3
echo; ./scale.sh | tail -n +3
[ "${SKIP_LIVE:-0}" = 1 ] || { echo; ./live.sh | tail -n +3; }
