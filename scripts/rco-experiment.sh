#!/usr/bin/env bash
# Installs the dependencies, builds tether (Release) and runs the RCO experiment
# (experiments/rco_mckp), printing its table. Arguments go to rco_mckp: --quick (under two
# minutes), --seeds N, --out DIR (default results/rco_mckp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
out_given=0
for a in "$@"; do [ "$a" = "--out" ] && out_given=1; done
if [ $out_given -eq 0 ]; then set -- "$@" --out results/rco_mckp; fi
./build/experiments/rco_mckp/rco_mckp "$@"
