// Per-group option masks (spec rco.md section 1): masked options are never chosen, carry
// probability 0 (logit -inf), and do not count in the feasible budget range.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tether/core/errors.hpp>
#include <tether/core/rng.hpp>
#include <tether/solvers/augmented_lagrangian.hpp>
#include <tether/solvers/evolutionary.hpp>
#include <tether/solvers/penalty.hpp>
#include <tether/solvers/rco.hpp>

namespace tether {
namespace {

// L(Y) = sum_i (e_i - target_i)^2 with e_i = sum_k Y_ik err_ik: smooth, non-linear in Y.
struct MaskedProblem {
  Matrix costs_, err_;
  Vector target_;
  OptionMask mask_;
  double budget_ = 0.0;
  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  const OptionMask& option_mask() const { return mask_; }
  double loss(const Matrix& y, Matrix& g) const {
    const Vector e = y.cwiseProduct(err_).rowwise().sum() - target_;
    for (Index i = 0; i < y.rows(); ++i) g.row(i) = 2.0 * e[i] * err_.row(i);
    return e.squaredNorm();
  }
};

MaskedProblem random_problem(std::uint64_t seed) {
  Rng rng(seed);
  const Index n = 6, k = 4;
  MaskedProblem p;
  p.costs_.resize(n, k);
  p.err_.resize(n, k);
  p.target_.resize(n);
  p.mask_.resize(n, k);
  for (Index i = 0; i < n; ++i) {
    p.target_[i] = rng.uniform(0.0, 1.0);
    for (Index o = 0; o < k; ++o) {
      p.costs_(i, o) = static_cast<double>(1 + o + rng.index(3));
      p.err_(i, o) = rng.uniform(0.0, 2.0) / (1.0 + o);
      p.mask_(i, o) = rng.uniform() > 0.3;
    }
    if (!p.mask_.row(i).any()) p.mask_(i, static_cast<Index>(rng.index(k))) = true;
  }
  double lo = 0, hi = 0;
  for (Index i = 0; i < n; ++i) {
    double mn = 1e300, mx = -1e300;
    for (Index o = 0; o < k; ++o)
      if (p.mask_(i, o)) mn = std::min(mn, p.costs_(i, o)), mx = std::max(mx, p.costs_(i, o));
    lo += mn;
    hi += mx;
  }
  p.budget_ = std::floor(lo + 0.5 * (hi - lo)) + 0.5;
  return p;
}

double brute_force(const MaskedProblem& p) {
  const Index n = p.costs_.rows(), k = p.costs_.cols();
  Assignment h(static_cast<std::size_t>(n), 0);
  Matrix g(n, k);
  double best = std::numeric_limits<double>::infinity();
  for (long code = 0; code < 4096; ++code) {
    bool ok = true;
    for (Index i = 0, c = code; i < n; ++i, c /= k) {
      h[static_cast<std::size_t>(i)] = static_cast<int>(c % k);
      ok = ok && p.mask_(i, c % k);
    }
    if (!ok || assignment_cost(p.costs_, h) > p.budget_) continue;
    best = std::min(best, p.loss(one_hot(h, k), g));
  }
  return best;
}

TEST(OptionMask, RcoFindsTheBestAllowedAssignmentAndNeverAMaskedOne) {
  int hits = 0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const MaskedProblem p = random_problem(seed);
    const double best = brute_force(p);
    const AssignmentResult r = RcoSolver({.steps = 300, .samples = 8, .seed = seed}).minimize(p);
    for (Index i = 0; i < p.costs_.rows(); ++i) {
      EXPECT_TRUE(p.mask_(i, r.assignment[static_cast<std::size_t>(i)])) << "seed " << seed;
      for (Index o = 0; o < p.costs_.cols(); ++o)
        if (!p.mask_(i, o)) EXPECT_EQ(r.logits(i, o), -std::numeric_limits<double>::infinity());
    }
    EXPECT_LE(r.cost, p.budget_);
    EXPECT_GE(r.loss, best - 1e-12);
    for (const IterationRecord& rec : r.history.rows)
      ASSERT_LE(std::abs(rec.constraint_residual), 1e-9);
    EXPECT_EQ(r.status, StopReason::kIterationLimit) << r.message;
    hits += r.loss <= best + 1e-12;
  }
  EXPECT_GE(hits, 4);
}

TEST(OptionMask, TheFeasibleRangeCountsAllowedOptionsOnly) {
  MaskedProblem p;
  p.costs_ = (Matrix(2, 3) << 1, 2, 3, 1, 2, 3).finished();
  p.err_ = Matrix::Ones(2, 3);
  p.target_ = Vector::Zero(2);
  p.mask_ = (OptionMask(2, 3) << false, true, true, true, true, false).finished();
  // Allowed range: [2 + 1, 3 + 2] = [3, 5]. At 3 the only answer is {1, 0}.
  p.budget_ = 3.0;
  const AssignmentResult lo = RcoSolver().minimize(p);
  EXPECT_EQ(lo.assignment, (Assignment{1, 0}));
  EXPECT_EQ(lo.status, StopReason::kConverged);
  p.budget_ = 5.0;
  EXPECT_EQ(RcoSolver().minimize(p).assignment, (Assignment{2, 1}));
  p.budget_ = 2.5;  // feasible without the mask, not with it
  try {
    RcoSolver().minimize(p);
    FAIL() << "budget below the allowed range must be refused";
  } catch (const InfeasibleError& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 5]"), std::string::npos) << e.what();
  }
}

TEST(OptionMask, EvolutionarySearchFindsTheBestAllowedAssignment) {
  int hits = 0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const MaskedProblem p = random_problem(seed);
    const double best = brute_force(p);
    const AssignmentResult r = EvolutionarySolver({.generations = 300, .seed = seed}).minimize(p);
    for (Index i = 0; i < p.costs_.rows(); ++i)
      EXPECT_TRUE(p.mask_(i, r.assignment[static_cast<std::size_t>(i)])) << "seed " << seed;
    EXPECT_LE(r.cost, p.budget_);
    EXPECT_GE(r.loss, best - 1e-12);
    hits += r.loss <= best + 1e-12;
  }
  EXPECT_GE(hits, 4);
}

TEST(OptionMask, PenaltyAndAugmentedLagrangianNeverChooseAMaskedOption) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const MaskedProblem p = random_problem(seed);
    const AssignmentResult pen =
        PenaltySolver({.steps = 200, .rounding = SoftRounding::kKnapsack}).minimize(p);
    const AssignmentResult al =
        AugmentedLagrangianSolver({.rounding = SoftRounding::kArgmax}).minimize(p);
    for (const AssignmentResult* r : {&pen, &al}) {
      EXPECT_NE(r->status, StopReason::kNumericalError) << r->message;
      for (Index i = 0; i < p.costs_.rows(); ++i) {
        EXPECT_TRUE(p.mask_(i, r->assignment[static_cast<std::size_t>(i)])) << "seed " << seed;
        for (Index o = 0; o < p.costs_.cols(); ++o)
          if (!p.mask_(i, o)) EXPECT_EQ(r->logits(i, o), -std::numeric_limits<double>::infinity());
      }
    }
    EXPECT_LE(pen.cost, p.budget_);  // knapsack rounding keeps the budget
  }
}

TEST(OptionMask, BadMasksAreRefused) {
  MaskedProblem p = random_problem(3);
  p.mask_.row(2).setConstant(false);
  try {
    RcoSolver().minimize(p);
    FAIL() << "a group without an allowed option must be refused";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("group 2"), std::string::npos) << e.what();
  }
  p = random_problem(3);
  p.mask_ = OptionMask::Constant(5, 4, true);
  EXPECT_THROW(RcoSolver().minimize(p), ShapeError);
  p = random_problem(3);
  // A start on a masked option is refused, naming it.
  Assignment start(6, -1);
  Index masked_row = -1;
  for (Index i = 0; i < 6; ++i)
    for (Index o = 0; o < 4; ++o) {
      if (p.mask_(i, o) && start[static_cast<std::size_t>(i)] < 0)
        start[static_cast<std::size_t>(i)] = static_cast<int>(o);
      if (!p.mask_(i, o) && masked_row < 0)
        masked_row = i, start[static_cast<std::size_t>(i)] = static_cast<int>(o);
    }
  ASSERT_GE(masked_row, 0);
  try {
    EvolutionarySolver({.initial_assignment = start}).minimize(p);
    FAIL() << "a masked start must be refused";
  } catch (const InvalidArgumentError& e) {
    EXPECT_NE(std::string(e.what()).find("masked option"), std::string::npos) << e.what();
  }
  // An all-true mask is no mask: every solver takes it.
  p.mask_.setConstant(true);
  EXPECT_NO_THROW(PenaltySolver({.steps = 5}).minimize(p));
}

}  // namespace
}  // namespace tether
