// The multiple-choice knapsack DP against brute force, the never-over-budget rule, and the LP
// bound.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/knapsack.hpp>
#include <tether/core/rng.hpp>

namespace tether {
namespace {

struct Brute {
  double value = -std::numeric_limits<double>::infinity();
  Assignment h;
};

Brute brute_force(const Matrix& v, const Matrix& c, double budget) {
  const Index n = v.rows(), k = v.cols();
  Brute best;
  Assignment h(static_cast<std::size_t>(n), 0);
  while (true) {
    double cost = 0, value = 0;
    for (Index i = 0; i < n; ++i) {
      cost += c(i, h[static_cast<std::size_t>(i)]);
      value += v(i, h[static_cast<std::size_t>(i)]);
    }
    if (cost <= budget && value > best.value) best = {value, h};
    Index i = 0;
    while (i < n && ++h[static_cast<std::size_t>(i)] == k) h[static_cast<std::size_t>(i++)] = 0;
    if (i == n) break;
  }
  return best;
}

struct RealInstance {
  Matrix values, costs;
  double budget;
};

// n = n0 + U{0..dn-1}, k = k0 + U{0..dk-1}; values N(0, 1), costs U[0, 3), budget uniform in the
// feasible range.
RealInstance random_real_instance(Rng& rng, Index n0, Index dn, Index k0, Index dk) {
  const Index n = n0 + static_cast<Index>(rng.index(static_cast<std::uint64_t>(dn)));
  const Index k = k0 + static_cast<Index>(rng.index(static_cast<std::uint64_t>(dk)));
  RealInstance inst{Matrix(n, k), Matrix(n, k), 0.0};
  for (Index j = 0; j < inst.values.size(); ++j) {
    inst.values.data()[j] = rng.normal();
    inst.costs.data()[j] = rng.uniform(0.0, 3.0);
  }
  const double lo = inst.costs.rowwise().minCoeff().sum();
  const double hi = inst.costs.rowwise().maxCoeff().sum();
  inst.budget = lo + rng.uniform() * (hi - lo);
  return inst;
}

TEST(Knapsack, EqualsBruteForceOn200IntegerInstances) {
  Rng rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const Index n = 1 + static_cast<Index>(rng.index(8)), k = 1 + static_cast<Index>(rng.index(4));
    Matrix v(n, k), c(n, k);
    for (Index j = 0; j < v.size(); ++j) {
      v.data()[j] = rng.normal();
      c.data()[j] = static_cast<double>(rng.index(10));
    }
    const double lo = c.rowwise().minCoeff().sum(), hi = c.rowwise().maxCoeff().sum();
    const double budget = std::floor(lo + rng.uniform() * (hi - lo + 2));
    MultipleChoiceKnapsack dp(c, budget);
    const KnapsackResult r = dp.solve(v);
    const Brute b = brute_force(v, c, budget);
    ASSERT_TRUE(r.exact_grid);
    EXPECT_NEAR(r.value, b.value, 1e-12) << "trial " << trial;
    EXPECT_LE(r.cost, budget) << "trial " << trial;
    EXPECT_GE(r.lp_upper_bound, r.value - 1e-12) << "trial " << trial;
    EXPECT_NEAR(r.gap, r.lp_upper_bound - r.value, 1e-12);
  }
}

TEST(Knapsack, RealCostsNeverOverBudgetAndNearBruteForce) {
  // Non-integer costs go on a grid rounded up: always truly feasible, and with a fine grid the
  // value is the brute-force optimum unless the optimum sits within one grid unit of B.
  Rng rng(11);
  int exact = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const auto [v, c, budget] = random_real_instance(rng, 1, 8, 1, 4);
    MultipleChoiceKnapsack dp(c, budget, {.units_per_cost = 1e4});
    const KnapsackResult r = dp.solve(v);
    const Brute b = brute_force(v, c, budget);
    EXPECT_LE(r.cost, budget) << "trial " << trial;
    EXPECT_LE(r.value, b.value + 1e-12);
    EXPECT_GE(r.lp_upper_bound, b.value - 1e-12);
    if (std::abs(r.value - b.value) <= 1e-12) ++exact;
  }
  // Seeded, so exact: a miss needs an optimum within n grid units (n / 1e4) of B; none here.
  EXPECT_EQ(exact, 200);
}

TEST(Knapsack, FillSlackSpendsWhatACoarseGridLeavesAndNeverBreaksTheBudget) {
  // Coarse grid (R = 2) on real costs: the round-up wastes budget; the greedy fill on the true
  // costs recovers value, stays within budget, and never does worse than the plain grid DP.
  Rng rng(5);
  int improved = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const auto [v, c, budget] = random_real_instance(rng, 2, 7, 2, 3);
    MultipleChoiceKnapsack plain(c, budget, {.units_per_cost = 2, .fill_slack = false});
    MultipleChoiceKnapsack filled(c, budget, {.units_per_cost = 2});
    const KnapsackResult a = plain.solve(v), b = filled.solve(v);
    const Brute best = brute_force(v, c, budget);
    EXPECT_LE(b.cost, budget);
    EXPECT_GE(b.value, a.value);
    EXPECT_LE(b.value, best.value + 1e-12);
    improved += b.value > a.value;
  }
  EXPECT_GE(improved, 100);  // 111 of 200 measured
}

TEST(Knapsack, MinusInfinityForbidsAnOptionAndMatchesBruteForceOverTheAllowedOnes) {
  Rng rng(23);
  int infeasible = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const Index n = 1 + static_cast<Index>(rng.index(7)), k = 2 + static_cast<Index>(rng.index(3));
    Matrix v(n, k), c(n, k);
    for (Index j = 0; j < v.size(); ++j) {
      v.data()[j] = rng.uniform() < 0.3 ? -std::numeric_limits<double>::infinity() : rng.normal();
      c.data()[j] = static_cast<double>(rng.index(10));
    }
    for (Index i = 0; i < n; ++i)  // keep one allowed option per group
      if (!v.row(i).allFinite() &&
          (v.row(i).array() == -std::numeric_limits<double>::infinity()).all())
        v(i, static_cast<Index>(rng.index(static_cast<std::uint64_t>(k)))) = rng.normal();
    const double lo = c.rowwise().minCoeff().sum(), hi = c.rowwise().maxCoeff().sum();
    const double budget = std::floor(lo + rng.uniform() * (hi - lo + 1));
    MultipleChoiceKnapsack dp(c, budget);
    const Brute b = brute_force(v, c, budget);  // -inf values never win
    if (!std::isfinite(b.value)) {
      EXPECT_THROW(dp.solve(v), InfeasibleError) << "trial " << trial;
      ++infeasible;
      continue;
    }
    const KnapsackResult r = dp.solve(v);
    EXPECT_NEAR(r.value, b.value, 1e-12) << "trial " << trial;
    EXPECT_LE(r.cost, budget);
    for (Index i = 0; i < n; ++i)
      EXPECT_TRUE(std::isfinite(v(i, r.assignment[static_cast<std::size_t>(i)])));
    EXPECT_GE(r.lp_upper_bound, r.value - 1e-12);
  }
  EXPECT_GT(infeasible, 0);  // the test saw both outcomes
  Matrix c(1, 2), v(1, 2);
  c << 1, 2;
  v << -std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity();
  EXPECT_THROW(MultipleChoiceKnapsack(c, 2.0).solve(v), InvalidArgumentError);
  v << std::nan(""), 0.0;
  EXPECT_THROW(MultipleChoiceKnapsack(c, 2.0).solve(v), InvalidArgumentError);
}

TEST(Knapsack, RoundsUpWhereNearestWouldBreakTheBudget) {
  // Two groups, costs 0.34 each option 1: nearest rounding at R = 10 gives 3 + 3 = 6 <= 6.5 -> it
  // would take both at true cost 0.68 > 0.65. Rounding up (4 + 4 = 8 > 6) refuses.
  Matrix c(2, 2), v(2, 2);
  c << 0.0, 0.34, 0.0, 0.34;
  v << 0.0, 1.0, 0.0, 1.0;
  MultipleChoiceKnapsack dp(c, 0.65, {.units_per_cost = 10});
  const KnapsackResult r = dp.solve(v);
  EXPECT_LE(r.cost, 0.65);
  EXPECT_DOUBLE_EQ(r.value, 1.0);
}

TEST(Knapsack, LpBoundIsConvexHullGreedy) {
  // One group, options (cost, value) = (0, 0), (1, 3), (2, 4): with B = 1.5 the LP mixes the
  // hull points (1,3) and (2,4) half and half: 3.5. The DP takes (1, 3).
  Matrix c(1, 3), v(1, 3);
  c << 0, 1, 2;
  v << 0, 3, 4;
  MultipleChoiceKnapsack dp(c, 1.5);
  const KnapsackResult r = dp.solve(v);
  EXPECT_DOUBLE_EQ(r.value, 3.0);
  EXPECT_DOUBLE_EQ(r.lp_upper_bound, 3.5);
  EXPECT_DOUBLE_EQ(r.gap, 0.5);
}

TEST(Knapsack, BudgetAtTheMinimumGivesTheCheapestAssignment) {
  Matrix c(3, 2), v(3, 2);
  c << 1, 2, 3, 4, 5, 6;
  v << 0, 1, 0, 1, 0, 1;
  MultipleChoiceKnapsack dp(c, 9.0);
  const KnapsackResult r = dp.solve(v);
  EXPECT_EQ(r.assignment, (Assignment{0, 0, 0}));
  EXPECT_DOUBLE_EQ(r.cost, 9.0);
}

TEST(Knapsack, GridTooCoarseFallsBackToCheapestFeasible) {
  Matrix c(2, 2), v(2, 2);
  c << 0.15, 1.0, 0.15, 1.0;  // ceil(0.15 * 1) = 1 per group: grid says 2 > floor(0.3) = 0
  v << 0.0, 1.0, 0.0, 1.0;
  MultipleChoiceKnapsack dp(c, 0.3, {.units_per_cost = 1});
  const KnapsackResult r = dp.solve(v);
  EXPECT_TRUE(r.grid_fallback);
  EXPECT_EQ(r.assignment, (Assignment{0, 0}));
  EXPECT_LE(r.cost, 0.3);
}

TEST(Knapsack, RefusesBadInput) {
  Matrix c(2, 2), v(2, 2);
  c << 1, 2, 1, 2;
  v << 0, 1, 0, 1;
  try {
    MultipleChoiceKnapsack dp(c, 1.0);
    FAIL() << "budget below the cheapest assignment must be refused";
  } catch (const InfeasibleError& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 4]"), std::string::npos) << e.what();
  }
  Matrix neg = c;
  neg(0, 0) = -1;
  EXPECT_THROW(MultipleChoiceKnapsack(neg, 3.0), InvalidArgumentError);
  Matrix nan_costs = c;
  nan_costs(1, 1) = std::nan("");
  EXPECT_THROW(MultipleChoiceKnapsack(nan_costs, 3.0), InvalidArgumentError);
  EXPECT_THROW(
      MultipleChoiceKnapsack(c, 3.0, {.units_per_cost = 0.0, .use_exact_integer_costs = false}),
      InvalidArgumentError);
  EXPECT_THROW(MultipleChoiceKnapsack(Matrix(0, 2), 0.0), ShapeError);
  MultipleChoiceKnapsack dp(c, 3.0);
  EXPECT_THROW(dp.solve(Matrix::Zero(3, 2)), ShapeError);
  Matrix bad_v = v;
  bad_v(0, 1) = std::numeric_limits<double>::infinity();
  EXPECT_THROW(dp.solve(bad_v), InvalidArgumentError);
  EXPECT_THROW(
      MultipleChoiceKnapsack(
          c, 1e9, {.units_per_cost = 1e6, .use_exact_integer_costs = false, .max_units = 1000}),
      InvalidArgumentError);
}

}  // namespace
}  // namespace tether
