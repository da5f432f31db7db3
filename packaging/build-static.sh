#!/usr/bin/env bash
# build-static.sh - the statically linked release binary, for hosts with no package manager and
# no Python (CoreOS Container Linux, Flatcar): glibc linked in with crt-static, nothing loaded at
# run time. dropfix resolves no host names and reads no users, so glibc's NSS never comes in.
#
#   packaging/build-static.sh [x86_64|aarch64]   build (default x86_64); check that the binary
#                                                is static and for that CPU; print its path
#
# x86_64, by hand (the toolchain already has the x86_64 glibc target; no download):
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target x86_64-unknown-linux-gnu
#   -> target/x86_64-unknown-linux-gnu/release/dropfix
#
# aarch64 is cross-built with Debian's toolchain, since rustup cannot fetch a target offline:
# Debian's rustc-web and cargo-web (bookworm-security; /usr/bin/rustc, /usr/bin/cargo), the
# arm64 standard library from the multiarch package libstd-rust-web-dev:arm64, and
# gcc-aarch64-linux-gnu with libc6-dev-arm64-cross as the linker and the static glibc:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross
#   -> target/aarch64-unknown-linux-gnu/release/dropfix
# Run it on x86_64 with qemu-user: qemu-aarch64-static target/aarch64-unknown-linux-gnu/release/dropfix
#
# With --target, RUSTFLAGS reaches only the target's code, not build scripts or proc macros.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "build-static.sh: $*" >&2; exit 1; }

ARCH=${1:-x86_64}
case $ARCH in
  x86_64)
    TARGET=x86_64-unknown-linux-gnu
    CARGO=(cargo)
    ;;
  aarch64)
    TARGET=aarch64-unknown-linux-gnu
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] \
      || die "aarch64 needs Debian's rustc-web and cargo-web (/usr/bin/rustc, /usr/bin/cargo)"
    [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$TARGET/lib" ] \
      || die "aarch64 needs the arm64 standard library: dpkg --add-architecture arm64; apt-get install libstd-rust-web-dev:arm64"
    command -v aarch64-linux-gnu-gcc >/dev/null \
      || die "aarch64 needs the linker: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    # Debian's cargo and rustc together, whatever rustup puts first in PATH; the linker is set
    # in .cargo/config.toml.
    CARGO=(env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc /usr/bin/cargo)
    ;;
  *) die "unknown architecture '$ARCH' (expected x86_64 or aarch64)" ;;
esac

RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
  "${CARGO[@]}" build --release --locked --target "$TARGET" >&2
bin=$(readlink -f "${CARGO_TARGET_DIR:-target}/$TARGET/release/dropfix")

if [ "$ARCH" = x86_64 ]; then
  ldd_out=$(ldd "$bin" 2>&1 || true)
  case $ldd_out in
    *"not a dynamic executable"*|*"statically linked"*) ;;
    *) die "$bin is not static; ldd says: $ldd_out" ;;
  esac
  what="ldd: $(echo "$ldd_out" | xargs)"
else
  # ldd cannot look into another CPU's binary; the ELF headers say the same: no interpreter,
  # no shared library needed.
  readelf=aarch64-linux-gnu-readelf
  $readelf -h "$bin" | grep -q 'Machine: *AArch64' || die "$bin is not an AArch64 binary"
  ! $readelf -l "$bin" | grep -q 'INTERP' || die "$bin asks for a dynamic loader: not static"
  ! $readelf -d "$bin" | grep -q 'NEEDED' || die "$bin needs shared libraries: not static"
  what="AArch64, no interpreter, no shared library"
fi
echo "build-static.sh: $bin: $what; $(stat -c %s "$bin") bytes" >&2
echo "$bin"
