#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <tether/core/cuda_support.cuh>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_kernels.hpp>
#include <tether/manifolds/budget_root.hpp>
#include <tether/manifolds/budget_row.hpp>
#include <utility>
#include <vector>

namespace tether::device::kernels {

namespace {

constexpr int kThreads = 256;
static_assert((kThreads & (kThreads - 1)) == 0, "the block reductions halve kThreads");

using cuda::check;
using cuda::DeviceBuffer;

// Sums a and b over the block into a[0], b[0] (fixed tree: deterministic). Ends synchronised.
__device__ void block_sum(double* a, double* b) {
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
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
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
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
  // Device buffers freed on scope exit, so a failing check leaks nothing.
  const DeviceBuffer d_alpha = cuda::upload(alpha, static_cast<std::size_t>(n) * k, "copy alpha");
  const DeviceBuffer d_costs = cuda::upload(costs, static_cast<std::size_t>(n) * k, "copy costs");
  const DeviceBuffer d_phi(sizeof(double) * blocks), d_slope(sizeof(double) * blocks);
  TETHER_KERNEL_LAUNCH(blocks, kThreads, phi_partials)
  (d_alpha.as<double>(), d_costs.as<double>(), n, k, t, d_phi.as<double>(), d_slope.as<double>());
  check(cudaGetLastError(), "phi_partials launch");
  std::vector<double> phi(static_cast<std::size_t>(blocks)),
      slope(static_cast<std::size_t>(blocks));
  check(cudaMemcpy(phi.data(), d_phi.data, sizeof(double) * blocks, cudaMemcpyDeviceToHost),
        "copy phi");
  check(cudaMemcpy(slope.data(), d_slope.data, sizeof(double) * blocks, cudaMemcpyDeviceToHost),
        "copy slope");
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

// This thread's rows first, first + step, ... < end: the moments at `shift` summed into *phi
// and *slope, and with move, each row moved to alpha + shift c right after its moments.
__device__ void measure_rows(double* alpha, const double* costs, int k, long long first,
                             long long end, long long step, double shift, bool move, bool recentre,
                             double* phi, double* slope) {
  for (long long i = first; i < end; i += step) {
    const budget_row::Moments m =
        budget_row::moments_shifted(alpha + i * k, costs + i * k, k, shift);
    if (move)
      budget_row::shift_row(alpha + i * k, costs + i * k, k, shift, alpha + i * k, recentre);
    *phi += m.expected;
    *slope += m.variance;
  }
}

// The retraction's searches, as on the CPU (BudgetManifold::retract). With move, every pass
// after the first (which measures the start point) also moves the rows to the shift it
// measures, in place, so the pass that ends the search has already made the final move: no
// separate pass over the data. Only after a rejected polishing trial (budget_root.hpp), where
// alpha sits at the trial, a second search runs from there without moving, then one final
// move. pass(shift, move, &phi, &slope) runs one pass over the instance's rows (moments at
// `shift`; with move, each row moved to alpha + shift c right after its moments) and leaves the
// instance's totals in thread 0; shift_rows(t) moves every row by t. Every thread of a row's
// pass is the same in each pass, so a row is only ever read and written by its own thread.
// Thread 0 of each block holds the root finder (identical copies across the grid); `shared`
// broadcasts its decisions.
struct SearchShared {
  double shift;  // of this pass, relative to where alpha is
  int move;      // this pass also moves the rows
  int more;      // the search continues
  int again;     // a second search (after a rejected polishing trial)
  int final_move;
};

template <class Pass, class ShiftRows>
__device__ void retract_rows(Pass pass, ShiftRows shift_rows, double budget, double tol,
                             int max_passes, bool at_most, double spread, SearchShared* shared,
                             RetractionOutcome* outcome) {
  budget_root::SafeguardedNewton root;  // thread 0 only
  double applied = 0.0, query = 0.0, total_shift = 0.0;
  int passes = 0;
  for (int round = 0; round < 2; ++round) {
    const bool move = round == 0;  // the second search measures only
    if (threadIdx.x == 0) budget_root::start(root, budget, tol, max_passes, at_most, spread);
    bool moved = false;
    while (true) {
      if (threadIdx.x == 0) {
        query = budget_root::query(root);
        shared->move = move && root.passes >= 1;
        shared->shift = move ? query - applied : query;
      }
      __syncthreads();
      double phi = 0.0, slope = 0.0;
      pass(shared->shift, shared->move != 0, &phi, &slope);
      if (threadIdx.x == 0) {
        if (shared->move) {
          moved = true;
          applied = query;
        }
        shared->more = budget_root::feed(root, phi, slope);
      }
      __syncthreads();
      if (!shared->more) break;
    }
    if (threadIdx.x == 0) {
      passes += root.passes;
      shared->again = move && moved && applied != root.t;
      // After the first search: a final move only if no pass moved (and something is to move);
      // after the second, from where alpha sits.
      shared->final_move =
          !root.feasible_start && (round == 1 || (!moved && !shared->again)) ? 1 : 0;
      total_shift = round == 1 ? applied + root.t : root.t;
      shared->shift = root.t;  // a final move goes from where alpha sits
    }
    __syncthreads();
    if (!shared->again || round == 1) break;
  }
  if (shared->final_move) shift_rows(shared->shift);
  if (threadIdx.x == 0 && outcome != nullptr) {
    RetractionOutcome o;
    o.shift = total_shift;
    o.residual = root.phi - root.target;
    o.passes = passes;
    o.converged = root.converged;
    o.saturated = root.saturated;
    o.feasible_start = root.feasible_start;
    *outcome = o;
  }
}

// One block per instance; every pass is a strided sum over the instance's rows and a block
// reduction.
__global__ void retract_instances_kernel(double* alpha, const double* costs, int k,
                                         const long long* starts, const double* budgets,
                                         double relative_tolerance, int max_passes, int at_most,
                                         int recentre, RetractionOutcome* outcomes) {
  __shared__ double sa[kThreads];
  __shared__ double sb[kThreads];
  __shared__ SearchShared shared;
  const long long r0 = starts[blockIdx.x], r1 = starts[blockIdx.x + 1];
  double spread = 0.0;
  for (long long i = r0 + threadIdx.x; i < r1; i += blockDim.x) {
    const double s = row_spread(costs + i * k, k);
    spread = s > spread ? s : spread;
  }
  sa[threadIdx.x] = spread;
  block_max(sa);
  const double widest = sa[0];
  __syncthreads();  // sa is reused by the passes
  auto pass = [&](double shift, bool move, double* phi, double* slope) {
    double p = 0.0, d = 0.0;
    measure_rows(alpha, costs, k, r0 + threadIdx.x, r1, blockDim.x, shift, move, recentre != 0, &p,
                 &d);
    sa[threadIdx.x] = p;
    sb[threadIdx.x] = d;
    block_sum(sa, sb);
    *phi = sa[0];
    *slope = sb[0];
  };
  auto shift_rows = [&](double t) {
    for (long long i = r0 + threadIdx.x; i < r1; i += blockDim.x)
      budget_row::shift_row(alpha + i * k, costs + i * k, k, t, alpha + i * k, recentre != 0);
  };
  const double budget = budgets[blockIdx.x];
  const double tol = relative_tolerance * (fabs(budget) > 1.0 ? fabs(budget) : 1.0);
  retract_rows(pass, shift_rows, budget, tol, max_passes, at_most != 0, widest, &shared,
               outcomes + blockIdx.x);
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
  __shared__ SearchShared shared;
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
  double widest = 0.0;
  for (unsigned b = 0; b < gridDim.x; ++b)
    widest = spread_partials[b] > widest ? spread_partials[b] : widest;
  __syncthreads();  // sa is reused by the passes
  int parity = 0;
  auto pass = [&](double shift, bool move, double* phi, double* slope) {
    double p = 0.0, d = 0.0;
    measure_rows(alpha, costs, k, first, n, stride, shift, move, recentre != 0, &p, &d);
    sa[threadIdx.x] = p;
    sb[threadIdx.x] = d;
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
      *phi = total_phi;
      *slope = total_slope;
    }
    parity ^= 1;
  };
  auto shift_rows = [&](double t) {
    for (long long i = first; i < n; i += stride)
      budget_row::shift_row(alpha + i * k, costs + i * k, k, t, alpha + i * k, recentre != 0);
  };
  const double tol = relative_tolerance * (fabs(budget) > 1.0 ? fabs(budget) : 1.0);
  retract_rows(pass, shift_rows, budget, tol, max_passes, at_most != 0, widest, &shared,
               blockIdx.x == 0 ? outcome : nullptr);
}

// ---- the tangent projection: v <- v - (<n, v> / <n, n>) n per instance, n the normal ----

// Sums a, b and c over the block into a[0], b[0], c[0] (fixed tree). Ends synchronised.
__device__ void block_sum3(double* a, double* b, double* c) {
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      a[threadIdx.x] += a[threadIdx.x + stride];
      b[threadIdx.x] += b[threadIdx.x + stride];
      c[threadIdx.x] += c[threadIdx.x + stride];
    }
    __syncthreads();
  }
}

// The normal of rows [r0, r1) with stride `step` from `first` (budget_row::normal, the CPU's
// row code), written to n, and this thread's share of C, <n, n> and <n, v>.
__device__ void normal_and_dots(const double* alpha, const double* costs, const double* v,
                                double* n, int k, long long first, long long r1, long long step,
                                double* expected, double* nn, double* nv) {
  *expected = 0.0;
  *nn = 0.0;
  *nv = 0.0;
  for (long long i = first; i < r1; i += step) {
    double* ni = n + i * k;
    *expected += budget_row::normal(alpha + i * k, costs + i * k, k, ni);
    for (int j = 0; j < k; ++j) {
      *nn += ni[j] * ni[j];
      *nv += ni[j] * v[i * k + j];
    }
  }
}

// <n, v> / <n, n> of one instance from its sums; NaN marks a degenerate (one-hot) instance,
// 0 an inactive at-most one.
__device__ double projection_coefficient(double expected, double nn, double nv, double budget,
                                         double relative_tolerance, int at_most) {
  const double tol = relative_tolerance * (fabs(budget) > 1.0 ? fabs(budget) : 1.0);
  if (at_most && expected < budget - tol) return 0.0;  // inactive: v is already tangent
  if (!(nn > 1e-300)) return nan("");
  return nv / nn;
}

// Many instances: one block each computes its normal, sums and coefficient.
__global__ void projection_coefficients_kernel(const double* alpha, const double* costs,
                                               const double* v, double* n, int k,
                                               const long long* starts, const double* budgets,
                                               double relative_tolerance, int at_most,
                                               double* coefficients) {
  __shared__ double se[kThreads];
  __shared__ double snn[kThreads];
  __shared__ double snv[kThreads];
  const long long r0 = starts[blockIdx.x], r1 = starts[blockIdx.x + 1];
  normal_and_dots(alpha, costs, v, n, k, r0 + threadIdx.x, r1, blockDim.x, &se[threadIdx.x],
                  &snn[threadIdx.x], &snv[threadIdx.x]);
  block_sum3(se, snn, snv);
  if (threadIdx.x == 0)
    coefficients[blockIdx.x] = projection_coefficient(se[0], snn[0], snv[0], budgets[blockIdx.x],
                                                      relative_tolerance, at_most);
}

// One large instance, step 1 of 2: every block writes its partial sums.
__global__ void projection_partials_kernel(const double* alpha, const double* costs,
                                           const double* v, double* n, long long rows, int k,
                                           double* partials) {
  __shared__ double se[kThreads];
  __shared__ double snn[kThreads];
  __shared__ double snv[kThreads];
  const long long first = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  normal_and_dots(alpha, costs, v, n, k, first, rows, step, &se[threadIdx.x], &snn[threadIdx.x],
                  &snv[threadIdx.x]);
  block_sum3(se, snn, snv);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = se[0];
    partials[gridDim.x + blockIdx.x] = snn[0];
    partials[2 * gridDim.x + blockIdx.x] = snv[0];
  }
}

// Step 2 of 2: one thread adds the partials in block order (deterministic).
__global__ void projection_total_kernel(const double* partials, int blocks, double budget,
                                        double relative_tolerance, int at_most,
                                        double* coefficient) {
  double e = 0.0, nn = 0.0, nv = 0.0;
  for (int b = 0; b < blocks; ++b) {
    e += partials[b];
    nn += partials[blocks + b];
    nv += partials[2 * blocks + b];
  }
  *coefficient = projection_coefficient(e, nn, nv, budget, relative_tolerance, at_most);
}

// v <- v - coefficient_b n for every row of every instance (one block per instance).
__global__ void projection_update_instances_kernel(double* v, const double* n, int k,
                                                   const long long* starts,
                                                   const double* coefficients) {
  const double coef = coefficients[blockIdx.x];
  if (coef == 0.0) return;
  const long long e0 = starts[blockIdx.x] * k, e1 = starts[blockIdx.x + 1] * k;
  for (long long e = e0 + threadIdx.x; e < e1; e += blockDim.x) v[e] -= coef * n[e];
}

// The same for one large instance, over the whole grid.
__global__ void projection_update_kernel(double* v, const double* n, long long entries,
                                         const double* coefficient) {
  const double coef = *coefficient;
  if (coef == 0.0) return;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < entries;
       e += step)
    v[e] -= coef * n[e];
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
  double* partials = nullptr;             // the cooperative kernel's (5 per grid block)
  double* vector = nullptr;               // the tangent projection's v (allocated at first use)
  double* normal = nullptr;               // and the normal it computes
  double* projection_partials = nullptr;  // 3 per grid block (large) or per instance
  double* coefficients = nullptr;         // <n, v> / <n, n> per instance (0: inactive)
  double* first_moment = nullptr;         // Adam's m, v and the trial point (at first step)
  double* second_moment = nullptr;
  double* trial = nullptr;
  int* flag = nullptr;  // the trial point's NaN / +inf check
  std::vector<double> host_budgets;
  long long n = 0;
  int k = 0, instances = 0, grid_blocks = 0;
  bool cooperative = false;      // one large instance: the grid-wide kernel
  bool vector_uploaded = false;  // upload_vector completed (every buffer it needs is there)
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
  cudaFree(r->vector);
  cudaFree(r->normal);
  cudaFree(r->projection_partials);
  cudaFree(r->coefficients);
  cudaFree(r->first_moment);
  cudaFree(r->second_moment);
  cudaFree(r->trial);
  cudaFree(r->flag);
  delete r;
}

int resident_instances(const ResidentInstances* r) { return r->instances; }

double copy_bandwidth(unsigned long long bytes, int repetitions) {
  const DeviceBuffer src(bytes), dst(bytes);  // freed on scope exit, as are the events
  struct Events {
    cudaEvent_t begin = nullptr, end = nullptr;
    ~Events() {
      if (begin != nullptr) cudaEventDestroy(begin);
      if (end != nullptr) cudaEventDestroy(end);
    }
  } events;
  check(cudaMemset(src.data, 1, bytes), "cudaMemset");
  check(cudaEventCreate(&events.begin), "event");
  check(cudaEventCreate(&events.end), "event");
  float best_ms = 0.0f;
  for (int i = 0; i <= repetitions; ++i) {  // the first copy warms up
    check(cudaEventRecord(events.begin), "event");
    check(cudaMemcpy(dst.data, src.data, bytes, cudaMemcpyDeviceToDevice), "copy");
    check(cudaEventRecord(events.end), "event");
    check(cudaEventSynchronize(events.end), "event");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, events.begin, events.end), "event time");
    if (i > 0 && (best_ms == 0.0f || ms < best_ms)) best_ms = ms;
  }
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
    check(
        cuda::launch_cooperative(retract_large_kernel, r->grid_blocks, kThreads, r->alpha, r->costs,
                                 r->n, r->k, r->host_budgets[0], relative_tolerance, max_passes,
                                 at_most ? 1 : 0, recentre ? 1 : 0, r->partials, r->outcomes),
        "retract_large_kernel launch");
  } else {
    TETHER_KERNEL_LAUNCH(r->instances, kThreads, retract_instances_kernel)
    (r->alpha, r->costs, r->k, r->starts, r->budgets, relative_tolerance, max_passes,
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

/// Allocates *p where it is still null.
template <class T>
void allocate_once(T** p, std::size_t bytes, const char* what) {
  if (*p == nullptr) check(cudaMalloc(p, bytes), what);
}

void upload_vector(ResidentInstances* r, const double* v) {
  const std::size_t bytes = sizeof(double) * static_cast<std::size_t>(r->n) * r->k;
  // Each buffer allocated where it is still missing (a failed allocation leaves the others).
  const int partial_count = r->cooperative ? 3 * r->grid_blocks : 1;
  allocate_once(&r->vector, bytes, "cudaMalloc vector");
  allocate_once(&r->normal, bytes, "cudaMalloc normal");
  allocate_once(&r->projection_partials, sizeof(double) * partial_count,
                "cudaMalloc projection partials");
  allocate_once(&r->coefficients, sizeof(double) * r->instances, "cudaMalloc coefficients");
  r->vector_uploaded = false;
  check(cudaMemcpy(r->vector, v, bytes, cudaMemcpyHostToDevice), "copy vector");
  r->vector_uploaded = true;
}

void download_vector(const ResidentInstances* r, double* v) {
  check(cudaMemcpy(v, r->vector, sizeof(double) * static_cast<std::size_t>(r->n) * r->k,
                   cudaMemcpyDeviceToHost),
        "copy vector back");
}

namespace {

// The tangent projection of the device vector v (n x k) at the resident logits; see
// project_resident.
bool project_buffer(ResidentInstances* r, double* v, double relative_tolerance, bool at_most) {
  const int at_most_flag = at_most ? 1 : 0;
  if (r->cooperative) {
    TETHER_KERNEL_LAUNCH(r->grid_blocks, kThreads, projection_partials_kernel)
    (r->alpha, r->costs, v, r->normal, r->n, r->k, r->projection_partials);
    check(cudaGetLastError(), "projection_partials_kernel launch");
    TETHER_KERNEL_LAUNCH(1, 1, projection_total_kernel)
    (r->projection_partials, r->grid_blocks, r->host_budgets[0], relative_tolerance, at_most_flag,
     r->coefficients);
    check(cudaGetLastError(), "projection_total_kernel launch");
  } else {
    TETHER_KERNEL_LAUNCH(r->instances, kThreads, projection_coefficients_kernel)
    (r->alpha, r->costs, v, r->normal, r->k, r->starts, r->budgets, relative_tolerance,
     at_most_flag, r->coefficients);
    check(cudaGetLastError(), "projection_coefficients_kernel launch");
  }
  // A degenerate instance (NaN coefficient) leaves every instance's v unchanged, as on the CPU:
  // the coefficients come back (one double per instance) before any update.
  std::vector<double> coefficients(static_cast<std::size_t>(r->instances));
  check(cudaMemcpy(coefficients.data(), r->coefficients, sizeof(double) * r->instances,
                   cudaMemcpyDeviceToHost),
        "copy coefficients");
  for (double c : coefficients)
    if (c != c) return false;
  if (r->cooperative) {
    TETHER_KERNEL_LAUNCH(r->grid_blocks, kThreads, projection_update_kernel)
    (v, r->normal, r->n * r->k, r->coefficients);
    check(cudaGetLastError(), "projection_update_kernel launch");
  } else {
    TETHER_KERNEL_LAUNCH(r->instances, kThreads, projection_update_instances_kernel)
    (v, r->normal, r->k, r->starts, r->coefficients);
    check(cudaGetLastError(), "projection_update_instances_kernel launch");
  }
  check(cudaDeviceSynchronize(), "projection update");
  return true;
}

// Adam's update of every entry (core/adam.cpp's formula, the same operations), writing the
// trial point x + delta instead of moving x.
__global__ void adam_trial_kernel(const double* x, const double* g, double* m, double* v,
                                  double* trial, long long entries, double b1, double b2, double c1,
                                  double c2, double lr, double eps, double wd) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long j = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; j < entries;
       j += step) {
    m[j] = __dadd_rn(__dmul_rn(b1, m[j]), __dmul_rn(1.0 - b1, g[j]));
    v[j] = __dadd_rn(__dmul_rn(b2, v[j]), __dmul_rn(__dmul_rn(1.0 - b2, g[j]), g[j]));
    double delta = __dmul_rn(-lr, m[j] / c1) / (sqrt(v[j] / c2) + eps);
    if (wd != 0.0) delta -= __dmul_rn(__dmul_rn(lr, wd), x[j]);
    trial[j] = x[j] + delta;
  }
}

// flag = 1 if some entry is NaN or +inf (-inf, a masked option, passes).
__global__ void non_finite_kernel(const double* x, long long entries, int* flag) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long j = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; j < entries;
       j += step)
    if (!(x[j] < HUGE_VAL)) *flag = 1;
}

unsigned elementwise_grid(long long entries) {
  const long long blocks = (entries + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

}  // namespace

bool project_resident(ResidentInstances* r, double relative_tolerance, bool at_most) {
  if (!r->vector_uploaded) throw Error("project_resident: no vector was uploaded");
  return project_buffer(r, r->vector, relative_tolerance, at_most);
}

AdamStepOutcome adam_step_resident(ResidentInstances* r, const AdamConstants& adam,
                                   double relative_tolerance, int max_passes, bool at_most,
                                   bool recentre, RetractionOutcome* outcomes) {
  if (!r->vector_uploaded) throw Error("adam_step_resident: no gradient was uploaded");
  const long long entries = r->n * r->k;
  const std::size_t bytes = sizeof(double) * static_cast<std::size_t>(entries);
  // The moments start at zero: kept only once zeroed (a failed memset leaves them unset).
  auto zeroed_once = [bytes](double** p, const char* what) {
    if (*p != nullptr) return;
    DeviceBuffer fresh(bytes);
    check(cudaMemset(fresh.data, 0, bytes), what);
    *p = static_cast<double*>(std::exchange(fresh.data, nullptr));
  };
  zeroed_once(&r->first_moment, "zero m");
  zeroed_once(&r->second_moment, "zero v");
  allocate_once(&r->trial, bytes, "cudaMalloc trial");
  allocate_once(&r->flag, sizeof(int), "cudaMalloc flag");
  AdamStepOutcome out;
  // 1. The gradient onto the tangent space at alpha.
  if (!project_buffer(r, r->vector, relative_tolerance, at_most)) {
    out.degenerate = true;
    return out;
  }
  // 2. Adam's moments and the trial point.
  TETHER_KERNEL_LAUNCH(elementwise_grid(entries), kThreads, adam_trial_kernel)
  (r->alpha, r->vector, r->first_moment, r->second_moment, r->trial, entries, adam.beta1,
   adam.beta2, adam.bias1, adam.bias2, adam.learning_rate, adam.epsilon, adam.weight_decay);
  check(cudaGetLastError(), "adam_trial_kernel launch");
  // 3. The retraction of the trial point (the resident kernels act on r->alpha: swap).
  std::swap(r->alpha, r->trial);
  try {
    retract_resident(r, relative_tolerance, max_passes, at_most, recentre, outcomes);
  } catch (...) {
    std::swap(r->alpha, r->trial);
    throw;
  }
  bool converged = true;
  for (int b = 0; b < r->instances; ++b) converged = converged && outcomes[b].converged != 0;
  check(cudaMemset(r->flag, 0, sizeof(int)), "zero flag");
  TETHER_KERNEL_LAUNCH(elementwise_grid(entries), kThreads, non_finite_kernel)
  (r->alpha, entries, r->flag);
  check(cudaGetLastError(), "non_finite_kernel launch");
  int bad = 0;
  check(cudaMemcpy(&bad, r->flag, sizeof(int), cudaMemcpyDeviceToHost), "copy flag");
  if (!converged || bad != 0) {
    std::swap(r->alpha, r->trial);  // alpha unchanged; the caller stops
    return out;
  }
  // 4. Accepted: transport the first moment (its projection at the new alpha).
  out.accepted = true;
  project_buffer(r, r->first_moment, relative_tolerance, at_most);
  return out;
}

}  // namespace tether::device::kernels
