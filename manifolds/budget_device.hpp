// The budget manifold's expected cost and its slope, phi(t) = sum_i E_i(alpha_i + t c_i) and
// phi'(t) = sum_i Var_i, computed on a CUDA device with the same per-row code as the CPU path
// (manifolds/budget_row.hpp). Deterministic: per-block partial sums are reduced on the host in
// a fixed order. The first GPU piece of the batched projections (issue 6); in builds without
// CUDA, or on machines without a device, cuda_available() is false and the functions throw.
#pragma once

#include <tether/core/types.hpp>

namespace tether::device {

/// True when tether was built with CUDA and a device is present.
bool cuda_available();

struct PhiAndSlope {
  double phi = 0.0;    ///< sum_i E_i at shift t
  double slope = 0.0;  ///< sum_i Var_i at shift t
};

/// phi(t) and phi'(t) for row-major N x K logits and costs. Throws tether::Error when no device
/// is available, ShapeError on mismatched shapes.
PhiAndSlope expected_cost_and_slope(const Matrix& alpha, const Matrix& costs, double t);

}  // namespace tether::device
