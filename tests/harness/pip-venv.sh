#!/usr/bin/env bash
# pip-venv.sh - one PyPI package, pinned, in its own virtualenv, for the tests that need a
# Python tool on the controller (ansible-venv.sh, prometheus-venv.sh).
#
#   pip-venv.sh DIRNAME PACKAGE==VERSION [MIN_PYTHON]   print the venv directory, creating it
#                                                       first when it is missing
#
# Cached in $DROPFIX_TEST_CACHE/DIRNAME (default /var/cache/dropfix-test) and reused; a build
# under way elsewhere is waited for (flock). Needs python3 (and python3-venv, installed here when
# missing, which needs root).
set -euo pipefail

NAME=${1:?usage: pip-venv.sh DIRNAME PACKAGE==VERSION [MIN_PYTHON]}
SPEC=${2:?usage: pip-venv.sh DIRNAME PACKAGE==VERSION [MIN_PYTHON]}
MIN_PYTHON=${3:-}
CACHE=${DROPFIX_TEST_CACHE:-/var/cache/dropfix-test}
VENV=$CACHE/$NAME
PYTHON=${PYTHON:-python3}

log() { printf '[%s] pip-venv %s: %s\n' "$(date +%T)" "$NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ready() { [ -x "$VENV/bin/python" ] && [ -e "$VENV/.complete" ]; }

if ready; then echo "$VENV"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.$NAME.lock"
flock 9
if ready; then echo "$VENV"; exit 0; fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
if [ -n "$MIN_PYTHON" ]; then
  "$PYTHON" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" \
    || die "$SPEC needs Python >= $MIN_PYTHON"
fi
if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then  # Debian's own python3 needs python3-venv
  log "installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >/dev/null \
    || die "cannot install python3-venv"
fi
t0=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "$SPEC" >&2 \
  || { rm -rf "$VENV"; die "pip install $SPEC failed"; }
touch "$VENV/.complete"
log "$SPEC in $VENV after $(( $(date +%s) - t0 ))s"
echo "$VENV"
