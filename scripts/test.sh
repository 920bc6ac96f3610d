#!/usr/bin/env bash
# The test command: installs what is missing, builds dmri twice (release, and
# AddressSanitizer + UBSan), and runs the whole ctest suite in both builds.
# Usage: scripts/test.sh [ctest args...], e.g. scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
JOBS=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS"
echo "== tests, release build"
(cd build && ctest --output-on-failure -j"$JOBS" "$@")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDMRI_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$JOBS"
echo "== tests, AddressSanitizer + UBSan build"
# Leak checks stay on; the python parity scripts run the sanitized harnesses.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j"$JOBS" "$@")

# Fuzz the parsers for a bounded time (clang, libFuzzer, ASan + UBSan; builds
# build-fuzz): 30 s per harness by default, DMRI_FUZZ_SECONDS=0 skips it.
if [ "${DMRI_FUZZ_SECONDS:-30}" -gt 0 ]; then
  echo "== fuzzing, ${DMRI_FUZZ_SECONDS:-30} s per harness"
  scripts/fuzz.sh "${DMRI_FUZZ_SECONDS:-30}"
fi
