// CUDA kernels of the gating hierarchy: G and the Jacobian products J v, J^T v as the segmented
// passes of GatingHierarchyGate / GatedRatios, with the CPU gate's per-token and per-segment
// functions (solvers/fiberpo_segments.hpp). The passes over tokens take a warp per trajectory:
// lane l reads tokens begin + l, begin + l + 32, ... (coalesced), a trajectory's sums are the
// lanes' partial sums added by a butterfly (a fixed order, so every lane holds the same bits),
// and every lane computes the trajectory's constants itself. The passes over coarse nodes (a
// few thousand trajectory aggregates) take a thread per node.
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
static_assert((kThreads & (kThreads - 1)) == 0, "the block reductions halve kThreads");
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

/// Blocks of kThreads for n threads (a thread per node).
unsigned blocks_for(long long n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }
/// Blocks of kThreads for a warp per trajectory.
unsigned warp_blocks_for(long long trajectories) { return blocks_for(trajectories * kWarp); }

/// The warp that takes trajectory k: k = the global warp index, lane its lane.
__device__ long long warp_index() {
  return (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
}
__device__ int lane_index() { return static_cast<int>(threadIdx.x % kWarp); }

/// The warp's total (butterfly: every lane ends with the same bits).
__device__ double warp_sum(double v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

/// A trajectory's signed means from the lanes' partial sums: the warp's totals over its `len`
/// tokens, stored by lane 0 at [k].
__device__ void store_warp_means(double sp, double sn, long long len, long long k, double* positive,
                                 double* negative) {
  sp = warp_sum(sp);
  sn = warp_sum(sn);
  if (lane_index() == 0) {
    positive[k] = sp / static_cast<double>(len);
    negative[k] = sn / static_cast<double>(len);
  }
}

// a^+, a^- per trajectory (a warp each; whole warps leave together: blockDim is a multiple of
// 32). L: the new log-probs' type, double or float (converted exactly on load).
template <class L>
__global__ void trajectory_means_kernel(const L* new_log_prob, const double* old_log_prob,
                                        const long long* trajectories, long long count,
                                        double* a_positive, double* a_negative) {
  const long long k = warp_index();
  if (k >= count) return;
  const long long begin = trajectories[k], end = trajectories[k + 1];
  double sp = 0.0, sn = 0.0;
  for (long long i = begin + lane_index(); i < end; i += kWarp) {
    const double x = static_cast<double>(new_log_prob[i]) - old_log_prob[i];
    sp += seg::positive_part(x);
    sn += seg::positive_part(-x);
  }
  store_warp_means(sp, sn, end - begin, k, a_positive, a_negative);
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

// The node of coarse level l that holds trajectory k (the last m with offsets[m] <= k).
__device__ long long node_of(const long long* node_offsets, const long long* level_starts, int l,
                             long long k) {
  const long long* offsets = node_offsets + level_starts[l];
  long long lo = 0, hi = level_starts[l + 1] - level_starts[l] - 2;  // nodes - 1
  while (lo < hi) {
    const long long mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= k)
      lo = mid;
    else
      hi = mid - 1;
  }
  return level_starts[l] + lo;
}

// Per trajectory (a warp; every lane walks the chain): the fiber gate over its tokens; writes G, r,
// the token flags and beta^c_l = gamma^c_l - gamma^c_{l+1} (gamma beyond the trajectory level = 0)
// at [l * count + k]. L as in trajectory_means_kernel.
template <class L>
__global__ void gate_kernel(const L* new_log_prob, const double* old_log_prob,
                            const long long* trajectories, long long count, int coarse_levels,
                            const long long* node_offsets, const long long* level_starts,
                            const double* node_positive, const double* node_negative,
                            const double* node_tokens, const double* a_positive,
                            const double* a_negative, const double* budget_positive,
                            const double* budget_negative, double eps, double* g, double* ratio,
                            std::uint8_t* flags, double* beta_positive, double* beta_negative) {
  const long long k = warp_index();
  if (k >= count) return;
  seg::ChainLevel chain[kMaxGatedLevels];
  double gamma_positive[kMaxGatedLevels], gamma_negative[kMaxGatedLevels];
  for (int l = 0; l < coarse_levels; ++l) {
    const long long node = node_of(node_offsets, level_starts, l, k);
    chain[l] = {node_positive[node], node_negative[node], node_tokens[node], budget_positive[l],
                budget_negative[l]};
  }
  const long long begin = trajectories[k], end = trajectories[k + 1];
  chain[coarse_levels] = {a_positive[k], a_negative[k], static_cast<double>(end - begin),
                          budget_positive[coarse_levels], budget_negative[coarse_levels]};
  const int gated = coarse_levels + 1;
  const seg::Chain walk = seg::trajectory_chain(chain, gated, gamma_positive, gamma_negative);
  for (int l = 0; l < gated && lane_index() == 0; ++l) {
    const double next_p = l + 1 < gated ? gamma_positive[l + 1] : 0.0;
    const double next_n = l + 1 < gated ? gamma_negative[l + 1] : 0.0;
    beta_positive[l * count + k] = l + 1 < gated ? gamma_positive[l] - next_p : gamma_positive[l];
    beta_negative[l * count + k] = l + 1 < gated ? gamma_negative[l] - next_n : gamma_negative[l];
  }
  const seg::FiberConstants f =
      seg::fiber_constants(a_positive[k], a_negative[k], walk.log_weight, eps);
  for (long long i = begin + lane_index(); i < end; i += kWarp)
    g[i] = seg::fiber_gate(static_cast<double>(new_log_prob[i]) - old_log_prob[i], f, eps,
                           &ratio[i], &flags[i]);
}

// J v, step 1: m^+, m^- per trajectory (a warp each).
__global__ void jvp_means_kernel(const double* v, const double* ratio, const std::uint8_t* flags,
                                 const long long* trajectories, long long count, bool ratio_space,
                                 double* m_positive, double* m_negative) {
  const long long k = warp_index();
  if (k >= count) return;
  const long long begin = trajectories[k], end = trajectories[k + 1];
  double sp = 0.0, sn = 0.0;
  for (long long j = begin + lane_index(); j < end; j += kWarp) {
    const seg::JvpMeanTerms t = seg::jvp_mean_terms(v[j], ratio[j], flags[j], ratio_space);
    sp += t.positive;
    sn += t.negative;
  }
  store_warp_means(sp, sn, end - begin, k, m_positive, m_negative);
}

// J v, last step, per trajectory (a warp; every lane forms the coupling): the aggregate
// coupling (levels in order, as the CPU), then its tokens.
__global__ void jvp_tokens_kernel(const double* v, const double* ratio, const std::uint8_t* flags,
                                  const double* g, const long long* trajectories, long long count,
                                  int coarse_levels, const long long* node_offsets,
                                  const long long* level_starts, const double* node_positive,
                                  const double* node_negative, const double* m_positive,
                                  const double* m_negative, const double* beta_positive,
                                  const double* beta_negative, bool ratio_space, double* out) {
  const long long k = warp_index();
  if (k >= count) return;
  const long long last = static_cast<long long>(coarse_levels) * count + k;
  double agg = beta_positive[last] * m_positive[k] + beta_negative[last] * m_negative[k];
  for (int l = 0; l < coarse_levels; ++l) {
    const long long node = node_of(node_offsets, level_starts, l, k);
    agg += node_positive[node] * beta_positive[l * count + k] +
           node_negative[node] * beta_negative[l * count + k];
  }
  const long long begin = trajectories[k], end = trajectories[k + 1];
  const double len = static_cast<double>(end - begin), inv_len = 1.0 / len;
  const double vp = m_positive[k] * len, vn = m_negative[k] * len;
  for (long long i = begin + lane_index(); i < end; i += kWarp)
    out[i] = seg::jvp_token(v[i], ratio[i], flags[i], g[i], vp, vn, inv_len, agg, ratio_space);
}

// J^T v, step 1: per trajectory (a warp each) C and R^c before the coarse levels.
// With objective != nullptr (evaluate: v holds the advantages A), the vector is zeta_i = mu A_i,
// mu = 1 / (count T_k), formed as it is read, and objective[k] = mu sum_i G_i A_i, J's share of
// the trajectory (as the CPU's objective_vjp_sums); otherwise v itself (1 v is v, exactly).
__device__ double zeta_scale(const long long* trajectories, long long count, long long k,
                             bool zeta) {
  return zeta ? seg::objective_weight(count, trajectories[k + 1] - trajectories[k]) : 1.0;
}

__global__ void vjp_sums_kernel(const double* v, const double* g, const std::uint8_t* flags,
                                const long long* trajectories, long long count, int coarse_levels,
                                const double* beta_positive, const double* beta_negative,
                                double* total, double* r_positive, double* r_negative,
                                double* objective) {
  const long long k = warp_index();
  if (k >= count) return;
  const double scale = zeta_scale(trajectories, count, k, objective != nullptr);
  seg::VjpSums p;
  double j_sum = 0.0;
  for (long long i = trajectories[k] + lane_index(); i < trajectories[k + 1]; i += kWarp) {
    const seg::VjpSums t = seg::vjp_terms(scale * v[i], g[i], flags[i]);
    p.total += t.total;
    p.pu_positive += t.pu_positive;
    p.pv_positive += t.pv_positive;
    p.pu_negative += t.pu_negative;
    p.pv_negative += t.pv_negative;
    if (objective != nullptr) j_sum += g[i] * v[i];  // evaluate's J only
  }
  p.total = warp_sum(p.total);
  p.pu_positive = warp_sum(p.pu_positive);
  p.pv_positive = warp_sum(p.pv_positive);
  p.pu_negative = warp_sum(p.pu_negative);
  p.pv_negative = warp_sum(p.pv_negative);
  if (objective != nullptr) j_sum = warp_sum(j_sum);  // uniform over the warp
  if (lane_index() != 0) return;
  if (objective != nullptr) objective[k] = scale * j_sum;
  const long long last = static_cast<long long>(coarse_levels) * count + k;
  total[k] = p.total;
  r_positive[k] = -(p.pu_positive + p.pv_negative) + beta_positive[last] * p.total;
  r_negative[k] = -(p.pu_negative + p.pv_positive) + beta_negative[last] * p.total;
}

// J^T v, step 2, one level: the node means of beta^c C.
__global__ void vjp_nodes_kernel(const double* beta_positive, const double* beta_negative,
                                 const double* total, const long long* offsets, long long nodes,
                                 double* q_positive, double* q_negative) {
  const long long m = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= nodes) return;
  const seg::SignedMeans q =
      seg::node_weighted_means(beta_positive, beta_negative, total, offsets[m], offsets[m + 1]);
  q_positive[m] = q.positive;
  q_negative[m] = q.negative;
}

// J^T v, last step, per trajectory (a warp; every lane forms R^c): R^c with every level's
// node term (in level order), then its tokens.
__global__ void vjp_tokens_kernel(const double* v, const double* g, const double* ratio,
                                  const std::uint8_t* flags, const long long* trajectories,
                                  long long count, int coarse_levels, const long long* node_offsets,
                                  const long long* level_starts, const double* q_positive,
                                  const double* q_negative, const double* r_positive,
                                  const double* r_negative, bool ratio_space, bool zeta,
                                  double* out) {
  const long long k = warp_index();
  if (k >= count) return;
  const double scale = zeta_scale(trajectories, count, k, zeta);  // zeta: v holds A (as above)
  double rp = r_positive[k], rn = r_negative[k];
  for (int l = 0; l < coarse_levels; ++l) {
    const long long node = node_of(node_offsets, level_starts, l, k);
    rp += q_positive[node];
    rn += q_negative[node];
  }
  const long long begin = trajectories[k], end = trajectories[k + 1];
  const double inv_len = 1.0 / static_cast<double>(end - begin);
  rp *= inv_len;
  rn *= inv_len;
  for (long long j = begin + lane_index(); j < end; j += kWarp)
    out[j] = seg::vjp_token(scale * v[j], g[j], ratio_space ? ratio[j] : 1.0, flags[j], rp, rn,
                            ratio_space);  // r not read in log space
}

// The new log-probs' check: a value not finite and <= 0 (NaN fails both comparisons).
struct InvalidLogProb {
  template <class V>
  __device__ bool operator()(V value) const {
    const double v = static_cast<double>(value);  // exact for a float
    return !(v <= 0.0 && v >= -1.7976931348623157e308);
  }
};

}  // namespace

struct ResidentGate {
  long long tokens = 0, count = 0;
  int coarse = 0;
  double eps = 0.0;
  std::vector<long long> level_starts;  // host copy
  DeviceBuffer traj, offsets, starts, old_log_prob, advantage, budget_positive, budget_negative;
  DeviceBuffer g, ratio, flags, beta_positive, beta_negative;
  DeviceBuffer work_a, work_b, work_c, work_d, node_a, node_b, node_c;  // per-call scratch
  DeviceBuffer check_partials;  // the log-prob check's per-block first failures
  ResidentGate(long long n, long long t, int levels, long long offset_entries)
      : tokens(n),
        count(t),
        coarse(levels),
        traj(0),
        offsets(0),
        starts(0),
        old_log_prob(0),
        advantage(0),
        budget_positive(0),
        budget_negative(0),
        g(sizeof(double) * static_cast<std::size_t>(n)),
        ratio(sizeof(double) * static_cast<std::size_t>(n)),
        flags(static_cast<std::size_t>(n)),
        beta_positive(sizeof(double) * static_cast<std::size_t>(t) * (levels + 1)),
        beta_negative(sizeof(double) * static_cast<std::size_t>(t) * (levels + 1)),
        work_a(sizeof(double) * static_cast<std::size_t>(t)),
        work_b(sizeof(double) * static_cast<std::size_t>(t)),
        work_c(sizeof(double) * static_cast<std::size_t>(t)),
        work_d(sizeof(double) * static_cast<std::size_t>(t)),
        node_a(sizeof(double) * static_cast<std::size_t>(offset_entries > 0 ? offset_entries : 1)),
        node_b(sizeof(double) * static_cast<std::size_t>(offset_entries > 0 ? offset_entries : 1)),
        node_c(sizeof(double) * static_cast<std::size_t>(offset_entries > 0 ? offset_entries : 1)),
        check_partials(sizeof(long long) * (cuda::kRejectBlocks + 1)) {}
};

namespace {

// The node means of (work_a, work_b) over each coarse level's nodes into (node_a, node_b), with
// the nodes' token counts into node_c: a^c for G, m^c for J v.
void node_means_all_levels(const ResidentGate* r) {
  for (int l = 0; l < r->coarse; ++l) {
    const long long base = r->level_starts[l];
    const long long nodes = r->level_starts[l + 1] - r->level_starts[l] - 1;
    TETHER_KERNEL_LAUNCH(blocks_for(nodes), kThreads, node_means_kernel)
    (r->work_a.as<double>(), r->work_b.as<double>(), r->traj.as<long long>(),
     r->offsets.as<long long>() + base, nodes, r->node_a.as<double>() + base,
     r->node_b.as<double>() + base, r->node_c.as<double>() + base);
    check(cudaGetLastError(), "node_means_kernel launch");
  }
}

}  // namespace

ResidentGate* create_gate(const double* old_log_prob, const double* advantage, long long tokens,
                          const long long* trajectories, long long num_trajectories,
                          int coarse_levels, const long long* node_offsets,
                          const long long* level_starts, const double* budget_positive,
                          const double* budget_negative, double eps) {
  if (coarse_levels + 1 > kMaxGatedLevels)
    throw Error("device gating: at most " + std::to_string(kMaxGatedLevels) +
                " gated levels on the device");
  const long long offset_entries = level_starts[coarse_levels];
  const std::size_t n = static_cast<std::size_t>(tokens);
  const std::size_t t = static_cast<std::size_t>(num_trajectories);
  auto* r = new ResidentGate(tokens, num_trajectories, coarse_levels, offset_entries);
  try {
    r->eps = eps;
    r->level_starts.assign(level_starts, level_starts + coarse_levels + 1);
    r->traj = cuda::upload(trajectories, t + 1, "copy trajectories");
    r->offsets =
        cuda::upload(node_offsets, static_cast<std::size_t>(offset_entries), "copy node offsets");
    r->starts = cuda::upload(level_starts, static_cast<std::size_t>(coarse_levels) + 1,
                             "copy level starts");
    r->old_log_prob = cuda::upload(old_log_prob, n, "copy old_log_prob");
    r->advantage = cuda::upload(advantage, n, "copy advantage");
    r->budget_positive =
        cuda::upload(budget_positive, static_cast<std::size_t>(coarse_levels) + 1, "budgets");
    r->budget_negative =
        cuda::upload(budget_negative, static_cast<std::size_t>(coarse_levels) + 1, "budgets");
  } catch (...) {
    delete r;
    throw;
  }
  return r;
}

namespace {

template <class L>
long long gate_as(ResidentGate* r, const L* device_new_log_prob, bool check_values) {
  if (check_values) {
    const long long bad = cuda::first_rejected(device_new_log_prob, r->tokens, InvalidLogProb{},
                                               r->check_partials.as<long long>());
    if (bad >= 0) return bad;
  }
  const double* d_old = r->old_log_prob.as<double>();
  // a^+, a^- per trajectory (work_a, work_b); node aggregates (node_a, node_b, node_c).
  TETHER_KERNEL_LAUNCH(warp_blocks_for(r->count), kThreads, trajectory_means_kernel<L>)
  (device_new_log_prob, d_old, r->traj.as<long long>(), r->count, r->work_a.as<double>(),
   r->work_b.as<double>());
  check(cudaGetLastError(), "trajectory_means_kernel launch");
  node_means_all_levels(r);
  TETHER_KERNEL_LAUNCH(warp_blocks_for(r->count), kThreads, gate_kernel<L>)
  (device_new_log_prob, d_old, r->traj.as<long long>(), r->count, r->coarse,
   r->offsets.as<long long>(), r->starts.as<long long>(), r->node_a.as<double>(),
   r->node_b.as<double>(), r->node_c.as<double>(), r->work_a.as<double>(), r->work_b.as<double>(),
   r->budget_positive.as<double>(), r->budget_negative.as<double>(), r->eps, r->g.as<double>(),
   r->ratio.as<double>(), r->flags.as<std::uint8_t>(), r->beta_positive.as<double>(),
   r->beta_negative.as<double>());
  check(cudaGetLastError(), "gate_kernel launch");
  check(cudaDeviceSynchronize(), "gate kernels");
  return -1;
}

}  // namespace

long long gate(ResidentGate* r, const double* device_new_log_prob, bool check_values) {
  return gate_as(r, device_new_log_prob, check_values);
}

long long gate(ResidentGate* r, const float* device_new_log_prob, bool check_values) {
  return gate_as(r, device_new_log_prob, check_values);
}

void destroy_gate(ResidentGate* gate) { delete gate; }

void download_values(const ResidentGate* r, double* g) {
  check(cudaMemcpy(g, r->g.data, sizeof(double) * static_cast<std::size_t>(r->tokens),
                   cudaMemcpyDeviceToHost),
        "copy G back");
}

void jvp(const ResidentGate* r, const double* d_v, double* d_out, bool log_space) {
  const bool ratio_space = !log_space;
  TETHER_KERNEL_LAUNCH(warp_blocks_for(r->count), kThreads, jvp_means_kernel)
  (d_v, r->ratio.as<double>(), r->flags.as<std::uint8_t>(), r->traj.as<long long>(), r->count,
   ratio_space, r->work_a.as<double>(), r->work_b.as<double>());
  check(cudaGetLastError(), "jvp_means_kernel launch");
  node_means_all_levels(r);
  TETHER_KERNEL_LAUNCH(warp_blocks_for(r->count), kThreads, jvp_tokens_kernel)
  (d_v, r->ratio.as<double>(), r->flags.as<std::uint8_t>(), r->g.as<double>(),
   r->traj.as<long long>(), r->count, r->coarse, r->offsets.as<long long>(),
   r->starts.as<long long>(), r->node_a.as<double>(), r->node_b.as<double>(),
   r->work_a.as<double>(), r->work_b.as<double>(), r->beta_positive.as<double>(),
   r->beta_negative.as<double>(), ratio_space, d_out);
  check(cudaGetLastError(), "jvp_tokens_kernel launch");
  check(cudaDeviceSynchronize(), "J v kernels");
}

namespace {

// J^T v into d_out; with objective (count doubles on the device), v is the advantages and the
// vector zeta = mu A (evaluate), in log space.
void vjp_of(const ResidentGate* r, const double* d_v, double* d_out, bool log_space,
            double* objective) {
  const bool ratio_space = !log_space;
  // total (work_c), R^+ (work_a), R^- (work_b); node terms (node_a, node_b).
  TETHER_KERNEL_LAUNCH(warp_blocks_for(r->count), kThreads, vjp_sums_kernel)
  (d_v, r->g.as<double>(), r->flags.as<std::uint8_t>(), r->traj.as<long long>(), r->count,
   r->coarse, r->beta_positive.as<double>(), r->beta_negative.as<double>(), r->work_c.as<double>(),
   r->work_a.as<double>(), r->work_b.as<double>(), objective);
  check(cudaGetLastError(), "vjp_sums_kernel launch");
  for (int l = 0; l < r->coarse; ++l) {
    const long long base = r->level_starts[l];
    const long long nodes = r->level_starts[l + 1] - r->level_starts[l] - 1;
    TETHER_KERNEL_LAUNCH(blocks_for(nodes), kThreads, vjp_nodes_kernel)
    (r->beta_positive.as<double>() + static_cast<long long>(l) * r->count,
     r->beta_negative.as<double>() + static_cast<long long>(l) * r->count, r->work_c.as<double>(),
     r->offsets.as<long long>() + base, nodes, r->node_a.as<double>() + base,
     r->node_b.as<double>() + base);
    check(cudaGetLastError(), "vjp_nodes_kernel launch");
  }
  TETHER_KERNEL_LAUNCH(warp_blocks_for(r->count), kThreads, vjp_tokens_kernel)
  (d_v, r->g.as<double>(), r->ratio.as<double>(), r->flags.as<std::uint8_t>(),
   r->traj.as<long long>(), r->count, r->coarse, r->offsets.as<long long>(),
   r->starts.as<long long>(), r->node_a.as<double>(), r->node_b.as<double>(),
   r->work_a.as<double>(), r->work_b.as<double>(), ratio_space, objective != nullptr, d_out);
  check(cudaGetLastError(), "vjp_tokens_kernel launch");
  check(cudaDeviceSynchronize(), "J^T v kernels");
}

}  // namespace

void vjp(const ResidentGate* r, const double* d_v, double* d_out, bool log_space) {
  vjp_of(r, d_v, d_out, log_space, nullptr);
}

double evaluate(const ResidentGate* r, double* d_gradient) {
  double* objective = r->work_d.as<double>();
  vjp_of(r, r->advantage.as<double>(), d_gradient, /*log_space=*/true, objective);
  std::vector<double> partial(static_cast<std::size_t>(r->count));
  check(cudaMemcpy(partial.data(), objective, sizeof(double) * partial.size(),
                   cudaMemcpyDeviceToHost),
        "copy J's trajectory shares back");
  double total = 0.0;  // in trajectory order, as on the CPU
  for (const double share : partial) total += share;
  return total;
}

}  // namespace tether::device::fiberpo_kernels
