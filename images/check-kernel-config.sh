#!/usr/bin/env bash
# Checks that every option the fragments in kernel-config/ ask for survived
# `make olddefconfig`. tinyconfig starts from "everything off", and Kconfig
# silently drops a requested option whose dependencies are not met; this
# script lists each one and fails so the fragment gets fixed.
#
# usage: check-kernel-config.sh FINAL_CONFIG FRAGMENT...
set -euo pipefail

final=$1
shift
[ -f "$final" ] || { echo "check-kernel-config: no such config file: $final" >&2; exit 2; }

missing=0
for fragment in "$@"; do
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*)
        option=${line%%=*}
        if ! grep -qxF -- "$line" "$final"; then
          got=$(grep -E "^(# )?${option}[= ]" "$final" || echo "absent")
          echo "  $(basename "$fragment"): requested $line, got: $got"
          missing=$((missing + 1))
        fi
        ;;
      "# CONFIG_"*" is not set")
        option=${line#\# }
        option=${option%% *}
        if grep -qE "^${option}=" "$final"; then
          echo "  $(basename "$fragment"): requested $option off, got: $(grep -E "^${option}=" "$final")"
          missing=$((missing + 1))
        fi
        ;;
    esac
  done <"$fragment"
done

if [ "$missing" -ne 0 ]; then
  echo "check-kernel-config: $missing requested option(s) did not stick (unmet dependencies?)" >&2
  exit 1
fi
echo "check-kernel-config: every requested option is set"
