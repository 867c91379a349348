// GuSolver (specs/projection.md, section 1) on B1-type problems (quadratic forget and retain
// losses, where every step's loss changes are known in closed form): the solver against its
// loop written out, retain invariance and the second-order-only retain change, SGD / Adam /
// AdamW (the metric, momentum and decay), the plain step rule when the retain gradient vanishes,
// BLUR's direction projected, the sign-selective and cone modes, the stale basis, refresh,
// stopping, non-finite oracles and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/problems/unlearning_toys.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/gu.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using problems::B1;
using testing::contains;
using testing::message_of;
using testing::sci;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Vector gaussian(Rng& rng, Index n) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = rng.normal();
  return v;
}

// l_f = 0.5 (a^T theta - b)^2, l_r = 0.5 |theta - c|^2 in d = 20, theta0 = 0, b = 3, with the
// retain optimum c on the far side of theta0 from the forget line (c ~ -2 a/|a|): plain descent
// on l_f walks away from c, so forgetting costs retain loss at first order.
B1 make_b1(std::uint64_t seed, Index d = 20) {
  Rng rng(seed);
  const Vector a = gaussian(rng, d);
  return B1(a, 3.0, -2.0 * a / a.norm() + 0.5 * gaussian(rng, d));
}

// A forget loss whose gradient turns as theta moves: l_f = (1/m) sum_i softplus(x_i^T theta + 1)
// (descending it lowers every x_i^T theta: "ascent-shaped", like GA on a forget set), and a
// quadratic retain loss l_r = 0.5 (theta - c)^T A (theta - c), A = I + B B^T / d (so l_r's change
// over a step is known exactly: g_r^T D + 0.5 D^T A D, and g_r = A (theta - c) turns with theta).
class SoftplusForget {
 public:
  // c = shift * mean(x_i) + 0.5 N(0, I): shift > 0 puts the retain optimum where l_f is high
  // (forgetting and retaining conflict), shift < 0 where it is low (they agree at first).
  SoftplusForget(std::uint64_t seed, Index d, int m, double shift = 1.0) {
    Rng rng(seed);
    X_.resize(d, m);
    for (int i = 0; i < m; ++i) X_.col(i) = gaussian(rng, d);
    c_ = 0.5 * gaussian(rng, d) + shift * X_.rowwise().mean();
    Eigen::MatrixXd B(d, d);
    for (Index j = 0; j < d; ++j) B.col(j) = gaussian(rng, d);
    A_ = Eigen::MatrixXd::Identity(d, d) + B * B.transpose() / static_cast<double>(d);
  }
  Index dimension() const { return X_.rows(); }
  double forget_loss(const Vector& t) const {
    double total = 0.0;
    for (Index i = 0; i < X_.cols(); ++i) {
      const double z = X_.col(i).dot(t) + 1.0;
      total += std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z)));
    }
    return total / static_cast<double>(X_.cols());
  }
  void forget_gradient(const Vector& t, Vector& g) const {
    g = Vector::Zero(t.size());
    for (Index i = 0; i < X_.cols(); ++i)
      g += X_.col(i) / (1.0 + std::exp(-(X_.col(i).dot(t) + 1.0)));
    g /= static_cast<double>(X_.cols());
  }
  double retain_loss(const Vector& t) const { return 0.5 * (t - c_).dot(A_ * (t - c_)); }
  void retain_gradient(const Vector& t, Vector& g) const { g = A_ * (t - c_); }
  double curvature(const Vector& D) const { return 0.5 * D.dot(A_ * D); }  // 0.5 D^T A D

 private:
  Eigen::MatrixXd X_, A_;
  Vector c_;
};

GuOptions sgd(double lr, int iterations, int window = 8) {
  return {.projection = {.window = window},
          .step = SgdOptions{.learning_rate = lr},
          .max_iterations = iterations,
          .tolerance = 0.0};
}

// The solver's loop written out with RetainProjector and StepRule: the trajectory the solver
// must reproduce bit for bit. Calls visit(k, theta_k, D_k) after computing step k.
template <class P, class Visit>
Vector manual_gu(const P& p, Vector theta, const GuOptions& o, Visit&& visit) {
  const Index n = theta.size();
  RetainProjector proj(n, o.projection);
  StepRule rule(o.step);
  Vector g_f(n), g_r(n), base(n), proposed(n), step(n), h(n);
  for (int k = 0; k < o.max_iterations; ++k) {
    p.forget_gradient(theta, g_f);
    p.retain_gradient(theta, g_r);
    if (k % o.refresh == 0) proj.push(g_r);
    if (o.base == GuOptions::Base::kBlur)
      blur_direction(g_f, g_r, o.blur_gamma, base);
    else
      base = g_f;
    rule.direction(theta, base, proposed);
    if (rule.preconditioner(h)) proj.set_metric(h);
    proj.project_step(proposed, rule.learning_rate(), step);
    visit(k, theta, step, h);
    theta = theta + step;
  }
  return theta;
}

// ---- null space with SGD on B1 ----------------------------------------------------------------

TEST(GuNullSpace, RetainLossChangesOnlyAtSecondOrderEveryStep) {
  const B1 p = make_b1(1);
  const double lr = 0.005;
  const GuOptions o = sgd(lr, 1500);
  const Vector theta0 = Vector::Zero(20);
  double worst_retain = 0.0, worst_forget = 0.0, retain_rise = 0.0;
  Vector theta5;
  const Vector manual =
      manual_gu(p, theta0, o, [&](int k, const Vector& theta, const Vector& D, const Vector&) {
        if (k == 5) theta5 = theta;
        // l_r has Hessian I and is invariant to first order: it changes by 0.5 |D|^2 exactly, up to
        // the rounding of the losses. A first-order term would be |g_r| |D| ~ 1e-2.
        const double l_r = p.retain_loss(theta), dr = p.retain_loss(theta + D) - l_r;
        worst_retain = std::max(worst_retain, std::abs(dr - 0.5 * D.squaredNorm()) / (1.0 + l_r));
        retain_rise += dr;
        // g_f^T D = -lr |z_n|^2 = -|D|^2 / lr (SGD: D = -lr z_n); l_f's Hessian is a a^T.
        const double l_f = p.forget_loss(theta), df = p.forget_loss(theta + D) - l_f;
        const double expected = -D.squaredNorm() / lr + 0.5 * std::pow(p.a().dot(D), 2);
        worst_forget = std::max(worst_forget, std::abs(df - expected) / (1.0 + l_f));
      });
  const GuResult r = GuSolver(o).minimize(p, theta0);
  EXPECT_EQ(r.theta, manual);
  EXPECT_EQ(r.status, StopReason::kIterationLimit);
  ASSERT_EQ(r.history.size(), 1500u);
  ASSERT_EQ(r.retain_losses.size(), 1500u);
  double worst_residual = 0.0;
  for (const auto& row : r.history.rows)
    worst_residual = std::max(worst_residual, row.constraint_residual);
  EXPECT_EQ(r.history.rows[0].loss, p.forget_loss(theta0));
  EXPECT_EQ(r.retain_losses[0], p.retain_loss(theta0));
  EXPECT_EQ(r.history.rows[5].error, p.solution_error(theta5));  // row k describes theta_k
  EXPECT_EQ(r.retain_gradients, 1500);
  // Plain gradient descent on l_f, for contrast: the same number of steps.
  Vector plain = theta0, g(20);
  for (int k = 0; k < 1500; ++k) {
    p.forget_gradient(plain, g);
    plain -= lr * g;
  }
  const double plain_rise = p.retain_loss(plain) - p.retain_loss(theta0);
  RecordProperty("worst_retain_identity", sci(worst_retain));
  RecordProperty("worst_forget_identity", sci(worst_forget));
  RecordProperty("worst_residual", sci(worst_residual));
  RecordProperty("retain_rise_gu", sci(retain_rise));
  RecordProperty("retain_rise_plain", sci(plain_rise));
  std::printf(
      "l_f %.3e -> GU %.3e, plain %.3e; retain rise GU %.3e, plain %.3e; residual %.3e; "
      "identities %.1e %.1e\n",
      p.forget_loss(theta0), r.forget_loss, p.forget_loss(plain), retain_rise, plain_rise,
      worst_residual, worst_retain, worst_forget);
  EXPECT_LE(worst_retain, 1e-14);
  EXPECT_LE(worst_forget, 1e-14);
  EXPECT_LE(worst_residual, 1e-12);
  EXPECT_LE(r.forget_loss, 1e-6 * p.forget_loss(theta0));
  EXPECT_LE(retain_rise, 0.1 * plain_rise);
}

TEST(GuNullSpace, WithoutARetainGradientItIsThePlainStepRuleBitForBit) {
  // l_r = 0.5 |0 theta|^2: the retain gradient is exactly zero everywhere.
  Rng rng(2);
  const Index d = 12;
  const B1 p(gaussian(rng, d), 1.0, Vector::Zero(d));
  struct ZeroRetain {
    const B1& p;
    Index dimension() const { return p.dimension(); }
    double forget_loss(const Vector& t) const { return p.forget_loss(t); }
    double retain_loss(const Vector&) const { return 0.0; }
    void forget_gradient(const Vector& t, Vector& g) const { p.forget_gradient(t, g); }
    void retain_gradient(const Vector& t, Vector& g) const { g = Vector::Zero(t.size()); }
  } problem{p};
  const Vector theta0 = gaussian(rng, d);
  for (const StepRuleOptions& step :
       {StepRuleOptions{SgdOptions{.learning_rate = 0.05}},
        StepRuleOptions{SgdOptions{.learning_rate = 0.05, .momentum = 0.9, .weight_decay = 0.1}},
        StepRuleOptions{AdamOptions{.learning_rate = 0.01}},
        StepRuleOptions{AdamOptions{.learning_rate = 0.01, .weight_decay = 0.01}}}) {
    const GuResult r =
        GuSolver({.step = step, .max_iterations = 50, .tolerance = 0}).minimize(problem, theta0);
    StepRule rule(step);
    Vector theta = theta0, g(d);
    for (int k = 0; k < 50; ++k) {
      problem.forget_gradient(theta, g);
      rule.step(theta, g);
    }
    EXPECT_EQ(r.theta, theta) << step_rule_name(step);
    EXPECT_EQ(r.rank, 0);
  }
}

// ---- Adam's metric -----------------------------------------------------------------------------

TEST(GuAdam, InvariantInAdamsMetricWithMomentumAndDecay) {
  const B1 p = make_b1(3);
  const Vector theta0 = Vector::Zero(20);
  for (const AdamOptions adam : {AdamOptions{.learning_rate = 0.01, .beta1 = 0.0},
                                 AdamOptions{.learning_rate = 0.01, .weight_decay = 0.01}}) {
    const GuOptions o{.step = adam, .max_iterations = 200, .tolerance = 0};
    double worst_rate = 0.0;
    const Vector manual =
        manual_gu(p, theta0, o, [&](int, const Vector& theta, const Vector& D, const Vector& h) {
          if (adam.beta1 != 0.0) return;
          // beta1 = 0, no decay: D = -lr S z_n, so g_f^T D = -lr |z_n|^2 = -D^T H D / lr.
          Vector g_f(20);
          p.forget_gradient(theta, g_f);
          const double dhd = D.dot(h.cwiseProduct(D));
          worst_rate = std::max(worst_rate, std::abs(g_f.dot(D) + dhd / 0.01) / (dhd / 0.01));
        });
    const GuResult r = GuSolver(o).minimize(p, theta0);
    EXPECT_EQ(r.theta, manual);
    double worst_residual = 0.0;
    for (const auto& row : r.history.rows)
      worst_residual = std::max(worst_residual, row.constraint_residual);
    RecordProperty(adam.beta1 == 0.0 ? "worst_residual_rmsprop" : "worst_residual_adamw",
                   sci(worst_residual));
    EXPECT_LE(worst_residual, 1e-12);
    if (adam.beta1 == 0.0) {
      RecordProperty("worst_forget_rate", sci(worst_rate));
      EXPECT_LE(worst_rate, 1e-12);
    }
    EXPECT_LT(r.forget_loss, 0.5 * p.forget_loss(theta0));
  }
}

TEST(GuAdam, ThePreconditionerIsTheDenominatorOfAdamsStepBitForBit) {
  Rng rng(31);
  const Index d = 50;
  StepRule rule(AdamOptions{.learning_rate = 0.01, .beta1 = 0.0});
  Vector h(d);
  EXPECT_FALSE(rule.preconditioner(h));  // no step yet
  Vector x = gaussian(rng, d), out(d);
  for (int t = 0; t < 5; ++t) {
    const Vector g = gaussian(rng, d);
    rule.direction(x, g, out);
    ASSERT_TRUE(rule.preconditioner(h));
    for (Index j = 0; j < d; ++j) EXPECT_EQ(out[j], -0.01 * g[j] / h[j]) << "t " << t;
    x += out;
  }
  EXPECT_FALSE(StepRule(SgdOptions{}).preconditioner(h));  // SGD: the identity
}

// ---- BLUR's direction, projected --------------------------------------------------------------

TEST(GuBlur, ProjectsBlursDirection) {
  const B1 p = make_b1(4);
  GuOptions o = sgd(0.02, 1000);
  o.base = GuOptions::Base::kBlur;
  o.blur_gamma = 2.0;
  const Vector theta0 = Vector::Zero(20);
  const Vector manual =
      manual_gu(p, theta0, o, [](int, const Vector&, const Vector&, const Vector&) {});
  const GuResult r = GuSolver(o).minimize(p, theta0);
  EXPECT_EQ(r.theta, manual);
  double worst_residual = 0.0;
  for (const auto& row : r.history.rows)
    worst_residual = std::max(worst_residual, row.constraint_residual);
  EXPECT_LE(worst_residual, 1e-12);
  EXPECT_LT(r.forget_loss, 1e-3 * p.forget_loss(theta0));
}

// ---- sign-selective and cone ------------------------------------------------------------------

TEST(GuModes, SignSelectiveAndConeNeverRaiseTheRetainLossAtFirstOrder) {
  const SoftplusForget p(5, 20, 5, /*shift=*/-3.0);
  const Vector theta0 = Vector::Zero(20);
  struct Case {
    const char* name;
    RetainProjectionMode mode;
    double beta;
  };
  double null_space_forget = 0.0;
  {
    const GuResult r = GuSolver(sgd(0.05, 300)).minimize(p, theta0);
    null_space_forget = r.forget_loss;
  }
  for (const Case c : {Case{"sign_selective", RetainProjectionMode::kSignSelective, 0.0},
                       Case{"sign_selective_beta", RetainProjectionMode::kSignSelective, 0.1},
                       Case{"cone", RetainProjectionMode::kCone, 0.0}}) {
    GuOptions o = sgd(0.05, 300);
    o.projection.mode = c.mode;
    o.projection.beta = c.beta;
    double worst_identity = 0.0, worst_change = -1.0, first_order = 0.0;
    const Vector manual =
        manual_gu(p, theta0, o, [&](int, const Vector& theta, const Vector& D, const Vector&) {
          Vector g_r(20);
          p.retain_gradient(theta, g_r);
          const double l_r = p.retain_loss(theta), dr = p.retain_loss(theta + D) - l_r;
          first_order += g_r.dot(D);
          if (D.norm() > 0.0)
            worst_change = std::max(worst_change, g_r.dot(D) / (g_r.norm() * D.norm()));
          // l_r(theta + D) - l_r(theta) = g_r^T D + 0.5 D^T A D exactly (to the losses' rounding).
          worst_identity =
              std::max(worst_identity, std::abs(dr - g_r.dot(D) - p.curvature(D)) / (1.0 + l_r));
        });
    const GuResult r = GuSolver(o).minimize(p, theta0);
    EXPECT_EQ(r.theta, manual) << c.name;
    double worst_residual = 0.0;
    for (const auto& row : r.history.rows)
      worst_residual = std::max(worst_residual, row.constraint_residual);
    RecordProperty(std::string(c.name) + "_worst_relative_change", sci(worst_change));
    RecordProperty(std::string(c.name) + "_first_order_sum", sci(first_order));
    std::printf(
        "%s: sum g_r^T D = %.3e, worst g_r^T D / (|g_r||D|) %.3e, identity %.1e, "
        "l_f %.4f -> %.4f (null space %.4f)\n",
        c.name, first_order, worst_change, worst_identity, p.forget_loss(theta0), r.forget_loss,
        null_space_forget);
    EXPECT_EQ(r.status, StopReason::kIterationLimit) << r.message;
    EXPECT_LE(worst_residual, 1e-14) << c.name;
    EXPECT_LE(worst_change, 1e-14) << c.name;
    EXPECT_LE(worst_identity, 1e-14) << c.name;
    EXPECT_LT(first_order, -1e-2) << c.name;  // the retain loss was lowered, not just held
    if (c.beta == 0.0) EXPECT_LT(r.forget_loss, null_space_forget) << c.name;
  }
}

TEST(GuModes, ConeKeepsEveryWindowConstraintWhenForgettingAndRetainingConflict) {
  const SoftplusForget p(7, 20, 5, /*shift=*/1.0);
  const Vector theta0 = Vector::Zero(20);
  GuOptions o = sgd(0.05, 300);
  o.projection.mode = RetainProjectionMode::kCone;
  std::vector<Vector> window;  // the retain gradients the step must not raise
  double worst = -1.0;
  int moved = 0;
  manual_gu(p, theta0, o, [&](int, const Vector& theta, const Vector& D, const Vector&) {
    Vector g_r(20), g_f(20);
    p.retain_gradient(theta, g_r);
    p.forget_gradient(theta, g_f);
    window.push_back(g_r);
    if (window.size() > 8) window.erase(window.begin());
    for (const Vector& g : window) worst = std::max(worst, g.dot(D) / (g.norm() * D.norm()));
    moved += (D + 0.05 * g_f).norm() > 1e-12 * D.norm();  // the QP changed the step
  });
  const GuResult cone = GuSolver(o).minimize(p, theta0);
  const GuResult null_space = GuSolver(sgd(0.05, 300)).minimize(p, theta0);
  RecordProperty("worst_window_change", sci(worst));
  std::printf(
      "cone on conflicting losses: %d of 300 steps projected, worst window change %.3e, "
      "l_f %.4f -> %.4f (null space %.4f), l_r %.4f -> %.4f (null space %.4f)\n",
      moved, worst, p.forget_loss(theta0), cone.forget_loss, null_space.forget_loss,
      p.retain_loss(theta0), cone.retain_loss, null_space.retain_loss);
  EXPECT_EQ(cone.status, StopReason::kIterationLimit) << cone.message;
  EXPECT_LE(worst, 1e-14);
  EXPECT_GT(moved, 100);
  EXPECT_LT(cone.forget_loss, null_space.forget_loss);  // closer to D0 than the null space
  EXPECT_LT(cone.retain_loss, null_space.retain_loss);  // and older retain losses may fall
}

// ---- the stale basis ---------------------------------------------------------------------------

TEST(GuBasis, TheStaleFirstKBasisLosesInvarianceTheSlidingWindowKeepsIt) {
  const SoftplusForget p(6, 20, 5);
  const Vector theta0 = Vector::Zero(20);
  GuOptions o = sgd(0.05, 300, /*window=*/2);
  auto first_order = [&](const GuOptions& options) {  // sum of g_r^T D, the current g_r
    double sum = 0.0;
    manual_gu(p, theta0, options, [&](int, const Vector& theta, const Vector& D, const Vector&) {
      Vector g_r(20);
      p.retain_gradient(theta, g_r);
      sum += g_r.dot(D);
    });
    return sum;
  };
  const GuResult sliding = GuSolver(o).minimize(p, theta0);
  const double sliding_first_order = first_order(o);
  o.projection.basis = RetainBasisPolicy::kFirstK;
  const GuResult stale = GuSolver(o).minimize(p, theta0);
  const double stale_first_order = first_order(o);
  double sliding_worst = 0.0, stale_worst = 0.0;
  for (const auto& row : sliding.history.rows)
    sliding_worst = std::max(sliding_worst, row.constraint_residual);
  for (const auto& row : stale.history.rows)
    stale_worst = std::max(stale_worst, row.constraint_residual);
  const double rise_sliding = sliding.retain_loss - p.retain_loss(theta0);
  const double rise_stale = stale.retain_loss - p.retain_loss(theta0);
  RecordProperty("stale_worst_residual", sci(stale_worst));
  RecordProperty("rise_sliding", sci(rise_sliding));
  RecordProperty("rise_stale", sci(rise_stale));
  std::printf(
      "residual sliding %.3e, stale %.3e; sum g_r^T D sliding %.3e, stale %.3e; retain "
      "rise sliding %.3e, stale %.3e; l_f %.3e, %.3e\n",
      sliding_worst, stale_worst, sliding_first_order, stale_first_order, rise_sliding, rise_stale,
      sliding.forget_loss, stale.forget_loss);
  EXPECT_LE(sliding_worst, 1e-12);
  EXPECT_LE(std::abs(sliding_first_order), 1e-13);
  EXPECT_GE(stale_worst, 1e-2);
  EXPECT_GT(stale_first_order, 1e-2);
  EXPECT_GT(rise_stale, 2.0 * rise_sliding);
  EXPECT_EQ(stale.retain_gradients, 300);  // pushed, but the basis kept only the first two
}

// ---- refresh -----------------------------------------------------------------------------------

TEST(GuRefresh, ARetainGradientEveryThirdStep) {
  const B1 p = make_b1(7);
  struct Counting {
    const B1& p;
    mutable int retain_gradients = 0;
    Index dimension() const { return p.dimension(); }
    double forget_loss(const Vector& t) const { return p.forget_loss(t); }
    double retain_loss(const Vector& t) const { return p.retain_loss(t); }
    void forget_gradient(const Vector& t, Vector& g) const { p.forget_gradient(t, g); }
    void retain_gradient(const Vector& t, Vector& g) const {
      ++retain_gradients;
      p.retain_gradient(t, g);
    }
  } problem{p};
  GuOptions o = sgd(0.02, 100);
  o.refresh = 3;
  const GuResult r = GuSolver(o).minimize(problem, Vector::Zero(20));
  EXPECT_EQ(r.retain_gradients, 34);        // iterations 0, 3, ..., 99
  EXPECT_EQ(problem.retain_gradients, 34);  // evaluated only where pushed
  double pushed = 0.0, between = 0.0;
  for (std::size_t k = 0; k < r.history.size(); ++k)
    (k % 3 == 0 ? pushed : between) =
        std::max(k % 3 == 0 ? pushed : between, r.history.rows[k].constraint_residual);
  // Invariant for the gradient of the step it was pushed at; between pushes the residual is
  // measured against the latest pushed gradient, which the window holds: still rounding.
  EXPECT_LE(pushed, 1e-12);
  EXPECT_LE(between, 1e-12);
  // Against the true current retain gradient, the steps between pushes are not invariant.
  GuOptions manual = o;
  double current_worst = 0.0;
  manual_gu(
      p, Vector::Zero(20), manual, [&](int k, const Vector& theta, const Vector& D, const Vector&) {
        if (k % 3 == 0) return;
        const Vector g_r = theta - p.c();
        current_worst = std::max(current_worst, std::abs(g_r.dot(D)) / (g_r.norm() * D.norm()));
      });
  RecordProperty("between_pushes_against_current", sci(current_worst));
  EXPECT_GE(current_worst, 1e-4);
}

// ---- stopping ----------------------------------------------------------------------------------

TEST(GuStopping, ConvergesWhereNoRetainInvariantForgetMoveIsLeft) {
  // B1 in 2-D, window 1: GU moves around the circle |theta - c| = 3 (to first order) onto the
  // line a^T theta = b, where g_f = 0.
  const B1 p;
  GuOptions o = sgd(0.05, 5000, /*window=*/1);
  o.tolerance = 1e-10;
  double second_order = 0.0;
  const GuResult r = GuSolver(o).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kConverged);
  EXPECT_LT(r.iterations, 5000);
  o.max_iterations = r.iterations;
  manual_gu(p, p.start(), o, [&](int, const Vector&, const Vector& D, const Vector&) {
    second_order += 0.5 * D.squaredNorm();
  });
  EXPECT_LE(r.forget_loss, 1e-20);
  // l_r = 4.5 at the start; each step adds exactly 0.5 |D|^2.
  EXPECT_NEAR(r.retain_loss, 4.5 + second_order, 1e-12);
  RecordProperty("iterations", r.iterations);
  RecordProperty("retain_rise", sci(second_order));
}

TEST(GuStopping, ACallbackStopsTheRun) {
  const B1 p = make_b1(8);
  struct StopAt3 {
    bool on_iteration(const IterationRecord& r) { return r.iteration < 3; }
  } stop;
  const GuResult r = GuSolver(sgd(0.02, 100)).minimize(p, Vector::Zero(20), stop);
  EXPECT_EQ(r.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(r.iterations, 4);
  EXPECT_EQ(r.history.size(), 4u);
}

// ---- non-finite oracles and bad input -----------------------------------------------------------

struct NanAfter {
  const B1& p;
  double threshold;
  Index dimension() const { return p.dimension(); }
  double forget_loss(const Vector& t) const { return p.forget_loss(t); }
  double retain_loss(const Vector& t) const { return p.retain_loss(t); }
  void forget_gradient(const Vector& t, Vector& g) const {
    p.forget_gradient(t, g);
    if (t.norm() > threshold) g[0] = kNaN;
  }
  void retain_gradient(const Vector& t, Vector& g) const { p.retain_gradient(t, g); }
};

TEST(GuNumerics, NanFromAnOracleKeepsTheLastFiniteIterate) {
  const B1 p = make_b1(9);
  const NanAfter problem{p, 0.5};
  const GuOptions o = sgd(0.02, 1000);
  const GuResult r = GuSolver(o).minimize(problem, Vector::Zero(20));
  EXPECT_EQ(r.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(r.message, "forget gradient was NaN/Inf after iteration"));
  EXPECT_TRUE(r.theta.allFinite());
  EXPECT_LE(r.theta.norm(), 0.5);
  EXPECT_GT(r.iterations, 0);
  // The same trajectory as without the NaN, up to the last finite iterate.
  GuOptions shorter = o;
  shorter.max_iterations = r.iterations;
  EXPECT_EQ(GuSolver(shorter).minimize(p, Vector::Zero(20)).theta, r.theta);
  EXPECT_TRUE(std::isfinite(r.forget_loss) && std::isfinite(r.retain_loss));
  // At theta0 the NaN is refused.
  Vector start = Vector::Zero(20);
  start[0] = 1.0;
  EXPECT_TRUE(contains(message_of<NumericalError>([&] { GuSolver(o).minimize(problem, start); }),
                       "forget gradient is NaN/Inf at theta0"));
}

TEST(GuNumerics, NanRetainGradientAtARefreshStops) {
  const B1 p = make_b1(11);
  struct RetainNan {
    const B1& p;
    Index dimension() const { return p.dimension(); }
    double forget_loss(const Vector& t) const { return p.forget_loss(t); }
    double retain_loss(const Vector& t) const { return p.retain_loss(t); }
    void forget_gradient(const Vector& t, Vector& g) const { p.forget_gradient(t, g); }
    void retain_gradient(const Vector& t, Vector& g) const {
      p.retain_gradient(t, g);
      if (t.norm() > 0.3) g[1] = kNaN;
    }
  } problem{p};
  const GuResult r = GuSolver(sgd(0.02, 1000)).minimize(problem, Vector::Zero(20));
  EXPECT_EQ(r.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(r.message, "retain gradient was NaN/Inf after iteration"));
  EXPECT_LE(r.theta.norm(), 0.3);
  EXPECT_TRUE(r.theta.allFinite());
}

TEST(GuBadInput, OptionsNameTheField) {
  auto msg = [](GuOptions o) { return message_of<InvalidArgumentError>([&] { GuSolver{o}; }); };
  EXPECT_TRUE(contains(msg({.projection = {.window = 0}}),
                       "GuOptions: projection: window must be >= 1, got 0"));
  EXPECT_TRUE(contains(msg({.projection = {.kappa = -1.0}}), "kappa must be finite and >= 0"));
  EXPECT_TRUE(contains(msg({.refresh = 0}), "refresh must be >= 1, got 0"));
  EXPECT_TRUE(contains(msg({.blur_gamma = 0.0}), "blur_gamma must be finite and > 0"));
  EXPECT_TRUE(contains(msg({.step = SgdOptions{.learning_rate = -1.0}}),
                       "step (sgd): learning_rate must be finite and > 0"));
  EXPECT_TRUE(contains(msg({.max_iterations = 0}), "max_iterations must be >= 1, got 0"));
  EXPECT_TRUE(contains(msg({.tolerance = -1.0}), "tolerance must be finite and >= 0"));
}

TEST(GuBadInput, ShapesAndNonFiniteStart) {
  const B1 p = make_b1(10);
  const GuSolver solver(sgd(0.02, 10));
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { solver.minimize(p, Vector::Zero(3)); }),
                       "theta0 has size 3, the problem's dimension is 20"));
  Vector bad = Vector::Zero(20);
  bad[4] = kNaN;
  EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { solver.minimize(p, bad); }),
                       "theta0 must be finite"));
  GuOptions blocks = sgd(0.02, 10);
  blocks.projection.scope = RetainScope::kBlockwise;
  blocks.projection.block_sizes = {10, 5};
  EXPECT_TRUE(
      contains(message_of<ShapeError>([&] { GuSolver(blocks).minimize(p, Vector::Zero(20)); }),
               "block_sizes sum to 15, the dimension is 20"));
  struct WrongSize {
    Index dimension() const { return 4; }
    double forget_loss(const Vector&) const { return 0.0; }
    double retain_loss(const Vector&) const { return 0.0; }
    void forget_gradient(const Vector&, Vector& g) const { g = Vector::Ones(3); }
    void retain_gradient(const Vector&, Vector& g) const { g = Vector::Ones(4); }
  } wrong;
  EXPECT_TRUE(contains(message_of<ShapeError>([&] { solver.minimize(wrong, Vector::Zero(4)); }),
                       "forget gradient has size 3, expected 4"));
}

}  // namespace
}  // namespace tether
