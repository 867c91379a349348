// Riemannian Adam on the budget manifold: the manifold half of one RCO iteration.
//
//   g <- g - (<g, n> / <n, n>) n          tangent projection at alpha
//   alpha <- alpha + Adam(g)              bias-corrected Adam (moments in logit coordinates)
//   alpha <- R(alpha)                     retraction onto C = B (safeguarded Newton)
//   m <- P_{T(alpha)} m                   transport: project the first moment; v is kept
//
// Helcig and Alistarh, arXiv 2605.00649, Algorithm 1. Used by RcoSolver and timed on its own by
// BM_RcoStepOverhead (one step without the loss).
#pragma once

#include <tether/core/adam.hpp>
#include <tether/manifolds/budget_manifold.hpp>

namespace tether {

struct RiemannianStepReport {
  bool degenerate = false;  ///< the normal vanished: nothing was changed
  RetractionReport retraction;
};

class RiemannianAdam {
 public:
  RiemannianAdam(const BudgetManifold& manifold, const AdamOptions& options);

  /// Where a step starts. kLastResult promises that alpha is exactly what the previous step
  /// returned (or left unchanged): the normal computed there for the transport is reused, which
  /// saves one pass over the data per step. Same numbers either way.
  enum class Start { kNewPoint, kLastResult };

  /// One step from alpha with Euclidean gradient g (both N x K). g is projected in place; alpha
  /// is replaced by the retracted point unless the step is degenerate or the retraction fails
  /// (then alpha is left unchanged, the report says why, and the caller should stop).
  RiemannianStepReport step(Matrix& alpha, Matrix& gradient, Start start = Start::kNewPoint);

  const Adam& adam() const { return adam_; }

 private:
  const BudgetManifold& manifold_;
  Adam adam_;
  Matrix normal_, trial_;
  bool normal_is_current_ = false;  // normal_ is the normal at the alpha last returned
};

}  // namespace tether
