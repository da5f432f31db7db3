# Controller side of the dropfix module: put the right static dropfix binary on the target,
# then run the module (plugins/modules/dropfix). Python runs here only; on the target every step
# is a plain shell command (uname, sha256sum, mkdir, cp, chmod, mv) or the module itself.
#
# Options this plugin owns, taken out before the module sees the rest (the module refuses any
# option it does not know):
#   binaries  mapping of `uname -m` (x86_64, aarch64) to the binary on the controller; relative
#             paths are looked up like `copy`'s src (a role's or the playbook's files/).
#             Default: {x86_64: dropfix-x86_64, aarch64: dropfix-aarch64}.
#   deliver   true (default): install the binary when the target's differs; false: use the
#             dropfix already on the target.
# The module's own `dropfix` option says where the binary goes (default /opt/bin/dropfix: /usr is
# read-only on CoreOS and Flatcar).
#
# Check mode changes nothing on the target: a binary that would be installed goes to the task's
# remote temporary directory instead (removed when the task ends) and runs from there with
# --dry-run, so the preview and diff are real; the result says the binary would be installed
# and counts that as a change.
from __future__ import annotations

import hashlib
import os
import shlex

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

DEFAULT_PATH = '/opt/bin/dropfix'
DEFAULT_BINARIES = {'x86_64': 'dropfix-x86_64', 'aarch64': 'dropfix-aarch64'}
# `uname -m` spellings of the architectures dropfix is built for (packaging/build-static.sh).
ARCHES = {'x86_64': 'x86_64', 'amd64': 'x86_64', 'aarch64': 'aarch64', 'arm64': 'aarch64'}


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        args = dict(self._task.args)
        binaries = args.pop('binaries', None)
        deliver = args.pop('deliver', True)
        try:
            try:
                deliver = boolean(deliver, strict=True)
            except TypeError:
                raise AnsibleActionFail('deliver: expected a boolean, got %r' % (deliver,))
            if deliver:
                binary = self._deliver(args, binaries)
            else:
                binary = None
            result.update(self._execute_module(
                module_name=self._task.resolved_action or 'dropfix.dropfix.dropfix',
                module_args=args, task_vars=task_vars))
            if binary is not None:
                result['binary'] = binary
                done = 'installed' if binary['installed'] else 'would install' if binary['would_install'] else None
                if done:
                    result['changed'] = True
                    result['msg'] = '%s %s (%s); %s' % (done, binary['path'], binary['arch'], result.get('msg', ''))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _raw(self, cmd, what):
        res = self._low_level_execute_command(cmd, sudoable=True)
        if res.get('rc') != 0:
            err = to_text(res.get('stderr') or res.get('stdout') or '').strip().replace('\n', ' ')
            raise AnsibleActionFail('%s failed (rc %s): %s' % (what, res.get('rc'), err))
        return to_text(res.get('stdout', ''))

    def _deliver(self, args, binaries):
        """Installs the target's binary where `dropfix` says unless it is there already; sets
        the module's `dropfix` option to the binary to run; returns what was done."""
        dest = args.get('dropfix') or DEFAULT_PATH
        if not isinstance(dest, str) or not dest.startswith('/') or dest.endswith('/'):
            raise AnsibleActionFail('dropfix: expected the absolute path of a file, got %r' % (dest,))
        if binaries is None:
            binaries = DEFAULT_BINARIES
        if not isinstance(binaries, dict):
            raise AnsibleActionFail('binaries: expected a mapping of architecture (x86_64, aarch64) to a file, got %r' % (binaries,))
        unknown = sorted(set(binaries) - set(DEFAULT_BINARIES))
        if unknown:
            raise AnsibleActionFail('binaries: unknown architecture %s (expected x86_64 or aarch64)' % ', '.join(unknown))

        # One round trip for both facts; a missing binary gives no sha256 line.
        q = shlex.quote(dest)
        out = self._raw('uname -m; if [ -f %s ]; then sha256sum < %s; fi' % (q, q),
                        'reading the architecture and the installed dropfix')
        lines = out.split('\n')
        machine = lines[0].strip()
        arch = ARCHES.get(machine)
        if arch is None:
            raise AnsibleActionFail('no dropfix binary for this architecture: uname -m says %r (built for x86_64 and aarch64)' % machine)
        have = lines[1].split()[0] if len(lines) > 1 and lines[1].strip() else None

        src = binaries.get(arch)
        if not src:
            raise AnsibleActionFail('binaries: no binary given for %s' % arch)
        try:
            local = self._find_needle('files', src)
        except AnsibleError:
            raise AnsibleActionFail('binaries.%s: cannot find %s (a relative path is looked up in files/ beside the playbook '
                                    'or in the role; packaging/build-static.sh %s builds it)' % (arch, src, arch))
        want = sha256(local)
        binary = {'path': dest, 'arch': arch, 'source': local, 'sha256': want,
                  'installed': False, 'would_install': False}
        if have == want:
            args['dropfix'] = dest
            return binary

        tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
        staged = self._connection._shell.join_path(tmpdir, 'dropfix')
        self._transfer_file(local, staged)
        self._fixup_perms2((tmpdir, staged), execute=True)
        if self._task.check_mode:
            # Run the new binary from the temporary directory: the preview is what the real run
            # would do, and nothing outside that directory is touched.
            binary['would_install'] = True
            args['dropfix'] = staged
            return binary

        # Atomic: a hidden temporary file in the destination directory, mode set, flushed,
        # renamed over the old binary; then the result is checked against the controller's hash.
        d = shlex.quote(os.path.dirname(dest) or '/')
        self._raw(
            'set -e; umask 022; mkdir -p -- %s; t=%s/.dropfix.$$; trap \'rm -f -- "$t"\' EXIT; '
            'cp -- %s "$t"; chmod 0755 "$t"; sync "$t" 2>/dev/null || sync; mv -f -- "$t" %s; trap - EXIT'
            % (d, d, shlex.quote(staged), q),
            'installing dropfix at %s' % dest)
        got = self._raw('sha256sum < %s' % q, 'checking %s' % dest).split()
        if not got or got[0] != want:
            raise AnsibleActionFail('installing dropfix at %s: its sha256 is %s after the copy, not %s' % (dest, got[0] if got else '(none)', want))
        binary['installed'] = True
        args['dropfix'] = dest
        return binary
