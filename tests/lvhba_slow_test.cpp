// LvHbaSolver on the longer runs of specs/bilevel.md section 2: T1 (penalty bias, 100k
// iterations), T2 at n = 1000, T4 over several seeds. Labelled "slow"; about a second in
// Release.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <tether/problems/bilevel_toys.hpp>
#include <tether/solvers/lvhba.hpp>

namespace tether {
namespace {

using problems::T1;
using problems::T2;
using problems::T4;

TEST(LvHbaSlow, T1ConvergesSlowlyWithTheSpecsSettings) {
  // Spec: with the T2 settings and p = 0.45, relative x error about 2.5e-3 at 100k (from the
  // public script's start x = -20, y = 10). Measured: 2.462e-3 (and 1.635e-3 from x = y = 0).
  // The bar: < 5e-3.
  const T1 p(100);
  LvHbaOptions o = T1::checked_options();
  ASSERT_EQ(o.max_iterations, 100000);
  ASSERT_EQ(o.p, 0.45);
  o.history_every = 10000;
  const LvHbaResult r = LvHbaSolver(o).minimize(p, p.start_x(), p.start_y());
  ASSERT_EQ(r.status, StopReason::kIterationLimit) << r.message;
  std::cout << "T1 n=100: relative x error after 50k " << r.history.rows[4].error << ", after 100k "
            << r.error << " (spec about 2.5e-3); multiplier " << r.lam[0] << "\n";
  EXPECT_LT(r.error, 5e-3);
  EXPECT_GT(r.error, 0.8 * 2.5e-3);
  EXPECT_LT(r.error, 1.25 * 2.5e-3);
  EXPECT_LT(r.error, 0.2 * r.history.rows[4].error);  // still falling: 2.2e-2 at 50k
  EXPECT_NEAR(r.lam[0], -1.0, 1e-6);
  EXPECT_LT(r.constraint_residual, 1e-10);
  // The upper value approaches F* = 0.05 n = 5 (from below or above: (x, y) is not yet on the
  // lower-level solution set).
  EXPECT_NEAR(r.upper_value, p.optimal_value(), 0.1);
}

TEST(LvHbaSlow, T2AtN1000MatchesTheN100Trajectory) {
  // The spec's figures are for n = 100; at n = 1000 they hold too (measured 0.2492, 6.845e-3,
  // 2.415e-4, 1.048e-6, 3.127e-12), about 11 us an iteration.
  const T2 p(1000);
  LvHbaOptions o = T2::checked_options();
  o.max_iterations = 50000;
  o.history_every = 1000;
  const LvHbaResult r = LvHbaSolver(o).minimize(p, p.start_x(), p.start_y());
  ASSERT_EQ(r.status, StopReason::kIterationLimit) << r.message;
  ASSERT_EQ(r.history.size(), 50u);
  const struct {
    int k;
    double spec;
  } marks[] = {{1000, 0.25}, {5000, 7e-3}, {10000, 2.4e-4}, {20000, 1e-6}, {50000, 3e-12}};
  for (const auto& m : marks) {
    const IterationRecord& row = r.history.rows.at(static_cast<std::size_t>(m.k / 1000 - 1));
    ASSERT_EQ(row.iteration, m.k - 1);
    std::cout << "T2 n=1000: relative x error after " << m.k << ": " << row.error << " (spec "
              << m.spec << " at n = 100)\n";
    EXPECT_GT(row.error, 0.8 * m.spec) << m.k;
    EXPECT_LT(row.error, 1.25 * m.spec) << m.k;
  }
  EXPECT_LT(r.history.rows[9].error, 1e-3);
  EXPECT_LT(r.history.rows[19].error, 1e-5);
  EXPECT_NEAR(r.lam[0], -1.0, 1e-6);
  std::cout << "T2 n=1000: " << r.history.back().step_seconds * 1e6 << " us per iteration\n";
}

TEST(LvHbaSlow, T4TrackingFallsLikeOneOverCkOnSeveralSeeds) {
  // 50k iterations, seeds 1..3: after a burn-in of 5k iterations |y - y*(x)| decreases at
  // every recorded row, and |y - y*(x)| c_k stays within a factor 1.5 of its value at 5k.
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    const T4 p(100, 90, seed);
    LvHbaOptions o = T4::checked_options();
    o.max_iterations = 50000;
    o.history_every = 1000;
    const LvHbaResult r = LvHbaSolver(o).minimize(p, p.start_x(), p.start_y());
    ASSERT_EQ(r.status, StopReason::kIterationLimit) << r.message;
    double previous = INFINITY, scaled_at_5k = 0.0;
    for (const IterationRecord& row : r.history.rows) {
      const int k = row.iteration + 1;
      if (k < 5000) continue;
      EXPECT_LT(row.error, previous) << "seed " << seed << ", after " << k;
      previous = row.error;
      const double scaled = row.error * std::pow(static_cast<double>(k), o.p);
      if (k == 5000) scaled_at_5k = scaled;
      EXPECT_LT(scaled, 1.5 * scaled_at_5k) << "seed " << seed << ", after " << k;
      EXPECT_GT(scaled, scaled_at_5k / 1.5) << "seed " << seed << ", after " << k;
    }
    std::cout << "T4 seed " << seed << ": |y - y*(x)| after 50k " << r.error << "\n";
  }
}

}  // namespace
}  // namespace tether
