// fast_exp (core/fast_exp.hpp) against std::exp: ulp distance over the whole finite range,
// the special values, and the underflow and overflow edges.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tether/core/fast_exp.hpp>
#include <tether/core/rng.hpp>

namespace {

// Distance in units in the last place between two finite, non-negative doubles.
std::int64_t ulp_distance(double a, double b) {
  std::int64_t ia, ib;
  std::memcpy(&ia, &a, sizeof a);
  std::memcpy(&ib, &b, sizeof b);
  return ia > ib ? ia - ib : ib - ia;
}

std::int64_t worst_ulps(double lo, double hi, int samples, std::uint64_t seed) {
  tether::Rng rng(seed);
  std::int64_t worst = 0;
  for (int i = 0; i < samples; ++i) {
    const double x = rng.uniform(lo, hi);
    worst = std::max(worst, ulp_distance(tether::fast_exp(x), std::exp(x)));
  }
  return worst;
}

TEST(FastExp, WithinOneUlpOfStdExpOverTheNormalRange) {
  EXPECT_LE(worst_ulps(-708.0, 709.7, 400000, 1), 1);
  EXPECT_LE(worst_ulps(-1.0, 1.0, 200000, 2), 1);
  EXPECT_LE(worst_ulps(-50.0, 0.0, 200000, 3), 1);  // the softmax range: x - max <= 0
}

TEST(FastExp, SubnormalResultsWithinOneUlp) {
  // exp(x) is subnormal below -708.4; an ulp there is 2^-1074 absolute.
  EXPECT_LE(worst_ulps(-745.0, -708.4, 100000, 4), 1);
}

TEST(FastExp, ExactAtZeroAndIntegersOfLn2) {
  EXPECT_EQ(tether::fast_exp(0.0), 1.0);
  EXPECT_EQ(tether::fast_exp(-0.0), 1.0);
  EXPECT_EQ(tether::fast_exp(1e-300), 1.0);
  EXPECT_EQ(tether::fast_exp(-1e-300), 1.0);
  EXPECT_LE(ulp_distance(tether::fast_exp(1.0), std::exp(1.0)), 1);
}

TEST(FastExp, SpecialValuesAndEdges) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(tether::fast_exp(-inf), 0.0);
  EXPECT_EQ(tether::fast_exp(-746.0), 0.0);
  EXPECT_EQ(tether::fast_exp(-1e9), 0.0);
  EXPECT_EQ(tether::fast_exp(-std::numeric_limits<double>::max()), 0.0);
  EXPECT_EQ(tether::fast_exp(inf), inf);
  EXPECT_EQ(tether::fast_exp(709.79), inf);
  EXPECT_EQ(tether::fast_exp(1e9), inf);
  EXPECT_TRUE(std::isnan(tether::fast_exp(std::numeric_limits<double>::quiet_NaN())));
  // The largest finite results and the smallest subnormal ones.
  EXPECT_LE(ulp_distance(tether::fast_exp(709.78), std::exp(709.78)), 1);
  EXPECT_LE(ulp_distance(tether::fast_exp(-745.1), std::exp(-745.1)), 1);
  EXPECT_GT(tether::fast_exp(-745.1), 0.0);
}

TEST(FastExp, MonotoneOnADenseGrid) {
  // A polynomial exp can wiggle at the seams between reduction intervals; check that it does
  // not decrease across k ln 2 / 2 boundaries.
  double previous = tether::fast_exp(-40.0);
  for (double x = -40.0 + 1e-3; x <= 40.0; x += 1e-3) {
    const double y = tether::fast_exp(x);
    ASSERT_GE(y, previous) << "at x = " << x;
    previous = y;
  }
}

}  // namespace
