// The raw-pointer boundary of the retain-subspace projection on the device (cuBLAS; no Eigen
// here). Implemented in retain_kernels.cu; used by retain_projector_device.cpp. Column-major
// throughout; pointers on the host except where named device_.
#pragma once

namespace tether::device::retain_kernels {

/// The projection's data on the device: S (the d entries of the whitening, or nullptr for
/// S = I) and, per block b (rows [offsets[b], offsets[b] + sizes[b])), its sizes[b] x ranks[b]
/// orthonormal basis bases[b] (column-major; ranks[b] may be 0). Host pointers. Throws
/// tether::Error on a CUDA or cuBLAS failure.
struct ResidentRetain;
ResidentRetain* create_retain(long long d, const double* s, int blocks, const long long* offsets,
                              const long long* sizes, const double* const* bases, const int* ranks);
void destroy_retain(ResidentRetain* retain);
/// In place on the m gradients G at device_g (d x m, column-major, device memory):
/// G <- S (Z - Q_b (Q_b^T Z)) on every block b, Z = S G: two dgemm per block, and the pass
/// repeated once more ("twice is enough"), so the result is orthogonal to each Q_b to rounding
/// relative to itself. With `check`, the entries are checked first (on the device): the first
/// non-finite one's index is returned and nothing is changed; else -1. Synchronises.
long long project(const ResidentRetain* retain, double* device_g, long long m, bool check);

}  // namespace tether::device::retain_kernels
