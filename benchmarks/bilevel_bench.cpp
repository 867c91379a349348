// Bilevel iterations (issue 3), each the same arithmetic as its numpy baseline in
// numpy_baselines.py, which benchmarks/run.sh times beside it.
//
//   BM_LvHbaIteration/n    one LV-HBA iteration on toy T2 (n upper variables, 3n in all), the
//                          spec's checked settings; one benchmark iteration is a solve of 2000
//                          LV-HBA iterations (history recorded once); the counter
//                          us_per_iteration is its time over 2000
//   BM_BlurStep/1000000    one BLUR step with AdamW on separable quadratics of dimension 1e6:
//                          both gradients, d, the AdamW step and the history's retain loss;
//                          one benchmark iteration is a solve of 20 steps, us_per_iteration its
//                          time over 20.
//                          bytes_per_second counts the least traffic a fused step needs:
//                          a pass for the dot products (theta, w, p, q: 32 bytes per entry)
//                          and a pass for the step (read theta, w, p, q, m, v, write theta, m, v:
//                          72 bytes per entry); compare with BM_MemoryCopy.
#include <benchmark/benchmark.h>

#include <tether/core/rng.hpp>
#include <tether/problems/bilevel_toys.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/lvhba.hpp>

namespace {

using tether::Index;
using tether::Vector;

void BM_LvHbaIteration(benchmark::State& state) {
  const Index n = state.range(0);
  const tether::problems::T2 problem(n);
  tether::LvHbaOptions options = tether::problems::T2::checked_options();
  constexpr int kIterations = 2000;
  options.max_iterations = kIterations;
  options.tolerance = 0.0;
  options.history_every = kIterations;
  const tether::LvHbaSolver solver(options);
  const Vector x0 = problem.start_x(), y0 = problem.start_y();
  double error = 0.0;
  for (auto _ : state) {
    const tether::LvHbaResult r = solver.minimize(problem, x0, y0);
    benchmark::DoNotOptimize(r.x.data());
    error = r.error;
  }
  state.counters["us_per_iteration"] =
      benchmark::Counter(1e-6 * kIterations, benchmark::Counter::kIsIterationInvariantRate |
                                                 benchmark::Counter::kInvert);
  state.counters["relative_x_error_at_2000"] = error;
}
BENCHMARK(BM_LvHbaIteration)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// l_f = 1/2 sum_i w_i (theta_i - p_i)^2, l_r = 1/2 |theta - q|^2.
class SeparableQuadratics {
 public:
  explicit SeparableQuadratics(Index n) : w_(n), p_(n), q_(n) {
    tether::Rng rng(1);
    for (Index i = 0; i < n; ++i) {
      w_[i] = rng.uniform(0.5, 2.0);
      p_[i] = rng.normal();
      q_[i] = rng.normal();
    }
  }
  Index dimension() const { return w_.size(); }
  double forget_loss(const Vector& t) const {
    return 0.5 * (w_.array() * (t - p_).array().square()).sum();
  }
  double retain_loss(const Vector& t) const { return 0.5 * (t - q_).squaredNorm(); }
  void forget_gradient(const Vector& t, Vector& g) const { g = w_.cwiseProduct(t - p_); }
  void retain_gradient(const Vector& t, Vector& g) const { g = t - q_; }

 private:
  Vector w_, p_, q_;
};

void BM_BlurStep(benchmark::State& state) {
  const Index n = state.range(0);
  const SeparableQuadratics problem(n);
  constexpr int kSteps = 20;
  const tether::BlurSolver solver(
      {.step = tether::AdamOptions{.learning_rate = 1e-3, .weight_decay = 0.01},
       .max_iterations = kSteps,
       .tolerance = 0.0});
  const Vector theta0 = Vector::Zero(n);
  for (auto _ : state) {
    const tether::BlurResult r = solver.minimize(problem, theta0);
    benchmark::DoNotOptimize(r.theta.data());
  }
  state.counters["us_per_iteration"] = benchmark::Counter(
      1e-6 * kSteps, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetBytesProcessed(static_cast<int64_t>(104 * n) * kSteps * state.iterations());
}
BENCHMARK(BM_BlurStep)->Arg(1000000)->Unit(benchmark::kMillisecond);

}  // namespace
