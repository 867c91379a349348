// Lane loops (x86 and CUDA are little-endian: for_each_flagged relies on it): a pass over n values
// as blocks of kLanes consecutive ones, value k on lane k % kLanes, each lane accumulating into its
// own slot of a lane array. Each block's loop over the lanes vectorises (TETHER_LANES) and the
// lanes fix the order of every sum, so a result is the same bits whatever the vector width, on the
// host and in a CUDA thread (which runs the loop as written). Used by the row passes of the
// simplex-type projections and by the per-trajectory sums of the gating hierarchy.
#pragma once

#include <string.h>

#include <bit>
#include <cstdint>
#include <tether/core/hd.hpp>

namespace tether::lanes {

constexpr int kLanes = 8;

/// Runs body(lane, k) over k < n: blocks of kLanes, the tail block lane by lane.
template <class Body>
TETHER_HD_INLINE void for_each(long long n, Body& body) {
  const long long full = n - n % kLanes;
  for (long long i = 0; i < full; i += kLanes) {
    TETHER_LANES
    for (int l = 0; l < kLanes; ++l) body(l, i + l);
  }
  for (long long k = full; k < n; ++k) body(static_cast<int>(k - full), k);
}

/// for_each with a byte flag per value: body(lane, k, flags[k]). A full block's flags are read
/// as one 8-byte word and split by shifts (x86 and CUDA are little-endian): GCC does not
/// vectorise a lane loop that mixes byte loads with double arithmetic.
template <class Body>
TETHER_HD_INLINE void for_each_flagged(long long n, const std::uint8_t* flags, Body& body) {
  static_assert(kLanes == 8, "a block's flags are one 8-byte word");
#if !defined(__CUDACC__)
  static_assert(std::endian::native == std::endian::little, "flag k of a block is byte k");
#endif
  const long long full = n - n % kLanes;
  for (long long i = 0; i < full; i += kLanes) {
    std::uint64_t word = 0;
    memcpy(&word, flags + i, sizeof word);
    TETHER_LANES
    for (int l = 0; l < kLanes; ++l)
      body(l, i + l, static_cast<unsigned>((word >> (8 * l)) & 0xffu));
  }
  for (long long k = full; k < n; ++k) body(static_cast<int>(k - full), k, unsigned{flags[k]});
}

/// The lanes' partial sums, added in lane order.
template <class T>
TETHER_HD_INLINE T total(const T (&partial)[kLanes]) {
  T sum = partial[0];
  for (int l = 1; l < kLanes; ++l) sum += partial[l];
  return sum;
}

}  // namespace tether::lanes
