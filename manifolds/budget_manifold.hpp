// The budget manifold in softmax-logit space (Helcig and Alistarh, "Model Compression with
// Exact Budget Constraints via Riemannian Manifolds", arXiv 2605.00649, section 3).
//
// Logits alpha (N x K), p_i = softmax(alpha_i), expected cost C(alpha) = sum_ik c_ik p_ik.
//   M = { alpha : C(alpha) = B }                      (one budget), or
//   M = { alpha : C_b(alpha) = B_b for every block b }  (one budget per block of rows).
// With BudgetSense::kAtMost the set is C <= B and the boundary rules apply only where active.
//
//   normal      n_ik = p_ik (c_ik - E_i),  E_i = sum_k p_ik c_ik       (dC/dalpha, closed form)
//   projection  v <- v - (<v, n> / <n, n>) n                          (per block)
//   retraction  alpha_ik <- alpha_ik + t c_ik with one scalar t per block, solving
//               phi(t) = C(alpha + t c) = B. phi is nondecreasing: phi'(t) = sum_i
//               Var_{p_i(t)}(c_i). tether uses a safeguarded Newton iteration (phi' comes from the
//               same pass) with a bracket and bisection fallback, to |C - B| <= 1e-12 max(1, |B|)
//               by default. The reference bisects to 1e-4 in up to 100 passes; this needs a
//               handful. Every pass after the first also moves alpha to the shift it measures
//               (so the last pass is the move), and the residual reported is that of the
//               returned alpha, bit for bit.
//   transport   project the vector onto the tangent space at the new point (Riemannian Adam
//               transports its first moment this way; the second moment is left as it is).
// Invariants (tested): the normal equals the finite-difference gradient of C; projection is
// idempotent and self-adjoint; a tangent step of size e changes C by O(e^2); retraction lands
// on M; a transported vector is tangent.
//
// Numerics: rows are recentred (max subtracted) after a retraction, so logits never overflow;
// where <n, n> underflows (every row one-hot) the manifold is degenerate: project() says so.
//
//   tether::BudgetManifold m(costs, /*budget=*/2.5);
//   tether::RetractionReport r = m.retract(alpha);   // alpha now has C(alpha) = 2.5
//   m.project(alpha, gradient);                      // gradient now tangent at alpha
#pragma once

#include <tether/core/concepts.hpp>
#include <tether/core/types.hpp>
#include <vector>

namespace tether {

struct RetractionOptions {
  double tolerance = 1e-12;  ///< stop when |C - B| <= tolerance * max(1, |B|)
  int max_passes = 100;      ///< passes over the data before giving up (reported, never looped)
  bool recentre = true;      ///< subtract each row's maximum after the shift
};

struct RetractionReport {
  int passes = 0;               ///< passes over the data (max over blocks)
  double max_abs_residual = 0;  ///< max over blocks of |C_b - B_b| after the retraction
  bool converged = false;       ///< every block met the tolerance
  bool saturated = false;       ///< some block's bracket collapsed before reaching B (B unreachable
                                ///< in floating point)
  std::vector<double> shifts;   ///< t per block
  std::vector<double> residuals;  ///< C_b - B_b per block after the retraction (from its last
                                  ///< pass: no extra pass needed to report it)
};

class BudgetManifold {
 public:
  /// One budget over all rows. Equality: B must lie strictly inside (sum of row minima, sum of
  /// row maxima), else InfeasibleError naming the range (the end points are single assignments
  /// at infinite logits, not a manifold). At most: B > sum of row minima.
  BudgetManifold(const Matrix& costs, double budget, BudgetSense sense = BudgetSense::kEqual,
                 const RetractionOptions& options = {});
  /// One budget per block of rows: block b is rows [block_starts[b], block_starts[b+1]) (the
  /// last ends at N); block_starts[0] must be 0 and the starts strictly increasing.
  BudgetManifold(const Matrix& costs, const std::vector<Index>& block_starts, const Vector& budgets,
                 BudgetSense sense = BudgetSense::kEqual, const RetractionOptions& options = {});

  Index groups() const { return costs_.rows(); }
  Index options() const { return costs_.cols(); }
  Index blocks() const { return static_cast<Index>(budgets_.size()); }
  const Matrix& costs() const { return costs_; }
  const Vector& budgets() const { return budgets_; }
  BudgetSense sense() const { return sense_; }

  /// C_b(alpha) per block.
  Vector expected_cost(const Matrix& alpha) const;
  /// C_b(alpha) - B_b per block.
  Vector residual(const Matrix& alpha) const;
  /// Normal of every block (blocks have disjoint rows, so one N x K matrix holds them all).
  void normal(const Matrix& alpha, Matrix& n) const;
  /// Projects v onto the tangent space at alpha, in place (only active blocks for kAtMost).
  /// Returns false, leaving v unchanged, if some active block's normal vanishes (degenerate).
  bool project(const Matrix& alpha, MatrixRef v) const;
  /// Same with the normal already computed by normal(alpha, n).
  bool project_with_normal(const Matrix& alpha, const Matrix& n, MatrixRef v) const;
  /// Moves alpha onto M (onto the boundary for an active kAtMost block), in place.
  RetractionReport retract(Matrix& alpha) const;
  /// Vector transport to the tangent space at alpha (projection).
  bool transport(const Matrix& alpha, MatrixRef v) const { return project(alpha, v); }
  /// Whether block b's constraint is active at alpha (always for kEqual).
  bool active(const Matrix& alpha, Index block) const;
  /// Block b holds rows [block_begin(b), block_end(b)).
  Index block_begin(Index b) const { return starts_[static_cast<std::size_t>(b)]; }
  Index block_end(Index b) const { return starts_[static_cast<std::size_t>(b) + 1]; }

 private:
  void check_shape(Index rows, Index cols, const char* name) const;
  double tolerance(Index b) const;

  Matrix costs_;
  std::vector<Index> starts_;  // blocks() + 1 entries, last = N
  Vector budgets_;
  BudgetSense sense_;
  RetractionOptions options_;
};

}  // namespace tether
