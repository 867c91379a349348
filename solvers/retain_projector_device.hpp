// GU's retain-subspace projection of many gradients at once on a CUDA device (cuBLAS): the
// null-space form of RetainProjector::project_gradient for every column of a d x m matrix,
//   p_j = S (z_j - Q_b Q_b^T z_j) on every block b,   z_j = S g_j,  S = H^(-1/2),
// with the projector's explicit basis (RetainProjector::basis) uploaded once per call and the
// projection done as two dgemm per block, twice (the second pass makes the result orthogonal to
// the basis to rounding relative to itself, however much of g lay in the span). Agrees with
// RetainProjector::project_gradients to rounding. In builds without CUDA, or without a device,
// it throws tether::Error.
#pragma once

#include <tether/solvers/retain_projector.hpp>

namespace tether::device {

/// Column j of the result projects column j of gradients (d x m). InvalidArgumentError unless
/// the projector is in the null-space mode (the sign-selective and cone rules are per-gradient
/// decisions; use RetainProjector::project_gradients); ShapeError when gradients do not have d
/// rows; tether::Error without a device.
Eigen::MatrixXd project_gradients(RetainProjector& projector, const Eigen::MatrixXd& gradients);

}  // namespace tether::device
