#!/usr/bin/env bash
# Fuzzes dmri's input parsers with libFuzzer under ASan + UBSan: the protocol
# decoder, the NIfTI reader, the bvals/bvecs parsers (tests/fuzz/fuzz_*.c).
# Builds with clang in build-fuzz (-DDMRI_FUZZ=ON), then runs each harness for
# SECONDS (default 60) from its seed corpus and regression inputs. Exits 1 if
# any harness finds a crash, leak, timeout or memory blow-up; the input is
# left in build-fuzz/crashes/<harness>/ — fix the bug, then copy the input to
# tests/fuzz/regressions/<harness>/ so every build replays it (ctest
# fuzz_replay_<harness>). New coverage found stays in build-fuzz/corpus/, not
# in the repository. Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(proto nifti gradients)
JOBS=${DMRI_FUZZ_JOBS:-$(nproc)}

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DDMRI_FUZZ=ON >/dev/null
targets=()
for h in "${HARNESSES[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build build-fuzz -j"$JOBS" "${targets[@]}" >/dev/null

# -max_len per harness: a few times the largest seed; big enough for a
# NIfTI header plus extensions plus some data, small enough to run fast.
max_len() {
  case "$1" in
    proto) echo 65536 ;;
    nifti) echo 16384 ;;
    *) echo 16384 ;;
  esac
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
for h in "${HARNESSES[@]}"; do
  work=build-fuzz/corpus/$h
  crashes=build-fuzz/crashes/$h
  mkdir -p "$work" "$crashes"
  log=build-fuzz/fuzz-$h.log
  echo "== fuzz_$h for ${SECS}s (log: $log)"
  if build-fuzz/tests/fuzz/fuzz_"$h" "$work" tests/fuzz/corpus/"$h" tests/fuzz/regressions/"$h" \
       -max_total_time="$SECS" -max_len="$(max_len "$h")" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | tr '\n' ' '
    grep -Eo "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+" "$log" | tail -1
  else
    failed=1
    echo "fuzz_$h FAILED: $(grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -5)"
    tail -40 "$log"
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: crash found (inputs in build-fuzz/crashes/)"
  exit 1
fi
echo "fuzz: no crash in ${SECS}s per harness"
