// RcoSolver: bad input, trivial cases, numerics, determinism.
// (Convergence on the synthetic families is in rco_convergence_test.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <tether/core/errors.hpp>
#include <tether/solvers/rco.hpp>

namespace tether {
namespace {

// L(Y) = sum_ik w_ik Y_ik + 0.5 |Y - T|^2: smooth, separable, known gradient.
struct LinearQuadratic {
  Matrix costs_, weights_, target_;
  double budget_;
  const Matrix& costs() const { return costs_; }
  double budget() const { return budget_; }
  double loss(const Matrix& y, Matrix& g) const {
    g = weights_ + (y - target_);
    return weights_.cwiseProduct(y).sum() + 0.5 * (y - target_).squaredNorm();
  }
};

LinearQuadratic small_problem(double budget) {
  LinearQuadratic p;
  p.costs_.resize(4, 3);
  p.costs_ << 1, 2, 4, 1, 3, 5, 2, 3, 4, 1, 2, 8;
  p.weights_.resize(4, 3);
  p.weights_ << 0.3, -0.2, -0.9, 0.1, -0.4, -0.5, 0.0, -0.1, -0.3, 0.2, -0.6, -1.0;
  p.target_ = Matrix::Zero(4, 3);
  p.budget_ = budget;
  return p;
}

TEST(Rco, InfeasibleBudgetNamesTheRange) {
  for (double b : {4.0, 21.5}) {
    try {
      RcoSolver().minimize(small_problem(b));
      FAIL() << "budget " << b << " is outside [5, 21]";
    } catch (const InfeasibleError& e) {
      EXPECT_NE(std::string(e.what()).find("[5, 21]"), std::string::npos) << e.what();
    }
  }
}

TEST(Rco, BudgetAtEitherEndReturnsTheOneFeasibleAssignment) {
  const AssignmentResult lo = RcoSolver().minimize(small_problem(5.0));
  EXPECT_EQ(lo.assignment, (Assignment{0, 0, 0, 0}));
  EXPECT_EQ(lo.status, StopReason::kConverged);
  EXPECT_DOUBLE_EQ(lo.cost, 5.0);
  const AssignmentResult hi = RcoSolver().minimize(small_problem(21.0));
  EXPECT_EQ(hi.assignment, (Assignment{2, 2, 2, 2}));
  EXPECT_DOUBLE_EQ(hi.cost, 21.0);
}

TEST(Rco, KEqualsOneIsSolvedTrivially) {
  LinearQuadratic p;
  p.costs_ = Matrix::Constant(3, 1, 2.0);
  p.weights_ = Matrix::Constant(3, 1, 0.5);
  p.target_ = Matrix::Zero(3, 1);
  p.budget_ = 6.0;
  const AssignmentResult r = RcoSolver().minimize(p);
  EXPECT_EQ(r.assignment, (Assignment{0, 0, 0}));
  EXPECT_EQ(r.status, StopReason::kConverged);
  EXPECT_DOUBLE_EQ(r.loss, 1.5 + 1.5);
  p.budget_ = 5.0;
  EXPECT_THROW(RcoSolver().minimize(p), InfeasibleError);
}

TEST(Rco, RefusesBadShapesAndCosts) {
  LinearQuadratic empty = small_problem(10);
  empty.costs_.resize(0, 3);
  EXPECT_THROW(RcoSolver().minimize(empty), ShapeError);
  LinearQuadratic negative = small_problem(10);
  negative.costs_(2, 1) = -1.0;
  EXPECT_THROW(RcoSolver().minimize(negative), InvalidArgumentError);
  struct WrongGradient {
    Matrix c = Matrix::Constant(3, 2, 1.0);
    const Matrix& costs() const { return c; }
    double budget() const { return 3.0; }
    double loss(const Matrix&, Matrix& g) const {
      g = Matrix::Zero(2, 2);
      return 0.0;
    }
  } wrong;
  wrong.c(0, 1) = 2.0;
  wrong.c(1, 1) = 2.0;
  struct WrongGradientBudget : WrongGradient {
    double budget() const { return 4.0; }
  } wrong_b;
  wrong_b.c = wrong.c;
  EXPECT_THROW(RcoSolver().minimize(wrong_b), ShapeError);
  RcoOptions given{.init = RcoOptions::Init::kGiven, .initial_logits = Matrix::Zero(2, 3)};
  EXPECT_THROW(RcoSolver(given).minimize(small_problem(10)), ShapeError);
}

TEST(Rco, RefusesInvalidOptionsNamingTheField) {
  auto message = [](const RcoOptions& o) {
    try {
      RcoSolver s(o);
    } catch (const InvalidArgumentError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({.learning_rate = 0.0}).find("learning_rate"), std::string::npos);
  EXPECT_NE(message({.steps = 0}).find("steps"), std::string::npos);
  EXPECT_NE(message({.samples = 0}).find("samples"), std::string::npos);
  EXPECT_NE(message({.samples = 3, .antithetic = true}).find("even"), std::string::npos);
  EXPECT_NE(message({.tau_final = -1.0}).find("tau_final"), std::string::npos);
  EXPECT_NE(message({.beta2 = 1.0}).find("beta2"), std::string::npos);
}

TEST(Rco, NanLossStopsWithNumericalErrorAndLastFiniteIterate) {
  struct NanAfter {
    LinearQuadratic base = small_problem(12.0);
    mutable int calls = 0;
    const Matrix& costs() const { return base.costs_; }
    double budget() const { return base.budget_; }
    double loss(const Matrix& y, Matrix& g) const {
      const double v = base.loss(y, g);
      if (++calls > 40) g(1, 1) = std::numeric_limits<double>::quiet_NaN();
      return v;
    }
  } p;
  const AssignmentResult r = RcoSolver({.steps = 100}).minimize(p);
  EXPECT_EQ(r.status, StopReason::kNumericalError);
  EXPECT_TRUE(r.logits.allFinite());
  EXPECT_EQ(r.iterations, 10);  // 4 samples a step: call 41 is in step 10
  EXPECT_NEAR(r.expected_cost, 12.0, 1e-11);
  EXPECT_LE(r.cost, 12.0);
  EXPECT_TRUE(std::isfinite(r.loss));
}

TEST(Rco, HugeInitialLogitsStayFinite) {
  Matrix init(4, 3);
  init << 1e4, -1e4, 0, -1e4, 1e4, 3, 0, 0, 1e4, 5e3, -5e3, 1e4;
  const AssignmentResult r =
      RcoSolver({.steps = 50, .init = RcoOptions::Init::kGiven, .initial_logits = init})
          .minimize(small_problem(12.0));
  // The first retraction shifts the one-hot rows back into a non-degenerate point.
  EXPECT_EQ(r.status, StopReason::kIterationLimit) << r.message;
  EXPECT_TRUE(r.logits.allFinite());
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_LE(r.cost, 12.0);
  EXPECT_NEAR(r.expected_cost, 12.0, 1e-11);
}

TEST(Rco, RecordedResidualIsTheExpectedCostOfTheIterate) {
  // The history's C - B comes from the retraction's last pass; check it against C computed
  // directly from the returned logits (softmax per row).
  const AssignmentResult r = RcoSolver({.steps = 40}).minimize(small_problem(12.0));
  const LinearQuadratic p = small_problem(12.0);
  double c = 0.0;
  for (Index i = 0; i < r.logits.rows(); ++i) {
    const Eigen::RowVectorXd e = (r.logits.row(i).array() - r.logits.row(i).maxCoeff()).exp();
    c += e.dot(p.costs_.row(i)) / e.sum();
  }
  ASSERT_EQ(r.history.size(), 40u);
  EXPECT_NEAR(r.history.back().constraint_residual, c - 12.0, 1e-13);
  EXPECT_NEAR(r.expected_cost, c, 1e-13);
}

TEST(Rco, SameSeedSameResultBitForBit) {
  const RcoOptions o{.steps = 60, .seed = 5};
  const AssignmentResult a = RcoSolver(o).minimize(small_problem(12.0));
  const AssignmentResult b = RcoSolver(o).minimize(small_problem(12.0));
  EXPECT_EQ(a.assignment, b.assignment);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  EXPECT_EQ(std::memcmp(a.logits.data(), b.logits.data(), sizeof(double) * a.logits.size()), 0);
  ASSERT_EQ(a.history.size(), b.history.size());
  for (std::size_t t = 0; t < a.history.size(); ++t) {
    EXPECT_EQ(a.history.rows[t].loss, b.history.rows[t].loss);
    EXPECT_EQ(a.history.rows[t].constraint_residual, b.history.rows[t].constraint_residual);
  }
  const AssignmentResult c = RcoSolver({.steps = 60, .seed = 6}).minimize(small_problem(12.0));
  EXPECT_NE(std::memcmp(a.logits.data(), c.logits.data(), sizeof(double) * a.logits.size()), 0);
}

TEST(Rco, CallbacksSeeEveryIterationAndCanStop) {
  struct Count {
    int seen = 0;
    bool on_iteration(const IterationRecord&) { return ++seen < 7; }
  } count;
  std::ostringstream csv;
  callbacks::CsvHistory history(csv);
  const AssignmentResult r = RcoSolver({.steps = 50}).minimize(small_problem(12.0), count, history);
  EXPECT_EQ(count.seen, 7);
  EXPECT_EQ(r.status, StopReason::kStoppedByCallback);
  EXPECT_EQ(r.history.size(), 7u);
  const std::string text = csv.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 8);  // header + 7 rows
}

TEST(Rco, DeterministicSoftVariantKeepsTheBudget) {
  const AssignmentResult r =
      RcoSolver({.steps = 100, .estimator = RcoOptions::Estimator::kDeterministicSoft})
          .minimize(small_problem(12.0));
  for (const IterationRecord& rec : r.history.rows)
    EXPECT_LE(std::abs(rec.constraint_residual), 1e-11);
  EXPECT_LE(r.cost, 12.0);
}

TEST(Rco, SensitivityInitialisationAndItsRefusals) {
  Matrix distortion(4, 3);
  distortion << 1.0, 0.5, 0.1, 2.0, 0.3, 0.2, 1.0, 1.0, 0.5, 4.0, 0.4, 0.01;
  const AssignmentResult r =
      RcoSolver(
          {.steps = 50, .init = RcoOptions::Init::kSensitivities, .sensitivities = distortion})
          .minimize(small_problem(12.0));
  EXPECT_EQ(r.status, StopReason::kIterationLimit);
  EXPECT_NEAR(r.expected_cost, 12.0, 1e-11);
  Matrix bad = distortion;
  bad(2, 2) = 0.0;
  EXPECT_THROW(RcoSolver({.init = RcoOptions::Init::kSensitivities, .sensitivities = bad})
                   .minimize(small_problem(12.0)),
               InvalidArgumentError);
  EXPECT_THROW(
      RcoSolver({.init = RcoOptions::Init::kSensitivities, .sensitivities = Matrix::Ones(3, 3)})
          .minimize(small_problem(12.0)),
      ShapeError);
}

TEST(Rco, AtMostBudgetLeavesAnInactiveConstraintAlone) {
  // Every weight favours the cheapest option, so the optimum (all option 0, cost 5) is strictly
  // inside C <= 12: the constraint never binds and the expected cost may fall below B.
  struct Cheap {
    LinearQuadratic base = small_problem(12.0);
    const Matrix& costs() const { return base.costs_; }
    double budget() const { return base.budget_; }
    BudgetSense budget_sense() const { return BudgetSense::kAtMost; }
    double loss(const Matrix& y, Matrix& g) const { return base.loss(y, g); }
  } p;
  p.base.weights_ = -p.base.weights_;  // now option 0 is best in every row
  p.base.weights_.col(0).array() -= 1.0;
  const AssignmentResult r = RcoSolver({.steps = 200}).minimize(p);
  EXPECT_EQ(r.assignment, (Assignment{0, 0, 0, 0}));
  EXPECT_LT(r.expected_cost, 12.0);
  for (const IterationRecord& rec : r.history.rows) EXPECT_LE(rec.constraint_residual, 1e-11);
}

}  // namespace
}  // namespace tether
