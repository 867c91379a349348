// Linear-SVM hyperparameter selection and data hyper-cleaning as constrained bilevel problems:
// the real-data experiment of LV-HBA (Yao, Yu, Zeng, Zhang, Zhang, "Constrained Bi-Level
// Optimization: Proximal Lagrangian Value Function Approach and Hessian-free Algorithm",
// ICLR 2024, section 5; spec specs/bilevel.md section 2), on seeded synthetic data of the shapes
// of LIBSVM's diabetes (768 x 8) and fourclass (862 x 2), with the exact lower-level solvers the
// baselines use. Each problem is a plain class satisfying tether::ConstrainedBilevelProblem:
//
//   min_{(x, y) in C} F(x, y)   s.t.   y in argmin_theta { f(x, theta) : g(x, theta) <= 0, theta in
//   Y }
//
// Notation: training rows a_i in R^d with labels t_i in {-1, +1} (i = 1..n), validation rows
// a_j, t_j (j = 1..n_val); the margin of (w, b) on a row is m = t (w^T a + b).
//
// SvmHyperparameterSelection (one C per training sample, as the paper's SVM experiment):
//   x  = (C_1, ..., C_n) in X = [c_min, c_max]^n                       (n = n_train)
//   y  = (w, b, xi) in R^d x R x R^n,   Y = {xi >= 0}                    (m = d + 1 + n)
//   f  = 0.5 |w|^2 + 0.5 b^2 + sum_i x_i xi_i
//   g_i = 1 - xi_i - t_i (w^T a_i + b) <= 0                             (l = n inequalities)
//   F  = (1 / n_val) sum_j s_tau(1 - t_j (w^T a_j + b)),  s_tau(u) = tau log(1 + exp(u / tau))
// The bias is regularised as in LIBLINEAR (a constant feature), so the lower level is strongly
// convex in (w, b); it is linear in xi, and at its solution xi_i = max(0, 1 - m_i) (the L1-loss
// SVM with per-sample weights C_i). s_tau is a smoothed hinge, s_tau(u) >= max(0, u), equal to
// it up to tau log 2; tau = 0.1 by default. Its multipliers are the SVM's dual variables,
// 0 <= lam_i <= C_i, so LV-HBA's multiplier bound r must be at least c_max.
//   grad_x F = 0;  grad_w F = -(1/n_val) sum_j s'_j t_j a_j,  grad_b F = -(1/n_val) sum_j s'_j t_j,
//     s'_j = sigmoid((1 - m_j) / tau);  grad_xi F = 0.
//   grad_x f = xi;  grad_y f = (w, b, x).
//   J_x g = 0;  J_y g^T lam = (-sum_i lam_i t_i a_i, -sum_i lam_i t_i, -lam).
//
// DataHyperCleaning (training labels corrupted by flipping a seeded fraction of them):
//   x  = per-sample weights in X = [0, 1]^n
//   y  = (w, b) in Y = R^(d+1)
//   f  = (1/n) sum_i x_i ell(m~_i) + (mu/2)(|w|^2 + b^2),  ell(m) = log(1 + exp(-m)),
//        m~_i the margin under the corrupted label
//   g  = |w|^2 + b^2 - rho <= 0                                          (l = 1)
//   F  = (1/n_val) sum_j ell(m_j)                                        (clean validation labels)
// The norm ball is the coupled constraint: label noise shrinks the unconstrained solution, and
// cleaning lets it grow until the ball is active, so the multiplier path of LV-HBA matters
// exactly when the weights start to clean (with the defaults mu = 1e-3, rho = 9 the ball is
// active at the clean-label solution and inactive at the all-ones weights on both data shapes).
//   grad_x f = ell(m~) / n;  grad_y f = (1/n) sum_i x_i ell'(m~_i) t~_i (a_i, 1) + mu (w, b),
//   ell'(m) = -sigmoid(-m);  J_x g = 0;  J_y g^T lam = 2 lam (w, b).
//
// The joint set is LV-HBA's C = {(x, y) in X x Y : g(x, y) <= 0}: its reformulation
// min F/c_k + f(x, y) - v(x, y, z) needs y feasible for the lower level, since f - v >= 0 holds
// only there. (With C = X x Y alone, y leaves the feasible set, f(x, y) < v and the run is
// meaningless: on seed 0 of the experiment the SVM validation accuracy falls to 0.18 / 0.19;
// Options::coupled_in_c = false keeps that variant as an ablation.) In both problems g does not
// depend on x, so Proj_C is the box on x and an exact projection of y:
//   SVM:       onto {(w, b, xi) : xi >= 0, xi_i >= 1 - t_i (w^T a_i + b)}, a polyhedron, by an
//              inner solver (project_onto_margin_set: a finite active-set / semismooth Newton
//              method in (w, b) with exact line searches, described in the .cpp);
//   cleaning:  onto the ball |(w, b)|^2 <= rho (tether::Ball).
// The inner iterate theta of LV-HBA is projected onto Y only (project_lower); for theta the
// coupled constraints are enforced by the multipliers lam, as the method prescribes.
//
// Exact lower-level solvers (the baselines and the references of the tests):
//   solve_linear_svm_dual_cd      dual coordinate descent for the L1-loss linear SVM with the
//                                 bias as a constant feature (Hsieh et al., ICML 2008), any
//                                 per-sample C: the SVM lower level at any x.
//   solve_norm_ball_logistic      Newton on f + lam |(w, b)|^2 with the multiplier lam found by
//                                 bracketing (Boost.Math TOMS 748): the cleaning lower level.
//
//   auto split = tether::problems::split_data(tether::problems::diabetes_like(1), 500, 150, 1);
//   tether::problems::SvmHyperparameterSelection p(split.train, split.validation,
//                                                  {.c_min = 1e-3, .c_max = 10.0});
//   auto y0 = p.lower_solution(tether::Vector::Constant(p.upper_dimension(), 1.0));
//   double acc = tether::problems::accuracy(split.test, p.weights(y0), p.bias(y0));
#pragma once

#include <cstdint>
#include <tether/core/bilevel_problem.hpp>
#include <tether/core/projections.hpp>
#include <tether/core/types.hpp>

namespace tether::problems {

// ---- data -----------------------------------------------------------------------------------

/// Labelled binary data: features n x d (row-major, one sample a row), labels in {-1, +1}.
struct LabelledData {
  Matrix features;
  Vector labels;
  Index size() const { return labels.size(); }
  Index dimension() const { return features.cols(); }
};

/// Throws ShapeError unless features has labels.size() rows, at least one row and one column;
/// InvalidArgumentError unless every feature is finite and every label is exactly -1 or +1.
/// `name` names the argument in the message.
void check_labelled_data(const LabelledData& data, const char* name);

/// Diabetes-like: 768 samples in 8-D, 268 positives (34.9%, as LIBSVM's diabetes), two
/// Gaussian classes with a shared covariance Sigma = A A^T and means 0 and A m0, |m0| = 1.4 (the
/// Mahalanobis distance between the classes; a linear classifier reaches about 76% accuracy),
/// every feature min-max scaled to [-1, 1] over the 768 samples (as LIBSVM's *_scale files).
/// The population (A = I + 0.4 N(0,1) entries, then m0 = 1.4 u / |u|, u ~ N(0, I)) is fixed:
/// drawn from tether::Rng(kPopulationSeed); `seed` draws the sample: for i = 0..767 the 8
/// normals of row i, then a Fisher-Yates shuffle of the rows (labels are +1 for the first 268
/// rows before the shuffle). Same seed, same data, bit for bit.
LabelledData diabetes_like(std::uint64_t seed);

/// Fourclass-like: 862 points uniform in [-1, 1]^2 (x1 then x2 per row, from tether::Rng(seed)),
/// labelled +1 where x2 > 0.7 sin(3.5 x1 + 0.4) + 0.4 or (x1 + 0.6)^2 + (x2 + 0.5)^2 < 0.08,
/// else -1: about 37% positives, and a linear classifier reaches about 78% (the boundary is a
/// sine wave plus a disc, as LIBSVM's fourclass is not linearly separable).
LabelledData fourclass_like(std::uint64_t seed);

/// The fixed seed of diabetes_like's population parameters.
inline constexpr std::uint64_t kPopulationSeed = 20240129;

struct DataSplit {
  LabelledData train, validation, test;
};

/// Shuffles the rows (Fisher-Yates with tether::Rng(seed)), then the first n_train rows are the
/// training set, the next n_validation the validation set and the rest the test set.
/// Requires n_train >= 1, n_validation >= 1 and n_train + n_validation < data.size()
/// (InvalidArgumentError otherwise).
DataSplit split_data(const LabelledData& data, Index n_train, Index n_validation,
                     std::uint64_t seed);

/// Labels with exactly round(fraction n) of them flipped, chosen uniformly without replacement
/// (a partial Fisher-Yates shuffle with tether::Rng(seed)); flipped[i] = 1 where label i was
/// flipped, else 0. fraction must be in [0, 0.5) (InvalidArgumentError naming flip_fraction).
struct FlippedLabels {
  Vector labels;
  Vector flipped;
  Index flipped_count = 0;
};
FlippedLabels flip_labels(const Vector& labels, double flip_fraction, std::uint64_t seed);

/// Fraction of rows with t (w^T a + b) > 0 (a margin of exactly 0 counts as wrong).
double accuracy(const LabelledData& data, const Eigen::Ref<const Vector>& w, double b);

// ---- the exact L1-loss linear SVM (dual coordinate descent) ---------------------------------

struct DualCdOptions {
  /// Stop when max_i |PG_i| over an epoch is below this (PG: the projected gradient of the dual
  /// at the visit; stricter than Hsieh et al.'s max PG - min PG, which stops at once when all
  /// PG_i are equal).
  double tolerance = 1e-10;
  int max_epochs = 200000;
  std::uint64_t seed = 1;  ///< the order of the coordinates in every epoch

  bool is_valid(std::string* why) const;
};

/// min_{w, b} 0.5 |w|^2 + 0.5 b^2 + sum_i c_i max(0, 1 - t_i (w^T a_i + b)) and its dual
/// max_{0 <= alpha <= c} 1^T alpha - 0.5 |sum_i alpha_i t_i (a_i, 1)|^2.
struct LinearSvmSolution {
  Vector w;
  double b = 0.0;
  Vector alpha;         ///< dual variables = the multipliers of g_i in the bilevel lower level
  double primal = 0.0;  ///< primal objective at (w, b)
  double dual = 0.0;    ///< dual objective at alpha
  int epochs = 0;
  bool converged = false;  ///< the tolerance was met within max_epochs
};

/// Hsieh, Chang, Lin, Keerthi, Sundararajan, "A Dual Coordinate Descent Method for Large-scale
/// Linear SVM" (ICML 2008), Algorithm 1 for the L1 loss, with (a, 1) as the features so the bias
/// is regularised: for each i in a random order, G = t_i (w~^T a~_i) - 1, alpha_i <-
/// min(max(alpha_i - G / |a~_i|^2, 0), c_i), w~ += delta alpha_i t_i a~_i. At the end w~ is
/// recomputed from alpha (no drift). c: per-sample upper bounds (> 0, finite, size n).
/// Throws ShapeError / InvalidArgumentError on bad input.
LinearSvmSolution solve_linear_svm_dual_cd(const LabelledData& train, const Vector& c,
                                           const DualCdOptions& options = {});
/// All c_i = c.
LinearSvmSolution solve_linear_svm_dual_cd(const LabelledData& train, double c,
                                           const DualCdOptions& options = {});

/// KKT residual of (w, b, alpha) for the problem above: the largest of
///   |(w, b) - sum_i alpha_i t_i (a_i, 1)|_inf                       (stationarity),
///   max_i max(0, -alpha_i, alpha_i - c_i)                           (dual feasibility),
///   max_i |PG_i|, PG_i the projected dual gradient at alpha_i:       (complementarity:
///     G_i = m_i - 1 if 0 < alpha_i < c_i, min(G_i, 0) at 0, max(G_i, 0) at c_i)  m_i >= 1 where
///                                                                     alpha_i = 0, m_i <= 1 at
///                                                                     c_i)
double linear_svm_kkt_residual(const LabelledData& train, const Vector& c,
                               const LinearSvmSolution& solution);

// ---- the exact norm-ball weighted logistic regression ----------------------------------------

/// min_{w, b} (1/n) sum_i v_i log(1 + exp(-t_i (w^T a_i + b))) + (mu/2)(|w|^2 + b^2)
///   s.t. |w|^2 + b^2 <= rho,
/// with its multiplier: grad + 2 multiplier (w, b) = 0, multiplier (|w|^2 + b^2 - rho) = 0.
struct NormBallLogisticSolution {
  Vector w;
  double b = 0.0;
  double multiplier = 0.0;
  int newton_iterations = 0;  ///< over all the inner solves
};

/// Damped Newton on f + lam |(w, b)|^2 (strongly convex: mu + 2 lam > 0); lam = 0 when that
/// solution is inside the ball, else the root of |(w, b)(lam)|^2 = rho, bracketed by doubling
/// and found by boost::math::tools::toms748_solve to full double precision. Weights v in
/// [0, 1]^n (not all 0 unless mu > 0), mu > 0, rho > 0 (InvalidArgumentError otherwise).
NormBallLogisticSolution solve_norm_ball_logistic(const LabelledData& train, const Vector& weights,
                                                  double mu, double rho);

/// The largest of |grad f + 2 multiplier (w, b)|_inf, max(0, |w|^2 + b^2 - rho),
/// |multiplier (|w|^2 + b^2 - rho)| and max(0, -multiplier).
double norm_ball_logistic_kkt_residual(const LabelledData& train, const Vector& weights, double mu,
                                       double rho, const NormBallLogisticSolution& solution);

// ---- the bilevel problems -------------------------------------------------------------------

class SvmHyperparameterSelection {
 public:
  struct Options {
    double c_min = 1e-3;  ///< X = [c_min, c_max]^n; 0 < c_min <= c_max < inf
    double c_max = 10.0;
    double tau = 0.1;  ///< smoothing of the validation hinge, > 0
    /// true: C = {(x, y) in X x Y : g(x, y) <= 0}, the set LV-HBA's reformulation needs.
    /// false: C = X x Y (an ablation; y then leaves the lower level's feasible set).
    bool coupled_in_c = true;
  };

  /// Throws ShapeError if the two sets' dimensions differ, InvalidArgumentError naming c_min,
  /// c_max or tau when out of range, and as check_labelled_data for bad data.
  SvmHyperparameterSelection(LabelledData train, LabelledData validation, Options options);

  Index upper_dimension() const { return n_; }
  Index lower_dimension() const { return d_ + 1 + n_; }
  Index constraint_count() const { return n_; }
  ConstraintKind constraint_kind() const { return ConstraintKind::kInequality; }
  double upper_value(const Vector& x, const Vector& y) const;
  void upper_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const;
  double lower_value(const Vector& x, const Vector& y) const;
  void lower_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const;
  void constraints(const Vector& x, const Vector& y, Vector& g) const;
  void constraint_adjoint(const Vector& x, const Vector& y, const Vector& lam, Vector& gx,
                          Vector& gy) const;
  /// xi <- max(xi, 0); w, b unchanged.
  void project_lower(Vector& y) const;
  /// x clamped to [c_min, c_max]^n; y projected exactly onto {y in Y : g(x, y) <= 0} (onto Y
  /// alone when options.coupled_in_c is false). Throws NumericalError should the inner
  /// active-set method not finish in 10 n + 100 steps (6-19 on 1e-3 moves off an SVM solution).
  void project_joint(Vector& x, Vector& y) const;

  /// The parts of y = (w, b, xi).
  Eigen::VectorBlock<const Vector> weights(const Vector& y) const { return y.head(d_); }
  double bias(const Vector& y) const { return y[d_]; }
  Eigen::VectorBlock<const Vector> slacks(const Vector& y) const { return y.tail(n_); }
  /// y = (w, b, max(0, 1 - m)): the slacks that are optimal for (w, b).
  Vector lower_point(const Eigen::Ref<const Vector>& w, double b) const;
  /// The exact lower-level solution y*(x) by dual coordinate descent (C_i = x_i), and its
  /// multipliers alpha in `multipliers` when non-null.
  Vector lower_solution(const Vector& x, Vector* multipliers = nullptr,
                        const DualCdOptions& options = {}) const;

  const LabelledData& train() const { return train_; }
  const LabelledData& validation() const { return validation_; }
  const Options& options() const { return options_; }

 private:
  void check_sizes(const Vector& x, const Vector& y, const char* where) const;
  void project_onto_margin_set(Vector& y) const;
  LabelledData train_, validation_;
  Options options_;
  Index n_, d_;
  Matrix signed_train_;       ///< rows t_i a_i
  Matrix signed_validation_;  ///< rows t_j a_j
  Box upper_box_, lower_box_;
};

class DataHyperCleaning {
 public:
  struct Options {
    double flip_fraction = 0.4;  ///< share of training labels flipped, in [0, 0.5)
    std::uint64_t flip_seed = 1;
    double mu = 1e-3;  ///< ridge weight of the lower level, > 0
    double rho = 9.0;  ///< the norm ball |w|^2 + b^2 <= rho, > 0
    /// true: C = {(x, y) in X x Y : g(x, y) <= 0}, the set LV-HBA's reformulation needs.
    /// false: C = X x Y (an ablation; y then leaves the lower level's feasible set).
    bool coupled_in_c = true;
  };

  /// `train` carries the clean labels; the problem flips options.flip_fraction of them
  /// (flip_labels with options.flip_seed) and keeps both. Throws as SvmHyperparameterSelection,
  /// and InvalidArgumentError naming flip_fraction, mu or rho when out of range.
  DataHyperCleaning(LabelledData train, LabelledData validation, Options options);

  Index upper_dimension() const { return n_; }
  Index lower_dimension() const { return d_ + 1; }
  Index constraint_count() const { return 1; }
  ConstraintKind constraint_kind() const { return ConstraintKind::kInequality; }
  double upper_value(const Vector& x, const Vector& y) const;
  void upper_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const;
  double lower_value(const Vector& x, const Vector& y) const;
  void lower_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const;
  void constraints(const Vector& x, const Vector& y, Vector& g) const;
  void constraint_adjoint(const Vector& x, const Vector& y, const Vector& lam, Vector& gx,
                          Vector& gy) const;
  /// Y = R^(d+1): the identity (after a size check).
  void project_lower(Vector& y) const;
  /// x clamped to [0, 1]^n; y projected onto the ball |y|^2 <= rho (left unchanged when
  /// options.coupled_in_c is false).
  void project_joint(Vector& x, Vector& y) const;

  Eigen::VectorBlock<const Vector> weights(const Vector& y) const { return y.head(d_); }
  double bias(const Vector& y) const { return y[d_]; }
  /// The exact lower-level solution y*(x) = (w, b) and its multiplier (when non-null).
  Vector lower_solution(const Vector& x, double* multiplier = nullptr) const;

  /// The training set with the corrupted labels (what the lower level sees).
  const LabelledData& noisy_train() const { return noisy_train_; }
  const Vector& clean_train_labels() const { return clean_labels_; }
  /// 1 where the training label was flipped, else 0 (1 - flipped are the oracle's weights).
  const Vector& flipped() const { return flipped_; }
  const LabelledData& validation() const { return validation_; }
  const Options& options() const { return options_; }

 private:
  void check_sizes(const Vector& x, const Vector& y, const char* where) const;
  LabelledData noisy_train_, validation_;
  Vector clean_labels_, flipped_;
  Options options_;
  Index n_, d_;
  Matrix signed_train_;       ///< rows t~_i a_i (corrupted labels)
  Matrix signed_validation_;  ///< rows t_j a_j
  Box upper_box_;
  Ball ball_;  ///< {(w, b) : |(w, b)|^2 <= rho}
};

static_assert(ConstrainedBilevelProblem<SvmHyperparameterSelection>,
              "SvmHyperparameterSelection must satisfy ConstrainedBilevelProblem");
static_assert(ConstrainedBilevelProblem<DataHyperCleaning>,
              "DataHyperCleaning must satisfy ConstrainedBilevelProblem");

}  // namespace tether::problems
