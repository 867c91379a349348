// Small helpers shared by tether's .cu files (never included by host-only code): a CUDA status
// check that throws tether::Error, a device allocation freed on scope exit (so a throwing check
// does not leak), and the kernel launches, spelled so that the CPU emulator
// (tests/cuda_emulation, -DTETHER_CUDA=EMULATE) can run them too.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <tether/core/errors.hpp>
#include <tuple>

/// TETHER_KERNEL_LAUNCH(grid, block, kernel)(args...) is kernel<<<grid, block>>>(args...) (an
/// explicitly instantiated kernel for a template: the emulator cannot deduce its arguments).
#if defined(TETHER_CUDA_EMULATION)
#define TETHER_KERNEL_LAUNCH(grid, block, ...) \
  ::cuda_emulation::launcher(grid, block, __VA_ARGS__, false, #__VA_ARGS__)
#else
#define TETHER_KERNEL_LAUNCH(grid, block, ...) __VA_ARGS__<<<grid, block>>>
#endif

namespace tether::device::cuda {

/// Throws tether::Error naming `what` when status is not cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

/// A device allocation of `bytes` bytes (none for 0), freed on scope exit.
struct DeviceBuffer {
  void* data = nullptr;
  explicit DeviceBuffer(std::size_t bytes) {
    if (bytes > 0) check(cudaMalloc(&data, bytes), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (data != nullptr) cudaFree(data);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : data(other.data) { other.data = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      if (data != nullptr) cudaFree(data);
      data = other.data;
      other.data = nullptr;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

/// A device copy of n host values.
template <class T>
inline DeviceBuffer upload(const T* host, std::size_t n, const char* what) {
  DeviceBuffer buffer(sizeof(T) * n);
  if (n > 0) check(cudaMemcpy(buffer.data, host, sizeof(T) * n, cudaMemcpyHostToDevice), what);
  return buffer;
}

// ---- the first entry a predicate rejects, found on the device ----------------------------------

/// Blocks and threads of first_rejected's first pass (a power of two).
constexpr int kRejectBlocks = 256;
constexpr int kRejectThreads = 128;
static_assert((kRejectThreads & (kRejectThreads - 1)) == 0, "block_min halves the block");

/// first[0] = the smallest of first[0 .. blockDim.x) (a tree; blockDim.x a power of two); starts
/// and ends synchronised.
__device__ inline void block_min(long long* first) {
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride && first[threadIdx.x + stride] < first[threadIdx.x])
      first[threadIdx.x] = first[threadIdx.x + stride];
    __syncthreads();
  }
}

/// Per block (grid-stride over the entries): the smallest index whose value `reject(v)` refuses,
/// or n. A template, so that each .cu file has its own instance. V: double or float.
template <class V, class Reject>
__global__ void first_rejected_kernel(const V* values, long long n, Reject reject,
                                      long long* partials) {
  __shared__ long long first[kRejectThreads];
  long long mine = n;
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += step)
    if (reject(values[i])) {  // a thread's indices increase: its first is its smallest
      mine = i;
      break;
    }
  first[threadIdx.x] = mine;
  block_min(first);
  if (threadIdx.x == 0) partials[blockIdx.x] = first[0];
}

/// One block: the smallest of the partials into partials[blocks].
template <class Reject>
__global__ void first_rejected_total_kernel(long long* partials, int blocks) {
  __shared__ long long first[kRejectThreads];
  long long mine = partials[0];
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += static_cast<int>(blockDim.x))
    mine = partials[b] < mine ? partials[b] : mine;
  first[threadIdx.x] = mine;
  block_min(first);
  if (threadIdx.x == 0) partials[blocks] = first[0];
}

/// The first index i < n (device values) with reject(values[i]), or -1; `scratch` holds
/// kRejectBlocks + 1 long longs of device memory. Two block reductions, one value copied back
/// (synchronises). Deterministic: the smallest index, whatever the schedule.
template <class V, class Reject>
long long first_rejected(const V* values, long long n, Reject reject, long long* scratch) {
  if (n <= 0) return -1;
  TETHER_KERNEL_LAUNCH(kRejectBlocks, kRejectThreads, first_rejected_kernel<V, Reject>)
  (values, n, reject, scratch);
  check(cudaGetLastError(), "first_rejected_kernel launch");
  TETHER_KERNEL_LAUNCH(1, kRejectThreads, first_rejected_total_kernel<Reject>)
  (scratch, kRejectBlocks);
  check(cudaGetLastError(), "first_rejected_total_kernel launch");
  long long first = 0;
  check(cudaMemcpy(&first, scratch + kRejectBlocks, sizeof first, cudaMemcpyDeviceToHost),
        "copy the first rejected index back");
  return first < n ? first : -1;
}

/// A cooperative launch (every block resident at once, so grid.sync() may be called): the
/// arguments converted to the kernel's parameter types, as a <<<>>> launch converts them.
template <class... Params, class... Args>
cudaError_t launch_cooperative(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
  static_assert(sizeof...(Params) == sizeof...(Args) && sizeof...(Params) > 0,
                "launch_cooperative: one argument per kernel parameter");
#if defined(TETHER_CUDA_EMULATION)
  return ::cuda_emulation::launcher(grid, block, kernel, true, "cooperative kernel")(args...);
#else
  std::tuple<Params...> values(args...);
  void* pointers[sizeof...(Params)];
  std::apply(
      [&pointers](auto&... v) {
        int i = 0;
        ((pointers[i++] = static_cast<void*>(&v)), ...);
      },
      values);
  return cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel), grid, block, pointers, 0,
                                     nullptr);
#endif
}

}  // namespace tether::device::cuda
