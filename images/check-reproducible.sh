#!/usr/bin/env bash
# Builds the images twice, into two fresh directories, and compares the
# sha256 of every artefact. Fails (and names the files) if any differ.
# The kernel comes from the cache and the Rust binaries from cargo's target
# directory in both builds, so this checks the image assembly: cpio,
# squashfs, FAT, ext4, GPT, GRUB patching, ISO and qcow2.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Both builds must see the same inputs: fix the identity once, so a commit
# landing between the two builds (other work in the same checkout) cannot
# change SOURCE_DATE_EPOCH or the build id under us.
cd "$ROOT"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export CAIRN_VERSION=${CAIRN_VERSION:-v0.1.0-repro}
export CAIRN_BUILD_ID=${CAIRN_BUILD_ID:-reprocheck}

base=$(mktemp -d "${TMPDIR:-/tmp}/cairn-repro.XXXXXX")
trap 'rm -rf "$base"' EXIT
for n in 1 2; do
  echo "check-reproducible: build $n -> $base/$n"
  OUT=$base/$n "$ROOT/images/build-image.sh"
done

if cmp -s "$base/1/sha256sums" "$base/2/sha256sums"; then
  echo "check-reproducible: identical:"
  sed 's/^/  /' "$base/1/sha256sums"
  exit 0
fi
echo "check-reproducible: the two builds differ (kept in $base for inspection):" >&2
diff "$base/1/sha256sums" "$base/2/sha256sums" >&2 || true
trap - EXIT
exit 1
