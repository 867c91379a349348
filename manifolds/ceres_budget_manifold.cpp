#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/manifolds/ceres_budget_manifold.hpp>

namespace tether {

namespace {
using RowMajorMap = Eigen::Map<Matrix>;
using ConstRowMajorMap = Eigen::Map<const Matrix>;
}  // namespace

CeresBudgetManifold::CeresBudgetManifold(const Matrix& costs, double budget, double tolerance,
                                         int max_passes)
    : manifold_(
          costs, budget, BudgetSense::kEqual,
          RetractionOptions{.tolerance = tolerance, .max_passes = max_passes, .recentre = false}),
      flat_costs_(Eigen::Map<const Vector>(manifold_.costs().data(), manifold_.costs().size())) {
  require<ShapeError>(costs.size() >= 2 && costs.size() <= std::numeric_limits<int>::max(),
                      "CeresBudgetManifold: N K must lie in [2, INT_MAX], got ", costs.size());
  ambient_ = static_cast<int>(costs.size());
}

bool CeresBudgetManifold::frame(const double* x, Vector& n, Vector& w, double& beta) const {
  const Matrix alpha = ConstRowMajorMap(x, manifold_.groups(), manifold_.options());
  Matrix normal;
  manifold_.normal(alpha, normal);
  n = Eigen::Map<const Vector>(normal.data(), normal.size());
  const double norm = n.norm();
  if (!(norm > 0.0) || !std::isfinite(norm)) return false;
  w = n / norm;
  w[0] += w[0] >= 0.0 ? 1.0 : -1.0;  // |w|^2 = 2 (1 + |u_0|) >= 2: no cancellation
  beta = 2.0 / w.squaredNorm();
  return true;
}

bool CeresBudgetManifold::Plus(const double* x, const double* delta, double* x_plus_delta) const {
  Vector n, w;
  double beta = 0.0;
  if (!frame(x, n, w, beta)) return false;
  const Eigen::Map<const Vector> d(delta, ambient_ - 1);
  // U delta = H [0; delta] = [0; delta] - beta w (w_{1:}^T delta).
  Matrix alpha = ConstRowMajorMap(x, manifold_.groups(), manifold_.options());
  Eigen::Map<Vector> a(alpha.data(), ambient_);
  const double coef = beta * w.tail(ambient_ - 1).dot(d);
  a.tail(ambient_ - 1) += d;
  a -= coef * w;
  const RetractionReport r = manifold_.retract(alpha);
  Eigen::Map<Vector>(x_plus_delta, ambient_) = a;
  return r.converged;
}

bool CeresBudgetManifold::PlusJacobian(const double* x, double* jacobian) const {
  Vector n, w;
  double beta = 0.0;
  if (!frame(x, n, w, beta)) return false;
  // U = columns 1.. of H = I - beta w w^T; row-major AmbientSize x TangentSize.
  const int t = ambient_ - 1;
  Eigen::Map<Matrix> u(jacobian, ambient_, t);
  u = -beta * w * w.tail(t).transpose();
  for (int j = 0; j < t; ++j) u(j + 1, j) += 1.0;
  return true;
}

bool CeresBudgetManifold::Minus(const double* y, const double* x, double* y_minus_x) const {
  Vector n, w;
  double beta = 0.0;
  if (!frame(x, n, w, beta)) return false;
  const double nc = n.dot(flat_costs_);
  if (!(nc > 0.0)) return false;
  const Eigen::Map<const Vector> yv(y, ambient_), xv(x, ambient_);
  Vector v = yv - xv;
  v -= (n.dot(v) / nc) * flat_costs_;  // the part Plus's retraction would add back along c
  // U^T v = (H v)_{1:} = v_{1:} - beta w_{1:} (w^T v).
  Eigen::Map<Vector>(y_minus_x, ambient_ - 1) =
      v.tail(ambient_ - 1) - (beta * w.dot(v)) * w.tail(ambient_ - 1);
  return true;
}

bool CeresBudgetManifold::MinusJacobian(const double* x, double* jacobian) const {
  Vector n, w;
  double beta = 0.0;
  if (!frame(x, n, w, beta)) return false;
  const double nc = n.dot(flat_costs_);
  if (!(nc > 0.0)) return false;
  const int t = ambient_ - 1;
  // P = I - c n^T / <n, c>; U^T P = (H P)_{1:, :} = P_{1:, :} - beta w_{1:} (w^T P).
  Matrix p = Matrix::Identity(ambient_, ambient_) - flat_costs_ * (n.transpose() / nc);
  const Eigen::RowVectorXd wp = w.transpose() * p;
  Eigen::Map<Matrix>(jacobian, t, ambient_) = p.bottomRows(t) - beta * w.tail(t) * wp;
  return true;
}

}  // namespace tether
