// CPU-vs-GPU: the device's phi(t) and phi'(t) against the same row math on the CPU.
// Skips (with a message) where no CUDA device is present.
#include <gtest/gtest.h>

#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/manifolds/budget_row.hpp>

namespace tether {
namespace {

TEST(BudgetDevice, MatchesTheCpuRowMath) {
  if (!device::cuda_available()) {
    Matrix a = Matrix::Zero(2, 2);
    EXPECT_THROW(device::expected_cost_and_slope(a, a, 0.0), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  Rng rng(3);
  for (Index n : {1, 255, 256, 257, 100000}) {
    const Index k = 7;
    Matrix alpha(n, k), costs(n, k);
    for (Index j = 0; j < alpha.size(); ++j) {
      alpha.data()[j] = rng.uniform(-20, 20);
      costs.data()[j] = rng.uniform(0.001, 10);
    }
    for (double t : {0.0, 0.37, -2.0}) {
      double phi = 0, slope = 0;
      for (Index i = 0; i < n; ++i) {
        const budget_row::Moments m =
            budget_row::moments_shifted(alpha.row(i).data(), costs.row(i).data(), k, t);
        phi += m.expected;
        slope += m.variance;
      }
      const device::PhiAndSlope d = device::expected_cost_and_slope(alpha, costs, t);
      EXPECT_NEAR(d.phi, phi, 1e-12 * std::abs(phi)) << "n = " << n << ", t = " << t;
      EXPECT_NEAR(d.slope, slope, 1e-12 * std::abs(slope) + 1e-300) << "n = " << n << ", t = " << t;
    }
  }
  EXPECT_THROW(device::expected_cost_and_slope(Matrix::Zero(2, 3), Matrix::Zero(3, 3), 0.0),
               ShapeError);
}

}  // namespace
}  // namespace tether
