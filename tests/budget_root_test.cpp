// The retraction's root finder (manifolds/budget_root.hpp) on scalar functions whose roots are
// known: the safeguards that the manifold's tests reach only indirectly.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <tether/manifolds/budget_root.hpp>

namespace tether {
namespace {

struct Outcome {
  budget_root::SafeguardedNewton root;
  int evaluations = 0;
};

// Drives the state machine as the CPU retraction and the kernels do.
Outcome solve(const std::function<double(double)>& phi, const std::function<double(double)>& slope,
              double target, double tolerance, bool at_most = false, int max_passes = 100,
              double spread = 1.0) {
  Outcome out;
  budget_root::start(out.root, target, tolerance, max_passes, at_most, spread);
  bool more = true;
  while (more) {
    const double t = budget_root::query(out.root);
    ++out.evaluations;
    more = budget_root::feed(out.root, phi(t), slope(t));
  }
  return out;
}

TEST(BudgetRoot, NewtonWithSafeguardsFindsTheRootOfAnArctangent) {
  // Plain Newton from t = 0 on atan(t - 3) overshoots and diverges (|t - 3| > 1.39); the
  // bracket and the capped open steps must bring it home.
  const auto phi = [](double t) { return std::atan(t - 3.0); };
  const auto slope = [](double t) { return 1.0 / (1.0 + (t - 3.0) * (t - 3.0)); };
  const Outcome o = solve(phi, slope, 0.1, 1e-12);
  EXPECT_TRUE(o.root.converged);
  EXPECT_FALSE(o.root.saturated);
  EXPECT_NEAR(o.root.t, 3.0 + std::tan(0.1), 1e-11);
  EXPECT_LE(std::abs(o.root.phi - 0.1), 1e-12);
  EXPECT_EQ(o.root.passes, o.evaluations);
  EXPECT_LT(o.root.passes, 40);
}

TEST(BudgetRoot, FlatTailsAreCrossedByDoublingSteps) {
  // phi' underflows to 0 far from the root: Newton is refused, the open-bracket step doubles.
  const auto phi = [](double t) { return std::tanh(t - 200.0); };
  const auto slope = [](double t) {
    const double c = std::cosh(t - 200.0);
    return std::isfinite(c) ? 1.0 / (c * c) : 0.0;
  };
  const Outcome o = solve(phi, slope, 0.5, 1e-12);
  EXPECT_TRUE(o.root.converged);
  EXPECT_NEAR(o.root.t, 200.0 + std::atanh(0.5), 1e-9);
}

TEST(BudgetRoot, AJumpOverTheTargetSaturatesTheBracket) {
  // A step function never reaches 0.5: the bracket collapses onto the jump at t = 1.
  const auto phi = [](double t) { return t < 1.0 ? 0.0 : 1.0; };
  const auto slope = [](double) { return 0.0; };
  const Outcome o = solve(phi, slope, 0.5, 1e-12);
  EXPECT_FALSE(o.root.converged);
  EXPECT_TRUE(o.root.saturated);
  EXPECT_NEAR(o.root.t, 1.0, 1e-14);
}

TEST(BudgetRoot, AtMostFromAFeasibleStartDoesNothing) {
  const auto phi = [](double t) { return t; };
  const auto slope = [](double) { return 1.0; };
  const Outcome o = solve([&](double t) { return phi(t) - 5.0; }, slope, 0.0, 1e-12, true);
  EXPECT_TRUE(o.root.converged);
  EXPECT_TRUE(o.root.feasible_start);
  EXPECT_EQ(o.root.passes, 1);
  EXPECT_EQ(o.root.t, 0.0);
  // Infeasible at most: solved like an equality.
  const Outcome moved = solve([&](double t) { return phi(t) + 5.0; }, slope, 0.0, 1e-12, true);
  EXPECT_FALSE(moved.root.feasible_start);
  EXPECT_NEAR(moved.root.t, -5.0, 1e-12);
}

TEST(BudgetRoot, ThePassLimitIsReportedNotLooped) {
  const auto phi = [](double t) { return std::atan(t - 3.0); };
  const auto slope = [](double t) { return 1.0 / (1.0 + (t - 3.0) * (t - 3.0)); };
  const Outcome o = solve(phi, slope, 0.1, 1e-12, false, 3);
  EXPECT_EQ(o.root.passes, 3);
  EXPECT_EQ(o.evaluations, 3);
  EXPECT_FALSE(o.root.converged);
  EXPECT_GT(std::abs(o.root.phi - 0.1), 1e-12);
}

}  // namespace
}  // namespace tether
