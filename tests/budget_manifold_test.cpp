// The budget manifold (one budget, one budget per block, at most): the invariant battery of
// tests/manifold_invariants.hpp, the retraction from 1000 hard random starts, the degenerate
// one-hot case, and bad input.
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

double min_total(const Matrix& c) { return c.rowwise().minCoeff().sum(); }
double max_total(const Matrix& c) { return c.rowwise().maxCoeff().sum(); }

/// A budget uniform in [lo + margin (hi - lo), hi - margin (hi - lo)] of the rows' range.
double interior_budget(const Matrix& costs, Rng& rng, double margin = 0.03) {
  const double lo = min_total(costs), hi = max_total(costs);
  return lo + (hi - lo) * rng.uniform(margin, 1.0 - margin);
}

Matrix on_manifold(const BudgetManifold& m, Matrix alpha) {
  const RetractionReport r = m.retract(alpha);
  EXPECT_TRUE(r.converged);
  return alpha;
}

// ---- the battery -----------------------------------------------------------------------------

TEST(BudgetManifoldInvariants, OneBudget) {
  Rng rng(11);
  for (int trial = 0; trial < 6; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 2 + static_cast<Index>(rng.index(6)), k = 2 + static_cast<Index>(rng.index(4));
    const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
    const BudgetManifold m(costs, interior_budget(costs, rng, 0.2));
    const Matrix alpha = on_manifold(m, uniform_matrix(n, k, -2.0, 2.0, rng));
    expect_budget_manifold_invariants(m, alpha, rng);
  }
}

TEST(BudgetManifoldInvariants, SeveralBlocks) {
  Rng rng(12);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 9, k = 3 + trial % 2;
    const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
    const std::vector<Index> starts{0, 3, 4, 7};
    Vector budgets(4);
    for (Index b = 0; b < 4; ++b) {
      const Index r1 = b + 1 < 4 ? starts[static_cast<std::size_t>(b) + 1] : n;
      budgets[b] = interior_budget(costs.middleRows(starts[static_cast<std::size_t>(b)],
                                                    r1 - starts[static_cast<std::size_t>(b)]),
                                   rng, 0.2);
    }
    const BudgetManifold m(costs, starts, budgets);
    EXPECT_EQ(m.blocks(), 4);
    const Matrix alpha = on_manifold(m, uniform_matrix(n, k, -2.0, 2.0, rng));
    expect_budget_manifold_invariants(m, alpha, rng);
  }
}

TEST(BudgetManifoldInvariants, AtMostActive) {
  Rng rng(13);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 5, k = 4;
    const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
    const Matrix start = uniform_matrix(n, k, -2.0, 2.0, rng);
    // Budget halfway between the cheapest total and C(start): start is outside, C > B.
    const double c0 = direct_expected_cost(costs, start);
    const double budget = min_total(costs) + 0.5 * (c0 - min_total(costs));
    const BudgetManifold m(costs, budget, BudgetSense::kAtMost);
    ASSERT_TRUE(m.active(start, 0));
    const Matrix alpha = on_manifold(m, start);
    EXPECT_TRUE(m.active(alpha, 0));
    EXPECT_NEAR(m.expected_cost(alpha)[0], budget, budget_tolerance(budget));
    expect_budget_manifold_invariants(m, alpha, rng);
  }
}

TEST(BudgetManifoldInvariants, AtMostInactive) {
  Rng rng(14);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 5, k = 4;
    const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
    const Matrix alpha = uniform_matrix(n, k, -2.0, 2.0, rng);
    const double c0 = direct_expected_cost(costs, alpha);
    const BudgetManifold m(costs, c0 + 0.5 * (max_total(costs) - c0), BudgetSense::kAtMost);
    ASSERT_FALSE(m.active(alpha, 0));
    // Inside: the retraction does nothing at all, the projection is the identity.
    Matrix a = alpha;
    const RetractionReport r = m.retract(a);
    EXPECT_TRUE(r.converged);
    EXPECT_EQ(r.passes, 1);
    EXPECT_EQ(a, alpha);
    expect_budget_manifold_invariants(m, alpha, rng);
  }
}

TEST(BudgetManifoldInvariants, AtMostBlocksOneActiveOneInactive) {
  Rng rng(15);
  const Index n = 6, k = 3;
  const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
  const Matrix start = uniform_matrix(n, k, -2.0, 2.0, rng);
  const Matrix top = costs.topRows(3), bottom = costs.bottomRows(3);
  const double c_top = direct_expected_cost(top, start.topRows(3));
  const double c_bottom = direct_expected_cost(bottom, start.bottomRows(3));
  Vector budgets(2);
  budgets << min_total(top) + 0.5 * (c_top - min_total(top)),  // start above: active
      c_bottom + 0.5 * (max_total(bottom) - c_bottom);         // start below: inactive
  const BudgetManifold m(costs, {0, 3}, budgets, BudgetSense::kAtMost);
  const Matrix alpha = on_manifold(m, start);
  EXPECT_TRUE(m.active(alpha, 0));
  EXPECT_FALSE(m.active(alpha, 1));
  EXPECT_EQ(alpha.bottomRows(3), start.bottomRows(3));  // the inactive block did not move
  expect_budget_manifold_invariants(m, alpha, rng);
}

// ---- the retraction from hard starts ---------------------------------------------------------

TEST(BudgetManifoldRetraction, ThousandRandomStartsOneBudget) {
  Rng rng(20260501);
  std::vector<int> passes, passes_at_most;
  int failures = 0, failures_at_most = 0;
  for (int trial = 0; trial < 1000; ++trial) {
    const Index n = 1 + static_cast<Index>(rng.index(8)), k = 2 + static_cast<Index>(rng.index(5));
    const Matrix costs = log_uniform_costs(n, k, rng);
    const Matrix start = uniform_matrix(n, k, -50.0, 50.0, rng);
    const double budget = interior_budget(costs, rng);
    const double tol = budget_tolerance(budget);

    const BudgetManifold m(costs, budget);
    Matrix alpha = start;
    const RetractionReport r = m.retract(alpha);
    const double c = direct_expected_cost(costs, alpha);
    passes.push_back(r.passes);
    if (!r.converged || !(std::abs(c - budget) <= tol) || !alpha.allFinite()) {
      ++failures;
      ADD_FAILURE() << "trial " << trial << ": N = " << n << ", K = " << k << ", B = " << budget
                    << ", C = " << c << ", |C - B| / tol = " << std::abs(c - budget) / tol
                    << ", passes = " << r.passes << ", saturated = " << r.saturated;
    }

    // The same instance as an at-most budget: retract only when the start is above it.
    const BudgetManifold at_most(costs, budget, BudgetSense::kAtMost);
    Matrix beta = start;
    const RetractionReport ra = at_most.retract(beta);
    const double c_start = direct_expected_cost(costs, start),
                 c_end = direct_expected_cost(costs, beta);
    passes_at_most.push_back(ra.passes);
    const bool ok =
        ra.converged && (c_start > budget + tol ? std::abs(c_end - budget) <= tol : beta == start);
    if (!ok) {
      ++failures_at_most;
      ADD_FAILURE() << "at most, trial " << trial << ": C(start) = " << c_start
                    << ", B = " << budget << ", C = " << c_end;
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(failures_at_most, 0);
  const double med = median(passes);
  const int mx = *std::max_element(passes.begin(), passes.end());
  std::cout << "[ retraction ] one budget, 1000 starts: median passes " << med << ", max " << mx
            << ", failures " << failures << "; at most: median " << median(passes_at_most)
            << ", max " << *std::max_element(passes_at_most.begin(), passes_at_most.end())
            << std::endl;
  RecordProperty("median_passes", std::to_string(med));
  RecordProperty("max_passes", mx);
}

TEST(BudgetManifoldRetraction, ThousandRandomStartsBlocks) {
  Rng rng(20260502);
  std::vector<int> passes;
  int failures = 0;
  for (int trial = 0; trial < 1000; ++trial) {
    const Index n = 2 + static_cast<Index>(rng.index(11)), k = 2 + static_cast<Index>(rng.index(5));
    const Index nb =
        1 + static_cast<Index>(rng.index(static_cast<std::uint64_t>(std::min<Index>(4, n))));
    // nb - 1 distinct cut points in [1, n - 1].
    std::vector<Index> cuts;
    for (Index i = 1; i < n; ++i) cuts.push_back(i);
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i)
      std::swap(cuts[i], cuts[i + rng.index(cuts.size() - i)]);
    std::vector<Index> starts{0};
    starts.insert(starts.end(), cuts.begin(), cuts.begin() + (nb - 1));
    std::sort(starts.begin(), starts.end());

    const Matrix costs = log_uniform_costs(n, k, rng);
    const Matrix start = uniform_matrix(n, k, -50.0, 50.0, rng);
    Vector budgets(nb);
    for (Index b = 0; b < nb; ++b) {
      const Index r0 = starts[static_cast<std::size_t>(b)];
      const Index r1 = b + 1 < nb ? starts[static_cast<std::size_t>(b) + 1] : n;
      budgets[b] = interior_budget(costs.middleRows(r0, r1 - r0), rng);
    }
    const BudgetManifold m(costs, starts, budgets);
    Matrix alpha = start;
    const RetractionReport r = m.retract(alpha);
    passes.push_back(r.passes);
    bool ok = r.converged && alpha.allFinite();
    for (Index b = 0; b < nb; ++b) {
      const Index r0 = m.block_begin(b), r1 = m.block_end(b);
      const double c =
          direct_expected_cost(costs.middleRows(r0, r1 - r0), alpha.middleRows(r0, r1 - r0));
      ok = ok && std::abs(c - budgets[b]) <= budget_tolerance(budgets[b]);
    }
    if (!ok) {
      ++failures;
      ADD_FAILURE() << "trial " << trial << ": N = " << n << ", K = " << k << ", blocks " << nb
                    << ", passes = " << r.passes << ", residual " << r.max_abs_residual;
    }
  }
  EXPECT_EQ(failures, 0);
  const double med = median(passes);
  const int mx = *std::max_element(passes.begin(), passes.end());
  std::cout << "[ retraction ] blocks, 1000 starts: median passes (max over blocks) " << med
            << ", max " << mx << ", failures " << failures << std::endl;
  RecordProperty("median_passes", std::to_string(med));
  RecordProperty("max_passes", mx);
}

// ---- degenerate and huge logits --------------------------------------------------------------

TEST(BudgetManifold, OneHotRowsAreDegenerate) {
  Rng rng(30);
  const Index n = 4, k = 3;
  const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
  const BudgetManifold m(costs, interior_budget(costs, rng));
  Matrix alpha = Matrix::Constant(n, k, -1e4);
  for (Index i = 0; i < n; ++i) alpha(i, static_cast<Index>(rng.index(k))) = 1e4;
  Matrix n_at;
  m.normal(alpha, n_at);
  EXPECT_EQ(n_at.squaredNorm(), 0.0);
  const Matrix v = testing::random_matrix(n, k, rng);
  Matrix w = v;
  EXPECT_FALSE(m.project(alpha, w));
  EXPECT_EQ(w, v);  // left unchanged
  EXPECT_FALSE(m.transport(alpha, w));
}

// From one-hot rows at logits +-1e4 the root t is large and the shifted logits are ~1e4, whose
// spacing (ulp ~ 2e-12) limits how finely C can be set: each logit carries an error up to
// ~6 eps L (rounding of alpha + t c, plus the bracket's resolution 4 eps |t| in t), L the
// largest shifted logit, and |dC / dalpha_ik| summed over a row is at most max_k c_ik. So the
// retraction must either meet the tolerance or say it saturated, within
// 8 eps L sum_i max_k c_ik, and never run out of passes, loop, or produce NaN.
TEST(BudgetManifold, RetractionFromOneHotRowsConvergesOrReportsSaturation) {
  Rng rng(31);
  int converged = 0, saturated = 0;
  for (int trial = 0; trial < 200; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 1 + static_cast<Index>(rng.index(6)), k = 2 + static_cast<Index>(rng.index(4));
    const Matrix costs = log_uniform_costs(n, k, rng);
    const double budget = interior_budget(costs, rng);
    const BudgetManifold m(costs, budget);
    Matrix alpha = Matrix::Constant(n, k, -1e4);
    for (Index i = 0; i < n; ++i) alpha(i, static_cast<Index>(rng.index(k))) = 1e4;
    const RetractionReport r = m.retract(alpha);
    ASSERT_TRUE(alpha.allFinite());
    EXPECT_LT(r.passes, 100);
    EXPECT_TRUE(r.converged != r.saturated)
        << "converged " << r.converged << ", saturated " << r.saturated;
    EXPECT_LE(alpha.maxCoeff(), 0.0);  // recentred: every row's maximum is 0
    const double residual = std::abs(direct_expected_cost(costs, alpha) - budget);
    if (r.converged) {
      ++converged;
      EXPECT_LE(residual, budget_tolerance(budget));
    } else {
      ++saturated;
      const double shifted = 1e4 + std::abs(r.shifts[0]) * costs.maxCoeff();
      const double bound =
          8.0 * std::numeric_limits<double>::epsilon() * shifted * costs.rowwise().maxCoeff().sum();
      EXPECT_LE(residual, bound);
    }
  }
  std::cout << "[ retraction ] one-hot starts at +-1e4: " << converged << " converged, "
            << saturated << " reported saturation" << std::endl;
}

// ---- bad input -------------------------------------------------------------------------------

using testing::message_of;

class BudgetManifoldBadInput : public ::testing::Test {
 protected:
  // Row minima 1 + 0.5 = 1.5, row maxima 3 + 6 = 9.
  Matrix costs_ = (Matrix(2, 3) << 1.0, 2.0, 3.0, 0.5, 4.0, 6.0).finished();
};

TEST_F(BudgetManifoldBadInput, BudgetOutsideTheRangeNamesTheRange) {
  for (const double budget : {10.0, 1.0, -3.0}) {
    const std::string what = message_of<InfeasibleError>([&] { BudgetManifold m(costs_, budget); });
    EXPECT_THAT(what, HasSubstr("feasible range"));
    EXPECT_THAT(what, HasSubstr("1.5"));
    EXPECT_THAT(what, HasSubstr("9"));
  }
  EXPECT_THROW(BudgetManifold(costs_, std::numeric_limits<double>::infinity()),
               InvalidArgumentError);
}

TEST_F(BudgetManifoldBadInput, EqualityBudgetAtAnEndPoint) {
  for (const double budget : {1.5, 9.0}) {
    const std::string what = message_of<InfeasibleError>([&] { BudgetManifold m(costs_, budget); });
    EXPECT_THAT(what, HasSubstr("strictly inside the feasible range (1.5, 9)"));
  }
  // At most: the lower end is infeasible for a manifold, anything above it is fine.
  EXPECT_THROW(BudgetManifold(costs_, 1.5, BudgetSense::kAtMost), InfeasibleError);
  EXPECT_NO_THROW(BudgetManifold(costs_, 9.0, BudgetSense::kAtMost));
  EXPECT_NO_THROW(BudgetManifold(costs_, 100.0, BudgetSense::kAtMost));
}

TEST_F(BudgetManifoldBadInput, ShapeMismatch) {
  const BudgetManifold m(costs_, 5.0);
  const BudgetManifold at_most(costs_, 5.0, BudgetSense::kAtMost);
  Matrix bad = Matrix::Zero(3, 3), good = Matrix::Zero(2, 3), n;
  EXPECT_THROW(m.expected_cost(bad), ShapeError);
  EXPECT_THROW(m.residual(bad), ShapeError);
  EXPECT_THROW(m.normal(bad, n), ShapeError);
  EXPECT_THROW(m.retract(bad), ShapeError);
  EXPECT_THROW(m.project(bad, good), ShapeError);
  EXPECT_THROW(m.project(good, bad), ShapeError);
  m.normal(good, n);
  EXPECT_THROW(at_most.project_with_normal(bad, n, good), ShapeError);
  EXPECT_THROW(at_most.active(bad, 0), ShapeError);
  EXPECT_THROW(at_most.active(good, 1), InvalidArgumentError);
  EXPECT_THROW(BudgetManifold(Matrix(0, 3), 1.0), ShapeError);
  EXPECT_THROW(BudgetManifold(Matrix(2, 0), 1.0), ShapeError);
}

TEST_F(BudgetManifoldBadInput, NegativeAndNanCosts) {
  Matrix negative = costs_;
  negative(0, 1) = -1.0;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { BudgetManifold m(negative, 5.0); }),
              HasSubstr("costs(0, 1) must be >= 0"));
  Matrix nan = costs_;
  nan(1, 2) = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { BudgetManifold m(nan, 5.0); }),
              HasSubstr("costs(1, 2) must be finite"));
  EXPECT_THROW(BudgetManifold(costs_, std::numeric_limits<double>::quiet_NaN()),
               InvalidArgumentError);
}

TEST_F(BudgetManifoldBadInput, BadBlockStarts) {
  Matrix costs(4, 2);
  costs.col(0).setConstant(1.0);
  costs.col(1).setConstant(2.0);  // every block of r rows has the range [r, 2 r]
  const Vector two = Vector::Constant(2, 3.0), one = Vector::Constant(1, 6.0);
  EXPECT_THROW(BudgetManifold(costs, std::vector<Index>{1, 2}, two), ShapeError);  // not at 0
  EXPECT_THROW(BudgetManifold(costs, std::vector<Index>{0, 0}, two), ShapeError);  // empty block
  EXPECT_THROW(BudgetManifold(costs, std::vector<Index>{0, 4}, two), ShapeError);  // past N
  EXPECT_THROW(BudgetManifold(costs, std::vector<Index>{0, 3, 2}, Vector::Constant(3, 1.0)),
               ShapeError);                                                         // decreasing
  EXPECT_THROW(BudgetManifold(costs, std::vector<Index>{0, 2}, one), ShapeError);   // 2 vs 1
  EXPECT_THROW(BudgetManifold(costs, std::vector<Index>{}, Vector()), ShapeError);  // none
  EXPECT_NO_THROW(BudgetManifold(costs, std::vector<Index>{0, 2}, two));
}

TEST_F(BudgetManifoldBadInput, BadOptions) {
  EXPECT_THROW(BudgetManifold(costs_, 5.0, BudgetSense::kEqual, {.tolerance = 0.0}),
               InvalidArgumentError);
  EXPECT_THROW(BudgetManifold(costs_, 5.0, BudgetSense::kEqual, {.max_passes = 0}),
               InvalidArgumentError);
}

}  // namespace
}  // namespace tether
