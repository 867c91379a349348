// A seeded random source. Same seed, same stream, on every platform: the uniform draws are built
// from the raw 64-bit output of std::mt19937_64 (whose sequence the standard fixes), not from
// the implementation-defined std::*_distribution classes.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <tether/core/types.hpp>

namespace tether {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 42) : engine_(seed) {}

  /// Uniform on the open interval (0, 1): 53 random bits, shifted off both ends.
  double uniform() { return (static_cast<double>(engine_() >> 11) + 0.5) * 0x1.0p-53; }
  /// Uniform on [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n).
  std::uint64_t index(std::uint64_t n) { return engine_() % n; }  // bias < n / 2^64
  /// Standard Gumbel: -log(-log U).
  double gumbel() { return gumbel_of(uniform()); }
  /// The Gumbel draw of a given uniform u in (0, 1) (antithetic pairs use u and 1 - u).
  static double gumbel_of(double u) { return -std::log(-std::log(u)); }
  /// Standard normal (Box-Muller, one value per call).
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  /// Fills m with iid standard Gumbel draws.
  void fill_gumbel(Matrix& m) {
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = gumbel();
  }
  std::uint64_t next_u64() { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace tether
