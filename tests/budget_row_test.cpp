// The budget manifold's row code (manifolds/budget_row.hpp): the row-blocked CPU pass must
// compute exactly what the per-row function (which the CUDA kernels run) computes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_row.hpp>
#include <vector>

namespace tether {
namespace {

using budget_row::kBlockRows;
using budget_row::Moments;

// kBlockRows rows of k options: logits spread over +-scale, costs over [0, cost_max).
struct Block {
  std::vector<double> logits, costs;
};

Block random_block(Rng& rng, int k, double scale, double cost_max) {
  Block b;
  for (int j = 0; j < kBlockRows * k; ++j) {
    b.logits.push_back(scale * (2.0 * rng.uniform() - 1.0));
    b.costs.push_back(cost_max * rng.uniform());
  }
  return b;
}

template <int W>
void expect_block_matches_rows(int k, Rng& rng) {
  for (int trial = 0; trial < 50; ++trial) {
    const double scale = trial % 3 == 0 ? 50.0 : 3.0;  // near one-hot rows too
    const Block b = random_block(rng, k, scale, trial % 2 == 0 ? 1e3 : 8.0);
    const double t = trial % 5 == 0 ? 0.0 : 0.2 * (rng.uniform() - 0.5);
    Moments blocked[kBlockRows], full[kBlockRows], dispatched[kBlockRows];
    budget_row::moments_padded_block<W>(b.logits.data(), b.costs.data(), k, t, blocked);
    if (k == W) budget_row::moments_padded_block<W, true>(b.logits.data(), b.costs.data(), k, t, full);
    budget_row::moments_shifted_block(b.logits.data(), b.costs.data(), k, t, dispatched);
    for (int r = 0; r < kBlockRows; ++r) {
      const Moments row =
          budget_row::moments_shifted(b.logits.data() + r * k, b.costs.data() + r * k, k, t);
      ASSERT_TRUE(std::isfinite(row.expected) && std::isfinite(row.variance));
      // Bitwise: the same operations in the same order.
      EXPECT_EQ(blocked[r].expected, row.expected) << "k " << k << " trial " << trial << " row " << r;
      EXPECT_EQ(blocked[r].variance, row.variance) << "k " << k << " trial " << trial << " row " << r;
      if (k == W) {
        EXPECT_EQ(full[r].expected, row.expected);
        EXPECT_EQ(full[r].variance, row.variance);
      }
      EXPECT_EQ(dispatched[r].expected, row.expected);
      EXPECT_EQ(dispatched[r].variance, row.variance);
    }
  }
}

TEST(BudgetRow, BlockedMomentsAreBitIdenticalToRowByRow) {
  Rng rng(11);
  expect_block_matches_rows<2>(1, rng);
  expect_block_matches_rows<2>(2, rng);
  expect_block_matches_rows<4>(3, rng);
  expect_block_matches_rows<4>(4, rng);
  for (int k = 5; k <= 8; ++k) expect_block_matches_rows<8>(k, rng);
  for (int k = 9; k <= 16; ++k) expect_block_matches_rows<16>(k, rng);
}

TEST(BudgetRow, BlockedMomentsOfWideRowsFallBackToRowByRow) {
  Rng rng(12);
  const int k = 23;  // wider than kBufferedOptions
  const Block b = random_block(rng, k, 5.0, 10.0);
  Moments dispatched[kBlockRows];
  budget_row::moments_shifted_block(b.logits.data(), b.costs.data(), k, 0.05, dispatched);
  for (int r = 0; r < kBlockRows; ++r) {
    const Moments row =
        budget_row::moments_shifted(b.logits.data() + r * k, b.costs.data() + r * k, k, 0.05);
    EXPECT_EQ(dispatched[r].expected, row.expected);
    EXPECT_EQ(dispatched[r].variance, row.variance);
  }
}

TEST(BudgetRow, BlockedPassWritesTheRowsWhoseMomentsItReturns) {
  // The retraction moves alpha in the pass that measures the move: the moments returned at t
  // must be exactly those of the written rows at t = 0, recentred (row maximum 0) or not.
  Rng rng(14);
  for (int k : {3, 8, 16}) {
    for (bool recentre : {true, false}) {
      const Block b = random_block(rng, k, 20.0, 8.0);
      const double t = -0.3;
      std::vector<double> moved = b.logits;
      Moments at_t[kBlockRows], at_zero[kBlockRows];
      budget_row::moments_shifted_block(moved.data(), b.costs.data(), k, t, at_t, moved.data(),
                                        recentre);  // in place, as the retraction calls it
      budget_row::moments_shifted_block(moved.data(), b.costs.data(), k, 0.0, at_zero);
      for (int r = 0; r < kBlockRows; ++r) {
        EXPECT_EQ(at_t[r].expected, at_zero[r].expected) << "k " << k << " row " << r;
        EXPECT_EQ(at_t[r].variance, at_zero[r].variance) << "k " << k << " row " << r;
        double row_max = -HUGE_VAL;
        for (int j = 0; j < k; ++j) {
          const double want = b.logits[r * k + j] + t * b.costs[r * k + j];
          row_max = std::max(row_max, moved[r * k + j]);
          if (!recentre) EXPECT_EQ(moved[r * k + j], want);
        }
        if (recentre) EXPECT_EQ(row_max, 0.0);
      }
      // The per-row path writes the same rows.
      std::vector<double> per_row = b.logits;
      for (int r = 0; r < kBlockRows; ++r)
        budget_row::shift_row(per_row.data() + r * k, b.costs.data() + r * k, k, t,
                              per_row.data() + r * k, recentre);
      EXPECT_EQ(per_row, moved);
    }
  }
}

TEST(BudgetRow, BlockedMomentsMatchAPlainSoftmax) {
  // Independent of the row code: E and Var by std::exp, in long double.
  Rng rng(13);
  const int k = 6;
  const Block b = random_block(rng, k, 4.0, 8.0);
  const double t = 0.07;
  Moments blocked[kBlockRows];
  budget_row::moments_padded_block<8>(b.logits.data(), b.costs.data(), k, t, blocked);
  for (int r = 0; r < kBlockRows; ++r) {
    long double s = 0, sc = 0, sc2 = 0;
    for (int j = 0; j < k; ++j) {
      const long double c = b.costs[r * k + j];
      const long double w = std::exp(static_cast<long double>(b.logits[r * k + j]) + t * c);
      s += w;
      sc += w * c;
      sc2 += w * c * c;
    }
    const long double e = sc / s, var = sc2 / s - e * e;
    EXPECT_NEAR(blocked[r].expected, static_cast<double>(e), 1e-14 * 8.0);
    EXPECT_NEAR(blocked[r].variance, static_cast<double>(var), 1e-13 * 64.0);
  }
}

}  // namespace
}  // namespace tether
