#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after another (the machines
# have 2 cores; libFuzzer uses one), then prints each target's executions.
#   fuzz/run.sh SECONDS [TARGET...]
# `make fuzz` (FUZZ_TIME, default 600) and `make fuzz-smoke` (a few seconds
# each) call it. The committed seeds (fuzz/corpus/<target>) and the inputs
# of fixed crashes (fuzz/regressions/<target>) are read; what a run learns
# goes to $CAIRN_CACHE/fuzz/corpus/<target> and crashes to
# $CAIRN_CACHE/fuzz/artifacts/<target>, outside the checkout.
# cargo fuzz needs a nightly toolchain (rustup's, if installed; else the
# stable one with RUSTC_BOOTSTRAP=1) and cargo-fuzz (installed if missing).
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
cache=${CAIRN_CACHE:-$HOME/.cache/cairn}/fuzz
export CARGO_TARGET_DIR=${CAIRN_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$here/../target}-fuzz}

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  # cargo fuzz passes nightly-only flags (-Zsanitizer); stable accepts them
  # when told it is bootstrapping the compiler.
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cd "$here"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
echo "fuzz: building ${#targets[@]} targets (address sanitizer, debug assertions)"
cargo "${toolchain[@]}" fuzz build -O -a

summary=()
status=0
for t in "${targets[@]}"; do
  work=$cache/corpus/$t
  artifacts=$cache/artifacts/$t
  mkdir -p "$work" "$artifacts" "$cache/logs"
  inputs=("$work" "$here/corpus/$t")
  [ -d "$here/regressions/$t" ] && inputs+=("$here/regressions/$t")
  max_len=4096
  case $t in config_parse | config_patch | upgrade_stream) max_len=65536 ;; esac
  log=$cache/logs/$t.log
  echo "fuzz: $t for $seconds s (log: $log)"
  if cargo "${toolchain[@]}" fuzz run -O -a "$t" "${inputs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -max_len="$max_len" -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and $artifacts)"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  summary+=("$(printf '%-16s %12s execs in %5s s  %s' "$t" "${runs:-?}" "$seconds" "$result")")
  tail -3 "$log" | sed 's/^/    /'
done
echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
exit $status
