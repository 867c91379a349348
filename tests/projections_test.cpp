// core/projections: every set against its defining properties (feasibility, idempotence, the
// variational inequality, nonexpansiveness, closest point), closed-form cases, and refusals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/projections.hpp>
#include <tether/core/rng.hpp>
#include <typeinfo>

namespace tether {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

static_assert(ConvexSet<Box>);
static_assert(ConvexSet<HalfSpace>);
static_assert(ConvexSet<Hyperplane>);
static_assert(ConvexSet<AffineSubspace>);
static_assert(ConvexSet<Ball>);
static_assert(ConvexSet<WholeSpace>);

Vector gaussian(Rng& rng, Index n, double scale = 1.0) {
  Vector v(n);
  for (Index i = 0; i < n; ++i) v[i] = scale * rng.normal();
  return v;
}

Eigen::MatrixXd gaussian_matrix(Rng& rng, Index rows, Index cols) {
  Eigen::MatrixXd m(rows, cols);
  for (Index j = 0; j < cols; ++j)
    for (Index i = 0; i < rows; ++i) m(i, j) = rng.normal();
  return m;
}

template <ConvexSet S>
Vector projected(const S& set, Vector x) {
  set.project(x);
  return x;
}

/// The message of the exception f() throws, checking that its dynamic type is exactly E (so an
/// InfeasibleError does not pass for a plain InvalidArgumentError, or the other way round).
template <class E, class F>
std::string exact_message(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    EXPECT_EQ(typeid(e), typeid(E)) << "threw " << typeid(e).name() << ": " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

struct PropertyCounts {
  int moved = 0;      ///< x outside the set (P(x) != x)
  int unchanged = 0;  ///< x inside, left as it was bit for bit
};

/// The invariant battery every set passes. `violation(p)` measures how far p is from satisfying
/// the set's definition, computed from the definition and not from the class under test.
/// Points x are drawn as center + spread * N(0, I); feasible points s as projections of such.
template <ConvexSet S, class Violation>
PropertyCounts expect_projection_properties(const S& set, Violation violation, const Vector& center,
                                            double spread, std::uint64_t seed, int points = 60,
                                            int feasible_points = 25) {
  Rng rng(seed);
  const Index n = set.dimension();
  PropertyCounts counts;
  for (int trial = 0; trial < points; ++trial) {
    const Vector x = center + gaussian(rng, n, spread);
    const Vector px = projected(set, x);
    const double scale = x.norm() + px.norm();
    if (px == x)
      ++counts.unchanged;
    else
      ++counts.moved;

    // Feasible after one projection, by the definition and by contains().
    EXPECT_LE(violation(px), 1e-12 * scale) << "trial " << trial;
    EXPECT_TRUE(set.contains(px, 1e-12 * scale)) << "trial " << trial;

    // Idempotent: a second projection moves it by rounding only.
    const Vector ppx = projected(set, px);
    EXPECT_LE((ppx - px).norm(), 1e-14 * scale) << "trial " << trial;

    // Variational inequality and closest point, against many feasible s.
    for (int k = 0; k < feasible_points; ++k) {
      const Vector s = projected(set, Vector(center + gaussian(rng, n, spread)));
      const double inner = (x - px).dot(s - px);
      EXPECT_LE(inner, 1e-12 * (x.norm() + px.norm()) * (s.norm() + px.norm()))
          << "trial " << trial << ", s " << k;
      EXPECT_LE((x - px).norm(), (x - s).norm() * (1.0 + 1e-14)) << "trial " << trial;
    }

    // Nonexpansive: |P(x) - P(y)| <= |x - y|.
    const Vector y = center + gaussian(rng, n, spread);
    const Vector py = projected(set, y);
    EXPECT_LE((px - py).norm(), (x - y).norm() + 1e-14 * (x.norm() + y.norm()))
        << "trial " << trial;
  }
  return counts;
}

void expect_bitwise_equal(const Vector& a, const Vector& b) {
  ASSERT_EQ(a.size(), b.size());
  for (Index i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "entry " << i;
}

// ---- Box -----------------------------------------------------------------------------------

Box mixed_box() {
  Vector lower(8), upper(8);
  lower << -1.0, -kInf, 0.0, 2.0, -3.0, -kInf, 0.5, -1e-3;
  upper << 1.0, 0.0, kInf, 2.0, 5.0, kInf, 0.75, 1e-3;
  return Box(lower, upper);
}

double box_violation(const Box& box, const Vector& p) {
  double worst = 0.0;
  for (Index i = 0; i < p.size(); ++i)
    worst = std::max({worst, box.lower()[i] - p[i], p[i] - box.upper()[i]});
  return worst;
}

TEST(Box, PassesTheInvariantBattery) {
  const Box box = mixed_box();
  const auto counts = expect_projection_properties(
      box, [&](const Vector& p) { return box_violation(box, p); }, Vector::Zero(8), 2.0, 11);
  EXPECT_EQ(counts.unchanged, 0);  // coordinate 3 is pinned to 2: no random point is inside
  EXPECT_EQ(counts.moved, 60);

  // A box with room inside: both cases occur, and the inside points were left untouched.
  const Box wide = Box::uniform(3, -1.0, 1.0);
  const auto wide_counts = expect_projection_properties(
      wide, [&](const Vector& p) { return box_violation(wide, p); }, Vector::Zero(3), 0.8, 12);
  EXPECT_GT(wide_counts.unchanged, 5);
  EXPECT_GT(wide_counts.moved, 5);
}

TEST(Box, ProjectionIsTheCoordinatewiseClampExactly) {
  const Box box = mixed_box();
  Vector x(8), expected(8);
  x << -2.0, 5.0, -1.0, 7.0, 10.0, -1e300, 0.6, 0.0;
  expected << -1.0, 0.0, 0.0, 2.0, 5.0, -1e300, 0.6, 0.0;
  box.project(x);
  expect_bitwise_equal(x, expected);
  EXPECT_TRUE(box.contains(x));  // exactly feasible: tolerance 0
}

TEST(Box, InsidePointsAreUnchangedBitForBitAndNaNStaysNaN) {
  const Box box = Box::uniform(4, -1.0, 1.0);
  Vector x(4);
  x << 0.1, -1.0, 1.0, 0.3333333333333333;
  const Vector before = x;
  box.project(x);
  expect_bitwise_equal(x, before);

  // A NaN entry must not be clamped into the box (that would hide it from NaN checks).
  Vector bad(4);
  bad << 5.0, kNaN, -5.0, 0.0;
  box.project(bad);
  EXPECT_EQ(bad[0], 1.0);
  EXPECT_TRUE(std::isnan(bad[1]));
  EXPECT_EQ(bad[2], -1.0);
  EXPECT_FALSE(box.contains(bad, 1.0));
}

TEST(Box, ContainsUsesAnAbsoluteTolerancePerCoordinate) {
  const Box box = Box::uniform(2, 0.0, 1.0);
  Vector x(2);
  x << 1.0 + 1e-9, 0.5;
  EXPECT_FALSE(box.contains(x));
  EXPECT_FALSE(box.contains(x, 1e-10));
  EXPECT_TRUE(box.contains(x, 2e-9));
  x << 0.5, -1e-3;
  EXPECT_FALSE(box.contains(x, 9e-4));
  EXPECT_TRUE(box.contains(x, 1.1e-3));
  EXPECT_FALSE(box.contains(Vector::Constant(3, 0.5), 1.0));  // wrong size
  Vector inf_point(2);
  inf_point << kInf, 0.5;
  EXPECT_FALSE(Box(Vector::Constant(2, 0.0), Vector::Constant(2, kInf)).contains(inf_point, 0.0));
}

TEST(Box, ProjectsASegmentOfALargerVectorInPlace) {
  const Box box = Box::uniform(3, 0.0, 1.0);
  Vector big(7);
  big << 9.0, 9.0, -2.0, 0.5, 3.0, 9.0, 9.0;
  box.project(big.segment(2, 3));
  Vector expected(7);
  expected << 9.0, 9.0, 0.0, 0.5, 1.0, 9.0, 9.0;
  expect_bitwise_equal(big, expected);
}

TEST(Box, RefusesBadBounds) {
  const Vector two = Vector::Zero(2), three = Vector::Zero(3);
  EXPECT_THAT(exact_message<ShapeError>([&] { Box(two, three); }),
              AllOf(HasSubstr("lower has size 2"), HasSubstr("upper has size 3")));
  Vector lower(2), upper(2);
  lower << 0.0, 1.0;
  upper << 1.0, 0.5;
  EXPECT_THAT(exact_message<InfeasibleError>([&] { Box(lower, upper); }),
              AllOf(HasSubstr("lower[1] = 1"), HasSubstr("upper[1] = 0.5")));
  lower << kNaN, 0.0;
  upper << 1.0, 1.0;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Box(lower, upper); }),
              AllOf(HasSubstr("lower[0]"), HasSubstr("NaN")));
  lower << 0.0, 0.0;
  upper << 1.0, kNaN;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Box(lower, upper); }),
              AllOf(HasSubstr("upper[1]"), HasSubstr("NaN")));
  lower << kInf, 0.0;
  upper << kInf, 1.0;
  EXPECT_THAT(exact_message<InfeasibleError>([&] { Box(lower, upper); }),
              AllOf(HasSubstr("lower[0] = +inf"), HasSubstr("< +inf")));
  lower << 0.0, -kInf;
  upper << 1.0, -kInf;
  EXPECT_THAT(exact_message<InfeasibleError>([&] { Box(lower, upper); }),
              AllOf(HasSubstr("upper[1] = -inf"), HasSubstr("> -inf")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Box::uniform(-1, 0.0, 1.0); }),
              AllOf(HasSubstr("n must be >= 0"), HasSubstr("-1")));
  EXPECT_THAT(exact_message<InfeasibleError>([] { Box::uniform(0, 2.0, 1.0); }),
              AllOf(HasSubstr("lower = 2"), HasSubstr("upper = 1")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Box::uniform(2, kNaN, 1.0); }),
              HasSubstr("NaN"));
  // Infinite but non-empty bounds are fine.
  EXPECT_NO_THROW(Box::uniform(2, -kInf, kInf));
  EXPECT_NO_THROW(Box::uniform(0, 0.0, 0.0));
}

// ---- HalfSpace and Hyperplane ----------------------------------------------------------------

TEST(HalfSpace, PassesTheInvariantBattery) {
  Rng rng(21);
  const Vector a = gaussian(rng, 6);
  const double b = 0.7;
  const HalfSpace half(a, b);
  const auto counts = expect_projection_properties(
      half, [&](const Vector& p) { return std::max(0.0, a.dot(p) - b) / a.norm(); },
      Vector::Zero(6), 1.5, 22);
  EXPECT_GT(counts.moved, 10);
  EXPECT_GT(counts.unchanged, 10);
}

TEST(HalfSpace, ClosedFormCases) {
  Vector a(3), x(3), expected(3);
  a << 0.0, 0.0, 2.0;
  const HalfSpace half(a, 2.0);  // {x3 <= 1}
  x << 1.0, 2.0, 5.0;
  half.project(x);
  expected << 1.0, 2.0, 1.0;
  expect_bitwise_equal(x, expected);
  x << 1.0, 2.0, -7.0;  // inside: untouched
  const Vector inside = x;
  half.project(x);
  expect_bitwise_equal(x, inside);

  // {x1 + x2 <= 0}: (1, 2) -> (1, 2) - 3/2 (1, 1) = (-0.5, 0.5).
  Vector a2(2), y(2);
  a2 << 1.0, 1.0;
  y << 1.0, 2.0;
  HalfSpace(a2, 0.0).project(y);
  EXPECT_NEAR(y[0], -0.5, 1e-15);
  EXPECT_NEAR(y[1], 0.5, 1e-15);
  EXPECT_EQ(HalfSpace(a2, 0.0).normal(), a2);
  EXPECT_EQ(HalfSpace(a2, 0.0).offset(), 0.0);
}

TEST(HalfSpace, ContainsMeasuresEuclideanDistance) {
  Vector a(2), x(2);
  a << 3.0, 4.0;
  const HalfSpace half(a, 5.0);  // distance of x outside = (3 x1 + 4 x2 - 5) / 5
  x << 1.0, 1.0;                 // 3 + 4 - 5 = 2, distance 0.4
  EXPECT_FALSE(half.contains(x, 0.39));
  EXPECT_TRUE(half.contains(x, 0.41));
  x << 0.0, 0.0;
  EXPECT_TRUE(half.contains(x));
}

TEST(Hyperplane, PassesTheInvariantBattery) {
  Rng rng(31);
  const Vector a = gaussian(rng, 6);
  const double b = -1.3;
  const Hyperplane plane(a, b);
  const auto counts = expect_projection_properties(
      plane, [&](const Vector& p) { return std::abs(a.dot(p) - b) / a.norm(); }, Vector::Zero(6),
      1.5, 32);
  EXPECT_EQ(counts.moved, 60);
}

TEST(Hyperplane, ClosedFormCases) {
  Vector a(2), x(2);
  a << 3.0, 4.0;
  const Hyperplane plane(a, 10.0);
  x << 0.0, 0.0;  // -> 10 / 25 (3, 4)
  plane.project(x);
  EXPECT_NEAR(x[0], 1.2, 1e-15);
  EXPECT_NEAR(x[1], 1.6, 1e-15);
  x << 5.0, -1.0;  // 15 - 4 - 10 = 1 -> (5, -1) - (3, 4) / 25
  plane.project(x);
  EXPECT_NEAR(x[0], 5.0 - 0.12, 1e-15);
  EXPECT_NEAR(x[1], -1.0 - 0.16, 1e-15);

  // A point exactly on an axis-aligned plane is unchanged bit for bit.
  Vector e(2), on(2);
  e << 0.0, 2.0;
  on << 7.25, 2.0;
  const Vector before = on;
  Hyperplane(e, 4.0).project(on);
  expect_bitwise_equal(on, before);
}

TEST(Hyperplane, HugeAndTinyNormalsWork) {
  // |a|^2 would overflow (2^1200) or underflow (2^-1200); the unit normal does not care.
  Vector huge(2), tiny(2), x(2);
  huge << std::ldexp(1.0, 600), 0.0;
  tiny << 0.0, std::ldexp(1.0, -600);
  x << 7.0, 2.0;
  Hyperplane(huge, 3.0 * std::ldexp(1.0, 600)).project(x);  // {x1 = 3}
  EXPECT_EQ(x[0], 3.0);
  EXPECT_EQ(x[1], 2.0);
  HalfSpace(tiny, 5.0 * std::ldexp(1.0, -600)).project(x);  // {x2 <= 5}: inside
  EXPECT_EQ(x[1], 2.0);
  Hyperplane(tiny, 5.0 * std::ldexp(1.0, -600)).project(x);  // {x2 = 5}
  EXPECT_EQ(x[0], 3.0);
  EXPECT_EQ(x[1], 5.0);
}

template <class Set>
void expect_normal_refusals(const char* name) {
  SCOPED_TRACE(name);
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Set(Vector::Zero(3), 1.0); }),
              AllOf(HasSubstr(name), HasSubstr("normal must be nonzero"), HasSubstr("= 0")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Set(Vector(), 0.0); }),
              HasSubstr("normal must be nonzero"));
  Vector a(3);
  a << 1.0, kNaN, 0.0;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Set(a, 1.0); }),
              AllOf(HasSubstr("normal[1]"), HasSubstr("finite")));
  a << 1.0, 0.0, -kInf;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Set(a, 1.0); }),
              AllOf(HasSubstr("normal[2]"), HasSubstr("finite")));
  a << 1.0, 0.0, 0.0;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Set(a, kNaN); }),
              AllOf(HasSubstr("offset must be finite"), HasSubstr("nan")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Set(a, kInf); }),
              HasSubstr("offset must be finite"));
  // Finite entries whose norm overflows, and an offset / |normal| that overflows.
  const Vector big = Vector::Constant(4, 1e308);
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Set(big, 0.0); }),
              HasSubstr("|normal| must be finite"));
  a << 1e-300, 0.0, 0.0;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Set(a, 1e300); }),
              HasSubstr("offset / |normal| must be finite"));
}

TEST(HalfSpace, RefusesBadNormalsAndOffsets) { expect_normal_refusals<HalfSpace>("HalfSpace"); }
TEST(Hyperplane, RefusesBadNormalsAndOffsets) { expect_normal_refusals<Hyperplane>("Hyperplane"); }

// ---- AffineSubspace ----------------------------------------------------------------------------

double affine_violation(const Eigen::MatrixXd& a, const Vector& b, const Vector& p) {
  return (a * p - b).norm() / a.norm();
}

/// P(x) = x - A^+ (A x - b) with A^+ from an independent decomposition.
Vector pseudo_inverse_projection(const Eigen::MatrixXd& a, const Vector& b, const Vector& x) {
  const Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd> cod(a);
  return x - cod.solve(Vector(a * x - b));
}

void expect_affine_case(const Eigen::MatrixXd& a, const Vector& b, Index expected_rank,
                        std::uint64_t seed) {
  const AffineSubspace set(a, b);
  EXPECT_EQ(set.rank(), expected_rank);
  EXPECT_EQ(set.dimension(), a.cols());
  const auto counts = expect_projection_properties(
      set, [&](const Vector& p) { return affine_violation(a, b, p); }, Vector::Zero(a.cols()), 2.0,
      seed, 40, 15);
  EXPECT_EQ(counts.moved, 40);
  // Agrees with the pseudo-inverse formula, and P(0) is the minimum-norm solution.
  Rng rng(seed + 1);
  for (int trial = 0; trial < 10; ++trial) {
    const Vector x = gaussian(rng, a.cols(), 3.0);
    const Vector expected = pseudo_inverse_projection(a, b, x);
    EXPECT_LE((projected(set, x) - expected).norm(), 1e-12 * (x.norm() + expected.norm()));
  }
  const Vector min_norm = Eigen::CompleteOrthogonalDecomposition<Eigen::MatrixXd>(a).solve(b);
  EXPECT_LE((projected(set, Vector::Zero(a.cols())) - min_norm).norm(), 1e-12 * min_norm.norm());
}

TEST(AffineSubspace, WideFullRowRank) {
  Rng rng(41);
  const Eigen::MatrixXd a = gaussian_matrix(rng, 3, 7);
  const Vector b = gaussian(rng, 3);
  expect_affine_case(a, b, 3, 42);
}

TEST(AffineSubspace, TallRankDeficient) {
  Rng rng(43);
  // 8 x 5 of rank 3: A = B C with B 8 x 3, C 3 x 5; b = A x_true is consistent.
  const Eigen::MatrixXd a = gaussian_matrix(rng, 8, 3) * gaussian_matrix(rng, 3, 5);
  const Vector b = a * gaussian(rng, 5);
  expect_affine_case(a, b, 3, 44);
}

TEST(AffineSubspace, TallFullColumnRankIsASinglePoint) {
  Rng rng(45);
  const Eigen::MatrixXd a = gaussian_matrix(rng, 7, 4);
  const Vector x_true = gaussian(rng, 4);
  const Vector b = a * x_true;
  expect_affine_case(a, b, 4, 46);
  const AffineSubspace set(a, b);
  for (int trial = 0; trial < 5; ++trial) {
    const Vector x = gaussian(rng, 4, 10.0);
    EXPECT_LE((projected(set, x) - x_true).norm(), 1e-13 * x_true.norm());
  }
}

TEST(AffineSubspace, DuplicateRowsWithConsistentRightHandSide) {
  // {x1 + x2 = 2, x3 = 3} written with a repeated row: rank 2.
  Eigen::MatrixXd a(3, 3);
  a << 1, 1, 0,  //
      1, 1, 0,   //
      0, 0, 1;
  Vector b(3);
  b << 2.0, 2.0, 3.0;
  expect_affine_case(a, b, 2, 47);
  const AffineSubspace set(a, b);
  Vector x = Vector::Zero(3), expected(3);
  set.project(x);  // the minimum-norm solution
  expected << 1.0, 1.0, 3.0;
  EXPECT_LE((x - expected).norm(), 1e-15 * expected.norm());
  x << 5.0, -1.0, 0.0;  // x1 + x2 = 4: subtract (1, 1); x3 -> 3
  set.project(x);
  expected << 4.0, -2.0, 3.0;
  EXPECT_LE((x - expected).norm(), 1e-15 * expected.norm());

  // A larger random case: 6 x 9 with rows 3..5 copies of rows 0..2.
  Rng rng(48);
  Eigen::MatrixXd big(6, 9);
  big.topRows(3) = gaussian_matrix(rng, 3, 9);
  big.bottomRows(3) = big.topRows(3);
  Vector rhs(6);
  rhs.head(3) = gaussian(rng, 3);
  rhs.tail(3) = rhs.head(3);
  expect_affine_case(big, rhs, 3, 49);
}

TEST(AffineSubspace, OneRowAgreesWithHyperplane) {
  Rng rng(51);
  const Vector a = gaussian(rng, 5);
  const double b = 0.9;
  const AffineSubspace affine(a.transpose(), Vector::Constant(1, b));
  const Hyperplane plane(a, b);
  for (int trial = 0; trial < 20; ++trial) {
    const Vector x = gaussian(rng, 5, 2.0);
    const Vector p1 = projected(affine, x), p2 = projected(plane, x);
    EXPECT_LE((p1 - p2).norm(), 1e-14 * (x.norm() + p2.norm()));
  }
}

TEST(AffineSubspace, EmptyOrZeroMatrixIsTheWholeSpace) {
  Rng rng(52);
  const Vector x = gaussian(rng, 4);
  for (const AffineSubspace& set : {AffineSubspace(Eigen::MatrixXd(0, 4), Vector()),
                                    AffineSubspace(Eigen::MatrixXd::Zero(2, 4), Vector::Zero(2))}) {
    EXPECT_EQ(set.rank(), 0);
    EXPECT_EQ(set.dimension(), 4);
    expect_bitwise_equal(projected(set, x), x);
    EXPECT_TRUE(set.contains(x));
  }
  EXPECT_THAT(exact_message<InfeasibleError>(
                  [] { AffineSubspace(Eigen::MatrixXd::Zero(2, 4), Vector::Ones(2)); }),
              AllOf(HasSubstr("rank 0"), HasSubstr("residual")));
}

TEST(AffineSubspace, ContainsMeasuresEuclideanDistance) {
  Eigen::MatrixXd a(2, 3);
  a << 2, 0, 0,  //
      0, 2, 0;   // {x1 = 0.5, x2 = -1}
  Vector b(2), x(3);
  b << 1.0, -2.0;
  const AffineSubspace set(a, b);
  x << 0.5 + 0.3, -1.0 + 0.4, 17.0;  // distance 0.5
  EXPECT_FALSE(set.contains(x, 0.49));
  EXPECT_TRUE(set.contains(x, 0.51));
  x << 0.5, -1.0, -3.0;
  EXPECT_TRUE(set.contains(x, 1e-15));
  EXPECT_FALSE(set.contains(Vector::Zero(2), 1.0));
}

TEST(AffineSubspace, FeasibilityToleranceIsRelative) {
  Eigen::MatrixXd a(2, 2);
  a << 1, 1,  //
      1, 1;
  Vector b(2);
  for (const double scale : {1.0, 1e-8, 1e8}) {
    SCOPED_TRACE(scale);
    b << 1.0, 1.0 + 1e-14;  // inconsistent by rounding only: accepted
    EXPECT_NO_THROW(AffineSubspace(scale * a, scale * b));
    b << 1.0, 1.0 + 1e-6;  // inconsistent for real
    EXPECT_THAT(exact_message<InfeasibleError>([&] { AffineSubspace(scale * a, scale * b); }),
                AllOf(HasSubstr("b is not in the range of A"), HasSubstr("rank 1 of 2 x 2"),
                      HasSubstr("residual |A x0 - b|")));
  }
  b << 1.0, 2.0;
  const std::string message = exact_message<InfeasibleError>([&] { AffineSubspace(a, b); });
  EXPECT_THAT(message, HasSubstr("= 0.7071067811865"));  // |(-0.5, 0.5)|
}

TEST(AffineSubspace, RefusesBadData) {
  Eigen::MatrixXd a = Eigen::MatrixXd::Identity(2, 3);
  EXPECT_THAT(exact_message<ShapeError>([&] { AffineSubspace(a, Vector::Zero(3)); }),
              AllOf(HasSubstr("b has size 3"), HasSubstr("A has 2 rows")));
  a(1, 2) = kNaN;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { AffineSubspace(a, Vector::Zero(2)); }),
              AllOf(HasSubstr("A(1, 2) = nan"), HasSubstr("finite")));
  a(1, 2) = 0.0;
  Vector b(2);
  b << 0.0, kInf;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { AffineSubspace(a, b); }),
              AllOf(HasSubstr("b[1] = inf"), HasSubstr("finite")));
}

// ---- Ball ----------------------------------------------------------------------------------

TEST(Ball, PassesTheInvariantBattery) {
  Rng rng(61);
  const Vector c = gaussian(rng, 5);
  const double r = 1.5;
  const Ball ball(c, r);
  const auto counts = expect_projection_properties(
      ball, [&](const Vector& p) { return std::max(0.0, (p - c).norm() - r); }, c, 0.9, 62);
  EXPECT_GT(counts.moved, 10);
  EXPECT_GT(counts.unchanged, 10);

  const Ball point(c, 0.0);
  expect_projection_properties(
      point, [&](const Vector& p) { return (p - c).norm(); }, c, 1.0, 63);
}

TEST(Ball, ClosedFormCases) {
  Vector c(2), x(2);
  c << 1.0, 1.0;
  const Ball ball(c, 1.0);
  x << 4.0, 5.0;  // x - c = (3, 4), |.| = 5 -> c + (0.6, 0.8)
  ball.project(x);
  EXPECT_NEAR(x[0], 1.6, 1e-15);
  EXPECT_NEAR(x[1], 1.8, 1e-15);
  x << 1.5, 0.2;  // inside
  const Vector inside = x;
  ball.project(x);
  expect_bitwise_equal(x, inside);
  x << 1.0, 2.0;  // on the sphere
  ball.project(x);
  EXPECT_EQ(x[0], 1.0);
  EXPECT_EQ(x[1], 2.0);
  // Radius 0: every point goes to the center exactly.
  x << -3.0, 8.5;
  Ball(c, 0.0).project(x);
  expect_bitwise_equal(x, c);
  // |x - c|^2 overflows, |x - c| does not: still the right point.
  x << 1e200, 0.0;
  Ball(Vector::Zero(2), 2.0).project(x);
  EXPECT_NEAR(x[0], 2.0, 1e-15);
  EXPECT_EQ(x[1], 0.0);
}

TEST(Ball, ContainsMeasuresEuclideanDistance) {
  const Ball ball(Vector::Zero(2), 1.0);
  Vector x(2);
  x << 0.66, 0.88;  // 1.1 (0.6, 0.8): distance 0.1
  EXPECT_FALSE(ball.contains(x, 0.099));
  EXPECT_TRUE(ball.contains(x, 0.101));
  x << 1e200, 0.0;
  EXPECT_FALSE(ball.contains(x, 1.0));
}

TEST(Ball, RefusesBadCenterAndRadius) {
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Ball(Vector::Zero(2), -0.5); }),
              AllOf(HasSubstr("radius must be finite and >= 0"), HasSubstr("-0.5")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Ball(Vector::Zero(2), kNaN); }),
              AllOf(HasSubstr("radius"), HasSubstr("nan")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { Ball(Vector::Zero(2), kInf); }),
              HasSubstr("radius must be finite"));
  Vector c(3);
  c << 0.0, 1.0, kNaN;
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { Ball(c, 1.0); }),
              AllOf(HasSubstr("center[2]"), HasSubstr("finite")));
}

// ---- WholeSpace and the shared conventions ---------------------------------------------------

TEST(WholeSpace, IsTheIdentity) {
  const WholeSpace space(3);
  Rng rng(71);
  const Vector x = gaussian(rng, 3);
  expect_bitwise_equal(projected(space, x), x);
  EXPECT_TRUE(space.contains(x));
  EXPECT_FALSE(space.contains(Vector::Zero(2)));
  EXPECT_THAT(exact_message<InvalidArgumentError>([] { WholeSpace(-2); }),
              AllOf(HasSubstr("n must be >= 0"), HasSubstr("-2")));
}

template <ConvexSet S>
void expect_shared_conventions(const S& set, const char* name) {
  SCOPED_TRACE(name);
  const Index n = set.dimension();
  Vector wrong = Vector::Zero(n + 1);
  EXPECT_THAT(exact_message<ShapeError>([&] { set.project(wrong); }),
              AllOf(HasSubstr(name), HasSubstr("x has size " + std::to_string(n + 1)),
                    HasSubstr("dimension " + std::to_string(n))));
  EXPECT_FALSE(set.contains(wrong, 1e300));
  const Vector inside = projected(set, Vector::Zero(n));
  EXPECT_TRUE(set.contains(inside, 1e-12));
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { (void)set.contains(inside, -1e-3); }),
              AllOf(HasSubstr("tolerance must be >= 0"), HasSubstr("-0.001")));
  EXPECT_THAT(exact_message<InvalidArgumentError>([&] { (void)set.contains(inside, kNaN); }),
              HasSubstr("tolerance"));
  Vector with_nan = inside;
  with_nan[0] = kNaN;
  EXPECT_FALSE(set.contains(with_nan, 1e300));
}

TEST(ConvexSets, ShareTheSizeToleranceAndNaNConventions) {
  Vector a(3);
  a << 1.0, -2.0, 0.5;
  expect_shared_conventions(Box::uniform(3, -1.0, 1.0), "Box::project");
  expect_shared_conventions(HalfSpace(a, -1.0), "HalfSpace::project");
  expect_shared_conventions(Hyperplane(a, 2.0), "Hyperplane::project");
  expect_shared_conventions(AffineSubspace(a.transpose(), Vector::Ones(1)),
                            "AffineSubspace::project");
  expect_shared_conventions(Ball(a, 0.5), "Ball::project");
  expect_shared_conventions(WholeSpace(3), "WholeSpace::project");
}

}  // namespace
}  // namespace tether
