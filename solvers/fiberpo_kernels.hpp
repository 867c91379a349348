// The raw-pointer boundary of the gating hierarchy's CUDA kernels (no Eigen here, so nvcc
// compiles only plain C++). Implemented in fiberpo_kernels.cu; used by fiberpo_device.cpp, which
// validates the batch first (GatingHierarchyGate::segments). All pointers are host pointers.
#pragma once

namespace tether::device::fiberpo_kernels {

/// Gated levels (coarse levels + the trajectory level) the kernels support.
constexpr int kMaxGatedLevels = 16;

/// G of a batch and what its Jacobian products need (GatedRatios' data), held on the device.
struct ResidentGate;

/// Computes G on the device. Trajectory k is tokens [trajectories[k], trajectories[k + 1]);
/// coarse level l's node offsets over the trajectories are
/// node_offsets[level_starts[l] .. level_starts[l + 1]) (nodes + 1 entries each, coarsest level
/// first). budget_positive/negative hold one (C+, C-) per gated level, the trajectory level
/// last. Throws tether::Error on a CUDA failure or for more than kMaxGatedLevels levels.
ResidentGate* create_gate(const double* new_log_prob, const double* old_log_prob,
                          long long tokens, const long long* trajectories,
                          long long num_trajectories, int coarse_levels,
                          const long long* node_offsets, const long long* level_starts,
                          const double* budget_positive, const double* budget_negative,
                          double eps);
void destroy_gate(ResidentGate* gate);
/// G (tokens entries).
void download_values(const ResidentGate* gate, double* g);
/// out = J v, or J^T v (J = dG/dr; log_space: dG/d log r), v and out with `tokens` entries.
void jvp(const ResidentGate* gate, const double* v, double* out, bool log_space);
void vjp(const ResidentGate* gate, const double* v, double* out, bool log_space);

}  // namespace tether::device::fiberpo_kernels
