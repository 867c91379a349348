#include <cuda_runtime.h>

#include <string>
#include <tether/core/errors.hpp>
#include <tether/manifolds/budget_kernels.hpp>
#include <tether/manifolds/budget_row.hpp>
#include <vector>

namespace tether::device::kernels {

namespace {

constexpr int kThreads = 256;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
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
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      phi[threadIdx.x] += phi[threadIdx.x + stride];
      slope[threadIdx.x] += slope[threadIdx.x + stride];
    }
    __syncthreads();
  }
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
