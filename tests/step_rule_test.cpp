// core/step_rule and core/forget_retain_problem: SGD (momentum, decay) and Adam through StepRule
// against hand-rolled updates, option refusals, the finite-difference HVP against exact
// Hessians, and the type-erased forget/retain objective.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tether/core/adam.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/step_rule.hpp>

#include "error_message.hpp"

namespace tether {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using tether::testing::message_of;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();

Vector gaussian(Rng& rng, Index n, double scale = 1.0) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = scale * rng.normal();
  return v;
}

void expect_bitwise_equal(const Vector& a, const Vector& b) {
  ASSERT_EQ(a.size(), b.size());
  for (Index i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "entry " << i;
}

// ---- SGD -----------------------------------------------------------------------------------

TEST(StepRule, SgdStepIsExactlyXMinusLrD) {
  Rng rng(1);
  StepRule rule(SgdOptions{.learning_rate = 0.37});
  Vector x = gaussian(rng, 9);
  for (int t = 0; t < 5; ++t) {
    const Vector d = gaussian(rng, 9);
    Vector expected(9);
    for (Index i = 0; i < 9; ++i) expected[i] = x[i] - 0.37 * d[i];
    Vector out(9);
    rule.direction(x, d, out);
    Vector via_direction = x + out;
    rule.step(x, d);
    expect_bitwise_equal(x, expected);
    expect_bitwise_equal(via_direction, expected);
  }
  EXPECT_EQ(rule.learning_rate(), 0.37);
}

TEST(StepRule, HeavyBallMomentumMatchesAHandRolledLoop) {
  const double lr = 0.05, mu = 0.9;
  Rng rng(2);
  Vector x = gaussian(rng, 6), x_ref = x, v_ref = Vector::Zero(6);
  StepRule rule(SgdOptions{.learning_rate = lr, .momentum = mu});
  for (int t = 0; t < 30; ++t) {
    const Vector d = gaussian(rng, 6);
    for (Index i = 0; i < 6; ++i) {
      v_ref[i] = mu * v_ref[i] + d[i];
      x_ref[i] -= lr * v_ref[i];
    }
    rule.step(x, d);
    EXPECT_LE((x - x_ref).norm(), 1e-14 * x_ref.norm()) << "step " << t;
  }
  // Momentum really accumulates: on a constant direction, step t moves lr (1 - mu^t)/(1 - mu).
  StepRule constant(SgdOptions{.learning_rate = lr, .momentum = mu});
  Vector y = Vector::Zero(1), prev = y;
  const Vector one = Vector::Ones(1);
  for (int t = 1; t <= 4; ++t) {
    constant.step(y, one);
    EXPECT_NEAR(prev[0] - y[0], lr * (1.0 - std::pow(mu, t)) / (1.0 - mu), 1e-15);
    prev = y;
  }
  // reset() forgets the velocity: the next step is a first step again.
  constant.reset();
  prev = y;
  constant.step(y, one);
  EXPECT_NEAR(prev[0] - y[0], lr, 1e-15);
}

TEST(StepRule, WeightDecayMatchesItsClosedFormAndAHandRolledLoop) {
  // d = 0: x_t = (1 - lr wd)^t x_0.
  StepRule decay(SgdOptions{.learning_rate = 0.1, .weight_decay = 0.5});
  Vector x(2);
  x << 1.0, -3.0;
  for (int t = 0; t < 10; ++t) decay.step(x, Vector::Zero(2));
  EXPECT_NEAR(x[0], std::pow(0.95, 10), 1e-15);
  EXPECT_NEAR(x[1], -3.0 * std::pow(0.95, 10), 3e-15);

  // Momentum and decay together: x <- x - lr (v + wd x), v <- mu v + d (decay not in v).
  const double lr = 0.02, mu = 0.5, wd = 0.3;
  Rng rng(3);
  Vector y = gaussian(rng, 5), y_ref = y, v_ref = Vector::Zero(5);
  StepRule rule(SgdOptions{.learning_rate = lr, .momentum = mu, .weight_decay = wd});
  for (int t = 0; t < 20; ++t) {
    const Vector d = gaussian(rng, 5);
    for (Index i = 0; i < 5; ++i) {
      v_ref[i] = mu * v_ref[i] + d[i];
      y_ref[i] -= lr * (v_ref[i] + wd * y_ref[i]);
    }
    rule.step(y, d);
    EXPECT_LE((y - y_ref).norm(), 1e-14 * y_ref.norm()) << "step " << t;
  }
}

TEST(StepRule, AdamThroughStepRuleIsTetherAdamBitForBit) {
  for (const double wd : {0.0, 0.01}) {
    SCOPED_TRACE(wd);
    const AdamOptions options{.learning_rate = 3e-3, .beta1 = 0.8, .weight_decay = wd};
    StepRule rule(options);
    Adam adam(options);
    Rng rng(4);
    Vector x = gaussian(rng, 7), x_direct = x;
    for (int t = 0; t < 25; ++t) {
      const Vector g = gaussian(rng, 7);
      rule.step(x, g);
      adam.step(x_direct, g);
      expect_bitwise_equal(x, x_direct);
    }
    EXPECT_EQ(rule.learning_rate(), 3e-3);
    // The first Adam step moves each coordinate by lr * g / (|g| + eps) ~ lr, not lr * g.
    StepRule fresh(options);
    Vector z = Vector::Zero(1), g = Vector::Constant(1, 50.0);
    fresh.step(z, g);
    EXPECT_NEAR(z[0], -3e-3, 1e-12);
  }
}

TEST(StepRule, RefusesMismatchedSizes) {
  for (const StepRuleOptions& options :
       {StepRuleOptions{SgdOptions{}}, StepRuleOptions{SgdOptions{.momentum = 0.5}},
        StepRuleOptions{AdamOptions{}}}) {
    StepRule rule(options);
    Vector x = Vector::Zero(3), out = Vector::Zero(3);
    const Vector d = Vector::Zero(4);
    EXPECT_THAT(message_of<ShapeError>([&] { rule.step(x, d); }),
                AllOf(HasSubstr("size 4"), HasSubstr("parameter size 3")));
    EXPECT_THROW(rule.direction(x, d, out), ShapeError);
  }
}

TEST(StepRule, Names) {
  EXPECT_EQ(step_rule_name(SgdOptions{}), "sgd");
  EXPECT_EQ(step_rule_name(SgdOptions{.momentum = 0.9, .weight_decay = 0.1}), "sgd");
  EXPECT_EQ(step_rule_name(AdamOptions{}), "adam");
  EXPECT_EQ(step_rule_name(AdamOptions{.weight_decay = 0.01}), "adamw");
  EXPECT_EQ(StepRule(AdamOptions{.learning_rate = 0.5}).learning_rate(), 0.5);
  EXPECT_EQ(StepRule().learning_rate(), SgdOptions{}.learning_rate);
}

TEST(StepRule, ValidateRefusesOutOfDomainFieldsNamingThem) {
  struct Case {
    StepRuleOptions options;
    const char* field;
    const char* rule;
  };
  const Case cases[] = {
      {SgdOptions{.learning_rate = 0.0}, "learning_rate", "sgd"},
      {SgdOptions{.learning_rate = -0.1}, "learning_rate", "sgd"},
      {SgdOptions{.learning_rate = kNaN}, "learning_rate", "sgd"},
      {SgdOptions{.learning_rate = kInf}, "learning_rate", "sgd"},
      {SgdOptions{.momentum = -0.1}, "momentum must be in [0, 1)", "sgd"},
      {SgdOptions{.momentum = 1.0}, "momentum must be in [0, 1)", "sgd"},
      {SgdOptions{.momentum = kNaN}, "momentum", "sgd"},
      {SgdOptions{.weight_decay = -1e-3}, "weight_decay", "sgd"},
      {SgdOptions{.weight_decay = kNaN}, "weight_decay", "sgd"},
      {SgdOptions{.weight_decay = kInf}, "weight_decay", "sgd"},
      {AdamOptions{.learning_rate = 0.0}, "learning_rate", "adam"},
      {AdamOptions{.learning_rate = kNaN}, "learning_rate", "adam"},
      {AdamOptions{.beta1 = 1.0}, "beta1", "adam"},
      {AdamOptions{.beta2 = -0.5}, "beta2", "adam"},
      {AdamOptions{.epsilon = 0.0}, "epsilon", "adam"},
      {AdamOptions{.weight_decay = -0.1}, "weight_decay", "adam"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    const std::string message =
        message_of<InvalidArgumentError>([&] { validate_step_rule(c.options, "MySolver"); });
    EXPECT_THAT(message, AllOf(HasSubstr("MySolver: "), HasSubstr(c.rule), HasSubstr(c.field)));
    EXPECT_THROW(StepRule{c.options}, InvalidArgumentError);
  }
  // The valid edges pass.
  EXPECT_NO_THROW(validate_step_rule(SgdOptions{.momentum = 0.0}, "MySolver"));
  EXPECT_NO_THROW(validate_step_rule(SgdOptions{.momentum = 0.999, .weight_decay = 0.0}, "x"));
  EXPECT_NO_THROW(validate_step_rule(AdamOptions{.beta1 = 0.0, .weight_decay = 0.1}, "x"));
  std::string why = "untouched";
  EXPECT_TRUE(SgdOptions{}.is_valid(&why));
  EXPECT_EQ(why, "untouched");
  EXPECT_FALSE(SgdOptions{.momentum = 2.0}.is_valid(nullptr));  // no out-parameter needed
}

// ---- finite_difference_hvp -----------------------------------------------------------------

TEST(FiniteDifferenceHvp, IsExactToRoundingOnAQuadratic) {
  // f = 1/2 x^T H x + c^T x: the gradient is affine, so the central difference has no truncation
  // error; what remains is round-off, about eps |grad| / h * |v| ~ 2e-16 * 10 / 6e-6 ~ 4e-10
  // relative here. 1e-8 leaves a margin of ~25 and still catches any factor or sign error.
  Rng rng(5);
  const Index n = 6;
  Eigen::MatrixXd m(n, n);
  for (Index j = 0; j < n; ++j)
    for (Index i = 0; i < n; ++i) m(i, j) = rng.normal();
  const Eigen::MatrixXd h = m * m.transpose() + Eigen::MatrixXd::Identity(n, n);
  const Vector c = gaussian(rng, n);
  const GradientFunction gradient = [&](const Vector& x, Vector& g) { g = h * x + c; };
  for (int trial = 0; trial < 10; ++trial) {
    const Vector theta = gaussian(rng, n, 2.0);
    // Directions of very different lengths: the result is linear in v.
    const Vector v = gaussian(rng, n, std::pow(10.0, trial - 5));
    Vector out;  // resized by the call
    finite_difference_hvp(gradient, theta, v, out);
    const Vector exact = h * v;
    ASSERT_EQ(out.size(), n);
    EXPECT_LE((out - exact).norm(), 1e-8 * exact.norm()) << "trial " << trial;
  }
}

struct Logistic {
  Eigen::MatrixXd features;  ///< one sample a row
  Vector labels;             ///< +-1
  double l2 = 0.1;

  static double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }
  /// grad = sum_i -y_i sigma(-y_i z_i) x_i + l2 theta, z_i = x_i^T theta.
  void gradient(const Vector& theta, Vector& g) const {
    g = l2 * theta;
    for (Index i = 0; i < features.rows(); ++i) {
      const double margin = labels[i] * features.row(i).dot(theta);
      g -= labels[i] * sigmoid(-margin) * features.row(i).transpose();
    }
  }
  /// H = sum_i sigma(z_i) (1 - sigma(z_i)) x_i x_i^T + l2 I.
  Eigen::MatrixXd hessian(const Vector& theta) const {
    Eigen::MatrixXd h = l2 * Eigen::MatrixXd::Identity(theta.size(), theta.size());
    for (Index i = 0; i < features.rows(); ++i) {
      const double s = sigmoid(features.row(i).dot(theta));
      h += s * (1.0 - s) * features.row(i).transpose() * features.row(i);
    }
    return h;
  }
};

Logistic random_logistic(Rng& rng, Index samples, Index n) {
  Logistic f;
  f.features.resize(samples, n);
  f.labels.resize(samples);
  for (Index i = 0; i < samples; ++i) {
    for (Index j = 0; j < n; ++j) f.features(i, j) = rng.normal();
    f.labels[i] = rng.uniform() < 0.5 ? -1.0 : 1.0;
  }
  return f;
}

TEST(FiniteDifferenceHvp, MatchesTheAnalyticHessianOfALogisticLossToTheTaylorBound) {
  Rng rng(6);
  const Index n = 5;
  const Logistic f = random_logistic(rng, 40, n);
  const GradientFunction gradient = [&](const Vector& x, Vector& g) { f.gradient(x, g); };
  // Error bound. Truncation: g(t + h u) - g(t - h u) = 2 h H u + (h^3 / 3) D^3 g [u, u, u] + ...,
  // so the central difference is off by (h^2 / 6) |D^3 g [u, u, u]| |v|, and D^3 g is the fourth
  // derivative of the loss: sum_i l''''(z_i) (x_i^T u)^3 x_i with |l''''| = |sigma'''| <= 1/8,
  // so <= (1/8) sum_i |x_i|^4. Round-off: a few eps * (sum_i |x_i| + l2 |theta|) in each
  // gradient, divided by h, times |v|.
  double fourths = 0.0, firsts = 0.0;
  for (Index i = 0; i < f.features.rows(); ++i) {
    const double r = f.features.row(i).norm();
    fourths += r * r * r * r;
    firsts += r;
  }
  const double relative_step = 6.0e-6;
  for (int trial = 0; trial < 10; ++trial) {
    const Vector theta = gaussian(rng, n, 0.7);
    const Vector v = gaussian(rng, n);
    Vector out;
    finite_difference_hvp(gradient, theta, v, out, relative_step);
    const Vector exact = f.hessian(theta) * v;
    const double h = relative_step * std::max(1.0, theta.norm());
    const double bound = v.norm() * (h * h / 6.0 * 0.125 * fourths +
                                     8.0 * kEps * (firsts + f.l2 * theta.norm()) / h);
    EXPECT_LE((out - exact).norm(), bound) << "trial " << trial;
    // The bound (a few 1e-9 relative here; the measured error is ~3e-11) is within 1e-8.
    EXPECT_LE(bound, 1e-8 * exact.norm()) << "trial " << trial;
  }
}

TEST(FiniteDifferenceHvp, ErrorIsSecondOrderInTheStep) {
  // Where truncation dominates (h >> eps^(1/3)), halving h divides the error by ~4.
  Rng rng(7);
  const Logistic f = random_logistic(rng, 30, 4);
  const GradientFunction gradient = [&](const Vector& x, Vector& g) { f.gradient(x, g); };
  const Vector theta = gaussian(rng, 4, 0.5), v = gaussian(rng, 4);
  const Vector exact = f.hessian(theta) * v;
  Vector coarse, fine;
  finite_difference_hvp(gradient, theta, v, coarse, 2e-2);
  finite_difference_hvp(gradient, theta, v, fine, 1e-2);
  const double ratio = (coarse - exact).norm() / (fine - exact).norm();
  EXPECT_GT(ratio, 3.8);
  EXPECT_LT(ratio, 4.2);
}

TEST(FiniteDifferenceHvp, ZeroDirectionGivesExactlyZeroWithoutCallingTheGradient) {
  int calls = 0;
  const GradientFunction gradient = [&](const Vector& x, Vector& g) {
    ++calls;
    g = x;
  };
  Vector out = Vector::Constant(2, kNaN);  // wrong size and garbage: overwritten
  finite_difference_hvp(gradient, Vector::Ones(3), Vector::Zero(3), out);
  ASSERT_EQ(out.size(), 3);
  for (Index i = 0; i < 3; ++i) EXPECT_EQ(out[i], 0.0);
  EXPECT_FALSE(std::signbit(out[0]));
  EXPECT_EQ(calls, 0);
}

TEST(FiniteDifferenceHvp, RefusesMismatchedSizesAndBadSteps) {
  const GradientFunction gradient = [](const Vector& x, Vector& g) { g = x; };
  Vector out;
  EXPECT_THAT(message_of<ShapeError>(
                  [&] { finite_difference_hvp(gradient, Vector::Ones(3), Vector::Ones(2), out); }),
              AllOf(HasSubstr("v has size 2"), HasSubstr("theta has size 3")));
  for (const double step : {0.0, -1e-6, kNaN, kInf}) {
    EXPECT_THAT(message_of<InvalidArgumentError>([&] {
                  finite_difference_hvp(gradient, Vector::Ones(2), Vector::Ones(2), out, step);
                }),
                HasSubstr("relative_step must be finite and > 0"));
  }
}

// ---- make_forget_retain_objective ----------------------------------------------------------

/// forget: 1/2 theta^T F theta, retain: 1/2 |theta - c|^2 w; both with exact HVPs that count
/// their calls and add a marker the finite difference could not produce.
struct ExactProblem {
  Eigen::MatrixXd f;
  Vector c;
  double w = 2.0;
  mutable int forget_hvp_calls = 0, retain_hvp_calls = 0;

  Index dimension() const { return c.size(); }
  double forget_loss(const Vector& t) const { return 0.5 * t.dot(f * t); }
  double retain_loss(const Vector& t) const { return 0.5 * w * (t - c).squaredNorm(); }
  void forget_gradient(const Vector& t, Vector& g) const { g = f * t; }
  void retain_gradient(const Vector& t, Vector& g) const { g = w * (t - c); }
  void forget_hessian_vector(const Vector&, const Vector& v, Vector& out) const {
    ++forget_hvp_calls;
    out = f * v;
  }
  void retain_hessian_vector(const Vector&, const Vector& v, Vector& out) const {
    ++retain_hvp_calls;
    out = w * v;
  }
  double solution_error(const Vector& t) const { return (t - c).norm(); }
};

/// The same losses, no HVPs and no known solution: the library must fill the HVPs in.
struct GradientOnlyProblem {
  Eigen::MatrixXd f;
  Vector c;
  double w = 2.0;
  mutable int gradient_calls = 0;

  Index dimension() const { return c.size(); }
  double forget_loss(const Vector& t) const { return 0.5 * t.dot(f * t); }
  double retain_loss(const Vector& t) const { return 0.5 * w * (t - c).squaredNorm(); }
  void forget_gradient(const Vector& t, Vector& g) const {
    ++gradient_calls;
    g = f * t;
  }
  void retain_gradient(const Vector& t, Vector& g) const {
    ++gradient_calls;
    g = w * (t - c);
  }
};

/// Exact forget HVP only.
struct HalfExactProblem : GradientOnlyProblem {
  void forget_hessian_vector(const Vector&, const Vector& v, Vector& out) const { out = f * v; }
};

struct NotAProblem {  // no retain_gradient
  Index dimension() const { return 1; }
  double forget_loss(const Vector&) const { return 0; }
  double retain_loss(const Vector&) const { return 0; }
  void forget_gradient(const Vector&, Vector&) const {}
};

static_assert(ForgetRetainProblem<ExactProblem>);
static_assert(ForgetRetainProblem<GradientOnlyProblem>);
static_assert(!ForgetRetainProblem<NotAProblem>);

template <class P>
P make_problem(std::uint64_t seed) {
  Rng rng(seed);
  P p;
  Eigen::MatrixXd m(4, 4);
  for (Index j = 0; j < 4; ++j)
    for (Index i = 0; i < 4; ++i) m(i, j) = rng.normal();
  p.f = m * m.transpose();
  p.c = gaussian(rng, 4);
  return p;
}

TEST(ForgetRetainObjective, UsesExactHessianVectorProductsWhereTheProblemHasThem) {
  const ExactProblem p = make_problem<ExactProblem>(8);
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  EXPECT_EQ(o.dimension, 4);
  EXPECT_TRUE(o.forget_hvp_exact);
  EXPECT_TRUE(o.retain_hvp_exact);
  Rng rng(9);
  const Vector theta = gaussian(rng, 4), v = gaussian(rng, 4);
  Vector out, direct;
  o.forget_hvp(theta, v, out);
  p.forget_hessian_vector(theta, v, direct);
  expect_bitwise_equal(out, direct);
  EXPECT_EQ(p.forget_hvp_calls, 2);
  o.retain_hvp(theta, v, out);
  expect_bitwise_equal(out, 2.0 * v);
  EXPECT_EQ(p.retain_hvp_calls, 1);
  EXPECT_EQ(o.forget_loss(theta), p.forget_loss(theta));
  EXPECT_EQ(o.retain_loss(theta), p.retain_loss(theta));
  Vector g(4), g_direct(4);
  o.retain_gradient(theta, g);
  p.retain_gradient(theta, g_direct);
  expect_bitwise_equal(g, g_direct);
  ASSERT_TRUE(o.solution_error);
  EXPECT_EQ(o.solution_error(p.c), 0.0);
  EXPECT_EQ(o.solution_error(theta), (theta - p.c).norm());
}

TEST(ForgetRetainObjective, FallsBackToFiniteDifferencesOfTheGradient) {
  const GradientOnlyProblem p = make_problem<GradientOnlyProblem>(8);
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  EXPECT_FALSE(o.forget_hvp_exact);
  EXPECT_FALSE(o.retain_hvp_exact);
  EXPECT_FALSE(o.solution_error);
  Rng rng(9);
  const Vector theta = gaussian(rng, 4), v = gaussian(rng, 4);
  Vector out;
  o.forget_hvp(theta, v, out);
  EXPECT_EQ(p.gradient_calls, 2);  // one central difference: two gradients
  const Vector exact = p.f * v;
  EXPECT_LE((out - exact).norm(), 1e-8 * exact.norm());  // quadratic: round-off only
  Vector reference;
  finite_difference_hvp([&](const Vector& t, Vector& g) { g = p.f * t; }, theta, v, reference);
  expect_bitwise_equal(out, reference);  // it is finite_difference_hvp at its default step
  o.retain_hvp(theta, v, out);
  EXPECT_LE((out - 2.0 * v).norm(), 1e-8 * 2.0 * v.norm());
}

TEST(ForgetRetainObjective, SwappedExchangesTheRoles) {
  const HalfExactProblem p = make_problem<HalfExactProblem>(10);
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  EXPECT_TRUE(o.forget_hvp_exact);
  EXPECT_FALSE(o.retain_hvp_exact);
  const ForgetRetainObjective s = o.swapped();
  EXPECT_FALSE(s.forget_hvp_exact);
  EXPECT_TRUE(s.retain_hvp_exact);
  EXPECT_EQ(s.dimension, o.dimension);
  Rng rng(11);
  const Vector theta = gaussian(rng, 4), v = gaussian(rng, 4);
  EXPECT_EQ(s.forget_loss(theta), p.retain_loss(theta));
  EXPECT_EQ(s.retain_loss(theta), p.forget_loss(theta));
  EXPECT_NE(s.forget_loss(theta), s.retain_loss(theta));
  Vector a(4), b(4);
  s.forget_gradient(theta, a);
  p.retain_gradient(theta, b);
  expect_bitwise_equal(a, b);
  s.retain_gradient(theta, a);
  p.forget_gradient(theta, b);
  expect_bitwise_equal(a, b);
  s.retain_hvp(theta, v, a);  // the exact forget HVP, now in the retain role
  expect_bitwise_equal(a, Vector(p.f * v));
  s.forget_hvp(theta, v, a);  // finite differences of w (theta - c)
  EXPECT_LE((a - 2.0 * v).norm(), 1e-8 * 2.0 * v.norm());
  // Swapping twice gives the original roles back.
  const ForgetRetainObjective back = s.swapped();
  EXPECT_TRUE(back.forget_hvp_exact);
  EXPECT_EQ(back.forget_loss(theta), p.forget_loss(theta));
}

}  // namespace
}  // namespace tether
