// Benchmarks of the budget manifold, the knapsack DP and one RCO step (issue 2).
// Large cases report bytes_per_second: the bytes a pass must move (read logits and costs,
// write logits) divided by time; compare with BM_MemoryCopy on the same machine.
#include <benchmark/benchmark.h>

#include <cstring>
#include <tether/core/knapsack.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <tether/problems/mckp_families.hpp>
#include <tether/solvers/riemannian_adam.hpp>
#include <vector>

namespace {

using tether::Index;
using tether::Matrix;

// The 224-group instance of the issue: 32 Llama-style layers x 7 matrices, cost = share of
// parameters x bits (2..8), budget 2.5 average bits.
Matrix llama_costs(int layers) {
  const tether::Vector shares = tether::problems::QuantProxy::llama_group_shares(layers);
  tether::Vector bits(7);
  bits << 2, 3, 4, 5, 6, 7, 8;
  return tether::factored_costs(shares, bits);
}

// Random costs in [1, 8) for the large synthetic cases, budget at 40% of the range.
struct LargeInstance {
  Matrix costs, alpha;
  double budget;
};

LargeInstance large_instance(Index n, Index k, std::uint64_t seed) {
  tether::Rng rng(seed);
  LargeInstance inst{Matrix(n, k), Matrix(n, k), 0.0};
  for (Index j = 0; j < inst.costs.size(); ++j) {
    inst.costs.data()[j] = rng.uniform(1.0, 8.0);
    inst.alpha.data()[j] = rng.normal();
  }
  const double lo = inst.costs.rowwise().minCoeff().sum(),
               hi = inst.costs.rowwise().maxCoeff().sum();
  inst.budget = lo + 0.4 * (hi - lo);
  return inst;
}

void BM_KnapsackDP(benchmark::State& state) {
  const int layers = static_cast<int>(state.range(0)) / 7;
  const double units = static_cast<double>(state.range(2));
  const Matrix costs = llama_costs(layers);
  tether::Rng rng(42);
  Matrix values(costs.rows(), costs.cols());
  for (Index j = 0; j < values.size(); ++j) values.data()[j] = rng.normal();
  tether::MultipleChoiceKnapsack dp(costs, 2.5, {.units_per_cost = units});
  for (auto _ : state) {
    tether::KnapsackResult r = dp.solve_without_bound(values);
    benchmark::DoNotOptimize(r.value);
  }
  state.counters["capacity_units"] = static_cast<double>(dp.capacity_units());
}
BENCHMARK(BM_KnapsackDP)->Args({224, 7, 500})->Unit(benchmark::kMillisecond);

void BM_KnapsackDPWithLpBound(benchmark::State& state) {
  const Matrix costs = llama_costs(static_cast<int>(state.range(0)) / 7);
  tether::Rng rng(42);
  Matrix values(costs.rows(), costs.cols());
  for (Index j = 0; j < values.size(); ++j) values.data()[j] = rng.normal();
  tether::MultipleChoiceKnapsack dp(costs, 2.5,
                                    {.units_per_cost = static_cast<double>(state.range(2))});
  for (auto _ : state) benchmark::DoNotOptimize(dp.solve(values).gap);
}
BENCHMARK(BM_KnapsackDPWithLpBound)->Args({224, 7, 500})->Unit(benchmark::kMillisecond);

// Logits perturbed from a feasible point by an Adam-sized step (0.1 per entry, random sign).
void retraction_case(benchmark::State& state, const Matrix& costs, double budget, Matrix alpha) {
  tether::BudgetManifold manifold(costs, budget);
  manifold.retract(alpha);
  tether::Rng rng(7);
  Matrix perturbed = alpha;
  for (Index j = 0; j < perturbed.size(); ++j)
    perturbed.data()[j] += rng.uniform() < 0.5 ? 0.1 : -0.1;
  Matrix work = perturbed;
  int passes = 0;
  double residual = 0;
  // Large cases restore the start point outside the timing; at 224 x 7 pausing the timer would
  // cost more than the copy, so the copy is timed (and counted: read + write).
  const bool copy_untimed = costs.size() >= 100000;
  for (auto _ : state) {
    if (copy_untimed) state.PauseTiming();
    work = perturbed;
    if (copy_untimed) state.ResumeTiming();
    const tether::RetractionReport r = manifold.retract(work);
    passes = r.passes;
    residual = r.max_abs_residual;
    benchmark::ClobberMemory();
  }
  state.counters["passes"] = passes;
  state.counters["residual"] = residual;
  // Each pass reads logits and costs (2); the logits are written once (1): the pass of the kept
  // polishing trial writes them, else a separate move does (which reads logits and costs again:
  // that traffic is not counted, so the figure is a lower bound on the bytes moved). The timed
  // copy of the small case reads and writes the logits (2).
  const double bytes = (passes * 2.0 + 1.0 + (copy_untimed ? 0.0 : 2.0)) * sizeof(double) *
                       static_cast<double>(costs.size());
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}

void BM_BudgetRetraction(benchmark::State& state) {
  const Index n = state.range(0), k = state.range(1);
  if (n == 224 && k == 7) {
    tether::Rng rng(3);
    Matrix alpha(n, k);
    for (Index j = 0; j < alpha.size(); ++j) alpha.data()[j] = rng.normal();
    retraction_case(state, llama_costs(32), 2.5, alpha);
  } else {
    LargeInstance inst = large_instance(n, k, 1);
    retraction_case(state, inst.costs, inst.budget, inst.alpha);
  }
}
BENCHMARK(BM_BudgetRetraction)->Args({224, 7})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BudgetRetraction)->Args({1000000, 8})->Unit(benchmark::kMillisecond);
// The size sweep of issue 6 (K = 8: 1e4 .. 1e8 entries).
BENCHMARK(BM_BudgetRetraction)
    ->Args({1250, 8})
    ->Args({12500, 8})
    ->Args({125000, 8})
    ->Args({1250000, 8})
    ->Args({12500000, 8})
    ->Unit(benchmark::kMicrosecond);

void BM_TangentProjection(benchmark::State& state) {
  LargeInstance inst = large_instance(state.range(0), state.range(1), 2);
  tether::BudgetManifold manifold(inst.costs, inst.budget);
  manifold.retract(inst.alpha);
  tether::Rng rng(5);
  Matrix g(inst.costs.rows(), inst.costs.cols()), normal;
  for (Index j = 0; j < g.size(); ++j) g.data()[j] = rng.normal();
  // The normal's buffer is allocated (and its pages first touched) here, not in the first
  // timed iteration: a solver keeps it between steps. At 1e8 entries the page faults alone
  // would double the time of the single iteration that the benchmark runs.
  manifold.normal(inst.alpha, normal);
  for (auto _ : state) {
    manifold.normal(inst.alpha, normal);
    manifold.project_with_normal(inst.alpha, normal, g);
    benchmark::ClobberMemory();
  }
  // normal: read alpha, costs, write n (3); projection: dot reads n, g (2), update reads n, g
  // and writes g (3).
  const double bytes = 8.0 * sizeof(double) * static_cast<double>(g.size());
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}
BENCHMARK(BM_TangentProjection)->Args({1000000, 8})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_TangentProjection)
    ->Args({1250, 8})
    ->Args({12500, 8})
    ->Args({125000, 8})
    ->Args({1250000, 8})
    ->Args({12500000, 8})
    ->Unit(benchmark::kMicrosecond);

void BM_RcoStepOverhead(benchmark::State& state) {
  LargeInstance inst = large_instance(state.range(0), state.range(1), 3);
  tether::BudgetManifold manifold(inst.costs, inst.budget);
  manifold.retract(inst.alpha);
  tether::RiemannianAdam step(manifold, {.learning_rate = 0.1});
  tether::Rng rng(9);
  Matrix g0(inst.costs.rows(), inst.costs.cols());
  for (Index j = 0; j < g0.size(); ++j) g0.data()[j] = rng.normal();
  Matrix g = g0;
  int passes = 0;
  for (auto _ : state) {
    g = g0;  // counted below
    passes = step.step(inst.alpha, g, tether::RiemannianAdam::Start::kLastResult).retraction.passes;
    benchmark::ClobberMemory();
  }
  state.counters["retraction_passes"] = passes;
  // the copy g = g0 (2), projection with the normal kept from the previous transport (one pass
  // for <n, n> and <n, g>: 2; the update reads n, g and writes g: 3), Adam's trial point (read
  // g, m, v, alpha; write m, v, trial: 7), retraction passes (2 each, + 1 for writing the
  // logits), the NaN check of the retracted point (1), transport (normal 3 + projection 5).
  const double bytes = (2.0 + 5.0 + 7.0 + 2.0 * passes + 1.0 + 1.0 + 8.0) * sizeof(double) *
                       static_cast<double>(g.size());
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}
BENCHMARK(BM_RcoStepOverhead)->Args({1000000, 8})->Unit(benchmark::kMillisecond);

void BM_MemoryCopy(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
  }
  // Count read + write, the same convention as the cases above.
  state.SetBytesProcessed(static_cast<int64_t>(2 * bytes) * state.iterations());
}
BENCHMARK(BM_MemoryCopy)->Arg(64 << 20)->Unit(benchmark::kMillisecond);

}  // namespace
