#!/usr/bin/env bash
# build-static.sh - the statically linked release binary, for hosts with no package manager and
# no Python (CoreOS Container Linux, Flatcar): glibc linked in with crt-static, nothing loaded at
# run time. dropfix resolves no host names and reads no users, so glibc's NSS never comes in.
#
#   packaging/build-static.sh      build; check that ldd sees no dynamic dependency; print the path
#
# The same by hand (the toolchain already has the x86_64 glibc target; no download):
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target x86_64-unknown-linux-gnu
#   -> target/x86_64-unknown-linux-gnu/release/dropfix
# With --target, RUSTFLAGS reaches only the target's code, not build scripts or proc macros.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" >&2
bin=$(readlink -f "${CARGO_TARGET_DIR:-target}/$TARGET/release/dropfix")
ldd_out=$(ldd "$bin" 2>&1 || true)
case $ldd_out in
  *"not a dynamic executable"*|*"statically linked"*) ;;
  *) echo "build-static.sh: $bin is not static; ldd says:" >&2; echo "$ldd_out" >&2; exit 1 ;;
esac
echo "build-static.sh: $bin: ldd: $(echo "$ldd_out" | xargs); $(stat -c %s "$bin") bytes" >&2
echo "$bin"
