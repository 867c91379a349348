// The raw-pointer boundary of the retain-subspace projection on the device (no Eigen here).
// Implemented in retain_kernels.cu; used by retain_projector_device.cpp. Column-major throughout;
// pointers on the host except where named device_.
#pragma once

namespace tether::device::retain_kernels {

/// The projection's data on the device: S (the d entries of the whitening, or nullptr for
/// S = I) and, per block b (rows [offsets[b], offsets[b] + sizes[b])), its sizes[b] x ranks[b]
/// orthonormal basis bases[b] (column-major; ranks[b] may be 0). Host pointers. Throws
/// tether::Error on a CUDA failure.
struct ResidentRetain;
ResidentRetain* create_retain(long long d, const double* s, int blocks, const long long* offsets,
                              const long long* sizes, const double* const* bases, const int* ranks);
void destroy_retain(ResidentRetain* retain);
/// In place on the m gradients G at device_g (d x m, column-major, device memory): on every
/// block b, G <- S (Z - Q_b (Q_b^T Z)), Z = S G, the projection repeated for the columns that it
/// shrank below half their norm ("twice is enough": the result is then orthogonal to each Q_b to
/// rounding relative to itself), as RetainProjector::project_explicit does on the CPU; fused
/// sweeps, two reads and one write of G (retain_kernels.cu). The entries are checked on the
/// device in the first sweep: the first non-finite one's index is returned and nothing is
/// changed; else -1. Synchronises.
long long project(const ResidentRetain* retain, double* device_g, long long m);
/// The same for float gradients: read as doubles, every operation in double, each result rounded
/// once to float (the double call's result on the converted gradients, rounded).
long long project(const ResidentRetain* retain, float* device_g, long long m);

}  // namespace tether::device::retain_kernels
