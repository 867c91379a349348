// The dense QP of core/dense_qp.hpp: the KKT residual on seeded random problems, agreement with
// brute-force enumeration of active sets, hand-computed cases, degenerate and infeasible input,
// and the nonnegativity dual form the GU cone projection solves.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <tether/core/dense_qp.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::VectorXd;
using ::testing::HasSubstr;
using testing::message_of;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// ---- random problems --------------------------------------------------------------------------

MatrixXd gaussian(Rng& rng, Index rows, Index cols) {
  MatrixXd m(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) m(i, j) = rng.normal();
  return m;
}

/// Q diag(s) Q^T with Q a random rotation and s log-spaced from 1 to `condition` (so the
/// condition number is exactly `condition`, up to rounding).
MatrixXd random_spd(Rng& rng, Index n, double condition) {
  const MatrixXd q = Eigen::HouseholderQR<MatrixXd>(gaussian(rng, n, n)).householderQ();
  VectorXd s(n);
  for (Index i = 0; i < n; ++i)
    s[i] = n == 1 ? 1.0 : std::pow(condition, static_cast<double>(i) / static_cast<double>(n - 1));
  const MatrixXd p = q * s.asDiagonal() * q.transpose();
  return 0.5 * (p + p.transpose());
}

struct Qp {
  MatrixXd P, A, E;
  VectorXd q, b, e;
};

/// n in [1, max_n], m in [0, max_m]; rows of A have random scales, some duplicate an earlier
/// row, some are nonnegative combinations of two earlier rows; b = A x_f + slack (slack 0 for
/// about a third of the rows) so x_f is feasible; the unconstrained minimiser lies away from x_f
/// so that many rows are violated at the start.
Qp random_qp(std::uint64_t seed, Index max_n, Index max_m, double max_log10_condition,
             Index equalities = 0) {
  Rng rng(seed);
  Qp qp;
  const Index n = 1 + static_cast<Index>(rng.index(static_cast<std::uint64_t>(max_n)));
  const Index m = static_cast<Index>(rng.index(static_cast<std::uint64_t>(max_m + 1)));
  const double condition = std::pow(10.0, rng.uniform(0.0, max_log10_condition));
  qp.P = random_spd(rng, n, condition);
  const VectorXd x_f = gaussian(rng, n, 1);
  const VectorXd x_u = x_f + 3.0 * gaussian(rng, n, 1);
  qp.q = -qp.P * x_u;
  qp.A.resize(m, n);
  qp.b.resize(m);
  for (Index i = 0; i < m; ++i) {
    const double kind = rng.uniform();
    if (i >= 1 && kind < 0.12) {
      qp.A.row(i) = qp.A.row(static_cast<Index>(rng.index(static_cast<std::uint64_t>(i))));
    } else if (i >= 2 && kind < 0.22) {
      const Index j = static_cast<Index>(rng.index(static_cast<std::uint64_t>(i)));
      const Index k = static_cast<Index>(rng.index(static_cast<std::uint64_t>(i)));
      qp.A.row(i) = rng.uniform(0.1, 2.0) * qp.A.row(j) + rng.uniform(0.1, 2.0) * qp.A.row(k);
    } else {
      qp.A.row(i) = std::pow(10.0, rng.uniform(-1.0, 1.0)) * gaussian(rng, 1, n);
    }
    const double slack = rng.uniform() < 0.35 ? 0.0 : rng.uniform(0.0, 1.0);
    qp.b[i] = qp.A.row(i).dot(x_f) + slack * qp.A.row(i).norm();
  }
  const Index l = std::min(equalities, n - 1);
  qp.E = gaussian(rng, l, n);
  qp.e = qp.E * x_f;
  return qp;
}

double objective(const Qp& qp, const VectorXd& x) { return 0.5 * x.dot(qp.P * x) + qp.q.dot(x); }

// ---- brute force --------------------------------------------------------------------------------

struct BruteForce {
  VectorXd x;
  double value = std::numeric_limits<double>::infinity();
  int candidates = 0;  ///< subsets whose KKT point is feasible with lambda >= 0
};

/// For every subset S of the rows of A (the rows of E always included), solve the equality-
/// constrained KKT system; keep the solutions that satisfy A x <= b and lambda_S >= 0 (to a
/// loose 1e-9, relative); return the one with the least objective.
BruteForce brute_force(const Qp& qp) {
  const Index n = qp.P.rows(), m = qp.A.rows(), l = qp.E.rows();
  BruteForce best;
  for (unsigned mask = 0; mask < (1u << m); ++mask) {
    std::vector<Index> s;
    for (Index i = 0; i < m; ++i)
      if (mask & (1u << i)) s.push_back(i);
    const Index k = static_cast<Index>(s.size()) + l;
    if (k > n) continue;
    MatrixXd kkt = MatrixXd::Zero(n + k, n + k);
    VectorXd rhs(n + k);
    kkt.topLeftCorner(n, n) = qp.P;
    rhs.head(n) = -qp.q;
    for (Index j = 0; j < k; ++j) {
      const VectorXd row = j < l
                               ? VectorXd(qp.E.row(j).transpose())
                               : VectorXd(qp.A.row(s[static_cast<std::size_t>(j - l)]).transpose());
      kkt.block(0, n + j, n, 1) = row;
      kkt.block(n + j, 0, 1, n) = row.transpose();
      rhs[n + j] = j < l ? qp.e[j] : qp.b[s[static_cast<std::size_t>(j - l)]];
    }
    // Dependent rows: skip, another subset covers this face (their rank, not the KKT matrix's
    // pivots, decides: the KKT matrix mixes the scales of P and A).
    if (k > 0) {
      Eigen::FullPivLU<MatrixXd> rows_lu(kkt.bottomLeftCorner(k, n));
      rows_lu.setThreshold(1e-10);
      if (rows_lu.rank() < k) continue;
    }
    // In long double (64-bit mantissa on x86) with refinement: near-parallel rows make this
    // system ill-conditioned, and the reference should be more accurate than the solver.
    using MatrixXld = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
    using VectorXld = Eigen::Matrix<long double, Eigen::Dynamic, 1>;
    const MatrixXld kkt_ld = kkt.cast<long double>();
    const VectorXld rhs_ld = rhs.cast<long double>();
    const Eigen::FullPivLU<MatrixXld> lu(kkt_ld);
    VectorXld sol_ld = lu.solve(rhs_ld);
    for (int refine = 0; refine < 3; ++refine)
      sol_ld += lu.solve(VectorXld(rhs_ld - kkt_ld * sol_ld));
    const VectorXd sol = sol_ld.cast<double>();
    const VectorXd x = sol.head(n);
    bool ok = true;
    // Row scales as in the residual: |A_i|_1 max(|x|, |q| / |P|) + |b_i| (an apex x = 0 comes
    // out as rounding noise, which a componentwise scale would call a violation).
    const double size =
        std::max(x.lpNorm<Eigen::Infinity>(),
                 qp.q.lpNorm<Eigen::Infinity>() / qp.P.cwiseAbs().rowwise().sum().maxCoeff()) +
        1e-300;
    for (Index i = 0; i < m && ok; ++i) {
      const double scale = qp.A.row(i).lpNorm<1>() * size + std::abs(qp.b[i]);
      ok = (qp.A.row(i).dot(x) - qp.b[i]) <= 1e-9 * scale;
    }
    const double lambda_scale = (qp.P * x).cwiseAbs().maxCoeff() + qp.q.cwiseAbs().maxCoeff();
    for (Index j = l; j < k && ok; ++j) ok = sol[n + j] >= -1e-9 * lambda_scale;
    if (!ok) continue;
    ++best.candidates;
    const double value = objective(qp, x);
    if (value < best.value) {
      best.value = value;
      best.x = x;
    }
  }
  return best;
}

/// The invariants of any converged answer: sizes, lambda >= 0, lambda = 0 off the active set,
/// active rows tight, and the KKT residual recomputed independently of the solver.
void expect_valid_answer(const Qp& qp, const DenseQpResult& r, double kkt_bound) {
  ASSERT_TRUE(r.converged);
  ASSERT_EQ(r.x.size(), qp.P.rows());
  ASSERT_EQ(r.multipliers.size(), qp.A.rows());
  EXPECT_LE(r.kkt_residual, kkt_bound);
  const double recomputed = qp.E.rows() == 0
                                ? dense_qp_kkt_residual(qp.P, qp.q, qp.A, qp.b, r.x, r.multipliers)
                                : dense_qp_kkt_residual(qp.P, qp.q, qp.A, qp.b, qp.E, qp.e, r.x,
                                                        r.multipliers, r.equality_multipliers);
  EXPECT_EQ(recomputed, r.kkt_residual);
  EXPECT_TRUE(std::is_sorted(r.active_set.begin(), r.active_set.end()));
  for (Index i = 0; i < qp.A.rows(); ++i) {
    EXPECT_GE(r.multipliers[i], 0.0) << "row " << i;
    const bool active = std::find(r.active_set.begin(), r.active_set.end(), static_cast<int>(i)) !=
                        r.active_set.end();
    if (!active) EXPECT_EQ(r.multipliers[i], 0.0) << "row " << i;
    if (active) {  // tight on the residual's row scale |A_i|_1 max(|x|, |q| / |P|) + |b_i|
      const double size =
          std::max(r.x.lpNorm<Eigen::Infinity>(),
                   qp.q.lpNorm<Eigen::Infinity>() / qp.P.cwiseAbs().rowwise().sum().maxCoeff());
      const double scale = qp.A.row(i).lpNorm<1>() * size + std::abs(qp.b[i]);
      EXPECT_LE(std::abs(qp.A.row(i).dot(r.x) - qp.b[i]), 1e-12 * scale) << "row " << i;
    }
  }
}

// ---- the seeded random battery ---------------------------------------------------------------

TEST(DenseQp, RandomProblemsMeetTheKktTolerance) {
  double worst = 0.0, total_iterations = 0.0;
  int most_iterations = 0, problems_with_drops = 0, problems_with_active_rows = 0;
  for (std::uint64_t seed = 1; seed <= 500; ++seed) {
    const Qp qp = random_qp(seed, 12, 16, 6.0);
    const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
    SCOPED_TRACE(::testing::Message()
                 << "seed " << seed << ", n " << qp.P.rows() << ", m " << qp.A.rows());
    expect_valid_answer(qp, r, 1e-12);
    worst = std::max(worst, r.kkt_residual);
    total_iterations += r.iterations;
    most_iterations = std::max(most_iterations, r.iterations);
    // adds - drops = |W| and adds + drops = iterations
    if (r.iterations > static_cast<int>(r.active_set.size())) ++problems_with_drops;
    if (!r.active_set.empty()) ++problems_with_active_rows;
  }
  std::cout << "[ stats    ] 500 random QPs: max KKT residual " << worst << ", iterations mean "
            << total_iterations / 500.0 << ", max " << most_iterations << ", with drops "
            << problems_with_drops << ", with active rows " << problems_with_active_rows << "\n";
  // The battery must exercise both kinds of step and the constrained case.
  EXPECT_GT(problems_with_drops, 10);
  EXPECT_GT(problems_with_active_rows, 300);
}

TEST(DenseQp, AgreesWithBruteForceEnumeration) {
  double worst_x = 0.0, worst_value = 0.0;
  for (std::uint64_t seed = 1001; seed <= 1500; ++seed) {
    const Qp qp = random_qp(seed, 8, 8, 6.0);
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
    const BruteForce bf = brute_force(qp);
    ASSERT_GT(bf.candidates, 0);
    expect_valid_answer(qp, r, 1e-12);
    const double dx =
        (r.x - bf.x).lpNorm<Eigen::Infinity>() / (1.0 + bf.x.lpNorm<Eigen::Infinity>());
    const double dv = std::abs(objective(qp, r.x) - bf.value) / (1.0 + std::abs(bf.value));
    EXPECT_LE(dx, 1e-10);
    EXPECT_LE(dv, 1e-10);
    worst_x = std::max(worst_x, dx);
    worst_value = std::max(worst_value, dv);
  }
  std::cout << "[ stats    ] brute force (500 QPs, m <= 8): max relative |x - x_bf| " << worst_x
            << ", max relative objective gap " << worst_value << "\n";
}

TEST(DenseQp, AgreesWithBruteForceWithEqualities) {
  double worst_x = 0.0;
  for (std::uint64_t seed = 2001; seed <= 2200; ++seed) {
    const Qp qp = random_qp(seed, 8, 8, 6.0, 1 + static_cast<Index>(seed % 3));
    SCOPED_TRACE(::testing::Message() << "seed " << seed << ", l " << qp.E.rows());
    const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b, qp.E, qp.e);
    ASSERT_EQ(r.equality_multipliers.size(), qp.E.rows());
    expect_valid_answer(qp, r, 1e-12);
    const BruteForce bf = brute_force(qp);
    ASSERT_GT(bf.candidates, 0);
    const double dx =
        (r.x - bf.x).lpNorm<Eigen::Infinity>() / (1.0 + bf.x.lpNorm<Eigen::Infinity>());
    EXPECT_LE(dx, 1e-10);
    worst_x = std::max(worst_x, dx);
  }
  std::cout << "[ stats    ] brute force with equalities (200 QPs): max relative |x - x_bf| "
            << worst_x << "\n";
}

// ---- hand-computed cases ------------------------------------------------------------------------

TEST(DenseQp, ProjectionOntoAHalfPlane) {
  // min 0.5 |x - (2, 2)|^2 s.t. x1 + x2 <= 2: x = (1, 1), lambda = 1.
  MatrixXd P = MatrixXd::Identity(2, 2), A(1, 2);
  VectorXd q(2), b(1);
  q << -2, -2;
  A << 1, 1;
  b << 2;
  const DenseQpResult r = solve_dense_qp(P, q, A, b);
  ASSERT_TRUE(r.converged);
  EXPECT_NEAR(r.x[0], 1.0, 1e-15);
  EXPECT_NEAR(r.x[1], 1.0, 1e-15);
  EXPECT_NEAR(r.multipliers[0], 1.0, 1e-15);
  EXPECT_EQ(r.active_set, std::vector<int>{0});
  EXPECT_EQ(r.iterations, 1);
  EXPECT_LE(r.kkt_residual, 1e-15);
}

TEST(DenseQp, CornerOfTwoBounds) {
  // min 0.5 |x - (2, 2)|^2 s.t. x1 <= 1, x2 <= 0.5: x = (1, 0.5), lambda = (1, 1.5).
  MatrixXd P = MatrixXd::Identity(2, 2), A(2, 2);
  VectorXd q(2), b(2);
  q << -2, -2;
  A << 1, 0, 0, 1;
  b << 1, 0.5;
  const DenseQpResult r = solve_dense_qp(P, q, A, b);
  EXPECT_NEAR(r.x[0], 1.0, 1e-15);
  EXPECT_NEAR(r.x[1], 0.5, 1e-15);
  EXPECT_NEAR(r.multipliers[0], 1.0, 1e-15);
  EXPECT_NEAR(r.multipliers[1], 1.5, 1e-15);
  EXPECT_EQ(r.active_set, (std::vector<int>{0, 1}));
}

TEST(DenseQp, AnisotropicMetricLeavesAViolatedRowInactive) {
  // min (x1 - 2)^2 + 0.5 (x2 - 2)^2, i.e. P = diag(2, 1), q = (-4, -2), s.t. x1 + x2 <= 1 and
  // x1 <= 1.5 (violated at the start (2, 2)). With row 0 alone: 2(x1 - 2) + l = 0,
  // x2 - 2 + l = 0, x1 + x2 = 1 give l = 2, x = (1, 0), where row 1 holds strictly.
  MatrixXd P(2, 2), A(2, 2);
  VectorXd q(2), b(2);
  P << 2, 0, 0, 1;
  q << -4, -2;
  A << 1, 1, 1, 0;
  b << 1, 1.5;
  const DenseQpResult r = solve_dense_qp(P, q, A, b);
  EXPECT_NEAR(r.x[0], 1.0, 1e-15);
  EXPECT_NEAR(r.x[1], 0.0, 1e-15);
  EXPECT_NEAR(r.multipliers[0], 2.0, 1e-14);
  EXPECT_EQ(r.multipliers[1], 0.0);
  EXPECT_EQ(r.active_set, std::vector<int>{0});
}

TEST(DenseQp, VertexOfTwoRows) {
  // P = I, unconstrained minimiser (3, 0); row 0: x1 + 0.01 x2 <= 0.5, row 1: x1 + 3 x2 <= -6.
  // Row 1 alone gives (3, 0) - (9 / 10) (1, 3) = (2.1, -2.7), which violates row 0, so the
  // answer is the vertex where both are tight, with lambda from x + q + A^T lambda = 0 (both
  // positive: checked below).
  MatrixXd P = MatrixXd::Identity(2, 2), A(2, 2);
  VectorXd q(2), b(2);
  q << -3, 0;
  A << 1, 0.01, 1, 3;
  b << 0.5, -6;
  const DenseQpResult r = solve_dense_qp(P, q, A, b);
  const VectorXd x = A.fullPivLu().solve(b);  // both rows tight
  const VectorXd lambda = (A.transpose()).fullPivLu().solve(-(P * x + q));
  ASSERT_TRUE((lambda.array() > 0).all());
  EXPECT_NEAR((r.x - x).lpNorm<Eigen::Infinity>(), 0.0, 1e-14);
  EXPECT_NEAR((r.multipliers - lambda).lpNorm<Eigen::Infinity>(), 0.0, 1e-13);
  EXPECT_EQ(r.active_set, (std::vector<int>{0, 1}));
}

TEST(DenseQp, DropStepOnAHandCase) {
  // P = I, q = 0 (project the origin) onto x1 + x2 >= 2, 2 x1 + x2 >= 4, x2 <= -1, written as
  // A x <= b. By distance from the start 0, row 1 (4 / sqrt 5) joins first: x = (1.6, 0.8);
  // then row 2: x = (2.5, -1); then row 0 is violated (1.5 < 2) and depends on rows 1 and 2
  // (three rows in R^2), so a dual-only step drops row 1 before row 0 joins: 4 iterations.
  // Answer: x = (3, -1) with lambda = (1.5, 0, 4): x + A^T lambda = (3 - 3, -1 - 3 + 4) = 0,
  // rows 0 and 2 tight, row 1 reads 5 >= 4.
  Qp qp;
  qp.P = MatrixXd::Identity(2, 2);
  qp.q = VectorXd::Zero(2);
  qp.A.resize(3, 2);
  qp.b.resize(3);
  qp.A << -2, -2, -2, -1, 0, 1;
  qp.b << -4, -4, -1;
  qp.E.resize(0, 2);
  qp.e.resize(0);
  const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
  EXPECT_NEAR(r.x[0], 3.0, 1e-15);
  EXPECT_NEAR(r.x[1], -1.0, 1e-15);
  EXPECT_NEAR(r.multipliers[0], 1.5, 1e-15);
  EXPECT_EQ(r.multipliers[1], 0.0);
  EXPECT_NEAR(r.multipliers[2], 4.0, 1e-15);
  EXPECT_EQ(r.active_set, (std::vector<int>{0, 2}));
  EXPECT_EQ(r.iterations, 4);  // add 1, add 2, drop 1, add 0
  EXPECT_NEAR((brute_force(qp).x - r.x).norm(), 0.0, 1e-14);
}

TEST(DenseQp, EqualityAndInequalityByHand) {
  // min 0.5 |x|^2 s.t. x1 + x2 = 2, x1 <= 0.5: x = (0.5, 1.5), nu = -1.5, lambda = 1.
  MatrixXd P = MatrixXd::Identity(2, 2), A(1, 2), E(1, 2);
  VectorXd q = VectorXd::Zero(2), b(1), e(1);
  A << 1, 0;
  b << 0.5;
  E << 1, 1;
  e << 2;
  const DenseQpResult r = solve_dense_qp(P, q, A, b, E, e);
  ASSERT_TRUE(r.converged);
  EXPECT_NEAR(r.x[0], 0.5, 1e-15);
  EXPECT_NEAR(r.x[1], 1.5, 1e-15);
  EXPECT_NEAR(r.equality_multipliers[0], -1.5, 1e-15);
  EXPECT_NEAR(r.multipliers[0], 1.0, 1e-15);
  EXPECT_LE(r.kkt_residual, 1e-15);
  // A redundant copy of the equality row changes nothing.
  MatrixXd E2(2, 2);
  VectorXd e2(2);
  E2 << 1, 1, 2, 2;
  e2 << 2, 4;
  const DenseQpResult r2 = solve_dense_qp(P, q, A, b, E2, e2);
  EXPECT_NEAR((r2.x - r.x).norm(), 0.0, 1e-15);
  EXPECT_EQ(r2.equality_multipliers[1], 0.0);
}

// ---- degenerate cases -------------------------------------------------------------------------

TEST(DenseQp, DuplicateRows) {
  // The half-plane case with its row repeated three times: one copy holds the whole multiplier.
  MatrixXd P = MatrixXd::Identity(2, 2), A(3, 2);
  VectorXd q(2), b(3);
  q << -2, -2;
  A << 1, 1, 1, 1, 1, 1;
  b << 2, 2, 2;
  const DenseQpResult r = solve_dense_qp(P, q, A, b);
  ASSERT_TRUE(r.converged);
  EXPECT_NEAR(r.x[0], 1.0, 1e-15);
  EXPECT_NEAR(r.x[1], 1.0, 1e-15);
  EXPECT_NEAR(r.multipliers.sum(), 1.0, 1e-15);
  EXPECT_EQ(r.active_set.size(), 1u);
  EXPECT_LE(r.kkt_residual, 1e-15);
  // Parallel copies with different offsets, and a scaled copy: the tightest one binds.
  A.resize(4, 2);
  b.resize(4);
  A << 1, 1, 1, 1, 3, 3, 1, 1;
  b << 2, 1, 3, 3;  // x1 + x2 <= 2, <= 1, <= 1 (scaled), <= 3
  const DenseQpResult r2 = solve_dense_qp(P, q, A, b);
  EXPECT_NEAR(r2.x[0], 0.5, 1e-15);
  EXPECT_NEAR(r2.x[1], 0.5, 1e-15);
  EXPECT_NEAR(r2.multipliers[1] + 3.0 * r2.multipliers[2], 1.5, 1e-14);
  EXPECT_EQ(r2.multipliers[0], 0.0);
  EXPECT_EQ(r2.multipliers[3], 0.0);
  EXPECT_LE(r2.kkt_residual, 1e-15);
}

TEST(DenseQp, DependentActiveRowsInHigherDimension) {
  // Three rows through one point of R^3, the third the sum of the first two: at most two can be
  // in the working set, and the answer matches the brute force.
  Qp qp;
  qp.P = MatrixXd::Identity(3, 3);
  qp.P(0, 1) = qp.P(1, 0) = 0.3;
  qp.q = VectorXd::Constant(3, -5.0);
  qp.A.resize(3, 3);
  qp.b.resize(3);
  qp.A << 1, 0, 0, 0, 1, 0, 1, 1, 0;
  qp.b << 1, 1, 2;
  qp.E.resize(0, 3);
  qp.e.resize(0);
  const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
  expect_valid_answer(qp, r, 1e-15);
  EXPECT_LE(r.active_set.size(), 2u);
  EXPECT_NEAR((r.x - brute_force(qp).x).norm(), 0.0, 1e-14);
  EXPECT_NEAR(r.x[0], 1.0, 1e-15);
  EXPECT_NEAR(r.x[1], 1.0, 1e-15);
  EXPECT_NEAR(r.x[2], 5.0, 1e-14);
}

TEST(DenseQp, RowsImpliedByTheWorkingSetAtDegenerateVertices) {
  // These generator seeds (found by instrumenting the solver over 100000 seeds) reach a row that
  // is violated at the iterate by more than the tolerance, yet is a combination -A_W^T r,
  // r <= 0, of the working set whose Farkas sum y^T b is 0 up to rounding: a degenerate vertex
  // built from dependent rows with zero slack, not an infeasible problem. The solver must leave
  // that row out, not throw, and still agree with the brute force.
  for (std::uint64_t seed : {111264u, 155297u, 157391u, 158136u, 191889u}) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const Qp qp = random_qp(seed, 12, 16, 6.0);
    const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
    expect_valid_answer(qp, r, 1e-12);
    const BruteForce bf = brute_force(qp);
    ASSERT_GT(bf.candidates, 0);
    EXPECT_LE((r.x - bf.x).lpNorm<Eigen::Infinity>(),
              1e-9 * (1.0 + bf.x.lpNorm<Eigen::Infinity>()));
  }
}

TEST(DenseQp, NoConstraints) {
  Rng rng(7);
  const MatrixXd P = random_spd(rng, 5, 1e3);
  const VectorXd q = gaussian(rng, 5, 1);
  const VectorXd expected = -P.llt().solve(q);
  for (const MatrixXd& A : {MatrixXd(0, 5), MatrixXd(0, 0)}) {
    const DenseQpResult r = solve_dense_qp(P, q, A, VectorXd(0));
    ASSERT_TRUE(r.converged);
    EXPECT_EQ(r.iterations, 0);
    EXPECT_TRUE(r.active_set.empty());
    EXPECT_EQ(r.multipliers.size(), 0);
    EXPECT_LE((r.x - expected).norm(), 1e-12 * expected.norm());
    EXPECT_LE(r.kkt_residual, 1e-15);
  }
  // The 0-variable problem (GU with no retain covector) is solved, not refused.
  const DenseQpResult empty =
      solve_dense_qp(MatrixXd(0, 0), VectorXd(0), MatrixXd(0, 0), VectorXd(0));
  EXPECT_TRUE(empty.converged);
  EXPECT_EQ(empty.x.size(), 0);
}

TEST(DenseQp, ConstraintsSatisfiedAtTheUnconstrainedMinimiser) {
  Rng rng(8);
  const MatrixXd P = random_spd(rng, 4, 1e2);
  const VectorXd q = gaussian(rng, 4, 1);
  const VectorXd x_u = -P.llt().solve(q);
  const MatrixXd A = gaussian(rng, 6, 4);
  VectorXd b = A * x_u + VectorXd::Constant(6, 0.5);
  b[2] = A.row(2).dot(x_u);  // one row exactly tight: still no work to do
  const DenseQpResult r = solve_dense_qp(P, q, A, b);
  ASSERT_TRUE(r.converged);
  EXPECT_EQ(r.iterations, 0);
  EXPECT_TRUE(r.active_set.empty());
  EXPECT_TRUE(r.multipliers.isZero(0.0));
  EXPECT_LE((r.x - x_u).norm(), 1e-13 * x_u.norm());
}

TEST(DenseQp, ActiveBoundsHoldExactly) {
  // Dense rows mixed with bounds +-x_j <= beta: a bound in the working set holds to the bit
  // (x_j = beta / alpha), whatever order the rows entered in.
  int bounds_checked = 0;
  for (std::uint64_t seed = 4001; seed <= 4200; ++seed) {
    Qp qp = random_qp(seed, 10, 8, 6.0);
    Rng rng(seed + 11);
    const Index n = qp.P.rows(), m = qp.A.rows();
    const Index extra = 1 + static_cast<Index>(rng.index(static_cast<std::uint64_t>(n)));
    qp.A.conservativeResize(m + extra, n);
    qp.b.conservativeResize(m + extra);
    for (Index i = m; i < m + extra; ++i) {
      const Index j = static_cast<Index>(rng.index(static_cast<std::uint64_t>(n)));
      const double alpha = (rng.uniform() < 0.5 ? -1.0 : 1.0) * rng.uniform(0.5, 3.0);
      qp.A.row(i).setZero();
      qp.A(i, j) = alpha;
      qp.b[i] = rng.uniform(-0.3, 0.3);  // cut near the middle of the feasible region
    }
    DenseQpResult r;
    try {
      r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
    } catch (const InfeasibleError&) {
      continue;  // the bounds may conflict with the random rows
    }
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    expect_valid_answer(qp, r, 1e-12);
    for (const int i : r.active_set) {
      if (i < m) continue;
      Index j = 0;
      qp.A.row(i).cwiseAbs().maxCoeff(&j);
      EXPECT_EQ(r.x[j], qp.b[i] / qp.A(i, j)) << "bound row " << i;
      ++bounds_checked;
    }
  }
  EXPECT_GT(bounds_checked, 100);
}

// ---- the GU cone projection's dual ------------------------------------------------------------

TEST(DenseQp, NonnegativityDualOfTheGuConeProjection) {
  // min 0.5 |D - D0|_H^2 s.t. G^T D <= 0 (d = 20, k retain covectors), solved twice: as the
  // primal QP (P = H, q = -H D0, A = G^T, b = 0) and as its k x k dual with A = -I, b = 0,
  // from which D = D0 - H^-1 G mu. Both must agree, D must lie in the cone, and the projection
  // is non-expansive in the H norm.
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    Rng rng(seed);
    const Index d = 20, k = 1 + static_cast<Index>(rng.index(9));
    VectorXd h(d);
    for (Index i = 0; i < d; ++i) h[i] = std::pow(10.0, rng.uniform(-2.0, 2.0));
    const MatrixXd g = gaussian(rng, d, k);
    const VectorXd d0 = gaussian(rng, d, 1);

    const MatrixXd h_inv_g = h.cwiseInverse().asDiagonal() * g;
    MatrixXd dual_p = g.transpose() * h_inv_g;
    dual_p = 0.5 * (dual_p + dual_p.transpose());
    const VectorXd dual_q = -g.transpose() * d0;
    const DenseQpResult dual =
        solve_dense_qp(dual_p, dual_q, -MatrixXd::Identity(k, k), VectorXd::Zero(k));
    ASSERT_TRUE(dual.converged);
    EXPECT_LE(dual.kkt_residual, 1e-12);
    EXPECT_GE(dual.x.minCoeff(), 0.0);
    for (const int i : dual.active_set) EXPECT_EQ(dual.x[i], 0.0) << "mu_" << i << " is held at 0";
    const VectorXd step = d0 - h_inv_g * dual.x;

    const DenseQpResult primal = solve_dense_qp(MatrixXd(h.asDiagonal()), -h.cwiseProduct(d0),
                                                g.transpose(), VectorXd::Zero(k));
    ASSERT_TRUE(primal.converged);
    EXPECT_LE(primal.kkt_residual, 1e-12);
    EXPECT_LE((primal.x - step).lpNorm<Eigen::Infinity>(), 1e-10 * d0.lpNorm<Eigen::Infinity>());
    // The primal's multipliers are the dual's solution.
    EXPECT_LE((primal.multipliers - dual.x).lpNorm<Eigen::Infinity>(),
              1e-9 * (1.0 + dual.x.lpNorm<Eigen::Infinity>()));

    const VectorXd gt_step = g.transpose() * step;
    const double scale = (g.cwiseAbs().transpose() * step.cwiseAbs()).maxCoeff();
    EXPECT_LE(gt_step.maxCoeff(), 1e-12 * scale);
    for (Index i = 0; i < k; ++i)
      EXPECT_LE(std::abs(dual.x[i] * gt_step[i]), 1e-10 * scale * (1.0 + dual.x[i]));
    EXPECT_LE(step.dot(h.asDiagonal() * step), d0.dot(h.asDiagonal() * d0) * (1.0 + 1e-12));
  }
  // D0 already in the cone: mu = 0, D = D0.
  MatrixXd g(2, 1);
  g << 1, 1;
  VectorXd d0(2);
  d0 << -1, 0.5;
  const DenseQpResult inside = solve_dense_qp(g.transpose() * g, -g.transpose() * d0,
                                              -MatrixXd::Identity(1, 1), VectorXd::Zero(1));
  EXPECT_EQ(inside.x[0], 0.0);
  EXPECT_EQ(inside.active_set, std::vector<int>{0});
}

TEST(DenseQp, ConeProjectionAtTheApex) {
  // The form RetainProjector's cone mode solves: P = I, q = -y0, unit rows a_i, b = 0, more rows
  // than dimensions. For y0 in cone{a_i} (the polar of {y : A y <= 0}) the answer is the apex
  // y = 0 (Moreau), where every row is tight and only r of them fit in the working set; the
  // residual must still be tiny (its row scale has the floor |q|_inf / |P|_inf = |y0|_inf).
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    Rng rng(seed);
    const Index r = 1 + static_cast<Index>(rng.index(5));
    const Index rows = r + 1 + static_cast<Index>(rng.index(4));
    MatrixXd a = gaussian(rng, rows, r);
    a = a.rowwise().normalized().eval();
    VectorXd c(rows);
    for (Index i = 0; i < rows; ++i) c[i] = rng.uniform(0.0, 1.0);
    const VectorXd y0 = a.transpose() * c;
    const DenseQpResult apex =
        solve_dense_qp(MatrixXd::Identity(r, r), -y0, a, VectorXd::Zero(rows));
    ASSERT_TRUE(apex.converged);
    EXPECT_LE(apex.kkt_residual, 1e-12);
    EXPECT_LE(apex.x.lpNorm<Eigen::Infinity>(), 1e-14 * y0.lpNorm<Eigen::Infinity>());
    EXPECT_LE(apex.active_set.size(), static_cast<std::size_t>(r));
    // A general y0: agreement with the brute force.
    Qp qp;
    qp.P = MatrixXd::Identity(r, r);
    qp.q = -gaussian(rng, r, 1);
    qp.A = a;
    qp.b = VectorXd::Zero(rows);
    qp.E.resize(0, r);
    qp.e.resize(0);
    const DenseQpResult general = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
    expect_valid_answer(qp, general, 1e-12);
    const BruteForce bf = brute_force(qp);
    ASSERT_GT(bf.candidates, 0);
    EXPECT_LE((general.x - bf.x).lpNorm<Eigen::Infinity>(), 1e-13);
  }
}

// ---- infeasible and bad input ------------------------------------------------------------------

TEST(DenseQp, InfeasibleConstraintsAreRefusedWithACertificate) {
  {  // x <= -1 and -x <= -1
    MatrixXd P = MatrixXd::Identity(1, 1), A(2, 1);
    VectorXd q = VectorXd::Zero(1), b(2);
    A << 1, -1;
    b << -1, -1;
    const std::string msg = message_of<InfeasibleError>([&] { solve_dense_qp(P, q, A, b); });
    EXPECT_THAT(msg, HasSubstr("infeasible"));
    EXPECT_THAT(msg, HasSubstr("A row 0"));
    EXPECT_THAT(msg, HasSubstr("A row 1"));
    EXPECT_THAT(msg, HasSubstr("right-hand side -2"));
  }
  {  // x1 <= 0, x2 <= 0, x1 + x2 >= 1
    MatrixXd P = MatrixXd::Identity(2, 2), A(3, 2);
    VectorXd q(2), b(3);
    q << 1, -3;
    A << 1, 0, 0, 1, -1, -1;
    b << 0, 0, -1;
    const std::string msg = message_of<InfeasibleError>([&] { solve_dense_qp(P, q, A, b); });
    EXPECT_THAT(msg, HasSubstr("A row 0"));
    EXPECT_THAT(msg, HasSubstr("A row 1"));
    EXPECT_THAT(msg, HasSubstr("A row 2"));
  }
  {  // a zero row with b < 0
    MatrixXd P = MatrixXd::Identity(2, 2), A = MatrixXd::Zero(2, 2);
    VectorXd q = VectorXd::Zero(2), b(2);
    A(0, 0) = 1;
    b << 1, -0.5;
    EXPECT_THAT(message_of<InfeasibleError>([&] { solve_dense_qp(P, q, A, b); }),
                HasSubstr("row 1 of A is zero, so A x <= b needs 0 <= b(1) = -0.5"));
  }
  {  // x1 = 1 and 2 x1 = 3
    MatrixXd P = MatrixXd::Identity(2, 2), E(2, 2);
    VectorXd q = VectorXd::Zero(2), e(2);
    E << 1, 0, 2, 0;
    e << 1, 3;
    const std::string msg = message_of<InfeasibleError>(
        [&] { solve_dense_qp(P, q, MatrixXd(0, 2), VectorXd(0), E, e); });
    EXPECT_THAT(msg, HasSubstr("E row 1"));
    EXPECT_THAT(msg, HasSubstr("E row 0"));
    EXPECT_THAT(msg, HasSubstr("inconsistent"));
  }
  {  // x1 = 1 and x1 <= 0
    MatrixXd P = MatrixXd::Identity(2, 2), A(1, 2), E(1, 2);
    VectorXd q = VectorXd::Zero(2), b(1), e(1);
    A << 1, 0;
    b << 0;
    E << 1, 0;
    e << 1;
    const std::string msg = message_of<InfeasibleError>([&] { solve_dense_qp(P, q, A, b, E, e); });
    EXPECT_THAT(msg, HasSubstr("A row 0"));
    EXPECT_THAT(msg, HasSubstr("E row 0"));
  }
}

TEST(DenseQp, RandomInfeasibleProblemsAreRefused) {
  // A feasible random problem plus the row -y^T A x <= -y^T b - delta (y >= 0 over a few rows):
  // y with weight 1 on the new row is a Farkas certificate, so no x satisfies all rows.
  int refused = 0;
  for (std::uint64_t seed = 3001; seed <= 3300; ++seed) {
    Qp qp = random_qp(seed, 12, 15, 6.0);
    Rng rng(seed + 7);
    const Index n = qp.P.rows(), m = qp.A.rows();
    VectorXd y = VectorXd::Zero(m);
    for (Index i = 0; i < m; ++i)
      if (rng.uniform() < 0.4) y[i] = rng.uniform(0.1, 2.0);
    Eigen::RowVectorXd combo = -(y.transpose() * qp.A);
    double rhs = -y.dot(qp.b);
    if (y.isZero() || combo.norm() < 1e-3) {  // fall back to a row and its negation
      combo = gaussian(rng, 1, n);
      qp.A.conservativeResize(m + 1, n);
      qp.b.conservativeResize(m + 1);
      qp.A.row(m) = -combo;
      qp.b[m] = 0.0;
      rhs = 0.0;
    }
    const double delta = (seed % 2 == 0 ? 1e-3 : 1e-8) * (std::abs(rhs) + 1.0);
    const Index rows = qp.A.rows();
    qp.A.conservativeResize(rows + 1, n);
    qp.b.conservativeResize(rows + 1);
    qp.A.row(rows) = combo;
    qp.b[rows] = rhs - delta;
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const std::string msg =
        message_of<InfeasibleError>([&] { solve_dense_qp(qp.P, qp.q, qp.A, qp.b); });
    EXPECT_THAT(msg, HasSubstr("the constraints are infeasible"));
    refused += !msg.empty();
  }
  EXPECT_EQ(refused, 300);
}

TEST(DenseQp, BadInputIsRefusedNamingTheArgument) {
  const MatrixXd P = MatrixXd::Identity(2, 2);
  const VectorXd q = VectorXd::Zero(2), b = VectorXd::Ones(1);
  const MatrixXd A = MatrixXd::Ones(1, 2);
  EXPECT_THAT(message_of<ShapeError>([&] { solve_dense_qp(MatrixXd::Identity(2, 3), q, A, b); }),
              HasSubstr("P must be square, got 2 x 3"));
  EXPECT_THAT(message_of<ShapeError>([&] { solve_dense_qp(P, VectorXd::Zero(3), A, b); }),
              HasSubstr("q has size 3, expected 2"));
  EXPECT_THAT(message_of<ShapeError>([&] { solve_dense_qp(P, q, MatrixXd::Ones(1, 3), b); }),
              HasSubstr("A is 1 x 3, expected 2 columns"));
  EXPECT_THAT(message_of<ShapeError>([&] { solve_dense_qp(P, q, A, VectorXd::Ones(2)); }),
              HasSubstr("b has size 2, expected 1"));
  EXPECT_THAT(message_of<ShapeError>(
                  [&] { solve_dense_qp(P, q, A, b, MatrixXd::Ones(1, 2), VectorXd::Ones(3)); }),
              HasSubstr("e has size 3, expected 1"));

  MatrixXd p_nan = P;
  p_nan(1, 0) = kNan;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(p_nan, q, A, b); }),
              HasSubstr("P(1, 0) = nan must be finite"));
  VectorXd q_inf = q;
  q_inf[1] = std::numeric_limits<double>::infinity();
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(P, q_inf, A, b); }),
              HasSubstr("q(1) = inf must be finite"));
  MatrixXd a_nan = A;
  a_nan(0, 1) = kNan;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(P, q, a_nan, b); }),
              HasSubstr("A(0, 1) = nan"));
  EXPECT_THAT(message_of<InvalidArgumentError>(
                  [&] { solve_dense_qp(P, q, A, VectorXd::Constant(1, kNan)); }),
              HasSubstr("b(0) = nan"));

  MatrixXd indefinite(2, 2);
  indefinite << 1, 2, 2, 1;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(indefinite, q, A, b); }),
              HasSubstr("P is not positive definite"));
  MatrixXd semidefinite(2, 2);
  semidefinite << 1, 1, 1, 1;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(semidefinite, q, A, b); }),
              HasSubstr("P is"));
  MatrixXd nearly_singular = MatrixXd::Identity(2, 2);
  nearly_singular(1, 1) = 1e-17;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(nearly_singular, q, A, b); }),
              HasSubstr("P is"));
  MatrixXd asymmetric = P;
  asymmetric(0, 1) = 0.5;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { solve_dense_qp(asymmetric, q, A, b); }),
              HasSubstr("P must be symmetric, but |P(1, 0) - P(0, 1)| = 0.5"));

  EXPECT_THAT(
      message_of<InvalidArgumentError>([&] { solve_dense_qp(P, q, A, b, {.max_iterations = -1}); }),
      HasSubstr("options: max_iterations must be >= 0, got -1"));
  EXPECT_THAT(
      message_of<InvalidArgumentError>([&] { solve_dense_qp(P, q, A, b, {.tolerance = 0.0}); }),
      HasSubstr("options: tolerance must be in (0, 1), got 0"));
  EXPECT_THAT(
      message_of<InvalidArgumentError>([&] { solve_dense_qp(P, q, A, b, {.tolerance = kNan}); }),
      HasSubstr("tolerance must be in (0, 1)"));
  std::string why;
  EXPECT_TRUE(DenseQpOptions{}.is_valid(&why));

  EXPECT_THAT(message_of<ShapeError>(
                  [&] { dense_qp_kkt_residual(P, q, A, b, VectorXd::Zero(3), VectorXd::Zero(1)); }),
              HasSubstr("dense_qp_kkt_residual: x has size 3, expected 2"));
  EXPECT_THAT(message_of<ShapeError>(
                  [&] { dense_qp_kkt_residual(P, q, A, b, VectorXd::Zero(2), VectorXd::Zero(2)); }),
              HasSubstr("lambda has size 2, expected 1"));
}

TEST(DenseQp, IterationLimitReturnsTheLastIterateUnconverged) {
  // The corner case needs two additions.
  MatrixXd P = MatrixXd::Identity(2, 2), A(2, 2);
  VectorXd q(2), b(2);
  q << -2, -2;
  A << 1, 0, 0, 1;
  b << 1, 0.5;
  for (int limit : {0, 1}) {
    const DenseQpResult r = solve_dense_qp(P, q, A, b, {.max_iterations = limit});
    EXPECT_FALSE(r.converged);
    EXPECT_EQ(r.iterations, limit);
    ASSERT_TRUE(r.x.allFinite());
    EXPECT_GE(r.multipliers.minCoeff(), 0.0);
    EXPECT_GT(r.kkt_residual, 1e-3);  // a row is still violated
  }
  const DenseQpResult enough = solve_dense_qp(P, q, A, b, {.max_iterations = 2});
  EXPECT_TRUE(enough.converged);
  // Without rows, zero iterations are enough.
  EXPECT_TRUE(solve_dense_qp(P, q, MatrixXd(0, 2), VectorXd(0), {.max_iterations = 0}).converged);
}

// ---- the residual on its own, scaling, determinism --------------------------------------------

TEST(DenseQp, KktResidualDetectsWrongAnswers) {
  MatrixXd P = MatrixXd::Identity(2, 2), A(2, 2);
  VectorXd q(2), b(2), x(2), lambda(2);
  q << -2, -2;
  A << 1, 1, 1, 0;  // x1 + x2 <= 2 (active), x1 <= 5 (inactive)
  b << 2, 5;
  x << 1, 1;
  lambda << 1, 0;
  EXPECT_EQ(dense_qp_kkt_residual(P, q, A, b, x, lambda), 0.0);
  // stationarity: |P x + q + A^T lambda|_inf / G with G = 1 + 2 + 1.1 = 4.1 (row 0)
  lambda << 1.1, 0;
  EXPECT_NEAR(dense_qp_kkt_residual(P, q, A, b, x, lambda), 0.1 / 4.1, 1e-15);
  // primal violation: x = (1.5, 1) violates row 0 by 0.5 with stationarity exact for
  // q = (-2.5, -2); the row's scale is |A_0|_1 max(|x|_inf, |q|_inf / |P|_inf) + |b_0| =
  // 2 * 2.5 + 2 = 7 (complementarity gives min(1 / 5, 0.5 / 7), the same)
  q << -2.5, -2;
  x << 1.5, 1;
  lambda << 1, 0;
  EXPECT_NEAR(dense_qp_kkt_residual(P, q, A, b, x, lambda), 0.5 / 7.0, 1e-15);
  q << -2, -2;
  // dual violation: a negative multiplier on the inactive row, balanced in stationarity
  x << 1, 1;
  lambda << 1, -0.01;
  EXPECT_GT(dense_qp_kkt_residual(P, q, A, b, x, lambda), 1e-3);
  // complementarity: a positive multiplier on the inactive row (x1 = 1 < 5); G = 1 + 2.5 +
  // 1 + 0.5 = 5, row 1's slack is 4 on scale 1 * 2.5 + 5: min(0.5 / 5, 4 / 7.5) = 0.1
  q << -2.5, -2;  // so that P x + q + A^T (1, 0.5) = 0 at x = (1, 1)
  lambda << 1, 0.5;
  EXPECT_NEAR(dense_qp_kkt_residual(P, q, A, b, x, lambda), 0.1, 1e-15);
  // a NaN candidate is not a KKT point
  x[0] = kNan;
  EXPECT_EQ(dense_qp_kkt_residual(P, q, A, b, x, lambda), std::numeric_limits<double>::infinity());
}

TEST(DenseQp, ScalingTheDataScalesTheAnswer) {
  const Qp qp = random_qp(77, 8, 12, 3.0);
  const DenseQpResult r = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
  ASSERT_FALSE(r.active_set.empty());
  // Objective times 1e8, every row times 1e-5: same x, lambda times 1e13.
  const DenseQpResult s = solve_dense_qp(1e8 * qp.P, 1e8 * qp.q, 1e-5 * qp.A, 1e-5 * qp.b);
  EXPECT_LE(s.kkt_residual, 1e-12);
  EXPECT_LE((s.x - r.x).lpNorm<Eigen::Infinity>(), 1e-11 * (1.0 + r.x.lpNorm<Eigen::Infinity>()));
  EXPECT_LE((1e-13 * s.multipliers - r.multipliers).lpNorm<Eigen::Infinity>(),
            1e-9 * (1.0 + r.multipliers.lpNorm<Eigen::Infinity>()));
  EXPECT_EQ(s.active_set, r.active_set);
}

TEST(DenseQp, SameInputSameBits) {
  const Qp qp = random_qp(99, 12, 16, 6.0);
  const DenseQpResult r1 = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
  const DenseQpResult r2 = solve_dense_qp(qp.P, qp.q, qp.A, qp.b);
  EXPECT_EQ(r1.x, r2.x);
  EXPECT_EQ(r1.multipliers, r2.multipliers);
  EXPECT_EQ(r1.iterations, r2.iterations);
}

}  // namespace
}  // namespace tether
