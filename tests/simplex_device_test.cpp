// CPU-vs-GPU: the device's batched simplex, l1-ball and box-section projections against the CPU
// batch functions, which run the same per-row code (core/simplex_row.hpp). Products avoid FMA
// contraction on the device, so the two are expected to agree bit for bit (the box section's
// bracketing sums over 32 warp lanes where the CPU uses 8, which can move the last bits); the
// test asserts agreement to 2 eps of each row's scale and prints how many rows were bitwise
// equal.
// Skips (with a message) where no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/simplex_projections.hpp>

namespace tether {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

Matrix random_rows(Rng& rng, Index rows, Index n) {
  Matrix x(rows, n);
  for (Index r = 0; r < rows; ++r) {
    const double scale = std::pow(10.0, rng.uniform(-3.0, 3.0));
    const double offset = scale * rng.uniform(-1.0, 1.0);
    for (Index j = 0; j < n; ++j) x(r, j) = offset + scale * rng.normal();
  }
  return x;
}

/// Compares the device result d with the CPU result c row by row, to `tolerance` times each
/// row's scale (2 eps in double, 1e-5 in float: the tolerances); returns the
/// bitwise-equal rows.
template <class M>
int expect_rows_agree(const M& x, const M& c, const M& d, const char* what,
                      typename M::Scalar tolerance) {
  int identical = 0;
  for (Index r = 0; r < x.rows(); ++r) {
    if (c.row(r) == d.row(r)) ++identical;
    const auto scale = x.row(r).cwiseAbs().maxCoeff() + c.row(r).cwiseAbs().maxCoeff();
    EXPECT_LE((c.row(r) - d.row(r)).cwiseAbs().maxCoeff(), tolerance * scale)
        << what << ", row " << r << " of " << x.rows() << " x " << x.cols();
  }
  return identical;
}

int expect_rows_agree(const Matrix& x, const Matrix& c, const Matrix& d, const char* what) {
  return expect_rows_agree(x, c, d, what, 2 * kEps);
}

int expect_float_rows_agree(const MatrixF& x, const MatrixF& c, const MatrixF& d,
                            const char* what) {
  return expect_rows_agree(x, c, d, what, 1e-5f);
}

TEST(SimplexDevice, MatchesTheCpuBatch) {
  if (!device::simplex_kernels_available()) {
    Matrix x = Matrix::Ones(2, 3);
    EXPECT_THROW(device::project_simplex_rows(x, 1.0), Error);
    EXPECT_THROW(device::project_l1_ball_rows(x, 1.0), Error);
    EXPECT_THROW(device::project_box_section_rows(x, BoxSection::capped_simplex(3, 0, 1, 1)),
                 Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  Rng rng(21);
  int rows_total = 0, identical = 0;
  for (Index rows : {1, 127, 128, 129, 3000}) {
    for (Index n : {1, 7, 1000}) {
      const Matrix x = random_rows(rng, rows, n);
      for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
        Matrix c = x, d = x;
        project_simplex_rows(c, 1.0, a);
        device::project_simplex_rows(d, 1.0, a);
        identical += expect_rows_agree(x, c, d, "simplex");
        c = x;
        d = x;
        project_l1_ball_rows(c, 3.0, a);
        device::project_l1_ball_rows(d, 3.0, a);
        identical += expect_rows_agree(x, c, d, "l1 ball");
        rows_total += 2 * static_cast<int>(rows);
      }
      Vector lower(n), upper(n), weights(n);
      for (Index i = 0; i < n; ++i) {
        lower[i] = rng.uniform(-2.0, 0.0);
        upper[i] = lower[i] + rng.uniform(0.0, 3.0);
        weights[i] = rng.uniform(0.1, 10.0);
      }
      const double total = 0.5 * (weights.dot(lower) + weights.dot(upper));
      for (BoxSectionAlgorithm a : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
        for (const BoxSection& set :
             {BoxSection(lower, upper, weights, total, a),
              BoxSection::capped_simplex(n, 0.0, 2.0 / static_cast<double>(n), 1.0, a)}) {
          Matrix c = x, d = x;
          project_box_section_rows(c, set);
          device::project_box_section_rows(d, set);
          identical += expect_rows_agree(x, c, d, "box section");
          rows_total += static_cast<int>(rows);
        }
      }
    }
  }
  std::printf("measured (GPU vs CPU): %d of %d rows bitwise equal\n", identical, rows_total);
  // The device refuses what the CPU refuses, naming the same entry.
  Matrix bad = Matrix::Ones(4, 5);
  bad(2, 3) = std::numeric_limits<double>::quiet_NaN();
  try {
    device::project_simplex_rows(bad, 1.0);
    ADD_FAILURE() << "a NaN entry was accepted";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("x(2, 3)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(device::project_simplex_rows(bad, -1.0), InfeasibleError);
}

// Single precision: the float kernels against the float CPU batch, to 1e-5 of each row's scale
// (the float tolerance; the same row code, so bitwise equality is expected and counted).
TEST(SimplexDevice, FloatRowsMatchTheCpuBatch) {
  if (!device::simplex_kernels_available()) {
    MatrixF x = MatrixF::Ones(2, 3);
    EXPECT_THROW(device::project_simplex_rows(x, 1.0f), Error);
    EXPECT_THROW(device::project_l1_ball_rows(x, 1.0f), Error);
    EXPECT_THROW(device::project_box_section_rows(x, BoxSection::capped_simplex(3, 0, 1, 1)),
                 Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  Rng rng(23);
  int rows_total = 0, identical = 0;
  for (Index rows : {1, 129, 3000}) {
    for (Index n : {1, 7, 1000}) {
      const MatrixF x = random_rows(rng, rows, n).cast<float>();
      for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
        for (bool l1 : {false, true}) {
          MatrixF c = x, d = x;
          if (l1) {
            project_l1_ball_rows(c, 3.0f, a);
            device::project_l1_ball_rows(d, 3.0f, a);
          } else {
            project_simplex_rows(c, 1.0f, a);
            device::project_simplex_rows(d, 1.0f, a);
          }
          identical += expect_float_rows_agree(x, c, d, l1 ? "float l1 ball" : "float simplex");
          rows_total += static_cast<int>(rows);
        }
      }
      for (BoxSectionAlgorithm a : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
        const BoxSection set =
            BoxSection::capped_simplex(n, 0.0, 2.0 / static_cast<double>(n), 1.0, a);
        MatrixF c = x, d = x;
        project_box_section_rows(c, set);
        device::project_box_section_rows(d, set);
        identical += expect_float_rows_agree(x, c, d, "float box section");
        rows_total += static_cast<int>(rows);
      }
    }
  }
  std::printf("measured (GPU vs CPU, float): %d of %d rows bitwise equal\n", identical, rows_total);
  MatrixF bad = MatrixF::Ones(4, 5);
  bad(2, 3) = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(device::project_simplex_rows(bad, 1.0f), InvalidArgumentError);
}

TEST(SimplexDevice, ResidentRowsMatchTheCpuBatch) {
  if (!device::simplex_kernels_available()) {
    EXPECT_THROW(device::DeviceRows(2, 3), Error);
    GTEST_SKIP() << "no CUDA device here (or built without CUDA): the GPU comparison is skipped";
  }
  EXPECT_THROW(device::DeviceRows(2, 0), InvalidArgumentError);  // as Simplex(0) is refused
  Rng rng(22);
  const Matrix x = random_rows(rng, 1000, 300);
  device::DeviceRows on_device(x.rows(), x.cols());
  for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
    for (bool l1 : {false, true}) {
      Matrix c = x, d(x.rows(), x.cols());
      on_device.upload(x);
      if (l1) {
        project_l1_ball_rows(c, 3.0, a);
        on_device.project_l1_ball(3.0, a);
      } else {
        project_simplex_rows(c, 1.0, a);
        on_device.project_simplex(1.0, a);
      }
      on_device.download(d);
      expect_rows_agree(x, c, d, l1 ? "resident l1 ball" : "resident simplex");
    }
  }
  for (BoxSectionAlgorithm a : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
    const BoxSection set = BoxSection::capped_simplex(x.cols(), 0.0, 0.01, 1.0, a);
    Matrix c = x, d(x.rows(), x.cols());
    project_box_section_rows(c, set);
    on_device.upload(x);
    on_device.project_box_section(set);
    on_device.download(d);
    expect_rows_agree(x, c, d, "resident box section");
  }
  EXPECT_THROW(on_device.project_box_section(BoxSection::capped_simplex(5, 0.0, 1.0, 1.0)),
               ShapeError);
  EXPECT_THROW(on_device.upload(Matrix::Zero(3, 300)), ShapeError);
  Matrix bad = x;
  bad(7, 11) = std::numeric_limits<double>::infinity();
  on_device.upload(bad);
  try {
    on_device.project_simplex(1.0);
    ADD_FAILURE() << "an infinite entry was accepted";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("x(7, 11)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tether
