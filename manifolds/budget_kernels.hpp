// The raw-pointer boundary of the budget manifold's CUDA kernels (no Eigen here, so nvcc
// compiles only plain C++). Implemented in budget_kernels.cu; used by budget_device.cpp.
#pragma once

namespace tether::device::kernels {

/// Number of CUDA devices (0 when the runtime finds none).
int device_count();

/// phi(t) = sum_i E_i and phi'(t) = sum_i Var_i over row-major n x k logits and costs (host
/// pointers), computed on the device. Throws tether::Error on a CUDA failure.
void phi_and_slope(const double* alpha, const double* costs, int n, int k, double t, double* phi,
                   double* slope);

}  // namespace tether::device::kernels
