// RCO against known optima: the exact DP on the separable family (integer costs) and brute-force
// enumeration on the coupled family (spec rco.md sections 3 and 6).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <tether/core/knapsack.hpp>
#include <tether/problems/enumerate.hpp>
#include <tether/problems/mckp_families.hpp>
#include <tether/solvers/rco.hpp>

namespace tether {
namespace {

// The faithful method (no polish, no antithetic pairs) with the spec prototype's schedule
// (600 steps, lr 0.1, tau 1 -> 0.01) and 8 Gumbel samples a step instead of 4: with 4 samples
// the worst of 20 seeds reached 0.9958 (as the spec's prototype: 0.9985..1), with 8 samples
// 0.9992 (mean 0.99982).
RcoOptions separable_settings(std::uint64_t seed) {
  return {.learning_rate = 0.1,
          .steps = 600,
          .samples = 8,
          .tau_initial = 1.0,
          .tau_final = 0.01,
          .seed = seed};
}

TEST(RcoConvergence, SeparableFamilyReachesTheExactOptimum) {
  double sum = 0.0, worst = 1.0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto p = problems::SeparableMckp::generate(50, 7, seed);
    MultipleChoiceKnapsack dp(p.costs(), p.budget());
    const KnapsackResult exact = dp.solve(p.values());
    ASSERT_TRUE(exact.exact_grid);
    const double optimum = -exact.value;
    const AssignmentResult r = RcoSolver(separable_settings(seed)).minimize(p);
    const double ratio = problems::optimality_ratio(r.loss, optimum);
    std::cout << "seed " << seed << ": ratio " << ratio << " (best seen "
              << problems::optimality_ratio(r.best_seen_loss, optimum) << ", final DP on log p "
              << problems::optimality_ratio(r.final_dp_loss, optimum) << ")\n";
    EXPECT_LE(r.cost, p.budget());
    EXPECT_GE(ratio, 0.997) << "seed " << seed;
    // Expected cost on the budget at every iterate.
    for (const IterationRecord& rec : r.history.rows)
      ASSERT_LE(std::abs(rec.constraint_residual), 1e-9) << "iteration " << rec.iteration;
    EXPECT_LE(r.max_expected_cost_drift, 1e-9);
    sum += ratio;
    worst = std::min(worst, ratio);
  }
  std::cout << "mean ratio " << sum / 5 << ", worst " << worst << "\n";
  EXPECT_GE(sum / 5, 0.999);
}

TEST(RcoConvergence, AntitheticPairsAlsoReachTheOptimum) {
  // Beyond the reference: Gumbel draws from U and 1 - U in pairs (same settings otherwise).
  double sum = 0.0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto p = problems::SeparableMckp::generate(50, 7, seed);
    const double optimum = -MultipleChoiceKnapsack(p.costs(), p.budget()).solve(p.values()).value;
    RcoOptions o = separable_settings(seed);
    o.antithetic = true;
    const AssignmentResult r = RcoSolver(o).minimize(p);
    const double ratio = problems::optimality_ratio(r.loss, optimum);
    std::cout << "antithetic seed " << seed << ": ratio " << ratio << "\n";
    EXPECT_LE(r.cost, p.budget());
    EXPECT_GE(ratio, 0.997) << "seed " << seed;
    sum += ratio;
  }
  EXPECT_GE(sum / 5, 0.999);
}

TEST(RcoConvergence, PolishNeverWorsensAndKeepsTheBudget) {
  // A short run (100 steps) leaves room; the budget-keeping local search on the true loss may
  // only improve it.
  int improved = 0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto p = problems::SeparableMckp::generate(30, 5, seed);
    const AssignmentResult plain = RcoSolver({.steps = 100, .seed = seed}).minimize(p);
    const AssignmentResult polished =
        RcoSolver({.steps = 100, .seed = seed, .polish_sweeps = 3}).minimize(p);
    EXPECT_LE(polished.loss, plain.loss);
    EXPECT_LE(polished.cost, p.budget());
    Matrix g(30, 5);
    EXPECT_DOUBLE_EQ(polished.loss, p.loss(one_hot(polished.assignment, 5), g));
    improved += polished.loss < plain.loss;
  }
  EXPECT_GE(improved, 1);
}

TEST(RcoConvergence, CoupledFamilyFindsTheEnumerationOptimum) {
  int hits = 0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto p = problems::CoupledMckp::generate(10, 4, seed);
    const auto best = problems::enumerate_optimum(p);
    const AssignmentResult r = RcoSolver({.steps = 300, .seed = seed}).minimize(p);
    EXPECT_LE(r.cost, p.budget());
    EXPECT_GE(r.loss, best.loss - 1e-12 * std::abs(best.loss));  // nothing beats enumeration
    const bool hit = r.loss <= best.loss + 1e-12 * std::abs(best.loss);
    std::cout << "seed " << seed << ": loss " << r.loss << ", optimum " << best.loss
              << (hit ? " (hit)" : " (miss)") << "\n";
    hits += hit;
    for (const IterationRecord& rec : r.history.rows)
      ASSERT_LE(std::abs(rec.constraint_residual), 1e-9) << "iteration " << rec.iteration;
  }
  EXPECT_GE(hits, 4);
}

TEST(RcoConvergence, SameSeedSameResultOnTheSeparableFamily) {
  const auto p = problems::SeparableMckp::generate(50, 7, 3);
  const AssignmentResult a = RcoSolver({.steps = 100, .seed = 9}).minimize(p);
  const AssignmentResult b = RcoSolver({.steps = 100, .seed = 9}).minimize(p);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(std::memcmp(a.logits.data(), b.logits.data(), sizeof(double) * a.logits.size()), 0);
}

}  // namespace
}  // namespace tether
