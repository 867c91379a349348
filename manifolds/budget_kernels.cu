#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_kernels.hpp>
#include <tether/manifolds/budget_root.hpp>
#include <tether/manifolds/budget_row.hpp>
#include <vector>

namespace tether::device::kernels {

namespace {

constexpr int kThreads = 256;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

// Sums a and b over the block into a[0], b[0] (fixed tree: deterministic). Ends synchronised.
__device__ void block_sum(double* a, double* b) {
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      a[threadIdx.x] += a[threadIdx.x + stride];
      b[threadIdx.x] += b[threadIdx.x + stride];
    }
    __syncthreads();
  }
}

// The largest a over the block into a[0] (fixed tree). Ends synchronised.
__device__ void block_max(double* a) {
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride && a[threadIdx.x + stride] > a[threadIdx.x])
      a[threadIdx.x] = a[threadIdx.x + stride];
    __syncthreads();
  }
}

// One thread per row; each block writes the sums of its rows (tree reduction in shared memory).
__global__ void phi_partials(const double* alpha, const double* costs, int n, int k, double t,
                             double* block_phi, double* block_slope) {
  __shared__ double phi[kThreads];
  __shared__ double slope[kThreads];
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  budget_row::Moments m;
  if (row < n) {
    m = budget_row::moments_shifted(alpha + static_cast<long long>(row) * k,
                                    costs + static_cast<long long>(row) * k, k, t);
  }
  phi[threadIdx.x] = m.expected;
  slope[threadIdx.x] = m.variance;
  block_sum(phi, slope);
  if (threadIdx.x == 0) {
    block_phi[blockIdx.x] = phi[0];
    block_slope[blockIdx.x] = slope[0];
  }
}

}  // namespace

int device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

void phi_and_slope(const double* alpha, const double* costs, int n, int k, double t,
                   double* phi_out, double* slope_out) {
  const int blocks = (n + kThreads - 1) / kThreads;
  const std::size_t bytes =
      sizeof(double) * static_cast<std::size_t>(n) * static_cast<std::size_t>(k);
  double *d_alpha = nullptr, *d_costs = nullptr, *d_phi = nullptr, *d_slope = nullptr;
  check(cudaMalloc(&d_alpha, bytes), "cudaMalloc");
  check(cudaMalloc(&d_costs, bytes), "cudaMalloc");
  check(cudaMalloc(&d_phi, sizeof(double) * blocks), "cudaMalloc");
  check(cudaMalloc(&d_slope, sizeof(double) * blocks), "cudaMalloc");
  check(cudaMemcpy(d_alpha, alpha, bytes, cudaMemcpyHostToDevice), "copy alpha");
  check(cudaMemcpy(d_costs, costs, bytes, cudaMemcpyHostToDevice), "copy costs");
  phi_partials<<<blocks, kThreads>>>(d_alpha, d_costs, n, k, t, d_phi, d_slope);
  check(cudaGetLastError(), "phi_partials launch");
  std::vector<double> phi(static_cast<std::size_t>(blocks)),
      slope(static_cast<std::size_t>(blocks));
  check(cudaMemcpy(phi.data(), d_phi, sizeof(double) * blocks, cudaMemcpyDeviceToHost), "copy phi");
  check(cudaMemcpy(slope.data(), d_slope, sizeof(double) * blocks, cudaMemcpyDeviceToHost),
        "copy slope");
  cudaFree(d_alpha);
  cudaFree(d_costs);
  cudaFree(d_phi);
  cudaFree(d_slope);
  *phi_out = 0.0;
  *slope_out = 0.0;
  for (int b = 0; b < blocks; ++b) {  // fixed order: deterministic
    *phi_out += phi[static_cast<std::size_t>(b)];
    *slope_out += slope[static_cast<std::size_t>(b)];
  }
}

}  // namespace tether::device::kernels

// ---- the retraction with its root finding on the device ----------------------------------------

namespace tether::device::kernels {

namespace {

namespace cg = cooperative_groups;

__device__ double row_spread(const double* c, int k) {
  double lo = c[0], hi = c[0];
  for (int j = 1; j < k; ++j) {
    lo = c[j] < lo ? c[j] : lo;
    hi = c[j] > hi ? c[j] : hi;
  }
  return hi - lo;
}

__device__ RetractionOutcome outcome_of(const budget_root::SafeguardedNewton& root) {
  RetractionOutcome o;
  o.shift = root.t;
  o.residual = root.phi - root.target;
  o.passes = root.passes;
  o.converged = root.converged;
  o.saturated = root.saturated;
  o.feasible_start = root.feasible_start;
  return o;
}

// One block per instance. Thread 0 runs the root finder; every pass is a strided sum over the
// instance's rows and a block reduction.
__global__ void retract_instances_kernel(double* alpha, const double* costs, int k,
                                         const long long* starts, const double* budgets,
                                         double relative_tolerance, int max_passes, int at_most,
                                         int recentre, RetractionOutcome* outcomes) {
  __shared__ double sa[kThreads];
  __shared__ double sb[kThreads];
  __shared__ double t_query;
  __shared__ int more;
  const long long r0 = starts[blockIdx.x], r1 = starts[blockIdx.x + 1];
  double spread = 0.0;
  for (long long i = r0 + threadIdx.x; i < r1; i += blockDim.x) {
    const double s = row_spread(costs + i * k, k);
    spread = s > spread ? s : spread;
  }
  sa[threadIdx.x] = spread;
  block_max(sa);
  budget_root::SafeguardedNewton root;  // meaningful in thread 0 only
  if (threadIdx.x == 0) {
    const double budget = budgets[blockIdx.x];
    const double tol = relative_tolerance * (fabs(budget) > 1.0 ? fabs(budget) : 1.0);
    budget_root::start(root, budget, tol, max_passes, at_most != 0, sa[0]);
    t_query = budget_root::query(root);
  }
  while (true) {
    __syncthreads();
    const double t = t_query;
    double phi = 0.0, slope = 0.0;
    for (long long i = r0 + threadIdx.x; i < r1; i += blockDim.x) {
      const budget_row::Moments m = budget_row::moments_shifted(alpha + i * k, costs + i * k, k, t);
      phi += m.expected;
      slope += m.variance;
    }
    sa[threadIdx.x] = phi;
    sb[threadIdx.x] = slope;
    block_sum(sa, sb);
    if (threadIdx.x == 0) {
      more = budget_root::feed(root, sa[0], sb[0]);
      t_query = more ? budget_root::query(root) : root.t;
      if (!more) {
        outcomes[blockIdx.x] = outcome_of(root);
        if (root.feasible_start) more = -1;
      }
    }
    __syncthreads();
    if (more <= 0) break;
  }
  if (more == -1) return;  // a feasible start (at most): nothing is shifted
  const double t = t_query;
  for (long long i = r0 + threadIdx.x; i < r1; i += blockDim.x)
    budget_row::shift_row(alpha + i * k, costs + i * k, k, t, alpha + i * k, recentre != 0);
}

// One instance over the whole grid (cooperative launch). Each pass: block sums into
// partials[parity], a grid-wide sync, then every block adds the partials in block order and
// replays the same root-finder step, so all blocks hold the same t without a second sync
// (double-buffered partials: a block can be one pass ahead, never two).
__global__ void retract_large_kernel(double* alpha, const double* costs, long long n, int k,
                                     double budget, double relative_tolerance, int max_passes,
                                     int at_most, int recentre, double* partials,
                                     RetractionOutcome* outcome) {
  cg::grid_group grid = cg::this_grid();
  __shared__ double sa[kThreads];
  __shared__ double sb[kThreads];
  __shared__ double t_query;
  __shared__ int more;
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  double* spread_partials = partials + 4 * gridDim.x;
  double spread = 0.0;
  for (long long i = first; i < n; i += stride) {
    const double s = row_spread(costs + i * k, k);
    spread = s > spread ? s : spread;
  }
  sa[threadIdx.x] = spread;
  block_max(sa);
  if (threadIdx.x == 0) spread_partials[blockIdx.x] = sa[0];
  grid.sync();
  budget_root::SafeguardedNewton root;  // thread 0 of every block: identical copies
  if (threadIdx.x == 0) {
    double widest = 0.0;
    for (unsigned b = 0; b < gridDim.x; ++b)
      widest = spread_partials[b] > widest ? spread_partials[b] : widest;
    const double tol = relative_tolerance * (fabs(budget) > 1.0 ? fabs(budget) : 1.0);
    budget_root::start(root, budget, tol, max_passes, at_most != 0, widest);
    t_query = budget_root::query(root);
  }
  int parity = 0;
  while (true) {
    __syncthreads();
    const double t = t_query;
    double phi = 0.0, slope = 0.0;
    for (long long i = first; i < n; i += stride) {
      const budget_row::Moments m = budget_row::moments_shifted(alpha + i * k, costs + i * k, k, t);
      phi += m.expected;
      slope += m.variance;
    }
    sa[threadIdx.x] = phi;
    sb[threadIdx.x] = slope;
    block_sum(sa, sb);
    double* buffer = partials + 2 * parity * gridDim.x;
    if (threadIdx.x == 0) {
      buffer[blockIdx.x] = sa[0];
      buffer[gridDim.x + blockIdx.x] = sb[0];
    }
    grid.sync();
    if (threadIdx.x == 0) {
      double total_phi = 0.0, total_slope = 0.0;
      for (unsigned b = 0; b < gridDim.x; ++b) {  // block order: the same sums in every block
        total_phi += buffer[b];
        total_slope += buffer[gridDim.x + b];
      }
      more = budget_root::feed(root, total_phi, total_slope);
      t_query = more ? budget_root::query(root) : root.t;
      if (!more) {
        if (blockIdx.x == 0) *outcome = outcome_of(root);
        if (root.feasible_start) more = -1;
      }
    }
    __syncthreads();
    if (more <= 0) break;
    parity ^= 1;
  }
  if (more == -1) return;
  const double t = t_query;
  for (long long i = first; i < n; i += stride)
    budget_row::shift_row(alpha + i * k, costs + i * k, k, t, alpha + i * k, recentre != 0);
}

// Rows above which a single instance uses the whole grid instead of one block.
constexpr long long kCooperativeRows = 1 << 16;

}  // namespace

struct ResidentInstances {
  double* alpha = nullptr;
  double* costs = nullptr;
  long long* starts = nullptr;  // device copy
  double* budgets = nullptr;    // device copy
  RetractionOutcome* outcomes = nullptr;
  double* partials = nullptr;  // the cooperative kernel's (5 per grid block)
  std::vector<double> host_budgets;
  long long n = 0;
  int k = 0, instances = 0, grid_blocks = 0;
  bool cooperative = false;  // one large instance: the grid-wide kernel
};

ResidentInstances* create_resident(const double* costs, long long n, int k, const long long* starts,
                                   int instances, const double* budgets) {
  auto* r = new ResidentInstances;
  r->n = n;
  r->k = k;
  r->instances = instances;
  r->host_budgets.assign(budgets, budgets + instances);
  const std::size_t bytes =
      sizeof(double) * static_cast<std::size_t>(n) * static_cast<std::size_t>(k);
  try {
    check(cudaMalloc(&r->alpha, bytes), "cudaMalloc alpha");
    check(cudaMalloc(&r->costs, bytes), "cudaMalloc costs");
    check(cudaMalloc(&r->starts, sizeof(long long) * (instances + 1)), "cudaMalloc starts");
    check(cudaMalloc(&r->budgets, sizeof(double) * instances), "cudaMalloc budgets");
    check(cudaMalloc(&r->outcomes, sizeof(RetractionOutcome) * instances), "cudaMalloc outcomes");
    check(cudaMemcpy(r->costs, costs, bytes, cudaMemcpyHostToDevice), "copy costs");
    check(
        cudaMemcpy(r->starts, starts, sizeof(long long) * (instances + 1), cudaMemcpyHostToDevice),
        "copy starts");
    check(cudaMemcpy(r->budgets, budgets, sizeof(double) * instances, cudaMemcpyHostToDevice),
          "copy budgets");
    int device = 0, cooperative = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device),
          "cooperative-launch attribute");
    if (instances == 1 && n >= kCooperativeRows && cooperative) {
      int per_sm = 0, sms = 0;
      check(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, retract_large_kernel, kThreads, 0),
          "occupancy");
      check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "SM count");
      const long long wanted = (n + kThreads - 1) / kThreads;
      r->grid_blocks =
          static_cast<int>(std::min<long long>(wanted, static_cast<long long>(per_sm) * sms));
      check(cudaMalloc(&r->partials, sizeof(double) * 5 * r->grid_blocks), "cudaMalloc partials");
      r->cooperative = true;
    }
  } catch (...) {
    destroy_resident(r);
    throw;
  }
  return r;
}

void destroy_resident(ResidentInstances* r) {
  if (r == nullptr) return;
  cudaFree(r->alpha);
  cudaFree(r->costs);
  cudaFree(r->starts);
  cudaFree(r->budgets);
  cudaFree(r->outcomes);
  cudaFree(r->partials);
  delete r;
}

int resident_instances(const ResidentInstances* r) { return r->instances; }

double copy_bandwidth(unsigned long long bytes, int repetitions) {
  void *src = nullptr, *dst = nullptr;
  cudaEvent_t begin, end;
  check(cudaMalloc(&src, bytes), "cudaMalloc");
  check(cudaMalloc(&dst, bytes), "cudaMalloc");
  check(cudaMemset(src, 1, bytes), "cudaMemset");
  check(cudaEventCreate(&begin), "event");
  check(cudaEventCreate(&end), "event");
  float best_ms = 0.0f;
  for (int i = 0; i <= repetitions; ++i) {  // the first copy warms up
    check(cudaEventRecord(begin), "event");
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy");
    check(cudaEventRecord(end), "event");
    check(cudaEventSynchronize(end), "event");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, begin, end), "event time");
    if (i > 0 && (best_ms == 0.0f || ms < best_ms)) best_ms = ms;
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(bytes) / (1e-3 * best_ms);
}

void upload_alpha(ResidentInstances* r, const double* alpha) {
  check(cudaMemcpy(r->alpha, alpha, sizeof(double) * static_cast<std::size_t>(r->n) * r->k,
                   cudaMemcpyHostToDevice),
        "copy alpha");
}

void download_alpha(const ResidentInstances* r, double* alpha) {
  check(cudaMemcpy(alpha, r->alpha, sizeof(double) * static_cast<std::size_t>(r->n) * r->k,
                   cudaMemcpyDeviceToHost),
        "copy alpha back");
}

void retract_resident(ResidentInstances* r, double relative_tolerance, int max_passes, bool at_most,
                      bool recentre, RetractionOutcome* outcomes) {
  if (r->cooperative) {
    double budget = r->host_budgets[0];
    long long n = r->n;
    int k = r->k;
    int at_most_flag = at_most ? 1 : 0, recentre_flag = recentre ? 1 : 0;
    void* args[] = {&r->alpha,      &r->costs,           &n,          &k,
                    &budget,        &relative_tolerance, &max_passes, &at_most_flag,
                    &recentre_flag, &r->partials,        &r->outcomes};
    check(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(retract_large_kernel), r->grid_blocks,
                                      kThreads, args, 0, nullptr),
          "retract_large_kernel launch");
  } else {
    retract_instances_kernel<<<r->instances, kThreads>>>(
        r->alpha, r->costs, r->k, r->starts, r->budgets, relative_tolerance, max_passes,
        at_most ? 1 : 0, recentre ? 1 : 0, r->outcomes);
    check(cudaGetLastError(), "retract_instances_kernel launch");
  }
  check(cudaMemcpy(outcomes, r->outcomes, sizeof(RetractionOutcome) * r->instances,
                   cudaMemcpyDeviceToHost),
        "copy outcomes");  // synchronises with the kernel
}

void retract(double* alpha, const double* costs, long long n, int k, const long long* starts,
             int instances, const double* budgets, double relative_tolerance, int max_passes,
             bool at_most, bool recentre, RetractionOutcome* outcomes) {
  ResidentInstances* r = create_resident(costs, n, k, starts, instances, budgets);
  try {
    upload_alpha(r, alpha);
    retract_resident(r, relative_tolerance, max_passes, at_most, recentre, outcomes);
    download_alpha(r, alpha);
  } catch (...) {
    destroy_resident(r);
    throw;
  }
  destroy_resident(r);
}

}  // namespace tether::device::kernels
