#!/usr/bin/env bash
# Kill -9 `dropfix fix` and `dropfix revert` at thousands of random points (the CI test does
# 240): scripts/crash.sh [RUNS] [SEED]   (default 3000 runs, a seed from the clock)
#
# Runs tests/hardening_crash.rs with DROPFIX_CRASH_RUNS; every run checks that no file is ever
# partial, that no name systemd could load appears, and that a rerun or a revert restores the
# exact trees. A failure prints its DROPFIX_CRASH_SEED to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DROPFIX_CRASH_RUNS=${1:-3000}
[ -n "${2:-}" ] && export DROPFIX_CRASH_SEED=$2
start=$(date +%s)
cargo test --release --locked --test hardening_crash -- --nocapture 2>&1 |
  grep -E 'random seed|runs, |test result|panicked|differs|vanished|neither|partial|appeared'
echo "crash.sh: $DROPFIX_CRASH_RUNS runs in $(( $(date +%s) - start )) s"
