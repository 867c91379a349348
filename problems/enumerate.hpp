// Exact optimum of a small assignment problem by enumeration: the ground truth for
// non-separable losses, where no knapsack DP applies.
//
//   h* = argmin_h L(onehot(h))  over all h in {0..K-1}^N with  sum_i c_{i,h(i)} <= B,
//   the cost test taken with a tolerance:  cost <= B + 1e-9 max(1, |B|).
//
// K^N assignments are visited in odometer order (group 0 changes fastest). One N x K matrix Y
// is reused: a step rewrites only the rows whose option changed (amortised K/(K-1) rows), and
// the cost is kept as suffix sums over the groups, so each assignment costs one loss call.
// Ties keep the first assignment found. Refuses K^N > kMaxEnumeratedAssignments = 5e7.
//
//   auto p = tether::problems::CoupledMckp::generate(10, 4, /*seed=*/3);   // 4^10 = 1M
//   tether::problems::EnumerationResult best = tether::problems::enumerate_optimum(p);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tether/core/concepts.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/types.hpp>
#include <vector>

namespace tether::problems {

/// The largest K^N that enumerate_optimum accepts.
inline constexpr double kMaxEnumeratedAssignments = 5e7;

struct EnumerationResult {
  Assignment assignment;            ///< the best feasible assignment (first among ties)
  double loss = 0.0;                ///< L(onehot(assignment))
  double cost = 0.0;                ///< its true cost sum_i c_{i,h(i)}
  std::int64_t feasible_count = 0;  ///< assignments with cost within the budget
  std::int64_t total_count = 0;     ///< K^N
};

/// Brute-force optimum of `problem` over every budget-feasible hard assignment.
/// Throws ShapeError for an empty cost matrix, InvalidArgumentError when K^N exceeds
/// kMaxEnumeratedAssignments or a cost/budget is not finite, InfeasibleError when no
/// assignment fits the budget, NumericalError when the loss is NaN at a feasible assignment.
template <AssignmentProblem P>
EnumerationResult enumerate_optimum(const P& problem) {
  const Matrix& costs = problem.costs();
  const double budget = static_cast<double>(problem.budget());
  const Index n = costs.rows(), k = costs.cols();
  require<ShapeError>(n >= 1 && k >= 1, "enumerate_optimum: costs must be at least 1 x 1, got ", n,
                      " x ", k);
  const double total = std::pow(static_cast<double>(k), static_cast<double>(n));
  require(total <= kMaxEnumeratedAssignments, "enumerate_optimum: K^N = ", k, "^", n, " = ", total,
          " assignments exceeds the bound kMaxEnumeratedAssignments = ", kMaxEnumeratedAssignments);
  require(costs.allFinite(), "enumerate_optimum: costs must be finite");
  require(std::isfinite(budget), "enumerate_optimum: budget must be finite, got ", budget);
  const double limit = budget + 1e-9 * std::max(1.0, std::abs(budget));

  EnumerationResult best;
  best.loss = std::numeric_limits<double>::infinity();
  best.total_count = static_cast<std::int64_t>(total);

  const auto un = static_cast<std::size_t>(n);
  Assignment h(un, 0);
  Matrix y = Matrix::Zero(n, k);
  Matrix grad = Matrix::Zero(n, k);
  for (Index i = 0; i < n; ++i) y(i, 0) = 1.0;
  // suffix[i] = sum_{j >= i} c_{j,h(j)}; suffix[n] = 0. Groups 0..top changed in a step.
  std::vector<double> suffix(un + 1, 0.0);
  Index top = n - 1;
  while (true) {
    for (Index i = top; i >= 0; --i)
      suffix[static_cast<std::size_t>(i)] =
          suffix[static_cast<std::size_t>(i) + 1] + costs(i, h[static_cast<std::size_t>(i)]);
    const double cost = suffix[0];
    if (cost <= limit) {
      ++best.feasible_count;
      const double value = static_cast<double>(problem.loss(y, grad));
      if (std::isnan(value)) {
        throw NumericalError(detail::concat("enumerate_optimum: the loss is NaN at feasible ",
                                            "assignment number ", best.feasible_count));
      }
      if (value < best.loss || best.assignment.empty()) {
        best.loss = value;
        best.cost = cost;
        best.assignment = h;
      }
    }
    // Odometer step: group 0 fastest; rewrite only the rows that change.
    Index i = 0;
    while (i < n) {
      const auto ui = static_cast<std::size_t>(i);
      y(i, h[ui]) = 0.0;
      if (++h[ui] < k) {
        y(i, h[ui]) = 1.0;
        break;
      }
      h[ui] = 0;
      y(i, 0) = 1.0;
      ++i;
    }
    if (i == n) break;
    top = i;
  }
  require<InfeasibleError>(best.feasible_count > 0,
                           "enumerate_optimum: no assignment fits the budget B = ", budget,
                           " (cheapest total cost ", costs.rowwise().minCoeff().sum(), ")");
  best.cost = assignment_cost(costs, best.assignment);
  return best;
}

}  // namespace tether::problems
