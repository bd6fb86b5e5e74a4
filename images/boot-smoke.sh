#!/usr/bin/env bash
# Boots the images in QEMU (TCG) with each firmware and waits until the
# kernel runs /init: proof that firmware -> GRUB -> kernel + initramfs works.
# Prints the wall time and the guest's kernel timestamp at that point.
#
# usage: boot-smoke.sh [CASE...]   (default: all)
#   raw-bios raw-uefi   the raw disk as a virtio disk
#   iso-bios iso-uefi   the ISO as a CD-ROM
#   usb-bios usb-uefi   the ISO as a plain disk (what `dd` to a USB stick gives)
# env:   SMOKE_MARKER  console text to wait for (default "Run /init as init process")
#        SMOKE_TIMEOUT seconds per boot (default 300)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MARKER=${SMOKE_MARKER:-Run /init as init process}
TIMEOUT=${SMOKE_TIMEOUT:-300}
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(raw-bios raw-uefi iso-bios iso-uefi usb-bios usb-uefi)

logdir=$OUT/smoke
mkdir -p "$logdir"
failed=0

for c in "${cases[@]}"; do
  log=$logdir/$c.log
  rm -f "$log"
  args=(-accel tcg -m 2048 -smp 2 -display none -monitor none -no-reboot
    -serial "file:$log" -nic none)
  case "$c" in
    raw-*) args+=(-drive "file=$OUT/metal-amd64.raw,format=raw,if=virtio,snapshot=on") ;;
    iso-*) args+=(-cdrom "$OUT/metal-amd64.iso") ;;
    usb-*) args+=(-drive "file=$OUT/metal-amd64.iso,format=raw,if=ide,snapshot=on") ;;
    *) die "unknown case $c (raw-bios raw-uefi iso-bios iso-uefi usb-bios usb-uefi)" ;;
  esac
  if [[ "$c" == *-uefi ]]; then
    cp "$OVMF_VARS" "$logdir/$c.vars.fd"
    args+=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE"
      -drive "if=pflash,format=raw,file=$logdir/$c.vars.fd")
  fi
  start=$(date +%s.%N)
  qemu-system-x86_64 "${args[@]}" &
  qemu=$!
  result=timeout
  while kill -0 "$qemu" 2>/dev/null; do
    if grep -qF -- "$MARKER" "$log" 2>/dev/null; then
      result=ok
      break
    fi
    if awk -v s="$start" -v t="$TIMEOUT" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - s > t) }'; then
      break
    fi
    sleep 0.2
  done
  wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  kill "$qemu" 2>/dev/null || true
  wait "$qemu" 2>/dev/null || true
  if [ "$result" = ok ]; then
    ktime=$(grep -F -- "$MARKER" "$log" | head -n 1 | sed -n 's/^.*\[ *\([0-9.]*\)\].*$/\1/p')
    printf '  ok   %-9s /init after %6ss wall, kernel timestamp %ss\n' "$c" "$wall" "${ktime:-?}"
  else
    # Keep the failed boot's log: a later run of the same case overwrites $log.
    kept=$logdir/$c.failed-$(date +%Y%m%d-%H%M%S).log
    cp "$log" "$kept"
    printf '  FAIL %-9s no "%s" after %ss (log: %s)\n' "$c" "$MARKER" "$wall" "$kept"
    tail -n 15 "$log" | sed 's/^/       | /'
    failed=1
  fi
done
exit "$failed"
