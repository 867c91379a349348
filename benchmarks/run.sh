#!/usr/bin/env bash
# Builds (Release) and runs tether_benchmarks, writing Google Benchmark JSON to
# benchmarks/results/tether_benchmarks.json (or the path given as $1). Extra arguments after the
# path go to the binary, e.g. --benchmark_filter=Knapsack. Then times the numpy baselines
# (benchmarks/numpy_baselines.py) and prints tether's speed-up over them (benchmarks/compare.py).
# The binary is built for this machine's instruction set (TETHER_NATIVE=ON, in build-native/);
# TETHER_BENCH_NATIVE=0 benchmarks the portable build in build/ instead.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/tether_benchmarks.json}
shift || true
jobs=$(nproc 2>/dev/null || echo 2)
if [ "${TETHER_BENCH_NATIVE:-1}" = 1 ]; then
  dir=build-native
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DTETHER_NATIVE=ON -DTETHER_BUILD_TESTS=OFF \
    -DTETHER_BUILD_EXPERIMENTS=OFF > /dev/null
  cmake --build "$dir" -j"$jobs" --target tether_benchmarks > /dev/null
else
  dir=build
  bash scripts/build.sh > /dev/null
fi
mkdir -p "$(dirname "$out")"
"./$dir/benchmarks/tether_benchmarks" --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@"
echo "JSON: $out"
# The numpy baselines of the same iterations, timed here too, and the comparison table.
py=python3
"$py" -c "import numpy" 2>/dev/null || py=/usr/bin/python3
numpy_out="$(dirname "$out")/numpy_baselines.json"
"$py" benchmarks/numpy_baselines.py "$numpy_out" > /dev/null
echo "JSON: $numpy_out"
"$py" benchmarks/compare.py "$out" "$numpy_out"
