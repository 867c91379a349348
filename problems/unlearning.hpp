// Machine unlearning on the classifiers of classifiers.hpp: forget/retain splits, the forget
// losses of the LLM-unlearning literature restated for single-label classification, the model
// retrained without the forget set (the gold standard), and the metrics of the experiment of
// specs/projection.md section 1 (also the problems BLUR and OFMU run on, specs/bilevel.md
// section 3).
//
// Notation. D_f, D_r: forget and retain sets (a split of one data set); s_i(theta) =
// log pi_theta(y_i | x_i), the label log-likelihood; CE_S = -(1/|S|) sum_{i in S} s_i;
// sigma(t) = 1 / (1 + e^-t), softplus(t) = log(1 + e^t) = -log sigma(-t).
//
// Every problem below is a UnlearningProblem<Model, Loss>, which satisfies
// tether::ForgetRetainProblem with exact gradients and exact Hessian-vector products:
//   retain_loss(theta) = CE_{D_r}(theta) + (l2 / 2) |theta|^2        (the model's loss on D_r)
//   forget_loss(theta) = (1/|D_f|) sum_{i in D_f} phi_i(s_i(theta))  (the Loss object's phi)
// grad l_f = (1/|D_f|) sum phi'_i grad s_i and Hess l_f v = (1/|D_f|) sum (phi'_i Hess s_i v +
// phi''_i (grad s_i . v) grad s_i), from the model's primitives (classifiers.hpp).
//
// The forget losses (the solver minimises l_f):
//   Gradient ascent (GA)        phi(s) = s:            l_f = -CE_{D_f}
//     ascent on the forget cross-entropy; unbounded below (l_f -> -inf as the forget labels'
//     probabilities -> 0), which is why the papers below bound it.
//   Gradient difference (GD)    the same l_f as GA. GD is the weighted-sum baseline: the SOLVER
//     minimises l_f + w l_r (-CE_f + w CE_r; w = 1 in TOFU's gradient-difference baseline,
//     Maini et al. 2024). make_gradient_difference returns the GA problem; its name records the
//     intent, and the combination is the solver's (e.g. BLUR's weighted-sum variant).
//   NPO  (Zhang, Lin, Bai, Mei, "Negative Preference Optimization: From Catastrophic Collapse to
//     Effective Unlearning", COLM 2024), with a frozen reference model theta_ref (the
//     model before unlearning) and r_i = s_i(theta_ref):
//       l_f = -(2/beta) (1/|D_f|) sum log sigma(-beta (s_i - r_i))
//           =  (2/beta) (1/|D_f|) sum softplus(beta (s_i - r_i))
//       phi'(s) = 2 sigma(beta (s - r)),  phi''(s) = 2 beta sigma(1 - sigma).
//     At theta = theta_ref every weight is 2 sigma(0) = 1, so
//       grad l_NPO(theta_ref) = (1/|D_f|) sum grad s_i = grad l_GA(theta_ref)   (exactly: the
//     factor 2/beta is chosen so), and l_NPO(theta_ref) = (2/beta) log 2. As beta -> 0 the
//     weights tend to 1 everywhere and NPO's gradient tends to GA's; for beta > 0 the weight
//     sigma(beta (s - r)) -> 0 as s -> -inf: the loss is bounded below by 0 (no collapse).
//   SimNPO (Fan, Liu, Lin, Jia, Zhang, Mei, Liu, "Simplicity Prevails: Rethinking Negative
//     Preference Optimization for LLM Unlearning", 2024): reference free, with the
//     log-likelihood normalised by the response length |y| and a margin gamma:
//       l_f = -(2/beta) (1/|D_f|) sum log sigma(-(beta/|y_i|) log pi_theta(y_i|x_i) - gamma)
//     For single-label classification |y| = 1:
//       l_f =  (2/beta) (1/|D_f|) sum softplus(beta s_i + gamma)
//       phi'(s) = 2 sigma(beta s + gamma),  phi''(s) = 2 beta sigma(1 - sigma).
//     With all s_i equal to s (e.g. a model predicting the uniform distribution, s = -log C) the
//     gradient is 2 sigma(beta s + gamma) times GA's.
// beta > 0 (finite) and a finite gamma are required; the papers tune them per benchmark, so the
// factories take them explicitly (no defaults are claimed here).
//
// Splits (ForgetRetainSplit): forget one class (all its samples; deterministic, no draw), or
// forget a seeded random subset of round(fraction n) samples, fraction in (0, 1). Both keep the
// samples in their original order, forget and retain disjoint and covering [0, n), and refuse
// an empty forget or retain set.
//
// Gold standard and metrics: retrain_without_forget fits the model on D_r alone by L-BFGS to a
// gradient tolerance (classifiers.hpp, minimize_lbfgs); evaluate_unlearning reports forget /
// retain accuracy and cross-entropy, |theta - theta_retrained|, and the mean KL divergence
// KL(p_retrained || p_theta) of the predictive distributions on D_f and on D_r. (For the MLP the
// parameter distance ignores hidden-unit permutations; the output-space KL does not care.)
//
//   auto data  = make_gaussian_clusters({.samples = 600, .features = 5, .classes = 3});
//   SoftmaxRegression model(5, 3, 1e-3);
//   Vector original = fit_classifier(model, data, model.initial_parameters(1)).theta;
//   ForgetRetainSplit split = split_forget_class(data, 0);
//   auto npo = make_npo(model, split, original, /*beta=*/0.1);   // a ForgetRetainProblem
//   Vector gold = retrain_without_forget(model, split, model.initial_parameters(1)).theta;
//   UnlearningMetrics m = evaluate_unlearning(model, split, theta_after, gold);
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/forget_retain_problem.hpp>
#include <tether/problems/classifiers.hpp>
#include <utility>
#include <vector>

namespace tether::problems {

// ---- splits -----------------------------------------------------------------------------------

struct ForgetRetainSplit {
  Dataset forget;
  Dataset retain;
  std::vector<Index> forget_indices;  ///< rows of the source data, ascending
  std::vector<Index> retain_indices;  ///< the other rows, ascending
};

/// D_f = every sample of class `forget_class`. Refuses a class outside [0, C), a class with no
/// samples (empty forget set) and a data set of that class alone (empty retain set).
ForgetRetainSplit split_forget_class(const Dataset& data, int forget_class);

/// D_f = round(fraction n) samples drawn without replacement by a seeded partial Fisher-Yates
/// shuffle (tether::Rng::index). fraction must lie in (0, 1); a count of 0 or n is refused.
ForgetRetainSplit split_forget_random(const Dataset& data, double fraction, std::uint64_t seed);

// ---- per-sample forget losses -----------------------------------------------------------------

/// phi, phi', phi'' of one sample's forget loss as a function of s = log pi_theta(y|x).
template <class L>
concept PerSampleForgetLoss = requires(const L& loss, double s, Index i) {
  { loss.value(s, i) } -> std::convertible_to<double>;
  { loss.first_derivative(s, i) } -> std::convertible_to<double>;
  { loss.second_derivative(s, i) } -> std::convertible_to<double>;
};

/// GA (and GD): phi(s) = s.
struct GradientAscentLoss {
  double value(double s, Index) const { return s; }
  double first_derivative(double, Index) const { return 1.0; }
  double second_derivative(double, Index) const { return 0.0; }
};

/// NPO: phi_i(s) = (2/beta) softplus(beta (s - r_i)), r_i the reference log-likelihoods.
class NpoLoss {
 public:
  /// beta > 0 finite; reference finite.
  NpoLoss(double beta, Vector reference_log_likelihoods);
  double value(double s, Index i) const;
  double first_derivative(double s, Index i) const;
  double second_derivative(double s, Index i) const;
  double beta() const { return beta_; }
  const Vector& reference_log_likelihoods() const { return reference_; }

 private:
  double beta_;
  Vector reference_;
};

/// SimNPO with |y| = 1: phi(s) = (2/beta) softplus(beta s + gamma).
class SimNpoLoss {
 public:
  /// beta > 0 finite, gamma finite.
  SimNpoLoss(double beta, double gamma);
  double value(double s, Index i) const;
  double first_derivative(double s, Index i) const;
  double second_derivative(double s, Index i) const;
  double beta() const { return beta_; }
  double gamma() const { return gamma_; }

 private:
  double beta_;
  double gamma_;
};

namespace detail {
/// softplus(t) = log(1 + e^t), stable for every finite t.
inline double softplus(double t) { return std::max(t, 0.0) + std::log1p(std::exp(-std::abs(t))); }
/// sigma(t) = 1 / (1 + e^-t), stable for every finite t.
inline double sigmoid(double t) {
  if (t >= 0.0) return 1.0 / (1.0 + std::exp(-t));
  const double e = std::exp(t);
  return e / (1.0 + e);
}
/// Refuses a split the problems cannot use; `who` opens the message.
void check_split(const std::string& who, const ForgetRetainSplit& split, Index features,
                 Index classes);
}  // namespace detail

// ---- the problem ------------------------------------------------------------------------------

/// l_f = (1/|D_f|) sum phi_i(s_i) over D_f, l_r = model.loss over D_r. Holds copies of the model,
/// the split and the loss, so it outlives its arguments.
template <ClassifierModel Model, PerSampleForgetLoss Loss>
class UnlearningProblem {
 public:
  UnlearningProblem(Model model, ForgetRetainSplit split, Loss loss)
      : model_(std::move(model)), split_(std::move(split)), loss_(std::move(loss)) {
    detail::check_split("UnlearningProblem", split_, model_.features(), model_.classes());
    if constexpr (requires { loss_.reference_log_likelihoods(); }) {
      require<ShapeError>(
          loss_.reference_log_likelihoods().size() == split_.forget.size(),
          "UnlearningProblem: the loss holds ", loss_.reference_log_likelihoods().size(),
          " reference log-likelihoods for ", split_.forget.size(), " forget samples");
    }
  }

  Index dimension() const { return model_.dimension(); }

  double forget_loss(const Vector& theta) const {
    const Vector s = model_.label_log_likelihoods(theta, split_.forget);
    double total = 0.0;
    for (Index i = 0; i < s.size(); ++i) total += loss_.value(s[i], i);
    return total / static_cast<double>(s.size());
  }
  double retain_loss(const Vector& theta) const { return model_.loss(theta, split_.retain); }

  void forget_gradient(const Vector& theta, Vector& g) const {
    const Vector s = model_.label_log_likelihoods(theta, split_.forget);
    const double inv_n = 1.0 / static_cast<double>(s.size());
    Vector w(s.size());
    for (Index i = 0; i < s.size(); ++i) w[i] = inv_n * loss_.first_derivative(s[i], i);
    model_.weighted_gradient(theta, split_.forget, w, g);
  }
  void retain_gradient(const Vector& theta, Vector& g) const {
    model_.gradient(theta, split_.retain, g);
  }

  /// (1/|D_f|) sum (phi'_i Hess s_i v + phi''_i (grad s_i . v) grad s_i).
  void forget_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const {
    const Vector s = model_.label_log_likelihoods(theta, split_.forget);
    const double inv_n = 1.0 / static_cast<double>(s.size());
    Vector w1(s.size()), w2(s.size());
    bool curved = false;
    for (Index i = 0; i < s.size(); ++i) {
      w1[i] = inv_n * loss_.first_derivative(s[i], i);
      w2[i] = inv_n * loss_.second_derivative(s[i], i);
      curved = curved || w2[i] != 0.0;
    }
    model_.weighted_hessian_vector(theta, split_.forget, w1, v, out);
    if (!curved) return;  // GA: phi'' = 0
    const Vector jv = model_.directional_derivatives(theta, split_.forget, v);
    Vector extra;
    model_.weighted_gradient(theta, split_.forget, (w2.array() * jv.array()).matrix(), extra);
    out += extra;
  }
  void retain_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const {
    model_.hessian_vector(theta, split_.retain, v, out);
  }

  const Model& model() const { return model_; }
  const ForgetRetainSplit& split() const { return split_; }
  const Loss& loss() const { return loss_; }

 private:
  Model model_;
  ForgetRetainSplit split_;
  Loss loss_;
};

template <ClassifierModel Model>
UnlearningProblem<Model, GradientAscentLoss> make_gradient_ascent(Model model,
                                                                  ForgetRetainSplit split) {
  return {std::move(model), std::move(split), GradientAscentLoss{}};
}

/// The GA problem; the weighted sum l_f + w l_r is formed by the solver (see the header).
template <ClassifierModel Model>
UnlearningProblem<Model, GradientAscentLoss> make_gradient_difference(Model model,
                                                                      ForgetRetainSplit split) {
  return make_gradient_ascent(std::move(model), std::move(split));
}

/// NPO against the frozen reference theta_ref (its log-likelihoods on D_f are computed here).
template <ClassifierModel Model>
UnlearningProblem<Model, NpoLoss> make_npo(Model model, ForgetRetainSplit split,
                                           const Vector& reference_theta, double beta) {
  detail::check_split("make_npo", split, model.features(), model.classes());
  require<ShapeError>(reference_theta.size() == model.dimension(),
                      "make_npo: reference_theta has size ", reference_theta.size(),
                      ", expected the model's dimension ", model.dimension());
  NpoLoss loss(beta, model.label_log_likelihoods(reference_theta, split.forget));
  return {std::move(model), std::move(split), std::move(loss)};
}

template <ClassifierModel Model>
UnlearningProblem<Model, SimNpoLoss> make_simnpo(Model model, ForgetRetainSplit split, double beta,
                                                 double gamma = 0.0) {
  return {std::move(model), std::move(split), SimNpoLoss(beta, gamma)};
}

static_assert(ForgetRetainProblem<UnlearningProblem<SoftmaxRegression, GradientAscentLoss>>);
static_assert(ForgetRetainProblem<UnlearningProblem<Mlp, NpoLoss>>);
static_assert(ForgetRetainProblem<UnlearningProblem<Mlp, SimNpoLoss>>);

// ---- gold standard and metrics ----------------------------------------------------------------

/// The model fitted on D_r alone from `start` (use the original model's initialisation).
template <ClassifierModel Model>
FitResult retrain_without_forget(const Model& model, const ForgetRetainSplit& split, Vector start,
                                 const FitOptions& options = {}) {
  detail::check_split("retrain_without_forget", split, model.features(), model.classes());
  return fit_classifier(model, split.retain, std::move(start), options);
}

struct UnlearningMetrics {
  double forget_accuracy = 0.0;
  double retain_accuracy = 0.0;
  double forget_loss = 0.0;         ///< mean cross-entropy on D_f (no L2)
  double retain_loss = 0.0;         ///< mean cross-entropy on D_r (no L2)
  double parameter_distance = 0.0;  ///< |theta - theta_retrained|_2
  double forget_output_kl = 0.0;    ///< mean over D_f of KL(p_retrained || p_theta)
  double retain_output_kl = 0.0;    ///< mean over D_r of KL(p_retrained || p_theta)
};

template <ClassifierModel Model>
UnlearningMetrics evaluate_unlearning(const Model& model, const ForgetRetainSplit& split,
                                      const Vector& theta, const Vector& retrained) {
  detail::check_split("evaluate_unlearning", split, model.features(), model.classes());
  require<ShapeError>(theta.size() == model.dimension() && retrained.size() == model.dimension(),
                      "evaluate_unlearning: theta has size ", theta.size(), ", retrained ",
                      retrained.size(), ", expected ", model.dimension());
  UnlearningMetrics m;
  m.forget_accuracy = model.accuracy(theta, split.forget);
  m.retain_accuracy = model.accuracy(theta, split.retain);
  m.forget_loss = model.cross_entropy(theta, split.forget);
  m.retain_loss = model.cross_entropy(theta, split.retain);
  m.parameter_distance = (theta - retrained).norm();
  m.forget_output_kl = mean_kl_divergence(model.log_probabilities(retrained, split.forget.x),
                                          model.log_probabilities(theta, split.forget.x));
  m.retain_output_kl = mean_kl_divergence(model.log_probabilities(retrained, split.retain.x),
                                          model.log_probabilities(theta, split.retain.x));
  return m;
}

}  // namespace tether::problems
