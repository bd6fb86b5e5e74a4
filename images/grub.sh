# GRUB for the raw disk and the ISO (sourced by build-image.sh).
#
# One UEFI binary (BOOTX64.EFI, prefix /EFI/BOOT) serves both media; its
# grub.cfg next to it finds the boot menu. BIOS uses core.img in the raw
# disk's BIOS boot partition and eltorito.img on the ISO. Every module is
# built into the images, so no module directory is needed on any medium.

GRUB_MODULES=(
  normal configfile echo test true sleep reboot halt ls cat
  search search_label search_fs_uuid search_fs_file regexp loadenv
  part_gpt part_msdos fat ext2 iso9660
  linux serial terminal
)
GRUB_EFI_MODULES=(efi_gop efi_uga)
GRUB_BIOS_MODULES=(biosdisk)

# The GPT index of the BOOT partition (images/disk.sh lays it out).
GRUB_BOOT_PARTITION=3

# grub_menu PATH_PREFIX TITLE EXTRA_ARGS: the boot menu, loading
# PATH_PREFIX/vmlinuz and PATH_PREFIX/initramfs.img from $root.
grub_menu() {
  local prefix=$1 title=$2 extra=$3
  cat <<EOF
# Cairn $CAIRN_VERSION ($CAIRN_BUILD_ID) boot menu, written by images/grub.sh.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set default=0
set timeout=0

menuentry "$title" --id cairn {
  echo "cairn: loading $prefix/vmlinuz and $prefix/initramfs.img"
  linux $prefix/vmlinuz $CMDLINE${extra:+ $extra}
  initrd $prefix/initramfs.img
}
EOF
}

# grub_menu_ab: the installed system's boot menu on BOOT, slots A and B.
# /grub/grubenv (1024 bytes, written by machined) holds cairn_default, the
# slot that boots, and cairn_next, a one-shot slot to try: GRUB clears it
# with save_env before booting it, so a new slot that fails (its kernel
# panics, or machined reboots before marking it good) is never tried twice
# and the next boot is cairn_default again. machined makes a tried slot the
# default once it reaches steady state (machined/src/upgrade/). A slot whose
# files are missing falls back to the other one.
grub_menu_ab() {
  cat <<EOF
# Cairn $CAIRN_VERSION ($CAIRN_BUILD_ID) A/B boot menu, written by images/grub.sh.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=0
load_env --file /grub/grubenv cairn_default cairn_next
if [ "\$cairn_default" != B ]; then set cairn_default=A; fi
set cairn_boot=\$cairn_default
if [ "\$cairn_next" = A -o "\$cairn_next" = B ]; then
  set cairn_boot=\$cairn_next
  set cairn_next=
  save_env --file /grub/grubenv cairn_next
fi
if [ "\$cairn_boot" = B ]; then set fallback=A; else set fallback=B; fi
set default=\$cairn_boot

menuentry "Cairn (slot A)" --id A {
  echo "cairn: booting slot A"
  linux /A/vmlinuz $CMDLINE cairn.slot=A
  initrd /A/initramfs.img
}
menuentry "Cairn (slot B)" --id B {
  echo "cairn: booting slot B"
  linux /B/vmlinuz $CMDLINE cairn.slot=B
  initrd /B/initramfs.img
}
EOF
}

# grub_env NAME=VALUE...: a 1024-byte GRUB environment block on stdout
# (the format grub-editenv writes; machined writes the same).
grub_env() {
  local block="# GRUB Environment Block"$'\n' kv
  for kv in "$@"; do block+="$kv"$'\n'; done
  printf '%s' "$block"
  printf '%*s' $((1024 - ${#block})) '' | tr ' ' '#'
}

# grub_boot_assets DIR: what machined's installer writes to a disk, carried
# in the rootfs (grub-install is not in the image): BIOS boot.img and
# core.img, UEFI BOOTX64.EFI, the ESP's hand-over grub.cfg and the A/B menu.
grub_boot_assets() {
  local dir=$1 grub=$OUT/.build/grub
  mkdir -p "$dir"
  install -m 0644 /usr/lib/grub/i386-pc/boot.img "$dir/boot.img"
  install -m 0644 "$grub/core.img" "$dir/core.img"
  install -m 0644 "$grub/BOOTX64.EFI" "$dir/BOOTX64.EFI"
  grub_esp_cfg_disk >"$dir/esp-grub.cfg"
  grub_menu_ab >"$dir/grub.cfg"
  chmod 0644 "$dir/esp-grub.cfg" "$dir/grub.cfg"
}

# The ESP's grub.cfg on the raw disk: BOOT is partition 3 of the disk this
# GRUB was loaded from; fall back to the BOOT label if that disk has none.
grub_esp_cfg_disk() {
  cat <<EOF
# Cairn: hand over to the menu on the BOOT partition of this disk.
regexp --set=1:cairn_disk '^([^,]+)' "\$root"
if [ -n "\$cairn_disk" -a -f "(\$cairn_disk,gpt$GRUB_BOOT_PARTITION)/grub/grub.cfg" ]; then
  set root="\$cairn_disk,gpt$GRUB_BOOT_PARTITION"
else
  search --no-floppy --label BOOT --set=root
fi
set prefix=(\$root)/grub
configfile /grub/grub.cfg
EOF
}

# The ESP's grub.cfg on the ISO: the ISO 9660 volume, found by its UUID
# (GRUB derives it from the volume date, fixed by SOURCE_DATE_EPOCH).
grub_esp_cfg_iso() {
  cat <<EOF
# Cairn: hand over to the menu on this ISO.
search --no-floppy --fs-uuid --set=root $(iso_uuid)
set prefix=(\$root)/boot/grub
configfile /boot/grub/grub.cfg
EOF
}

# The ISO volume date as xorriso's --modification-date and GRUB's UUID.
iso_date() { date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S00; }
iso_uuid() { date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d-%H-%M-%S-00; }

# grub_build_images DIR: DIR/BOOTX64.EFI, DIR/core.img, DIR/eltorito.img.
grub_build_images() {
  local dir=$1
  mkdir -p "$dir"
  grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$dir/BOOTX64.EFI" \
    "${GRUB_MODULES[@]}" "${GRUB_EFI_MODULES[@]}"
  # The prefix "(,gptN)" means partition N of the disk the BIOS booted from.
  grub-mkimage -O i386-pc -p "(,gpt$GRUB_BOOT_PARTITION)/grub" -o "$dir/core.img" \
    "${GRUB_MODULES[@]}" "${GRUB_BIOS_MODULES[@]}"
  grub-mkimage -O i386-pc-eltorito -p /boot/grub -o "$dir/eltorito.img" \
    "${GRUB_MODULES[@]}" "${GRUB_BIOS_MODULES[@]}"
}

# fat_image FILE SIZE_KIB VOLID LABEL SRC_DIR: a FAT image holding SRC_DIR's
# tree, with fixed volume id and timestamps (mtools reads SOURCE_DATE_EPOCH
# for directories it creates; mcopy -m keeps the stamped file times).
fat_image() {
  local file=$1 size=$2 volid=$3 label=$4 src=$5 fat=()
  rm -f "$file"
  # FAT32 needs 65525 clusters; smaller images get FAT12/16 picked by mkfs.
  [ "$size" -ge 65536 ] && fat=(-F 32)
  mkfs.vfat --invariant -i "$volid" -n "$label" "${fat[@]}" -C "$file" "$size" >/dev/null
  local d f
  while IFS= read -r -d '' d; do
    MTOOLS_SKIP_CHECK=1 mmd -i "$file" "::/$d"
  done < <(cd "$src" && find . -mindepth 1 -type d -printf '%P\0' | LC_ALL=C sort -z)
  while IFS= read -r -d '' f; do
    MTOOLS_SKIP_CHECK=1 mcopy -m -i "$file" "$src/$f" "::/$f"
  done < <(cd "$src" && find . -type f -printf '%P\0' | LC_ALL=C sort -z)
}

# grub_build_iso DIR ISO: the live ISO. BIOS: El Torito eltorito.img and,
# written to USB, GRUB's hybrid MBR; UEFI: an El Torito FAT image that is also
# a GPT/MBR partition (USB). Kernel and initramfs under /boot.
grub_build_iso() {
  local dir=$1 iso=$2 tree=$1/tree
  local grub=$OUT/.build/grub
  mkdir -p "$tree/boot/grub" "$tree/EFI/BOOT" "$dir/esp/EFI/BOOT"
  cp "$OUT/vmlinuz" "$tree/boot/vmlinuz"
  cp "$OUT/initramfs.img" "$tree/boot/initramfs.img"
  # The Kubernetes payload, where machined (live) and the installer look for it.
  if [ -f "$OUT/payload.sqsh" ]; then mkdir -p "$tree/A" && cp "$OUT/payload.sqsh" "$tree/A/payload.sqsh"; fi
  # The image cache (IMAGE_CACHE=), at the root: the installer copies it to BOOT.
  if [ -f "$OUT/image-cache.sqsh" ]; then cp "$OUT/image-cache.sqsh" "$tree/image-cache.sqsh"; fi
  grub_menu /boot "Cairn $CAIRN_VERSION (live)" "" >"$tree/boot/grub/grub.cfg"
  cp "$grub/eltorito.img" "$tree/boot/grub/eltorito.img"
  # The ESP image and, in case the firmware hands GRUB the CD itself as its
  # device, the same files in the ISO tree.
  cp "$grub/BOOTX64.EFI" "$dir/esp/EFI/BOOT/BOOTX64.EFI"
  grub_esp_cfg_iso >"$dir/esp/EFI/BOOT/grub.cfg"
  cp "$dir/esp/EFI/BOOT/"* "$tree/EFI/BOOT/"
  stamp "$dir/esp"
  local kib=$(( ($(du -sk --apparent-size "$dir/esp" | cut -f1) + 512) / 32 * 32 + 32 ))
  fat_image "$tree/boot/grub/efi.img" "$kib" CA1B0003 CAIRN_EFI "$dir/esp"
  stamp "$tree"
  rm -f "$iso"
  xorriso -as mkisofs -quiet -graft-points \
    --modification-date="$(iso_date)" --set_all_file_dates "=$SOURCE_DATE_EPOCH" \
    -volid "CAIRN" -r \
    -c boot/grub/boot.cat \
    -b boot/grub/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table \
    --grub2-boot-info --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
    --efi-boot boot/grub/efi.img -efi-boot-part --efi-boot-image \
    --protective-msdos-label \
    -o "$iso" "$tree" 2>"$dir/xorriso.log" || { cat "$dir/xorriso.log" >&2; return 1; }
}
