// GPU benchmarks of the budget manifold (issue 6), registered at start-up only where tether has
// CUDA and a device is present; elsewhere this file adds nothing.
//   BM_BudgetRetractionGpu/N/8      the device-resident retraction (root finding on the device,
//                                   one cooperative kernel for one instance); the start is
//                                   uploaded again before each call, outside the timing
//   BM_BudgetRetractionGpuBlocks/N/8   the same rows split into N / 1000 independent instances,
//                                   one CUDA block each
//   BM_TangentProjectionGpu/N/8     the device tangent projection of a resident vector (normal,
//                                   C, <n, n>, <n, v> fused; then the update); 7 x 8 N K bytes:
//                                   read alpha, costs, v and write n, then read v, n, write v
//   BM_RcoStepGpu/N/8               one Riemannian Adam step on the device (DeviceBudgetManifold::
//                                   adam_step: projection, Adam, retraction, check, transport);
//                                   the gradient uploaded before each call, outside the timing;
//                                   bytes as BM_RcoStepOverhead counts them on the CPU
//   BM_DeviceMemoryCopy/bytes        device-to-device copy: the bandwidth reference
// bytes_per_second counts (2 passes + 2) x 8 N K bytes per retraction, like BM_BudgetRetraction
// on the CPU; the outcome copy back (a few bytes) synchronises, so the time is the kernel's.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <vector>

namespace {

using tether::Index;
using tether::Matrix;

struct Instance {
  Matrix costs, alpha;
  std::vector<Index> starts;
  tether::Vector budgets;
};

Instance make_instance(Index n, Index k, Index blocks) {
  tether::Rng rng(1);
  Instance inst{Matrix(n, k), Matrix(n, k), {}, tether::Vector(blocks)};
  for (Index j = 0; j < inst.costs.size(); ++j) {
    inst.costs.data()[j] = rng.uniform(1.0, 8.0);
    inst.alpha.data()[j] = rng.normal();
  }
  const Index rows = n / blocks;
  for (Index b = 0; b < blocks; ++b) {
    inst.starts.push_back(b * rows);
    const Index r1 = b + 1 == blocks ? n : (b + 1) * rows;
    const Matrix block = inst.costs.middleRows(b * rows, r1 - b * rows);
    const double lo = block.rowwise().minCoeff().sum(), hi = block.rowwise().maxCoeff().sum();
    inst.budgets[b] = lo + 0.4 * (hi - lo);
  }
  return inst;
}

void retraction_gpu(benchmark::State& state, Index blocks) {
  const Index n = state.range(0), k = state.range(1);
  Instance inst = make_instance(n, k, blocks);
  const tether::BudgetManifold manifold(inst.costs, inst.starts, inst.budgets);
  manifold.retract(inst.alpha);
  tether::Rng rng(7);
  Matrix perturbed = inst.alpha;
  for (Index j = 0; j < perturbed.size(); ++j)
    perturbed.data()[j] += rng.uniform() < 0.5 ? 0.1 : -0.1;
  tether::device::DeviceBudgetManifold on_device(manifold);
  int passes = 0;
  double residual = 0.0;
  for (auto _ : state) {
    state.PauseTiming();
    on_device.upload(perturbed);  // the same start every time; host-to-device is not timed
    state.ResumeTiming();
    const tether::RetractionReport r = on_device.retract();
    passes = r.passes;
    residual = r.max_abs_residual;
  }
  state.counters["passes"] = passes;
  state.counters["residual"] = residual;
  const double bytes = (passes * 2.0 + 2.0) * sizeof(double) * static_cast<double>(n * k);
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

// One instance on the device, its logits retracted and uploaded, and a fixed random gradient
// that `body` uploads (outside the timing) before each timed call.
template <class Body>
void with_device_gradient(benchmark::State& state, Body body) {
  const Index n = state.range(0), k = state.range(1);
  Instance inst = make_instance(n, k, 1);
  const tether::BudgetManifold manifold(inst.costs, inst.starts, inst.budgets);
  manifold.retract(inst.alpha);
  tether::Rng rng(5);
  Matrix g(n, k);
  for (Index j = 0; j < g.size(); ++j) g.data()[j] = rng.normal();
  tether::device::DeviceBudgetManifold on_device(manifold);
  on_device.upload(inst.alpha);
  for (auto _ : state) {
    state.PauseTiming();
    on_device.upload_vector(g);  // the same gradient every time, not timed
    state.ResumeTiming();
    body(on_device);
  }
}

void projection_gpu(benchmark::State& state) {
  with_device_gradient(state, [](tether::device::DeviceBudgetManifold& d) {
    benchmark::DoNotOptimize(d.project());
  });
  const double entries = static_cast<double>(state.range(0) * state.range(1));
  state.SetBytesProcessed(static_cast<int64_t>(7.0 * sizeof(double) * entries) *
                          state.iterations());
}

void rco_step_gpu(benchmark::State& state) {
  int passes = 0;
  with_device_gradient(state, [&passes](tether::device::DeviceBudgetManifold& d) {
    passes = d.adam_step({.learning_rate = 0.1}).retraction.passes;
  });
  state.counters["retraction_passes"] = passes;
  // projection (normal pass 4 + update 3), Adam (read g, m, v, alpha; write m, v, trial: 7),
  // retraction (2 a pass + 3), check (1), transport (4 + 3)
  const double bytes = (7.0 + 7.0 + 2.0 * passes + 3.0 + 1.0 + 7.0) * sizeof(double) *
                       static_cast<double>(state.range(0) * state.range(1));
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void sizes(benchmark::internal::Benchmark* b) {
  for (const Index n : {1250, 12500, 125000, 1250000, 12500000}) b->Args({n, 8});
  b->Unit(benchmark::kMicrosecond);
}

const bool kGpuRegistered = [] {
  if (!tether::device::cuda_available()) return false;
  benchmark::RegisterBenchmark("BM_BudgetRetractionGpu", [](benchmark::State& s) {
    retraction_gpu(s, 1);
  })->Apply(sizes);
  benchmark::RegisterBenchmark("BM_BudgetRetractionGpuBlocks", [](benchmark::State& s) {
    retraction_gpu(s, std::max<Index>(1, s.range(0) / 1000));
  })->Apply(sizes);
  benchmark::RegisterBenchmark("BM_TangentProjectionGpu", projection_gpu)->Apply(sizes);
  benchmark::RegisterBenchmark("BM_RcoStepGpu", rco_step_gpu)->Apply(sizes);
  benchmark::RegisterBenchmark("BM_DeviceMemoryCopy",
                               [](benchmark::State& s) {
                                 const auto bytes = static_cast<std::size_t>(s.range(0));
                                 double bandwidth = 0.0;
                                 for (auto _ : s)
                                   bandwidth = tether::device::device_copy_bandwidth(bytes, 10);
                                 s.counters["device_copy_bytes_per_second"] = bandwidth;
                               })
      ->Arg(std::int64_t{1} << 30)
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
