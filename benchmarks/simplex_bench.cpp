// Batched projections onto simplex-type sets (core/simplex_projections.hpp), each algorithm.
//
//   BM_Simplex<Alg>/N/n        N elements in rows of n, every row onto {p >= 0, sum p = 1}
//   BM_L1Ball<Alg>/N/n         the same rows onto {|p|_1 <= 1}
//   BM_BoxSection<Alg>/N/n     onto {0 <= p <= 2/n, w^T p = 1}, w_i in [0.5, 1.5) per entry
//   BM_BoxSectionNewtonWideBoxes/N/n   l_i in [-1, 0), u_i - l_i in [0, 3), c mid-range: many
//                              entries free at the root
//   BM_BoxSectionNewtonNearEnd/N/n     the narrow caps with c at 99.9% of [w^T l, w^T u]
//   BM_SimplexLongVector<Alg>/N    one vector of N entries onto the simplex (one row: serial)
//   BM_<Simplex|L1Ball>CondatFloat/N/n, BM_BoxSectionNewtonFloat/N/n   the same rows in
//                              float (bytes: 8 N)
//   BM_SimplexCopyOnly/N/n     the copy of the input each iteration makes (the projection is
//                              in place, so every iteration starts from a fresh copy of x);
//                              below 1e6 entries it is timed: subtract it to get the
//                              projection alone
//   (The linear-time CPU variants also run at 1e8 entries, the sort-based ones stop at 1e7.)
//   BM_<...>Gpu                the device launcher, host-to-device and back included; only
//                              registered when tether has CUDA and a device is present
//   BM_<...>GpuResident        the rows held on the device (device::DeviceRows), uploaded
//                              outside the timing: the kernel's time, up to 1e8 entries
//
// bytes/s counts the least traffic of an out-of-place projection: read x, write p (16 N
// bytes), the same read + write convention as BM_MemoryCopy in rco_bench.cpp. The input is
// Gaussian with per-row scale and offset (active sets from a few entries to all of them).
#include <benchmark/benchmark.h>

#include <cmath>
#include <tether/core/rng.hpp>
#include <tether/core/simplex_projections.hpp>

namespace {

using tether::Index;
using tether::Matrix;

Matrix input(Index total, Index n) {
  tether::Rng rng(7);
  const Index rows = total / n;
  Matrix x(rows, n);
  for (Index r = 0; r < rows; ++r) {
    const double scale = std::pow(10.0, rng.uniform(-1.0, 1.0));
    const double offset = scale * rng.uniform(-1.0, 1.0);
    for (Index j = 0; j < n; ++j) x(r, j) = offset + scale * rng.normal();
  }
  return x;
}

/// The narrow caps {0 <= p <= 2/n}, weights in [0.5, 1.5), c at `fraction` of [w^T l, w^T u].
tether::BoxSection box_set(Index n, tether::BoxSectionAlgorithm algorithm, double fraction = 0.5) {
  tether::Rng rng(8);
  tether::Vector w(n);
  for (Index i = 0; i < n; ++i) w[i] = rng.uniform(0.5, 1.5);
  const double cap = 2.0 / static_cast<double>(n);
  return tether::BoxSection(tether::Vector::Zero(n), tether::Vector::Constant(n, cap), w,
                            w.sum() * cap * fraction, algorithm);
}

/// Wide random boxes: l_i in [-1, 0), u_i = l_i + [0, 3), weights in [0.5, 1.5), c mid-range.
tether::BoxSection wide_box_set(Index n) {
  tether::Rng rng(9);
  tether::Vector l(n), u(n), w(n);
  for (Index i = 0; i < n; ++i) {
    l[i] = rng.uniform(-1.0, 0.0);
    u[i] = l[i] + rng.uniform(0.0, 3.0);
    w[i] = rng.uniform(0.5, 1.5);
  }
  return tether::BoxSection(l, u, w, 0.5 * (w.dot(l) + w.dot(u)));
}

/// Projects a fresh copy of the input (as M: Matrix or MatrixF) each iteration; bytes: the
/// read and the write of the batch.
template <class M, class Project>
void run_rows(benchmark::State& state, Project project, bool always_time_copy) {
  const M x = input(state.range(0), state.range(1)).template cast<typename M::Scalar>();
  M y = x;
  // From 1e6 entries on, the fresh copy of x is made outside the timing (PauseTiming costs
  // microseconds, more than the copy of a small batch, which stays timed: subtract
  // BM_SimplexCopyOnly there).
  const bool copy_untimed = x.size() >= 1000000 && !always_time_copy;
  for (auto _ : state) {
    if (copy_untimed) state.PauseTiming();
    y = x;
    if (copy_untimed) state.ResumeTiming();
    project(y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(2 * sizeof(typename M::Scalar) * x.size()) *
                          state.iterations());
}

template <class Project>
void run(benchmark::State& state, Project project, bool always_time_copy = false) {
  run_rows<Matrix>(state, project, always_time_copy);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (Index total : {Index{10000}, Index{100000}, Index{1000000}, Index{10000000}})
    b->Args({total, 1000});
  // Real time: the rows run on OpenMP threads, which the main thread's CPU time does not see.
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void BM_SimplexCopyOnly(benchmark::State& state) {
  run(
      state, [](Matrix&) {}, /*always_time_copy=*/true);
}
BENCHMARK(BM_SimplexCopyOnly)->Apply(sizes);

void BM_SimplexSort(benchmark::State& state) {
  run(state,
      [](Matrix& y) { tether::project_simplex_rows(y, 1.0, tether::SimplexAlgorithm::kSort); });
}
BENCHMARK(BM_SimplexSort)->Apply(sizes);

void BM_SimplexCondat(benchmark::State& state) {
  run(state,
      [](Matrix& y) { tether::project_simplex_rows(y, 1.0, tether::SimplexAlgorithm::kCondat); });
}
BENCHMARK(BM_SimplexCondat)->Apply(sizes)->Args({100000000, 1000});

void BM_L1BallSort(benchmark::State& state) {
  run(state,
      [](Matrix& y) { tether::project_l1_ball_rows(y, 1.0, tether::SimplexAlgorithm::kSort); });
}
BENCHMARK(BM_L1BallSort)->Apply(sizes);

void BM_L1BallCondat(benchmark::State& state) {
  run(state,
      [](Matrix& y) { tether::project_l1_ball_rows(y, 1.0, tether::SimplexAlgorithm::kCondat); });
}
BENCHMARK(BM_L1BallCondat)->Apply(sizes)->Args({100000000, 1000});

void BM_BoxSectionSort(benchmark::State& state) {
  const tether::BoxSection set = box_set(state.range(1), tether::BoxSectionAlgorithm::kSort);
  run(state, [&](Matrix& y) { set.project_rows(y); });
}
BENCHMARK(BM_BoxSectionSort)->Apply(sizes);

void one_size(benchmark::internal::Benchmark* b) {
  b->Args({1000000, 1000})->Unit(benchmark::kMillisecond)->UseRealTime();
}

void BM_BoxSectionNewtonWideBoxes(benchmark::State& state) {
  const tether::BoxSection set = wide_box_set(state.range(1));
  run(state, [&](Matrix& y) { set.project_rows(y); });
}
BENCHMARK(BM_BoxSectionNewtonWideBoxes)->Apply(one_size);

void BM_BoxSectionNewtonNearEnd(benchmark::State& state) {
  const tether::BoxSection set =
      box_set(state.range(1), tether::BoxSectionAlgorithm::kNewton, 0.999);
  run(state, [&](Matrix& y) { set.project_rows(y); });
}
BENCHMARK(BM_BoxSectionNewtonNearEnd)->Apply(one_size);

void BM_BoxSectionNewton(benchmark::State& state) {
  const tether::BoxSection set = box_set(state.range(1), tether::BoxSectionAlgorithm::kNewton);
  run(state, [&](Matrix& y) { set.project_rows(y); });
}
BENCHMARK(BM_BoxSectionNewton)->Apply(sizes)->Args({100000000, 1000});

void long_vector(benchmark::internal::Benchmark* b) {
  b->Args({1000000, 1000000})->Args({10000000, 10000000})->Unit(benchmark::kMillisecond);
  b->UseRealTime();
}

/// run() for float rows: the same input rounded to float, bytes read + written 8 N.
template <class Project>
void run_float(benchmark::State& state, Project project) {
  run_rows<tether::MatrixF>(state, project, false);
}

void BM_SimplexCondatFloat(benchmark::State& state) {
  run_float(state, [](tether::MatrixF& y) { tether::project_simplex_rows(y, 1.0f); });
}
BENCHMARK(BM_SimplexCondatFloat)->Apply(sizes);

void BM_L1BallCondatFloat(benchmark::State& state) {
  run_float(state, [](tether::MatrixF& y) { tether::project_l1_ball_rows(y, 1.0f); });
}
BENCHMARK(BM_L1BallCondatFloat)->Apply(sizes);

void BM_BoxSectionNewtonFloat(benchmark::State& state) {
  const tether::BoxSection set = box_set(state.range(1), tether::BoxSectionAlgorithm::kNewton);
  run_float(state, [&](tether::MatrixF& y) { tether::project_box_section_rows(y, set); });
}
BENCHMARK(BM_BoxSectionNewtonFloat)->Apply(sizes);

void BM_SimplexLongVectorSort(benchmark::State& state) {
  run(state,
      [](Matrix& y) { tether::project_simplex_rows(y, 1.0, tether::SimplexAlgorithm::kSort); });
}
BENCHMARK(BM_SimplexLongVectorSort)->Apply(long_vector);

void BM_SimplexLongVectorCondat(benchmark::State& state) {
  run(state,
      [](Matrix& y) { tether::project_simplex_rows(y, 1.0, tether::SimplexAlgorithm::kCondat); });
}
BENCHMARK(BM_SimplexLongVectorCondat)->Apply(long_vector);

// ---- GPU (registered at start-up only where a device is present) -----------------------------

const bool kGpuRegistered = [] {
  if (!tether::device::simplex_kernels_available()) return false;
  const auto add = [](const char* name, auto project) {
    benchmark::RegisterBenchmark(name, [project](benchmark::State& state) {
      run(state, project);
    })->Apply(sizes);
  };
  add("BM_SimplexCondatGpu", [](Matrix& y) {
    tether::device::project_simplex_rows(y, 1.0, tether::SimplexAlgorithm::kCondat);
  });
  add("BM_SimplexSortGpu", [](Matrix& y) {
    tether::device::project_simplex_rows(y, 1.0, tether::SimplexAlgorithm::kSort);
  });
  add("BM_L1BallCondatGpu", [](Matrix& y) {
    tether::device::project_l1_ball_rows(y, 1.0, tether::SimplexAlgorithm::kCondat);
  });
  benchmark::RegisterBenchmark("BM_SimplexCondatFloatGpu", [](benchmark::State& state) {
    run_float(state, [](tether::MatrixF& y) { tether::device::project_simplex_rows(y, 1.0f); });
  })->Apply(sizes);
  benchmark::RegisterBenchmark("BM_BoxSectionNewtonFloatGpu", [](benchmark::State& state) {
    static const tether::BoxSection set = box_set(1000, tether::BoxSectionAlgorithm::kNewton);
    run_float(state, [](tether::MatrixF& y) { tether::device::project_box_section_rows(y, set); });
  })->Apply(sizes);
  // Resident on the device: the batch is uploaded before each call outside the timing, so the
  // time is the kernel's (and the status copy's): the figure for the bandwidth goal at 1e8.
  const auto add_resident = [](const char* name, auto project) {
    benchmark::RegisterBenchmark(
        name,
        [project](benchmark::State& state) {
          const Matrix x = input(state.range(0), state.range(1));
          tether::device::DeviceRows rows(x.rows(), x.cols());
          for (auto _ : state) {
            state.PauseTiming();
            rows.upload(x);
            state.ResumeTiming();
            project(rows);
          }
          state.SetBytesProcessed(static_cast<int64_t>(16 * x.size()) * state.iterations());
        })
        ->Apply(sizes)
        ->Args({100000000, 1000});
  };
  add_resident("BM_SimplexCondatGpuResident",
               [](tether::device::DeviceRows& rows) { rows.project_simplex(1.0); });
  add_resident("BM_L1BallCondatGpuResident",
               [](tether::device::DeviceRows& rows) { rows.project_l1_ball(1.0); });
  add_resident("BM_BoxSectionNewtonGpuResident", [](tether::device::DeviceRows& rows) {
    static const tether::BoxSection set = box_set(1000, tether::BoxSectionAlgorithm::kNewton);
    rows.project_box_section(set);
  });
  add("BM_BoxSectionNewtonGpu", [](Matrix& y) {
    static const tether::BoxSection set = box_set(1000, tether::BoxSectionAlgorithm::kNewton);
    tether::device::project_box_section_rows(y, set);
  });
  return true;
}();

}  // namespace
