#!/usr/bin/env bash
# Installs the Debian 12 packages dmri needs to build and test (as root; with
# sudo otherwise). Does nothing when everything is already there.
# --list prints the package names only (.ci/run installs them itself);
# --list-build only those needed to build and run dmri (no test tools).
set -euo pipefail

# What building and running dmri needs (deploy/ansible_setup.yml installs
# these on every cluster host: install-deps.sh --list-build).
BUILD_PACKAGES=(
  build-essential cmake pkg-config
  libnifti2-dev zlib1g-dev libisal-dev libopenblas-dev liblapacke-dev
  libzmq3-dev libmsgpack-dev
  # JSON of the scheduler's status document (dmri-submit --status)
  libjansson-dev
  # dmri-download: S3 over libcurl (SigV4), MD5 from libcrypto
  libcurl4-openssl-dev libssl-dev
  # the scheduler's status page (HTTP server in its own thread), --preview PNGs
  libmicrohttpd-dev libpng-dev
)
# What the tests need on top.
TEST_PACKAGES=(
  # the numerical reference for the parity tests: dipy 1.6 and friends
  python3-dipy python3-nibabel python3-scipy python3-numpy
  # a scripted peer for the protocol tests of the daemons
  python3-zmq python3-msgpack
  # dmri-download's test runs an S3 server from npm (@20minutes/s3rver,
  # Node 20) and Debian's aws CLI. npm is not listed: the Node 20 nodejs
  # package ships it and conflicts with Debian's npm package; the test says
  # so when npm is missing.
  nodejs awscli
  # the deploy test: ansible over real SSH between network namespaces; the
  # partition test: nftables in a network namespace
  ansible openssh-server openssh-client iproute2 nftables
  # scripts/fuzz.sh: libFuzzer comes with clang's runtime libraries
  clang libclang-rt-14-dev
  # the dashboard test renders the page in headless Chromium and checks
  # /metrics with promtool (Debian's prometheus package)
  chromium prometheus
)
PACKAGES=("${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}")

if [ "${1:-}" = "--list-build" ]; then
  echo "${BUILD_PACKAGES[@]}"
  exit 0
fi
if [ "${1:-}" = "--list" ]; then
  echo "${PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
