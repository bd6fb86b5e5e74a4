#!/usr/bin/env bash
# Builds the image cache `make test` puts on the test images
# (IMAGE_CACHE=): one OCI archive (images/payload/oci-image.py) and one
# docker-archive (docker-archive.py), made into a cache by
# `cairnctl image cache-create`. The Kubernetes VM test runs Pods from both:
#   cairn.local/cache-oci:v1
#   docker.io/library/cache-docker:v1   (tagged cache-docker:v1)
# Usage: tests/image-cache/build.sh <cache dir>
set -euo pipefail
out=${1:?usage: tests/image-cache/build.sh <cache dir>}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "test image cache -> $out"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p ctl
cairnctl=${CARGO_TARGET_DIR:-$root/target}/debug/cairnctl

mkdir -p "$work/rootfs"
printf '#include <unistd.h>\nint main(void) { for (;;) pause(); }\n' >"$work/sleeper.c"
cc -static -Os -o "$work/rootfs/sleeper" "$work/sleeper.c"
python3 "$root/images/payload/oci-image.py" --ref cairn.local/cache-oci:v1 --rootfs "$work/rootfs" \
  --out "$work/oci.tar" --entrypoint /sleeper --epoch 0
python3 "$here/docker-archive.py" --tag cache-docker:v1 --rootfs "$work/rootfs" \
  --out "$work/docker.tar" --entrypoint /sleeper
rm -rf "$out"
mkdir -p "$(dirname "$out")"
"$cairnctl" image cache-create --images "$work/oci.tar,$work/docker.tar" -o "$out"
