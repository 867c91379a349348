// OrthoReg (specs/projection.md, section 2) and the regulariser concept of core/regularizer.hpp:
// the value sqrt(k) and the exactly-zero gradient at Delta W = 0, the sqrt(k - r) floor for
// rank r, the zero at orthonormal columns / rows, the singular-value identity, finite
// differences and Taylor slopes in tall, wide and square shapes with both norms, the LoRA chain
// rule (factored and dense paths), the |M|_F = 0 subgradient, gradient descent driving the
// singular values to 1, Regularized / RegularizerList on problems and a solver, bad input, and
// the smoothed norm sqrt(|M|^2 + eps^2) - eps (bounds, zero, finite differences near the kink).
#include <gtest/gtest.h>

#include <Eigen/QR>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/regularizer.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/unlearning_toys.hpp>
#include <tether/solvers/blur.hpp>
#include <tether/solvers/orthoreg.hpp>
#include <tuple>
#include <vector>

#include "error_message.hpp"

namespace tether {
namespace {

using testing::contains;
using testing::message_of;
constexpr auto kUnsquared = OrthoRegNorm::kFrobenius;
constexpr auto kSquared = OrthoRegNorm::kSquaredFrobenius;
constexpr auto kSmoothed = OrthoRegNorm::kSmoothedFrobenius;

const char* norm_tag(OrthoRegNorm norm) {
  return norm == kUnsquared ? "_unsquared" : norm == kSquared ? "_squared" : "_smoothed";
}
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// Measured figures go to the XML report (--gtest_output=xml) in full precision.
std::string sci(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6e", x);
  return buffer;
}

Matrix random_matrix(Rng& rng, Index rows, Index cols, double scale = 1.0) {
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * rng.normal();
  return m;
}

// Row-major flattening: the order of a ParameterLayout block.
Vector flat(const Matrix& m) { return Eigen::Map<const Vector>(m.data(), m.size()); }
Matrix shaped(const Vector& v, Index rows, Index cols) {
  return Eigen::Map<const Matrix>(v.data(), rows, cols);
}

// Matrix with orthonormal columns (rows >= cols): the thin Q of a random matrix.
Matrix orthonormal_columns(Rng& rng, Index rows, Index cols) {
  const Eigen::MatrixXd x = random_matrix(rng, rows, cols);
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(x);
  return Eigen::MatrixXd(qr.householderQ() * Eigen::MatrixXd::Identity(rows, cols));
}

// |M|_F^2 = sum_{i <= k} (s_i^2 - 1)^2 from the singular values.
double singular_value_form(const Matrix& d) {
  const Eigen::JacobiSVD<Eigen::MatrixXd> svd{Eigen::MatrixXd(d)};
  double total = 0.0;
  for (Index i = 0; i < svd.singularValues().size(); ++i) {
    const double s = svd.singularValues()[i];
    total += (s * s - 1.0) * (s * s - 1.0);
  }
  return total;
}

double max_abs(const Matrix& m) { return m.cwiseAbs().maxCoeff(); }

struct Shape {
  Index rows, cols;
};
const Shape kShapes[] = {{7, 4}, {4, 7}, {5, 5}};  // tall, wide, square

// ---- the facts of the spec --------------------------------------------------------------------

TEST(OrthoReg, AtZeroTheValueIsSqrtKAndTheGradientIsExactlyZero) {
  for (const Shape s : kShapes) {
    const Index k = std::min(s.rows, s.cols);
    const Matrix zero = Matrix::Zero(s.rows, s.cols);
    EXPECT_EQ(orthoreg_value(zero, kUnsquared), std::sqrt(static_cast<double>(k)));
    EXPECT_EQ(orthoreg_value(zero, kSquared), static_cast<double>(k));
    for (const OrthoRegNorm norm : {kUnsquared, kSquared}) {
      const Matrix g = orthoreg_gradient(zero, norm);
      EXPECT_EQ(max_abs(g), 0.0) << s.rows << " x " << s.cols;
    }
  }
  // The smaller Gram: a wide 3 x 5 zero gives sqrt(3), not sqrt(5).
  EXPECT_EQ(orthoreg_value(Matrix::Zero(3, 5)), std::sqrt(3.0));
  EXPECT_EQ(orthoreg_value(Matrix::Zero(5, 3)), std::sqrt(3.0));

  // Full fine-tuning at W = W0 and LoRA at its B = 0 initialisation.
  Rng rng(1);
  ParameterLayout layout;
  layout.add("w", 6, 4);
  layout.add("lora_B", 6, 2);
  layout.add("lora_A", 2, 9);
  const Matrix w0 = random_matrix(rng, 6, 4);
  const OrthoReg reg(layout,
                     {OrthoRegLayer::full("w", w0), OrthoRegLayer::lora("lora_B", "lora_A", 4.0)});
  Vector theta = Vector::Zero(layout.size());
  layout.matrix(theta, "w") = w0;
  layout.matrix(theta, "lora_A") = random_matrix(rng, 2, 9);  // A random, B = 0: Delta W = 0
  EXPECT_EQ(reg.value(theta), std::sqrt(4.0) + std::sqrt(6.0));
  Vector g = Vector::Zero(layout.size());
  reg.add_gradient(theta, 1.0, g);
  EXPECT_EQ(g.cwiseAbs().maxCoeff(), 0.0);
}

TEST(OrthoReg, ValueIsTheSingularValueSumAndTheWideCaseIsTheTranspose) {
  Rng rng(2);
  double worst = 0.0, worst_transpose = 0.0;
  for (const Shape s : kShapes) {
    for (int trial = 0; trial < 5; ++trial) {
      const Matrix d = random_matrix(rng, s.rows, s.cols, 0.5);
      const double expected = singular_value_form(d);
      const double sq = orthoreg_value(d, kSquared);
      worst = std::max(worst, std::abs(sq - expected) / expected);
      EXPECT_NEAR(orthoreg_value(d, kUnsquared), std::sqrt(expected), 1e-13 * std::sqrt(expected));
      // L(D^T) = L(D) and grad L(D^T) = grad L(D)^T.
      const Matrix dt = d.transpose();
      EXPECT_NEAR(orthoreg_value(dt, kSquared), sq, 1e-13 * sq);
      for (const OrthoRegNorm norm : {kUnsquared, kSquared}) {
        const Matrix g = orthoreg_gradient(d, norm);
        const Matrix gt = orthoreg_gradient(dt, norm);
        worst_transpose =
            std::max(worst_transpose, max_abs(gt - Matrix(g.transpose())) / max_abs(g));
      }
    }
  }
  RecordProperty("singular_value_form_max_rel_error", sci(worst));
  RecordProperty("transpose_gradient_max_rel_error", sci(worst_transpose));
  EXPECT_LT(worst, 1e-13);
  EXPECT_LT(worst_transpose, 1e-13);
}

TEST(OrthoReg, RankRUpdateNeverGoesBelowSqrtKMinusR) {
  Rng rng(3);
  for (const Shape s : {Shape{9, 6}, Shape{6, 9}}) {
    const Index k = std::min(s.rows, s.cols);
    for (Index r = 1; r < k; ++r) {
      const double floor = std::sqrt(static_cast<double>(k - r));
      // Random rank-r updates of every scale stay above the floor.
      double closest = std::numeric_limits<double>::infinity();
      for (int trial = 0; trial < 50; ++trial) {
        const double scale = std::pow(10.0, rng.uniform(-2.0, 1.0));
        const Matrix d = random_matrix(rng, s.rows, r, scale) * random_matrix(rng, r, s.cols);
        const double v = orthoreg_value(d);
        closest = std::min(closest, v - floor);
      }
      EXPECT_GT(closest, 0.0) << s.rows << " x " << s.cols << ", r = " << r;
      // The floor is reached exactly when the r nonzero singular values are 1: D = U V^T.
      const Matrix d = orthonormal_columns(rng, s.rows, r) *
                       Matrix(orthonormal_columns(rng, s.cols, r).transpose());
      EXPECT_NEAR(orthoreg_value(d), floor, 1e-14 * floor) << s.rows << " x " << s.cols;
      // The LoRA path (r <= k, never forming Delta W) has the same floor.
      EXPECT_NEAR(lora_orthoreg_value(orthonormal_columns(rng, s.rows, r),
                                      Matrix(orthonormal_columns(rng, s.cols, r).transpose()), 1.0),
                  floor, 1e-14 * floor);
    }
  }
}

TEST(OrthoReg, ZeroExactlyAtOrthonormalColumnsOrRows) {
  Rng rng(4);
  const Matrix q_tall = orthonormal_columns(rng, 8, 5);              // orthonormal columns
  const Matrix q_wide = orthonormal_columns(rng, 8, 5).transpose();  // orthonormal rows
  for (const Matrix* q : {&q_tall, &q_wide}) {
    const double v = orthoreg_value(*q);
    RecordProperty(q == &q_tall ? "orthonormal_tall_value" : "orthonormal_wide_value", sci(v));
    EXPECT_LT(v, 1e-14);
    EXPECT_LT(orthoreg_value(*q, kSquared), 1e-28);
    // ... and only there: scaling by 1 + e gives |(1 + e)^2 - 1| sqrt(k) exactly.
    const double e = 1e-3;
    EXPECT_NEAR(orthoreg_value((1.0 + e) * *q), (2.0 * e + e * e) * std::sqrt(5.0), 1e-13);
    // Orthogonal but not normalised columns are not a zero.
    Matrix skew = *q;
    if (q == &q_tall)
      skew.col(0) *= 2.0;
    else
      skew.row(0) *= 2.0;
    EXPECT_NEAR(orthoreg_value(skew), 3.0, 1e-13);  // one singular value 2: |4 - 1|
  }
  // A tall orthonormal matrix of the wrong orientation is not: the Gram of a wide Q^T ...
  // (covered above); a square orthogonal matrix is both.
  const Matrix square = orthonormal_columns(rng, 6, 6);
  EXPECT_LT(orthoreg_value(square), 1e-14);
}

TEST(OrthoReg, UnsquaredGradientAtExactlyZeroNormIsTheZeroSubgradient) {
  // [I; 0] and its transpose: G = I exactly in floating point, so |M|_F = 0 exactly.
  Matrix tall = Matrix::Zero(5, 3);
  tall.topRows(3).setIdentity();
  tall(0, 0) = -1.0;  // a sign flip keeps the columns orthonormal
  for (const Matrix& d : {tall, Matrix(tall.transpose())}) {
    EXPECT_EQ(orthoreg_value(d), 0.0);
    for (const OrthoRegNorm norm : {kUnsquared, kSquared}) {
      const Matrix g = orthoreg_gradient(d, norm);
      EXPECT_TRUE(g.allFinite());
      EXPECT_EQ(max_abs(g), 0.0);
    }
  }
  // The LoRA factored path at r = k: B = [I; 0], A = I, alpha = r.
  Matrix b = Matrix::Zero(4, 2);
  b.topRows(2).setIdentity();
  const Matrix a = Matrix::Identity(2, 2);
  Matrix gb = Matrix::Zero(4, 2), ga = Matrix::Zero(2, 2);
  EXPECT_EQ(lora_orthoreg_add_gradient(b, a, 1.0, kUnsquared, 1.0, gb, ga), 0.0);
  EXPECT_TRUE(gb.allFinite() && ga.allFinite());
  EXPECT_EQ(max_abs(gb) + max_abs(ga), 0.0);
  // Just off the zero the gradient keeps its size (the sharp minimum): 2 s_max at most, and
  // here, one singular value 1 + e and the others 1, exactly 2 (1 + e).
  Matrix off = tall;
  off(1, 1) *= 1.0 + 1e-9;
  const Matrix g = orthoreg_gradient(off, kUnsquared);
  EXPECT_NEAR(g.norm(), 2.0 * (1.0 + 1e-9), 1e-12);
}

// ---- derivatives ------------------------------------------------------------------------------

TEST(OrthoReg, GradientMatchesFiniteDifferencesAndHasTaylorSlopeTwo) {
  Rng rng(5);
  for (const Shape s : kShapes) {
    for (const OrthoRegNorm norm : {kUnsquared, kSquared}) {
      const Matrix d = random_matrix(rng, s.rows, s.cols, 0.6);
      auto f = [&](const Vector& x) { return orthoreg_value(shaped(x, s.rows, s.cols), norm); };
      const Vector g = flat(orthoreg_gradient(d, norm));
      const Vector fd = finite_difference_gradient(f, flat(d), 1e-6);
      const double rel = (g - fd).cwiseAbs().maxCoeff() / g.cwiseAbs().maxCoeff();
      const std::string tag = std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                              (norm == kUnsquared ? "_unsquared" : "_squared");
      RecordProperty("fd_rel_error_" + tag, sci(rel));
      EXPECT_LT(rel, 1e-8) << tag;
      const Vector dir = flat(random_matrix(rng, s.rows, s.cols));
      const TaylorSlopeReport rep = check_gradient_slope(f, flat(d), g, dir);
      RecordProperty("taylor_slope_" + tag, sci(rep.slope));
      EXPECT_NEAR(rep.slope, 2.0, 0.05) << tag;
      // A wrong gradient (the squared form's for the unsquared norm and vice versa) fails.
      const OrthoRegNorm other = norm == kUnsquared ? kSquared : kUnsquared;
      const Vector wrong = flat(orthoreg_gradient(d, other));
      EXPECT_NEAR(check_gradient_slope(f, flat(d), wrong, dir).slope, 1.0, 0.1) << tag;
    }
  }
}

TEST(OrthoReg, AddGradientAccumulatesWithTheScale) {
  Rng rng(6);
  const Matrix d = random_matrix(rng, 6, 4);
  const Matrix before = random_matrix(rng, 6, 4);
  Matrix g = before;
  const double v = orthoreg_add_gradient(d, kUnsquared, -2.5, g);
  EXPECT_EQ(v, orthoreg_value(d));
  EXPECT_LT(max_abs(g - (before - 2.5 * orthoreg_gradient(d, kUnsquared))), 1e-13);
}

// Central differences of L(c B A) over the entries of B and A.
void expect_lora_gradient_matches_fd(Index m, Index n, Index r, double alpha, OrthoRegNorm norm,
                                     std::uint64_t seed) {
  Rng rng(seed);
  const Matrix b = random_matrix(rng, m, r, 0.7);
  const Matrix a = random_matrix(rng, r, n, 0.7);
  const double c = alpha / static_cast<double>(r);
  Matrix gb = Matrix::Zero(m, r), ga = Matrix::Zero(r, n);
  const double v = lora_orthoreg_add_gradient(b, a, c, norm, 1.0, gb, ga);
  // The factored path against the dense one on Delta W = c B A, and the chain rule.
  const Matrix d = c * b * a;
  EXPECT_NEAR(v, orthoreg_value(d, norm), 1e-12 * v);
  const Matrix gd = orthoreg_gradient(d, norm);
  EXPECT_LT(max_abs(gb - c * gd * a.transpose()), 1e-11 * max_abs(gb));
  EXPECT_LT(max_abs(ga - c * b.transpose() * gd), 1e-11 * max_abs(ga));
  // Finite differences over (B, A).
  auto f = [&](const Vector& x) {
    return lora_orthoreg_value(shaped(x.head(m * r), m, r), shaped(x.tail(r * n), r, n), c, norm);
  };
  Vector x(m * r + r * n), g(m * r + r * n);
  x << flat(b), flat(a);
  g << flat(gb), flat(ga);
  const Vector fd = finite_difference_gradient(f, x, 1e-6);
  const double rel = (g - fd).cwiseAbs().maxCoeff() / g.cwiseAbs().maxCoeff();
  const std::string tag = "lora_" + std::to_string(m) + "x" + std::to_string(n) + "_r" +
                          std::to_string(r) + norm_tag(norm);
  ::testing::Test::RecordProperty("fd_rel_error_" + tag, sci(rel));
  EXPECT_LT(rel, 1e-8) << tag;
  EXPECT_NEAR(check_gradient_slope(f, x, g, Vector::Ones(x.size())).slope, 2.0, 0.05) << tag;
}

TEST(OrthoReg, LoraGradientMatchesTheChainRuleAndFiniteDifferences) {
  for (const OrthoRegNorm norm : {kUnsquared, kSquared, kSmoothed}) {
    expect_lora_gradient_matches_fd(7, 5, 2, 4.0, norm, 11);  // tall, factored (r < k)
    expect_lora_gradient_matches_fd(4, 9, 3, 8.0, norm, 12);  // wide, factored
    expect_lora_gradient_matches_fd(5, 5, 5, 5.0, norm, 13);  // r = k, factored
    expect_lora_gradient_matches_fd(6, 3, 4, 2.0, norm, 14);  // r > k: Delta W formed
  }
}

TEST(OrthoReg, LayersOfEveryKindOnAFlatThetaMatchFiniteDifferences) {
  Rng rng(7);
  ParameterLayout layout;
  layout.add("fc1.weight", 6, 4);
  layout.add("fc1.bias", 1, 6);  // not regularised: its gradient must stay untouched
  layout.add("fc2.update", 3, 7);
  layout.add("fc3.lora_B", 8, 2);
  layout.add("fc3.lora_A", 2, 5);
  const Matrix w0 = random_matrix(rng, 6, 4);
  for (const OrthoRegNorm norm : {kUnsquared, kSquared}) {
    const OrthoReg reg(layout,
                       {OrthoRegLayer::full("fc1.weight", w0), OrthoRegLayer::update("fc2.update"),
                        OrthoRegLayer::lora("fc3.lora_B", "fc3.lora_A", 16.0)},
                       {.lambda = 0.3, .norm = norm});
    Vector theta(layout.size());
    for (Index i = 0; i < theta.size(); ++i) theta[i] = 0.5 * rng.normal();
    layout.matrix(theta, "fc1.weight") += w0;
    // The value is the sum of the layers', each as the matrix-level functions give it.
    const std::vector<double> per_layer = reg.layer_values(theta);
    ASSERT_EQ(per_layer.size(), 3u);
    EXPECT_EQ(per_layer[0], orthoreg_value(Matrix(layout.matrix(theta, "fc1.weight") - w0), norm));
    EXPECT_EQ(per_layer[1], orthoreg_value(layout.matrix(theta, "fc2.update"), norm));
    EXPECT_EQ(per_layer[2], lora_orthoreg_value(layout.matrix(theta, "fc3.lora_B"),
                                                layout.matrix(theta, "fc3.lora_A"), 8.0, norm));
    EXPECT_EQ(reg.value(theta), per_layer[0] + per_layer[1] + per_layer[2]);
    EXPECT_EQ(weighted_value(reg, theta), 0.3 * reg.value(theta));
    // The gradient accumulates and leaves the bias alone.
    const Vector before = Vector::Constant(layout.size(), 0.25);
    Vector g = before;
    reg.add_gradient(theta, 1.0, g);
    EXPECT_EQ(layout.matrix(g, "fc1.bias"), layout.matrix(before, "fc1.bias"));
    const Vector fd =
        finite_difference_gradient([&](const Vector& t) { return reg.value(t); }, theta, 1e-6);
    const double rel = (g - before - fd).cwiseAbs().maxCoeff() / (g - before).cwiseAbs().maxCoeff();
    RecordProperty(
        std::string("fd_rel_error_layers_") + (norm == kUnsquared ? "unsquared" : "squared"),
        sci(rel));
    EXPECT_LT(rel, 1e-8);
    // One pass gives the same value and gradient.
    Vector g2 = before;
    EXPECT_EQ(reg.value_and_add_gradient(theta, 1.0, g2), reg.value(theta));
    EXPECT_EQ(g2, g);
    // Named tensors give the same numbers as the flat vector.
    const NamedTensors params = unflatten(theta, layout);
    EXPECT_EQ(reg.value(params), reg.value(theta));
    NamedTensors grad = unflatten(before, layout);
    reg.add_gradient(params, 1.0, grad);
    EXPECT_EQ(flatten(grad, layout), g);
    // delta_w of each kind.
    EXPECT_EQ(reg.delta_w(theta, 0), Matrix(layout.matrix(theta, "fc1.weight") - w0));
    EXPECT_LT(max_abs(reg.delta_w(theta, 2) - 8.0 * layout.matrix(theta, "fc3.lora_B") *
                                                  layout.matrix(theta, "fc3.lora_A")),
              1e-14);
  }
}

TEST(OrthoReg, SquaredNormOnOneRowIsFourTimesTheSphereLossOfB2) {
  // A 1 x d update is wide: G = |theta|^2, so the squared term is (|theta|^2 - 1)^2, which is
  // 4 times B2's forget loss 0.25 (|theta|^2 - 1)^2; its gradient is 4 times B2's too.
  const problems::B2 b2;
  ParameterLayout layout;
  layout.add("theta", 1, 2);
  const OrthoReg reg(layout, {OrthoRegLayer::update("theta")}, {.norm = kSquared});
  Vector theta(2);
  theta << 0.3, -1.7;
  EXPECT_NEAR(reg.value(theta), 4.0 * b2.forget_loss(theta), 1e-14);
  Vector g = Vector::Zero(2), g_b2(2);
  reg.add_gradient(theta, 1.0, g);
  b2.forget_gradient(theta, g_b2);
  EXPECT_LT((g - 4.0 * g_b2).cwiseAbs().maxCoeff(), 1e-13);
}

// ---- what the regulariser does ----------------------------------------------------------------

Eigen::VectorXd singular_values(const Matrix& d) {
  return Eigen::JacobiSVD<Eigen::MatrixXd>(Eigen::MatrixXd(d)).singularValues();
}

TEST(OrthoReg, GradientDescentDrivesTheSingularValuesToOneNotZero) {
  for (const Shape s : {Shape{8, 5}, Shape{5, 8}}) {
    Rng rng(8);
    Matrix start = random_matrix(rng, s.rows, s.cols, 1.0 / std::sqrt(8.0));
    // Spread the singular values on both sides of 1: [0.1, ~1.8].
    {
      Eigen::JacobiSVD<Eigen::MatrixXd> svd(Eigen::MatrixXd(start),
                                            Eigen::ComputeThinU | Eigen::ComputeThinV);
      Eigen::VectorXd sv = Eigen::VectorXd::LinSpaced(svd.singularValues().size(), 1.8, 0.1);
      start = svd.matrixU() * sv.asDiagonal() * svd.matrixV().transpose();
    }
    const Eigen::VectorXd sv0 = singular_values(start);
    ASSERT_NEAR(sv0.maxCoeff(), 1.8, 1e-12);
    ASSERT_NEAR(sv0.minCoeff(), 0.1, 1e-12);

    // Squared norm, fixed step: s <- s - 4 eta s (s^2 - 1) contracts at 1 - 8 eta near s = 1.
    Matrix d = start;
    for (int it = 0; it < 2000; ++it) d -= 0.02 * orthoreg_gradient(d, kSquared);
    const Eigen::VectorXd sv_sq = singular_values(d);
    const double err_sq = (sv_sq.array() - 1.0).abs().maxCoeff();
    RecordProperty(
        "gd_squared_max_sv_error_" + std::to_string(s.rows) + "x" + std::to_string(s.cols),
        sci(err_sq));
    EXPECT_LT(err_sq, 1e-12);

    // Unsquared norm (a sharp minimum): Polyak's step L / |grad|^2 for the known minimum 0.
    d = start;
    for (int it = 0; it < 200; ++it) {
      const Matrix g = orthoreg_gradient(d, kUnsquared);
      const double gg = g.squaredNorm();
      if (gg == 0.0) break;
      d -= (orthoreg_value(d, kUnsquared) / gg) * g;
    }
    const Eigen::VectorXd sv_un = singular_values(d);
    const double err_un = (sv_un.array() - 1.0).abs().maxCoeff();
    RecordProperty(
        "gd_unsquared_polyak_max_sv_error_" + std::to_string(s.rows) + "x" + std::to_string(s.cols),
        sci(err_un));
    EXPECT_LT(err_un, 1e-10);
    EXPECT_GT(sv_un.minCoeff(), 0.999);  // not shrunk towards 0, unlike weight decay
  }
}

// ---- the regulariser concept: Regularized and RegularizerList ---------------------------------

// 0.5 |theta - t|^2, a DifferentiableProblem.
struct Quadratic {
  Vector target;
  Index dimension() const { return target.size(); }
  double loss(const Vector& theta) const { return 0.5 * (theta - target).squaredNorm(); }
  void gradient(const Vector& theta, Vector& g) const { g = theta - target; }
};

// Counts its calls: proves lambda = 0 never evaluates the term.
struct CountingRegularizer {
  double lambda = 0.0;
  Index dim = 0;
  mutable int calls = 0;
  Index dimension() const { return dim; }
  double weight() const { return lambda; }
  double value(const Vector& theta) const {
    ++calls;
    return theta.squaredNorm();
  }
  void add_gradient(const Vector& theta, double scale, Vector& g) const {
    ++calls;
    g += 2.0 * scale * theta;
  }
};

static_assert(Regularizer<CountingRegularizer>);
static_assert(Regularizer<RegularizerList>);
static_assert(DifferentiableProblem<Regularized<Quadratic, OrthoReg>>);
static_assert(ForgetRetainProblem<Regularized<problems::B1, OrthoReg>>);
static_assert(!DifferentiableProblem<Regularized<problems::B1, OrthoReg>>);

TEST(Regularized, AddsTheWeightedTermsToADifferentiableProblem) {
  Rng rng(9);
  ParameterLayout layout;
  layout.add("w", 5, 3);
  Quadratic task{random_matrix(rng, 15, 1).col(0)};
  const OrthoReg ortho(layout, {OrthoRegLayer::update("w")}, {.lambda = 0.7});
  const CountingRegularizer decay{.lambda = 0.2, .dim = 15};
  const Regularized problem(task, ortho, decay);
  const Vector theta = random_matrix(rng, 15, 1).col(0);
  EXPECT_EQ(problem.loss(theta),
            task.loss(theta) + (0.7 * ortho.value(theta) + 0.2 * theta.squaredNorm()));
  Vector g(15), expected(15);
  problem.gradient(theta, g);
  task.gradient(theta, expected);
  ortho.add_gradient(theta, 0.7, expected);
  expected += 0.4 * theta;
  EXPECT_EQ(g, expected);
  const Vector fd =
      finite_difference_gradient([&](const Vector& t) { return problem.loss(t); }, theta, 1e-6);
  EXPECT_LT((g - fd).cwiseAbs().maxCoeff(), 1e-8 * g.cwiseAbs().maxCoeff());

  // lambda = 0: the problem's own loss and gradient, bit for bit, and the term is never called.
  const CountingRegularizer off{.lambda = 0.0, .dim = 15};
  const Regularized plain(task, off);
  EXPECT_EQ(plain.loss(theta), task.loss(theta));
  plain.gradient(theta, g);
  task.gradient(theta, expected);
  EXPECT_EQ(g, expected);
  EXPECT_EQ(std::get<0>(plain.regularizers()).calls, 0);  // the wrapper's copy
}

TEST(Regularized, ForgetRetainProblemsTakeTheTermsOnTheChosenLossAndRunInASolver) {
  const problems::B1 b1;
  ParameterLayout layout;
  layout.add("theta", 1, 2);
  const OrthoReg ortho(layout, {OrthoRegLayer::update("theta")}, {.lambda = 0.1, .norm = kSquared});
  Vector theta(2);
  theta << 0.4, 1.1;
  const double pen = 0.1 * ortho.value(theta);
  const Regularized retain(b1, ortho);  // default: the retain loss
  const Regularized forget(RegularizedLoss::kForget, b1, ortho);
  const Regularized both(RegularizedLoss::kBoth, b1, ortho);
  EXPECT_EQ(retain.retain_loss(theta), b1.retain_loss(theta) + pen);
  EXPECT_EQ(retain.forget_loss(theta), b1.forget_loss(theta));
  EXPECT_EQ(forget.forget_loss(theta), b1.forget_loss(theta) + pen);
  EXPECT_EQ(forget.retain_loss(theta), b1.retain_loss(theta));
  EXPECT_EQ(both.forget_loss(theta), b1.forget_loss(theta) + pen);
  EXPECT_EQ(both.retain_loss(theta), b1.retain_loss(theta) + pen);

  // The type-erased objective: B1's exact HVPs are not forwarded (the regularised Hessian
  // differs), so the retain HVP is a finite difference of the regularised gradient.
  const ForgetRetainObjective o = make_forget_retain_objective(retain);
  EXPECT_FALSE(o.retain_hvp_exact);
  EXPECT_FALSE(o.solution_error);

  // BLUR, unchanged, on the regularised problem: min l_r + 0.1 (|theta|^2 - 1)^2 over the
  // line a^T theta = b. At its answer the line holds and the regularised retain gradient is
  // normal to the line (orthogonal to (1, -1)).
  // The kKeepLastNormal guard: the spec's guard (d = g_r where g_f is exactly 0) kicks the
  // iterate off the line by lr |<g_r, a>| / |a| each time the residual hits 0 (measured: 5e-5
  // after 4000 steps), blur.hpp explains it.
  const BlurSolver solver(
      {.step = SgdOptions{.learning_rate = 0.05},
       .max_iterations = 1000,
       .tolerance = 0.0,
       .zero_forget_gradient = BlurOptions::ZeroForgetGradient::kKeepLastNormal});
  const BlurResult r = solver.minimize(retain, b1.start());
  Vector g(2);
  retain.retain_gradient(r.theta, g);
  const double on_line = std::abs(b1.a().dot(r.theta) - b1.b());
  const double tangential = std::abs(g[0] - g[1]) / std::sqrt(2.0);
  RecordProperty("blur_regularized_line_residual", sci(on_line));
  RecordProperty("blur_regularized_tangential_gradient", sci(tangential));
  EXPECT_LT(on_line, 1e-10);
  EXPECT_LT(tangential, 1e-10);
  EXPECT_EQ(r.retain_loss, retain.retain_loss(r.theta));
  // ... and it is not B1's answer: the regulariser moved it.
  EXPECT_GT(b1.solution_error(r.theta), 1e-2);
}

TEST(RegularizerList, SumsTheWeightedTermsOfARunTimeList) {
  Rng rng(10);
  ParameterLayout layout;
  layout.add("a", 4, 3);
  layout.add("b", 3, 6);
  const OrthoReg ra(layout, {OrthoRegLayer::update("a")}, {.lambda = 0.5});
  const OrthoReg rb(layout, {OrthoRegLayer::update("b")}, {.lambda = 2.0, .norm = kSquared});
  RegularizerList list(layout.size());
  list.add(ra);
  list.add(rb);
  EXPECT_EQ(list.size(), 2u);
  Vector theta(layout.size());
  for (Index i = 0; i < theta.size(); ++i) theta[i] = rng.normal();
  EXPECT_EQ(list.value(theta), 0.5 * ra.value(theta) + 2.0 * rb.value(theta));
  Vector g = Vector::Zero(layout.size()), expected = Vector::Zero(layout.size());
  list.add_gradient(theta, 3.0, g);
  ra.add_gradient(theta, 1.5, expected);
  rb.add_gradient(theta, 6.0, expected);
  EXPECT_LT((g - expected).cwiseAbs().maxCoeff(), 1e-14 * expected.cwiseAbs().maxCoeff());
  Quadratic task{Vector::Zero(layout.size())};
  const Regularized problem(task, list);
  EXPECT_EQ(problem.loss(theta), task.loss(theta) + list.value(theta));
}

// ---- bad input --------------------------------------------------------------------------------

TEST(OrthoReg, RefusesBadInputWithClearErrors) {
  const Matrix d = Matrix::Ones(4, 3);
  // Mismatched shapes.
  Matrix g_wrong = Matrix::Zero(3, 4);
  std::string msg =
      message_of<ShapeError>([&] { orthoreg_add_gradient(d, kUnsquared, 1.0, g_wrong); });
  EXPECT_TRUE(contains(msg, "3 x 4") && contains(msg, "4 x 3")) << msg;
  EXPECT_THROW(orthoreg_value(Matrix(0, 3)), ShapeError);
  Matrix gb = Matrix::Zero(4, 2), ga = Matrix::Zero(3, 5);
  msg = message_of<ShapeError>([&] {
    lora_orthoreg_add_gradient(Matrix::Ones(4, 2), Matrix::Ones(3, 5), 1.0, kUnsquared, 1.0, gb,
                               ga);
  });
  EXPECT_TRUE(contains(msg, "B 4 x 2") && contains(msg, "A 3 x 5")) << msg;
  Matrix ga_ok = Matrix::Zero(2, 5), gb_wrong = Matrix::Zero(2, 4);
  EXPECT_THROW(lora_orthoreg_add_gradient(Matrix::Ones(4, 2), Matrix::Ones(2, 5), 1.0, kUnsquared,
                                          1.0, gb_wrong, ga_ok),
               ShapeError);
  EXPECT_THROW(lora_orthoreg_value(Matrix::Ones(4, 2), Matrix::Ones(2, 5), kNan),
               InvalidArgumentError);
  Matrix g = Matrix::Zero(4, 3);
  EXPECT_THROW(orthoreg_add_gradient(d, kUnsquared, kNan, g), InvalidArgumentError);

  // lambda < 0 (and not finite).
  ParameterLayout layout;
  layout.add("w", 4, 3);
  layout.add("B", 4, 2);
  layout.add("A", 3, 5);
  msg = message_of<InvalidArgumentError>(
      [&] { OrthoReg(layout, {OrthoRegLayer::update("w")}, {.lambda = -0.5}); });
  EXPECT_TRUE(contains(msg, "lambda") && contains(msg, "-0.5")) << msg;
  EXPECT_THROW(OrthoReg(layout, {OrthoRegLayer::update("w")}, {.lambda = kNan}),
               InvalidArgumentError);
  // No layers, a missing name, W0 of another shape, LoRA inner sizes, alpha, one block twice.
  EXPECT_THROW(OrthoReg(layout, {}), InvalidArgumentError);
  msg = message_of<InvalidArgumentError>([&] { OrthoReg(layout, {OrthoRegLayer::update("v")}); });
  EXPECT_TRUE(contains(msg, "'v'")) << msg;
  msg = message_of<ShapeError>(
      [&] { OrthoReg(layout, {OrthoRegLayer::full("w", Matrix::Zero(3, 4))}); });
  EXPECT_TRUE(contains(msg, "'w'") && contains(msg, "3 x 4") && contains(msg, "4 x 3")) << msg;
  msg = message_of<ShapeError>([&] { OrthoReg(layout, {OrthoRegLayer::lora("B", "A", 1.0)}); });
  EXPECT_TRUE(contains(msg, "rank")) << msg;
  layout.add("A2", 2, 5);
  EXPECT_THROW(OrthoReg(layout, {OrthoRegLayer::lora("B", "A2", 0.0)}), InvalidArgumentError);
  EXPECT_THROW(OrthoReg(layout, {OrthoRegLayer::lora("B", "B", 1.0)}), InvalidArgumentError);

  // theta and gradient of the wrong size; named params without a block or of another shape.
  const OrthoReg reg(layout, {OrthoRegLayer::update("w"), OrthoRegLayer::lora("B", "A2", 2.0)});
  msg = message_of<ShapeError>([&] { reg.value(Vector::Zero(layout.size() + 1)); });
  EXPECT_TRUE(contains(msg, std::to_string(layout.size()))) << msg;
  Vector small = Vector::Zero(3);
  EXPECT_THROW(reg.add_gradient(Vector::Zero(layout.size()), 1.0, small), ShapeError);
  NamedTensors params = unflatten(Vector::Zero(layout.size()), layout);
  params.at("w") = Matrix::Zero(3, 4);
  EXPECT_THROW(reg.value(params), ShapeError);

  // Layouts and wrappers.
  ParameterLayout bad;
  EXPECT_THROW(bad.add("x", 0, 3), InvalidArgumentError);
  bad.add("x", 1, 3);
  EXPECT_THROW(bad.add("x", 2, 2), InvalidArgumentError);
  Quadratic task{Vector::Zero(5)};
  msg = message_of<ShapeError>([&] { Regularized wrapped(task, reg); });
  EXPECT_TRUE(contains(msg, "5")) << msg;
  const CountingRegularizer negative{.lambda = -1.0, .dim = 5};
  EXPECT_THROW((Regularized(task, negative)), InvalidArgumentError);
  RegularizerList list(5);
  EXPECT_THROW(list.add(reg), ShapeError);
}

// ---- the smoothed norm: sqrt(|M|_F^2 + eps^2) - eps -------------------------------------------

TEST(OrthoRegSmoothed, WithinEpsOfTheUnsquaredNormZeroWhereItIsZeroAndSmoothThere) {
  Rng rng(21);
  for (const Shape s : kShapes) {
    const Index k = std::min(s.rows, s.cols);
    // At Delta W = 0: sqrt(k + eps^2) - eps, gradient exactly 0.
    const Matrix zero = Matrix::Zero(s.rows, s.cols);
    EXPECT_NEAR(orthoreg_value(zero, kSmoothed, 0.1),
                std::sqrt(static_cast<double>(k) + 0.01) - 0.1, 1e-15);
    EXPECT_EQ(max_abs(orthoreg_gradient(zero, kSmoothed, 0.1)), 0.0);
    // Everywhere: L - eps <= L_eps <= L, and L_eps -> L as eps -> 0.
    for (int trial = 0; trial < 20; ++trial) {
      const Matrix d = random_matrix(rng, s.rows, s.cols, std::pow(10.0, rng.uniform(-2.0, 0.5)));
      const double l = orthoreg_value(d, kUnsquared);
      for (const double eps : {1e-1, 1e-2, 1e-4}) {
        const double le = orthoreg_value(d, kSmoothed, eps);
        EXPECT_LE(le, l) << eps;
        EXPECT_GE(le, l - eps - 1e-15) << eps;
        // Exactly sqrt(L^2 + eps^2) - eps.
        EXPECT_NEAR(le, std::sqrt(l * l + eps * eps) - eps, 1e-14 * std::max(1.0, l));
      }
      // The gradient is the unsquared one times L / sqrt(L^2 + eps^2).
      const double eps = 1e-2;
      const Matrix gu = orthoreg_gradient(d, kUnsquared);
      const Matrix gs = orthoreg_gradient(d, kSmoothed, eps);
      EXPECT_LT(max_abs(gs - (l / std::sqrt(l * l + eps * eps)) * gu), 1e-13 * max_abs(gu));
    }
  }
  // At orthonormal rows / columns: exactly 0 with gradient exactly 0 (a smooth minimum), and
  // close to it the gradient vanishes linearly (the unsquared one keeps size 2 there).
  Matrix tall = Matrix::Zero(5, 3);
  tall.topRows(3).setIdentity();
  for (const Matrix& d : {tall, Matrix(tall.transpose())}) {
    EXPECT_EQ(orthoreg_value(d, kSmoothed), 0.0);
    EXPECT_EQ(max_abs(orthoreg_gradient(d, kSmoothed)), 0.0);
  }
  for (const double e : {1e-6, 1e-8}) {
    Matrix off = tall;
    off(1, 1) *= 1.0 + e;
    const double m_norm = (1.0 + e) * (1.0 + e) - 1.0;  // |M|_F: one singular value 1 + e
    const double eps = 1e-2;
    EXPECT_NEAR(orthoreg_gradient(off, kSmoothed, eps).norm(),
                2.0 * (1.0 + e) * m_norm / std::sqrt(m_norm * m_norm + eps * eps), 1e-12);
    EXPECT_LT(orthoreg_gradient(off, kSmoothed, eps).norm(), 4.01 * e / eps);  // ~ 4 e / eps
  }
}

TEST(OrthoRegSmoothed, GradientMatchesFiniteDifferencesAwayFromAndNearTheMinimum) {
  Rng rng(22);
  for (const Shape s : kShapes) {
    const Index k = std::min(s.rows, s.cols);
    // A random point, and a point within ~eps of the orthonormal set where the unsquared norm
    // has its kink: Q + 1e-3 noise (|M|_F ~ 1e-3 < eps = 1e-2).
    Matrix q = orthonormal_columns(rng, std::max(s.rows, s.cols), k);
    if (s.rows < s.cols) q.transposeInPlace();
    const Matrix near = q + random_matrix(rng, s.rows, s.cols, 1e-3);
    const Matrix points[] = {random_matrix(rng, s.rows, s.cols, 0.6), near};
    for (int which = 0; which < 2; ++which) {
      const Matrix& d = points[which];
      const double eps = 1e-2;
      auto f = [&](const Vector& x) {
        return orthoreg_value(shaped(x, s.rows, s.cols), kSmoothed, eps);
      };
      const Vector g = flat(orthoreg_gradient(d, kSmoothed, eps));
      // Near the minimum the curvature is ~1/eps: a smaller step keeps the truncation error low.
      const Vector fd = finite_difference_gradient(f, flat(d), which == 0 ? 1e-6 : 1e-7);
      const double rel = (g - fd).cwiseAbs().maxCoeff() / g.cwiseAbs().maxCoeff();
      const std::string tag = std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                              (which == 0 ? "_random" : "_near_orthonormal");
      RecordProperty("smoothed_fd_rel_error_" + tag, sci(rel));
      EXPECT_LT(rel, which == 0 ? 1e-8 : 1e-5) << tag;
      const Vector dir = flat(random_matrix(rng, s.rows, s.cols, which == 0 ? 1.0 : 1e-3));
      const TaylorSlopeReport rep = check_gradient_slope(f, flat(d), g, dir);
      RecordProperty("smoothed_taylor_slope_" + tag, sci(rep.slope));
      EXPECT_NEAR(rep.slope, 2.0, 0.05) << tag;
    }
  }
}

TEST(OrthoRegSmoothed, TheRegulariserUsesItsSmoothingOption) {
  Rng rng(23);
  ParameterLayout layout;
  layout.add("w", 6, 4);
  layout.add("B", 8, 2);
  layout.add("A", 2, 5);
  const Matrix w0 = random_matrix(rng, 6, 4);
  const double eps = 0.05;
  const OrthoReg reg(layout, {OrthoRegLayer::full("w", w0), OrthoRegLayer::lora("B", "A", 4.0)},
                     {.lambda = 1.0, .norm = kSmoothed, .smoothing = eps});
  Vector theta(layout.size());
  for (Index i = 0; i < theta.size(); ++i) theta[i] = 0.5 * rng.normal();
  layout.matrix(theta, "w") += w0;
  const std::vector<double> per_layer = reg.layer_values(theta);
  EXPECT_EQ(per_layer[0], orthoreg_value(Matrix(layout.matrix(theta, "w") - w0), kSmoothed, eps));
  EXPECT_NEAR(per_layer[1],
              lora_orthoreg_value(layout.matrix(theta, "B"), layout.matrix(theta, "A"), 2.0,
                                  kSmoothed, eps),
              1e-15 * per_layer[1]);
  Vector g = Vector::Zero(layout.size());
  EXPECT_EQ(reg.value_and_add_gradient(theta, 1.0, g), reg.value(theta));
  const Vector fd =
      finite_difference_gradient([&](const Vector& t) { return reg.value(t); }, theta, 1e-6);
  const double rel = (g - fd).cwiseAbs().maxCoeff() / g.cwiseAbs().maxCoeff();
  RecordProperty("smoothed_fd_rel_error_layers", sci(rel));
  EXPECT_LT(rel, 1e-8);
  // The other norms ignore the smoothing.
  const OrthoReg plain(layout, {OrthoRegLayer::full("w", w0)}, {.smoothing = 0.5});
  const OrthoReg plain_default(layout, {OrthoRegLayer::full("w", w0)});
  EXPECT_EQ(plain.value(theta), plain_default.value(theta));
}

TEST(OrthoRegSmoothed, RefusesASmoothingThatIsNotFiniteAndPositive) {
  ParameterLayout layout;
  layout.add("w", 4, 3);
  const Matrix d = Matrix::Ones(4, 3);
  for (const double bad : {0.0, -1e-3, kNan, std::numeric_limits<double>::infinity()}) {
    std::string msg = message_of<InvalidArgumentError>([&] {
      OrthoReg(layout, {OrthoRegLayer::update("w")}, {.norm = kSmoothed, .smoothing = bad});
    });
    EXPECT_TRUE(contains(msg, "smoothing") && contains(msg, "> 0")) << msg;
    std::string why;
    EXPECT_FALSE((OrthoRegOptions{.smoothing = bad}.is_valid(&why)));
    EXPECT_TRUE(contains(why, "smoothing")) << why;
    msg = message_of<InvalidArgumentError>([&] { orthoreg_value(d, kSmoothed, bad); });
    EXPECT_TRUE(contains(msg, "orthoreg_value") && contains(msg, "smoothing")) << msg;
    Matrix g = Matrix::Zero(4, 3);
    EXPECT_THROW(orthoreg_add_gradient(d, kSmoothed, 1.0, g, bad), InvalidArgumentError);
    EXPECT_THROW(orthoreg_gradient(d, kSmoothed, bad), InvalidArgumentError);
    EXPECT_THROW(lora_orthoreg_value(Matrix::Ones(4, 2), Matrix::Ones(2, 5), 1.0, kSmoothed, bad),
                 InvalidArgumentError);
    Matrix gb = Matrix::Zero(4, 2), ga = Matrix::Zero(2, 5);
    EXPECT_THROW(lora_orthoreg_add_gradient(Matrix::Ones(4, 2), Matrix::Ones(2, 5), 1.0, kSmoothed,
                                            1.0, gb, ga, bad),
                 InvalidArgumentError);
  }
}

TEST(OrthoReg, NonFiniteParametersGiveANonFiniteValueNotAThrow) {
  Matrix d = Matrix::Ones(4, 3);
  d(1, 2) = kNan;
  EXPECT_TRUE(std::isnan(orthoreg_value(d)));
}

TEST(OrthoReg, BothGramPathsGiveTheSameNumbers) {
  // The Gram is a symmetric rank-k update up to 2 Eigen threads and a general product beyond;
  // run both here whatever the machine.
  Rng rng(13);
  const int saved = Eigen::nbThreads();
  double worst = 0.0;
  for (const Shape s : {Shape{7, 4}, Shape{4, 7}, Shape{90, 70}, Shape{70, 90}}) {
    const Matrix d = random_matrix(rng, s.rows, s.cols, 0.1);
    for (const OrthoRegNorm norm : {kUnsquared, kSquared}) {
      Eigen::setNbThreads(1);
      const double v1 = orthoreg_value(d, norm);
      const Matrix g1 = orthoreg_gradient(d, norm);
      Eigen::setNbThreads(4);
      const double v4 = orthoreg_value(d, norm);
      const Matrix g4 = orthoreg_gradient(d, norm);
      worst = std::max({worst, std::abs(v1 - v4) / v1, max_abs(g1 - g4) / max_abs(g1)});
    }
    // The exact facts hold on the product path too.
    EXPECT_EQ(orthoreg_value(Matrix::Zero(s.rows, s.cols)),
              std::sqrt(static_cast<double>(std::min(s.rows, s.cols))));
    EXPECT_EQ(max_abs(orthoreg_gradient(Matrix::Zero(s.rows, s.cols))), 0.0);
    Matrix eye = Matrix::Zero(s.rows, s.cols);
    eye.diagonal().setOnes();
    EXPECT_EQ(orthoreg_value(eye), 0.0);
    EXPECT_EQ(max_abs(orthoreg_gradient(eye)), 0.0);
  }
  Eigen::setNbThreads(saved);
  RecordProperty("gram_paths_max_rel_difference", sci(worst));
  EXPECT_LT(worst, 1e-13);
}

TEST(OrthoReg, SameInputSameBits) {
  Rng rng(12);
  const Matrix d = random_matrix(rng, 64, 48);
  const Matrix g1 = orthoreg_gradient(d), g2 = orthoreg_gradient(d);
  EXPECT_EQ(g1, g2);
}

}  // namespace
}  // namespace tether
