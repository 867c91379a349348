#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/bilevel_toys.hpp>

namespace tether::problems {

namespace {

// T1 and T2 share the lower level f = 0.5 |y1|^2 - x^T y1 + 1^T y2 and the coupling
// g = 1^T x + 1^T y = 0 (C: the hyperplane 1^T (x, y) = 0).
double t12_lower_value(Index n, const Vector& x, const Vector& y) {
  const auto y1 = y.head(n);
  return 0.5 * y1.squaredNorm() - x.dot(y1) + y.tail(n).sum();
}
void t12_lower_gradient(Index n, const Vector& x, const Vector& y, Vector& gx, Vector& gy) {
  gx = -y.head(n);
  gy.head(n) = y.head(n) - x;
  gy.tail(n).setOnes();
}
void t12_constraints(const Vector& x, const Vector& y, Vector& g) { g[0] = x.sum() + y.sum(); }
void t12_adjoint(const Vector& lam, Vector& gx, Vector& gy) {
  gx.setConstant(lam[0]);
  gy.setConstant(lam[0]);
}
void t12_project_joint(Vector& x, Vector& y) {
  // Onto {w : 1^T w = 0}: w - (1^T w / dim) 1.
  const double shift = (x.sum() + y.sum()) / static_cast<double>(x.size() + y.size());
  x.array() -= shift;
  y.array() -= shift;
}
void require_dimension(Index n, const char* name) {
  require(n >= 1, name, ": n must be >= 1, got ", n);
}

}  // namespace

// ---- T1 -------------------------------------------------------------------------------------
T1::T1(Index n) : n_(n) { require_dimension(n, "T1"); }

double T1::upper_value(const Vector& x, const Vector& y) const {
  return 0.5 * (x - y.tail(n_)).squaredNorm() + 0.5 * (y.head(n_).array() - 1.0).square().sum();
}
void T1::upper_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  gx = x - y.tail(n_);
  gy.head(n_) = y.head(n_).array() - 1.0;
  gy.tail(n_) = y.tail(n_) - x;
}
double T1::lower_value(const Vector& x, const Vector& y) const { return t12_lower_value(n_, x, y); }
void T1::lower_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  t12_lower_gradient(n_, x, y, gx, gy);
}
void T1::constraints(const Vector& x, const Vector& y, Vector& g) const {
  t12_constraints(x, y, g);
}
void T1::constraint_adjoint(const Vector&, const Vector&, const Vector& lam, Vector& gx,
                            Vector& gy) const {
  t12_adjoint(lam, gx, gy);
}
void T1::project_joint(Vector& x, Vector& y) const { t12_project_joint(x, y); }
double T1::solution_error(const Vector& x, const Vector&) const {
  return (x.array() + 0.3).matrix().norm() / (0.3 * std::sqrt(static_cast<double>(n_)));
}
Vector T1::solution_x() const { return Vector::Constant(n_, -0.3); }
Vector T1::solution_y() const {
  Vector y(2 * n_);
  y.head(n_).setConstant(0.7);
  y.tail(n_).setConstant(-0.4);
  return y;
}
LvHbaOptions T1::checked_options() {
  LvHbaOptions o = T2::checked_options();
  o.p = 0.45;
  o.max_iterations = 100000;
  return o;
}
LvHbaOptions T1::public_defaults() {
  return {.alpha = 0.008,
          .beta = 0.02,
          .eta = 0.01,
          .gamma1 = 10.0,
          .gamma2 = 10.0,
          .c0 = 0.025,
          .p = 0.3,
          .multiplier_bound = 1000.0,
          .max_iterations = 1500,
          .initial_multiplier = -1.0};
}

// ---- T2 -------------------------------------------------------------------------------------
T2::T2(Index n) : n_(n) { require_dimension(n, "T2"); }

double T2::upper_value(const Vector& x, const Vector& y) const {
  return ((y.head(n_).array() - 2.0) * (x.array() - 1.0)).sum() +
         (y.tail(n_).array() + 3.0).square().sum();
}
void T2::upper_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  gx = y.head(n_).array() - 2.0;
  gy.head(n_) = x.array() - 1.0;
  gy.tail(n_) = 2.0 * (y.tail(n_).array() + 3.0);
}
double T2::lower_value(const Vector& x, const Vector& y) const { return t12_lower_value(n_, x, y); }
void T2::lower_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  t12_lower_gradient(n_, x, y, gx, gy);
}
void T2::constraints(const Vector& x, const Vector& y, Vector& g) const {
  t12_constraints(x, y, g);
}
void T2::constraint_adjoint(const Vector&, const Vector&, const Vector& lam, Vector& gx,
                            Vector& gy) const {
  t12_adjoint(lam, gx, gy);
}
void T2::project_joint(Vector& x, Vector& y) const { t12_project_joint(x, y); }
double T2::solution_error(const Vector& x, const Vector&) const {
  return (x.array() - 1.0).matrix().norm() / std::sqrt(static_cast<double>(n_));
}
Vector T2::solution_y() const {
  Vector y(2 * n_);
  y.head(n_).setConstant(2.0);
  y.tail(n_).setConstant(-3.0);
  return y;
}
LvHbaOptions T2::checked_options() {
  return {.alpha = 5e-3,
          .beta = 2e-3,
          .eta = 3e-2,
          .gamma1 = 10.0,
          .gamma2 = 1.0,
          .c0 = 1.0,
          .p = 0.3,
          .multiplier_bound = 1.0,
          .max_iterations = 20000,
          .initial_multiplier = -1.0};
}

// ---- T3 -------------------------------------------------------------------------------------
double T3::upper_value(const Vector& x, const Vector& y) const {
  return 0.5 * (x[0] - 3.0) * (x[0] - 3.0) + 0.5 * (y[0] - 2.0) * (y[0] - 2.0);
}
void T3::upper_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  gx[0] = x[0] - 3.0;
  gy[0] = y[0] - 2.0;
}
double T3::lower_value(const Vector& x, const Vector& y) const {
  return 0.5 * (y[0] - x[0]) * (y[0] - x[0]);
}
void T3::lower_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  gx[0] = x[0] - y[0];
  gy[0] = y[0] - x[0];
}
void T3::constraints(const Vector& x, const Vector& y, Vector& g) const {
  g[0] = x[0] + y[0] - 2.0;
}
void T3::constraint_adjoint(const Vector&, const Vector&, const Vector& lam, Vector& gx,
                            Vector& gy) const {
  gx[0] = lam[0];
  gy[0] = lam[0];
}
void T3::project_joint(Vector& x, Vector& y) const {
  // Half-space a^T w <= b with a = (1, 1), b = 2: w - max(0, a^T w - b) a / |a|^2.
  const double excess = std::max(0.0, x[0] + y[0] - 2.0) / 2.0;
  x[0] -= excess;
  y[0] -= excess;
}
double T3::solution_error(const Vector& x, const Vector&) const {
  return std::abs(x[0] - 1.5) / 1.5;
}
LvHbaOptions T3::checked_options() {
  return {.alpha = 0.05,
          .beta = 0.05,
          .eta = 0.1,
          .gamma1 = 1.0,
          .gamma2 = 1.0,
          .c0 = 1.0,
          .p = 0.45,
          .multiplier_bound = 10.0,
          .max_iterations = 100000,
          .initial_multiplier = 0.0};
}

// ---- T4 -------------------------------------------------------------------------------------
T4::T4(Index n, Index l, std::uint64_t seed) : n_(n), l_(l) {
  require(n >= 2, "T4: n must be >= 2, got ", n);
  require(l >= 1 && l < n, "T4: l must be in [1, n - 1] = [1, ", n - 1, "], got ", l);
  Rng rng(seed);
  const double scale = 1.0 / std::sqrt(static_cast<double>(n));
  auto draw = [&](Eigen::MatrixXd& m, Index rows, Index cols) {
    m.resize(rows, cols);
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < cols; ++j) m(i, j) = scale * rng.normal();
  };
  draw(a_, l, n);
  draw(h_, l, n);
  c_.resize(n);
  d_.resize(n);
  for (Index i = 0; i < n; ++i) c_[i] = scale * rng.normal();
  for (Index i = 0; i < n; ++i) d_[i] = scale * rng.normal();

  const Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd> cod(a_);
  require(cod.rank() == l, "T4: A is rank deficient (rank ", cod.rank(), " < l = ", l,
          "); try another seed");
  a_pinv_ = cod.pseudoInverse();
  a_plus_h_ = a_ + h_;
  multiplier_ = (a_ * a_.transpose()).ldlt().solve(a_plus_h_);

  // Orthonormal basis of the row space of M = [H A] (l x 2n, full row rank since A is).
  Eigen::MatrixXd mt(2 * n, l);
  mt.topRows(n) = h_.transpose();
  mt.bottomRows(n) = a_.transpose();
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(mt);
  const Eigen::MatrixXd q = qr.householderQ() * Eigen::MatrixXd::Identity(2 * n, l);
  qx_ = q.topRows(n);
  qy_ = q.bottomRows(n);
}

double T4::upper_value(const Vector& x, const Vector& y) const {
  return std::sin(c_.dot(x) + d_.dot(y)) + std::log((x + y).squaredNorm() + 1.0);
}
void T4::upper_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  const double cos_s = std::cos(c_.dot(x) + d_.dot(y));
  const double w = 2.0 / ((x + y).squaredNorm() + 1.0);
  gx = cos_s * c_ + w * (x + y);
  gy = cos_s * d_ + w * (x + y);
}
double T4::lower_value(const Vector& x, const Vector& y) const {
  return 0.5 * (y - x).squaredNorm();
}
void T4::lower_gradient(const Vector& x, const Vector& y, Vector& gx, Vector& gy) const {
  gx = x - y;
  gy = y - x;
}
void T4::constraints(const Vector& x, const Vector& y, Vector& g) const {
  g.noalias() = a_ * y;
  g.noalias() += h_ * x;
}
void T4::constraint_adjoint(const Vector&, const Vector&, const Vector& lam, Vector& gx,
                            Vector& gy) const {
  gx.noalias() = h_.transpose() * lam;
  gy.noalias() = a_.transpose() * lam;
}
void T4::project_joint(Vector& x, Vector& y) const {
  for (Index j = 0; j < l_; ++j) {
    const double t = qx_.col(j).dot(x) + qy_.col(j).dot(y);
    x -= t * qx_.col(j);
    y -= t * qy_.col(j);
  }
}
double T4::solution_error(const Vector& x, const Vector& y) const {
  return (y - lower_solution(x)).norm();
}
Vector T4::lower_solution(const Vector& x) const {
  require<ShapeError>(x.size() == n_, "T4::lower_solution: x has ", x.size(), " entries, n = ", n_);
  return x - a_pinv_ * (a_plus_h_ * x);
}
Vector T4::lower_multiplier(const Vector& x) const {
  require<ShapeError>(x.size() == n_, "T4::lower_multiplier: x has ", x.size(),
                      " entries, n = ", n_);
  return multiplier_ * x;
}
LvHbaOptions T4::checked_options() {
  return {.alpha = 0.02,
          .beta = 0.001,
          .eta = 0.1,
          .gamma1 = 1.0,
          .gamma2 = 1.0,
          .c0 = 1.0,
          .p = 0.3,
          .multiplier_bound = 1000.0,
          .max_iterations = 20000,
          .initial_multiplier = 0.0};
}

}  // namespace tether::problems
