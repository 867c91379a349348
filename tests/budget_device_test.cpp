// CPU-vs-GPU: the device's phi(t) and phi'(t) against the same row math on the CPU.
// Skips (with a message) where no CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/manifolds/budget_manifold.hpp>
#include <tether/manifolds/budget_row.hpp>
#include <tether/solvers/riemannian_adam.hpp>
#include <vector>

namespace tether {
namespace {

// The shapes both device comparisons run: one small and one large single instance (the large
// one takes the cooperative kernel), many instances with equality and with at-most budgets.
struct BlockCase {
  Index n, k, blocks;
  BudgetSense sense;
};
const BlockCase kBlockCases[] = {{300, 7, 1, BudgetSense::kEqual},
                                 {20000, 8, 40, BudgetSense::kEqual},
                                 {20000, 8, 40, BudgetSense::kAtMost},
                                 {300000, 8, 1, BudgetSense::kEqual}};

// The rows split into `blocks` equal blocks (the last takes the rest), each with a budget drawn
// inside its feasible range.
BudgetManifold blocked_manifold(Rng& rng, const Matrix& costs, Index blocks, BudgetSense sense) {
  const Index n = costs.rows(), rows = n / blocks;
  std::vector<Index> starts;
  Vector budgets(blocks);
  for (Index b = 0; b < blocks; ++b) {
    starts.push_back(b * rows);
    const Index r1 = b + 1 == blocks ? n : (b + 1) * rows;
    const Matrix block = costs.middleRows(b * rows, r1 - b * rows);
    const double lo = block.rowwise().minCoeff().sum(), hi = block.rowwise().maxCoeff().sum();
    budgets[b] = lo + rng.uniform(0.1, 0.9) * (hi - lo);
  }
  return BudgetManifold(costs, starts, budgets, sense);
}

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

// The device retraction against the CPU one: many instances (one CUDA block each) and one large
// instance (the cooperative kernel), equality and at most, from hard starts.
TEST(BudgetDevice, RetractionMatchesTheCpuRetraction) {
  if (!device::cuda_available()) {
    BudgetManifold manifold(Matrix::Constant(2, 2, 1.0) + Matrix::Identity(2, 2), 3.0);
    Matrix a = Matrix::Zero(2, 2);
    EXPECT_THROW(device::retract(manifold, a), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  Rng rng(8);
  for (const BlockCase& c : kBlockCases) {
    Matrix alpha(c.n, c.k), costs(c.n, c.k);
    for (Index j = 0; j < alpha.size(); ++j) {
      alpha.data()[j] = rng.uniform(-30, 30);
      costs.data()[j] = std::exp(rng.uniform(std::log(1e-3), std::log(1e3)));
    }
    const BudgetManifold manifold = blocked_manifold(rng, costs, c.blocks, c.sense);
    Matrix on_cpu = alpha, on_gpu = alpha;
    const RetractionReport cpu = manifold.retract(on_cpu);
    const RetractionReport gpu = device::retract(manifold, on_gpu);
    EXPECT_TRUE(gpu.converged) << "n = " << c.n;
    EXPECT_LE(gpu.max_abs_residual,
              1e-12 * std::max(1.0, manifold.budgets().cwiseAbs().maxCoeff()));
    ASSERT_EQ(gpu.shifts.size(), cpu.shifts.size());
    for (std::size_t b = 0; b < cpu.shifts.size(); ++b)
      EXPECT_NEAR(gpu.shifts[b], cpu.shifts[b], 1e-12 * std::max(1.0, std::abs(cpu.shifts[b])))
          << "n = " << c.n << ", block " << b;
    EXPECT_LE((on_gpu - on_cpu).cwiseAbs().maxCoeff(), 1e-10) << "n = " << c.n;
    EXPECT_LE(std::abs(gpu.passes - cpu.passes), 1) << "n = " << c.n;
  }
}

TEST(BudgetDevice, ProjectionMatchesTheCpuProjection) {
  if (!device::cuda_available()) {
    BudgetManifold manifold(Matrix::Constant(2, 2, 1.0) + Matrix::Identity(2, 2), 3.0);
    Matrix a = Matrix::Zero(2, 2), v = Matrix::Ones(2, 2);
    EXPECT_THROW(device::project(manifold, a, v), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  Rng rng(9);
  for (const BlockCase& c : kBlockCases) {
    Matrix alpha(c.n, c.k), costs(c.n, c.k), v(c.n, c.k);
    for (Index j = 0; j < alpha.size(); ++j) {
      alpha.data()[j] = rng.uniform(-5, 5);
      costs.data()[j] = rng.uniform(1.0, 8.0);
      v.data()[j] = rng.normal();
    }
    const BudgetManifold manifold = blocked_manifold(rng, costs, c.blocks, c.sense);
    manifold.retract(alpha);
    if (c.sense == BudgetSense::kAtMost)  // half the blocks near their cheapest: inactive
      for (Index b = 0; b < c.blocks; b += 2) {
        const Index r0 = manifold.block_begin(b), nr = manifold.block_end(b) - r0;
        alpha.middleRows(r0, nr) = -10.0 * costs.middleRows(r0, nr);
        ASSERT_FALSE(manifold.active(alpha, b));
      }
    Matrix on_cpu = v, on_gpu = v;
    ASSERT_TRUE(manifold.project(alpha, on_cpu));
    ASSERT_TRUE(device::project(manifold, alpha, on_gpu)) << "n = " << c.n;
    EXPECT_LE((on_gpu - on_cpu).cwiseAbs().maxCoeff(), 1e-12 * v.cwiseAbs().maxCoeff())
        << "n = " << c.n;
  }
  // Degenerate (one-hot rows): both refuse and leave v as it was.
  const Matrix costs = Matrix::Constant(4, 3, 1.0) + Matrix::Identity(4, 3);
  const BudgetManifold manifold(costs, 5.5);
  Matrix one_hot = Matrix::Constant(4, 3, -1e4);
  for (Index i = 0; i < 4; ++i) one_hot(i, 0) = 1e4;
  Matrix v = Matrix::Ones(4, 3), on_gpu = v;
  EXPECT_FALSE(manifold.project(one_hot, v));
  EXPECT_FALSE(device::project(manifold, one_hot, on_gpu));
  EXPECT_EQ(on_gpu, Matrix::Ones(4, 3));
}

TEST(BudgetDevice, AdamStepMatchesRiemannianAdam) {
  Rng rng(10);
  const Index n = 20000, k = 8;
  Matrix costs(n, k), alpha(n, k);
  for (Index j = 0; j < costs.size(); ++j) {
    costs.data()[j] = rng.uniform(1.0, 8.0);
    alpha.data()[j] = rng.normal();
  }
  const double lo = costs.rowwise().minCoeff().sum(), hi = costs.rowwise().maxCoeff().sum();
  const double budget = lo + 0.4 * (hi - lo);
  const BudgetManifold manifold(costs, budget);
  manifold.retract(alpha);
  const AdamOptions adam{.learning_rate = 0.05};
  if (!device::cuda_available()) {
    EXPECT_THROW(device::DeviceBudgetManifold{manifold}, Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  device::DeviceBudgetManifold on_device(manifold);
  on_device.upload(alpha);
  EXPECT_THROW(on_device.adam_step(adam), InvalidArgumentError);  // no gradient uploaded yet
  RiemannianAdam on_cpu(manifold, adam);
  Matrix cpu_alpha = alpha;
  for (int step = 0; step < 5; ++step) {
    Matrix g(n, k);
    for (Index j = 0; j < g.size(); ++j) g.data()[j] = rng.normal();
    on_device.upload_vector(g);
    const device::DeviceBudgetManifold::AdamStepReport gpu = on_device.adam_step(adam);
    const RiemannianStepReport cpu = on_cpu.step(cpu_alpha, g);
    ASSERT_FALSE(gpu.degenerate);
    ASSERT_TRUE(gpu.accepted);
    EXPECT_EQ(cpu.retraction.converged, gpu.retraction.converged);
    Matrix gpu_alpha;
    on_device.download(gpu_alpha);
    EXPECT_LE((gpu_alpha - cpu_alpha).cwiseAbs().maxCoeff(), 1e-10) << "step " << step;
    EXPECT_LE(std::abs(manifold.residual(gpu_alpha)[0]), 1e-12 * budget) << "step " << step;
  }
}

}  // namespace
}  // namespace tether
