// CPU-vs-GPU: the gating hierarchy's G and its Jacobian products J v, J^T v on the device
// against the CPU gate, FiberPO (depth 2) and FiberPO-Domain (depth 4) with per-level budgets.
// Skips (with a message) where no CUDA device is present; the refusals are checked everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tether/solvers/fiberpo_device.hpp>
#include <vector>

#include "policy_test_batch.hpp"

namespace tether {
namespace {

TokenBatch batch_of(Rng& rng, int domains, int groups, int trajectories, int min_len, int max_len) {
  return testing::make_test_batch(rng, domains, groups, trajectories, min_len, max_len,
                                  /*states=*/0, /*advantage_per_token=*/true);
}

// Log-ratios of mixed sizes per trajectory, so every regime occurs.
Vector mixed_new_log_prob(Rng& rng, const TokenBatch& b) {
  return b.old_log_prob + testing::mixed_log_ratios(rng, b);
}

TEST(FiberPoDevice, GatedRatiosAndJacobianProductsMatchTheCpuGate) {
  Rng rng(41);
  const TokenBatch small = batch_of(rng, 2, 2, 3, 2, 6);
  const Vector small_lp = mixed_new_log_prob(rng, small);
  const GatingHierarchyGate domain;
  if (!device::cuda_available()) {
    EXPECT_THROW(device::gated_values(domain, small, small_lp), Error);
    EXPECT_THROW(device::DeviceGatedRatios(domain, small, small_lp), Error);
    // The batch is checked before the device is looked for, with the CPU gate's message.
    Vector bad = small_lp;
    bad[0] = std::numeric_limits<double>::quiet_NaN();
    EXPECT_THROW(device::gated_values(domain, small, bad), InvalidArgumentError);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  GatingHierarchyOptions per_level;
  per_level.level_budgets = {{0.2, 0.1}, {0.15, 0.07}, {0.12, 0.05}};
  const std::vector<GatingHierarchyGate> gates = {
      GatingHierarchyGate(GatingHierarchyOptions{.coarse_levels = {}}), domain,
      GatingHierarchyGate(per_level)};
  // Shapes (domains, groups per domain, trajectories per group, shortest, longest): short
  // trajectories, single tokens, the benchmark's 4096 trajectories (more than a block's warps,
  // 1024 blocks), and a few long ones (each warp's lanes loop many times; lengths not multiples
  // of 32).
  for (const auto& shape : std::vector<std::vector<int>>{
           {2, 2, 3, 2, 6}, {1, 3, 5, 1, 1}, {8, 32, 16, 16, 256}, {1, 2, 3, 1000, 5000}}) {
    const TokenBatch b = batch_of(rng, shape[0], shape[1], shape[2], shape[3], shape[4]);
    const Vector lp = mixed_new_log_prob(rng, b);
    Vector v(b.size());
    for (Index i = 0; i < v.size(); ++i) v[i] = rng.normal();
    for (const GatingHierarchyGate& gate : gates) {
      const GatedRatios cpu = gate.gated_ratios(b, lp);
      const device::DeviceGatedRatios gpu(gate, b, lp);
      const std::string where = std::to_string(b.size()) + " tokens, " +
                                std::to_string(gate.options().coarse_levels.size()) +
                                " coarse levels";
      const Vector g = gpu.values();
      ASSERT_EQ(g.size(), cpu.values().size());
      EXPECT_LE(
          ((g - cpu.values()).array().abs() / cpu.values().array().abs().max(1e-300)).maxCoeff(),
          1e-12)
          << where;
      // The Jacobian products, in both spaces, to rounding of their own scale.
      Vector jv, jtv, jv_log, jtv_log;
      cpu.jvp(v, jv);
      cpu.vjp(v, jtv);
      cpu.jvp_log(v, jv_log);
      cpu.vjp_log(v, jtv_log);
      auto close = [](const Vector& a, const Vector& b) {
        return (a - b).cwiseAbs().maxCoeff() / std::max(1.0, b.cwiseAbs().maxCoeff());
      };
      EXPECT_LE(close(gpu.jvp(v), jv), 1e-12) << where << ", J v";
      EXPECT_LE(close(gpu.vjp(v), jtv), 1e-12) << where << ", J^T v";
      EXPECT_LE(close(gpu.jvp_log(v), jv_log), 1e-12) << where << ", J v (log)";
      EXPECT_LE(close(gpu.vjp_log(v), jtv_log), 1e-12) << where << ", J^T v (log)";
    }
  }
}

}  // namespace
}  // namespace tether
