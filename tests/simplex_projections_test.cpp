// core/simplex_projections: the simplex, the l1 ball and the box section against their
// definitions (exact feasibility, the variational inequality, idempotence), against each other
// (the two algorithms of each set), against a generic QP solver and closed forms on small
// cases, batch = per row, the same bits for any thread count, and every refusal.
//
// Each property test prints the largest error it measured ("measured: ..."), in units of
// eps = 2^-52 times the scale named there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/box_section_row.hpp>
#include <tether/core/dense_qp.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/projections.hpp>
#include <tether/core/rng.hpp>
#include <tether/core/simplex_projections.hpp>
#include <tether/core/simplex_row.hpp>
#include <type_traits>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "error_message.hpp"

namespace tether {
namespace {

using ::testing::HasSubstr;
using tether::testing::message_of;

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

static_assert(ConvexSet<Simplex>);
static_assert(ConvexSet<L1Ball>);
static_assert(ConvexSet<BoxSection>);
// The device launchers take exactly the CPU batch functions' arguments, in double and in float
// (each initialiser compiles only if that overload exists).
using ThresholdRows = void (*)(MatrixRef, double, SimplexAlgorithm);
using ThresholdRowsF = void (*)(MatrixFRef, float, SimplexAlgorithm);
[[maybe_unused]] constexpr ThresholdRows kThresholdRows[] = {
    &project_simplex_rows, &device::project_simplex_rows, &project_l1_ball_rows,
    &device::project_l1_ball_rows};
[[maybe_unused]] constexpr ThresholdRowsF kThresholdRowsF[] = {
    &project_simplex_rows, &device::project_simplex_rows, &project_l1_ball_rows,
    &device::project_l1_ball_rows};
using BoxRows = void (*)(MatrixRef, const BoxSection&);
using BoxRowsF = void (*)(MatrixFRef, const BoxSection&);
[[maybe_unused]] constexpr BoxRows kBoxRows[] = {&project_box_section_rows,
                                                 &device::project_box_section_rows};
[[maybe_unused]] constexpr BoxRowsF kBoxRowsF[] = {&project_box_section_rows,
                                                   &device::project_box_section_rows};

/// N x n Gaussian rows, each row with its own scale 10^U(-3, 3) and offset, so that the active
/// sets range from one entry to all of them.
Matrix random_rows(Rng& rng, Index rows, Index n) {
  Matrix x(rows, n);
  for (Index r = 0; r < rows; ++r) {
    const double scale = std::pow(10.0, rng.uniform(-3.0, 3.0));
    const double offset = scale * rng.uniform(-1.0, 1.0);
    for (Index j = 0; j < n; ++j) x(r, j) = offset + scale * rng.normal();
  }
  return x;
}

template <class Set>
Vector projected(const Set& set, Vector x) {
  set.project(x);
  return x;
}

double dot(const Vector& a, const Vector& b) { return a.dot(b); }

/// Largest ratio seen, for the "measured" lines.
struct Worst {
  double value = 0.0;
  void see(double v) { value = std::max(value, v); }
};

// ---- Simplex -------------------------------------------------------------------------------

/// |sum p - z| in units of eps z (the sum of the p_i, compensated).
double simplex_sum_error(const Vector&, const Vector& p, double z) {
  simplex_row::Sum s;
  for (Index i = 0; i < p.size(); ++i) s.add(p[i]);
  return std::abs(s.value() - z) / (kEps * z);
}

void check_simplex_properties(SimplexAlgorithm algorithm, std::uint64_t seed) {
  Rng rng(seed);
  Worst sum_error, vi, idempotence;
  for (Index n : {1, 2, 3, 10, 100, 1000}) {
    for (double z : {1.0, 1e-6, 37.5}) {
      const Simplex simplex(n, z, algorithm);
      const Matrix x = random_rows(rng, 20, n);
      for (Index r = 0; r < x.rows(); ++r) {
        const Vector y = x.row(r).transpose();
        const Vector p = projected(simplex, y);
        for (Index i = 0; i < n; ++i) ASSERT_GE(p[i], 0.0) << "n " << n << " row " << r;
        const double e = simplex_sum_error(y, p, z);
        sum_error.see(e);
        EXPECT_LE(e, 4.0) << "n " << n << " z " << z << " row " << r;
        // Variational inequality against every vertex z e_j (it then holds on the whole set):
        // <y - p, z e_j - p> <= 0.
        const Vector g = y - p;
        const double scale = g.norm() * (z + p.norm()) + 1e-300;
        for (Index j = 0; j < n; ++j) {
          const double inner = g[j] * z - dot(g, p);
          vi.see(inner / (kEps * scale));
          EXPECT_LE(inner, 1e-12 * scale) << "n " << n << " vertex " << j;
        }
        // And against random feasible points (normalised exponentials).
        for (int k = 0; k < 5; ++k) {
          Vector s(n);
          for (Index i = 0; i < n; ++i) s[i] = -std::log(rng.uniform());
          s *= z / s.sum();
          EXPECT_LE(dot(g, s - p), 1e-12 * (g.norm() * (s.norm() + p.norm()) + 1e-300));
        }
        const Vector pp = projected(simplex, p);
        const double moved = (pp - p).cwiseAbs().maxCoeff() / (kEps * (z + 1e-300));
        idempotence.see(moved);
        EXPECT_LE(moved, 8.0) << "n " << n << " z " << z;
      }
    }
  }
  std::printf(
      "measured (simplex, %s): |sum p - z| <= %.2f eps z; VI <= %.2f eps "
      "|y - p| (z + |p|); idempotence moves <= %.2f eps z\n",
      algorithm == SimplexAlgorithm::kSort ? "sort" : "condat", sum_error.value, vi.value,
      idempotence.value);
}

TEST(Simplex, SortBasedIsFeasibleOptimalAndIdempotent) {
  check_simplex_properties(SimplexAlgorithm::kSort, 1);
}

TEST(Simplex, CondatIsFeasibleOptimalAndIdempotent) {
  check_simplex_properties(SimplexAlgorithm::kCondat, 2);
}

TEST(Simplex, ClosedFormCases) {
  const Simplex simplex(3, 1.0);
  Vector y(3);
  y << 0.5, 0.2, 0.1;  // all active: tau = (0.8 - 1) / 3
  Vector p = projected(simplex, y);
  EXPECT_NEAR(p[0], 0.5 + 0.2 / 3, 4e-16);
  EXPECT_NEAR(p[1], 0.2 + 0.2 / 3, 4e-16);
  EXPECT_NEAR(p[2], 0.1 + 0.2 / 3, 4e-16);
  y << 3.0, 0.0, -1.0;  // one active entry: the vertex e_0
  p = projected(simplex, y);
  EXPECT_EQ(p, Vector::Unit(3, 0));
  y << 0.25, 0.25, 0.5;  // inside: left where it is
  p = projected(simplex, y);
  EXPECT_EQ(p, y);
  y << 2.0, 2.0, 2.0;  // ties: the barycentre
  p = projected(simplex, y);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i], 1.0 / 3.0, 4e-16);
  // The multiplier is carried to twice the precision: far from the set, the answer keeps its
  // digits (a single-double tau = 1e3 - 1e-6 would leave p = 1e3 - fl(1e3 - 1e-6) != 1e-6).
  Vector far(1);
  far << 1e3;
  EXPECT_EQ(projected(Simplex(1, 1e-6), far)[0], 1e-6);
  Vector far2(2);
  far2 << 1e8, 1e8;
  EXPECT_EQ(projected(Simplex(2, 2e-9), far2), Vector::Constant(2, 1e-9));
  // n = 1: the point z; z = 0: the origin.
  Vector one(1);
  one << -5.0;
  EXPECT_EQ(projected(Simplex(1, 2.5), one)[0], 2.5);
  EXPECT_EQ(projected(Simplex(3, 0.0), y), Vector::Zero(3));
}

TEST(Simplex, MatchesAGenericQpSolverOnSmallCases) {
  Rng rng(3);
  Worst worst;
  for (int trial = 0; trial < 200; ++trial) {
    const Index n = 1 + static_cast<Index>(rng.index(12));
    const double z = rng.uniform(0.1, 5.0);
    const Vector y = random_rows(rng, 1, n).row(0).transpose();
    // min 0.5 |p|^2 - y^T p  s.t.  -p <= 0,  1^T p = z.
    const DenseQpResult qp =
        solve_dense_qp(Eigen::MatrixXd::Identity(n, n), -y, -Eigen::MatrixXd::Identity(n, n),
                       Vector::Zero(n), Eigen::MatrixXd::Ones(1, n), Vector::Constant(1, z));
    ASSERT_TRUE(qp.converged);
    for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
      const Vector p = projected(Simplex(n, z, a), y);
      const double d = (p - qp.x).cwiseAbs().maxCoeff() / (z + y.cwiseAbs().maxCoeff());
      worst.see(d);
      EXPECT_LE(d, 1e-12) << "trial " << trial << ", n " << n;
    }
  }
  std::printf("measured (simplex vs DenseQp, n <= 12): max |p - p_qp| <= %.2e (z + |y|_inf)\n",
              worst.value);
}

TEST(Simplex, TheTwoAlgorithmsAgree) {
  Rng rng(4);
  int identical = 0, rows = 0;
  Worst worst;
  for (Index n : {2, 5, 50, 1000, 4096}) {
    Matrix a = random_rows(rng, 40, n);
    Matrix b = a;
    const double scale = a.cwiseAbs().maxCoeff() + 1.0;
    project_simplex_rows(a, 1.0, SimplexAlgorithm::kSort);
    project_simplex_rows(b, 1.0, SimplexAlgorithm::kCondat);
    for (Index r = 0; r < a.rows(); ++r) {
      ++rows;
      if (a.row(r) == b.row(r)) ++identical;
      const double d = (a.row(r) - b.row(r)).cwiseAbs().maxCoeff() / scale;
      worst.see(d);
      EXPECT_LE(d, 1e-12) << "n " << n << " row " << r;
    }
  }
  std::printf("measured (simplex sort vs condat): %d of %d rows bitwise equal, max diff %.2e\n",
              identical, rows, worst.value);
}

TEST(Simplex, StructuredInputsAgreeAcrossAlgorithms) {
  // Sorted either way (Condat's online pass restarts its candidate list at every new maximum
  // on ascending input), all equal, two clusters, one spike: both algorithms, both sets.
  const Index n = 2000;
  std::vector<Vector> inputs;
  inputs.push_back(Vector::LinSpaced(n, -1.0, 1.0));
  inputs.push_back(Vector::LinSpaced(n, 1.0, -1.0));
  inputs.push_back(Vector::Constant(n, 0.25));
  Vector clusters(n), spike = Vector::Zero(n);
  for (Index i = 0; i < n; ++i) clusters[i] = (i % 2 ? 5.0 : -5.0) + 1e-9 * static_cast<double>(i);
  spike[n / 3] = 1e3;
  inputs.push_back(clusters);
  inputs.push_back(spike);
  for (const Vector& y : inputs) {
    for (double z : {1.0, 1e-3, 1e3}) {
      const Vector a = projected(Simplex(n, z, SimplexAlgorithm::kSort), y);
      const Vector b = projected(Simplex(n, z, SimplexAlgorithm::kCondat), y);
      EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-12 * (z + y.cwiseAbs().maxCoeff()));
      EXPECT_LE(simplex_sum_error(y, b, z), 4.0);
      EXPECT_GE(b.minCoeff(), 0.0);
      const Vector c = projected(L1Ball(n, z, SimplexAlgorithm::kSort), y);
      const Vector d = projected(L1Ball(n, z, SimplexAlgorithm::kCondat), y);
      EXPECT_LE((c - d).cwiseAbs().maxCoeff(), 1e-12 * (z + y.cwiseAbs().maxCoeff()));
      simplex_row::Sum norm;  // |d|_1 = z up to the rounding of the entries
      for (Index i = 0; i < n; ++i) norm.add(std::abs(d[i]));
      if (d != y) EXPECT_LE(std::abs(norm.value() - z), 4 * kEps * z);
    }
  }
}

TEST(Simplex, CandidatePathIsBitIdenticalToTheWholeRow) {
  // project_threshold refines tau on the candidates v_i > max v - z - margin only; the claim is
  // that this changes no bit against refining on the whole row (simplex_finish), for both sets,
  // including offsets far above z, ties, clusters at the bound and z below the entries'
  // rounding.
  Rng rng(21);
  const long long n = 257;
  std::vector<double> y(n), whole(n), work(2 * n), aux(n);
  int rows = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const double offset = trial % 4 == 0 ? 0.0 : std::pow(10.0, rng.uniform(-3.0, 15.0));
    const double scale = std::pow(10.0, rng.uniform(-12.0, 3.0));
    const double z = std::pow(10.0, rng.uniform(-18.0, 3.0));
    for (long long i = 0; i < n; ++i) {
      y[i] = offset + scale * rng.normal();
      if (trial % 7 == 0 && i % 3 == 0) y[i] = offset;                 // ties
      if (trial % 11 == 0 && i % 5 == 0) y[i] = (offset + scale) - z;  // at max - z
      if (trial % 13 == 0) y[i] = -y[i];                               // signs (l1 ball)
    }
    for (bool l1 : {false, true}) {
      whole = y;
      std::vector<double> fast = y;
      simplex_row::RowResult a, b;
      simplex_row::RowScan<double> scan;
      if (l1) {
        a = simplex_row::project_condat<true>(fast.data(), n, z, work.data());
        if (simplex_row::threshold_trivial<true>(whole.data(), n, z, &b, &scan)) continue;
        b = simplex_row::simplex_finish<true>(
            whole.data(), n, z,
            simplex_row::threshold_condat<true>(whole.data(), n, z, aux.data()));
      } else {
        a = simplex_row::project_condat<false>(fast.data(), n, z, work.data());
        if (simplex_row::threshold_trivial<false>(whole.data(), n, z, &b, &scan)) continue;
        b = simplex_row::simplex_finish<false>(
            whole.data(), n, z,
            simplex_row::threshold_condat<false>(whole.data(), n, z, aux.data()));
      }
      ASSERT_EQ(a.status, b.status) << "trial " << trial;
      EXPECT_EQ(fast, whole) << "trial " << trial << (l1 ? " (l1 ball)" : " (simplex)");
      ++rows;
    }
  }
  EXPECT_GT(rows, 600);
}

TEST(Simplex, SumIsExactAcrossScalesAndOnOneLongVector) {
  Rng rng(5);
  Worst worst;
  // Entries spread over 20 orders of magnitude, radii from 1e-8 to 1e8.
  for (double z : {1e-8, 1.0, 1e8}) {
    Matrix x(10, 500);
    for (Index i = 0; i < x.size(); ++i)
      x.data()[i] = (rng.uniform() < 0.5 ? -1.0 : 1.0) * std::pow(10.0, rng.uniform(-10, 10));
    for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
      Matrix p = x;
      project_simplex_rows(p, z, a);
      for (Index r = 0; r < x.rows(); ++r) {
        const double e = simplex_sum_error(x.row(r).transpose(), p.row(r).transpose(), z);
        worst.see(e);
        EXPECT_LE(e, 4.0) << "z " << z << " row " << r;
      }
    }
  }
  // One vector of 2^20 entries.
  Vector big(1 << 20);
  for (Index i = 0; i < big.size(); ++i) big[i] = rng.normal();
  Vector a = big, b = big;
  Simplex(big.size(), 100.0, SimplexAlgorithm::kSort).project(a);
  Simplex(big.size(), 100.0, SimplexAlgorithm::kCondat).project(b);
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-12);
  worst.see(simplex_sum_error(big, a, 100.0));
  worst.see(simplex_sum_error(big, b, 100.0));
  EXPECT_LE(simplex_sum_error(big, b, 100.0), 4.0);
  std::printf("measured (simplex, wide scales and n = 2^20): |sum p - z| <= %.2f eps z\n",
              worst.value);
}

// ---- L1Ball --------------------------------------------------------------------------------

void check_l1_properties(SimplexAlgorithm algorithm, std::uint64_t seed) {
  Rng rng(seed);
  Worst sum_error, vi;
  int inside = 0;
  for (Index n : {1, 2, 7, 100, 1000}) {
    for (double z : {1.0, 1e-4, 50.0}) {
      const L1Ball ball(n, z, algorithm);
      const Matrix x = random_rows(rng, 20, n);
      for (Index r = 0; r < x.rows(); ++r) {
        const Vector y = x.row(r).transpose();
        const Vector p = projected(ball, y);
        simplex_row::Sum norm;
        for (Index i = 0; i < n; ++i) {
          norm.add(std::abs(p[i]));
          ASSERT_TRUE(p[i] == 0.0 || (p[i] > 0.0) == (y[i] > 0.0)) << "sign of entry " << i;
          ASSERT_LE(std::abs(p[i]), std::abs(y[i]));
        }
        if (p == y) {
          ++inside;
          EXPECT_LE(y.lpNorm<1>(), z * (1 + 1e-15));
          continue;
        }
        const double e = std::abs(norm.value() - z) / (kEps * z);
        sum_error.see(e);
        EXPECT_LE(e, 4.0) << "n " << n << " z " << z << " row " << r;
        // Variational inequality against every vertex +-z e_j.
        const Vector g = y - p;
        const double scale = g.norm() * (z + p.norm());
        for (Index j = 0; j < n; ++j) {
          const double inner = std::abs(g[j]) * z - dot(g, p);
          vi.see(inner / (kEps * scale));
          EXPECT_LE(inner, 1e-12 * scale);
        }
        const Vector pp = projected(ball, p);
        EXPECT_LE((pp - p).cwiseAbs().maxCoeff(), 8 * kEps * z);
      }
    }
  }
  EXPECT_GT(inside, 10);  // some points were inside the ball and came back bit for bit
  std::printf(
      "measured (l1 ball, %s): ||p|_1 - z| <= %.2f eps z; VI <= %.2f eps "
      "|y - p| (z + |p|); %d points inside, unchanged\n",
      algorithm == SimplexAlgorithm::kSort ? "sort" : "condat", sum_error.value, vi.value, inside);
}

TEST(L1Ball, SortBasedIsFeasibleOptimalAndIdempotent) {
  check_l1_properties(SimplexAlgorithm::kSort, 6);
}

TEST(L1Ball, CondatIsFeasibleOptimalAndIdempotent) {
  check_l1_properties(SimplexAlgorithm::kCondat, 7);
}

TEST(L1Ball, MatchesAQpOverTheFacetsOnSmallCases) {
  // |p|_1 <= z as the 2^n facets s^T p <= z, s in {-1, 1}^n (n <= 6: at most 64 rows).
  Rng rng(8);
  Worst worst;
  for (int trial = 0; trial < 150; ++trial) {
    const Index n = 1 + static_cast<Index>(rng.index(6));
    const double z = rng.uniform(0.1, 3.0);
    const Vector y = random_rows(rng, 1, n).row(0).transpose();
    const Index m = Index{1} << n;
    Eigen::MatrixXd facets(m, n);
    for (Index f = 0; f < m; ++f)
      for (Index j = 0; j < n; ++j) facets(f, j) = (f >> j) & 1 ? 1.0 : -1.0;
    const DenseQpResult qp =
        solve_dense_qp(Eigen::MatrixXd::Identity(n, n), -y, facets, Vector::Constant(m, z));
    ASSERT_TRUE(qp.converged);
    for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
      const Vector p = projected(L1Ball(n, z, a), y);
      const double d = (p - qp.x).cwiseAbs().maxCoeff() / (z + y.cwiseAbs().maxCoeff());
      worst.see(d);
      EXPECT_LE(d, 1e-12) << "trial " << trial;
    }
  }
  std::printf("measured (l1 ball vs DenseQp, n <= 6): max |p - p_qp| <= %.2e (z + |y|_inf)\n",
              worst.value);
}

TEST(L1Ball, TheTwoAlgorithmsAgreeAndInsidePointsAreUntouched) {
  Rng rng(9);
  Matrix a = random_rows(rng, 200, 300);
  Matrix b = a;
  project_l1_ball_rows(a, 5.0, SimplexAlgorithm::kSort);
  project_l1_ball_rows(b, 5.0, SimplexAlgorithm::kCondat);
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-12 * (1.0 + a.cwiseAbs().maxCoeff()));
  Vector inside(4);
  inside << 0.1, -0.2, 0.3, -0.39999999999999997;
  const Vector before = inside;
  L1Ball(4, 1.0).project(inside);
  EXPECT_EQ(inside, before);
  EXPECT_EQ(projected(L1Ball(4, 0.0), before), Vector::Zero(4));
}

// ---- BoxSection ----------------------------------------------------------------------------

struct BoxCase {
  Vector lower, upper, weights;
  double total;
};

/// Random per-entry bounds and weights with c strictly inside [w^T l, w^T u].
BoxCase random_box(Rng& rng, Index n) {
  BoxCase b{Vector(n), Vector(n), Vector(n), 0.0};
  for (Index i = 0; i < n; ++i) {
    b.lower[i] = rng.uniform(-2.0, 1.0);
    b.upper[i] = b.lower[i] + (rng.uniform() < 0.1 ? 0.0 : rng.uniform(0.0, 3.0));
    b.weights[i] = std::pow(10.0, rng.uniform(-2.0, 2.0));
  }
  const double wl = b.weights.dot(b.lower), wu = b.weights.dot(b.upper);
  b.total = wl + rng.uniform(0.0, 1.0) * (wu - wl);
  return b;
}

/// |w^T p - c| in units of eps (|c| + sum w |p|); bounds are checked exactly.
double box_error(const BoxSection& set, const Vector&, const Vector& p) {
  simplex_row::Sum s;
  double scale = std::abs(set.total());
  for (Index i = 0; i < p.size(); ++i) {
    EXPECT_GE(p[i], set.lower(i));
    EXPECT_LE(p[i], set.upper(i));
    s.add(set.weight(i) * p[i]);
    scale += set.weight(i) * std::abs(p[i]);
  }
  s.add(-set.total());
  return std::abs(s.value()) / (kEps * scale);
}

void check_box_properties(BoxSectionAlgorithm algorithm, std::uint64_t seed) {
  Rng rng(seed);
  Worst sum_error, vi, idempotence;
  for (Index n : {1, 2, 5, 40, 1000}) {
    for (int set_trial = 0; set_trial < 6; ++set_trial) {
      const BoxCase c = random_box(rng, n);
      const BoxSection set = set_trial % 3 == 2
                                 ? BoxSection::capped_simplex(
                                       n, 0.0, 3.0 / static_cast<double>(n) + 0.01, 1.0, algorithm)
                                 : BoxSection(c.lower, c.upper, c.weights, c.total, algorithm);
      const Matrix x = random_rows(rng, 10, n);
      // Feasible points: projections of random points, plus the section of the box diagonal.
      std::vector<Vector> feasible;
      for (int k = 0; k < 6; ++k)
        feasible.push_back(projected(set, random_rows(rng, 1, n).row(0).transpose()));
      for (Index r = 0; r < x.rows(); ++r) {
        const Vector y = x.row(r).transpose();
        const Vector p = projected(set, y);
        const double e = box_error(set, y, p);
        sum_error.see(e);
        EXPECT_LE(e, 4.0) << "n " << n << " row " << r;
        const Vector g = y - p;
        for (const Vector& s : feasible) {
          const double scale = g.norm() * (s.norm() + p.norm()) + 1e-300;
          const double inner = dot(g, s - p);
          vi.see(inner / (kEps * scale));
          EXPECT_LE(inner, 1e-12 * scale) << "n " << n << " row " << r;
        }
        const Vector pp = projected(set, p);
        const double moved =
            (pp - p).cwiseAbs().maxCoeff() / (kEps * (p.cwiseAbs().maxCoeff() + 1e-300));
        idempotence.see(moved);
        EXPECT_LE(moved, 64.0) << "n " << n;
      }
    }
  }
  std::printf(
      "measured (box section, %s): |w^T p - c| <= %.2f eps (|c| + sum w |p|); VI <= "
      "%.2f eps |y - p| (|s| + |p|); idempotence moves <= %.2f eps |p|_inf\n",
      algorithm == BoxSectionAlgorithm::kSort ? "sort" : "newton", sum_error.value, vi.value,
      idempotence.value);
}

TEST(BoxSection, SortBasedIsFeasibleOptimalAndIdempotent) {
  check_box_properties(BoxSectionAlgorithm::kSort, 10);
}

TEST(BoxSection, NewtonIsFeasibleOptimalAndIdempotent) {
  check_box_properties(BoxSectionAlgorithm::kNewton, 11);
}

// DenseQp's own answers carry |w^T x - c| up to ~4e-14 here (weights over four decades), ours
// ~1e-16: the 1e-12 bound is DenseQp's accuracy, not ours.
TEST(BoxSection, MatchesAGenericQpSolverOnSmallCases) {
  Rng rng(12);
  Worst worst;
  for (int trial = 0; trial < 200; ++trial) {
    const Index n = 1 + static_cast<Index>(rng.index(12));
    const BoxCase c = random_box(rng, n);
    const Vector y = random_rows(rng, 1, n).row(0).transpose();
    Eigen::MatrixXd a(2 * n, n);
    a << Eigen::MatrixXd::Identity(n, n), -Eigen::MatrixXd::Identity(n, n);
    Vector b(2 * n);
    b << c.upper, -c.lower;
    const DenseQpResult qp = solve_dense_qp(Eigen::MatrixXd::Identity(n, n), -y, a, b,
                                            c.weights.transpose(), Vector::Constant(1, c.total));
    ASSERT_TRUE(qp.converged);
    for (BoxSectionAlgorithm alg : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
      const Vector p = projected(BoxSection(c.lower, c.upper, c.weights, c.total, alg), y);
      const double d = (p - qp.x).cwiseAbs().maxCoeff() / (1.0 + y.cwiseAbs().maxCoeff());
      worst.see(d);
      EXPECT_LE(d, 1e-12) << "trial " << trial << ", n " << n;
    }
  }
  std::printf("measured (box section vs DenseQp, n <= 12): max |p - p_qp| <= %.2e (1 + |y|_inf)\n",
              worst.value);
}

TEST(BoxSection, FarFromTheSetTheConstraintHoldsToTheAnswersOwnRounding) {
  // |y| ~ 1e6 and c ~ 1: a single-double lambda would leave |w^T p - c| ~ 1e-10 * n.
  Rng rng(132);
  Worst worst;
  for (BoxSectionAlgorithm a : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
    for (int trial = 0; trial < 20; ++trial) {
      const Index n = 50;
      Vector w(n);
      for (Index i = 0; i < n; ++i) w[i] = rng.uniform(0.5, 2.0);
      const BoxSection set(Vector::Zero(n), Vector::Constant(n, 0.05), w, 1.0, a);
      Vector y(n);
      for (Index i = 0; i < n; ++i) y[i] = 1e6 + rng.normal();
      const Vector p = projected(set, y);
      const double e = box_error(set, y, p);
      worst.see(e);
      EXPECT_LE(e, 4.0) << "trial " << trial;
    }
  }
  std::printf(
      "measured (box section, |y| ~ 1e6, c = 1): |w^T p - c| <= %.2f eps (|c| + sum w |p|)\n",
      worst.value);
}

TEST(BoxSection, ClosedFormCasesAndTheSimplexAsASpecialCase) {
  // Capped simplex 0 <= p <= 0.4, sum p = 1 on y = (1, 0, 0, 0): (0.4, 0.2, 0.2, 0.2).
  Vector y(4);
  y << 1.0, 0.0, 0.0, 0.0;
  for (BoxSectionAlgorithm a : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
    const Vector p = projected(BoxSection::capped_simplex(4, 0.0, 0.4, 1.0, a), y);
    EXPECT_EQ(p[0], 0.4);
    for (int i = 1; i < 4; ++i) EXPECT_NEAR(p[i], 0.2, 4e-16);
    // Far from the set: the multiplier's second half keeps the answer's digits.
    Vector far(2);
    far << 1e8, 1e8;
    EXPECT_EQ(projected(BoxSection::capped_simplex(2, 0.0, 1.0, 2e-9, a), far),
              Vector::Constant(2, 1e-9));
    // c = sum u: the set is the single point u.
    EXPECT_EQ(projected(BoxSection::capped_simplex(4, 0.0, 0.25, 1.0, a), y),
              Vector::Constant(4, 0.25));
  }
  // Degenerate sets: every box of width 0 (the set is the point l), and c at an end.
  Rng degenerate(131);
  for (BoxSectionAlgorithm a : {BoxSectionAlgorithm::kSort, BoxSectionAlgorithm::kNewton}) {
    Vector l(6), w(6);
    for (Index i = 0; i < 6; ++i) {
      l[i] = degenerate.uniform(-1.0, 1.0);
      w[i] = degenerate.uniform(0.1, 10.0);
    }
    simplex_row::Sum wl;
    for (Index i = 0; i < 6; ++i) wl.add(w[i] * l[i]);
    const Vector x = random_rows(degenerate, 1, 6).row(0).transpose();
    EXPECT_EQ(projected(BoxSection(l, l, w, wl.value(), a), x), l);
    // c = w^T l up to the rounding of the products w_i l_i (the closing pass sums them
    // exactly), so p = l up to that rounding.
    const Vector p = projected(BoxSection(l, l + Vector::Ones(6), w, wl.value(), a), x);
    EXPECT_LE((p - l).cwiseAbs().maxCoeff(), 4 * kEps);
    EXPECT_TRUE((p.array() >= l.array()).all());
  }
  // With caps that never bind it is the simplex.
  Rng rng(13);
  const Matrix x = random_rows(rng, 50, 64);
  Matrix simplex = x, box = x;
  project_simplex_rows(simplex, 1.0);
  BoxSection::capped_simplex(64, 0.0, 1.0, 1.0).project_rows(box);
  EXPECT_LE((simplex - box).cwiseAbs().maxCoeff(), 1e-13);
}

TEST(BoxSection, TheTwoAlgorithmsAgreeAndNewtonNeedsAFewPasses) {
  Rng rng(14);
  int identical = 0, rows = 0, max_passes = 0;
  double passes = 0;
  Worst worst;
  for (Index n : {3, 100, 1000}) {
    for (int t = 0; t < 5; ++t) {
      const BoxCase c = random_box(rng, n);
      const BoxSection sorted(c.lower, c.upper, c.weights, c.total, BoxSectionAlgorithm::kSort);
      const BoxSection newton(c.lower, c.upper, c.weights, c.total, BoxSectionAlgorithm::kNewton);
      Matrix a = random_rows(rng, 20, n);
      Matrix b = a;
      for (Index r = 0; r < a.rows(); ++r) {
        Vector y = a.row(r).transpose();
        const simplex_row::BoxSectionRow s{
            c.lower.data(), c.upper.data(), c.weights.data(), 1, 1, 1, c.total};
        const simplex_row::RowResult result = simplex_row::box_section_newton_whole(y.data(), n, s);
        EXPECT_EQ(result.status, simplex_row::kOk);
        passes += result.iterations;
        max_passes = std::max(max_passes, result.iterations);
      }
      sorted.project_rows(a);
      newton.project_rows(b);
      for (Index r = 0; r < a.rows(); ++r) {
        ++rows;
        if (a.row(r) == b.row(r)) ++identical;
        const double d =
            (a.row(r) - b.row(r)).cwiseAbs().maxCoeff() / (1.0 + a.row(r).cwiseAbs().maxCoeff());
        worst.see(d);
        EXPECT_LE(d, 1e-12);
      }
    }
  }
  EXPECT_LE(passes / rows, 8.0);
  EXPECT_LE(max_passes, 64);
  std::printf(
      "measured (box section sort vs newton): %d of %d rows bitwise equal, max diff %.2e; "
      "Newton passes mean %.2f, max %d\n",
      identical, rows, worst.value, passes / rows, max_passes);
}

/// Rows like the benchmark's (Gaussian, per-row scale 10^[-1, 1] and offset) and adversarial
/// ones (offsets to 1e15, scales down to 1e-12, repeated entries).
Matrix box_test_rows(Rng& rng, Index rows, Index n) {
  Matrix x(rows, n);
  for (Index r = 0; r < rows; ++r) {
    const int kind = static_cast<int>(r % 4);
    const double scale = kind == 3 ? std::pow(10.0, rng.uniform(-12.0, 0.0))
                                   : std::pow(10.0, rng.uniform(-1.0, 1.0));
    const double offset =
        kind == 2 ? rng.uniform(-1.0, 1.0) * 1e15 : scale * rng.uniform(-1.0, 1.0);
    for (Index j = 0; j < n; ++j) x(r, j) = offset + scale * rng.normal();
    if (kind == 1)
      for (Index j = 1; j < n; j += 3) x(r, j) = x(r, j - 1);  // ties
  }
  return x;
}

// box_section_newton's bracketed path (vectorised passes over the row, then the exact method
// on the entries the bracket leaves undecided) against the safeguarded Newton method on the
// whole row: the same answer, and the path is taken (not silently declined) on the benchmark's
// rows.
TEST(BoxSection, TheBracketedPathAgreesWithTheWholeRowMethod) {
  Rng rng(16);
  int rows = 0, bracketed = 0, identical = 0, benchmark_like = 0, benchmark_bracketed = 0;
  double passes = 0.0;
  Worst worst;
  for (Index n : {1, 7, 8, 9, 100, 1000}) {
    for (int t = 0; t < 6; ++t) {
      // Per-entry sets (random bounds, weights over 4 decades), narrow caps (the benchmark's),
      // and shared bounds and weights (stride 0), with c anywhere in [w^T l, w^T u].
      const BoxCase c = random_box(rng, n);
      const double cap = 2.0 / static_cast<double>(n);
      Vector narrow_w(n);
      for (Index i = 0; i < n; ++i) narrow_w[i] = rng.uniform(0.5, 1.5);
      const double fraction = t == 4 ? 0.999 : (t == 5 ? 1e-3 : 0.5);
      const BoxSection set =
          t % 3 == 0   ? BoxSection(c.lower, c.upper, c.weights, c.total)
          : t % 3 == 1 ? BoxSection(Vector::Zero(n), Vector::Constant(n, cap), narrow_w,
                                    narrow_w.sum() * cap * fraction)
                       : BoxSection::capped_simplex(n, -0.5, 1.5,
                                                    fraction * 2.0 * static_cast<double>(n) -
                                                        0.5 * static_cast<double>(n));
      const bool like_benchmark = t == 1 && n == 1000;
      const simplex_row::BoxSectionRow s{set.lower_data().data(),
                                         set.upper_data().data(),
                                         set.weight_data().data(),
                                         set.lower_data().size() == 1 ? 0 : 1,
                                         set.upper_data().size() == 1 ? 0 : 1,
                                         set.weight_data().size() == 1 ? 0 : 1,
                                         set.total()};
      const Matrix x = box_test_rows(rng, 24, n);
      std::vector<double> work(static_cast<std::size_t>(simplex_row::kBoxWorkPerEntry * n));
      for (Index r = 0; r < x.rows(); ++r) {
        Vector a = x.row(r).transpose(), b = a;
        simplex_row::RowResult fast;
        const bool taken = simplex_row::box_section_bracketed<simplex_row::LanePasses>(
            a.data(), n, s, work.data(), &fast);
        const simplex_row::RowResult whole = simplex_row::box_section_newton_whole(b.data(), n, s);
        ASSERT_EQ(whole.status, simplex_row::kOk);
        ++rows;
        if (like_benchmark && r % 4 == 0) {
          ++benchmark_like;
          benchmark_bracketed += taken ? 1 : 0;
        }
        if (!taken) {
          EXPECT_EQ(a, x.row(r).transpose()) << "a declined row is left as it was";
          continue;
        }
        ++bracketed;
        passes += fast.iterations;
        if (a == b) ++identical;
        // In ulps of the row's scale (with offsets of 1e15 an ulp of y_i is 0.125: two
        // multipliers a few ulps apart, both exact to that rounding, move free entries by it).
        const double scale = x.row(r).cwiseAbs().maxCoeff() + b.cwiseAbs().maxCoeff();
        const double d = (a - b).cwiseAbs().maxCoeff() / (kEps * scale);
        worst.see(d);
        EXPECT_LE(d, 8.0) << "n = " << n << ", set " << t << ", row " << r;
        // (Offsets of 1e15 put an ulp of y_i, 0.125, into every free p_i: no constraint test.)
        if (r % 4 != 2) EXPECT_LE(box_error(set, x.row(r).transpose(), a), 4.0);
      }
    }
  }
  EXPECT_GE(benchmark_bracketed, benchmark_like * 9 / 10);
  // The path must not silently decline (the whole-row method would still give the answer) nor
  // spin: most rows, adversarial ones included, take it in a few passes.
  EXPECT_GE(bracketed, rows * 9 / 10);
  EXPECT_LE(passes / bracketed, 12.0);
  std::printf(
      "measured (box section, bracketed path vs whole row): %d of %d rows bracketed (%d of %d "
      "benchmark-like), mean passes %.2f, %d bitwise equal, max diff %.2f eps (|y|_inf + "
      "|p|_inf)\n",
      bracketed, rows, benchmark_bracketed, benchmark_like, passes / bracketed, identical,
      worst.value);
}

// The reduce's contract, on dyadic data (every product and difference below is exact in T, so
// the classification is checked exactly): an entry it does not gather is at a bound, or free,
// for every lambda in the bracket; an entry it gathers is not decided by a margin of 2^-20; the
// gathered columns come in index order; and the decided sums plus the gathered entries' terms
// give the row's g - c at points of the bracket. Twice: from the row, then in place on the
// gathered columns with a narrower bracket (the deeper levels of box_section_bracketed_by).
template <class T>
void check_reduce_contract() {
  using Layout = simplex_row::BoxLayout<T, false, false, false>;
  const long long n = 203;  // not a multiple of the lanes: the tail too
  Rng rng(47);
  std::vector<T> y(n), w(n), l(n), u(n);
  std::vector<long long> order(n);
  for (long long i = 0; i < n; ++i) order[i] = i;
  for (long long i = n - 1; i > 0; --i)  // Fisher-Yates
    std::swap(order[i],
              order[static_cast<long long>(rng.index(static_cast<std::uint64_t>(i + 1)))]);
  auto uniform_int = [&](int lo, int hi) {
    return lo + static_cast<int>(rng.index(static_cast<std::uint64_t>(hi - lo + 1)));
  };
  for (long long i = 0; i < n; ++i) {
    y[i] = static_cast<T>(order[i] - n / 2) / T(16);  // distinct: a gathered y names its entry
    w[i] = static_cast<T>(32 + uniform_int(0, 31)) / T(32);
    l[i] = -static_cast<T>(uniform_int(0, 32)) / T(16);
    u[i] = l[i] + static_cast<T>(uniform_int(0, 64)) / T(16);
  }
  const T c = T(0.25);
  // g(lambda) - c directly, in long double (exact here).
  auto excess = [&](long double lambda) {
    long double g = -static_cast<long double>(c);
    for (long long i = 0; i < n; ++i)
      g += w[i] * std::clamp(y[i] - lambda * w[i], static_cast<long double>(l[i]),
                             static_cast<long double>(u[i]));
    return g;
  };
  std::vector<T> columns(4 * n);
  const simplex_row::BoxColumns<T> rest{columns.data(), columns.data() + n, columns.data() + 2 * n,
                                        columns.data() + 3 * n};
  simplex_row::BoxDecided<T> decided;
  decided.offset.add(-c);
  const T brackets[2][2] = {{T(-1.5), T(1.25)}, {T(-0.375), T(0.5)}};
  long long m = n, free_seen = 0, bound_seen = 0;
  for (int level = 0; level < 2; ++level) {
    const T lo = brackets[level][0], hi = brackets[level][1];
    const T* from_y = level == 0 ? y.data() : rest.y;
    const Layout layout =
        level == 0 ? Layout{l.data(), u.data(), w.data()} : Layout{rest.l, rest.u, rest.w};
    const simplex_row::LanePasses<Layout> passes{const_cast<T*>(from_y), m, layout};
    std::vector<T> before_y(from_y, from_y + m);
    m = passes.reduce(lo, hi, &decided, rest);
    // The gathered entries, by their y, in index order and each undecided by a margin.
    std::vector<long long> gathered;
    for (long long k = 0; k < m; ++k) {
      const long long i =
          static_cast<long long>(std::find(y.begin(), y.end(), rest.y[k]) - y.begin());
      ASSERT_LT(i, n);
      EXPECT_EQ(rest.w[k], w[i]);
      EXPECT_EQ(rest.l[k], l[i]);
      EXPECT_EQ(rest.u[k], u[i]);
      if (!gathered.empty()) EXPECT_GT(i, gathered.back()) << "index order";
      gathered.push_back(i);
      const long double margin = std::ldexp(1.0L, -20);
      const long double least = y[i] - static_cast<long double>(hi) * w[i];
      const long double greatest = y[i] - static_cast<long double>(lo) * w[i];
      EXPECT_FALSE(least >= u[i] + margin || greatest <= l[i] - margin ||
                   (least > l[i] + margin && greatest < u[i] - margin))
          << "entry " << i << " is decided by a margin but was gathered";
    }
    // The entries of this level that were not gathered are decided, exactly.
    for (T v : before_y) {
      const long long i = static_cast<long long>(std::find(y.begin(), y.end(), v) - y.begin());
      if (std::find(gathered.begin(), gathered.end(), i) != gathered.end()) continue;
      const long double least = y[i] - static_cast<long double>(hi) * w[i];
      const long double greatest = y[i] - static_cast<long double>(lo) * w[i];
      const bool at_bound = least >= u[i] || greatest <= l[i];
      const bool free = least >= l[i] && greatest <= u[i];
      EXPECT_TRUE(at_bound || free) << "entry " << i << " decided but not decidable";
      (free ? free_seen : bound_seen) += 1;
    }
    // g - c at points of the bracket: decided part + gathered terms = the row's.
    for (int j = 0; j <= 8; ++j) {
      const long double lambda = lo + (hi - lo) * static_cast<long double>(j) / 8.0L;
      long double g = static_cast<long double>(decided.offset.s) + decided.offset.c -
                      lambda * (static_cast<long double>(decided.slope.s) + decided.slope.c);
      for (long long k = 0; k < m; ++k)
        g += rest.w[k] * std::clamp(rest.y[k] - lambda * rest.w[k],
                                    static_cast<long double>(rest.l[k]),
                                    static_cast<long double>(rest.u[k]));
      EXPECT_NEAR(static_cast<double>(g), static_cast<double>(excess(lambda)),
                  4 * std::numeric_limits<T>::epsilon())
          << "level " << level << ", lambda " << static_cast<double>(lambda);
    }
  }
  // The data must exercise every branch: entries decided at a bound and free, and a rest.
  EXPECT_GT(free_seen, 0);
  EXPECT_GT(bound_seen, 0);
  EXPECT_GT(m, 0);
  EXPECT_LT(m, n / 2);
}

TEST(BoxSection, TheReduceDecidesExactlyAndGathersTheRestInOrder) {
  check_reduce_contract<double>();
  check_reduce_contract<float>();
}

TEST(BoxSection, TheBracketedPathDeclinesWhatItCannotVouchFor) {
  const Index n = 16;
  const BoxSection set = BoxSection::capped_simplex(n, 0.0, 0.25, 1.0);
  const simplex_row::BoxSectionRow shared{set.lower_data().data(),
                                          set.upper_data().data(),
                                          set.weight_data().data(),
                                          0,
                                          0,
                                          0,
                                          set.total()};
  std::vector<double> work(simplex_row::kBoxWorkPerEntry * n);
  simplex_row::RowResult result;
  Vector y = Vector::LinSpaced(n, -1.0, 1.0);
  y[5] = std::numeric_limits<double>::quiet_NaN();
  const Vector before = y;
  EXPECT_FALSE(simplex_row::box_section_bracketed<simplex_row::LanePasses>(y.data(), n, shared,
                                                                           work.data(), &result));
  EXPECT_TRUE(y.hasNaN() && y.segment(0, 5) == before.segment(0, 5));
  // The whole-row method then names the entry.
  const simplex_row::RowResult refused =
      simplex_row::box_section_newton(y.data(), n, shared, work.data());
  EXPECT_EQ(refused.status, simplex_row::kNonFinite);
  EXPECT_EQ(refused.index, 5);
  // A stride other than 0 or 1: declined, and the whole-row method projects.
  Vector every_other = Vector::Constant(2 * n, 0.25);
  simplex_row::BoxSectionRow strided = shared;
  strided.upper = every_other.data();
  strided.upper_stride = 2;
  Vector z = Vector::LinSpaced(n, -1.0, 1.0);
  EXPECT_FALSE(simplex_row::box_section_bracketed<simplex_row::LanePasses>(z.data(), n, strided,
                                                                           work.data(), &result));
  EXPECT_EQ(simplex_row::box_section_newton(z.data(), n, strided, work.data()).status,
            simplex_row::kOk);
  Vector expected = Vector::LinSpaced(n, -1.0, 1.0);
  set.project(expected);
  EXPECT_LE((z - expected).cwiseAbs().maxCoeff(), 1e-15);
}

// ---- batches -------------------------------------------------------------------------------

// ---- single precision --------------------------------------------------------------------

// The threshold sets in float: the same algorithms in the row code's float instantiation,
// against the double projection of the same (float) input. The float closed form carries the
// threshold as a float hi + lo, so each p_i is its double value rounded, up to an ulp or two
// of the row's scale; the constraint holds to a few float ulps of z.
TEST(SimplexFloat, MatchesTheDoubleProjectionToFloatRounding) {
  Rng rng(31);
  constexpr double kFloatEps = std::numeric_limits<float>::epsilon();
  Worst diff, sum_error;
  int identical_algorithms = 0, rows_total = 0, inside_kept = 0;
  for (Index n : {1, 7, 100, 1000}) {
    const Matrix x = random_rows(rng, 40, n);
    const MatrixF xf = x.cast<float>();
    const Matrix x_rounded = xf.cast<double>();
    for (const bool l1 : {false, true}) {
      const float z = l1 ? 3.0f : 1.0f;
      MatrixF condat = xf, sorted = xf;
      Matrix reference = x_rounded;
      if (l1) {
        project_l1_ball_rows(condat, z, SimplexAlgorithm::kCondat);
        project_l1_ball_rows(sorted, z, SimplexAlgorithm::kSort);
        project_l1_ball_rows(reference, z);
      } else {
        project_simplex_rows(condat, z, SimplexAlgorithm::kCondat);
        project_simplex_rows(sorted, z, SimplexAlgorithm::kSort);
        project_simplex_rows(reference, z);
      }
      for (Index r = 0; r < x.rows(); ++r) {
        ++rows_total;
        if (condat.row(r) == sorted.row(r)) ++identical_algorithms;
        const double scale = z + x_rounded.row(r).cwiseAbs().maxCoeff();
        const double d =
            (condat.row(r).cast<double>() - reference.row(r)).cwiseAbs().maxCoeff() / scale;
        diff.see(d / kFloatEps);
        EXPECT_LE(d, 2 * kFloatEps) << (l1 ? "l1 ball" : "simplex") << ", n = " << n;
        if (l1 && x_rounded.row(r).cwiseAbs().sum() <= z) {  // inside: left as it was
          EXPECT_EQ(condat.row(r), xf.row(r));
          ++inside_kept;
          continue;
        }
        double total = 0.0;  // in double: the float sum itself would round
        for (Index j = 0; j < n; ++j) {
          if (!l1) EXPECT_GE(condat(r, j), 0.0f);
          total += std::abs(static_cast<double>(condat(r, j)));
        }
        sum_error.see(std::abs(total - z) / (kFloatEps * z));
        EXPECT_LE(std::abs(total - z), 2 * kFloatEps * z);
      }
    }
  }
  EXPECT_EQ(identical_algorithms, rows_total);
  std::printf(
      "measured (float simplex and l1 ball): max |p_float - p_double| <= %.2f float eps (z + "
      "|y|_inf); |sum |p| - z| <= %.2f float eps z; Condat and sort bitwise equal in %d of %d "
      "rows; %d l1 rows inside, unchanged\n",
      diff.value, sum_error.value, identical_algorithms, rows_total, inside_kept);
}

TEST(SimplexFloat, RefusesBadInputLikeTheDoublePath) {
  MatrixF x = MatrixF::Ones(3, 4);
  x(1, 2) = std::numeric_limits<float>::quiet_NaN();
  const MatrixF before = x;
  for (const bool l1 : {false, true}) {
    MatrixF y = x;
    const auto project = [&](MatrixF& rows, float z) {
      if (l1)
        project_l1_ball_rows(rows, z);
      else
        project_simplex_rows(rows, z);
    };
    EXPECT_THAT(message_of<InvalidArgumentError>([&] { project(y, 1.0f); }),
                HasSubstr("x(1, 2) = nan must be finite"));
    EXPECT_TRUE(y.row(1).hasNaN());  // the refused row is left as it was
    MatrixF ones = MatrixF::Ones(2, 3);
    EXPECT_THROW(project(ones, -1.0f), InfeasibleError);
    EXPECT_THROW(project(ones, std::numeric_limits<float>::infinity()), InvalidArgumentError);
    MatrixF empty(0, 3);
    project(empty, 1.0f);
    MatrixF zero(2, 3);
    zero << 1, 2, 3, -4, 5, 6;
    project(zero, 0.0f);
    EXPECT_EQ(zero, MatrixF::Zero(2, 3));
  }
}

/// The box section with its data rounded to float, as a double set (a float is exactly a
/// double): the set the float projection projects onto.
BoxSection rounded_to_float(const BoxSection& set, BoxSectionAlgorithm algorithm) {
  const auto rounded = [](const Vector& v) { return v.cast<float>().cast<double>().eval(); };
  const Index n = set.dimension();
  const auto spread = [&](const Vector& v) {
    return v.size() == 1 ? Vector::Constant(n, v[0]).eval() : v;
  };
  return BoxSection(rounded(spread(set.lower_data())), rounded(spread(set.upper_data())),
                    rounded(spread(set.weight_data())),
                    static_cast<double>(static_cast<float>(set.total())), algorithm);
}

// The box section in float against the double projection onto the same (rounded) set: the
// float multiplier is a float hi + lo, so each p_i is its double value up to an ulp or two of
// the row's scale, and w^T p = c to a few float ulps; the two algorithms agree.
TEST(BoxSectionFloat, MatchesTheDoubleProjectionOfTheRoundedSet) {
  Rng rng(32);
  constexpr double kFloatEps = std::numeric_limits<float>::epsilon();
  Worst diff, sum_error;
  int rows_total = 0, bracketed_agree = 0;
  for (Index n : {1, 7, 100, 1000}) {
    for (int t = 0; t < 4; ++t) {
      const BoxCase c = random_box(rng, n);
      const double cap = 3.0 / static_cast<double>(n) + 0.01;
      const auto make = [&](BoxSectionAlgorithm a) {
        return t % 2 == 0 ? BoxSection(c.lower, c.upper, c.weights, c.total, a)
                          : BoxSection::capped_simplex(n, 0.0, cap, 1.0, a);
      };
      const BoxSection set = make(BoxSectionAlgorithm::kNewton);
      const BoxSection reference_set = rounded_to_float(set, BoxSectionAlgorithm::kNewton);
      const Matrix x = box_test_rows(rng, 24, n);
      // The rows of scale 1e-12 and offset 1e15 sit far from float's comfortable range;
      // this test takes the benchmark-like and the tied rows.
      std::vector<Index> kept;
      for (Index r = 0; r < x.rows(); ++r)
        if (r % 4 < 2) kept.push_back(r);
      MatrixF xf(static_cast<Index>(kept.size()), n);
      for (std::size_t k = 0; k < kept.size(); ++k)
        xf.row(static_cast<Index>(k)) = x.row(kept[k]).cast<float>();
      MatrixF newton = xf, sorted = xf;
      project_box_section_rows(newton, set);
      project_box_section_rows(sorted, make(BoxSectionAlgorithm::kSort));
      Matrix reference = xf.cast<double>();
      reference_set.project_rows(reference);
      for (Index r = 0; r < xf.rows(); ++r) {
        ++rows_total;
        const double scale =
            xf.row(r).cwiseAbs().maxCoeff() + reference.row(r).cwiseAbs().maxCoeff();
        const double d = (newton.row(r).cast<double>() - reference.row(r)).cwiseAbs().maxCoeff();
        diff.see(d / (kFloatEps * scale));
        EXPECT_LE(d, 4 * kFloatEps * scale) << "n = " << n << ", set " << t << ", row " << r;
        const double ds = (newton.row(r) - sorted.row(r)).cwiseAbs().maxCoeff();
        if (ds == 0.0) ++bracketed_agree;
        EXPECT_LE(ds, 4 * kFloatEps * scale);
        // w^T p - c in double (the float products are exact there).
        simplex_row::Sum total;
        double magnitude = std::abs(reference_set.total());
        for (Index j = 0; j < n; ++j) {
          const double p = newton(r, j);
          EXPECT_GE(p, reference_set.lower(j));
          EXPECT_LE(p, reference_set.upper(j));
          total.add(reference_set.weight(j) * p);
          magnitude += reference_set.weight(j) * std::abs(p);
        }
        total.add(-reference_set.total());
        sum_error.see(std::abs(total.value()) / (kFloatEps * magnitude));
        EXPECT_LE(std::abs(total.value()), 8 * kFloatEps * magnitude);
      }
    }
  }
  std::printf(
      "measured (float box section): max |p_float - p_double| <= %.2f float eps (|y| + |p|); "
      "|w^T p - c| <= %.2f float eps (|c| + sum w |p|); Newton and sort bitwise equal in %d of "
      "%d rows\n",
      diff.value, sum_error.value, bracketed_agree, rows_total);
}

TEST(BoxSectionFloat, RefusesSetsThatRoundingEmptiesOrOverflows) {
  MatrixF x = MatrixF::Ones(2, 3);
  // sum l = 1 = c in double; l = 1/3 rounds up in float, and sum l > c there.
  const BoxSection tight(Vector::Constant(3, 1.0 / 3.0), Vector::Ones(3), Vector::Ones(3), 1.0);
  Matrix xd = Matrix::Ones(2, 3);
  project_box_section_rows(xd, tight);  // fine in double
  EXPECT_THAT(message_of<InfeasibleError>([&] { project_box_section_rows(x, tight); }),
              HasSubstr("rounded to float, the set is empty"));
  const BoxSection heavy(Vector::Zero(3), Vector::Ones(3), Vector::Constant(3, 1e300), 1e300);
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { project_box_section_rows(x, heavy); }),
              HasSubstr("does not fit in a float"));
  const BoxSection light(Vector::Zero(3), Vector::Ones(3), Vector::Constant(3, 1e-300), 1e-300);
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { project_box_section_rows(x, light); }),
              HasSubstr("rounds to 0 in float"));
  x(1, 1) = std::numeric_limits<float>::infinity();
  EXPECT_THAT(message_of<InvalidArgumentError>(
                  [&] { project_box_section_rows(x, BoxSection::capped_simplex(3, 0, 1, 1)); }),
              HasSubstr("x(1, 1) = inf must be finite"));
  MatrixF wrong(2, 4);
  EXPECT_THROW(project_box_section_rows(wrong, BoxSection::capped_simplex(3, 0, 1, 1)), ShapeError);
}

TEST(SimplexBatch, RowsEqualPerRowCallsAndStridedBlocksWork) {
  Rng rng(15);
  const Matrix x = random_rows(rng, 64, 300);
  const BoxCase c = random_box(rng, 300);
  for (SimplexAlgorithm a : {SimplexAlgorithm::kSort, SimplexAlgorithm::kCondat}) {
    Matrix batch = x;
    project_simplex_rows(batch, 2.0, a);
    Matrix ball = x;
    project_l1_ball_rows(ball, 2.0, a);
    for (Index r = 0; r < x.rows(); ++r) {
      EXPECT_EQ(Vector(batch.row(r).transpose()),
                projected(Simplex(300, 2.0, a), x.row(r).transpose()));
      EXPECT_EQ(Vector(ball.row(r).transpose()),
                projected(L1Ball(300, 2.0, a), x.row(r).transpose()));
    }
  }
  const BoxSection set(c.lower, c.upper, c.weights, c.total);
  Matrix batch = x;
  set.project_rows(batch);
  for (Index r = 0; r < x.rows(); ++r)
    EXPECT_EQ(Vector(batch.row(r).transpose()), projected(set, x.row(r).transpose()));
  // A block of a wider matrix (row stride 400): only the block moves.
  Matrix wide = Matrix::Constant(64, 400, 7.0);
  wide.block(0, 50, 64, 300) = x;
  project_simplex_rows(wide.block(0, 50, 64, 300), 2.0);
  Matrix expected = x;
  project_simplex_rows(expected, 2.0);
  EXPECT_EQ(Matrix(wide.block(0, 50, 64, 300)), expected);
  EXPECT_TRUE((wide.leftCols(50).array() == 7.0).all());
  EXPECT_TRUE((wide.rightCols(50).array() == 7.0).all());
}

TEST(SimplexBatch, EmptyBatchesAndSignedZeros) {
  Matrix empty(0, 5);
  project_simplex_rows(empty, 1.0);
  project_l1_ball_rows(empty, 1.0);
  BoxSection::capped_simplex(5, 0.0, 1.0, 1.0).project_rows(empty);
  EXPECT_EQ(empty.rows(), 0);
  // The l1 ball keeps signs and writes +0 where an entry is cut to zero.
  Vector y(4);
  y << -0.0, -3.0, 0.5, 2.0;
  const Vector p = projected(L1Ball(4, 1.0), y);
  EXPECT_EQ(p[1], -1.0);
  EXPECT_EQ(p[3], 0.0);
  EXPECT_EQ(p[0], 0.0);
  EXPECT_EQ(p[2], 0.0);
}

TEST(SimplexBatch, SameBitsForAnyThreadCount) {
#if defined(_OPENMP)
  Rng rng(16);
  const Matrix x = random_rows(rng, 512, 200);
  const BoxCase c = random_box(rng, 200);
  const BoxSection set(c.lower, c.upper, c.weights, c.total);
  const int saved = omp_get_max_threads();
  std::vector<Matrix> simplex, ball, box;
  for (int threads : {1, 2, 3, 8}) {
    omp_set_num_threads(threads);
    simplex.push_back(x);
    project_simplex_rows(simplex.back(), 1.0);
    ball.push_back(x);
    project_l1_ball_rows(ball.back(), 1.0, SimplexAlgorithm::kSort);
    box.push_back(x);
    set.project_rows(box.back());
  }
  omp_set_num_threads(saved);
  for (std::size_t k = 1; k < simplex.size(); ++k) {
    EXPECT_EQ(simplex[k], simplex[0]);
    EXPECT_EQ(ball[k], ball[0]);
    EXPECT_EQ(box[k], box[0]);
  }
#else
  GTEST_SKIP() << "built without OpenMP: every batch runs on one thread";
#endif
}

// ---- refusals ------------------------------------------------------------------------------

TEST(SimplexRefusals, InfeasibleSetsNameTheBound) {
  EXPECT_THAT(message_of<InfeasibleError>([] { Simplex(3, -1.0); }), HasSubstr("z = -1 < 0"));
  EXPECT_THAT(message_of<InfeasibleError>([] { L1Ball(3, -0.5); }), HasSubstr("z = -0.5 < 0"));
  Matrix x = Matrix::Ones(2, 3);
  EXPECT_THAT(message_of<InfeasibleError>([&] { project_simplex_rows(x, -2.0); }),
              HasSubstr("z = -2 < 0"));
  Vector l = Vector::Zero(3), u = Vector::Ones(3), w = Vector::Ones(3);
  EXPECT_THAT(message_of<InfeasibleError>([&] { BoxSection(l, u, w, 3.5); }),
              HasSubstr("sum_i w_i upper_i = 3 < total c = 3.5"));
  EXPECT_THAT(message_of<InfeasibleError>([&] { BoxSection(l, u, w, -0.1); }),
              HasSubstr("sum_i w_i lower_i = 0 > total c = -0.10000000000000001"));
  Vector bad_u = u;
  bad_u[1] = -1.0;
  EXPECT_THAT(message_of<InfeasibleError>([&] { BoxSection(l, bad_u, w, 0.0); }),
              HasSubstr("lower[1] = 0 > upper[1] = -1"));
  EXPECT_THAT(message_of<InfeasibleError>([] { BoxSection::capped_simplex(4, 0.0, 0.2, 1.0); }),
              HasSubstr("< total c = 1"));
}

TEST(SimplexRefusals, BadArgumentsAreRefused) {
  EXPECT_THAT(message_of<InvalidArgumentError>([] { Simplex(0, 1.0); }),
              HasSubstr("dimension n must be >= 1"));
  EXPECT_THAT(message_of<InvalidArgumentError>([] { Simplex(3, kNaN); }),
              HasSubstr("z must be finite"));
  EXPECT_THAT(message_of<InvalidArgumentError>([] { L1Ball(3, kInf); }),
              HasSubstr("z must be finite"));
  Vector l = Vector::Zero(3), u = Vector::Ones(3), w = Vector::Ones(3);
  Vector bad_w = w;
  bad_w[2] = 0.0;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { BoxSection(l, u, bad_w, 1.0); }),
              HasSubstr("weights[2] = 0 must be > 0"));
  bad_w[2] = -1.0;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { BoxSection(l, u, bad_w, 1.0); }),
              HasSubstr("weights[2] = -1 must be > 0"));
  Vector bad_l = l;
  bad_l[0] = -kInf;
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { BoxSection(bad_l, u, w, 1.0); }),
              HasSubstr("lower[0] = -inf must be finite"));
  EXPECT_THAT(message_of<InvalidArgumentError>([&] { BoxSection(l, u, w, kNaN); }),
              HasSubstr("total c must be finite"));
  EXPECT_THROW(BoxSection(l, Vector::Ones(2), w, 1.0), ShapeError);
  Vector x3 = Vector::Ones(3);
  EXPECT_THROW(Simplex(4, 1.0).project(x3), ShapeError);
  Matrix m = Matrix::Ones(2, 3);
  EXPECT_THROW(BoxSection::capped_simplex(4, 0.0, 1.0, 1.0).project_rows(m), ShapeError);
  EXPECT_THROW(Simplex(3).contains(x3, -1.0), InvalidArgumentError);
  EXPECT_FALSE(Simplex(4).contains(x3, 1.0));
}

TEST(SimplexRefusals, NonFiniteInputIsRefusedAndItsRowLeftAsItWas) {
  Rng rng(17);
  for (double bad : {kNaN, kInf, -kInf}) {
    for (int algorithm = 0; algorithm < 2; ++algorithm) {
      const auto a = algorithm == 0 ? SimplexAlgorithm::kSort : SimplexAlgorithm::kCondat;
      const auto b = algorithm == 0 ? BoxSectionAlgorithm::kSort : BoxSectionAlgorithm::kNewton;
      Matrix x = random_rows(rng, 6, 5);
      x(3, 2) = bad;
      x(5, 0) = bad;
      const Matrix before = x;
      Matrix y = x, z = x;
      const std::string simplex_message =
          message_of<InvalidArgumentError>([&] { project_simplex_rows(x, 1.0, a); });
      EXPECT_THAT(simplex_message, HasSubstr("x(3, 2) = "));
      EXPECT_THAT(simplex_message, HasSubstr("must be finite"));
      for (Index j : {0, 1, 3, 4}) EXPECT_EQ(x(3, j), before(3, j)) << "the refused row moved";
      EXPECT_THAT(message_of<InvalidArgumentError>([&] { project_l1_ball_rows(y, 1.0, a); }),
                  HasSubstr("project_l1_ball_rows: x(3, 2)"));
      const BoxSection set = BoxSection::capped_simplex(5, 0.0, 1.0, 1.0, b);
      EXPECT_THAT(message_of<InvalidArgumentError>([&] { set.project_rows(z); }),
                  HasSubstr("project_box_section_rows: x(3, 2)"));
      Vector v = before.row(3).transpose();
      EXPECT_THROW(Simplex(5, 1.0, a).project(v), InvalidArgumentError);
      EXPECT_FALSE(Simplex(5).contains(v, 10.0));
    }
  }
}

TEST(SimplexRefusals, OverflowingMultipliersAreNumericalErrors) {
  Vector huge = Vector::Constant(3, 1.5e308);
  EXPECT_THAT(message_of<NumericalError>([&] { Simplex(3, 1.0).project(huge); }),
              HasSubstr("overflowed"));
  // Large but representable: a finite answer (z is below the rounding of tau here, so the
  // answer is 0 up to that rounding).
  Vector large = Vector::Constant(3, 1e300);
  Simplex(3, 3.0).project(large);
  EXPECT_TRUE(large.allFinite());
  EXPECT_GE(large.minCoeff(), 0.0);
}

}  // namespace
}  // namespace tether
