#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/classifiers.hpp>

namespace tether::problems {

namespace {

using ConstMap = Eigen::Map<const Matrix>;
using MutMap = Eigen::Map<Matrix>;
using ConstVecMap = Eigen::Map<const Vector>;
using VecMap = Eigen::Map<Vector>;

// Row-wise softmax probabilities of logits.
Matrix softmax_rows(const Matrix& z) { return log_softmax_rows(z).array().exp().matrix(); }

// D = diag(w) (Y - P): the weighted derivative of sum_i w_i s_i with respect to the logits.
Matrix weighted_residual(const Matrix& p, const std::vector<int>& y, const Vector& w) {
  Matrix d = -p;
  for (Index i = 0; i < d.rows(); ++i) d(i, y[static_cast<std::size_t>(i)]) += 1.0;
  d.array().colwise() *= w.array();
  return d;
}

// (grad s_i . v)_i from the directional derivative of the logits rz: rz_{i,y_i} - p_i . rz_i.
Vector label_directional(const Matrix& p, const Matrix& rz, const std::vector<int>& y) {
  Vector r(p.rows());
  for (Index i = 0; i < p.rows(); ++i)
    r[i] = rz(i, y[static_cast<std::size_t>(i)]) - p.row(i).dot(rz.row(i));
  return r;
}

// R{D} = -diag(w) R{P}, with R{P} = P o (Rz - (P o Rz) 1): the softmax Jacobian applied to rz.
Matrix weighted_residual_r(const Matrix& p, const Matrix& rz, const Vector& w) {
  const Vector q = (p.array() * rz.array()).rowwise().sum();
  Matrix rd = -(p.array() * (rz.array().colwise() - q.array())).matrix();
  rd.array().colwise() *= w.array();
  return rd;
}

Vector label_log_likelihoods_of(const Matrix& logp, const std::vector<int>& y) {
  Vector s(logp.rows());
  for (Index i = 0; i < logp.rows(); ++i) s[i] = logp(i, y[static_cast<std::size_t>(i)]);
  return s;
}

double accuracy_of(const Matrix& z, const std::vector<int>& y) {
  Index correct = 0;
  for (Index i = 0; i < z.rows(); ++i) {
    Index best = 0;
    for (Index c = 1; c < z.cols(); ++c)
      if (z(i, c) > z(i, best)) best = c;
    if (best == y[static_cast<std::size_t>(i)]) ++correct;
  }
  return static_cast<double>(correct) / static_cast<double>(z.rows());
}

void check_size(const char* who, const char* name, const Vector& v, Index expected) {
  require<ShapeError>(v.size() == expected, who, ": ", name, " has size ", v.size(), ", expected ",
                      expected);
}

void check_model_data(const char* who, const Vector& theta, Index dimension, const Dataset& data,
                      Index features, Index classes) {
  check_size(who, "theta", theta, dimension);
  data.validate(who);
  require<ShapeError>(data.features() == features, who, ": data has ", data.features(),
                      " features, the model takes ", features);
  require<ShapeError>(data.classes == classes, who, ": data has ", data.classes,
                      " classes, the model has ", classes);
  require(data.size() >= 1, who, ": data is empty (a mean over no samples is undefined)");
}

void check_l2(const char* who, double l2) {
  require(std::isfinite(l2) && l2 >= 0.0, who, ": l2 must be finite and >= 0, got ", l2);
}

}  // namespace

// ---- data -------------------------------------------------------------------------------------

Dataset Dataset::subset(const std::vector<Index>& rows) const {
  Dataset out;
  out.classes = classes;
  out.x.resize(static_cast<Index>(rows.size()), x.cols());
  out.y.resize(rows.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    require(rows[k] >= 0 && rows[k] < size(), "Dataset::subset: row index ", rows[k],
            " outside [0, ", size(), ")");
    out.x.row(static_cast<Index>(k)) = x.row(rows[k]);
    out.y[k] = y[static_cast<std::size_t>(rows[k])];
  }
  return out;
}

void Dataset::validate(const std::string& who) const {
  require<ShapeError>(static_cast<Index>(y.size()) == x.rows(), who, ": data.x has ", x.rows(),
                      " rows but data.y has ", y.size(), " labels");
  require(classes >= 2, who, ": data.classes must be >= 2, got ", classes);
  for (std::size_t i = 0; i < y.size(); ++i)
    require(y[i] >= 0 && y[i] < classes, who, ": label data.y[", i, "] = ", y[i], " outside [0, ",
            classes, ")");
  require(x.allFinite(), who, ": data.x has a non-finite entry");
}

Dataset make_gaussian_clusters(const GaussianClustersOptions& o) {
  const char* who = "make_gaussian_clusters";
  require(o.samples >= 1, who, ": samples must be >= 1, got ", o.samples);
  require(o.features >= 1, who, ": features must be >= 1, got ", o.features);
  require(o.classes >= 2, who, ": classes must be >= 2, got ", o.classes);
  require(std::isfinite(o.separation) && o.separation >= 0.0, who,
          ": separation must be finite and >= 0, got ", o.separation);
  require(std::isfinite(o.noise) && o.noise > 0.0, who, ": noise must be finite and > 0, got ",
          o.noise);
  Rng rng(o.seed);
  const Index d = o.features, k = o.classes;
  Eigen::MatrixXd gauss(d, k);
  for (Index c = 0; c < k; ++c)
    for (Index j = 0; j < d; ++j) gauss(j, c) = rng.normal();
  Eigen::MatrixXd directions(d, k);
  if (d >= k) {
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(gauss);
    directions = qr.householderQ() * Eigen::MatrixXd::Identity(d, k);
  } else {
    directions = gauss.colwise().normalized();
  }
  // Orthonormal q_c, q_c': |mu_c - mu_c'| = (separation / sqrt 2) sqrt 2 = separation.
  const Eigen::MatrixXd means = directions * (o.separation / std::sqrt(2.0));

  Dataset data;
  data.classes = k;
  data.x.resize(o.samples, d);
  data.y.resize(static_cast<std::size_t>(o.samples));
  for (Index i = 0; i < o.samples; ++i) {
    const int label = static_cast<int>(i % k);
    data.y[static_cast<std::size_t>(i)] = label;
    for (Index j = 0; j < d; ++j) data.x(i, j) = means(j, label) + o.noise * rng.normal();
  }
  return data;
}

Matrix log_softmax_rows(const Matrix& logits) {
  Matrix out(logits.rows(), logits.cols());
  for (Index i = 0; i < logits.rows(); ++i) {
    const double m = logits.row(i).maxCoeff();
    const double lse = m + std::log((logits.row(i).array() - m).exp().sum());
    out.row(i) = logits.row(i).array() - lse;
  }
  return out;
}

double mean_kl_divergence(const Matrix& log_p, const Matrix& log_q) {
  require<ShapeError>(log_p.rows() == log_q.rows() && log_p.cols() == log_q.cols(),
                      "mean_kl_divergence: log_p is ", log_p.rows(), " x ", log_p.cols(),
                      ", log_q is ", log_q.rows(), " x ", log_q.cols());
  require(log_p.rows() >= 1, "mean_kl_divergence: no rows");
  double total = 0.0;
  for (Index i = 0; i < log_p.rows(); ++i)
    for (Index c = 0; c < log_p.cols(); ++c) {
      const double p = std::exp(log_p(i, c));
      if (p > 0.0) total += p * (log_p(i, c) - log_q(i, c));
    }
  return total / static_cast<double>(log_p.rows());
}

// ---- SoftmaxRegression ------------------------------------------------------------------------

SoftmaxRegression::SoftmaxRegression(Index features, Index classes, double l2)
    : features_(features), classes_(classes), l2_(l2) {
  require(features >= 1, "SoftmaxRegression: features must be >= 1, got ", features);
  require(classes >= 2, "SoftmaxRegression: classes must be >= 2, got ", classes);
  check_l2("SoftmaxRegression", l2);
}

void SoftmaxRegression::check(const char* who, const Vector& theta, const Dataset& data) const {
  check_model_data(who, theta, dimension(), data, features_, classes_);
}

Vector SoftmaxRegression::initial_parameters(std::uint64_t seed, double scale) const {
  require(std::isfinite(scale) && scale >= 0.0,
          "SoftmaxRegression::initial_parameters: scale must be finite and >= 0, got ", scale);
  Rng rng(seed);
  Vector theta = Vector::Zero(dimension());
  for (Index j = 0; j < classes_ * features_; ++j) theta[j] = scale * rng.normal();
  return theta;
}

Matrix SoftmaxRegression::logits(const Vector& theta, const Matrix& x) const {
  check_size("SoftmaxRegression::logits", "theta", theta, dimension());
  require<ShapeError>(x.cols() == features_, "SoftmaxRegression::logits: x has ", x.cols(),
                      " columns, the model takes ", features_, " features");
  const ConstMap w(theta.data(), classes_, features_);
  const ConstVecMap b(theta.data() + classes_ * features_, classes_);
  Matrix z = x * w.transpose();
  z.rowwise() += b.transpose();
  return z;
}

Matrix SoftmaxRegression::log_probabilities(const Vector& theta, const Matrix& x) const {
  return log_softmax_rows(logits(theta, x));
}

Vector SoftmaxRegression::label_log_likelihoods(const Vector& theta, const Dataset& data) const {
  check("SoftmaxRegression::label_log_likelihoods", theta, data);
  return label_log_likelihoods_of(log_probabilities(theta, data.x), data.y);
}

double SoftmaxRegression::cross_entropy(const Vector& theta, const Dataset& data) const {
  return -label_log_likelihoods(theta, data).mean();
}

double SoftmaxRegression::loss(const Vector& theta, const Dataset& data) const {
  return cross_entropy(theta, data) + 0.5 * l2_ * theta.squaredNorm();
}

void SoftmaxRegression::gradient(const Vector& theta, const Dataset& data, Vector& g) const {
  loss_and_gradient(theta, data, g);
}

double SoftmaxRegression::loss_and_gradient(const Vector& theta, const Dataset& data,
                                            Vector& g) const {
  check("SoftmaxRegression::loss_and_gradient", theta, data);
  const Matrix logp = log_probabilities(theta, data.x);
  const double n = static_cast<double>(data.size());
  const Matrix d = weighted_residual(logp.array().exp().matrix(), data.y,
                                     Vector::Constant(data.size(), -1.0 / n));
  g.resize(dimension());
  MutMap(g.data(), classes_, features_) = d.transpose() * data.x;
  VecMap(g.data() + classes_ * features_, classes_) = d.colwise().sum().transpose();
  g += l2_ * theta;
  return -label_log_likelihoods_of(logp, data.y).mean() + 0.5 * l2_ * theta.squaredNorm();
}

void SoftmaxRegression::hessian_vector(const Vector& theta, const Dataset& data, const Vector& v,
                                       Vector& out) const {
  const double n = static_cast<double>(data.size());
  weighted_hessian_vector(theta, data, Vector::Constant(data.size(), -1.0 / n), v, out);
  out += l2_ * v;
}

double SoftmaxRegression::accuracy(const Vector& theta, const Dataset& data) const {
  check("SoftmaxRegression::accuracy", theta, data);
  return accuracy_of(logits(theta, data.x), data.y);
}

void SoftmaxRegression::weighted_gradient(const Vector& theta, const Dataset& data,
                                          const Vector& weights, Vector& out) const {
  const char* who = "SoftmaxRegression::weighted_gradient";
  check(who, theta, data);
  check_size(who, "weights", weights, data.size());
  const Matrix d = weighted_residual(softmax_rows(logits(theta, data.x)), data.y, weights);
  out.resize(dimension());
  MutMap(out.data(), classes_, features_) = d.transpose() * data.x;
  VecMap(out.data() + classes_ * features_, classes_) = d.colwise().sum().transpose();
}

Vector SoftmaxRegression::directional_derivatives(const Vector& theta, const Dataset& data,
                                                  const Vector& v) const {
  const char* who = "SoftmaxRegression::directional_derivatives";
  check(who, theta, data);
  check_size(who, "v", v, dimension());
  // The logits are linear in theta: Rz = X V^T + 1 c^T with v = (V, c).
  return label_directional(softmax_rows(logits(theta, data.x)), logits(v, data.x), data.y);
}

void SoftmaxRegression::weighted_hessian_vector(const Vector& theta, const Dataset& data,
                                                const Vector& weights, const Vector& v,
                                                Vector& out) const {
  const char* who = "SoftmaxRegression::weighted_hessian_vector";
  check(who, theta, data);
  check_size(who, "weights", weights, data.size());
  check_size(who, "v", v, dimension());
  const Matrix rd =
      weighted_residual_r(softmax_rows(logits(theta, data.x)), logits(v, data.x), weights);
  out.resize(dimension());
  MutMap(out.data(), classes_, features_) = rd.transpose() * data.x;
  VecMap(out.data() + classes_ * features_, classes_) = rd.colwise().sum().transpose();
}

// ---- Mlp --------------------------------------------------------------------------------------

namespace {

// The forward pass of one hidden layer, kept for the backward and R passes.
struct MlpPass {
  Matrix a;    // n x H pre-activations
  Matrix h;    // n x H activations
  Matrix da;   // n x H  a'(pre-activation)
  Matrix dda;  // n x H  a''(pre-activation)
  Matrix z;    // n x C logits
};

struct MlpView {
  ConstMap u, v;
  ConstVecMap c, e;
  MlpView(const Vector& theta, Index d, Index hdim, Index k)
      : u(theta.data(), hdim, d),
        v(theta.data() + hdim * d + hdim, k, hdim),
        c(theta.data() + hdim * d, hdim),
        e(theta.data() + hdim * d + hdim + k * hdim, k) {}
};

MlpPass mlp_forward(const MlpView& m, const Matrix& x, Activation act, bool derivatives) {
  MlpPass f;
  f.a = x * m.u.transpose();
  f.a.rowwise() += m.c.transpose();
  if (act == Activation::kTanh) {
    f.h = f.a.array().tanh().matrix();
    if (derivatives) {
      f.da = (1.0 - f.h.array().square()).matrix();
      f.dda = (-2.0 * f.h.array() * f.da.array()).matrix();
    }
  } else {
    f.h = f.a.array().max(0.0).matrix();
    if (derivatives) {
      f.da = (f.a.array() > 0.0).cast<double>().matrix();
      f.dda = Matrix::Zero(f.a.rows(), f.a.cols());
    }
  }
  f.z = f.h * m.v.transpose();
  f.z.rowwise() += m.e.transpose();
  return f;
}

}  // namespace

Mlp::Mlp(Index features, Index hidden, Index classes, Activation activation, double l2)
    : features_(features), hidden_(hidden), classes_(classes), activation_(activation), l2_(l2) {
  require(features >= 1, "Mlp: features must be >= 1, got ", features);
  require(hidden >= 1, "Mlp: hidden must be >= 1, got ", hidden);
  require(classes >= 2, "Mlp: classes must be >= 2, got ", classes);
  require(activation == Activation::kTanh || activation == Activation::kRelu,
          "Mlp: unknown activation");
  check_l2("Mlp", l2);
}

void Mlp::check(const char* who, const Vector& theta, const Dataset& data) const {
  check_model_data(who, theta, dimension(), data, features_, classes_);
}

Vector Mlp::initial_parameters(std::uint64_t seed, double scale) const {
  require(std::isfinite(scale) && scale >= 0.0,
          "Mlp::initial_parameters: scale must be finite and >= 0, got ", scale);
  Rng rng(seed);
  Vector theta = Vector::Zero(dimension());
  const double su = scale / std::sqrt(static_cast<double>(features_));
  const double sv = scale / std::sqrt(static_cast<double>(hidden_));
  for (Index j = 0; j < hidden_ * features_; ++j) theta[j] = su * rng.normal();
  const Index v0 = hidden_ * features_ + hidden_;
  for (Index j = 0; j < classes_ * hidden_; ++j) theta[v0 + j] = sv * rng.normal();
  return theta;
}

Matrix Mlp::logits(const Vector& theta, const Matrix& x) const {
  check_size("Mlp::logits", "theta", theta, dimension());
  require<ShapeError>(x.cols() == features_, "Mlp::logits: x has ", x.cols(),
                      " columns, the model takes ", features_, " features");
  return mlp_forward(MlpView(theta, features_, hidden_, classes_), x, activation_, false).z;
}

Matrix Mlp::log_probabilities(const Vector& theta, const Matrix& x) const {
  return log_softmax_rows(logits(theta, x));
}

Vector Mlp::label_log_likelihoods(const Vector& theta, const Dataset& data) const {
  check("Mlp::label_log_likelihoods", theta, data);
  return label_log_likelihoods_of(log_probabilities(theta, data.x), data.y);
}

double Mlp::cross_entropy(const Vector& theta, const Dataset& data) const {
  return -label_log_likelihoods(theta, data).mean();
}

double Mlp::loss(const Vector& theta, const Dataset& data) const {
  return cross_entropy(theta, data) + 0.5 * l2_ * theta.squaredNorm();
}

void Mlp::gradient(const Vector& theta, const Dataset& data, Vector& g) const {
  loss_and_gradient(theta, data, g);
}

double Mlp::loss_and_gradient(const Vector& theta, const Dataset& data, Vector& g) const {
  check("Mlp::loss_and_gradient", theta, data);
  const double n = static_cast<double>(data.size());
  weighted_gradient(theta, data, Vector::Constant(data.size(), -1.0 / n), g);
  g += l2_ * theta;
  return loss(theta, data);
}

void Mlp::hessian_vector(const Vector& theta, const Dataset& data, const Vector& v,
                         Vector& out) const {
  const double n = static_cast<double>(data.size());
  weighted_hessian_vector(theta, data, Vector::Constant(data.size(), -1.0 / n), v, out);
  out += l2_ * v;
}

double Mlp::accuracy(const Vector& theta, const Dataset& data) const {
  check("Mlp::accuracy", theta, data);
  return accuracy_of(logits(theta, data.x), data.y);
}

void Mlp::weighted_gradient(const Vector& theta, const Dataset& data, const Vector& weights,
                            Vector& out) const {
  const char* who = "Mlp::weighted_gradient";
  check(who, theta, data);
  check_size(who, "weights", weights, data.size());
  const MlpView m(theta, features_, hidden_, classes_);
  const MlpPass f = mlp_forward(m, data.x, activation_, true);
  // Backprop of sum_i w_i s_i: dZ = diag(w)(Y - P), dH = dZ V, dA = a'(A) o dH.
  const Matrix dz = weighted_residual(softmax_rows(f.z), data.y, weights);
  const Matrix dpre = (f.da.array() * (dz * m.v).array()).matrix();
  out.resize(dimension());
  const Index h = hidden_, d = features_, k = classes_;
  MutMap(out.data(), h, d) = dpre.transpose() * data.x;
  VecMap(out.data() + h * d, h) = dpre.colwise().sum().transpose();
  MutMap(out.data() + h * d + h, k, h) = dz.transpose() * f.h;
  VecMap(out.data() + h * d + h + k * h, k) = dz.colwise().sum().transpose();
}

Vector Mlp::directional_derivatives(const Vector& theta, const Dataset& data,
                                    const Vector& v) const {
  const char* who = "Mlp::directional_derivatives";
  check(who, theta, data);
  check_size(who, "v", v, dimension());
  const MlpView m(theta, features_, hidden_, classes_);
  const MlpView r(v, features_, hidden_, classes_);
  const MlpPass f = mlp_forward(m, data.x, activation_, true);
  // Forward mode: RA = X RU^T + Rc, RH = a'(A) o RA, RZ = RH V^T + H RV^T + Re.
  Matrix ra = data.x * r.u.transpose();
  ra.rowwise() += r.c.transpose();
  const Matrix rh = (f.da.array() * ra.array()).matrix();
  Matrix rz = rh * m.v.transpose() + f.h * r.v.transpose();
  rz.rowwise() += r.e.transpose();
  return label_directional(softmax_rows(f.z), rz, data.y);
}

void Mlp::weighted_hessian_vector(const Vector& theta, const Dataset& data, const Vector& weights,
                                  const Vector& v, Vector& out) const {
  const char* who = "Mlp::weighted_hessian_vector";
  check(who, theta, data);
  check_size(who, "weights", weights, data.size());
  check_size(who, "v", v, dimension());
  const MlpView m(theta, features_, hidden_, classes_);
  const MlpView r(v, features_, hidden_, classes_);
  const MlpPass f = mlp_forward(m, data.x, activation_, true);
  const Matrix p = softmax_rows(f.z);
  // Forward R pass (as directional_derivatives).
  Matrix ra = data.x * r.u.transpose();
  ra.rowwise() += r.c.transpose();
  const Matrix rh = (f.da.array() * ra.array()).matrix();
  Matrix rz = rh * m.v.transpose() + f.h * r.v.transpose();
  rz.rowwise() += r.e.transpose();
  // Backward pass and its R-image:
  //   dZ = diag(w)(Y - P)             R{dZ} = -diag(w) R{P}
  //   gV = dZ^T H                     R{gV} = R{dZ}^T H + dZ^T RH
  //   dH = dZ V                       R{dH} = R{dZ} V + dZ RV
  //   dA = a'(A) o dH                 R{dA} = a''(A) o RA o dH + a'(A) o R{dH}
  //   gU = dA^T X                     R{gU} = R{dA}^T X      (biases: column sums)
  const Matrix dz = weighted_residual(p, data.y, weights);
  const Matrix rdz = weighted_residual_r(p, rz, weights);
  const Matrix dh = dz * m.v;
  const Matrix rdh = rdz * m.v + dz * r.v;
  const Matrix rdpre =
      (f.dda.array() * ra.array() * dh.array() + f.da.array() * rdh.array()).matrix();
  out.resize(dimension());
  const Index h = hidden_, d = features_, k = classes_;
  MutMap(out.data(), h, d) = rdpre.transpose() * data.x;
  VecMap(out.data() + h * d, h) = rdpre.colwise().sum().transpose();
  MutMap(out.data() + h * d + h, k, h) = rdz.transpose() * f.h + dz.transpose() * rh;
  VecMap(out.data() + h * d + h + k * h, k) = rdz.colwise().sum().transpose();
}

// ---- L-BFGS -----------------------------------------------------------------------------------

FitResult minimize_lbfgs(const std::function<double(const Vector&, Vector&)>& value_and_gradient,
                         Vector start, const FitOptions& options) {
  const char* who = "minimize_lbfgs";
  require(options.max_iterations >= 1, who, ": max_iterations must be >= 1, got ",
          options.max_iterations);
  require(std::isfinite(options.gradient_tolerance) && options.gradient_tolerance > 0.0, who,
          ": gradient_tolerance must be finite and > 0, got ", options.gradient_tolerance);
  require(options.memory >= 1, who, ": memory must be >= 1, got ", options.memory);
  require(start.size() >= 1, who, ": start is empty");
  require(start.allFinite(), who, ": start has a non-finite entry");

  FitResult r;
  r.theta = std::move(start);
  const Index n = r.theta.size();
  Vector g(n);
  r.loss = value_and_gradient(r.theta, g);
  require<NumericalError>(std::isfinite(r.loss) && g.allFinite(), who,
                          ": the value or gradient at the start is not finite");

  struct Pair {
    Vector s, y;
    double rho;
  };
  std::deque<Pair> pairs;
  std::vector<double> alpha;
  Vector trial(n), g_trial(n), d(n);
  bool stopped = false;
  for (int k = 0; k < options.max_iterations; ++k) {
    const double gnorm = g.norm();
    if (gnorm <= options.gradient_tolerance) {
      r.reason = StopReason::kConverged;
      stopped = true;
      break;
    }
    // Two-loop recursion: d = -H_k g.
    d = -g;
    alpha.assign(pairs.size(), 0.0);
    for (std::size_t j = pairs.size(); j-- > 0;) {
      alpha[j] = pairs[j].rho * pairs[j].s.dot(d);
      d -= alpha[j] * pairs[j].y;
    }
    const double gamma = pairs.empty()
                             ? std::min(1.0, 1.0 / gnorm)
                             : pairs.back().s.dot(pairs.back().y) / pairs.back().y.squaredNorm();
    d *= gamma;
    for (std::size_t j = 0; j < pairs.size(); ++j) {
      const double beta = pairs[j].rho * pairs[j].y.dot(d);
      d += (alpha[j] - beta) * pairs[j].s;
    }
    double gd = g.dot(d);
    if (!(gd < 0.0)) {  // not a descent direction: restart from steepest descent
      pairs.clear();
      d = -g * std::min(1.0, 1.0 / gnorm);
      gd = g.dot(d);
    }
    double t = 1.0, f_trial = 0.0;
    bool accepted = false;
    for (int ls = 0; ls < 60; ++ls, t *= 0.5) {
      trial = r.theta + t * d;
      f_trial = value_and_gradient(trial, g_trial);
      if (!std::isfinite(f_trial) || !g_trial.allFinite()) continue;
      const bool armijo = f_trial <= r.loss + 1e-4 * t * gd;
      const double gd_trial = g_trial.dot(d);
      const bool approximate_wolfe = f_trial <= r.loss + 1e-12 * std::abs(r.loss) &&
                                     gd_trial >= 0.9 * gd && gd_trial <= -0.8 * gd;
      if (armijo || approximate_wolfe) {
        accepted = true;
        break;
      }
    }
    if (!accepted) {
      r.reason = StopReason::kNumericalError;
      r.message = detail::concat("line search found no decrease at iteration ", k,
                                 " (|grad| = ", gnorm, ")");
      stopped = true;
      break;
    }
    Pair p{trial - r.theta, g_trial - g, 0.0};
    const double sy = p.s.dot(p.y);
    if (sy > 1e-12 * p.s.norm() * p.y.norm()) {
      p.rho = 1.0 / sy;
      pairs.push_back(std::move(p));
      if (static_cast<int>(pairs.size()) > options.memory) pairs.pop_front();
    }
    r.theta = trial;
    r.loss = f_trial;
    g = g_trial;
    r.iterations = k + 1;
  }
  r.gradient_norm = g.norm();
  if (!stopped) {
    r.reason = r.gradient_norm <= options.gradient_tolerance ? StopReason::kConverged
                                                             : StopReason::kIterationLimit;
  }
  if (r.message.empty())
    r.message = detail::concat(to_string(r.reason), " after ", r.iterations,
                               " iterations, |grad| = ", r.gradient_norm);
  return r;
}

}  // namespace tether::problems
