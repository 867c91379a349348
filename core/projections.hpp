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
//
// Conventions shared by every set:
//   - project(x) throws ShapeError when x.size() != dimension(). A point already in the set is
//     left unchanged bit for bit by Box, HalfSpace and Ball (they test the defining inequality
//     and touch nothing when it holds); Hyperplane and AffineSubspace move it by rounding only.
//     A NaN entry of x is not clamped away: it stays NaN (or spreads), so the caller's
//     non-finite check still sees it.
//   - contains(x, tol) is true when x is within Euclidean distance tol of the set (Box: every
//     coordinate within tol of its interval, i.e. the max-norm distance). It is false for an x
//     of the wrong size or with a non-finite entry; tol must be >= 0 (InvalidArgumentError).
//   - HalfSpace and Hyperplane work with the unit normal a / |a| and the offset b / |a| (|a| by
//     a scaled norm), so a normal of any finite magnitude works without |a|^2 over- or
//     underflowing; normal() and offset() return the a and b that were given.
//   - AffineSubspace factors A^T = Q R P^T once (column-pivoted Householder QR, Eigen's default
//     rank threshold); the first rank(A) columns of Q are an orthonormal basis Q1 of range(A^T),
//     the minimum-norm solution is x0 = Q1 y with y the least-squares solution of
//     R1^T y = P^T b (R1: the first r rows of R), and P(x) = x - Q1 (Q1^T x - y). b counts as
//     in range(A) when its distance from it, |A x0 - b|, is at most
//     kAffineFeasibilityTolerance * (|A|_F |x0| + |b|); the InfeasibleError names that residual.
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
  Vector unit_normal_;  ///< normal / |normal|
  double unit_offset_;  ///< offset / |normal|
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
  Vector unit_normal_;  ///< normal / |normal|
  double unit_offset_;  ///< offset / |normal|
};

/// Relative tolerance on |A x0 - b| under which AffineSubspace accepts b as in range(A).
inline constexpr double kAffineFeasibilityTolerance = 1e-10;

class AffineSubspace {
 public:
  /// {x : A x = b}; A is l x n of any rank (l = 0 is the whole space). Throws InfeasibleError
  /// if b is not in range(A) (see kAffineFeasibilityTolerance).
  AffineSubspace(const Eigen::MatrixXd& a, Vector b);
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return a_.cols(); }
  /// Numerical rank of A (the columns of the row-space basis).
  Index rank() const { return row_basis_.cols(); }
  const Eigen::MatrixXd& matrix() const { return a_; }
  const Vector& rhs() const { return b_; }

 private:
  Eigen::MatrixXd a_;
  Vector b_;
  Eigen::MatrixXd row_basis_;  ///< Q1: orthonormal basis of range(A^T), n x rank
  Vector coefficients_;        ///< y = Q1^T x0, where x0 = A^+ b is the minimum-norm solution
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
  /// The identity (after the size check every set makes).
  void project(Eigen::Ref<Vector> x) const;
  bool contains(const Vector& x, double tolerance = 0.0) const;
  Index dimension() const { return n_; }

 private:
  Index n_;
};

}  // namespace tether
