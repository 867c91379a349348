// One invariant battery for every budget-type manifold (single budget, one budget per block,
// at most, several budgets at once): what the headers promise, checked at one point.
//
//   expect_budget_manifold_invariants(manifold, alpha, rng);
//
// alpha must lie on the manifold (active constraints at their budgets; inactive at-most
// constraints strictly below). For every constraint j (a block of BudgetManifold, a budget of
// MultiBudgetManifold) that is active at alpha:
//   normal      n^(j) equals the central finite-difference gradient of C_j (relative error
//               <= 1e-7, step 1e-4: truncation ~h^2/6, round-off ~eps |C| / h);
//   second order C_j(alpha + h u) - C_j(alpha) = O(h^2) along a unit tangent u (Taylor slope
//               >= 1.9), while a raw random direction gives slope ~1 (the check can fail);
//   projection  P(Pv) = Pv and <Pu, v> = <u, Pv> (1e-12 relative), <n^(j), Pv> ~ 0 relative to
//               |n^(j)| |v| (1e-12); for inactive constraints P leaves v's block as it is;
//   retraction  from alpha itself: stays on the manifold, rows change by a constant only;
//               from alpha + 0.5 u: converges (|C_j - B_j| <= 1e-12 max(1, |B_j|) where active);
//   transport   a vector transported to the retracted point is tangent there (1e-12).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/types.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <tether/manifolds/multi_budget_manifold.hpp>
#include <vector>

namespace tether::testing {

// ---- what the battery needs of a manifold: constraints C_j(alpha) = B_j (or <= B_j) -------------

inline Index constraint_count(const BudgetManifold& m) { return m.blocks(); }
inline Index constraint_count(const MultiBudgetManifold& m) { return m.budget_count(); }

inline Vector constraint_values(const BudgetManifold& m, const Matrix& a) {
  return m.expected_cost(a);
}
inline Vector constraint_values(const MultiBudgetManifold& m, const Matrix& a) {
  return m.expected_cost(a);
}

/// Normal of constraint j as a full N x K matrix (zero outside block j's rows).
inline Matrix constraint_normal(const BudgetManifold& m, const Matrix& a, Index j) {
  Matrix n;
  m.normal(a, n);
  for (Index i = 0; i < n.rows(); ++i)
    if (i < m.block_begin(j) || i >= m.block_end(j)) n.row(i).setZero();
  return n;
}
inline Matrix constraint_normal(const MultiBudgetManifold& m, const Matrix& a, Index j) {
  Matrix n;
  m.normal(a, j, n);
  return n;
}

inline bool constraint_active(const BudgetManifold& m, const Matrix& a, Index j) {
  return m.active(a, j);
}
inline bool constraint_active(const MultiBudgetManifold&, const Matrix&, Index) { return true; }

/// Rows of constraint j (for BudgetManifold, its block; for MultiBudgetManifold, all rows).
inline std::pair<Index, Index> constraint_rows(const BudgetManifold& m, Index j) {
  return {m.block_begin(j), m.block_end(j)};
}
inline std::pair<Index, Index> constraint_rows(const MultiBudgetManifold& m, Index) {
  return {0, m.groups()};
}

inline double budget_tolerance(double budget) { return 1e-12 * std::max(1.0, std::abs(budget)); }

inline Matrix random_matrix(Index rows, Index cols, Rng& rng) {
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal();
  return m;
}

inline double inner(const Matrix& a, const Matrix& b) { return a.cwiseProduct(b).sum(); }

/// Entries uniform in [lo, hi).
inline Matrix uniform_matrix(Index n, Index k, double lo, double hi, Rng& rng) {
  Matrix m(n, k);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform(lo, hi);
  return m;
}

/// Costs log-uniform in [1e-3, 1e3]: six decades inside one row.
inline Matrix log_uniform_costs(Index n, Index k, Rng& rng) {
  Matrix m(n, k);
  for (Index i = 0; i < m.size(); ++i)
    m.data()[i] = std::exp(rng.uniform(std::log(1e-3), std::log(1e3)));
  return m;
}

/// C(alpha) computed directly (not by a manifold): sum_ik c_ik softmax(alpha_i)_k.
inline double direct_expected_cost(const Matrix& costs, const Matrix& alpha) {
  double total = 0.0;
  for (Index i = 0; i < costs.rows(); ++i) {
    const Eigen::RowVectorXd e = (alpha.row(i).array() - alpha.row(i).maxCoeff()).exp();
    total += e.dot(costs.row(i)) / e.sum();
  }
  return total;
}

inline double median(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// ---- the battery
// ---------------------------------------------------------------------------------

template <class M>
void expect_budget_manifold_invariants(const M& manifold, const Matrix& alpha, Rng& rng) {
  const Index n = alpha.rows(), k = alpha.cols(), m = constraint_count(manifold);
  const Vector budgets = manifold.budgets();
  const Vector values = constraint_values(manifold, alpha);
  std::vector<bool> active(static_cast<std::size_t>(m));
  for (Index j = 0; j < m; ++j)
    active[static_cast<std::size_t>(j)] = constraint_active(manifold, alpha, j);

  // On the manifold.
  for (Index j = 0; j < m; ++j) {
    if (active[static_cast<std::size_t>(j)])
      EXPECT_LE(std::abs(values[j] - budgets[j]), budget_tolerance(budgets[j]))
          << "constraint " << j;
    else
      EXPECT_LT(values[j], budgets[j]) << "constraint " << j;
  }

  // Normals against central finite differences of C (every constraint, active or not).
  {
    const double h = 1e-4;
    std::vector<Matrix> fd(static_cast<std::size_t>(m), Matrix(n, k));
    Matrix a = alpha;
    for (Index i = 0; i < n; ++i)
      for (Index q = 0; q < k; ++q) {
        const double saved = a(i, q);
        a(i, q) = saved + h;
        const Vector plus = constraint_values(manifold, a);
        a(i, q) = saved - h;
        const Vector minus = constraint_values(manifold, a);
        a(i, q) = saved;
        for (Index j = 0; j < m; ++j)
          fd[static_cast<std::size_t>(j)](i, q) = (plus[j] - minus[j]) / (2.0 * h);
      }
    for (Index j = 0; j < m; ++j) {
      const Matrix nj = constraint_normal(manifold, alpha, j);
      const double rel = (fd[static_cast<std::size_t>(j)] - nj).norm() / nj.norm();
      EXPECT_LE(rel, 1e-7) << "normal of constraint " << j << " vs finite differences";
    }
  }

  // Projection: tangent, idempotent, self-adjoint; identity on inactive blocks.
  const Matrix u = random_matrix(n, k, rng), v = random_matrix(n, k, rng);
  Matrix pu = u, pv = v;
  ASSERT_TRUE(static_cast<bool>(manifold.project(alpha, pu)));
  ASSERT_TRUE(static_cast<bool>(manifold.project(alpha, pv)));
  for (Index j = 0; j < m; ++j) {
    const Matrix nj = constraint_normal(manifold, alpha, j);
    if (active[static_cast<std::size_t>(j)]) {
      EXPECT_LE(std::abs(inner(nj, pv)), 1e-12 * nj.norm() * v.norm())
          << "projected vector not tangent to constraint " << j;
    } else {
      const auto [r0, r1] = constraint_rows(manifold, j);
      EXPECT_EQ(pv.middleRows(r0, r1 - r0), v.middleRows(r0, r1 - r0))
          << "projection changed inactive constraint " << j;
    }
  }
  Matrix ppv = pv;
  ASSERT_TRUE(static_cast<bool>(manifold.project(alpha, ppv)));
  EXPECT_LE((ppv - pv).norm(), 1e-12 * pv.norm()) << "projection not idempotent";
  EXPECT_LE(std::abs(inner(pu, v) - inner(u, pv)), 1e-12 * u.norm() * v.norm())
      << "projection not self-adjoint";

  // A tangent step changes every active C_j by O(e^2); a raw step by O(e) (the control).
  const Matrix dir = pv / pv.norm();
  const Matrix raw = v / v.norm();
  for (Index j = 0; j < m; ++j) {
    if (!active[static_cast<std::size_t>(j)]) continue;
    const double c0 = values[j];
    const double floor = 1e-13 * std::max(1.0, std::abs(c0));
    const auto along = [&](const Matrix& d) {
      return [&, d](double e) { return constraint_values(manifold, alpha + e * d)[j] - c0; };
    };
    const TaylorSlopeReport tangent = taylor_slope(along(dir), 1e-5, 1e-2, 9, floor);
    EXPECT_GE(tangent.slope, 1.9) << "tangent step, constraint " << j;
    const TaylorSlopeReport control = taylor_slope(along(raw), 1e-5, 1e-2, 9, floor);
    EXPECT_LE(control.slope, 1.1) << "raw step (control), constraint " << j;
  }

  // Retraction from alpha itself: stays put up to a per-row constant (the recentring).
  {
    Matrix a = alpha;
    const auto report = manifold.retract(a);
    EXPECT_TRUE(report.converged);
    const Vector after = constraint_values(manifold, a);
    for (Index j = 0; j < m; ++j)
      if (active[static_cast<std::size_t>(j)])
        EXPECT_LE(std::abs(after[j] - budgets[j]), budget_tolerance(budgets[j]));
    const double scale = std::max(1.0, alpha.cwiseAbs().maxCoeff());
    for (Index i = 0; i < n; ++i) {
      const Eigen::RowVectorXd d = a.row(i) - alpha.row(i);
      EXPECT_LE(d.maxCoeff() - d.minCoeff(), 1e-12 * scale) << "retraction moved row " << i;
    }
  }

  // Retraction after a tangent step, then transport to the new point.
  {
    Matrix a = alpha + 0.5 * dir;
    const auto report = manifold.retract(a);
    EXPECT_TRUE(report.converged);
    const Vector after = constraint_values(manifold, a);
    for (Index j = 0; j < m; ++j) {
      if (constraint_active(manifold, a, j))
        EXPECT_LE(std::abs(after[j] - budgets[j]), budget_tolerance(budgets[j]))
            << "retracted point off constraint " << j;
      else
        EXPECT_LT(after[j], budgets[j]);
    }
    Matrix tv = v;
    ASSERT_TRUE(static_cast<bool>(manifold.transport(a, tv)));
    for (Index j = 0; j < m; ++j) {
      if (!constraint_active(manifold, a, j)) continue;
      const Matrix nj = constraint_normal(manifold, a, j);
      EXPECT_LE(std::abs(inner(nj, tv)), 1e-12 * nj.norm() * v.norm())
          << "transported vector not tangent to constraint " << j;
    }
  }
}

}  // namespace tether::testing
