// What solvers need of a problem, as concepts that read as sentences when they fail.
//
// An assignment problem chooses one of K options for each of N groups. It supplies
//   costs()   : N x K matrix c, c_ik >= 0 the cost of option k in group i;
//   budget()  : the budget B on the total cost sum_i c_{i,h(i)};
//   loss(Y, grad_Y) : the loss at an N x K matrix Y whose rows are one-hot (hard) or on the
//                     simplex (soft); writes dL/dY into grad_Y (already sized N x K).
// Optionally budget_sense() (BudgetSense::kEqual by default: the expected cost is held at B;
// kAtMost: C <= B), and option_mask() (an OptionMask, N x K, true where group i may take
// option k; the costs of masked options are ignored). Hard answers are always at most B.
#pragma once

#include <concepts>
#include <functional>
#include <limits>
#include <string>
#include <tether/core/errors.hpp>
#include <tether/core/types.hpp>

namespace tether {

enum class BudgetSense { kEqual, kAtMost };

template <class P>
concept AssignmentProblem = requires(const P& problem, const Matrix& y, Matrix& grad_y) {
  { problem.costs() } -> std::convertible_to<const Matrix&>;
  { problem.budget() } -> std::convertible_to<double>;
  { problem.loss(y, grad_y) } -> std::convertible_to<double>;
};

template <class P>
BudgetSense budget_sense_of(const P& problem) {
  if constexpr (requires {
                  { problem.budget_sense() } -> std::convertible_to<BudgetSense>;
                })
    return problem.budget_sense();
  else
    return BudgetSense::kEqual;
}

/// c_ik = w_i * b_k: the factored cost of e.g. quantization (share of parameters x bits).
inline Matrix factored_costs(const Vector& group_weights, const Vector& option_costs) {
  return group_weights * option_costs.transpose();
}

/// Checked summary of a budget constraint: the costs are finite and >= 0, N, K >= 1, and
/// B lies in the feasible range [sum_i min_k c_ik, sum_i max_k c_ik].
struct BudgetData {
  Matrix costs;
  double budget = 0.0;
  BudgetSense sense = BudgetSense::kEqual;
  double min_total = 0.0;  ///< sum of row minima: the cheapest assignment
  double max_total = 0.0;  ///< sum of row maxima: the dearest assignment
};

/// Validates costs and budget; throws ShapeError / InvalidArgumentError / InfeasibleError
/// naming the argument and the bound.
BudgetData validate_budget(const Matrix& costs, double budget, BudgetSense sense);

/// validate_budget, plus what a budget manifold needs: for kEqual, B strictly inside the range
/// (an end point is a single assignment at infinite logits, not a manifold); for kAtMost,
/// B above the sum of row minima. `what` names the budget in the InfeasibleError message.
BudgetData validate_manifold_budget(const Matrix& costs, double budget, BudgetSense sense,
                                    const std::string& what);

}  // namespace tether

namespace tether {

/// Any AssignmentProblem, type-erased: what solver bodies compiled once in a .cpp work on.
struct AssignmentObjective {
  Matrix costs;
  double budget = 0.0;
  BudgetSense sense = BudgetSense::kEqual;
  std::function<double(const Matrix&, Matrix&)> loss;
  OptionMask allowed{};  ///< empty: every option allowed

  bool masked() const { return allowed.size() > 0; }
  bool is_allowed(Index i, Index k) const { return !masked() || allowed(i, k); }
};

/// Checks the mask (shape N x K, at least one allowed option per group) and replaces the cost
/// of every masked option by its group's cheapest allowed cost, so that cost ranges, grids and
/// row arithmetic see only finite, meaningful costs; solvers then keep masked options at
/// probability 0 (logit -inf) and value -inf. An all-true mask is dropped. No-op without mask.
AssignmentObjective with_normalized_mask(const AssignmentObjective& objective);

/// The objective refers to the problem, so the problem must outlive it: a temporary is refused.
template <AssignmentProblem P>
AssignmentObjective make_objective(const P&&) = delete;

template <AssignmentProblem P>
AssignmentObjective make_objective(const P& problem) {
  AssignmentObjective o;
  o.costs = problem.costs();
  o.budget = problem.budget();
  o.sense = budget_sense_of(problem);
  o.loss = [&problem](const Matrix& y, Matrix& g) {
    return static_cast<double>(problem.loss(y, g));
  };
  if constexpr (requires {
                  { problem.option_mask() } -> std::convertible_to<OptionMask>;
                })
    o.allowed = problem.option_mask();
  return o;
}

}  // namespace tether
