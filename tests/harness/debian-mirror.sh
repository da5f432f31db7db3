# debian-mirror.sh - sourced by the rootfs builders: which Debian mirror debootstrap uses.
#
# debian_mirror prints $DEBIAN_MIRROR when set, else the first Debian archive URI of this
# machine's own apt configuration (deb822 /etc/apt/sources.list.d/*.sources or one-line
# /etc/apt/sources.list and *.list), else nothing: debootstrap then picks its own default.
# No mirror is written down here, so the tests fetch from wherever this machine already does.
# A Debian archive URI is one whose path ends in /debian (not debian-security, not a PPA).

_debian_uri_ok() { [[ $1 =~ ^(https?|file)://[^[:space:]]*/debian/?$ ]]; }

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return 0; fi
  local f uri line
  # deb822: a stanza's "URIs:" with "Types:" naming deb (Enabled: no stanzas are skipped)
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk '
      function flush() { if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no") for (i = 1; i <= n; i++) print u[i]; types = ""; enabled = ""; n = 0 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { types = $0; sub(/^[^:]*:/, "", types) }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      tolower($1) == "uris:" { for (i = 2; i <= NF; i++) u[++n] = $i }
      END { flush() }' "$f" | while read -r line; do _debian_uri_ok "$line" && { echo "$line"; break; }; done)
    [ -n "$uri" ] && { echo "${uri%/}"; return 0; }
  done
  # one-line format: deb [options] URI suite components
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    while read -r line; do
      line=${line%%#*}
      [[ $line =~ ^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+) ]] || continue
      uri=${BASH_REMATCH[2]}
      _debian_uri_ok "$uri" && { echo "${uri%/}"; return 0; }
    done < "$f"
  done
  return 0
}
