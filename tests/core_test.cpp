// core/: Adam against its closed form, the seeded RNG, the Taylor-slope checker, callbacks.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <sstream>
#include <tether/core/adam.hpp>
#include <tether/core/callbacks.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/streaming_stores.hpp>
#include <vector>

namespace tether {
namespace {

TEST(Adam, FirstTwoStepsMatchTheClosedForm) {
  // Bias correction makes the first step exactly -lr * sign(g) (up to eps).
  Adam adam({.learning_rate = 0.1, .beta1 = 0.9, .beta2 = 0.999, .epsilon = 1e-8});
  Vector x(2), g(2);
  x << 1.0, -2.0;
  g << 3.0, -0.5;
  adam.step(x, g);
  EXPECT_NEAR(x[0], 1.0 - 0.1 * 3.0 / (3.0 + 1e-8), 1e-15);
  EXPECT_NEAR(x[1], -2.0 + 0.1 * 0.5 / (0.5 + 1e-8), 1e-15);
  // Second step with gradient h: m = 0.9*0.1 g + 0.1 h, v = 0.999*0.001 g^2 + 0.001 h^2.
  Vector h(2);
  h << 1.0, 2.0;
  const Vector before = x;
  adam.step(x, h);
  for (int j = 0; j < 2; ++j) {
    const double m = 0.9 * 0.1 * g[j] + 0.1 * h[j];
    const double v = 0.999 * 0.001 * g[j] * g[j] + 0.001 * h[j] * h[j];
    const double mhat = m / (1 - 0.81), vhat = v / (1 - 0.999 * 0.999);
    EXPECT_NEAR(x[j], before[j] - 0.1 * mhat / (std::sqrt(vhat) + 1e-8), 1e-14);
  }
  EXPECT_EQ(adam.steps_taken(), 2);
}

TEST(Adam, RefusesInvalidOptionsAndShapes) {
  EXPECT_THROW(Adam({.learning_rate = -1.0}), InvalidArgumentError);
  EXPECT_THROW(Adam({.beta1 = 1.0}), InvalidArgumentError);
  EXPECT_THROW(Adam({.epsilon = 0.0}), InvalidArgumentError);
  EXPECT_THROW(Adam({.weight_decay = -0.1}), InvalidArgumentError);
  Adam adam;
  Vector x = Vector::Zero(3), g = Vector::Zero(2);
  EXPECT_THROW(adam.step(x, g), ShapeError);
}

TEST(Rng, SameSeedSameStreamAndGumbelMoments) {
  Rng a(123), b(123), c(124);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(Rng(123).next_u64(), c.next_u64());
  // Standard Gumbel: mean = Euler-Mascheroni gamma, variance = pi^2 / 6. With n = 2e5 draws the
  // standard error of the mean is ~0.0029: test at 5 standard errors.
  Rng rng(42);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng.gumbel();
    ASSERT_TRUE(std::isfinite(x));
    sum += x;
    sum2 += x * x;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  const double se = std::sqrt(std::numbers::pi * std::numbers::pi / 6 / n);
  EXPECT_NEAR(mean, std::numbers::egamma, 5 * se);
  EXPECT_NEAR(var, std::numbers::pi * std::numbers::pi / 6, 0.05);
  for (int i = 0; i < 1000; ++i) {
    const double u = rng.uniform();
    ASSERT_GT(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(GradientCheck, TaylorSlopeIsTwoForTheRightGradientAndOneForAWrongOne) {
  auto f = [](const Vector& x) { return std::sin(x[0]) * std::exp(x[1]) + x[0] * x[0] * x[1]; };
  Vector x(2), d(2);
  x << 0.3, -0.7;
  d << 0.6, 0.8;
  Vector g(2);
  g << std::cos(x[0]) * std::exp(x[1]) + 2 * x[0] * x[1],
      std::sin(x[0]) * std::exp(x[1]) + x[0] * x[0];
  EXPECT_NEAR(check_gradient_slope(f, x, g, d).slope, 2.0, 0.1);
  Vector wrong = g;
  wrong[0] += 1e-3;
  EXPECT_NEAR(check_gradient_slope(f, x, wrong, d, 1e-6, 1e-4).slope, 1.0, 0.1);
  EXPECT_LE((finite_difference_gradient(f, x) - g).norm(), 1e-9);
  EXPECT_THROW(taylor_slope([](double) { return 0.0; }), NumericalError);  // all below round-off
  EXPECT_THROW(taylor_slope([](double h) { return h; }, 1e-1, 1e-2), InvalidArgumentError);
}

TEST(Callbacks, EarlyStopCsvAndProgressBar) {
  callbacks::EarlyStop stop{.patience = 3, .min_delta = 0.0};
  IterationRecord r;
  r.best_loss = 5.0;
  EXPECT_TRUE(stop.on_iteration(r));  // improvement from +inf
  EXPECT_TRUE(stop.on_iteration(r));
  EXPECT_TRUE(stop.on_iteration(r));
  EXPECT_FALSE(stop.on_iteration(r));  // three iterations without improvement
  std::ostringstream out;
  callbacks::CsvHistory csv(out);
  CallbackSet set(csv, stop);
  set.begin(10);
  r.iteration = 4;
  r.loss = 1.5;
  EXPECT_FALSE(set.iteration(r));  // EarlyStop still says stop; CSV still wrote the row
  EXPECT_NE(out.str().find("iteration,loss,best_loss"), std::string::npos);
  EXPECT_NE(out.str().find("\n4,1.5,5,"), std::string::npos) << out.str();
  EXPECT_THROW(callbacks::CsvHistory("/nonexistent-dir/x.csv"), InvalidArgumentError);
}

TEST(StreamingStores, ByBlocksWritesEveryEntryOnceAndPutWritesWhatItIsGiven) {
  // Every [begin, end) (heads and tails around the 64-entry blocks, empty ranges included): one()
  // and block() together visit each index once, blocks start at multiples of kBlock, and put()
  // writes exactly its count of values, streamed or not, at any alignment.
  constexpr int kB = streaming::kBlock;
  std::vector<double> out(4 * kB + 3);
  std::vector<std::uint8_t> bytes(4 * kB + 3);
  for (long long begin : {0, 1, 7, 8, 63, 64, 65, 130})
    for (long long end = begin; end <= 4 * kB + 2; end += 11) {
      std::vector<int> visits(out.size(), 0);
      std::fill(out.begin(), out.end(), -1.0);
      std::fill(bytes.begin(), bytes.end(), std::uint8_t{0xee});
      streaming::by_blocks(
          begin, end,
          [&](long long i) {
            ++visits[static_cast<std::size_t>(i)];
            out[static_cast<std::size_t>(i)] = static_cast<double>(i);
            bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
          },
          [&](long long i, int count) {
            ASSERT_EQ(i % kB, 0) << begin << " " << end;
            ASSERT_TRUE(count > 0 && count <= kB && i + count <= end);
            double v[kB];
            std::uint8_t b[kB];
            for (int k = 0; k < count; ++k) {
              ++visits[static_cast<std::size_t>(i + k)];
              v[k] = static_cast<double>(i + k);
              b[k] = static_cast<std::uint8_t>(i + k);
            }
            streaming::put(out.data() + i, v, count, true);
            streaming::put(bytes.data() + i, b, count, true);
          });
      for (std::size_t i = 0; i < out.size(); ++i) {
        const bool inside = static_cast<long long>(i) >= begin && static_cast<long long>(i) < end;
        ASSERT_EQ(visits[i], inside ? 1 : 0) << begin << " " << end << " " << i;
        ASSERT_EQ(out[i], inside ? static_cast<double>(i) : -1.0) << begin << " " << end;
        ASSERT_EQ(bytes[i], inside ? static_cast<std::uint8_t>(i) : 0xee) << begin << " " << end;
      }
    }
  // put() at misaligned destinations (plain stores there) and with partial counts.
  for (int offset = 0; offset < 3; ++offset)
    for (int count : {0, 1, 8, 9, 17, kB})
      for (bool stream : {false, true}) {
        std::fill(out.begin(), out.end(), -1.0);
        std::vector<double> v(static_cast<std::size_t>(kB));
        for (int k = 0; k < kB; ++k) v[static_cast<std::size_t>(k)] = 0.5 + k;
        streaming::put(out.data() + offset, v.data(), count, stream);
        streaming::fence();
        for (int k = 0; k < 3 + kB; ++k)
          ASSERT_EQ(out[static_cast<std::size_t>(k)],
                    k >= offset && k < offset + count ? 0.5 + (k - offset) : -1.0)
              << offset << " " << count << " " << stream;
      }
  // The threshold: set, read back, restored.
  const long long saved = streaming::set_min_bytes(100);
  EXPECT_GT(saved, 0);
  EXPECT_TRUE(streaming::worth_it(100));
  EXPECT_FALSE(streaming::worth_it(99));
  EXPECT_EQ(streaming::set_min_bytes(saved), 100);
}

}  // namespace
}  // namespace tether
