// core/task_vector (specs/projection.md, section 2, "Task arithmetic utilities"): the algebra of
// named tensors, the 21-point alpha searches for addition and constrained negation on
// evaluators with known optima, the disentanglement error on a linear model (exactly 0 with
// task vectors on disjoint inputs; the closed form otherwise) and a nonlinear one (by hand),
// and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/task_vector.hpp>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using testing::contains;
using testing::message_of;
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

Matrix random_matrix(Rng& rng, Index rows, Index cols) {
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal();
  return m;
}

NamedTensors random_tensors(Rng& rng) {
  return NamedTensors{{"layer1.weight", random_matrix(rng, 3, 4)},
                      {"layer1.bias", random_matrix(rng, 3, 1)},
                      {"layer2.weight", random_matrix(rng, 2, 3)}};
}

Matrix scalar(double v) { return Matrix::Constant(1, 1, v); }

// ---- algebra ----------------------------------------------------------------------------------

TEST(TaskVector, CosineOfOrthogonalVectorsIsZeroAndOfAVectorWithItselfOne) {
  Rng rng(1);
  // Disjoint supports: exactly orthogonal.
  NamedTensors a{{"w", Matrix::Zero(2, 3)}, {"b", Matrix::Zero(1, 2)}};
  NamedTensors b = a;
  a.at("w").leftCols(2) = random_matrix(rng, 2, 2);
  a.at("b")(0, 0) = 1.5;
  b.at("w").rightCols(1) = random_matrix(rng, 2, 1);
  b.at("b")(0, 1) = -0.5;
  EXPECT_EQ(dot(a, b), 0.0);
  EXPECT_EQ(cosine(a, b), 0.0);

  const NamedTensors v = random_tensors(rng);
  EXPECT_NEAR(cosine(v, v), 1.0, 1e-15);
  EXPECT_LE(cosine(v, v), 1.0);
  EXPECT_NEAR(cosine(v, 2.5 * v), 1.0, 1e-15);
  EXPECT_NEAR(cosine(v, -v), -1.0, 1e-15);
  // A hand example: (1, 0, 1) and (1, 1, 0) over two tensors: cos = 1 / 2.
  const NamedTensors p{{"x", (Matrix(1, 2) << 1, 0).finished()}, {"y", scalar(1)}};
  const NamedTensors q{{"x", (Matrix(1, 2) << 1, 1).finished()}, {"y", scalar(0)}};
  EXPECT_EQ(dot(p, q), 1.0);
  EXPECT_EQ(norm(p), std::sqrt(2.0));
  EXPECT_NEAR(cosine(p, q), 0.5, 2.5e-16);  // 1 / (sqrt 2 sqrt 2): one ulp below 0.5
}

TEST(TaskVector, NormsOfSumsAndTheArithmeticIdentities) {
  Rng rng(2);
  const NamedTensors a = random_tensors(rng);
  const NamedTensors b = random_tensors(rng);
  // |a + b|^2 = |a|^2 + |b|^2 + 2 <a, b>.
  const double lhs = norm(a + b) * norm(a + b);
  const double rhs = norm(a) * norm(a) + norm(b) * norm(b) + 2.0 * dot(a, b);
  EXPECT_NEAR(lhs, rhs, 1e-13 * rhs);
  // Orthogonal: Pythagoras.
  NamedTensors o1{{"w", Matrix::Zero(2, 2)}}, o2{{"w", Matrix::Zero(2, 2)}};
  o1.at("w").row(0) << 3.0, 0.0;
  o2.at("w").row(1) << 0.0, 4.0;
  EXPECT_EQ(norm(o1 + o2), 5.0);

  // Exact identities of the arithmetic.
  const NamedTensors zero = zeros_like(a);
  EXPECT_EQ(norm(zero), 0.0);
  EXPECT_EQ(norm(a + (-a)), 0.0);
  EXPECT_EQ(flatten(2.0 * a, layout_of(a)), flatten(a + a, layout_of(a)));
  EXPECT_EQ(flatten(a * 0.5, layout_of(a)), flatten(0.5 * a, layout_of(a)));
  EXPECT_EQ(flatten(a - b, layout_of(a)), flatten(a + (-b), layout_of(a)));
  NamedTensors c = a;
  c.add_scaled(-0.75, b);
  EXPECT_EQ(flatten(c, layout_of(a)), flatten(a + (-0.75) * b, layout_of(a)));
  EXPECT_EQ(flatten(sum({a, b, zero}), layout_of(a)), flatten(a + b, layout_of(a)));

  // tau = theta_t - theta_0, and theta_0 + tau gives theta_t back.
  const NamedTensors theta0 = random_tensors(rng);
  const NamedTensors theta_t = random_tensors(rng);
  const TaskVector tau = task_vector(theta_t, theta0);
  const Vector back = flatten(theta0 + tau, layout_of(theta0));
  const Vector expected = flatten(theta_t, layout_of(theta0));
  EXPECT_LT((back - expected).cwiseAbs().maxCoeff(), 1e-15 * expected.cwiseAbs().maxCoeff() * 4);

  // Flat forms: name order, a lossless round trip, the same inner product.
  const ParameterLayout layout = layout_of(a);
  ASSERT_EQ(layout.blocks().size(), 3u);
  EXPECT_EQ(layout.blocks()[0].name, "layer1.bias");  // name order
  EXPECT_EQ(layout.size(), a.parameter_count());
  EXPECT_EQ(a.parameter_count(), 12 + 3 + 6);
  const Vector fa = flatten(a, layout);
  EXPECT_EQ(flatten(unflatten(fa, layout), layout), fa);
  EXPECT_EQ(unflatten(fa, layout).at("layer2.weight"), a.at("layer2.weight"));
  EXPECT_NEAR(dot(a, b), fa.dot(flatten(b, layout)), 1e-13);
  EXPECT_EQ(a.names(), (std::vector<std::string>{"layer1.bias", "layer1.weight", "layer2.weight"}));
}

TEST(TaskVector, MismatchedNamesAndShapesAreRefused) {
  Rng rng(3);
  const NamedTensors a = random_tensors(rng);
  NamedTensors missing = a;
  NamedTensors renamed;
  for (const auto& [name, m] : a) renamed.insert(name == "layer1.bias" ? "layer1.b" : name, m);
  std::string msg = message_of<ShapeError>([&] { (void)(a + renamed); });
  EXPECT_TRUE(contains(msg, "'layer1.bias'") && contains(msg, "missing")) << msg;
  msg = message_of<ShapeError>([&] { (void)dot(renamed, a); });
  EXPECT_TRUE(contains(msg, "'layer1.b'")) << msg;
  NamedTensors extra = a;
  extra.insert("head", Matrix::Zero(2, 2));
  msg = message_of<ShapeError>([&] { (void)(a - extra); });
  EXPECT_TRUE(contains(msg, "'head'")) << msg;
  NamedTensors reshaped = a;
  reshaped.at("layer1.weight") = Matrix::Zero(4, 3);
  msg = message_of<ShapeError>([&] { (void)cosine(a, reshaped); });
  EXPECT_TRUE(contains(msg, "'layer1.weight'") && contains(msg, "3 x 4") && contains(msg, "4 x 3"))
      << msg;
  EXPECT_THROW((void)task_vector(a, reshaped), ShapeError);

  // A zero vector has no direction.
  msg = message_of<InvalidArgumentError>([&] { (void)cosine(zeros_like(a), a); });
  EXPECT_TRUE(contains(msg, "norm 0")) << msg;
  EXPECT_THROW((void)cosine(a, zeros_like(a)), InvalidArgumentError);
  // Names: repeated, empty, absent; an empty sum; a layout that does not fit.
  EXPECT_THROW(missing.insert("layer1.bias", Matrix::Zero(1, 1)), InvalidArgumentError);
  EXPECT_THROW(missing.insert("", Matrix::Zero(1, 1)), InvalidArgumentError);
  msg = message_of<InvalidArgumentError>([&] { (void)a.at("nope"); });
  EXPECT_TRUE(contains(msg, "'nope'")) << msg;
  EXPECT_THROW((void)sum({}), InvalidArgumentError);
  EXPECT_THROW((void)flatten(reshaped, layout_of(a)), ShapeError);
  EXPECT_THROW((void)flatten(extra, layout_of(a)), ShapeError);
  EXPECT_THROW((void)unflatten(Vector::Zero(5), layout_of(a)), ShapeError);
}

// ---- the alpha searches -----------------------------------------------------------------------

TEST(AlphaGrid, TwentyOnePointsFromZeroToOne) {
  const std::vector<double> v = AlphaGrid{}.values();
  ASSERT_EQ(v.size(), 21u);
  for (int i = 0; i < 21; ++i) EXPECT_EQ(v[static_cast<std::size_t>(i)], i / 20.0);
  std::string why;
  EXPECT_FALSE((AlphaGrid{.lo = 1.0, .hi = 0.0}.is_valid(&why)));
  EXPECT_TRUE(contains(why, "lo <= hi")) << why;
  EXPECT_FALSE((AlphaGrid{.points = 1}.is_valid(&why)));
  EXPECT_FALSE((AlphaGrid{.hi = kNan}.is_valid(&why)));
  EXPECT_EQ((AlphaGrid{.lo = 0.3, .hi = 0.3, .points = 1}.values()), std::vector<double>{0.3});
}

// Two tasks on theta = {"x": (x1, x2)}, theta_0 = 0, tau_1 = e_1, tau_2 = e_2:
//   acc_1 = 1 - (x1 - 0.7)^2 - 0.3 x2^2,   acc_2 = 0.5 (1 - (x2 - 0.7)^2 - 0.3 x1^2).
// Fine-tuned: acc_1(e_1) = 0.91, acc_2(e_2) = 0.455. Merged, x1 = x2 = alpha: both normalised
// accuracies are (1 - (alpha - 0.7)^2 - 0.3 alpha^2) / 0.91, a concave quadratic with its
// maximum at alpha = 1.4 / 2.6 = 0.538..., so the grid's best is 0.55: (1 - 0.0225 - 0.09075) /
// 0.91 = 0.88675 / 0.91.
TEST(AdditionSearch, FindsTheGridMaximumOfTheMeanNormalisedAccuracy) {
  const NamedTensors theta0{{"x", Matrix::Zero(1, 2)}};
  const TaskVector tau1{{"x", (Matrix(1, 2) << 1, 0).finished()}};
  const TaskVector tau2{{"x", (Matrix(1, 2) << 0, 1).finished()}};
  int calls = 0;
  const TaskEvaluator evaluate = [&calls](const NamedTensors& theta, std::size_t task) {
    ++calls;
    const double x1 = theta.at("x")(0, 0), x2 = theta.at("x")(0, 1);
    if (task == 0) return 1.0 - (x1 - 0.7) * (x1 - 0.7) - 0.3 * x2 * x2;
    return 0.5 * (1.0 - (x2 - 0.7) * (x2 - 0.7) - 0.3 * x1 * x1);
  };
  const AdditionSearchResult r = search_addition_alpha(theta0, {tau1, tau2}, evaluate);
  EXPECT_EQ(calls, 2 + 2 * 21);
  EXPECT_EQ(r.alpha, 0.55);
  EXPECT_EQ(r.best_index, 11u);
  EXPECT_NEAR(r.mean_normalized_accuracy, 0.88675 / 0.91, 1e-15);
  ASSERT_EQ(r.finetuned_accuracies.size(), 2u);
  EXPECT_NEAR(r.finetuned_accuracies[0], 0.91, 1e-15);
  EXPECT_NEAR(r.finetuned_accuracies[1], 0.455, 1e-15);
  ASSERT_EQ(r.accuracies.rows(), 21);
  ASSERT_EQ(r.accuracies.cols(), 2);
  EXPECT_NEAR(r.accuracies(11, 0), 0.88675, 1e-15);
  EXPECT_NEAR(r.accuracies(11, 1), 0.443375, 1e-15);
  EXPECT_NEAR(r.mean_normalized[0], 0.51 / 0.91, 1e-15);   // alpha = 0: theta_0
  EXPECT_NEAR(r.mean_normalized[20], 0.61 / 0.91, 1e-15);  // alpha = 1: the plain sum
  for (double v : r.mean_normalized) EXPECT_LE(v, r.mean_normalized_accuracy);
}

TEST(AdditionSearch, TiesGoToTheSmallerAlphaAndBadInputIsRefused) {
  const NamedTensors theta0{{"x", Matrix::Zero(1, 1)}};
  const TaskVector tau{{"x", scalar(1.0)}};
  const AdditionSearchResult flat =
      search_addition_alpha(theta0, {tau}, [](const NamedTensors&, std::size_t) { return 0.8; });
  EXPECT_EQ(flat.alpha, 0.0);
  EXPECT_EQ(flat.mean_normalized_accuracy, 1.0);

  EXPECT_THROW(
      search_addition_alpha(theta0, {}, [](const NamedTensors&, std::size_t) { return 1.0; }),
      InvalidArgumentError);
  const TaskVector wrong{{"y", scalar(1.0)}};
  EXPECT_THROW(
      search_addition_alpha(theta0, {wrong}, [](const NamedTensors&, std::size_t) { return 1.0; }),
      ShapeError);
  std::string msg = message_of<InvalidArgumentError>([&] {
    search_addition_alpha(theta0, {tau}, [](const NamedTensors&, std::size_t) { return 0.0; });
  });
  EXPECT_TRUE(contains(msg, "fine-tuned accuracy of task 0 is 0")) << msg;
  msg = message_of<NumericalError>([&] {
    search_addition_alpha(theta0, {tau}, [](const NamedTensors& t, std::size_t) {
      return t.at("x")(0, 0) == 0.5 ? kNan : 0.7;
    });
  });
  EXPECT_TRUE(contains(msg, "alpha = 0.5")) << msg;
  EXPECT_THROW(
      search_addition_alpha(theta0, {tau}, [](const NamedTensors&, std::size_t) { return -0.1; }),
      NumericalError);
  EXPECT_THROW(
      search_addition_alpha(theta0, {tau}, [](const NamedTensors&, std::size_t) { return 1.0; },
                            {.lo = 0.0, .hi = 1.0, .points = 1}),
      InvalidArgumentError);
  EXPECT_THROW(search_addition_alpha(theta0, {tau}, TaskEvaluator{}), InvalidArgumentError);
}

// theta = {"w"}, theta_0 = 0, tau = 1, so theta_0 - alpha tau has w = -alpha:
//   target  = 0.9 + 0.8 w = 0.9 - 0.8 alpha        (falls as the task is negated)
//   control = 0.8 - 0.5 w^2 = 0.8 - 0.5 alpha^2    (zero-shot 0.8; threshold 0.95 * 0.8 = 0.76)
// Feasible: alpha <= sqrt(0.08) = 0.283; the grid's lowest feasible target is at alpha = 0.25:
// target 0.7, control 0.8 - 0.03125 = 0.76875.
const NamedTensors kTheta0{{"w", Matrix::Zero(1, 1)}};
const TaskVector kTau{{"w", Matrix::Constant(1, 1, 1.0)}};
double target_of(const NamedTensors& t) { return 0.9 + 0.8 * t.at("w")(0, 0); }
double control_of(const NamedTensors& t) {
  const double w = t.at("w")(0, 0);
  return 0.8 - 0.5 * w * w;
}

TEST(NegationSearch, MinimisesTheTargetWhileTheControlKeeps95PercentOfZeroShot) {
  const NegationSearchResult r = search_negation_alpha(kTheta0, kTau, target_of, control_of);
  EXPECT_TRUE(r.feasible);
  EXPECT_EQ(r.alpha, 0.25);
  EXPECT_EQ(r.best_index, 5u);
  EXPECT_NEAR(r.target_accuracy, 0.7, 1e-15);
  EXPECT_NEAR(r.control_accuracy, 0.76875, 1e-15);
  EXPECT_EQ(r.zero_shot_target, 0.9);
  EXPECT_EQ(r.zero_shot_control, 0.8);
  EXPECT_NEAR(r.control_threshold, 0.76, 1e-15);
  ASSERT_EQ(r.alphas.size(), 21u);
  // The next grid point breaks the constraint: 0.8 - 0.5 * 0.09 = 0.755 < 0.76.
  EXPECT_NEAR(r.control_accuracies[6], 0.755, 1e-15);
  EXPECT_LT(r.control_accuracies[6], r.control_threshold);
  EXPECT_LT(r.target_accuracies[6], r.target_accuracy);  // lower target, but infeasible

  // A looser constraint, control >= 50% of zero-shot = 0.4: alpha <= sqrt(0.8) = 0.894, so the
  // grid's best is 0.85: target 0.9 - 0.68 = 0.22.
  const NegationSearchResult loose =
      search_negation_alpha(kTheta0, kTau, target_of, control_of, {.control_fraction = 0.5});
  EXPECT_TRUE(loose.feasible);
  EXPECT_EQ(loose.alpha, 0.85);
  EXPECT_NEAR(loose.target_accuracy, 0.22, 1e-15);
  EXPECT_LT(loose.control_accuracies[18], 0.4);  // alpha = 0.9: 0.395
}

TEST(NegationSearch, ExactlyNinetyFivePercentIsFeasible) {
  // Zero-shot control 1; exactly 0.95 for 0 < alpha <= 0.5 (0.95 * 1 = 0.95 in floating point),
  // 0.5 beyond. ">= 95%" admits alpha = 0.5, where the target is lowest among the feasible.
  const AccuracyFunction control = [](const NamedTensors& t) {
    const double w = t.at("w")(0, 0);
    return w == 0.0 ? 1.0 : (w >= -0.5 ? 0.95 : 0.5);
  };
  const NegationSearchResult r = search_negation_alpha(kTheta0, kTau, target_of, control);
  ASSERT_EQ(r.control_threshold, 0.95);
  EXPECT_TRUE(r.feasible);
  EXPECT_EQ(r.alpha, 0.5);
  EXPECT_EQ(r.control_accuracy, 0.95);
}

TEST(NegationSearch, ReportsWhenNoAlphaIsFeasibleAndRefusesBadInput) {
  // A grid that leaves out small alphas: every control accuracy is below 0.76.
  const NegationSearchResult r = search_negation_alpha(
      kTheta0, kTau, target_of, control_of, {.grid = {.lo = 0.5, .hi = 1.0, .points = 11}});
  EXPECT_FALSE(r.feasible);
  // The report: the nearest miss, the grid point with the highest control accuracy.
  EXPECT_EQ(r.alpha, 0.5);
  EXPECT_EQ(r.best_index, 0u);
  EXPECT_NEAR(r.control_accuracy, 0.675, 1e-15);
  EXPECT_NEAR(r.target_accuracy, 0.5, 1e-15);
  EXPECT_TRUE(std::isfinite(r.alpha) && std::isfinite(r.target_accuracy));

  // The nearest miss in the middle of the grid: a control accuracy peaking at alpha = 0.75
  // (0.7 < 0.76), with zero-shot 0.8.
  const AccuracyFunction peaked = [](const NamedTensors& t) {
    const double w = t.at("w")(0, 0);
    return w == 0.0 ? 0.8 : 0.7 - (w + 0.75) * (w + 0.75);
  };
  const NegationSearchResult mid = search_negation_alpha(
      kTheta0, kTau, target_of, peaked, {.grid = {.lo = 0.5, .hi = 1.0, .points = 11}});
  EXPECT_FALSE(mid.feasible);
  EXPECT_EQ(mid.alpha, 0.75);
  EXPECT_EQ(mid.best_index, 5u);
  EXPECT_NEAR(mid.control_accuracy, 0.7, 1e-15);
  EXPECT_NEAR(mid.target_accuracy, 0.3, 1e-15);

  std::string msg = message_of<InvalidArgumentError>([&] {
    search_negation_alpha(kTheta0, kTau, target_of, control_of, {.control_fraction = 1.5});
  });
  EXPECT_TRUE(contains(msg, "control_fraction") && contains(msg, "1.5")) << msg;
  EXPECT_THROW(
      search_negation_alpha(kTheta0, kTau, target_of, control_of, {.control_fraction = 0.0}),
      InvalidArgumentError);
  EXPECT_THROW(
      search_negation_alpha(kTheta0, TaskVector{{"v", scalar(1.0)}}, target_of, control_of),
      ShapeError);
  EXPECT_THROW(search_negation_alpha(
                   kTheta0, kTau, [](const NamedTensors&) { return kNan; }, control_of),
               NumericalError);
  EXPECT_THROW(search_negation_alpha(kTheta0, kTau, AccuracyFunction{}, control_of),
               InvalidArgumentError);
}

// ---- disentanglement error --------------------------------------------------------------------

// f(x; W, b) = W x + b: linear in x and in theta.
Vector linear_model(const Vector& x, const NamedTensors& theta) {
  return theta.at("W") * x + theta.at("b").col(0);
}

TEST(Disentanglement, ExactlyZeroForALinearModelWithTaskVectorsOnDisjointInputs) {
  Rng rng(4);
  const NamedTensors theta0{{"W", random_matrix(rng, 2, 4)}, {"b", random_matrix(rng, 2, 1)}};
  // tau_1 acts on input coordinates {0, 1}, tau_2 on {2, 3}; task t's inputs live on its own.
  TaskVector tau1 = zeros_like(theta0), tau2 = zeros_like(theta0);
  tau1.at("W").leftCols(2) = random_matrix(rng, 2, 2);
  tau2.at("W").rightCols(2) = random_matrix(rng, 2, 2);
  Matrix s1 = Matrix::Zero(5, 4), s2 = Matrix::Zero(7, 4);
  s1.leftCols(2) = random_matrix(rng, 5, 2);
  s2.rightCols(2) = random_matrix(rng, 7, 2);
  EXPECT_EQ(disentanglement_error(linear_model, theta0, tau1, tau2, 0.7, 1.3, s1, s2), 0.0);
  EXPECT_EQ(disentanglement_error(linear_model, theta0, tau1, tau2, -2.0, 0.4, s1, s2), 0.0);

  // Overlapping task vectors: for a linear model the difference on task 1's inputs is
  // a2 tau_2 x, so xi = mean_{S_1} |a2 tau_2 x| + mean_{S_2} |a1 tau_1 x|.
  const TaskVector full1{{"W", random_matrix(rng, 2, 4)}, {"b", Matrix::Zero(2, 1)}};
  const TaskVector full2{{"W", random_matrix(rng, 2, 4)}, {"b", Matrix::Zero(2, 1)}};
  const Matrix x1 = random_matrix(rng, 6, 4), x2 = random_matrix(rng, 3, 4);
  const double a1 = 0.6, a2 = 0.9;
  double expected = 0.0;
  for (Index i = 0; i < 6; ++i)
    expected += (a2 * full2.at("W") * x1.row(i).transpose()).norm() / 6.0;
  for (Index i = 0; i < 3; ++i)
    expected += (a1 * full1.at("W") * x2.row(i).transpose()).norm() / 3.0;
  const double xi = disentanglement_error(linear_model, theta0, full1, full2, a1, a2, x1, x2);
  EXPECT_NEAR(xi, expected, 1e-14 * expected);
  EXPECT_GT(xi, 0.1);

  // Three tasks on disjoint inputs: still exactly 0; T = 1 is 0 by definition.
  TaskVector tau3 = zeros_like(theta0);
  tau3.at("W").col(3) = random_matrix(rng, 2, 1);
  tau2.at("W").col(3).setZero();
  Matrix s3 = Matrix::Zero(4, 4);
  s3.col(3) = random_matrix(rng, 4, 1);
  s2.col(3).setZero();
  EXPECT_EQ(disentanglement_error(linear_model, theta0, {tau1, tau2, tau3}, {1.0, 1.0, 1.0},
                                  {s1, s2, s3}),
            0.0);
  EXPECT_EQ(disentanglement_error(linear_model, theta0, {full1}, {1.0}, {x1}), 0.0);
}

// f(x; w) = tanh(w x), theta_0: w = 0.5, tau_1 = 1, tau_2 = -0.5, a1 = a2 = 1:
//   theta_1 = 1.5, theta_2 = 0, theta_1 + theta_2 - theta_0 = 1.0.  S_1 = {1, 2}, S_2 = {-1}:
//   xi = (|tanh 1.5 - tanh 1| + |tanh 3 - tanh 2|) / 2 + |tanh 0 - tanh(-1)|
//      = (0.14355409768910155 + 0.03102717361091356) / 2 + 0.7615941559557649
//      = 0.8488847916057725.
TEST(Disentanglement, ANonlinearModelByHand) {
  const ModelFunction f = [](const Vector& x, const NamedTensors& theta) {
    return Vector::Constant(1, std::tanh(theta.at("w")(0, 0) * x[0]));
  };
  const NamedTensors theta0{{"w", scalar(0.5)}};
  const TaskVector tau1{{"w", scalar(1.0)}}, tau2{{"w", scalar(-0.5)}};
  const Matrix s1 = (Matrix(2, 1) << 1.0, 2.0).finished();
  const Matrix s2 = (Matrix(1, 1) << -1.0).finished();
  EXPECT_NEAR(disentanglement_error(f, theta0, tau1, tau2, 1.0, 1.0, s1, s2), 0.8488847916057725,
              1e-15);
  // A custom distance, the squared difference: (0.1435...^2 + 0.0310...^2) / 2 + 0.7616^2.
  const OutputDistance squared = [](const Vector& y1, const Vector& y2) {
    return (y1 - y2).squaredNorm();
  };
  EXPECT_NEAR(disentanglement_error(f, theta0, tau1, tau2, 1.0, 1.0, s1, s2, squared),
              0.5908108906187808, 1e-15);
  // a2 = 0 leaves task 1's outputs alone: only task 2's term, |tanh(0 * -1) - tanh(1.5 * -1)|.
  EXPECT_NEAR(disentanglement_error(f, theta0, tau1, tau2, 1.0, 0.0, s1, s2),
              std::abs(std::tanh(0.5 * -1.0) - std::tanh(1.5 * -1.0)), 1e-15);
}

TEST(Disentanglement, RefusesBadInput) {
  const NamedTensors theta0{{"W", Matrix::Zero(2, 3)}, {"b", Matrix::Zero(2, 1)}};
  const TaskVector tau = zeros_like(theta0);
  const Matrix s = Matrix::Ones(2, 3);
  std::string msg = message_of<ShapeError>([&] {
    disentanglement_error(linear_model, theta0, {tau, tau}, {1.0}, {s, s});
  });
  EXPECT_TRUE(contains(msg, "2 task vectors, 1 alphas and 2 sample sets")) << msg;
  msg = message_of<InvalidArgumentError>(
      [&] { disentanglement_error(linear_model, theta0, tau, tau, 1.0, 1.0, s, Matrix(0, 3)); });
  EXPECT_TRUE(contains(msg, "sample set of task 1 is empty")) << msg;
  EXPECT_THROW(disentanglement_error(linear_model, theta0, {}, {}, {}), InvalidArgumentError);
  EXPECT_THROW(disentanglement_error(linear_model, theta0, tau,
                                     TaskVector{{"W", Matrix::Zero(2, 3)}}, 1.0, 1.0, s, s),
               ShapeError);
  EXPECT_THROW(disentanglement_error(linear_model, theta0, tau, tau, kNan, 1.0, s, s),
               InvalidArgumentError);
  // A model whose output size depends on theta, and one that returns NaN.
  TaskVector bump = zeros_like(theta0);
  bump.at("b")(0, 0) = 1.0;
  const ModelFunction varying = [](const Vector&, const NamedTensors& theta) {
    return Vector::Zero(theta.at("b")(0, 0) > 1.5 ? 2 : 1);
  };
  EXPECT_THROW(disentanglement_error(varying, theta0, bump, bump, 1.0, 1.0, s, s), ShapeError);
  const ModelFunction nan_model = [](const Vector&, const NamedTensors&) {
    return Vector::Constant(1, kNan);
  };
  EXPECT_THROW(disentanglement_error(nan_model, theta0, tau, tau, 1.0, 1.0, s, s), NumericalError);
}

}  // namespace
}  // namespace tether
