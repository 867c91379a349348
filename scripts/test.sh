#!/usr/bin/env bash
# Installs the dependencies, builds tether (Release) and runs the whole test suite, slow-labelled
# convergence tests included; then builds the CUDA kernels against the CPU emulator
# (tests/cuda_emulation, build-emulated/) and runs the GPU tests there, each under three schedule
# orders, so the kernels run even where no GPU is. Pass -LE slow to skip the slow tests locally.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j"$jobs" "$@"

cmake -S . -B build-emulated -DCMAKE_BUILD_TYPE=Release -DTETHER_CUDA=EMULATE \
  -DTETHER_BUILD_BENCHMARKS=OFF -DTETHER_BUILD_EXPERIMENTS=OFF
cmake --build build-emulated -j"$jobs"
ctest --test-dir build-emulated --output-on-failure -j"$jobs" "$@"
