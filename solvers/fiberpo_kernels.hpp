// The raw-pointer boundary of the gating hierarchy's CUDA kernels (no Eigen here, so nvcc
// compiles only plain C++). Implemented in fiberpo_kernels.cu; used by fiberpo_device.cpp, which
// validates the batch first (GatingHierarchyGate::segments). Pointers are host pointers except
// where named device_.
#pragma once

namespace tether::device::fiberpo_kernels {

/// Gated levels (coarse levels + the trajectory level) the kernels support.
constexpr int kMaxGatedLevels = 16;

/// G of a batch and what its Jacobian products need (GatedRatios' data), held on the device.
struct ResidentGate;

/// The batch's layout, old log-probs and advantages on the device, ready for gate(). Trajectory k
/// is tokens [trajectories[k], trajectories[k + 1]); coarse level l's node offsets over the
/// trajectories are node_offsets[level_starts[l] .. level_starts[l + 1]) (nodes + 1 entries each,
/// coarsest level first). budget_positive/negative hold one (C+, C-) per gated level, the
/// trajectory level last. Host pointers. Throws tether::Error on a CUDA failure or for more than
/// kMaxGatedLevels levels.
ResidentGate* create_gate(const double* old_log_prob, const double* advantage, long long tokens,
                          const long long* trajectories, long long num_trajectories,
                          int coarse_levels, const long long* node_offsets,
                          const long long* level_starts, const double* budget_positive,
                          const double* budget_negative, double eps);
void destroy_gate(ResidentGate* gate);
/// G for the new log-probs at device_new_log_prob (tokens doubles in device memory). With
/// `check`, they are checked on the device first (finite and <= 0): the first entry that fails
/// is returned and nothing is computed; else -1. Synchronises.
long long gate(ResidentGate* gate, const double* device_new_log_prob, bool check);
/// The same for float log-probs (a model's, as stored): each converted exactly to double, so G is
/// the double call's on the converted log-probs, bit for bit.
long long gate(ResidentGate* gate, const float* device_new_log_prob, bool check);
/// G (tokens entries, to the host).
void download_values(const ResidentGate* gate, double* g);
/// out = J v, or J^T v (J = dG/dr; log_space: dG/d log r), v and out device pointers with
/// `tokens` entries. Synchronises.
void jvp(const ResidentGate* gate, const double* device_v, double* device_out, bool log_space);
void vjp(const ResidentGate* gate, const double* device_v, double* device_out, bool log_space);
/// GatingHierarchyGate::evaluate's J = sum_i zeta_i G_i and dJ / d log pi = (dG / d log r)^T zeta
/// into device_gradient (tokens doubles), zeta_i = A_i / (|Tj| T_tau) formed from the batch's
/// advantages (uploaded by create_gate) as they are read; J's trajectory shares are added on the
/// host in trajectory order. Returns J. Synchronises.
double evaluate(const ResidentGate* gate, double* device_gradient);

}  // namespace tether::device::fiberpo_kernels
