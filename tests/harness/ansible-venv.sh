#!/usr/bin/env bash
# ansible-venv.sh - ansible-core from PyPI in a virtualenv, for dropfix's Ansible fleet test.
#
#   ansible-venv.sh          print the venv directory, creating it first when it is missing
#
# Cached in $DROPFIX_TEST_CACHE (default /var/cache/dropfix-test) and reused (about 20 s once
# per machine). ansible-core 2.19 needs Python >= 3.11 on the controller; the targets need none.
set -euo pipefail
ANSIBLE_CORE=2.19.14
exec "$(dirname "$0")/pip-venv.sh" "ansible-core-$ANSIBLE_CORE" "ansible-core==$ANSIBLE_CORE" 3.11
