#!/usr/bin/env bash
# Builds (Release) and runs tether_benchmarks, writing Google Benchmark JSON to
# benchmarks/results/tether_benchmarks.json (or the path given as $1). Extra arguments after the
# path go to the binary, e.g. --benchmark_filter=Knapsack. Then times the numpy baselines
# (benchmarks/numpy_baselines.py) and prints tether's speed-up over them (benchmarks/compare.py).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/tether_benchmarks.json}
shift || true
bash scripts/build.sh > /dev/null
mkdir -p "$(dirname "$out")"
./build/benchmarks/tether_benchmarks --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@"
echo "JSON: $out"
# The numpy baselines of the same iterations, timed here too, and the comparison table.
py=python3
"$py" -c "import numpy" 2>/dev/null || py=/usr/bin/python3
numpy_out="$(dirname "$out")/numpy_baselines.json"
"$py" benchmarks/numpy_baselines.py "$numpy_out" > /dev/null
echo "JSON: $numpy_out"
"$py" benchmarks/compare.py "$out" "$numpy_out"
