# The raw disk image (sourced by build-image.sh). Built on files only: no
# loop devices, no mounts. Filesystems are made as separate image files
# (mkfs.vfat + mtools, mkfs.ext4 -d) and copied to their partition offsets.

DISK_SIZE_MIB=2048
# name  size-MiB  sgdisk-type  (partition number = line number; sizes from
# CONTRACTS.md; EPHEMERAL takes the rest and is grown by machined).
DISK_LAYOUT=(
  "EFI 100 EF00"
  "BIOS 1 EF02"
  "BOOT 1000 8300"
  "META 1 8300"
  "STATE 100 8300"
  "EPHEMERAL 0 8300"
)
# GRUB's i386-pc boot.img fields (grub-core/boot/i386/pc/boot.S,
# include/grub/i386/pc/boot.h) and the first blocklist at the end of
# diskboot.img, the first sector of core.img (grub-core/boot/i386/pc/diskboot.S).
GRUB_BOOT_MACHINE_KERNEL_SECTOR=0x5c
GRUB_BOOT_MACHINE_BOOT_DRIVE=0x64
GRUB_BOOT_MACHINE_DRIVE_CHECK=0x66
GRUB_BOOT_MBR_CODE_SIZE=440
GRUB_DISKBOOT_BLOCKLIST=$((512 - 12))
GRUB_DISKBOOT_SEGMENT=0x820

# part_start_mib N: first MiB of partition N (1-based); partitions are packed
# from 1 MiB in layout order.
part_start_mib() {
  local n=$1 start=1 i
  for ((i = 0; i < n - 1; i++)); do
    set -- ${DISK_LAYOUT[$i]}
    start=$((start + $2))
  done
  echo "$start"
}

# write_at IMAGE DISK START_MIB: copy a filesystem image into the disk,
# keeping holes sparse.
write_at() {
  dd if="$1" of="$2" bs=1M seek="$3" conv=notrunc,sparse status=none
}

# ext4_image FILE SIZE_MIB LABEL [SRC_DIR]: a reproducible ext4 image (fixed
# UUID and directory hash seed, E2FSPROGS_FAKE_TIME for every timestamp).
ext4_image() {
  local file=$1 size=$2 label=$3 src=${4:-}
  local opts=(-q -F -t ext4 -b 4096 -T default -L "$label" -U "$(uuid_for "fs-$label")"
    -E "hash_seed=$(uuid_for "hash-$label"),root_owner=0:0,nodiscard")
  [ -n "$src" ] && opts+=(-d "$src")
  rm -f "$file"
  mke2fs "${opts[@]}" "$file" "${size}M" >/dev/null
  # mke2fs 1.47.0 -d copies each file's ctime, which no tool can set on the
  # source tree; reset them to SOURCE_DATE_EPOCH.
  if [ -n "$src" ]; then
    (cd "$src" && find . -printf '%P\n' | LC_ALL=C sort |
      sed "s|^|set_inode_field /|; s|\$| ctime @$SOURCE_DATE_EPOCH|") >"$file.ctime"
    debugfs -w -f "$file.ctime" "$file" >/dev/null 2>"$file.ctime.log" ||
      { cat "$file.ctime.log" >&2; return 1; }
    if grep -v '^debugfs' "$file.ctime.log" | grep -q .; then
      cat "$file.ctime.log" >&2
      die "debugfs could not reset ctimes in $file"
    fi
  fi
}

# install_bios_grub DISK CORE_IMG BIOS_PART_START_MIB: what grub-bios-setup
# does for a GPT disk with a BIOS boot partition, done on the image file:
# core.img goes into the partition, boot.img's code into the MBR (keeping
# the protective partition table), and both learn where core.img lives.
install_bios_grub() {
  local disk=$1 core=$2 start_lba=$(($3 * 2048))
  local size sectors
  size=$(stat -c %s "$core")
  sectors=$(((size + 511) / 512))
  [ "$sectors" -le 2048 ] || die "GRUB core.img ($size bytes) does not fit the 1 MiB BIOS boot partition"
  local patched=$OUT/.build/core-patched.img
  cp "$core" "$patched"
  # diskboot.img loads the rest of core.img from this one extent.
  le_bytes $((start_lba + 1)) 8 | patch_bytes "$patched" "$GRUB_DISKBOOT_BLOCKLIST"
  le_bytes $((sectors - 1)) 2 | patch_bytes "$patched" $((GRUB_DISKBOOT_BLOCKLIST + 8))
  le_bytes $((GRUB_DISKBOOT_SEGMENT)) 2 | patch_bytes "$patched" $((GRUB_DISKBOOT_BLOCKLIST + 10))
  dd if="$patched" of="$disk" bs=512 seek="$start_lba" conv=notrunc status=none
  # MBR: boot code only; bytes 440.. hold the disk signature and partitions.
  dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs="$GRUB_BOOT_MBR_CODE_SIZE" count=1 conv=notrunc status=none
  le_bytes "$start_lba" 8 | patch_bytes "$disk" $((GRUB_BOOT_MACHINE_KERNEL_SECTOR))
  # 0xff: load core.img from the drive the BIOS booted (DL).
  printf '\xff' | patch_bytes "$disk" $((GRUB_BOOT_MACHINE_BOOT_DRIVE))
  # Hard disk: replace the floppy-probe jump with NOPs, as grub-bios-setup
  # does for buggy BIOSes that pass a wrong drive number.
  printf '\x90\x90' | patch_bytes "$disk" $((GRUB_BOOT_MACHINE_DRIVE_CHECK))
}

# disk_build_raw DIR DISK: the raw GPT disk image.
disk_build_raw() {
  local dir=$1 disk=$2 grub=$OUT/.build/grub
  mkdir -p "$dir"

  # EFI system partition: GRUB and its hand-over config.
  local esp=$dir/esp
  mkdir -p "$esp/EFI/BOOT"
  cp "$grub/BOOTX64.EFI" "$esp/EFI/BOOT/BOOTX64.EFI"
  grub_esp_cfg_disk >"$esp/EFI/BOOT/grub.cfg"
  stamp "$esp"
  set -- ${DISK_LAYOUT[0]}
  fat_image "$dir/efi.img" $(($2 * 1024)) CA1B0001 EFI "$esp"

  # BOOT: slot A's kernel and initramfs (and the payload when the build
  # has one), the image cache when the build has one, the A/B boot menu and its environment (slot A, nothing to try).
  local boot=$dir/boot
  mkdir -p "$boot/A" "$boot/grub"
  cp "$OUT/vmlinuz" "$boot/A/vmlinuz"
  cp "$OUT/initramfs.img" "$boot/A/initramfs.img"
  if [ -f "$OUT/payload.sqsh" ]; then cp "$OUT/payload.sqsh" "$boot/A/payload.sqsh"; fi
  # The image cache (IMAGE_CACHE=) beside the slots: upgrades keep it.
  if [ -f "$OUT/image-cache.sqsh" ]; then cp "$OUT/image-cache.sqsh" "$boot/image-cache.sqsh"; fi
  grub_menu_ab >"$boot/grub/grub.cfg"
  grub_env cairn_default=A cairn_next= >"$boot/grub/grubenv"
  chmod -R u=rwX,go=rX "$boot"
  stamp "$boot"
  set -- ${DISK_LAYOUT[2]}
  ext4_image "$dir/boot.img" "$2" BOOT "$boot"
  set -- ${DISK_LAYOUT[4]}
  ext4_image "$dir/state.img" "$2" STATE

  # The partition table, with fixed GUIDs.
  rm -f "$disk"
  truncate -s "${DISK_SIZE_MIB}M" "$disk"
  local args=(--clear --disk-guid="$(uuid_for disk)") n=0 entry
  for entry in "${DISK_LAYOUT[@]}"; do
    set -- $entry
    n=$((n + 1))
    local start=$(($(part_start_mib "$n") * 2048)) end=0
    [ "$2" -gt 0 ] && end="+$2M"
    args+=(--new="$n:$start:$end" --typecode="$n:$3" --change-name="$n:$1"
      --partition-guid="$n:$(uuid_for "part-$1")")
  done
  sgdisk "${args[@]}" "$disk" >"$dir/sgdisk.log" || { cat "$dir/sgdisk.log" >&2; return 1; }

  write_at "$dir/efi.img" "$disk" "$(part_start_mib 1)"
  write_at "$dir/boot.img" "$disk" "$(part_start_mib 3)"
  write_at "$dir/state.img" "$disk" "$(part_start_mib 5)"
  install_bios_grub "$disk" "$grub/core.img" "$(part_start_mib 2)"
}
