#!/usr/bin/env bash
# ansible-venv.sh - ansible-core from PyPI in a virtualenv, for dropfix's Ansible fleet test.
#
#   ansible-venv.sh          print the venv directory, creating it first when it is missing
#
# Cached in $DROPFIX_TEST_CACHE (default /var/cache/dropfix-test) and reused (about 20 s once
# per machine). ansible-core 2.19 needs Python >= 3.11 on the controller; the targets need none.
set -euo pipefail

CACHE=${DROPFIX_TEST_CACHE:-/var/cache/dropfix-test}
ANSIBLE_CORE=2.19.14
VENV=$CACHE/ansible-core-$ANSIBLE_CORE
PYTHON=${PYTHON:-python3}

log() { printf '[%s] ansible-venv: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
ready() { [ -x "$VENV/bin/ansible-playbook" ] && [ -e "$VENV/.complete" ]; }

if ready; then echo "$VENV"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.ansible-venv.lock"
flock 9
if ready; then echo "$VENV"; exit 0; fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "ansible-core $ANSIBLE_CORE needs Python >= 3.11"
if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then  # Debian's own python3 needs python3-venv
  log "installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >/dev/null \
    || die "cannot install python3-venv"
fi
t0=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "ansible-core==$ANSIBLE_CORE" >&2 \
  || { rm -rf "$VENV"; die "pip install ansible-core==$ANSIBLE_CORE failed"; }
touch "$VENV/.complete"
log "ansible-core $ANSIBLE_CORE in $VENV after $(( $(date +%s) - t0 ))s"
echo "$VENV"
