// The retain-subspace projection of many gradients at once on the device: whitening and
// unwhitening are one elementwise kernel each, the projection per block two cuBLAS dgemm
// (C = Q^T Z, then Z -= Q C), done twice.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <tether/core/cuda_support.cuh>
#include <tether/solvers/retain_kernels.hpp>

namespace tether::device::retain_kernels {

namespace {

using cuda::check;
using cuda::DeviceBuffer;

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

}  // namespace

void project_gradients(const double* g, long long d, long long m, const double* s, int blocks,
                       const long long* offsets, const long long* sizes, const double* const* bases,
                       const int* ranks, double* out) {
  if (d <= 0 || m <= 0) return;
  Handle blas;
  const std::size_t entries = static_cast<std::size_t>(d) * static_cast<std::size_t>(m);
  DeviceBuffer z = cuda::upload(g, entries, "copy gradients");
  DeviceBuffer d_s(s != nullptr ? sizeof(double) * static_cast<std::size_t>(d) : 0);
  if (s != nullptr) {
    check(cudaMemcpy(d_s.data, s, sizeof(double) * static_cast<std::size_t>(d),
                     cudaMemcpyHostToDevice),
          "copy whitening");
    TETHER_KERNEL_LAUNCH(grid_for(d * m), kThreads, scale_rows)
    (z.as<double>(), d_s.as<double>(), d, m);
    check(cudaGetLastError(), "scale_rows launch");
  }
  int widest = 0;
  for (int b = 0; b < blocks; ++b) widest = ranks[b] > widest ? ranks[b] : widest;
  DeviceBuffer c(sizeof(double) * static_cast<std::size_t>(widest > 0 ? widest : 1) *
                 static_cast<std::size_t>(m));
  const double one = 1.0, zero = 0.0, minus_one = -1.0;
  for (int b = 0; b < blocks; ++b) {
    const int r = ranks[b];
    if (r == 0) continue;
    const long long n = sizes[b];
    const DeviceBuffer q =
        cuda::upload(bases[b], static_cast<std::size_t>(n) * static_cast<std::size_t>(r), "basis");
    double* zb = z.as<double>() + offsets[b];  // the block's rows of every column (ld = d)
    for (int pass = 0; pass < 2; ++pass) {
      check_blas(cublasDgemm(blas.handle, CUBLAS_OP_T, CUBLAS_OP_N, r, static_cast<int>(m),
                             static_cast<int>(n), &one, q.as<double>(), static_cast<int>(n), zb,
                             static_cast<int>(d), &zero, c.as<double>(), r),
                 "C = Q^T Z");
      check_blas(cublasDgemm(blas.handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n),
                             static_cast<int>(m), r, &minus_one, q.as<double>(),
                             static_cast<int>(n), c.as<double>(), r, &one, zb, static_cast<int>(d)),
                 "Z -= Q C");
    }
  }
  if (s != nullptr) {
    TETHER_KERNEL_LAUNCH(grid_for(d * m), kThreads, scale_rows)
    (z.as<double>(), d_s.as<double>(), d, m);
    check(cudaGetLastError(), "scale_rows launch");
  }
  check(cudaMemcpy(out, z.data, sizeof(double) * entries, cudaMemcpyDeviceToHost),
        "copy projections back");
}

}  // namespace tether::device::retain_kernels
