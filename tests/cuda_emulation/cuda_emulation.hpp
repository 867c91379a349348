// A CUDA emulator on the CPU, for testing tether's kernels on machines without a GPU.
//
// Configured with -DTETHER_CUDA=EMULATE, tether compiles its .cu files as C++ against the
// headers in tests/cuda_emulation/include (cuda_runtime.h, cooperative_groups.h),
// which include this file. The host code then drives the kernels exactly as it drives a device,
// and the *device_test programs compare them with the CPU path. What runs is the kernels' own
// structure: the grid and block indexing, every __syncthreads, warp shuffle, ballot and
// __syncwarp, the cooperative grid's sync, the host-side orchestration (allocations, copies,
// launch configurations). The arithmetic is the host's, not the device's: the real build compiles
// with nvcc's --fmad=false, as the host's -ffp-contract=off, but an explicit fma (fast_exp's
// mul_add) is fused on the device and not on baseline x86-64, and the __CUDA_ARCH__ branches are
// never compiled here (CI compiles them with nvcc).
//
// How a launch runs. Every CUDA thread is a fiber with its own stack; a block's fibers take
// turns on one host thread, each running until it reaches a synchronisation point, which it
// waits at until every thread that must meet there has arrived:
// - __syncthreads: every thread of the block (one that has exited instead is an error: the
//   programming guide makes that undefined);
// - a warp operation (__shfl_sync, __shfl_xor_sync, __ballot_sync, __syncwarp): every lane of
//   the mask, at the same operation and the same count of warp operations (a lane that exited
//   or waits elsewhere is an error). Only the full mask of the warp's lanes is supported, and
//   every lane must take part: stricter than sm_70+, which lets a full mask name lanes that have
//   exited (tether's kernels never need that: whole warps leave together);
// - grid.sync() (cooperative launches only): every thread of every block; the blocks of a
//   cooperative launch run on host threads of their own, all resident at once, as the device
//   guarantees.
// A state where no thread can go on is reported as a deadlock, naming where each thread waits.
// Blocks of an ordinary launch run one after another. The order in which a block's threads take
// their turns (and ordinary blocks run) is forward, reversed, or shuffled (fixed seed), set by
// TETHER_CUDA_EMULATION_ORDER=forward|reverse|shuffle: a kernel that reads what another thread
// writes without synchronising gets different answers under different orders.
//
// Checked besides: device allocations are tracked, and a copy or memset whose device
// range leaves its allocation, or a kernel's pointer argument that is not inside one (a host
// pointer passed to a kernel; inside a struct argument where its namespace declares
// device_pointers(const S&), as core/simplex_kernels.cu does for the box section's set), is an
// error; each
// allocation is followed by guard bytes, checked after every launch and at cudaFree, so a
// kernel that writes past the end of one is reported (and, in a TETHER_SANITIZE build, the guard
// is poisoned, so a read there stops at once); launch configurations are checked (block size 1 to
// 1024, grid at least 1). An error is reported as the device reports it, through the returned
// status and cudaGetLastError, and printed to stderr with its detail.
//
// Not emulated: the memory model beyond program order at synchronisation points, shared-memory
// contents left by another block (statics here: zero at first, then the last block's), timing
// and concurrency of streams (everything is synchronous), dynamic shared memory, textures.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- the language --------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// Per block: the blocks of a launch run on one host thread at a time (each cooperative block on
// its own), so a thread-local static is one block's shared memory.
#define __shared__ static thread_local

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// The built-in variables of the thread that runs (set by the scheduler before each turn).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

// ---- the runtime API (the part tether uses) -----------------------------------------------

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorCooperativeLaunchTooLarge = 720,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrCooperativeLaunch = 95,
};

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

const char* cudaGetErrorString(cudaError_t status);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device);
cudaError_t cudaMalloc(void** pointer, std::size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** pointer, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(pointer), bytes);
}
cudaError_t cudaFree(void* pointer);
cudaError_t cudaMemcpy(void* to, const void* from, std::size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpy2D(void* to, std::size_t to_pitch, const void* from, std::size_t from_pitch,
                         std::size_t width, std::size_t height, cudaMemcpyKind kind);
cudaError_t cudaMemset(void* pointer, int value, std::size_t bytes);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t begin, cudaEvent_t end);

namespace cuda_emulation {

/// The emulated device: this many multiprocessors, each holding this many blocks at once (what
/// a cooperative launch may use).
constexpr int kMultiprocessors = 4;
constexpr int kBlocksPerMultiprocessor = 2;

using Body = std::function<void()>;

/// Runs body as a kernel of grid x block threads (see the top of this file); returns the
/// launch's status, also left for cudaGetLastError.
cudaError_t launch(dim3 grid, dim3 block, const Body& body, bool cooperative, const char* what);

/// Sets the schedule order ("forward", "reverse" or "shuffle"), overriding
/// TETHER_CUDA_EMULATION_ORDER, for the launches that follow.
void set_schedule_order(const char* order);

/// Records an error of the emulated device (status for cudaGetLastError, detail to stderr).
cudaError_t fail(cudaError_t status, const std::string& detail);

/// True when [p, p + bytes) lies inside one device allocation (p one past its end when bytes is
/// 0).
bool is_device_range(const void* p, std::size_t bytes);

/// What a warp operation sees once every lane of the mask arrived: the value each lane
/// contributed (slots[lane]) and the caller's lane (its linear thread index mod 32, as on the
/// device for any block shape). `kind` names the operation, for the diagnostics.
struct Exchange {
  const std::uint64_t* slots;
  int lane;
};
Exchange warp_exchange(unsigned mask, std::uint64_t mine, const char* kind);
/// Stops the kernel with an error unless width is 1, 2, 4, 8, 16 or 32.
void require_shuffle_width(int width);
void block_barrier();
void grid_barrier();

template <class T>
std::uint64_t to_slot(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "a warp shuffle of <= 8 bytes");
  std::uint64_t s = 0;
  std::memcpy(&s, &v, sizeof v);
  return s;
}
template <class T>
T from_slot(std::uint64_t s) {
  T v;
  std::memcpy(&v, &s, sizeof v);
  return v;
}

/// A kernel argument's pointer (null, or inside a device allocation), else an error naming the
/// argument; `part` names a pointer inside a struct argument.
inline cudaError_t check_pointer(const void* p, std::size_t argument, const char* part,
                                 const char* what) {
  if (p == nullptr || is_device_range(p, 0)) return cudaSuccess;
  return fail(cudaErrorInvalidDevicePointer,
              std::string(what) + ": argument " + std::to_string(argument) + part +
                  " is a pointer outside every device allocation (a host pointer?)");
}

/// The pointers inside a struct argument, where its namespace declares
/// `device_pointers(const S&)` returning them as a tuple (found by argument-dependent lookup).
template <class V>
concept HasDevicePointers = requires(const V& v) {
  device_pointers(v);
};

template <std::size_t I = 0, class Tuple>
cudaError_t check_pointer_arguments(const Tuple& values, const char* what) {
  if constexpr (I == std::tuple_size_v<Tuple>) {
    return cudaSuccess;
  } else {
    using V = std::tuple_element_t<I, Tuple>;
    if constexpr (std::is_pointer_v<V>) {
      if (const cudaError_t s =
              check_pointer(static_cast<const void*>(std::get<I>(values)), I, "", what);
          s != cudaSuccess)
        return s;
    } else if constexpr (HasDevicePointers<V>) {
      cudaError_t s = cudaSuccess;
      std::apply(
          [&](const auto*... p) {
            ((s = s == cudaSuccess ? check_pointer(static_cast<const void*>(p), I,
                                                   " (a pointer inside it)", what)
                                   : s),
             ...);
          },
          device_pointers(std::get<I>(values)));
      if (s != cudaSuccess) return s;
    }
    return check_pointer_arguments<I + 1>(values, what);
  }
}

/// kernel<<<grid, block>>>(args...): the arguments converted to the kernel's parameter types
/// once, as a launch does, and each thread called with its own copies.
template <class... Params>
struct Launcher {
  void (*kernel)(Params...);
  dim3 grid, block;
  bool cooperative;
  const char* name;
  template <class... Args>
  cudaError_t operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "kernel launch: argument count");
    const std::tuple<std::decay_t<Params>...> values(std::forward<Args>(args)...);
    if (const cudaError_t status = check_pointer_arguments(values, name); status != cudaSuccess)
      return status;
    return launch(
        grid, block, [&] { std::apply(kernel, values); }, cooperative, name);
  }
};

template <class... Params>
Launcher<Params...> launcher(dim3 grid, dim3 block, void (*kernel)(Params...),
                             bool cooperative = false, const char* name = "kernel") {
  return Launcher<Params...>{kernel, grid, block, cooperative, name};
}

}  // namespace cuda_emulation

template <class Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel, int block_size,
                                                          std::size_t) {
  if (blocks == nullptr || block_size < 1 || block_size > 1024) return cudaErrorInvalidValue;
  *blocks = cuda_emulation::kBlocksPerMultiprocessor;
  return cudaSuccess;
}

// ---- device functions -------------------------------------------------------------------

inline void __syncthreads() { cuda_emulation::block_barrier(); }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  cuda_emulation::warp_exchange(mask, 0, "__syncwarp");
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const cuda_emulation::Exchange e =
      cuda_emulation::warp_exchange(mask, predicate != 0 ? 1 : 0, "__ballot_sync");
  unsigned ballot = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) != 0 && e.slots[l] != 0) ballot |= 1u << l;
  return ballot;
}

template <class T>
T __shfl_sync(unsigned mask, T v, int source, int width = 32) {
  cuda_emulation::require_shuffle_width(width);
  const cuda_emulation::Exchange e =
      cuda_emulation::warp_exchange(mask, cuda_emulation::to_slot(v), "__shfl_sync");
  // The source lane within the caller's segment of `width` lanes (width a power of two).
  const int from = (e.lane & ~(width - 1)) | (source & (width - 1));
  return cuda_emulation::from_slot<T>(e.slots[from]);
}

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  cuda_emulation::require_shuffle_width(width);
  const cuda_emulation::Exchange e =
      cuda_emulation::warp_exchange(mask, cuda_emulation::to_slot(v), "__shfl_xor_sync");
  // As the device: lane ^ (lane_mask & 31), the caller's own value where that lies beyond the
  // end of its segment (an earlier segment's lane is read).
  int from = e.lane ^ (lane_mask & 31);
  if (from > (e.lane | (width - 1))) from = e.lane;
  return cuda_emulation::from_slot<T>(e.slots[from]);
}

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
