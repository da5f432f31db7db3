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
#   /usr/share/doc/dropfix/copyright
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
install -m 644 "$top/packaging/dropfix-firstboot.service" "$pkg/lib/systemd/system/dropfix-firstboot.service"
cat > "$pkg/usr/share/doc/dropfix/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dropfix

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
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
  echo "Maintainer: dropfix maintainers <dropfix@localhost>"
  echo "Installed-Size: $installed_size"
  [ -n "$depends" ] && echo "$depends"
  echo "Section: admin"
  echo "Priority: optional"
  echo "Description: make docker's network namespaces reachable from the host again"
  echo " Old docker.service units set MountFlags=slave, which gives dockerd a mount"
  echo " namespace of its own: the namespace files under /run/docker/netns never reach"
  echo " the host and \`nsenter --net=\` or \`ip netns exec\` fail with \"Invalid argument\"."
  echo " dropfix removes MountFlags with an override in /etc/systemd/system that works on"
  echo " the host's systemd version, reloads systemd and restarts docker, verifies, and"
  echo " can undo it exactly. dropfix-firstboot.service applies it before docker starts."
} > "$pkg/DEBIAN/control"

# Maintainer scripts as debhelper's systemd snippets would write them: enable the oneshot on
# first install (it acts from the next boot on, before docker starts; installing never restarts
# docker), leave the admin's choice alone on upgrade, forget it on purge.
cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
	if deb-systemd-helper debian-installed dropfix-firstboot.service; then
		deb-systemd-helper update-state dropfix-firstboot.service >/dev/null || true
	else
		deb-systemd-helper enable dropfix-firstboot.service >/dev/null || true
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
if [ "$1" = purge ] && [ -x /usr/bin/deb-systemd-helper ]; then
	deb-systemd-helper purge dropfix-firstboot.service >/dev/null || true
fi
EOF
cat > "$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -x /usr/bin/deb-systemd-helper ]; then
	deb-systemd-helper disable dropfix-firstboot.service >/dev/null || true
fi
EOF
chmod 755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/postrm" "$pkg/DEBIAN/prerm"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/dropfix_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$deb"
