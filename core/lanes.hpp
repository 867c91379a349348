// Lane loops: a pass over n values as blocks of kLanes consecutive ones, value k on lane
// k % kLanes, each lane accumulating into its own slot of a lane array. Each block's loop over
// the lanes vectorises (TETHER_LANES) and the lanes fix the order of every sum, so a result is
// the same bits whatever the vector width, on the host and in a CUDA thread (which runs the loop
// as written). Used by the row passes of the simplex-type projections and by the per-trajectory
// sums of the gating hierarchy.
#pragma once

#include <tether/core/hd.hpp>

namespace tether::lanes {

constexpr int kLanes = 8;

/// Runs body(lane, k) over k < n: blocks of kLanes, the tail block lane by lane.
template <class Body>
TETHER_HD_INLINE void for_each(long long n, Body& body) {
  const long long full = n - n % kLanes;
  for (long long i = 0; i < full; i += kLanes) {
#if !defined(__CUDACC__)
#pragma omp simd simdlen(8)
#endif
    for (int l = 0; l < kLanes; ++l) body(l, i + l);
  }
  for (long long k = full; k < n; ++k) body(static_cast<int>(k - full), k);
}

/// The lanes' partial sums, added in lane order.
template <class T>
TETHER_HD_INLINE T total(const T (&partial)[kLanes]) {
  T sum = partial[0];
  for (int l = 1; l < kLanes; ++l) sum += partial[l];
  return sum;
}

}  // namespace tether::lanes
