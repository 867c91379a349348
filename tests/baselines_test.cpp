// The baselines of spec rco.md section 5: PenaltySolver, AugmentedLagrangianSolver and
// EvolutionarySolver, on small problems whose answers are known (brute force, or derived by
// hand from the KKT conditions of the relaxation).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/gradient_check.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/assignment_common.hpp>
#include <tether/solvers/augmented_lagrangian.hpp>
#include <tether/solvers/evolutionary.hpp>
#include <tether/solvers/penalty.hpp>
#include <vector>

namespace tether {
namespace {

// ---- problems ---------------------------------------------------------------------------------

/// L(Y) = sum_ik v_ik Y_ik: separable and linear, so the hard optimum is a brute-force search.
struct SeparableLinear {
  Matrix costs_, values_;
  double budget_ = 0.0;
  BudgetSense sense_ = BudgetSense::kAtMost;
  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  BudgetSense budget_sense() const { return sense_; }
  double loss(const Matrix& y, Matrix& g) const {
    g = values_;
    return values_.cwiseProduct(y).sum();
  }
};

/// Concave "error reduction" values over integer costs c_ik = w_i b_k, as in spec section 6
/// (negated: lower is better), with the budget a fraction of the way up the feasible range.
SeparableLinear separable_instance(Index n, Index k, std::uint64_t seed, double fraction) {
  Rng rng(seed);
  SeparableLinear p;
  p.costs_.resize(n, k);
  p.values_.resize(n, k);
  for (Index i = 0; i < n; ++i) {
    const double w = 1.0 + static_cast<double>(rng.index(6));
    const double a = rng.uniform(0.5, 2.0);
    for (Index o = 0; o < k; ++o) {
      const double bits = 2.0 + static_cast<double>(o);
      p.costs_(i, o) = w * bits;
      p.values_(i, o) = -(a * (1.0 - std::exp(-0.6 * (bits - 1.0))) + 0.05 * rng.normal());
    }
  }
  const double lo = p.costs_.rowwise().minCoeff().sum();
  const double hi = p.costs_.rowwise().maxCoeff().sum();
  p.budget_ = std::floor(lo + fraction * (hi - lo));
  return p;
}

struct Brute {
  double loss = std::numeric_limits<double>::infinity();
  Assignment h;
};

/// Minimum of `loss` over every assignment with cost <= budget.
Brute brute_force(const Matrix& costs, double budget,
                  const std::function<double(const Assignment&)>& loss) {
  const Index n = costs.rows(), k = costs.cols();
  Brute best;
  Assignment h(static_cast<std::size_t>(n), 0);
  while (true) {
    if (assignment_cost(costs, h) <= budget) {
      const double l = loss(h);
      if (l < best.loss) best = {l, h};
    }
    Index i = 0;
    while (i < n && ++h[static_cast<std::size_t>(i)] == k) h[static_cast<std::size_t>(i++)] = 0;
    if (i == n) break;
  }
  return best;
}

/// Coupled: e_i = sum_k Y_ik eps_ik, L = sum_i e_i + 0.5 e^T Q e with Q = A A^T / N (PSD).
/// Records the largest cost of any one-hot matrix it is asked about.
struct Coupled {
  Matrix costs_, eps_, q_;
  double budget_ = 0.0;
  mutable double max_hard_cost_seen = -std::numeric_limits<double>::infinity();
  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  double loss(const Matrix& y, Matrix& g) const {
    bool hard = true;
    for (Index j = 0; j < y.size(); ++j) hard = hard && (y.data()[j] == 0.0 || y.data()[j] == 1.0);
    if (hard) max_hard_cost_seen = std::max(max_hard_cost_seen, costs_.cwiseProduct(y).sum());
    const Vector e = y.cwiseProduct(eps_).rowwise().sum();
    const Vector de = Vector::Ones(e.size()) + q_ * e;  // dL/de
    g = eps_.array().colwise() * de.array();
    return e.sum() + 0.5 * e.dot(q_ * e);
  }
};

Coupled coupled_instance(Index n, Index k, std::uint64_t seed) {
  Rng rng(seed);
  Coupled p;
  p.costs_.resize(n, k);
  p.eps_.resize(n, k);
  Matrix a(n, n);
  for (Index i = 0; i < n; ++i) {
    const double w = 1.0 + static_cast<double>(rng.index(4));
    for (Index o = 0; o < k; ++o) {
      p.costs_(i, o) = w * static_cast<double>(o + 1);
      p.eps_(i, o) = std::exp(-0.7 * static_cast<double>(o)) * rng.uniform(0.5, 1.5);
    }
    for (Index j = 0; j < n; ++j) a(i, j) = rng.normal();
  }
  p.q_ = a * a.transpose() / static_cast<double>(n);
  const double lo = p.costs_.rowwise().minCoeff().sum();
  const double hi = p.costs_.rowwise().maxCoeff().sum();
  p.budget_ = std::floor(lo + 0.45 * (hi - lo));
  return p;
}

/// Two groups, two options: costs (0, w_i), q_i = Y_i1, L = 0.5 sum_i a_i (q_i - 1)^2. The
/// unconstrained minimiser q = (1, 1) costs 3 > B = 1.5. KKT of the relaxation (row i is
/// stationary when dL/dY_i + lambda c_i is constant across its options):
///   a_i (q_i - 1) + lambda w_i = 0,  sum_i w_i q_i = B
///   => lambda* = (sum_i w_i - B) / sum_i (w_i^2 / a_i) = 1.5 / (7/3) = 9/14,
///      q* = (1 - 9/14, 1 - (9/14)(2/3)) = (5/14, 4/7).
/// The penalty minimiser of L + mu h^2 has a_i (q_i - 1) + 2 mu h w_i = 0, so
///   h = C - B = (sum w - B) / (1 + 2 mu sum w^2/a) = 1.5 / (1 + 14 mu / 3).
struct TwoGroupQuadratic {
  Matrix costs_{{0.0, 1.0}, {0.0, 2.0}};
  Vector a_{{1.0, 3.0}};
  double budget_ = 1.5;
  BudgetSense sense_ = BudgetSense::kEqual;
  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  BudgetSense budget_sense() const { return sense_; }
  double loss(const Matrix& y, Matrix& g) const {
    double l = 0.0;
    for (Index i = 0; i < 2; ++i) {
      g(i, 0) = 0.0;
      g(i, 1) = a_[i] * (y(i, 1) - 1.0);
      l += 0.5 * a_[i] * (y(i, 1) - 1.0) * (y(i, 1) - 1.0);
    }
    return l;
  }
};
constexpr double kLambdaStar = 9.0 / 14.0;

/// Wraps a problem; returns NaN from the `nan_from`-th call on (0-based).
template <class P>
struct NanAfter {
  const P* inner;
  int nan_from;
  mutable int calls = 0;
  const Matrix& costs() const { return inner->costs(); }
  double budget() const { return inner->budget(); }
  double loss(const Matrix& y, Matrix& g) const {
    const double l = inner->loss(y, g);
    return calls++ >= nan_from ? std::numeric_limits<double>::quiet_NaN() : l;
  }
};

void expect_invalid(const std::function<void()>& make, const std::string& field) {
  try {
    make();
    ADD_FAILURE() << "no InvalidArgumentError for " << field;
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos)
        << "message does not name " << field << ": " << e.what();
  }
}

double hard_cost(const Matrix& costs, const Assignment& h) { return assignment_cost(costs, h); }

// ---- the relaxed objective's gradient ---------------------------------------------------------

TEST(Penalty, GradientMatchesCentralDifferences) {
  Coupled p = coupled_instance(5, 4, 3);
  Rng rng(5);
  for (BudgetSense sense : {BudgetSense::kEqual, BudgetSense::kAtMost}) {
    for (int trial = 0; trial < 4; ++trial) {
      Matrix alpha(5, 4);
      for (Index j = 0; j < alpha.size(); ++j) alpha.data()[j] = 1.5 * rng.normal();
      AssignmentObjective obj = make_objective(p);
      obj.sense = sense;
      // Place B below C(alpha) so the kAtMost penalty is active (away from its kink at h = 0).
      Matrix grad_y;
      const Matrix probs = (alpha.array().colwise() - alpha.rowwise().maxCoeff().array()).exp();
      const Matrix prob = probs.array().colwise() / probs.rowwise().sum().array();
      obj.budget = p.costs_.cwiseProduct(prob).sum() - 0.7 - trial;
      const PenaltySolver solver({.penalty_weight = 3.0 + trial});
      Matrix grad;
      ASSERT_TRUE(solver.relaxed_objective(obj, alpha, &grad).has_value());
      auto f = [&](const Vector& x) {
        const Matrix a = Eigen::Map<const Matrix>(x.data(), 5, 4);
        return *solver.relaxed_objective(obj, a, nullptr);
      };
      const Vector x = Eigen::Map<const Vector>(alpha.data(), alpha.size());
      const Vector fd = finite_difference_gradient(f, x, 1e-5);
      const Vector g = Eigen::Map<const Vector>(grad.data(), grad.size());
      EXPECT_LE((g - fd).norm(), 1e-6 * g.norm()) << "trial " << trial;
      // The penalty term matters here: without it the gradient differs.
      const PenaltySolver unpenalised({.penalty_weight = 0.0});
      Matrix grad0;
      ASSERT_TRUE(unpenalised.relaxed_objective(obj, alpha, &grad0).has_value());
      EXPECT_GT((grad0 - grad).norm(), 1e-3 * g.norm());
    }
  }
}

TEST(AugmentedLagrangian, RelaxedObjectiveGradientWithMultiplierMatchesCentralDifferences) {
  Coupled p = coupled_instance(4, 3, 8);
  for (BudgetSense sense : {BudgetSense::kEqual, BudgetSense::kAtMost}) {
    AssignmentObjective obj = make_objective(p);
    obj.sense = sense;
    Matrix alpha{{0.3, -1.0, 0.5}, {1.2, 0.1, -0.4}, {-0.2, 0.0, 0.9}, {0.7, -0.6, 0.2}};
    // C(alpha) - B = 1.3 - ...: lambda + rho h > 0, the active branch of the PHR form.
    obj.budget = relaxed_objective(obj, alpha, 0.0, 0.0, nullptr)->expected_cost - 0.4;
    Matrix grad;
    ASSERT_TRUE(relaxed_objective(obj, alpha, 0.8, 2.5, &grad).has_value());
    auto f = [&](const Vector& x) {
      return relaxed_objective(obj, Eigen::Map<const Matrix>(x.data(), 4, 3), 0.8, 2.5, nullptr)
          ->value;
    };
    const Vector fd =
        finite_difference_gradient(f, Eigen::Map<const Vector>(alpha.data(), alpha.size()), 1e-5);
    const Vector g = Eigen::Map<const Vector>(grad.data(), grad.size());
    EXPECT_LE((g - fd).norm(), 1e-6 * g.norm());
  }
}

// ---- penalty ----------------------------------------------------------------------------------

TEST(Penalty, ReachesTheAnalyticPenaltyMinimiser) {
  // The penalty method is biased by design: at its minimiser C - B = 1.5 / (1 + 14 mu / 3).
  const TwoGroupQuadratic p;
  for (double mu : {1.0, 10.0}) {
    const AssignmentResult r = PenaltySolver({.steps = 1000, .penalty_weight = mu}).minimize(p);
    EXPECT_EQ(r.status, StopReason::kIterationLimit);
    const double h = 1.5 / (1.0 + 14.0 * mu / 3.0);
    EXPECT_NEAR(r.expected_cost - p.budget(), h, 1e-10) << "mu " << mu;
    EXPECT_NEAR(r.history.back().constraint_residual, h, 1e-10);
    // The first iterate (uniform p: C = 1.5 = B) is on the budget; the path overshoots h.
    EXPECT_DOUBLE_EQ(r.history.rows[0].constraint_residual, 0.0);
    double drift = 0.0;
    for (const IterationRecord& row : r.history.rows)
      drift = std::max(drift, std::abs(row.constraint_residual));
    EXPECT_EQ(r.max_expected_cost_drift, std::max(drift, std::abs(r.expected_cost - 1.5)));
    EXPECT_GT(r.max_expected_cost_drift, h);
    ASSERT_EQ(r.history.size(), 1000u);
    EXPECT_EQ(r.loss_evaluations, 1000 + 1);
    // Argmax of p = (5/14 + ..., 4/7 + ...) per row: option 0 in row 0, option 1 in row 1.
    EXPECT_EQ(r.assignment, (Assignment{0, 1}));
  }
}

TEST(Penalty, KnapsackRoundingIsAlwaysWithinBudgetWhereArgmaxIsNot) {
  int argmax_violations = 0;
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    const SeparableLinear p = separable_instance(12, 5, seed, 0.3);
    for (double mu : {0.0, 0.01, 1.0, 100.0}) {
      const AssignmentResult knap =
          PenaltySolver({.steps = 150, .penalty_weight = mu, .rounding = SoftRounding::kKnapsack})
              .minimize(p);
      EXPECT_LE(knap.cost, p.budget()) << "seed " << seed << " mu " << mu;
      EXPECT_LE(knap.budget_violation, 0.0);
      EXPECT_DOUBLE_EQ(knap.cost, hard_cost(p.costs_, knap.assignment));
      EXPECT_TRUE(std::isfinite(knap.final_dp_gap));
      EXPECT_GE(knap.final_dp_gap, -1e-9);
      const AssignmentResult arg = PenaltySolver({.steps = 150, .penalty_weight = mu}).minimize(p);
      if (arg.budget_violation > 0.0) ++argmax_violations;
    }
  }
  // The test has teeth: the argmax rounding of the same runs breaks the budget (mu = 0 always:
  // unconstrained, every row takes its best, dearest option).
  EXPECT_GE(argmax_violations, 10);
}

TEST(Penalty, RoundEveryKeepsTheBestWithinBudgetRounding) {
  const SeparableLinear p = separable_instance(10, 4, 21, 0.4);
  const AssignmentResult r = PenaltySolver({.steps = 200,
                                            .penalty_weight = 0.05,
                                            .rounding = SoftRounding::kKnapsack,
                                            .round_every = 10})
                                 .minimize(p);
  EXPECT_LE(r.cost, p.budget());
  EXPECT_LE(r.loss, r.final_dp_loss);
  EXPECT_DOUBLE_EQ(r.loss, r.best_seen_loss);
  EXPECT_EQ(r.assignment, r.best_seen);
  // best_loss in the history is non-increasing and ends at the answer's loss or above it.
  for (std::size_t t = 1; t < r.history.size(); ++t)
    EXPECT_LE(r.history.rows[t].best_loss, r.history.rows[t - 1].best_loss);
  EXPECT_GE(r.history.back().best_loss, r.loss);
  // 200 steps, 20 roundings evaluated (where within budget: always, for the DP), one final.
  EXPECT_EQ(r.loss_evaluations, 200 + 20 + 1);
}

TEST(Penalty, SweepReturnsTheBestWithinBudgetAnswerAndNamesItsWeight) {
  const SeparableLinear p = separable_instance(10, 4, 4, 0.35);
  const std::vector<double> weights{0.0, 0.1, 1.0, 10.0};
  const PenaltyOptions base{.steps = 200};
  const AssignmentResult best = penalty_sweep(p, base, weights);
  double expected_loss = std::numeric_limits<double>::infinity(), expected_mu = -1;
  long evaluations = 0;
  for (double mu : weights) {
    PenaltyOptions o = base;
    o.penalty_weight = mu;
    const AssignmentResult r = PenaltySolver(o).minimize(p);
    evaluations += r.loss_evaluations;
    if (r.budget_violation <= 0.0 && r.loss < expected_loss) {
      expected_loss = r.loss;
      expected_mu = mu;
    }
  }
  ASSERT_GE(expected_mu, 0.0) << "no weight gave a within-budget answer: the test is moot";
  EXPECT_DOUBLE_EQ(best.loss, expected_loss);
  EXPECT_LE(best.cost, p.budget());
  EXPECT_EQ(best.loss_evaluations, evaluations);
  std::ostringstream mu;
  mu << "mu = " << expected_mu << " won";
  EXPECT_NE(best.message.find(mu.str()), std::string::npos) << best.message;

  // None within budget: the least violating answer.
  const AssignmentResult none = penalty_sweep(p, base, {0.0});
  EXPECT_GT(none.budget_violation, 0.0);
  EXPECT_NE(none.message.find("least violating"), std::string::npos) << none.message;
  expect_invalid([&] { penalty_sweep(p, base, {}); }, "weights");
  expect_invalid([&] { penalty_sweep(p, base, {1.0, -2.0}); }, "weights[1]");
}

// ---- augmented Lagrangian ---------------------------------------------------------------------

TEST(AugmentedLagrangian, DrivesTheBudgetResidualToZeroAndFindsTheMultiplier) {
  for (BudgetSense sense : {BudgetSense::kEqual, BudgetSense::kAtMost}) {
    TwoGroupQuadratic p;
    p.sense_ = sense;
    // Defaults: 10 outer iterations of 30 Adam steps, rho = 10.
    const AugmentedLagrangianResult r = AugmentedLagrangianSolver().minimize(p);
    EXPECT_EQ(r.status, StopReason::kIterationLimit);
    EXPECT_LT(std::abs(r.expected_cost - p.budget()), 1e-4);
    EXPECT_NEAR(r.multiplier, kLambdaStar, 1e-4);
    ASSERT_EQ(r.multipliers.size(), 10u);
    EXPECT_DOUBLE_EQ(r.multipliers.back(), r.multiplier);
    EXPECT_DOUBLE_EQ(r.rho, 10.0);
    // Longer: the method of multipliers converges linearly, to round-off.
    const AugmentedLagrangianResult longer =
        AugmentedLagrangianSolver({.outer_iterations = 30}).minimize(p);
    EXPECT_LT(std::abs(longer.expected_cost - p.budget()), 1e-9);
    EXPECT_NEAR(longer.multiplier, kLambdaStar, 1e-9);
    const Matrix q = assignment::softmax_rows(longer.logits);
    EXPECT_NEAR(q(0, 1), 5.0 / 14.0, 1e-9);
    EXPECT_NEAR(q(1, 1), 4.0 / 7.0, 1e-9);
    // The penalty method with the same weight (mu = rho / 2) stays off the budget by
    // 1.5 / (1 + 14 * 5 / 3) = 0.0616.
    const AssignmentResult pen = PenaltySolver({.steps = 1000, .penalty_weight = 5.0}).minimize(p);
    EXPECT_GT(std::abs(pen.expected_cost - p.budget()), 0.06);
  }
}

TEST(AugmentedLagrangian, GrowingRhoIsCappedAndRecorded) {
  const TwoGroupQuadratic p;
  const AugmentedLagrangianResult r =
      AugmentedLagrangianSolver(
          {.outer_iterations = 6, .inner_steps = 20, .rho = 1.0, .rho_growth = 2.0, .rho_max = 8.0})
          .minimize(p);
  EXPECT_DOUBLE_EQ(r.rho, 8.0);
  ASSERT_EQ(r.multipliers.size(), 6u);
  EXPECT_EQ(r.history.size(), 120u);
}

// ---- evolutionary -----------------------------------------------------------------------------

TEST(Evolutionary, FindsTheBruteForceOptimumOnEightGroupsFourOptions) {
  const SeparableLinear p = separable_instance(8, 4, 2024, 0.5);
  const Brute b = brute_force(p.costs_, p.budget_, [&](const Assignment& h) {
    double l = 0.0;
    for (std::size_t i = 0; i < h.size(); ++i) l += p.values_(static_cast<Index>(i), h[i]);
    return l;
  });
  const AssignmentResult r = EvolutionarySolver().minimize(p);
  EXPECT_NEAR(r.loss, b.loss, 1e-12);
  EXPECT_LE(r.cost, p.budget());
  EXPECT_TRUE(std::isnan(r.max_expected_cost_drift));
  EXPECT_LE(r.loss, r.final_dp_loss);
  // The start (the dearest affordable assignment) is not already optimal.
  EXPECT_GT(r.final_dp_loss, b.loss + 1e-6);
  EXPECT_EQ(r.loss_evaluations, 1 + 200L * 16);
  ASSERT_EQ(r.history.size(), 200u);
  for (std::size_t g = 1; g < r.history.size(); ++g)
    EXPECT_LE(r.history.rows[g].best_loss, r.history.rows[g - 1].best_loss);
  EXPECT_NEAR(r.history.back().constraint_residual, r.cost - p.budget(), 0.0);
}

TEST(Evolutionary, FindsTheBruteForceOptimumOfACoupledLoss) {
  const Coupled p = coupled_instance(7, 4, 12);
  const Brute b = brute_force(p.costs_, p.budget_, [&](const Assignment& h) {
    Matrix g(7, 4);
    return p.loss(one_hot(h, 4), g);
  });
  const AssignmentResult r = EvolutionarySolver({.generations = 300}).minimize(p);
  EXPECT_NEAR(r.loss, b.loss, 1e-12);
}

TEST(Evolutionary, NeverEvaluatesOrReturnsAnOverBudgetAssignment) {
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const Coupled p = coupled_instance(12, 4, 100 + seed);
    const AssignmentResult r = EvolutionarySolver({.generations = 40, .seed = seed}).minimize(p);
    EXPECT_LE(r.cost, p.budget()) << "seed " << seed;
    EXPECT_LE(r.budget_violation, 0.0);
    EXPECT_LE(p.max_hard_cost_seen, p.budget()) << "seed " << seed;
    // It used the budget: the search ran near its edge, not in the cheap interior.
    EXPECT_GT(p.max_hard_cost_seen, p.budget() - p.costs_.maxCoeff());
  }
}

TEST(Evolutionary, HonoursTheEvaluationCapAndAGivenStart) {
  const SeparableLinear p = separable_instance(8, 4, 9, 0.5);
  const AssignmentResult capped = EvolutionarySolver({.max_loss_evaluations = 50}).minimize(p);
  EXPECT_EQ(capped.loss_evaluations, 50);
  EXPECT_EQ(capped.status, StopReason::kIterationLimit);
  EXPECT_NE(capped.message.find("cap"), std::string::npos) << capped.message;

  const Assignment cheapest(8, 0);
  const AssignmentResult given =
      EvolutionarySolver({.generations = 1, .initial_assignment = cheapest}).minimize(p);
  EXPECT_EQ(given.final_dp, cheapest);
  expect_invalid([&] { EvolutionarySolver({.initial_assignment = Assignment(8, 3)}).minimize(p); },
                 "initial_assignment");
  expect_invalid([&] { EvolutionarySolver({.initial_assignment = Assignment(7, 0)}).minimize(p); },
                 "initial_assignment");
}

TEST(Evolutionary, OneGroupWithPairsOnlyHasNoLevelSwitchAndSaysSo) {
  SeparableLinear p;
  p.costs_ = Matrix{{1.0, 2.0, 3.0}};
  p.values_ = Matrix{{0.0, -1.0, -2.0}};
  p.budget_ = 2.0;
  const AssignmentResult r = EvolutionarySolver({.single_move_probability = 0.0}).minimize(p);
  EXPECT_EQ(r.status, StopReason::kConverged);
  EXPECT_EQ(r.assignment, (Assignment{1}));  // the dearest affordable: also the optimum
  EXPECT_EQ(r.iterations, 1);
  EXPECT_EQ(r.loss_evaluations, 1);
}

TEST(Evolutionary, PairsAloneCannotUseSlackWhereGroupsCostDifferently) {
  // Why single moves are on by default: from the dearest affordable start of this instance,
  // up/down pairs reach one other assignment and stop, far from the optimum.
  const Coupled p = coupled_instance(6, 3, 1);
  const Brute b = brute_force(p.costs_, p.budget_, [&](const Assignment& h) {
    Matrix g(6, 3);
    return p.loss(one_hot(h, 3), g);
  });
  const AssignmentResult pairs = EvolutionarySolver({.single_move_probability = 0.0}).minimize(p);
  EXPECT_EQ(pairs.status, StopReason::kConverged);
  EXPECT_GT(pairs.loss, b.loss + 0.1);
  const AssignmentResult mixed = EvolutionarySolver().minimize(p);
  EXPECT_EQ(mixed.status, StopReason::kIterationLimit);
  EXPECT_NEAR(mixed.loss, b.loss, 1e-12);
}

TEST(Evolutionary, PairsKeepTheCostWhereLevelsCostTheSame) {
  // EvoPress's own setting: every group's levels cost 0, 1, 2, 3. Pairs alone keep the cost at
  // the start's (= B), and on a loss that rewards spending they find the brute-force optimum.
  SeparableLinear p = separable_instance(8, 4, 31, 0.5);
  for (Index i = 0; i < 8; ++i)
    for (Index o = 0; o < 4; ++o) p.costs_(i, o) = static_cast<double>(o);
  p.budget_ = 13.0;
  const Brute b = brute_force(p.costs_, p.budget_, [&](const Assignment& h) {
    Matrix g;
    return p.loss(one_hot(h, 4), g);
  });
  const AssignmentResult r = EvolutionarySolver({.single_move_probability = 0.0}).minimize(p);
  EXPECT_DOUBLE_EQ(r.cost, 13.0);
  for (const IterationRecord& row : r.history.rows) EXPECT_EQ(row.constraint_residual, 0.0);
  EXPECT_NEAR(r.loss, b.loss, 1e-12);
}

// ---- numerical errors, options, determinism ---------------------------------------------------

TEST(Baselines, NanFromTheLossStopsWithNumericalErrorAndFiniteLogits) {
  const Coupled base = coupled_instance(6, 3, 1);
  {
    const NanAfter<Coupled> p{&base, 7};
    const AssignmentResult r = PenaltySolver().minimize(p);
    EXPECT_EQ(r.status, StopReason::kNumericalError);
    EXPECT_TRUE(r.logits.allFinite());
    EXPECT_EQ(r.logits.rows(), 6);
    EXPECT_EQ(r.history.size(), 7u);
    EXPECT_TRUE(std::isfinite(r.expected_cost));
    EXPECT_TRUE(std::isfinite(r.max_expected_cost_drift));
  }
  {
    const NanAfter<Coupled> p{&base, 45};
    const AugmentedLagrangianResult r = AugmentedLagrangianSolver().minimize(p);
    EXPECT_EQ(r.status, StopReason::kNumericalError);
    EXPECT_TRUE(r.logits.allFinite());
    EXPECT_EQ(r.history.size(), 45u);
    EXPECT_EQ(r.multipliers.size(), 1u);  // one update, after the first 30 steps
  }
  {
    const NanAfter<Coupled> p{&base, 20};
    const AssignmentResult r = EvolutionarySolver().minimize(p);
    EXPECT_EQ(r.iterations, 1);  // generation 1 meets the NaN: 1 start + 16 + 3 finite losses
    EXPECT_EQ(r.status, StopReason::kNumericalError);
    EXPECT_TRUE(std::isfinite(r.loss));
    EXPECT_LE(r.cost, base.budget());
    EXPECT_EQ(r.loss_evaluations, 21);
  }
}

TEST(Baselines, InvalidOptionsNameTheField) {
  expect_invalid([] { PenaltySolver({.learning_rate = 0.0}); }, "learning_rate");
  expect_invalid([] { PenaltySolver({.learning_rate = -0.1}); }, "learning_rate");
  expect_invalid([] { PenaltySolver({.steps = 0}); }, "steps");
  expect_invalid([] { PenaltySolver({.penalty_weight = -1.0}); }, "penalty_weight");
  expect_invalid([] { PenaltySolver({.round_every = -1}); }, "round_every");
  expect_invalid([] { PenaltySolver({.units_per_cost = 0.0}); }, "units_per_cost");
  expect_invalid([] { AugmentedLagrangianSolver({.learning_rate = -1.0}); }, "learning_rate");
  expect_invalid([] { AugmentedLagrangianSolver({.outer_iterations = 0}); }, "outer_iterations");
  expect_invalid([] { AugmentedLagrangianSolver({.inner_steps = 0}); }, "inner_steps");
  expect_invalid([] { AugmentedLagrangianSolver({.rho = -1.0}); }, "rho");
  expect_invalid([] { AugmentedLagrangianSolver({.rho = 0.0}); }, "rho");
  expect_invalid([] { AugmentedLagrangianSolver({.rho_growth = 0.5}); }, "rho_growth");
  expect_invalid([] { AugmentedLagrangianSolver({.rho = 10.0, .rho_max = 5.0}); }, "rho_max");
  expect_invalid([] { EvolutionarySolver({.generations = 0}); }, "generations");
  expect_invalid([] { EvolutionarySolver({.offspring = 4, .survivors = 5}); }, "survivors");
  expect_invalid([] { EvolutionarySolver({.min_mutation_pairs = 0}); }, "min_mutation_pairs");
  expect_invalid([] { EvolutionarySolver({.min_mutation_pairs = 3, .max_mutation_pairs = 2}); },
                 "max_mutation_pairs");
  expect_invalid([] { EvolutionarySolver({.max_loss_evaluations = -1}); }, "max_loss_evaluations");
  expect_invalid([] { EvolutionarySolver({.single_move_probability = 1.5}); },
                 "single_move_probability");
  // A negative multiplier has no meaning for an at-most budget.
  TwoGroupQuadratic p;
  p.sense_ = BudgetSense::kAtMost;
  expect_invalid([&] { AugmentedLagrangianSolver({.initial_multiplier = -1.0}).minimize(p); },
                 "initial_multiplier");
  // Wrong-shaped initial logits are a ShapeError naming the field.
  expect_invalid(
      [&] {
        PenaltySolver({.init = PenaltyOptions::Init::kGiven, .initial_logits = Matrix::Zero(3, 2)})
            .minimize(p);
      },
      "initial_logits");
}

TEST(Baselines, SameSeedGivesBitIdenticalResults) {
  const Coupled p = coupled_instance(10, 4, 77);
  const AssignmentResult e1 = EvolutionarySolver({.generations = 50, .seed = 5}).minimize(p);
  const AssignmentResult e2 = EvolutionarySolver({.generations = 50, .seed = 5}).minimize(p);
  EXPECT_EQ(e1.assignment, e2.assignment);
  EXPECT_EQ(std::memcmp(&e1.loss, &e2.loss, sizeof(double)), 0);
  ASSERT_EQ(e1.history.size(), e2.history.size());
  for (std::size_t g = 0; g < e1.history.size(); ++g)
    EXPECT_EQ(e1.history.rows[g].loss, e2.history.rows[g].loss);
  EXPECT_EQ(e1.loss_evaluations, e2.loss_evaluations);

  const AssignmentResult p1 = PenaltySolver({.steps = 100}).minimize(p);
  const AssignmentResult p2 = PenaltySolver({.steps = 100}).minimize(p);
  EXPECT_EQ(p1.assignment, p2.assignment);
  EXPECT_TRUE((p1.logits.array() == p2.logits.array()).all());
  const AugmentedLagrangianResult a1 = AugmentedLagrangianSolver().minimize(p);
  const AugmentedLagrangianResult a2 = AugmentedLagrangianSolver().minimize(p);
  EXPECT_TRUE((a1.logits.array() == a2.logits.array()).all());
  EXPECT_EQ(a1.multiplier, a2.multiplier);
}

TEST(Baselines, TrivialCasesAndCallbacks) {
  SeparableLinear p = separable_instance(5, 3, 1, 0.0);  // budget at the cheapest end
  for (const AssignmentResult& r :
       {PenaltySolver().minimize(p),
        static_cast<AssignmentResult>(AugmentedLagrangianSolver().minimize(p)),
        EvolutionarySolver().minimize(p)}) {
    EXPECT_EQ(r.status, StopReason::kConverged);
    EXPECT_EQ(r.assignment, Assignment(5, 0));
  }
  struct StopAt {
    int at;
    bool on_iteration(const IterationRecord& r) { return r.iteration < at; }
  };
  p = separable_instance(6, 3, 2, 0.5);
  StopAt stop{4};
  const AssignmentResult r = PenaltySolver().minimize(p, stop);
  EXPECT_EQ(r.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(r.history.size(), 5u);
  const AssignmentResult e = EvolutionarySolver().minimize(p, stop);
  EXPECT_EQ(e.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(e.history.size(), 5u);
}

}  // namespace
}  // namespace tether
