#!/usr/bin/env bash
# prometheus-venv.sh - prometheus_client from PyPI in a virtualenv: the Prometheus text-format
# parser dropfix's metrics tests read `dropfix doctor --format prometheus` with
# (tests/harness/promparse.py).
#
#   prometheus-venv.sh          print the venv's python, creating the venv first when it is missing
#
# Cached in $DROPFIX_TEST_CACHE (default /var/cache/dropfix-test) and reused (a few seconds once
# per machine).
set -euo pipefail

CACHE=${DROPFIX_TEST_CACHE:-/var/cache/dropfix-test}
PROMETHEUS_CLIENT=0.26.0
VENV=$CACHE/prometheus-client-$PROMETHEUS_CLIENT
PYTHON=${PYTHON:-python3}

log() { printf '[%s] prometheus-venv: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ready() { [ -x "$VENV/bin/python" ] && [ -e "$VENV/.complete" ]; }

if ready; then echo "$VENV/bin/python"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.prometheus-venv.lock"
flock 9
if ready; then echo "$VENV/bin/python"; exit 0; fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then  # Debian's own python3 needs python3-venv
  log "installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >/dev/null \
    || die "cannot install python3-venv"
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "prometheus_client==$PROMETHEUS_CLIENT" >&2 \
  || { rm -rf "$VENV"; die "pip install prometheus_client==$PROMETHEUS_CLIENT failed"; }
touch "$VENV/.complete"
log "prometheus_client $PROMETHEUS_CLIENT in $VENV"
echo "$VENV/bin/python"
