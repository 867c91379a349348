// Several budgets at once on softmax logits (spec rco.md section 2, "Several budgets at once";
// beyond Helcig and Alistarh, arXiv 2605.00649, which holds one).
//
// Logits alpha (N x K), p_i = softmax(alpha_i). m cost matrices c^(1..m) (each N x K, >= 0) and
// targets B_1..B_m, e.g. memory and latency together:
//   C_j(alpha) = sum_ik c^(j)_ik p_ik,     M = { alpha : C_j(alpha) = B_j for j = 1..m }.
//
//   normals     n^(j)_ik = p_ik (c^(j)_ik - E^(j)_i),  E^(j)_i = sum_k p_ik c^(j)_ik
//               (n^(j) = dC_j / dalpha)
//   projection  v <- v - sum_j lambda_j n^(j),  G lambda = b,  G_jl = <n^(j), n^(l)>,
//               b_j = <n^(j), v>. G is factored by LDLT; where it is (numerically) rank deficient
//               (linearly dependent normals) tether solves (G + delta tr(G) I) lambda = b with a
//               tiny delta and refines the solution, and says so in the ProjectionReport.
//   retraction  alpha <- alpha + sum_j t_j c^(j), solving F_j(t) = C_j(alpha + sum_l t_l c^(l))
//               - B_j = 0 for t in R^m by damped Newton. The Jacobian is the covariance matrix
//                 J_jl(t) = sum_i Cov_{p_i(t)}(c^(j)_i, c^(l)_i),
//               symmetric positive semi-definite: F is the gradient of the convex potential
//                 Psi(t) = sum_i logsumexp(alpha_i + sum_j t_j c^(j)_i) - <B, t>,
//               so the root, where it exists, is Psi's minimiser, and the Newton direction
//               d = -J^{-1} F is a descent direction of Psi. Each step is capped to a change of
//               at most a few logits in any row's spread (the cap doubles while capped steps
//               succeed) and backtracked until Psi decreases (Armijo) or the scaled residual
//               norm |F_j| / max(1, |B_j|) does: far from the root, where rows are saturated,
//               J F ~ 0 and the residual norm alone stalls while Psi still descends; near it,
//               Psi's decrease is below its round-off and the residual norm decides. Stops when
//               |F_j| <= tolerance max(1, |B_j|) for every j (1e-12 by default; one more
//               Newton step is then taken and kept if it helps, as BudgetManifold does), after
//               max_passes passes over the data, or when no step is accepted.
//   transport   projection onto the tangent space at the new point (Adam's first moment).
// Invariants (tested in tests/multi_budget_manifold_test.cpp, with the same battery as the
// single-budget manifold): every normal equals the finite-difference gradient of its C_j; the
// projection is idempotent, self-adjoint and orthogonal to every normal; a tangent step of size
// e changes every C_j by O(e^2); the retraction lands on M; a transported vector is tangent.
// With m = 1 the retraction agrees with BudgetManifold's.
//
// Feasibility: each B_j is checked against its own range (strictly inside (sum of row minima,
// sum of row maxima) of c^(j); InfeasibleError otherwise). Whether the m budgets can hold at
// the same time is not checkable cheaply (it is a question about the moment polytope of the
// product of simplices); a jointly infeasible set of budgets shows up as a retraction that does
// not converge (converged = false: stalled = true where no step is accepted; otherwise Psi is
// unbounded below, t runs off along the direction that separates B from the attainable set,
// and max_passes ends it), never as a loop or a NaN.
// Only equality budgets (C_j = B_j); for one budget per block of rows use BudgetManifold, whose
// blocks cost one scalar each.
//
//   tether::Vector targets(2);
//   targets << 3.0, 1.5;
//   tether::MultiBudgetManifold m({memory, latency}, targets);
//   tether::MultiRetractionReport r = m.retract(alpha);  // C_memory = 3, C_latency = 1.5
//   m.project(alpha, gradient);                         // gradient now tangent at alpha
#pragma once

#include <tether/core/types.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <vector>

namespace tether {

struct ProjectionReport {
  bool ok = false;           ///< false: every normal vanishes (rows one-hot), v left unchanged
  Index rank = 0;            ///< numerical rank of the Gram matrix G (m when the normals are
                             ///< linearly independent)
  bool regularised = false;  ///< rank < m: solved with G + delta tr(G) I and refinement
  explicit operator bool() const { return ok; }
};

struct MultiRetractionReport {
  int passes = 0;               ///< passes over the data (each evaluates all C_j and J; the step
                                ///< cap reads the costs once per Newton step, without exp)
  Vector residual;              ///< C_j - B_j after the retraction
  double max_abs_residual = 0;  ///< max_j |C_j - B_j|
  bool converged = false;       ///< |C_j - B_j| <= tolerance max(1, |B_j|) for every j
  bool stalled = false;         ///< no step along the Newton direction was accepted: the
                                ///< budgets are (numerically) jointly infeasible from here
  bool rank_deficient = false;  ///< J was singular at some iterate and was regularised
  Vector shifts;                ///< t_j: alpha moved by sum_j t_j c^(j)
};

class MultiBudgetManifold {
 public:
  /// m = costs.size() >= 1 budgets over all rows: costs[j] is N x K (the same shape for every j),
  /// finite and >= 0; budgets[j] lies strictly inside (sum of row minima, sum of row maxima) of
  /// costs[j]. Throws ShapeError / InvalidArgumentError / InfeasibleError naming j and the bound.
  MultiBudgetManifold(const std::vector<Matrix>& costs, const Vector& budgets,
                      const RetractionOptions& options = {});

  Index groups() const { return n_; }
  Index options() const { return k_; }
  Index budget_count() const { return budgets_.size(); }
  /// Cost matrix c^(j) (N x K).
  Matrix costs(Index j) const;
  const Vector& budgets() const { return budgets_; }

  /// C_j(alpha) for every j.
  Vector expected_cost(const Matrix& alpha) const;
  /// C_j(alpha) - B_j for every j.
  Vector residual(const Matrix& alpha) const;
  /// Normal n^(j) of budget j at alpha (N x K).
  void normal(const Matrix& alpha, Index j, Matrix& n) const;
  /// All m normals in one pass (n[j] = n^(j)).
  void normals(const Matrix& alpha, std::vector<Matrix>& n) const;
  /// Projects v onto the tangent space at alpha (orthogonal complement of the m normals), in
  /// place. Converts to false (v unchanged) where every normal vanishes.
  ProjectionReport project(const Matrix& alpha, MatrixRef v) const;
  /// Same with the normals already computed by normals(alpha, n).
  ProjectionReport project_with_normals(const std::vector<Matrix>& n, MatrixRef v) const;
  /// Moves alpha onto M, in place: alpha += sum_j t_j c^(j) (then recentres rows if asked).
  MultiRetractionReport retract(Matrix& alpha) const;
  /// Vector transport to the tangent space at alpha (projection).
  ProjectionReport transport(const Matrix& alpha, MatrixRef v) const { return project(alpha, v); }

 private:
  void check_shape(Index rows, Index cols, const char* name) const;
  double scale(Index j) const;
  /// One pass at alpha + sum_l t_l c^(l): C_j into c and, unless jacobian is null, J into it.
  /// Returns sum_i logsumexp(alpha_i + sum_l t_l c^(l)_i) (the potential without -<B, t>);
  /// `magnitude`, if given, receives sum_i |logsumexp_i| (the scale of its round-off).
  double evaluate(const Matrix& alpha, const Vector* t, Vector& c, Matrix* jacobian,
                  double* magnitude = nullptr) const;

  Index n_ = 0, k_ = 0;
  Matrix stacked_;  // m N x K: rows [j N, (j + 1) N) hold c^(j)
  Vector budgets_;
  RetractionOptions options_;
};

}  // namespace tether
