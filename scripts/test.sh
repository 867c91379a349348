#!/usr/bin/env bash
# Installs the dependencies, builds tether (Release) and runs the whole test suite, slow-labelled
# convergence tests included. Pass -LE slow to skip those locally.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j"$jobs" "$@"
