// Running a computation with its large outputs streamed (non-temporal stores) or not, for the
// tests that check that streaming changes no value (core/streaming_stores.hpp).
#pragma once

#include <limits>
#include <tether/core/streaming_stores.hpp>
#include <utility>

namespace tether::testing {

/// f() with every pass streaming its outputs (`streamed`) or none, the threshold restored
/// afterwards.
template <class F>
auto with_streaming(bool streamed, F&& f) {
  struct Restore {
    long long bytes;
    ~Restore() { streaming::set_min_bytes(bytes); }
  } restore{streaming::set_min_bytes(streamed ? 0 : std::numeric_limits<long long>::max())};
  return std::forward<F>(f)();
}

}  // namespace tether::testing
