// CUDA kernels of the simplex-type projections: one thread per row (a first slice; a warp or
// block per row, reading the row coalesced, is the next step), calling the same per-row
// functions as the CPU path (core/simplex_row.hpp). The sort-based variants heapsort each row's
// scratch copy; the CPU sorts with std::sort, which gives the same sorted sequence.
#include <cuda_runtime.h>

#include <string>
#include <tether/core/cuda_support.cuh>
#include <tether/core/errors.hpp>
#include <tether/core/simplex_kernels.hpp>
#include <tether/core/simplex_row.hpp>
#include <vector>

namespace tether::device::simplex_kernels {

namespace {

namespace row = simplex_row;

constexpr int kThreads = 128;

using cuda::check;
using cuda::DeviceBuffer;

__global__ void threshold_kernel(double* x, long long rows, long long n, long long stride, double z,
                                 bool l1, bool sorted, double* scratch, int* status,
                                 long long* index) {
  const long long r = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  double* y = x + r * stride;
  double* work = scratch + 2 * r * n;
  row::RowResult result;
  if (l1)
    result = sorted ? row::project_sorted<true>(y, n, z, work, row::HeapSort{})
                    : row::project_condat<true>(y, n, z, work);
  else
    result = sorted ? row::project_sorted<false>(y, n, z, work, row::HeapSort{})
                    : row::project_condat<false>(y, n, z, work);
  status[r] = result.status;
  index[r] = result.index;
}

__global__ void box_section_kernel(double* x, long long rows, long long n, long long stride,
                                   row::BoxSectionRow set, bool sorted, double* scratch,
                                   int* status, long long* index) {
  const long long r = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  double* y = x + r * stride;
  const row::RowResult result =
      sorted ? row::box_section_sorted(y, n, set, scratch + 2 * r * n, row::HeapSort{})
             : row::box_section_newton(y, n, set);
  status[r] = result.status;
  index[r] = result.index;
}

/// Doubles spanned by a row-major block of `rows` rows of n entries, `stride` apart.
std::size_t span(long long rows, long long n, long long stride) {
  return static_cast<std::size_t>((rows - 1) * stride + n);
}

void copy_status_back(const DeviceBuffer& d_status, const DeviceBuffer& d_index, long long rows,
                      int* status, long long* index) {
  check(cudaMemcpy(status, d_status.data, sizeof(int) * rows, cudaMemcpyDeviceToHost),
        "copy status");
  check(cudaMemcpy(index, d_index.data, sizeof(long long) * rows, cudaMemcpyDeviceToHost),
        "copy index");
}

}  // namespace

int device_count() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

void threshold_rows(double* x, long long rows, long long n, long long stride, double z, bool l1,
                    bool sorted, int* status, long long* index) {
  const std::size_t doubles = span(rows, n, stride);
  DeviceBuffer d_x(sizeof(double) * doubles);
  DeviceBuffer d_scratch(sizeof(double) * static_cast<std::size_t>(2 * rows * n));
  DeviceBuffer d_status(sizeof(int) * rows), d_index(sizeof(long long) * rows);
  check(cudaMemcpy(d_x.data, x, sizeof(double) * doubles, cudaMemcpyHostToDevice), "copy x");
  const long long blocks = (rows + kThreads - 1) / kThreads;
  threshold_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(
      d_x.as<double>(), rows, n, stride, z, l1, sorted, d_scratch.as<double>(), d_status.as<int>(),
      d_index.as<long long>());
  check(cudaGetLastError(), "threshold_kernel launch");
  check(cudaMemcpy(x, d_x.data, sizeof(double) * doubles, cudaMemcpyDeviceToHost), "copy x back");
  copy_status_back(d_status, d_index, rows, status, index);
}

void box_section_rows(double* x, long long rows, long long n, long long stride, const double* lower,
                      long long lower_size, const double* upper, long long upper_size,
                      const double* weight, long long weight_size, double total, bool sorted,
                      int* status, long long* index) {
  const std::size_t doubles = span(rows, n, stride);
  DeviceBuffer d_x(sizeof(double) * doubles);
  DeviceBuffer d_scratch(sorted ? sizeof(double) * static_cast<std::size_t>(2 * rows * n) : 0);
  DeviceBuffer d_lower(sizeof(double) * lower_size), d_upper(sizeof(double) * upper_size),
      d_weight(sizeof(double) * weight_size);
  DeviceBuffer d_status(sizeof(int) * rows), d_index(sizeof(long long) * rows);
  check(cudaMemcpy(d_x.data, x, sizeof(double) * doubles, cudaMemcpyHostToDevice), "copy x");
  check(cudaMemcpy(d_lower.data, lower, sizeof(double) * lower_size, cudaMemcpyHostToDevice),
        "copy lower");
  check(cudaMemcpy(d_upper.data, upper, sizeof(double) * upper_size, cudaMemcpyHostToDevice),
        "copy upper");
  check(cudaMemcpy(d_weight.data, weight, sizeof(double) * weight_size, cudaMemcpyHostToDevice),
        "copy weight");
  const row::BoxSectionRow set{d_lower.as<const double>(),
                               d_upper.as<const double>(),
                               d_weight.as<const double>(),
                               lower_size == 1 ? 0LL : 1LL,
                               upper_size == 1 ? 0LL : 1LL,
                               weight_size == 1 ? 0LL : 1LL,
                               total};
  const long long blocks = (rows + kThreads - 1) / kThreads;
  box_section_kernel<<<static_cast<unsigned>(blocks), kThreads>>>(
      d_x.as<double>(), rows, n, stride, set, sorted, d_scratch.as<double>(), d_status.as<int>(),
      d_index.as<long long>());
  check(cudaGetLastError(), "box_section_kernel launch");
  check(cudaMemcpy(x, d_x.data, sizeof(double) * doubles, cudaMemcpyDeviceToHost), "copy x back");
  copy_status_back(d_status, d_index, rows, status, index);
}

}  // namespace tether::device::simplex_kernels
