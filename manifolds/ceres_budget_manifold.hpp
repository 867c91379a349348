// The single-budget manifold as a ceres::Manifold, so Ceres' solvers (and its automatic
// differentiation) can optimise logits under an exact budget.
//
// Ambient space: the N x K logits alpha, flattened row-major (x[i K + k] = alpha_ik), size N K.
// M = { alpha : C(alpha) = sum_ik c_ik softmax(alpha_i)_k = B }, tangent size N K - 1.
// At x, n = n(x) (n_ik = p_ik (c_ik - E_i), manifolds/budget_manifold.hpp) and an orthonormal
// basis U(x) of the tangent space { v : <n, v> = 0 } comes from one Householder reflection:
//   u = n / |n|,  w = u + sign(u_0) e_0,  H = I - 2 w w^T / |w|^2 (H u = -sign(u_0) e_0),
//   U = columns 1..NK-1 of H             (orthonormal, each orthogonal to u; O(NK) to apply).
// Then
//   Plus(x, delta)  = x + U delta + t c,   t solving C(x + U delta + t c) = B
//                     (BudgetManifold's retraction, rows NOT recentred, tight tolerance);
//   Minus(y, x)     = U^T (v - s c),  v = y - x,  s = <n, v> / <n, c>
//                     (<n, c> = sum_i Var_{p_i}(c_i) > 0). v - s c is tangent, and since Plus
//                     moves along c only, Plus(x, Minus(y, x)) = y for y on M (C(y - s c + t c)
//                     = B has the unique root t = s: phi is increasing) and
//                     Minus(Plus(x, delta), x) = delta;
//   PlusJacobian    = U       (d/d delta of x + U delta + t(delta) c at 0: t' = -n^T U / <n, c>
//                              = 0, because n^T U = 0);
//   MinusJacobian   = U^T (I - c n^T / <n, c>).
// Ceres' four axioms (manifold.h) hold to the retraction tolerance; tests/ceres_budget_manifold_
// test.cpp checks them with Ceres' own EXPECT_THAT_MANIFOLD_INVARIANTS_HOLD.
// Plus, Minus and the Jacobians return false where the manifold is degenerate (n = 0: every
// row one-hot) and Plus also where the retraction does not converge.
//
//   tether::CeresBudgetManifold manifold(costs, /*budget=*/2.5);
//   problem.AddParameterBlock(alpha.data(), alpha.size(), &manifold);  // alpha row-major N x K
#pragma once

#include <ceres/manifold.h>

#include <tether/core/types.hpp>
#include <tether/manifolds/budget_manifold.hpp>

namespace tether {

class CeresBudgetManifold : public ceres::Manifold {
 public:
  /// Default retraction tolerance: |C - B| <= 1e-14 max(1, |B|), near round-off for the sizes
  /// Ceres works with, so Plus and Minus invert each other to ~1e-14.
  static constexpr double kDefaultTolerance = 1e-14;

  /// One budget B, strictly inside the feasible range of costs (N x K, finite, >= 0); throws as
  /// BudgetManifold does.
  CeresBudgetManifold(const Matrix& costs, double budget, double tolerance = kDefaultTolerance,
                      int max_passes = 100);

  int AmbientSize() const override { return ambient_; }
  int TangentSize() const override { return ambient_ - 1; }
  bool Plus(const double* x, const double* delta, double* x_plus_delta) const override;
  bool PlusJacobian(const double* x, double* jacobian) const override;
  bool Minus(const double* y, const double* x, double* y_minus_x) const override;
  bool MinusJacobian(const double* x, double* jacobian) const override;

  const BudgetManifold& budget_manifold() const { return manifold_; }

 private:
  /// Normal n at x and the Householder vector w with beta = 2 / |w|^2. False if n = 0.
  bool frame(const double* x, Vector& n, Vector& w, double& beta) const;

  BudgetManifold manifold_;
  Vector flat_costs_;  // c, flattened like x
  int ambient_ = 0;
};

}  // namespace tether
