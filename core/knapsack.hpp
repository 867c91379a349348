// Multiple-choice knapsack by dynamic programming over an integer cost grid.
//
//   maximize  sum_i v_{i,h(i)}   subject to   sum_i c_{i,h(i)} <= B,   h(i) in {0..K-1}.
//
// Costs are put on a grid of R units per cost unit and ROUNDED UP (ceil(c R)), and the capacity
// is rounded down (floor(B R)), so every grid-feasible answer is truly within the budget. (The
// reference rounds to nearest, so its "exact" answers can exceed B.) Where every cost is an
// integer multiple of 1/R already (integer costs with R = 1: bits x parameter counts), the
// grid is exact and the DP answer is the exact optimum.
// Time O(N K U), U = floor(B R); memory one byte per (group, unit) for the backtracking.
//
// Rounding costs up wastes up to one unit per group; with fill_slack (default) a greedy pass on
// the true costs spends what the grid left, so coarse grids lose little value.
//
// Every answer carries the LP (convex-hull) upper bound on the TRUE problem, computed greedily
// on the upper concave hull of each group's (cost, value) points, and the gap to it.
//
// The grid and costs are fixed at construction; `solve(values)` can then be called many times
// (RCO calls it once per Gumbel sample per step) without reallocating.
#pragma once

#include <cstdint>
#include <tether/core/types.hpp>
#include <vector>

namespace tether {

struct KnapsackOptions {
  /// Grid resolution R: integer units per cost unit. Ignored when costs are exact integers on
  /// the grid of R = 1 and `use_exact_integer_costs` is true.
  double units_per_cost = 1000.0;
  /// If every cost and the budget are (within 1e-9) integers, use them as they are (R = 1).
  bool use_exact_integer_costs = true;
  /// Refuse grids with more than this many capacity units (memory N x U bytes).
  std::int64_t max_units = 50'000'000;
  /// After the grid DP, spend the budget the round-up left unused: repeatedly apply the
  /// single-group change with the largest value gain that fits the TRUE remaining budget.
  /// Never breaks the budget; never lowers the value; a no-op when the grid is exact.
  bool fill_slack = true;
};

struct KnapsackResult {
  Assignment assignment;       ///< chosen option per group
  double value = 0.0;          ///< sum_i v_{i,h(i)}
  double cost = 0.0;           ///< true cost sum_i c_{i,h(i)} (<= budget)
  double lp_upper_bound = 0;   ///< LP relaxation (convex hull) bound on the true optimum
  double gap = 0.0;            ///< lp_upper_bound - value >= 0
  bool exact_grid = false;     ///< true when the grid represents every cost exactly
  bool grid_fallback = false;  ///< true when the grid was too coarse and the min-cost answer was
                               ///< returned (the budget is feasible only at grid resolution)
  int slack_moves = 0;         ///< improving moves made by KnapsackOptions::fill_slack
};

class MultipleChoiceKnapsack {
 public:
  /// costs: N x K, finite, >= 0; budget >= sum of row minima (else InfeasibleError).
  MultipleChoiceKnapsack(const Matrix& costs, double budget, const KnapsackOptions& options = {});

  /// Maximizes sum v_{i,h(i)} within the budget. values: N x K, finite, or -inf to forbid an
  /// option (masked, or of zero probability); NaN and +inf are refused, and so is a group whose
  /// options are all forbidden. InfeasibleError when no allowed assignment fits the budget.
  KnapsackResult solve(const Matrix& values);
  /// Same, without the LP bound (the hot path of RCO's sampling loop).
  KnapsackResult solve_without_bound(const Matrix& values);

  /// LP relaxation bound of max sum v subject to sum c <= B on the true (unrounded) costs.
  double lp_upper_bound(const Matrix& values) const;

  Index groups() const { return costs_.rows(); }
  Index options() const { return costs_.cols(); }
  std::int64_t capacity_units() const { return capacity_; }
  double units_per_cost() const { return units_per_cost_; }
  bool exact_grid() const { return exact_grid_; }
  const std::vector<std::int32_t>& grid_costs() const { return grid_costs_; }

 private:
  Matrix costs_;
  double budget_;
  double units_per_cost_;
  bool exact_grid_ = false;
  bool fill_slack_ = true;
  std::int64_t capacity_ = 0;
  std::vector<std::int32_t> grid_costs_;  // N x K row-major, ceil(c R)
  std::vector<double> best_, next_;       // DP rows, capacity + 1 each
  std::vector<double> argmax_;            // the current group's best option per unit
  std::vector<std::uint8_t> choice_;      // N x (capacity + 1)
};

}  // namespace tether
