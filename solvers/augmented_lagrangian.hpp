// Augmented-Lagrangian baseline for an assignment under a budget (spec rco.md, section 5): the
// method of multipliers (Hestenes 1969, Powell 1969; Nocedal and Wright, Numerical
// Optimization, 2nd ed., section 17.3, framework 17.3) on the softmax relaxation that the
// penalty baseline uses, one of the baselines of Helcig and Alistarh (arXiv 2605.00649).
//
// Problem: choose one of K options h(i) for each of N groups to minimise L(h) subject to
// sum_i c_{i,h(i)} <= B (L given as loss(Y, dL/dY) on one-hot or soft N x K matrices Y).
// Relaxation: logits alpha, p_i = softmax(alpha_i), C(alpha) = sum_ik c_ik p_ik, h = C - B.
// Outer iteration j = 0 .. outer_iterations - 1:
//
//   inner: inner_steps bias-corrected Adam steps on
//          F_j(alpha) = L(p) + lambda_j h + (rho_j / 2) h^2                       (kEqual)
//                       L(p) + (max(0, lambda_j + rho_j h)^2 - lambda_j^2) / (2 rho_j)  (kAtMost)
//   lambda_{j+1} = lambda_j + rho_j h            (kAtMost: max(0, lambda_j + rho_j h))
//   rho_{j+1}    = min(rho_j * rho_growth, rho_max)
//
// The Adam state carries over between inner solves (warm start). Gradient and loop are the
// penalty method's (solvers/soft_relaxation.hpp); only the multiplier schedule differs. At a
// KKT point, J_softmax(p)^T (dL/dY + lambda c) = 0 and C = B: lambda converges to the
// Lagrange multiplier of the relaxed problem, so C reaches B without rho growing to infinity.
//
// Defaults: lr 0.1, betas 0.9 / 0.999, eps 1e-8 (RCO's), 10 outer x 30 inner steps (the
// 300 Adam steps of the penalty baseline), lambda_0 = 0, rho = 10 held fixed (rho_growth = 1,
// rho_max = 1e6), uniform start, argmax rounding of the final iterate. rho has the units of
// L / cost^2.
//
// Result: every AssignmentResult field as the penalty solver fills it (see penalty.hpp), and
// the multiplier: `multiplier` = lambda after the last update, `rho` likewise, `multipliers` =
// lambda after each outer iteration. History: one row per Adam step.
//
//   tether::AugmentedLagrangianSolver solver({.outer_iterations = 20, .rho = 1.0});
//   tether::AugmentedLagrangianResult r = solver.minimize(problem);
//   r.assignment; r.multiplier; r.max_expected_cost_drift;
#pragma once

#include <string>
#include <tether/core/callbacks.hpp>
#include <tether/core/concepts.hpp>
#include <tether/solvers/rco.hpp>
#include <tether/solvers/soft_relaxation.hpp>
#include <vector>

namespace tether {

struct AugmentedLagrangianOptions {
  enum class Init { kUniform, kGiven };

  double learning_rate = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  int outer_iterations = 10;        ///< multiplier updates
  int inner_steps = 30;             ///< Adam steps per multiplier update
  double initial_multiplier = 0.0;  ///< lambda_0 (>= 0 for BudgetSense::kAtMost)
  double rho = 10.0;                ///< initial penalty weight, > 0
  double rho_growth = 1.0;          ///< >= 1; 1 keeps rho fixed
  double rho_max = 1e6;             ///< cap on rho, >= rho
  Init init = Init::kUniform;
  Matrix initial_logits{};  ///< Init::kGiven: N x K, finite
  SoftRounding rounding = SoftRounding::kArgmax;
  double units_per_cost = 10000.0;  ///< knapsack grid of kKnapsack (ignored for integer costs)
  int round_every = 0;              ///< as PenaltyOptions::round_every

  /// True when every field is in its domain; otherwise `why` names the field and its bound.
  bool is_valid(std::string* why) const;
};

struct AugmentedLagrangianResult : AssignmentResult {
  double multiplier = 0.0;          ///< lambda after the last update
  double rho = 0.0;                 ///< rho after the last update
  std::vector<double> multipliers;  ///< lambda after each outer iteration
};

class AugmentedLagrangianSolver {
 public:
  /// Throws InvalidArgumentError naming the field when `options` is not valid.
  explicit AugmentedLagrangianSolver(const AugmentedLagrangianOptions& options = {});
  const AugmentedLagrangianOptions& options() const { return options_; }

  template <AssignmentProblem P, class... Callbacks>
  AugmentedLagrangianResult minimize(const P& problem, Callbacks&&... callbacks) const {
    return minimize(make_objective(problem), CallbackSet(callbacks...));
  }
  AugmentedLagrangianResult minimize(const AssignmentObjective& objective,
                                     const CallbackSet& callbacks = CallbackSet()) const;

 private:
  AugmentedLagrangianOptions options_;
};

}  // namespace tether
