#!/usr/bin/env bash
# Builds the Cairn kernel: Debian's linux-source-6.1, `make tinyconfig`, the
# fragments in kernel-config/ merged on top, everything built in.
# The bzImage is cached in $CAIRN_CACHE/kernel/<hash>/ where the hash covers
# the fragments, this script, the config check, the linux-source package
# version and the compiler; it is copied to $OUT/vmlinuz.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PKG=linux-source-6.1
TARBALL=/usr/src/$PKG.tar.xz
[ -f "$TARBALL" ] || die "$TARBALL is missing: run images/install-deps.sh (package $PKG)"
pkg_version=$(dpkg-query -W -f='${Version}' "$PKG")

cd "$ROOT"
hash=$( {
  echo "$PKG $pkg_version"
  gcc --version | head -n 1
  sha256sum kernel-config/* images/build-kernel.sh images/check-kernel-config.sh
} | sha256sum | cut -c1-16)
cache=$CAIRN_CACHE/kernel/$hash
mkdir -p "$OUT"

if [ -f "$cache/bzImage" ]; then
  cp "$cache/bzImage" "$OUT/vmlinuz"
  echo "kernel: cached $cache/bzImage ($PKG $pkg_version) -> $OUT/vmlinuz"
  exit 0
fi

echo "kernel: building $PKG $pkg_version with kernel-config/ (cache key $hash)"
src=$CAIRN_CACHE/kernel/src-$pkg_version/$PKG
# One object tree per source version: a changed fragment rebuilds incrementally.
obj=$CAIRN_CACHE/kernel/obj-$pkg_version
log=$CAIRN_CACHE/kernel/build-$hash.log
mkdir -p "$CAIRN_CACHE/kernel"

if [ ! -f "$src/Makefile" ]; then
  step "unpack $TARBALL"
  rm -rf "$(dirname "$src")"
  mkdir -p "$(dirname "$src")"
  tar -C "$(dirname "$src")" -xf "$TARBALL"
fi

# Fixed identity strings make the build reproducible (uname -v shows them).
export KBUILD_BUILD_TIMESTAMP="Debian $pkg_version"
export KBUILD_BUILD_USER=cairn KBUILD_BUILD_HOST=cairn KBUILD_BUILD_VERSION=1
kmake=(make -C "$src" O="$obj" ARCH=x86_64)

step "configure (tinyconfig + kernel-config/*.config)"
mkdir -p "$obj"
"${kmake[@]}" -s tinyconfig >"$log.config" 2>&1
"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" kernel-config/*.config >>"$log.config" 2>&1
"${kmake[@]}" -s olddefconfig >>"$log.config" 2>&1

step "check requested options survived olddefconfig"
images/check-kernel-config.sh "$obj/.config" kernel-config/*.config

step "compile bzImage (make -j$(nproc); log $log)"
run_logged "$log" "${kmake[@]}" -j"$(nproc)" bzImage
step_done

mkdir -p "$cache"
cp "$obj/arch/x86/boot/bzImage" "$cache/bzImage.tmp"
cp "$obj/.config" "$cache/config"
mv "$cache/bzImage.tmp" "$cache/bzImage"
cp "$cache/bzImage" "$OUT/vmlinuz"
echo "kernel: $(stat -c %s "$OUT/vmlinuz") bytes -> $OUT/vmlinuz (cached in $cache)"
