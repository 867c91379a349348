#include <Eigen/Cholesky>
#include <Eigen/QR>
#include <algorithm>
#include <boost/math/tools/toms748_solve.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/svm_bilevel.hpp>
#include <utility>
#include <vector>

namespace tether::problems {

namespace {

/// log(1 + exp(z)) without overflow.
double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))); }
/// 1 / (1 + exp(-z)) without overflow.
double sigmoid(double z) {
  if (z >= 0.0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

/// Rows t_i a_i.
Matrix signed_rows(const LabelledData& data) { return data.labels.asDiagonal() * data.features; }

/// Fisher-Yates: order[i] for i = n-1 down to 1 swaps with a uniform j in [0, i].
void shuffle(std::vector<Index>& order, Rng& rng) {
  for (Index i = static_cast<Index>(order.size()) - 1; i >= 1; --i) {
    const auto j = static_cast<Index>(rng.index(static_cast<std::uint64_t>(i + 1)));
    std::swap(order[i], order[j]);
  }
}

LabelledData take_rows(const LabelledData& data, const std::vector<Index>& order, Index begin,
                       Index count) {
  LabelledData out;
  out.features.resize(count, data.dimension());
  out.labels.resize(count);
  for (Index r = 0; r < count; ++r) {
    out.features.row(r) = data.features.row(order[begin + r]);
    out.labels[r] = data.labels[order[begin + r]];
  }
  return out;
}

void check_pair(const LabelledData& train, const LabelledData& validation, const char* who) {
  check_labelled_data(train, "train");
  check_labelled_data(validation, "validation");
  require<ShapeError>(train.dimension() == validation.dimension(), who, ": train has dimension ",
                      train.dimension(), ", validation has ", validation.dimension());
}

void require_c(const LabelledData& train, const Vector& c, const char* who) {
  require<ShapeError>(c.size() == train.size(), who, ": c has ", c.size(),
                      " entries, the training set has ", train.size(), " samples");
  for (Index i = 0; i < c.size(); ++i)
    require(c[i] > 0.0 && std::isfinite(c[i]), who, ": c[", i, "] = ", c[i],
            " must be finite and > 0");
}

// The norm-ball logistic lower level on (w, b) = theta, with margins m_i = t_i (a_i^T w + b).
struct LogisticLevel {
  const LabelledData& data;
  const Vector& v;  // sample weights
  double mu;
  Index n, d;

  double value(const Vector& theta, double lam) const {
    const Vector m =
        data.labels.cwiseProduct(data.features * theta.head(d) + Vector::Constant(n, theta[d]));
    double s = 0.0;
    for (Index i = 0; i < n; ++i) s += v[i] * softplus(-m[i]);
    return s / static_cast<double>(n) + (0.5 * mu + lam) * theta.squaredNorm();
  }
  /// Gradient and Hessian of f + lam |theta|^2.
  void derivatives(const Vector& theta, double lam, Vector& grad, Eigen::MatrixXd& hess) const {
    grad.setZero(d + 1);
    hess.setZero(d + 1, d + 1);
    Vector at(d + 1);
    const double inv_n = 1.0 / static_cast<double>(n);
    for (Index i = 0; i < n; ++i) {
      at.head(d) = data.features.row(i).transpose();
      at[d] = 1.0;
      const double m = data.labels[i] * at.dot(theta);
      const double s = sigmoid(-m);
      grad.noalias() -= (v[i] * s * data.labels[i] * inv_n) * at;
      hess.selfadjointView<Eigen::Lower>().rankUpdate(at, v[i] * s * (1.0 - s) * inv_n);
    }
    hess.triangularView<Eigen::StrictlyUpper>() = hess.transpose();
    grad += (mu + 2.0 * lam) * theta;
    hess.diagonal().array() += mu + 2.0 * lam;
  }
  /// Damped Newton on f + lam |theta|^2 from theta (in place); returns the iterations.
  int newton(Vector& theta, double lam) const {
    Vector grad(d + 1);
    Eigen::MatrixXd hess(d + 1, d + 1);
    int it = 0;
    for (; it < 100; ++it) {
      derivatives(theta, lam, grad, hess);
      if (grad.lpNorm<Eigen::Infinity>() <= 1e-14) break;
      const Vector step = -hess.llt().solve(grad);
      const double slope = grad.dot(step);
      if (!(slope < 0.0)) break;  // round-off: no descent direction left
      // Near the minimum the decrease is below the round-off of the value, so the Armijo test
      // says nothing: take the full step there (the quadratically convergent region of a
      // strongly convex function); damp it by backtracking only far from the minimum.
      double t = 1.0;
      if (-slope > 1e-10) {
        const double h0 = value(theta, lam);
        while (t > 1e-12 && value(theta + t * step, lam) > h0 + 1e-4 * t * slope) t *= 0.5;
      }
      theta += t * step;
      if (-slope <= 1e-30) break;  // Newton decrement at round-off
    }
    return it;
  }
};

}  // namespace

// ---- data -----------------------------------------------------------------------------------

void check_labelled_data(const LabelledData& data, const char* name) {
  require<ShapeError>(data.features.rows() == data.labels.size(), name, ": features has ",
                      data.features.rows(), " rows, labels has ", data.labels.size(), " entries");
  require<ShapeError>(data.labels.size() >= 1, name, ": needs at least one sample, got 0");
  require<ShapeError>(data.features.cols() >= 1, name, ": needs at least one feature, got 0");
  for (Index i = 0; i < data.labels.size(); ++i)
    require(data.labels[i] == 1.0 || data.labels[i] == -1.0, name, ": labels[", i,
            "] = ", data.labels[i], " must be -1 or +1");
  for (Index i = 0; i < data.features.size(); ++i)
    require(std::isfinite(data.features.data()[i]), name, ": feature (", i / data.features.cols(),
            ", ", i % data.features.cols(), ") = ", data.features.data()[i], " must be finite");
}

LabelledData diabetes_like(std::uint64_t seed) {
  constexpr Index kN = 768, kD = 8, kPositives = 268;
  constexpr double kSeparation = 1.4;
  Rng population(kPopulationSeed);
  Eigen::MatrixXd a(kD, kD);
  for (Index r = 0; r < kD; ++r)
    for (Index c = 0; c < kD; ++c) a(r, c) = (r == c ? 1.0 : 0.0) + 0.4 * population.normal();
  Vector u(kD);
  for (Index k = 0; k < kD; ++k) u[k] = population.normal();
  const Vector shift = a * (kSeparation / u.norm() * u);

  Rng rng(seed);
  LabelledData data;
  data.features.resize(kN, kD);
  data.labels.resize(kN);
  Vector z(kD);
  for (Index i = 0; i < kN; ++i) {
    for (Index k = 0; k < kD; ++k) z[k] = rng.normal();
    const bool positive = i < kPositives;
    Vector row = a * z;
    if (positive) row += shift;
    data.features.row(i) = row.transpose();
    data.labels[i] = positive ? 1.0 : -1.0;
  }
  std::vector<Index> order(kN);
  std::iota(order.begin(), order.end(), Index{0});
  shuffle(order, rng);
  LabelledData out = take_rows(data, order, 0, kN);
  for (Index c = 0; c < kD; ++c) {
    const double lo = out.features.col(c).minCoeff(), hi = out.features.col(c).maxCoeff();
    out.features.col(c) = ((out.features.col(c).array() - lo) * (2.0 / (hi - lo)) - 1.0).matrix();
  }
  return out;
}

LabelledData fourclass_like(std::uint64_t seed) {
  constexpr Index kN = 862;
  Rng rng(seed);
  LabelledData data;
  data.features.resize(kN, 2);
  data.labels.resize(kN);
  for (Index i = 0; i < kN; ++i) {
    const double x1 = rng.uniform(-1.0, 1.0);
    const double x2 = rng.uniform(-1.0, 1.0);
    data.features(i, 0) = x1;
    data.features(i, 1) = x2;
    const bool above_wave = x2 > 0.7 * std::sin(3.5 * x1 + 0.4) + 0.4;
    const bool in_disc = (x1 + 0.6) * (x1 + 0.6) + (x2 + 0.5) * (x2 + 0.5) < 0.08;
    data.labels[i] = (above_wave || in_disc) ? 1.0 : -1.0;
  }
  return data;
}

DataSplit split_data(const LabelledData& data, Index n_train, Index n_validation,
                     std::uint64_t seed) {
  check_labelled_data(data, "split_data: data");
  require(n_train >= 1, "split_data: n_train must be >= 1, got ", n_train);
  require(n_validation >= 1, "split_data: n_validation must be >= 1, got ", n_validation);
  require(n_train + n_validation < data.size(),
          "split_data: n_train + n_validation = ", n_train + n_validation, " must be < the ",
          data.size(), " samples (the test set needs at least one)");
  std::vector<Index> order(static_cast<std::size_t>(data.size()));
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(seed);
  shuffle(order, rng);
  DataSplit split;
  split.train = take_rows(data, order, 0, n_train);
  split.validation = take_rows(data, order, n_train, n_validation);
  split.test = take_rows(data, order, n_train + n_validation, data.size() - n_train - n_validation);
  return split;
}

FlippedLabels flip_labels(const Vector& labels, double flip_fraction, std::uint64_t seed) {
  require(flip_fraction >= 0.0 && flip_fraction < 0.5,
          "flip_labels: flip_fraction must be in [0, 0.5), got ", flip_fraction);
  const Index n = labels.size();
  FlippedLabels out;
  out.labels = labels;
  out.flipped = Vector::Zero(n);
  out.flipped_count = static_cast<Index>(std::llround(flip_fraction * static_cast<double>(n)));
  std::vector<Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(seed);
  for (Index i = 0; i < out.flipped_count; ++i) {  // partial Fisher-Yates
    const auto j = i + static_cast<Index>(rng.index(static_cast<std::uint64_t>(n - i)));
    std::swap(order[i], order[j]);
    out.labels[order[i]] = -out.labels[order[i]];
    out.flipped[order[i]] = 1.0;
  }
  return out;
}

double accuracy(const LabelledData& data, const Eigen::Ref<const Vector>& w, double b) {
  require<ShapeError>(w.size() == data.dimension(), "accuracy: w has ", w.size(),
                      " entries, the data has dimension ", data.dimension());
  require<ShapeError>(data.size() >= 1, "accuracy: the data is empty");
  const Vector scores = data.features * w;
  Index right = 0;
  for (Index i = 0; i < data.size(); ++i) right += data.labels[i] * (scores[i] + b) > 0.0;
  return static_cast<double>(right) / static_cast<double>(data.size());
}

// ---- dual coordinate descent ------------------------------------------------------------------

bool DualCdOptions::is_valid(std::string* why) const {
  if (!(tolerance > 0.0) || !std::isfinite(tolerance)) {
    if (why) *why = detail::concat("tolerance must be finite and > 0, got ", tolerance);
    return false;
  }
  if (max_epochs < 1) {
    if (why) *why = detail::concat("max_epochs must be >= 1, got ", max_epochs);
    return false;
  }
  return true;
}

LinearSvmSolution solve_linear_svm_dual_cd(const LabelledData& train, const Vector& c,
                                           const DualCdOptions& options) {
  check_labelled_data(train, "solve_linear_svm_dual_cd: train");
  require_c(train, c, "solve_linear_svm_dual_cd");
  std::string why;
  require(options.is_valid(&why), "DualCdOptions: ", why);
  const Index n = train.size(), d = train.dimension();
  const Matrix& a = train.features;
  const Vector& t = train.labels;
  // Q_ii = |(a_i, 1)|^2 >= 1: never zero.
  const Vector q = (a.rowwise().squaredNorm().array() + 1.0).matrix();

  LinearSvmSolution s;
  s.alpha = Vector::Zero(n);
  Vector w = Vector::Zero(d);
  double b = 0.0;
  std::vector<Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(options.seed);
  for (s.epochs = 0; s.epochs < options.max_epochs;) {
    shuffle(order, rng);
    double max_pg = 0.0;
    for (const Index i : order) {
      const double g = t[i] * (a.row(i).dot(w) + b) - 1.0;
      double pg = g;
      if (s.alpha[i] <= 0.0)
        pg = std::min(g, 0.0);
      else if (s.alpha[i] >= c[i])
        pg = std::max(g, 0.0);
      max_pg = std::max(max_pg, std::abs(pg));
      if (pg == 0.0) continue;
      const double old = s.alpha[i];
      s.alpha[i] = std::min(std::max(old - g / q[i], 0.0), c[i]);
      const double delta = (s.alpha[i] - old) * t[i];
      w.noalias() += delta * a.row(i).transpose();
      b += delta;
    }
    ++s.epochs;
    if (max_pg <= options.tolerance) {
      s.converged = true;
      break;
    }
  }
  // Recompute (w, b) from alpha: no drift from the incremental updates.
  const Vector ta = t.cwiseProduct(s.alpha);
  s.w = a.transpose() * ta;
  s.b = ta.sum();
  const Vector margins = t.cwiseProduct(a * s.w + Vector::Constant(n, s.b));
  const double norm2 = s.w.squaredNorm() + s.b * s.b;
  s.primal = 0.5 * norm2 + c.dot((1.0 - margins.array()).max(0.0).matrix());
  s.dual = s.alpha.sum() - 0.5 * norm2;
  return s;
}

LinearSvmSolution solve_linear_svm_dual_cd(const LabelledData& train, double c,
                                           const DualCdOptions& options) {
  require(c > 0.0 && std::isfinite(c), "solve_linear_svm_dual_cd: c must be finite and > 0, got ",
          c);
  check_labelled_data(train, "solve_linear_svm_dual_cd: train");
  return solve_linear_svm_dual_cd(train, Vector::Constant(train.size(), c), options);
}

double linear_svm_kkt_residual(const LabelledData& train, const Vector& c,
                               const LinearSvmSolution& s) {
  check_labelled_data(train, "linear_svm_kkt_residual: train");
  require_c(train, c, "linear_svm_kkt_residual");
  const Index n = train.size();
  require<ShapeError>(s.alpha.size() == n && s.w.size() == train.dimension(),
                      "linear_svm_kkt_residual: the solution's sizes do not match the data");
  const Vector ta = train.labels.cwiseProduct(s.alpha);
  double r = (s.w - train.features.transpose() * ta).lpNorm<Eigen::Infinity>();
  r = std::max(r, std::abs(s.b - ta.sum()));
  const Vector margins = train.labels.cwiseProduct(train.features * s.w + Vector::Constant(n, s.b));
  for (Index i = 0; i < n; ++i) {
    r = std::max({r, -s.alpha[i], s.alpha[i] - c[i]});
    const double g = margins[i] - 1.0;
    double pg = g;
    if (s.alpha[i] <= 0.0)
      pg = std::min(g, 0.0);
    else if (s.alpha[i] >= c[i])
      pg = std::max(g, 0.0);
    r = std::max(r, std::abs(pg));
  }
  return r;
}

// ---- norm-ball logistic regression ----------------------------------------------------------

NormBallLogisticSolution solve_norm_ball_logistic(const LabelledData& train, const Vector& weights,
                                                  double mu, double rho) {
  check_labelled_data(train, "solve_norm_ball_logistic: train");
  require<ShapeError>(weights.size() == train.size(), "solve_norm_ball_logistic: weights has ",
                      weights.size(), " entries, the training set has ", train.size());
  for (Index i = 0; i < weights.size(); ++i)
    require(weights[i] >= 0.0 && weights[i] <= 1.0, "solve_norm_ball_logistic: weights[", i,
            "] = ", weights[i], " must be in [0, 1]");
  require(mu > 0.0 && std::isfinite(mu),
          "solve_norm_ball_logistic: mu must be finite and > 0, got ", mu);
  require(rho > 0.0 && std::isfinite(rho),
          "solve_norm_ball_logistic: rho must be finite and > 0, got ", rho);
  const Index d = train.dimension();
  const LogisticLevel level{train, weights, mu, train.size(), d};
  NormBallLogisticSolution s;
  Vector theta = Vector::Zero(d + 1);
  s.newton_iterations += level.newton(theta, 0.0);
  if (theta.squaredNorm() > rho) {
    // phi(lam) = |theta(lam)|^2 - rho is decreasing in lam; bracket its root, then TOMS 748.
    Vector warm = theta;
    auto phi = [&](double lam) {
      s.newton_iterations += level.newton(warm, lam);
      return warm.squaredNorm() - rho;
    };
    double lo = 0.0, hi = 1e-3;
    double f_lo = theta.squaredNorm() - rho, f_hi = phi(hi);
    while (f_hi > 0.0) {
      require<NumericalError>(hi < 1e12,
                              "solve_norm_ball_logistic: no multiplier below 1e12 "
                              "brings |(w, b)|^2 down to rho");
      lo = hi;
      f_lo = f_hi;
      hi *= 4.0;
      f_hi = phi(hi);
    }
    if (f_hi < 0.0) {
      std::uintmax_t max_iter = 200;
      const auto bracket = boost::math::tools::toms748_solve(
          phi, lo, hi, f_lo, f_hi, boost::math::tools::eps_tolerance<double>(52), max_iter);
      hi = bracket.second;  // phi(hi) <= 0: the feasible end of the final bracket
    }
    theta = warm;
    s.newton_iterations += level.newton(theta, hi);
    s.multiplier = hi;
  }
  s.w = theta.head(d);
  s.b = theta[d];
  return s;
}

double norm_ball_logistic_kkt_residual(const LabelledData& train, const Vector& weights, double mu,
                                       double rho, const NormBallLogisticSolution& s) {
  check_labelled_data(train, "norm_ball_logistic_kkt_residual: train");
  require<ShapeError>(weights.size() == train.size() && s.w.size() == train.dimension(),
                      "norm_ball_logistic_kkt_residual: sizes do not match the data");
  const Index d = train.dimension();
  const LogisticLevel level{train, weights, mu, train.size(), d};
  Vector theta(d + 1);
  theta << s.w, s.b;
  Vector grad(d + 1);
  Eigen::MatrixXd hess(d + 1, d + 1);
  level.derivatives(theta, s.multiplier, grad, hess);  // grad f + 2 lam theta
  const double slack = theta.squaredNorm() - rho;
  return std::max({grad.lpNorm<Eigen::Infinity>(), std::max(0.0, slack),
                   std::abs(s.multiplier * slack), std::max(0.0, -s.multiplier)});
}

// ---- SvmHyperparameterSelection ---------------------------------------------------------------

namespace {
SvmHyperparameterSelection::Options checked_svm_options(SvmHyperparameterSelection::Options o) {
  require(o.c_min > 0.0 && std::isfinite(o.c_min),
          "SvmHyperparameterSelection: c_min must be finite and > 0, got ", o.c_min);
  require(o.c_max >= o.c_min && std::isfinite(o.c_max),
          "SvmHyperparameterSelection: c_max must be finite and >= c_min = ", o.c_min, ", got ",
          o.c_max);
  require(o.tau > 0.0 && std::isfinite(o.tau),
          "SvmHyperparameterSelection: tau must be finite and > 0, got ", o.tau);
  return o;
}
Box svm_lower_box(Index d, Index n) {
  const double inf = std::numeric_limits<double>::infinity();
  Vector lower = Vector::Constant(d + 1 + n, -inf);
  lower.tail(n).setZero();
  return Box(std::move(lower), Vector::Constant(d + 1 + n, inf));
}
}  // namespace

SvmHyperparameterSelection::SvmHyperparameterSelection(LabelledData train, LabelledData validation,
                                                       Options options)
    : train_((check_pair(train, validation, "SvmHyperparameterSelection"), std::move(train))),
      validation_(std::move(validation)),
      options_(checked_svm_options(options)),
      n_(train_.size()),
      d_(train_.dimension()),
      signed_train_(signed_rows(train_)),
      signed_validation_(signed_rows(validation_)),
      upper_box_(Box::uniform(n_, options_.c_min, options_.c_max)),
      lower_box_(svm_lower_box(d_, n_)) {}

void SvmHyperparameterSelection::check_sizes(const Vector& x, const Vector& y,
                                             const char* where) const {
  require<ShapeError>(x.size() == n_, "SvmHyperparameterSelection::", where, ": x has ", x.size(),
                      " entries, expected n_train = ", n_);
  require<ShapeError>(y.size() == d_ + 1 + n_, "SvmHyperparameterSelection::", where, ": y has ",
                      y.size(), " entries, expected d + 1 + n_train = ", d_ + 1 + n_);
}

double SvmHyperparameterSelection::upper_value(const Vector& x, const Vector& y) const {
  check_sizes(x, y, "upper_value");
  const double tau = options_.tau;
  const Vector m = signed_validation_ * y.head(d_) + validation_.labels * y[d_];
  double s = 0.0;
  for (Index j = 0; j < m.size(); ++j) s += tau * softplus((1.0 - m[j]) / tau);
  return s / static_cast<double>(m.size());
}

void SvmHyperparameterSelection::upper_gradient(const Vector& x, const Vector& y, Vector& gx,
                                                Vector& gy) const {
  check_sizes(x, y, "upper_gradient");
  const double tau = options_.tau;
  Vector r = signed_validation_ * y.head(d_) + validation_.labels * y[d_];  // margins
  const double inv_nv = 1.0 / static_cast<double>(r.size());
  for (Index j = 0; j < r.size(); ++j) r[j] = -sigmoid((1.0 - r[j]) / tau) * inv_nv;
  gx.setZero(n_);
  gy.resize(d_ + 1 + n_);
  gy.head(d_).noalias() = signed_validation_.transpose() * r;
  gy[d_] = validation_.labels.dot(r);
  gy.tail(n_).setZero();
}

double SvmHyperparameterSelection::lower_value(const Vector& x, const Vector& y) const {
  check_sizes(x, y, "lower_value");
  return 0.5 * y.head(d_ + 1).squaredNorm() + x.dot(y.tail(n_));
}

void SvmHyperparameterSelection::lower_gradient(const Vector& x, const Vector& y, Vector& gx,
                                                Vector& gy) const {
  check_sizes(x, y, "lower_gradient");
  gx = y.tail(n_);
  gy.resize(d_ + 1 + n_);
  gy.head(d_ + 1) = y.head(d_ + 1);
  gy.tail(n_) = x;
}

void SvmHyperparameterSelection::constraints(const Vector& x, const Vector& y, Vector& g) const {
  check_sizes(x, y, "constraints");
  g.resize(n_);
  g.noalias() = -(signed_train_ * y.head(d_));
  g.array() -= train_.labels.array() * y[d_] + y.tail(n_).array() - 1.0;
}

void SvmHyperparameterSelection::constraint_adjoint(const Vector& x, const Vector& y,
                                                    const Vector& lam, Vector& gx,
                                                    Vector& gy) const {
  check_sizes(x, y, "constraint_adjoint");
  require<ShapeError>(lam.size() == n_, "SvmHyperparameterSelection::constraint_adjoint: lam has ",
                      lam.size(), " entries, expected n_train = ", n_);
  gx.setZero(n_);
  gy.resize(d_ + 1 + n_);
  gy.head(d_).noalias() = -(signed_train_.transpose() * lam);
  gy[d_] = -train_.labels.dot(lam);
  gy.tail(n_) = -lam;
}

void SvmHyperparameterSelection::project_lower(Vector& y) const { lower_box_.project(y); }

void SvmHyperparameterSelection::project_joint(Vector& x, Vector& y) const {
  check_sizes(x, y, "project_joint");
  upper_box_.project(x);
  if (!options_.coupled_in_c || !y.allFinite()) {  // NaN stays NaN: the solver's check sees it
    lower_box_.project(y);
    return;
  }
  project_onto_margin_set(y);
}

// Proj of y0 = (u0, xi0), u = (w, b), onto {(u, xi) : xi >= 0, xi_i >= 1 - m_i(u)},
// m_i(u) = s_i^T u, s_i = t_i (a_i, 1). For a fixed u the nearest slacks are
// xi_i(u) = max(xi0_i, 0, 1 - m_i), so the projection minimises over u alone
//   Phi(u) = |u - u0|^2 + sum_i h_i(m_i(u)),   h_i(m) = (xi_i(u) - xi0_i)^2,
// a strongly convex piecewise quadratic in d + 1 variables. Two kinds of rows:
//   xi0_i >= 0 (smooth):  h_i(m) = max(0, q_i - m)^2, q_i = 1 - xi0_i; C^1 at m = q_i.
//   xi0_i < 0  (kink):    h_i(m) = (max(0, 1 - m) + p_i)^2, p_i = -xi0_i: (q_i - m)^2 for m <= 1,
//                         p_i^2 for m >= 1; a kink at m = 1 with subdifferential [-2 p_i, 0].
// Method: semismooth Newton with an exact line search over the smooth rows' breakpoints
// (Keerthi and DeCoste's modified finite Newton method for the C^1 part), combined with an
// active set K of kink rows held at m_i = 1: the Newton step solves the equality-constrained
// model (null space of S_K), a line search that reaches a kink adds that row to K, and a row of
// K whose multiplier g_i leaves [-2 p_i, 0] is released. It ends at a point where the model's
// step vanishes and every multiplier is in range, i.e. at the exact minimiser (to round-off);
// each step decreases Phi, and the partitions are finite.
void SvmHyperparameterSelection::project_onto_margin_set(Vector& y) const {
  const Index m = d_ + 1;
  const Vector u0 = y.head(m);
  const Vector xi0 = y.tail(n_);
  Vector u = u0, margins(n_), delta(n_), grad(m), dir(m);
  Matrix rows(n_, m);  // the rows of the quadratic pieces in use, stacked
  Eigen::MatrixXd hess(m, m);
  auto margins_of = [&](const Vector& v, Vector& out) {
    out.noalias() = signed_train_ * v.head(d_);
    out += train_.labels * v[d_];
  };
  auto row_of = [&](Index i, auto&& out) {
    out.head(d_) = signed_train_.row(i);
    out[d_] = train_.labels[i];
  };
  // The piece of every kink row is a state, changed only by the events below (never re-read
  // from margins that rounding moves by an ulp): left (m < 1, quadratic), right (m > 1,
  // constant), or held at the kink (in K).
  enum Piece : signed char { kLeft, kRight, kKink };
  std::vector<signed char> piece(static_cast<std::size_t>(n_), kRight);
  margins_of(u, margins);
  for (Index i = 0; i < n_; ++i)
    if (xi0[i] < 0.0) piece[i] = margins[i] < 1.0 ? kLeft : kRight;
  std::vector<Index> k_rows;
  std::vector<std::pair<double, Index>> events;
  auto quadratic = [&](Index i, double mi, double dm) {  // on the quadratic piece?
    if (xi0[i] < 0.0) return piece[i] == kLeft;
    const double r = 1.0 - xi0[i] - mi;
    return r > 0.0 || (r == 0.0 && dm < 0.0);
  };
  const int max_iterations = static_cast<int>(10 * n_ + 100);
  int it = 0;
  for (; it < max_iterations; ++it) {
    margins_of(u, margins);
    // The smooth model at u: gradient and generalized Hessian of the pieces in use.
    grad = 2.0 * (u - u0);
    Index used = 0;
    for (Index i = 0; i < n_; ++i) {
      if (!quadratic(i, margins[i], 0.0)) continue;
      row_of(i, rows.row(used));
      grad.noalias() -= (2.0 * (1.0 - xi0[i] - margins[i])) * rows.row(used).transpose();
      ++used;
    }
    hess.noalias() = 2.0 * rows.topRows(used).transpose() * rows.topRows(used);
    hess.diagonal().array() += 2.0;
    // Newton step in the null space of S_K (the rows held at m = 1).
    const Index k = static_cast<Index>(k_rows.size());
    Eigen::MatrixXd sk(k, m);
    for (Index j = 0; j < k; ++j) row_of(k_rows[j], sk.row(j));
    Eigen::MatrixXd z;  // orthonormal basis of null(S_K)
    if (k == 0) {
      z = Eigen::MatrixXd::Identity(m, m);
    } else {
      Eigen::ColPivHouseholderQR<Eigen::MatrixXd> cqr(sk.transpose());
      const Eigen::MatrixXd q = cqr.householderQ() * Eigen::MatrixXd::Identity(m, m);
      z = q.rightCols(m - cqr.rank());
    }
    dir.setZero();
    if (z.cols() > 0) {
      const Eigen::MatrixXd reduced = z.transpose() * hess * z;
      dir = -(z * reduced.llt().solve(z.transpose() * grad));
    }
    if (dir.lpNorm<Eigen::Infinity>() <= 1e-12 * (1.0 + u.lpNorm<Eigen::Infinity>())) {
      if (k == 0) break;
      // Kink multipliers: least squares S_K^T g = -grad (the step is zero); each g_j must be
      // in the subdifferential [-2 p_j, 0] of h_j at m = 1.
      const Vector g = sk.transpose().colPivHouseholderQr().solve(-grad);
      Index worst = -1;
      double worst_violation = 1e-12 * (1.0 + grad.lpNorm<Eigen::Infinity>());
      signed char worst_piece = kRight;
      for (Index j = 0; j < k; ++j) {
        const double pj = -xi0[k_rows[j]];
        if (g[j] > worst_violation) {
          worst = j, worst_violation = g[j], worst_piece = kRight;  // Phi falls as m rises
        }
        if (-2.0 * pj - g[j] > worst_violation) {
          worst = j, worst_violation = -2.0 * pj - g[j], worst_piece = kLeft;  // ... as m falls
        }
      }
      if (worst < 0) break;  // every multiplier in range: the minimiser
      piece[k_rows[worst]] = worst_piece;
      k_rows.erase(k_rows.begin() + worst);
      continue;
    }
    // Exact line search along dir: Phi'(t) / 2 = c - B(t) + t (|dir|^2 + A(t)), with
    // A = sum delta_i^2 and B = sum r_i delta_i over the rows on a quadratic piece; a smooth
    // row toggles at its breakpoint, a kink row heading for its kink blocks the step there.
    margins_of(dir, delta);
    const double c = (u - u0).dot(dir), ss = dir.squaredNorm();
    double sum_a = 0.0, sum_b = 0.0;
    events.clear();
    for (Index i = 0; i < n_; ++i) {
      const double r = 1.0 - xi0[i] - margins[i], dm = delta[i];
      if (xi0[i] < 0.0) {
        if (piece[i] == kKink) continue;
        if (piece[i] == kLeft) {
          sum_a += dm * dm;
          sum_b += r * dm;
        }
        if ((piece[i] == kLeft && dm > 0.0) || (piece[i] == kRight && dm < 0.0))
          events.emplace_back(std::max(0.0, (1.0 - margins[i]) / dm), i);
        continue;
      }
      if (quadratic(i, margins[i], dm)) {
        sum_a += dm * dm;
        sum_b += r * dm;
      }
      if (dm != 0.0 && r / dm > 0.0) events.emplace_back(r / dm, i);
    }
    std::sort(events.begin(), events.end());
    double t = std::max(0.0, (sum_b - c) / (ss + sum_a));
    Index blocking = -1;
    for (const auto& [tb, i] : events) {
      if (t <= tb) break;
      if (xi0[i] < 0.0) {  // a kink: stop on it
        t = tb;
        blocking = i;
        break;
      }
      const double r = 1.0 - xi0[i] - margins[i], dm = delta[i];
      const double sign = dm > 0.0 ? -1.0 : 1.0;  // margin rising: leaves the quadratic piece
      sum_a += sign * dm * dm;
      sum_b += sign * r * dm;
      t = std::max(tb, (sum_b - c) / (ss + sum_a));
    }
    u += t * dir;
    if (blocking >= 0) {
      piece[blocking] = kKink;
      k_rows.push_back(blocking);
    }
  }
  require<NumericalError>(it < max_iterations,
                          "SvmHyperparameterSelection::project_joint: the projection onto "
                          "{xi >= 0, xi_i >= 1 - m_i} did not finish in ",
                          max_iterations, " active-set steps");
  margins_of(u, margins);
  y.head(m) = u;
  for (Index i = 0; i < n_; ++i) y[m + i] = std::max(std::max(xi0[i], 0.0), 1.0 - margins[i]);
}

Vector SvmHyperparameterSelection::lower_point(const Eigen::Ref<const Vector>& w, double b) const {
  require<ShapeError>(w.size() == d_, "SvmHyperparameterSelection::lower_point: w has ", w.size(),
                      " entries, expected d = ", d_);
  Vector y(d_ + 1 + n_);
  y.head(d_) = w;
  y[d_] = b;
  const Vector m = signed_train_ * w + train_.labels * b;
  y.tail(n_) = (1.0 - m.array()).max(0.0).matrix();
  return y;
}

Vector SvmHyperparameterSelection::lower_solution(const Vector& x, Vector* multipliers,
                                                  const DualCdOptions& options) const {
  require<ShapeError>(x.size() == n_, "SvmHyperparameterSelection::lower_solution: x has ",
                      x.size(), " entries, expected n_train = ", n_);
  LinearSvmSolution s = solve_linear_svm_dual_cd(train_, x, options);
  if (multipliers) *multipliers = s.alpha;
  return lower_point(s.w, s.b);
}

// ---- DataHyperCleaning ------------------------------------------------------------------------

namespace {
DataHyperCleaning::Options checked_cleaning_options(DataHyperCleaning::Options o) {
  require(o.flip_fraction >= 0.0 && o.flip_fraction < 0.5,
          "DataHyperCleaning: flip_fraction must be in [0, 0.5), got ", o.flip_fraction);
  require(o.mu > 0.0 && std::isfinite(o.mu), "DataHyperCleaning: mu must be finite and > 0, got ",
          o.mu);
  require(o.rho > 0.0 && std::isfinite(o.rho),
          "DataHyperCleaning: rho must be finite and > 0, got ", o.rho);
  return o;
}
}  // namespace

DataHyperCleaning::DataHyperCleaning(LabelledData train, LabelledData validation, Options options)
    : noisy_train_((check_pair(train, validation, "DataHyperCleaning"), std::move(train))),
      validation_(std::move(validation)),
      options_(checked_cleaning_options(options)),
      n_(noisy_train_.size()),
      d_(noisy_train_.dimension()),
      upper_box_(Box::uniform(n_, 0.0, 1.0)),
      ball_(Vector::Zero(d_ + 1), std::sqrt(options_.rho)) {
  clean_labels_ = noisy_train_.labels;
  FlippedLabels noisy = flip_labels(clean_labels_, options_.flip_fraction, options_.flip_seed);
  noisy_train_.labels = std::move(noisy.labels);
  flipped_ = std::move(noisy.flipped);
  signed_train_ = signed_rows(noisy_train_);
  signed_validation_ = signed_rows(validation_);
}

void DataHyperCleaning::check_sizes(const Vector& x, const Vector& y, const char* where) const {
  require<ShapeError>(x.size() == n_, "DataHyperCleaning::", where, ": x has ", x.size(),
                      " entries, expected n_train = ", n_);
  require<ShapeError>(y.size() == d_ + 1, "DataHyperCleaning::", where, ": y has ", y.size(),
                      " entries, expected d + 1 = ", d_ + 1);
}

double DataHyperCleaning::upper_value(const Vector& x, const Vector& y) const {
  check_sizes(x, y, "upper_value");
  const Vector m = signed_validation_ * y.head(d_) + validation_.labels * y[d_];
  double s = 0.0;
  for (Index j = 0; j < m.size(); ++j) s += softplus(-m[j]);
  return s / static_cast<double>(m.size());
}

void DataHyperCleaning::upper_gradient(const Vector& x, const Vector& y, Vector& gx,
                                       Vector& gy) const {
  check_sizes(x, y, "upper_gradient");
  Vector r = signed_validation_ * y.head(d_) + validation_.labels * y[d_];
  const double inv_nv = 1.0 / static_cast<double>(r.size());
  for (Index j = 0; j < r.size(); ++j) r[j] = -sigmoid(-r[j]) * inv_nv;
  gx.setZero(n_);
  gy.resize(d_ + 1);
  gy.head(d_).noalias() = signed_validation_.transpose() * r;
  gy[d_] = validation_.labels.dot(r);
}

double DataHyperCleaning::lower_value(const Vector& x, const Vector& y) const {
  check_sizes(x, y, "lower_value");
  const Vector m = signed_train_ * y.head(d_) + noisy_train_.labels * y[d_];
  double s = 0.0;
  for (Index i = 0; i < n_; ++i) s += x[i] * softplus(-m[i]);
  return s / static_cast<double>(n_) + 0.5 * options_.mu * y.squaredNorm();
}

void DataHyperCleaning::lower_gradient(const Vector& x, const Vector& y, Vector& gx,
                                       Vector& gy) const {
  check_sizes(x, y, "lower_gradient");
  Vector r = signed_train_ * y.head(d_) + noisy_train_.labels * y[d_];  // margins
  const double inv_n = 1.0 / static_cast<double>(n_);
  gx.resize(n_);
  for (Index i = 0; i < n_; ++i) {
    gx[i] = softplus(-r[i]) * inv_n;
    r[i] = -x[i] * sigmoid(-r[i]) * inv_n;
  }
  gy.resize(d_ + 1);
  gy.head(d_).noalias() = signed_train_.transpose() * r;
  gy[d_] = noisy_train_.labels.dot(r);
  gy += options_.mu * y;
}

void DataHyperCleaning::constraints(const Vector& x, const Vector& y, Vector& g) const {
  check_sizes(x, y, "constraints");
  g.resize(1);
  g[0] = y.squaredNorm() - options_.rho;
}

void DataHyperCleaning::constraint_adjoint(const Vector& x, const Vector& y, const Vector& lam,
                                           Vector& gx, Vector& gy) const {
  check_sizes(x, y, "constraint_adjoint");
  require<ShapeError>(lam.size() == 1, "DataHyperCleaning::constraint_adjoint: lam has ",
                      lam.size(), " entries, expected 1");
  gx.setZero(n_);
  gy = (2.0 * lam[0]) * y;
}

void DataHyperCleaning::project_lower(Vector& y) const {
  require<ShapeError>(y.size() == d_ + 1, "DataHyperCleaning::project_lower: y has ", y.size(),
                      " entries, expected d + 1 = ", d_ + 1);
}

void DataHyperCleaning::project_joint(Vector& x, Vector& y) const {
  check_sizes(x, y, "project_joint");
  upper_box_.project(x);
  if (options_.coupled_in_c) ball_.project(y);
}

Vector DataHyperCleaning::lower_solution(const Vector& x, double* multiplier) const {
  require<ShapeError>(x.size() == n_, "DataHyperCleaning::lower_solution: x has ", x.size(),
                      " entries, expected n_train = ", n_);
  const NormBallLogisticSolution s =
      solve_norm_ball_logistic(noisy_train_, x, options_.mu, options_.rho);
  if (multiplier) *multiplier = s.multiplier;
  Vector y(d_ + 1);
  y << s.w, s.b;
  return y;
}

}  // namespace tether::problems
