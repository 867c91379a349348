// CPU-vs-GPU: the gating hierarchy's G and its Jacobian products J v, J^T v on the device
// against the CPU gate, FiberPO (depth 2) and FiberPO-Domain (depth 4) with per-level budgets.
// Then the device-resident calls of a training loop: update() with host and device log-probs,
// and the Jacobian products on device vectors, against fresh gates and the host products, bit
// for bit (the same kernels on the same device), with their refusals.
// Skips (with a message) where no CUDA device is present; the refusals are checked everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/fiberpo.hpp>
#include <tether/solvers/fiberpo_device.hpp>
#include <vector>

#include "error_message.hpp"
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
      // J and its gradient (a training step's call) from the batch's advantages, each to
      // rounding of its own scale: sum_k mu_k sum_i |A_i G_i| for J, max |dJ| for the gradient.
      const GateValue expected = gate.evaluate(b, lp);
      device::DeviceVector gradient;
      const double objective = gpu.evaluate(gradient);
      const std::vector<Index>& traj = cpu.trajectory_offsets();
      const Index n_traj = static_cast<Index>(traj.size()) - 1;
      double objective_scale = 0.0;
      for (Index k = 0; k < n_traj; ++k)
        objective_scale +=
            (b.advantage.segment(traj[k], traj[k + 1] - traj[k]).array() *
             cpu.values().segment(traj[k], traj[k + 1] - traj[k]).array())
                .abs()
                .sum() /
            (static_cast<double>(n_traj) * static_cast<double>(traj[k + 1] - traj[k]));
      EXPECT_LE(std::abs(objective - expected.objective), 1e-12 * objective_scale) << where;
      const Vector got = gradient.to_host();
      ASSERT_EQ(got.size(), b.size());
      EXPECT_LE((got - expected.gradient).cwiseAbs().maxCoeff(),
                1e-12 * expected.gradient.cwiseAbs().maxCoeff())
          << where << ", dJ / d log pi";
    }
  }
}

TEST(FiberPoDevice, UpdatesAndDeviceVectorsGiveTheSameBitsAsFreshGates) {
  using testing::contains;
  using testing::message_of;
  Rng rng(43);
  const TokenBatch b = batch_of(rng, 2, 4, 8, 30, 90);
  const Vector first = mixed_new_log_prob(rng, b), second = mixed_new_log_prob(rng, b);
  const GatingHierarchyGate gate;
  if (!device::cuda_available()) {
    EXPECT_THROW(device::DeviceVector(3), Error);
    EXPECT_THROW(device::DeviceVector(Vector::Zero(3)), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  const device::DeviceGatedRatios fresh(gate, b, second);
  device::DeviceGatedRatios from_host(gate, b, first), from_device(gate, b, first);
  ASSERT_NE(from_host.values(), fresh.values());  // the first log-probs gate differently
  from_host.update(second);
  EXPECT_EQ(from_host.values(), fresh.values());
  const device::DeviceVector d_second(second);
  from_device.update(d_second);
  EXPECT_EQ(from_device.values(), fresh.values());
  // evaluate after an update: the fresh gate's J and gradient, bit for bit; `gradient` sized on
  // first use.
  device::DeviceVector fresh_gradient, updated_gradient(3);
  EXPECT_EQ(from_device.evaluate(updated_gradient), fresh.evaluate(fresh_gradient));
  EXPECT_EQ(updated_gradient.to_host(), fresh_gradient.to_host());

  // The products on device vectors: the host products' bits; `out` sized on first use.
  Vector v(b.size());
  for (Index i = 0; i < v.size(); ++i) v[i] = rng.normal();
  const device::DeviceVector d_v(v);
  device::DeviceVector out;
  from_device.jvp(d_v, out);
  EXPECT_EQ(out.to_host(), fresh.jvp(v));
  from_device.vjp(d_v, out);
  EXPECT_EQ(out.to_host(), fresh.vjp(v));
  from_device.jvp_log(d_v, out);
  EXPECT_EQ(out.to_host(), fresh.jvp_log(v));
  from_device.vjp_log(d_v, out);
  EXPECT_EQ(out.to_host(), fresh.vjp_log(v));

  // Refusals, named as the CPU gate names them; a refused update leaves G as it was.
  for (const Index at : {Index{0}, Index{17}, b.size() - 1}) {
    for (const double value : {std::numeric_limits<double>::quiet_NaN(),
                               -std::numeric_limits<double>::infinity(), 0.25}) {
      Vector bad = second;
      bad[at] = value;
      const std::string expected = "new_log_prob at entry " + std::to_string(at) + " is ";
      EXPECT_TRUE(
          contains(message_of<InvalidArgumentError>([&] { from_host.update(bad); }), expected));
      const device::DeviceVector d_bad(bad);
      const std::string on_device =
          message_of<InvalidArgumentError>([&] { from_device.update(d_bad); });
      EXPECT_TRUE(contains(on_device, expected)) << on_device;
      EXPECT_EQ(from_host.values(), fresh.values());
      EXPECT_EQ(from_device.values(), fresh.values());
    }
  }
  // After the refusals, the products too are still the fresh gate's (r, flags, betas kept).
  from_device.jvp(d_v, out);
  EXPECT_EQ(out.to_host(), fresh.jvp(v));
  from_host.vjp(d_v, out);
  EXPECT_EQ(out.to_host(), fresh.vjp(v));
  EXPECT_THROW(from_host.update(Vector::Zero(b.size() + 1)), ShapeError);
  EXPECT_THROW(from_device.update(device::DeviceVector(b.size() - 1)), ShapeError);
  EXPECT_THROW(from_device.jvp(device::DeviceVector(3), out), ShapeError);
  // The device vector itself.
  device::DeviceVector small(Vector::LinSpaced(5, -2.0, 2.0));
  EXPECT_EQ(small.to_host(), Vector::LinSpaced(5, -2.0, 2.0));
  EXPECT_THROW(small.upload(Vector::Zero(4)), ShapeError);
  EXPECT_THROW(device::DeviceVector(-1), ShapeError);
  device::DeviceVector moved = std::move(small);
  EXPECT_EQ(moved.size(), 5);
  EXPECT_EQ(small.size(), 0);  // NOLINT(bugprone-use-after-move): moved-from is empty
}

TEST(FiberPoDevice, FloatLogProbsGateAsTheirExactConversion) {
  // A model's float log-probs on the device: each converted exactly to double, so G and the
  // products are those of a gate given the converted doubles, bit for bit; refusals as in double.
  using testing::contains;
  using testing::message_of;
  Rng rng(47);
  const TokenBatch b = batch_of(rng, 2, 4, 8, 30, 90);
  const Vector first = mixed_new_log_prob(rng, b);
  const Vector unrounded = mixed_new_log_prob(rng, b);
  const Eigen::VectorXf second = unrounded.cast<float>();
  const GatingHierarchyGate gate;
  EXPECT_THROW(device::DeviceVectorF(-1), ShapeError);  // refused before any device is sought
  if (!device::cuda_available()) {
    EXPECT_THROW(device::DeviceVectorF(3), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  const Vector converted = second.cast<double>();
  const device::DeviceGatedRatios fresh(gate, b, converted);
  device::DeviceGatedRatios from_float(gate, b, first);
  ASSERT_NE(from_float.values(), fresh.values());
  const device::DeviceVectorF d_second(second);
  from_float.update(d_second);
  EXPECT_EQ(from_float.values(), fresh.values());
  Vector v(b.size());
  for (Index i = 0; i < v.size(); ++i) v[i] = rng.normal();
  EXPECT_EQ(from_float.jvp(v), fresh.jvp(v));
  EXPECT_EQ(from_float.vjp_log(v), fresh.vjp_log(v));
  // Not the gate of the unrounded log-probs: the conversion is what the comparison pins.
  EXPECT_NE(device::gated_values(gate, b, unrounded), fresh.values());
  for (const Index at : {Index{0}, Index{17}, b.size() - 1}) {
    for (const float value : {std::numeric_limits<float>::quiet_NaN(),
                              -std::numeric_limits<float>::infinity(), 0.25f}) {
      Eigen::VectorXf bad = second;
      bad[at] = value;
      const device::DeviceVectorF d_bad(bad);
      const std::string message =
          message_of<InvalidArgumentError>([&] { from_float.update(d_bad); });
      EXPECT_TRUE(contains(message, "new_log_prob at entry " + std::to_string(at) + " is "))
          << message;
      EXPECT_EQ(from_float.values(), fresh.values());
    }
  }
  EXPECT_THROW(from_float.update(device::DeviceVectorF(b.size() + 1)), ShapeError);
  // The float device vector itself.
  const Eigen::VectorXf ramp = Eigen::VectorXf::LinSpaced(5, -2.0f, 2.0f);
  device::DeviceVectorF small(ramp);
  EXPECT_EQ(small.to_host(), ramp);
  EXPECT_EQ(small.value_at(4), 2.0f);
  EXPECT_THROW(small.upload(Eigen::VectorXf::Zero(4)), ShapeError);
  EXPECT_THROW(small.value_at(5), InvalidArgumentError);
}

}  // namespace
}  // namespace tether
