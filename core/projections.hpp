// Euclidean projections onto simple closed convex sets: Proj_S(x) = argmin_{p in S} |p - x|.
//
// Each set satisfies ConvexSet: project(x) overwrites x with its projection, contains(x, tol)
// tests membership to an absolute tolerance, dimension() is the ambient dimension. Every
// projection is exact (closed form or a least-squares solve) and is tested by feasibility,
// idempotence and the variational inequality <x - P(x), s - P(x)> <= 0 for s in S.
//
//   Box          {x : lower <= x <= upper}             (entries may be +-inf)
//   HalfSpace    {x : a^T x <= b}                       P(x) = x - max(0, a^T x - b) a / |a|^2
//   Hyperplane   {x : a^T x = b}                        P(x) = x - (a^T x - b) a / |a|^2
//   AffineSubspace {x : A x = b}, A any shape and rank  P(x) = x - A^+ (A x - b)
//   Ball         {x : |x - center| <= radius}           P(x) = center + (x - c) min(1, r/|x - c|)
//
// Constructors refuse bad sets with a named error: lower > upper (InfeasibleError), a zero or
// non-finite normal, a negative radius, b outside the range of A (InfeasibleError), NaN data.
#pragma once

#include <concepts>
#include <tether/core/types.hpp>

namespace tether {

template <class S>
concept ConvexSet = requires(const S& s, Eigen::Ref<Vector> x, const Vector& y) {
  s.project(x);
  { s.contains(y, 0.0) } -> std::convertible_to<bool>;
  { s.dimension() } -> std::convertible_to<Index>;
};

class Box {
 public:
  Box(Vector lower, Vector upper);
  /// [lower, upper]^n.
  static Box uniform(Index n, double lower, double upper);
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return lower_.size(); }
  const Vector& lower() const { return lower_; }
  const Vector& upper() const { return upper_; }

 private:
  Vector lower_, upper_;
};

class HalfSpace {
 public:
  HalfSpace(Vector normal, double offset);
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return normal_.size(); }
  const Vector& normal() const { return normal_; }
  double offset() const { return offset_; }

 private:
  Vector normal_;
  double offset_;
  double normal_squared_norm_;
};

class Hyperplane {
 public:
  Hyperplane(Vector normal, double offset);
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return normal_.size(); }
  const Vector& normal() const { return normal_; }
  double offset() const { return offset_; }

 private:
  Vector normal_;
  double offset_;
  double normal_squared_norm_;
};

class AffineSubspace {
 public:
  /// {x : A x = b}; A is l x n of any rank. Throws InfeasibleError if b is not in range(A).
  AffineSubspace(const Eigen::MatrixXd& a, Vector b);
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return a_.cols(); }

 private:
  Eigen::MatrixXd a_;
  Vector b_;
  Eigen::MatrixXd row_basis_;  ///< orthonormal basis of range(A^T), n x rank
  Vector particular_;          ///< the minimum-norm solution A^+ b
};

class Ball {
 public:
  Ball(Vector center, double radius);
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return center_.size(); }
  const Vector& center() const { return center_; }
  double radius() const { return radius_; }

 private:
  Vector center_;
  double radius_;
};

/// The whole space R^n: projection is the identity (for problems with an unconstrained block).
class WholeSpace {
 public:
  explicit WholeSpace(Index n);
  void project(Eigen::Ref<Vector>) const {}
  bool contains(const Vector& x, double = 0.0) const { return x.size() == n_; }
  Index dimension() const { return n_; }

 private:
  Index n_;
};

}  // namespace tether
