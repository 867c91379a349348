// The raw-pointer boundary of the retain-subspace projection on the device (cuBLAS; no Eigen
// here). Implemented in retain_kernels.cu; used by retain_projector_device.cpp. Column-major
// throughout, all pointers on the host.
#pragma once

namespace tether::device::retain_kernels {

/// out = S (Z - Q_b (Q_b^T Z)) on every block b, Z = S G, for the m gradients G (d x m, leading
/// dimension d): two dgemm per block, and the pass repeated once more ("twice is enough"), so
/// the result is orthogonal to each Q_b to rounding relative to itself. s: the d entries of S,
/// or nullptr for S = I. Block b is rows [offsets[b], offsets[b] + sizes[b]); bases[b] its
/// sizes[b] x ranks[b] orthonormal basis (column-major; ranks[b] may be 0). Throws
/// tether::Error on a CUDA or cuBLAS failure.
void project_gradients(const double* g, long long d, long long m, const double* s, int blocks,
                       const long long* offsets, const long long* sizes,
                       const double* const* bases, const int* ranks, double* out);

}  // namespace tether::device::retain_kernels
