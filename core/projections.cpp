#include <Eigen/QR>
#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/projections.hpp>
#include <utility>

namespace tether {

namespace {

void require_size(const char* who, Index got, Index dimension) {
  require<ShapeError>(got == dimension, who, ": x has size ", got, ", the set has dimension ",
                      dimension);
}

void require_tolerance(const char* who, double tolerance) {
  require(tolerance >= 0.0, who, ": tolerance must be >= 0, got ", tolerance);
}

/// Index of the first non-finite entry of v, or -1.
template <class V>
Index first_non_finite(const V& v) {
  for (Index i = 0; i < v.size(); ++i)
    if (!std::isfinite(v.data()[i])) return i;
  return -1;
}

/// Shared by HalfSpace and Hyperplane: checks a and b, returns (a / |a|, b / |a|).
std::pair<Vector, double> unit_normal_and_offset(const char* who, const Vector& normal,
                                                 double offset) {
  const Index bad = first_non_finite(normal);
  require(bad < 0, who, ": normal[", bad, "] = ", bad < 0 ? 0.0 : normal[bad], " must be finite");
  require(std::isfinite(offset), who, ": offset must be finite, got ", offset);
  const double norm = normal.size() == 0 ? 0.0 : normal.stableNorm();
  require(norm > 0.0, who, ": normal must be nonzero (|normal| > 0), got |normal| = ", norm,
          " in dimension ", normal.size());
  require(std::isfinite(norm), who, ": |normal| must be finite, got ", norm);
  const double unit_offset = offset / norm;
  require(std::isfinite(unit_offset), who, ": offset / |normal| must be finite, got ", offset,
          " / ", norm);
  return {normal / norm, unit_offset};
}

}  // namespace

// ---- Box -----------------------------------------------------------------------------------

Box::Box(Vector lower, Vector upper) : lower_(std::move(lower)), upper_(std::move(upper)) {
  require<ShapeError>(lower_.size() == upper_.size(), "Box: lower has size ", lower_.size(),
                      ", upper has size ", upper_.size());
  for (Index i = 0; i < lower_.size(); ++i) {
    require(!std::isnan(lower_[i]), "Box: lower[", i, "] is NaN");
    require(!std::isnan(upper_[i]), "Box: upper[", i, "] is NaN");
    require<InfeasibleError>(lower_[i] <= upper_[i], "Box: lower[", i, "] = ", lower_[i],
                             " > upper[", i, "] = ", upper_[i], " leaves the box empty");
    // [+inf, +inf] or [-inf, -inf] holds no real number.
    require<InfeasibleError>(lower_[i] < std::numeric_limits<double>::infinity(), "Box: lower[", i,
                             "] = +inf leaves the box empty (lower must be < +inf)");
    require<InfeasibleError>(upper_[i] > -std::numeric_limits<double>::infinity(), "Box: upper[", i,
                             "] = -inf leaves the box empty (upper must be > -inf)");
  }
}

Box Box::uniform(Index n, double lower, double upper) {
  require(n >= 0, "Box::uniform: n must be >= 0, got ", n);
  require(!std::isnan(lower) && !std::isnan(upper), "Box::uniform: lower = ", lower,
          ", upper = ", upper, " must not be NaN");
  require<InfeasibleError>(lower <= upper, "Box::uniform: lower = ", lower, " > upper = ", upper,
                           " leaves the box empty");
  return Box(Vector::Constant(n, lower), Vector::Constant(n, upper));
}

void Box::project(Eigen::Ref<Vector> x) const {
  require_size("Box::project", x.size(), dimension());
  // Comparisons rather than std::clamp / cwiseMax: a NaN entry fails both tests and stays NaN.
  for (Index i = 0; i < x.size(); ++i) {
    const double v = x[i];
    x[i] = v < lower_[i] ? lower_[i] : (v > upper_[i] ? upper_[i] : v);
  }
}

bool Box::contains(const Vector& x, double tolerance) const {
  require_tolerance("Box::contains", tolerance);
  if (x.size() != dimension() || first_non_finite(x) >= 0) return false;
  for (Index i = 0; i < x.size(); ++i)
    if (!(x[i] >= lower_[i] - tolerance && x[i] <= upper_[i] + tolerance)) return false;
  return true;
}

// ---- HalfSpace -----------------------------------------------------------------------------

HalfSpace::HalfSpace(Vector normal, double offset) : normal_(std::move(normal)), offset_(offset) {
  std::tie(unit_normal_, unit_offset_) = unit_normal_and_offset("HalfSpace", normal_, offset_);
}

void HalfSpace::project(Eigen::Ref<Vector> x) const {
  require_size("HalfSpace::project", x.size(), dimension());
  const double excess = unit_normal_.dot(x) - unit_offset_;  // signed distance to the boundary
  if (excess > 0.0) x -= excess * unit_normal_;
}

bool HalfSpace::contains(const Vector& x, double tolerance) const {
  require_tolerance("HalfSpace::contains", tolerance);
  if (x.size() != dimension() || first_non_finite(x) >= 0) return false;
  return unit_normal_.dot(x) - unit_offset_ <= tolerance;
}

// ---- Hyperplane ----------------------------------------------------------------------------

Hyperplane::Hyperplane(Vector normal, double offset) : normal_(std::move(normal)), offset_(offset) {
  std::tie(unit_normal_, unit_offset_) = unit_normal_and_offset("Hyperplane", normal_, offset_);
}

void Hyperplane::project(Eigen::Ref<Vector> x) const {
  require_size("Hyperplane::project", x.size(), dimension());
  const double distance = unit_normal_.dot(x) - unit_offset_;
  if (distance != 0.0) x -= distance * unit_normal_;
}

bool Hyperplane::contains(const Vector& x, double tolerance) const {
  require_tolerance("Hyperplane::contains", tolerance);
  if (x.size() != dimension() || first_non_finite(x) >= 0) return false;
  return std::abs(unit_normal_.dot(x) - unit_offset_) <= tolerance;
}

// ---- AffineSubspace ------------------------------------------------------------------------

AffineSubspace::AffineSubspace(const Eigen::MatrixXd& a, Vector b) : a_(a), b_(std::move(b)) {
  require<ShapeError>(b_.size() == a_.rows(), "AffineSubspace: b has size ", b_.size(), ", A has ",
                      a_.rows(), " rows");
  for (Index j = 0; j < a_.cols(); ++j)
    for (Index i = 0; i < a_.rows(); ++i)
      require(std::isfinite(a_(i, j)), "AffineSubspace: A(", i, ", ", j, ") = ", a_(i, j),
              " must be finite");
  const Index bad = first_non_finite(b_);
  require(bad < 0, "AffineSubspace: b[", bad, "] = ", bad < 0 ? 0.0 : b_[bad], " must be finite");

  const Index n = a_.cols(), l = a_.rows();
  Vector x0 = Vector::Zero(n);
  if (n > 0 && l > 0) {
    // A^T P = Q R: the first r columns of Q span range(A^T) = range of the pivoted columns.
    const Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(a_.transpose());
    const Index r = qr.rank();
    row_basis_ = qr.householderQ() * Eigen::MatrixXd::Identity(n, r);
    // x0 = Q1 y with A Q1 = P R^T Q^T Q1 = P R1^T, R1 the first r rows of R (r x l, upper
    // trapezoidal, R11 nonsingular): y is the least-squares solution of R1^T y = P^T b, so x0 is
    // A^+ b, and |A x0 - b| is the distance of b from range(A) (0 when b is in it).
    const Vector pb = qr.colsPermutation().transpose() * b_;
    const Eigen::MatrixXd r1 = qr.matrixR().topRows(r).template triangularView<Eigen::Upper>();
    coefficients_ = r1.transpose().householderQr().solve(pb);
    x0 = row_basis_ * coefficients_;
  } else {
    row_basis_.resize(n, 0);
    coefficients_.resize(0);
  }
  // Checked on A itself, so the rank threshold's dropped directions are checked too.
  const double residual = (a_ * x0 - b_).norm();
  const double scale = a_.norm() * x0.norm() + b_.norm();
  require<InfeasibleError>(residual <= kAffineFeasibilityTolerance * scale,
                           "AffineSubspace: b is not in the range of A (rank ", rank(), " of ", l,
                           " x ", n, "): residual |A x0 - b| = ", residual, " > ",
                           kAffineFeasibilityTolerance,
                           " * (|A| |x0| + |b|) = ", kAffineFeasibilityTolerance * scale);
}

void AffineSubspace::project(Eigen::Ref<Vector> x) const {
  require_size("AffineSubspace::project", x.size(), dimension());
  if (rank() == 0) return;
  // P(x) = x0 + (I - Q1 Q1^T)(x - x0) = x - Q1 (Q1^T x - y), since x0 = Q1 y.
  const Vector excess = row_basis_.transpose() * x - coefficients_;
  x.noalias() -= row_basis_ * excess;
}

bool AffineSubspace::contains(const Vector& x, double tolerance) const {
  require_tolerance("AffineSubspace::contains", tolerance);
  if (x.size() != dimension() || first_non_finite(x) >= 0) return false;
  if (rank() == 0) return true;
  // |x - P(x)| = |Q1 (Q1^T x - y)| = |Q1^T x - y| (Q1 has orthonormal columns).
  return (row_basis_.transpose() * x - coefficients_).norm() <= tolerance;
}

// ---- Ball ----------------------------------------------------------------------------------

Ball::Ball(Vector center, double radius) : center_(std::move(center)), radius_(radius) {
  const Index bad = first_non_finite(center_);
  require(bad < 0, "Ball: center[", bad, "] = ", bad < 0 ? 0.0 : center_[bad], " must be finite");
  require(radius_ >= 0.0 && std::isfinite(radius_), "Ball: radius must be finite and >= 0, got ",
          radius_);
}

void Ball::project(Eigen::Ref<Vector> x) const {
  require_size("Ball::project", x.size(), dimension());
  double distance = (x - center_).norm();
  if (!std::isfinite(distance) && !std::isnan(distance)) {
    distance = (x - center_).stableNorm();  // the plain sum of squares overflowed
  }
  if (distance > radius_) x = center_ + (radius_ / distance) * (x - center_);
}

bool Ball::contains(const Vector& x, double tolerance) const {
  require_tolerance("Ball::contains", tolerance);
  if (x.size() != dimension() || first_non_finite(x) >= 0) return false;
  double distance = (x - center_).norm();
  if (!std::isfinite(distance)) distance = (x - center_).stableNorm();
  return distance <= radius_ + tolerance;
}

// ---- WholeSpace ----------------------------------------------------------------------------

WholeSpace::WholeSpace(Index n) : n_(n) { require(n >= 0, "WholeSpace: n must be >= 0, got ", n); }

void WholeSpace::project(Eigen::Ref<Vector> x) const {
  require_size("WholeSpace::project", x.size(), n_);
}

bool WholeSpace::contains(const Vector& x, double tolerance) const {
  require_tolerance("WholeSpace::contains", tolerance);
  return x.size() == n_ && first_non_finite(x) < 0;
}

}  // namespace tether
