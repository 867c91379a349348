// The forget/retain toys of specs/bilevel.md (sections 3 and 4), each a plain class satisfying
// tether::ForgetRetainProblem with exact gradients, exact Hessian-vector products and its known
// answer:
//
//   B1  l_f = 0.5 (a^T theta - b)^2,       l_r = 0.5 |theta - c|^2       (BLUR, linear level set)
//       argmin l_f is the hyperplane a^T theta = b; the bilevel optimum is the projection of c
//       onto it: theta* = c - a (a^T c - b) / |a|^2.  Defaults a = (1, 1), b = 2, c = (3, 0):
//       theta* = (2.5, -0.5). The weighted-sum baseline g_f + w g_r = 0 stops elsewhere, at
//       theta_w = c - a (a^T c - b) / (|a|^2 + w)   (w = 1: (8/3, -1/3); w = 0.1: (53/21, -10/21)).
//   B2  l_f = 0.25 (|theta|^2 - 1)^2,      l_r = 0.5 |theta - c|^2       (BLUR, curved level set)
//       argmin l_f is the unit sphere; the optimum is c / |c|. Default c = (2, 0): theta* = (1, 0).
//   O1  l_f = -0.5 (a^T theta - b)^2,      l_r = 0.5 |theta - c|^2       (OFMU, beta = 0)
//       OFMU maximises Phi = l_f, so the lower level is again a^T theta = b and the bilevel
//       optimum is B1's. The penalty F_rho = l_r + rho |grad l_f|^2 has the closed-form minimiser
//         theta_rho = c - 2 rho |a|^2 s a,   s = (a^T c - b) / (1 + 2 rho |a|^4),
//       and theta_rho - theta* = a (a^T c - b) / (|a|^2 (1 + 2 rho |a|^4)): an O(1/rho) bias.
//       Defaults as B1: theta_1 = (23/9, -4/9), |theta_rho - theta*| = sqrt(2) / (2 (1 + 8 rho)).
//
//   tether::problems::B1 p;
//   tether::BlurResult r = tether::BlurSolver({.step = tether::SgdOptions{.learning_rate = 0.1}})
//                              .minimize(p, p.start());
//   p.solution_error(r.theta);   // |theta - theta*|
#pragma once

#include <tether/core/types.hpp>

namespace tether::problems {

/// B1: a linear lower-level solution set (a hyperplane) under a quadratic upper level.
class B1 {
 public:
  /// a = (1, 1), b = 2, c = (3, 0).
  B1();
  /// Any a != 0 and c of the same size. Throws ShapeError / InvalidArgumentError otherwise.
  B1(Vector a, double b, Vector c);

  Index dimension() const { return a_.size(); }
  double forget_loss(const Vector& theta) const;
  double retain_loss(const Vector& theta) const;
  void forget_gradient(const Vector& theta, Vector& g) const;
  void retain_gradient(const Vector& theta, Vector& g) const;
  void forget_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const;
  void retain_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const;

  /// theta* = c - a (a^T c - b) / |a|^2.
  const Vector& solution() const { return solution_; }
  double solution_error(const Vector& theta) const { return (theta - solution_).norm(); }
  /// Fixed point of the weighted-sum direction g_f + w g_r (w > 0): c - a (a^T c - b)/(|a|^2 + w).
  Vector weighted_sum_solution(double w) const;
  /// The spec's start, theta0 = 0.
  Vector start() const { return Vector::Zero(dimension()); }

  const Vector& a() const { return a_; }
  double b() const { return b_; }
  const Vector& c() const { return c_; }

 private:
  Vector a_;
  double b_;
  Vector c_;
  Vector solution_;
};

/// B2: the unit sphere as the lower-level solution set (curved), a quadratic upper level.
class B2 {
 public:
  /// c = (2, 0).
  B2();
  /// Any c != 0. Throws InvalidArgumentError for c = 0 (every point of the sphere is optimal).
  explicit B2(Vector c);

  Index dimension() const { return c_.size(); }
  double forget_loss(const Vector& theta) const;
  double retain_loss(const Vector& theta) const;
  void forget_gradient(const Vector& theta, Vector& g) const;
  void retain_gradient(const Vector& theta, Vector& g) const;
  /// H_f = (|theta|^2 - 1) I + 2 theta theta^T.
  void forget_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const;
  void retain_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const;

  /// theta* = c / |c|.
  const Vector& solution() const { return solution_; }
  double solution_error(const Vector& theta) const { return (theta - solution_).norm(); }
  /// The spec's start (0.3, 0.8) for the default c; (0.3, 0.8, 0, ...) in higher dimensions.
  Vector start() const;

  const Vector& c() const { return c_; }

 private:
  Vector c_;
  Vector solution_;
};

/// O1: OFMU's toy with beta = 0; F_rho has a closed-form minimiser for every rho.
class O1 {
 public:
  /// a = (1, 1), b = 2, c = (3, 0).
  O1();
  /// Any a != 0 and c of the same size.
  O1(Vector a, double b, Vector c);

  Index dimension() const { return a_.size(); }
  /// -0.5 (a^T theta - b)^2: OFMU maximises it.
  double forget_loss(const Vector& theta) const;
  double retain_loss(const Vector& theta) const;
  void forget_gradient(const Vector& theta, Vector& g) const;
  void retain_gradient(const Vector& theta, Vector& g) const;
  /// H_f = -a a^T.
  void forget_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const;
  void retain_hessian_vector(const Vector& theta, const Vector& v, Vector& out) const;

  /// The bilevel solution (rho -> infinity): c - a (a^T c - b) / |a|^2.
  const Vector& solution() const { return solution_; }
  double solution_error(const Vector& theta) const { return (theta - solution_).norm(); }
  /// The minimiser of F_rho = l_r + rho |grad l_f|^2 (beta = 0), rho > 0:
  /// c - 2 rho |a|^2 s a, s = (a^T c - b) / (1 + 2 rho |a|^4).
  Vector theta_rho(double rho) const;
  /// theta0 = 0.
  Vector start() const { return Vector::Zero(dimension()); }

  const Vector& a() const { return a_; }
  double b() const { return b_; }
  const Vector& c() const { return c_; }

 private:
  Vector a_;
  double b_;
  Vector c_;
  Vector solution_;
};

}  // namespace tether::problems
