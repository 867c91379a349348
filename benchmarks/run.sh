#!/usr/bin/env bash
# Builds (Release) and runs tether_benchmarks, writing Google Benchmark JSON to
# benchmarks/results/tether_benchmarks.json (or the path given as $1). Extra arguments after the
# path go to the binary, e.g. --benchmark_filter=Knapsack.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/tether_benchmarks.json}
shift || true
bash scripts/build.sh > /dev/null
mkdir -p "$(dirname "$out")"
./build/benchmarks/tether_benchmarks --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@"
echo "JSON: $out"
