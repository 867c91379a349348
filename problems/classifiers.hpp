// Multi-class classifiers on seeded synthetic data: the models under the unlearning experiment
// (specs/projection.md section 1, specs/bilevel.md section 3; problems/unlearning.hpp) and the
// building blocks of the task-arithmetic suite (problems/task_arithmetic.hpp).
//
// Data. make_gaussian_clusters draws n samples x_i in R^d with balanced labels y_i = i mod C and
// x_i = mu_{y_i} + noise * N(0, I_d). The class means are mu_c = (separation / sqrt 2) q_c with
// q_1..q_C orthonormal (a seeded Gaussian d x C matrix, Householder QR), so every pair of means is
// exactly `separation` apart; where d < C no orthonormal set exists and q_c are seeded random unit
// vectors instead. All draws come from tether::Rng in the order the .cpp states: same options,
// same data, bit for bit.
//
// Models. A model maps a sample x to logits z(x; theta) in R^C, p = softmax(z), and
//   s_i(theta) = log p(y_i | x_i; theta) = z_{y_i} - log sum_c exp z_c    (label log-likelihood)
//   loss(theta) = -(1/n) sum_i s_i(theta) + (l2 / 2) |theta|^2            (mean cross-entropy)
// The L2 term covers every parameter, biases included: with l2 > 0 the softmax regression loss is
// strictly convex (without it the logits' shift invariance and separable data leave no unique
// minimiser), so "the model retrained on the retain set" is one point.
//   SoftmaxRegression  z = W x + b;          theta = (W row-major C x d, b)   C (d + 1) entries
//   Mlp                z = V a(U x + c) + e; theta = (U row-major H x d, c, V row-major C x H, e),
//                      a = tanh or ReLU                                      H (d + 1) + C (H + 1)
//
// Every objective of the form L(theta) = sum_i phi_i(s_i(theta)) (the cross-entropy above; the
// forget losses of unlearning.hpp: gradient ascent, NPO, SimNPO) gets its exact gradient and
// Hessian-vector product from three primitives of the model:
//   weighted_gradient(theta, data, w)            sum_i w_i grad s_i                 (backprop)
//   directional_derivatives(theta, data, v)      (grad s_i . v)_i                  (forward mode)
//   weighted_hessian_vector(theta, data, w, v)   sum_i w_i (Hess s_i) v            (R-op)
// by the chain rule
//   grad L    = weighted_gradient(w = phi'(s))
//   Hess L v  = weighted_hessian_vector(w = phi'(s), v) + weighted_gradient(w = phi''(s) (grad
//   s.v))
// The Hessian-vector products are Pearlmutter's R-operator ("Fast exact multiplication by the
// Hessian", Neural Computation 1994) applied to the backward pass: exact, one forward and one
// backward pass each. For ReLU they are exact wherever no pre-activation is exactly 0.
//
//   auto data = tether::problems::make_gaussian_clusters({.samples = 300, .features = 4,
//                                                         .classes = 3, .seed = 1});
//   tether::problems::SoftmaxRegression model(4, 3, /*l2=*/1e-3);
//   tether::problems::FitResult fit = tether::problems::fit_classifier(model, data,
//                                                                      model.initial_parameters(7));
//   model.accuracy(fit.theta, data);
//
// Bad input (theta, v or weights of the wrong size, data with another number of features,
// labels outside [0, C), empty data, non-finite samples) is refused with ShapeError or
// InvalidArgumentError naming the argument.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <tether/core/result.hpp>
#include <tether/core/types.hpp>
#include <utility>
#include <vector>

namespace tether::problems {

/// Labelled samples: x is n x d (one sample a row), y holds n labels in [0, classes).
struct Dataset {
  Matrix x;
  std::vector<int> y;
  Index classes = 0;

  Index size() const { return x.rows(); }
  Index features() const { return x.cols(); }
  /// The samples at `rows`, in that order (indices checked against size()).
  Dataset subset(const std::vector<Index>& rows) const;
  /// Throws ShapeError / InvalidArgumentError unless x and y agree, every label is in
  /// [0, classes) and every entry of x is finite. `who` opens the message.
  void validate(const std::string& who) const;
};

struct GaussianClustersOptions {
  Index samples = 600;      ///< n >= 1
  Index features = 5;       ///< d >= 1
  Index classes = 3;        ///< C >= 2
  double separation = 3.0;  ///< distance between two class means (d >= C), >= 0
  double noise = 1.0;       ///< standard deviation of the isotropic noise, > 0
  std::uint64_t seed = 42;
};

/// Seeded Gaussian clusters, labels y_i = i mod C. Draw order: the d x C mean matrix column by
/// column, then sample by sample its d noise coordinates.
Dataset make_gaussian_clusters(const GaussianClustersOptions& options = {});

/// Row-wise log-softmax of logits (max-shifted; huge logits stay finite).
Matrix log_softmax_rows(const Matrix& logits);

/// Mean over rows of KL(p || q) = sum_c p_c (log p_c - log q_c) from log-probabilities; rows of
/// log_p and log_q must match. Terms with p_c = 0 contribute 0.
double mean_kl_divergence(const Matrix& log_p, const Matrix& log_q);

/// What the unlearning and task-arithmetic code needs of a classifier.
template <class M>
concept ClassifierModel = requires(const M& m, const Vector& theta, const Dataset& data,
                                   const Vector& w, const Vector& v, Vector& out) {
  { m.dimension() } -> std::convertible_to<Index>;
  { m.features() } -> std::convertible_to<Index>;
  { m.classes() } -> std::convertible_to<Index>;
  { m.log_probabilities(theta, data.x) } -> std::convertible_to<Matrix>;
  { m.label_log_likelihoods(theta, data) } -> std::convertible_to<Vector>;
  { m.loss(theta, data) } -> std::convertible_to<double>;
  { m.cross_entropy(theta, data) } -> std::convertible_to<double>;
  { m.accuracy(theta, data) } -> std::convertible_to<double>;
  { m.loss_and_gradient(theta, data, out) } -> std::convertible_to<double>;
  m.gradient(theta, data, out);
  m.hessian_vector(theta, data, v, out);
  m.weighted_gradient(theta, data, w, out);
  { m.directional_derivatives(theta, data, v) } -> std::convertible_to<Vector>;
  m.weighted_hessian_vector(theta, data, w, v, out);
};

/// Multinomial logistic regression: z = W x + b, theta = (W row-major C x d, b).
class SoftmaxRegression {
 public:
  /// features d >= 1, classes C >= 2, l2 >= 0 (finite).
  SoftmaxRegression(Index features, Index classes, double l2 = 0.0);

  Index dimension() const { return classes_ * (features_ + 1); }
  Index features() const { return features_; }
  Index classes() const { return classes_; }
  double l2() const { return l2_; }

  /// Seeded N(0, scale^2) weights, zero biases.
  Vector initial_parameters(std::uint64_t seed, double scale = 0.01) const;

  /// n x C logits / log-probabilities of the rows of x.
  Matrix logits(const Vector& theta, const Matrix& x) const;
  Matrix log_probabilities(const Vector& theta, const Matrix& x) const;
  /// s_i = log p(y_i | x_i; theta).
  Vector label_log_likelihoods(const Vector& theta, const Dataset& data) const;
  /// Mean cross-entropy -(1/n) sum_i s_i (no L2).
  double cross_entropy(const Vector& theta, const Dataset& data) const;
  /// cross_entropy + (l2 / 2) |theta|^2.
  double loss(const Vector& theta, const Dataset& data) const;
  void gradient(const Vector& theta, const Dataset& data, Vector& g) const;
  /// loss and its gradient in one pass.
  double loss_and_gradient(const Vector& theta, const Dataset& data, Vector& g) const;
  /// Exact: (Hess loss) v.
  void hessian_vector(const Vector& theta, const Dataset& data, const Vector& v, Vector& out) const;
  /// Fraction of samples whose largest logit (lowest index on ties) is the label.
  double accuracy(const Vector& theta, const Dataset& data) const;

  void weighted_gradient(const Vector& theta, const Dataset& data, const Vector& weights,
                         Vector& out) const;
  Vector directional_derivatives(const Vector& theta, const Dataset& data, const Vector& v) const;
  void weighted_hessian_vector(const Vector& theta, const Dataset& data, const Vector& weights,
                               const Vector& v, Vector& out) const;

 private:
  void check(const char* who, const Vector& theta, const Dataset& data) const;
  Index features_;
  Index classes_;
  double l2_;
};

enum class Activation { kTanh, kRelu };

/// One hidden layer: z = V a(U x + c) + e, theta = (U row-major H x d, c, V row-major C x H, e).
class Mlp {
 public:
  /// features d >= 1, hidden H >= 1, classes C >= 2, l2 >= 0 (finite).
  Mlp(Index features, Index hidden, Index classes, Activation activation = Activation::kTanh,
      double l2 = 0.0);

  Index dimension() const { return hidden_ * (features_ + 1) + classes_ * (hidden_ + 1); }
  Index features() const { return features_; }
  Index hidden() const { return hidden_; }
  Index classes() const { return classes_; }
  Activation activation() const { return activation_; }
  double l2() const { return l2_; }

  /// Seeded Glorot-style weights: U ~ N(0, scale^2 / d), V ~ N(0, scale^2 / H); zero biases.
  /// Draw order: U row-major, then V row-major.
  Vector initial_parameters(std::uint64_t seed, double scale = 1.0) const;

  Matrix logits(const Vector& theta, const Matrix& x) const;
  Matrix log_probabilities(const Vector& theta, const Matrix& x) const;
  Vector label_log_likelihoods(const Vector& theta, const Dataset& data) const;
  double cross_entropy(const Vector& theta, const Dataset& data) const;
  double loss(const Vector& theta, const Dataset& data) const;
  void gradient(const Vector& theta, const Dataset& data, Vector& g) const;
  double loss_and_gradient(const Vector& theta, const Dataset& data, Vector& g) const;
  /// Exact (R-op through the hidden layer; the tanh'' term included).
  void hessian_vector(const Vector& theta, const Dataset& data, const Vector& v, Vector& out) const;
  double accuracy(const Vector& theta, const Dataset& data) const;

  void weighted_gradient(const Vector& theta, const Dataset& data, const Vector& weights,
                         Vector& out) const;
  Vector directional_derivatives(const Vector& theta, const Dataset& data, const Vector& v) const;
  void weighted_hessian_vector(const Vector& theta, const Dataset& data, const Vector& weights,
                               const Vector& v, Vector& out) const;

 private:
  void check(const char* who, const Vector& theta, const Dataset& data) const;
  Index features_;
  Index hidden_;
  Index classes_;
  Activation activation_;
  double l2_;
};

static_assert(ClassifierModel<SoftmaxRegression>);
static_assert(ClassifierModel<Mlp>);

// ---- fitting ----------------------------------------------------------------------------------

struct FitOptions {
  int max_iterations = 5000;         ///< >= 1
  double gradient_tolerance = 1e-8;  ///< stop when |grad|_2 <= this, > 0
  int memory = 10;                   ///< L-BFGS pairs kept, >= 1
};

struct FitResult {
  Vector theta;
  double loss = 0.0;
  double gradient_norm = 0.0;  ///< |grad|_2 at theta
  int iterations = 0;
  /// kConverged (tolerance met), kIterationLimit, or kNumericalError (non-finite value, or a
  /// line search that found no decrease: theta is then the last accepted iterate).
  StopReason reason = StopReason::kIterationLimit;
  std::string message;
};

/// L-BFGS (Nocedal and Wright, Algorithm 7.4, two-loop recursion with the scaling
/// s^T y / y^T y) with a backtracking line search that accepts the Armijo condition (c1 = 1e-4)
/// or, where round-off hides the decrease near the optimum, Hager and Zhang's approximate Wolfe
/// condition (f within 1e-12 |f| of the current value and -0.9 |g^T d| <= g_new^T d <= 0.8 |g^T
/// d|). Pairs with s^T y <= 1e-12 |s| |y| are skipped. value_and_gradient(theta, g) returns f and
/// writes g (pre-sized).
FitResult minimize_lbfgs(const std::function<double(const Vector&, Vector&)>& value_and_gradient,
                         Vector start, const FitOptions& options = {});

/// Minimises model.loss on data from start (the gold-standard fit of the experiments).
template <ClassifierModel M>
FitResult fit_classifier(const M& model, const Dataset& data, Vector start,
                         const FitOptions& options = {}) {
  return minimize_lbfgs(
      [&](const Vector& theta, Vector& g) { return model.loss_and_gradient(theta, data, g); },
      std::move(start), options);
}

}  // namespace tether::problems
