#include <atomic>
#include <tether/core/streaming_stores.hpp>

namespace tether::streaming {

namespace {

// 32 MiB: the last-level cache of this project's machines (one CCD's L3). Not read from
// sysconf: inside this project's virtual machines it reports the whole host's (384 MiB), which
// would keep every pass from streaming.
std::atomic<long long> threshold{32LL << 20};

}  // namespace

long long min_bytes() { return threshold.load(std::memory_order_relaxed); }

long long set_min_bytes(long long bytes) { return threshold.exchange(bytes); }

}  // namespace tether::streaming
