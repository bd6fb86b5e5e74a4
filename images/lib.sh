# Shared helpers for the image scripts (sourced, not executed).
# Progress output: one line per step with its duration; long steps show a
# spinner with the last log line on a terminal, and a line every 30 s in CI.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
OUT=${OUT:-_out}
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac

_step_name=""
_step_start=0
# Name the step that failed (set -e stops the script right after).
trap '[ -n "$_step_name" ] && echo "FAILED: $_step_name" >&2' ERR

# step NAME: start a named step (ends the previous one).
step() {
  step_done
  _step_name=$1
  _step_start=$(date +%s.%N)
  if [ -t 1 ]; then printf '  .. %s' "$_step_name"; fi
}

# step_done: print the running step with its duration.
step_done() {
  [ -n "$_step_name" ] || return 0
  local secs
  secs=$(awk -v s="$_step_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  if [ -t 1 ]; then printf '\r\033[K'; fi
  printf '  ok %-62s %6ss\n' "$_step_name" "$secs"
  _step_name=""
}

# run_logged LOG CMD...: run a long command with output to LOG, showing
# progress; on failure print the log's tail and exit.
run_logged() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  local pid=$! spin='|/-\' i=0 last_report
  last_report=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    if [ -t 1 ]; then
      local tail_line
      tail_line=$(tail -n 1 "$log" 2>/dev/null | cut -c1-60)
      printf '\r\033[K  %s %s: %s' "${spin:i++%4:1}" "$_step_name" "$tail_line"
      sleep 0.5
    else
      sleep 2
      if [ $(($(date +%s) - last_report)) -ge 30 ]; then
        last_report=$(date +%s)
        printf '     %s: %s\n' "$_step_name" "$(tail -n 1 "$log" 2>/dev/null | cut -c1-70)"
      fi
    fi
  done
  if ! wait "$pid"; then
    [ -t 1 ] && printf '\r\033[K'
    echo "FAILED: $_step_name (log: $log)" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

die() {
  echo "error: $*" >&2
  exit 1
}

# copy_with_libs SRC DEST_PATH ROOT: install the dynamically linked program
# SRC as ROOT/DEST_PATH, and every shared library and the loader that ldd
# lists at the same paths under ROOT (symlinks resolved to plain files).
copy_with_libs() {
  local src=$1 dest=$2 root=$3 lib
  install -D -m 0755 "$src" "$root$dest"
  for lib in $(ldd "$src" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    [ -e "$root$lib" ] && continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

# uuid_for NAME: a fixed UUID derived from NAME, so disk and filesystem
# identifiers are the same in every build (reproducible images).
uuid_for() {
  local h
  h=$(printf 'cairn:%s' "$1" | sha256sum | cut -c1-32)
  # Version 4 layout (variant bits set) so tools accept it as a normal UUID.
  printf '%s-%s-4%s-%x%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" \
    $(((0x${h:16:1} & 0x3) | 0x8)) "${h:17:3}" "${h:20:12}"
}

# le_bytes VALUE COUNT: VALUE as COUNT little-endian bytes on stdout.
le_bytes() {
  local v=$1 n=$2 i out=""
  for ((i = 0; i < n; i++)); do
    out+=$(printf '\\x%02x' $(((v >> (8 * i)) & 0xff)))
  done
  printf '%b' "$out"
}

# patch_bytes FILE OFFSET: write stdin into FILE at byte OFFSET in place.
patch_bytes() {
  dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
