#!/usr/bin/env bash
# The demo: installs what is missing, builds dmri, writes a synthetic subject
# with dmri-phantom and runs the whole pipeline on it with dmri-run.
# Usage: scripts/demo.sh [--full]   (--full: a full HCP-size phantom, 4.2 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"

if [ "${1:-}" = "--full" ]; then
  SHAPE=(145 174 145); ARGS=()
else
  # A smaller head with HCP's gradient scheme trimmed to 65 volumes: a minute.
  SHAPE=(96 112 96); ARGS=(--b0 5 --dirs 20)
fi
mkdir -p demo
build/client/dmri-phantom --out demo/phantom --shape "${SHAPE[@]}" "${ARGS[@]}"
build/client/dmri-run --out demo/out demo/phantom
echo "demo: FA map written to $(pwd)/demo/out/phantom/dti_fa.nii.gz"
