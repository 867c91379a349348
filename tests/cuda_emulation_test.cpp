// The CPU emulator of CUDA (tests/cuda_emulation), built and run only with -DTETHER_CUDA=EMULATE:
// it is what runs tether's kernels where no GPU is, so each of its rules is checked here with a
// small kernel whose right answer, or whose error, is known: block and warp reductions, the
// shuffles' and the ballot's lane arithmetic, a missing __syncthreads found by the schedule
// orders, the deadlocks and divergences it must refuse, the cooperative grid's sync, the checked
// memory and kernel arguments.
#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <tether/core/cuda_support.cuh>
#include <tuple>
#include <vector>

namespace {

constexpr unsigned kFull = 0xffffffffu;

/// A device copy of host values, freed on scope exit.
template <class T>
struct DeviceArray {
  T* data = nullptr;
  std::size_t n = 0;
  explicit DeviceArray(std::size_t count, const T* from = nullptr) : n(count) {
    EXPECT_EQ(cudaMalloc(&data, sizeof(T) * n), cudaSuccess);
    if (from != nullptr)
      EXPECT_EQ(cudaMemcpy(data, from, sizeof(T) * n, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(data); }
  std::vector<T> host() const {
    std::vector<T> out(n);
    EXPECT_EQ(cudaMemcpy(out.data(), data, sizeof(T) * n, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

/// The launch's status and the detail cudaGetErrorString gives for it (cleared afterwards).
std::string last_error_text() {
  const cudaError_t status = cudaGetLastError();
  return status == cudaSuccess ? std::string() : std::string(cudaGetErrorString(status));
}

// Tree reduction in shared memory: out[block] = sum of in over the block's threads.
template <bool kSynchronised>
__global__ void block_sums(const double* in, double* out) {
  __shared__ double partial[256];
  partial[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
  if (kSynchronised) __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    if (kSynchronised) __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

std::vector<double> run_block_sums(bool synchronised, const char* order) {
  cuda_emulation::set_schedule_order(order);
  std::vector<double> in(4 * 256);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<double>(i % 97);
  DeviceArray<double> d_in(in.size(), in.data()), d_out(4);
  if (synchronised)
    cuda_emulation::launcher(4, 256, block_sums<true>)(d_in.data, d_out.data);
  else
    cuda_emulation::launcher(4, 256, block_sums<false>)(d_in.data, d_out.data);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cuda_emulation::set_schedule_order("forward");
  return d_out.host();
}

double expected_block_sum(int block) {
  double s = 0;
  for (int t = 0; t < 256; ++t) s += static_cast<double>((block * 256 + t) % 97);
  return s;
}

TEST(CudaEmulation, BlockReductionWithItsBarriersIsExactInEveryOrder) {
  for (const char* order : {"forward", "reverse", "shuffle"}) {
    const std::vector<double> sums = run_block_sums(true, order);
    for (int b = 0; b < 4; ++b)
      EXPECT_EQ(sums[b], expected_block_sum(b)) << order << ", block " << b;
  }
}

TEST(CudaEmulation, AMissingBarrierShowsUnderSomeOrder) {
  // Without the barriers a thread reads partial sums before their writers ran. Some order must
  // expose it (forward does: thread 0 reads partial[128] before thread 128 has written it).
  int wrong = 0;
  for (const char* order : {"forward", "reverse", "shuffle"}) {
    const std::vector<double> sums = run_block_sums(false, order);
    for (int b = 0; b < 4; ++b) wrong += sums[b] != expected_block_sum(b);
  }
  EXPECT_GT(wrong, 0);
}

// Warp primitives: lane l holds l + 1.
__global__ void warp_primitives(int* out) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  int v = lane + 1;
  int sum = v;
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFull, sum, offset);
  const int from_seven = __shfl_sync(kFull, v, 7);
  const int neighbour = __shfl_sync(kFull, v, (lane + 1) % 32);
  const int in_eight = __shfl_sync(kFull, v, 3, 8);  // lane 3 of each segment of 8
  const unsigned ballot = __ballot_sync(kFull, lane % 3 == 0);
  // Across segments of 8: a lane whose partner lies in a later segment keeps its own value, one
  // whose partner lies in an earlier segment reads it (the device's rule).
  const int xor_in_eight = __shfl_xor_sync(kFull, v, 8, 8);
  __syncwarp();
  int* o = out + 6 * threadIdx.x;
  o[0] = sum;
  o[1] = from_seven;
  o[2] = neighbour;
  o[3] = in_eight;
  o[4] = static_cast<int>(ballot);
  o[5] = xor_in_eight;
}

TEST(CudaEmulation, WarpShufflesAndBallotFollowTheirLaneArithmetic) {
  DeviceArray<int> out(6 * 64);
  cuda_emulation::launcher(1, 64, warp_primitives)(out.data);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> o = out.host();
  unsigned every_third = 0;
  for (int l = 0; l < 32; l += 3) every_third |= 1u << l;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    EXPECT_EQ(o[6 * t + 0], 32 * 33 / 2) << t;
    EXPECT_EQ(o[6 * t + 1], 8) << t;
    EXPECT_EQ(o[6 * t + 2], (lane + 1) % 32 + 1) << t;
    EXPECT_EQ(o[6 * t + 3], lane - lane % 8 + 3 + 1) << t;
    EXPECT_EQ(static_cast<unsigned>(o[6 * t + 4]), every_third) << t;
    EXPECT_EQ(o[6 * t + 5], lane % 16 < 8 ? lane + 1 : (lane ^ 8) + 1) << t;
  }
}

// Errors the device leaves undefined (or hangs on), which the emulator must refuse.
__global__ void lane_leaves_before_shuffle(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_sync(kFull, static_cast<int>(threadIdx.x), 0);
}

__global__ void thread_leaves_before_barrier(int* out) {
  if (threadIdx.x == 40) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void lanes_at_different_operations(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x % 32 == 0) v = __shfl_sync(kFull, v, 1);  // lane 0 alone takes an extra one
  v = __shfl_xor_sync(kFull, v, 1);
  out[threadIdx.x] = v;
}

__global__ void warp_split_across_barriers(int* out) {
  if (threadIdx.x == 0)
    __syncthreads();
  else
    out[threadIdx.x] = __shfl_sync(kFull, 1, 1);
}

__global__ void partial_mask(int* out) { out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 0); }

__global__ void grid_sync_outside_cooperative(int* out) {
  cooperative_groups::this_grid().sync();
  out[threadIdx.x] = 1;
}

TEST(CudaEmulation, UndefinedSynchronisationIsRefusedWithItsPlace) {
  DeviceArray<int> out(64);
  struct Case {
    void (*kernel)(int*);
    const char* expected;
  };
  const Case cases[] = {
      {lane_leaves_before_shuffle, "a lane exited while lane"},
      {thread_leaves_before_barrier, "1 of 64 threads exited while the rest wait at __syncthreads"},
      {lanes_at_different_operations, "lane 1 is at __shfl_xor_sync (warp operation 0) while lane"},
      {warp_split_across_barriers, "deadlock: 31 at __shfl_sync (first: thread 1), 1 at"},
      {partial_mask, "the emulator supports the warp's full mask"},
      {grid_sync_outside_cooperative, "grid.sync() in a launch that is not cooperative"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(cuda_emulation::launcher(1, 64, c.kernel)(out.data), cudaErrorLaunchFailure)
        << c.expected;
    const std::string text = last_error_text();
    EXPECT_NE(text.find(c.expected), std::string::npos) << text;
  }
}

// Cooperative grid: each block writes its id, the grid syncs, each block sums every block's.
__global__ void grid_exchange(int* ids, int* sums) {
  if (threadIdx.x == 0) ids[blockIdx.x] = static_cast<int>(blockIdx.x) + 1;
  cooperative_groups::this_grid().sync();
  if (threadIdx.x == 0) {
    int s = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) s += ids[b];
    sums[blockIdx.x] = s;
  }
}

__global__ void block_leaves_before_grid_sync(int* ids, int* sums) {
  if (blockIdx.x == 1) return;
  cooperative_groups::this_grid().sync();
  ids[blockIdx.x] = sums[blockIdx.x];
}

TEST(CudaEmulation, CooperativeGridSyncsEveryBlock) {
  const int blocks = cuda_emulation::kMultiprocessors * cuda_emulation::kBlocksPerMultiprocessor;
  DeviceArray<int> ids(blocks), sums(blocks);
  ASSERT_EQ(cuda_emulation::launcher(blocks, 64, grid_exchange, true)(ids.data, sums.data),
            cudaSuccess);
  for (int s : sums.host()) EXPECT_EQ(s, blocks * (blocks + 1) / 2);
  // More blocks than can be resident, and a block that leaves while the others sync.
  EXPECT_EQ(cuda_emulation::launcher(blocks + 1, 64, grid_exchange, true)(ids.data, sums.data),
            cudaErrorCooperativeLaunchTooLarge);
  EXPECT_NE(last_error_text().find("cannot be resident at once"), std::string::npos);
  EXPECT_EQ(cuda_emulation::launcher(blocks, 64, block_leaves_before_grid_sync, true)(ids.data,
                                                                                      sums.data),
            cudaErrorLaunchFailure);
  // Reported as its cause (block 1 left), not as the other blocks' stalled syncs.
  const std::string text = last_error_text();
  EXPECT_NE(text.find("block (1, 0, 0) exited"), std::string::npos) << text;
}

__global__ void write_index(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = 7; }

// A struct argument that names its pointers for the emulator's check (found by ADL).
struct Columns {
  const int* first;
  const int* second;
};
auto device_pointers(const Columns& c) { return std::tuple(c.first, c.second); }

__global__ void add_columns(Columns c, int* out) { out[threadIdx.x] = c.first[0] + c.second[0]; }

TEST(CudaEmulation, MemoryAndArgumentsAreChecked) {
  DeviceArray<int> d(64);
  std::vector<int> host(64, 0);
  // Fresh device memory reads as garbage (all-ones bytes), not zeros.
  EXPECT_EQ(d.host()[0], -1);
  // A host pointer passed to a kernel.
  EXPECT_EQ(cuda_emulation::launcher(1, 64, write_index)(host.data()),
            cudaErrorInvalidDevicePointer);
  EXPECT_NE(
      last_error_text().find("kernel: argument 0 is a pointer outside every device allocation"),
      std::string::npos);
  // A host pointer inside a struct argument that declares its pointers.
  std::vector<int> ones(1, 1);
  DeviceArray<int> one(1, ones.data());
  EXPECT_EQ(cuda_emulation::launcher(1, 32, add_columns)(Columns{one.data, one.data}, d.data),
            cudaSuccess);
  EXPECT_EQ(d.host()[5], 2);
  EXPECT_EQ(cuda_emulation::launcher(1, 32, add_columns)(Columns{one.data, ones.data()}, d.data),
            cudaErrorInvalidDevicePointer);
  EXPECT_NE(last_error_text().find("argument 0 (a pointer inside it) is a pointer outside"),
            std::string::npos);
  // Copies that leave the allocation, or name the wrong direction.
  EXPECT_EQ(cudaMemcpy(d.data + 1, host.data(), sizeof(int) * 64, cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_NE(last_error_text().find("is not inside one device allocation"), std::string::npos);
  EXPECT_EQ(cudaMemcpy(d.data, d.data, sizeof(int) * 64, cudaMemcpyHostToDevice),
            cudaErrorInvalidMemcpyDirection);
  cudaGetLastError();
  EXPECT_EQ(cudaMemcpy2D(d.data, 8 * sizeof(int), host.data(), 8 * sizeof(int), 8 * sizeof(int), 9,
                         cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  cudaGetLastError();
  EXPECT_EQ(cudaMemset(d.data, 0, sizeof(int) * 65), cudaErrorInvalidValue);
  cudaGetLastError();
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidDevicePointer);
  cudaGetLastError();
  // Launch configurations.
  EXPECT_EQ(cuda_emulation::launcher(1, 1025, write_index)(d.data), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cuda_emulation::launcher(0, 32, write_index)(d.data), cudaErrorInvalidConfiguration);
  cudaGetLastError();
  // And a good launch after all of that.
  EXPECT_EQ(cuda_emulation::launcher(2, 32, write_index)(d.data), cudaSuccess);
  for (int v : d.host()) EXPECT_EQ(v, 7);
}

__global__ void write_one_past_the_end(int* out, int n) {
  if (threadIdx.x == 0) out[n] = 1;
}

TEST(CudaEmulation, AWritePastAnAllocationIsReported) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under ASan the guard is poisoned and the write itself stops the program";
#else
  DeviceArray<int> d(10);
  EXPECT_EQ(cuda_emulation::launcher(1, 32, write_one_past_the_end)(d.data, 10),
            cudaErrorIllegalAddress);
  const std::string text = last_error_text();
  EXPECT_NE(text.find("a write 0 bytes past the end of a device allocation of 40 bytes"),
            std::string::npos)
      << text;
  // The guard stays overwritten: freeing the allocation reports it too.
  EXPECT_EQ(cudaFree(d.data), cudaErrorIllegalAddress);
  cudaGetLastError();
  d.data = nullptr;
#endif
}

// tether's device-side search (core/cuda_support.cuh), on the emulator: the smallest rejected
// index however the entries fall across the grid-stride loop and the blocks.
struct Negative {
  __device__ bool operator()(double v) const { return v < 0.0; }
};

TEST(CudaEmulation, FirstRejectedIsTheSmallestIndexAcrossBlocksAndStrides) {
  namespace cuda = tether::device::cuda;
  const long long grid = static_cast<long long>(cuda::kRejectBlocks) * cuda::kRejectThreads;
  struct Case {
    long long n;
    std::vector<long long> bad;
  };
  const Case cases[] = {
      {grid + 7232, {grid + 6232, 1000}},  // past the first stride, and an earlier block's
      {grid + 7232, {grid + 5, 6}},        // the same thread's second stride, and an earlier one
      {grid + 7232, {grid + 5}},           // only in a second stride
      {grid + 7232, {grid + 5, 5}},        // one thread's first and second strides
      {100, {99}},                         // fewer entries than blocks
      {grid + 7232, {}},
      {1, {0}},
  };
  DeviceArray<long long> scratch(cuda::kRejectBlocks + 1);
  for (const Case& c : cases) {
    std::vector<double> v(static_cast<std::size_t>(c.n), 1.0);
    long long expected = -1;
    for (long long b : c.bad) {
      v[static_cast<std::size_t>(b)] = -1.0;
      expected = expected < 0 || b < expected ? b : expected;
    }
    DeviceArray<double> d(v.size(), v.data());
    EXPECT_EQ(cuda::first_rejected(d.data, c.n, Negative{}, scratch.data), expected) << c.n;
  }
}

}  // namespace
