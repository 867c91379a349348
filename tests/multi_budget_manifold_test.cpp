// Several budgets at once: the invariant battery of tests/manifold_invariants.hpp (every normal
// against finite differences, projection orthogonal to every normal), the damped-Newton
// retraction from hard random starts, equivalence with BudgetManifold at m = 1, dependent and
// jointly infeasible budgets, degenerate points and bad input.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <tether/manifolds/multi_budget_manifold.hpp>
#include <vector>

#include "error_message.hpp"
#include "manifold_invariants.hpp"

namespace tether {
namespace {

using testing::budget_tolerance;
using testing::direct_expected_cost;
using testing::expect_budget_manifold_invariants;
using ::testing::HasSubstr;
using testing::log_uniform_costs;
using testing::median;
using testing::uniform_matrix;

/// Budgets C_j(alpha_star): jointly feasible by construction.
Vector budgets_at(const std::vector<Matrix>& costs, const Matrix& alpha_star) {
  Vector b(static_cast<Index>(costs.size()));
  for (std::size_t j = 0; j < costs.size(); ++j)
    b[static_cast<Index>(j)] = direct_expected_cost(costs[j], alpha_star);
  return b;
}

Matrix on_manifold(const MultiBudgetManifold& m, Matrix alpha) {
  const MultiRetractionReport r = m.retract(alpha);
  EXPECT_TRUE(r.converged) << "passes " << r.passes << ", residual " << r.max_abs_residual;
  return alpha;
}

// ---- the battery -----------------------------------------------------------------------------

TEST(MultiBudgetManifoldInvariants, TwoAndThreeBudgets) {
  Rng rng(41);
  for (int trial = 0; trial < 6; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index m = 2 + trial % 2;
    const Index n = 3 + static_cast<Index>(rng.index(5)), k = 3 + static_cast<Index>(rng.index(3));
    std::vector<Matrix> costs;
    for (Index j = 0; j < m; ++j) costs.push_back(uniform_matrix(n, k, 0.0, 5.0, rng));
    const MultiBudgetManifold manifold(costs, budgets_at(costs, uniform_matrix(n, k, -2, 2, rng)));
    const Matrix alpha = on_manifold(manifold, uniform_matrix(n, k, -2.0, 2.0, rng));
    Matrix v = testing::random_matrix(n, k, rng);
    const ProjectionReport p = manifold.project(alpha, v);
    EXPECT_TRUE(p.ok);
    EXPECT_EQ(p.rank, m);
    EXPECT_FALSE(p.regularised);
    expect_budget_manifold_invariants(manifold, alpha, rng);
  }
}

TEST(MultiBudgetManifoldInvariants, OneBudget) {
  Rng rng(42);
  const Matrix costs = uniform_matrix(5, 4, 0.0, 5.0, rng);
  const MultiBudgetManifold manifold({costs},
                                     budgets_at({costs}, uniform_matrix(5, 4, -2, 2, rng)));
  expect_budget_manifold_invariants(manifold,
                                    on_manifold(manifold, uniform_matrix(5, 4, -2, 2, rng)), rng);
}

// c^(2) = 2 c^(1), B_2 = 2 B_1: the normals are exactly dependent, the Gram matrix and the
// Newton Jacobian singular. Projection and retraction must still be exact, and say so.
TEST(MultiBudgetManifoldInvariants, ExactlyDependentBudgets) {
  Rng rng(43);
  const Index n = 4, k = 3;
  const Matrix c1 = uniform_matrix(n, k, 0.0, 5.0, rng);
  const std::vector<Matrix> costs{c1, 2.0 * c1};
  const MultiBudgetManifold manifold(costs, budgets_at(costs, uniform_matrix(n, k, -2, 2, rng)));
  ASSERT_EQ(manifold.budgets()[1], 2.0 * manifold.budgets()[0]);
  Matrix alpha = uniform_matrix(n, k, -2.0, 2.0, rng);
  const MultiRetractionReport r = manifold.retract(alpha);
  EXPECT_TRUE(r.converged);
  EXPECT_TRUE(r.rank_deficient);
  Matrix v = testing::random_matrix(n, k, rng);
  const ProjectionReport p = manifold.project(alpha, v);
  EXPECT_TRUE(p.ok);
  EXPECT_EQ(p.rank, 1);
  EXPECT_TRUE(p.regularised);
  expect_budget_manifold_invariants(manifold, alpha, rng);
}

// c^(2) = c^(1) + a constant per row: the same normals up to round-off (E shifts by the
// constant, c - E does not). Numerically rank 1.
TEST(MultiBudgetManifoldInvariants, DependentUpToRoundOff) {
  Rng rng(44);
  const Index n = 4, k = 3;
  const Matrix c1 = uniform_matrix(n, k, 0.0, 5.0, rng);
  Matrix c2 = c1;
  for (Index i = 0; i < n; ++i) c2.row(i).array() += rng.uniform(0.0, 3.0);
  const std::vector<Matrix> costs{c1, c2};
  const MultiBudgetManifold manifold(costs, budgets_at(costs, uniform_matrix(n, k, -2, 2, rng)));
  const Matrix alpha = on_manifold(manifold, uniform_matrix(n, k, -2.0, 2.0, rng));
  Matrix v = testing::random_matrix(n, k, rng);
  const ProjectionReport p = manifold.project(alpha, v);
  EXPECT_TRUE(p.ok);
  EXPECT_EQ(p.rank, 1);
  EXPECT_TRUE(p.regularised);
  expect_budget_manifold_invariants(manifold, alpha, rng);
}

// ---- the retraction from hard starts ---------------------------------------------------------

TEST(MultiBudgetManifoldRetraction, TwoHundredRandomStarts) {
  for (const Index m : {2, 3}) {
    Rng rng(20260600 + static_cast<std::uint64_t>(m));
    std::vector<int> passes;
    int failures = 0, rank_deficient = 0;
    for (int trial = 0; trial < 200; ++trial) {
      const Index n = 2 + static_cast<Index>(rng.index(7)),
                  k = 2 + static_cast<Index>(rng.index(5));
      std::vector<Matrix> costs;
      for (Index j = 0; j < m; ++j) costs.push_back(log_uniform_costs(n, k, rng));
      const Vector budgets = budgets_at(costs, uniform_matrix(n, k, -5.0, 5.0, rng));
      const MultiBudgetManifold manifold(costs, budgets);
      Matrix alpha = uniform_matrix(n, k, -50.0, 50.0, rng);
      const MultiRetractionReport r = manifold.retract(alpha);
      passes.push_back(r.passes);
      rank_deficient += r.rank_deficient ? 1 : 0;
      bool ok = r.converged && alpha.allFinite();
      for (Index j = 0; j < m; ++j)
        ok = ok && std::abs(direct_expected_cost(costs[static_cast<std::size_t>(j)], alpha) -
                            budgets[j]) <= budget_tolerance(budgets[j]);
      if (!ok) {
        ++failures;
        ADD_FAILURE() << "m = " << m << ", trial " << trial << ": N = " << n << ", K = " << k
                      << ", passes " << r.passes << ", stalled " << r.stalled << ", residual "
                      << r.residual.transpose() << ", budgets " << budgets.transpose();
      }
    }
    EXPECT_EQ(failures, 0);
    const double med = median(passes);
    const int mx = *std::max_element(passes.begin(), passes.end());
    std::cout << "[ retraction ] m = " << m << ", 200 starts: median passes " << med << ", max "
              << mx << ", failures " << failures << ", rank-deficient Jacobian in "
              << rank_deficient << std::endl;
    RecordProperty("median_passes_m" + std::to_string(m), std::to_string(med));
    RecordProperty("max_passes_m" + std::to_string(m), mx);
  }
}

// m = 1 is BudgetManifold: the same point, where the root is well conditioned (moderate logits
// and costs, so |d t| <= tolerance / phi' is ~1e-13); and from the hard starts both converge.
TEST(MultiBudgetManifoldRetraction, OneBudgetEqualsBudgetManifold) {
  Rng rng(45);
  for (int trial = 0; trial < 200; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 1 + static_cast<Index>(rng.index(8)), k = 2 + static_cast<Index>(rng.index(5));
    const Matrix costs = uniform_matrix(n, k, 0.5, 5.0, rng);
    const double lo = costs.rowwise().minCoeff().sum(), hi = costs.rowwise().maxCoeff().sum();
    const double budget = lo + (hi - lo) * rng.uniform(0.2, 0.8);
    const Matrix start = uniform_matrix(n, k, -3.0, 3.0, rng);
    Matrix a1 = start, a2 = start;
    const RetractionReport r1 = BudgetManifold(costs, budget).retract(a1);
    const MultiRetractionReport r2 =
        MultiBudgetManifold({costs}, Vector::Constant(1, budget)).retract(a2);
    ASSERT_TRUE(r1.converged);
    ASSERT_TRUE(r2.converged);
    EXPECT_LE(std::abs(r1.shifts[0] - r2.shifts[0]), 1e-12 * std::max(1.0, std::abs(r1.shifts[0])));
    EXPECT_LE((a1 - a2).cwiseAbs().maxCoeff(), 1e-12 * std::max(1.0, a1.cwiseAbs().maxCoeff()));
  }
  std::vector<int> p1, p2;
  for (int trial = 0; trial < 1000; ++trial) {
    SCOPED_TRACE("hard trial " + std::to_string(trial));
    const Index n = 1 + static_cast<Index>(rng.index(8)), k = 2 + static_cast<Index>(rng.index(5));
    const Matrix costs = log_uniform_costs(n, k, rng);
    const double lo = costs.rowwise().minCoeff().sum(), hi = costs.rowwise().maxCoeff().sum();
    const double budget = lo + (hi - lo) * rng.uniform(0.03, 0.97);
    const Matrix start = uniform_matrix(n, k, -50.0, 50.0, rng);
    Matrix a1 = start, a2 = start;
    const RetractionReport r1 = BudgetManifold(costs, budget).retract(a1);
    const MultiRetractionReport r2 =
        MultiBudgetManifold({costs}, Vector::Constant(1, budget)).retract(a2);
    EXPECT_TRUE(r1.converged);
    EXPECT_TRUE(r2.converged);
    EXPECT_LE(std::abs(direct_expected_cost(costs, a2) - budget), budget_tolerance(budget));
    p1.push_back(r1.passes);
    p2.push_back(r2.passes);
  }
  std::cout << "[ retraction ] m = 1, 1000 hard starts: BudgetManifold median " << median(p1)
            << " max " << *std::max_element(p1.begin(), p1.end()) << "; MultiBudgetManifold median "
            << median(p2) << " max " << *std::max_element(p2.begin(), p2.end()) << std::endl;
}

// Each budget inside its own range, but no alpha meets both: one row, costs (0, 1, 2) and
// (0, 1, 0): (C_1, C_2) ranges over the triangle with corners (0, 0), (1, 1), (2, 0); the
// target (0.2, 0.8) is outside it. The retraction must stop and say it did not converge.
TEST(MultiBudgetManifoldRetraction, JointlyInfeasibleBudgetsAreReported) {
  const Matrix c1 = (Matrix(1, 3) << 0.0, 1.0, 2.0).finished();
  const Matrix c2 = (Matrix(1, 3) << 0.0, 1.0, 0.0).finished();
  const MultiBudgetManifold manifold({c1, c2}, (Vector(2) << 0.2, 0.8).finished());
  Matrix alpha = Matrix::Zero(1, 3);
  const MultiRetractionReport r = manifold.retract(alpha);
  EXPECT_FALSE(r.converged);
  EXPECT_LE(r.passes, 100);
  EXPECT_TRUE(alpha.allFinite());
  EXPECT_GT(r.max_abs_residual, 1e-3);

  // Same costs twice with different budgets: J singular, the residual cannot vanish.
  Rng rng(46);
  const Matrix c = uniform_matrix(3, 3, 0.0, 5.0, rng);
  const MultiBudgetManifold twice({c, c}, (Vector(2) << 6.0, 7.0).finished());
  Matrix beta = Matrix::Zero(3, 3);
  const MultiRetractionReport r2 = twice.retract(beta);
  EXPECT_FALSE(r2.converged);
  EXPECT_TRUE(r2.rank_deficient);
  EXPECT_TRUE(beta.allFinite());
  EXPECT_LE(r2.passes, 100);
}

// ---- degenerate ------------------------------------------------------------------------------

TEST(MultiBudgetManifold, OneHotRowsAreDegenerate) {
  Rng rng(47);
  const Index n = 4, k = 3;
  const std::vector<Matrix> costs{uniform_matrix(n, k, 0.0, 5.0, rng),
                                  uniform_matrix(n, k, 0.0, 5.0, rng)};
  const MultiBudgetManifold m(costs, budgets_at(costs, Matrix::Zero(n, k)));
  Matrix alpha = Matrix::Constant(n, k, -1e4);
  for (Index i = 0; i < n; ++i) alpha(i, static_cast<Index>(rng.index(k))) = 1e4;
  const Matrix v = testing::random_matrix(n, k, rng);
  Matrix w = v;
  EXPECT_FALSE(static_cast<bool>(m.project(alpha, w)));
  EXPECT_EQ(w, v);
  EXPECT_FALSE(static_cast<bool>(m.transport(alpha, w)));
}

// ---- bad input -------------------------------------------------------------------------------

using testing::message_of;

class MultiBudgetManifoldBadInput : public ::testing::Test {
 protected:
  // c1: range [1.5, 9]; c2: range [0, 2].
  Matrix c1_ = (Matrix(2, 3) << 1.0, 2.0, 3.0, 0.5, 4.0, 6.0).finished();
  Matrix c2_ = (Matrix(2, 3) << 0.0, 1.0, 0.0, 1.0, 0.0, 0.0).finished();
  Vector budgets(double b1, double b2) { return (Vector(2) << b1, b2).finished(); }
};

TEST_F(MultiBudgetManifoldBadInput, BudgetOutsideItsRangeNamesTheRange) {
  const std::string above = message_of<InfeasibleError>([&] {
    MultiBudgetManifold m({c1_, c2_}, budgets(5.0, 3.0));
  });
  EXPECT_THAT(above, HasSubstr("feasible range"));
  EXPECT_THAT(above, HasSubstr("[0, 2]"));
  const std::string end = message_of<InfeasibleError>([&] {
    MultiBudgetManifold m({c1_, c2_}, budgets(9.0, 1.0));
  });
  EXPECT_THAT(end, HasSubstr("costs[0]"));
  EXPECT_THAT(end, HasSubstr("strictly inside the feasible range (1.5, 9)"));
  EXPECT_THROW(MultiBudgetManifold({c1_, c2_}, budgets(5.0, 0.0)), InfeasibleError);
  EXPECT_NO_THROW(MultiBudgetManifold({c1_, c2_}, budgets(5.0, 1.0)));
}

TEST_F(MultiBudgetManifoldBadInput, Shapes) {
  EXPECT_THROW(MultiBudgetManifold({}, Vector()), ShapeError);
  EXPECT_THROW(MultiBudgetManifold({c1_, c2_}, Vector::Constant(1, 5.0)), ShapeError);
  EXPECT_THROW(MultiBudgetManifold({c1_, Matrix::Ones(3, 3)}, budgets(5.0, 1.0)), ShapeError);
  EXPECT_THROW(MultiBudgetManifold({Matrix(0, 3)}, Vector::Constant(1, 1.0)), ShapeError);
  const MultiBudgetManifold m({c1_, c2_}, budgets(5.0, 1.0));
  Matrix bad = Matrix::Zero(3, 3), good = Matrix::Zero(2, 3), n;
  EXPECT_THROW(m.expected_cost(bad), ShapeError);
  EXPECT_THROW(m.residual(bad), ShapeError);
  EXPECT_THROW(m.normal(bad, 0, n), ShapeError);
  EXPECT_THROW(m.normal(good, 2, n), InvalidArgumentError);
  EXPECT_THROW(m.retract(bad), ShapeError);
  EXPECT_THROW(m.project(bad, good), ShapeError);
  EXPECT_THROW(m.project(good, bad), ShapeError);
  std::vector<Matrix> normals;
  m.normals(good, normals);
  normals.pop_back();
  EXPECT_THROW(m.project_with_normals(normals, good), ShapeError);
}

TEST_F(MultiBudgetManifoldBadInput, NegativeAndNanCostsAndBadOptions) {
  Matrix negative = c2_;
  negative(1, 1) = -0.5;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] {
                MultiBudgetManifold m({c1_, negative}, budgets(5.0, 1.0));
              }),
              HasSubstr("costs(1, 1) must be >= 0"));
  Matrix nan = c1_;
  nan(0, 0) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(MultiBudgetManifold({nan, c2_}, budgets(5.0, 1.0)), InvalidArgumentError);
  EXPECT_THROW(MultiBudgetManifold({c1_, c2_}, budgets(5.0, std::nan(""))), InvalidArgumentError);
  EXPECT_THROW(MultiBudgetManifold({c1_, c2_}, budgets(5.0, 1.0), {.tolerance = -1.0}),
               InvalidArgumentError);
  EXPECT_THROW(MultiBudgetManifold({c1_, c2_}, budgets(5.0, 1.0), {.max_passes = 0}),
               InvalidArgumentError);
}

}  // namespace
}  // namespace tether
