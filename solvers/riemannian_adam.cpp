#include <limits>
#include <tether/solvers/assignment_common.hpp>
#include <tether/solvers/riemannian_adam.hpp>

namespace tether {

namespace {
Eigen::Map<Vector> flat(Matrix& m) { return Eigen::Map<Vector>(m.data(), m.size()); }
}  // namespace

RiemannianAdam::RiemannianAdam(const BudgetManifold& manifold, const AdamOptions& options)
    : manifold_(manifold), adam_(options) {}

RiemannianStepReport RiemannianAdam::step(Matrix& alpha, Matrix& gradient, Start start) {
  RiemannianStepReport report;
  if (start == Start::kNewPoint || !normal_is_current_ || normal_.rows() != alpha.rows() ||
      normal_.cols() != alpha.cols())
    manifold_.normal(alpha, normal_);
  normal_is_current_ = true;  // the normal at alpha, whatever happens below
  if (!manifold_.project_with_normal(alpha, normal_, gradient)) {
    report.degenerate = true;
    return report;
  }
  trial_.resize(alpha.rows(), alpha.cols());
  adam_.trial(flat(alpha), flat(gradient), flat(trial_));  // alpha + Adam's step, one pass
  report.retraction = manifold_.retract(trial_);
  // -inf logits are masked options (probability 0); NaN or +inf is a failure: the caller stops.
  if (!report.retraction.converged || assignment::has_nan_or_positive_infinity(trial_))
    return report;
  alpha.swap(trial_);
  // Transport: project the first moment onto the tangent space at the new point. This normal
  // is also the next step's (Start::kLastResult).
  manifold_.normal(alpha, normal_);
  manifold_.project_with_normal(
      alpha, normal_, Eigen::Map<Matrix>(adam_.first_moment().data(), alpha.rows(), alpha.cols()));
  return report;
}

}  // namespace tether
