// The SVM hyperparameter-selection and data hyper-cleaning bilevel problems
// (problems/svm_bilevel.hpp): every gradient and constraint adjoint against finite differences
// and Taylor slopes, the projections, the exact lower-level solvers against their KKT conditions
// and duality gaps, the seeded data, and the refusal of bad input.
#include <gtest/gtest.h>

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tether/core/bilevel_problem.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/svm_bilevel.hpp>

#include "error_message.hpp"

namespace tether::problems {
namespace {

using tether::testing::message_of;

static_assert(ConstrainedBilevelProblem<SvmHyperparameterSelection>);
static_assert(ConstrainedBilevelProblem<DataHyperCleaning>);

/// A small split of each data shape (gradients are checked entry by entry).
DataSplit small_split(bool diabetes, std::uint64_t seed, Index n_train = 30,
                      Index n_validation = 20) {
  const LabelledData data = diabetes ? diabetes_like(seed) : fourclass_like(seed);
  return split_data(data, n_train, n_validation, seed + 100);
}

Vector normals(Index n, Rng& rng, double scale = 1.0) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = scale * rng.normal();
  return v;
}

/// A point inside X x Y (slacks and weights away from their bounds; nothing here has kinks).
template <class P>
std::pair<Vector, Vector> random_point(const P& p, Rng& rng, double x_lo, double x_hi) {
  Vector x(p.upper_dimension());
  for (Index i = 0; i < x.size(); ++i) x[i] = rng.uniform(x_lo, x_hi);
  Vector y = normals(p.lower_dimension(), rng, 0.7);
  return {x, y};
}

/// Splits and joins z = (x, y).
Vector join(const Vector& x, const Vector& y) {
  Vector z(x.size() + y.size());
  z << x, y;
  return z;
}

enum class Oracle { kUpper, kLower, kConstraint };

/// The scalar function behind an oracle at z = (x, y) (lam^T g for the constraint) and the
/// gradient the problem claims for it.
template <class P>
std::function<double(const Vector&)> scalar_of(const P& p, Oracle which, const Vector& lam) {
  const Index n = p.upper_dimension(), m = p.lower_dimension();
  return [&p, which, lam, n, m](const Vector& z) {
    const Vector x = z.head(n), y = z.tail(m);
    if (which == Oracle::kUpper) return p.upper_value(x, y);
    if (which == Oracle::kLower) return p.lower_value(x, y);
    Vector g(p.constraint_count());
    p.constraints(x, y, g);
    return lam.dot(g);
  };
}

template <class P>
Vector claimed_gradient(const P& p, Oracle which, const Vector& x, const Vector& y,
                        const Vector& lam) {
  Vector gx(p.upper_dimension()), gy(p.lower_dimension());
  if (which == Oracle::kUpper) p.upper_gradient(x, y, gx, gy);
  if (which == Oracle::kLower) p.lower_gradient(x, y, gx, gy);
  if (which == Oracle::kConstraint) p.constraint_adjoint(x, y, lam, gx, gy);
  return join(gx, gy);
}

/// Central differences in every entry of (x, y) against the claimed gradient.
template <class P>
double fd_error(const P& p, Oracle which, const Vector& x, const Vector& y, const Vector& lam) {
  const Vector claimed = claimed_gradient(p, which, x, y, lam);
  const Vector fd = finite_difference_gradient(scalar_of(p, which, lam), join(x, y), 1e-5);
  return (fd - claimed).lpNorm<Eigen::Infinity>() /
         std::max(1.0, claimed.lpNorm<Eigen::Infinity>());
}

/// Taylor remainder |phi(z + h d) - phi(z) - h <grad, d>| at h = 0.1 (for an oracle that is
/// linear along d it must be at round-off).
template <class P>
double taylor_remainder(const P& p, Oracle which, const Vector& x, const Vector& y,
                        const Vector& lam, const Vector& d, double h) {
  const auto phi = scalar_of(p, which, lam);
  const Vector z = join(x, y);
  return std::abs(phi(z + h * d) - phi(z) - h * claimed_gradient(p, which, x, y, lam).dot(d));
}

template <class P>
double taylor_slope_of(const P& p, Oracle which, const Vector& x, const Vector& y,
                       const Vector& lam, const Vector& d) {
  return check_gradient_slope(scalar_of(p, which, lam), join(x, y),
                              claimed_gradient(p, which, x, y, lam), d, 1e-5, 1e-2)
      .slope;
}

// ---- gradients and the constraint adjoint ---------------------------------------------------

TEST(SvmBilevel, SvmGradientsAndAdjointMatchFiniteDifferences) {
  for (const bool diabetes : {true, false}) {
    const DataSplit s = small_split(diabetes, 5);
    const SvmHyperparameterSelection p(s.train, s.validation, {.c_min = 1e-3, .c_max = 10.0});
    Rng rng(7);
    for (int trial = 0; trial < 3; ++trial) {
      const auto [x, y] = random_point(p, rng, 0.01, 5.0);
      Vector lam(p.constraint_count());
      for (Index i = 0; i < lam.size(); ++i) lam[i] = rng.uniform(0.0, 3.0);
      EXPECT_LE(fd_error(p, Oracle::kUpper, x, y, lam), 1e-8) << diabetes << " " << trial;
      EXPECT_LE(fd_error(p, Oracle::kLower, x, y, lam), 1e-8) << diabetes << " " << trial;
      EXPECT_LE(fd_error(p, Oracle::kConstraint, x, y, lam), 1e-8) << diabetes << " " << trial;

      const Vector d = normals(x.size() + y.size(), rng);
      // F is nonlinear in (w, b): slope 2. f = 0.5 |(w,b)|^2 + x^T xi is quadratic: the
      // remainder is exactly 0.5 h^2 (|d_wb|^2 + 2 d_x^T d_xi). lam^T g is linear: round-off.
      EXPECT_NEAR(taylor_slope_of(p, Oracle::kUpper, x, y, lam, d), 2.0, 0.05);
      const Index n = p.upper_dimension(), dim = s.train.dimension();
      const double h = 0.1;
      const double exact =
          0.5 * h * h * (d.segment(n, dim + 1).squaredNorm() + 2.0 * d.head(n).dot(d.tail(n)));
      EXPECT_NEAR(taylor_remainder(p, Oracle::kLower, x, y, lam, d, h), std::abs(exact), 1e-11);
      EXPECT_LE(taylor_remainder(p, Oracle::kConstraint, x, y, lam, d, h), 1e-11);
    }
  }
}

TEST(SvmBilevel, SvmAdjointIsTheTransposedJacobian) {
  // Column by column: J e_k from differences of the vector g, then J^T lam by hand.
  const DataSplit s = small_split(true, 6, 12, 8);
  const SvmHyperparameterSelection p(s.train, s.validation, {});
  Rng rng(8);
  const auto [x, y] = random_point(p, rng, 0.1, 2.0);
  const Vector lam = normals(p.constraint_count(), rng);
  Vector gx(x.size()), gy(y.size());
  p.constraint_adjoint(x, y, lam, gx, gy);
  Vector g0(p.constraint_count()), g1(p.constraint_count());
  p.constraints(x, y, g0);
  EXPECT_EQ(gx, Vector::Zero(x.size()));  // g does not depend on x
  for (Index k = 0; k < y.size(); ++k) {
    Vector yk = y;
    yk[k] += 1.0;  // g is affine in y: a unit step is exact
    p.constraints(x, yk, g1);
    EXPECT_NEAR(gy[k], lam.dot(g1 - g0), 1e-12) << k;
  }
}

TEST(SvmBilevel, CleaningGradientsAndAdjointMatchFiniteDifferences) {
  for (const bool diabetes : {true, false}) {
    const DataSplit s = small_split(diabetes, 9);
    const DataHyperCleaning p(s.train, s.validation, {.flip_fraction = 0.3, .flip_seed = 4});
    Rng rng(10);
    for (int trial = 0; trial < 3; ++trial) {
      const auto [x, y] = random_point(p, rng, 0.0, 1.0);
      const Vector lam = Vector::Constant(1, rng.uniform(0.1, 2.0));
      EXPECT_LE(fd_error(p, Oracle::kUpper, x, y, lam), 1e-8) << diabetes << " " << trial;
      EXPECT_LE(fd_error(p, Oracle::kLower, x, y, lam), 1e-8) << diabetes << " " << trial;
      EXPECT_LE(fd_error(p, Oracle::kConstraint, x, y, lam), 1e-8) << diabetes << " " << trial;
      const Vector d = normals(x.size() + y.size(), rng);
      EXPECT_NEAR(taylor_slope_of(p, Oracle::kUpper, x, y, lam, d), 2.0, 0.05);
      EXPECT_NEAR(taylor_slope_of(p, Oracle::kLower, x, y, lam, d), 2.0, 0.05);
      EXPECT_NEAR(taylor_slope_of(p, Oracle::kConstraint, x, y, lam, d), 2.0, 0.05);
    }
  }
}

TEST(SvmBilevel, AWrongGradientIsCaught) {
  // The checks above can fail: a gradient off by 1e-3 in one entry is seen by both.
  const DataSplit s = small_split(true, 5);
  const DataHyperCleaning p(s.train, s.validation, {});
  Rng rng(3);
  const auto [x, y] = random_point(p, rng, 0.0, 1.0);
  const Vector lam = Vector::Ones(1);
  const Vector fd = finite_difference_gradient(scalar_of(p, Oracle::kLower, lam), join(x, y));
  Vector wrong = claimed_gradient(p, Oracle::kLower, x, y, lam);
  EXPECT_LE((fd - wrong).lpNorm<Eigen::Infinity>(), 1e-8);
  wrong[x.size()] += 1e-3;
  EXPECT_GE((fd - wrong).lpNorm<Eigen::Infinity>(), 9e-4);
  Vector d = Vector::Zero(wrong.size());
  d[x.size()] = 1.0;
  const double slope =
      check_gradient_slope(scalar_of(p, Oracle::kLower, lam), join(x, y), wrong, d, 1e-4, 1e-1)
          .slope;
  EXPECT_LT(slope, 1.5);
}

// ---- projections ----------------------------------------------------------------------------

/// KKT certificate of y = Proj(y0) onto {xi >= 0, xi_i + m_i >= 1}, m_i = s_i^T u,
/// s_i = t_i (a_i, 1), u = (w, b): multipliers alpha (margin rows) and beta (xi >= 0), both
/// >= 0, with u - u0 = sum_i alpha_i s_i, xi - xi0 = alpha + beta, complementary slackness.
/// Rows where only one constraint is active fix alpha_i; rows where both are active leave
/// alpha_i in [0, xi_i - xi0_i] free, solved for by least squares. Returns the largest violation.
double projection_kkt_residual(const SvmHyperparameterSelection& p, const Vector& y0,
                               const Vector& y) {
  const LabelledData& tr = p.train();
  const Index n = tr.size(), d = tr.dimension();
  Matrix s(n, d + 1);
  s << tr.labels.asDiagonal() * tr.features, tr.labels;
  const Vector u0 = y0.head(d + 1), u = y.head(d + 1);
  const Vector xi0 = y0.tail(n), xi = y.tail(n);
  const Vector m = s * u;
  const double tol = 1e-10;
  double worst = 0.0;
  Vector alpha = Vector::Zero(n);
  std::vector<Index> free_rows;
  for (Index i = 0; i < n; ++i) {
    const double e = xi[i] - xi0[i], slack = xi[i] + m[i] - 1.0;
    worst = std::max({worst, -xi[i], -slack, -e});  // feasibility, xi >= xi0
    const bool margin_active = slack <= tol, bound_active = xi[i] <= tol;
    if (margin_active && bound_active)
      free_rows.push_back(i);
    else if (margin_active)
      alpha[i] = e;  // beta_i = 0
    else
      worst = std::max(worst, bound_active ? 0.0 : std::abs(e));  // alpha_i = 0: beta_i = e
  }
  Vector residual = u - u0 - s.transpose() * alpha;
  if (!free_rows.empty()) {
    Eigen::MatrixXd sf(d + 1, static_cast<Index>(free_rows.size()));
    for (std::size_t j = 0; j < free_rows.size(); ++j)
      sf.col(static_cast<Index>(j)) = s.row(free_rows[j]).transpose();
    const Vector af = sf.colPivHouseholderQr().solve(residual);
    residual -= sf * af;
    for (std::size_t j = 0; j < free_rows.size(); ++j) {
      const Index i = free_rows[j];
      worst = std::max(
          {worst, -af[static_cast<Index>(j)], af[static_cast<Index>(j)] - (xi[i] - xi0[i])});
    }
  }
  return std::max(worst, residual.lpNorm<Eigen::Infinity>());
}

TEST(SvmBilevel, SvmProjectionIsExactFeasibleAndIdempotent) {
  const DataSplit s = split_data(diabetes_like(2), 500, 150, 2);
  const SvmHyperparameterSelection p(s.train, s.validation, {.c_min = 0.01, .c_max = 2.0});
  const Index n = p.upper_dimension(), d = s.train.dimension();
  Rng rng(4);
  const Vector c = Vector::Constant(n, 0.5);
  const Vector y_star = p.lower_solution(c);  // many rows exactly at the margin: degenerate
  Vector g(n);
  for (int trial = 0; trial < 12; ++trial) {
    // Small moves off the SVM solution (as LV-HBA makes), then large random points.
    const double scale = trial < 6 ? 1e-3 : 2.0;
    Vector y0 = trial < 6 ? Vector(y_star + normals(p.lower_dimension(), rng, scale))
                          : normals(p.lower_dimension(), rng, scale);
    Vector x = normals(n, rng, 3.0), y = y0;
    const Vector x0 = x;
    p.project_joint(x, y);
    for (Index i = 0; i < n; ++i) {
      EXPECT_EQ(x[i], std::clamp(x0[i], 0.01, 2.0));
      EXPECT_GE(y[d + 1 + i], 0.0);
    }
    p.constraints(x, y, g);
    EXPECT_LE(g.maxCoeff(), 1e-12) << trial;
    EXPECT_LE(projection_kkt_residual(p, y0, y), 1e-9) << trial;
    if (trial == 0 || trial == 6) {  // the certificate can fail: a feasible point 1e-6 away
      Vector wb = y.head(d + 1);
      wb[0] += 1e-6;
      Vector near = p.lower_point(wb.head(d), wb[d]);
      near.tail(n) = near.tail(n).cwiseMax(y0.tail(n));
      EXPECT_GE(projection_kkt_residual(p, y0, near), 1e-7) << trial;
    }
    // Variational inequality <y0 - P, q - P> <= 0 for feasible q, near P and far from it.
    for (int k = 0; k < 50; ++k) {
      const Vector q_wb = y.head(d + 1) + normals(d + 1, rng, k < 25 ? 1e-3 : 1.0);
      Vector q = p.lower_point(q_wb.head(d), q_wb[d]);
      for (Index i = 0; i < n; ++i) q[d + 1 + i] += rng.uniform() < 0.5 ? 0.0 : rng.uniform();
      EXPECT_LE((y0 - y).dot(q - y), 1e-9 * std::max(1.0, (y0 - y).norm() * (q - y).norm()));
    }
    const Vector x1 = x, y1 = y;
    p.project_joint(x, y);
    EXPECT_EQ(x, x1);
    EXPECT_EQ(y, y1);  // a feasible point is left unchanged, bit for bit
  }
  // Y alone (project_lower, and the ablation coupled_in_c = false): xi clamped, (w, b) free.
  const SvmHyperparameterSelection box_only(s.train, s.validation,
                                            {.c_min = 0.01, .c_max = 2.0, .coupled_in_c = false});
  for (int trial = 0; trial < 3; ++trial) {
    Vector x = normals(n, rng, 3.0), y = normals(p.lower_dimension(), rng, 3.0);
    const Vector y0 = y;
    Vector yl = y0;
    p.project_lower(yl);
    box_only.project_joint(x, y);
    EXPECT_EQ(y, yl);
    EXPECT_EQ(y.head(d + 1), y0.head(d + 1));
    for (Index i = 0; i < n; ++i) EXPECT_EQ(y[d + 1 + i], std::max(y0[d + 1 + i], 0.0));
  }
}

TEST(SvmBilevel, CleaningProjectionsAreFeasibleAndIdempotent) {
  const DataSplit s = small_split(false, 2);
  const DataHyperCleaning p(s.train, s.validation, {.rho = 4.0});
  const DataHyperCleaning box_only(s.train, s.validation, {.rho = 4.0, .coupled_in_c = false});
  Rng rng(5);
  for (int trial = 0; trial < 6; ++trial) {
    Vector x = normals(p.upper_dimension(), rng, 2.0);
    Vector y = normals(p.lower_dimension(), rng, trial < 3 ? 0.3 : 9.0);
    const Vector x0 = x, y0 = y;
    p.project_joint(x, y);
    for (Index i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], std::clamp(x0[i], 0.0, 1.0));
    if (y0.squaredNorm() <= 4.0) {
      EXPECT_EQ(y, y0);
    } else {  // onto the sphere, along the ray
      EXPECT_NEAR(y.squaredNorm(), 4.0, 1e-12);
      EXPECT_LE((y - y0 * (2.0 / y0.norm())).lpNorm<Eigen::Infinity>(), 1e-14);
    }
    Vector g(1);
    p.constraints(x, y, g);
    EXPECT_LE(g[0], 1e-12);
    const Vector x1 = x, y1 = y;
    p.project_joint(x, y);
    EXPECT_EQ(x, x1);
    EXPECT_EQ(y, y1);
    Vector yl = y0, xb = x0, yb = y0;
    p.project_lower(yl);
    EXPECT_EQ(yl, y0);  // Y = R^(d+1)
    box_only.project_joint(xb, yb);
    EXPECT_EQ(xb, x1);
    EXPECT_EQ(yb, y0);
  }
}

// ---- the exact L1-loss SVM ------------------------------------------------------------------

TEST(SvmBilevel, DualCdMeetsKktAndClosesTheDualityGap) {
  for (const bool diabetes : {true, false}) {
    const DataSplit s = split_data(diabetes ? diabetes_like(3) : fourclass_like(3), 500, 150, 3);
    for (const double c : {1e-3, 0.1, 1.0, 10.0}) {
      const LinearSvmSolution sol = solve_linear_svm_dual_cd(s.train, c);
      const Vector cv = Vector::Constant(500, c);
      EXPECT_TRUE(sol.converged) << c;
      EXPECT_LE(linear_svm_kkt_residual(s.train, cv, sol), 1e-9) << c;
      EXPECT_GE(sol.primal - sol.dual, -1e-10 * std::max(1.0, sol.primal)) << c;
      EXPECT_LE(sol.primal - sol.dual, 1e-8 * std::max(1.0, sol.primal)) << c;
      EXPECT_GT(sol.primal, 0.0);
    }
  }
}

TEST(SvmBilevel, DualCdWithPerSampleCSolvesTheBilevelLowerLevel) {
  // The dual-CD answer is the lower level of SvmHyperparameterSelection at x = c: its KKT
  // conditions, written with the problem's own oracles, hold with lam = alpha:
  //   grad_(w,b) f + J_(w,b) g^T alpha = 0,
  //   grad_xi f + J_xi g^T alpha = c - alpha = nu >= 0 with nu_i xi_i = 0 (normal cone of xi >= 0),
  //   g <= 0, alpha >= 0, alpha_i g_i = 0.
  const DataSplit s = split_data(diabetes_like(4), 500, 150, 4);
  const SvmHyperparameterSelection p(s.train, s.validation, {.c_min = 1e-3, .c_max = 10.0});
  Rng rng(11);
  Vector x(500);
  for (Index i = 0; i < 500; ++i) x[i] = std::exp(rng.uniform(std::log(1e-3), std::log(10.0)));
  Vector alpha;
  const Vector y = p.lower_solution(x, &alpha);
  const LinearSvmSolution sol = solve_linear_svm_dual_cd(s.train, x);
  EXPECT_LE(linear_svm_kkt_residual(s.train, x, sol), 1e-9);
  EXPECT_LE(sol.primal - sol.dual, 1e-8 * sol.primal);
  EXPECT_NEAR(p.lower_value(x, y), sol.primal, 1e-9 * sol.primal);

  const Index d = s.train.dimension();
  Vector fx(500), fy(p.lower_dimension()), ax(500), ay(p.lower_dimension()), g(500);
  p.lower_gradient(x, y, fx, fy);
  p.constraint_adjoint(x, y, alpha, ax, ay);
  p.constraints(x, y, g);
  const Vector r = fy + ay;
  EXPECT_LE(r.head(d + 1).lpNorm<Eigen::Infinity>(), 1e-9);
  const Vector nu = r.tail(500);
  EXPECT_GE(nu.minCoeff(), -1e-12);
  EXPECT_LE(nu.cwiseProduct(p.slacks(y)).lpNorm<Eigen::Infinity>(), 1e-9);
  EXPECT_LE(g.maxCoeff(), 1e-12);
  EXPECT_GE(alpha.minCoeff(), 0.0);
  EXPECT_LE(alpha.cwiseProduct(g).lpNorm<Eigen::Infinity>(), 1e-9);
  // Some multipliers inside (0, c), some at each bound: the check covered every case.
  int inside = 0, at_zero = 0, at_c = 0;
  for (Index i = 0; i < 500; ++i) {
    inside += alpha[i] > 0 && alpha[i] < x[i];
    at_zero += alpha[i] == 0;
    at_c += alpha[i] == x[i];
  }
  EXPECT_GT(inside, 0);
  EXPECT_GT(at_zero, 0);
  EXPECT_GT(at_c, 0);
}

TEST(SvmBilevel, DualCdIsDeterministicAndOrderFree) {
  const DataSplit s = split_data(fourclass_like(2), 500, 150, 2);
  const LinearSvmSolution a = solve_linear_svm_dual_cd(s.train, 0.5, {.seed = 1});
  const LinearSvmSolution b = solve_linear_svm_dual_cd(s.train, 0.5, {.seed = 1});
  EXPECT_EQ(a.w, b.w);
  EXPECT_EQ(a.b, b.b);
  // Another coordinate order reaches the same (unique, strongly convex) primal solution.
  const LinearSvmSolution c = solve_linear_svm_dual_cd(s.train, 0.5, {.seed = 99});
  EXPECT_LE((a.w - c.w).norm(), 1e-8);
  EXPECT_NEAR(a.b, c.b, 1e-8);
}

// ---- the exact norm-ball logistic regression ------------------------------------------------

TEST(SvmBilevel, NormBallLogisticMeetsKkt) {
  for (const bool diabetes : {true, false}) {
    const DataSplit s = split_data(diabetes ? diabetes_like(5) : fourclass_like(5), 500, 150, 5);
    const DataHyperCleaning p(s.train, s.validation, {});
    const Vector ones = Vector::Ones(500);
    const Vector oracle = ones - p.flipped();
    for (const Vector* v : {&ones, &oracle}) {
      for (const double rho : {0.5, 9.0, 1e6}) {
        const NormBallLogisticSolution sol =
            solve_norm_ball_logistic(p.noisy_train(), *v, 1e-3, rho);
        EXPECT_LE(norm_ball_logistic_kkt_residual(p.noisy_train(), *v, 1e-3, rho, sol), 1e-10)
            << diabetes << " " << rho;
        const double norm2 = sol.w.squaredNorm() + sol.b * sol.b;
        if (sol.multiplier > 0) EXPECT_NEAR(norm2, rho, 1e-12 * rho);
      }
    }
    // The header's claim for the defaults (mu 1e-3, rho 9): the ball is inactive at the
    // all-ones weights and active at the clean-label weights.
    double lam_ones = -1, lam_oracle = -1;
    p.lower_solution(ones, &lam_ones);
    p.lower_solution(oracle, &lam_oracle);
    EXPECT_EQ(lam_ones, 0.0) << diabetes;
    EXPECT_GT(lam_oracle, 0.0) << diabetes;
  }
}

TEST(SvmBilevel, CleaningLowerSolutionSatisfiesTheProblemsKkt) {
  const DataSplit s = split_data(diabetes_like(6), 500, 150, 6);
  const DataHyperCleaning p(s.train, s.validation, {.rho = 0.05});
  Rng rng(12);
  Vector x(500);
  for (Index i = 0; i < 500; ++i) x[i] = rng.uniform(0.0, 1.0);
  double lam = 0;
  const Vector y = p.lower_solution(x, &lam);
  EXPECT_GT(lam, 0.0);  // rho = 0.05 is active
  Vector fx(500), fy(y.size()), ax(500), ay(y.size()), g(1);
  p.lower_gradient(x, y, fx, fy);
  p.constraint_adjoint(x, y, Vector::Constant(1, lam), ax, ay);
  p.constraints(x, y, g);
  EXPECT_LE((fy + ay).lpNorm<Eigen::Infinity>(), 1e-10);
  EXPECT_NEAR(g[0], 0.0, 1e-12);
}

// ---- data -----------------------------------------------------------------------------------

TEST(SvmBilevel, DataHaveTheDocumentedShapes) {
  const LabelledData a = diabetes_like(1);
  ASSERT_EQ(a.features.rows(), 768);
  ASSERT_EQ(a.features.cols(), 8);
  EXPECT_EQ((a.labels.array() > 0).count(), 268);
  for (Index c = 0; c < 8; ++c) {
    EXPECT_NEAR(a.features.col(c).minCoeff(), -1.0, 1e-12);
    EXPECT_NEAR(a.features.col(c).maxCoeff(), 1.0, 1e-12);
  }
  const LabelledData b = fourclass_like(1);
  ASSERT_EQ(b.features.rows(), 862);
  ASSERT_EQ(b.features.cols(), 2);
  EXPECT_LE(b.features.cwiseAbs().maxCoeff(), 1.0);
  const double positives = (b.labels.array() > 0).count() / 862.0;
  EXPECT_GT(positives, 0.30);
  EXPECT_LT(positives, 0.45);
  // The rule as documented, on a few rows.
  for (Index i = 0; i < 862; ++i) {
    const double x1 = b.features(i, 0), x2 = b.features(i, 1);
    const bool pos = x2 > 0.7 * std::sin(3.5 * x1 + 0.4) + 0.4 ||
                     (x1 + 0.6) * (x1 + 0.6) + (x2 + 0.5) * (x2 + 0.5) < 0.08;
    ASSERT_EQ(b.labels[i], pos ? 1.0 : -1.0) << i;
  }
}

TEST(SvmBilevel, ALinearSvmReachesTheDocumentedAccuracy) {
  // diabetes-like about 76%, fourclass-like about 78%: a linear classifier is neither perfect
  // nor useless on either (majority class: 65% and 63%).
  for (const bool diabetes : {true, false}) {
    double total = 0.0;
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      const DataSplit s =
          split_data(diabetes ? diabetes_like(seed) : fourclass_like(seed), 500, 150, seed);
      const LinearSvmSolution sol = solve_linear_svm_dual_cd(s.train, 1.0);
      LabelledData rest;
      rest.features.resize(s.validation.size() + s.test.size(), s.train.dimension());
      rest.features << s.validation.features, s.test.features;
      rest.labels.resize(rest.features.rows());
      rest.labels << s.validation.labels, s.test.labels;
      total += accuracy(rest, sol.w, sol.b) / 4.0;
    }
    EXPECT_GT(total, 0.70) << diabetes;
    EXPECT_LT(total, 0.82) << diabetes;
  }
}

TEST(SvmBilevel, SameSeedSameData) {
  const LabelledData a = diabetes_like(3), b = diabetes_like(3), c = diabetes_like(4);
  EXPECT_EQ(a.features, b.features);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.features, c.features);
  const LabelledData e = fourclass_like(3), f = fourclass_like(3), g = fourclass_like(4);
  EXPECT_EQ(e.features, f.features);
  EXPECT_EQ(e.labels, f.labels);
  EXPECT_NE(e.features, g.features);
  const DataSplit s1 = split_data(a, 500, 150, 7), s2 = split_data(b, 500, 150, 7);
  EXPECT_EQ(s1.train.features, s2.train.features);
  EXPECT_EQ(s1.test.labels, s2.test.labels);
  const FlippedLabels f1 = flip_labels(s1.train.labels, 0.4, 2);
  const FlippedLabels f2 = flip_labels(s1.train.labels, 0.4, 2);
  const FlippedLabels f3 = flip_labels(s1.train.labels, 0.4, 3);
  EXPECT_EQ(f1.labels, f2.labels);
  EXPECT_NE(f1.flipped, f3.flipped);
}

TEST(SvmBilevel, SplitIsAPartitionOfTheRows) {
  const LabelledData a = fourclass_like(8);
  const DataSplit s = split_data(a, 500, 150, 8);
  EXPECT_EQ(s.train.size(), 500);
  EXPECT_EQ(s.validation.size(), 150);
  EXPECT_EQ(s.test.size(), 212);
  std::vector<int> used(862, 0);
  for (const LabelledData* part : {&s.train, &s.validation, &s.test})
    for (Index r = 0; r < part->size(); ++r)
      for (Index i = 0; i < 862; ++i)
        if (a.features.row(i) == part->features.row(r)) {
          ++used[i];
          EXPECT_EQ(a.labels[i], part->labels[r]);
        }
  EXPECT_EQ(std::count(used.begin(), used.end(), 1), 862);
}

TEST(SvmBilevel, FlipsExactlyTheFraction) {
  const DataSplit s = split_data(diabetes_like(2), 500, 150, 2);
  const DataHyperCleaning p(s.train, s.validation, {.flip_fraction = 0.4, .flip_seed = 5});
  EXPECT_EQ(p.flipped().sum(), 200.0);
  for (Index i = 0; i < 500; ++i) {
    EXPECT_EQ(p.clean_train_labels()[i], s.train.labels[i]);
    EXPECT_EQ(p.noisy_train().labels[i],
              p.flipped()[i] == 1.0 ? -s.train.labels[i] : s.train.labels[i]);
  }
  const DataHyperCleaning clean(s.train, s.validation, {.flip_fraction = 0.0});
  EXPECT_EQ(clean.noisy_train().labels, s.train.labels);
}

// ---- bad input ------------------------------------------------------------------------------

TEST(SvmBilevel, BadInputIsRefusedWithNamedErrors) {
  const DataSplit s = small_split(true, 1);
  using Svm = SvmHyperparameterSelection;
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              Svm(s.train, s.validation, {.c_min = 0.0});
            }).find("c_min"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              Svm(s.train, s.validation, {.c_min = -1.0});
            }).find("c_min"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              Svm(s.train, s.validation, {.c_min = 1.0, .c_max = 0.5});
            }).find("c_max"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              Svm(s.train, s.validation, {.tau = 0.0});
            }).find("tau"),
            std::string::npos);

  // Shapes: train vs validation dimension, rows vs labels, oracle sizes.
  LabelledData other = s.validation;
  other.features.conservativeResize(Eigen::NoChange, 3);
  EXPECT_NE(message_of<ShapeError>([&] { Svm(s.train, other, {}); }).find("dimension"),
            std::string::npos);
  LabelledData ragged = s.train;
  ragged.labels.conservativeResize(ragged.labels.size() - 1);
  EXPECT_NE(message_of<ShapeError>([&] { Svm(ragged, s.validation, {}); }).find("rows"),
            std::string::npos);
  LabelledData bad_label = s.train;
  bad_label.labels[3] = 0.5;
  EXPECT_NE(
      message_of<InvalidArgumentError>([&] { Svm(bad_label, s.validation, {}); }).find("labels[3]"),
      std::string::npos);
  LabelledData nan_feature = s.train;
  nan_feature.features(2, 1) = std::nan("");
  EXPECT_NE(
      message_of<InvalidArgumentError>([&] { Svm(nan_feature, s.validation, {}); }).find("finite"),
      std::string::npos);

  const Svm p(s.train, s.validation, {});
  Vector x = Vector::Ones(p.upper_dimension() + 1), y = Vector::Zero(p.lower_dimension());
  Vector gx, gy, g;
  EXPECT_NE(message_of<ShapeError>([&] { p.upper_gradient(x, y, gx, gy); }).find("x has"),
            std::string::npos);
  x.resize(p.upper_dimension());
  y.resize(p.lower_dimension() - 1);
  EXPECT_NE(message_of<ShapeError>([&] { p.constraints(x, y, g); }).find("y has"),
            std::string::npos);
  y.resize(p.lower_dimension());
  EXPECT_NE(message_of<ShapeError>([&] {
              p.constraint_adjoint(x, y, Vector::Ones(2), gx, gy);
            }).find("lam has"),
            std::string::npos);

  // Hyper-cleaning: flip fraction outside [0, 0.5), mu, rho.
  for (const double fraction : {-0.1, 0.5, 0.7, std::nan("")}) {
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                DataHyperCleaning(s.train, s.validation, {.flip_fraction = fraction});
              }).find("flip_fraction"),
              std::string::npos)
        << fraction;
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                flip_labels(s.train.labels, fraction, 1);
              }).find("flip_fraction"),
              std::string::npos)
        << fraction;
  }
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              DataHyperCleaning(s.train, s.validation, {.mu = 0.0});
            }).find("mu"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              DataHyperCleaning(s.train, s.validation, {.rho = -1.0});
            }).find("rho"),
            std::string::npos);

  // Splits, solvers, accuracy.
  const LabelledData data = diabetes_like(1);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              split_data(data, 700, 68, 1);
            }).find("n_train + n_validation"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] { split_data(data, 0, 10, 1); }).find("n_train"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              solve_linear_svm_dual_cd(s.train, 0.0);
            }).find("c must be"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              solve_linear_svm_dual_cd(s.train, Vector::Ones(3));
            }).find("c has 3"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              solve_linear_svm_dual_cd(s.train, 1.0, {.tolerance = 0.0});
            }).find("tolerance"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              solve_norm_ball_logistic(s.train, Vector::Constant(s.train.size(), 2.0), 1e-3, 1.0);
            }).find("weights["),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] { accuracy(s.test, Vector::Ones(2), 0.0); }).find("w has"),
            std::string::npos);
}

}  // namespace
}  // namespace tether::problems
