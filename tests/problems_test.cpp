// The synthetic MCKP families: gradients against central differences, seeded determinism, the
// documented formulas, and exact enumeration against independent loops and the knapsack DP.
#include <gtest/gtest.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/knapsack.hpp>
#include <tether/core/rng.hpp>
#include <tether/problems/enumerate.hpp>
#include <tether/problems/mckp_families.hpp>

namespace tether::problems {
namespace {

/// Rows on the open simplex: softmax of standard normal logits.
Matrix random_soft(Index n, Index k, std::uint64_t seed) {
  Rng rng(seed);
  Matrix y(n, k);
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < k; ++j) y(i, j) = std::exp(rng.normal());
    y.row(i) /= y.row(i).sum();
  }
  return y;
}

/// ||g_fd - g|| / ||g|| with central differences of step h in every entry of Y.
template <AssignmentProblem P>
double gradient_relative_error(const P& p, const Matrix& y, double h = 1e-6) {
  Matrix grad(y.rows(), y.cols()), scratch(y.rows(), y.cols()), fd(y.rows(), y.cols());
  p.loss(y, grad);
  Matrix yp = y;
  for (Index j = 0; j < y.size(); ++j) {
    const double saved = yp.data()[j];
    yp.data()[j] = saved + h;
    const double up = p.loss(yp, scratch);
    yp.data()[j] = saved - h;
    const double down = p.loss(yp, scratch);
    yp.data()[j] = saved;
    fd.data()[j] = (up - down) / (2 * h);
  }
  return (fd - grad).norm() / grad.norm();
}

// ---- gradients -----------------------------------------------------------------------------

TEST(Problems, SeparableGradientMatchesFiniteDifferences) {
  const auto p = SeparableMckp::generate(9, 5, 11);
  for (std::uint64_t s = 0; s < 3; ++s)
    EXPECT_LE(gradient_relative_error(p, random_soft(9, 5, 100 + s)), 1e-7);
}

TEST(Problems, CoupledGradientMatchesFiniteDifferences) {
  const auto p = CoupledMckp::generate(9, 5, 12);
  for (std::uint64_t s = 0; s < 3; ++s)
    EXPECT_LE(gradient_relative_error(p, random_soft(9, 5, 200 + s)), 1e-7);
}

TEST(Problems, QuantProxyGradientMatchesFiniteDifferences) {
  const auto p = QuantProxy::generate(3, 13);
  for (std::uint64_t s = 0; s < 3; ++s)
    EXPECT_LE(gradient_relative_error(p, random_soft(21, 7, 300 + s)), 1e-7);
}

TEST(Problems, FiniteDifferenceCheckDetectsAWrongGradient) {
  // The checker itself must be able to fail: a gradient off by 1e-5 relative is caught.
  struct Wrong {
    CoupledMckp inner = CoupledMckp::generate(6, 4, 14);
    const Matrix& costs() const { return inner.costs(); }
    double budget() const { return inner.budget(); }
    double loss(const Matrix& y, Matrix& g) const {
      const double v = inner.loss(y, g);
      g *= 1.0 + 1e-5;
      return v;
    }
  };
  EXPECT_GT(gradient_relative_error(Wrong{}, random_soft(6, 4, 15)), 1e-6);
}

// ---- losses against hand loops --------------------------------------------------------------

TEST(Problems, CoupledLossMatchesHandLoop) {
  const auto p = CoupledMckp::generate(7, 4, 21);
  const Matrix y = random_soft(7, 4, 22);
  Matrix g(7, 4);
  double linear = 0, quadratic = 0;
  std::vector<double> e(7, 0.0);
  for (int i = 0; i < 7; ++i)
    for (int k = 0; k < 4; ++k) e[i] += y(i, k) * p.eps()(i, k);
  for (int i = 0; i < 7; ++i) {
    linear += e[i];
    for (int j = 0; j < 7; ++j) quadratic += e[i] * p.coupling()(i, j) * e[j];
  }
  EXPECT_NEAR(p.loss(y, g), linear + 0.5 * quadratic, 1e-12 * (1 + std::abs(linear)));
}

TEST(Problems, QuantProxyLossMatchesHandLoop) {
  const auto p = QuantProxy::generate(2, 23);
  const Matrix y = random_soft(14, 7, 24);
  Matrix g(14, 7);
  double total = 0, logs = 0;
  for (int l = 0; l < 2; ++l) {
    double layer = 0;
    for (int t = 0; t < 7; ++t)
      for (int k = 0; k < 7; ++k) layer += y(7 * l + t, k) * p.errors()(7 * l + t, k);
    logs += std::log(1 + layer);
    total += layer;
  }
  const double expected = logs + 0.5 * p.lambda() * total * total;
  EXPECT_NEAR(p.loss(y, g), expected, 1e-12 * std::abs(expected));
  EXPECT_DOUBLE_EQ(p.lambda(), 0.5);
}

TEST(Problems, SeparableLossIsMinusTheValueOfTheAssignment) {
  const auto p = SeparableMckp::generate(6, 4, 25);
  const Assignment h = {0, 3, 1, 2, 2, 1};
  Matrix g(6, 4);
  double value = 0;
  for (int i = 0; i < 6; ++i) value += p.values()(i, h[i]);
  EXPECT_DOUBLE_EQ(p.loss(one_hot(h, 4), g), -value);
}

// ---- determinism and the documented formulas --------------------------------------------------

TEST(Problems, SameSeedSameInstanceDifferentSeedDifferent) {
  const auto a = SeparableMckp::generate(30, 6, 5), b = SeparableMckp::generate(30, 6, 5);
  const auto c = SeparableMckp::generate(30, 6, 6);
  EXPECT_EQ(a.values(), b.values());
  EXPECT_EQ(a.costs(), b.costs());
  EXPECT_EQ(a.budget(), b.budget());
  EXPECT_NE(a.values(), c.values());

  const auto d = CoupledMckp::generate(30, 6, 5), e = CoupledMckp::generate(30, 6, 5);
  const auto f = CoupledMckp::generate(30, 6, 6);
  EXPECT_EQ(d.eps(), e.eps());
  EXPECT_EQ(d.coupling(), e.coupling());
  EXPECT_EQ(d.costs(), e.costs());
  EXPECT_NE(d.eps(), f.eps());
  EXPECT_NE(d.coupling(), f.coupling());

  const auto q1 = QuantProxy::generate(4, 5), q2 = QuantProxy::generate(4, 5);
  const auto q3 = QuantProxy::generate(4, 6);
  EXPECT_EQ(q1.errors(), q2.errors());
  EXPECT_EQ(q1.costs(), q2.costs());
  EXPECT_NE(q1.errors(), q3.errors());
}

TEST(Problems, SeparableFollowsItsFormula) {
  const int n = 40, k = 7;
  const auto p = SeparableMckp::generate(n, k, 31);
  ASSERT_EQ(p.groups(), n);
  ASSERT_EQ(p.options(), k);
  double weight_sum = 0;
  for (int i = 0; i < n; ++i) {
    const double w = p.group_weights()[i];
    EXPECT_EQ(w, std::round(w));
    EXPECT_GE(w, 1);
    EXPECT_LE(w, 16);
    weight_sum += w;
    for (int j = 0; j < k; ++j) EXPECT_EQ(p.costs()(i, j), w * (2 + j));
    // v_ik = a_i (1 - exp(-0.6 (b_k - 2))) + 0.05 z: the 2-bit value is pure noise, and the
    // 8-bit value is a_i (1 - e^-3.6) with a_i in [0.5, 2], give or take 0.05 * 5 sigma.
    EXPECT_LE(std::abs(p.values()(i, 0)), 0.25);
    EXPECT_GE(p.values()(i, k - 1), 0.5 * (1 - std::exp(-3.6)) - 0.25);
    EXPECT_LE(p.values()(i, k - 1), 2.0 * (1 - std::exp(-3.6)) + 0.25);
  }
  EXPECT_EQ(p.budget(), std::floor(2.5 * weight_sum));
  EXPECT_EQ(p.option_bits(), Vector::LinSpaced(k, 2, 8));
}

TEST(Problems, CoupledFollowsItsFormula) {
  const int n = 25, k = 5;
  const auto p = CoupledMckp::generate(n, k, 32);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < k; ++j) EXPECT_GT(p.eps()(i, j), 0.0);
    for (int j = 1; j < k; ++j) EXPECT_LT(p.eps()(i, j), p.eps()(i, j - 1));
    // eps_i0 = s_i exp(0.1 z) (largest after the sort), s_i in [0.5, 2].
    EXPECT_GT(p.eps()(i, 0), 0.5 * std::exp(-0.6));
    EXPECT_LT(p.eps()(i, 0), 2.0 * std::exp(0.6));
  }
  EXPECT_EQ(p.budget(), std::floor(2.5 * p.group_weights().sum()));
  const Eigen::MatrixXd q = p.coupling();
  EXPECT_EQ(q, q.transpose());
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(q);
  EXPECT_GE(eig.eigenvalues().minCoeff(), -1e-12);
  EXPECT_GT(eig.eigenvalues().maxCoeff(), 0.5);
}

TEST(Problems, QuantProxySharesAndCosts) {
  for (int layers : {1, 4, 32}) {
    const Vector w = QuantProxy::llama_group_shares(layers);
    ASSERT_EQ(w.size(), 7 * layers);
    EXPECT_NEAR(w.sum(), 1.0, 1e-12);
    // q = o, k = v, gate = up = down; gate / q = 14336 / 4096 = 3.5, q / k = 4.
    EXPECT_DOUBLE_EQ(w[4] / w[0], 3.5);
    EXPECT_DOUBLE_EQ(w[0] / w[1], 4.0);
    EXPECT_DOUBLE_EQ(w[6], w[5]);
    // One layer holds 2 * 4096^2 + 2 * 4096 * 1024 + 3 * 4096 * 14336 = 218103808 parameters.
    EXPECT_NEAR(w[0], 4096.0 * 4096.0 / (218103808.0 * layers), 1e-15);
  }
  const auto p = QuantProxy::generate(32, 7);
  EXPECT_EQ(p.groups(), 224);
  EXPECT_EQ(p.options(), 7);
  EXPECT_EQ(p.layers(), 32);
  EXPECT_EQ(p.budget(), 2.5);
  EXPECT_EQ(p.costs(), factored_costs(p.group_shares(), Vector::LinSpaced(7, 2, 8)));
  for (Index i = 0; i < p.groups(); ++i)
    for (Index k = 1; k < 7; ++k) EXPECT_EQ(p.errors()(i, k), p.errors()(i, k - 1) / 4);
  // Every bit width from 2 to 8 averages to a feasible budget: 2 <= 2.5 <= 8.
  EXPECT_NEAR(p.costs().col(0).sum(), 2.0, 1e-12);
  EXPECT_NEAR(p.costs().col(6).sum(), 8.0, 1e-12);
}

TEST(Problems, BadInputIsRefused) {
  EXPECT_THROW(SeparableMckp::generate(0, 3, 1), InvalidArgumentError);
  EXPECT_THROW(CoupledMckp::generate(3, 0, 1), InvalidArgumentError);
  EXPECT_THROW(QuantProxy::generate(0, 1), InvalidArgumentError);
  EXPECT_THROW(QuantProxy::llama_group_shares(-1), InvalidArgumentError);
  const auto p = SeparableMckp::generate(4, 3, 1);
  Matrix y = Matrix::Zero(4, 2), g = Matrix::Zero(4, 3);
  EXPECT_THROW(p.loss(y, g), ShapeError);
  EXPECT_THROW(SeparableMckp(Matrix::Ones(2, 2), Vector::Ones(3), Vector::Ones(2), 1.0),
               ShapeError);
  EXPECT_THROW(SeparableMckp(Matrix::Ones(2, 2), -Vector::Ones(2), Vector::Ones(2), 1.0),
               InvalidArgumentError);
}

TEST(Problems, OptimalityRatio) {
  EXPECT_DOUBLE_EQ(optimality_ratio(-9.99, -10.0), 0.999);  // value 9.99 of optimal 10
  EXPECT_DOUBLE_EQ(optimality_ratio(2.0, 1.0), 0.5);        // error twice the optimal
  EXPECT_DOUBLE_EQ(optimality_ratio(1.0, 1.0), 1.0);
  EXPECT_THROW(optimality_ratio(1.0, 0.0), InvalidArgumentError);
  EXPECT_THROW(optimality_ratio(std::nan(""), -1.0), InvalidArgumentError);
  EXPECT_THROW(optimality_ratio(-1.0, 1.0), InvalidArgumentError);
}

// ---- enumeration ----------------------------------------------------------------------------

struct HandBest {
  double loss = std::numeric_limits<double>::infinity();
  Assignment h;
  std::int64_t feasible = 0;
};

/// Independent recursion: every assignment, one_hot + assignment_cost + loss from scratch.
template <class P>
void hand_search(const P& p, Assignment& h, std::size_t i, HandBest& best) {
  const Index k = p.costs().cols();
  if (i == h.size()) {
    if (assignment_cost(p.costs(), h) > p.budget() + 1e-9 * std::max(1.0, p.budget())) return;
    ++best.feasible;
    Matrix g(static_cast<Index>(h.size()), k);
    const double v = p.loss(one_hot(h, k), g);
    if (v < best.loss) best = {v, h, best.feasible};
    return;
  }
  for (int o = 0; o < k; ++o) {
    h[i] = o;
    hand_search(p, h, i + 1, best);
  }
}

template <class P>
void expect_enumeration_matches_hand_loop(const P& p) {
  const EnumerationResult r = enumerate_optimum(p);
  HandBest hand;
  Assignment h(static_cast<std::size_t>(p.costs().rows()), 0);
  hand_search(p, h, 0, hand);
  EXPECT_EQ(r.feasible_count, hand.feasible);
  EXPECT_EQ(r.loss, hand.loss);
  EXPECT_EQ(r.assignment, hand.h);
  EXPECT_EQ(r.cost, assignment_cost(p.costs(), r.assignment));
  EXPECT_LE(r.cost, p.budget());
  EXPECT_EQ(r.total_count, static_cast<std::int64_t>(std::pow(p.costs().cols(), p.costs().rows())));
}

TEST(Enumerate, MatchesAnIndependentLoopOnTinyInstances) {
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    expect_enumeration_matches_hand_loop(CoupledMckp::generate(6, 3, seed));
    expect_enumeration_matches_hand_loop(SeparableMckp::generate(5, 4, seed));
  }
  expect_enumeration_matches_hand_loop(QuantProxy::generate(1, 4));  // 7^7 = 823543
  // A budget nothing exceeds: every one of the 4^8 assignments is feasible and evaluated.
  const auto c = CoupledMckp::generate(8, 4, 9);
  const CoupledMckp loose(c.eps(), c.coupling(), c.group_weights(), c.option_bits(), 1e6);
  expect_enumeration_matches_hand_loop(loose);
  EXPECT_EQ(enumerate_optimum(loose).feasible_count, 65536);
}

TEST(Enumerate, SeparableOptimumEqualsTheKnapsackDp) {
  // N = 10, K = 4: 4^10 = 1048576 assignments, the size the header promises runs fast.
  for (std::uint64_t seed = 1; seed <= 2; ++seed) {
    const auto p = SeparableMckp::generate(10, 4, seed);
    const auto start = std::chrono::steady_clock::now();
    const EnumerationResult r = enumerate_optimum(p);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MultipleChoiceKnapsack dp(p.costs(), p.budget());
    const KnapsackResult best = dp.solve(p.values());
    EXPECT_NEAR(r.loss, -best.value, 1e-12);
    EXPECT_EQ(r.total_count, 1048576);

    // Count the feasible assignments independently: a DP over integer cost totals.
    const auto cap = static_cast<int>(p.budget());
    std::vector<std::int64_t> ways(cap + 1, 0), next(cap + 1);
    ways[0] = 1;
    for (Index i = 0; i < p.groups(); ++i) {
      std::fill(next.begin(), next.end(), 0);
      for (int u = 0; u <= cap; ++u)
        for (Index k = 0; k < p.options(); ++k) {
          const int c = static_cast<int>(p.costs()(i, k));
          if (u + c <= cap) next[u + c] += ways[u];
        }
      ways.swap(next);
    }
    std::int64_t feasible = 0;
    for (std::int64_t w : ways) feasible += w;
    EXPECT_EQ(r.feasible_count, feasible);
    std::printf("  [enumerate N=10 K=4 seed %llu: %.3f s, %lld feasible]\n",
                static_cast<unsigned long long>(seed), seconds, static_cast<long long>(feasible));
  }
}

TEST(Enumerate, RefusesTooLargeInstancesNamingTheBound) {
  const auto p = SeparableMckp::generate(20, 4, 1);  // 4^20 ~ 1.1e12
  try {
    enumerate_optimum(p);
    FAIL() << "expected InvalidArgumentError";
  } catch (const InvalidArgumentError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("kMaxEnumeratedAssignments"), std::string::npos) << what;
    EXPECT_NE(what.find("4^20"), std::string::npos) << what;
  }
  EXPECT_THROW(enumerate_optimum(QuantProxy::generate(2, 1)), InvalidArgumentError);  // 7^14
}

TEST(Enumerate, RefusesAnInfeasibleBudget) {
  const SeparableMckp p(Matrix::Ones(3, 2), Vector::Ones(3), Vector::LinSpaced(2, 2, 3), 5.0);
  EXPECT_THROW(enumerate_optimum(p), InfeasibleError);  // cheapest total is 6
}

}  // namespace
}  // namespace tether::problems
