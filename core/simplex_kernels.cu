// CUDA kernels of the simplex-type projections, calling the same per-row functions as the CPU
// path (core/simplex_row.hpp).
//   Threshold sets (simplex, l1 ball): one warp per row. The lanes read the row coalesced for
//   the passes over the whole row (the scan, the candidates' compaction in index order by warp
//   ballots, the write); lane 0 runs the part on the candidates (tighten, Condat's pass or the
//   sort of the candidates, the closed forms), which is short, and, if a threshold is not clear
//   of the bound, the whole-row finish. The sort-based variant heapsorts the candidates; the CPU
//   sorts with std::sort, which gives the same sorted sequence.
//   Box section, Newton: one warp per row. The lanes run the bracketing passes over the row
//   (coalesced, warp sums that every lane holds bit for bit, so every lane takes the same
//   steps), the reduce (the undecided entries' columns gathered in index order by ballots), the
//   same passes over each gathered rest, and the write; the exact part on the few entries left
//   is the same short computation in every lane. Lane 0
//   runs the whole-row method where the bracketing declines. The sort-based variant: one thread
//   per row.
#include <cuda_runtime.h>

#include <string>
#include <tether/core/box_section_row.hpp>
#include <tether/core/cuda_support.cuh>
#include <tether/core/errors.hpp>
#include <tether/core/simplex_kernels.hpp>
#include <tether/core/simplex_row.hpp>
#include <tuple>
#include <vector>

#if defined(TETHER_CUDA_EMULATION)
namespace tether::simplex_row {
/// For the CUDA emulator's argument check: the set's arrays must be device memory.
template <class T>
auto device_pointers(const BasicBoxSectionRow<T>& s) {
  return std::tuple(s.lower, s.upper, s.weight);
}
}  // namespace tether::simplex_row
#endif

namespace tether::device::simplex_kernels {

namespace {

namespace row = simplex_row;

constexpr int kThreads = 128;

// Scratch per entry of a row: the box section's gathered columns (row::kBoxWorkPerEntry); the
// sort-based and threshold kernels use two of them.
constexpr long long kScratchPerEntry = row::kBoxWorkPerEntry;

using cuda::check;
using cuda::DeviceBuffer;

constexpr unsigned kFullMask = 0xffffffffu;

// Warp sums and maxima: every lane ends with the total (butterfly; the order is fixed).
template <class T>
__device__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
template <class Key>
__device__ Key warp_max(Key v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const Key other = __shfl_xor_sync(kFullMask, v, offset);
    v = other > v ? other : v;
  }
  return v;
}

// One warp per row (blockDim.x a multiple of 32).
template <bool kAbs, class T>
__device__ void threshold_row_warp(T* y, long long n, T z, bool sorted, T* work, int* status,
                                   long long* index) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  // The scan (row::scan_row's quantities, lane-strided, then warp-reduced).
  using Key = bits::Key<T>;
  T probe = 0, abs_sum = 0;
  Key top = bits::order_key(row::value<kAbs>(y, 0));
  for (long long i = lane; i < n; i += 32) {
    const T v = row::value<kAbs>(y, i);
    probe += y[i] - y[i];
    if (kAbs) abs_sum += v;
    const Key key = bits::order_key(v);
    top = key > top ? key : top;
  }
  probe = warp_sum(probe);
  abs_sum = warp_sum(abs_sum);
  top = warp_max(top);
  if (probe != T(0)) {  // NaN or inf somewhere
    if (lane == 0) {
      *status = row::kNonFinite;
      *index = row::first_non_finite(y, n);
    }
    return;
  }
  if (lane == 0) {
    *status = row::kOk;
    *index = -1;
  }
  if (kAbs && row::l1_inside(y, n, z, abs_sum)) return;  // left as it is
  if (z == T(0)) {
    for (long long i = lane; i < n; i += 32) y[i] = T(0);
    return;
  }
  // The candidates, compacted in index order: each round of 32 entries takes one ballot.
  const T largest = bits::of_order_key(top);
  const T bound = (largest - z) - row::mul(fabs(largest) + z, row::Precision<T>::margin);
  long long m = 0;
  for (long long base = 0; base < n; base += 32) {
    const long long i = base + lane;
    const T v = i < n ? row::value<kAbs>(y, i) : T(0);
    const bool keep = i < n && v > bound;
    const unsigned ballot = __ballot_sync(kFullMask, keep);
    if (keep) work[m + __popc(ballot & ((1u << lane) - 1u))] = v;
    m += __popc(ballot);
  }
  __syncwarp();
  // Lane 0: the part on the candidates, and the whole-row fallback.
  T tau_hi = 0, tau_lo = 0;
  int clear = 0;
  if (lane == 0) {
    T tau_estimate = 0;
    row::BasicSplit<T> tau;
    const bool ok =
        sorted ? row::threshold_on_candidates(work, n, m, z, largest, bound,
                                              row::SortedEstimate<T, row::HeapSort>{{}, z},
                                              &tau_estimate, &tau)
               : row::threshold_on_candidates(work, n, m, z, largest, bound,
                                              row::CondatEstimate<T>{z}, &tau_estimate, &tau);
    if (ok) {
      clear = 1;
      tau_hi = tau.hi;
      tau_lo = tau.lo;
    } else {
      const row::RowResult finished = row::simplex_finish<kAbs>(y, n, z, tau_estimate);
      *status = finished.status;
    }
  }
  clear = __shfl_sync(kFullMask, clear, 0);
  if (!clear) return;  // lane 0 wrote the row (or its status)
  row::BasicSplit<T> tau;
  tau.hi = __shfl_sync(kFullMask, tau_hi, 0);
  tau.lo = __shfl_sync(kFullMask, tau_lo, 0);
  for (long long i = lane; i < n; i += 32) y[i] = row::thresholded<kAbs>(y[i], tau);
}

template <class T>
__global__ void threshold_warp_kernel(T* x, long long rows, long long n, long long stride, T z,
                                      bool l1, bool sorted, T* scratch, int* status,
                                      long long* index) {
  const long long r = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (r >= rows) return;  // whole warps leave together (blockDim.x is a multiple of 32)
  T* y = x + r * stride;
  T* work = scratch + kScratchPerEntry * r * n;
  if (l1)
    threshold_row_warp<true>(y, n, z, sorted, work, status + r, index + r);
  else
    threshold_row_warp<false>(y, n, z, sorted, work, status + r, index + r);
}

// ---- box section: one warp per row ---------------------------------------------------------

// The warp's smallest key (butterfly: every lane ends with it).
template <class Key>
__device__ Key warp_min(Key v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const Key other = __shfl_xor_sync(kFullMask, v, offset);
    v = other < v ? other : v;
  }
  return v;
}

// The passes of row::box_section_bracketed_by over one row, by a warp: lane l takes entries
// l, l + 32, ... (coalesced), and every pass ends in warp sums that every lane holds, bit for
// bit the same (the butterfly adds the same pairs in every lane), so every lane runs the
// bracketing with the same numbers and takes the same steps; the part on the few undecided
// entries is then the same short computation in every lane.
template <class Layout>
struct WarpPasses {
  using T = typename Layout::Scalar;
  using Scalar = T;
  T* y;
  long long n;
  Layout s;

  __device__ static int lane() { return static_cast<int>(threadIdx.x % 32); }

  __device__ row::BoxScan<T> scan() const {
    row::BoxScan<T> mine, all;
    for (long long k = lane(); k < n; k += 32)
      mine.add(row::box_scan_terms(y[k], s.w(k), s.l(k), s.u(k)));
    all.add(row::BoxScanTerms<T>{warp_sum(mine.probe), warp_sum(mine.wy), warp_sum(mine.ww),
                                 warp_sum(mine.wu), warp_sum(mine.wl), warp_sum(mine.w_abs_y),
                                 warp_sum(mine.w_bound)});
    return all;
  }
  __device__ row::BoxLine<T> line(T lambda) const {
    row::BoxLine<T> mine;
    for (long long k = lane(); k < n; k += 32) {
      const row::BoxLine<T> t = row::box_line_terms(y[k], s.w(k), s.l(k), s.u(k), lambda);
      mine.excess += t.excess;
      mine.slope += t.slope;
    }
    return row::BoxLine<T>{warp_sum(mine.excess), warp_sum(mine.slope)};
  }
  __device__ T line_error(T lambda) const {
    T mine = 0;
    for (long long k = lane(); k < n; k += 32)
      mine += row::box_line_error_term(y[k], s.w(k), s.l(k), s.u(k), lambda);
    return warp_sum(mine);
  }
  __device__ row::BoxEnds<T> ends() const {
    row::BoxEnds<T> mine;
    for (long long k = lane(); k < n; k += 32)
      mine.add(row::lower_breakpoint_key(y[k], s.w(k), s.u(k)),
               row::upper_breakpoint_key(y[k], s.w(k), s.l(k)));
    row::BoxEnds<T> all;
    all.add(warp_min(mine.a_min), warp_max(mine.b_max));
    return all;
  }
  // What the bracket decides (each lane's two-sum pairs, added in lane order by every lane) and
  // the undecided entries' columns in index order (a ballot per 32 entries). In place when rest
  // is these passes' own columns: every lane reads its entry before the ballot, and an entry
  // goes to m + rank <= its index.
  __device__ long long reduce(T lo, T hi, row::BoxDecided<T>* decided,
                              const row::BoxColumns<T>& rest) const {
    T offset = 0, offset_error = 0, slope = 0, slope_error = 0;
    long long m = 0;
    for (long long base = 0; base < n; base += 32) {
      const long long k = base + lane();
      bool undecided = false;
      T yk = 0, wk = 0, lk = 0, uk = 0;
      if (k < n) {
        yk = y[k];
        wk = s.w(k);
        lk = s.l(k);
        uk = s.u(k);
        const row::BoxDecision<T> d = row::box_decision(yk, wk, lk, uk, lo, hi);
        row::two_sum_into(&offset, &offset_error, d.offset, d.offset_error);
        row::two_sum_into(&slope, &slope_error, d.slope, d.slope_error);
        undecided = d.undecided;
      }
      const unsigned ballot = __ballot_sync(kFullMask, undecided);
      if (undecided) {
        const long long at = m + __popc(ballot & ((1u << lane()) - 1u));
        rest.y[at] = yk;
        rest.w[at] = wk;
        rest.l[at] = lk;
        rest.u[at] = uk;
      }
      m += __popc(ballot);
    }
    for (int l = 0; l < 32; ++l) decided->offset.add(__shfl_sync(kFullMask, offset, l));
    for (int l = 0; l < 32; ++l) decided->offset.add(__shfl_sync(kFullMask, offset_error, l));
    for (int l = 0; l < 32; ++l) decided->slope.add(__shfl_sync(kFullMask, slope, l));
    for (int l = 0; l < 32; ++l) decided->slope.add(__shfl_sync(kFullMask, slope_error, l));
    __syncwarp();  // the columns, for every lane's reads
    return m;
  }
  __device__ void write(const row::BasicSplit<T>& lambda) const {
    for (long long k = lane(); k < n; k += 32)
      y[k] = row::box_clamped(y[k], lambda, s.w(k), s.l(k), s.u(k));
  }
};

// One warp per row (Newton: bracketed by the warp, the whole-row method by lane 0 where the
// bracketing declines); one thread per row for the sort-based variant.
template <class T>
__global__ void box_section_newton_kernel(T* x, long long rows, long long n, long long stride,
                                          row::BasicBoxSectionRow<T> set, T* scratch, int* status,
                                          long long* index) {
  const long long r = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (r >= rows) return;  // whole warps leave together (blockDim.x is a multiple of 32)
  T* y = x + r * stride;
  row::RowResult result;
  const bool bracketed = row::box_section_bracketed<WarpPasses>(
      y, n, set, scratch + kScratchPerEntry * r * n, &result);
  __syncwarp();
  if (threadIdx.x % 32 != 0) return;
  if (!bracketed) result = row::box_section_newton_whole(y, n, set);
  status[r] = result.status;
  index[r] = result.index;
}

template <class T>
__global__ void box_section_sorted_kernel(T* x, long long rows, long long n, long long stride,
                                          row::BasicBoxSectionRow<T> set, T* scratch, int* status,
                                          long long* index) {
  const long long r = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  const row::RowResult result = row::box_section_sorted(
      x + r * stride, n, set, scratch + kScratchPerEntry * r * n, row::HeapSort{});
  status[r] = result.status;
  index[r] = result.index;
}

void copy_status_back(const DeviceBuffer& d_status, const DeviceBuffer& d_index, long long rows,
                      int* status, long long* index) {
  check(cudaMemcpy(status, d_status.data, sizeof(int) * rows, cudaMemcpyDeviceToHost),
        "copy status");
  check(cudaMemcpy(index, d_index.data, sizeof(long long) * rows, cudaMemcpyDeviceToHost),
        "copy index");
}

/// Copies `rows` rows of n values between pitched host and contiguous device memory (pitches in
/// values).
template <class T>
void copy_rows(T* to, long long to_pitch, const T* from, long long from_pitch, long long n,
               long long rows, cudaMemcpyKind kind, const char* what) {
  check(cudaMemcpy2D(to, sizeof(T) * to_pitch, from, sizeof(T) * from_pitch, sizeof(T) * n, rows,
                     kind),
        what);
}

/// The warp kernel on rows x n contiguous rows on the device; statuses back to the host.
template <class T>
void launch_threshold(T* x, long long rows, long long n, T z, bool l1, bool sorted, T* scratch,
                      const DeviceBuffer& d_status, const DeviceBuffer& d_index, int* status,
                      long long* index) {
  const long long warps_per_block = kThreads / 32;
  const long long blocks = (rows + warps_per_block - 1) / warps_per_block;
  TETHER_KERNEL_LAUNCH(static_cast<unsigned>(blocks), kThreads, threshold_warp_kernel<T>)
  (x, rows, n, n, z, l1, sorted, scratch, d_status.as<int>(), d_index.as<long long>());
  check(cudaGetLastError(), "threshold_warp_kernel launch");
  copy_status_back(d_status, d_index, rows, status, index);  // synchronises
}

/// The batch copied to the device (rows `stride` values apart on the host), projected there
/// and copied back.
template <class T>
void threshold_rows_copied(T* x, long long rows, long long n, long long stride, T z, bool l1,
                           bool sorted, int* status, long long* index) {
  const auto entries = static_cast<std::size_t>(rows * n);
  DeviceBuffer d_x(sizeof(T) * entries), d_scratch(sizeof(T) * kScratchPerEntry * entries),
      d_status(sizeof(int) * static_cast<std::size_t>(rows)),
      d_index(sizeof(long long) * static_cast<std::size_t>(rows));
  copy_rows(d_x.as<T>(), n, x, stride, n, rows, cudaMemcpyHostToDevice, "copy x");
  launch_threshold(d_x.as<T>(), rows, n, z, l1, sorted, d_scratch.as<T>(), d_status, d_index,
                   status, index);
  copy_rows(x, stride, d_x.as<T>(), n, n, rows, cudaMemcpyDeviceToHost, "copy x back");
}

/// The box-section kernels on rows x n contiguous rows on the device (the set's arrays are
/// host pointers, uploaded here); statuses back to the host.
template <class T>
void launch_box_section(T* x, long long rows, long long n, const T* lower, long long lower_size,
                        const T* upper, long long upper_size, const T* weight,
                        long long weight_size, T total, bool sorted, T* scratch,
                        const DeviceBuffer& d_status, const DeviceBuffer& d_index, int* status,
                        long long* index) {
  const DeviceBuffer d_lower = cuda::upload(lower, static_cast<std::size_t>(lower_size), "lower");
  const DeviceBuffer d_upper = cuda::upload(upper, static_cast<std::size_t>(upper_size), "upper");
  const DeviceBuffer d_weight =
      cuda::upload(weight, static_cast<std::size_t>(weight_size), "weight");
  const row::BasicBoxSectionRow<T> set{d_lower.as<const T>(),
                                       d_upper.as<const T>(),
                                       d_weight.as<const T>(),
                                       lower_size == 1 ? 0LL : 1LL,
                                       upper_size == 1 ? 0LL : 1LL,
                                       weight_size == 1 ? 0LL : 1LL,
                                       total};
  if (sorted) {
    const long long blocks = (rows + kThreads - 1) / kThreads;
    TETHER_KERNEL_LAUNCH(static_cast<unsigned>(blocks), kThreads, box_section_sorted_kernel<T>)
    (x, rows, n, n, set, scratch, d_status.as<int>(), d_index.as<long long>());
  } else {
    const long long warps_per_block = kThreads / 32;
    const long long blocks = (rows + warps_per_block - 1) / warps_per_block;
    TETHER_KERNEL_LAUNCH(static_cast<unsigned>(blocks), kThreads, box_section_newton_kernel<T>)
    (x, rows, n, n, set, scratch, d_status.as<int>(), d_index.as<long long>());
  }
  check(cudaGetLastError(), "box_section kernel launch");
  copy_status_back(d_status, d_index, rows, status, index);  // synchronises
}

/// The batch copied to the device, projected onto the box section there, and copied back.
template <class T>
void box_section_rows_copied(T* x, long long rows, long long n, long long stride, const T* lower,
                             long long lower_size, const T* upper, long long upper_size,
                             const T* weight, long long weight_size, T total, bool sorted,
                             int* status, long long* index) {
  const auto entries = static_cast<std::size_t>(rows * n);
  DeviceBuffer d_x(sizeof(T) * entries), d_scratch(sizeof(T) * kScratchPerEntry * entries),
      d_status(sizeof(int) * static_cast<std::size_t>(rows)),
      d_index(sizeof(long long) * static_cast<std::size_t>(rows));
  copy_rows(d_x.as<T>(), n, x, stride, n, rows, cudaMemcpyHostToDevice, "copy x");
  launch_box_section(d_x.as<T>(), rows, n, lower, lower_size, upper, upper_size, weight,
                     weight_size, total, sorted, d_scratch.as<T>(), d_status, d_index, status,
                     index);
  copy_rows(x, stride, d_x.as<T>(), n, n, rows, cudaMemcpyDeviceToHost, "copy x back");
}

}  // namespace

int device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

struct ResidentRows {
  long long rows = 0, n = 0;
  DeviceBuffer x, scratch, status, index;
  ResidentRows(long long r, long long cols)
      : rows(r),
        n(cols),
        x(sizeof(double) * static_cast<std::size_t>(r * cols)),
        scratch(sizeof(double) * static_cast<std::size_t>(kScratchPerEntry * r * cols)),
        status(sizeof(int) * static_cast<std::size_t>(r)),
        index(sizeof(long long) * static_cast<std::size_t>(r)) {}
};

ResidentRows* create_rows(long long rows, long long n) { return new ResidentRows(rows, n); }

void destroy_rows(ResidentRows* r) { delete r; }

void upload_rows(ResidentRows* r, const double* x, long long stride) {
  check(cudaMemcpy2D(r->x.data, sizeof(double) * r->n, x, sizeof(double) * stride,
                     sizeof(double) * r->n, r->rows, cudaMemcpyHostToDevice),
        "copy x");
}

void download_rows(const ResidentRows* r, double* x, long long stride) {
  check(cudaMemcpy2D(x, sizeof(double) * stride, r->x.data, sizeof(double) * r->n,
                     sizeof(double) * r->n, r->rows, cudaMemcpyDeviceToHost),
        "copy x back");
}

void threshold_resident(ResidentRows* r, double z, bool l1, bool sorted, int* status,
                        long long* index) {
  launch_threshold(r->x.as<double>(), r->rows, r->n, z, l1, sorted, r->scratch.as<double>(),
                   r->status, r->index, status, index);
}

void threshold_rows(double* x, long long rows, long long n, long long stride, double z, bool l1,
                    bool sorted, int* status, long long* index) {
  threshold_rows_copied(x, rows, n, stride, z, l1, sorted, status, index);
}

void threshold_rows(float* x, long long rows, long long n, long long stride, float z, bool l1,
                    bool sorted, int* status, long long* index) {
  threshold_rows_copied(x, rows, n, stride, z, l1, sorted, status, index);
}

void box_section_resident(ResidentRows* r, const double* lower, long long lower_size,
                          const double* upper, long long upper_size, const double* weight,
                          long long weight_size, double total, bool sorted, int* status,
                          long long* index) {
  launch_box_section(r->x.as<double>(), r->rows, r->n, lower, lower_size, upper, upper_size, weight,
                     weight_size, total, sorted, r->scratch.as<double>(), r->status, r->index,
                     status, index);
}

void box_section_rows(double* x, long long rows, long long n, long long stride, const double* lower,
                      long long lower_size, const double* upper, long long upper_size,
                      const double* weight, long long weight_size, double total, bool sorted,
                      int* status, long long* index) {
  box_section_rows_copied(x, rows, n, stride, lower, lower_size, upper, upper_size, weight,
                          weight_size, total, sorted, status, index);
}

void box_section_rows(float* x, long long rows, long long n, long long stride, const float* lower,
                      long long lower_size, const float* upper, long long upper_size,
                      const float* weight, long long weight_size, float total, bool sorted,
                      int* status, long long* index) {
  box_section_rows_copied(x, rows, n, stride, lower, lower_size, upper, upper_size, weight,
                          weight_size, total, sorted, status, index);
}

}  // namespace tether::device::simplex_kernels
