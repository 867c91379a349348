// CeresBudgetManifold against Ceres' own manifold invariants (manifold_test_utils.h: x + 0 = x,
// x - x = 0, Minus(Plus(x, d), x) = d, Plus(x, Minus(y, x)) = y, both Jacobians against Ridders
// differences, MinusJacobian * PlusJacobian = I), plus the frame itself and a small Ceres solve.
#include <ceres/ceres.h>
#include <ceres/manifold_test_utils.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/ceres_budget_manifold.hpp>

namespace tether {
namespace {

using ceres::HasCorrectMinusJacobianAt;
using ceres::HasCorrectPlusJacobianAt;
using ceres::HasCorrectRightMultiplyByPlusJacobianAt;
using ceres::MinusPlusIsIdentityAt;
using ceres::MinusPlusJacobianIsIdentityAt;
using ceres::PlusMinusIsIdentityAt;
using ceres::XMinusXIsZeroAt;
using ceres::XPlusZeroIsXAt;

// Ceres' own manifold tests use this tolerance.
constexpr double kTolerance = 1e-9;

Matrix uniform_matrix(Index n, Index k, double lo, double hi, Rng& rng) {
  Matrix m(n, k);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform(lo, hi);
  return m;
}

double budget_in(const Matrix& costs, Rng& rng) {
  const double lo = costs.rowwise().minCoeff().sum(), hi = costs.rowwise().maxCoeff().sum();
  return lo + (hi - lo) * rng.uniform(0.2, 0.8);
}

/// A point on the manifold, flattened row-major.
Vector point_on(const CeresBudgetManifold& manifold, Rng& rng) {
  const BudgetManifold& m = manifold.budget_manifold();
  Matrix alpha = uniform_matrix(m.groups(), m.options(), -2.0, 2.0, rng);
  const RetractionReport r = m.retract(alpha);
  EXPECT_TRUE(r.converged);
  return Eigen::Map<const Vector>(alpha.data(), alpha.size());
}

TEST(CeresBudgetManifold, CeresInvariantsHold) {
  Rng rng(51);
  const std::vector<std::pair<Index, Index>> shapes{{1, 2}, {1, 5}, {2, 3}, {3, 4},
                                                    {4, 5}, {5, 4}, {2, 7}, {10, 2}};
  for (const auto& [n, k] : shapes) {
    for (int trial = 0; trial < 3; ++trial) {
      SCOPED_TRACE("N = " + std::to_string(n) + ", K = " + std::to_string(k) + ", trial " +
                   std::to_string(trial));
      const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
      const CeresBudgetManifold manifold(costs, budget_in(costs, rng));
      EXPECT_EQ(manifold.AmbientSize(), n * k);
      EXPECT_EQ(manifold.TangentSize(), n * k - 1);
      const Vector x = point_on(manifold, rng);
      const Vector y = point_on(manifold, rng);
      Vector delta(manifold.TangentSize());
      for (Index i = 0; i < delta.size(); ++i) delta[i] = 0.1 * rng.normal();
      EXPECT_THAT_MANIFOLD_INVARIANTS_HOLD(manifold, x, delta, y, kTolerance);
    }
  }
}

// The frame: U has orthonormal columns orthogonal to n; Plus lands on the manifold; the
// Jacobians are what the header says.
TEST(CeresBudgetManifold, FrameIsAnOrthonormalTangentBasis) {
  Rng rng(52);
  for (int trial = 0; trial < 10; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Index n = 1 + static_cast<Index>(rng.index(4)), k = 2 + static_cast<Index>(rng.index(4));
    const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
    const double budget = budget_in(costs, rng);
    const CeresBudgetManifold manifold(costs, budget);
    const int a = manifold.AmbientSize(), t = manifold.TangentSize();
    const Vector x = point_on(manifold, rng);
    ceres::Matrix u(a, t);  // row-major, as Ceres lays out Jacobians
    ASSERT_TRUE(manifold.PlusJacobian(x.data(), u.data()));
    EXPECT_LE((u.transpose() * u - ceres::Matrix::Identity(t, t)).norm(), 1e-14 * t);
    Matrix normal;
    const Matrix alpha = Eigen::Map<const Matrix>(x.data(), n, k);
    manifold.budget_manifold().normal(alpha, normal);
    const Vector nv = Eigen::Map<const Vector>(normal.data(), a);
    EXPECT_LE((nv.transpose() * u).norm(), 1e-14 * nv.norm());
    ceres::Matrix minus_jacobian(t, a);
    ASSERT_TRUE(manifold.MinusJacobian(x.data(), minus_jacobian.data()));
    const Vector c = Eigen::Map<const Vector>(costs.data(), a);
    EXPECT_LE((minus_jacobian * c).norm(), 1e-12 * c.norm());  // Minus ignores moves along c

    Vector delta(t), out(a);
    for (Index i = 0; i < t; ++i) delta[i] = rng.normal();
    ASSERT_TRUE(manifold.Plus(x.data(), delta.data(), out.data()));
    const Matrix moved = Eigen::Map<const Matrix>(out.data(), n, k);
    EXPECT_LE(std::abs(manifold.budget_manifold().expected_cost(moved)[0] - budget),
              CeresBudgetManifold::kDefaultTolerance * std::max(1.0, budget));
  }
}

// A Ceres solve on the manifold: the logits nearest (in the Euclidean metric) to a target,
// subject to C = B. At the answer the residual alpha - target is normal: its tangent part,
// (alpha - target) projected, vanishes.
class DistanceTo : public ceres::CostFunction {
 public:
  explicit DistanceTo(Vector target) : target_(std::move(target)) {
    set_num_residuals(static_cast<int>(target_.size()));
    mutable_parameter_block_sizes()->push_back(static_cast<int>(target_.size()));
  }
  bool Evaluate(double const* const* parameters, double* residuals,
                double** jacobians) const override {
    const Index a = target_.size();
    Eigen::Map<Vector>(residuals, a) = Eigen::Map<const Vector>(parameters[0], a) - target_;
    if (jacobians != nullptr && jacobians[0] != nullptr)
      Eigen::Map<ceres::Matrix>(jacobians[0], a, a).setIdentity();
    return true;
  }

 private:
  Vector target_;
};

TEST(CeresBudgetManifold, CeresSolvesNearestPointOnTheManifold) {
  Rng rng(53);
  const Index n = 4, k = 3;
  const Matrix costs = uniform_matrix(n, k, 0.0, 5.0, rng);
  const double budget = budget_in(costs, rng);
  CeresBudgetManifold manifold(costs, budget);
  const Matrix target = uniform_matrix(n, k, -1.0, 1.0, rng);
  Vector x = point_on(manifold, rng);
  ceres::Problem::Options problem_options;
  problem_options.manifold_ownership = ceres::DO_NOT_TAKE_OWNERSHIP;
  ceres::Problem problem(problem_options);
  problem.AddResidualBlock(new DistanceTo(Eigen::Map<const Vector>(target.data(), n * k)), nullptr,
                           x.data());
  problem.SetManifold(x.data(), &manifold);
  ceres::Solver::Options options;
  options.function_tolerance = 1e-16;
  options.gradient_tolerance = 1e-16;
  options.parameter_tolerance = 1e-16;
  options.max_num_iterations = 100;
  ceres::Solver::Summary summary;
  ceres::Solve(options, &problem, &summary);
  ASSERT_TRUE(summary.IsSolutionUsable()) << summary.BriefReport();
  const Matrix alpha = Eigen::Map<const Matrix>(x.data(), n, k);
  EXPECT_LE(std::abs(manifold.budget_manifold().expected_cost(alpha)[0] - budget),
            1e-12 * std::max(1.0, budget));
  Matrix g = alpha - target;
  ASSERT_TRUE(manifold.budget_manifold().project(alpha, g));
  EXPECT_LE(g.norm(), 1e-8 * (alpha - target).norm()) << summary.BriefReport();
}

TEST(CeresBudgetManifold, DegenerateAndBadInput) {
  const Matrix costs = (Matrix(2, 3) << 1.0, 2.0, 3.0, 0.5, 4.0, 6.0).finished();
  EXPECT_THROW(CeresBudgetManifold(costs, 9.0), InfeasibleError);
  EXPECT_THROW(CeresBudgetManifold(costs, 20.0), InfeasibleError);
  EXPECT_THROW(CeresBudgetManifold(costs, 5.0, 0.0), InvalidArgumentError);
  const CeresBudgetManifold manifold(costs, 5.0);
  // One-hot rows: n = 0, no tangent frame.
  const Vector x = (Vector(6) << 1e4, -1e4, -1e4, -1e4, 1e4, -1e4).finished();
  Vector delta = Vector::Zero(5), out(6);
  ceres::Matrix jacobian(6, 5), minus_jacobian(5, 6);
  EXPECT_FALSE(manifold.Plus(x.data(), delta.data(), out.data()));
  EXPECT_FALSE(manifold.Minus(x.data(), x.data(), delta.data()));
  EXPECT_FALSE(manifold.PlusJacobian(x.data(), jacobian.data()));
  EXPECT_FALSE(manifold.MinusJacobian(x.data(), minus_jacobian.data()));
}

}  // namespace
}  // namespace tether
