#!/usr/bin/env bash
# Installs the Debian packages that building and testing Cairn needs.
# Idempotent: a second run on a machine that has everything is a no-op.
set -euo pipefail

PACKAGES=(
  # kernel build
  linux-source-6.1 bc bison flex libelf-dev libssl-dev xz-utils make
  # images
  squashfs-tools cpio zstd xorriso mtools dosfstools gdisk fdisk e2fsprogs patchelf
  grub-pc-bin grub-efi-amd64-bin grub-common
  # VMs and tests
  qemu-system-x86 ovmf openssl
  # etcd-client's build script (libprotobuf-dev: google/protobuf/*.proto it imports)
  protobuf-compiler libprotobuf-dev
  # machined's etcd tests run the real etcd on the host
  etcd-server
  # images: qemu-img (qcow2), lz4 (initramfs experiments), readelf (static check)
  qemu-utils lz4 binutils
  # the Kubernetes payload (images/build-payload.sh): Go and dpkg-source for
  # Debian's kubernetes source package (deb-src entry below)
  golang-go dpkg-dev
  # machined's containerd tests run the real containerd and runc on the host
  containerd runc
  # the Web UI's browser test (webui/tests/browser.rs) and the terminal
  # dashboard's pseudo-terminal test (tests/tests/secure_api.rs)
  chromium chromium-driver tmux
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
src_list=/etc/apt/sources.list.d/cairn-src.sources
[ ${#missing[@]} -eq 0 ] && [ -e "$src_list" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo

# qemu-utils on these machines may come from bookworm-backports; qemu-system-x86
# must then come from the same suite, or apt refuses the pair.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
if [ ! -e /etc/apt/sources.list.d/cairn-backports.sources ]; then
  $SUDO tee /etc/apt/sources.list.d/cairn-backports.sources >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${codename}-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
# `apt-get source kubernetes` (the payload) needs the bookworm sources.
if [ ! -e "$src_list" ]; then
  $SUDO tee "$src_list" >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${codename}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
echo "installing: ${missing[*]:-(nothing; apt sources added)}"
$SUDO apt-get update -qq
target=()
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
  target=(-t "${codename}-backports")
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${target[@]}" "${missing[@]}"
