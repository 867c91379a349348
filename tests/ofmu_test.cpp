// OfmuSolver (specs/bilevel.md, section 4): O1's closed-form theta_rho, the O(1/rho) bias, the
// continuation trap, the cosine and Phi derivatives against finite differences, the inner
// ascent's fixed point, bad input and non-finite oracles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/unlearning_toys.hpp>
#include <tether/solvers/ofmu.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using problems::B2;
using problems::O1;
using testing::contains;
using testing::message_of;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kInf = std::numeric_limits<double>::infinity();

Vector vec2(double x, double y) {
  Vector v(2);
  v << x, y;
  return v;
}

std::string sci(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6e", x);
  return buffer;
}

// beta = 0, T = 0, fixed rho: the outer step is gradient descent on F_rho.
OfmuOptions plain(double rho, double eta_out, int iterations, double tolerance) {
  return {.beta = 0.0,
          .inner_steps = 0,
          .eta_out = eta_out,
          .rho0 = rho,
          .rho_growth = 1.0,
          .rho_max = rho,
          .max_iterations = iterations,
          .tolerance = tolerance};
}

// |theta_rho - theta*| on O1 with a = (1, 1), b = 2, c = (3, 0): sqrt(2) / (2 (1 + 8 rho)).
double o1_bias(double rho) { return std::sqrt(2.0) / (2.0 * (1.0 + 8.0 * rho)); }

// ---- O1: theta_rho ---------------------------------------------------------------------------

TEST(OfmuO1, TZeroRhoOneReachesThetaRho) {
  const O1 p;
  // s = (a^T c - b)/(1 + 2 rho |a|^4) = 1/9, theta_1 = c - 2 rho |a|^2 s a = (3 - 4/9, -4/9).
  const Vector expected = vec2(23.0 / 9.0, -4.0 / 9.0);
  EXPECT_NEAR((p.theta_rho(1.0) - expected).norm(), 0.0, 1e-15);
  const OfmuResult r = OfmuSolver(plain(1.0, 0.01, 20000, 1e-12)).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kConverged) << r.message;
  EXPECT_NEAR((r.theta - expected).norm(), 0.0, 1e-10);
  EXPECT_NEAR(r.theta[0], 2.5556, 5e-5);  // the spec's rounded figure
  EXPECT_NEAR(r.theta[1], -0.4444, 5e-5);
  EXPECT_EQ(r.rho, 1.0);
  EXPECT_EQ(r.stages, 1);
  RecordProperty("error", sci((r.theta - expected).norm()));
  RecordProperty("iterations", r.iterations);
}

TEST(OfmuO1, ThetaRhoZeroesThePenaltyGradient) {
  const O1 p;
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  for (double rho : {0.5, 1.0, 10.0, 1e3, 1e6}) {
    Vector g;
    ofmu_penalty_gradient(o, p.theta_rho(rho), 0.0, rho, g);
    // The two terms of grad F_rho are O(1) each and cancel; the residual r = a^T theta - b
    // carries the rounding of theta (~eps (|theta|_1 + b)), amplified by 2 rho |a|^4 = 8 rho.
    const double tol = 4.0 * kEps * (1.0 + 8.0 * rho) * 5.0;
    EXPECT_LT(g.norm(), tol) << "rho " << rho;
  }
}

TEST(OfmuO1, ContinuationBiasShrinksLikeOneOverRho) {
  const O1 p;
  // The closed form: |theta_rho - theta*| (1 + 8 rho) = sqrt(2)/2 for every rho.
  for (double rho : {1.0, 2.0, 10.0, 100.0, 1e4, 1e6})
    EXPECT_NEAR(p.solution_error(p.theta_rho(rho)) * (1.0 + 8.0 * rho), std::sqrt(2.0) / 2.0, 1e-9)
        << "rho " << rho;
  // The solver's converged answers for several rho (eta_out = 1.5 / (1 + 8 rho) keeps the
  // steep direction's factor at -0.5).
  const std::vector<double> rhos = {1, 2, 4, 8, 16, 32, 64};
  std::vector<double> errors;
  for (double rho : rhos) {
    const OfmuResult r =
        OfmuSolver(plain(rho, 1.5 / (1.0 + 8.0 * rho), 100000, 1e-13)).minimize(p, p.start());
    EXPECT_EQ(r.status, StopReason::kConverged) << "rho " << rho << ": " << r.message;
    EXPECT_NEAR((r.theta - p.theta_rho(rho)).norm(), 0.0, 1e-10) << "rho " << rho;
    errors.push_back(p.solution_error(r.theta));
    EXPECT_NEAR(errors.back(), o1_bias(rho), 1e-10) << "rho " << rho;
    RecordProperty("error_rho_" + std::to_string(static_cast<int>(rho)), sci(errors.back()));
  }
  // Doubling rho halves the bias asymptotically: e(rho)/e(2 rho) = (1 + 16 rho)/(1 + 8 rho).
  for (std::size_t j = 0; j + 1 < rhos.size(); ++j)
    EXPECT_NEAR(errors[j] / errors[j + 1], (1.0 + 16.0 * rhos[j]) / (1.0 + 8.0 * rhos[j]), 1e-7);
  // Least-squares slope of log e against log rho over rho = 4 .. 64: -1 up to the 1/(8 rho)
  // correction (-0.99001 for the closed form on these points).
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int n = 0;
  for (std::size_t j = 2; j < rhos.size(); ++j, ++n) {
    const double lx = std::log(rhos[j]), ly = std::log(errors[j]);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
  }
  const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  EXPECT_NEAR(slope, -1.0, 0.02);
  RecordProperty("loglog_slope", sci(slope));
}

// ---- the continuation trap ------------------------------------------------------------------

TEST(OfmuTrap, GeometricRhoWithoutCapDivergesCappedConverges) {
  const O1 p;
  // Fixed eta_out = 0.01 is stable while 0.01 (1 + 8 rho) < 2, i.e. rho < 24.875.
  OfmuOptions uncapped = plain(1.0, 0.01, 1000, 0.0);
  uncapped.rho_growth = 1.1;
  uncapped.rho_max = kInf;
  const OfmuResult bad = OfmuSolver(uncapped).minimize(p, p.start());
  EXPECT_EQ(bad.status, StopReason::kNumericalError) << bad.message;
  EXPECT_LT(bad.iterations, 200);
  EXPECT_TRUE(bad.theta.allFinite());
  EXPECT_TRUE(std::isfinite(bad.retain_loss) && std::isfinite(bad.forget_loss));
  double worst = 0.0;
  for (const IterationRecord& row : bad.history.rows) worst = std::max(worst, row.error);
  EXPECT_GT(worst, 1e100);
  RecordProperty("uncapped_iterations", bad.iterations);
  RecordProperty("uncapped_worst_error", sci(worst));

  OfmuOptions capped = uncapped;
  capped.rho_max = 10.0;  // 0.01 (1 + 80) = 0.81 < 2
  capped.tolerance = 1e-12;
  capped.max_iterations = 20000;
  const OfmuResult good = OfmuSolver(capped).minimize(p, p.start());
  EXPECT_EQ(good.status, StopReason::kConverged) << good.message;
  EXPECT_NEAR((good.theta - p.theta_rho(10.0)).norm(), 0.0, 1e-10);
  EXPECT_NEAR(p.solution_error(good.theta), o1_bias(10.0), 1e-10);
  EXPECT_EQ(good.rho, 10.0);
  EXPECT_EQ(good.stages, 26);  // 1, 1.1, ..., 1.1^24 = 9.85, then the cap 10
  for (const IterationRecord& row : good.history.rows) EXPECT_LT(row.error, 3.0);
}

TEST(OfmuTrap, StepShrinkingLikeOneOverRhoStalls) {
  // The other half of the trap: eta_k = 0.01 / rho_k with rho_k = 1.1^k is stable but the steps
  // across a sum to 0.11, so that error component only shrinks by about exp(-0.11).
  const O1 p;
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  Vector theta = p.start(), g;
  double rho = 1.0;
  for (int k = 0; k < 1000; ++k, rho *= 1.1) {
    ofmu_penalty_gradient(o, theta, 0.0, rho, g);
    theta -= (0.01 / rho) * g;
  }
  ASSERT_TRUE(theta.allFinite());
  // Across a: 3/sqrt(2) prod_k (1 - 0.01/1.1^k) = 1.90; along a: converged.
  double across = 3.0 / std::sqrt(2.0);
  for (int k = 0; k < 1000; ++k) across *= 1.0 - 0.01 / std::pow(1.1, k);
  EXPECT_NEAR(p.solution_error(theta), across, 1e-6);
  EXPECT_GT(p.solution_error(theta), 1.8);
}

TEST(OfmuStages, OneContinuationStagePerRho) {
  const O1 p;
  OfmuOptions o = plain(1.0, 0.01, 50000, 1e-12);
  o.rho_growth = 2.0;
  o.rho_max = 16.0;  // 0.01 (1 + 128) = 1.29 < 2
  o.rho_schedule = OfmuOptions::RhoSchedule::kPerStage;
  o.stage_tolerance = 1e-8;
  const OfmuResult r = OfmuSolver(o).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kConverged) << r.message;
  EXPECT_EQ(r.stages, 5);  // 1, 2, 4, 8, 16
  EXPECT_EQ(r.rho, 16.0);
  EXPECT_NEAR((r.theta - p.theta_rho(16.0)).norm(), 0.0, 1e-10);
}

// ---- the inner ascent -----------------------------------------------------------------------

TEST(OfmuInner, OneAscentStepMovesTheFixedPointTowardTheLowerLevel) {
  // O1, beta = 0, T = 1, fixed rho. With r = a^T theta - b the inner step gives
  // r' = (1 - eta_in |a|^2) r, and theta = theta' - eta_out grad F_rho(theta') at a fixed point
  // gives theta = theta* + a r / |a|^2 with
  //   r = (a^T c - b) / ((1 - eta_in |a|^2)(1 + 2 rho |a|^4) + eta_in |a|^2 / eta_out)
  // (1/27.2 here), against 1/9 for theta_rho (T = 0).
  const O1 p;
  const double eta_in = 0.1, eta_out = 0.01, rho = 1.0;
  OfmuOptions o = plain(rho, eta_out, 20000, 1e-12);
  o.inner_steps = 1;
  o.eta_in = eta_in;
  const OfmuResult r = OfmuSolver(o).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kConverged) << r.message;
  const double res = 1.0 / ((1.0 - 2.0 * eta_in) * (1.0 + 8.0 * rho) + 2.0 * eta_in / eta_out);
  EXPECT_NEAR((r.theta - (p.solution() + p.a() * (res / 2.0))).norm(), 0.0, 1e-10);
  EXPECT_LT(p.solution_error(r.theta), p.solution_error(p.theta_rho(rho)));
}

// ---- derivatives against finite differences -------------------------------------------------

// l(theta) = 0.5 theta^T A theta + b^T theta + (k/4) sum theta_i^4, A symmetric.
struct Quartic {
  Matrix A;
  Vector b;
  double k;
  double value(const Vector& t) const {
    return 0.5 * t.dot(A * t) + b.dot(t) + 0.25 * k * t.array().pow(4).sum();
  }
  Vector gradient(const Vector& t) const { return A * t + b + k * t.array().cube().matrix(); }
  Vector hessian_vector(const Vector& t, const Vector& v) const {
    return A * v + 3.0 * k * (t.array().square() * v.array()).matrix();
  }
  static Quartic random(Rng& rng, Index n, double sign) {
    Quartic q;
    Matrix m(n, n);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal();
    q.A = sign * (m * m.transpose() / static_cast<double>(n) + Matrix::Identity(n, n));
    q.b.resize(n);
    for (Index i = 0; i < n; ++i) q.b[i] = rng.normal();
    q.k = 0.3 * sign;
    return q;
  }
};

// A forget/retain pair of quartics with exact HVPs ...
struct QuarticPair {
  Quartic f, r;
  Index dimension() const { return f.b.size(); }
  double forget_loss(const Vector& t) const { return f.value(t); }
  double retain_loss(const Vector& t) const { return r.value(t); }
  void forget_gradient(const Vector& t, Vector& g) const { g = f.gradient(t); }
  void retain_gradient(const Vector& t, Vector& g) const { g = r.gradient(t); }
  void forget_hessian_vector(const Vector& t, const Vector& v, Vector& out) const {
    out = f.hessian_vector(t, v);
  }
  void retain_hessian_vector(const Vector& t, const Vector& v, Vector& out) const {
    out = r.hessian_vector(t, v);
  }
};

// ... and the same pair without them (the library differences the gradients).
struct QuarticPairNoHvp {
  QuarticPair p;
  Index dimension() const { return p.dimension(); }
  double forget_loss(const Vector& t) const { return p.forget_loss(t); }
  double retain_loss(const Vector& t) const { return p.retain_loss(t); }
  void forget_gradient(const Vector& t, Vector& g) const { p.forget_gradient(t, g); }
  void retain_gradient(const Vector& t, Vector& g) const { p.retain_gradient(t, g); }
};

QuarticPair random_pair(std::uint64_t seed, Index n) {
  Rng rng(seed);
  return {Quartic::random(rng, n, -1.0), Quartic::random(rng, n, 1.0)};
}

Vector random_vector(Rng& rng, Index n) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = rng.normal();
  return v;
}

// c(theta) = cos(grad l_f(theta), grad l_r(theta)) as a plain function of theta.
double cosine_at(const ForgetRetainObjective& o, const Vector& theta) {
  Vector u(theta.size()), v(theta.size());
  o.forget_gradient(theta, u);
  o.retain_gradient(theta, v);
  return gradient_cosine(u, v);
}

Vector cosine_gradient_at(const ForgetRetainObjective& o, const Vector& theta) {
  Vector u(theta.size()), v(theta.size()), g;
  o.forget_gradient(theta, u);
  o.retain_gradient(theta, v);
  ofmu_cosine_gradient(o, theta, u, v, g);
  return g;
}

TEST(OfmuDerivatives, CosineGradientMatchesFiniteDifferences) {
  const QuarticPair pair = random_pair(7, 5);
  const B2 b2;
  const std::vector<ForgetRetainObjective> objectives = {make_forget_retain_objective(pair),
                                                         make_forget_retain_objective(b2)};
  Rng rng(11);
  for (std::size_t j = 0; j < objectives.size(); ++j) {
    const ForgetRetainObjective& o = objectives[j];
    for (int trial = 0; trial < 3; ++trial) {
      const Vector theta = random_vector(rng, o.dimension) * 0.7;
      const Vector g = cosine_gradient_at(o, theta);
      const auto c = [&](const Vector& t) { return cosine_at(o, t); };
      const Vector fd = finite_difference_gradient(c, theta, 1e-5);
      EXPECT_LT((g - fd).norm(), 1e-7 * (1.0 + g.norm())) << "objective " << j;
      // h up to 1e-2: beyond it the cubic term of the remainder shows (slope toward 3).
      const TaylorSlopeReport rep =
          check_gradient_slope(c, theta, g, random_vector(rng, o.dimension), 1e-5, 1e-2);
      EXPECT_NEAR(rep.slope, 2.0, 0.1) << "objective " << j;
    }
  }
}

TEST(OfmuDerivatives, FiniteDifferenceHvpsGiveTheSameCosineGradient) {
  const QuarticPair pair = random_pair(3, 4);
  const QuarticPairNoHvp no_hvp{pair};
  const ForgetRetainObjective exact = make_forget_retain_objective(pair);
  const ForgetRetainObjective fd = make_forget_retain_objective(no_hvp);
  ASSERT_TRUE(exact.forget_hvp_exact && !fd.forget_hvp_exact);
  Rng rng(5);
  for (int trial = 0; trial < 3; ++trial) {
    const Vector theta = random_vector(rng, 4) * 0.7;
    const Vector ge = cosine_gradient_at(exact, theta), gf = cosine_gradient_at(fd, theta);
    EXPECT_LT((ge - gf).norm(), 1e-7 * (1.0 + ge.norm()));
  }
}

TEST(OfmuDerivatives, PhiGradientHvpAndPenaltyGradientMatchFiniteDifferences) {
  const QuarticPair pair = random_pair(19, 5);
  const ForgetRetainObjective o = make_forget_retain_objective(pair);
  const double beta = 0.3, rho = 2.0;
  Rng rng(23);
  for (int trial = 0; trial < 3; ++trial) {
    const Vector theta = random_vector(rng, 5) * 0.7;
    // grad Phi against differences of Phi.
    Vector gphi;
    ofmu_phi_gradient(o, theta, beta, gphi);
    const auto phi = [&](const Vector& t) { return ofmu_phi(o, t, beta); };
    EXPECT_LT((gphi - finite_difference_gradient(phi, theta, 1e-5)).norm(),
              1e-7 * (1.0 + gphi.norm()));
    EXPECT_NEAR(check_gradient_slope(phi, theta, gphi, random_vector(rng, 5), 1e-5, 1e-2).slope,
                2.0, 0.1);

    // H_Phi w: the remainder grad Phi(theta + h w) - grad Phi(theta) - h H_Phi w is O(h^2).
    const Vector w = random_vector(rng, 5);
    Vector hw;
    ofmu_phi_hessian_vector(o, theta, beta, w, hw);
    const auto remainder = [&](double h) {
      Vector g;
      ofmu_phi_gradient(o, theta + h * w, beta, g);
      return (g - gphi - h * hw).norm();
    };
    const TaylorSlopeReport rep = taylor_slope(remainder, 1e-4, 1e-2, 9, 1e-11);
    EXPECT_NEAR(rep.slope, 2.0, 0.1);

    // grad F_rho against differences of F_rho = l_r + rho |grad Phi|^2.
    Vector gpen;
    ofmu_penalty_gradient(o, theta, beta, rho, gpen);
    const auto penalty = [&](const Vector& t) {
      Vector g;
      ofmu_phi_gradient(o, t, beta, g);
      return o.retain_loss(t) + rho * g.squaredNorm();
    };
    EXPECT_LT((gpen - finite_difference_gradient(penalty, theta, 1e-5)).norm(),
              1e-6 * (1.0 + gpen.norm()));
  }
}

TEST(OfmuDerivatives, BetaZeroIsExact) {
  const QuarticPair pair = random_pair(29, 4);
  const ForgetRetainObjective o = make_forget_retain_objective(pair);
  Rng rng(31);
  const Vector theta = random_vector(rng, 4), w = random_vector(rng, 4);
  Vector gphi, hw;
  ofmu_phi_gradient(o, theta, 0.0, gphi);
  EXPECT_EQ(gphi, pair.f.gradient(theta));
  ofmu_phi_hessian_vector(o, theta, 0.0, w, hw);
  EXPECT_EQ(hw, pair.f.hessian_vector(theta, w));
  Vector gpen;
  ofmu_penalty_gradient(o, theta, 0.0, 3.0, gpen);
  EXPECT_EQ(gpen, pair.r.gradient(theta) + 6.0 * pair.f.hessian_vector(theta, gphi));
}

TEST(OfmuDerivatives, CosineGuardAtAZeroGradient) {
  EXPECT_EQ(gradient_cosine(Vector::Zero(2), vec2(1.0, 2.0)), 0.0);
  EXPECT_EQ(gradient_cosine(vec2(1.0, 2.0), Vector::Zero(2)), 0.0);
  EXPECT_NEAR(gradient_cosine(vec2(1.0, 0.0), vec2(1.0, 1.0)), 1.0 / std::sqrt(2.0), 1e-16);
  EXPECT_THROW(gradient_cosine(Vector::Zero(2), Vector::Zero(3)), ShapeError);
  // O1 at a point of the lower-level solution set: u = 0, so cos := 0 and grad cos := 0.
  const O1 p;
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  const Vector theta = p.solution();
  EXPECT_EQ(cosine_gradient_at(o, theta), Vector::Zero(2));
  Vector gphi;
  EXPECT_EQ(ofmu_phi_gradient(o, theta, 0.5, gphi), 0.0);
  EXPECT_EQ(gphi, Vector::Zero(2));
  EXPECT_EQ(ofmu_phi(o, theta, 0.5), 0.0);
}

// ---- beta > 0 through the solver ------------------------------------------------------------

TEST(OfmuSolverBeta, FixedPointIsStationaryForThePenalty) {
  // A concave forget quartic and a convex retain quartic: with T = 0 and a fixed rho the
  // solver's fixed point must be a stationary point of F_rho, checked by differencing F_rho
  // itself (not the solver's finite-difference H_Phi). The retain quartic's linear term is
  // tripled so that |grad l_r| stays away from 0 on the way: grad cos grows like 1/|v| there,
  // and F_rho with beta > 0 is too steep for a fixed step near stationary points of l_r (on the
  // unscaled pair eta_out = 0.002 ends in a 2-cycle).
  QuarticPair pair = random_pair(41, 3);
  pair.r.b *= 3.0;
  const ForgetRetainObjective o = make_forget_retain_objective(pair);
  const double beta = 0.1, rho = 1.0;
  OfmuOptions opt = plain(rho, 0.005, 20000, 1e-9);
  opt.beta = beta;
  const OfmuResult r = OfmuSolver(opt).minimize(o, Vector::Zero(3));
  EXPECT_EQ(r.status, StopReason::kConverged) << r.message;
  const auto penalty = [&](const Vector& t) {
    Vector g;
    ofmu_phi_gradient(o, t, beta, g);
    return o.retain_loss(t) + rho * g.squaredNorm();
  };
  const Vector fd = finite_difference_gradient(penalty, r.theta, 1e-5);
  EXPECT_LT(fd.norm(), 1e-6) << fd.transpose();
  RecordProperty("penalty_gradient_fd", sci(fd.norm()));
  RecordProperty("iterations", r.iterations);
}

// ---- history, callbacks ---------------------------------------------------------------------

struct StopAt {
  int at;
  bool on_iteration(const IterationRecord& r) { return r.iteration < at; }
};

TEST(OfmuHistory, RowsDescribeTheIterateAndCallbacksStop) {
  const O1 p;
  StopAt stop{.at = 4};
  const OfmuResult r = OfmuSolver(plain(1.0, 0.01, 100, 0.0)).minimize(p, p.start(), stop);
  EXPECT_EQ(r.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(r.iterations, 5);
  ASSERT_EQ(r.history.size(), 5u);
  // theta0 = 0: l_r = 4.5, grad Phi = u = -a (0 - 2) = (2, 2), error |theta*| = sqrt(6.5).
  EXPECT_DOUBLE_EQ(r.history.rows[0].loss, 4.5);
  EXPECT_DOUBLE_EQ(r.history.rows[0].constraint_residual, 2.0 * std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(r.history.rows[0].error, std::sqrt(6.5));
  EXPECT_DOUBLE_EQ(r.retain_loss, p.retain_loss(r.theta));
  EXPECT_DOUBLE_EQ(r.forget_loss, p.forget_loss(r.theta));
}

// ---- bad input, non-finite oracles ----------------------------------------------------------

TEST(OfmuBadInput, OptionsNameTheField) {
  auto msg = [](const OfmuOptions& o) {
    return message_of<InvalidArgumentError>([&] { OfmuSolver{o}; });
  };
  struct Case {
    const char* field;
    OfmuOptions options;
  };
  const std::vector<Case> cases = {
      {"beta", {.beta = -0.1}},
      {"beta", {.beta = kNan}},
      {"inner_steps", {.inner_steps = -1}},
      {"eta_in", {.eta_in = 0.0}},
      {"eta_out", {.eta_out = 0.0}},
      {"eta_out", {.eta_out = -1.0}},
      {"rho0", {.rho0 = 0.0}},
      {"rho_growth", {.rho_growth = 0.5}},
      {"rho_max", {.rho0 = 2.0, .rho_max = 1.0}},
      {"rho_max", {.rho_max = kNan}},
      {"stage_tolerance", {.stage_tolerance = 0.0}},
      {"max_iterations", {.max_iterations = 0}},
      {"tolerance", {.tolerance = -1.0}},
  };
  for (const Case& c : cases) EXPECT_TRUE(contains(msg(c.options), c.field)) << c.field;
  std::string why;
  EXPECT_TRUE(OfmuOptions{}.is_valid(&why)) << why;
  EXPECT_TRUE(OfmuOptions{.rho_max = kInf}.is_valid(&why)) << why;
}

TEST(OfmuBadInput, Shapes) {
  const O1 p;
  const OfmuSolver solver(plain(1.0, 0.01, 10, 0.0));
  const std::string m = message_of<ShapeError>([&] { solver.minimize(p, Vector::Zero(3)); });
  EXPECT_TRUE(contains(m, "theta0 has size 3") && contains(m, "dimension is 2")) << m;
  EXPECT_THROW(solver.minimize(p, vec2(kInf, 0.0)), InvalidArgumentError);
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  Vector out;
  EXPECT_THROW(ofmu_cosine_gradient(o, Vector::Zero(2), Vector::Zero(3), Vector::Zero(2), out),
               ShapeError);
  EXPECT_THROW(ofmu_phi_hessian_vector(o, Vector::Zero(2), 0.0, Vector::Zero(3), out), ShapeError);
}

template <class P>
struct NanAfter {
  const P& p;
  int healthy_calls;
  mutable int calls = 0;
  Index dimension() const { return p.dimension(); }
  double forget_loss(const Vector& t) const { return p.forget_loss(t); }
  double retain_loss(const Vector& t) const { return p.retain_loss(t); }
  void forget_gradient(const Vector& t, Vector& g) const {
    p.forget_gradient(t, g);
    if (++calls > healthy_calls) g.setConstant(kNan);
  }
  void retain_gradient(const Vector& t, Vector& g) const { p.retain_gradient(t, g); }
  void forget_hessian_vector(const Vector& t, const Vector& v, Vector& out) const {
    p.forget_hessian_vector(t, v, out);
  }
  void retain_hessian_vector(const Vector& t, const Vector& v, Vector& out) const {
    p.retain_hessian_vector(t, v, out);
  }
  double solution_error(const Vector& t) const { return p.solution_error(t); }
};

TEST(OfmuNumerics, NanFromAnOracleKeepsTheLastFiniteIterate) {
  const O1 p;
  // beta = 0, T = 0: one forget-gradient call per iterate (theta_0, theta_1, ...).
  const int healthy = 20;
  const NanAfter<O1> broken{p, healthy};
  const OfmuResult r = OfmuSolver(plain(1.0, 0.01, 100, 0.0)).minimize(broken, p.start());
  EXPECT_EQ(r.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(r.message, "forget gradient")) << r.message;
  EXPECT_TRUE(r.theta.allFinite());
  EXPECT_TRUE(std::isfinite(r.forget_loss) && std::isfinite(r.retain_loss) &&
              std::isfinite(r.phi_gradient_norm));
  EXPECT_EQ(r.iterations, healthy - 1);
  EXPECT_EQ(r.theta, OfmuSolver(plain(1.0, 0.01, healthy - 1, 0.0)).minimize(p, p.start()).theta);

  // With beta > 0 and inner steps the NaN arrives inside an iteration: same contract.
  OfmuOptions o = plain(1.0, 0.01, 100, 0.0);
  o.beta = 0.1;
  o.inner_steps = 2;
  const NanAfter<O1> broken2{p, 17};
  const OfmuResult r2 = OfmuSolver(o).minimize(broken2, p.start());
  EXPECT_EQ(r2.status, StopReason::kNumericalError);
  EXPECT_TRUE(r2.theta.allFinite());
  EXPECT_TRUE(std::isfinite(r2.forget_loss) && std::isfinite(r2.retain_loss));
  EXPECT_LT(r2.iterations, 17);

  const NanAfter<O1> at_start{p, 0};
  EXPECT_THROW(OfmuSolver(plain(1.0, 0.01, 10, 0.0)).minimize(at_start, p.start()), NumericalError);
}

}  // namespace
}  // namespace tether
