// A small dense convex quadratic program, solved exactly by the dual active-set method.
//
//   minimise    0.5 x^T P x + q^T x
//   subject to  A x <= b        (m rows, m may be 0)
//               E x  = e        (l rows, optional overload, l may be 0)
//
// P is n x n symmetric positive definite, so the minimiser x* is unique. Its KKT conditions, with
// multipliers lambda (one per row of A) and nu (one per row of E, free sign), are
//
//   P x + q + A^T lambda + E^T nu = 0,   A x <= b,   E x = e,   lambda >= 0,
//   lambda_i (A x - b)_i = 0.
//
// Method: Goldfarb and Idnani, "A numerically stable dual method for solving strictly convex
// quadratic programs", Math. Programming 27 (1983) 1-33; also Nocedal and Wright, Numerical
// Optimization (2nd ed.), section 16.5 (active-set methods) and the dual method's discussion. It
// starts at the unconstrained minimiser x = -P^-1 q (dual feasible: lambda = 0), so it needs no
// feasible start and no phase 1. Each iteration takes the most violated row p of A (largest
// (A x - b)_p / |A_p|), and moves x and the multipliers along the direction that keeps the
// working set W (linearly independent rows held at equality) tight and stationarity exact:
//
//   c = L^-1 a_p,  B = L^-1 A_W^T = Q R  (P = L L^T),  r = R^-1 Q1^T c,  w = c - Q1 Q1^T c,
//   x <- x - t L^-T w,   lambda_W <- lambda_W - t r,   lambda_p <- lambda_p + t.
//
// The full step t2 = (A x - b)_p / |w|^2 makes row p tight (p joins W); the partial step
// t1 = min_{r_j > 0} lambda_j / r_j stops where a multiplier of W reaches 0 (row j leaves W).
// If w = 0 (a_p depends on W: duplicate or dependent rows), r solves a_p = A_W^T r and only the
// dual moves. If w = 0 and no r_j > 0 (r_j <= 0 on the rows of A in W), y = (1 on p, -r on W)
// combines the rows to zero, y^T A = 0; then y^T b < 0 is a Farkas certificate, and
// InfeasibleError names the rows, their weights and y^T b. When y^T b is 0 up to rounding
// (see kDenseQpInfeasibilityTolerance) row p is implied by W at a degenerate vertex, e.g. a tight
// row that is a combination of others, built in floating point: it is left out until a row
// leaves W. Equality rows enter W first, are never dropped, and a dependent equality row whose
// y^T e is 0 up to rounding is skipped as redundant (its nu is 0); otherwise E x = e is
// inconsistent (InfeasibleError).
//
// Termination: a full step strictly increases the dual objective (its length is > 0 because row
// p is violated by more than the tolerance), and after a full step x is the minimiser on W, so no
// working set recurs; between two full steps at most |W| rows are dropped, and a row is marked
// implied at most once between drops. The method therefore stops after finitely many steps even
// on degenerate problems; max_iterations (each add or drop of a row is one iteration) guards
// against rounding. Reaching it returns converged = false with the last iterate, which is dual
// feasible (lambda >= 0, stationarity holds) but may violate rows of A (the row being added keeps
// its partial multiplier); kkt_residual says by how much.
//
// Numerics. The Cholesky factor L is computed once; the QR of L^-1 A_W^T is recomputed each
// iteration (Householder, O(n |W|^2): no drift from rank-one updates at these sizes). Row p
// counts as violated when (A x - b)_p > tolerance * s_p, with s_p its scale as defined at
// dense_qp_kkt_residual. a_p counts as dependent on W when |w| <= kDenseQpDependenceTolerance |c|;
// then r is re-solved from a_p = A_W^T r without L^-1, so that its signs and y^T b do not carry
// the conditioning of P. On convergence the KKT conditions of the final W are re-solved by the
// null-space method, refined from the iterate (A_W^T = Q1 R; x = Q1 R^-T b_W + Q2 y with
// (Q2^T P Q2) y = -Q2^T (P x + q); lambda_W = -R^-1 Q1^T (P x + q)); an LU of the whole KKT
// matrix would let the rounding of A_W^T lambda, large where rows of W are nearly dependent,
// into x. The answer with the smaller kkt_residual is kept. Last, a bound in W (a row with one
// nonzero entry, such as -mu_j <= 0) is made to hold exactly, so the GU dual's mu is >= 0 and
// its active entries are 0, to the bit; other rows of W hold to rounding.
// The objective depends only on the symmetric part (P + P^T) / 2, which is what is factored and
// what the residual uses; a P asymmetric by more than kDenseQpSymmetryTolerance max|P| is
// refused as a likely bug, and so is one whose Cholesky fails or whose reciprocal condition
// estimate is below n * machine epsilon.
//
// Accuracy measured (tests/dense_qp_test.cpp and a 100000-problem sweep, n <= 12, m <= 16,
// cond(P) up to 1e6, rows with duplicates and dependent combinations): kkt_residual <= 1e-14;
// up to cond(P) = 1e12, still <= 1e-13. Cost: about 16 us for n <= 12, m <= 16 (3 iterations on
// average, 25 at most).
//
// Where it is used: the cone variant of GU (specs/projection.md section 1) projects an optimizer
// step D0 onto the cone {D : G^T D <= 0} in the metric H: min 0.5 |D - D0|_H^2 s.t. G^T D <= 0.
// Its dual is an m x m QP in the multipliers mu (m <= ~9 retain covectors):
//
//   minimise 0.5 mu^T (G^T H^-1 G) mu - (G^T D0)^T mu   subject to  -mu <= 0   (A = -I, b = 0),
//
// and D = D0 - H^-1 G mu. P = G^T H^-1 G is positive definite iff G has full column rank.
//
// Example:
//   Eigen::MatrixXd P = Eigen::MatrixXd::Identity(2, 2), A(1, 2);
//   Eigen::VectorXd q(2), b(1);
//   q << -2, -2;  A << 1, 1;  b << 2;
//   tether::DenseQpResult r = tether::solve_dense_qp(P, q, A, b);
//   // r.x = (1, 1), r.multipliers = (1), r.active_set = {0}, r.kkt_residual ~ 1e-16
//
// Errors: shapes that do not agree (ShapeError), NaN / Inf entries, an asymmetric, indefinite
// or numerically singular P, invalid options (InvalidArgumentError), an empty feasible set
// (InfeasibleError, with the certificate). Every message names the argument.
#pragma once

#include <Eigen/Core>
#include <string>
#include <vector>

namespace tether {

/// Relative threshold under which a new row is treated as linearly dependent on the working
/// set: |w| <= this * |L^-1 a_p| (see the header comment).
inline constexpr double kDenseQpDependenceTolerance = 1e-10;
/// A combination y of rows (y >= 0 on rows of A, y^T [A; E] = rho^T ~ 0) proves the rows
/// infeasible when y^T [b; e] < -(|rho|_1 xi + this * sum_i |y_i| s_i), with xi and s_i as at
/// dense_qp_kkt_residual; a smaller contradiction is rounding (about 45 machine epsilons).
inline constexpr double kDenseQpInfeasibilityTolerance = 1e-14;
/// P must satisfy max |P_ij - P_ji| <= this * max |P_ij|.
inline constexpr double kDenseQpSymmetryTolerance = 1e-10;

struct DenseQpOptions {
  /// Cap on the number of working-set changes (adds plus drops); >= 0.
  int max_iterations = 100;
  /// Relative violation under which a row of A counts as satisfied (see the header); in (0, 1).
  double tolerance = 1e-12;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

struct DenseQpResult {
  Eigen::VectorXd x;            ///< the minimiser (the last iterate when !converged)
  Eigen::VectorXd multipliers;  ///< lambda >= 0, one per row of A (0 for rows outside the set)
  /// nu, one per row of E (free sign); empty for the overload without E.
  Eigen::VectorXd equality_multipliers;
  /// Rows of A in the final working set: linearly independent, held at equality, ascending.
  /// Other rows may also be tight at x (duplicates, degenerate rows); their lambda is 0.
  std::vector<int> active_set;
  int iterations = 0;  ///< working-set changes (adds plus drops)
  /// dense_qp_kkt_residual of (x, multipliers, equality_multipliers).
  double kkt_residual = 0.0;
  /// True when no row of A is violated by more than options.tolerance (scaled) within
  /// options.max_iterations; false only at the iteration limit.
  bool converged = false;
};

/// Solves min 0.5 x^T P x + q^T x s.t. A x <= b. A may have 0 rows (then A may also be 0 x 0).
DenseQpResult solve_dense_qp(const Eigen::MatrixXd& P, const Eigen::VectorXd& q,
                             const Eigen::MatrixXd& A, const Eigen::VectorXd& b,
                             const DenseQpOptions& options = {});

/// Solves min 0.5 x^T P x + q^T x s.t. A x <= b, E x = e.
DenseQpResult solve_dense_qp(const Eigen::MatrixXd& P, const Eigen::VectorXd& q,
                             const Eigen::MatrixXd& A, const Eigen::VectorXd& b,
                             const Eigen::MatrixXd& E, const Eigen::VectorXd& e,
                             const DenseQpOptions& options = {});

/// The KKT residual of a candidate (x, lambda): the largest of four scaled measures, each in
/// [0, 1] up to rounding and invariant to scaling the objective (P, q, lambda together) and to
/// scaling any row (A_i, b_i) with lambda_i inversely. With Ps = (P + P^T) / 2,
///   g = Ps x + q + A^T lambda,   G = max_k (sum_j |Ps_kj x_j| + |q_k| + sum_i |A_ik lambda_i|),
///   xi = max(|x|_inf, |q|_inf / |Ps|_inf),   s_i = |A_i|_1 xi + |b_i|,   v = A x - b:
///   stationarity       |g|_inf / G
///   primal violation   max_i max(0, v_i) / s_i
///   dual violation     max_i max(0, -lambda_i) |A_i|_inf / G
///   complementarity    max_i min(|lambda_i| |A_i|_inf / G, |v_i| / s_i)
/// The row scale s_i is normwise in x: a componentwise sum_j |A_ij x_j| would call rounding
/// noise in an x_j that should be 0 (the GU dual's mu_j >= 0, tight) a violation of 100%. xi
/// has the floor |q|_inf / |Ps|_inf (a lower bound on |P^-1 q|_inf) for an x that is all
/// rounding noise; |Ps|_inf is the max row sum (the floor is 0 when Ps = 0). The min in the
/// complementarity is stricter than the scaled product |lambda_i v_i| (both factors are <= 1).
/// A ratio 0 / 0 counts as 0. Returns +infinity when x or lambda has a non-finite entry; throws
/// like solve_dense_qp on bad problem data or shapes (P need not be definite here).
double dense_qp_kkt_residual(const Eigen::MatrixXd& P, const Eigen::VectorXd& q,
                             const Eigen::MatrixXd& A, const Eigen::VectorXd& b,
                             const Eigen::VectorXd& x, const Eigen::VectorXd& lambda);

/// The same with equality rows E x = e and their multipliers nu: E^T nu joins g and G, and
/// |E x - e|_i / (|E_i|_1 xi + |e_i|) joins the primal violation.
double dense_qp_kkt_residual(const Eigen::MatrixXd& P, const Eigen::VectorXd& q,
                             const Eigen::MatrixXd& A, const Eigen::VectorXd& b,
                             const Eigen::MatrixXd& E, const Eigen::VectorXd& e,
                             const Eigen::VectorXd& x, const Eigen::VectorXd& lambda,
                             const Eigen::VectorXd& nu);

}  // namespace tether
