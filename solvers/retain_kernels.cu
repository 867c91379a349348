// The retain-subspace projection of many gradients at once on the device: whitening and
// unwhitening are one elementwise kernel each, the projection per block two cuBLAS dgemm
// (C = Q^T Z, then Z -= Q C), done twice; in place on device-resident gradients, the whitening
// and the bases uploaded once (ResidentRetain).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <tether/core/cuda_support.cuh>
#include <tether/solvers/retain_kernels.hpp>
#include <vector>

namespace tether::device::retain_kernels {

using cuda::check;
using cuda::DeviceBuffer;

// Outside the anonymous namespace: ResidentRetain (declared in the header) holds a Handle.
void check_blas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLAS: ") + what + ": status " + std::to_string(status));
}

struct Handle {
  cublasHandle_t handle = nullptr;
  Handle() { check_blas(cublasCreate(&handle), "cublasCreate"); }
  ~Handle() { cublasDestroy(handle); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

namespace {

// z[i + j d] *= s[i] for the d x m matrix z.
__global__ void scale_rows(double* z, const double* s, long long d, long long m) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long e = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; e < d * m;
       e += step)
    z[e] *= s[e % d];
}

constexpr int kThreads = 256;

unsigned grid_for(long long entries) {
  const long long blocks = (entries + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

// A value that is not finite (NaN fails the comparison).
struct NonFinite {
  __device__ bool operator()(double v) const { return !(v - v == 0.0); }
};

}  // namespace

struct ResidentRetain {
  long long d = 0;
  int widest = 0;
  Handle blas;
  DeviceBuffer s{0};
  std::vector<long long> offsets, sizes;
  std::vector<int> ranks;
  std::vector<DeviceBuffer> bases;
  DeviceBuffer check_partials{sizeof(long long) * (cuda::kRejectBlocks + 1)};
  mutable DeviceBuffer c{0};  // Q^T Z of the widest block, grown to the widest call
  mutable long long c_columns = 0;
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
      r->widest = ranks[b] > r->widest ? ranks[b] : r->widest;
      r->bases.push_back(cuda::upload(
          bases[b], static_cast<std::size_t>(sizes[b]) * static_cast<std::size_t>(ranks[b]),
          "basis"));
    }
  } catch (...) {
    delete r;
    throw;
  }
  return r;
}

void destroy_retain(ResidentRetain* retain) { delete retain; }

long long project(const ResidentRetain* r, double* z, long long m, bool check_values) {
  const long long d = r->d;
  if (d <= 0 || m <= 0) return -1;
  if (check_values) {
    const long long bad =
        cuda::first_rejected(z, d * m, NonFinite{}, r->check_partials.as<long long>());
    if (bad >= 0) return bad;
  }
  if (r->c_columns < m) {
    r->c = DeviceBuffer(sizeof(double) * static_cast<std::size_t>(r->widest > 0 ? r->widest : 1) *
                        static_cast<std::size_t>(m));
    r->c_columns = m;
  }
  if (r->s.data != nullptr) {
    TETHER_KERNEL_LAUNCH(grid_for(d * m), kThreads, scale_rows)(z, r->s.as<double>(), d, m);
    check(cudaGetLastError(), "scale_rows launch");
  }
  const double one = 1.0, zero = 0.0, minus_one = -1.0;
  for (std::size_t b = 0; b < r->ranks.size(); ++b) {
    const int rank = r->ranks[b];
    if (rank == 0) continue;
    const long long n = r->sizes[b];
    const double* q = r->bases[b].as<double>();
    double* zb = z + r->offsets[b];  // the block's rows of every column (ld = d)
    for (int pass = 0; pass < 2; ++pass) {
      check_blas(cublasDgemm(r->blas.handle, CUBLAS_OP_T, CUBLAS_OP_N, rank, static_cast<int>(m),
                             static_cast<int>(n), &one, q, static_cast<int>(n), zb,
                             static_cast<int>(d), &zero, r->c.as<double>(), rank),
                 "C = Q^T Z");
      check_blas(cublasDgemm(r->blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n),
                             static_cast<int>(m), rank, &minus_one, q, static_cast<int>(n),
                             r->c.as<double>(), rank, &one, zb, static_cast<int>(d)),
                 "Z -= Q C");
    }
  }
  if (r->s.data != nullptr) {
    TETHER_KERNEL_LAUNCH(grid_for(d * m), kThreads, scale_rows)(z, r->s.as<double>(), d, m);
    check(cudaGetLastError(), "scale_rows launch");
  }
  check(cudaDeviceSynchronize(), "the projection");
  return -1;
}

}  // namespace tether::device::retain_kernels
