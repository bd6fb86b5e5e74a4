#!/usr/bin/env bash
# Builds every boot artefact into $OUT (default _out/):
#   vmlinuz               the kernel (images/build-kernel.sh, cached)
#   initramfs.img         cpio: /init + /rootfs.sqsh
#   metal-amd64.raw       GPT disk: EFI, BIOS, BOOT, META, STATE, EPHEMERAL
#   metal-amd64.qcow2     the raw disk converted
#   metal-amd64.iso       hybrid ISO, BIOS + UEFI, live boot
#   image-cache.sqsh      with IMAGE_CACHE=<dir> (cairnctl image cache-create):
#                         users' images, on BOOT and the ISO beside the slots
#   sha256sums
#   vmlinuz.sig ...       with SIGNING_KEY=<Ed25519 key>: detached signatures of
#                         the upgrade assets (images/sign-upgrade.sh), which
#                         `cairnctl upgrade` sends to nodes that list trusted keys
# Reproducible: the same inputs give the same bytes (images/check-reproducible.sh).
# Layout and reasons: images/README.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT/images/grub.sh"
source "$ROOT/images/disk.sh"
umask 022
export LC_ALL=C TZ=UTC

# Initramfs and rootfs compression, chosen by measured unpack/boot time under
# QEMU TCG (images/README.md has the numbers). Override for experiments.
# lz4 for the rootfs: machined and apid are paged in from it at boot, and
# lz4 blocks decompress several times faster than zstd under emulation.
INITRAMFS_COMPRESSION=${CAIRN_INITRAMFS_COMPRESSION:-none}
ROOTFS_COMPRESSION=${CAIRN_ROOTFS_COMPRESSION:-lz4}
# Kernel command line: serial last so /dev/console (and tests) see the serial
# port; KSPP flags; devkmsg=on so PID 1's log lines to /dev/kmsg are not
# rate-limited away; no bond0/dummy0 devices created at boot by the built-in
# bonding and dummy drivers (they would look like ethernet links to machined).
# CAIRN_EXTRA_CMDLINE appends (e.g. ip=dhcp, panic=0).
CMDLINE="console=tty0 console=ttyS0,115200 init_on_alloc=1 slab_nomerge pti=on printk.devkmsg=on"
CMDLINE+=" bonding.max_bonds=0 dummy.numdummies=0${CAIRN_EXTRA_CMDLINE:+ $CAIRN_EXTRA_CMDLINE}"

cd "$ROOT"
started=$(date +%s)

# --- identity -----------------------------------------------------------------
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
export SOURCE_DATE_EPOCH
# Every tool below that stamps times reads this (mke2fs, mtools, xorriso).
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
if [ -z "${CAIRN_VERSION:-}" ]; then
  if [ -f VERSION ]; then
    CAIRN_VERSION=$(tr -d '[:space:]' <VERSION)
  else
    CAIRN_VERSION=$(git describe --tags --always --match 'v*' 2>/dev/null | grep '^v' || echo v0.1.0)
  fi
fi
# The build id is the hash of every source file (tracked or new, not ignored),
# so identical trees give identical ids and identical images.
[ -n "${CAIRN_BUILD_ID:-}" ] || CAIRN_BUILD_ID=$(git ls-files -z --cached --others --exclude-standard |
  LC_ALL=C sort -zu | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 sha256sum | sha256sum | cut -c1-12)
export CAIRN_VERSION CAIRN_BUILD_ID
echo "image: Cairn $CAIRN_VERSION build $CAIRN_BUILD_ID (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) -> $OUT"

work=$OUT/.build
rm -rf "$work"
mkdir -p "$work" "$OUT"
# All intermediate files get this mtime before they are packed.
stamp() { find "$@" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +; }

# --- kernel -------------------------------------------------------------------
# Cached after the first build (make kernel); its own progress lines show
# when it has to compile.
# One kernel build at a time per cache: two builds in the same object tree
# (another checkout, another OUT) corrupt each other; the second one then
# finds the first one's result cached.
mkdir -p "$CAIRN_CACHE/kernel"
flock "$CAIRN_CACHE/kernel/.lock" images/build-kernel.sh

# --- Kubernetes payload --------------------------------------------------------
# $OUT/payload.sqsh (and $OUT/kubectl), cached by its inputs in
# $CAIRN_CACHE/payload (images/build-payload.sh); disk.sh and grub.sh put it on
# BOOT and the ISO at /A/payload.sqsh. CAIRN_NO_PAYLOAD=1 builds images
# without it (quicker when the work at hand does not need Kubernetes).
if [ "${CAIRN_NO_PAYLOAD:-}" = 1 ]; then
  rm -f "$OUT/payload.sqsh"
else
  images/build-payload.sh
fi

# --- image cache -----------------------------------------------------------------
# IMAGE_CACHE=<dir>, a directory `cairnctl image cache-create` wrote: the
# users' images every node imports at boot (origin `cache`) and serves to
# Pods through its image cache registry. On BOOT it shares 1000 MiB with two
# slots (kernel, initramfs, payload), so its size is checked here rather
# than by a full disk at install or upgrade time.
read -r _ BOOT_MIB _ <<<"${DISK_LAYOUT[2]}"
rm -f "$OUT/image-cache.sqsh"
if [ -n "${IMAGE_CACHE:-}" ]; then
  [ -f "$IMAGE_CACHE/refs.txt" ] ||
    die "IMAGE_CACHE=$IMAGE_CACHE holds no refs.txt: make the directory with cairnctl image cache-create"
  step "image cache (IMAGE_CACHE=$IMAGE_CACHE: $(wc -l <"$IMAGE_CACHE/refs.txt") images)"
  cache_tree=$work/image-cache
  mkdir -p "$cache_tree"
  cp "$IMAGE_CACHE"/refs.txt "$IMAGE_CACHE"/*.tar "$cache_tree/"
  chmod 0644 "$cache_tree"/*
  stamp "$cache_tree"
  env -u SOURCE_DATE_EPOCH mksquashfs "$cache_tree" "$OUT/image-cache.sqsh" -comp zstd -Xcompression-level 15 \
    -noappend -no-progress -quiet -all-root -reproducible \
    -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" >/dev/null
  slot_bytes=$(( $(stat -c %s "$OUT/payload.sqsh" 2>/dev/null || echo 0) + 64 * 1024 * 1024 ))
  cache_bytes=$(stat -c %s "$OUT/image-cache.sqsh")
  room=$(( BOOT_MIB * 1024 * 1024 - 2 * slot_bytes - 64 * 1024 * 1024 ))
  if [ "$cache_bytes" -gt "$room" ]; then
    rm -f "$OUT/image-cache.sqsh"
    die "IMAGE_CACHE=$IMAGE_CACHE is $((cache_bytes >> 20)) MiB compressed; BOOT ($BOOT_MIB MiB) keeps two slots of $((slot_bytes >> 20)) MiB and has room for $((room >> 20)) MiB of image cache"
  fi
fi

# --- Rust binaries --------------------------------------------------------------
TARGET=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
step "cargo build --release (init machined apid, static)"
# Static glibc so the rootfs needs no libc for them; paths of the checkout and
# the cargo registry are remapped so they do not leak into the binaries.
# No version is compiled in (the programs read /etc/os-release, below), so
# images of another version, like the upgrade tests' second image, reuse
# these binaries.
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$ROOT=/cairn --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  run_logged "$work/cargo.log" cargo build --release --locked --target "$TARGET" -p init -p machined -p apid
bin=$target_dir/$TARGET/release
for b in init machined apid; do
  [ -x "$bin/$b" ] || die "cargo did not produce $bin/$b"
  if readelf -lW "$bin/$b" | grep -q "Requesting program interpreter"; then
    die "$bin/$b is dynamically linked; the initramfs and rootfs need static binaries"
  fi
done

# --- GRUB -------------------------------------------------------------------------
# Before the rootfs: it carries the images machined's installer writes.
step "GRUB images (UEFI BOOTX64.EFI, BIOS core.img, El Torito)"
grub_build_images "$work/grub"

# --- rootfs.sqsh ----------------------------------------------------------------
step "rootfs ($ROOTFS_COMPRESSION squashfs: machined, apid, mke2fs)"
rootfs=$work/rootfs
mkdir -p "$rootfs"
for d in proc sys dev run tmp var system etc boot mnt sbin; do
  mkdir -p "$rootfs/$d"
done
install -m 0755 "$bin/machined" "$rootfs/sbin/machined"
install -m 0755 "$bin/apid" "$rootfs/sbin/apid"
# machined formats STATE and EPHEMERAL with Debian's mke2fs: copy it with the
# shared libraries and the loader ldd names, at the paths ldd names.
copy_with_libs "$(readlink -f "$(command -v mke2fs)")" /sbin/mke2fs "$rootfs"
ln -s mke2fs "$rootfs/sbin/mkfs.ext4"
# The installer formats the EFI system partition with Debian's mkfs.fat and
# writes GRUB from these files (machined/src/install/).
copy_with_libs "$(readlink -f "$(command -v mkfs.fat)")" /sbin/mkfs.fat "$rootfs"
ln -s mkfs.fat "$rootfs/sbin/mkfs.vfat"
grub_boot_assets "$rootfs/usr/share/cairn/boot"
install -m 0644 /etc/mke2fs.conf "$rootfs/etc/mke2fs.conf"
cat >"$rootfs/etc/os-release" <<EOF
NAME="Cairn"
ID=cairn
VERSION="$CAIRN_VERSION"
VERSION_ID=${CAIRN_VERSION#v}
BUILD_ID=$CAIRN_BUILD_ID
PRETTY_NAME="Cairn $CAIRN_VERSION"
HOME_URL="https://example.invalid/cairn"
EOF
chmod 0644 "$rootfs/etc/os-release"
# The root is read-only; machined writes these under the /system tmpfs.
ln -s /system/etc/resolv.conf "$rootfs/etc/resolv.conf"
ln -s /system/etc/hosts "$rootfs/etc/hosts"
ln -s /system/etc/hostname "$rootfs/etc/hostname"
# Smoke test: the copied mke2fs runs against the copied libraries only.
if [ "$(id -u)" -eq 0 ]; then
  chroot "$rootfs" /sbin/mke2fs -V >"$work/mke2fs-check.log" 2>&1 ||
    { cat "$work/mke2fs-check.log" >&2; die "mke2fs does not run inside the rootfs (missing library?)"; }
fi
stamp "$rootfs"
case "$ROOTFS_COMPRESSION" in
  zstd) sqsh_opts=(-comp zstd -Xcompression-level 19) ;;
  lz4) sqsh_opts=(-comp lz4 -Xhc) ;;
  xz) sqsh_opts=(-comp xz) ;;
  none) sqsh_opts=(-noI -noD -noF -noX) ;;
  *) die "CAIRN_ROOTFS_COMPRESSION must be zstd, lz4, xz or none, not $ROOTFS_COMPRESSION" ;;
esac
# mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
env -u SOURCE_DATE_EPOCH mksquashfs "$rootfs" "$work/rootfs.sqsh" "${sqsh_opts[@]}" -noappend -no-progress -quiet \
  -all-root -reproducible -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" >/dev/null

# --- initramfs.img ----------------------------------------------------------------
step "initramfs (cpio, compression: $INITRAMFS_COMPRESSION)"
initramfs=$work/initramfs
mkdir -p "$initramfs"
install -m 0755 "$bin/init" "$initramfs/init"
install -m 0644 "$work/rootfs.sqsh" "$initramfs/rootfs.sqsh"
stamp "$initramfs"
(cd "$initramfs" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
  cpio --quiet --null --create --format=newc --reproducible --owner=0:0) >"$work/initramfs.cpio"
case "$INITRAMFS_COMPRESSION" in
  none) cp "$work/initramfs.cpio" "$OUT/initramfs.img" ;;
  zstd) zstd -q -19 -T1 -f "$work/initramfs.cpio" -o "$OUT/initramfs.img" ;;
  # The kernel reads only the legacy lz4 frame format (-l).
  lz4) lz4 -q -l -9 -f "$work/initramfs.cpio" "$OUT/initramfs.img" ;;
  *) die "CAIRN_INITRAMFS_COMPRESSION must be none, zstd or lz4, not $INITRAMFS_COMPRESSION" ;;
esac

# --- raw disk ------------------------------------------------------------------------
step "raw disk (GPT, 6 partitions, ESP + BOOT + STATE filesystems)"
disk_build_raw "$work/disk" "$OUT/metal-amd64.raw"

step "qcow2 (qemu-img convert)"
rm -f "$OUT/metal-amd64.qcow2"
qemu-img convert -f raw -O qcow2 "$OUT/metal-amd64.raw" "$OUT/metal-amd64.qcow2"

# --- ISO ----------------------------------------------------------------------------
step "ISO (xorriso, El Torito BIOS + UEFI, hybrid)"
grub_build_iso "$work/iso" "$OUT/metal-amd64.iso"

# What `cairnctl upgrade --image $OUT` tells the node it sends.
printf '%s %s\n' "$CAIRN_VERSION" "$CAIRN_BUILD_ID" >"$OUT/version"

step "sha256sums"
(cd "$OUT" && sha256sum vmlinuz initramfs.img metal-amd64.raw metal-amd64.qcow2 metal-amd64.iso >sha256sums)

# Signatures of what `cairnctl upgrade` sends (each over the asset's sha256).
# Old ones go first: a stale signature next to new bytes would be refused.
rm -f "$OUT/vmlinuz.sig" "$OUT/initramfs.img.sig" "$OUT/payload.sqsh.sig"
if [ -n "${SIGNING_KEY:-}" ]; then
  step "signatures (SIGNING_KEY=$SIGNING_KEY)"
  assets=("$OUT/vmlinuz" "$OUT/initramfs.img")
  [ -f "$OUT/payload.sqsh" ] && assets+=("$OUT/payload.sqsh")
  images/sign-upgrade.sh "$SIGNING_KEY" "${assets[@]}"
fi
step_done

echo "image: done in $(($(date +%s) - started)) s"
(cd "$OUT" && for f in vmlinuz initramfs.img $(ls payload.sqsh image-cache.sqsh 2>/dev/null) metal-amd64.iso metal-amd64.raw metal-amd64.qcow2; do
  printf '  %-20s %10s bytes (%s allocated)\n' "$f" "$(stat -c %s "$f")" "$(du -h "$f" | cut -f1)"
done)
