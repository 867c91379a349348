// BlurSolver on the spec's toys (specs/bilevel.md, section 3): B1's exact per-step contraction
// and accuracy, the weighted-sum contrast points, B2, the <d, g_f> = gamma |g_f|^2 property,
// swapped roles, Adam / AdamW, the |g_f| == 0 guard, bad input and non-finite oracles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/step_rule.hpp>
#include <tether/problems/unlearning_toys.hpp>
#include <tether/solvers/blur.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using problems::B1;
using problems::B2;
using testing::contains;
using testing::message_of;

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

Vector vec2(double x, double y) {
  Vector v(2);
  v << x, y;
  return v;
}

BlurOptions sgd(double lr, int iterations, double gamma = 1.0) {
  return {.gamma = gamma,
          .step = SgdOptions{.learning_rate = lr},
          .max_iterations = iterations,
          .tolerance = 0.0};
}

// Measured figures go to the XML report (--gtest_output=xml) in full precision.
std::string sci(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6e", x);
  return buffer;
}

// The solver's loop written out with the free function and a StepRule: the trajectory the
// solver must reproduce bit for bit. Calls visit(k, theta_k, g_f, g_r, d, case) before step k.
template <class P, class Visit>
Vector manual_blur(const P& p, Vector theta, double gamma, const StepRuleOptions& step,
                   int iterations, Visit&& visit) {
  StepRule rule(step);
  Vector g_f(theta.size()), g_r(theta.size()), d(theta.size());
  for (int k = 0; k < iterations; ++k) {
    p.forget_gradient(theta, g_f);
    p.retain_gradient(theta, g_r);
    const BlurDirectionCase c = blur_direction(g_f, g_r, gamma, d);
    visit(k, theta, g_f, g_r, d, c);
    rule.step(theta, d);
  }
  return theta;
}

// B1 (a = (1, 1), lr 0.1, gamma 1, theta0 = 0): the error splits into the component along a,
// contracted by 1 - lr gamma |a|^2 = 0.8 per step, and the one across a, contracted by
// 1 - lr = 0.9. Initially theta0 - theta* = -(2.5, -0.5): along a/|a| that is -2/sqrt(2),
// across (1, -1)/sqrt(2) it is -3/sqrt(2). So |theta_k - theta*| =
// sqrt((0.8^k sqrt(2))^2 + (0.9^k 3/sqrt(2))^2) in exact arithmetic.
double b1_closed_form_error(int k) {
  const double along = std::pow(0.8, k) * std::sqrt(2.0);
  const double across = std::pow(0.9, k) * 3.0 / std::sqrt(2.0);
  return std::hypot(along, across);
}

// ---- B1 ---------------------------------------------------------------------------------------

TEST(BlurB1, EveryStepContractsExactlyAlongAndAcrossTheLevelSet) {
  const B1 p;
  const Vector n = vec2(1.0, -1.0) / std::sqrt(2.0);  // across a
  const double lr = 0.1, gamma = 1.0;
  long guards = 0, checked = 0;
  double worst_along = 0.0, worst_across = 0.0;
  Vector previous_theta;
  double r_prev = 0.0, q_prev = 0.0;
  BlurDirectionCase previous_case = BlurDirectionCase::kProjected;
  Vector previous_g_r;
  auto visit = [&](int k, const Vector& theta, const Vector&, const Vector& g_r, const Vector&,
                   BlurDirectionCase c) {
    const double r = p.a().dot(theta) - p.b();     // lower-level residual (along a)
    const double q = n.dot(theta - p.solution());  // error across a
    if (k > 0) {
      // Rounding of theta (|theta| ~ 3) is the floor of what a step can be checked to.
      const double tol = 4.0 * kEps * (1.0 + previous_theta.lpNorm<1>());
      if (previous_case == BlurDirectionCase::kProjected) {
        worst_along = std::max(worst_along, std::abs(r - (1.0 - lr * gamma * 2.0) * r_prev));
        worst_across = std::max(worst_across, std::abs(q - (1.0 - lr) * q_prev));
        EXPECT_NEAR(r, (1.0 - lr * gamma * 2.0) * r_prev, tol) << "step " << k;
        EXPECT_NEAR(q, (1.0 - lr) * q_prev, tol) << "step " << k;
        ++checked;
      } else {
        // The guard took d = g_r: a plain retain step (the documented kick).
        const Vector expected = previous_theta - lr * previous_g_r;
        EXPECT_EQ(theta, expected) << "guard step " << k;
        ++guards;
      }
    }
    previous_theta = theta;
    previous_g_r = g_r;
    r_prev = r;
    q_prev = q;
    previous_case = c;
  };
  manual_blur(p, p.start(), gamma, SgdOptions{.learning_rate = lr}, 1000, visit);
  RecordProperty("worst_along", sci(worst_along));
  RecordProperty("worst_across", sci(worst_across));
  EXPECT_GT(checked, 900);
  // In IEEE double the residual a^T theta - b reaches exactly 0 (about step 167 and 316 on
  // this build), so the spec's guard fires and kicks the iterate. See BlurGuard below.
  EXPECT_GE(guards, 1);
  const BlurResult r = BlurSolver(sgd(lr, 1000)).minimize(p, p.start());
  EXPECT_EQ(r.guard_steps, guards);
}

TEST(BlurB1, ErrorAt100And1000StepsMatchesTheSpec) {
  const B1 p;
  const BlurResult r100 = BlurSolver(sgd(0.1, 100)).minimize(p, p.start());
  const double e100 = p.solution_error(r100.theta);
  EXPECT_EQ(r100.status, StopReason::kIterationLimit);
  EXPECT_EQ(r100.iterations, 100);
  EXPECT_EQ(r100.guard_steps, 0);
  EXPECT_NEAR(e100, b1_closed_form_error(100), 1e-9 * b1_closed_form_error(100));
  EXPECT_NEAR(e100, 5.6e-5, 0.05e-5);  // the spec's figure, to its two digits

  const BlurResult r1000 = BlurSolver(sgd(0.1, 1000)).minimize(p, p.start());
  const double e1000 = p.solution_error(r1000.theta);
  // 0.9^1000 is 1.7e-46: what is left is the rounding of theta* = (2.5, -0.5) itself.
  EXPECT_LE(e1000, 4.0 * kEps * p.solution().norm()) << e1000;
  RecordProperty("error_100", sci(e100));
  RecordProperty("error_1000", sci(e1000));
}

TEST(BlurB1, HistoryRowsDescribeTheIterateEachStepDifferentiated) {
  const B1 p;
  const BlurResult r = BlurSolver(sgd(0.1, 50)).minimize(p, p.start());
  ASSERT_EQ(r.history.size(), 50u);
  // Row 0 is theta0 = 0: l_r = 0.5 |c|^2 = 4.5, |g_f| = |a (0 - 2)| = 2 sqrt(2), error |theta*|.
  EXPECT_DOUBLE_EQ(r.history.rows[0].loss, 4.5);
  EXPECT_DOUBLE_EQ(r.history.rows[0].constraint_residual, 2.0 * std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(r.history.rows[0].error, std::sqrt(6.5));
  for (int k = 0; k < 50; ++k) {
    EXPECT_EQ(r.history.rows[k].iteration, k);
    EXPECT_NEAR(r.history.rows[k].error, b1_closed_form_error(k), 1e-12);
  }
  EXPECT_DOUBLE_EQ(r.retain_loss, p.retain_loss(r.theta));
  EXPECT_DOUBLE_EQ(r.forget_loss, p.forget_loss(r.theta));
}

TEST(BlurB1, ToleranceStopsOnTheDirectionNorm) {
  const B1 p;
  BlurOptions o = sgd(0.1, 1000);
  o.tolerance = 1e-10;
  const BlurResult r = BlurSolver(o).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kConverged) << r.message;
  EXPECT_LT(r.iterations, 1000);
  // |d|^2 = |P g_r|^2 + gamma^2 |g_f|^2 = 0.81^k-ish: at |d| <= 1e-10 the error is ~1e-10 too.
  EXPECT_LT(p.solution_error(r.theta), 1e-9);
  EXPECT_GT(p.solution_error(r.theta), 1e-12);
}

// ---- the weighted-sum baseline --------------------------------------------------------------

TEST(BlurB1, WeightedSumConvergesToTheCompromiseNotTheBilevelOptimum) {
  const B1 p;
  // Fixed point of a (a^T theta - b) + w (theta - c) = 0: theta = c - a (a^T c - b)/(|a|^2 + w).
  // w = 1: c - a / 3 = (8/3, -1/3);  w = 0.1: c - a / 2.1 = (53/21, -10/21).
  const std::vector<std::pair<double, Vector>> cases = {{1.0, vec2(8.0 / 3.0, -1.0 / 3.0)},
                                                        {0.1, vec2(53.0 / 21.0, -10.0 / 21.0)}};
  for (const auto& [w, expected] : cases) {
    BlurOptions o = sgd(0.1, 5000);  // across a the contraction is 1 - lr w = 0.99 for w = 0.1
    o.direction = BlurOptions::Direction::kWeightedSum;
    o.weight = w;
    const BlurResult r = BlurSolver(o).minimize(p, p.start());
    EXPECT_NEAR((r.theta - expected).norm(), 0.0, 1e-10) << "w = " << w;
    EXPECT_NEAR((p.weighted_sum_solution(w) - expected).norm(), 0.0, 1e-15);
    // The spec's rounded figures.
    EXPECT_NEAR(r.theta[0], w == 1.0 ? 2.6667 : 2.5238, 5e-5);
    EXPECT_NEAR(r.theta[1], w == 1.0 ? -0.3333 : -0.4762, 5e-5);
    // ... which are not the bilevel optimum BLUR reaches.
    EXPECT_GT(p.solution_error(r.theta), 0.03);
    EXPECT_EQ(r.guard_steps, 0);
  }
}

// ---- B2 ---------------------------------------------------------------------------------------

TEST(BlurB2, ErrorAt100StepsAndTheOptimum) {
  const B2 p;
  EXPECT_EQ(p.start(), vec2(0.3, 0.8));
  const BlurResult r100 = BlurSolver(sgd(0.05, 100)).minimize(p, p.start());
  const double e100 = p.solution_error(r100.theta);
  EXPECT_NEAR(e100, 3.3e-5, 0.05e-5);  // the spec's figure, to its two digits
  RecordProperty("error_100", sci(e100));

  BlurOptions o = sgd(0.05, 2000);
  o.tolerance = 1e-13;
  const BlurResult r = BlurSolver(o).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kConverged) << r.message;
  EXPECT_LT(p.solution_error(r.theta), 1e-10);
  EXPECT_NEAR(r.retain_loss, 0.5, 1e-10);  // 0.5 |(1, 0) - (2, 0)|^2
  EXPECT_LT(r.forget_loss, 1e-20);
  RecordProperty("error_converged", sci(p.solution_error(r.theta)));
  RecordProperty("iterations_converged", r.iterations);
}

TEST(BlurB2, DirectionLowersTheLowerLevelAtRateGammaEveryStep) {
  const B2 p;
  for (double gamma : {1.0, 0.5, 3.0}) {
    const double lr = 0.05;
    int projected = 0;
    auto visit = [&](int k, const Vector&, const Vector& g_f, const Vector& g_r, const Vector& d,
                     BlurDirectionCase c) {
      if (c != BlurDirectionCase::kProjected) return;
      ++projected;
      const double gf2 = g_f.squaredNorm();
      // Rounding of <g_r, g_f> and of the coefficient times g_f: a few eps of these products.
      const double tol = 8.0 * kEps * (g_r.norm() * g_f.norm() + gamma * gf2);
      EXPECT_NEAR(d.dot(g_f), gamma * gf2, tol) << "gamma " << gamma << ", step " << k;
    };
    const Vector manual =
        manual_blur(p, p.start(), gamma, SgdOptions{.learning_rate = lr}, 300, visit);
    EXPECT_GT(projected, 250);
    // The solver takes exactly these steps.
    const BlurResult r = BlurSolver(sgd(lr, 300, gamma)).minimize(p, p.start());
    EXPECT_EQ(r.theta, manual) << "gamma " << gamma;
  }
}

// ---- the free functions ---------------------------------------------------------------------

TEST(BlurDirection, FormulaGuardAndWeightedSum) {
  const Vector g_f = vec2(3.0, 4.0), g_r = vec2(1.0, -2.0);
  // <g_r, g_f> = -5, |g_f|^2 = 25: d = g_r + (2 + 0.2) g_f.
  const Vector d = blur_direction(g_f, g_r, 2.0);
  EXPECT_NEAR((d - (g_r + 2.2 * g_f)).norm(), 0.0, 1e-15);
  EXPECT_NEAR(d.dot(g_f), 2.0 * 25.0, 1e-13);

  Vector out(2);
  EXPECT_EQ(blur_direction(Vector::Zero(2), g_r, 1.0, out), BlurDirectionCase::kZeroForgetGradient);
  EXPECT_EQ(out, g_r);
  EXPECT_EQ(blur_direction(g_f, g_r, 1.0, out), BlurDirectionCase::kProjected);

  weighted_sum_direction(g_f, g_r, 0.5, out);
  EXPECT_EQ(out, vec2(3.5, 3.0));

  Vector wrong(3);
  EXPECT_THROW(blur_direction(g_f, Vector::Zero(3), 1.0, out), ShapeError);
  EXPECT_THROW(blur_direction(g_f, g_r, 1.0, wrong), ShapeError);
  EXPECT_THROW(weighted_sum_direction(g_f, g_r, 1.0, wrong), ShapeError);
  for (double gamma : {0.0, -1.0, kNan})
    EXPECT_TRUE(contains(message_of<InvalidArgumentError>([&] { blur_direction(g_f, g_r, gamma); }),
                         "gamma"));
  EXPECT_THROW(weighted_sum_direction(g_f, g_r, -1.0, out), InvalidArgumentError);
}

// ---- the |g_f| == 0 guard -------------------------------------------------------------------

TEST(BlurGuard, SpecGuardKicksAtConvergenceKeepLastNormalDoesNot) {
  const B1 p;
  // The spec's guard: at the first exact zero of a^T theta - b the step is a plain retain step,
  // which moves theta by lr <c - theta, a>/|a|^2 a = 0.05 (1, 1) off the level set.
  const BlurResult spec = BlurSolver(sgd(0.1, 200)).minimize(p, p.start());
  ASSERT_GE(spec.guard_steps, 1);
  double worst_after_guard = 0.0;
  for (std::size_t k = 150; k < spec.history.size(); ++k)
    worst_after_guard = std::max(worst_after_guard, spec.history.rows[k].error);
  EXPECT_GT(worst_after_guard, 0.05);             // the kick, |0.05 (1, 1)| = 0.0707
  EXPECT_GT(p.solution_error(spec.theta), 1e-6);  // not yet recovered at step 200

  BlurOptions keep = sgd(0.1, 200);
  keep.zero_forget_gradient = BlurOptions::ZeroForgetGradient::kKeepLastNormal;
  const BlurResult r = BlurSolver(keep).minimize(p, p.start());
  EXPECT_GE(r.guard_steps, 1);
  for (std::size_t k = 1; k < r.history.size(); ++k)
    EXPECT_LE(r.history.rows[k].error, r.history.rows[k - 1].error + 1e-15) << "row " << k;
  // Across a the contraction is 0.9 every step; along a only rounding is left.
  const double across = std::pow(0.9, 200) * 3.0 / std::sqrt(2.0);
  EXPECT_NEAR(p.solution_error(r.theta), across, 1e-6 * across + 4.0 * kEps * 3.0);
  // Both reach the spec's 1000-step accuracy.
  keep.max_iterations = 1000;
  EXPECT_LE(p.solution_error(BlurSolver(keep).minimize(p, p.start()).theta),
            8.0 * kEps * p.solution().norm());
}

// ---- roles, step rules ----------------------------------------------------------------------

// B1 with its two losses exchanged: forget = 0.5 |theta - c|^2, retain = 0.5 (a^T theta - b)^2.
struct B1Exchanged {
  B1 b1;
  Index dimension() const { return 2; }
  double forget_loss(const Vector& t) const { return b1.retain_loss(t); }
  double retain_loss(const Vector& t) const { return b1.forget_loss(t); }
  void forget_gradient(const Vector& t, Vector& g) const { b1.retain_gradient(t, g); }
  void retain_gradient(const Vector& t, Vector& g) const { b1.forget_gradient(t, g); }
  double solution_error(const Vector& t) const { return b1.solution_error(t); }
};

TEST(BlurRoles, SwappedRolesMakeRetainTheLowerLevel) {
  const B1Exchanged p;
  BlurOptions o = sgd(0.1, 1000);
  o.swap_roles = true;
  const BlurResult r = BlurSolver(o).minimize(p, Vector::Zero(2));
  // Lower level: the retain loss (the hyperplane a^T theta = b); upper: the forget loss.
  EXPECT_LE(p.b1.solution_error(r.theta), 4.0 * kEps * p.b1.solution().norm());
  EXPECT_LT(r.retain_loss, 1e-28);
  EXPECT_NEAR(r.forget_loss, 0.25, 1e-14);  // 0.5 |(2.5, -0.5) - (3, 0)|^2, the problem's naming
  ASSERT_EQ(r.history.size(), 1000u);
  EXPECT_TRUE(std::isnan(r.history.rows[0].error));  // p's known solution is for forget-first
  EXPECT_DOUBLE_EQ(r.history.rows[0].loss, 4.5);     // the upper level is l_f = 0.5 |c|^2
  EXPECT_DOUBLE_EQ(r.history.rows[0].constraint_residual, 2.0 * std::sqrt(2.0));  // |g_r(0)|
  // The same functions in the same roles as B1 forget-first: the same trajectory, bit for bit.
  EXPECT_EQ(r.theta, BlurSolver(sgd(0.1, 1000)).minimize(B1{}, Vector::Zero(2)).theta);
  // ... and the same as handing the solver the swapped objective in the default order.
  EXPECT_EQ(r.theta, BlurSolver(sgd(0.1, 1000))
                         .minimize(make_forget_retain_objective(p).swapped(), Vector::Zero(2))
                         .theta);
}

TEST(BlurRoles, AnIsolatedLowerLevelMinimiserIsOnlyReachedToOrderLr) {
  // B1 with swapped roles: the lower level l_r = 0.5 |theta - c|^2 has the single minimiser c.
  // The BLUR direction removes only the component of g_upper along g_lower; the rest of
  // g_upper = a (a^T theta - b), of size ~|a|, never vanishes near c, so a fixed step settles
  // at a distance of about lr |g_upper| / 2 from c instead of converging (measured: 0.0660 at
  // lr 0.1, 0.00702 at lr 0.01).
  const B1 p;
  for (double lr : {0.1, 0.01}) {
    BlurOptions o = sgd(lr, static_cast<int>(300 / lr));
    o.swap_roles = true;
    const BlurResult r = BlurSolver(o).minimize(p, p.start());
    const double distance = (r.theta - p.c()).norm();
    EXPECT_GT(distance, 0.6 * lr) << "lr " << lr;
    EXPECT_LT(distance, 0.75 * lr) << "lr " << lr;
    RecordProperty("distance_lr_" + std::to_string(lr), sci(distance));
  }
}

TEST(BlurStepRules, AdamAndAdamWRunThroughTheSameSolver) {
  const B1 p;
  const StepRuleOptions adam = AdamOptions{.learning_rate = 0.01};
  const StepRuleOptions adamw = AdamOptions{.learning_rate = 0.01, .weight_decay = 0.01};
  for (const StepRuleOptions& step : {adam, adamw}) {
    const BlurResult r =
        BlurSolver({.step = step, .max_iterations = 3000, .tolerance = 0.0}).minimize(p, p.start());
    const Vector manual = manual_blur(p, p.start(), 1.0, step, 3000, [](auto&&...) {});
    EXPECT_EQ(r.theta, manual) << step_rule_name(step);
    RecordProperty("error_" + step_rule_name(step), sci(p.solution_error(r.theta)));
  }
  const double e_adam =
      p.solution_error(BlurSolver({.step = adam, .max_iterations = 3000, .tolerance = 0.0})
                           .minimize(p, p.start())
                           .theta);
  const double e_adamw =
      p.solution_error(BlurSolver({.step = adamw, .max_iterations = 3000, .tolerance = 0.0})
                           .minimize(p, p.start())
                           .theta);
  // Measured: Adam 3.8e-15 (its effective step shrinks with the gradient: v decays slower
  // than m), AdamW 5.1e-3 (the decoupled decay lr wd theta is balanced by a nonzero direction).
  EXPECT_LT(e_adam, 1e-12);
  EXPECT_GT(e_adamw, 1e-3);
  EXPECT_LT(e_adamw, 1e-2);
  EXPECT_NE(e_adam, e_adamw);  // the decoupled decay moves the fixed point
  // The default step rule is AdamW.
  EXPECT_EQ(step_rule_name(BlurOptions{}.step), "adamw");
}

// ---- callbacks ------------------------------------------------------------------------------

struct StopAt {
  int at;
  int seen = 0;
  bool on_iteration(const IterationRecord& r) {
    ++seen;
    return r.iteration < at;
  }
};

TEST(BlurCallbacks, ACallbackStopsTheRun) {
  const B1 p;
  StopAt stop{.at = 5};
  const BlurResult r = BlurSolver(sgd(0.1, 100)).minimize(p, p.start(), stop);
  EXPECT_EQ(r.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(r.iterations, 6);
  EXPECT_EQ(stop.seen, 6);
}

// ---- bad input ------------------------------------------------------------------------------

TEST(BlurBadInput, OptionsNameTheField) {
  auto msg = [](BlurOptions o) { return message_of<InvalidArgumentError>([&] { BlurSolver{o}; }); };
  for (double gamma : {0.0, -1.0, kNan, std::numeric_limits<double>::infinity()}) {
    BlurOptions o;
    o.gamma = gamma;
    EXPECT_TRUE(contains(msg(o), "gamma")) << gamma;
  }
  BlurOptions o;
  o.step = SgdOptions{.learning_rate = 0.0};
  EXPECT_TRUE(contains(msg(o), "learning_rate")) << msg(o);
  o.step = AdamOptions{.learning_rate = -1.0};
  EXPECT_TRUE(contains(msg(o), "learning_rate")) << msg(o);
  o.step = AdamOptions{.beta1 = 1.0};
  EXPECT_TRUE(contains(msg(o), "beta1")) << msg(o);
  o = BlurOptions{};
  o.weight = -0.5;
  EXPECT_TRUE(contains(msg(o), "weight")) << msg(o);
  o = BlurOptions{};
  o.max_iterations = 0;
  EXPECT_TRUE(contains(msg(o), "max_iterations")) << msg(o);
  o = BlurOptions{};
  o.tolerance = -1.0;
  EXPECT_TRUE(contains(msg(o), "tolerance")) << msg(o);
  std::string why;
  EXPECT_TRUE(BlurOptions{}.is_valid(&why)) << why;
}

struct WrongGradientSize : B1 {
  void forget_gradient(const Vector&, Vector& g) const { g = Vector::Zero(3); }
};

TEST(BlurBadInput, ShapesAndNonFiniteStart) {
  const B1 p;
  const BlurSolver solver(sgd(0.1, 10));
  const std::string m = message_of<ShapeError>([&] { solver.minimize(p, Vector::Zero(3)); });
  EXPECT_TRUE(contains(m, "theta0 has size 3") && contains(m, "dimension is 2")) << m;
  EXPECT_THROW(solver.minimize(p, vec2(kNan, 0.0)), InvalidArgumentError);
  EXPECT_THROW(solver.minimize(WrongGradientSize{}, vec2(0.0, 0.0)), ShapeError);
}

// Delegates to P until `healthy_calls` forget-gradient calls have been made, then returns NaN.
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
  double solution_error(const Vector& t) const { return p.solution_error(t); }
};

struct InfRetainLoss : B2 {
  double retain_loss(const Vector& t) const {
    return t[0] > 0.9 ? std::numeric_limits<double>::infinity() : B2::retain_loss(t);
  }
};

TEST(BlurNumerics, NanFromAnOracleKeepsTheLastFiniteIterate) {
  const B1 p;
  const int healthy = 20;  // calls 1..20 evaluate theta_0 .. theta_19; theta_20 comes back NaN
  const NanAfter<B1> broken{p, healthy};
  const BlurResult r = BlurSolver(sgd(0.1, 100)).minimize(broken, p.start());
  EXPECT_EQ(r.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(r.message, "forget gradient")) << r.message;
  EXPECT_TRUE(r.theta.allFinite());
  EXPECT_TRUE(std::isfinite(r.forget_loss) && std::isfinite(r.retain_loss));
  EXPECT_EQ(r.iterations, healthy - 1);
  EXPECT_EQ(r.history.size(), static_cast<std::size_t>(healthy - 1));
  const BlurResult clean = BlurSolver(sgd(0.1, healthy - 1)).minimize(p, p.start());
  EXPECT_EQ(r.theta, clean.theta);

  // NaN already at theta0 is refused.
  const NanAfter<B1> at_start{p, 0};
  EXPECT_THROW(BlurSolver(sgd(0.1, 10)).minimize(at_start, p.start()), NumericalError);

  // An infinite loss stops the run the same way.
  const InfRetainLoss inf;
  const BlurResult ri = BlurSolver(sgd(0.05, 500)).minimize(inf, inf.start());
  EXPECT_EQ(ri.status, StopReason::kNumericalError);
  EXPECT_TRUE(contains(ri.message, "retain loss")) << ri.message;
  EXPECT_LE(ri.theta[0], 0.9);
  EXPECT_TRUE(std::isfinite(ri.retain_loss));
}

TEST(BlurNumerics, DivergentStepStopsWithNumericalError) {
  const B1 p;
  // lr 2 with gamma |a|^2 = 2: the factor along a is 1 - 4 = -3: |theta| grows until overflow.
  const BlurResult r = BlurSolver(sgd(2.0, 5000)).minimize(p, p.start());
  EXPECT_EQ(r.status, StopReason::kNumericalError) << r.message;
  EXPECT_TRUE(r.theta.allFinite());
  EXPECT_TRUE(std::isfinite(r.forget_loss));
}

}  // namespace
}  // namespace tether
