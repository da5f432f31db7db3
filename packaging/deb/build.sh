#!/usr/bin/env bash
# build.sh - a Debian package of dropfix with dpkg-deb alone (no cargo-deb, no debhelper).
#
#   packaging/deb/build.sh BINARY OUTDIR     prints the path of OUTDIR/dropfix_<version>_amd64.deb
#
# BINARY is a built dropfix, normally the static release build (packaging/build-static.sh); its
# version (`dropfix --version`) names the package, and it writes its own man pages and shell
# completions (hidden `dropfix generate`), so they always match the binary. Installs:
#   /usr/bin/dropfix
#   /usr/share/man/man1/dropfix.1.gz, dropfix-<subcommand>.1.gz
#   /usr/share/bash-completion/completions/dropfix
#   /usr/share/zsh/vendor-completions/_dropfix
#   /usr/share/fish/vendor_completions.d/dropfix.fish
#   /lib/systemd/system/dropfix-firstboot.service   (enabled on install, not started: see postinst)
#   /usr/share/doc/dropfix/copyright, changelog.gz
#   /lib/systemd/system/dropfix-doctor.service, dropfix-doctor.timer (metrics; not enabled)
# Reproducible: file times are SOURCE_DATE_EPOCH (default: the last commit's time), owner root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=${1:?usage: build.sh BINARY OUTDIR}
out=${2:?usage: build.sh BINARY OUTDIR}
[ -x "$bin" ] || { echo "build.sh: $bin is not executable" >&2; exit 1; }
mkdir -p "$out"

version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || { echo "build.sh: no version from $bin --version" >&2; exit 1; }
arch=amd64
# Who answers for the package; set DEB_MAINTAINER to your own address when you publish it.
maintainer=${DEB_MAINTAINER:-dropfix maintainers <dropfix@example.org>}
: "${SOURCE_DATE_EPOCH:=$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d -m 755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d" "$pkg/lib/systemd/system" "$pkg/usr/share/doc/dropfix"

install -m 755 "$bin" "$pkg/usr/bin/dropfix"
"$bin" generate man "$stage"
for page in "$stage"/*.1; do
  gzip -9n < "$page" > "$pkg/usr/share/man/man1/$(basename "$page").gz"
  chmod 644 "$pkg/usr/share/man/man1/$(basename "$page").gz"
done
"$bin" generate completions bash > "$pkg/usr/share/bash-completion/completions/dropfix"
"$bin" generate completions zsh > "$pkg/usr/share/zsh/vendor-completions/_dropfix"
"$bin" generate completions fish > "$pkg/usr/share/fish/vendor_completions.d/dropfix.fish"
for unit in dropfix-firstboot.service dropfix-doctor.service dropfix-doctor.timer; do
  install -m 644 "$top/packaging/$unit" "$pkg/lib/systemd/system/$unit"
done
cat > "$pkg/usr/share/doc/dropfix/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dropfix

Files: *
Copyright: the dropfix authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
# dropfix reads an offline image's /var/lib/dpkg/status (--root) for its systemd version: it
# never writes there, and the image's dpkg is not the host's to ask.
install -d -m 755 "$pkg/usr/share/lintian/overrides"
echo "dropfix: uses-dpkg-database-directly [usr/bin/dropfix]" > "$pkg/usr/share/lintian/overrides/dropfix"
chmod 644 "$pkg/usr/share/lintian/overrides/dropfix"
# A native package's changelog (Debian policy 12.7), from the version and SOURCE_DATE_EPOCH.
{
  echo "dropfix ($version) unstable; urgency=medium"
  echo
  echo "  * dropfix $version."
  echo
  echo " -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$pkg/usr/share/doc/dropfix/changelog.gz"
chmod 644 "$pkg/usr/share/doc/dropfix/changelog.gz"
chmod 644 "$pkg"/usr/share/bash-completion/completions/dropfix "$pkg"/usr/share/zsh/vendor-completions/_dropfix \
  "$pkg"/usr/share/fish/vendor_completions.d/dropfix.fish "$pkg/usr/share/doc/dropfix/copyright"

# Depends: none for the static build; a dynamic one needs the C library it was linked against.
depends=
if ldd "$bin" 2>/dev/null | grep -q 'libc\.so'; then
  depends="Depends: libc6 (>= $(ldd --version | awk 'NR==1{print $NF}'))"
fi
installed_size=$(du -sk --apparent-size "$pkg" | cut -f1)
{
  echo "Package: dropfix"
  echo "Version: $version"
  echo "Architecture: $arch"
  echo "Maintainer: $maintainer"
  echo "Installed-Size: $installed_size"
  [ -n "$depends" ] && echo "$depends"
  echo "Section: admin"
  echo "Priority: optional"
  echo "Description: make docker's network namespaces reachable from the host again"
  echo " Old docker.service units set MountFlags=slave, which gives dockerd a mount"
  echo " namespace of its own: the namespace files under /run/docker/netns never"
  echo " reach the host, and nsenter --net= or ip netns exec fail with"
  echo " \"Invalid argument\". dropfix removes MountFlags with an override in"
  echo " /etc/systemd/system that works on the host's systemd version, reloads"
  echo " systemd and restarts docker, verifies, and can undo it exactly."
  echo " dropfix-firstboot.service applies it before docker starts."
} > "$pkg/DEBIAN/control"

# Maintainer scripts as debhelper's dh_installsystemd (compat 13, --no-start) writes them:
# enable the oneshot on first install (it acts from the next boot on, before docker starts;
# installing never restarts docker), keep the admin's choice on upgrade and reinstall
# (`was-enabled`), mask it on remove (its symlinks stay, so a reinstall keeps it enabled), forget
# it on purge. No prerm: the oneshot only runs at boot, and there is nothing to stop.
# dropfix's own overrides and /var/lib/dropfix outlive remove, and purge too while
# they are in force: the fix stays, and `dropfix revert` (after installing again) undoes it
# exactly. Purge removes /var/lib/dropfix only when nothing dropfix did is in force.
cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
	# This will only remove masks created by d-s-h on package removal.
	deb-systemd-helper unmask dropfix-firstboot.service >/dev/null || true
	# was-enabled defaults to true, so new installations run enable.
	if deb-systemd-helper --quiet was-enabled dropfix-firstboot.service; then
		deb-systemd-helper enable dropfix-firstboot.service >/dev/null || true
	else
		deb-systemd-helper update-state dropfix-firstboot.service >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
EOF
cat > "$pkg/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null 2>&1; then
	deb-systemd-helper mask dropfix-firstboot.service >/dev/null || true
fi
if [ "$1" = purge ]; then
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge dropfix-firstboot.service >/dev/null || true
		deb-systemd-helper unmask dropfix-firstboot.service >/dev/null || true
	fi
	# /var/lib/dropfix records what `dropfix revert` restores. While it records a change in
	# force, deleting it would make the overrides impossible to undo exactly: keep both, say so.
	if [ -e /var/lib/dropfix/state.json ]; then
		echo "dropfix: the overrides dropfix wrote stay in force, and /var/lib/dropfix with them;" >&2
		echo "dropfix: to undo them, install dropfix again and run: dropfix revert" >&2
	else
		rm -rf /var/lib/dropfix
	fi
fi
EOF
chmod 755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/postrm"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/dropfix_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$deb"
