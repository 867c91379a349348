// The unlearning problems of problems/unlearning.hpp: splits (disjoint, covering, seeded bit for
// bit), every forget loss on every model against central differences and the Taylor slope
// (gradients and exact Hessian-vector products), NPO's gradient at the reference equal to GA's,
// SimNPO's closed-form values, the retrained gold standard at its gradient tolerance, the
// metrics, and refusals of bad input with named errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/unlearning.hpp>

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

Dataset clusters(Index n = 90, std::uint64_t seed = 3) {
  return make_gaussian_clusters(
      {.samples = n, .features = 4, .classes = 3, .separation = 2.5, .seed = seed});
}

std::vector<Index> all_indices(const ForgetRetainSplit& s) {
  std::vector<Index> all = s.forget_indices;
  all.insert(all.end(), s.retain_indices.begin(), s.retain_indices.end());
  std::sort(all.begin(), all.end());
  return all;
}

void expect_valid_split(const Dataset& data, const ForgetRetainSplit& s) {
  // Disjoint and covering: the union, sorted, is 0..n-1 with no repeats.
  const std::vector<Index> all = all_indices(s);
  ASSERT_EQ(static_cast<Index>(all.size()), data.size());
  for (Index i = 0; i < data.size(); ++i) EXPECT_EQ(all[static_cast<std::size_t>(i)], i);
  EXPECT_TRUE(std::is_sorted(s.forget_indices.begin(), s.forget_indices.end()));
  EXPECT_TRUE(std::is_sorted(s.retain_indices.begin(), s.retain_indices.end()));
  // The sets hold exactly those rows.
  ASSERT_EQ(s.forget.size(), static_cast<Index>(s.forget_indices.size()));
  ASSERT_EQ(s.retain.size(), static_cast<Index>(s.retain_indices.size()));
  for (std::size_t k = 0; k < s.forget_indices.size(); ++k) {
    EXPECT_EQ(s.forget.x.row(static_cast<Index>(k)), data.x.row(s.forget_indices[k]));
    EXPECT_EQ(s.forget.y[k], data.y[static_cast<std::size_t>(s.forget_indices[k])]);
  }
  for (std::size_t k = 0; k < s.retain_indices.size(); ++k) {
    EXPECT_EQ(s.retain.x.row(static_cast<Index>(k)), data.x.row(s.retain_indices[k]));
    EXPECT_EQ(s.retain.y[k], data.y[static_cast<std::size_t>(s.retain_indices[k])]);
  }
}

// ---- splits -----------------------------------------------------------------------------------

TEST(Splits, ForgetClassTakesExactlyThatClass) {
  const Dataset data = clusters();
  for (int c = 0; c < 3; ++c) {
    const ForgetRetainSplit s = split_forget_class(data, c);
    expect_valid_split(data, s);
    EXPECT_EQ(s.forget.size(), 30);
    for (int y : s.forget.y) EXPECT_EQ(y, c);
    for (int y : s.retain.y) EXPECT_NE(y, c);
  }
}

TEST(Splits, RandomSubsetIsSeededDisjointAndCovering) {
  const Dataset data = clusters(101);
  const ForgetRetainSplit a = split_forget_random(data, 0.1, 7);
  expect_valid_split(data, a);
  EXPECT_EQ(a.forget.size(), 10);  // round(10.1)
  const ForgetRetainSplit b = split_forget_random(data, 0.1, 7);
  EXPECT_EQ(a.forget_indices, b.forget_indices);
  EXPECT_EQ(a.retain_indices, b.retain_indices);
  EXPECT_EQ(std::memcmp(a.forget.x.data(), b.forget.x.data(),
                        sizeof(double) * static_cast<std::size_t>(a.forget.x.size())),
            0);
  EXPECT_NE(split_forget_random(data, 0.1, 8).forget_indices, a.forget_indices);
  const ForgetRetainSplit c = split_forget_random(data, 0.5, 9);
  expect_valid_split(data, c);
  EXPECT_EQ(c.forget.size(), 51);  // round(50.5) rounds half away from zero
}

TEST(Splits, RefuseBadInputWithNamedErrors) {
  const Dataset data = clusters();
  for (const double f : {0.0, 1.0, -0.1, 1.5, std::nan("")})
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                split_forget_random(data, f, 1);
              }).find("fraction must lie in (0, 1)"),
              std::string::npos)
        << f;
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              split_forget_random(data, 0.001, 1);
            }).find("forget set is empty"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              split_forget_random(data, 0.999, 1);
            }).find("retain set is empty"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              split_forget_class(data, 3);
            }).find("forget_class = 3"),
            std::string::npos);
  // A class with no samples leaves the forget set empty.
  const Dataset no_class_2 = data.subset(split_forget_class(data, 2).retain_indices);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              split_forget_class(no_class_2, 2);
            }).find("forget set is empty"),
            std::string::npos);
}

// ---- gradients and Hessian-vector products of every loss on every model -----------------------

struct Report {
  double gradient_fd_error, gradient_slope, hvp_fd_error, hvp_slope;
};

// f, its gradient and its HVP at theta: central differences and the Taylor slopes (the HVP's
// remainder |grad(theta + h v) - grad(theta) - h H v| is O(h^2)).
Report check_derivatives(const std::function<double(const Vector&)>& f,
                         const GradientFunction& grad, const HessianVectorFunction& hvp,
                         const Vector& theta, std::uint64_t seed, double h_min, double h_max) {
  Report r{};
  Vector g;
  grad(theta, g);
  const Vector fd = finite_difference_gradient(f, theta, 1e-6);
  r.gradient_fd_error = (fd - g).norm() / g.norm();
  const Vector d = unit(random_vector(theta.size(), seed));
  r.gradient_slope = check_gradient_slope(f, theta, g, d, h_min, h_max).slope;
  const Vector v = unit(random_vector(theta.size(), seed + 1));
  Vector hv, fd_hv, gh;
  hvp(theta, v, hv);
  finite_difference_hvp(grad, theta, v, fd_hv);
  r.hvp_fd_error = (fd_hv - hv).norm() / hv.norm();
  r.hvp_slope = taylor_slope(
                    [&](double h) {
                      grad(theta + h * v, gh);
                      return (gh - g - h * hv).norm();
                    },
                    h_min, h_max, 9, 1e-13 * std::max(1.0, g.norm()))
                    .slope;
  return r;
}

template <class P>
void expect_exact_derivatives(const P& p, const Vector& theta, const std::string& name,
                              double h_min = 1e-5, double h_max = 1e-1) {
  const ForgetRetainObjective o = make_forget_retain_objective(p);
  EXPECT_TRUE(o.forget_hvp_exact && o.retain_hvp_exact) << name;
  const Report f =
      check_derivatives(o.forget_loss, o.forget_gradient, o.forget_hvp, theta, 11, h_min, h_max);
  const Report r =
      check_derivatives(o.retain_loss, o.retain_gradient, o.retain_hvp, theta, 13, h_min, h_max);
  std::printf(
      "%-22s forget: grad fd %.1e slope %.4f, hvp fd %.1e slope %.4f | retain: grad fd %.1e "
      "slope %.4f, hvp fd %.1e slope %.4f\n",
      name.c_str(), f.gradient_fd_error, f.gradient_slope, f.hvp_fd_error, f.hvp_slope,
      r.gradient_fd_error, r.gradient_slope, r.hvp_fd_error, r.hvp_slope);
  for (const Report& x : {f, r}) {
    EXPECT_LE(x.gradient_fd_error, 1e-7) << name;
    EXPECT_NEAR(x.gradient_slope, 2.0, 0.05) << name;
    EXPECT_LE(x.hvp_fd_error, 1e-6) << name;
    EXPECT_NEAR(x.hvp_slope, 2.0, 0.05) << name;
  }
}

template <ClassifierModel M>
void expect_every_loss_exact(const M& model, const ForgetRetainSplit& split, const Vector& theta,
                             const std::string& tag, double h_min = 1e-5, double h_max = 1e-1) {
  // NPO's reference differs from theta so that s - r != 0 and phi'' varies across samples.
  const Vector reference = theta + random_vector(theta.size(), 99, 0.3);
  expect_exact_derivatives(make_gradient_ascent(model, split), theta, tag + " GA", h_min, h_max);
  expect_exact_derivatives(make_npo(model, split, reference, 0.7), theta, tag + " NPO", h_min,
                           h_max);
  expect_exact_derivatives(make_simnpo(model, split, 2.5, 0.4), theta, tag + " SimNPO", h_min,
                           h_max);
}

TEST(UnlearningProblems, SoftmaxRegressionLossesHaveExactDerivatives) {
  const Dataset data = clusters();
  const SoftmaxRegression model(4, 3, 0.01);
  const Vector theta = random_vector(model.dimension(), 5, 0.6);
  expect_every_loss_exact(model, split_forget_class(data, 1), theta, "softmax/class");
  expect_every_loss_exact(model, split_forget_random(data, 0.2, 4), theta, "softmax/random");
}

TEST(UnlearningProblems, MlpLossesHaveExactDerivatives) {
  const Dataset data = clusters();
  const Mlp tanh_mlp(4, 6, 3, Activation::kTanh, 0.01);
  expect_every_loss_exact(tanh_mlp, split_forget_class(data, 0),
                          tanh_mlp.initial_parameters(6, 1.5), "mlp-tanh/class");
  // ReLU is piecewise smooth: keep the Taylor steps below the nearest kink.
  const Mlp relu_mlp(4, 6, 3, Activation::kRelu, 0.01);
  expect_every_loss_exact(relu_mlp, split_forget_random(data, 0.3, 5),
                          relu_mlp.initial_parameters(7, 1.5), "mlp-relu/random", 1e-6, 1e-3);
}

// ---- NPO and SimNPO identities ----------------------------------------------------------------

TEST(Npo, AtTheReferenceItsGradientIsGradientAscents) {
  // grad l_NPO = (1/|D_f|) sum 2 sigma(beta (s_i - r_i)) grad s_i; at theta = theta_ref every
  // weight is 2 sigma(0) = 1, which is grad l_GA = (1/|D_f|) sum grad s_i, for every beta.
  const Dataset data = clusters();
  const ForgetRetainSplit split = split_forget_random(data, 0.25, 2);
  const SoftmaxRegression sr(4, 3, 0.01);
  const Mlp mlp(4, 6, 3, Activation::kTanh);
  const auto check = [&](const auto& model, const Vector& ref) {
    const auto ga = make_gradient_ascent(model, split);
    Vector g_ga;
    ga.forget_gradient(ref, g_ga);
    for (const double beta : {0.05, 0.1, 1.0, 5.0}) {
      const auto npo = make_npo(model, split, ref, beta);
      Vector g_npo;
      npo.forget_gradient(ref, g_npo);
      EXPECT_LE((g_npo - g_ga).norm(), 1e-15 * g_ga.norm()) << beta;
      if (beta == 0.1)
        std::printf("NPO at theta_ref: |g_NPO - g_GA| = %.3e (|g_GA| = %.3f)\n",
                    (g_npo - g_ga).norm(), g_ga.norm());
      // l_NPO(theta_ref) = (2/beta) log 2.
      EXPECT_NEAR(npo.forget_loss(ref), 2.0 / beta * std::numbers::ln2, 1e-15 / beta) << beta;
    }
    // Away from the reference the weights differ: the identity is not a tautology.
    const Vector away = ref + random_vector(ref.size(), 3, 0.5);
    Vector g1, g2;
    make_npo(model, split, ref, 1.0).forget_gradient(away, g1);
    ga.forget_gradient(away, g2);
    EXPECT_GT((g1 - g2).norm(), 1e-3 * g2.norm());
    // beta -> 0: the weights 2 sigma(beta (s - r)) = 1 + beta (s - r) / 2 + O(beta^3) tend to 1.
    std::printf("NPO away from theta_ref (beta 1): |g_NPO - g_GA| / |g_GA| = %.3e\n",
                (g1 - g2).norm() / g2.norm());
    make_npo(model, split, ref, 1e-6).forget_gradient(away, g1);
    std::printf("NPO beta = 1e-6: |g_NPO - g_GA| / |g_GA| = %.3e\n", (g1 - g2).norm() / g2.norm());
    EXPECT_LE((g1 - g2).norm(), 1e-5 * g2.norm());
  };
  check(sr, random_vector(sr.dimension(), 21, 0.5));
  check(mlp, mlp.initial_parameters(22));
}

TEST(SimNpo, ClosedFormValuesOnAHandExample) {
  // d = 1, C = 2, W = (1, -1), b = (0.25, -0.25); forget set x = (0.5, -1), labels (0, 0):
  // s = (-log(1 + e^-1.5), -log(1 + e^1.5)). beta = 2, gamma = 0.5:
  //   l = (2/beta) mean softplus(beta s + gamma) = 0.398164665905045585...
  //   dl/db_0 = mean 2 sigma(beta s_i + gamma)(1 - p_0i) = 0.138166336510485957...
  //   dl/dW_00 = mean 2 sigma(beta s_i + gamma)(1 - p_0i) x_i = 0.005295174015489515...
  // (reference values from 30-digit arithmetic), and dl/db_1 = -dl/db_0, dl/dW_10 = -dl/dW_00.
  const SoftmaxRegression model(1, 2);
  ForgetRetainSplit split;
  split.forget.classes = split.retain.classes = 2;
  split.forget.x.resize(2, 1);
  split.forget.x << 0.5, -1.0;
  split.forget.y = {0, 0};
  split.retain.x.resize(1, 1);
  split.retain.x << 2.0;
  split.retain.y = {1};
  Vector theta(4);
  theta << 1.0, -1.0, 0.25, -0.25;
  const auto p = make_simnpo(model, split, 2.0, 0.5);
  EXPECT_NEAR(p.forget_loss(theta), 0.398164665905045585, 1e-15);
  Vector g;
  p.forget_gradient(theta, g);
  EXPECT_NEAR(g[2], 0.138166336510485957, 1e-15);
  EXPECT_NEAR(g[0], 0.005295174015489515, 1e-15);
  EXPECT_NEAR(g[3], -0.138166336510485957, 1e-15);
  EXPECT_NEAR(g[1], -0.005295174015489515, 1e-15);
}

TEST(SimNpo, UniformModelClosedFormAndGradientRatio) {
  // theta = 0 predicts 1/C for every sample: s = -log C, so
  //   l = (2/beta) softplus(-beta log C + gamma) = (2/beta) log(1 + C^-beta e^gamma),
  //   grad l = 2 sigma(-beta log C + gamma) grad l_GA.
  // C = 3, beta = 2.5, gamma = 0.3: l = 0.8 log(1 + 3^-2.5 e^0.3) = 0.066438045919881309...
  const Dataset data = clusters();
  const ForgetRetainSplit split = split_forget_class(data, 2);
  const SoftmaxRegression model(4, 3);
  const Vector zero = Vector::Zero(model.dimension());
  const auto p = make_simnpo(model, split, 2.5, 0.3);
  EXPECT_NEAR(p.forget_loss(zero), 0.0664380459198813093, 1e-16);
  Vector g, g_ga;
  p.forget_gradient(zero, g);
  make_gradient_ascent(model, split).forget_gradient(zero, g_ga);
  const double ratio = 2.0 / (1.0 + std::exp(2.5 * std::log(3.0) - 0.3));
  EXPECT_LE((g - ratio * g_ga).norm(), 1e-15 * g.norm());
  // The loss is bounded below by 0 and its gradient vanishes as the forget labels' probability
  // goes to 0, unlike GA's.
  Vector far = zero;
  far[12 + 2] = -40.0;  // class 2's bias: p(y = 2 | x) ~ e^-40
  p.forget_gradient(far, g);
  make_gradient_ascent(model, split).forget_gradient(far, g_ga);
  EXPECT_GE(p.forget_loss(far), 0.0);
  EXPECT_LE(p.forget_loss(far), 1e-40);
  EXPECT_LE(g.norm(), 1e-40);
  EXPECT_GT(g_ga.norm(), 0.5);
}

// ---- gold standard and metrics ----------------------------------------------------------------

TEST(Retrain, ReachesTheGradientToleranceOnTheRetainSet) {
  const Dataset data = clusters(300, 8);
  const ForgetRetainSplit split = split_forget_class(data, 1);
  const SoftmaxRegression sr(4, 3, 1e-3);
  const FitResult r = retrain_without_forget(sr, split, sr.initial_parameters(1));
  Vector g;
  sr.gradient(r.theta, split.retain, g);
  std::printf("softmax retrain: %d iterations, |grad l_r| %.2e, %s\n", r.iterations, g.norm(),
              r.message.c_str());
  EXPECT_EQ(r.reason, StopReason::kConverged);
  EXPECT_LE(g.norm(), 1e-8);
  // A model that never saw class 1 never predicts it.
  EXPECT_EQ(sr.accuracy(r.theta, split.forget), 0.0);

  const Mlp mlp(4, 8, 3, Activation::kTanh, 1e-2);
  const FitResult rm =
      retrain_without_forget(mlp, split_forget_random(data, 0.1, 3), mlp.initial_parameters(2),
                             {.gradient_tolerance = 1e-7});
  Vector gm;
  mlp.gradient(rm.theta, split_forget_random(data, 0.1, 3).retain, gm);
  std::printf("mlp retrain: %d iterations, |grad l_r| %.2e\n", rm.iterations, gm.norm());
  EXPECT_EQ(rm.reason, StopReason::kConverged);
  EXPECT_LE(gm.norm(), 1e-7);
}

TEST(Metrics, AgainstTheRetrainedModel) {
  const Dataset data = clusters(300, 8);
  const ForgetRetainSplit split = split_forget_class(data, 1);
  const SoftmaxRegression model(4, 3, 1e-3);
  const Vector original = fit_classifier(model, data, model.initial_parameters(1)).theta;
  const Vector gold = retrain_without_forget(model, split, model.initial_parameters(1)).theta;
  const UnlearningMetrics self = evaluate_unlearning(model, split, gold, gold);
  EXPECT_EQ(self.parameter_distance, 0.0);
  EXPECT_EQ(self.forget_output_kl, 0.0);
  EXPECT_EQ(self.retain_output_kl, 0.0);
  EXPECT_EQ(self.forget_accuracy, 0.0);
  const UnlearningMetrics m = evaluate_unlearning(model, split, original, gold);
  std::printf(
      "original vs retrained: forget acc %.3f loss %.3f, retain acc %.3f loss %.3f, |dtheta| "
      "%.3f, KL forget %.3f retain %.4f\n",
      m.forget_accuracy, m.forget_loss, m.retain_accuracy, m.retain_loss, m.parameter_distance,
      m.forget_output_kl, m.retain_output_kl);
  EXPECT_DOUBLE_EQ(m.forget_accuracy, model.accuracy(original, split.forget));
  EXPECT_DOUBLE_EQ(m.retain_loss, model.cross_entropy(original, split.retain));
  EXPECT_DOUBLE_EQ(m.parameter_distance, (original - gold).norm());
  EXPECT_GT(m.forget_accuracy, 0.5);                       // the original model knows class 1
  EXPECT_GT(m.forget_output_kl, 10 * m.retain_output_kl);  // and differs most on it
  // KL by hand for one sample.
  const Matrix lp = model.log_probabilities(gold, split.forget.x.topRows(1));
  const Matrix lq = model.log_probabilities(original, split.forget.x.topRows(1));
  double kl = 0.0;
  for (Index c = 0; c < 3; ++c) kl += std::exp(lp(0, c)) * (lp(0, c) - lq(0, c));
  EXPECT_NEAR(mean_kl_divergence(lp, lq), kl, 1e-15);
}

TEST(Unlearning, NpoDescentForgetsTheClass) {
  // Not a solver test: plain gradient steps on NPO's l_f lower the forget accuracy of the
  // original model, while its l_f stays >= 0 (bounded, unlike GA).
  const Dataset data = clusters(300, 8);
  const ForgetRetainSplit split = split_forget_class(data, 1);
  const SoftmaxRegression model(4, 3, 1e-3);
  const Vector original = fit_classifier(model, data, model.initial_parameters(1)).theta;
  const auto npo = make_npo(model, split, original, 0.5);
  Vector theta = original, g;
  for (int k = 0; k < 200; ++k) {
    npo.forget_gradient(theta, g);
    theta -= 0.5 * g;
  }
  std::printf("NPO 200 steps: forget acc %.3f -> %.3f, l_f %.4f\n",
              model.accuracy(original, split.forget), model.accuracy(theta, split.forget),
              npo.forget_loss(theta));
  EXPECT_LT(model.accuracy(theta, split.forget), 0.1);
  EXPECT_GE(npo.forget_loss(theta), 0.0);
  EXPECT_LT(npo.forget_loss(theta), npo.forget_loss(original));
}

// ---- bad input --------------------------------------------------------------------------------

TEST(UnlearningProblems, RefuseBadInputWithNamedErrors) {
  const Dataset data = clusters();
  const ForgetRetainSplit split = split_forget_class(data, 0);
  const SoftmaxRegression model(4, 3);
  const Vector theta = Vector::Zero(model.dimension());
  // beta <= 0 (and non-finite) for NPO and SimNPO.
  for (const double beta : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                make_npo(model, split, theta, beta);
              }).find("beta must be finite and > 0"),
              std::string::npos)
        << beta;
    EXPECT_NE(message_of<InvalidArgumentError>([&] {
                make_simnpo(model, split, beta);
              }).find("beta must be finite and > 0"),
              std::string::npos)
        << beta;
  }
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              make_simnpo(model, split, 1.0, std::nan(""));
            }).find("gamma"),
            std::string::npos);
  // Shape mismatches: theta, the reference, the data's features.
  const auto ga = make_gradient_ascent(model, split);
  Vector g;
  EXPECT_NE(
      message_of<ShapeError>([&] { ga.forget_loss(Vector::Zero(3)); }).find("theta has size 3"),
      std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              ga.retain_gradient(Vector::Zero(3), g);
            }).find("theta has size 3"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              make_npo(model, split, Vector::Zero(3), 0.1);
            }).find("reference_theta has size 3"),
            std::string::npos);
  const SoftmaxRegression wide(5, 3);
  EXPECT_NE(message_of<ShapeError>([&] { make_gradient_ascent(wide, split); }).find("features"),
            std::string::npos);
  const Mlp four_classes(4, 5, 4);
  EXPECT_NE(message_of<ShapeError>([&] { make_simnpo(four_classes, split, 1.0); }).find("classes"),
            std::string::npos);
  // An empty forget set (a hand-made split), and an NPO loss for another forget set.
  ForgetRetainSplit empty = split;
  empty.forget = data.subset({});
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              make_gradient_ascent(model, empty);
            }).find("forget set is empty"),
            std::string::npos);
  EXPECT_NE(message_of<InvalidArgumentError>([&] {
              retrain_without_forget(model, empty, theta);
            }).find("forget set is empty"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              UnlearningProblem<SoftmaxRegression, NpoLoss>(model, split,
                                                            NpoLoss(0.1, Vector::Zero(2)));
            }).find("reference log-likelihoods"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] {
              evaluate_unlearning(model, split, theta, Vector::Zero(2));
            }).find("retrained 2"),
            std::string::npos);
}

}  // namespace
}  // namespace tether::problems
