// RetainProjector (specs/projection.md, section 1): exact retain invariance in the optimizer's
// metric, g_f^T step = -lr |z_n|^2, idempotence, identity without a basis, trust-region
// optimality against 2000 random feasible directions, agreement with a dense SVD reference, the
// global/blockwise example, near-dependent columns, the sliding window against the public code's
// stale basis, the sign-selective rule (and the public code's opposite rule, reproduced here,
// raising the retain loss), the cone mode against a brute-force active-set enumeration,
// micro-batch accumulation, allocation-free projections, and bad input.
#include <gtest/gtest.h>

#include <Eigen/QR>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/retain_projector.hpp>
#include <vector>

#include "error_message.hpp"
#include "malloc_counter.hpp"

namespace tether {
namespace {

using testing::contains;
using testing::message_of;
using testing::sci;
using Mat = Eigen::MatrixXd;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

Vector gaussian(Rng& rng, Index n) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = rng.normal();
  return v;
}

Mat gaussian(Rng& rng, Index rows, Index cols) {
  Mat m(rows, cols);
  for (Index j = 0; j < cols; ++j) m.col(j) = gaussian(rng, rows);
  return m;
}

// An Adam-like metric: h_j = exp(U(log lo, log hi)).
Vector metric(Rng& rng, Index n, double lo = 1e-3, double hi = 10.0) {
  Vector h(n);
  for (Index j = 0; j < n; ++j) h[j] = std::exp(rng.uniform(std::log(lo), std::log(hi)));
  return h;
}

double h_norm(const Vector& h, const Vector& v) { return std::sqrt(v.dot(h.cwiseProduct(v))); }

// The dense reference, independent of the library's QR: w0 = S^-1 D0, U = orthonormal basis of
// range(S G) from a thin SVD (singular values above 1e-10 sigma_max), w = w0 - U U^T w0 applied
// twice, D = S w.
Vector reference_projection(const Mat& G, const Vector& h, const Vector& D0) {
  const Vector s = h.cwiseSqrt().cwiseInverse();
  if (G.cols() == 0) return D0;
  const Mat Z = s.asDiagonal() * G;
  Eigen::JacobiSVD<Mat> svd(Z, Eigen::ComputeThinU);
  const Vector& sv = svd.singularValues();
  Index r = 0;
  while (r < sv.size() && sv[r] > 1e-10 * sv[0]) ++r;
  const Mat U = svd.matrixU().leftCols(r);
  Vector w = D0.cwiseQuotient(s);
  for (int pass = 0; pass < 2; ++pass) w -= U * (U.transpose() * w);
  return s.cwiseProduct(w);
}

// Pushes the columns of G oldest first (column 0 is the oldest).
void push_all(RetainProjector& p, const Mat& G) {
  for (Index j = 0; j < G.cols(); ++j) p.push(G.col(j));
}

// max_i |g_i^T D| / (|g_i| |D|)
double worst_invariance(const Mat& G, const Vector& D) {
  double worst = 0.0;
  for (Index j = 0; j < G.cols(); ++j)
    worst = std::max(worst, std::abs(G.col(j).dot(D)) / (G.col(j).norm() * D.norm()));
  return worst;
}

// ---- null space: the spec's properties ------------------------------------------------------

TEST(RetainNullSpace, RetainGradientsAreExactlyInvariantInEveryMetricAndScope) {
  Rng rng(11);
  double worst = 0.0, worst_entangled = 0.0;
  for (int trial = 0; trial < 60; ++trial) {
    const Index d = 40 + 7 * (trial % 5);
    const int m = 1 + trial % 8;
    const bool adam = trial % 2 == 1;
    const bool blockwise = trial % 3 == 2;
    RetainProjectorOptions options{.window = 8};
    if (blockwise) {
      options.scope = RetainScope::kBlockwise;
      options.block_sizes = {10, 20, d - 30};
    }
    RetainProjector proj(d, options);
    const Mat G = gaussian(rng, d, m);
    push_all(proj, G);
    if (adam) proj.set_metric(metric(rng, d));
    const double lr = 0.05;
    // A generic forget gradient, and one almost entirely inside the span (|z_n| ~ 1e-9 |z_f|),
    // where one explicit Gram-Schmidt pass would leave a relative error of ~1e-7.
    const Vector g_generic = gaussian(rng, d);
    const Vector g_entangled = G * gaussian(rng, m) + 1e-9 * gaussian(rng, d);
    for (const Vector* g : {&g_generic, &g_entangled}) {
      const Vector step = -lr * proj.project_gradient(*g);
      ASSERT_GT(step.norm(), 0.0);
      if (blockwise) {  // each block is invariant on its own
        for (int b = 0; b < 3; ++b) {
          const Index o = b == 0 ? 0 : (b == 1 ? 10 : 30), n = options.block_sizes[b];
          const double w = worst_invariance(G.middleRows(o, n), step.segment(o, n));
          (g == &g_generic ? worst : worst_entangled) =
              std::max(g == &g_generic ? worst : worst_entangled, w);
        }
      } else {
        const double w = worst_invariance(G, step);
        (g == &g_generic ? worst : worst_entangled) =
            std::max(g == &g_generic ? worst : worst_entangled, w);
      }
    }
  }
  RecordProperty("worst_generic", sci(worst));
  RecordProperty("worst_entangled", sci(worst_entangled));
  std::printf("worst |g_r^T step| / (|g_r||step|): generic %.3e, entangled %.3e\n", worst,
              worst_entangled);
  EXPECT_LE(worst, 1e-12);
  EXPECT_LE(worst_entangled, 1e-12);
}

TEST(RetainNullSpace, ForgetDecreaseIsLrTimesTheNormalPartSquared) {
  Rng rng(12);
  double worst = 0.0;
  for (int trial = 0; trial < 40; ++trial) {
    const Index d = 30;
    const int m = 1 + trial % 6;
    RetainProjector proj(d, {.window = 8});
    const Mat G = gaussian(rng, d, m);
    push_all(proj, G);
    const Vector h = trial % 2 ? metric(rng, d) : Vector::Ones(d);
    if (trial % 2) proj.set_metric(h);
    const Vector g_f = gaussian(rng, d);
    const double lr = 0.3;
    const Vector step = -lr * proj.project_gradient(g_f);
    // z_n from the dense reference: S z_n is the projection of H^-1 g_f.
    const Vector s = h.cwiseSqrt().cwiseInverse();
    const Vector sz_n = reference_projection(G, h, g_f.cwiseQuotient(h));
    const double z_n2 = sz_n.cwiseQuotient(s).squaredNorm();
    const double rel = std::abs(g_f.dot(step) + lr * z_n2) / (lr * z_n2);
    worst = std::max(worst, rel);
  }
  RecordProperty("worst_relative_error", sci(worst));
  EXPECT_LE(worst, 1e-13);
}

TEST(RetainNullSpace, AgreesWithADenseSvdReference) {
  Rng rng(13);
  double worst = 0.0;
  for (int trial = 0; trial < 40; ++trial) {
    const Index d = 25 + trial;
    const int m = 1 + trial % 8;
    RetainProjector proj(d, {.window = 8});
    const Mat G = gaussian(rng, d, m);
    push_all(proj, G);
    const Vector h = metric(rng, d);
    proj.set_metric(h);
    const Vector D0 = gaussian(rng, d);
    Vector D(d);
    proj.project_step(D0, 0.1, D);
    const Vector ref = reference_projection(G, h, D0);
    worst = std::max(worst, h_norm(h, D - ref) / h_norm(h, D0));
    EXPECT_EQ(proj.rank(), m);
  }
  RecordProperty("worst_relative_difference", sci(worst));
  EXPECT_LE(worst, 1e-13);
}

TEST(RetainNullSpace, ProjectionIsIdempotent) {
  Rng rng(14);
  double worst = 0.0;
  for (int trial = 0; trial < 20; ++trial) {
    const Index d = 50;
    RetainProjector proj(d, {.window = 8});
    push_all(proj, gaussian(rng, d, 6));
    proj.set_metric(metric(rng, d));
    const Vector D0 = gaussian(rng, d);
    Vector once(d), twice(d);
    proj.project_step(D0, 0.1, once);
    proj.project_step(once, 0.1, twice);
    worst = std::max(worst, (twice - once).norm() / once.norm());
  }
  RecordProperty("worst_relative_change", sci(worst));
  EXPECT_LE(worst, 1e-14);
}

TEST(RetainNullSpace, EmptyBasisOrZeroRetainGradientIsTheIdentityBitForBit) {
  Rng rng(15);
  const Index d = 20;
  const Vector D0 = gaussian(rng, d);
  const Vector g = gaussian(rng, d);
  for (const auto mode : {RetainProjectionMode::kNullSpace, RetainProjectionMode::kSignSelective,
                          RetainProjectionMode::kCone}) {
    RetainProjector proj(d, {.mode = mode, .beta = 0.5});
    Vector out(d);
    proj.project_step(D0, 0.1, out);  // empty window
    EXPECT_EQ(out, D0);
    EXPECT_EQ(proj.project_gradient(g), g);
    proj.push(Vector::Zero(d));  // a zero retain gradient: nothing to be invariant for
    proj.set_metric(metric(rng, d));
    proj.project_step(D0, 0.1, out);
    EXPECT_EQ(out, D0);
    EXPECT_EQ(proj.rank(), 0);
  }
  // Blockwise: a retain gradient that vanishes on one block leaves that block untouched.
  RetainProjector proj(d, {.scope = RetainScope::kBlockwise, .block_sizes = {8, 12}});
  Vector g_r = gaussian(rng, d);
  g_r.head(8).setZero();
  proj.push(g_r);
  Vector out(d);
  proj.project_step(D0, 0.1, out);
  EXPECT_EQ(out.head(8), D0.head(8));
  EXPECT_NE(out.tail(12), D0.tail(12));
  EXPECT_EQ(proj.rank(0), 0);
  EXPECT_EQ(proj.rank(1), 1);
}

TEST(RetainNullSpace, TrustRegionOptimalAgainst2000RandomFeasibleDirections) {
  Rng rng(16);
  const Index d = 30;
  const int m = 5;
  const Mat G = gaussian(rng, d, m);
  const Vector h = metric(rng, d);
  RetainProjector proj(d, {.window = 8});
  push_all(proj, G);
  proj.set_metric(h);
  const Vector g_f = gaussian(rng, d);
  const double rho = 0.7;
  // The claimed optimum: -rho S z_n / |z_n|; p = S z_n, so |z_n| = |p|_H.
  const Vector p = proj.project_gradient(g_f);
  const double z_n = h_norm(h, p);
  const Vector best = -rho * p / z_n;
  EXPECT_NEAR(h_norm(h, best), rho, 1e-15);
  EXPECT_LE(worst_invariance(G, best), 1e-13);
  const double best_decrease = -g_f.dot(best);
  EXPECT_NEAR(best_decrease, rho * z_n, 1e-13 * rho * z_n);
  // 1000 random feasible directions (boundary and interior), and 1000 on the boundary near the
  // optimum (cos t best + sin t r, r feasible and H-orthogonal to best, t up to 0.01): these
  // come within 5e-5 of it, so a wrong optimum would be beaten.
  double best_random = -kInf, best_nearby = -kInf;
  for (int i = 0; i < 2000; ++i) {
    Vector dir = reference_projection(G, h, gaussian(rng, d));  // G^T dir = 0
    if (i < 1000) {
      dir *= (i % 2 ? rho : rho * rng.uniform()) / h_norm(h, dir);
    } else {
      dir -= (best.dot(h.cwiseProduct(dir)) / (rho * rho)) * best;
      const double t = 0.01 * rng.uniform();
      dir = std::cos(t) * best + std::sin(t) * rho * dir / h_norm(h, dir);
    }
    ASSERT_LE(worst_invariance(G, dir), 1e-12);
    ASSERT_LE(h_norm(h, dir), rho * (1 + 1e-15));
    double& record = i < 1000 ? best_random : best_nearby;
    record = std::max(record, -g_f.dot(dir) / best_decrease);
  }
  RecordProperty("best_random_over_optimum", sci(best_random));
  RecordProperty("best_nearby_over_optimum", sci(best_nearby));
  std::printf("feasible directions, best over the optimum: random %.6f, nearby %.12f\n",
              best_random, best_nearby);
  EXPECT_LE(best_random, 1.0 + 1e-12);
  EXPECT_LE(best_nearby, 1.0 + 1e-12);
  EXPECT_GT(best_nearby, 1.0 - 5e-5);
}

TEST(RetainScope, GlobalAndBlockwiseGiveTheSpecsAnswers) {
  Vector g_f(2), g_r(2);
  g_f << 2.0, 1.0;
  g_r << 1.0, 3.0;
  RetainProjector global(2);
  global.push(g_r);
  const Vector p = global.project_gradient(g_f);
  EXPECT_NEAR(p[0], 1.5, 1e-15);
  EXPECT_NEAR(p[1], -0.5, 1e-15);
  RetainProjector blockwise(2, {.scope = RetainScope::kBlockwise, .block_sizes = {1, 1}});
  blockwise.push(g_r);
  const Vector q = blockwise.project_gradient(g_f);
  EXPECT_EQ(q[0], 0.0);
  EXPECT_EQ(q[1], 0.0);
  EXPECT_EQ(blockwise.rank(), 2);
}

TEST(RetainBasis, NearDependentColumnsAreDroppedAndTheNewestIsAlwaysKept) {
  Rng rng(17);
  const Index d = 12;
  const Vector g1 = gaussian(rng, d), e = gaussian(rng, d);
  const Vector g2 = g1 + 1e-12 * e;  // near-dependent on g1
  {
    RetainProjector proj(d);
    proj.push(g1);
    proj.push(2.0 * g1);  // exactly dependent
    proj.push(g2);        // newest: kept, g1 and 2 g1 dropped
    EXPECT_EQ(proj.rank(), 1);
    const Vector step = -proj.project_gradient(gaussian(rng, d));
    EXPECT_LE(std::abs(g2.dot(step)) / (g2.norm() * step.norm()), 1e-15);
    // The dropped g1 is invariant to its residual, ~1e-12, within rank_tolerance.
    const double r1 = std::abs(g1.dot(step)) / (g1.norm() * step.norm());
    RecordProperty("dropped_column_change", sci(r1));
    EXPECT_LE(r1, 1e-10);
  }
  {
    RetainProjector proj(d, {.rank_tolerance = 0.0});  // keeps everything not exactly dependent
    proj.push(g1);
    proj.push(g2);
    EXPECT_EQ(proj.rank(), 2);
  }
  {
    RetainProjector proj(3);  // more gradients than dimensions: rank d, the step vanishes
    push_all(proj, gaussian(rng, 3, 5));
    EXPECT_EQ(proj.rank(), 3);
    EXPECT_LE(proj.project_gradient(gaussian(rng, 3)).norm(), 1e-15);
  }
}

TEST(RetainBasis, SlidingWindowKeepsTheKMostRecentTheStaleBasisTheFirstK) {
  Rng rng(18);
  const Index d = 40;
  const int k = 4;
  const Mat G = gaussian(rng, d, 10);  // pushed in order: column 9 is the current gradient
  RetainProjector sliding(d, {.window = k});
  RetainProjector stale(d, {.window = k, .basis = RetainBasisPolicy::kFirstK});
  push_all(sliding, G);
  push_all(stale, G);
  EXPECT_EQ(sliding.size(), k);
  EXPECT_EQ(stale.size(), k);
  EXPECT_EQ(sliding.pushes(), 10);
  EXPECT_EQ(sliding.latest(), G.col(9));
  EXPECT_EQ(stale.latest(), G.col(9));
  const Vector g_f = gaussian(rng, d);
  const Vector step_sliding = -sliding.project_gradient(g_f);
  const Vector step_stale = -stale.project_gradient(g_f);
  // Sliding: invariant for the last k (columns 6..9), not for the ones that left the window.
  EXPECT_LE(worst_invariance(G.rightCols(k), step_sliding), 1e-14);
  EXPECT_GE(worst_invariance(G.leftCols(6), step_sliding), 1e-2);
  // Stale: invariant for the first k forever, not for the current gradient.
  EXPECT_LE(worst_invariance(G.leftCols(k), step_stale), 1e-14);
  const double current = worst_invariance(G.rightCols(1), step_stale);
  RecordProperty("stale_current_change", sci(current));
  EXPECT_GE(current, 1e-2);
}

// ---- sign-selective ----------------------------------------------------------------------------

TEST(RetainSignSelective, FirstOrderRetainChangeIsNeverPositive) {
  Rng rng(19);
  int kept = 0, capped = 0, removed = 0;
  double worst = -kInf;
  for (int trial = 0; trial < 400; ++trial) {
    const Index d = 20;
    const double beta = trial % 3 == 0 ? 0.0 : 0.3;
    const double kappa = trial % 4 == 0 ? 5.0 : 0.5;
    RetainProjector proj(
        d, {.mode = RetainProjectionMode::kSignSelective, .kappa = kappa, .beta = beta});
    const Mat G = gaussian(rng, d, 1 + trial % 5);
    push_all(proj, G);
    if (trial % 2) proj.set_metric(metric(rng, d));
    const Vector g_r = G.rightCols(1);
    // Forget gradients aligned, anti-aligned and generic with the current retain gradient.
    const Vector g_f = gaussian(rng, d) + (trial % 3 - 1) * 2.0 * g_r;
    const double lr = 0.01;
    Vector step(d);
    proj.project_step(-lr * g_f, lr, step);  // SGD's proposed step
    const double change = g_r.dot(step) / (g_r.norm() * step.norm());
    worst = std::max(worst, change);
    kept += proj.last_report().kept_components;
    capped += proj.last_report().capped_blocks;
    removed += proj.last_report().kept_components == 0;
  }
  RecordProperty("largest_relative_retain_change", sci(worst));
  std::printf("sign-selective: kept %d (capped %d), removed %d; largest change %.3e\n", kept,
              capped, removed, worst);
  EXPECT_LE(worst, 1e-14);  // <= 0 up to rounding
  EXPECT_GT(kept, 50);      // both branches were exercised
  EXPECT_GT(removed, 50);
  EXPECT_GT(capped, 10);
}

// With the newest gradient first in the basis, the rule keeps (capped) the forget component along
// the current retain gradient when <z_f, z_r> > tau and adds beta z_r: the closed form.
TEST(RetainSignSelective, MatchesTheClosedFormOfTheNewestFirstBasis) {
  Rng rng(20);
  double worst = 0.0;
  for (int trial = 0; trial < 50; ++trial) {
    const Index d = 15;
    const double kappa = 0.5, beta = trial % 2 ? 0.25 : 0.0;
    const double tau = trial % 5 == 0 ? 0.5 : 0.0;
    RetainProjector proj(
        d,
        {.mode = RetainProjectionMode::kSignSelective, .kappa = kappa, .tau = tau, .beta = beta});
    const Mat G = gaussian(rng, d, 3);
    push_all(proj, G);
    const Vector z_r = G.col(2);
    const Vector z_f = gaussian(rng, d) + (trial % 3 - 1) * z_r;
    const Vector z_n = reference_projection(G, Vector::Ones(d), z_f);
    Vector expected = z_n + beta * z_r;
    const double ab = z_f.dot(z_r);  // a_1 b_1 for q_1 = +-z_r/|z_r|
    if (ab > tau) {
      const Vector along = (ab / z_r.squaredNorm()) * z_r;
      expected += std::min(1.0, kappa * z_n.norm() / along.norm()) * along;
    }
    worst = std::max(worst, (proj.project_gradient(z_f) - expected).norm() / z_f.norm());
  }
  RecordProperty("worst_relative_difference", sci(worst));
  EXPECT_LE(worst, 1e-14);
}

// The public code keeps the components whose coefficients have OPPOSITE signs (a_i b_i < -tau).
// Reproduced here for one retain gradient (the identity metric), on l_f = -<u, theta> (a linear
// "ascent-shaped" forget loss) and l_r = 0.5 |theta - c|^2: its kept component points up the
// retain gradient, so the retain loss rises at first order; ours keeps the agreeing one and the
// retain loss falls.
TEST(RetainSignSelective, ThePublicOppositeSignRuleRaisesTheRetainLoss) {
  Rng rng(21);
  const Index d = 10;
  const Vector c = gaussian(rng, d), u = gaussian(rng, d);
  auto retain_loss = [&](const Vector& t) { return 0.5 * (t - c).squaredNorm(); };
  const double kappa = 0.5, lr = 1e-3;
  auto public_step = [&](const Vector& g_f, const Vector& g_r) {  // the public rule, tau = 0
    const Vector q = g_r / g_r.norm();
    const double a = q.dot(g_f), b = q.dot(g_r);
    const Vector z_n = g_f - a * q;
    Vector z = z_n;
    if (a * b < 0.0) z += std::min(1.0, kappa * z_n.norm() / std::abs(a)) * a * q;
    return Vector(-lr * z);
  };
  for (const double sign : {1.0, -1.0}) {  // forget gradient aligned / anti-aligned with g_r
    Vector theta_public = c + gaussian(rng, d), theta_ours = theta_public;
    const double start = retain_loss(theta_public);
    RetainProjector proj(d, {.mode = RetainProjectionMode::kSignSelective, .kappa = kappa});
    double first_order_public = 0.0, first_order_ours = 0.0, second_order_ours = 0.0;
    for (int t = 0; t < 50; ++t) {
      // g_f = -u + sign * 2 (theta - c) / |theta - c|: a forget gradient with a large component
      // along (sign = 1) or against (sign = -1) the retain gradient.
      const Vector g_r_public = theta_public - c, g_r_ours = theta_ours - c;
      const Vector g_f_public = -u + sign * 2.0 * g_r_public / g_r_public.norm();
      const Vector g_f_ours = -u + sign * 2.0 * g_r_ours / g_r_ours.norm();
      const Vector step_public = public_step(g_f_public, g_r_public);
      proj.clear();
      proj.push(g_r_ours);
      Vector step_ours(d);
      proj.project_step(-lr * g_f_ours, lr, step_ours);
      first_order_public += g_r_public.dot(step_public);
      first_order_ours += g_r_ours.dot(step_ours);
      second_order_ours += 0.5 * step_ours.squaredNorm();
      theta_public += step_public;
      theta_ours += step_ours;
    }
    const double rise_public = retain_loss(theta_public) - start;
    const double rise_ours = retain_loss(theta_ours) - start;
    RecordProperty(sign > 0 ? "aligned_rise_public" : "anti_rise_public", sci(rise_public));
    RecordProperty(sign > 0 ? "aligned_rise_ours" : "anti_rise_ours", sci(rise_ours));
    std::printf("g_f %s g_r: retain change after 50 steps: public %+.3e, ours %+.3e\n",
                sign > 0 ? "along" : "against", rise_public, rise_ours);
    // l_r is quadratic with Hessian I: each step changes it by g_r^T D + 0.5 |D|^2 exactly.
    EXPECT_NEAR(rise_ours, first_order_ours + second_order_ours, 1e-12);
    EXPECT_LE(first_order_ours, 0.0);
    if (sign > 0) {
      // Ours keeps the agreeing component: the retain loss falls at first order. The public rule
      // drops it (the signs agree) and only the second-order rise remains.
      EXPECT_LT(rise_ours, -1e-2);
      EXPECT_GE(rise_public, 0.0);
    } else {
      // The public rule keeps the opposing component: the retain loss rises at first order; ours
      // drops it and the change is second order.
      EXPECT_GT(first_order_public, 1e-2);
      EXPECT_GT(rise_public, 1e-2);
      EXPECT_LE(std::abs(first_order_ours), 1e-14);
      EXPECT_LT(rise_ours, 1e-3);
    }
  }
}

// ---- cone ------------------------------------------------------------------------------------

// The exact cone projection by enumeration: the H-projection of D0 onto {g_i^T D = 0, i in A}
// for every subset A, the feasible one closest to D0.
Vector brute_force_cone(const Mat& G, const Vector& h, const Vector& D0) {
  const Index m = G.cols();
  Vector best = D0;
  double best_distance = kInf;
  for (long mask = 0; mask < (1L << m); ++mask) {
    std::vector<Index> active;
    for (Index i = 0; i < m; ++i)
      if (mask & (1L << i)) active.push_back(i);
    Mat GA(G.rows(), static_cast<Index>(active.size()));
    for (std::size_t i = 0; i < active.size(); ++i)
      GA.col(static_cast<Index>(i)) = G.col(active[i]);
    const Vector D = reference_projection(GA, h, D0);
    bool feasible = true;
    for (Index i = 0; i < m; ++i)
      feasible = feasible && G.col(i).dot(D) <= 1e-12 * G.col(i).norm() * D0.norm();
    if (feasible && h_norm(h, D - D0) < best_distance) {
      best_distance = h_norm(h, D - D0);
      best = D;
    }
  }
  return best;
}

TEST(RetainCone, EqualsTheBruteForceProjectionIsKktFeasibleAndNonExpansive) {
  Rng rng(22);
  double worst_difference = 0.0, worst_violation = 0.0, worst_kkt = 0.0;
  int active = 0, inactive = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const Index d = 12;
    const int m = 1 + trial % 5;
    RetainProjector proj(d, {.mode = RetainProjectionMode::kCone});
    const Mat G = gaussian(rng, d, m);
    push_all(proj, G);
    const Vector h = trial % 2 ? metric(rng, d) : Vector::Ones(d);
    if (trial % 2) proj.set_metric(h);
    const Vector D0 = gaussian(rng, d), D1 = gaussian(rng, d);
    Vector D(d), E(d);
    proj.project_step(D0, 0.1, D);
    const auto report = proj.last_report();
    active += report.active_constraints;
    inactive += report.constraints - report.active_constraints;
    worst_kkt = std::max(worst_kkt, report.kkt_residual);
    worst_difference =
        std::max(worst_difference, h_norm(h, D - brute_force_cone(G, h, D0)) / h_norm(h, D0));
    for (Index i = 0; i < m; ++i)
      worst_violation = std::max(worst_violation, G.col(i).dot(D) / (G.col(i).norm() * D.norm()));
    // Non-expansive in |.|_H: |P D0|_H <= |D0|_H and |P D0 - P D1|_H <= |D0 - D1|_H.
    proj.project_step(D1, 0.1, E);
    EXPECT_LE(h_norm(h, D), h_norm(h, D0) * (1 + 1e-15));
    EXPECT_LE(h_norm(h, D - E), h_norm(h, D0 - D1) * (1 + 1e-14));
    // Closer to D0 than the null-space step, which is feasible too.
    const Vector N = reference_projection(G, h, D0);
    EXPECT_LE(h_norm(h, D - D0), h_norm(h, N - D0) * (1 + 1e-14));
    // Idempotent.
    Vector again(d);
    proj.project_step(D, 0.1, again);
    EXPECT_LE((again - D).norm(), 1e-13 * D.norm());
  }
  RecordProperty("worst_difference_to_brute_force", sci(worst_difference));
  RecordProperty("worst_violation", sci(worst_violation));
  RecordProperty("worst_kkt_residual", sci(worst_kkt));
  std::printf("cone: %d active, %d inactive; |D - brute force| %.3e, violation %.3e, KKT %.3e\n",
              active, inactive, worst_difference, worst_violation, worst_kkt);
  EXPECT_LE(worst_difference, 1e-12);
  EXPECT_LE(worst_violation, 1e-12);
  EXPECT_LE(worst_kkt, 1e-12);
  EXPECT_GT(active, 30);
  EXPECT_GT(inactive, 30);
}

TEST(RetainCone, AFeasibleStepIsReturnedBitForBit) {
  Rng rng(23);
  const Index d = 10;
  // Orthonormal retain gradients, and a step that lowers each of them: g_i^T D0 = -1 < 0.
  const Eigen::HouseholderQR<Mat> qr(gaussian(rng, d, 3));
  const Mat G = qr.householderQ() * Mat::Identity(d, 3);
  RetainProjector proj(d, {.mode = RetainProjectionMode::kCone});
  push_all(proj, G);
  proj.set_metric(metric(rng, d));
  const Vector D0 = -G.rowwise().sum() + reference_projection(G, Vector::Ones(d), gaussian(rng, d));
  ASSERT_LT((G.transpose() * D0).maxCoeff(), 0.0);
  Vector out(d);
  proj.project_step(D0, 0.1, out);
  EXPECT_EQ(out, D0);
  EXPECT_EQ(proj.last_report().constraints, 3);
  EXPECT_EQ(proj.last_report().active_constraints, 0);
}

// ---- micro-batches --------------------------------------------------------------------------

TEST(RetainAccumulation, FourMicroBatchesOfTwoEqualOneBatchOfEight) {
  Rng rng(24);
  const Index d = 16;
  const int samples = 8;
  const Mat X = gaussian(rng, d, samples);
  Vector y(samples);
  for (int i = 0; i < samples; ++i) y[i] = i % 2;
  const Vector theta = 0.3 * gaussian(rng, d);
  // Per-sample logistic-regression gradients (sigma(theta^T x) - y) x.
  auto sample_gradient = [&](int i) {
    const double z = theta.dot(X.col(i));
    return Vector((1.0 / (1.0 + std::exp(-z)) - y[i]) * X.col(i));
  };
  Vector batch = Vector::Zero(d);
  for (int i = 0; i < samples; ++i) batch += sample_gradient(i);
  batch /= samples;
  const Mat history = gaussian(rng, d, 3);  // earlier retain gradients in both windows
  const Vector h = metric(rng, d);
  const Vector g_f = gaussian(rng, d);
  double worst = 0.0;
  for (const auto mode : {RetainProjectionMode::kNullSpace, RetainProjectionMode::kSignSelective,
                          RetainProjectionMode::kCone}) {
    RetainProjector one(d, {.mode = mode, .beta = 0.2}), micro(d, {.mode = mode, .beta = 0.2});
    push_all(one, history);
    push_all(micro, history);
    one.set_metric(h);
    micro.set_metric(h);
    one.push(batch);
    for (int b = 0; b < 4; ++b) {
      const Vector mean = 0.5 * (sample_gradient(2 * b) + sample_gradient(2 * b + 1));
      micro.accumulate(mean, 0.25);
    }
    EXPECT_EQ(micro.accumulated(), 4);
    micro.push_accumulated();
    EXPECT_EQ(micro.accumulated(), 0);
    EXPECT_LE((micro.latest() - batch).norm(), 1e-15 * batch.norm());
    const Vector p_one = one.project_gradient(g_f), p_micro = micro.project_gradient(g_f);
    worst = std::max(worst, (p_one - p_micro).norm() / p_one.norm());
  }
  RecordProperty("worst_relative_difference", sci(worst));
  EXPECT_LE(worst, 1e-13);
}

// ---- allocation -----------------------------------------------------------------------------

TEST(RetainAllocation, PushMetricRebuildAndProjectAllocateNothing) {
#ifndef TETHER_COUNT_MALLOC
  GTEST_SKIP() << "malloc counting needs glibc without sanitizers";
#else
  Rng rng(25);
  const Index d = 20000;
  for (const auto mode : {RetainProjectionMode::kNullSpace, RetainProjectionMode::kSignSelective}) {
    for (const bool blockwise : {false, true}) {
      RetainProjectorOptions options{.mode = mode, .window = 8};
      if (blockwise) {
        options.scope = RetainScope::kBlockwise;
        options.block_sizes = {5000, 5000, 10000};
      }
      RetainProjector proj(d, options);
      const Mat G = gaussian(rng, d, 12);
      const Vector h = metric(rng, d), D0 = gaussian(rng, d);
      Vector out(d);
      const long mallocs = testing::allocations_during([&] {
        for (int t = 0; t < 12; ++t) {
          proj.push(G.col(t));
          proj.set_metric(h);
          proj.project_step(D0, 0.1, out);
          proj.project_gradient(D0, out);
        }
      });
      EXPECT_EQ(mallocs, 0) << "blockwise " << blockwise;
      EXPECT_EQ(proj.rank(), blockwise ? 24 : 8);
      // From the third projection of a basis on, the explicit basis (formed once, with the
      // fused passes' scratch, by the calls before the count): steps, gradients and batches of
      // gradients, null-space and sign-selective, allocate nothing.
      const Mat many = gaussian(rng, d, 3);
      Mat many_out(d, 3);
      for (int t = 0; t < 3; ++t) proj.project_gradient(D0, out);
      proj.project_gradients(many, many_out);
      const long steady = testing::allocations_during([&] {
        for (int t = 0; t < 4; ++t) {
          proj.project_step(D0, 0.1, out);
          proj.project_gradient(D0, out);
          proj.project_gradients(many, many_out);
        }
      });
      EXPECT_EQ(steady, 0) << "blockwise " << blockwise;
    }
  }
#endif
}

// ---- the explicit basis of repeated projections ----------------------------------------------

// From the third null-space projection against one basis the projector forms Q explicitly and
// projects by two passes over it (four when the input lies almost inside the span); the answer
// must be the reflectors' to rounding, keep the exact invariance, allocate nothing, and go back
// to the reflectors after the next push.
TEST(RetainExplicitBasis, RepeatedProjectionsAgreeWithTheReflectorsAndStayInvariant) {
  Rng rng(31);
  const Index d = 20000;  // three row chunks of the explicit passes
  double worst_gap = 0.0, worst_invariance_seen = 0.0;
  for (const bool blockwise : {false, true}) {
    for (const bool adam : {false, true}) {
      RetainProjectorOptions options{.window = 8};
      if (blockwise) {
        options.scope = RetainScope::kBlockwise;
        options.block_sizes = {9000, 3000, 8000};
      }
      RetainProjector proj(d, options);
      const Mat G = gaussian(rng, d, 8);
      push_all(proj, G);
      if (adam) proj.set_metric(metric(rng, d));
      const Vector g_generic = gaussian(rng, d);
      const Vector g_entangled = G * gaussian(rng, 8) + 1e-9 * gaussian(rng, d);
      const Vector first = proj.project_gradient(g_generic);  // reflectors
      const Vector first_entangled = proj.project_gradient(g_entangled);
      for (int use = 0; use < 4; ++use) {  // the third use forms Q; the rest reuse it
        const Vector* g = use % 2 == 0 ? &g_generic : &g_entangled;
        const Vector& reference = use % 2 == 0 ? first : first_entangled;
        const Vector p = proj.project_gradient(*g);
        // Entangled: z_n is 1e-9 |z_f|, so either form fixes it only to eps |z_f| / |z_n| ~ 1e-7
        // relative (both stay exactly invariant); compare the generic answers.
        if (g == &g_generic)
          worst_gap = std::max(worst_gap, (p - reference).norm() / reference.norm());
        if (blockwise) {
          Index o = 0;
          for (const Index n : options.block_sizes) {
            worst_invariance_seen = std::max(worst_invariance_seen,
                                             worst_invariance(G.middleRows(o, n), p.segment(o, n)));
            o += n;
          }
        } else {
          worst_invariance_seen = std::max(worst_invariance_seen, worst_invariance(G, p));
        }
      }
#ifdef TETHER_COUNT_MALLOC
      Vector out(d);
      EXPECT_EQ(testing::allocations_during([&] {
                  for (int t = 0; t < 3; ++t) proj.project_gradient(g_generic, out);
                }),
                0);
#endif
      // A push invalidates the explicit basis: the next projection is the new window's.
      const Vector fresh = gaussian(rng, d);
      proj.push(fresh);
      const Vector p = proj.project_gradient(g_generic);
      if (!blockwise) EXPECT_LE(std::abs(fresh.dot(p)) / (fresh.norm() * p.norm()), 1e-12);
    }
  }
  std::printf("explicit basis: worst relative gap to the reflectors %.3e, worst invariance %.3e\n",
              worst_gap, worst_invariance_seen);
  EXPECT_LE(worst_gap, 1e-12);
  EXPECT_LE(worst_invariance_seen, 1e-12);
}

// ---- bad input --------------------------------------------------------------------------------

TEST(RetainBadInput, OptionsNameTheField) {
  auto msg = [](RetainProjectorOptions o) {
    return message_of<InvalidArgumentError>([&] { RetainProjector(4, o); });
  };
  EXPECT_TRUE(contains(msg({.window = 0}), "window must be >= 1, got 0"));
  EXPECT_TRUE(contains(msg({.window = -3}), "window must be >= 1, got -3"));
  EXPECT_TRUE(contains(msg({.kappa = -0.1}), "kappa must be finite and >= 0, got -0.1"));
  EXPECT_TRUE(contains(msg({.kappa = kNaN}), "kappa must be finite"));
  EXPECT_TRUE(contains(msg({.tau = -1e-3}), "tau must be finite and >= 0"));
  EXPECT_TRUE(contains(msg({.beta = -1.0}), "beta must be finite and >= 0"));
  EXPECT_TRUE(contains(msg({.rank_tolerance = 1.0}), "rank_tolerance must be in [0, 1)"));
  EXPECT_TRUE(contains(msg({.kkt_tolerance = 0.0}), "kkt_tolerance must be finite and > 0"));
  EXPECT_TRUE(contains(msg({.block_sizes = {2, 2}}), "block_sizes must be empty with global"));
  EXPECT_TRUE(contains(msg({.scope = RetainScope::kBlockwise}), "at least one block"));
  EXPECT_TRUE(contains(msg({.scope = RetainScope::kBlockwise, .block_sizes = {4, 0}}),
                       "block_sizes[1] must be >= 1, got 0"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([] { RetainProjector(0); }),
                       "dimension must be >= 1, got 0"));
  EXPECT_TRUE(
      contains(message_of<ShapeError>([] {
                 RetainProjector(5, {.scope = RetainScope::kBlockwise, .block_sizes = {2, 2}});
               }),
               "block_sizes sum to 4, the dimension is 5"));
}

TEST(RetainBadInput, ShapesEmptyWindowsAndNonFiniteVectors) {
  RetainProjector proj(4, {.mode = RetainProjectionMode::kSignSelective});
  Vector bad = Vector::Ones(4);
  bad[2] = kNaN;
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { proj.push(Vector::Ones(3)); }),
                       "retain gradient has size 3, the dimension is 4"));
  EXPECT_TRUE(contains(message_of<NumericalError>([&] { proj.push(bad); }),
                       "retain gradient is NaN/Inf (entry 2"));
  EXPECT_TRUE(contains(message_of<NumericalError>([&] { proj.accumulate(bad); }),
                       "micro-batch gradient is NaN/Inf"));
  EXPECT_TRUE(
      contains(message_of<InvalidArgumentError>([&] { proj.accumulate(Vector::Ones(4), kInf); }),
               "weight must be finite"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { proj.latest(); }),
                       "no retain gradient was pushed (empty window)"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { proj.push_accumulated(); }),
                       "no micro-batch gradient was accumulated"));
  EXPECT_EQ(proj.size(), 0);  // nothing was taken in by the refused calls
  Vector out(4);
  EXPECT_TRUE(contains(message_of<NumericalError>([&] { proj.project_step(bad, 0.1, out); }),
                       "step is NaN/Inf"));
  EXPECT_TRUE(
      contains(message_of<ShapeError>([&] { proj.project_step(Vector::Ones(5), 0.1, out); }),
               "step has size 5"));
  Vector short_out(3);
  EXPECT_TRUE(
      contains(message_of<ShapeError>([&] { proj.project_step(Vector::Ones(4), 0.1, short_out); }),
               "out has size 3"));
  EXPECT_TRUE(contains(
      message_of<InvalidArgumentError>([&] { proj.project_step(Vector::Ones(4), 0.0, out); }),
      "learning_rate must be finite and > 0, got 0"));
  EXPECT_TRUE(contains(message_of<NumericalError>([&] { proj.project_gradient(bad); }),
                       "gradient is NaN/Inf"));
  Vector h = Vector::Ones(4);
  h[1] = 0.0;
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { proj.set_metric(h); }),
                       "h_j must be finite and > 0, got h[1] = 0"));
  h[1] = kNaN;
  EXPECT_TRUE(
      contains(message_of<InvalidArgumentError>([&] { proj.set_metric(h); }), "got h[1] = nan"));
  EXPECT_TRUE(
      contains(message_of<ShapeError>([&] { proj.set_metric(Vector::Ones(2)); }), "h has size 2"));
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { proj.rank(3); }),
                       "block must be in [0, 1), got 3"));
}

}  // namespace
}  // namespace tether
