// The retain-subspace projection of many gradients at once on the device, fused as the CPU's
// RetainProjector::project_explicit is: per block b of rows (offset o, n rows, basis Q_b of rank
// r), for every column x of the d x m gradients,
//   w = s .* x,   a = Q_b^T w   (sweep 1: reads x once; also |w|^2 and x's non-finite entries),
//   where |w|^2 - |a|^2 < |w|^2 / 4 (most of w lay in the span): a2 = Q_b^T (w - Q_b a)
//                                  (sweep 2, those columns only: "twice is enough"),
//   x <- s .* (w - Q_b a - Q_b a2)   (the last sweep: reads x and writes it, in place).
// So a column costs two reads and one write of its entries (three reads with the repeat), where
// the earlier cuBLAS path read it about six times (the check, two scalings, four dgemm).
//
// The sweeps take a tile of kTileRows rows per CUDA block: each thread holds kRowsPerThread rows,
// their basis entries in registers for kGroup basis columns at a time (grid.y runs over the
// groups: a basis wider than kGroup columns reads x once per group in sweep 1), and walks the m
// columns, reducing each column's kGroup dot products, |w|^2 and the non-finite count with a
// warp butterfly and the block's warps in order. A second kernel adds the tiles' sums per column
// in a fixed order, so the result does not depend on the schedule. Nothing is written before
// every block's entries have been checked: a non-finite entry leaves the gradients unchanged.
//
// The gradients are doubles or floats (a model's, as stored): float entries are converted
// exactly on load, every operation is done in double, and each result is rounded once to float
// on the write, so a float call gives the double call's result on the converted gradients,
// rounded (the CPU's float overload of RetainProjector::project_gradients does the same).
#include <cuda_runtime.h>

#include <string>
#include <tether/core/cuda_support.cuh>
#include <tether/solvers/retain_kernels.hpp>
#include <vector>

namespace tether::device::retain_kernels {

using cuda::check;
using cuda::DeviceBuffer;

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerThread = 4;
constexpr int kTileRows = kThreads * kRowsPerThread;
constexpr int kGroup = 8;          // basis columns per group (registers)
constexpr int kSums = kGroup + 2;  // a group's dot products, then |w|^2, the non-finite count
constexpr unsigned kFullMask = 0xffffffffu;
static_assert((kThreads & (kThreads - 1)) == 0, "the tile sums halve the block");

// The whitened entry w_i of a column whose raw entry is x, less Q_i a and then Q_i a2 (the
// column's first and repeated coefficients) where they are not nullptr. q points at row `local`
// of the block's basis (stride n).
__device__ inline double whitened(double x, double scale, const double* q, long long n, int rank,
                                  const double* a, const double* a2) {
  double w = scale * x;
  const double* coefficients[2] = {a, a2};
  for (const double* c : coefficients)
    if (c != nullptr)
      for (int k = 0; k < rank; ++k) w -= q[k * n] * c[k];
  return w;
}

// Sweep 1 (a == nullptr) or 2 (a: the first coefficients, rank x m; only the columns with
// repeat[j]): per tile, column and group, the group's dot products Q^T w, |w|^2 and the number
// of non-finite x (those two in the first sweep's group 0 only: the others leave them 0), into
// partial[((j * tiles + tile) * groups + group) * kSums + v]. G: double or float.
template <class G>
__global__ void dots_kernel(const G* x, long long d, long long m, const double* s, long long offset,
                            long long n, const double* q, int rank, const double* a,
                            const int* repeat, double* partial) {
  const long long tile = blockIdx.x, tiles = gridDim.x;
  const int group = static_cast<int>(blockIdx.y), groups = static_cast<int>(gridDim.y);
  const int k0 = group * kGroup;
  __shared__ double warp_sums[kWarps][kSums];
  double basis[kRowsPerThread][kGroup];
  long long local[kRowsPerThread];
  double scale[kRowsPerThread];
  for (int p = 0; p < kRowsPerThread; ++p) {
    local[p] = tile * kTileRows + p * kThreads + threadIdx.x;
    const bool in = local[p] < n;
    scale[p] = in && s != nullptr ? s[offset + local[p]] : 1.0;
    for (int k = 0; k < kGroup; ++k)
      basis[p][k] = in && k0 + k < rank ? q[local[p] + (k0 + k) * n] : 0.0;
  }
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const bool measure =
      group == 0 && a == nullptr;  // |w|^2 and the check: finish_kernel reads these
  for (long long j = 0; j < m; ++j) {
    if (repeat != nullptr && repeat[j] == 0) continue;  // the same for the whole block
    double sums[kSums] = {};
    for (int p = 0; p < kRowsPerThread; ++p) {
      if (local[p] >= n) continue;
      const double xv = static_cast<double>(x[offset + local[p] + j * d]);
      const double w = whitened(xv, scale[p], rank > 0 ? q + local[p] : nullptr, n, rank,
                                a != nullptr ? a + j * rank : nullptr, nullptr);
      for (int k = 0; k < kGroup; ++k) sums[k] += basis[p][k] * w;
      if (measure) {
        sums[kGroup] += w * w;
        sums[kGroup + 1] += xv - xv == 0.0 ? 0.0 : 1.0;  // inf - inf and NaN are NaN
      }
    }
    for (int v = 0; v < kSums; ++v)
      for (int width = 16; width > 0; width /= 2)
        sums[v] += __shfl_xor_sync(kFullMask, sums[v], width);
    if (lane == 0)
      for (int v = 0; v < kSums; ++v) warp_sums[warp][v] = sums[v];
    __syncthreads();
    if (threadIdx.x < kSums) {
      double total = 0.0;
      for (int w = 0; w < kWarps; ++w) total += warp_sums[w][threadIdx.x];
      partial[((j * tiles + tile) * groups + group) * kSums + threadIdx.x] = total;
    }
    __syncthreads();
  }
}

// One block per column j (with repeat[j], or every column when `first`): the tiles' sums added
// in order (thread t takes tiles t, t + kThreads, ..., then a tree), into coefficients[k + j *
// rank] (a, or a2); the first sweep also sets repeat[j] and, where x held a non-finite entry,
// *any_bad, and *any_repeat where a column repeats. `totals` holds groups * kSums doubles a
// column.
__global__ void finish_kernel(const double* partial, long long tiles, int groups, int rank,
                              bool first, double* coefficients, int* repeat, double* totals,
                              int* any_bad, int* any_repeat) {
  const long long j = blockIdx.x;
  if (!first && repeat[j] == 0) return;  // the same for the whole block
  __shared__ double tree[kThreads];
  const int values = groups * kSums;
  for (int v = 0; v < values; ++v) {
    double mine = 0.0;
    for (long long t = threadIdx.x; t < tiles; t += kThreads)
      mine += partial[(j * tiles + t) * values + v];
    tree[threadIdx.x] = mine;
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride /= 2) {
      if (static_cast<int>(threadIdx.x) < stride) tree[threadIdx.x] += tree[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) totals[j * values + v] = tree[0];
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  const double* t = totals + j * values;
  double removed = 0.0;
  for (int k = 0; k < rank; ++k) {
    const double c = t[(k / kGroup) * kSums + k % kGroup];
    coefficients[k + j * rank] = c;
    removed += c * c;
  }
  if (!first) return;
  const double norm = t[kGroup];  // group 0's |w|^2 and count
  if (t[kGroup + 1] != 0.0) *any_bad = 1;
  repeat[j] = rank > 0 && norm - removed < 0.25 * norm ? 1 : 0;
  if (repeat[j] != 0) *any_repeat = 1;
}

// The last sweep, in place: x <- s .* (s .* x - Q a - Q a2 where repeat[j]), rounded to G.
template <class G>
__global__ void apply_kernel(G* x, long long d, long long m, const double* s, long long offset,
                             long long n, const double* q, int rank, const double* a,
                             const double* a2, const int* repeat) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long local = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; local < n;
       local += step) {
    const double scale = s != nullptr ? s[offset + local] : 1.0;
    for (long long j = 0; j < m; ++j) {
      G* entry = x + offset + local + j * d;
      const bool projected = rank > 0;
      *entry = static_cast<G>(
          scale * whitened(static_cast<double>(*entry), scale, projected ? q + local : nullptr, n,
                           rank, projected ? a + j * rank : nullptr,
                           projected && repeat[j] != 0 ? a2 + j * rank : nullptr));
    }
  }
}

unsigned grid_for(long long entries) {
  const long long blocks = (entries + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

// A value that is not finite (NaN fails the comparison).
struct NonFinite {
  template <class V>
  __device__ bool operator()(V v) const {
    return !(v - v == V(0));
  }
};

}  // namespace

struct ResidentRetain {
  long long d = 0;
  DeviceBuffer s{0};
  std::vector<long long> offsets, sizes;
  std::vector<int> ranks;
  std::vector<DeviceBuffer> bases;
  DeviceBuffer check_partials{sizeof(long long) * (cuda::kRejectBlocks + 1)};
  DeviceBuffer flags{sizeof(int) * 2};  // any_bad, any_repeat
  // Scratch for the widest call so far (grown, then reused): per block b, the tiles' sums, the
  // column totals, a and a2 (rank x m each) and the repeat flags.
  mutable DeviceBuffer partial{0}, totals{0}, coefficients{0}, repeat{0};
  mutable long long scratch_columns = 0;
  long long partial_per_column = 0, totals_per_column = 0, coefficients_per_column = 0;

  static long long tiles(long long n) { return (n + kTileRows - 1) / kTileRows; }
  static int groups(int rank) { return rank > kGroup ? (rank + kGroup - 1) / kGroup : 1; }
};

ResidentRetain* create_retain(long long d, const double* s, int blocks, const long long* offsets,
                              const long long* sizes, const double* const* bases,
                              const int* ranks) {
  auto* r = new ResidentRetain;
  try {
    r->d = d;
    if (s != nullptr) r->s = cuda::upload(s, static_cast<std::size_t>(d), "copy whitening");
    r->offsets.assign(offsets, offsets + blocks);
    r->sizes.assign(sizes, sizes + blocks);
    r->ranks.assign(ranks, ranks + blocks);
    for (int b = 0; b < blocks; ++b) {
      if (ResidentRetain::groups(ranks[b]) > 65535)  // grid.y of the dots sweep
        throw Error("retain projection on the device: a basis of " + std::to_string(ranks[b]) +
                    " columns; at most " + std::to_string(65535 * kGroup));
      r->bases.push_back(cuda::upload(
          bases[b], static_cast<std::size_t>(sizes[b]) * static_cast<std::size_t>(ranks[b]),
          "basis"));
      const long long values = ResidentRetain::groups(ranks[b]) * kSums;
      r->partial_per_column += ResidentRetain::tiles(sizes[b]) * values;
      r->totals_per_column += values;
      r->coefficients_per_column += 2 * ranks[b];
    }
  } catch (...) {
    delete r;
    throw;
  }
  return r;
}

void destroy_retain(ResidentRetain* retain) { delete retain; }

namespace {

template <class G>
long long project_as(const ResidentRetain* r, G* x, long long m) {
  const long long d = r->d;
  if (d <= 0 || m <= 0) return -1;
  const std::size_t blocks = r->ranks.size();
  if (r->scratch_columns < m) {  // each allocated in full or the call fails before using it
    const auto doubles = [m](long long per_column) {
      return sizeof(double) * static_cast<std::size_t>(per_column > 0 ? per_column * m : 1);
    };
    r->partial = DeviceBuffer(doubles(r->partial_per_column));
    r->totals = DeviceBuffer(doubles(r->totals_per_column));
    r->coefficients = DeviceBuffer(doubles(r->coefficients_per_column));
    r->repeat = DeviceBuffer(sizeof(int) * static_cast<std::size_t>(blocks * m));
    r->scratch_columns = m;
  }
  int* any_bad = r->flags.as<int>();
  int* any_repeat = any_bad + 1;
  check(cudaMemset(any_bad, 0, 2 * sizeof(int)), "clear the flags");
  // Per block b: where its scratch starts.
  struct Slices {
    double *partial, *totals, *a, *a2;
    int* repeat;
  };
  std::vector<Slices> slices(blocks);
  {
    long long p = 0, t = 0, c = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
      slices[b] = {r->partial.as<double>() + p * m, r->totals.as<double>() + t * m,
                   r->coefficients.as<double>() + c * m,
                   r->coefficients.as<double>() + (c + r->ranks[b]) * m,
                   r->repeat.as<int>() + static_cast<long long>(b) * m};
      const long long values = ResidentRetain::groups(r->ranks[b]) * kSums;
      p += ResidentRetain::tiles(r->sizes[b]) * values;
      t += values;
      c += 2 * r->ranks[b];
    }
  }
  const double* s = r->s.as<double>();
  auto sweep = [&](std::size_t b, bool first) {
    const int rank = r->ranks[b], groups = ResidentRetain::groups(rank);
    const long long n = r->sizes[b], tiles = ResidentRetain::tiles(n);
    const Slices& at = slices[b];
    TETHER_KERNEL_LAUNCH(dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(groups)),
                         kThreads, dots_kernel<G>)
    (x, d, m, s, r->offsets[b], n, r->bases[b].as<double>(), rank, first ? nullptr : at.a,
     first ? nullptr : at.repeat, at.partial);
    check(cudaGetLastError(), "dots_kernel launch");
    TETHER_KERNEL_LAUNCH(static_cast<unsigned>(m), kThreads, finish_kernel)
    (at.partial, tiles, groups, rank, first, first ? at.a : at.a2, at.repeat, at.totals, any_bad,
     any_repeat);
    check(cudaGetLastError(), "finish_kernel launch");
  };
  for (std::size_t b = 0; b < blocks; ++b) sweep(b, true);
  int status[2] = {0, 0};
  check(cudaMemcpy(status, any_bad, sizeof status, cudaMemcpyDeviceToHost), "copy the flags back");
  if (status[0] != 0) {  // a non-finite entry: found, named by the caller; nothing was written
    const long long bad =
        cuda::first_rejected(x, d * m, NonFinite{}, r->check_partials.as<long long>());
    if (bad >= 0) return bad;
  }
  if (status[1] != 0)
    for (std::size_t b = 0; b < blocks; ++b)
      if (r->ranks[b] > 0) sweep(b, false);
  for (std::size_t b = 0; b < blocks; ++b) {
    if (r->ranks[b] == 0 && s == nullptr) continue;  // rows left as they are
    TETHER_KERNEL_LAUNCH(grid_for(r->sizes[b]), kThreads, apply_kernel<G>)
    (x, d, m, s, r->offsets[b], r->sizes[b], r->bases[b].as<double>(), r->ranks[b], slices[b].a,
     slices[b].a2, slices[b].repeat);
    check(cudaGetLastError(), "apply_kernel launch");
  }
  check(cudaDeviceSynchronize(), "the projection");
  return -1;
}

}  // namespace

long long project(const ResidentRetain* r, double* x, long long m) { return project_as(r, x, m); }
long long project(const ResidentRetain* r, float* x, long long m) { return project_as(r, x, m); }

}  // namespace tether::device::retain_kernels
