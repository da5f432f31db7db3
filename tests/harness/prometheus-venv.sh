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
PROMETHEUS_CLIENT=0.26.0
venv=$("$(dirname "$0")/pip-venv.sh" "prometheus-client-$PROMETHEUS_CLIENT" "prometheus_client==$PROMETHEUS_CLIENT")
echo "$venv/bin/python"
