// CUDA kernels of the gating hierarchy's G: the segmented passes of GatingHierarchyGate, one
// thread per segment (trajectory or node), calling the same per-segment functions as the CPU
// gate (solvers/fiberpo_segments.hpp). A first slice: a warp per long trajectory, reading its
// tokens coalesced, is the next step.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <tether/core/cuda_support.cuh>
#include <tether/solvers/fiberpo_kernels.hpp>
#include <tether/solvers/fiberpo_segments.hpp>
#include <vector>

namespace tether::device::fiberpo_kernels {

namespace {

namespace seg = fiberpo_segments;
using cuda::check;
using cuda::DeviceBuffer;

constexpr int kThreads = 128;

unsigned blocks_for(long long n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void trajectory_means_kernel(const double* new_log_prob, const double* old_log_prob,
                                        const long long* trajectories, long long count,
                                        double* a_positive, double* a_negative) {
  const long long k = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= count) return;
  const seg::SignedMeans a =
      seg::trajectory_means(new_log_prob, old_log_prob, trajectories[k], trajectories[k + 1]);
  a_positive[k] = a.positive;
  a_negative[k] = a.negative;
}

// One level's nodes: offsets (nodes + 1 entries) over the trajectories; outputs per node.
__global__ void node_means_kernel(const double* a_positive, const double* a_negative,
                                 const long long* trajectories, const long long* offsets,
                                 long long nodes, double* node_positive, double* node_negative,
                                 double* node_tokens) {
  const long long m = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= nodes) return;
  const seg::SignedMeans a = seg::node_means(a_positive, a_negative, offsets[m], offsets[m + 1]);
  node_positive[m] = a.positive;
  node_negative[m] = a.negative;
  node_tokens[m] = static_cast<double>(trajectories[offsets[m + 1]] - trajectories[offsets[m]]);
}

// Per trajectory: its node at every coarse level (binary search in the level's offsets), the
// chain walk, the fiber constants, then G over its tokens.
__global__ void gate_kernel(const double* new_log_prob, const double* old_log_prob,
                            const long long* trajectories, long long count, int coarse_levels,
                            const long long* node_offsets, const long long* level_starts,
                            const double* node_positive, const double* node_negative,
                            const double* node_tokens, const double* a_positive,
                            const double* a_negative, const double* budget_positive,
                            const double* budget_negative, double eps, double* g) {
  const long long k = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= count) return;
  seg::ChainLevel chain[kMaxGatedLevels];
  double gamma_positive[kMaxGatedLevels], gamma_negative[kMaxGatedLevels];
  for (int l = 0; l < coarse_levels; ++l) {
    const long long* offsets = node_offsets + level_starts[l];
    long long lo = 0, hi = level_starts[l + 1] - level_starts[l] - 2;  // nodes - 1
    while (lo < hi) {  // the last node m with offsets[m] <= k
      const long long mid = (lo + hi + 1) / 2;
      if (offsets[mid] <= k)
        lo = mid;
      else
        hi = mid - 1;
    }
    const long long node = level_starts[l] + lo;
    chain[l] = {node_positive[node], node_negative[node], node_tokens[node], budget_positive[l],
                budget_negative[l]};
  }
  const long long begin = trajectories[k], end = trajectories[k + 1];
  chain[coarse_levels] = {a_positive[k], a_negative[k], static_cast<double>(end - begin),
                          budget_positive[coarse_levels], budget_negative[coarse_levels]};
  const seg::Chain walk =
      seg::trajectory_chain(chain, coarse_levels + 1, gamma_positive, gamma_negative);
  const seg::FiberConstants f =
      seg::fiber_constants(a_positive[k], a_negative[k], walk.log_weight, eps);
  for (long long i = begin; i < end; ++i) {
    double ratio = 0.0;
    std::uint8_t flags = 0;
    g[i] = seg::fiber_gate(new_log_prob[i] - old_log_prob[i], f, eps, &ratio, &flags);
  }
}

}  // namespace

void gated_values(const double* new_log_prob, const double* old_log_prob, long long tokens,
                  const long long* trajectories, long long num_trajectories, int coarse_levels,
                  const long long* node_offsets, const long long* level_starts,
                  const double* budget_positive, const double* budget_negative, double eps,
                  double* g) {
  if (coarse_levels + 1 > kMaxGatedLevels)
    throw Error("device gated_values: at most " + std::to_string(kMaxGatedLevels) +
                " gated levels on the device");
  const long long offset_entries = level_starts[coarse_levels];
  const std::size_t n = static_cast<std::size_t>(tokens);
  const std::size_t t = static_cast<std::size_t>(num_trajectories);
  const DeviceBuffer d_new = cuda::upload(new_log_prob, n, "copy new_log_prob");
  const DeviceBuffer d_old = cuda::upload(old_log_prob, n, "copy old_log_prob");
  const DeviceBuffer d_traj = cuda::upload(trajectories, t + 1, "copy trajectories");
  const DeviceBuffer d_offsets =
      cuda::upload(node_offsets, static_cast<std::size_t>(offset_entries), "copy node offsets");
  const DeviceBuffer d_starts = cuda::upload(
      level_starts, static_cast<std::size_t>(coarse_levels) + 1, "copy level starts");
  const DeviceBuffer d_bp = cuda::upload(budget_positive,
                                         static_cast<std::size_t>(coarse_levels) + 1, "budgets");
  const DeviceBuffer d_bn = cuda::upload(budget_negative,
                                         static_cast<std::size_t>(coarse_levels) + 1, "budgets");
  DeviceBuffer d_ap(sizeof(double) * t), d_an(sizeof(double) * t), d_g(sizeof(double) * n);
  // Node arrays share node_offsets' indexing (a level's last offset entry is unused).
  const std::size_t node_slots = static_cast<std::size_t>(offset_entries > 0 ? offset_entries : 1);
  DeviceBuffer d_np(sizeof(double) * node_slots), d_nn(sizeof(double) * node_slots),
      d_nt(sizeof(double) * node_slots);
  trajectory_means_kernel<<<blocks_for(num_trajectories), kThreads>>>(
      d_new.as<double>(), d_old.as<double>(), d_traj.as<long long>(), num_trajectories,
      d_ap.as<double>(), d_an.as<double>());
  check(cudaGetLastError(), "trajectory_means_kernel launch");
  for (int l = 0; l < coarse_levels; ++l) {
    const long long base = level_starts[l], nodes = level_starts[l + 1] - level_starts[l] - 1;
    node_means_kernel<<<blocks_for(nodes), kThreads>>>(
        d_ap.as<double>(), d_an.as<double>(), d_traj.as<long long>(),
        d_offsets.as<long long>() + base, nodes, d_np.as<double>() + base,
        d_nn.as<double>() + base, d_nt.as<double>() + base);
    check(cudaGetLastError(), "node_means_kernel launch");
  }
  gate_kernel<<<blocks_for(num_trajectories), kThreads>>>(
      d_new.as<double>(), d_old.as<double>(), d_traj.as<long long>(), num_trajectories,
      coarse_levels, d_offsets.as<long long>(), d_starts.as<long long>(), d_np.as<double>(),
      d_nn.as<double>(), d_nt.as<double>(), d_ap.as<double>(), d_an.as<double>(),
      d_bp.as<double>(), d_bn.as<double>(), eps, d_g.as<double>());
  check(cudaGetLastError(), "gate_kernel launch");
  check(cudaMemcpy(g, d_g.data, sizeof(double) * n, cudaMemcpyDeviceToHost), "copy G back");
}

}  // namespace tether::device::fiberpo_kernels
