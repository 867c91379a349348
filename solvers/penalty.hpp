// Quadratic-penalty baseline for an assignment under a budget (spec rco.md, section 5): the
// method Helcig and Alistarh (arXiv 2605.00649) compare RCO against, reported to plateau near
// 83% of optimal on their knapsack benchmarks; the classical quadratic penalty (Nocedal and
// Wright, Numerical Optimization, 2nd ed., section 17.1) on the softmax relaxation.
//
// Problem: choose one of K options h(i) for each of N groups to minimise L(h) subject to
// sum_i c_{i,h(i)} <= B (L given as loss(Y, dL/dY) on one-hot or soft N x K matrices Y).
// Relaxation: logits alpha, p_i = softmax(alpha_i), C(alpha) = sum_ik c_ik p_ik, and
//
//   minimise  F(alpha) = L(p) + mu (C(alpha) - B)^2          (BudgetSense::kEqual)
//                        L(p) + mu max(0, C(alpha) - B)^2    (BudgetSense::kAtMost)
//
// with bias-corrected Adam on alpha from alpha = 0 (uniform p) or given logits. Gradient
// (solvers/soft_relaxation.hpp): dF/dalpha = J_softmax(p)^T dL/dY + 2 mu (C - B) n, where
// n_ik = p_ik (c_ik - E_i), E_i = sum_k p_ik c_ik. Nothing holds C at B: the final C misses B
// by O(1/mu), and the rounding decides whether the hard answer keeps the budget:
//   SoftRounding::kArgmax (default; what penalty methods do) may break it,
//   SoftRounding::kKnapsack (the DP on log p within the budget) never does.
//
// Defaults: lr 0.1, betas 0.9 / 0.999, eps 1e-8 (RCO's), 300 steps, mu = 10, uniform start,
// argmax rounding, the final iterate rounded once (round_every = 0). mu has the units of
// L / cost^2: choose it against the scale of both, or sweep it with penalty_sweep().
//
// Result: assignment (the rounding; with round_every > 0, the better of the final rounding and
// the best within-budget rounding seen), loss (its true hard loss), cost, budget_violation
// (> 0 when argmax broke the budget), expected_cost and logits of the last finite iterate,
// max_expected_cost_drift = max over iterates of |C - B|, final_dp = the final rounding,
// final_dp_gap = its knapsack LP gap in log-probability units (NaN for argmax), best_seen_loss
// = +inf when no within-budget answer was evaluated. History: one row per Adam step t, for
// alpha_t: loss = L(p_t), constraint_residual = C(alpha_t) - B, best_loss = the best true loss
// of a within-budget rounding so far when round_every > 0, else the best soft loss L(p) so far.
// Status: kIterationLimit; kNumericalError (last finite iterate kept) on NaN/Inf loss or
// gradient; kStoppedByCallback.
//
//   tether::PenaltySolver solver({.penalty_weight = 100.0});
//   tether::AssignmentResult r = solver.minimize(problem);
//   tether::AssignmentResult best = tether::penalty_sweep(tether::make_objective(problem), {},
//                                                         {1.0, 10.0, 100.0, 1000.0});
#pragma once

#include <optional>
#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/concepts.hpp>
#include <tether/solvers/rco.hpp>
#include <tether/solvers/soft_relaxation.hpp>
#include <utility>
#include <vector>

namespace tether {

struct PenaltyOptions {
  enum class Init { kUniform, kGiven };

  double learning_rate = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  int steps = 300;
  double penalty_weight = 10.0;  ///< mu >= 0 (0: the unconstrained relaxation)
  Init init = Init::kUniform;
  Matrix initial_logits{};  ///< Init::kGiven: N x K, finite
  SoftRounding rounding = SoftRounding::kArgmax;
  double units_per_cost = 10000.0;  ///< knapsack grid of kKnapsack (ignored for integer costs)
  /// Round and evaluate the iterate every this many steps, keeping the best within-budget
  /// answer (an addition to the baseline); 0 rounds only the final iterate.
  int round_every = 0;

  /// True when every field is in its domain; otherwise `why` names the field and its bound.
  bool is_valid(std::string* why) const;
};

class PenaltySolver {
 public:
  /// Throws InvalidArgumentError naming the field when `options` is not valid.
  explicit PenaltySolver(const PenaltyOptions& options = {});
  const PenaltyOptions& options() const { return options_; }

  template <AssignmentProblem P, class... Callbacks>
  AssignmentResult minimize(const P& problem, Callbacks&&... callbacks) const {
    return minimize(make_objective(problem), CallbackSet(callbacks...));
  }
  AssignmentResult minimize(const AssignmentObjective& objective,
                            const CallbackSet& callbacks = CallbackSet()) const;

  /// F(alpha) = L(softmax(alpha)) + mu (C - B)^2 (mu max(0, C - B)^2 for kAtMost) and, when
  /// `grad_alpha` is given, dF/dalpha. nullopt when the loss or its gradient is NaN/Inf.
  std::optional<double> relaxed_objective(const AssignmentObjective& objective, const Matrix& alpha,
                                          Matrix* grad_alpha) const;

 private:
  PenaltyOptions options_;
};

/// Runs the penalty method once per weight mu in `weights` (each finite and >= 0; `base`
/// supplies every other option) and returns the answer with the lowest true loss among those
/// within budget, or the least violating one if none is. Its message names the winning mu and
/// lists every run; loss_evaluations and seconds are the totals over the sweep, the history is
/// the winner's. Throws InvalidArgumentError for an empty or invalid `weights`.
AssignmentResult penalty_sweep(const AssignmentObjective& objective, PenaltyOptions base,
                               const std::vector<double>& weights);

template <AssignmentProblem P>
AssignmentResult penalty_sweep(const P& problem, PenaltyOptions base,
                               const std::vector<double>& weights) {
  return penalty_sweep(make_objective(problem), std::move(base), weights);
}

}  // namespace tether
