// Gradient-orthogonal projection (issue 4), each the same arithmetic as its numpy baseline in
// numpy_baselines.py.
//
//   BM_RetainProjection/1000000/8      one GU step's projection at d = 1e6 with a full window of
//                                      k = 8 retain gradients: set Adam's diagonal metric, push
//                                      the newest retain gradient (the window is re-whitened and
//                                      re-orthogonalised: Householder QR in double), project one
//                                      forget gradient. bytes/s counts the least traffic: read the
//                                      k gradients, h, g_f, write the result ((k + 3) 8 d bytes).
//   BM_RetainProjectionFixedBasis/1000000/8   the projection alone, basis already built:
//                                      z = S g, z - Q Q^T z, S z_n; least traffic reads g, h and
//                                      the k columns twice, writes the result ((2k + 3) 8 d).
//   BM_RetainProjectGradients/1000000/8/16   16 forget gradients at once against the fixed basis
//                                      (RetainProjector::project_gradients, CPU); least traffic
//                                      reads the m gradients and h, writes the m results
//                                      ((2m + 1) 8 d bytes; the basis stays in the count's margin)
//   BM_RetainProjectGradientsFloat/...   the same for float gradients (the float overload:
//                                      double arithmetic, float storage; (2m 4 + 8) d bytes)
//   BM_RetainProjectGradientsGpuResident/d/8/16   the same on gradients kept on the device
//                                   (DeviceRetainProjection::project in place; no host copies)
//   BM_RetainProjectGradientsGpuResidentFloat/...   the same on float gradients ((2m 4 + 8) d)
//   BM_RetainProjectGradientsGpu/...   the same on the device (device::project_gradients: the
//                                      basis formed and uploaded, the gradients copied over and
//                                      back, all timed); registered only where a device is present
//   BM_OrthoRegGradient/768/768        value and gradient of |Delta W^T Delta W - I|_F for one
//                                      768 x 768 update (the Gram, then Delta W M).
#include <benchmark/benchmark.h>

#include <tether/core/device_vector.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/orthoreg.hpp>
#include <tether/solvers/retain_projector.hpp>
#include <tether/solvers/retain_projector_device.hpp>
#include <vector>

namespace {

using tether::Index;
using tether::Matrix;
using tether::Vector;

Vector random_vector(Index n, tether::Rng& rng) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = rng.normal();
  return v;
}

struct ProjectionData {
  std::vector<Vector> retain;  // k + 1: the window, and one more to push each step
  Vector metric, forget, out;
  ProjectionData(Index d, int k) {
    tether::Rng rng(7);
    for (int i = 0; i <= k; ++i) retain.push_back(random_vector(d, rng));
    metric.resize(d);
    for (Index i = 0; i < d; ++i) metric[i] = rng.uniform(0.5, 2.0);
    forget = random_vector(d, rng);
    out.resize(d);
  }
};

void BM_RetainProjection(benchmark::State& state) {
  const Index d = state.range(0);
  const int k = static_cast<int>(state.range(1));
  ProjectionData data(d, k);
  tether::RetainProjector projector(d, {.window = k});
  for (int i = 0; i < k; ++i) projector.push(data.retain[i]);
  int next = 0;
  for (auto _ : state) {
    projector.set_metric(data.metric);
    projector.push(data.retain[next]);
    next = (next + 1) % (k + 1);
    projector.project_gradient(data.forget, data.out);
    benchmark::DoNotOptimize(data.out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>((k + 3) * 8 * d) * state.iterations());
}
BENCHMARK(BM_RetainProjection)->Args({1000000, 8})->Unit(benchmark::kMillisecond);

void BM_RetainProjectionFixedBasis(benchmark::State& state) {
  const Index d = state.range(0);
  const int k = static_cast<int>(state.range(1));
  ProjectionData data(d, k);
  tether::RetainProjector projector(d, {.window = k});
  projector.set_metric(data.metric);
  for (int i = 0; i < k; ++i) projector.push(data.retain[i]);
  benchmark::DoNotOptimize(projector.rank());  // builds the basis once
  for (auto _ : state) {
    projector.project_gradient(data.forget, data.out);
    benchmark::DoNotOptimize(data.out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>((2 * k + 3) * 8 * d) * state.iterations());
}
BENCHMARK(BM_RetainProjectionFixedBasis)->Args({1000000, 8})->Unit(benchmark::kMillisecond);

void BM_OrthoRegGradient(benchmark::State& state) {
  const Index m = state.range(0), n = state.range(1);
  tether::Rng rng(3);
  Matrix delta_w(m, n);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) delta_w(i, j) = 0.05 * rng.normal();
  Matrix grad(m, n);
  for (auto _ : state) {
    grad.setZero();
    const double value =
        tether::orthoreg_add_gradient(delta_w, tether::OrthoRegNorm::kFrobenius, 1.0, grad);
    benchmark::DoNotOptimize(value);
    benchmark::DoNotOptimize(grad.data());
  }
  // Two m x n x min(m, n) products (the Gram, exploiting symmetry or not, and Delta W M).
  state.counters["flops"] = benchmark::Counter(4.0 * static_cast<double>(m) * n * std::min(m, n),
                                               benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_OrthoRegGradient)->Args({768, 768})->Unit(benchmark::kMillisecond);

/// A projector over d parameters with a window of k retain gradients (ProjectionData's).
tether::RetainProjector benchmark_projector(Index d, int k) {
  ProjectionData data(d, k);
  tether::RetainProjector projector(d, {.window = k});
  projector.set_metric(data.metric);
  for (int i = 0; i < k; ++i) projector.push(data.retain[i]);
  return projector;
}

// Many gradients against one basis, on the CPU or the device; Scalar = float: the float
// overload (CPU only).
template <bool kDevice, class Scalar = double>
void retain_project_gradients(benchmark::State& state) {
  const Index d = state.range(0);
  const int k = static_cast<int>(state.range(1));
  const Index m = state.range(2);
  tether::RetainProjector projector = benchmark_projector(d, k);
  benchmark::DoNotOptimize(projector.rank());
  tether::Rng rng(9);
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> g(d, m), out;
  for (Index j = 0; j < g.size(); ++j) g.data()[j] = static_cast<Scalar>(rng.normal());
  // The basis in its steady state (the explicit basis formed, `out` allocated) before the
  // timing, as for a basis that serves many batches; at 1e7 the first call alone takes seconds.
  if constexpr (!kDevice) projector.project_gradients(g, out);
  for (auto _ : state) {
    if constexpr (kDevice)
      out = tether::device::project_gradients(projector, g);
    else
      projector.project_gradients(g, out);
    benchmark::DoNotOptimize(out.data());
  }
  const auto scalar = static_cast<int64_t>(sizeof(Scalar));
  state.SetBytesProcessed(static_cast<int64_t>((2 * m * scalar + 8) * d) * state.iterations());
}

void BM_RetainProjectGradients(benchmark::State& state) { retain_project_gradients<false>(state); }
void BM_RetainProjectGradientsFloat(benchmark::State& state) {
  retain_project_gradients<false, float>(state);
}
// d = 1e4 to 1e7 (16 columns of 1e8 would take 13 GB before the result).
BENCHMARK(BM_RetainProjectGradients)
    ->Args({10000, 8, 16})
    ->Args({100000, 8, 16})
    ->Args({1000000, 8, 16})
    ->Args({10000000, 8, 16})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RetainProjectGradientsFloat)
    ->Args({10000, 8, 16})
    ->Args({100000, 8, 16})
    ->Args({1000000, 8, 16})
    ->Args({10000000, 8, 16})
    ->Unit(benchmark::kMillisecond);

/// d x m gradients of T on the device, projected in place each iteration; bytes: the gradients
/// read and written, and the whitening read (the basis, d k doubles, is not counted).
template <class T>
void retain_project_gradients_resident(benchmark::State& state) {
  const Index d = state.range(0);
  const int k = static_cast<int>(state.range(1));
  const Index m = state.range(2);
  tether::RetainProjector projector = benchmark_projector(d, k);
  const tether::device::DeviceRetainProjection resident(projector);
  tether::Rng rng(9);
  Eigen::Matrix<T, Eigen::Dynamic, 1> g(d * m);
  for (Index j = 0; j < g.size(); ++j) g[j] = static_cast<T>(rng.normal());
  tether::device::BasicDeviceVector<T> on_device(g);
  for (auto _ : state) resident.project(on_device);
  state.SetBytesProcessed(static_cast<int64_t>((2 * m * sizeof(T) + 8) * d) * state.iterations());
}

const bool kGpuRegistered = [] {
  if (!tether::device::cuda_available()) return false;
  benchmark::RegisterBenchmark("BM_RetainProjectGradientsGpu", retain_project_gradients<true>)
      ->Args({1000000, 8, 16})
      ->Args({1000000, 8, 64})
      ->Unit(benchmark::kMillisecond);
  // The same projection on gradients held on the device (DeviceRetainProjection: the basis
  // uploaded once, untimed; each call projects the d x 16 columns in place, no host copies); in
  // double, and on float gradients (half the gradient bytes; the basis and whitening stay double).
  for (const bool as_float : {false, true})
    benchmark::RegisterBenchmark(as_float ? "BM_RetainProjectGradientsGpuResidentFloat"
                                          : "BM_RetainProjectGradientsGpuResident",
                                 as_float ? retain_project_gradients_resident<float>
                                          : retain_project_gradients_resident<double>)
        ->Args({10000, 8, 16})
        ->Args({100000, 8, 16})
        ->Args({1000000, 8, 16})
        ->Args({10000000, 8, 16})
        ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
