// Many gradients at once: RetainProjector::project_gradients (CPU) against project_gradient
// column by column, the explicit basis against its definition, and the device projection
// (fused sweeps) against the CPU one, which skips (with a message) where no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/manifolds/budget_device.hpp>
#include <tether/solvers/retain_projector.hpp>
#include <tether/solvers/retain_projector_device.hpp>
#include <utility>

#include "error_message.hpp"
#include "with_streaming.hpp"

namespace tether {
namespace {

using testing::message_of;

Eigen::MatrixXd gaussian(Rng& rng, Index rows, Index cols) {
  Eigen::MatrixXd m(rows, cols);
  for (Index j = 0; j < m.size(); ++j) m.data()[j] = rng.normal();
  return m;
}

// Window of k retain gradients, Adam-like metric, blockwise or global.
RetainProjector make_projector(Rng& rng, Index d, int k, bool blockwise, bool adam) {
  RetainProjectorOptions options{.window = 8};
  if (blockwise) {
    options.scope = RetainScope::kBlockwise;
    options.block_sizes = {d / 4, d / 2, d - d / 4 - d / 2};
  }
  RetainProjector projector(d, options);
  const Eigen::MatrixXd g = gaussian(rng, d, k);
  for (int j = 0; j < k; ++j) projector.push(g.col(j));
  if (adam) {
    Vector h(d);
    for (Index i = 0; i < d; ++i) h[i] = 0.01 + rng.uniform();
    projector.set_metric(h);
  }
  return projector;
}

TEST(RetainManyGradients, ProjectGradientsIsProjectGradientPerColumn) {
  Rng rng(51);
  for (bool blockwise : {false, true}) {
    for (bool adam : {false, true}) {  // the identity metric too
      // Two identical projectors: the same calls in the same order give the same bits (the
      // reflectors serve the first two projections, the explicit basis the rest).
      Rng twin = rng;
      RetainProjector projector = make_projector(rng, 200, 5, blockwise, adam);
      RetainProjector reference = make_projector(twin, 200, 5, blockwise, adam);
      const Eigen::MatrixXd g = gaussian(rng, 200, 7);
      Eigen::MatrixXd many;
      projector.project_gradients(g, many);
      for (Index j = 0; j < g.cols(); ++j) {
        const Vector one = reference.project_gradient(g.col(j));
        EXPECT_EQ(Vector(many.col(j)), one) << "column " << j << ", metric " << adam;
      }
    }
  }
  RetainProjector projector(10);
  Eigen::MatrixXd out;
  EXPECT_THROW(projector.project_gradients(Eigen::MatrixXd::Zero(9, 2), out), ShapeError);
}

// Several row chunks (d = 20000 > 8192 rows a chunk), blockwise, and columns that lie nearly in
// the retained span (a window gradient plus 1e-6 noise), for which the projection is repeated
// ("twice is enough"): the columns projected at once still match project_gradient bit for bit.
TEST(RetainManyGradients, ManyChunksAndRepeatedPassesStayBitwisePerColumn) {
  Rng rng(53);
  const Index d = 20000;
  RetainProjectorOptions options{.window = 4};
  options.scope = RetainScope::kBlockwise;
  options.block_sizes = {d / 4, d - d / 4};
  const Eigen::MatrixXd window = gaussian(rng, d, 4);
  Vector h(d);
  for (Index i = 0; i < d; ++i) h[i] = 0.01 + rng.uniform();
  RetainProjector projector(d, options), reference(d, options);
  for (RetainProjector* p : {&projector, &reference}) {
    for (int j = 0; j < 4; ++j) p->push(window.col(j));
    p->set_metric(h);
  }
  Eigen::MatrixXd g = gaussian(rng, d, 9);
  for (Index j : {4, 6, 8}) g.col(j) = window.col(j % 4) + 1e-6 * g.col(j);
  Eigen::MatrixXd many;
  projector.project_gradients(g, many);
  for (Index j = 0; j < g.cols(); ++j) {
    const Vector one = reference.project_gradient(g.col(j));
    EXPECT_EQ(Vector(many.col(j)), one) << "column " << j;
  }
  // With the results streamed past the caches (core/streaming_stores.hpp; forced here, as above
  // 32 MiB of results): the same bits as a call that does not stream (both past the first call,
  // whose first columns the reflectors serve).
  Eigen::MatrixXd plain, streamed;
  testing::with_streaming(false, [&] { projector.project_gradients(g, plain); });
  testing::with_streaming(true, [&] { projector.project_gradients(g, streamed); });
  EXPECT_TRUE(streamed.cwiseEqual(plain).all());
  // The near-span columns are orthogonal to the whitened window on each block to rounding of the
  // result (z = S g_window, w = S^-1 p, S = h^-1/2): one pass would leave cosines of about
  // eps |w0| / |w| ~ 1e-10 here (the noise is 1e-6 of the column); the repeated pass, ~eps.
  double worst_cosine = 0.0;
  const Vector s = h.cwiseSqrt().cwiseInverse();
  for (Index j : {4, 6, 8}) {
    const Vector w = -many.col(j).cwiseQuotient(s);
    for (const auto& [o, n] : {std::pair<Index, Index>{0, d / 4}, {d / 4, d - d / 4}})
      for (int i = 0; i < 4; ++i) {
        const Vector z = window.col(i).segment(o, n).cwiseProduct(s.segment(o, n));
        worst_cosine = std::max(
            worst_cosine, std::abs(z.dot(w.segment(o, n))) / (z.norm() * w.segment(o, n).norm()));
      }
  }
  EXPECT_LE(worst_cosine, 1e-13);
  std::printf("measured (retain batch, near-span columns): worst cosine to the window %.2e\n",
              worst_cosine);
  // A non-finite entry in a column projected with the others is named, in place too (out is
  // the gradients: the input is left as it was).
  g(12345, 5) = std::numeric_limits<double>::quiet_NaN();
  Eigen::MatrixXd in_place = g;
  for (const std::string& m :
       {message_of<NumericalError>([&] { projector.project_gradients(g, many); }),
        message_of<NumericalError>([&] { projector.project_gradients(in_place, in_place); })}) {
    EXPECT_NE(m.find("gradient in column 5"), std::string::npos) << m;
    EXPECT_NE(m.find("entry 12345"), std::string::npos) << m;
  }
  EXPECT_TRUE(in_place.cwiseEqual(g).count() == g.size() - 1);  // all but the NaN compare equal
  // And in place on finite input: the same bits as into another matrix.
  g(12345, 5) = 0.5;
  Eigen::MatrixXd separate;
  projector.project_gradients(g, separate);
  in_place = g;
  projector.project_gradients(in_place, in_place);
  EXPECT_TRUE(in_place.cwiseEqual(separate).all());
}

TEST(RetainManyGradients, FloatGradientsGiveTheDoubleResultRoundedBitForBit) {
  Rng rng(54);
  const Index d = 20000;  // 3 row chunks
  const Eigen::MatrixXd window = gaussian(rng, d, 4);
  Vector h(d);
  for (Index i = 0; i < d; ++i) h[i] = 0.01 + rng.uniform();
  Eigen::MatrixXf g = gaussian(rng, d, 9).cast<float>();
  // Near-span columns (noise 1e-4 of the column, above float rounding): their pass repeats.
  for (Index j : {4, 6, 8})
    g.col(j) = (window.col(j % 4) + 1e-4 * gaussian(rng, d, 1).col(0)).cast<float>();
  const Eigen::MatrixXd g_double = g.cast<double>();
  for (const bool blockwise : {false, true})
    for (const bool identity : {false, true}) {
      RetainProjectorOptions options{.window = 4};
      Eigen::MatrixXd pushed = window;
      if (blockwise) {  // the window vanishes on the last block: its rows are only scaled
        options.scope = RetainScope::kBlockwise;
        options.block_sizes = {d / 4, d / 4, d / 2};
        pushed.bottomRows(d / 2).setZero();
      }
      RetainProjector single(d, options), twin(d, options);
      for (RetainProjector* p : {&single, &twin}) {
        for (int j = 0; j < 4; ++j) p->push(pushed.col(j));
        if (!identity) p->set_metric(h);
      }
      // Twice: the first call's first columns go through the reflectors, the second's none.
      for (int call = 0; call < 2; ++call) {
        Eigen::MatrixXf out;
        Eigen::MatrixXd expected;
        single.project_gradients(g, out);
        twin.project_gradients(g_double, expected);
        if (blockwise) ASSERT_EQ(single.rank(2), 0);
        const Eigen::MatrixXf rounded = expected.cast<float>();
        ASSERT_EQ(out.rows(), d);
        ASSERT_EQ(out.cols(), g.cols());
        EXPECT_EQ(std::memcmp(out.data(), rounded.data(), sizeof(float) * out.size()), 0)
            << "blockwise " << blockwise << " identity " << identity << " call " << call;
      }
    }
  // Refusals: the shape, and a non-finite entry named by column and entry.
  RetainProjector projector(d, {.window = 4});
  for (int j = 0; j < 4; ++j) projector.push(window.col(j));
  Eigen::MatrixXf out;
  EXPECT_THROW(projector.project_gradients(Eigen::MatrixXf::Zero(d - 1, 2), out), ShapeError);
  for (int call = 0; call < 2; ++call) {  // through the reflectors, then the fused pass
    Eigen::MatrixXf bad = g;
    bad(12345, call == 0 ? 0 : 5) = std::numeric_limits<float>::infinity();
    const std::string m =
        message_of<NumericalError>([&] { projector.project_gradients(bad, out); });
    EXPECT_NE(m.find(call == 0 ? "gradient in column 0" : "gradient in column 5"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("entry 12345"), std::string::npos) << m;
    projector.project_gradients(g, out);  // makes the explicit basis serve the next call
  }
}

TEST(RetainManyGradients, ExplicitBasisIsOrthonormalAndSpansTheWhitenedWindow) {
  Rng rng(52);
  const Index d = 120;
  RetainProjector projector = make_projector(rng, d, 4, true, true);
  const Vector s = projector.whitening();
  ASSERT_EQ(s.size(), d);
  for (int b = 0; b < projector.blocks(); ++b) {
    const Eigen::MatrixXd q = projector.basis(b);
    ASSERT_EQ(q.rows(), projector.block_size(b));
    ASSERT_EQ(q.cols(), projector.rank(b));
    const Eigen::MatrixXd gram = q.transpose() * q;
    EXPECT_LE((gram - Eigen::MatrixXd::Identity(q.cols(), q.cols())).cwiseAbs().maxCoeff(), 1e-14);
    // The null-space projection of a gradient: S (z - Q Q^T z), z = S g, on this block.
    const Vector g = gaussian(rng, d, 1).col(0);
    const Vector p = projector.project_gradient(g);
    const Index o = projector.block_offset(b), n = projector.block_size(b);
    const Vector z = g.segment(o, n).cwiseProduct(s.segment(o, n));
    const Vector expected = (z - q * (q.transpose() * z)).cwiseProduct(s.segment(o, n));
    EXPECT_LE((p.segment(o, n) - expected).cwiseAbs().maxCoeff(), 1e-12 * expected.norm());
  }
  EXPECT_THROW(projector.basis(projector.blocks()), InvalidArgumentError);
}

TEST(RetainManyGradients, DeviceMatchesTheCpuProjection) {
  Rng rng(53);
  RetainProjector cone(50, {.mode = RetainProjectionMode::kCone});
  EXPECT_THROW(device::project_gradients(cone, Eigen::MatrixXd::Zero(50, 2)), InvalidArgumentError);
  RetainProjector projector = make_projector(rng, 50, 3, false, false);
  EXPECT_THROW(device::project_gradients(projector, Eigen::MatrixXd::Zero(49, 2)), ShapeError);
  if (!device::cuda_available()) {
    EXPECT_THROW(device::project_gradients(projector, Eigen::MatrixXd::Zero(50, 2)), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  // d = 30000: 15 tiles of the device's sweeps; d = 263000: 257 tiles, more than the 256
  // threads that add a column's tile sums (each takes tiles t, t + 256, ... before the tree).
  struct Case {
    Index d, columns;
    int pushed;  // retain gradients pushed (the window holds 8)
    bool blockwise, adam;
  };
  for (const Case c : {Case{30000, 64, 8, false, false}, Case{30000, 64, 8, false, true},
                       Case{30000, 64, 8, true, false}, Case{30000, 64, 8, true, true},
                       Case{263000, 2, 3, false, false}}) {
    RetainProjector p = make_projector(rng, c.d, c.pushed, c.blockwise, c.adam);
    const Eigen::MatrixXd g = gaussian(rng, c.d, c.columns);
    Eigen::MatrixXd cpu;
    p.project_gradients(g, cpu);
    const Eigen::MatrixXd gpu = device::project_gradients(p, g);
    for (Index j = 0; j < g.cols(); ++j)
      EXPECT_LE((gpu.col(j) - cpu.col(j)).cwiseAbs().maxCoeff(), 1e-12 * g.col(j).norm())
          << "column " << j << ", d " << c.d << (c.blockwise ? ", blockwise" : ", global")
          << (c.adam ? ", Adam metric" : ", identity");
  }
}

TEST(RetainManyGradients, DeviceSweepsTakeWideBasesNearSpanColumnsAndRankZeroBlocks) {
  // The device's fused sweeps (retain_kernels.cu) on what their structure splits: a basis of 12
  // columns (two register groups of 8, x read once per group), columns that lie nearly in the
  // window (their projection repeated), a block where the window vanishes (rank 0: its rows only
  // scaled), blocks that end inside a tile of 1024 rows, the identity metric and Adam's; and a
  // non-finite entry on a later block than the first, refused before any block is written.
  using testing::contains;
  Rng rng(61);
  const Index d = 5000;
  const int k = 12;
  const Eigen::MatrixXd window = gaussian(rng, d, k);
  Eigen::MatrixXd pushed = window;
  pushed.bottomRows(1200).setZero();
  Vector h(d);
  for (Index i = 0; i < d; ++i) h[i] = 0.01 + rng.uniform();
  Eigen::MatrixXd g = gaussian(rng, d, 7);
  for (Index j : {2, 5}) g.col(j) = pushed.col(j) + 1e-7 * g.col(j);
  if (!device::cuda_available()) GTEST_SKIP() << "no CUDA device here (or built without CUDA)";
  for (const bool identity : {false, true}) {
    RetainProjectorOptions options{.window = k};
    options.scope = RetainScope::kBlockwise;
    options.block_sizes = {1300, d - 2500, 1200};
    RetainProjector p(d, options);
    for (int j = 0; j < k; ++j) p.push(pushed.col(j));
    if (!identity) p.set_metric(h);
    ASSERT_EQ(p.rank(0), k);
    ASSERT_EQ(p.rank(2), 0);
    Eigen::MatrixXd cpu;
    p.project_gradients(g, cpu);
    const Eigen::MatrixXd gpu = device::project_gradients(p, g);
    const Vector s = identity ? Vector::Ones(d) : p.whitening();
    for (Index j = 0; j < g.cols(); ++j) {
      EXPECT_LE((gpu.col(j) - cpu.col(j)).cwiseAbs().maxCoeff(), 1e-12 * g.col(j).norm())
          << "column " << j << (identity ? ", identity" : ", Adam metric");
      // Whitened, the result is orthogonal to the whitened window on each block, to rounding of
      // itself: for the near-span columns only after the repeated pass.
      for (int b = 0; b < 2; ++b) {
        const Index o = p.block_offset(b), n = p.block_size(b);
        const Vector w = gpu.col(j).segment(o, n).cwiseQuotient(s.segment(o, n));
        for (int i = 0; i < k; ++i) {
          const Vector z = pushed.col(i).segment(o, n).cwiseProduct(s.segment(o, n));
          EXPECT_LE(std::abs(w.dot(z)), 1e-13 * w.norm() * z.norm())
              << "column " << j << ", block " << b << ", window gradient " << i;
        }
      }
      // The rank-0 block's rows: s .* (s .* g), as on the CPU.
      EXPECT_EQ(gpu.col(j).tail(1200), cpu.col(j).tail(1200)) << "column " << j;
    }
    const device::DeviceRetainProjection resident(p);
    for (const Index row : {Index{1300 + 17}, Index{d - 1}}) {  // the second block, the last
      Eigen::MatrixXd bad = g;
      bad(row, 4) = std::numeric_limits<double>::quiet_NaN();
      const Vector before = Eigen::Map<const Vector>(bad.data(), bad.size());
      device::DeviceVector on_device(before);
      const std::string message = message_of<NumericalError>([&] { resident.project(on_device); });
      EXPECT_TRUE(contains(message, "gradient 4 at entry " + std::to_string(row) + " is nan"))
          << message;
      const Vector after = on_device.to_host();
      EXPECT_EQ(std::memcmp(after.data(), before.data(), sizeof(double) * before.size()), 0);
    }
  }
}

TEST(RetainManyGradients, ResidentProjectionGivesTheSameBitsBatchAfterBatch) {
  using testing::contains;
  using testing::message_of;
  Rng rng(59);
  RetainProjector cone(40, {.mode = RetainProjectionMode::kCone});
  EXPECT_THROW(device::DeviceRetainProjection{cone}, InvalidArgumentError);
  if (!device::cuda_available()) {
    RetainProjector projector = make_projector(rng, 40, 3, false, false);
    EXPECT_THROW(device::DeviceRetainProjection{projector}, Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  for (bool blockwise : {false, true}) {
    const Index d = 3000;
    RetainProjector p = make_projector(rng, d, 6, blockwise, true);
    const device::DeviceRetainProjection resident(p);
    EXPECT_EQ(resident.dimension(), d);
    // Batches of 4, 64 and 2 columns through one object (its scratch grows, then is reused):
    // each the bits of the one-call device projection.
    for (const Index m : {Index{4}, Index{64}, Index{2}}) {
      const Eigen::MatrixXd g = gaussian(rng, d, m);
      device::DeviceVector on_device(Eigen::Map<const Vector>(g.data(), g.size()));
      resident.project(on_device);
      const Vector got = on_device.to_host();
      const Eigen::MatrixXd once = device::project_gradients(p, g);
      EXPECT_EQ(got, Eigen::Map<const Vector>(once.data(), once.size()))
          << m << " columns" << (blockwise ? ", blockwise" : "");
      Eigen::MatrixXd cpu;
      p.project_gradients(g, cpu);
      for (Index j = 0; j < m; ++j)
        EXPECT_LE((got.segment(j * d, d) - cpu.col(j)).cwiseAbs().maxCoeff(),
                  1e-12 * g.col(j).norm())
            << "column " << j << " of " << m;
    }
    // Refusals: a size that is not whole columns, and a non-finite entry named by column and
    // row, the gradients left as they were.
    device::DeviceVector ragged(d + 1);
    EXPECT_THROW(resident.project(ragged), ShapeError);
    Eigen::MatrixXd bad = gaussian(rng, d, 5);
    bad(17, 3) = std::numeric_limits<double>::infinity();
    const Vector before = Eigen::Map<const Vector>(bad.data(), bad.size());
    device::DeviceVector on_device(before);
    const std::string message = message_of<NumericalError>([&] { resident.project(on_device); });
    EXPECT_TRUE(contains(message, "gradient 3 at entry 17 is inf")) << message;
    EXPECT_EQ(on_device.to_host(), before);
  }
}

TEST(RetainManyGradients, DeviceProjectsFloatGradientsAsTheDoubleCallRounded) {
  // A model's float gradients on the device: each entry converted exactly, every operation in
  // double, each result rounded once, so the float call is the double call on the converted
  // gradients, rounded, bit for bit; and the CPU's float overload to rounding: both round a double
  // result, and the two double results agree to 1e-12 of the column's norm.
  using testing::contains;
  Rng rng(67);
  RetainProjector projector = make_projector(rng, 60, 3, false, false);
  EXPECT_THROW(device::project_gradients(projector, Eigen::MatrixXf::Zero(59, 2)), ShapeError);
  RetainProjector cone(60, {.mode = RetainProjectionMode::kCone});
  EXPECT_THROW(device::project_gradients(cone, Eigen::MatrixXf::Zero(60, 2)), InvalidArgumentError);
  EXPECT_THROW(device::DeviceVectorF(-1), ShapeError);  // refused before any device is sought
  if (!device::cuda_available()) {
    EXPECT_THROW(device::project_gradients(projector, Eigen::MatrixXf::Zero(60, 2)), Error);
    EXPECT_THROW(device::DeviceVectorF(3), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  struct Case {
    Index d, columns;
    int pushed;
    bool blockwise, adam;
  };
  for (const Case c : {Case{30000, 16, 8, false, false}, Case{30000, 16, 8, true, true},
                       Case{263000, 2, 3, false, true}}) {
    RetainProjector p = make_projector(rng, c.d, c.pushed, c.blockwise, c.adam);
    Eigen::MatrixXf g = gaussian(rng, c.d, c.columns).cast<float>();
    // Two columns nearly in the window (their projection repeated on the device).
    if (!c.blockwise)
      for (Index j = 0; j < std::min<Index>(2, c.columns); ++j) {
        Vector near = p.latest() + 1e-4 * gaussian(rng, c.d, 1).col(0);
        g.col(j) = near.cast<float>();
      }
    const Eigen::MatrixXf gpu = device::project_gradients(p, g);
    const Eigen::MatrixXd gpu_double = device::project_gradients(p, g.cast<double>().eval());
    const Eigen::MatrixXf rounded = gpu_double.cast<float>();
    EXPECT_EQ(std::memcmp(gpu.data(), rounded.data(), sizeof(float) * gpu.size()), 0)
        << "d " << c.d << (c.blockwise ? ", blockwise" : ", global");
    Eigen::MatrixXf cpu;
    p.project_gradients(g, cpu);
    const float eps = std::numeric_limits<float>::epsilon();
    for (Index j = 0; j < g.cols(); ++j) {
      const double norm = g.col(j).cast<double>().norm();
      for (Index i = 0; i < c.d; ++i) {
        const double bound =
            1e-12 * norm + eps * std::max(std::abs(gpu(i, j)), std::abs(cpu(i, j)));
        ASSERT_LE(std::abs(static_cast<double>(gpu(i, j)) - cpu(i, j)), bound)
            << "entry " << i << " of column " << j << ", d " << c.d;
      }
    }
  }
  // Resident: float batches through one object give the one-call bits; a non-finite float entry
  // is named by column and row, the gradients unchanged; a ragged size is refused.
  const Index d = 3000;
  RetainProjector p = make_projector(rng, d, 6, true, true);
  const device::DeviceRetainProjection resident(p);
  for (const Index m : {Index{4}, Index{9}}) {
    const Eigen::MatrixXf g = gaussian(rng, d, m).cast<float>();
    device::DeviceVectorF on_device(Eigen::Map<const Eigen::VectorXf>(g.data(), g.size()));
    resident.project(on_device);
    const Eigen::VectorXf got = on_device.to_host();
    const Eigen::MatrixXf once = device::project_gradients(p, g);
    EXPECT_EQ(got, Eigen::Map<const Eigen::VectorXf>(once.data(), once.size())) << m << " columns";
  }
  device::DeviceVectorF ragged(2 * d - 1);
  EXPECT_THROW(resident.project(ragged), ShapeError);
  Eigen::MatrixXf bad = gaussian(rng, d, 5).cast<float>();
  bad(2999, 2) = -std::numeric_limits<float>::infinity();
  bad(17, 3) = std::numeric_limits<float>::quiet_NaN();
  const Eigen::VectorXf before = Eigen::Map<const Eigen::VectorXf>(bad.data(), bad.size());
  device::DeviceVectorF on_device(before);
  const std::string message = message_of<NumericalError>([&] { resident.project(on_device); });
  EXPECT_TRUE(contains(message, "gradient 2 at entry 2999 is -inf")) << message;
  const Eigen::VectorXf after = on_device.to_host();
  EXPECT_EQ(std::memcmp(after.data(), before.data(), sizeof(float) * before.size()), 0);
  Eigen::VectorXf wrong(3);
  EXPECT_THROW(on_device.download(Eigen::Map<Eigen::VectorXf>(wrong.data(), 3)), ShapeError);
  // The one-call form names a non-finite entry the same way.
  const std::string once = message_of<NumericalError>([&] { device::project_gradients(p, bad); });
  EXPECT_TRUE(contains(once, "gradient 2 at entry 2999 is -inf")) << once;
}

}  // namespace
}  // namespace tether
