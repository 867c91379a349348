#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/problems/unlearning_toys.hpp>
#include <utility>

namespace tether::problems {

namespace {

Vector vec2(double x, double y) {
  Vector v(2);
  v << x, y;
  return v;
}

// Shared checks of the (a, b, c) toys; returns the projection of c onto a^T theta = b.
Vector check_and_project(const char* who, const Vector& a, double b, const Vector& c) {
  require<ShapeError>(a.size() == c.size(), who, ": a has size ", a.size(), ", c has size ",
                      c.size());
  require(a.size() >= 1, who, ": the dimension must be >= 1");
  require(a.allFinite() && c.allFinite() && std::isfinite(b), who, ": a, b and c must be finite");
  const double a2 = a.squaredNorm();
  require(a2 > 0.0, who, ": a must be nonzero (|a|^2 = 0 leaves no lower-level solution set)");
  return c - a * ((a.dot(c) - b) / a2);
}

}  // namespace

// ---- B1 ---------------------------------------------------------------------------------------

B1::B1() : B1(vec2(1.0, 1.0), 2.0, vec2(3.0, 0.0)) {}

B1::B1(Vector a, double b, Vector c) : a_(std::move(a)), b_(b), c_(std::move(c)) {
  solution_ = check_and_project("B1", a_, b_, c_);
}

double B1::forget_loss(const Vector& theta) const {
  const double r = a_.dot(theta) - b_;
  return 0.5 * r * r;
}

double B1::retain_loss(const Vector& theta) const { return 0.5 * (theta - c_).squaredNorm(); }

void B1::forget_gradient(const Vector& theta, Vector& g) const { g = a_ * (a_.dot(theta) - b_); }

void B1::retain_gradient(const Vector& theta, Vector& g) const { g = theta - c_; }

void B1::forget_hessian_vector(const Vector&, const Vector& v, Vector& out) const {
  out = a_ * a_.dot(v);
}

void B1::retain_hessian_vector(const Vector&, const Vector& v, Vector& out) const { out = v; }

Vector B1::weighted_sum_solution(double w) const {
  require(w > 0.0 && std::isfinite(w), "B1::weighted_sum_solution: w must be finite and > 0, got ",
          w);
  // a (a^T theta - b) + w (theta - c) = 0: theta = c - a r / w with r = w (a^T c - b)/(w + |a|^2).
  return c_ - a_ * ((a_.dot(c_) - b_) / (a_.squaredNorm() + w));
}

// ---- B2 ---------------------------------------------------------------------------------------

B2::B2() : B2(vec2(2.0, 0.0)) {}

B2::B2(Vector c) : c_(std::move(c)) {
  require(c_.size() >= 1, "B2: the dimension must be >= 1");
  require(c_.allFinite(), "B2: c must be finite");
  const double n = c_.norm();
  require(n > 0.0, "B2: c must be nonzero (every point of the sphere would be optimal)");
  solution_ = c_ / n;
}

double B2::forget_loss(const Vector& theta) const {
  const double s = theta.squaredNorm() - 1.0;
  return 0.25 * s * s;
}

double B2::retain_loss(const Vector& theta) const { return 0.5 * (theta - c_).squaredNorm(); }

void B2::forget_gradient(const Vector& theta, Vector& g) const {
  g = (theta.squaredNorm() - 1.0) * theta;
}

void B2::retain_gradient(const Vector& theta, Vector& g) const { g = theta - c_; }

void B2::forget_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const {
  out = (theta.squaredNorm() - 1.0) * v + (2.0 * theta.dot(v)) * theta;
}

void B2::retain_hessian_vector(const Vector&, const Vector& v, Vector& out) const { out = v; }

Vector B2::start() const {
  Vector s = Vector::Zero(dimension());
  s[0] = 0.3;
  if (dimension() >= 2) s[1] = 0.8;
  return s;
}

// ---- O1 ---------------------------------------------------------------------------------------

O1::O1() : O1(vec2(1.0, 1.0), 2.0, vec2(3.0, 0.0)) {}

O1::O1(Vector a, double b, Vector c) : a_(std::move(a)), b_(b), c_(std::move(c)) {
  solution_ = check_and_project("O1", a_, b_, c_);
}

double O1::forget_loss(const Vector& theta) const {
  const double r = a_.dot(theta) - b_;
  return -0.5 * r * r;
}

double O1::retain_loss(const Vector& theta) const { return 0.5 * (theta - c_).squaredNorm(); }

void O1::forget_gradient(const Vector& theta, Vector& g) const { g = -a_ * (a_.dot(theta) - b_); }

void O1::retain_gradient(const Vector& theta, Vector& g) const { g = theta - c_; }

void O1::forget_hessian_vector(const Vector&, const Vector& v, Vector& out) const {
  out = -a_ * a_.dot(v);
}

void O1::retain_hessian_vector(const Vector&, const Vector& v, Vector& out) const { out = v; }

Vector O1::theta_rho(double rho) const {
  require(rho > 0.0 && std::isfinite(rho), "O1::theta_rho: rho must be finite and > 0, got ", rho);
  // grad F_rho = (theta - c) + 2 rho |a|^2 r a with r = a^T theta - b; setting it to 0 gives
  // r = (a^T c - b) / (1 + 2 rho |a|^4) = s and theta = c - 2 rho |a|^2 s a.
  const double a2 = a_.squaredNorm();
  const double s = (a_.dot(c_) - b_) / (1.0 + 2.0 * rho * a2 * a2);
  return c_ - (2.0 * rho * a2 * s) * a_;
}

}  // namespace tether::problems
