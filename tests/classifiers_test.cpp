// The classifiers of problems/classifiers.hpp and the task-arithmetic suite of
// problems/task_arithmetic.hpp: seeded data bit for bit, gradients and exact Hessian-vector
// products against central differences and the Taylor slope, the L-BFGS fit to a gradient
// tolerance, task vectors, and refusals of bad input with named errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/classifiers.hpp>
#include <tether/problems/task_arithmetic.hpp>

#include "error_message.hpp"

namespace tether::problems {
namespace {

using tether::testing::message_of;

Vector random_vector(Index n, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = scale * rng.normal();
  return v;
}

Vector unit(Vector v) { return v / v.norm(); }

bool same_bits(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

struct DerivativeReport {
  double fd_relative_error;  // |fd - exact| / |exact|
  double slope;              // Taylor slope of the first-order remainder
};

// Gradient of f at theta: central differences (h = 1e-6) and the Taylor slope along a seeded
// unit direction.
DerivativeReport check_gradient(const std::function<double(const Vector&)>& f,
                                const std::function<void(const Vector&, Vector&)>& grad,
                                const Vector& theta, std::uint64_t seed, double h_min = 1e-5,
                                double h_max = 1e-1) {
  Vector g;
  grad(theta, g);
  const Vector fd = finite_difference_gradient(f, theta, 1e-6);
  const Vector d = unit(random_vector(theta.size(), seed));
  const TaylorSlopeReport rep = check_gradient_slope(f, theta, g, d, h_min, h_max);
  return {(fd - g).norm() / g.norm(), rep.slope};
}

// Hessian-vector product: central differences of the gradient (core's finite_difference_hvp)
// and the Taylor slope of |grad(theta + h v) - grad(theta) - h H v|.
DerivativeReport check_hvp(const std::function<void(const Vector&, Vector&)>& grad,
                           const std::function<void(const Vector&, const Vector&, Vector&)>& hvp,
                           const Vector& theta, std::uint64_t seed, double h_min = 1e-5,
                           double h_max = 1e-1) {
  const Vector v = unit(random_vector(theta.size(), seed));
  Vector hv, fd, g0, gh;
  hvp(theta, v, hv);
  finite_difference_hvp(grad, theta, v, fd);
  grad(theta, g0);
  const TaylorSlopeReport rep = taylor_slope(
      [&](double h) {
        grad(theta + h * v, gh);
        return (gh - g0 - h * hv).norm();
      },
      h_min, h_max, 9, 1e-13 * std::max(1.0, g0.norm()));
  return {(fd - hv).norm() / hv.norm(), rep.slope};
}

Dataset small_data(Index n = 60, Index d = 4, Index k = 3, std::uint64_t seed = 5) {
  return make_gaussian_clusters(
      {.samples = n, .features = d, .classes = k, .separation = 2.0, .seed = seed});
}

// ---- data -------------------------------------------------------------------------------------

TEST(GaussianClusters, SameSeedSameDataBitForBit) {
  const Dataset a = small_data(200, 6, 4, 11), b = small_data(200, 6, 4, 11);
  EXPECT_TRUE(same_bits(a.x, b.x));
  EXPECT_EQ(a.y, b.y);
  const Dataset c = small_data(200, 6, 4, 12);
  EXPECT_FALSE(same_bits(a.x, c.x));
}

TEST(GaussianClusters, BalancedLabelsAndExactMeanSeparation) {
  // With noise 1e-9 every sample is its class mean to 1e-8: pairwise distances are `separation`.
  const Dataset d = make_gaussian_clusters(
      {.samples = 8, .features = 5, .classes = 4, .separation = 3.0, .noise = 1e-9, .seed = 3});
  ASSERT_EQ(d.size(), 8);
  for (Index i = 0; i < 8; ++i) EXPECT_EQ(d.y[static_cast<std::size_t>(i)], i % 4);
  for (Index a = 0; a < 4; ++a)
    for (Index b = a + 1; b < 4; ++b)
      EXPECT_NEAR((d.x.row(a) - d.x.row(b)).norm(), 3.0, 1e-7) << a << ", " << b;
  // Samples of the same class coincide to the noise.
  EXPECT_LE((d.x.row(0) - d.x.row(4)).norm(), 1e-7);
}

TEST(GaussianClusters, RefusesBadOptions) {
  EXPECT_NE(message_of<InvalidArgumentError>([] {
              make_gaussian_clusters({.samples = 0});
            }).find("samples"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([] {
              make_gaussian_clusters({.classes = 1});
            }).find("classes"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([] {
              make_gaussian_clusters({.noise = 0.0});
            }).find("noise"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([] {
              make_gaussian_clusters({.separation = -1.0});
            }).find("separation"),
            std::string::npos);
}

TEST(Dataset, SubsetAndValidation) {
  const Dataset d = small_data(10, 3, 3, 1);
  const Dataset s = d.subset({7, 2});
  ASSERT_EQ(s.size(), 2);
  EXPECT_TRUE(same_bits(s.x.row(0), d.x.row(7)));
  EXPECT_EQ(s.y[1], d.y[2]);
  EXPECT_NE(message_of<InvalidArgumentError>([&] { d.subset({10}); }).find("row index 10"),
            std::string::npos);
  Dataset bad = d;
  bad.y[4] = 3;
  EXPECT_NE(message_of<InvalidArgumentError>([&] { bad.validate("here"); }).find("data.y[4] = 3"),
            std::string::npos);
  bad = d;
  bad.y.pop_back();
  EXPECT_FALSE(message_of<ShapeError>([&] { bad.validate("here"); }).empty());
  bad = d;
  bad.x(3, 1) = std::nan("");
  EXPECT_NE(message_of<InvalidArgumentError>([&] { bad.validate("here"); }).find("non-finite"),
            std::string::npos);
}

// ---- softmax regression -----------------------------------------------------------------------

TEST(SoftmaxRegression, HandExampleLogitsLossAndAccuracy) {
  // d = 1, C = 2, W = (1, -1), b = (0.25, -0.25); x = 0.5 -> z = (0.75, -0.75), x = -1 -> (-0.75,
  // 0.75); both labelled 0: s = -log(1 + e^-1.5), -log(1 + e^1.5).
  SoftmaxRegression m(1, 2);
  Vector theta(4);
  theta << 1.0, -1.0, 0.25, -0.25;
  Dataset d;
  d.classes = 2;
  d.x.resize(2, 1);
  d.x << 0.5, -1.0;
  d.y = {0, 0};
  const Vector s = m.label_log_likelihoods(theta, d);
  EXPECT_NEAR(s[0], -0.201413277982752409, 1e-15);
  EXPECT_NEAR(s[1], -1.701413277982752409, 1e-15);
  EXPECT_NEAR(m.cross_entropy(theta, d), 0.951413277982752409, 1e-15);
  EXPECT_DOUBLE_EQ(m.accuracy(theta, d), 0.5);
  const SoftmaxRegression reg(1, 2, 0.5);
  EXPECT_NEAR(reg.loss(theta, d), 0.951413277982752409 + 0.25 * 2.125, 1e-15);
}

TEST(SoftmaxRegression, GradientAndHvpMatchFiniteDifferences) {
  const Dataset data = small_data();
  for (const double l2 : {0.0, 0.03}) {
    const SoftmaxRegression m(4, 3, l2);
    const Vector theta = random_vector(m.dimension(), 21, 0.7);
    const auto f = [&](const Vector& t) { return m.loss(t, data); };
    const auto g = [&](const Vector& t, Vector& out) { m.gradient(t, data, out); };
    const auto h = [&](const Vector& t, const Vector& v, Vector& out) {
      m.hessian_vector(t, data, v, out);
    };
    const DerivativeReport rg = check_gradient(f, g, theta, 31);
    const DerivativeReport rh = check_hvp(g, h, theta, 32);
    EXPECT_LE(rg.fd_relative_error, 1e-8) << "l2 = " << l2;
    EXPECT_NEAR(rg.slope, 2.0, 0.05) << "l2 = " << l2;
    EXPECT_LE(rh.fd_relative_error, 1e-8) << "l2 = " << l2;
    EXPECT_NEAR(rh.slope, 2.0, 0.05) << "l2 = " << l2;
    // loss_and_gradient agrees with loss and gradient.
    Vector g1, g2;
    m.gradient(theta, data, g1);
    EXPECT_DOUBLE_EQ(m.loss_and_gradient(theta, data, g2), m.loss(theta, data));
    EXPECT_EQ((g1 - g2).norm(), 0.0);
  }
}

TEST(SoftmaxRegression, HessianIsSymmetricAndPositiveSemidefinite) {
  const Dataset data = small_data();
  const SoftmaxRegression m(4, 3, 0.0);
  const Vector theta = random_vector(m.dimension(), 41, 0.5);
  const Vector u = random_vector(m.dimension(), 42), v = random_vector(m.dimension(), 43);
  Vector hu, hv;
  m.hessian_vector(theta, data, u, hu);
  m.hessian_vector(theta, data, v, hv);
  EXPECT_LE(std::abs(u.dot(hv) - v.dot(hu)), 1e-13 * hu.norm() * v.norm());
  EXPECT_GE(u.dot(hu), 0.0);
  // Shift invariance of the logits: adding one vector to every class's (w_c, b_c) changes
  // nothing, so that direction is in the Hessian's null space (l2 = 0).
  Vector shift(m.dimension());
  for (Index c = 0; c < 3; ++c) {
    shift.segment(c * 4, 4) << 0.3, -0.1, 0.2, 0.5;
    shift[12 + c] = 0.7;
  }
  Vector hs;
  m.hessian_vector(theta, data, shift, hs);
  EXPECT_LE(hs.norm(), 1e-14 * shift.norm());
}

TEST(SoftmaxRegression, HugeLogitsStayFinite) {
  const SoftmaxRegression m(4, 3);
  const Dataset data = small_data();
  const Vector theta = random_vector(m.dimension(), 51, 1e4);
  Vector g;
  const double loss = m.loss_and_gradient(theta, data, g);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_TRUE(g.allFinite());
  const Matrix logp = m.log_probabilities(theta, data.x);
  EXPECT_TRUE(logp.allFinite());
  for (Index i = 0; i < logp.rows(); ++i) EXPECT_NEAR(logp.row(i).array().exp().sum(), 1.0, 1e-15);
}

// ---- primitives shared by every per-sample objective ------------------------------------------

template <class M>
void expect_primitives_match_finite_differences(const M& m, const Dataset& data,
                                                const Vector& theta, double tolerance) {
  const Vector v = unit(random_vector(m.dimension(), 61));
  const Vector w = random_vector(data.size(), 62);
  // directional_derivatives: (grad s_i . v)_i against a central difference of s along v.
  const double h = 1e-6;
  const Vector fd_dir = (m.label_log_likelihoods(theta + h * v, data) -
                         m.label_log_likelihoods(theta - h * v, data)) /
                        (2 * h);
  const Vector dir = m.directional_derivatives(theta, data, v);
  EXPECT_LE((fd_dir - dir).norm(), tolerance * dir.norm());
  // weighted_gradient: the gradient of sum_i w_i s_i.
  const auto f = [&](const Vector& t) { return w.dot(m.label_log_likelihoods(t, data)); };
  Vector g;
  m.weighted_gradient(theta, data, w, g);
  const Vector fd_g = finite_difference_gradient(f, theta, 1e-6);
  EXPECT_LE((fd_g - g).norm(), tolerance * g.norm());
  // weighted_hessian_vector: its Hessian times v.
  Vector hv, fd_hv;
  m.weighted_hessian_vector(theta, data, w, v, hv);
  finite_difference_hvp([&](const Vector& t, Vector& out) { m.weighted_gradient(t, data, w, out); },
                        theta, v, fd_hv);
  EXPECT_LE((fd_hv - hv).norm(), tolerance * hv.norm());
}

TEST(Classifiers, PrimitivesMatchFiniteDifferences) {
  const Dataset data = small_data();
  const SoftmaxRegression sr(4, 3);
  expect_primitives_match_finite_differences(sr, data, random_vector(sr.dimension(), 71, 0.5),
                                             1e-7);
  const Mlp tanh_mlp(4, 6, 3, Activation::kTanh);
  expect_primitives_match_finite_differences(tanh_mlp, data, tanh_mlp.initial_parameters(72), 1e-7);
  const Mlp relu_mlp(4, 6, 3, Activation::kRelu);
  expect_primitives_match_finite_differences(relu_mlp, data, relu_mlp.initial_parameters(73), 1e-7);
}

// ---- MLP --------------------------------------------------------------------------------------

TEST(Mlp, LayoutAndForwardPassByHand) {
  // d = 1, H = 2, C = 2: U = (1, -2), c = (0, 1), V = [[1, 0], [0.5, -1]], e = (0.1, -0.1).
  const Mlp m(1, 2, 2, Activation::kRelu);
  ASSERT_EQ(m.dimension(), 2 + 2 + 4 + 2);
  Vector theta(10);
  theta << 1.0, -2.0, 0.0, 1.0, 1.0, 0.0, 0.5, -1.0, 0.1, -0.1;
  Matrix x(1, 1);
  x << 0.25;
  // a = (0.25, 0.5), relu = (0.25, 0.5), z = (0.25 + 0.1, 0.125 - 0.5 - 0.1) = (0.35, -0.475).
  const Matrix z = m.logits(theta, x);
  EXPECT_DOUBLE_EQ(z(0, 0), 0.35);
  EXPECT_DOUBLE_EQ(z(0, 1), -0.475);
  const Mlp t(1, 2, 2, Activation::kTanh);
  const Matrix zt = t.logits(theta, x);
  EXPECT_NEAR(zt(0, 0), std::tanh(0.25) + 0.1, 1e-15);
  EXPECT_NEAR(zt(0, 1), 0.5 * std::tanh(0.25) - std::tanh(0.5) - 0.1, 1e-15);
}

TEST(Mlp, GradientAndHvpMatchFiniteDifferences) {
  const Dataset data = small_data(80, 4, 3, 9);
  for (const Activation act : {Activation::kTanh, Activation::kRelu}) {
    const Mlp m(4, 7, 3, act, 0.01);
    const Vector theta = m.initial_parameters(81, 1.5);
    const auto f = [&](const Vector& t) { return m.loss(t, data); };
    const auto g = [&](const Vector& t, Vector& out) { m.gradient(t, data, out); };
    const auto h = [&](const Vector& t, const Vector& v, Vector& out) {
      m.hessian_vector(t, data, v, out);
    };
    // ReLU is piecewise smooth: keep the Taylor steps below the nearest kink.
    const double h_max = act == Activation::kRelu ? 1e-3 : 1e-1;
    const double h_min = act == Activation::kRelu ? 1e-6 : 1e-5;
    const DerivativeReport rg = check_gradient(f, g, theta, 82, h_min, h_max);
    const DerivativeReport rh = check_hvp(g, h, theta, 83, h_min, h_max);
    const char* name = act == Activation::kRelu ? "relu" : "tanh";
    EXPECT_LE(rg.fd_relative_error, 1e-8) << name;
    EXPECT_NEAR(rg.slope, 2.0, 0.05) << name;
    EXPECT_LE(rh.fd_relative_error, 1e-7) << name;
    EXPECT_NEAR(rh.slope, 2.0, 0.05) << name;
    std::printf("Mlp %s: gradient fd error %.2e slope %.4f; hvp fd error %.2e slope %.4f\n", name,
                rg.fd_relative_error, rg.slope, rh.fd_relative_error, rh.slope);
  }
}

TEST(Mlp, WrongHvpFailsTheChecks) {
  // The HVP checks can fail: an HVP 10% off fails both the difference and the slope test.
  const Dataset data = small_data(80, 4, 3, 9);
  const Mlp m(4, 7, 3, Activation::kTanh);
  const Vector theta = m.initial_parameters(91, 1.5);
  const auto g = [&](const Vector& t, Vector& out) { m.gradient(t, data, out); };
  const DerivativeReport wrong = check_hvp(
      g,
      [&](const Vector& t, const Vector& u, Vector& out) {
        m.hessian_vector(t, data, u, out);
        out *= 1.1;
      },
      theta, 92);
  EXPECT_LT(wrong.slope, 1.2);
  EXPECT_GT(wrong.fd_relative_error, 0.05);
}

TEST(Classifiers, WrongGradientFailsTheSlopeCheck) {
  const Dataset data = small_data();
  const SoftmaxRegression m(4, 3);
  const Vector theta = random_vector(m.dimension(), 101, 0.5);
  const DerivativeReport r = check_gradient([&](const Vector& t) { return m.loss(t, data); },
                                            [&](const Vector& t, Vector& out) {
                                              m.gradient(t, data, out);
                                              out *= 1.0 + 1e-3;
                                            },
                                            theta, 102);
  EXPECT_LT(r.slope, 1.5);
  EXPECT_GT(r.fd_relative_error, 5e-4);
}

// ---- fitting ----------------------------------------------------------------------------------

TEST(Fit, SoftmaxRegressionReachesTheGradientTolerance) {
  const Dataset data = small_data(300, 4, 3, 13);
  const SoftmaxRegression m(4, 3, 1e-3);
  const FitResult r =
      fit_classifier(m, data, m.initial_parameters(1), {.gradient_tolerance = 1e-9});
  Vector g;
  m.gradient(r.theta, data, g);
  EXPECT_EQ(r.reason, StopReason::kConverged) << r.message;
  EXPECT_LE(g.norm(), 1e-9);
  EXPECT_DOUBLE_EQ(r.gradient_norm, g.norm());
  EXPECT_DOUBLE_EQ(r.loss, m.loss(r.theta, data));
  // Strict convexity (l2 > 0): a second start reaches the same minimiser. |theta - theta'| <=
  // (|g| + |g'|) / l2 = 2e-6 bounds the distance.
  const FitResult r2 =
      fit_classifier(m, data, m.initial_parameters(2, 1.0), {.gradient_tolerance = 1e-9});
  EXPECT_LE((r.theta - r2.theta).norm(), 2e-6);
  // Its training accuracy is that of the nearest-class-mean rule (near Bayes for these
  // isotropic clusters of equal size) to within 3 points.
  Matrix means = Matrix::Zero(3, 4);
  for (Index i = 0; i < data.size(); ++i)
    means.row(data.y[static_cast<std::size_t>(i)]) += data.x.row(i);
  means /= 100.0;
  Index nearest_correct = 0;
  for (Index i = 0; i < data.size(); ++i) {
    Index best = 0;
    for (Index c = 1; c < 3; ++c)
      if ((data.x.row(i) - means.row(c)).squaredNorm() <
          (data.x.row(i) - means.row(best)).squaredNorm())
        best = c;
    nearest_correct += best == data.y[static_cast<std::size_t>(i)];
  }
  const double acc = m.accuracy(r.theta, data), nearest = nearest_correct / 300.0;
  std::printf(
      "softmax fit: %d iterations, |grad| %.2e, accuracy %.4f (nearest mean %.4f), |theta - "
      "theta'| %.2e\n",
      r.iterations, r.gradient_norm, acc, nearest, (r.theta - r2.theta).norm());
  EXPECT_NEAR(acc, nearest, 0.03);
}

TEST(Fit, MlpReachesTheGradientTolerance) {
  const Dataset data = small_data(200, 4, 3, 14);
  const Mlp m(4, 8, 3, Activation::kTanh, 1e-2);
  const FitResult r = fit_classifier(m, data, m.initial_parameters(3));
  Vector g;
  m.gradient(r.theta, data, g);
  EXPECT_EQ(r.reason, StopReason::kConverged) << r.message;
  EXPECT_LE(g.norm(), 1e-8);
  std::printf("mlp fit: %d iterations, |grad| %.2e, accuracy %.4f\n", r.iterations, g.norm(),
              m.accuracy(r.theta, data));
}

TEST(Fit, LbfgsSolvesAQuadraticExactly) {
  // f = 0.5 (x - c)^T A (x - c), A = diag(1, 10, 100): minimiser c.
  Vector c(3), a(3);
  c << 1.0, -2.0, 3.0;
  a << 1.0, 10.0, 100.0;
  const FitResult r = minimize_lbfgs(
      [&](const Vector& x, Vector& g) {
        g = (a.array() * (x - c).array()).matrix();
        return 0.5 * (x - c).dot(g);
      },
      Vector::Zero(3), {.gradient_tolerance = 1e-12});
  EXPECT_EQ(r.reason, StopReason::kConverged);
  EXPECT_LE((r.theta - c).norm(), 1e-12);
  EXPECT_LE(r.iterations, 20);
}

TEST(Fit, IterationLimitIsReported) {
  const Dataset data = small_data(300, 4, 3, 13);
  const SoftmaxRegression m(4, 3, 1e-3);
  const FitResult r = fit_classifier(m, data, m.initial_parameters(1), {.max_iterations = 2});
  EXPECT_EQ(r.reason, StopReason::kIterationLimit);
  EXPECT_EQ(r.iterations, 2);
  EXPECT_GT(r.gradient_norm, 1e-8);
}

TEST(Fit, RefusesBadOptions) {
  const auto f = [](const Vector& x, Vector& g) {
    g = x;
    return 0.5 * x.squaredNorm();
  };
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              minimize_lbfgs(f, Vector::Ones(2), {.gradient_tolerance = 0.0});
            }).find("gradient_tolerance"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              minimize_lbfgs(f, Vector::Ones(2), {.max_iterations = 0});
            }).find("max_iterations"),
            std::string::npos);
  EXPECT_NE(message_of<NumericalError>([] {
              minimize_lbfgs(
                  [](const Vector& x, Vector& g) {
                    g = x;
                    return std::nan("");
                  },
                  Vector::Ones(2));
            }).find("not finite"),
            std::string::npos);
}

// ---- bad input --------------------------------------------------------------------------------

TEST(Classifiers, RefuseBadInputWithNamedErrors) {
  const Dataset data = small_data();
  const SoftmaxRegression m(4, 3);
  const Mlp mlp(4, 5, 3);
  Vector g;
  EXPECT_NE(message_of<ShapeError>([&] { m.loss(Vector::Zero(5), data); }).find("theta has size 5"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              mlp.gradient(Vector::Zero(5), data, g);
            }).find("theta has size 5"),
            std::string::npos);
  const SoftmaxRegression m5(5, 3);
  EXPECT_NE(
      message_of<ShapeError>([&] { m5.loss(Vector::Zero(m5.dimension()), data); }).find("features"),
      std::string::npos);
  const SoftmaxRegression m4(4, 4);
  EXPECT_NE(
      message_of<ShapeError>([&] { m4.loss(Vector::Zero(m4.dimension()), data); }).find("classes"),
      std::string::npos);
  Vector hv;
  EXPECT_NE(message_of<ShapeError>([&] {
              m.hessian_vector(Vector::Zero(m.dimension()), data, Vector::Zero(3), hv);
            }).find("v has size 3"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              m.weighted_gradient(Vector::Zero(m.dimension()), data, Vector::Zero(2), g);
            }).find("weights has size 2"),
            std::string::npos);
  Dataset empty;
  empty.classes = 3;
  empty.x.resize(0, 4);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              m.loss(Vector::Zero(m.dimension()), empty);
            }).find("empty"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([] { SoftmaxRegression(4, 3, -1.0); }).find("l2"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([] { Mlp(4, 0, 3); }).find("hidden"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([] { SoftmaxRegression(4, 1); }).find("classes"),
            std::string::npos);
}

// ---- task arithmetic --------------------------------------------------------------------------

SharedBackboneOptions small_suite() {
  return {.inputs = 8,
          .backbone_width = 24,
          .hidden = 10,
          .classes = 3,
          .tasks = {{0, 3, 0, 0}, {1, 3, 2, 4}, {5, 3, 6, 4}},
          .train_samples = 150,
          .validation_samples = 50,
          .test_samples = 300,
          .seed = 17};
}

TEST(TaskArithmetic, SameSeedSameSuiteBitForBit) {
  const SharedBackboneTasks a(small_suite()), b(small_suite());
  EXPECT_TRUE(same_bits(a.pretrained(), b.pretrained()));
  for (Index t = 0; t < a.tasks(); ++t) {
    EXPECT_TRUE(same_bits(a.head(t), b.head(t)));
    for (const TaskSplit s : {TaskSplit::kTrain, TaskSplit::kValidation, TaskSplit::kTest}) {
      EXPECT_TRUE(same_bits(a.data(t, s).x, b.data(t, s).x));
      EXPECT_EQ(a.data(t, s).y, b.data(t, s).y);
    }
  }
  SharedBackboneOptions o = small_suite();
  o.seed = 18;
  EXPECT_FALSE(same_bits(SharedBackboneTasks(o).pretrained(), a.pretrained()));
}

TEST(TaskArithmetic, CachedFeaturesOfTheSuitesOwnDataAreTheFormulasBits) {
  const SharedBackboneTasks s(small_suite());
  const Vector theta = s.pretrained() + random_vector(s.dimension(), 121, 0.1);
  for (Index t = 0; t < s.tasks(); ++t) {
    for (const TaskSplit split : {TaskSplit::kTrain, TaskSplit::kValidation, TaskSplit::kTest}) {
      const Dataset& own = s.data(t, split);
      const Dataset copy = own;  // another object: the features are computed afresh
      EXPECT_TRUE(same_bits(s.features(own.x), s.features(copy.x)));
      EXPECT_TRUE(same_bits(s.logits(t, theta, own.x), s.logits(t, theta, copy.x)));
      Vector g_own, g_copy;
      const double l_own = s.loss_and_gradient(t, theta, own, g_own);
      const double l_copy = s.loss_and_gradient(t, theta, copy, g_copy);
      EXPECT_EQ(l_own, l_copy);
      EXPECT_TRUE(same_bits(g_own, g_copy));
      EXPECT_EQ(s.accuracy(t, theta, own), s.accuracy(t, theta, copy));
    }
  }
  // A copy of the suite reads its own cache and gives the same numbers.
  const SharedBackboneTasks c = s;
  Vector g1, g2;
  EXPECT_EQ(c.loss_and_gradient(1, theta, c.data(1, TaskSplit::kTrain), g1),
            s.loss_and_gradient(1, theta, s.data(1, TaskSplit::kTrain), g2));
  EXPECT_TRUE(same_bits(g1, g2));
}

TEST(TaskArithmetic, EveryTaskHasEveryClass) {
  const SharedBackboneTasks s(small_suite());
  for (Index t = 0; t < s.tasks(); ++t) {
    const Dataset& d = s.data(t, TaskSplit::kTrain);
    std::vector<int> counts(3, 0);
    for (int y : d.y) ++counts[static_cast<std::size_t>(y)];
    for (int c : counts) EXPECT_GE(c, 10) << "task " << t << ": a class is (nearly) absent";
  }
  EXPECT_EQ(s.dimension(), 10 * 24);
  // Heads read their hidden units only; hidden_count = 0 reads all of them.
  EXPECT_EQ(s.spec(0).hidden_count, 10);
  EXPECT_EQ((s.head(0).array() == 0.0).count(), 0);
  EXPECT_EQ(s.head(1).leftCols(2).norm() + s.head(1).rightCols(4).norm(), 0.0);
  EXPECT_EQ((s.head(1).middleCols(2, 4).array() == 0.0).count(), 0);
}

TEST(TaskArithmetic, GradientMatchesFiniteDifferences) {
  const SharedBackboneTasks s(small_suite());
  const Vector theta = s.pretrained() + random_vector(s.dimension(), 111, 0.1);
  for (Index t = 0; t < s.tasks(); ++t) {
    const Dataset& d = s.data(t, TaskSplit::kTrain);
    const DerivativeReport r =
        check_gradient([&](const Vector& x) { return s.loss(t, x, d); },
                       [&](const Vector& x, Vector& g) { s.loss_and_gradient(t, x, d, g); }, theta,
                       112 + static_cast<std::uint64_t>(t));
    EXPECT_LE(r.fd_relative_error, 1e-8) << "task " << t;
    EXPECT_NEAR(r.slope, 2.0, 0.05) << "task " << t;
    Vector g;
    EXPECT_DOUBLE_EQ(s.loss_and_gradient(t, theta, d, g), s.loss(t, theta, d));
  }
}

TEST(TaskArithmetic, DisjointFeaturesGiveOrthogonalTaskVectorsAndNoInterference) {
  // The default suite: tasks 0 and 1 share hidden units, tasks 2 and 3 have their own.
  const SharedBackboneTasks s;
  const Vector zero_shot = s.accuracies(s.pretrained(), TaskSplit::kTest);
  std::vector<Vector> theta, tau;
  Vector fine_tuned(s.tasks());
  for (Index t = 0; t < s.tasks(); ++t) {
    const FitResult ft = s.fine_tune(t);
    EXPECT_EQ(ft.reason, StopReason::kConverged) << ft.message;
    theta.push_back(ft.theta);
    tau.push_back(s.task_vector(ft.theta));
    fine_tuned[t] = s.accuracy(t, ft.theta, s.data(t, TaskSplit::kTest));
    std::printf("task %ld: zero-shot %.3f, fine-tuned %.3f, |tau| %.3f (|theta_0| %.3f)\n",
                static_cast<long>(t), zero_shot[t], fine_tuned[t], tau.back().norm(),
                s.pretrained().norm());
    EXPECT_GE(fine_tuned[t], 0.8) << "task " << t;
    EXPECT_LE(zero_shot[t], 0.35) << "task " << t;  // near chance 1/4
  }
  // Disjoint hidden units: task vectors on disjoint rows of W, exactly orthogonal.
  for (Index a = 0; a < s.tasks(); ++a)
    for (Index b = a + 1; b < s.tasks(); ++b)
      if (a >= 2 || b >= 2) EXPECT_EQ(tau[a].dot(tau[b]), 0.0) << a << ", " << b;
  const double cos01 = tau[0].dot(tau[1]) / (tau[0].norm() * tau[1].norm());
  EXPECT_GT(std::abs(cos01), 1e-3);
  // Addition: tasks 2 and 3 keep their fine-tuned logits; tasks 0 and 1 interfere.
  Vector merged = s.pretrained();
  for (const Vector& v : tau) merged += v;
  const Vector merged_acc = s.accuracies(merged, TaskSplit::kTest);
  for (const Index t : {Index{2}, Index{3}}) {
    const Matrix& x = s.data(t, TaskSplit::kTest).x;
    EXPECT_LE((s.logits(t, merged, x) - s.logits(t, theta[t], x)).cwiseAbs().maxCoeff(), 1e-12);
    EXPECT_DOUBLE_EQ(merged_acc[t], fine_tuned[t]);
  }
  EXPECT_LT(merged_acc[1], fine_tuned[1] - 0.05);
  EXPECT_GT(merged_acc[0], zero_shot[0] + 0.3);
  // Negation: theta_0 - tau_0 pushes task 0 below chance and leaves tasks 2 and 3 untouched.
  const Vector negated = s.accuracies(s.pretrained() - tau[0], TaskSplit::kTest);
  EXPECT_LT(negated[0], 0.1);
  EXPECT_DOUBLE_EQ(negated[2], zero_shot[2]);
  EXPECT_DOUBLE_EQ(negated[3], zero_shot[3]);
  std::printf("cos(tau0, tau1) = %.4f; merged %.3f %.3f %.3f %.3f; task 0 negated %.3f\n", cos01,
              merged_acc[0], merged_acc[1], merged_acc[2], merged_acc[3], negated[0]);
}

TEST(TaskArithmetic, FineTuningWithoutThePenaltyLetsTheTaskVectorExplode) {
  // The documented reason for mu: without it |tau| grows far beyond |theta_0|.
  const SharedBackboneTasks s;
  const double with = s.task_vector(s.fine_tune(2).theta).norm();
  const double without = s.task_vector(s.fine_tune(2, {.max_iterations = 300}, 0.0).theta).norm();
  std::printf("|tau_2|: mu = 1e-2 %.3f, mu = 0 %.3f, |theta_0| %.3f\n", with, without,
              s.pretrained().norm());
  EXPECT_LT(with, s.pretrained().norm());
  EXPECT_GT(without, 20.0 * s.pretrained().norm());
}

TEST(TaskArithmetic, RefusesBadInput) {
  SharedBackboneOptions o = small_suite();
  o.tasks = {{6, 3, 0, 0}};
  EXPECT_NE(
      message_of<InvalidArgumentError>([&] { (void)SharedBackboneTasks{o}; }).find("tasks[0]"),
      std::string::npos);
  o = small_suite();
  o.tasks = {{0, 3, 8, 4}};
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              (void)SharedBackboneTasks{o};
            }).find("hidden units [8, 12)"),
            std::string::npos);
  o = small_suite();
  o.tasks.clear();
  EXPECT_NE(message_of<InvalidArgumentError>([&] { (void)SharedBackboneTasks{o}; }).find("tasks"),
            std::string::npos);
  const SharedBackboneTasks s(small_suite());
  EXPECT_NE(message_of<ShapeError>([&] {
              s.loss(0, Vector::Zero(3), s.data(0, TaskSplit::kTrain));
            }).find("theta has size 3"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              s.loss(3, s.pretrained(), s.data(0, TaskSplit::kTrain));
            }).find("task = 3"),
            std::string::npos);
  const Dataset wrong = small_data(10, 4, 3, 1);
  EXPECT_NE(message_of<ShapeError>([&] { s.loss(0, s.pretrained(), wrong); }).find("features"),
            std::string::npos);
}

}  // namespace
}  // namespace tether::problems
