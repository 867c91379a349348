// The CUDA emulator's scheduler and memory (see cuda_emulation.hpp for what it checks).
#include "cuda_emulation.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define TETHER_EMULATION_ASAN 1
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores
// the stack pointer in *save, loads `load` as the stack pointer and restores what a previous
// switch (or a fiber's prepared stack) left there.
extern "C" void tether_cuda_emulation_switch(void** save, void* load);
asm(R"(
  .pushsection .text
  .globl tether_cuda_emulation_switch
  .hidden tether_cuda_emulation_switch
  .type tether_cuda_emulation_switch, @function
tether_cuda_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tether_cuda_emulation_switch, .-tether_cuda_emulation_switch
  .popsection
)");

namespace cuda_emulation {
namespace {

// ---- errors --------------------------------------------------------------------------------

thread_local cudaError_t last_error = cudaSuccess;
thread_local std::map<int, std::string> error_details;

const char* error_name(cudaError_t status) {
  switch (status) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorCooperativeLaunchTooLarge:
      return "too many blocks in cooperative launch";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
  }
  return "unknown error";
}

// ---- schedule order --------------------------------------------------------------------------

enum class Order { kForward, kReverse, kShuffle };

/// The order named by `name`; forward (with a message) for a name that is none of the three.
Order order_named(const char* name) {
  const std::string s = name != nullptr ? name : "forward";
  if (s == "reverse") return Order::kReverse;
  if (s == "shuffle") return Order::kShuffle;
  if (s != "forward")
    std::fprintf(stderr,
                 "cuda emulation: schedule order %s is none of forward, reverse, shuffle; "
                 "forward is used\n",
                 s.c_str());
  return Order::kForward;
}

std::atomic<Order>& order_setting() {
  static std::atomic<Order> order{order_named(std::getenv("TETHER_CUDA_EMULATION_ORDER"))};
  return order;
}

Order schedule_order() { return order_setting().load(std::memory_order_relaxed); }

/// 0..count-1 in the schedule's order; `seed` varies the shuffle.
void arrange(std::vector<unsigned>& order, unsigned count, std::uint64_t seed) {
  order.resize(count);
  for (unsigned i = 0; i < count; ++i) order[i] = i;
  switch (schedule_order()) {
    case Order::kForward:
      break;
    case Order::kReverse:
      std::reverse(order.begin(), order.end());
      break;
    case Order::kShuffle: {
      std::mt19937_64 rng(seed);
      std::shuffle(order.begin(), order.end(), rng);
      break;
    }
  }
}

std::string index_text(uint3 i) {
  char text[48];
  std::snprintf(text, sizeof text, "(%u, %u, %u)", i.x, i.y, i.z);
  return text;
}

// ---- fibers ----------------------------------------------------------------------------------

constexpr std::size_t kStackBytes = std::size_t{256} << 10;
constexpr std::size_t kGuardBytes = 4096;

/// A fiber stack: kStackBytes mapped (reserved lazily), its lowest page a guard.
struct Stack {
  void* base = nullptr;
  Stack() {
    base = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
      std::fprintf(stderr, "cuda emulation: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(base, kGuardBytes, PROT_NONE);
  }
  ~Stack() {
    if (base != nullptr) munmap(base, kStackBytes);
  }
  Stack(Stack&& other) noexcept : base(other.base) { other.base = nullptr; }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  Stack& operator=(Stack&&) = delete;
  void* top() const { return static_cast<char*>(base) + kStackBytes; }
};

/// This host thread's fiber stacks, kept across launches.
std::vector<Stack>& stack_pool(std::size_t at_least) {
  thread_local std::vector<Stack> pool;
  while (pool.size() < at_least) pool.emplace_back();
  return pool;
}

enum class Wait { kRunnable, kBlock, kWarp, kGrid, kExited };

struct Fiber {
  void* sp = nullptr;
  void* stack_top = nullptr;
  uint3 index;
  unsigned linear = 0;
  Wait wait = Wait::kRunnable;
  const char* op = "";
  unsigned mask = 0;
  unsigned long long warp_ops = 0;
  void* fake_stack = nullptr;  // ASan's, while switched away
};

/// What the blocks of a cooperative launch share for grid.sync().
struct GridState {
  std::mutex mutex;
  std::condition_variable changed;
  unsigned expected = 0, arrived = 0, exited = 0;
  unsigned long long generation = 0;
  bool broken = false;
  std::string exited_block;  // the first block to exit
  std::string cause;         // what broke the grid first (reported over the blocks' own errors)
};

struct BlockRun {
  const Body* body = nullptr;
  dim3 grid, block;
  uint3 index;
  GridState* grid_state = nullptr;
  std::uint64_t seed = 0;
  std::vector<Fiber> fibers;
  std::vector<std::uint64_t> slots[2];  // warp exchanges, by parity of the lane's count
  void* scheduler_sp = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  std::size_t scheduler_stack_size = 0;
  Fiber* current = nullptr;
  std::string error;
};

thread_local BlockRun* running_block = nullptr;

void switch_to_scheduler(BlockRun& b, Fiber& f, bool for_good) {
#if defined(TETHER_EMULATION_ASAN)
  __sanitizer_start_switch_fiber(for_good ? nullptr : &f.fake_stack, b.scheduler_stack_bottom,
                                 b.scheduler_stack_size);
#else
  (void)for_good;
#endif
  tether_cuda_emulation_switch(&f.sp, b.scheduler_sp);
#if defined(TETHER_EMULATION_ASAN)
  __sanitizer_finish_switch_fiber(f.fake_stack, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
}

[[noreturn]] void fiber_main() {
  BlockRun& b = *running_block;
  Fiber& f = *b.current;
#if defined(TETHER_EMULATION_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.scheduler_stack_bottom, &b.scheduler_stack_size);
#endif
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = "thread " + index_text(f.index) + " threw: " + e.what();
  } catch (...) {
    if (b.error.empty()) b.error = "thread " + index_text(f.index) + " threw";
  }
  f.wait = Wait::kExited;
  switch_to_scheduler(b, f, true);
  __builtin_unreachable();
}

/// A fresh fiber's stack, laid out as the switch leaves one: control words, six registers, the
/// return address (fiber_main, entered as if called: 8 mod 16 after the ret) and a null one.
void prepare(Fiber& f) {
#if defined(TETHER_EMULATION_ASAN)
  // A reused stack keeps the poisoned redzones of the frames its last fiber never returned from.
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(f.stack_top) - kStackBytes + kGuardBytes,
                              kStackBytes - kGuardBytes);
#endif
  auto* words = static_cast<std::uint64_t*>(f.stack_top);
  std::uint32_t csr = 0;
  std::uint16_t control = 0;
  asm volatile("stmxcsr %0" : "=m"(csr));
  asm volatile("fnstcw %0" : "=m"(control));
  words[-1] = 0;
  words[-2] = reinterpret_cast<std::uint64_t>(&fiber_main);
  for (int r = 3; r <= 8; ++r) words[-r] = 0;
  words[-9] = csr | (static_cast<std::uint64_t>(control) << 32);
  f.sp = &words[-9];
}

void resume(BlockRun& b, Fiber& f) {
  b.current = &f;
  threadIdx = f.index;
  f.wait = Wait::kRunnable;
#if defined(TETHER_EMULATION_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, static_cast<char*>(f.stack_top) - kStackBytes + kGuardBytes,
                                 kStackBytes - kGuardBytes);
#endif
  tether_cuda_emulation_switch(&b.scheduler_sp, f.sp);
#if defined(TETHER_EMULATION_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  b.current = nullptr;
}

BlockRun& this_block(const char* what) {
  if (running_block == nullptr || running_block->current == nullptr) {
    std::fprintf(stderr, "cuda emulation: %s called outside a kernel\n", what);
    std::abort();
  }
  return *running_block;
}

/// Stops the calling thread's block with an error (the kernel's other threads are abandoned).
/// Takes a plain string: nothing on the abandoned stack is ever destroyed.
[[noreturn]] void abandon(BlockRun& b, const char* why) {
  Fiber& f = *b.current;
  if (b.error.empty()) b.error = "thread " + index_text(f.index) + ": " + why;
  f.wait = Wait::kExited;
  switch_to_scheduler(b, f, true);
  __builtin_unreachable();
}

void wait_here(BlockRun& b, Wait wait, const char* op, unsigned mask) {
  Fiber& f = *b.current;
  f.wait = wait;
  f.op = op;
  f.mask = mask;
  switch_to_scheduler(b, f, false);
}

// ---- the scheduler -------------------------------------------------------------------------

const char* wait_name(const Fiber& f) {
  switch (f.wait) {
    case Wait::kRunnable:
      return "runnable";
    case Wait::kBlock:
      return "__syncthreads";
    case Wait::kWarp:
      return f.op;
    case Wait::kGrid:
      return "grid.sync";
    case Wait::kExited:
      return "exited";
  }
  return "?";
}

std::string describe_waits(const BlockRun& b) {
  std::map<std::string, std::pair<unsigned, unsigned>> groups;  // where: (count, first thread)
  for (const Fiber& f : b.fibers) {
    auto [it, fresh] = groups.try_emplace(wait_name(f), 0u, f.linear);
    ++it->second.first;
  }
  std::string text;
  for (const auto& [where, g] : groups)
    text += (text.empty() ? "" : ", ") + std::to_string(g.first) + " at " + where +
            " (first: thread " + std::to_string(g.second) + ")";
  return text;
}

/// Releases every warp whose lanes all wait at the same warp operation; an error where a warp
/// cannot complete one (a lane exited, or lanes at different operations).
bool release_warps(BlockRun& b) {
  bool released = false;
  const auto count = static_cast<unsigned>(b.fibers.size());
  for (unsigned first = 0; first < count; first += 32) {
    const unsigned lanes = std::min(32u, count - first);
    const unsigned full = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    const Fiber* waiting = nullptr;
    bool all = true, exited = false;
    for (unsigned l = 0; l < lanes; ++l) {
      const Fiber& f = b.fibers[first + l];
      if (f.wait == Wait::kWarp) {
        if (waiting == nullptr) waiting = &f;
      } else {
        all = false;
        exited = exited || f.wait == Wait::kExited;
      }
    }
    if (waiting == nullptr) continue;
    const std::string warp = "warp " + std::to_string(first / 32);
    if (waiting->mask != full) {
      b.error = warp + ": " + waiting->op + " with mask " + std::to_string(waiting->mask) +
                " (the emulator supports the warp's full mask, " + std::to_string(full) + ")";
      return false;
    }
    if (exited) {
      b.error = warp + ": a lane exited while lane " + std::to_string(waiting->linear - first) +
                " waits at " + waiting->op;
      return false;
    }
    if (!all) continue;  // a lane waits elsewhere: a deadlock, reported by the caller
    for (unsigned l = 0; l < lanes; ++l) {
      const Fiber& f = b.fibers[first + l];
      if (std::strcmp(f.op, waiting->op) != 0 || f.warp_ops != waiting->warp_ops ||
          f.mask != waiting->mask) {
        b.error = warp + ": lane " + std::to_string(l) + " is at " + f.op + " (warp operation " +
                  std::to_string(f.warp_ops) + ") while lane " +
                  std::to_string(waiting->linear - first) + " is at " + waiting->op +
                  " (warp operation " + std::to_string(waiting->warp_ops) + ")";
        return false;
      }
    }
    for (unsigned l = 0; l < lanes; ++l) b.fibers[first + l].wait = Wait::kRunnable;
    released = true;
  }
  return released;
}

bool grid_arrive(GridState& g) {
  std::unique_lock lock(g.mutex);
  if (g.broken) return false;
  if (g.exited > 0) {
    g.broken = true;
    g.cause = "a block reached grid.sync() after block " + g.exited_block + " exited";
    g.changed.notify_all();
    return false;
  }
  const unsigned long long generation = g.generation;
  if (++g.arrived == g.expected) {
    g.arrived = 0;
    ++g.generation;
    g.changed.notify_all();
    return true;
  }
  g.changed.wait(lock, [&] { return g.generation != generation || g.broken; });
  return !g.broken;
}

/// Block `index` has finished (with `error`, empty if none).
void grid_exit(GridState& g, const std::string& index, const std::string& error) {
  std::lock_guard lock(g.mutex);
  if (g.exited++ == 0) g.exited_block = index;
  if (!error.empty() || g.arrived > 0) {
    if (!g.broken)
      g.cause = !error.empty()
                    ? "block " + index + ": " + error
                    : "block " + index + " exited while other blocks wait at grid.sync()";
    g.broken = true;
    g.changed.notify_all();
  }
}

void run_block(BlockRun& b) {
  const unsigned count = b.block.x * b.block.y * b.block.z;
  std::vector<Stack>& stacks = stack_pool(count);
  b.fibers.assign(count, Fiber{});
  for (unsigned t = 0; t < count; ++t) {
    Fiber& f = b.fibers[t];
    f.linear = t;
    f.index = uint3{t % b.block.x, (t / b.block.x) % b.block.y, t / (b.block.x * b.block.y)};
    f.stack_top = stacks[t].top();
    prepare(f);
  }
  const unsigned padded = (count + 31) / 32 * 32;
  b.slots[0].assign(padded, 0);
  b.slots[1].assign(padded, 0);
  blockIdx = b.index;
  blockDim = b.block;
  gridDim = b.grid;
  BlockRun* outer = running_block;
  running_block = &b;
  std::vector<unsigned> order;
  for (std::uint64_t round = 0;; ++round) {
    arrange(order, count, b.seed * 0x9e3779b97f4a7c15ull + round);
    for (unsigned t : order) {
      if (b.fibers[t].wait != Wait::kRunnable) continue;
      resume(b, b.fibers[t]);
      if (!b.error.empty()) break;
    }
    if (!b.error.empty()) break;
    unsigned exited = 0, at_block = 0, at_grid = 0;
    for (const Fiber& f : b.fibers) {
      exited += f.wait == Wait::kExited;
      at_block += f.wait == Wait::kBlock;
      at_grid += f.wait == Wait::kGrid;
    }
    if (exited == count) break;
    if (release_warps(b)) continue;
    if (!b.error.empty()) break;
    if (at_block + exited == count || at_grid + exited == count) {
      const char* where = at_block > 0 ? "__syncthreads" : "grid.sync()";
      if (exited > 0) {
        b.error = std::to_string(exited) + " of " + std::to_string(count) +
                  " threads exited while the rest wait at " + where;
        break;
      }
      if (at_grid > 0 && !grid_arrive(*b.grid_state)) {
        b.error = "grid.sync() cannot complete: another block exited or failed";
        break;
      }
      for (Fiber& f : b.fibers) f.wait = Wait::kRunnable;
      continue;
    }
    b.error = "deadlock: " + describe_waits(b);
    break;
  }
  running_block = outer;
}

// ---- device memory -------------------------------------------------------------------------

struct Allocations {
  std::mutex mutex;
  std::map<std::uintptr_t, std::size_t> live;  // base -> bytes
};

Allocations& allocations() {
  static Allocations a;
  return a;
}

// Each allocation is followed by guard bytes up to the next 256-byte boundary and 256 more.
constexpr unsigned char kGuardByte = 0xa5;
std::size_t guard_bytes(std::size_t bytes) { return (bytes + 255) / 256 * 256 + 256 - bytes; }

/// The first guard byte of the allocation at `base` a kernel overwrote, or -1.
long long overwritten_guard(std::uintptr_t base, std::size_t bytes) {
#if defined(TETHER_EMULATION_ASAN)
  (void)base;
  (void)bytes;
  return -1;  // the guard is poisoned: ASan stops the write itself
#else
  const auto* guard = reinterpret_cast<const unsigned char*>(base) + bytes;
  for (std::size_t i = 0; i < guard_bytes(bytes); ++i)
    if (guard[i] != kGuardByte) return static_cast<long long>(i);
  return -1;
#endif
}

/// Every live allocation's guard intact, else an error naming the first one overwritten.
cudaError_t check_guards(const std::string& what) {
  Allocations& a = allocations();
  std::string found;
  {
    std::lock_guard lock(a.mutex);
    for (const auto& [base, bytes] : a.live) {
      const long long at = overwritten_guard(base, bytes);
      if (at >= 0) {
        found = what + ": a write " + std::to_string(at) +
                " bytes past the end of a device allocation of " + std::to_string(bytes) + " bytes";
        break;
      }
    }
  }
  return found.empty() ? cudaSuccess : fail(cudaErrorIllegalAddress, found);
}

bool in_allocation(const void* p, std::size_t bytes) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  Allocations& a = allocations();
  std::lock_guard lock(a.mutex);
  auto it = a.live.upper_bound(at);
  if (it == a.live.begin()) return false;
  --it;
  const std::uintptr_t end = it->first + it->second;
  return at <= end && bytes <= end - at;
}

std::string range_text(const void* p, std::size_t bytes) {
  char text[96];
  std::snprintf(text, sizeof text, "[%p, +%zu bytes)", p, bytes);
  return text;
}

/// Checks one side of a copy: a device side must lie in an allocation, a host side outside all.
cudaError_t check_side(const void* p, std::size_t bytes, bool device, const char* side,
                       const char* what) {
  if (bytes == 0) return cudaSuccess;
  if (device && !in_allocation(p, bytes))
    return fail(cudaErrorInvalidValue, std::string(what) + ": the " + side + " range " +
                                           range_text(p, bytes) +
                                           " is not inside one device allocation");
  if (!device && in_allocation(p, 1))
    return fail(cudaErrorInvalidMemcpyDirection,
                std::string(what) + ": the " + side + " is device memory, the kind says host");
  return cudaSuccess;
}

cudaError_t check_copy(void* to, std::size_t to_span, const void* from, std::size_t from_span,
                       cudaMemcpyKind kind, const char* what) {
  if (kind == cudaMemcpyDefault) return cudaSuccess;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return fail(cudaErrorInvalidMemcpyDirection, std::string(what) + ": unknown kind");
  const bool to_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool from_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (cudaError_t s = check_side(to, to_span, to_device, "destination", what); s != cudaSuccess)
    return s;
  return check_side(from, from_span, from_device, "source", what);
}

struct Event {
  std::chrono::steady_clock::time_point at;
};

}  // namespace

cudaError_t fail(cudaError_t status, const std::string& detail) {
  last_error = status;
  error_details[status] = std::string(error_name(status)) + " (cuda emulation: " + detail + ")";
  std::fprintf(stderr, "cuda emulation: %s\n", detail.c_str());
  return status;
}

bool is_device_range(const void* p, std::size_t bytes) { return in_allocation(p, bytes); }

void set_schedule_order(const char* order) { order_setting().store(order_named(order)); }

Exchange warp_exchange(unsigned mask, std::uint64_t mine, const char* kind) {
  BlockRun& b = this_block(kind);
  Fiber& f = *b.current;
  const unsigned parity = static_cast<unsigned>(f.warp_ops & 1);
  b.slots[parity][f.linear] = mine;
  wait_here(b, Wait::kWarp, kind, mask);
  ++f.warp_ops;
  return Exchange{b.slots[parity].data() + (f.linear - f.linear % 32),
                  static_cast<int>(f.linear % 32)};
}

void require_shuffle_width(int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    abandon(this_block("a warp shuffle"), "a shuffle width that is not 1, 2, 4, 8, 16 or 32");
}

void block_barrier() {
  BlockRun& b = this_block("__syncthreads");
  wait_here(b, Wait::kBlock, "__syncthreads", 0);
}

void grid_barrier() {
  BlockRun& b = this_block("grid.sync()");
  if (b.grid_state == nullptr) abandon(b, "grid.sync() in a launch that is not cooperative");
  wait_here(b, Wait::kGrid, "grid.sync", 0);
}

cudaError_t launch(dim3 grid, dim3 block, const Body& body, bool cooperative, const char* what) {
  static std::atomic<std::uint64_t> launches{0};
  const std::uint64_t launch_index = launches++;
  const unsigned long long threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
  const unsigned long long blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
  if (threads < 1 || threads > 1024 || block.z > 64)
    return fail(cudaErrorInvalidConfiguration, std::string(what) + ": block of " +
                                                   std::to_string(threads) +
                                                   " threads (1 to 1024 allowed)");
  if (blocks < 1 || grid.y > 65535 || grid.z > 65535)
    return fail(cudaErrorInvalidConfiguration,
                std::string(what) + ": grid of " + std::to_string(blocks) + " blocks");
  if (running_block != nullptr)
    return fail(cudaErrorLaunchFailure, std::string(what) + ": a launch from inside a kernel");
  auto block_index = [&](unsigned long long i) {
    return uint3{static_cast<unsigned>(i % grid.x), static_cast<unsigned>(i / grid.x % grid.y),
                 static_cast<unsigned>(i / (static_cast<unsigned long long>(grid.x) * grid.y))};
  };
  if (!cooperative) {
    std::vector<unsigned> order;
    arrange(order, static_cast<unsigned>(blocks), launch_index);
    for (unsigned i : order) {
      BlockRun b;
      b.body = &body;
      b.grid = grid;
      b.block = block;
      b.index = block_index(i);
      b.seed = launch_index * 1000003ull + i;
      run_block(b);
      if (!b.error.empty())
        return fail(cudaErrorLaunchFailure,
                    std::string(what) + ", block " + index_text(b.index) + ": " + b.error);
    }
    return check_guards(what);
  }
  if (blocks > static_cast<unsigned long long>(kMultiprocessors) * kBlocksPerMultiprocessor)
    return fail(
        cudaErrorCooperativeLaunchTooLarge,
        std::string(what) + ": " + std::to_string(blocks) + " blocks cannot be resident at once");
  GridState state;
  state.expected = static_cast<unsigned>(blocks);
  std::vector<std::string> errors(blocks);
  std::vector<std::thread> workers;
  for (unsigned long long i = 0; i < blocks; ++i)
    workers.emplace_back([&, i] {
      BlockRun b;
      b.body = &body;
      b.grid = grid;
      b.block = block;
      b.index = block_index(i);
      b.grid_state = &state;
      b.seed = launch_index * 1000003ull + i;
      run_block(b);
      grid_exit(state, index_text(b.index), b.error);
      errors[i] = b.error;
    });
  for (std::thread& w : workers) w.join();
  // The first cause, not the "cannot complete" errors it left in the other blocks.
  if (!state.cause.empty())
    return fail(cudaErrorLaunchFailure, std::string(what) + " (cooperative): " + state.cause);
  for (unsigned long long i = 0; i < blocks; ++i)
    if (!errors[i].empty())
      return fail(cudaErrorLaunchFailure, std::string(what) + " (cooperative), block " +
                                              index_text(block_index(i)) + ": " + errors[i]);
  return check_guards(what);
}

}  // namespace cuda_emulation

// ---- the runtime API -------------------------------------------------------------------------

using cuda_emulation::fail;

const char* cudaGetErrorString(cudaError_t status) {
  auto it = cuda_emulation::error_details.find(status);
  return it != cuda_emulation::error_details.end() ? it->second.c_str()
                                                   : cuda_emulation::error_name(status);
}

cudaError_t cudaGetLastError() {
  const cudaError_t status = cuda_emulation::last_error;
  cuda_emulation::last_error = cudaSuccess;
  return status;
}

cudaError_t cudaPeekAtLastError() { return cuda_emulation::last_error; }

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: null count");
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDevice: null device");
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess
                     : fail(cudaErrorInvalidValue, "cudaSetDevice: the emulator has device 0");
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device) {
  if (value == nullptr || device != 0)
    return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: null value or device != 0");
  switch (attribute) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = 1024;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = cuda_emulation::kMultiprocessors;
      return cudaSuccess;
    case cudaDevAttrCooperativeLaunch:
      *value = 1;
      return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: an attribute not emulated");
}

cudaError_t cudaMalloc(void** pointer, std::size_t bytes) {
  if (pointer == nullptr) return fail(cudaErrorInvalidValue, "cudaMalloc: null pointer");
  *pointer = nullptr;
  if (bytes == 0) return cudaSuccess;
  const std::size_t guard = cuda_emulation::guard_bytes(bytes);
  void* p = std::aligned_alloc(256, bytes + guard);
  if (p == nullptr)
    return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) + " bytes");
  // Fresh device memory holds garbage: all-ones bytes (NaN doubles, -1 integers) make a read
  // before the first write show.
  std::memset(p, 0xff, bytes);
  std::memset(static_cast<char*>(p) + bytes, cuda_emulation::kGuardByte, guard);
#if defined(TETHER_EMULATION_ASAN)
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + bytes, guard);
#endif
  auto& a = cuda_emulation::allocations();
  std::lock_guard lock(a.mutex);
  a.live[reinterpret_cast<std::uintptr_t>(p)] = bytes;
  *pointer = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* pointer) {
  if (pointer == nullptr) return cudaSuccess;
  auto& a = cuda_emulation::allocations();
  std::size_t bytes = 0;
  bool known = false;
  {
    std::lock_guard lock(a.mutex);
    auto it = a.live.find(reinterpret_cast<std::uintptr_t>(pointer));
    if (it != a.live.end()) {
      known = true;
      bytes = it->second;
      a.live.erase(it);
    }
  }
  if (!known)
    return fail(cudaErrorInvalidDevicePointer, "cudaFree of a pointer cudaMalloc did not return");
  const long long overwritten =
      cuda_emulation::overwritten_guard(reinterpret_cast<std::uintptr_t>(pointer), bytes);
#if defined(TETHER_EMULATION_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(pointer) + bytes,
                              cuda_emulation::guard_bytes(bytes));
#endif
  std::free(pointer);
  if (overwritten >= 0)
    return fail(cudaErrorIllegalAddress, "cudaFree: a write " + std::to_string(overwritten) +
                                             " bytes past the end of this allocation of " +
                                             std::to_string(bytes) + " bytes");
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* to, const void* from, std::size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t s = cuda_emulation::check_copy(to, bytes, from, bytes, kind, "cudaMemcpy");
      s != cudaSuccess)
    return s;
  if (bytes > 0) std::memmove(to, from, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy2D(void* to, std::size_t to_pitch, const void* from, std::size_t from_pitch,
                         std::size_t width, std::size_t height, cudaMemcpyKind kind) {
  if (width > to_pitch || width > from_pitch)
    return fail(cudaErrorInvalidValue, "cudaMemcpy2D: width above a pitch");
  if (height == 0 || width == 0) return cudaSuccess;
  const std::size_t to_span = (height - 1) * to_pitch + width;
  const std::size_t from_span = (height - 1) * from_pitch + width;
  if (cudaError_t s =
          cuda_emulation::check_copy(to, to_span, from, from_span, kind, "cudaMemcpy2D");
      s != cudaSuccess)
    return s;
  for (std::size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(to) + r * to_pitch,
                 static_cast<const char*>(from) + r * from_pitch, width);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* pointer, int value, std::size_t bytes) {
  if (bytes > 0 && !cuda_emulation::is_device_range(pointer, bytes))
    return fail(cudaErrorInvalidValue, "cudaMemset: the range " +
                                           cuda_emulation::range_text(pointer, bytes) +
                                           " is not inside one device allocation");
  if (bytes > 0) std::memset(pointer, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (event == nullptr) return fail(cudaErrorInvalidValue, "cudaEventCreate: null event");
  *event = reinterpret_cast<cudaEvent_t>(new cuda_emulation::Event);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<cuda_emulation::Event*>(event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (event == nullptr) return fail(cudaErrorInvalidValue, "cudaEventRecord: null event");
  reinterpret_cast<cuda_emulation::Event*>(event)->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t begin, cudaEvent_t end) {
  if (ms == nullptr || begin == nullptr || end == nullptr)
    return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: a null argument");
  const auto* b = reinterpret_cast<cuda_emulation::Event*>(begin);
  const auto* e = reinterpret_cast<cuda_emulation::Event*>(end);
  *ms = std::chrono::duration<float, std::milli>(e->at - b->at).count();
  return cudaSuccess;
}
